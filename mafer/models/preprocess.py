"""The one place where images become model input.

The VGGFace2 SE-ResNet-50 was trained in Caffe on **BGR** images with values 0..255 minus a
per-channel mean and **no** division by a standard deviation. Images travel through the
project as RGB ``uint8`` tensors; they become float only here, on the compute device.
The means per dataset are in :mod:`mafer.datasets.info` (``DatasetInfo.mean_bgr``).
"""

from __future__ import annotations

from typing import Sequence

import torch

__all__ = ["preprocess"]


def preprocess(images: torch.Tensor, mean_bgr: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """RGB images (uint8, or float on the 0..255 scale) ``[N,3,H,W]`` or ``[3,H,W]`` -> float32 BGR minus ``mean_bgr``."""
    if images.dim() not in (3, 4) or images.shape[-3] != 3:
        raise ValueError(f"expected RGB images [N,3,H,W] or [3,H,W], got shape {tuple(images.shape)}")
    dtype = images.dtype if images.is_floating_point() else torch.float32
    mean = torch.as_tensor(mean_bgr, dtype=dtype, device=images.device).reshape(3, 1, 1)
    return images.flip(-3).to(dtype) - mean
