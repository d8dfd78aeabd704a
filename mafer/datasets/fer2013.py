"""FER2013: 48x48 gray faces stored as pixel strings in one CSV file (two published variants)."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from mafer.datasets.base import FaceDataset, gray_to_rgb
from mafer.errors import MaferError

CSV_NAMES = ("fer2013.csv", "icml_face_data.csv")  # Kaggle's and the ICML challenge's file
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
SIDE = 48


def find_csv(root: Path) -> Path:
    """The FER2013 CSV in ``root`` (or ``root/fer2013``), or ``root`` itself when it is the file."""
    if root.is_file():
        return root
    for folder in (root, root / "fer2013"):
        for name in CSV_NAMES:
            if (folder / name).is_file():
                return folder / name
    raise MaferError(f"{root}: no FER2013 CSV found; expected {' or '.join(CSV_NAMES)} "
                     "(columns emotion,pixels,Usage or emotion, Usage, pixels)")


class FER2013(FaceDataset):
    """FER2013 from ``fer2013.csv`` (``emotion,pixels,Usage``) or ``icml_face_data.csv`` (``emotion, Usage, pixels``).

    Usage Training / PublicTest / PrivateTest -> split train / val / test. Each item is the 48x48
    gray face repeated to 3 channels. Rows with a bad label, usage or pixel string are errors
    naming the file and line (or, with ``skip_bad``, listed in ``bad_items``).
    """

    name = "fer2013"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False):
        self.csv_path = find_csv(Path(root).expanduser())
        super().__init__(self.csv_path.parent, split, transform, skip_bad)

    def _index(self) -> None:
        pixels: list[np.ndarray] = []
        with open(self.csv_path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            columns = self._columns(header)
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                face = self._parse_row(row, line, columns)
                if face is not None:
                    pixels.append(face[1])
                    self.samples.append(f"{self.csv_path}:{line}")
                    self.targets.append(face[0])
        self._pixels = np.stack(pixels) if pixels else np.zeros((0, SIDE, SIDE), np.uint8)

    def _columns(self, header: list[str] | None) -> dict[str, int]:
        names = [h.strip() for h in header or []]
        missing = [c for c in ("emotion", "pixels", "Usage") if c not in names]
        if missing:
            raise MaferError(f"{self.csv_path}:1: header {','.join(names) or '(empty)'} lacks column(s) "
                             f"{', '.join(missing)}; expected emotion,pixels,Usage (any order)")
        return {c: names.index(c) for c in ("emotion", "pixels", "Usage")}

    def _parse_row(self, row: list[str], line: int, columns: dict[str, int]) -> tuple[int, np.ndarray] | None:
        """``(label, 48x48 uint8)`` of a row of this split; None for rows of other splits or skipped bad rows."""
        where = f"{self.csv_path}:{line}"
        if len(row) <= max(columns.values()):
            self._bad(where, f"row has {len(row)} fields; expected at least {max(columns.values()) + 1}")
            return None
        usage = row[columns["Usage"]].strip()
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
        return gray_to_rgb(self._pixels[i])

    def image_file(self, i: int) -> str | None:
        return None  # the pixels are a csv column

    def _select(self, keep: list[int]) -> None:
        super()._select(keep)
        self._pixels = self._pixels[keep]
