"""AffWild2 (EXPR track): cropped and aligned video frames with one expression label per frame."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from torch import Tensor

from mafer.datasets.base import FaceDataset, decode_image, list_images, natural_key, printable
from mafer.errors import MaferError
from mafer.textfile import read_lines

# the ABAW2 release (2021, the paper's) and the later challenges' folders
ANNOTATION_DIRS = {"EXPR_Set": "ABAW2 EXPR_Set", "EXPR_Classification_Challenge": "ABAW5 EXPR_Classification_Challenge",
                   "EXPR_Recognition_Challenge": "ABAW6+ EXPR_Recognition_Challenge"}
SPLIT_DIRS = {"train": ("Training_Set", "Train_Set"), "val": ("Validation_Set",)}
FRAMES_DIRS = ("cropped_aligned", "cropped_images_aligned/cropped_aligned")  # the release's, the authors' nesting
OTHER = "Other"  # the later challenges' eighth class (label 7), outside the paper's seven
# a crop's name: anything, the frame number (the last run of digits, any padding), then no digit
CROP_NAME = re.compile(r"^(.*?)([0-9]+)([^0-9]*)$")
RELEASE_NAMING = ("", ".jpg")  # the release's 00001.jpg


def frame_crops(folder: Path) -> tuple[dict[int, Path], tuple[str, str] | None, list[Path]]:
    """``(frame number -> crop, naming, ignored files)`` of the face crops in ``folder``.

    A crop's frame number is the last number in its name, whatever the padding or prefix: the
    release's ``00001.jpg``, OpenFace's ``frame_det_00_000001.bmp`` and ``1.jpg`` are all frame 1
    (annotation line 2). The naming (prefix, suffix) with the most frames is used -- OpenFace
    writes ``frame_det_01_...`` for a second face in a frame, which is then ignored -- and its
    files in ``natural_key`` order, the first one winning where two name one frame (``1.jpg``
    and ``001.jpg``). ``naming`` is None when no image file has a number in its name.
    """
    namings: dict[tuple[str, str], dict[int, Path]] = {}
    images = list_images(folder)
    for path in images:
        match = CROP_NAME.match(path.name)
        if match:
            namings.setdefault((match[1], match[3]), {}).setdefault(int(match[2]), path)
    if not namings:
        return {}, None, images
    naming, crops = max(namings.items(), key=lambda item: len(item[1]))  # the first of equals: natural order
    used = set(crops.values())
    return crops, naming, [p for p in images if p not in used]


class AffWild2(FaceDataset):
    """AffWild2 expression frames: ``cropped_aligned/<video>/<00001>.jpg`` labelled by
    ``annotations/EXPR_Set/<Training_Set|Validation_Set>/<video>.txt`` (line i + 1 = frame i).

    Frames labelled -1 (no expression annotated) and frames without a face crop are dropped,
    as in the paper; how many of each is in ``dropped``. Crops are matched to frames by the
    number in their names (`frame_crops`), so OpenFace's ``frame_det_00_000001.bmp`` (in
    ``<video>/`` or OpenFace's ``<video>_aligned/``) reads like ``00001.jpg``; another naming
    is named in ``variant``, and ignored crop files in ``details``. The annotations of the ABAW2 release
    (``EXPR_Set/Training_Set``) and of the later challenges (``EXPR_Classification_Challenge/
    Train_Set``, with an eighth class ``Other``) are read, at the top level or under
    ``annotations/``; ``Other`` frames are dropped as well (the paper's setting has seven
    classes) and counted under ``dropped["other"]``. Frames live in ``cropped_aligned/`` or the
    authors' nested ``cropped_images_aligned/cropped_aligned/``.
    """

    name = "affwild2"
    splits = ("train", "val")

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False):
        self.dropped = {"unlabelled": 0, "no_face": 0, "other": 0}
        self.namings: dict[tuple[str, str], str] = {}  # crop naming -> an example file name
        self.ignored_crops: list[Path] = []
        super().__init__(root, split, transform, skip_bad)

    def _annotation_dir(self) -> Path:
        for base in (self.root, self.root / "annotations"):
            for rel, edition in ANNOTATION_DIRS.items():
                for split_dir in SPLIT_DIRS[self.split]:
                    folder = base / rel / split_dir
                    if folder.is_dir():
                        self.variant = edition
                        if rel != "EXPR_Set":
                            self.variant_note = (f"the paper used the ABAW2 release (EXPR_Set); {edition} has "
                                                 f"other videos and an eighth class {OTHER}")
                        return folder
        expected = " or ".join(f"{rel}/{SPLIT_DIRS[self.split][0]}" for rel in ANNOTATION_DIRS)
        raise MaferError(f"{self.root}: AffWild2 expression annotations not found; expected {expected} "
                         f"(of <video>.txt files) in {self.root} or {self.root / 'annotations'}")

    def _frames_root(self) -> Path:
        for rel in FRAMES_DIRS:
            if (self.root / rel).is_dir():
                return self.root / rel
        raise MaferError(f"{self.root / FRAMES_DIRS[0]}: folder not found; expected {' or '.join(FRAMES_DIRS)} "
                         "holding <video>/<00001>.jpg face crops")

    def _index(self) -> None:
        frames_root = self._frames_root()
        folder = self._annotation_dir()
        annotations = sorted(folder.glob("*.txt"), key=natural_key)
        if not annotations:
            raise MaferError(f"{folder}: no annotation files; expected one <video>.txt per video")
        self.videos = len(annotations)
        self.frames_root = frames_root
        for file in annotations:
            frames_dir = frames_root / file.stem
            if not frames_dir.is_dir() and (frames_root / f"{file.stem}_aligned").is_dir():
                frames_dir = frames_root / f"{file.stem}_aligned"  # OpenFace's output folder
            self._index_video(file, frames_dir)
        self._name_crop_variant()

    def _name_crop_variant(self) -> None:
        """Say in ``variant`` / ``details`` how crops were matched when they are not named as the release's."""
        other = {naming: example for naming, example in self.namings.items() if naming != RELEASE_NAMING}
        if other:
            examples = ", ".join(other.values())
            openface = " (OpenFace's naming)" if any(prefix.startswith("frame_det_") for prefix, _ in other) else ""
            self.variant += f"; face crops named like {examples}{openface}, matched to frames by their number"
        if self.ignored_crops:
            self.details.append(f"{len(self.ignored_crops)} image file(s) beside the crops ignored as another naming "
                                f"(e.g. {printable(str(self.ignored_crops[0].relative_to(self.frames_root)))}; "
                                "OpenFace names a second face in a frame frame_det_01_...)")

    def _empty_hint(self) -> str:
        if not self.dropped["no_face"]:
            return ""
        if self.namings or self.ignored_crops:
            found = "; ".join(self.namings.values()) or printable(self.ignored_crops[0].name)
            found = f"crops here are named like {found}"
        else:
            found = "the video folders hold no image files"
        return (f"all {self.dropped['no_face']} labelled frames were dropped for want of a face crop in "
                f"{self.frames_root}/<video>/ ({found}); expected a crop per frame named by its number "
                "(00001.jpg for frame 1, annotation line 2)")

    def _check_header(self, file: Path, header: str) -> bool:
        names = [n.strip().lower() for n in header.split(",")]
        expected = [c.lower() for c in self.classes]
        if names != expected and names != expected + [OTHER.lower()]:
            self._bad(f"{file}:1", f"header {header.strip()!r}; expected the class names {','.join(self.classes)} "
                                   f"(and {OTHER}, in the later ABAW challenges)")
            return False
        return True

    def _index_video(self, file: Path, frames_dir: Path) -> None:
        lines = read_lines(file)
        if not lines:
            self._bad(str(file), "empty annotation file; expected a header line and one label per frame")
            return
        if not self._check_header(file, lines[0]):
            return
        eight = int(lines[0].strip().lower().endswith(OTHER.lower()))
        if not frames_dir.is_dir():
            self._bad(str(file), f"no face crops for this video; expected the folder {frames_dir}")
            return
        crops, naming, ignored = frame_crops(frames_dir)
        if naming is not None:
            self.namings.setdefault(naming, printable(crops[min(crops)].name))
        self.ignored_crops += ignored
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
            if label == len(self.classes) and eight:
                self.dropped["other"] += 1
                continue
            if not 0 <= label < len(self.classes):
                top = len(self.classes) - 1 + eight
                self._bad(f"{file}:{line_no}", f"label {label}; expected -1 (none) or 0..{top}")
                continue
            crop = crops.get(line_no - 1)
            if crop is None:
                self.dropped["no_face"] += 1
                continue
            self.samples.append(str(crop))
            self.targets.append(label)

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])
