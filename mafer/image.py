"""The operations on a face image's pixels, in one module: decoding (`decode_file`, one file by
Pillow, for the dataset readers and ``mafer predict``; `decode_images`, JPEG files to one uint8
RGB batch ``[N, 3, S, S]``), the authors' squash-resize (`resize_square`) and lowering
(`lower_pil`, `lower`). Datasets, transforms, training and evaluation import them from here.

Every image comes out as a viewer shows it, as uint8 RGB (see `to_rgb`): 16-bit and 32-bit
gray are scaled to 0..255, not clamped; alpha is composed onto white; palette, CMYK and
bilevel images are converted. An image over Pillow's decompression-bomb limit is refused with
its size (`max_pixels`).

On CUDA the JPEGs of a batch are decoded together by nvJPEG
(``torchvision.io.decode_jpeg(list, device="cuda")``), which keeps the CPU free for
reading files; elsewhere JPEGs are decoded one by one on the CPU by
``torchvision.io.decode_jpeg`` and other formats by `decode_file`. With ``size`` each image is squashed to
``size x size`` like the authors' ``A.Resize(size, size)``, by `resize_square`
as ``FaceDataset.load_uint8(size)`` does, so that the images stack into one batch: OpenCV itself
for images on the CPU; for images decoded on the GPU, bilinear ``F.interpolate`` there, within
one gray level of OpenCV.

Lowering (step 1 of the paper, and every low-resolution test): an image is resized so that its
shorter side becomes ``r`` (aspect kept) and resized back to its original size. The authors
lower with **PIL** (``img.resize((int(w_n), int(h_n)), Image.BILINEAR)`` and back, in
``datasets/affwild2.py`` of their repository, the only lowering in their code), not with OpenCV,
which they use for every other resize. PIL's bilinear filter widens with the shrink factor (it
low-pass filters), OpenCV's ``INTER_LINEAR`` does not, so the two give different 8-px faces.
``lower_pil`` therefore calls Pillow itself and is what evaluation (``mafer evaluate``,
``mafer embed``, ``eval_transform(resolution=r)``) uses: the same pixels as the authors' code.
``lower`` is its batched twin for training on any device: an antialiased bilinear
``F.interpolate`` (the same filter in float, without Pillow's 8-bit rounding between the
horizontal and vertical passes), within two gray levels of ``lower_pil``.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from mafer.errors import MaferError

_JPEG_MAGIC = b"\xff\xd8\xff"
BACKGROUND = (255, 255, 255)  # what transparent pixels are composed onto: white, as browsers show them


def max_pixels() -> int | None:
    """Largest image (width x height) that is decoded: twice ``PIL.Image.MAX_IMAGE_PIXELS``.

    That is where Pillow itself refuses a file as a decompression bomb (about 179 megapixels by
    default; a program that sets ``Image.MAX_IMAGE_PIXELS`` moves it, ``None`` lifts it).
    """
    limit = Image.MAX_IMAGE_PIXELS
    return None if limit is None else 2 * int(limit)


def _too_large(name: str | Path, pixels: int, size: tuple[int, int] | None = None) -> MaferError:
    dims = f"{size[0]} x {size[1]} = " if size else ""
    return MaferError(
        f"{name}: image of {dims}{pixels:,} pixels ({pixels / 1e6:.0f} megapixels) is over the "
        f"{max_pixels() / 1e6:.0f}-megapixel limit against decompression bombs; crop the face "
        "or scale the image down first (the network sees at most a few hundred pixels a side)")


def _bomb_pixels(exc: Exception) -> int:
    """Pixel count in Pillow's DecompressionBombError message (0 when it is not there)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else 0


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """A 16-bit (``I;16*``), 32-bit (``I``) or float (``F``) gray image as 8-bit ``L``, scaled."""
    values = np.asarray(img)
    if img.mode == "F":
        # float images hold 0..1 (scientific tools) or 0..255 (Pillow's own convention)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.nan_to_num(values) * scale + 0.5, 0, 255).astype(np.uint8), "L")
    # I;16 holds 0..65535; Pillow also gives 16-bit PGM (and older Pillow 16-bit PNG) as I
    wide = np.clip(values.astype(np.int64), 0, 65535)
    return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit ``RGB``, as an image viewer shows it.

    16-bit gray (``I;16``, as PNG and TIFF store it) and 32-bit gray (``I``, 16-bit PGM) are
    scaled from 0..65535 to 0..255 (rounded), not clamped at 255 as ``Image.convert`` does;
    float gray (``F``) is scaled from 0..1 when all its values lie there, else clamped to 0..255.
    Transparency (an alpha band, a palette's or a tRNS colour) is composed onto white
    (`BACKGROUND`), so a transparent pixel never shows the colour hidden under it. Palette,
    CMYK (plain formula, no ICC profile), bilevel and other modes go through ``Image.convert``.
    """
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit_gray(img)
    if img.mode in ("RGBa", "La"):  # premultiplied alpha: un-premultiply first
        img = img.convert("RGBA")
    if "A" in img.getbands() or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, BACKGROUND + (255,)), rgba).convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_file(source: str | os.PathLike | bytes | bytearray | memoryview, orient: bool = False,
                name: str | os.PathLike | None = None) -> Tensor:
    """Decode one image file (a path, or its bytes) into a uint8 RGB tensor ``[3, H, W]`` (0..255).

    Pillow reads every format it knows; the pixels are `to_rgb`'s (gray repeated to 3 channels,
    16-bit scaled, alpha composed onto white). With ``orient`` the EXIF orientation tag is
    applied first, so a photo a phone stored sideways comes out upright; dataset readers leave
    it off because the released face crops carry no orientation and the GPU decoder ignores it too.
    Raises MaferError naming the file (``name``, default the path) when it is missing, unreadable,
    truncated, or larger than `max_pixels`.
    """
    name = name if name is not None else (source if isinstance(source, (str, os.PathLike)) else "image")
    opened = source if isinstance(source, (str, os.PathLike)) else io.BytesIO(bytes(source))
    try:
        with warnings.catch_warnings():
            # under max_pixels Pillow only warns: these images are read, so the warning says nothing
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(opened) as img:
                img.load()  # forces the full decode: truncated files fail here, not later
                if orient:
                    img = ImageOps.exif_transpose(img)
                rgb = to_rgb(img)
    except FileNotFoundError:
        raise MaferError(f"{name}: file not found; expected an image file") from None
    except Image.DecompressionBombError as exc:
        raise _too_large(name, _bomb_pixels(exc)) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise MaferError(f"{name}: cannot decode image ({exc}); expected a readable, complete image file") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def check_size(data: Tensor, name: str | Path) -> None:
    """Refuse encoded image bytes over `max_pixels` before a decoder allocates them (reads the header only)."""
    limit = max_pixels()
    if limit is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
                size = img.size
    except Image.DecompressionBombError as exc:
        raise _too_large(name, _bomb_pixels(exc)) from None
    except Exception:  # noqa: BLE001 - not an image Pillow knows: the decoder names the problem
        return
    if size[0] * size[1] > limit:
        raise _too_large(name, size[0] * size[1], size)


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
    """JPEGs by torchvision (libjpeg-turbo, fast), everything else and what it cannot read by `decode_file`."""
    if not is_jpeg(data):
        return decode_file(data.numpy(), name=path)
    check_size(data, path)
    # imported here: torchvision's import pulls in torch._dynamo (seconds per process), which
    # processes that never decode image files (training from cached uint8 arrays) need not pay
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        with _quiet_deprecation():
            return decode_jpeg(data, mode=ImageReadMode.RGB)
    except RuntimeError:
        return decode_file(data.numpy(), name=path)  # Pillow reads more JPEG variants, or names the fault


def _decode_cuda(data: list[Tensor], paths: Sequence[str | Path], device: torch.device) -> list[Tensor]:
    """nvJPEG decode of the JPEGs in one call; other formats, and a batch that fails, go through the CPU."""
    from torchvision.io import ImageReadMode, decode_jpeg

    jpeg_idx = [i for i, d in enumerate(data) if is_jpeg(d)]
    for i in jpeg_idx:
        check_size(data[i], paths[i])
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
    `resize_square`, as the dataset cache does: OpenCV on the CPU,
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
    otherwise on the CPU (JPEGs by torchvision, other formats by `decode_file`). Pixels are as
    `to_rgb` describes: gray images come back with 3 equal channels, 16-bit ones scaled, alpha
    composed onto white. A missing, empty, corrupt or over-large (`max_pixels`) file raises
    ``MaferError`` naming it.
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


def resize_square(image: Tensor, size: int) -> Tensor:
    """Squash uint8 ``[..., C, H, W]`` to ``[..., C, size, size]`` as the authors' ``A.Resize(size, size)`` does.

    The aspect ratio is not kept (a non-square face is stretched, nothing is cut). On the CPU this
    is OpenCV's ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)`` itself, the call behind
    albumentations' ``Resize``, so the pixels are theirs bit for bit. On another device the
    images stay there and go through ``F.interpolate(mode="bilinear", align_corners=False)``
    without antialiasing, the same sampling in float: within one gray level of OpenCV's
    fixed-point result. Float input is resized in float (CPU included) and stays float.
    """
    if image.ndim < 3:
        raise MaferError(f"resize_square expects images [..., C, H, W], got shape {tuple(image.shape)}")
    if size < 1:
        raise MaferError(f"resize_square: size must be at least 1 pixel, got {size}")
    if tuple(image.shape[-2:]) == (size, size):
        return image
    if image.device.type == "cpu" and image.dtype == torch.uint8:
        return _cv2_resize(image, size)
    lead, (c, h, w) = image.shape[:-3], image.shape[-3:]
    x = image.reshape(-1, c, h, w)
    out = F.interpolate(x.float() if x.dtype == torch.uint8 else x, size=(size, size), mode="bilinear",
                        align_corners=False, antialias=False)
    if image.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.reshape(*lead, c, size, size)


def _cv2_resize(image: Tensor, size: int) -> Tensor:
    """OpenCV ``INTER_LINEAR`` on each uint8 ``[C, H, W]`` image of a CPU batch (channels last for cv2)."""
    lead, (c, h, w) = image.shape[:-3], image.shape[-3:]
    flat = image.reshape(-1, c, h, w).permute(0, 2, 3, 1).numpy()
    out = np.empty((flat.shape[0], size, size, c), dtype=np.uint8)
    for i, hwc in enumerate(flat):
        # cv2 drops a trailing channel axis of 1; resizing every channel at once gives the same values
        out[i] = cv2.resize(np.ascontiguousarray(hwc), (size, size), interpolation=cv2.INTER_LINEAR).reshape(size, size, c)
    return torch.from_numpy(out).permute(0, 3, 1, 2).reshape(*lead, c, size, size).contiguous()


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
