"""Synthetic faces written in the five real datasets' on-disk formats (`mafer synth`).

The faces are drawn from parameters (see `mafer.synth.faces`): expression lives in
brows, lids, mouth and fine wrinkles, identity in geometry, skin tone, hair and small
marks, so the paper's questions (does multi-resolution training help at 8 px?) have an
answer on data anyone can make in seconds. Output is byte-identical for a given seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from mafer.errors import MaferError
from mafer.synth.faces import VARIANTS, face_variant
from mafer.synth.formats import WRITERS
from mafer.synth.scales import SCALES, Scale

__all__ = ["SCALES", "Scale", "VARIANTS", "DATASET_NAMES", "write_synthetic", "add_arguments", "run"]

DATASET_NAMES = tuple(WRITERS)
MANIFEST = "synthetic.json"


def _dataset_rng(seed: int, name: str) -> np.random.Generator:
    """One independent stream per dataset, so a subset of datasets gives the same files."""
    return np.random.default_rng([seed, DATASET_NAMES.index(name)])


def _parse_datasets(datasets: str | Iterable[str] | None) -> list[str]:
    if datasets is None:
        return list(DATASET_NAMES)
    names = [d.strip() for d in (datasets.split(",") if isinstance(datasets, str) else datasets)]
    names = [d for d in names if d]
    unknown = [d for d in names if d not in DATASET_NAMES]
    if unknown or not names:
        raise MaferError(f"unknown dataset(s) {', '.join(unknown) or '(none given)'}; "
                         f"expected a comma-separated subset of {','.join(DATASET_NAMES)}")
    return list(dict.fromkeys(names))


def _clear_previous(out: Path, name: str, manifest: dict) -> None:
    """Remove an earlier synthetic copy of `name`; refuse to touch anything else."""
    target = out / name
    if not target.exists():
        return
    if name not in manifest:
        if target.is_dir() and not any(target.iterdir()):
            return
        raise MaferError(f"{target} exists and was not written by `mafer synth` "
                         f"(not listed in {out / MANIFEST}); choose another --out")
    shutil.rmtree(target)


def write_synthetic(out: str | Path, scale: str = "smoke", seed: int = 0,
                    datasets: str | Iterable[str] | None = None, variant: str = "demo") -> dict[str, dict[str, int]]:
    """Write synthetic FER2013, RAF-DB, Oulu-CASIA, AffWild2 and VGGFace2 under `out`.

    Each dataset goes to `out/<name>` in its real layout; `scale` is a key of `SCALES`,
    `datasets` a subset of `DATASET_NAMES` (list or comma-separated string), `variant` a key
    of `VARIANTS` (the faces' distributions, `mafer.synth.faces.FaceVariant`). Returns the
    counts written, per dataset (images per split, videos, identities ...). Earlier
    synthetic copies in `out` are replaced; other existing folders are left alone (error).
    """
    if scale not in SCALES:
        raise MaferError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    spec = SCALES[scale]
    faces = face_variant(variant)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except json.JSONDecodeError as exc:
        raise MaferError(f"{manifest_path}: not valid JSON ({exc}); "
                         "delete it or choose another --out") from None
    counts = {}
    for name in _parse_datasets(datasets):
        _clear_previous(out, name, manifest)
        counts[name] = WRITERS[name](out / name, spec, _dataset_rng(seed, name), variant=faces)
        manifest[name] = {"scale": scale, "seed": seed, "variant": variant, "counts": counts[name]}
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mafer synth`."""
    parser.add_argument("--out", required=True, type=Path, help="folder to write DIR/<dataset>/ into")
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke",
                        help="smoke: a few dozen images per set (tests); demo: the book's default")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default 0)")
    parser.add_argument("--variant", choices=list(VARIANTS), default="demo",
                        help="face distributions (mafer.synth.faces.VARIANTS): demo (default) or resting-face "
                             "(per-person offsets of brows, lids and mouth)")
    parser.add_argument("--datasets", default=None,
                        help=f"comma-separated subset of {','.join(DATASET_NAMES)} (default: all)")


def run(args: argparse.Namespace) -> int:
    """`mafer synth`: write the datasets and print what was written."""
    start = time.perf_counter()
    counts = write_synthetic(args.out, scale=args.scale, seed=args.seed, datasets=args.datasets,
                             variant=args.variant)
    for name, c in counts.items():
        print(f"{name:10s} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    print(f"wrote {args.scale} synthetic data ({args.variant} faces, seed {args.seed}) to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
