"""Which faces are lowered in training, and to what (step 1 of the paper).

``r`` is drawn as ``2**int(3 + 5*U)``, i.e. uniformly from ``RESOLUTIONS``; each image is lowered
with probability ``p``, which a curriculum raises. The lowering itself (`lower_pil`, the
authors' PIL pixels; `lower`, its batched twin) lives with the other pixel operations in
`mafer.image`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mafer.errors import MaferError
from mafer.image import lower, lower_pil

RESOLUTIONS: tuple[int, ...] = (8, 16, 32, 64, 128)


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
