"""Synthetic faces written in the five real datasets' on-disk formats (`mafer synth`).

The faces are drawn from parameters (see `mafer.synth.faces`): expression lives in
brows, lids, mouth and fine wrinkles, identity in geometry, skin tone, hair and small
marks, so the paper's questions (does multi-resolution training help at 8 px?) have an
answer on data anyone can make in seconds. Output is byte-identical for a given seed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from mafer.errors import MaferError
from mafer.synth.faces import VARIANTS, face_variant
from mafer.synth.formats import WRITERS
from mafer.synth.scales import SCALES, Scale
from mafer.writes import disk_full_error, is_disk_full

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


def _check_replaceable(out: Path, name: str, manifest: dict) -> None:
    """Refuse to replace `out/name` unless an earlier `mafer synth` wrote it (or it is an empty folder)."""
    target = out / name
    if target.exists() and name not in manifest and not (target.is_dir() and not any(target.iterdir())):
        raise MaferError(f"{target} exists and was not written by `mafer synth` "
                         f"(not listed in {out / MANIFEST}); choose another --out")


def _partial(out: Path, name: str) -> Path:
    """Where `name` is written before it is complete: hidden, so no reader takes it for the dataset."""
    return out / f".{name}.partial"


def _write_json(path: Path, data: dict) -> None:
    """Write through a temporary name and rename: a full disk never leaves half a manifest."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_partial(out: Path, name: str, spec: Scale, seed: int, faces) -> dict[str, int]:
    """Write `name` into its partial folder (`_partial`) and return its counts; on any failure the
    partial folder is removed, and a full disk is a MaferError naming the file being written."""
    partial = _partial(out, name)
    shutil.rmtree(partial, ignore_errors=True)  # left by a run that was killed
    try:
        return WRITERS[name](partial, spec, _dataset_rng(seed, name), variant=faces)
    except BaseException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        if is_disk_full(exc):
            # named where it was to go: the partial folder is gone
            where = Path(getattr(exc, "filename", None) or partial)
            shown = out / name / where.relative_to(partial) if where.is_relative_to(partial) else where
            raise disk_full_error(shown, exc, f" the synthetic {name} dataset") from None
        raise


def write_synthetic(out: str | Path, scale: str = "smoke", seed: int = 0,
                    datasets: str | Iterable[str] | None = None, variant: str = "demo",
                    workers: int = 1) -> dict[str, dict[str, int]]:
    """Write synthetic FER2013, RAF-DB, Oulu-CASIA, AffWild2 and VGGFace2 under `out`.

    Each dataset goes to `out/<name>` in its real layout; `scale` is a key of `SCALES`,
    `datasets` a subset of `DATASET_NAMES` (list or comma-separated string), `variant` a key
    of `VARIANTS` (the faces' distributions, `mafer.synth.faces.FaceVariant`). Returns the
    counts written, per dataset (images per split, videos, identities ...). Earlier
    synthetic copies in `out` are replaced; other existing folders are left alone (error).
    Each dataset is written into a hidden ``.<name>.partial`` folder and renamed when complete
    (and only then listed in ``synthetic.json``), so a run that fails or is killed leaves no
    half dataset under a dataset's name. A full disk raises MaferError naming the file.
    ``workers`` > 1 writes that many datasets at once, in processes; each dataset draws from its
    own random stream, so the files are the same bytes whatever the number.
    """
    if scale not in SCALES:
        raise MaferError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    if workers < 1:
        raise MaferError(f"workers must be at least 1, got {workers}")
    spec = SCALES[scale]
    faces = face_variant(variant)
    out = Path(out)
    names = _parse_datasets(datasets)
    manifest_path = out / MANIFEST
    try:
        out.mkdir(parents=True, exist_ok=True)
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    except json.JSONDecodeError as exc:
        raise MaferError(f"{manifest_path}: not valid JSON ({exc}); "
                         "delete it or choose another --out") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full_error(None, exc) from None
        raise MaferError(f"{out}: cannot make the output folder ({exc.strerror or exc}); choose another --out") from None
    for name in names:
        _check_replaceable(out, name, manifest)
    counts = {}
    with contextlib.ExitStack() as stack:
        futures = {}
        if workers > 1 and len(names) > 1:
            stack.callback(_remove_partials, out, names)  # what a failure left, once the pool has stopped
            pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(names)))
            stack.callback(pool.shutdown, wait=True, cancel_futures=True)
            futures = {name: pool.submit(_write_partial, out, name, spec, seed, faces) for name in names}
        for name in names:  # put in place in order, each as soon as it is complete
            counts[name] = futures[name].result() if futures else _write_partial(out, name, spec, seed, faces)
            _put_in_place(out, name, manifest, {"scale": scale, "seed": seed, "variant": variant,
                                                "counts": counts[name]})
    return counts


def _remove_partials(out: Path, names: Iterable[str]) -> None:
    for name in names:
        shutil.rmtree(_partial(out, name), ignore_errors=True)


def _put_in_place(out: Path, name: str, manifest: dict, entry: dict) -> None:
    """List the written ``name`` in the manifest, then rename its partial folder to ``out/name``."""
    manifest_path = out / MANIFEST
    # listed before it is put in place: a dataset folder not in the manifest is never ours
    manifest[name] = entry
    try:
        _write_json(manifest_path, manifest)
    except BaseException as exc:
        shutil.rmtree(_partial(out, name), ignore_errors=True)
        if is_disk_full(exc):
            raise disk_full_error(manifest_path, exc) from None
        raise
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    os.rename(_partial(out, name), target)


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
    parser.add_argument("--workers", type=int, default=1,
                        help="datasets written at once, one process each (the same bytes whatever the number; "
                             "default 1)")


def run(args: argparse.Namespace) -> int:
    """`mafer synth`: write the datasets and print what was written."""
    start = time.perf_counter()
    counts = write_synthetic(args.out, scale=args.scale, seed=args.seed, datasets=args.datasets,
                             variant=args.variant, workers=args.workers)
    for name, c in counts.items():
        print(f"{name:10s} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    print(f"wrote {args.scale} synthetic data ({args.variant} faces, seed {args.seed}) to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
