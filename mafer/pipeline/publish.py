"""Last node of the pipeline: put the executed notebooks the book renders at fixed paths.

``_toc.yml`` names ``book/generated/<page>.ipynb``; this copies the notebooks of the profile
that just ran there (the book then shows that profile), with a ``run.json`` saying which.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from mafer.errors import MaferError


def publish(book_dir: Path, sources: dict[str, str], profile: str, results_dir: Path) -> list[Path]:
    """Copy ``sources`` (page name -> executed notebook) into ``book_dir``; return the copies."""
    missing = [src for src in sources.values() if not Path(src).is_file()]
    if missing:
        raise MaferError(f"cannot publish the book pages: executed notebook(s) missing: {', '.join(missing)}")
    book_dir.mkdir(parents=True, exist_ok=True)
    for stale in book_dir.glob("*.ipynb"):
        if stale.name not in sources:
            stale.unlink()
    copies = []
    for page, src in sources.items():
        dest = book_dir / page
        shutil.copyfile(src, dest)
        copies.append(dest)
    (book_dir / "run.json").write_text(json.dumps({
        "profile": profile, "results_dir": str(results_dir.resolve()),
        "pages": {page: str(Path(src).resolve()) for page, src in sources.items()},
        "published": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }, indent=2))
    return copies


def main(argv: list[str] | None = None) -> int:
    """Command-line entry used by the Snakefile's publish_book rule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book-dir", type=Path, required=True)
    parser.add_argument("--sources", required=True, help="JSON object: page name -> executed notebook")
    parser.add_argument("--profile", required=True)
    args = parser.parse_args(argv)
    try:
        publish(args.book_dir, json.loads(args.sources), args.profile, Path.cwd())
    except MaferError as exc:
        print(f"publish: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
