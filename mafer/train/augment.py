"""TEMPORARY: per-image fallback until mafer.batch_augment lands (then this file goes)."""

from __future__ import annotations

import torch
from torch import Tensor

try:
    from mafer.batch_augment import BatchAugment
except ImportError:
    from mafer.transforms import eval_transform, train_transform

    class BatchAugment:  # type: ignore[no-redef]
        def __init__(self, dataset: str, image_size: int, train: bool = True):
            self.transform = (train_transform if train else eval_transform)(dataset, image_size)

        def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
            return torch.stack([self.transform(image) for image in images])
