"""Writers that lay synthetic faces out exactly like the real datasets on disk."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from mafer.datasets.info import DATASETS
from mafer.synth import faces as F
from mafer.synth.scales import Scale

JPEG_QUALITY = 92
_CHUNK = 256  # images drawn per vectorised batch (bounds memory)

# real class frequencies, used as sampling weights (in each dataset's label order)
_FER_FREQ = (3995, 436, 4097, 7215, 4830, 3171, 4965)
_RAF_FREQ = (1290, 281, 717, 4772, 1982, 705, 2524)
# AffWild2 segment classes in its label order, then -1 (unlabelled)
_AFF_FREQ = (0.34, 0.07, 0.05, 0.05, 0.2, 0.12, 0.08, 0.09)

_CANONICAL = {"angry": "anger", "happy": "happiness", "sad": "sadness"}

# Face size in the frame: `faces.sample_conditions`' scale, the head's half-width (0.50-0.64 face
# units) times this over half the shorter side. The expression sets are aligned crops that the face
# fills, cheek to cheek, as in the released RAF-DB, FER2013 and Oulu-CASIA crops and AffWild2's
# cropped_aligned frames: 1.4 times the framing of the first synthetic sets (1.1-1.15), on which an
# 8-pixel face was about 5 pixels wide and the demo network could not learn it. VGGFace2 photos are
# loose crops; after the eval transform's centre crop (224 of 256) their faces are framed as the
# expression sets'.
FRAMING: dict[str, float] = {"fer2013": 1.6, "rafdb": 1.55, "oulucasia": 1.55, "affwild2": 1.5,
                             "vggface2": 1.35}


def canonical_indices(dataset: str) -> np.ndarray:
    """For each label of `dataset`, the index of that expression in `faces.EXPRESSIONS`."""
    names = [c.lower() for c in DATASETS[dataset].classes]
    return np.array([F.EXPRESSIONS.index(_CANONICAL.get(n, n)) for n in names])


def class_counts(total: int, freq, minimum: int) -> np.ndarray:
    """Split `total` over classes in proportion to `freq`, each class getting at least `minimum`."""
    k = len(freq)
    if total < k * minimum:
        raise ValueError(f"{total} images cannot hold {minimum} per class for {k} classes")
    w = np.asarray(freq, float) / np.sum(freq)
    extra = (total - k * minimum) * w
    counts = minimum + np.floor(extra).astype(int)
    rest = total - counts.sum()
    counts[np.argsort(-(extra - np.floor(extra)), kind="stable")[:rest]] += 1
    return counts


def _shuffled_labels(rng: np.random.Generator, counts: np.ndarray) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def _draw(rng: np.random.Generator, ident: F.Params, expr: F.Params, cond: F.Params,
          size: tuple[int, int], gray: bool = False, variant: F.FaceVariant = F.DEMO) -> np.ndarray:
    """Render a parameter batch in chunks: uint8 [N, H, W, 3]."""
    n = len(cond["angle"])
    out = [F.render(F.take(ident, sl), F.take(expr, sl), F.take(cond, sl), size[0], size[1], rng, gray, variant)
           for sl in (slice(i, i + _CHUNK) for i in range(0, n, _CHUNK))]
    return np.concatenate(out) if out else np.zeros((0, *size, 3), np.uint8)


def static_faces(rng: np.random.Generator, expressions: np.ndarray, size: int, *, scale: float,
                  gray: bool = False, variant: F.FaceVariant = F.DEMO) -> np.ndarray:
    """One new person per image, each showing a canonical expression at a random intensity."""
    n = len(expressions)
    ident = F.sample_identities(rng, n, variant)
    expr = F.expression_params(rng, expressions, rng.uniform(0.35, 1.0, n), variant=variant)
    cond = F.sample_conditions(rng, n, scale=scale, variant=variant)
    return _draw(rng, ident, expr, cond, (size, size), gray, variant)


def _save_jpeg(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(array).save(path, format="JPEG", quality=JPEG_QUALITY)
    except OSError as exc:
        if exc.filename is None:  # Pillow writes through a file object: say which file (a full disk)
            exc.filename = str(path)
        raise


# ----------------------------------------------------------------------------- FER2013

def write_fer2013(root: Path, spec: Scale, rng: np.random.Generator,
                  variant: F.FaceVariant = F.DEMO) -> dict[str, int]:
    """`fer2013.csv` with columns emotion,pixels,Usage (48x48 gray), rows grouped by Usage."""
    canon = canonical_indices("fer2013")
    root.mkdir(parents=True, exist_ok=True)
    counts = {}
    with open(root / "fer2013.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["emotion", "pixels", "Usage"])
        for split, usage, n in (("train", "Training", spec.fer_train),
                                ("val", "PublicTest", spec.fer_val),
                                ("test", "PrivateTest", spec.fer_test)):
            labels = _shuffled_labels(rng, class_counts(n, _FER_FREQ, spec.min_per_class))
            images = static_faces(rng, canon[labels], 48, scale=FRAMING["fer2013"], gray=True, variant=variant)[..., 0]
            for label, img in zip(labels, images):
                writer.writerow([int(label), " ".join(map(str, img.ravel().tolist())), usage])
            counts[split] = n
    return counts


# ----------------------------------------------------------------------------- RAF-DB

def write_rafdb(root: Path, spec: Scale, rng: np.random.Generator,
                variant: F.FaceVariant = F.DEMO) -> dict[str, int]:
    """`EmoLabel/list_patition_label.txt` (labels 1..7) and `Image/aligned/*_aligned.jpg` (100x100 RGB)."""
    canon = canonical_indices("rafdb")
    lines = []
    counts = {}
    for split, n, digits in (("train", spec.raf_train, 5), ("test", spec.raf_test, 4)):
        minimum = spec.min_per_class + (2 if split == "train" else 0)  # room for a 5% val carve
        labels = _shuffled_labels(rng, class_counts(n, _RAF_FREQ, minimum))
        images = static_faces(rng, canon[labels], 100, scale=FRAMING["rafdb"], variant=variant)
        for i, (label, img) in enumerate(zip(labels, images), start=1):
            stem = f"{split}_{i:0{digits}d}"
            _save_jpeg(img, root / "Image" / "aligned" / f"{stem}_aligned.jpg")
            lines.append(f"{stem}.jpg {int(label) + 1}\n")
        counts[split] = n
    (root / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))
    return counts


# ----------------------------------------------------------------------------- Oulu-CASIA

def write_oulucasia(root: Path, spec: Scale, rng: np.random.Generator, size: int = 96,
                    variant: F.FaceVariant = F.DEMO) -> dict[str, int]:
    """`P001/<Expression>/000.jpeg ...`: per subject one onset-to-peak sequence per expression."""
    names = DATASETS["oulucasia"].classes
    canon = canonical_indices("oulucasia")
    n_seq, t = spec.oulu_subjects * len(names), spec.oulu_frames
    subject = np.repeat(np.arange(spec.oulu_subjects), len(names))
    label = np.tile(np.arange(len(names)), spec.oulu_subjects)
    ident = F.take(F.sample_identities(rng, spec.oulu_subjects, variant), subject)
    peak = F.expression_params(rng, canon[label], rng.uniform(0.75, 1.0, n_seq), jitter=0.08, variant=variant)
    # controlled capture: one light and background per subject, the head placed a little
    # differently in each sequence and moving slightly over its frames
    seq_cond = F.take(F.sample_conditions(rng, spec.oulu_subjects, scale=FRAMING["oulucasia"], pose_jitter=0.6,
                                          variant=variant), subject)
    for k, sd in (("angle", 0.03), ("tx", 0.015), ("ty", 0.015)):
        seq_cond[k] = seq_cond[k] + rng.normal(0, sd, n_seq).astype(np.float32)
    ramp = (np.arange(t) / max(t - 1, 1)) ** 1.3  # frame 0 neutral, last frame at peak
    frame_seq = np.repeat(np.arange(n_seq), t)
    expr = {k: v[frame_seq] * np.tile(ramp, n_seq).astype(np.float32) for k, v in peak.items()}
    cond = F.take(seq_cond, frame_seq)
    for k, sd in (("angle", 0.005), ("tx", 0.003), ("ty", 0.003)):
        cond[k] = cond[k] + rng.normal(0, sd, n_seq * t).astype(np.float32)
    cond["noise"] = np.minimum(cond["noise"], 1.5)  # lab camera
    images = _draw(rng, F.take(ident, frame_seq), expr, cond, (size, size), variant=variant)
    for j, img in enumerate(images):
        s, k = divmod(j, t)
        _save_jpeg(img, root / f"P{subject[s] + 1:03d}" / names[label[s]] / f"{k:03d}.jpeg")
    return {"subjects": spec.oulu_subjects, "sequences": n_seq, "images": n_seq * t}


# ----------------------------------------------------------------------------- AffWild2

def _segments(rng: np.random.Generator, n_videos: int, frames: int, lo: int, hi: int,
              n_classes: int) -> list[list[tuple[int, int]]]:
    """Per video, (label, length) segments; across the split every label and -1 appear once first."""
    queue = list(rng.permutation(np.arange(-1, n_classes)))
    videos = []
    for _ in range(n_videos):
        segs, left = [], frames
        while left > 0:
            length = min(int(rng.integers(lo, hi + 1)), left)
            if queue:
                label = queue.pop(0)
            else:
                label = rng.choice(np.arange(-1, n_classes), p=np.roll(_AFF_FREQ, 1))
            segs.append((int(label), length))
            left -= length
        videos.append(segs)
    if queue:
        raise ValueError("too few AffWild2 frames to show every class; raise aff_frames")
    return videos


def write_affwild2(root: Path, spec: Scale, rng: np.random.Generator, size: int = 112,
                   variant: F.FaceVariant = F.DEMO) -> dict[str, int]:
    """`cropped_aligned/<video>/00001.jpg` and `annotations/EXPR_Set/<Set>/<video>.txt` per video."""
    classes = DATASETS["affwild2"].classes
    canon = canonical_indices("affwild2")
    seg_len = (3, 6) if spec.aff_frames <= 30 else (6, 15)
    numbers = rng.choice(np.arange(1, 400), spec.aff_train_videos + spec.aff_val_videos, replace=False)
    counts = {"train_videos": spec.aff_train_videos, "val_videos": spec.aff_val_videos,
              "train_frames": 0, "val_frames": 0, "images": 0}
    first = 0
    for split, folder, n_videos in (("train", "Training_Set", spec.aff_train_videos),
                                    ("val", "Validation_Set", spec.aff_val_videos)):
        for segs in _segments(rng, n_videos, spec.aff_frames, *seg_len, len(classes)):
            name = f"{numbers[first]}-30-{rng.choice(['1280x720', '640x360', '1920x1080'])}"
            first += 1
            labels, has_image = _write_video(root, name, segs, canon, size, rng, variant)
            ann = root / "annotations" / "EXPR_Set" / folder / f"{name}.txt"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text(",".join(classes) + "\n" + "".join(f"{v}\n" for v in labels))
            counts[f"{split}_frames"] += len(labels)
            counts["images"] += int(has_image.sum())
    return counts


def _write_video(root: Path, name: str, segs: list[tuple[int, int]], canon: np.ndarray, size: int,
                 rng: np.random.Generator, variant: F.FaceVariant = F.DEMO) -> tuple[list[int], np.ndarray]:
    """Draw one person's frames: smooth head motion, expression segments with an onset ramp."""
    labels = [lab for lab, n in segs for _ in range(n)]
    t = len(labels)
    ident = F.take(F.sample_identities(rng, 1, variant), np.zeros(t, int))
    cond = F.take(F.sample_conditions(rng, 1, scale=FRAMING["affwild2"], variant=variant), np.zeros(t, int))
    for k, sd in (("angle", 0.02), ("tx", 0.008), ("ty", 0.008)):
        cond[k] = (cond[k] + np.cumsum(rng.normal(0, sd, t))).clip(-0.35, 0.35).astype(np.float32)
    # an unlabelled segment still shows some face: pick a random expression for it
    shown = np.array([canon[lab] if lab >= 0 else rng.integers(0, len(canon)) for lab, _ in segs])
    peak = F.expression_params(rng, shown, rng.uniform(0.5, 1.0, len(segs)), jitter=0.08, variant=variant)
    seg_of = np.repeat(np.arange(len(segs)), [n for _, n in segs])
    onset = np.concatenate([np.minimum(1.0, (np.arange(n) + 1) / 3.0) for _, n in segs])
    expr = {k: v[seg_of] * onset.astype(np.float32) + rng.normal(0, 0.03, t).astype(np.float32)
            for k, v in peak.items()}
    images = _draw(rng, ident, expr, cond, (size, size), variant=variant)
    # face detection fails on a few frames: their label stays but no image is written
    starts = np.cumsum([0] + [n for _, n in segs])[:-1]
    has_image = rng.random(t) >= 0.06
    has_image[starts] = True
    for i in np.flatnonzero(has_image):
        _save_jpeg(images[i], root / "cropped_aligned" / name / f"{i + 1:05d}.jpg")
    return labels, has_image


