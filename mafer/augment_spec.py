"""The numbers of the paper's per-dataset transforms: one ``AugmentSpec`` per dataset and size.

``augment_spec(dataset, image_size)`` is read by both pipelines that apply them, the per-image
torchvision one (``mafer.transforms``) and the batched one (``mafer.batch_augment``, what
training runs). It needs neither torchvision nor torch, so a training process does not import
torchvision (and, through it, ``torch._dynamo``) just to learn a crop size. The choices the
paper's table leaves open are explained in ``mafer.transforms``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mafer.datasets.info import dataset_info
from mafer.errors import MaferError

PAPER_SIZE = 224


@dataclass(frozen=True)
class AugmentSpec:
    """The transforms of one dataset at one ``image_size``; pixel quantities already scaled.

    ``train_ops`` names the training ops in order, from: ``crop_fraction`` (random square crop,
    side ``crop_fraction`` of the source's shorter side), ``resize`` (squash to ``resize x resize``,
    OpenCV bilinear), ``random_crop`` / ``center_crop`` (``image_size`` square; centre at
    ``(side - image_size) // 2``), ``grayscale``, ``elastic``, ``affine``, ``cutout``, ``flip``.
    Evaluation is: squash to ``eval_resize x eval_resize``, centre crop ``image_size`` (a no-op
    where the two are equal). ``elastic_alpha`` / ``elastic_sigma`` are in torchvision's units.
    """

    dataset: str
    image_size: int
    train_ops: tuple[str, ...]
    resize: int
    eval_resize: int
    crop_fraction: float = 1.0
    grayscale_p: float = 0.0
    elastic_p: float = 0.0
    elastic_alpha: float = 0.0
    elastic_sigma: float = 0.0
    affine_p: float = 0.0
    affine_shift: float = 0.0
    affine_scale: float = 0.0
    affine_degrees: float = 0.0
    cutout_p: float = 0.0
    cutout_holes: int = 0
    cutout_size: int = 0
    cutout_fill: int = 0
    flip_p: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _px(value: float, scale: float) -> int:
    return max(1, round(value * scale))


def augment_spec(dataset: str, image_size: int = PAPER_SIZE) -> AugmentSpec:
    """The paper's transforms of ``dataset`` (fer2013, rafdb, oulucasia, affwild2, vggface2) at ``image_size``."""
    dataset_info(dataset)  # MaferError for unknown names
    if image_size < 8:
        raise MaferError(f"image_size must be at least 8 pixels, got {image_size}")
    s = image_size / PAPER_SIZE

    def elastic(alpha_alb: float, sigma_alb: float) -> dict[str, float]:
        return {"elastic_alpha": 2 * alpha_alb * s * s, "elastic_sigma": sigma_alb * s}

    def cutout(size: float) -> dict[str, Any]:
        return {"cutout_p": 1.0, "cutout_holes": 10, "cutout_size": _px(size, s), "cutout_fill": 0}

    resize_256 = _px(256, s)
    if dataset == "fer2013":
        return AugmentSpec(
            dataset, image_size, ("crop_fraction", "resize", "elastic", "affine", "cutout", "flip"),
            resize=image_size, eval_resize=resize_256, crop_fraction=42 / 48,
            elastic_p=1.0, **elastic(50, 5),
            affine_p=0.5, affine_shift=0.02, affine_degrees=10,
            **cutout(30), flip_p=0.5)
    if dataset == "rafdb":
        return AugmentSpec(
            dataset, image_size, ("resize", "random_crop", "grayscale", "elastic", "affine", "cutout", "flip"),
            resize=resize_256, eval_resize=resize_256, grayscale_p=0.2,
            elastic_p=0.5, **elastic(50, 5),
            affine_p=0.5, affine_shift=0.0625, affine_scale=0.1, affine_degrees=45,
            **cutout(20), flip_p=0.5)
    if dataset == "oulucasia":
        return AugmentSpec(
            dataset, image_size, ("resize", "elastic", "affine", "cutout", "flip"),
            resize=image_size, eval_resize=image_size,
            elastic_p=0.5, **elastic(120, 6),
            affine_p=0.5, affine_shift=0.02, affine_scale=0.3, affine_degrees=45,
            **cutout(10), flip_p=0.5)
    # VGGFace2 and AffWild2 (step 1): crop and random grayscale; lowering is done by the trainer
    return AugmentSpec(dataset, image_size, ("resize", "random_crop", "grayscale"),
                       resize=resize_256, eval_resize=resize_256, grayscale_p=0.2)


def center_crop_offset(side: int, size: int) -> int:
    """Top (or left) of a centre ``size`` crop out of ``side`` pixels: albumentations' ``(side - size) // 2``."""
    return (side - size) // 2
