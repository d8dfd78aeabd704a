"""Lowering is the authors' PIL bilinear down-and-up (exactly for evaluation, within two gray levels
batched); resolution sampling and the curriculum follow the paper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mafer.datasets import get_dataset
from mafer.errors import MaferError
from mafer.image import lower, lower_pil, lowered_size
from mafer.resolution import RESOLUTIONS, LoweringCurriculum, RandomLowering, sample_resolutions

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def face_like(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A gray face-like image: shaded oval, dark eyes and mouth, hair edge, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    image = 60 + 40 * x + 20 * y  # background gradient
    face = ((x - 0.5) / 0.32) ** 2 + ((y - 0.55) / 0.42) ** 2 < 1
    image[face] = 170 + 30 * np.cos(6 * (x[face] - 0.5))
    for cx in (0.37, 0.63):
        image[((x - cx) / 0.07) ** 2 + ((y - 0.45) / 0.035) ** 2 < 1] = 40
    image[(np.abs(x - 0.5) < 0.12) & (np.abs(y - 0.75) < 0.02)] = 90
    image[y < 0.18] = 30
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)


def pil_lower(image: np.ndarray, r: int) -> np.ndarray:
    """The reference: PIL bilinear to shorter side r, PIL bilinear back."""
    pil = Image.fromarray(image)
    width, height = pil.size
    small_h, small_w = lowered_size(height, width, r)
    return np.asarray(pil.resize((small_w, small_h), Image.BILINEAR).resize((width, height), Image.BILINEAR))


def smoke_images(smoke_data) -> list[np.ndarray]:
    raf, _ = get_dataset("rafdb", smoke_data, "test")[0]
    fer, _ = get_dataset("fer2013", smoke_data, "test")[0]
    raf = raf.permute(1, 2, 0).numpy()
    return [raf, fer[0].numpy(), np.ascontiguousarray(raf[:, 10:80])]  # 100x100 RGB, 48x48 gray, 100x70


@pytest.mark.parametrize("r", [8, 16, 32, 64])
def test_lower_matches_pil_bilinear(r, smoke_data):
    images = [face_like(100, 100), face_like(48, 48, 1), face_like(72, 120, 2)] + smoke_images(smoke_data)
    for image in images:
        if r >= min(image.shape[:2]):
            continue
        ours = image.astype(np.float32)
        ours = ours[None, None] if ours.ndim == 2 else ours.transpose(2, 0, 1)[None]
        ours = lower(torch.from_numpy(ours), r)[0].numpy()
        ours = ours[0] if image.ndim == 2 else ours.transpose(1, 2, 0)
        difference = np.abs(ours - pil_lower(image, r).astype(np.float32)).mean()
        assert difference < 2.0, (image.shape, r, difference)
        assert np.abs(ours - image).mean() > difference  # it really lost detail


@pytest.mark.parametrize("r", [8, 16, 32, 64])
def test_lower_pil_is_the_authors_pil_lowering_exactly(r, smoke_data):
    images = [face_like(100, 100), face_like(72, 120, 2)] + smoke_images(smoke_data)
    for image in images:
        if r >= min(image.shape[:2]):
            continue
        tensor = torch.from_numpy(image[None] if image.ndim == 2 else image.transpose(2, 0, 1).copy())
        ours = lower_pil(tensor, r).numpy()
        # the reference resizes RGB images as one RGB PIL image: per channel gives the same pixels
        reference = pil_lower(image, r)
        assert np.array_equal(ours[0] if image.ndim == 2 else ours.transpose(1, 2, 0), reference), (image.shape, r)
        # the batched training path stays within two gray levels of it
        batched = lower(tensor[None], r)[0]
        assert (batched.int() - torch.from_numpy(ours).int()).abs().max() <= 2, (image.shape, r)


def test_lowered_size_follows_the_authors_arithmetic():
    # they compute r / (h / w): one pixel less than r * w / h here, where the float ratio rounds down
    assert lowered_size(12, 279, 8) == (8, 185) and int(8 * 279 / 12) == 186
    assert lowered_size(100, 100, 8) == (8, 8) and lowered_size(130, 90, 16) == (23, 16)
    with pytest.raises(MaferError, match="uint8"):
        lower_pil(torch.zeros(3, 40, 40), 8)


def test_lower_leaves_images_no_larger_than_r():
    x = torch.rand(2, 3, 48, 64)
    assert torch.equal(lower(x, 48), x) and torch.equal(lower(x, 64), x) and torch.equal(lower(x, 0), x)
    assert not torch.equal(lower(x, 47), x)
    assert lowered_size(48, 64, 16) == (16, 21) and lowered_size(64, 48, 16) == (21, 16)


@pytest.mark.parametrize("device", DEVICES)
def test_lower_per_image_resolutions(device):
    x = torch.rand(5, 3, 40, 40, device=device)
    r = torch.tensor([0, 8, 16, 8, 64], device=device)
    out = lower(x, r)
    assert out.shape == x.shape and out.device == x.device and out.dtype == x.dtype
    assert torch.equal(out[0], x[0]) and torch.equal(out[4], x[4])
    assert torch.allclose(out[1:2], lower(x[1:2], 8)) and torch.allclose(out[3:4], lower(x[3:4], 8))
    assert torch.allclose(out[2:3], lower(x[2:3], 16))
    assert torch.equal(x, x.clone())  # input untouched
    u8 = (x * 255).to(torch.uint8)
    out8 = lower(u8, r)
    assert out8.dtype == torch.uint8 and (out8.float() - lower(u8.float(), r)).abs().max() <= 0.5
    with pytest.raises(MaferError, match="3 resolutions for 5 images"):
        lower(x, r[:3])
    with pytest.raises(MaferError, match="batch"):
        lower(x[0], 8)


def test_sample_resolutions():
    g = torch.Generator().manual_seed(0)
    r = sample_resolutions(5000, 1.0, g)
    assert r.dtype == torch.int64 and set(r.tolist()) == set(RESOLUTIONS)
    counts = torch.bincount(torch.log2(r.float()).long() - 3)
    assert (counts > 800).all() and (counts < 1200).all()  # uniform over the five
    half = sample_resolutions(5000, 0.3, torch.Generator().manual_seed(1))
    assert 0.25 < (half > 0).float().mean() < 0.35
    assert (sample_resolutions(100, 0.0) == 0).all()
    again = sample_resolutions(20, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(again, sample_resolutions(20, 0.5, torch.Generator().manual_seed(3)))
    with pytest.raises(MaferError):
        sample_resolutions(3, 1.5)


def test_lowering_curriculum():
    c = LoweringCurriculum(every=100)
    assert [c.p(s) for s in (0, 99, 100, 250, 899, 900, 10_000)] == [0.1, 0.1, 0.2, 0.3, 0.9, 1.0, 1.0]
    assert LoweringCurriculum(start=0.5, step=0.25, stop=0.9, every=1).p(3) == 0.9
    with pytest.raises(MaferError):
        LoweringCurriculum(every=0)


def test_random_lowering_transform():
    image = torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)
    fixed = RandomLowering(r=8)(image)
    assert fixed.shape == image.shape and fixed.dtype == torch.uint8
    assert torch.equal(fixed, lower_pil(image, 8))  # one uint8 image: the authors' PIL pixels
    as_float = RandomLowering(r=8)(image.float())
    assert torch.equal(as_float, lower(image[None].float(), 8)[0])  # float: the batched path
    assert torch.equal(RandomLowering(p=0.0)(image), image)
    large = torch.randint(0, 256, (3, 140, 150), dtype=torch.uint8)  # every r < 140 changes it
    torch.manual_seed(0)
    assert all(not torch.equal(RandomLowering(p=1.0)(large), large) for _ in range(10))
    torch.manual_seed(0)
    first = [RandomLowering(p=0.5)(large) for _ in range(4)]
    torch.manual_seed(0)
    assert all(torch.equal(a, RandomLowering(p=0.5)(large)) for a in first)  # seeded
