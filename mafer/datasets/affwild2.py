"""AffWild2 (EXPR track): cropped and aligned video frames with one expression label per frame."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from torch import Tensor

from mafer.datasets.base import FaceDataset, decode_image
from mafer.errors import MaferError

ANNOTATION_DIRS = (Path("annotations") / "EXPR_Set", Path("EXPR_Set"),
                   Path("annotations") / "EXPR_Classification_Challenge")
SPLIT_DIRS = {"train": "Training_Set", "val": "Validation_Set"}
FRAMES_DIR = "cropped_aligned"


class AffWild2(FaceDataset):
    """AffWild2 expression frames: ``cropped_aligned/<video>/<00001>.jpg`` labelled by
    ``annotations/EXPR_Set/<Training_Set|Validation_Set>/<video>.txt`` (line i + 1 = frame i).

    Frames labelled -1 (no expression annotated) and frames without a face crop are dropped,
    as in the paper; how many of each is in ``dropped``.
    """

    name = "affwild2"
    splits = ("train", "val")

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False):
        self.dropped = {"unlabelled": 0, "no_face": 0}
        super().__init__(root, split, transform, skip_bad)

    def _annotation_dir(self) -> Path:
        for rel in ANNOTATION_DIRS:
            folder = self.root / rel / SPLIT_DIRS[self.split]
            if folder.is_dir():
                return folder
        raise MaferError(f"{self.root}: AffWild2 annotations not found; expected "
                         f"{self.root / ANNOTATION_DIRS[0] / SPLIT_DIRS[self.split]}/<video>.txt")

    def _index(self) -> None:
        frames_root = self.root / FRAMES_DIR
        if not frames_root.is_dir():
            raise MaferError(f"{frames_root}: folder not found; expected {FRAMES_DIR}/<video>/<00001>.jpg face crops")
        annotations = sorted(self._annotation_dir().glob("*.txt"))
        if not annotations:
            raise MaferError(f"{self._annotation_dir()}: no annotation files; expected one <video>.txt per video")
        for file in annotations:
            self._index_video(file, frames_root / file.stem)

    def _check_header(self, file: Path, header: str) -> bool:
        names = [n.strip().lower() for n in header.split(",")]
        expected = [c.lower() for c in self.classes]
        if names[:len(expected)] != expected:
            self._bad(f"{file}:1", f"header {header.strip()!r}; expected the class names {','.join(self.classes)}")
            return False
        return True

    def _index_video(self, file: Path, frames_dir: Path) -> None:
        lines = file.read_text().splitlines()
        if not lines:
            self._bad(str(file), "empty annotation file; expected a header line and one label per frame")
            return
        if not self._check_header(file, lines[0]):
            return
        if not frames_dir.is_dir():
            self._bad(str(file), f"no face crops for this video; expected the folder {frames_dir}")
            return
        crops = {p.name: p for p in frames_dir.iterdir()}
        for line_no, text in enumerate(lines[1:], start=2):
            text = text.strip()
            if not text:
                continue
            try:
                label = int(text)
            except ValueError:
                self._bad(f"{file}:{line_no}", f"label {text!r}; expected an integer -1..{len(self.classes) - 1}")
                continue
            if label == -1:
                self.dropped["unlabelled"] += 1
                continue
            if not 0 <= label < len(self.classes):
                self._bad(f"{file}:{line_no}", f"label {label}; expected -1 (none) or 0..{len(self.classes) - 1}")
                continue
            crop = crops.get(f"{line_no - 1:05d}.jpg")
            if crop is None:
                self.dropped["no_face"] += 1
                continue
            self.samples.append(str(crop))
            self.targets.append(label)

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])
