"""Batched image decoding: JPEG files to one uint8 RGB batch ``[N, 3, S, S]``.

On CUDA the JPEGs of a batch are decoded together by nvJPEG
(``torchvision.io.decode_jpeg(list, device="cuda")``), which keeps the CPU free for
reading files; elsewhere, and for files that are not JPEG, each image is decoded on the
CPU with ``torchvision.io.decode_image``. With ``size`` each image is squashed to
``size x size`` like the authors' ``A.Resize(size, size)``, by ``mafer.datasets.base.resize_square``
as ``FaceDataset.load_uint8(size)`` does, so that the images stack into one batch: OpenCV itself
for images on the CPU; for images decoded on the GPU, bilinear ``F.interpolate`` there, within
one gray level of OpenCV.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import Tensor

from mafer.datasets.base import resize_square
from mafer.errors import MaferError

_JPEG_MAGIC = b"\xff\xd8\xff"


def read_bytes(paths: Sequence[str | Path]) -> list[Tensor]:
    """Read each file into a 1-D uint8 CPU tensor (what the decoders take)."""
    data = []
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise MaferError(f"{path}: cannot read image file ({exc.strerror or exc})") from exc
        if not raw:
            raise MaferError(f"{path}: empty file, expected a JPEG or PNG image")
        data.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    return data


def is_jpeg(data: Tensor) -> bool:
    """True when the encoded bytes start with the JPEG start-of-image marker."""
    return data.numel() >= 3 and bytes(data[:3].tolist()) == _JPEG_MAGIC


@contextmanager
def _quiet_deprecation() -> Iterator[None]:
    # torchvision >= 0.29 warns on every decode call that TorchCodec will take over
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=DeprecationWarning)
        yield


def _decode_cpu(data: Tensor, path: str | Path) -> Tensor:
    # imported here: torchvision's import pulls in torch._dynamo (seconds per process), which
    # processes that never decode image files (training from cached uint8 arrays) need not pay
    from torchvision.io import ImageReadMode, decode_image

    try:
        with _quiet_deprecation():
            return decode_image(data, mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise MaferError(f"{path}: not a readable image ({exc}); expected a JPEG or PNG file") from exc


def _decode_cuda(data: list[Tensor], paths: Sequence[str | Path], device: torch.device) -> list[Tensor]:
    """nvJPEG decode of the JPEGs in one call; other formats, and a batch that fails, go through the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpeg_idx = [i for i, d in enumerate(data) if is_jpeg(d)]
    out: list[Tensor | None] = [None] * len(data)
    if jpeg_idx:
        try:
            with _quiet_deprecation():
                decoded = decode_jpeg([data[i] for i in jpeg_idx], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpeg_idx, decoded):
                out[i] = image
        except RuntimeError:
            pass  # nvJPEG returns nothing when one file is bad: the CPU path below names it
    for i, image in enumerate(out):
        if image is None:
            out[i] = _decode_cpu(data[i], paths[i]).to(device, non_blocking=True)
    return out  # type: ignore[return-value]


def resize_to_batch(images: list[Tensor], size: int | None) -> Tensor:
    """Stack ``[3, H, W]`` uint8 images into ``[N, 3, S, S]``, resizing each shape group once.

    Each image is squashed to ``size x size`` (aspect not kept, the authors' ``Resize``) by
    ``mafer.datasets.base.resize_square``, as the dataset cache does: OpenCV on the CPU,
    within one gray level of it on the GPU. With ``size=None`` all images must already share
    one shape.
    """
    if not images:
        raise MaferError("no images to decode: the list of files is empty")
    if size is None:
        shapes = {tuple(img.shape) for img in images}
        if len(shapes) > 1:
            raise MaferError(f"images have different sizes {sorted(shapes)}; pass size= to resize them to one")
        return torch.stack(images)
    out = torch.empty((len(images), 3, size, size), dtype=torch.uint8, device=images[0].device)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(i)
    for shape, idx in groups.items():
        batch = torch.stack([images[i] for i in idx])
        out[torch.tensor(idx, device=out.device)] = resize_square(batch, size)
    return out


def decode_images(paths: Sequence[str | Path], size: int | None = None,
                  device: str | torch.device = "cpu") -> Tensor:
    """Decode image files into one uint8 RGB batch ``[N, 3, S, S]`` on ``device``.

    JPEGs are decoded by nvJPEG when ``device`` is CUDA (one call for the whole list);
    otherwise, and for PNGs, on the CPU. Gray images come back with 3 equal channels.
    A missing, empty or corrupt file raises ``MaferError`` naming it.
    """
    return decode_bytes(read_bytes(paths), size, device, names=paths)


def decode_bytes(data: Sequence[Tensor], size: int | None = None, device: str | torch.device = "cpu",
                 names: Sequence[str | Path] | None = None) -> Tensor:
    """``decode_images`` for encoded images already in memory (1-D uint8 CPU tensors);
    ``names`` label them in error messages (default: their position in the list)."""
    device = torch.device(device)
    names = list(names) if names is not None else [f"image #{i}" for i in range(len(data))]
    if device.type == "cuda":
        images = _decode_cuda(list(data), names, device)
    else:
        images = [_decode_cpu(d, name).to(device) for d, name in zip(data, names)]
    return resize_to_batch(images, size)
