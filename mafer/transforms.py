"""Per-dataset training and evaluation transforms of the paper, on uint8 RGB tensors (CPU or GPU).

The numbers live in one ``AugmentSpec`` per dataset (``mafer.augment_spec``), so that the
per-image pipeline here and the batched one in ``mafer.batch_augment`` read the same op list.
The paper's sizes are for 224 px; at another ``image_size`` every pixel quantity is scaled by
``s = image_size / 224``.

Choices where the paper's table is not explicit (the authors used albumentations):

* **Elastic.** albumentations displaces a pixel by ``alpha * G_sigma(U(-1, 1))`` pixels;
  torchvision's ``ElasticTransform`` by ``alpha / 2 * G_sigma(U(-1, 1))`` pixels (it divides by
  the side and works in [-1, 1] grid units). So ``alpha_tv = 2 * alpha_alb``, ``sigma_tv =
  sigma_alb``. At another size, ``sigma`` scales by ``s`` and ``alpha`` by ``s**2``: the blurred
  noise shrinks as ``1 / sigma``, so this keeps displacements at ``s`` times the 224-px ones.
  RAF-DB's elastic has no parameters in the table; we use FER2013's (alpha 50, sigma 5).
  albumentations' defaults (alpha 1, sigma 50) would move pixels by ~0.003 px, a no-op that
  costs a 401x401 blur per image.
* **Shift / scale / rotate.** ``v2.RandomAffine`` with the same limits (shift as a fraction of the
  side, scale ``1 +- limit``, rotation ``+- degrees``), applied with the table's p. Border filled
  with 0 where albumentations reflects. RAF-DB's has no parameters: albumentations' defaults
  (shift 0.0625, scale 0.1, rotate 45).
* **Probabilities** the table does not give (FER2013 elastic, all cutouts) are 1: the op always runs.
* **Resize** is the authors' ``A.Resize(R, R)``: the image is squashed to ``R x R`` (aspect
  ratio not kept) by OpenCV's bilinear ``INTER_LINEAR`` on uint8, through OpenCV itself
  (``mafer.image.resize_square``), so evaluation inputs are the authors' bit for bit
  (``tests/fixtures/authors/``). Their ``CenterCrop`` cuts at ``(R - S) // 2``. Evaluation is
  ``Resize(256, 256)`` + ``CenterCrop(224, 224)`` for FER2013, RAF-DB (and the VGGFace2 /
  AffWild2 stage), ``Resize(224, 224)`` alone for Oulu-CASIA. The training ops after the resize
  are torchvision's (their random draws cannot be the authors' anyway).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from mafer.augment_spec import PAPER_SIZE, AugmentSpec, augment_spec, center_crop_offset
from mafer.image import resize_square
from mafer.errors import MaferError
from mafer.resolution import RandomLowering

__all__ = ["PAPER_SIZE", "AugmentSpec", "augment_spec", "center_crop_offset", "train_transform", "eval_transform"]


class RandomCropFraction(v2.Transform):
    """Random square crop whose side is ``fraction`` of the input's shorter side (FER2013: 42 of 48)."""

    def __init__(self, fraction: float):
        super().__init__()
        if not 0 < fraction <= 1:
            raise MaferError(f"crop fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        side = max(1, round(self.fraction * min(height, width)))
        top = int(torch.randint(0, height - side + 1, ()).item())
        left = int(torch.randint(0, width - side + 1, ()).item())
        return {"top": top, "left": left, "side": side}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return TF.crop(inpt, params["top"], params["left"], params["side"], params["side"])


class SquashResize(v2.Transform):
    """The authors' ``A.Resize(size, size)``: uint8 ``[C, H, W]`` -> ``[C, size, size]`` (``resize_square``)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return resize_square(inpt, self.size) if isinstance(inpt, Tensor) else inpt


class CenterCropFloor(v2.Transform):
    """The authors' ``A.CenterCrop(size, size)``: the window starts at ``center_crop_offset``
    (``v2.CenterCrop`` rounds half-way offsets the other way)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, Tensor):
            return inpt
        height, width = inpt.shape[-2:]
        if self.size > height or self.size > width:
            raise MaferError(f"cannot crop {self.size}x{self.size} out of a {height}x{width} image")
        top, left = center_crop_offset(height, self.size), center_crop_offset(width, self.size)
        return inpt[..., top:top + self.size, left:left + self.size]


