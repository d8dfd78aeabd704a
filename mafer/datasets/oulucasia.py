"""Oulu-CASIA: six expressions, k-fold cross-validation over images, over subjects, or the authors' folds."""

from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from mafer.datasets.base import SPLIT_SEED, FaceDataset, decode_image, list_dirs, list_images, natural_key
from mafer.datasets.info import OULU_PROTOCOLS
from mafer.errors import MaferError, MaferWarning

# folder name (lower case) -> class name; the release and common re-packagings
FOLDER_ALIASES = {
    "surprise": "Surprise", "surprised": "Surprise",
    "happiness": "Happiness", "happy": "Happiness",
    "sadness": "Sadness", "sad": "Sadness",
    "anger": "Anger", "angry": "Anger",
    "fear": "Fear", "fearful": "Fear",
    "disgust": "Disgust", "disgusted": "Disgust",
}
PROTOCOLS = OULU_PROTOCOLS
# The authors' dataset class writes this table into the dataset folder on first use (columns: the
# pandas index, image_path, expression; rows in os.listdir order); their folds are drawn over its rows.
DATABASE_FILE = "oulucasia_database.csv"
_NOTED: set[str] = set()  # dataset folders whose missing database this process has noted
NO_DATABASE_NOTE = (f"protocol 'authors' without {DATABASE_FILE} (in the dataset folder or --order): folds drawn over "
                    "this reader's path order; the authors' released fold checkpoints can be tested without leakage "
                    "only on their own database order")
CAMERAS = ("VL", "NI")  # visible light (the literature's choice), near infrared
ILLUMINATIONS = ("Strong", "Weak", "Dark")  # Strong: the literature's choice
VAL_FRACTION = 0.15


def expression_dirs(folder: Path) -> dict[str, Path]:
    """Sub-folders of ``folder`` whose name is an expression, keyed by class name."""
    return {FOLDER_ALIASES[d.name.lower()]: d for d in list_dirs(folder) if d.name.lower() in FOLDER_ALIASES}


def detect_layout(root: Path) -> str:
    """``"flat"`` (``<root>/<Expression>/<image>``) or ``"subject"`` (``<root>/<Subject>/<Expression>/<frames>``)."""
    subdirs = list_dirs(root)
    if subdirs and expression_dirs(root):
        return "flat"
    if subdirs and any(expression_dirs(d) for d in subdirs):
        return "subject"
    found = ", ".join(d.name for d in subdirs[:5]) or "no sub-folders"
    raise MaferError(f"{root}: folder matches no known Oulu-CASIA layout (found {found}); expected "
                     "<root>/<Expression>/<image> or <root>/<Subject>/<Expression>/<frames>, "
                     f"expressions named {', '.join(sorted(set(FOLDER_ALIASES.values())))}")


def descend_release(root: Path, camera: str, illumination: str) -> tuple[Path, bool]:
    """``(folder, descended)``: from the release's upper folders (``OriginalImg``, ``OriginalImg/VL``)
    down to ``<camera>/<illumination>``, whose sub-folders are the subjects; ``root`` itself otherwise."""
    steps = [("OriginalImg", None), (camera, CAMERAS), (illumination, ILLUMINATIONS)]
    folder = root
    for name, alternatives in steps:
        if (folder / name).is_dir():
            folder = folder / name
        elif alternatives and any((folder / a).is_dir() for a in alternatives):
            found = ", ".join(a for a in alternatives if (folder / a).is_dir())
            raise MaferError(f"{folder}: no {name}/ folder (found {found}); expected {name}/ for the chosen "
                             f"camera {camera!r} / illumination {illumination!r}, or choose one that is present")
    return folder, folder != root


