"""Batched decoding of image files into one uint8 batch (CPU path; nvJPEG path when CUDA exists)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mafer.datasets.base import decode_image, resize_square
from mafer.errors import MaferError
from mafer.io_decode import decode_bytes, decode_images, is_jpeg, read_bytes


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
