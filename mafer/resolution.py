"""Low-resolution faces made on the fly (step 1 of the paper).

An image is lowered by resizing it so that its shorter side becomes ``r`` (aspect kept) and
resizing it back to its original size. ``r`` is drawn as ``2**int(3 + 5*U)``, i.e. uniformly
from ``RESOLUTIONS``; each image is lowered with probability ``p``, which a curriculum raises.

Which implementation: the authors lower with **PIL** (``img.resize((int(w_n), int(h_n)),
Image.BILINEAR)`` and back, in ``datasets/affwild2.py`` of their repository, the only lowering
in their code), not with OpenCV, which they use for every other resize. PIL's bilinear filter
widens with the shrink factor (it low-pass filters), OpenCV's ``INTER_LINEAR`` does not, so the
two give different 8-px faces. ``lower_pil`` therefore calls Pillow itself and is what
evaluation (``mafer evaluate``, ``mafer embed``, ``eval_transform(resolution=r)``) uses: the same
pixels as the authors' code. ``lower`` is its batched twin for training on any device: an
antialiased bilinear ``F.interpolate`` (the same filter in float, without Pillow's 8-bit
rounding between the horizontal and vertical passes), within two gray levels of ``lower_pil``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from mafer.errors import MaferError

RESOLUTIONS: tuple[int, ...] = (8, 16, 32, 64, 128)


def lowered_size(height: int, width: int, r: int) -> tuple[int, int]:
    """Size ``(h, w)`` with the shorter side ``r`` and the aspect kept, truncated to whole pixels.

    The arithmetic is the authors' (``ratio = h / w``; the longer side is ``r / ratio`` or
    ``r * ratio``, then ``int``), so that rounding at the edge of a pixel goes their way too.
    """
    ratio = height / float(width)
    if height < width:
        return r, int(r / ratio)
    return int(r * ratio), r


def lower_pil(image: Tensor, r: int) -> Tensor:
    """The authors' lowering of one uint8 image ``[C, H, W]`` (any device; computed on the CPU).

    PIL bilinear to ``lowered_size(H, W, r)`` and PIL bilinear back to ``H x W``, channel by
    channel (Pillow filters every channel of an RGB image alike). Unchanged where ``r <= 0`` or
    ``r >= H`` or ``r >= W``. Returns uint8 ``[C, H, W]`` on the input's device.
    """
    if image.ndim != 3 or image.dtype != torch.uint8:
        raise MaferError(f"lower_pil() expects one uint8 image [C, H, W], got {image.dtype} {tuple(image.shape)}")
    height, width = image.shape[-2:]
    if r <= 0 or r >= height or r >= width:
        return image
    small_h, small_w = lowered_size(height, width, r)
    planes = []
    for plane in image.cpu().numpy():
        pil = Image.fromarray(plane, mode="L")
        planes.append(np.asarray(pil.resize((small_w, small_h), Image.BILINEAR).resize((width, height), Image.BILINEAR)))
    return torch.from_numpy(np.stack(planes)).to(image.device)


def _lower_batch(images: Tensor, r: int) -> Tensor:
    height, width = images.shape[-2:]
    if r <= 0 or r >= height or r >= width:
        return images
    small = F.interpolate(images, size=lowered_size(height, width, r), mode="bilinear",
                          align_corners=False, antialias=True)
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)


def lower(images: Tensor, r: int | Tensor) -> Tensor:
    """Lower the resolution of a batch ``[N, C, H, W]`` to ``r`` and bring it back to ``H x W``.

    ``r`` is one int for the whole batch or a LongTensor ``[N]`` with one value per image
    (0 = leave that image). Images are unchanged where ``r >= H`` or ``r >= W``. Works on any
    device (the training path); float batches stay float, uint8 batches are rounded back to
    uint8, within two gray levels of the authors' PIL lowering (``lower_pil``).
    """
    if images.ndim != 4:
        raise MaferError(f"lower() expects a batch [N, C, H, W], got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return lower(images.float(), r).round_().clamp_(0, 255).to(torch.uint8)
    if not images.is_floating_point():
        raise MaferError(f"lower() expects float or uint8 images, got {images.dtype}")
    if not isinstance(r, Tensor):
        return _lower_batch(images, int(r))
    r = r.reshape(-1)
    if r.numel() != images.shape[0]:
        raise MaferError(f"lower(): {r.numel()} resolutions for {images.shape[0]} images")
    out = images.clone()
    r_cpu = r.cpu()
    for value in torch.unique(r_cpu).tolist():  # one resize per distinct r, not per image
        if value <= 0:
            continue
        idx = (r_cpu == value).nonzero().squeeze(1).to(images.device)
        out[idx] = _lower_batch(images[idx], value)
    return out


def sample_resolutions(n: int, p: float, generator: torch.Generator | None = None) -> Tensor:
    """Draw one resolution per image: ``2**int(3 + 5*U)`` with probability ``p``, else 0 (not lowered).

    Returns a LongTensor ``[n]`` on the generator's device (CPU without a generator).
    """
    if not 0.0 <= p <= 1.0:
        raise MaferError(f"lowering probability must be in [0, 1], got {p}")
    device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(n, generator=generator, device=device)
    r = torch.pow(2, (3 + 5 * u).long())
    lowered = torch.rand(n, generator=generator, device=device) < p
    return torch.where(lowered, r, torch.zeros_like(r))


class LoweringCurriculum:
    """Probability of lowering an image, raised by ``step`` every ``every`` steps from ``start`` up to ``stop``."""

    def __init__(self, start: float = 0.1, step: float = 0.1, stop: float = 1.0, every: int = 1000):
        if every < 1:
            raise MaferError(f"curriculum 'every' must be a positive number of steps, got {every}")
        if not 0.0 <= start <= 1.0 or not 0.0 <= stop <= 1.0:
            raise MaferError(f"curriculum start and stop must be in [0, 1], got {start} and {stop}")
        self.start, self.step, self.stop, self.every = start, step, stop, every

    def p(self, step: int) -> float:
        """Lowering probability at training step ``step`` (0-based)."""
        value = self.start + self.step * (step // self.every)
        # rounding keeps 0.1 + 2 * 0.1 == 0.3 so logs and comparisons stay clean
        return round(min(value, self.stop), 10)

    def __repr__(self) -> str:
        return f"LoweringCurriculum(start={self.start}, step={self.step}, stop={self.stop}, every={self.every})"


class RandomLowering(torch.nn.Module):
    """Per-image transform: lower a uint8 or float ``[C, H, W]`` (or ``[N, C, H, W]``) image.

    With ``r`` set, always to ``r`` (evaluation at a fixed resolution); otherwise with probability
    ``p`` to an ``r`` drawn as in ``sample_resolutions`` from torch's global generator. The paper
    lowers the original image, so this goes first, before any resize. A single uint8 image is
    lowered by ``lower_pil`` (the authors' pixels), anything else by ``lower``.
    """

    def __init__(self, p: float = 1.0, r: int | None = None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise MaferError(f"lowering probability must be in [0, 1], got {p}")
        self.p, self.r = p, r

    def forward(self, image: Tensor) -> Tensor:
        r = int(self.r) if self.r is not None else int(sample_resolutions(1, self.p).item())
        if image.ndim == 3 and image.dtype == torch.uint8:
            return lower_pil(image, r)
        batch = image if image.ndim == 4 else image.unsqueeze(0)
        out = lower(batch, r)
        return out if image.ndim == 4 else out.squeeze(0)

    def extra_repr(self) -> str:
        return f"r={self.r}" if self.r is not None else f"p={self.p}"
