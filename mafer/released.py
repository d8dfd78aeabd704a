"""Where fine-tuned checkpoints are on disk: the authors' release, and folders of fold checkpoints.

The authors released, for each of the paper's four models, one fine-tuned checkpoint for FER2013,
one for RAF-DB and, for Oulu-CASIA, one per fold of their 10-fold protocol, saved by their
``main_oulu.py`` as ``best_model_ckp_fold_<k>.pt`` (k = 1..10). The layout this project reads
(``mafer reproduce --profile released --config checkpoints=DIR``) is::

    DIR/<model>/fer2013.pt
    DIR/<model>/rafdb.pt
    DIR/<model>/oulucasia/best_model_ckp_fold_<k>.pt

``<model>`` is a spelling of a paper model, matched whole (`mafer.paper_models.PaperModel.spellings`:
``base``, ``cr``, ``CR-Simplified``, ``cr_affwild2``...): a misspelt folder is named and left out,
never taken for another model. ``.pth`` is read as well as ``.pt``. This module only looks at
names, so that planning a pipeline run does not import torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from mafer.errors import MaferError
from mafer.paper_models import MODELS, normalize_name

AUTHORS_FOLDS = 10  # their main_oulu.py's KFold(n_splits=10)
FOLD_IN_NAME = re.compile(r"fold[_-]?(\d+)", re.IGNORECASE)
SUFFIXES = (".pt", ".pth")
FIXED_SPLIT_DATASETS = ("fer2013", "rafdb")  # one checkpoint each; Oulu-CASIA has one per fold
LAYOUT = "DIR/<model>/fer2013.pt, DIR/<model>/rafdb.pt, DIR/<model>/oulucasia/best_model_ckp_fold_<k>.pt"


def fold_in_name(name: str) -> int | None:
    """The fold a file or folder name gives: ``best_model_ckp_fold_3.pt`` or ``fold3`` -> 3; None without one."""
    found = FOLD_IN_NAME.findall(name)
    return int(found[-1]) if found else None


def fold_checkpoints(folder: str | os.PathLike) -> dict[int, Path]:
    """``{fold: checkpoint}`` (folds ascending) in a folder of Oulu-CASIA fold checkpoints.

    Files whose name gives the fold (the authors' ``best_model_ckp_fold_<k>.pt``, or any
    ``*fold<k>.pt``) and sub-folders ``fold<k>/`` holding a ``best.pt`` directly (``mafer step2
    --fold k --out DIR/fold<k>``) or one level down (the pipeline's ``fold<k>/seed<a>-<b>/best.pt``).
    MaferError when the folder holds none, or several for one fold.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MaferError(f"{folder}: folder of fold checkpoints not found")
    found: dict[int, list[Path]] = {}
    for entry in sorted(folder.iterdir()):
        k = fold_in_name(entry.name if entry.is_dir() else entry.stem)
        if k is None:
            continue
        if entry.is_dir():
            found.setdefault(k, []).extend(sorted(entry.glob("best.pt")) + sorted(entry.glob("*/best.pt")))
        elif entry.suffix in SUFFIXES:
            found.setdefault(k, []).append(entry)
    found = {k: paths for k, paths in found.items() if paths}
    if not found:
        raise MaferError(f"{folder}: no fold checkpoints; expected the authors' best_model_ckp_fold_<k>.pt files or "
                         "fold<k>/best.pt (mafer step2 --fold k)")
    for k, paths in found.items():
        if len(paths) > 1:
            shown = ", ".join(str(p) for p in paths[:3])
            raise MaferError(f"{folder}: {len(paths)} checkpoints for fold {k} ({shown}); "
                             "expected one per fold (point --checkpoint at a folder with one seed's runs)")
    return {k: found[k][0] for k in sorted(found)}


def model_folders(folder: str | os.PathLike) -> tuple[dict[str, Path], list[str]]:
    """``({paper model key: its sub-folder of folder}, [sub-folders named after no model])``, models
    in the paper's order. A folder name must be a whole spelling of a model (case, ``_``, ``-`` and
    spaces aside), so that ``CR-Simplfied`` is not read as CR.

    MaferError when ``folder`` is no folder, holds no model's folder, or two folders name one model.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MaferError(f"{folder}: folder of released checkpoints not found; expected {LAYOUT}")
    spelled = {spelling: m for m in MODELS for spelling in m.spellings()}
    found: dict[str, Path] = {}
    ignored: list[str] = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        model = spelled.get(normalize_name(entry.name))
        if model is None:
            ignored.append(entry.name)
            continue
        if model.key in found:
            raise MaferError(f"{folder}: {found[model.key].name}/ and {entry.name}/ both name model {model.label}; "
                             "expected one folder per model")
        found[model.key] = entry
    if not found:
        names = ", ".join(sorted(e.name for e in folder.iterdir())[:5]) or "nothing"
        raise MaferError(f"{folder}: no folder named after a paper model (found {names}); expected {LAYOUT}, "
                         f"<model> one of {', '.join(m.key for m in MODELS)}")
    return {m.key: found[m.key] for m in MODELS if m.key in found}, ignored


def _one_file(folder: Path, stem: str) -> Path | None:
    return next((folder / f"{stem}{suffix}" for suffix in SUFFIXES if (folder / f"{stem}{suffix}").is_file()), None)


def released_checkpoints(folder: str | os.PathLike, datasets: Sequence[str],
                         folds: Sequence[int]) -> tuple[dict[str, dict[str, dict[int | None, str]]], list[str]]:
    """``({dataset: {model key: {fold: checkpoint}}}, notes)`` of the release layout in ``folder``.

    ``fold`` is None for FER2013 and RAF-DB, an Oulu-CASIA fold of ``folds`` otherwise (the
    checkpoints found by `fold_checkpoints`); a dataset no model has is absent. ``notes`` says in
    one line each which model, dataset or fold is missing (those are left out of the tables).
    Paths are absolute. MaferError as `model_folders`.
    """
    models, ignored = model_folders(folder)
    label = {m.key: m.label for m in MODELS}
    found: dict[str, dict[str, dict[int | None, str]]] = {}
    notes = [f"released checkpoints: {name}/ in {folder} names no model (expected one of "
             f"{', '.join(m.key for m in MODELS)} or {', '.join(m.label for m in MODELS)}); ignored"
             for name in ignored]
    notes += [f"released checkpoints: no folder for model {m.label} in {folder}; left out"
              for m in MODELS if m.key not in models]
    for dataset in datasets:
        for key, model_dir in models.items():
            if dataset in FIXED_SPLIT_DATASETS:
                path = _one_file(model_dir, dataset)
                runs = {None: str(path.resolve())} if path else {}
                missing = "" if path else f"no {dataset}.pt"
            else:
                try:
                    available = fold_checkpoints(model_dir / dataset)
                except MaferError:
                    available = {}
                runs = {k: str(available[k].resolve()) for k in folds if k in available}
                absent = [k for k in folds if k not in available]
                missing = f"no checkpoint for fold(s) {', '.join(map(str, absent))} in {dataset}/" if absent else ""
            if missing:
                notes.append(f"released checkpoints: {label[key]} ({model_dir}): {missing}; left out")
            if runs:
                found.setdefault(dataset, {})[key] = runs
    return found, notes
