"""The paper's augmentations on a whole batch at once, on any device, with per-sample randomness.

``BatchAugment(dataset, image_size)`` runs the op list of ``mafer.transforms.augment_spec``
(the same list the per-image ``train_transform`` runs) on a uint8 batch ``[N, 3, H, W]``:

* every geometric op (fractional crop, resize, random/centre crop, elastic, shift/scale/rotate,
  horizontal flip) becomes one map from output to input pixel coordinates per image, and the
  batch is sampled **once** with ``F.grid_sample`` (bilinear);
* cutout is a mask, random grayscale a ``torch.where``.

A resize squashes to ``R x R`` like the authors' ``A.Resize`` (OpenCV ``INTER_LINEAR``: bilinear
at pixel centres, no antialiasing, edge pixels replicated). Leading resizes that shrink are done
first with ``F.interpolate(mode="bilinear", antialias=False)``; enlarging ones are folded into the
grid with the same edge clamping. Centre crops start at ``(side - S) // 2`` (albumentations).
Where ``v2`` fills with 0 (elastic and affine borders) the output is weighted by the same
sampled coverage ``v2`` multiplies by. Because the chain is resampled once instead of once per
op, pixels differ from the per-image path by interpolation rounding only; the random draws
follow the same distributions (see ``tests/test_batch_augment.py``).

``train=False`` (the validation inputs of training) is within one gray level of the per-image
``eval_transform``, which runs OpenCV itself and is the authors' bit for bit: OpenCV rounds its
bilinear weights to fixed point, this path computes them in float. ``mafer evaluate`` uses
``eval_transform``, never this class.

Channels come in groups of 3 (``[N, 3k, H, W]``): every group of an image gets the same draws,
which is how the CR step augments a full-resolution image and its lowered copy alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from mafer.errors import MaferError
from mafer.augment_spec import AugmentSpec, augment_spec, center_crop_offset

GEOMETRIC_OPS = ("crop_fraction", "resize", "random_crop", "center_crop", "elastic", "affine", "flip")
POINTWISE_OPS = ("grayscale", "cutout")
EVAL_OPS = ("resize", "center_crop")
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # v2.functional.rgb_to_grayscale


@dataclass(frozen=True)
class _Stage:
    """One geometric op with the frame sizes ``(h, w)`` it maps between."""

    op: str
    index: int  # position in the op list, keys the stage's random draws
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    offset: tuple[int, int] = (0, 0)  # fixed (top, left) of a centre crop


@dataclass
class AugmentParams:
    """The random draws for one batch, one row per image (tensors on the batch's device).

    Fields an op list does not use stay ``None``. Pixel quantities are in the frame the op
    works in. Edit them to pin an op (tests do), then pass to ``BatchAugment.apply``.
    """

    input_hw: tuple[int, int]
    crops: dict[int, Tensor]  # stage index -> LongTensor [N, 2] (top, left)
    gray: Tensor | None = None  # bool [N]
    elastic: Tensor | None = None  # bool [N]
    displacement: Tensor | None = None  # float [N, 2, h, w], (dx, dy) in pixels
    affine: Tensor | None = None  # bool [N]
    angle: Tensor | None = None  # degrees [N], v2.RandomAffine convention
    translate: Tensor | None = None  # pixels [N, 2], (tx, ty), integers like v2
    scale: Tensor | None = None  # [N]
    cutout: Tensor | None = None  # bool [N]
    holes: Tensor | None = None  # LongTensor [N, holes, 2], (cy, cx) centres
    flip: Tensor | None = None  # bool [N]

    def to(self, device: torch.device | str) -> AugmentParams:
        """The same draws on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        moved["crops"] = {k: v.to(device) for k, v in self.crops.items()}
        for name, value in moved.items():
            if isinstance(value, Tensor):
                moved[name] = value.to(device)
        return AugmentParams(**moved)


class BatchAugment:
    """The paper's train (or eval) transform of ``dataset`` at ``image_size``, vectorised over a batch.

    ``aug(images, generator=None)`` takes uint8 (or float 0..255) ``[N, 3k, H, W]`` on any device
    and returns ``[N, 3k, S, S]`` of ``dtype``: ``torch.uint8`` (default, the per-image
    contract) or a float dtype with values 0..255, unrounded, ready for
    ``mafer.models.preprocess`` (saves a round trip through uint8 on the GPU).
    Each image gets its own draws; a seeded ``generator`` makes them repeatable (draws are made
    on the generator's device, so give one on the batch's device to keep them there).
    ``train=False`` is the deterministic eval transform (squash, centre crop), within one gray
    level of ``mafer.transforms.eval_transform``.
    ``compile=True`` runs the resampling and pointwise ops through ``torch.compile``.
    """

    def __init__(self, dataset: str, image_size: int, train: bool = True, *,
                 dtype: torch.dtype = torch.uint8, spec: AugmentSpec | None = None, compile: bool = False):
        self.spec = spec if spec is not None else augment_spec(dataset, image_size)
        if self.spec.image_size != image_size:
            raise MaferError(f"spec is for {self.spec.image_size} px, BatchAugment asked for {image_size} px")
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise MaferError(f"BatchAugment returns uint8 or a float dtype, not {dtype}")
        self.train, self.dtype, self.image_size = train, dtype, image_size
        if train:
            self.ops = tuple(self.spec.train_ops)
        else:
            self.ops = EVAL_OPS
            self.spec = replace(self.spec, resize=self.spec.eval_resize)
        _check_op_order(self.ops, self.spec.dataset)
        self._plan = lru_cache(maxsize=8)(self._build_plan)
        # compiled, the whole chain after the draws is one fused graph (GPU: ~30 elementwise passes
        # over the batch become a few kernels); the draws stay eager, since seeded generators do not compile
        self._resample_all = torch.compile(self._resample_eager, dynamic=False) if compile else self._resample_eager

    def __repr__(self) -> str:
        return (f"BatchAugment(dataset={self.spec.dataset!r}, image_size={self.image_size}, "
                f"train={self.train}, ops={self.ops}, dtype={self.dtype})")

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Augment a batch with fresh per-image draws."""
        _check_batch(images)
        params = self.sample_params(images.shape[0], tuple(images.shape[-2:]), generator=generator,
                                    device=images.device)
        return self.apply(images, params.to(images.device))

    # ---- random draws -------------------------------------------------------------------

    def _build_plan(self, input_hw: tuple[int, int]) -> tuple[_Stage, ...]:
        """The geometric stages for inputs of size ``input_hw`` (frame sizes are fixed by it)."""
        stages, hw, s = [], input_hw, self.spec
        for index, op in enumerate(self.ops):
            if op not in GEOMETRIC_OPS:
                continue
            out_hw, offset = hw, (0, 0)
            if op == "crop_fraction":
                side = max(1, round(s.crop_fraction * min(hw)))
                out_hw = (side, side)
            elif op == "resize":
                out_hw = (s.resize, s.resize)
                if out_hw == hw:  # cv2.resize to the same size copies the image
                    continue
            elif op in ("random_crop", "center_crop"):
                size = self.image_size
                if size > hw[0] or size > hw[1]:
                    raise MaferError(f"{s.dataset}: cannot crop {size}x{size} out of a {hw[0]}x{hw[1]} image "
                                     f"(input {input_hw[0]}x{input_hw[1]}, ops {self.ops})")
                out_hw = (size, size)
                if op == "center_crop":
                    offset = (center_crop_offset(hw[0], size), center_crop_offset(hw[1], size))
            stages.append(_Stage(op, index, hw, out_hw, offset))
            hw = out_hw
        if hw != (self.image_size, self.image_size):
            raise MaferError(f"{s.dataset}: ops {self.ops} turn a {input_hw[0]}x{input_hw[1]} image into "
                             f"{hw[0]}x{hw[1]}, expected {self.image_size}x{self.image_size}")
        return tuple(stages)

    def sample_params(self, n: int, input_hw: tuple[int, int], generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> AugmentParams:
        """Draw the random parameters of ``n`` images of size ``input_hw``.

        Draws are made on the generator's device when one is given, else on ``device``.
        """
        device = generator.device if generator is not None else torch.device(device)
        s = self.spec

        def rand(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=device)

        def coin(p: float) -> Tensor:
            return rand(n) < p

        params = AugmentParams(input_hw=tuple(input_hw), crops={})
        for stage in self._plan(tuple(input_hw)):
            (h, w), (oh, ow) = stage.in_hw, stage.out_hw
            if stage.op in ("crop_fraction", "random_crop"):  # v2: randint(0, h - oh + 1)
                top = (rand(n) * (h - oh + 1)).long().clamp_(max=h - oh)
                left = (rand(n) * (w - ow + 1)).long().clamp_(max=w - ow)
                params.crops[stage.index] = torch.stack([top, left], 1)
            elif stage.op == "elastic":
                params.elastic = coin(s.elastic_p)
                params.displacement = _elastic_displacement(rand(n, 2, h, w), s.elastic_alpha, s.elastic_sigma)
            elif stage.op == "affine":
                params.affine = coin(s.affine_p)
                params.angle = (rand(n) * 2 - 1) * s.affine_degrees
                max_shift = _const((s.affine_shift * w, s.affine_shift * h), device)
                params.translate = ((rand(n, 2) * 2 - 1) * max_shift).round()
                params.scale = 1 + (rand(n) * 2 - 1) * s.affine_scale
            elif stage.op == "flip":
                params.flip = coin(s.flip_p)
        if "grayscale" in self.ops:
            params.gray = coin(s.grayscale_p)
        if "cutout" in self.ops:
            params.cutout = coin(s.cutout_p)
            size = self.image_size
            params.holes = (rand(n, s.cutout_holes, 2) * size).long().clamp_(max=size - 1)
        return params

    # ---- application --------------------------------------------------------------------

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """Augment ``images`` with the given draws (``params`` on the same device)."""
        _check_batch(images)
        if tuple(images.shape[-2:]) != params.input_hw:
            raise MaferError(f"params were drawn for {params.input_hw} images, got {tuple(images.shape[-2:])}")
        x = self._resample_all(images, params, self._plan(params.input_hw))
        if x.untyped_storage().data_ptr() == images.untyped_storage().data_ptr():
            x = x.clone()  # crops alone are views: never hand back (part of) the caller's tensor
        if self.dtype == torch.uint8:
            return x.round_().clamp_(0, 255).to(torch.uint8)
        return x.to(self.dtype)

    def _resample_eager(self, images: Tensor, params: AugmentParams, stages: tuple[_Stage, ...]) -> Tensor:
        """Geometry (explicit crops/resizes, then one grid_sample) and the pointwise ops, in float."""
        x = images if images.dtype in (torch.float32, torch.float64) else images.float()
        # (grid coordinates need float32: bf16 is off by ~0.5 px at 224)
        x, stages = _explicit_prefix(x, stages, params)
        if stages:
            x = _resample(x, stages, params)
        return self._pointwise(x, params)

    def _pointwise(self, x: Tensor, params: AugmentParams) -> Tensor:
        n, c, h, w = x.shape
        x = x.view(n, c // 3, 3, h, w)
        if params.gray is not None:
            r, g, b = x.unbind(2)
            gray = (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).floor_()  # v2 truncates
            x = torch.where(params.gray.view(n, 1, 1, 1, 1), gray.unsqueeze(2), x)
        if params.cutout is not None:
            keep = ~_cutout_mask(params.holes, self.spec.cutout_size, h, w)
            if params.flip is not None:  # cutout runs before the flip, which the grid already did
                keep = torch.where(params.flip.view(n, 1, 1), keep.flip(-1), keep)
            keep = keep | ~params.cutout.view(n, 1, 1)
            x = torch.where(keep.view(n, 1, 1, h, w), x, torch.full_like(x[:1, :1, :1, :1], self.spec.cutout_fill))
        return x.reshape(n, c, h, w)


def _check_batch(images: Tensor) -> None:
    if images.ndim != 4 or images.shape[1] % 3 != 0 or images.shape[1] == 0:
        raise MaferError(f"BatchAugment expects a batch [N, 3k, H, W] of RGB images, got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise MaferError(f"BatchAugment expects uint8 or float images, got {images.dtype}")


def _check_op_order(ops: tuple[str, ...], dataset: str) -> None:
    """The single resampling is exact only if cutout comes after every geometric op but the flip."""
    unknown = [op for op in ops if op not in GEOMETRIC_OPS + POINTWISE_OPS]
    if unknown:
        raise MaferError(f"{dataset}: BatchAugment does not know the ops {unknown} "
                         f"(known: {GEOMETRIC_OPS + POINTWISE_OPS})")
    if "cutout" in ops:
        later = [op for op in ops[ops.index("cutout") + 1:] if op in GEOMETRIC_OPS and op != "flip"]
        if later:
            raise MaferError(f"{dataset}: cutout before {later} cannot be applied as a mask after one resampling")


# ---- elastic ------------------------------------------------------------------------------

def _elastic_displacement(noise: Tensor, alpha: float, sigma: float) -> Tensor:
    """v2.ElasticTransform's field from uniform noise ``[N, 2, h, w]``: Gaussian blur
    (kernel ``int(8 sigma + 1)`` made odd, reflect padding), in pixels: ``alpha / 2 * blur``."""
    field = noise * 2 - 1
    if sigma > 0:
        h, w = field.shape[-2:]
        blur_h = _blur_matrix(h, sigma, str(field.device))
        blur_w = _blur_matrix(w, sigma, str(field.device))
        # separable blur as two matmuls: a 401-tap kernel (RAF-DB, sigma 50) costs nothing this way
        field = blur_h @ field @ blur_w.T
    return field * (alpha / 2)


@lru_cache(maxsize=16)
def _blur_matrix(n: int, sigma: float, device: str) -> Tensor:
    """``[n, n]`` matrix of a 1-D Gaussian blur with reflect padding (torch's "reflect" mode)."""
    size = int(8 * sigma + 1)
    size += 1 - size % 2
    lim = (size - 1) / (2.0 * math.sqrt(2.0))  # v2.functional._get_gaussian_kernel1d
    kernel = torch.softmax(torch.linspace(-lim, lim, size, dtype=torch.float64).div(sigma).pow(2).neg(), 0)
    radius = size // 2
    src = torch.arange(n).unsqueeze(1) + torch.arange(-radius, radius + 1).unsqueeze(0)
    if n > 1:  # reflect without repeating the edge: period 2(n-1)
        period = 2 * (n - 1)
        src = src.remainder(period)
        src = torch.where(src > n - 1, period - src, src)
    else:
        src = torch.zeros_like(src)
    matrix = torch.zeros(n, n, dtype=torch.float64)
    matrix.scatter_add_(1, src, kernel.expand(n, size).clone())
    return matrix.float().to(device)


# ---- cutout -------------------------------------------------------------------------------

def _cutout_mask(holes: Tensor, size: int, h: int, w: int) -> Tensor:
    """bool ``[N, h, w]``, True inside any hole: side ``size``, from ``c - size // 2``, clipped."""
    start = holes - size // 2  # [N, K, 2]
    rows = torch.arange(h, device=holes.device)
    cols = torch.arange(w, device=holes.device)
    in_rows = (rows >= start[..., :1]) & (rows < start[..., :1] + size)  # [N, K, h]
    in_cols = (cols >= start[..., 1:]) & (cols < start[..., 1:] + size)  # [N, K, w]
    # a pixel is cut if some hole covers both its row and its column: one batched matmul
    return torch.bmm(in_rows.transpose(1, 2).float(), in_cols.float()) > 0


# ---- geometry -----------------------------------------------------------------------------

def _explicit_prefix(x: Tensor, stages: tuple[_Stage, ...], params: AugmentParams
                     ) -> tuple[Tensor, tuple[_Stage, ...]]:
    """Run the leading crops/resizes directly when one of them shrinks (as the per-image path
    does, which keeps later ops on the same pixel grid) and, when only integer crops would be
    left, those too."""
    lead = 0
    while lead < len(stages) and stages[lead].op in ("crop_fraction", "resize", "random_crop", "center_crop"):
        lead += 1
    shrinks = [i for i in range(lead) if stages[i].op == "resize" and _shrinks(stages[i])]
    count = shrinks[-1] + 1 if shrinks else 0
    if all(stage.op != "resize" for stage in stages[count:]) and lead == len(stages):
        count = len(stages)
    for stage in stages[:count]:
        if stage.op == "resize":
            x = F.interpolate(x, size=stage.out_hw, mode="bilinear", align_corners=False, antialias=False)
        else:
            x = _crop(x, stage, params)
    return x, stages[count:]


def _shrinks(stage: _Stage) -> bool:
    return stage.out_hw[0] < stage.in_hw[0] or stage.out_hw[1] < stage.in_hw[1]


def _crop_offsets(stage: _Stage, params: AugmentParams, n: int, device: torch.device) -> Tensor:
    if stage.op == "center_crop":
        return _const(stage.offset, device).expand(n, 2)
    return params.crops[stage.index]


def _const(values: tuple[float, ...], device: torch.device | str) -> Tensor:
    """A small constant tensor, made once per device: a fresh host-to-GPU copy would stall the stream."""
    values = tuple(float(v) for v in values)
    if torch.compiler.is_compiling():  # a graph's constants cost nothing, and the cache would not trace
        return torch.tensor(values, device=device)
    return _const_cached(values, str(device))


@lru_cache(maxsize=256)
def _const_cached(values: tuple[float, ...], device: str) -> Tensor:
    return torch.tensor(values, device=device)


def _crop(x: Tensor, stage: _Stage, params: AugmentParams) -> Tensor:
    """The stage's crop: a slice for a centre crop, a gather of per-image windows for a random one."""
    hw = stage.out_hw
    if stage.op == "center_crop":
        top, left = stage.offset
        return x[..., top:top + hw[0], left:left + hw[1]]
    n, offsets = x.shape[0], params.crops[stage.index]
    rows = offsets[:, :1] + torch.arange(hw[0], device=x.device)  # [N, h]
    cols = offsets[:, 1:] + torch.arange(hw[1], device=x.device)  # [N, w]
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return x.permute(0, 2, 3, 1)[batch, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


def _affine_inverse(params: AugmentParams, hw: tuple[int, int]) -> Tensor:
    """``[N, 3, 3]`` map from output to input pixel coordinates of v2.functional.affine
    (rotation about the centre, then scale, then integer translation); identity where off."""
    angle = torch.deg2rad(params.angle)
    cos, sin = torch.cos(angle) / params.scale, torch.sin(angle) / params.scale
    tx, ty = params.translate.unbind(1)
    # v2's _get_inverse_affine_matrix with centre (0, 0) in centred coordinates
    m = torch.zeros(angle.shape[0], 3, 3, device=angle.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = cos, sin, -cos * tx - sin * ty
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = -sin, cos, sin * tx - cos * ty
    m[:, 2, 2] = 1
    centre = _translation(hw[1] / 2, hw[0] / 2, angle.device)
    uncentre = _translation(-hw[1] / 2, -hw[0] / 2, angle.device)
    m = centre @ m @ uncentre
    return torch.where(params.affine.view(-1, 1, 1), m, torch.eye(3, device=m.device))


def _translation(tx: float, ty: float, device: torch.device) -> Tensor:
    m = torch.eye(3, device=device)
    m[0, 2], m[1, 2] = tx, ty
    return m


def _coverage(coords: Tensor, hw: tuple[int, int]) -> Tensor:
    """Share of a zero-padded bilinear sample at ``coords`` ``[N, P, 2]`` that falls inside ``hw``."""
    size = _const((hw[1], hw[0]), coords.device)
    inside = torch.minimum(coords + 0.5, size + 0.5 - coords).clamp_(0, 1)
    return inside[..., 0] * inside[..., 1]


class _Grid:
    """Output-to-input coordinates ``[N, P, 2]`` (x, y; pixel ``i`` spans ``[i, i + 1]``), built
    backwards from the output. Affine maps stay a pending ``[N, 3, 3]`` matrix until a non-affine
    step needs the coordinates, so a chain of affine ops costs one pass over the grid."""

    def __init__(self, n: int, hw: tuple[int, int], device: torch.device):
        ys, xs = torch.meshgrid(torch.arange(hw[0], device=device) + 0.5,
                                torch.arange(hw[1], device=device) + 0.5, indexing="ij")
        self.base = torch.stack([xs, ys], -1).view(1, -1, 2)
        self.n, self.hw = n, hw
        self.coords = self.base.expand(n, -1, -1)
        self.pending: Tensor | None = None

    def map(self, matrix: Tensor) -> None:
        """Compose ``[N, 3, 3]`` or ``[3, 3]`` (this frame's coordinates from the previous frame's)."""
        self.pending = matrix if self.pending is None else matrix @ self.pending

    def points(self) -> Tensor:
        """The coordinates with every pending map applied."""
        if self.pending is not None:
            m = self.pending.expand(self.n, 3, 3).unsqueeze(1)  # [N, 1, 3, 3]
            # three fused-friendly elementwise ops; a batched matmul with K = 2 wastes the GPU
            self.coords = (self.coords[..., :1] * m[..., :2, 0] + self.coords[..., 1:] * m[..., :2, 1]
                           + m[..., :2, 2])
            self.pending = None
        return self.coords


def _resample(x: Tensor, stages: tuple[_Stage, ...], params: AugmentParams) -> Tensor:
    """One bilinear ``grid_sample`` for the whole chain of geometric stages."""
    n, device = x.shape[0], x.device
    out_hw = stages[-1].out_hw
    grid = _Grid(n, out_hw, device)
    weight: Tensor | None = None

    def fill_weight(cov: Tensor, on: Tensor) -> None:
        # v2 multiplies its zero-padded sample by the sampled mask once more: coverage squared
        nonlocal weight
        w = torch.where(on.view(n, 1), cov * cov, torch.ones_like(cov))
        weight = w if weight is None else weight * w

    for stage in reversed(stages):
        h, w = stage.in_hw
        if stage.op == "flip":
            flip = _const((-1.0, 0, w, 0, 1, 0, 0, 0, 1), device).view(3, 3)
            grid.map(torch.where(params.flip.view(n, 1, 1), flip, torch.eye(3, device=device)))
        elif stage.op == "affine":
            grid.map(_affine_inverse(params, stage.in_hw))
            fill_weight(_coverage(grid.points(), stage.in_hw), params.affine)
        elif stage.op == "elastic":
            v = grid.points()
            field = params.displacement * params.elastic.view(n, 1, 1, 1).to(params.displacement.dtype)
            d = F.grid_sample(field, _normalise(v, stage.in_hw).view(n, 1, -1, 2), mode="bilinear",
                              padding_mode="border", align_corners=False)
            grid.coords = v + d.view(n, 2, -1).transpose(1, 2)
            fill_weight(_coverage(grid.coords, stage.in_hw), params.elastic)
        elif stage.op == "resize":
            (oh, ow) = stage.out_hw
            grid.map(torch.diag(_const((w / ow, h / oh, 1.0), device)))
            # OpenCV replicates the edge pixel: clamp to the outer pixel centres
            points = grid.points()
            grid.coords = torch.maximum(torch.minimum(points, _const((w - 0.5, h - 0.5), device)),
                                        _const((0.5, 0.5), device))
        else:  # crops
            offsets = _crop_offsets(stage, params, n, device).to(torch.float32)
            shift = torch.eye(3, device=device).repeat(n, 1, 1)
            shift[:, 0, 2], shift[:, 1, 2] = offsets[:, 1], offsets[:, 0]
            grid.map(shift)
    in_hw = stages[0].in_hw
    coords = _normalise(grid.points(), in_hw).view(n, *out_hw, 2)
    out = F.grid_sample(x, coords.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    if weight is not None:
        out = out * weight.view(n, 1, *out_hw).to(out.dtype)
    return out


def _normalise(coords: Tensor, hw: tuple[int, int]) -> Tensor:
    """Pixel coordinates to grid_sample's [-1, 1] (align_corners=False)."""
    return coords * _const((2 / hw[1], 2 / hw[0]), coords.device) - 1