# ----------------------------------------------------------------------------- VGGFace2

_VGG_SIZES = ((112, 112), (124, 104), (136, 116), (120, 96), (148, 128))  # (height, width)


def write_vggface2(root: Path, spec: Scale, rng: np.random.Generator,
                   variant: F.FaceVariant = F.DEMO) -> dict[str, int]:
    """`train/n000002/0001_01.jpg ...`: loosely cropped faces of many sizes, one folder per identity."""
    n_id, per = spec.vgg_identities, spec.vgg_images
    ids = np.sort(rng.choice(np.arange(2, 9300), n_id, replace=False))
    who = np.repeat(np.arange(n_id), per)
    n = len(who)
    ident = F.take(F.sample_identities(rng, n_id, variant), who)
    # in-the-wild photos: mostly neutral or smiling, weak expressions
    shown = rng.choice(len(F.EXPRESSIONS), n, p=[0.5, 0.04, 0.02, 0.03, 0.33, 0.04, 0.04])
    expr = F.expression_params(rng, shown, rng.uniform(0.2, 0.8, n), variant=variant)
    cond = F.sample_conditions(rng, n, scale=FRAMING["vggface2"], pose_jitter=1.5, variant=variant)
    size_of = rng.integers(0, len(_VGG_SIZES), n)
    gray = rng.random(n) < 0.05
    for s, size in enumerate(_VGG_SIZES):
        for g in (False, True):
            sel = np.flatnonzero((size_of == s) & (gray == g))
            images = _draw(rng, F.take(ident, sel), F.take(expr, sel), F.take(cond, sel), size, g, variant)
            for j, img in zip(sel, images):
                folder = root / "train" / f"n{ids[who[j]]:06d}"
                _save_jpeg(img, folder / f"{j % per + 1:04d}_01.jpg")
    return {"identities": n_id, "images": n}


WRITERS = {
    "fer2013": write_fer2013,
    "rafdb": write_rafdb,
    "oulucasia": write_oulucasia,
    "affwild2": write_affwild2,
    "vggface2": write_vggface2,
}