class Cutout(v2.Transform):
    """``holes`` square holes of side ``size`` filled with ``fill``, centres uniform over the image
    (holes clipped at the border), like albumentations' ``Cutout``. Runs with probability ``p``."""

    def __init__(self, holes: int, size: int, fill: int = 0, p: float = 1.0):
        super().__init__()
        if holes < 0 or size < 1 or not 0 <= p <= 1:
            raise MaferError(f"cutout needs holes >= 0, size >= 1 and 0 <= p <= 1; got {holes}, {size}, {p}")
        self.holes, self.size, self.fill, self.p = holes, size, fill, p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if torch.rand(()) >= self.p:
            return {"boxes": []}
        height, width = v2.query_size(flat_inputs)
        cy = torch.randint(0, height, (self.holes,))
        cx = torch.randint(0, width, (self.holes,))
        half = self.size // 2
        boxes = [(max(0, y - half), min(height, y - half + self.size), max(0, x - half), min(width, x - half + self.size))
                 for y, x in zip(cy.tolist(), cx.tolist())]
        return {"boxes": boxes}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not params["boxes"] or not isinstance(inpt, Tensor):
            return inpt
        out = inpt.clone()
        for y0, y1, x0, x1 in params["boxes"]:
            out[..., y0:y1, x0:x1] = self.fill
        return out


def _op(name: str, spec: AugmentSpec) -> Any:
    if name == "crop_fraction":
        return RandomCropFraction(spec.crop_fraction)
    if name == "resize":
        return SquashResize(spec.resize)
    if name == "random_crop":
        return v2.RandomCrop(spec.image_size)
    if name == "center_crop":
        return CenterCropFloor(spec.image_size)
    if name == "grayscale":
        return v2.RandomGrayscale(p=spec.grayscale_p)
    if name == "elastic":
        return v2.RandomApply([v2.ElasticTransform(alpha=spec.elastic_alpha, sigma=spec.elastic_sigma)],
                              p=spec.elastic_p)
    if name == "affine":
        scale = (1 - spec.affine_scale, 1 + spec.affine_scale) if spec.affine_scale else None
        translate = (spec.affine_shift, spec.affine_shift) if spec.affine_shift else None
        affine = v2.RandomAffine(degrees=spec.affine_degrees, translate=translate, scale=scale,
                                 interpolation=v2.InterpolationMode.BILINEAR, fill=0)
        return v2.RandomApply([affine], p=spec.affine_p)
    if name == "cutout":
        return Cutout(spec.cutout_holes, spec.cutout_size, spec.cutout_fill, spec.cutout_p)
    if name == "flip":
        return v2.RandomHorizontalFlip(p=spec.flip_p)
    raise MaferError(f"unknown augmentation op {name!r} in the spec of {spec.dataset}")


def train_transform(dataset: str, image_size: int = PAPER_SIZE, lowering_p: float = 0.0) -> v2.Compose:
    """The paper's training augmentation of ``dataset``: uint8 RGB ``[3, H, W]`` -> uint8 ``[3, S, S]``.

    With ``lowering_p > 0`` the original image is first lowered with that probability (step 1).
    Random draws come from torch's global generator, so ``torch.manual_seed`` makes it repeatable.
    """
    spec = augment_spec(dataset, image_size)
    lowering = [RandomLowering(lowering_p)] if lowering_p > 0 else []
    return v2.Compose(lowering + [_op(name, spec) for name in spec.train_ops])


def eval_transform(dataset: str, image_size: int = PAPER_SIZE, resolution: int | None = None) -> v2.Compose:
    """The authors' evaluation transform of ``dataset``: uint8 RGB ``[3, H, W]`` -> uint8 ``[3, S, S]``.

    Squash to ``eval_resize x eval_resize`` with OpenCV bilinear, then the centre ``S x S``
    (FER2013, RAF-DB, VGGFace2, AffWild2: 256 then 224; Oulu-CASIA: 224, no crop; other sizes
    scaled). On a CPU tensor the output equals the authors' ``get_transforms(train=False)``
    pixels exactly. With ``resolution`` the original image is first lowered to it with the
    authors' PIL lowering (testing at low resolution).
    """
    spec = augment_spec(dataset, image_size)
    lowering = [RandomLowering(r=resolution)] if resolution is not None else []
    return v2.Compose(lowering + [SquashResize(spec.eval_resize), CenterCropFloor(image_size)])
