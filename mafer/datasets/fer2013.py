"""FER2013: 48x48 gray faces, in any of the distributions that circulate.

- Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``) and the ICML challenge's
  ``icml_face_data.csv`` (``emotion, Usage, pixels``): the whole release, the paper's splits.
- The challenge's ``train.csv`` (``emotion,pixels``: the Training rows only) and ``test.csv``
  (``pixels`` only, no labels): train only; val and test are refused with what to get instead.
- The folder-of-images repackaging ``train/<emotion>/*.jpg``, ``test/<emotion>/*.jpg``: its test
  folder is PublicTest and PrivateTest together, so test numbers are not comparable with the
  paper's (PrivateTest); validation is carved from train (see ``FOLDER_VAL_FRACTION``).
- Any of these CSVs inside a ``.tar.gz`` / ``.tar`` / ``.zip`` archive (as Kaggle ships them) is
  read in place, without extracting -- also when the archive's name does not say so (Kaggle's
  ``fer2013.tar.gz`` gunzipped to a tar file called ``fer2013``).
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from mafer.datasets.base import (ARCHIVE_SUFFIXES, SPLIT_SEED, FaceDataset, archive_kind, decode_image,
                                 extract_command, gray_to_rgb, is_archive, list_dirs, list_images, printable,
                                 stratified_pick)
from mafer.errors import MaferError
from mafer.textfile import decode_text, read_text

CSV_NAMES = ("fer2013.csv", "icml_face_data.csv", "train.csv", "test.csv")  # in order of preference
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48
# folder names of the image repackaging (lower case) -> label
FOLDER_LABELS = {"angry": 0, "anger": 0, "disgust": 1, "disgusted": 1, "fear": 2, "fearful": 2, "happy": 3,
                 "happiness": 3, "sad": 4, "sadness": 4, "surprise": 5, "surprised": 5, "neutral": 6}
# the release's PublicTest / Training sizes (3589 / 28709, Goodfellow et al. 2013, "Challenges in
# representation learning"): the folder version's validation share of train, so val is as large as PublicTest
FOLDER_VAL_FRACTION = 3589 / 28709
FOLDER_NOTE = ("the image-folder repackaging's test split is PublicTest and PrivateTest together (the paper "
               "tests on PrivateTest) and its validation split is carved from Training")


def _archive_members(archive: Path) -> dict[str, str]:
    """Base name -> member name of the FER2013 CSVs in a tar or zip archive."""
    try:
        if archive_kind(archive) == "zip":
            with zipfile.ZipFile(archive) as z:
                names = z.namelist()
        else:
            with tarfile.open(archive, "r:*") as t:
                names = [m.name for m in t.getmembers() if m.isfile()]
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise MaferError(f"{archive}: cannot read the archive ({printable(str(exc))}); expected a complete .tar.gz, "
                         ".tar or .zip file, re-download it") from None
    found: dict[str, str] = {}
    for member in names:
        base = member.rsplit("/", 1)[-1]
        if base in CSV_NAMES and base not in found:
            found[base] = member
    return found


def _read_member(archive: Path, member: str) -> str:
    if archive_kind(archive) == "zip":
        with zipfile.ZipFile(archive) as z:
            data = z.read(member)
    else:
        with tarfile.open(archive, "r:*") as t:
            data = t.extractfile(member).read()
    return decode_text(data, f"{archive}:{member}")


def find_source(root: Path) -> tuple[Path, str | None]:
    """``(file or folder, archive member)`` of the FER2013 copy in ``root`` (or ``root/fer2013``).

    A CSV named directly, a folder with one of ``CSV_NAMES``, an archive holding one, or a folder
    with ``train/<emotion>/`` image folders.
    """
    if root.is_file() and is_archive(root):
        members = _archive_members(root)
        for name in CSV_NAMES:
            if name in members:
                return root, members[name]
        raise MaferError(f"{root}: this {archive_kind(root)} archive holds none of {', '.join(CSV_NAMES)}; extract it "
                         f"with `{extract_command(root, 'fer2013')}` and check its content")
    if root.is_file():
        return root, None
    for folder in (root, root / "fer2013"):
        for name in CSV_NAMES:
            if (folder / name).is_file():
                return folder / name, None
        if (folder / "train").is_dir() and any(d.name.lower() in FOLDER_LABELS for d in list_dirs(folder / "train")):
            return folder, None
    raise MaferError(f"{root}: no FER2013 found; expected {' or '.join(CSV_NAMES[:2])} (columns emotion,pixels,Usage), "
                     "the challenge's train.csv, a .tar.gz/.zip holding one of them, or image folders train/<emotion>/")


class FER2013(FaceDataset):
    """FER2013 from any of the distributions in the module docstring.

    Usage Training / PublicTest / PrivateTest -> split train / val / test. Each item is the 48x48
    gray face repeated to 3 channels. Rows with a bad label, usage or pixel string are errors
    naming the file and line (or, with ``skip_bad``, listed in ``bad_items``).
    """

    name = "fer2013"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False):
        self.source, self.member = find_source(Path(root).expanduser())
        self.csv_path = self.source if self.source.is_file() else None
        self.files: list[str] | None = None  # image files of the folder version
        where = self.source.parent if self.source.is_file() else self.source
        super().__init__(where, split, transform, skip_bad)

    @property
    def location(self) -> str:
        """The CSV (``archive:member`` inside an archive) or the image folder."""
        return f"{self.source}:{self.member}" if self.member else str(self.source)

    def _index(self) -> None:
        if self.csv_path is None:
            self._index_folders()
            return
        text = _read_member(self.source, self.member) if self.member else read_text(self.source)
        base = (self.member or self.source.name).rsplit("/", 1)[-1]
        self.variant = {"icml_face_data.csv": "icml_face_data.csv (ICML 2013 challenge)",
                        "train.csv": "train.csv of the Kaggle challenge (Training rows only)"}.get(
            base, "fer2013.csv (Kaggle)") + (f" inside {self.source.name}" if self.member else "")
        if self.member and not self.source.name.lower().endswith(ARCHIVE_SUFFIXES):  # the name hides what it is
            self.variant += f" (a {archive_kind(self.source)} archive)"
        reader = csv.reader(io.StringIO(text))
        columns = self._columns(next(reader, None))
        pixels: list[np.ndarray] = []
        for row in reader:
            line = reader.line_num
            if not row or all(not cell.strip() for cell in row):
                continue
            face = self._parse_row(row, line, columns)
            if face is not None:
                pixels.append(face[1])
                self.samples.append(f"{self.location}:{line}")
                self.targets.append(face[0])
        self._pixels = np.stack(pixels) if pixels else np.zeros((0, SIDE, SIDE), np.uint8)

    def _index_folders(self) -> None:
        self.variant = "image folders train/<emotion>, test/<emotion>"
        self.variant_note = FOLDER_NOTE
        items: dict[str, list[tuple[Path, int]]] = {}
        for split in ("train", "test"):
            items[split] = []
            folder = self.source / split
            if not folder.is_dir():
                raise MaferError(f"{folder}: folder not found; expected the FER2013 image folders "
                                 f"{self.source}/train/<emotion>/ and {self.source}/test/<emotion>/")
            for sub in list_dirs(folder):
                if sub.name.lower() not in FOLDER_LABELS:
                    self._bad(str(sub), f"folder name {sub.name!r}; expected one of the emotions "
                                        f"{', '.join(c.lower() for c in self.classes)}")
                    continue
                items[split] += [(p, FOLDER_LABELS[sub.name.lower()]) for p in list_images(sub)]
        chosen = items["test"]
        if self.split != "test":
            train = items["train"]
            val = set(stratified_pick([y for _, y in train], FOLDER_VAL_FRACTION, SPLIT_SEED))
            chosen = [item for i, item in enumerate(train) if (i in val) == (self.split == "val")]
        self.files = [str(p) for p, _ in chosen]
        self.samples = list(self.files)
        self.targets = [y for _, y in chosen]

    def _columns(self, header: list[str] | None) -> dict[str, int]:
        names = [h.strip() for h in header or []]
        if names == ["pixels"] or names == ["id", "pixels"]:
            raise MaferError(f"{self.location}:1: this is the challenge's test.csv, which has no labels (column "
                             "pixels only); expected fer2013.csv or icml_face_data.csv, which label all three splits")
        if "Usage" not in names and "emotion" in names and "pixels" in names:
            if self.split != "train":
                raise MaferError(f"{self.location}: the challenge's train.csv holds only the Training rows, so there is "
                                 f"no {self.split!r} split; expected fer2013.csv or icml_face_data.csv for PublicTest "
                                 "(val) and PrivateTest (test)")
            self.variant_note = "train.csv has no validation or test rows"
            return {"emotion": names.index("emotion"), "pixels": names.index("pixels")}
        missing = [c for c in ("emotion", "pixels", "Usage") if c not in names]
        if missing:
            raise MaferError(f"{self.location}:1: header {printable(','.join(names)) or '(empty)'} lacks column(s) "
                             f"{', '.join(missing)}; expected emotion,pixels,Usage (any order)")
        return {c: names.index(c) for c in ("emotion", "pixels", "Usage")}

    def _parse_row(self, row: list[str], line: int, columns: dict[str, int]) -> tuple[int, np.ndarray] | None:
        """``(label, 48x48 uint8)`` of a row of this split; None for rows of other splits or skipped bad rows."""
        where = f"{self.location}:{line}"
        if len(row) <= max(columns.values()):
            self._bad(where, f"row has {len(row)} fields; expected at least {max(columns.values()) + 1}")
            return None
        usage = row[columns["Usage"]].strip() if "Usage" in columns else "Training"
        if usage not in USAGE_TO_SPLIT:
            self._bad(where, f"Usage {usage!r}; expected one of {', '.join(USAGE_TO_SPLIT)}")
            return None
        emotion = row[columns["emotion"]].strip()
        if not emotion.lstrip("-").isdigit() or not 0 <= int(emotion) < len(self.classes):
            self._bad(where, f"emotion {emotion!r}; expected an integer label 0..{len(self.classes) - 1}")
            return None
        if USAGE_TO_SPLIT[usage] != self.split:
            return None
        values = row[columns["pixels"]].split()
        if len(values) != SIDE * SIDE:
            self._bad(where, f"{len(values)} pixel values; expected {SIDE * SIDE} (a {SIDE}x{SIDE} face)")
            return None
        try:
            face = np.array(values, dtype=np.int64)
        except ValueError:
            self._bad(where, "pixels must be space-separated integers 0..255")
            return None
        if face.min() < 0 or face.max() > 255:
            self._bad(where, f"pixel values span {face.min()}..{face.max()}; expected 0..255")
            return None
        return int(emotion), face.astype(np.uint8).reshape(SIDE, SIDE)

    def _decode(self, i: int) -> Tensor:
        if self.files is not None:
            return decode_image(self.files[i])
        return gray_to_rgb(self._pixels[i])

    def image_file(self, i: int) -> str | None:
        return self.files[i] if self.files is not None else None  # CSV pixels are a column, not a file

    def _select(self, keep: list[int]) -> None:
        super()._select(keep)
        if self.files is not None:
            self.files = [self.files[i] for i in keep]
        else:
            self._pixels = self._pixels[keep]
