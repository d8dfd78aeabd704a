"""The paper's per-dataset transforms: numbers, scaling with image_size, shapes, determinism, cutout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mafer.errors import MaferError
from mafer.resolution import lower
from mafer.transforms import Cutout, RandomCropFraction, augment_spec, eval_transform, train_transform

SOURCES = {"fer2013": (48, 48), "rafdb": (100, 100), "oulucasia": (120, 160), "affwild2": (112, 112),
           "vggface2": (150, 120)}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_spec_has_the_papers_numbers_at_224():
    fer = augment_spec("fer2013", 224)
    assert fer.train_ops == ("crop_fraction", "resize", "elastic", "affine", "cutout", "flip")
    assert (fer.crop_fraction, fer.resize, fer.eval_resize) == (42 / 48, 224, 256)
    assert (fer.elastic_alpha, fer.elastic_sigma) == (100, 5)  # albumentations alpha 50 -> torchvision 100
    assert (fer.affine_p, fer.affine_shift, fer.affine_degrees, fer.affine_scale) == (0.5, 0.02, 10, 0)
    assert (fer.cutout_holes, fer.cutout_size, fer.cutout_fill, fer.flip_p) == (10, 30, 0, 0.5)
    raf = augment_spec("rafdb", 224)
    assert raf.train_ops == ("resize", "random_crop", "grayscale", "elastic", "affine", "cutout", "flip")
    assert (raf.resize, raf.grayscale_p, raf.elastic_p, raf.cutout_size) == (256, 0.2, 0.5, 20)
    assert (raf.elastic_alpha, raf.elastic_sigma) == (100, 5)
    oulu = augment_spec("oulucasia", 224)
    assert (oulu.resize, oulu.eval_resize, oulu.elastic_alpha, oulu.elastic_sigma) == (224, 224, 240, 6)
    assert (oulu.affine_shift, oulu.affine_scale, oulu.affine_degrees, oulu.cutout_size) == (0.02, 0.3, 45, 10)
    vgg = augment_spec("vggface2", 224)
    assert vgg.train_ops == ("resize", "random_crop", "grayscale") and vgg.grayscale_p == 0.2


def test_spec_scales_pixel_quantities_with_image_size():
    fer = augment_spec("fer2013", 112)
    assert (fer.resize, fer.eval_resize, fer.cutout_size, fer.crop_fraction) == (112, 128, 15, 42 / 48)
    assert (fer.elastic_alpha, fer.elastic_sigma) == (25, 2.5)  # sigma x s, alpha x s^2
    assert fer.affine_shift == 0.02 and fer.affine_degrees == 10  # relative quantities stay
    assert augment_spec("rafdb", 112).cutout_size == 10 and augment_spec("oulucasia", 112).cutout_size == 5
    assert augment_spec("vggface2", 64).resize == round(256 * 64 / 224)
    with pytest.raises(MaferError, match="unknown dataset"):
        augment_spec("ckplus", 224)


@pytest.mark.parametrize("dataset", sorted(SOURCES))
@pytest.mark.parametrize("size", [224, 64])
def test_train_and_eval_shapes_and_determinism(dataset, size):
    image = torch.randint(0, 256, (3, *SOURCES[dataset]), dtype=torch.uint8)
    train = train_transform(dataset, size)
    outputs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outputs.append(train(image))
    assert all(o.shape == (3, size, size) and o.dtype == torch.uint8 for o in outputs)
    assert torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[0], outputs[2])
    evaluated = eval_transform(dataset, size)(image)
    assert evaluated.shape == (3, size, size) and evaluated.dtype == torch.uint8
    assert torch.equal(evaluated, eval_transform(dataset, size)(image))


def test_eval_is_resize_then_center_crop():
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    expected = TF.center_crop(TF.resize(image, [256], antialias=True), [224, 224])
    assert torch.equal(eval_transform("fer2013", 224)(image), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_transforms_run_on_the_images_device(device):
    image = torch.randint(0, 256, (3, 100, 100), dtype=torch.uint8, device=device)
    torch.manual_seed(0)
    out = train_transform("rafdb", 64)(image)
    assert out.device == image.device and out.shape == (3, 64, 64)


def test_fer_train_crops_42_of_48_and_cuts_holes():
    image = torch.full((3, 48, 48), 200, dtype=torch.uint8)
    torch.manual_seed(0)
    assert RandomCropFraction(42 / 48)(image).shape == (3, 42, 42)
    torch.manual_seed(0)
    out = train_transform("fer2013", 224)(image)
    zero = (out == 0).all(0).float().mean().item()
    assert 0.05 < zero < 10 * 30 * 30 / 224**2 + 0.1  # holes are there: at most 10 of 30x30, + warp borders


def test_cutout_holes_fill_and_probability():
    image = torch.full((3, 64, 64), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    out = Cutout(holes=1, size=10, fill=7)(image)
    filled = (out == 7).all(0)
    assert 0 < filled.sum() <= 100 and ((out == 7) | (out == 255)).all()
    rows, cols = filled.nonzero().T
    assert rows.max() - rows.min() < 10 and cols.max() - cols.min() < 10  # one square hole
    assert torch.equal(Cutout(holes=10, size=10, p=0.0)(image), image)
    torch.manual_seed(1)
    many = (Cutout(holes=10, size=8)(image) == 0).all(0).sum()
    assert 64 < many <= 640
    with pytest.raises(MaferError):
        Cutout(holes=2, size=0)
    assert isinstance(v2.Compose([Cutout(2, 4)])(image), torch.Tensor)


def test_elastic_mapping_matches_albumentations_displacements():
    """torchvision alpha = 2 x albumentations alpha gives the same pixel displacements."""
    spec = augment_spec("fer2013", 224)
    ramp = torch.arange(224, dtype=torch.float32).expand(1, 224, 224).contiguous()  # value = column
    torch.manual_seed(0)
    warped = v2.ElasticTransform(alpha=spec.elastic_alpha, sigma=spec.elastic_sigma)(ramp)
    ours = (warped - ramp)[0, 20:-20, 20:-20].std().item()
    rng = np.random.default_rng(0)
    albumentations = (gaussian_filter(rng.uniform(-1, 1, (224, 224)), 5) * 50)[20:-20, 20:-20].std()
    assert ours == pytest.approx(albumentations, rel=0.2)


def test_lowering_comes_first_on_the_original_image():
    image = torch.randint(0, 256, (3, 100, 100), dtype=torch.uint8)
    low = eval_transform("rafdb", 224, resolution=8)(image)
    expected = eval_transform("rafdb", 224)(lower(image[None], 8)[0])
    assert torch.equal(low, expected) and not torch.equal(low, eval_transform("rafdb", 224)(image))
    torch.manual_seed(0)
    assert train_transform("vggface2", 64, lowering_p=1.0)(image).shape == (3, 64, 64)
