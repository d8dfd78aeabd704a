"""Batched decoding of image files into one uint8 batch (CPU path; nvJPEG path when CUDA exists)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mafer.datasets.base import decode_image
from mafer.errors import MaferError
from mafer.image import decode_bytes, decode_file, decode_images, is_jpeg, read_bytes, resize_square


def _write(path: Path, array: np.ndarray, fmt: str) -> Path:
    Image.fromarray(array).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


@pytest.fixture()
def files(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (5, 5, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    gray = np.kron(rng.integers(0, 255, (4, 6), dtype=np.uint8), np.ones((8, 8), np.uint8))
    return [
        _write(tmp_path / "a.jpg", smooth, "JPEG"),
        _write(tmp_path / "b.png", smooth[:32, :24], "PNG"),
        _write(tmp_path / "c.jpg", gray, "JPEG"),
    ]


def test_decode_matches_pil_and_resizes_to_one_batch(files: list[Path]) -> None:
    batch = decode_images(files, size=40)
    assert batch.shape == (3, 3, 40, 40) and batch.dtype == torch.uint8
    # a.jpg is already 40x40: decoded pixels equal PIL's decode up to IDCT rounding
    pil = torch.from_numpy(np.array(Image.open(files[0]).convert("RGB"))).permute(2, 0, 1)
    assert (batch[0].int() - pil.int()).abs().max() <= 2
    # the gray JPEG comes back with 3 equal channels
    assert torch.equal(batch[2, 0], batch[2, 1]) and torch.equal(batch[2, 1], batch[2, 2])


def test_resize_squashes_like_the_dataset_cache(files: list[Path]) -> None:
    # b.png is 24 wide, 32 high: squashed to 12 x 12 whole, as load_uint8(12) and the authors' Resize do
    batch = decode_images(files, size=12)
    for i, path in enumerate(files):
        expected = resize_square(decode_image(path), 12)
        if path.suffix == ".png":  # same decoder output: the same OpenCV resize, bit for bit
            assert torch.equal(batch[i], expected)
        assert (batch[i].int() - expected.int()).abs().max() <= 2, path.name  # JPEG: IDCT rounding


@pytest.mark.parametrize("hw", [(48, 48), (100, 100), (130, 90), (12, 40)])
@pytest.mark.parametrize("size", [256, 224, 37])
def test_resize_square_is_opencv_on_the_cpu_and_within_one_level_elsewhere(hw, size) -> None:
    image = torch.randint(0, 256, (2, 3, *hw), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = resize_square(image, size)
    for i in range(2):
        hwc = cv2.resize(image[i].permute(1, 2, 0).numpy(), (size, size), interpolation=cv2.INTER_LINEAR)
        assert torch.equal(out[i], torch.from_numpy(hwc).permute(2, 0, 1))
    # the device path (float bilinear, no antialiasing), run here on the CPU through the float input
    in_float = resize_square(image.float(), size)
    assert in_float.dtype == torch.float32 and (in_float.round() - out.float()).abs().max() <= 1
    if torch.cuda.is_available():
        assert (resize_square(image.cuda(), size).cpu().int() - out.int()).abs().max() <= 1


def test_same_size_images_stack_without_resize(files: list[Path]) -> None:
    batch = decode_images([files[0], files[0]])
    assert batch.shape == (2, 3, 40, 40)


def test_different_sizes_without_size_is_an_error(files: list[Path]) -> None:
    with pytest.raises(MaferError, match="different sizes"):
        decode_images(files)


def test_missing_and_corrupt_files_are_named(tmp_path: Path, files: list[Path]) -> None:
    with pytest.raises(MaferError, match="nope.jpg"):
        decode_images([files[0], tmp_path / "nope.jpg"], size=8)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(MaferError, match="bad.jpg"):
        decode_images([files[0], bad], size=8)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(MaferError, match="empty.jpg"):
        read_bytes([empty])


def test_decode_bytes_names_the_bad_item(files: list[Path]) -> None:
    data = read_bytes(files[:1]) + [torch.tensor([1, 2, 3], dtype=torch.uint8)]
    with pytest.raises(MaferError, match="image #1"):
        decode_bytes(data, size=8)
    assert decode_bytes(data[:1]).shape == (1, 3, 40, 40)


def test_jpeg_magic(files: list[Path]) -> None:
    data = read_bytes(files)
    assert [is_jpeg(d) for d in data] == [True, False, True]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs CUDA")
def test_cuda_decode_matches_cpu(tmp_path: Path, files: list[Path]) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    gpu = decode_images(files, size=40, device="cuda")
    assert gpu.device.type == "cuda"
    cpu = decode_images(files, size=40)
    # nvJPEG and libjpeg upsample chroma differently: a few levels at the 8-px blocks' sharp edges
    assert (gpu.cpu().int() - cpu.int()).abs().float().mean() < 3.0
    with pytest.raises(MaferError, match="bad.jpg"):
        decode_images([files[0], bad], size=40, device="cuda")


# ------------------------------------------------------------- bit depths, alpha, huge images

def _gradient16(h: int = 24, w: int = 32) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) * (65535 // (h * w - 1))).astype(np.uint16)


def _scaled(a16: np.ndarray) -> np.ndarray:
    return np.round(a16 / 257).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "PPM"])
def test_16bit_gray_is_scaled_not_clamped(tmp_path: Path, fmt: str) -> None:
    """Pillow opens these as I;16 (PNG, TIFF) or I (16-bit PGM); convert("L") would clamp to 255."""
    a16 = _gradient16()
    path = tmp_path / f"face.{fmt.lower()}"
    Image.fromarray(a16).save(path, format=fmt)
    expected = torch.from_numpy(_scaled(a16)).expand(3, -1, -1)
    assert torch.equal(decode_file(path), expected)
    assert torch.equal(decode_images([path])[0], expected)  # the batched (training) path too
    assert decode_file(path).float().mean() < 140  # a clamped gradient would be almost all white


def test_float_gray_is_scaled_from_0_to_1(tmp_path: Path) -> None:
    values = np.linspace(0, 1, 24 * 32, dtype=np.float32).reshape(24, 32)
    Image.fromarray(values).save(tmp_path / "f.tiff")
    out = decode_file(tmp_path / "f.tiff")
    assert out[0, 0, 0] == 0 and out[0, -1, -1] == 255 and 120 <= out[0].float().mean() <= 135


def test_alpha_is_composed_onto_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = (10, 200, 30)  # the colour under the transparency, which a viewer never shows
    rgba[:, :4, 3] = 0
    rgba[:, 4:, 3] = 255
    rgba[0, 4:, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = decode_file(tmp_path / "a.png")
    assert (out[:, :, :4] == 255).all()  # transparent: the white background
    assert out[:, 1, 4:].T.tolist() == [[10, 200, 30]] * 4  # opaque: the colour
    half = np.array([10, 200, 30]) * 128 / 255 + 255 * 127 / 255  # half transparent: mixed
    assert np.abs(out[:, 0, 5].numpy() - half).max() <= 1
    # gray with alpha, and a palette whose entry 0 is transparent, the same way
    Image.fromarray(np.dstack([np.full((8, 8), 40, np.uint8), rgba[..., 3]]), "LA").save(tmp_path / "la.png")
    assert (decode_file(tmp_path / "la.png")[:, :, :4] == 255).all()
    assert (decode_file(tmp_path / "la.png")[:, 1:, 4:] == 40).all()
    pal = Image.fromarray(np.eye(8, dtype=np.uint8)).convert("P")
    pal.save(tmp_path / "p.png", transparency=0)
    out = decode_file(tmp_path / "p.png")
    assert (out[:, np.eye(8, dtype=bool) == 0] == 255).all() and (out[:, np.eye(8, dtype=bool)] == 1).all()
    # the batched path decodes PNGs the same way
    assert torch.equal(decode_images([tmp_path / "a.png"])[0], decode_file(tmp_path / "a.png"))


def test_decompression_bomb_is_refused_in_one_line_with_its_size(tmp_path: Path, files: list[Path],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's limit scaled down so that the test images play a 180-megapixel photo."""
    import warnings

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # refused over 1000 pixels, warned over 500
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tmp_path / "big.png")  # 1200 pixels
    for call in (lambda: decode_file(tmp_path / "big.png"), lambda: decode_images([tmp_path / "big.png"]),
                 lambda: decode_images([files[0]])):  # a.jpg: 40 x 40, through torchvision's JPEG path
        with pytest.raises(MaferError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and "megapixel limit" in message
        assert ("big.png" in message and "1,200 pixels" in message) or ("a.jpg" in message and "1,600" in message)
    small = tmp_path / "small.png"  # between the warning and the limit: read, without Pillow's warning
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(small)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_file(small).shape == (3, 20, 30)
