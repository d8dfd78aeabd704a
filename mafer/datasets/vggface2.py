"""VGGFace2: one folder of face images per identity; the classes are the identities."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from mafer.datasets.base import SPLIT_SEED, FaceDataset, decode_image, list_dirs, list_images, saved_split
from mafer.errors import MaferError

VAL_SPLIT_FILE = "mafer_vggface2_val_split.json"


class VGGFace2(FaceDataset):
    """VGGFace2 identities from ``<root>/train/<identity>/<image>.jpg``; classes = sorted identity folder names.

    Split ``val`` holds ``val_per_identity`` images of every identity (never all of them), drawn
    with a fixed seed and saved as JSON in ``<root>`` (or under ``cache_dir`` / ``~/.cache/mafer``
    when it is read-only); ``train`` is the rest.
    """

    name = "vggface2"
    splits = ("train", "val")

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False, *, val_per_identity: int = 2, cache_dir: str | os.PathLike | None = None):
        if val_per_identity < 1:
            raise MaferError(f"vggface2: val_per_identity must be >= 1, got {val_per_identity}")
        self.val_per_identity = val_per_identity
        self.cache_dir = cache_dir
        self.split_file: Path | None = None
        super().__init__(root, split, transform, skip_bad)

    def _identities(self) -> dict[str, list[Path]]:
        train_dir = self.root / "train"
        if not train_dir.is_dir():
            raise MaferError(f"{train_dir}: folder not found; expected VGGFace2 as train/<identity>/<image>.jpg")
        identities = {}
        for folder in list_dirs(train_dir):
            images = list_images(folder)
            if images:
                identities[folder.name] = images
            else:
                self._bad(str(folder), "identity folder has no images; expected at least one face image")
        if not identities:
            raise MaferError(f"{train_dir}: no identity folders with images; expected train/<identity>/<image>.jpg")
        return identities

    def _held_out(self, identities: dict[str, list[Path]]) -> dict[str, list[str]]:
        def draw() -> dict:
            rng = np.random.default_rng(SPLIT_SEED)
            val = {}
            for identity, images in identities.items():
                k = min(self.val_per_identity, len(images) - 1)
                val[identity] = sorted(images[j].name for j in rng.choice(len(images), size=k, replace=False))
            return {"seed": SPLIT_SEED, "val_per_identity": self.val_per_identity, "val": val}

        listing = "\n".join(f"{identity}:{len(images)}" for identity, images in identities.items())
        source = f"{hashlib.sha256(listing.encode()).hexdigest()}:per_identity={self.val_per_identity}"
        split, self.split_file = saved_split(VAL_SPLIT_FILE, self.root, self.cache_dir, source, draw)
        return split["val"]

    def _index(self) -> None:
        identities = self._identities()
        self.classes = list(identities)
        held_out = self._held_out(identities)
        for label, (identity, images) in enumerate(identities.items()):
            val = set(held_out.get(identity, ()))
            for path in images:
                if (path.name in val) == (self.split == "val"):
                    self.samples.append(str(path))
                    self.targets.append(label)

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])
