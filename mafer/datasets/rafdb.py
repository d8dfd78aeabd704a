"""RAF-DB (basic): a list file of ``name label`` lines and the aligned 100x100 faces.

Two distributions circulate: the release (``EmoLabel/list_patition_label.txt`` -- the
release's spelling; many copies and repositories spell it ``list_partition_label.txt`` -- and
``Image/aligned/``), and a repackaging into class folders ``train/<1..7>/`` and
``test/<1..7>/`` whose folder names are the release's labels 1..7. Variants of the release that
are read the same way, and named in ``variant``: list lines with a third value
(``train_00001.jpg 5 1``, a coarse label some repositories add; ignored, the label is the
second value), and aligned faces saved without the ``_aligned`` suffix
(``Image/aligned/train_00001.jpg``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from torch import Tensor

from mafer.datasets.base import (SPLIT_SEED, FaceDataset, authors_val_pick, decode_image, list_dirs,
                                 list_images, natural_key, printable)
from mafer.errors import MaferError
from mafer.textfile import read_lines

LIST_NAMES = ("list_patition_label.txt", "list_partition_label.txt")  # the release's spelling (sic), the common one
LIST_FILE = Path("EmoLabel") / LIST_NAMES[0]
IMAGE_DIR = Path("Image") / "aligned"
CLASS_FOLDERS = tuple(str(k) for k in range(1, 8))


def find_list_file(root: Path) -> Path | None:
    """``EmoLabel/list_pa(r)tition_label.txt`` under ``root`` or ``root/basic`` (the release's folder)."""
    for base in (root, root / "basic"):
        for name in LIST_NAMES:
            if (base / "EmoLabel" / name).is_file():
                return base / "EmoLabel" / name
    return None


def find_class_folders(root: Path) -> Path | None:
    """The folder holding ``train/<1..7>/`` and ``test/<1..7>/`` under ``root`` or ``root/DATASET``."""
    for base in (root, root / "DATASET"):
        if all((base / split).is_dir() and any((base / split / k).is_dir() for k in CLASS_FOLDERS)
               for split in ("train", "test")):
            return base
    return None


class RAFDB(FaceDataset):
    """RAF-DB basic expressions; label = file label - 1 (0 Surprise ... 6 Neutral).

    ``train_*`` images form train and val, ``test_*`` images test. Validation follows the
    authors' rule: ``int(val_fraction * n_c)`` images of every class c (``n_c`` = the class's
    train and test images together), a draw seeded with ``SPLIT_SEED`` from the class's
    training images sorted by name. It is a pure function of the parsed labels and the seed --
    the same on every machine, whatever the list file's line ends or encoding -- and is kept in
    memory: nothing is written next to the data.
    """

    name = "rafdb"

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False, *, val_fraction: float = 0.05):
        if not 0 <= val_fraction < 1:
            raise MaferError(f"rafdb: val_fraction must be in [0, 1), got {val_fraction}")
        self.val_fraction = val_fraction
        self._aligned: set[str] | None = None
        self.third_values = 0  # list lines with a third value
        root = Path(root).expanduser()
        self.list_file = find_list_file(root) if root.is_dir() else None
        self.class_root = find_class_folders(root) if root.is_dir() and self.list_file is None else None
        if root.is_dir() and self.list_file is None and self.class_root is None:
            misspelt = sorted(str(p.relative_to(root)) for p in root.glob("**/list_*label*.txt"))[:3]
            hint = f" (found {', '.join(misspelt)}: expected the name {' or '.join(LIST_NAMES)})" if misspelt else ""
            raise MaferError(f"{root}: RAF-DB not found{hint}; expected {root / LIST_FILE} (lines "
                             f"'train_00001.jpg 5') with images under {root / IMAGE_DIR}, or class folders "
                             f"{root / 'train'}/<1..7>/ and {root / 'test'}/<1..7>/")
        if self.list_file is not None:
            root = self.list_file.parent.parent
            self.variant = f"release (EmoLabel/{self.list_file.name}, Image/aligned)"
        elif self.class_root is not None:
            root = self.class_root
            self.variant = "class folders train/<1..7>, test/<1..7>"
        super().__init__(root, split, transform, skip_bad)

    def image_path(self, name: str) -> Path:
        """``Image/aligned/train_00001_aligned.jpg`` for list name ``train_00001.jpg``, or
        ``Image/aligned/train_00001.jpg`` where only the face without the suffix is there."""
        stem, ext = os.path.splitext(name)
        suffixed = f"{stem}_aligned{ext}"
        files = self._aligned_files()
        return self.root / IMAGE_DIR / (name if suffixed not in files and name in files else suffixed)

    def _aligned_files(self) -> set[str]:
        """File names in ``Image/aligned`` (listed once: one ``stat`` per image would be slow on network disks)."""
        if self._aligned is None:
            folder = self.root / IMAGE_DIR
            self._aligned = set(os.listdir(folder)) if folder.is_dir() else set()
        return self._aligned

    def _read_list(self) -> list[tuple[str, str, int]]:
        """``(where, name, label)`` for every well-formed line of the list file."""
        entries = []
        for line_no, line in enumerate(read_lines(self.list_file), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{self.list_file}:{line_no}"
            if (len(fields) not in (2, 3) or not fields[1].isdigit()
                    or (len(fields) == 3 and not fields[2].lstrip("-").isdigit())):
                self._bad(where, f"line {printable(line.strip())!r}; expected '<train|test>_NNNNN.jpg <label 1..7>' "
                                 "(optionally followed by an integer, such as a coarse label)")
                continue
            self.third_values += len(fields) == 3
            name, label = fields[0], int(fields[1])
            if not 1 <= label <= len(self.classes):
                self._bad(where, f"label {label} for {name}; expected 1..{len(self.classes)}")
                continue
            if not name.startswith(("train_", "test_")):
                self._bad(where, f"image name {name!r}; expected it to start with train_ or test_")
                continue
            entries.append((where, name, label - 1))
        return entries

    def _read_class_folders(self) -> list[tuple[str, str, int]]:
        """``(path, "<split>_/<file>", label)`` for every image of the class-folder repackaging."""
        entries = []
        for split in ("train", "test"):
            for folder in list_dirs(self.root / split):
                if folder.name not in CLASS_FOLDERS:
                    self._bad(str(folder), f"folder name {folder.name!r}; expected the RAF-DB labels 1..7")
                    continue
                entries += [(str(p), f"{split}_/{p.name}", int(folder.name) - 1) for p in list_images(folder)]
        return entries

    def _val_names(self, train: list[tuple[str, str, int]], test: list[tuple[str, str, int]]) -> set[str]:
        train = sorted(train, key=lambda e: natural_key(e[1]))
        all_counts = [0] * len(self.classes)
        for _, _, label in train + test:
            all_counts[label] += 1
        picked = authors_val_pick([label for _, _, label in train], all_counts, self.val_fraction, SPLIT_SEED)
        return {train[i][1] for i in picked}

    def _release_variant(self, entries: list[tuple[str, str, int]]) -> None:
        """Name the release's variant in ``variant``; MaferError when none of the listed faces is there."""
        files = self._aligned_files()
        paths = [self.image_path(n) for _, n, _ in entries]
        suffixed = sum(p.name in files and p.name != n for p, (_, n, _) in zip(paths, entries))
        plain = sum(p.name == n for p, (_, n, _) in zip(paths, entries))
        if entries and not suffixed and not plain:
            folder = self.root / IMAGE_DIR
            found = (f"it holds {len(files)} files, e.g. {printable(sorted(files, key=natural_key)[0])}" if files
                     else "it is empty" if folder.is_dir() else "it does not exist")
            others = sorted(p.name for p in (self.root / "Image").iterdir() if p.is_dir()) \
                if (self.root / "Image").is_dir() else []
            raise MaferError(f"{folder}: none of the {len(entries)} faces listed in {self.list_file} is there "
                             f"(looked for {paths[0].name} and {entries[0][1]}); "
                             f"{found}" + (f"; Image/ holds {', '.join(others)}" if others else "")
                             + "; expected the aligned 100x100 faces of the release in Image/aligned")
        listing = f"EmoLabel/{self.list_file.name}"
        if self.third_values:
            on = "per line" if self.third_values == len(entries) else f"on {self.third_values} line(s)"
            listing += f" with a third value {on} (ignored: the label is the second)"
        images = "Image/aligned"
        if plain:
            images += (" without the _aligned suffix" if not suffixed
                       else f" ({plain} of {suffixed + plain} faces without the _aligned suffix)")
        self.variant = f"release ({listing}, {images})"

    def _index(self) -> None:
        entries = self._read_list() if self.list_file is not None else self._read_class_folders()
        if self.list_file is not None:
            self._release_variant(entries)
        train = [e for e in entries if e[1].startswith("train_")]
        test = [e for e in entries if e[1].startswith("test_")]
        if self.split == "test":
            chosen = test
        else:
            val = self._val_names(train, test)
            chosen = [e for e in train if (e[1] in val) == (self.split == "val")]
            if self.split == "val" and not chosen and train:
                raise MaferError(f"{self.root}: the validation split is empty: int({self.val_fraction} x images "
                                 "of the class) is 0 for every class, too few images for the authors' rule")
        for where, name, label in chosen:
            path = self.image_path(name) if self.list_file is not None else Path(where)
            if self.list_file is not None and not path.is_file():
                self._bad(where, f"image {path} not found (nor {name}, without the suffix); expected the aligned "
                                 f"face of {name}")
                continue
            self.samples.append(str(path))
            self.targets.append(label)

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])
