"""BatchAugment: the per-image op list of mafer.transforms, vectorised over a batch.

Pinned draws must give the per-image torchvision v2 result (up to interpolation rounding);
random draws must follow the per-image distributions.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mafer.batch_augment import AugmentParams, BatchAugment
from mafer.image import resize_square
from mafer.errors import MaferError
from mafer.transforms import Cutout, augment_spec, eval_transform

DATASETS = ("fer2013", "rafdb", "oulucasia", "vggface2", "affwild2")
BILINEAR = v2.InterpolationMode.BILINEAR


def smooth_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Low-frequency colour images: bilinear resampling of them is smooth, so pinned chains compare tightly."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (n, 3, h // 8 + 1, w // 8 + 1), generator=g).float()
    big = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)
    return big.clamp(0, 255).round().to(torch.uint8)


def assert_close_uint8(a: torch.Tensor, b: torch.Tensor, max_diff: int = 3, mean_diff: float = 0.4) -> None:
    diff = (a.int() - b.int()).abs()
    assert diff.max() <= max_diff and diff.float().mean() <= mean_diff, (diff.max(), diff.float().mean())


def quiet(params: AugmentParams) -> AugmentParams:
    """Switch off every random op of ``params`` (crops stay as drawn)."""
    for name in ("gray", "elastic", "affine", "cutout", "flip"):
        flags = getattr(params, name)
        if flags is not None:
            flags[:] = False
    return params


def reference_crop(image: torch.Tensor, params: AugmentParams, i: int, spec) -> torch.Tensor:
    """The per-image resize (OpenCV squash) + crop of rafdb's op list with the batch's drawn crop offsets."""
    image = resize_square(image, spec.resize)
    top, left = params.crops[1][i].tolist()
    return TF.crop(image, top, left, spec.image_size, spec.image_size)


@pytest.mark.parametrize("dataset", DATASETS)
def test_same_op_list_as_the_per_image_spec(dataset: str) -> None:
    spec = augment_spec(dataset, 64)
    assert BatchAugment(dataset, 64).ops == spec.train_ops
    assert BatchAugment(dataset, 64, train=False).spec.resize == spec.eval_resize


@pytest.mark.parametrize("dataset", ("fer2013", "rafdb", "oulucasia", "vggface2"))
@pytest.mark.parametrize("hw", [(48, 48), (100, 100), (300, 260)])
def test_eval_mode_equals_eval_transform(dataset: str, hw: tuple[int, int]) -> None:
    images = smooth_images(2, *hw)
    expected = torch.stack([eval_transform(dataset, 224)(im) for im in images])
    out = BatchAugment(dataset, 224, train=False)(images)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.uint8
    assert_close_uint8(out, expected, max_diff=1, mean_diff=0.3)


@pytest.mark.parametrize("dataset", ("fer2013", "rafdb", "oulucasia"))
@pytest.mark.parametrize("hw", [(48, 48), (130, 90), (37, 61)])
def test_eval_mode_is_within_one_gray_level_of_opencv_on_noise(dataset: str, hw: tuple[int, int]) -> None:
    """The docstring's promise, on the worst case for rounding (white noise, odd sizes, 64 px)."""
    images = torch.randint(0, 256, (3, 3, *hw), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    for size in (224, 64):
        expected = torch.stack([eval_transform(dataset, size)(im) for im in images])
        out = BatchAugment(dataset, size, train=False)(images)
        assert (out.int() - expected.int()).abs().max() <= 1, (dataset, hw, size)


def test_all_random_ops_off_equals_resize_and_crop() -> None:
    spec = augment_spec("rafdb", 224)
    aug = BatchAugment("rafdb", 224)
    images = smooth_images(3, 100, 100)
    params = quiet(aug.sample_params(3, (100, 100), torch.Generator().manual_seed(0)))
    out = aug.apply(images, params)
    for i in range(3):
        assert_close_uint8(out[i], reference_crop(images[i], params, i, spec), max_diff=1, mean_diff=0.3)
    # p = 0 for every random op and a centre crop: the whole call is deterministic and equals v2
    still = replace(spec, train_ops=("resize", "center_crop", "grayscale", "elastic", "affine", "cutout", "flip"),
                    grayscale_p=0, elastic_p=0, affine_p=0, cutout_p=0, flip_p=0)
    out = BatchAugment("rafdb", 224, spec=still)(images, torch.Generator().manual_seed(1))
    assert_close_uint8(out, torch.stack([eval_transform("rafdb", 224)(im) for im in images]), 1, 0.3)


def test_pinned_elastic_affine_flip_chain_equals_v2_sequence() -> None:
    """One grid_sample of the composed chain == v2's elastic, then affine, then flip, one by one."""
    spec = augment_spec("rafdb", 224)
    aug = BatchAugment("rafdb", 224)
    images = smooth_images(3, 100, 100, seed=1)
    params = quiet(aug.sample_params(3, (100, 100), torch.Generator().manual_seed(2)))
    params.elastic[:], params.affine[:], params.flip[:] = True, True, torch.tensor([True, False, True])
    ys, xs = torch.meshgrid(torch.arange(224.0), torch.arange(224.0), indexing="ij")
    params.displacement = torch.stack([5 * torch.sin(ys / 20), 4 * torch.cos(xs / 15)]).repeat(3, 1, 1, 1)
    params.angle = torch.tensor([30.0, -45.0, 10.0])
    params.translate = torch.tensor([[5.0, -3.0], [10.0, 2.0], [-14.0, 0.0]])
    params.scale = torch.tensor([1.1, 0.9, 1.0])
    out = aug.apply(images, params)
    for i in range(3):
        ref = reference_crop(images[i], params, i, spec)
        displacement = (params.displacement[i] * 2 / 224).permute(1, 2, 0).unsqueeze(0)  # pixels -> v2 grid units
        ref = TF.elastic(ref, displacement, interpolation=BILINEAR, fill=0)
        ref = TF.affine(ref, angle=params.angle[i].item(), translate=params.translate[i].tolist(),
                        scale=params.scale[i].item(), shear=[0.0, 0.0], interpolation=BILINEAR, fill=0)
        if params.flip[i]:
            ref = TF.horizontal_flip(ref)
        # resampled once instead of three times: interpolation differences, larger only where a
        # zero-filled border meets the image (v2 blurs that edge at every step)
        fill = ((ref == 0) | (out[i] == 0)).all(0).float()[None, None]
        near_fill = F.max_pool2d(fill, 7, stride=1, padding=3)[0, 0] > 0
        diff = (out[i].int() - ref.int()).abs().amax(0)
        assert diff[~near_fill].max() <= 4 and diff[~near_fill].float().mean() < 0.8
        assert (diff > 6).float().mean() < 0.01


def test_fer2013_fractional_crop_then_resize_equals_v2() -> None:
    spec = augment_spec("fer2013", 224)
    aug = BatchAugment("fer2013", 224)
    images = smooth_images(3, 48, 48, seed=3)
    params = quiet(aug.sample_params(3, (48, 48), torch.Generator().manual_seed(3)))
    out = aug.apply(images, params)
    side = round(spec.crop_fraction * 48)
    for i in range(3):
        top, left = params.crops[0][i].tolist()
        ref = TF.resize(TF.crop(images[i], top, left, side, side), 224, antialias=True)
        assert_close_uint8(out[i], ref, max_diff=1, mean_diff=0.3)


def test_flip_with_p1_equals_torch_flip() -> None:
    spec = replace(augment_spec("oulucasia", 64), elastic_p=0, affine_p=0, cutout_p=0)
    images = smooth_images(4, 64, 64)
    no_flip = BatchAugment("oulucasia", 64, spec=replace(spec, flip_p=0.0))(images, torch.Generator().manual_seed(0))
    flipped = BatchAugment("oulucasia", 64, spec=replace(spec, flip_p=1.0))(images, torch.Generator().manual_seed(0))
    assert torch.equal(flipped, torch.flip(no_flip, dims=[-1]))
    assert torch.equal(no_flip, images)  # resize 64 + centre crop 64 of a 64x64 image is the image


def test_cutout_holes_have_the_per_image_count_and_size() -> None:
    size = 64
    spec = replace(augment_spec("oulucasia", size), elastic_p=0, affine_p=0, flip_p=0)
    white = torch.full((400, 3, size, size), 255, dtype=torch.uint8)
    out = BatchAugment("oulucasia", size, spec=spec)(white, torch.Generator().manual_seed(0))
    cut = out[:, 0] == 0
    assert torch.equal(cut, out[:, 1] == 0) and bool(((out == 0) | (out == 255)).all())
    # zeroed area per image matches the per-image Cutout's over the same number of draws
    torch.manual_seed(0)
    reference = Cutout(spec.cutout_holes, spec.cutout_size, spec.cutout_fill, spec.cutout_p)
    ref_cut = torch.stack([reference(im)[0] == 0 for im in white])
    batch_area, ref_area = cut.float().mean(), ref_cut.float().mean()
    assert abs(batch_area - ref_area) < 0.05 * ref_area
    # one hole: a square of side cutout_size, or that square clipped at the border
    one_hole = BatchAugment("oulucasia", size, spec=replace(spec, cutout_holes=1))
    one = one_hole(white[:50], torch.Generator().manual_seed(1))
    for image in one[:, 0] == 0:
        rows, cols = image.any(1).nonzero().squeeze(1), image.any(0).nonzero().squeeze(1)
        assert int(image.sum()) == len(rows) * len(cols)  # a rectangle
        assert len(rows) <= spec.cutout_size and len(cols) <= spec.cutout_size
        assert len(rows) == spec.cutout_size or rows.min() == 0 or rows.max() == size - 1


def test_grayscale_fraction_is_p() -> None:
    spec = augment_spec("vggface2", 16)
    images = smooth_images(1, 16, 16).expand(4000, -1, -1, -1)
    out = BatchAugment("vggface2", 16, spec=spec)(images, torch.Generator().manual_seed(0))
    gray = (out[:, 0] == out[:, 1]).all((1, 2)) & (out[:, 1] == out[:, 2]).all((1, 2))
    assert abs(gray.float().mean().item() - spec.grayscale_p) < 0.03
    # the gray value is v2's: at the resize size (18 px here) the batch path is a plain crop
    image = smooth_images(1, spec.resize, spec.resize)
    params = BatchAugment("vggface2", 16).sample_params(1, (spec.resize, spec.resize), torch.Generator())
    params.gray[:] = True
    out = BatchAugment("vggface2", 16).apply(image, params)
    top, left = params.crops[1][0].tolist()
    expected = TF.rgb_to_grayscale(TF.crop(image[0], top, left, 16, 16), num_output_channels=3)
    assert torch.equal(out[0], expected)


def test_elastic_displacement_has_v2_magnitude() -> None:
    spec = augment_spec("oulucasia", 64)
    params = BatchAugment("oulucasia", 64).sample_params(64, (64, 64), torch.Generator().manual_seed(0))
    ours = params.displacement.abs().mean()
    torch.manual_seed(0)
    elastic = v2.ElasticTransform(alpha=spec.elastic_alpha, sigma=spec.elastic_sigma)
    theirs = torch.stack([elastic.make_params([torch.zeros(3, 64, 64)])["displacement"] for _ in range(64)])
    theirs = theirs.abs().mean() * 64 / 2  # v2 grid units -> pixels
    assert abs(ours - theirs) < 0.1 * theirs


def test_affine_draws_follow_random_affine() -> None:
    spec = augment_spec("oulucasia", 64)
    params = BatchAugment("oulucasia", 64).sample_params(4000, (64, 64), torch.Generator().manual_seed(0))
    assert abs(params.affine.float().mean() - spec.affine_p) < 0.03
    assert params.angle.abs().max() <= spec.affine_degrees and params.angle.abs().max() > 0.95 * spec.affine_degrees
    assert torch.equal(params.translate, params.translate.round())
    assert params.translate.abs().max() <= round(spec.affine_shift * 64)
    assert (params.scale - 1).abs().max() <= spec.affine_scale
    assert abs(params.flip.float().mean() - spec.flip_p) < 0.03


def test_each_image_gets_its_own_draws() -> None:
    images = smooth_images(1, 100, 100).expand(2, -1, -1, -1)
    out = BatchAugment("rafdb", 64)(images, torch.Generator().manual_seed(0))
    assert not torch.equal(out[0], out[1])


def test_seeded_generator_repeats_and_seeds_differ() -> None:
    aug = BatchAugment("fer2013", 64)
    images = smooth_images(4, 48, 48)
    first = aug(images, torch.Generator().manual_seed(5))
    assert torch.equal(first, aug(images, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, aug(images, torch.Generator().manual_seed(6)))


def test_channel_groups_share_the_draws() -> None:
    """The CR step augments a full-resolution image and its lowered copy with the same draws."""
    aug = BatchAugment("vggface2", 64, dtype=torch.float32)
    images = smooth_images(3, 80, 80)
    both = aug(torch.cat([images, images], 1), torch.Generator().manual_seed(0))
    assert both.shape == (3, 6, 64, 64)
    assert torch.equal(both[:, :3], both[:, 3:])


def test_output_never_aliases_the_input() -> None:
    images = smooth_images(2, 64, 64).float()
    out = BatchAugment("oulucasia", 64, train=False, dtype=torch.float32)(images)  # resize + crop: no-ops
    assert torch.equal(out, images)
    out += 1
    assert not torch.equal(out, images)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float_output_is_unrounded_0_255(dtype: torch.dtype) -> None:
    images = smooth_images(2, 100, 100)
    as_uint8 = BatchAugment("rafdb", 64)(images, torch.Generator().manual_seed(0))
    out = BatchAugment("rafdb", 64, dtype=dtype)(images, torch.Generator().manual_seed(0))
    assert out.dtype == dtype and out.min() >= 0 and out.max() <= 255.5
    assert (out.float() - as_uint8.float()).abs().max() <= 2  # bf16 keeps 8 bits: 1 step at 255
    assert not torch.equal(out.float(), out.float().round())


def test_bad_input_and_bad_specs_raise() -> None:
    aug = BatchAugment("rafdb", 64)
    with pytest.raises(MaferError, match="N, 3k, H, W"):
        aug(torch.zeros(3, 64, 64, dtype=torch.uint8))
    with pytest.raises(MaferError, match="uint8 or float"):
        aug(torch.zeros(1, 3, 64, 64, dtype=torch.int32))
    with pytest.raises(MaferError, match="cannot crop"):
        BatchAugment("oulucasia", 64, spec=replace(augment_spec("oulucasia", 64), train_ops=("center_crop",)))(
            torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(MaferError, match="cutout before"):
        BatchAugment("rafdb", 64, spec=replace(augment_spec("rafdb", 64), train_ops=("cutout", "resize", "affine")))
    with pytest.raises(MaferError, match="does not know"):
        BatchAugment("rafdb", 64, spec=replace(augment_spec("rafdb", 64), train_ops=("resize", "solarize")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dataset", DATASETS)
def test_cuda_matches_cpu_for_the_same_draws(dataset: str) -> None:
    aug = BatchAugment(dataset, 224, dtype=torch.float32)
    images = smooth_images(8, 100, 100)
    params = aug.sample_params(8, (100, 100), torch.Generator().manual_seed(0))
    cpu = aug.apply(images, params)
    cuda = aug.apply(images.cuda(), params.to("cuda"))
    assert (cuda.cpu() - cpu).abs().mean() < 0.05
    generator = torch.Generator(device="cuda").manual_seed(0)
    assert aug(images.cuda(), generator).device.type == "cuda"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
def test_compiled_gives_the_eager_result(device: str) -> None:
    # CR's 6-channel batches (lowered + full copy) through rafdb's full op list
    eager = BatchAugment("rafdb", 64, dtype=torch.float32)
    compiled = BatchAugment("rafdb", 64, dtype=torch.float32, compile=True)
    images = torch.cat([smooth_images(6, 40, 40), smooth_images(6, 40, 40, seed=1)], 1).to(device)
    params = eager.sample_params(6, (40, 40), torch.Generator().manual_seed(3)).to(device)
    params.elastic[:3], params.affine[:3], params.gray[:3], params.cutout[:3], params.flip[:3] = True, True, True, True, True
    assert (compiled.apply(images, params) - eager.apply(images, params)).abs().max() < 1e-2
