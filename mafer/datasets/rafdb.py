"""RAF-DB (basic): a list file of ``name label`` lines and the aligned 100x100 faces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from torch import Tensor

from mafer.datasets.base import SPLIT_SEED, FaceDataset, decode_image, file_digest, saved_split, stratified_pick
from mafer.errors import MaferError

LIST_FILE = Path("EmoLabel") / "list_patition_label.txt"  # sic: the release's spelling
IMAGE_DIR = Path("Image") / "aligned"
VAL_SPLIT_FILE = "mafer_rafdb_val_split.json"


def find_list_file(root: Path) -> Path:
    """``EmoLabel/list_patition_label.txt`` under ``root`` or ``root/basic`` (the release's folder)."""
    for base in (root, root / "basic"):
        if (base / LIST_FILE).is_file():
            return base / LIST_FILE
    raise MaferError(f"{root}: RAF-DB list file not found; expected {root / LIST_FILE} "
                     f"(lines 'train_00001.jpg 5') and images under {root / IMAGE_DIR}")


class RAFDB(FaceDataset):
    """RAF-DB basic expressions; label = file label - 1 (0 Surprise ... 6 Neutral).

    ``train_*`` images form train and val, ``test_*`` images test. Validation is ``val_fraction``
    (5 %) of each class drawn from train with a fixed seed and saved as JSON next to the list
    file (or under ``cache_dir`` / ``~/.cache/mafer`` when the dataset is read-only), so every run
    uses the same split.
    """

    name = "rafdb"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False, *, val_fraction: float = 0.05, cache_dir: str | os.PathLike | None = None):
        self.val_fraction = val_fraction
        self.cache_dir = cache_dir
        self.list_file = find_list_file(Path(root).expanduser())
        self.split_file: Path | None = None
        super().__init__(self.list_file.parent.parent, split, transform, skip_bad)

    def image_path(self, name: str) -> Path:
        """``Image/aligned/train_00001_aligned.jpg`` for list name ``train_00001.jpg``."""
        stem, ext = os.path.splitext(name)
        return self.root / IMAGE_DIR / f"{stem}_aligned{ext}"

    def _read_list(self) -> list[tuple[int, str, int]]:
        """``(line, name, label)`` for every well-formed line of the list file."""
        entries = []
        with open(self.list_file) as f:
            for line_no, line in enumerate(f, start=1):
                fields = line.split()
                if not fields:
                    continue
                where = f"{self.list_file}:{line_no}"
                if len(fields) != 2 or not fields[1].isdigit():
                    self._bad(where, f"line {line.strip()!r}; expected '<train|test>_NNNNN.jpg <label 1..7>'")
                    continue
                name, label = fields[0], int(fields[1])
                if not 1 <= label <= len(self.classes):
                    self._bad(where, f"label {label} for {name}; expected 1..{len(self.classes)}")
                    continue
                if not name.startswith(("train_", "test_")):
                    self._bad(where, f"image name {name!r}; expected it to start with train_ or test_")
                    continue
                entries.append((line_no, name, label - 1))
        return entries

    def _val_names(self, train: list[tuple[int, str, int]]) -> set[str]:
        def draw() -> dict:
            picked = stratified_pick([label for _, _, label in train], self.val_fraction, SPLIT_SEED)
            return {"seed": SPLIT_SEED, "fraction": self.val_fraction, "val": [train[i][1] for i in picked]}

        source = f"{file_digest(self.list_file)}:fraction={self.val_fraction}"
        split, self.split_file = saved_split(VAL_SPLIT_FILE, self.list_file.parent, self.cache_dir, source, draw)
        return set(split["val"])

    def _index(self) -> None:
        entries = self._read_list()
        if self.split == "test":
            chosen = [e for e in entries if e[1].startswith("test_")]
        else:
            train = [e for e in entries if e[1].startswith("train_")]
            val = self._val_names(train)
            chosen = [e for e in train if (e[1] in val) == (self.split == "val")]
        for line_no, name, label in chosen:
            path = self.image_path(name)
            if not path.is_file():
                self._bad(f"{self.list_file}:{line_no}", f"image {path} not found; expected the aligned face of {name}")
                continue
            self.samples.append(str(path))
            self.targets.append(label)

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])
