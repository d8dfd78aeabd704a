"""VGGFace2: one folder of face images per identity; the classes are the identities."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from torch import Tensor

from mafer.datasets.base import SPLIT_SEED, FaceDataset, decode_image, list_dirs, list_images
from mafer.errors import MaferError


class VGGFace2(FaceDataset):
    """VGGFace2 identities from ``<root>/train/<identity>/<image>.jpg``; classes = sorted identity folder names.

    Split ``val`` holds ``val_per_identity`` images of every identity (never all of them), drawn
    with a fixed seed from the sorted listing of the identity folders, so it is the same on every
    run without being saved anywhere (nothing is written next to the data); ``train`` is the rest.
    """

    name = "vggface2"
    splits = ("train", "val")

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None,
                 skip_bad: bool = False, *, val_per_identity: int = 2):
        if val_per_identity < 1:
            raise MaferError(f"vggface2: val_per_identity must be >= 1, got {val_per_identity}")
        self.val_per_identity = val_per_identity
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

    def _held_out(self, identities: dict[str, list[Path]]) -> dict[str, set[str]]:
        rng = np.random.default_rng(SPLIT_SEED)
        val = {}
        for identity, images in identities.items():
            k = min(self.val_per_identity, len(images) - 1)
            val[identity] = {images[j].name for j in rng.choice(len(images), size=k, replace=False)}
        return val

    def _index(self) -> None:
        identities = self._identities()
        self.classes = list(identities)
        held_out = self._held_out(identities)
        for label, (identity, images) in enumerate(identities.items()):
            val = held_out[identity]
            for path in images:
                if (path.name in val) == (self.split == "val"):
                    self.samples.append(str(path))
                    self.targets.append(label)

    def _decode(self, i: int) -> Tensor:
        return decode_image(self.samples[i])
