"""Face datasets of the paper: FER2013, RAF-DB, Oulu-CASIA, AffWild2 (EXPR) and VGGFace2.

``get_dataset(name, data_dir, split)`` is the one entry point; every reader is a
torchvision-like ``FaceDataset`` (root, split, transform) yielding uint8 RGB ``[3, H, W]`` images.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable

from mafer.datasets.affwild2 import AffWild2
from mafer.datasets.base import FaceDataset, decode_image, resolve_root
from mafer.datasets.fer2013 import FER2013
from mafer.datasets.info import DATASETS, DatasetInfo, dataset_info
from mafer.datasets.oulucasia import OuluCASIA
from mafer.datasets.rafdb import RAFDB
from mafer.datasets.vggface2 import VGGFace2
from mafer.errors import MaferError

READERS: dict[str, type[FaceDataset]] = {
    "fer2013": FER2013, "rafdb": RAFDB, "oulucasia": OuluCASIA, "affwild2": AffWild2, "vggface2": VGGFace2,
}


def get_dataset(name: str, data_dir: str | os.PathLike, split: str = "train", *, fold: int | None = None,
                folds: int = 10, protocol: str = "image", transform: Callable | None = None,
                skip_bad: bool = False, **options: Any) -> FaceDataset:
    """The ``split`` of dataset ``name`` found in ``data_dir`` (``data_dir/name`` if it exists, else ``data_dir``).

    ``fold`` / ``folds`` / ``protocol`` apply to Oulu-CASIA only; ``options`` are reader-specific
    (``last_frames`` / ``camera`` / ``illumination`` for Oulu-CASIA, ``val_fraction`` for RAF-DB,
    ``val_per_identity`` for VGGFace2). ``data_dir`` may also hold (or be) an archive of the
    dataset: FER2013's CSV is read from it in place, the other readers refuse it with the command
    that extracts it. Readers never write into the dataset folder. Each reader says which
    distribution it found in ``variant`` and, when its numbers are not comparable with the
    paper's, why in ``variant_note``.
    """
    dataset_info(name)  # MaferError for unknown names
    reader = READERS[name]
    kwargs = dict(options)
    if reader is OuluCASIA:
        kwargs.update(fold=fold, folds=folds, protocol=protocol)
    elif fold is not None:
        raise MaferError(f"{name}: has fixed splits; fold={fold} applies to oulucasia only")
    accepted = set(inspect.signature(reader.__init__).parameters) - {"self", "root", "split", "transform", "skip_bad"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise MaferError(f"{name}: unknown option(s) {', '.join(unknown)}; expected {', '.join(sorted(accepted)) or 'none'}")
    return reader(resolve_root(data_dir, name), split, transform=transform, skip_bad=skip_bad, **kwargs)


__all__ = ["DATASETS", "DatasetInfo", "FaceDataset", "READERS", "dataset_info", "decode_image", "get_dataset",
           "AffWild2", "FER2013", "OuluCASIA", "RAFDB", "VGGFace2"]
