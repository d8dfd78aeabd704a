"""Face datasets of the paper: FER2013, RAF-DB, Oulu-CASIA, AffWild2 (EXPR) and VGGFace2.

``get_dataset(name, data_dir, split)`` is the one entry point; every reader is a
torchvision-like ``FaceDataset`` (root, split, transform) yielding uint8 RGB ``[3, H, W]`` images.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import TYPE_CHECKING, Any, Callable

from mafer.datasets.info import DATASETS, DatasetInfo, dataset_info
from mafer.errors import MaferError

if TYPE_CHECKING:
    from mafer.datasets.base import FaceDataset

# The readers (and torch, OpenCV, Pillow with them) are imported on first use (PEP 562): the
# dataset facts in `mafer.datasets.info` are read by processes that never open an image
# (`mafer reproduce`, `mafer synth`, the pipeline's planning), which need not pay for torch.
# dataset name (also its reader's module) -> reader class name
_READER_NAMES = {"fer2013": "FER2013", "rafdb": "RAFDB", "oulucasia": "OuluCASIA", "affwild2": "AffWild2",
                 "vggface2": "VGGFace2"}
# public name -> the module of mafer.datasets that defines it
_LAZY = {"FaceDataset": "base", "decode_image": "base", "resolve_root": "base",
         **{cls: module for module, cls in _READER_NAMES.items()}}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"mafer.datasets.{_LAZY[name]}"), name)
    if name == "READERS":  # dataset name -> reader class
        return {key: __getattr__(cls) for key, cls in _READER_NAMES.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    reader = __getattr__(_READER_NAMES[name])
    kwargs = dict(options)
    if name == "oulucasia":
        kwargs.update(fold=fold, folds=folds, protocol=protocol)
    elif fold is not None:
        raise MaferError(f"{name}: has fixed splits; fold={fold} applies to oulucasia only")
    accepted = set(inspect.signature(reader.__init__).parameters) - {"self", "root", "split", "transform", "skip_bad"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise MaferError(f"{name}: unknown option(s) {', '.join(unknown)}; expected {', '.join(sorted(accepted)) or 'none'}")
    from mafer.datasets.base import resolve_root

    return reader(resolve_root(data_dir, name), split, transform=transform, skip_bad=skip_bad, **kwargs)


__all__ = ["DATASETS", "DatasetInfo", "FaceDataset", "READERS", "dataset_info", "decode_image", "get_dataset",
           "AffWild2", "FER2013", "OuluCASIA", "RAFDB", "VGGFace2"]
