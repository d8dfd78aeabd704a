"""The paper's per-dataset transforms: numbers, scaling with image_size, shapes, determinism, cutout,
and evaluation inputs equal, bit for bit, to those of the authors' own code (tests/fixtures/authors/)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from torchvision.transforms import v2

from mafer.datasets import dataset_info
from mafer.datasets.base import decode_image
from mafer.errors import MaferError
from mafer.models import preprocess
from mafer.image import lower_pil
from mafer.transforms import Cutout, RandomCropFraction, augment_spec, eval_transform, train_transform

AUTHORS = Path(__file__).parent / "fixtures" / "authors"

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
    assert oulu.train_ops == ("resize", "elastic", "affine", "cutout", "flip")  # their Resize(224, 224), no crop
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


def opencv_eval(image: torch.Tensor, resize: int, size: int) -> torch.Tensor:
    """albumentations' Resize(resize, resize) + CenterCrop(size, size), written out with OpenCV."""
    hwc = cv2.resize(image.permute(1, 2, 0).numpy(), (resize, resize), interpolation=cv2.INTER_LINEAR)
    top = (resize - size) // 2
    return torch.from_numpy(hwc[top:top + size, top:top + size]).permute(2, 0, 1)


@pytest.mark.parametrize("hw", [(48, 48), (100, 100), (130, 90), (90, 160)])
def test_eval_squashes_with_opencv_then_crops_the_centre(hw):
    image = torch.randint(0, 256, (3, *hw), dtype=torch.uint8)
    assert torch.equal(eval_transform("rafdb", 224)(image), opencv_eval(image, 256, 224))
    assert torch.equal(eval_transform("oulucasia", 224)(image), opencv_eval(image, 224, 224))
    # 64 px: Resize(73, 73), the 64 crop starts at (73 - 64) // 2 = 4 as in albumentations (round() gives 4 or 5)
    assert torch.equal(eval_transform("fer2013", 64)(image), opencv_eval(image, 73, 64))


def test_eval_keeps_the_whole_of_a_non_square_face():
    """Squashed, not cropped: a mark at the top of a tall face survives the 256 -> 224 crop."""
    image = torch.zeros((3, 160, 80), dtype=torch.uint8)
    image[:, 8:16] = 255  # 5 % from the top: the aspect-keeping resize would cut it off
    out = eval_transform("rafdb", 224)(image)
    assert out[:, :20].float().mean() > 100


def authors_cases() -> list[tuple[str, str, str]]:
    with np.load(AUTHORS / "authors_eval.npz") as fixture:
        return [tuple(str(case).split("|")) for case in fixture["cases"]]


@pytest.mark.parametrize("name, dataset, file", authors_cases())
def test_eval_inputs_equal_the_authors_bit_for_bit(name, dataset, file):
    """Our decoded image through eval_transform == the authors' cv2.imread + get_transforms(train=False)."""
    with np.load(AUTHORS / "authors_eval.npz") as fixture:
        theirs = torch.from_numpy(fixture[f"{name}_uint8"]).permute(2, 0, 1)
        their_input = torch.from_numpy(fixture[f"{name}_input"]) if f"{name}_input" in fixture else None
    # their loader gives BGR (cv2.imread) or one gray channel (the FER2013 csv); ours RGB, gray x 3
    theirs = theirs.expand(3, -1, -1) if theirs.shape[0] == 1 else theirs.flip(0)
    ours = eval_transform(dataset, 224)(decode_image(AUTHORS / file))
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.equal(ours, theirs)
    if their_input is not None:  # and after ToTensor + their mean subtraction: the model input
        assert torch.allclose(preprocess(ours, dataset_info(dataset).mean_bgr), their_input, rtol=0, atol=1e-4)


def test_the_authors_fixture_covers_the_three_kinds_of_face():
    cases = {(dataset, Image.open(AUTHORS / file).size, Image.open(AUTHORS / file).mode)
             for _, dataset, file in authors_cases()}
    assert ("fer2013", (48, 48), "L") in cases and ("rafdb", (100, 100), "RGB") in cases
    assert any(size[0] != size[1] for _, size, _ in cases)
    assert {dataset for dataset, _, _ in cases} == {"fer2013", "rafdb", "oulucasia"}


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
    expected = eval_transform("rafdb", 224)(lower_pil(image, 8))
    assert torch.equal(low, expected) and not torch.equal(low, eval_transform("rafdb", 224)(image))
    torch.manual_seed(0)
    assert train_transform("vggface2", 64, lowering_p=1.0)(image).shape == (3, 64, 64)