def fold_indices(targets: np.ndarray, groups: np.ndarray | None, folds: int, fold: int,
                 seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Train / val / test indices of fold ``fold`` (1..folds) of ``folds``.

    Without ``groups`` folds are stratified over images (the authors' protocol) and validation
    is a stratified 15 % of the training images. With ``groups`` (subject ids) folds are
    stratified group folds and validation is 15 % of the training subjects, so no subject is
    in two of train / val / test.
    """
    # imported here: every process that reads any dataset imports this module, only Oulu-CASIA's need folds
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, StratifiedKFold, train_test_split

    index = np.arange(len(targets))
    with warnings.catch_warnings():  # sklearn warns when a class has fewer members than folds
        warnings.simplefilter("ignore", UserWarning)
        if groups is None:
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            train, test = list(splitter.split(index, targets))[fold - 1]
            stratify = targets[train] if np.bincount(targets[train]).min(initial=2) >= 2 else None
            train, val = train_test_split(train, test_size=VAL_FRACTION, random_state=seed, stratify=stratify)
        else:
            splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
            train, test = list(splitter.split(index, targets, groups))[fold - 1]
            inner = GroupShuffleSplit(n_splits=1, test_size=VAL_FRACTION, random_state=seed)
            fit, val = next(inner.split(train, targets[train], groups[train]))
            train, val = train[fit], train[val]
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def authors_fold_indices(n: int, folds: int, fold: int, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Train / val / test indices (sorted int64 arrays) of fold ``fold`` (1..folds) under the authors' rule.

    As the authors' ``main_oulu.py``: ``KFold(n_splits=folds, shuffle=True, random_state=seed)``
    over the ``n`` rows of their database, not stratified, fold ``k`` being the k-th split
    (their ``best_model_ckp_fold_<k>.pt``); validation is the first 15 % of the shuffled
    training indices. The test parts are theirs exactly. Their shuffle uses Python's global
    ``random``, whose state at fold k depends on every augmentation drawn in folds 1..k-1, so
    their validation parts cannot be rebuilt; here the shuffle is seeded by ``(seed, fold)``.
    """
    from sklearn.model_selection import KFold

    train, test = list(KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.arange(n)))[fold - 1]
    train = np.random.default_rng([seed, fold]).permutation(train)
    n_val = int(len(train) * VAL_FRACTION)
    return {"train": np.sort(train[n_val:]), "val": np.sort(train[:n_val]), "test": np.sort(test)}


def _database_key(image_path: str) -> tuple[str, str] | None:
    """``(class name, file name)`` of a database row's ``.../<Expression>/<image>``; None if the
    folder is no expression."""
    parts = [p for p in re.split(r"[\\/]", image_path.strip()) if p]
    if len(parts) < 2 or parts[-2].lower() not in FOLDER_ALIASES:
        return None
    return FOLDER_ALIASES[parts[-2].lower()], parts[-1]


def database_order(database: Path, paths: list[Path], targets: list[int], classes: list[str]) -> list[int]:
    """Indices into ``paths`` in the row order of the authors' ``oulucasia_database.csv``.

    Each row's ``image_path`` is matched to a file by its last two components,
    ``<Expression>/<image>`` (expression folders by any name `FOLDER_ALIASES` accepts), so a
    database written on another machine applies to a copy of the data anywhere. MaferError,
    naming the file and row, when the file is not such a table, a row names no file here or a
    file of another expression than its ``expression`` label, two rows name one file, or a file
    is named by no row.
    """
    where = {(classes[y], p.name): i for i, (p, y) in enumerate(zip(paths, targets))}
    expected = (f"expected the authors' {DATABASE_FILE} for this copy of Oulu-CASIA (columns image_path, "
                "expression; one row per image)")
    try:
        with open(database, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"image_path", "expression"} <= set(reader.fieldnames):
                raise MaferError(f"{database}: columns {reader.fieldnames}; {expected}")
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise MaferError(f"{database}: cannot read it ({exc}); {expected}") from None
    order: list[int] = []
    seen: dict[int, int] = {}
    for line, row in enumerate(rows, 2):
        key = _database_key(row["image_path"] or "")
        if key is None or key not in where:
            raise MaferError(f"{database}, line {line}: {row['image_path']!r} matches no image <Expression>/<image> "
                             f"in the dataset folder; {expected}")
        i = where[key]
        if i in seen:
            raise MaferError(f"{database}, lines {seen[i]} and {line}: both name {key[0]}/{key[1]}; {expected}")
        label = (row["expression"] or "").strip()
        if label != str(targets[i]):
            raise MaferError(f"{database}, line {line}: expression {label!r} for {key[0]}/{key[1]}, whose label is "
                             f"{targets[i]} ({key[0]}); expected the authors' labels (0 Surprise .. 5 Disgust)")
        seen[i] = line
        order.append(i)
    missing = [paths[i] for i in range(len(paths)) if i not in seen]
    if missing:
        raise MaferError(f"{database}: {len(missing)} image(s) of the dataset folder are in no row, e.g. "
                         f"{missing[0].parent.name}/{missing[0].name}; {expected}")
    return order


class OuluCASIA(FaceDataset):
    """Oulu-CASIA, in the authors' flat layout or the original subject / expression / frames layout (auto-detected).

    Given the release's upper folders (``OriginalImg/`` or ``OriginalImg/VL/``), the reader goes
    down to ``<camera>/<illumination>`` -- ``VL/Strong`` by default, the visible-light, strong
    illumination sequences the literature evaluates on -- and says so in ``variant``.

    In the original layout the last ``last_frames`` frames (the peak) of each sequence are used,
    "last" by the number in the frame's file name (`natural_key`: ``10.jpeg`` after ``9.jpeg``,
    with or without zero padding); ``details`` names the frames taken from the first sequence.
    ``fold=None`` gives split ``all``; otherwise ``train`` / ``val`` / ``test`` of fold ``fold``
    (1..folds, numbered as the authors' ``best_model_ckp_fold_<k>.pt``) of ``folds``, drawn with
    a fixed seed: stratified over images (``protocol="image"``), over subjects
    (``protocol="subject"``, needs the original layout), or by the authors' exact rule
    (``protocol="authors"``, `authors_fold_indices`) over the rows of their
    ``oulucasia_database.csv`` -- ``order`` names one, else the dataset folder's own is used,
    else the reader's path order (with a `MaferWarning` that the authors' released fold
    checkpoints then see their own training images). ``fold_order`` says which order was used.
    """

    name = "oulucasia"
    splits = ("train", "val", "test", "all")

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False, *, fold: int | None = None, folds: int = 10, protocol: str = "image",
                 last_frames: int = 3, camera: str = "VL", illumination: str = "Strong",
                 order: str | os.PathLike | None = None):
        if camera not in CAMERAS or illumination not in ILLUMINATIONS:
            raise MaferError(f"oulucasia: camera {camera!r} / illumination {illumination!r}; expected a camera of "
                             f"{', '.join(CAMERAS)} and an illumination of {', '.join(ILLUMINATIONS)}")
        if protocol not in PROTOCOLS:
            raise MaferError(f"oulucasia: unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
        if fold is None and split != "all":
            raise MaferError(f"oulucasia: split {split!r} needs a fold (1..{folds}); without a fold the split is 'all'")
        if fold is not None and (split == "all" or not 1 <= fold <= folds or folds < 2):
            raise MaferError(f"oulucasia: fold {fold} of {folds} with split {split!r}; expected 1 <= fold <= folds, "
                             "folds >= 2 and split train, val or test")
        if order is not None and protocol != "authors":
            raise MaferError(f"oulucasia: an order file ({order}) applies to protocol 'authors' only, not {protocol!r}")
        if last_frames < 1:
            raise MaferError(f"oulucasia: last_frames must be >= 1, got {last_frames}")
        self.fold, self.folds, self.protocol, self.last_frames = fold, folds, protocol, last_frames
        self.order = Path(order).expanduser() if order is not None else None
        self.fold_order = "path order"
        self.subjects: list[str] = []
        self.camera, self.illumination = camera, illumination
        root = Path(root).expanduser()
        if root.is_dir():
            root, descended = descend_release(root, camera, illumination)
            if descended:
                self.variant = f"release folders, using OriginalImg/{camera}/{illumination}"
                if (camera, illumination) != ("VL", "Strong"):
                    self.variant_note = (f"the paper's literature uses VL/Strong; this is {camera}/{illumination}")
        super().__init__(root, split, transform, skip_bad)

    def _collect(self) -> tuple[list[Path], list[int], list[str]]:
        """All images, labels and subjects (empty subject in the flat layout), in `natural_key` order of their paths."""
        self.layout = detect_layout(self.root)
        label_of = {c: i for i, c in enumerate(self.classes)}
        items: list[tuple[Path, int, str]] = []
        if self.layout == "flat":
            for cls, folder in expression_dirs(self.root).items():
                items += [(p, label_of[cls], "") for p in list_images(folder)]
        else:
            for subject in list_dirs(self.root):
                sequences = expression_dirs(subject)
                if not sequences:
                    self._bad(str(subject), "subject folder has no expression sub-folders; "
                                            f"expected {subject}/<Expression>/<frames>")
                for cls, folder in sequences.items():
                    frames = list_images(folder)
                    if not frames:
                        self._bad(str(folder), "sequence folder has no images; expected the frames of one sequence")
                    peak = frames[-self.last_frames:]
                    if peak and not self.details:  # one sequence shows how the rule read this copy's names
                        self.details.append(f"peak frames: the last {self.last_frames} of each sequence by the "
                                            f"number in the file name (e.g. {subject.name}/{folder.name}: "
                                            f"{', '.join(p.name for p in peak)})")
                    items += [(p, label_of[cls], subject.name) for p in peak]
        items.sort(key=lambda item: natural_key(item[0]))
        return [p for p, _, _ in items], [y for _, y, _ in items], [s for _, _, s in items]

    def _index(self) -> None:
        paths, targets, subjects = self._collect()
        if self.protocol == "authors":
            paths, targets, subjects = self._authors_order(paths, targets, subjects)
        if self.fold is None:
            chosen = np.arange(len(paths))
        else:
            if self.protocol == "subject" and self.layout == "flat":
                raise MaferError(f"{self.root}: protocol 'subject' needs the original <Subject>/<Expression>/<frames> "
                                 "layout; the flat <Expression>/<image> layout does not say who is in each image "
                                 "(use protocol='image')")
            groups = np.asarray(subjects) if self.protocol == "subject" else None
            n_units = len(set(subjects)) if groups is not None else len(paths)
            if n_units < self.folds:
                unit = "subjects" if groups is not None else "images"
                raise MaferError(f"{self.root}: {n_units} {unit} cannot make {self.folds} folds; expected at least {self.folds}")
            if self.protocol == "authors":
                chosen = authors_fold_indices(len(paths), self.folds, self.fold)[self.split]
            else:
                chosen = fold_indices(np.asarray(targets), groups, self.folds, self.fold)[self.split]
        self.samples = [str(paths[i]) for i in chosen]
        self.targets = [targets[i] for i in chosen]
        self.subjects = [subjects[i] for i in chosen]

    def _authors_order(self, paths: list[Path], targets: list[int],
                       subjects: list[str]) -> tuple[list[Path], list[int], list[str]]:
        """The items in the order the authors' folds are drawn over (see the class docstring)."""
        database = self.order or self.root / DATABASE_FILE
        if self.order is not None and not self.order.is_file():
            raise MaferError(f"{self.order}: order file not found; expected the authors' {DATABASE_FILE}")
        if not database.is_file():
            if str(self.root) not in _NOTED:  # once per dataset folder, not once per fold opened
                _NOTED.add(str(self.root))
                warnings.warn(NO_DATABASE_NOTE, MaferWarning, stacklevel=2)
            return paths, targets, subjects
        if self.layout != "flat":
            raise MaferError(f"{database}: the authors' database names images <Expression>/<image>, which is the flat "
                             f"layout; {self.root} has the <Subject>/<Expression>/<frames> layout: use the flat copy "
                             "their preprocessing made, or leave the database out to draw their rule over this "
                             "layout's path order")
        index = database_order(database, paths, targets, self.classes)
        self.fold_order = f"{database} (the authors' database order)"
        return [paths[i] for i in index], [targets[i] for i in index], [subjects[i] for i in index]

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])

    def _select(self, keep: list[int]) -> None:
        super()._select(keep)
        self.subjects = [self.subjects[i] for i in keep]
