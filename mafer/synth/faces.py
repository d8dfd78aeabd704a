"""Parametric synthetic faces, drawn with vectorised numpy over a batch.

A face lives in *face units*: x to the right, y downwards, the head centred near the
origin with a half-width of about 0.6. Every image has a pose (rotation, shift, scale)
that maps its pixel grid into face units, so each part of the face is an analytic
shape (ellipse, curve, band between curves) evaluated on that grid with analytic
anti-aliasing: no supersampling, and strokes thinner than a pixel keep their ink.

Identity lives in geometry, skin tone, hair, eye colour and small marks (moles,
glasses); expression lives in facial-action parameters (brows, lids, mouth, wrinkles).
Several expression cues are fine lines (forehead, glabella, nose wrinkles, crow's
feet, nasolabial folds, lip line), so an 8-pixel face loses them, while the coarse ones
(open dark mouth, wide bright smile, brow height) survive.

Parameters travel as "struct of arrays": ``dict[str, np.ndarray]`` with one entry per
image (or per identity), so a whole batch is drawn with a few dozen array operations.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mafer.errors import MaferError

Params = dict[str, np.ndarray]

# Canonical expression names; each dataset maps its own label order onto these.
EXPRESSIONS = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")

# Facial-action parameters and their values at full intensity (neutral = all zero).
# brow_raise/brow_inner/mouth_curve/eye_open/mouth_width are signed; the rest are 0..1.
EXPRESSION_FIELDS = (
    "brow_raise", "brow_inner", "eye_open", "mouth_curve", "mouth_open", "mouth_width",
    "teeth", "forehead", "glabella", "nose_wrinkle", "nasolabial", "crows_feet",
    "cheek", "lip_press", "upper_lip",
)
_PROTOTYPES: dict[str, dict[str, float]] = {
    "neutral": {},
    "happiness": dict(mouth_curve=1.0, mouth_width=0.5, mouth_open=0.4, teeth=1.0,
                      cheek=1.0, eye_open=-0.35, nasolabial=0.9, crows_feet=1.0),
    "surprise": dict(brow_raise=1.0, eye_open=0.75, mouth_open=1.0, mouth_width=-0.4,
                     forehead=1.0),
    "fear": dict(brow_raise=0.55, brow_inner=0.8, eye_open=0.6, mouth_open=0.4,
                 mouth_width=0.35, mouth_curve=-0.35, forehead=0.7, teeth=0.6),
    "sadness": dict(brow_inner=1.0, brow_raise=0.1, eye_open=-0.3, mouth_curve=-1.0,
                    mouth_width=-0.1, lip_press=0.3, forehead=0.35),
    "anger": dict(brow_raise=-0.8, brow_inner=-1.0, glabella=1.0, eye_open=0.05,
                  lip_press=1.0, mouth_curve=-0.25, mouth_width=-0.15, nasolabial=0.3),
    "disgust": dict(nose_wrinkle=1.0, upper_lip=1.0, brow_raise=-0.4, brow_inner=-0.3,
                    eye_open=-0.4, mouth_curve=-0.4, nasolabial=1.0, teeth=0.6,
                    glabella=0.35),
}
PROTOTYPES = np.array(
    [[_PROTOTYPES[e].get(f, 0.0) for f in EXPRESSION_FIELDS] for e in EXPRESSIONS], np.float32
)

_SKIN = np.array([[98, 62, 44], [136, 90, 64], [176, 120, 88], [214, 164, 128],
                  [238, 204, 178]], np.float32)
_HAIR = np.array([[22, 18, 16], [55, 38, 26], [98, 66, 40], [150, 110, 62],
                  [205, 170, 105], [150, 148, 145], [130, 58, 28]], np.float32)
_IRIS = np.array([[60, 38, 22], [95, 62, 35], [70, 100, 130], [80, 105, 70], [40, 30, 25]],
                 np.float32)

Range = tuple[float, float]  # (low, high) of a uniform draw


@dataclass(frozen=True)
class FaceVariant:
    """The distributions synthetic faces are drawn from: who the people are, how strongly and
    how noisily they show expressions, and how they are photographed.

    Lengths are in face units (head half-width about 0.6), angles in radians, colours in RGB
    0..255. Draws happen in the order of the tables, so a variant with the same values draws
    the same faces from the same seed (`DEMO` reproduces the demo data byte for byte).
    """

    name: str
    # -- identity: uniform ranges of the face geometry, in the order they are drawn
    shape_ranges: tuple[tuple[str, float, float], ...] = (
        ("head_w", 0.5, 0.64), ("head_h", 0.7, 0.84), ("jaw", 0.0, 1.0),  # jaw: 1 = narrow chin
        ("eye_x", 0.19, 0.27), ("eye_y", -0.12, -0.05), ("eye_w", 0.07, 0.1),
        ("eye_h", 0.03, 0.045), ("brow_gap", 0.09, 0.14), ("brow_w", 0.025, 0.05),
        ("brow_arch", 0.0, 0.035), ("brow_tilt", -0.02, 0.02),
        ("nose_y", 0.13, 0.21), ("nose_w", 0.05, 0.08), ("mouth_y", 0.34, 0.42),
        ("mouth_w", 0.16, 0.22), ("lip_h", 0.024, 0.04),
        ("hairline", -0.66, -0.44), ("hair_vol", 0.02, 0.14),
    )
    # share of people with each trait (drawn after the geometry)
    trait_rates: tuple[tuple[str, float], ...] = (
        ("long_hair", 0.4), ("bangs", 0.2), ("glasses", 0.15), ("stubble", 0.15), ("mole_on", 0.5),
    )
    # the mole's place and radius, and a small sideways gaze (drawn after the traits)
    mark_ranges: tuple[tuple[str, float, float], ...] = (
        ("mole_x", -0.35, 0.35), ("mole_y", -0.35, 0.3), ("mole_r", 0.008, 0.016), ("gaze_x", -0.01, 0.01),
    )
    skin_gain: Range = (0.93, 1.07)  # per-channel factor on the interpolated skin palette
    hair_gain: Range = (0.85, 1.15)  # per-channel factor on the hair palette colour
    lip_tint: tuple[float, float, float] = (0.82, 0.55, 0.55)  # lips = skin x tint + offset
    lip_offset: Range = (-10.0, 10.0)
    # -- resting face: a per-person offset of these facial-action parameters, added to every
    # expression that person shows (normal, this standard deviation; 0 = none, nothing drawn)
    resting_face_std: float = 0.0
    resting_face_fields: tuple[str, ...] = ("brow_raise", "brow_inner", "eye_open", "mouth_curve", "mouth_width")
    # -- expression: Gaussian noise added to every facial-action parameter
    expression_jitter: float = 0.1
    # -- photograph (each spread multiplied by the dataset's pose_jitter)
    roll_std: float = 0.09  # in-plane head rotation, radians
    roll_limit: float = 0.3
    shift_std: float = 0.04  # face-centre offset, in half image sizes
    log_scale_std: float = 0.06  # spread of log(face size)
    light_amp: Range = (0.0, 0.35)  # strength of the linear lighting gradient
    gain: Range = (0.75, 1.15)  # exposure
    noise_std: Range = (0.5, 4.0)  # Gaussian sensor noise, grey levels
    background_grey: Range = (40.0, 210.0)  # brightness of the two background colours
    background_saturation: Range = (0.0, 0.6)  # how far each moves from grey towards a random colour
    background_colour: Range = (30.0, 225.0)
    colour_cast: Range = (0.93, 1.07)  # white balance, per channel
    background_cells: int = 4  # the background blotches: a cells x cells grid, upsampled
    # -- how far a facial action moves the face at intensity 1 (face units, or factors): the
    # coarse cues that decide what survives at 8 px
    brow_raise_shift: float = 0.09  # brows (and forehead lines) up by brow_raise x this
    brow_inner_shift: float = 0.06  # inner brow ends up (sad, fearful) or down (angry)
    eye_open_gain: float = 0.6  # lid opening x (1 + eye_open x this)
    mouth_width_gain: float = 0.3  # mouth width x (1 + mouth_width x this)
    mouth_corner_lift: float = 0.07  # smile: corners up by mouth_curve x this
    mouth_corner_drop: float = 0.055  # frown: corners down by -mouth_curve x this
    mouth_gap: float = 0.14  # lips apart by mouth_open x this


DEMO = FaceVariant("demo")
VARIANTS: dict[str, FaceVariant] = {
    "demo": DEMO,
    # README, "What the demo shows": people who differ in their resting face (per-person
    # offsets of brows, lids and mouth), on top of everything the demo draws
    "resting-face": dataclasses.replace(DEMO, name="resting-face", resting_face_std=0.5),
}


def face_variant(name: str) -> FaceVariant:
    """The variant called ``name`` (a key of `VARIANTS`); MaferError otherwise."""
    if name not in VARIANTS:
        raise MaferError(f"unknown synthetic face variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def _col(a: np.ndarray) -> np.ndarray:
    """[N] -> [N, 1, 1] so per-image parameters broadcast over a pixel window."""
    return np.asarray(a, np.float32)[:, None, None]


def take(params: Params, index: np.ndarray) -> Params:
    """Rows `index` of every parameter (e.g. identity parameters for each image)."""
    return {k: v[index] for k, v in params.items()}


# ----------------------------------------------------------------------------- sampling

def sample_identities(rng: np.random.Generator, n: int, variant: FaceVariant = DEMO) -> Params:
    """Geometry, colours and marks (and, when the variant has one, the resting face) of `n` people."""
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)  # noqa: E731
    skin_t = rng.uniform(0, len(_SKIN) - 1, n)
    lo = np.floor(skin_t).astype(int).clip(0, len(_SKIN) - 2)
    frac = (skin_t - lo)[:, None]
    skin = (_SKIN[lo] * (1 - frac) + _SKIN[lo + 1] * frac) * rng.uniform(*variant.skin_gain, (n, 3))
    hair = _HAIR[rng.integers(0, len(_HAIR), n)] * rng.uniform(*variant.hair_gain, (n, 3))
    lips = skin * np.array(variant.lip_tint) + rng.uniform(*variant.lip_offset, (n, 3))
    ident: Params = {name: u(lo_, hi) for name, lo_, hi in variant.shape_ranges}
    ident |= {name: (rng.random(n) < rate).astype(np.float32) for name, rate in variant.trait_rates}
    ident |= {name: u(lo_, hi) for name, lo_, hi in variant.mark_ranges}
    for name, rgb in (("skin", skin), ("hair", hair), ("lips", lips),
                      ("iris", _IRIS[rng.integers(0, len(_IRIS), n)])):
        ident[name] = np.clip(rgb, 0, 255).astype(np.float32)  # [n, 3] RGB
    if variant.resting_face_std > 0:
        for field in variant.resting_face_fields:
            ident["rest_" + field] = rng.normal(0, variant.resting_face_std, n).astype(np.float32)
    return ident


def with_resting_face(expr: Params, ident: Params) -> Params:
    """``expr`` plus the per-person resting offsets in ``ident`` (``rest_<field>``), if any."""
    rest = {k[len("rest_"):]: v for k, v in ident.items() if k.startswith("rest_")}
    return expr if not rest else {k: v + rest[k] if k in rest else v for k, v in expr.items()}


def expression_params(rng: np.random.Generator, expression: np.ndarray, intensity: np.ndarray,
                      jitter: float | None = None, variant: FaceVariant = DEMO) -> Params:
    """Facial-action parameters for canonical expression indices at the given intensity (0..1),
    plus Gaussian noise of std ``jitter`` (default: the variant's ``expression_jitter``)."""
    jitter = variant.expression_jitter if jitter is None else jitter
    base = PROTOTYPES[expression] * np.asarray(intensity, np.float32)[:, None]
    base = base + rng.normal(0, jitter, base.shape).astype(np.float32)
    return {f: base[:, i] for i, f in enumerate(EXPRESSION_FIELDS)}


def sample_conditions(rng: np.random.Generator, n: int, *, scale: float = 1.0,
                      pose_jitter: float = 1.0, variant: FaceVariant = DEMO) -> Params:
    """Pose (rotation, shift, scale), lighting, background and noise of `n` images."""
    v = variant
    u = lambda lo, hi: rng.uniform(lo, hi, n).astype(np.float32)  # noqa: E731
    cond: Params = {
        "angle": rng.normal(0, v.roll_std * pose_jitter, n).clip(-v.roll_limit, v.roll_limit).astype(np.float32),
        "tx": rng.normal(0, v.shift_std * pose_jitter, n).astype(np.float32),
        "ty": rng.normal(0, v.shift_std * pose_jitter, n).astype(np.float32),
        "scale": (scale * np.exp(rng.normal(0, v.log_scale_std * pose_jitter, n))).astype(np.float32),
        "light_amp": u(*v.light_amp), "light_dir": u(0, 2 * np.pi),
        "gain": u(*v.gain), "noise": u(*v.noise_std),
    }
    # background: two muted colours blended by smooth blotches
    grey = rng.uniform(*v.background_grey, (n, 2, 1))
    bg = grey + rng.uniform(*v.background_saturation, (n, 2, 1)) * (rng.uniform(*v.background_colour, (n, 2, 3)) - grey)
    cond["bg"] = bg.astype(np.float32)  # [n, 2, 3]
    cond["cast"] = rng.uniform(*v.colour_cast, (n, 3)).astype(np.float32)  # white balance
    cells = v.background_cells
    cond["bg_grid"] = rng.uniform(-1, 1, (n, cells, cells)).astype(np.float32)  # smooth background blotches
    return cond


# ----------------------------------------------------------------------------- shapes

def _fill(d: np.ndarray, px: np.ndarray) -> np.ndarray:
    """Coverage of a filled shape from its (approximate) signed distance, inside < 0."""
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _line(d: np.ndarray, width, px: np.ndarray) -> np.ndarray:
    """Coverage of a stroke of `width` at unsigned distance `d`; thin strokes keep their ink."""
    w = np.maximum(width, 1e-4)
    we = np.maximum(w, px)
    return np.clip((we * 0.5 - d) / px + 0.5, 0.0, 1.0) * (w / we)


def _ellipse_d(x, y, cx, cy, a, b):
    """First-order signed distance to an axis-aligned ellipse (exact sign, good near the edge)."""
    dx, dy = x - cx, y - cy
    f = (dx / a) ** 2 + (dy / b) ** 2 - 1.0
    g = 2.0 * np.sqrt((dx / a**2) ** 2 + (dy / b**2) ** 2) + 1e-6
    return f / g


def _curve_d(x, y, x0, x1, y0, y1, bulge):
    """Distance to the curve y(x) from (x0, y0) to (x1, y1) bowed by `bulge` at its middle.

    `bulge` > 0 bows towards +y. Swap x and y to draw steep curves.
    """
    span = x1 - x0
    t = np.clip((x - x0) / span, 0.0, 1.0)
    xc = x0 + t * span
    yc = y0 + (y1 - y0) * t + 4.0 * bulge * t * (1.0 - t)
    slope = ((y1 - y0) + 4.0 * bulge * (1.0 - 2.0 * t)) / span
    return np.sqrt((x - xc) ** 2 + (y - yc) ** 2 / (1.0 + slope**2))


def _between(y, top, bottom, side_d, px):
    """Coverage of the band top < y < bottom, cut where `side_d` (signed, inside < 0) > 0."""
    a = np.minimum(np.clip((y - top) / px + 0.5, 0, 1), np.clip((bottom - y) / px + 0.5, 0, 1))
    return np.minimum(a, _fill(side_d, px))


# ----------------------------------------------------------------------------- canvas

class _Canvas:
    """An RGB float batch plus the affine map from each image's pixels to face units."""

    def __init__(self, cond: Params, height: int, width: int):
        n = len(cond["angle"])
        self.h, self.w = height, width
        m = min(height, width) / 2.0
        self.xs = ((np.arange(width) + 0.5 - width / 2.0) / m).astype(np.float32)
        self.ys = ((np.arange(height) + 0.5 - height / 2.0) / m).astype(np.float32)
        cos, sin, s = np.cos(cond["angle"]), np.sin(cond["angle"]), cond["scale"]
        # face = R(angle) (image - shift) / scale
        self.a, self.b = cos / s, sin / s
        self.c, self.d = -sin / s, cos / s
        self.e = -(self.a * cond["tx"] + self.b * cond["ty"])
        self.f = -(self.c * cond["tx"] + self.d * cond["ty"])
        self.px = _col(1.0 / (m * s))
        self.img = np.zeros((n, height, width, 3), np.float32)
        self.m = m
        self.cond = cond

    def window(self, x0, x1, y0, y1):
        """Pixel slices covering a face-unit box in every image, and face coordinates there."""
        fx = np.array([x0, x0, x1, x1], np.float32)[None, :]
        fy = np.array([y0, y1, y0, y1], np.float32)[None, :]
        # inverse map: image = scale * R(-angle) face + shift
        c = self.cond
        s, cos, sin = c["scale"][:, None], np.cos(c["angle"])[:, None], np.sin(c["angle"])[:, None]
        ix = s * (cos * fx - sin * fy) + c["tx"][:, None]
        iy = s * (sin * fx + cos * fy) + c["ty"][:, None]
        c0 = int(np.clip(np.floor(ix.min() * self.m + self.w / 2.0) - 2, 0, self.w))
        c1 = int(np.clip(np.ceil(ix.max() * self.m + self.w / 2.0) + 2, 0, self.w))
        r0 = int(np.clip(np.floor(iy.min() * self.m + self.h / 2.0) - 2, 0, self.h))
        r1 = int(np.clip(np.ceil(iy.max() * self.m + self.h / 2.0) + 2, 0, self.h))
        X, Y = self.xs[None, None, c0:c1], self.ys[None, r0:r1, None]
        u = _col(self.a) * X + _col(self.b) * Y + _col(self.e)
        v = _col(self.c) * X + _col(self.d) * Y + _col(self.f)
        return (slice(r0, r1), slice(c0, c1)), u, v

    def paint(self, win, alpha: np.ndarray, color: np.ndarray) -> None:
        """Alpha-blend `color` ([N, 3] or [N, h, w, 3]) into the window."""
        if alpha.size == 0:
            return
        if color.ndim == 2:
            color = color[:, None, None, :]
        region = self.img[:, win[0], win[1]]
        a = alpha[..., None]
        self.img[:, win[0], win[1]] = region + a * (color - region)


def _upsample(grids: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear upsampling of small per-image grids [N, k, k] to [N, h, w]."""
    cells = grids.shape[-1]
    ry = np.clip((np.arange(h) + 0.5) / h * (cells - 1), 0, cells - 1)
    rx = np.clip((np.arange(w) + 0.5) / w * (cells - 1), 0, cells - 1)
    my = np.maximum(0, 1 - np.abs(ry[:, None] - np.arange(cells)[None, :]))
    mx = np.maximum(0, 1 - np.abs(rx[:, None] - np.arange(cells)[None, :]))
    return np.einsum("hi,nij,wj->nhw", my, grids, mx).astype(np.float32)


# ----------------------------------------------------------------------------- drawing

def render(ident: Params, expr: Params, cond: Params, height: int, width: int,
           rng: np.random.Generator, gray: bool = False, variant: FaceVariant = DEMO) -> np.ndarray:
    """Draw one face per row of the parameter batches: uint8 [N, height, width, 3] (RGB); the
    variant's cue gains set how far each facial action moves brows, lids and mouth."""
    expr = with_resting_face(expr, ident)
    cv = _Canvas(cond, height, width)
    _background(cv, cond)
    skin = ident["skin"]
    hair = ident["hair"]
    _hair_back(cv, ident, hair)
    _neck_and_clothes(cv, ident, skin)
    _head(cv, ident, skin)
    _cheeks(cv, ident, expr, skin)
    _hair_front(cv, ident, hair)
    _wrinkles(cv, ident, expr, skin, variant)
    _nose(cv, ident, skin)
    _eyes(cv, ident, expr, variant)
    _brows(cv, ident, expr, hair, variant)
    _mouth(cv, ident, expr, skin, variant)
    _marks(cv, ident, skin, rng)
    return _finish(cv, cond, rng, gray)


def _background(cv: _Canvas, cond: Params) -> None:
    c0, c1 = cond["bg"][:, 0], cond["bg"][:, 1]
    t = 0.5 + 0.5 * _upsample(cond["bg_grid"], cv.h, cv.w)
    cv.img[:] = c0[:, None, None, :] + t[..., None] * (c1 - c0)[:, None, None, :]


def _hair_back(cv: _Canvas, p: Params, hair: np.ndarray) -> None:
    win, u, v = cv.window(-1.0, 1.0, -1.1, 1.1)
    hw, hh, vol = _col(p["head_w"]), _col(p["head_h"]), _col(p["hair_vol"])
    top = _fill(_ellipse_d(u, v, 0.0, -0.1, hw + vol + 0.02, hh * 0.9 + vol), cv.px)
    long_ = _fill(np.maximum(np.abs(u) - (hw + vol + 0.04), v - 0.85), cv.px) * (v > -0.2)
    cv.paint(win, np.maximum(top, long_ * _col(p["long_hair"])), hair * 0.8)


def _neck_and_clothes(cv: _Canvas, p: Params, skin: np.ndarray) -> None:
    win, u, v = cv.window(-1.2, 1.2, 0.3, 1.8)
    hw = _col(p["head_w"])
    neck = _fill(np.maximum(np.abs(u) - hw * 0.55, 0.3 - v), cv.px)
    cv.paint(win, neck, skin * 0.82)
    shirt = _fill(_ellipse_d(u, v, 0.0, 1.55, 1.15, 0.62), cv.px)
    shirt_col = (p["hair"][:, ::-1] * 0.6 + 60.0) % 255
    cv.paint(win, shirt, shirt_col)


def _head(cv: _Canvas, p: Params, skin: np.ndarray) -> None:
    win, u, v = cv.window(-0.85, 0.85, -1.0, 1.0)
    hw, hh, jaw = _col(p["head_w"]), _col(p["head_h"]), _col(p["jaw"])
    ears = _fill(_ellipse_d(np.abs(u), v, hw - 0.01, _col(p["eye_y"]) + 0.1, 0.07, 0.13), cv.px)
    cv.paint(win, ears, skin * 0.9)
    # a narrower jaw: squeeze x towards the chin
    squeeze = 1.0 - 0.3 * jaw * np.clip(v / hh, 0, 1) ** 2
    head = _fill(_ellipse_d(u / squeeze, v, 0.0, 0.02, hw, hh) * squeeze, cv.px)
    # soft shading towards the face border
    r2 = np.clip((u / (hw * squeeze)) ** 2 + ((v - 0.02) / hh) ** 2, 0, 1)
    shade = (1.0 - 0.22 * r2**2)[..., None]
    cv.paint(win, head, skin[:, None, None, :] * shade)


def _cheeks(cv: _Canvas, p: Params, e: Params, skin: np.ndarray) -> None:
    win, u, v = cv.window(-0.6, 0.6, -0.2, 0.45)
    cx, cy = _col(p["eye_x"]) + 0.02, _col(p["nose_y"]) - 0.02
    amt = np.clip(_col(e["cheek"]), 0, 1)
    blob = np.exp(-(((np.abs(u) - cx) / 0.11) ** 2 + ((v - cy) / 0.08) ** 2))
    glow = np.minimum(skin * np.array([1.12, 1.0, 0.98]) + 8.0, 255)
    cv.paint(win, 0.8 * amt * blob, glow)


def _hair_front(cv: _Canvas, p: Params, hair: np.ndarray) -> None:
    win, u, v = cv.window(-0.9, 0.9, -1.1, -0.1)
    hw, hh, vol = _col(p["head_w"]), _col(p["head_h"]), _col(p["hair_vol"])
    line = _col(p["hairline"]) + 0.12 * _col(p["bangs"]) + 0.45 * u**2
    inside = _fill(_ellipse_d(u, v, 0.0, -0.1, hw + vol + 0.02, hh * 0.9 + vol), cv.px)
    cv.paint(win, np.minimum(inside, np.clip((line - v) / cv.px + 0.5, 0, 1)), hair)


def _wrinkles(cv: _Canvas, p: Params, e: Params, skin: np.ndarray, g: FaceVariant) -> None:
    """Thin expression lines: forehead, glabella, nose bridge, crow's feet, nasolabial folds."""
    dark = np.maximum(skin * 0.45 - 12.0, 0.0)
    ey, ex, ew = _col(p["eye_y"]), _col(p["eye_x"]), _col(p["eye_w"])
    brow_y = ey - _col(p["brow_gap"]) - g.brow_raise_shift * _col(e["brow_raise"])
    px = cv.px
    win, u, v = cv.window(-0.5, 0.5, -0.75, 0.0)
    lines = np.zeros_like(u)
    for k in range(3):  # forehead
        y, half = brow_y - 0.08 - 0.055 * k, 0.24 - 0.03 * k
        lines = np.maximum(lines, _line(_curve_d(u, v, -half, half, y, y, -0.015), 0.016, px))
    fore = lines * np.clip(_col(e["forehead"]), 0, 1)
    gl = np.zeros_like(u)
    for side in (-1.0, 1.0):  # glabella: short vertical lines between the brows
        d = _curve_d(v, u, brow_y - 0.02, brow_y + 0.07, side * 0.028, side * 0.018, side * 0.006)
        gl = np.maximum(gl, _line(d, 0.016, px))
    cv.paint(win, np.maximum(fore, gl * np.clip(_col(e["glabella"]), 0, 1)), dark)

    win, u, v = cv.window(-0.55, 0.55, -0.25, 0.5)
    au = np.abs(u)
    ny = _col(p["nose_y"])
    nw = np.zeros_like(u)
    for k in range(3):  # nose wrinkles across the bridge
        y = ey + 0.03 + 0.03 * k
        nw = np.maximum(nw, _line(_curve_d(u, v, -0.055, 0.055, y, y, 0.008), 0.014, px))
    cf = np.zeros_like(u)
    for k in (-1.0, 0.0, 1.0):  # crow's feet at the outer eye corners
        d = _curve_d(au, v, ex + ew + 0.015, ex + ew + 0.07, ey + 0.004 * k, ey + 0.03 * k, 0.0)
        cf = np.maximum(cf, _line(d, 0.012, px))
    mw = _col(p["mouth_w"]) * (1.0 + g.mouth_width_gain * _col(e["mouth_width"]))
    my = _col(p["mouth_y"]) - g.mouth_corner_lift * np.clip(_col(e["mouth_curve"]), 0, None)
    nl = _line(_curve_d(v, au, ny - 0.01, my + 0.03, _col(p["nose_w"]) + 0.035, mw + 0.035, 0.02), 0.018, px)
    alpha = np.maximum.reduce([nw * np.clip(_col(e["nose_wrinkle"]), 0, 1),
                               cf * np.clip(_col(e["crows_feet"]), 0, 1),
                               nl * np.clip(_col(e["nasolabial"]), 0, 1)])
    cv.paint(win, alpha, dark)


def _nose(cv: _Canvas, p: Params, skin: np.ndarray) -> None:
    win, u, v = cv.window(-0.2, 0.2, -0.1, 0.3)
    ny, nw, ey = _col(p["nose_y"]), _col(p["nose_w"]), _col(p["eye_y"])
    au = np.abs(u)
    side = _line(_curve_d(v, au, ey + 0.04, ny - 0.02, 0.035, nw * 0.8, 0.0), 0.02, cv.px)
    cv.paint(win, side * 0.22, skin * 0.7)
    tip = _line(_curve_d(u, v, -nw, nw, ny + 0.015, ny + 0.015, 0.02), 0.012, cv.px)
    cv.paint(win, tip * 0.4, skin * 0.6)
    nostril = _fill(_ellipse_d(au, v, nw * 0.5, ny + 0.02, 0.02, 0.011), cv.px)
    cv.paint(win, nostril * 0.85, skin * 0.3)


def _eyes(cv: _Canvas, p: Params, e: Params, g: FaceVariant) -> None:
    win, u, v = cv.window(-0.45, 0.45, -0.25, 0.05)
    ex, ey, ew = _col(p["eye_x"]), _col(p["eye_y"]), _col(p["eye_w"])
    eh = _col(p["eye_h"]) * np.clip(1.0 + g.eye_open_gain * _col(e["eye_open"]), 0.25, 2.0)
    au = np.abs(u)
    px = cv.px
    sclera = _fill(_ellipse_d(au, v, ex, ey, ew, eh), px)
    cv.paint(win, sclera, np.full((len(ex), 3), 236.0, np.float32))
    gx = ex + _col(p["gaze_x"]) * np.sign(u)
    iris = np.minimum(sclera, _fill(_ellipse_d(au, v, gx, ey, 0.042, 0.042), px))
    cv.paint(win, iris, p["iris"])
    pupil = np.minimum(sclera, _fill(_ellipse_d(au, v, gx, ey, 0.017, 0.017), px))
    cv.paint(win, pupil, np.full((len(ex), 3), 12.0, np.float32))
    upper = _line(_curve_d(au, v, ex - ew, ex + ew, ey, ey, -eh), 0.013, px)
    lower = _line(_curve_d(au, v, ex - ew, ex + ew, ey, ey, eh), 0.007, px)
    cv.paint(win, np.maximum(upper, 0.5 * lower), np.full((len(ex), 3), 30.0, np.float32))


def _brows(cv: _Canvas, p: Params, e: Params, hair: np.ndarray, g: FaceVariant) -> None:
    win, u, v = cv.window(-0.5, 0.5, -0.5, 0.0)
    ex, ey, ew = _col(p["eye_x"]), _col(p["eye_y"]), _col(p["eye_w"])
    y = ey - _col(p["brow_gap"]) - g.brow_raise_shift * _col(e["brow_raise"])
    inner = g.brow_inner_shift * _col(e["brow_inner"])
    x_in = ex - ew - 0.015 - 0.02 * np.clip(-_col(e["brow_inner"]), 0, 1)
    d = _curve_d(np.abs(u), v, x_in, ex + ew + 0.035, y - inner, y + _col(p["brow_tilt"]),
                 -_col(p["brow_arch"]) - 0.02 * np.clip(_col(e["brow_inner"]), 0, 1))
    cv.paint(win, _line(d, _col(p["brow_w"]), cv.px) * 0.92, hair * 0.7)


def _mouth(cv: _Canvas, p: Params, e: Params, skin: np.ndarray, g: FaceVariant) -> None:
    win, u, v = cv.window(-0.45, 0.45, 0.1, 0.75)
    px = cv.px
    mw = _col(p["mouth_w"]) * np.clip(1.0 + g.mouth_width_gain * _col(e["mouth_width"]), 0.5, 1.6)
    my, lip = _col(p["mouth_y"]), _col(p["lip_h"])
    s = np.clip(np.abs(u) / mw, 0, 1.2)
    body = np.sqrt(np.clip(1.0 - s**2, 0, 1))
    curve = _col(e["mouth_curve"])
    centre = my - np.where(curve > 0, g.mouth_corner_lift, g.mouth_corner_drop) * curve * s**2
    gap = g.mouth_gap * np.clip(_col(e["mouth_open"]), 0, 1.2) * body
    raise_ = 0.03 * np.clip(_col(e["upper_lip"]), 0, 1) * body
    in_top = centre - 0.4 * gap - raise_
    in_bot = centre + 0.9 * gap
    thin = 1.0 - 0.6 * np.clip(_col(e["lip_press"]), 0, 1)
    out_top = in_top - lip * thin * (1.0 - 0.4 * s**2) - 0.006 * (1 - 4 * (s - 0.35) ** 2).clip(0)
    out_bot = in_bot + 1.2 * lip * thin * (1.0 - 0.5 * s**2)
    side = np.abs(u) - mw
    lips = _between(v, out_top, out_bot, side, px)
    cv.paint(win, lips, p["lips"])
    hole = _between(v, in_top, in_bot, side + 0.01, px)
    cv.paint(win, hole, np.full((len(mw), 3), 25.0, np.float32) + skin * 0.05)
    teeth_bot = in_top + 0.035 + 0.02 * np.clip(_col(e["upper_lip"]), 0, 1)
    teeth = np.minimum(hole, np.clip((teeth_bot - v) / px + 0.5, 0, 1))
    cv.paint(win, teeth * np.clip(_col(e["teeth"]), 0, 1), np.full((len(mw), 3), 225.0, np.float32))
    seam = _line(np.abs(v - centre), 0.01, px) * (side < 0) * (1.0 - np.clip(gap / 0.01, 0, 1))
    cv.paint(win, seam * 0.8, p["lips"] * 0.45)


def _marks(cv: _Canvas, p: Params, skin: np.ndarray, rng: np.random.Generator) -> None:
    """Identity details: a mole, glasses, stubble."""
    win, u, v = cv.window(-0.7, 0.7, -0.6, 0.9)
    px = cv.px
    r = _col(p["mole_r"])
    mole = _fill(_ellipse_d(u, v, _col(p["mole_x"]), _col(p["mole_y"]), r, r), px)
    cv.paint(win, mole * _col(p["mole_on"]), skin * 0.35)
    ex, ey, ew = _col(p["eye_x"]), _col(p["eye_y"]), _col(p["eye_w"])
    au = np.abs(u)
    rim = _line(np.abs(_ellipse_d(au, v, ex, ey + 0.01, ew + 0.035, 0.085)), 0.012, px)
    inner = ex - ew - 0.035
    bridge = _line(_curve_d(u, v, -inner, inner, ey - 0.01, ey - 0.01, -0.015), 0.012, px)
    cv.paint(win, np.maximum(rim, bridge) * _col(p["glasses"]), np.full((len(ex), 3), 25.0, np.float32))
    hw = _col(p["head_w"])
    lower_face = _fill(_ellipse_d(u, v, 0.0, 0.02, hw * 0.85, _col(p["head_h"])), px)
    chin = lower_face * (v > _col(p["nose_y"]) + 0.06)
    grain = rng.random(u.shape, dtype=np.float32)
    cv.paint(win, chin * grain * 0.25 * _col(p["stubble"]), p["hair"] * 0.6)


def _finish(cv: _Canvas, cond: Params, rng: np.random.Generator, gray: bool) -> np.ndarray:
    """Lighting gradient, gain, colour cast, sensor noise; to uint8."""
    img = cv.img
    X, Y = cv.xs[None, None, :], cv.ys[None, :, None]
    d = cond["light_dir"]
    light = 1.0 + _col(cond["light_amp"]) * (_col(np.cos(d)) * X + _col(np.sin(d)) * Y)
    img *= (light * _col(cond["gain"]))[..., None]
    img *= cond["cast"][:, None, None, :]
    if gray:
        img[:] = (img @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    noise = rng.standard_normal(img.shape[:3], dtype=np.float32)[..., None]
    img += noise * _col(cond["noise"])[..., None]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
