"""`mafer synth`: the synthetic sets parse as the real on-disk formats and carry the cues.

The files are parsed directly with csv/PIL (not mafer.datasets), so these tests pin the
formats themselves.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.linear_model import RidgeClassifier

from mafer.cli import main
from mafer.errors import MaferError
from mafer.synth import SCALES, write_synthetic
from mafer.synth import faces as F
from mafer.synth import formats
from mafer.synth.formats import FRAMING, static_faces

SMOKE = SCALES["smoke"]
FER_USAGE = {"Training": SMOKE.fer_train, "PublicTest": SMOKE.fer_val, "PrivateTest": SMOKE.fer_test}
OULU_EXPRESSIONS = {"Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"}
AFF_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _array(path: Path, size: int | None = None) -> np.ndarray:
    with Image.open(path) as im:
        im = im.convert("RGB")
        return np.asarray(im.resize((size, size), Image.BILINEAR) if size else im, dtype=np.float32)


# ----------------------------------------------------------------------------- FER2013

def _fer_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "fer2013" / "fer2013.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["emotion", "pixels", "Usage"]
        return list(reader)


def test_fer2013_csv_format_counts_and_classes(smoke_data: Path) -> None:
    rows = _fer_rows(smoke_data)
    assert Counter(r["Usage"] for r in rows) == FER_USAGE
    for usage in FER_USAGE:
        per_class = Counter(int(r["emotion"]) for r in rows if r["Usage"] == usage)
        assert sorted(per_class) == list(range(7))
        assert min(per_class.values()) >= SMOKE.min_per_class
    for r in rows:
        values = [int(v) for v in r["pixels"].split(" ")]
        assert len(values) == 48 * 48
        assert 0 <= min(values) and max(values) <= 255
    # rows grouped by Usage, in the real file's order
    usages = [r["Usage"] for r in rows]
    assert usages == sorted(usages, key=["Training", "PublicTest", "PrivateTest"].index)


# ----------------------------------------------------------------------------- RAF-DB

def test_rafdb_label_file_images_and_names(smoke_data: Path) -> None:
    root = smoke_data / "rafdb"
    lines = (root / "EmoLabel" / "list_patition_label.txt").read_text().splitlines()
    pattern = re.compile(r"^(train_\d{5}|test_\d{4})\.jpg ([1-7])$")
    parsed = [pattern.match(line) for line in lines]
    assert all(parsed), [line for line, m in zip(lines, parsed) if not m][:3]
    for split, n, digits in (("train", SMOKE.raf_train, 5), ("test", SMOKE.raf_test, 4)):
        stems = [m.group(1) for m in parsed if m.group(1).startswith(split)]
        assert stems == [f"{split}_{i:0{digits}d}" for i in range(1, n + 1)]
        labels = Counter(int(m.group(2)) for m in parsed if m.group(1).startswith(split))
        assert sorted(labels) == list(range(1, 8))
        assert min(labels.values()) >= (4 if split == "train" else SMOKE.min_per_class)
    for m in parsed:
        with Image.open(root / "Image" / "aligned" / f"{m.group(1)}_aligned.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (100, 100)
    assert len(list((root / "Image" / "aligned").iterdir())) == len(lines)


# ----------------------------------------------------------------------------- Oulu-CASIA

def test_oulucasia_subject_expression_sequences(smoke_data: Path) -> None:
    root = smoke_data / "oulucasia"
    subjects = sorted(p.name for p in root.iterdir())
    assert subjects == [f"P{i:03d}" for i in range(1, SMOKE.oulu_subjects + 1)]
    for subject in subjects:
        assert {p.name for p in (root / subject).iterdir()} == OULU_EXPRESSIONS
        for expression in OULU_EXPRESSIONS:
            frames = sorted(p.name for p in (root / subject / expression).iterdir())
            assert frames == [f"{k:03d}.jpeg" for k in range(SMOKE.oulu_frames)]
            with Image.open(root / subject / expression / frames[0]) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size[0] == im.size[1] >= 64


def test_oulucasia_sequences_run_from_neutral_onset_to_peak(smoke_data: Path) -> None:
    # Within a sequence the face moves away from its first (near-neutral) frame: the peak,
    # last frame differs from the first far more than the second frame does. Measured as
    # the 98th percentile of the change at 24 px: sensor noise averages out, while the
    # expression changes a small part of the image a lot.
    root = smoke_data / "oulucasia"
    change = []
    for sequence in sorted(root.glob("P*/*")):
        frames = [_array(sequence / f"{k:03d}.jpeg", size=24) for k in range(SMOKE.oulu_frames)]
        change.append([np.percentile(np.abs(f - frames[0]), 98) for f in frames[1:]])
    mean_change = np.mean(change, axis=0)
    assert np.all(np.diff(mean_change) > 0), mean_change
    assert mean_change[-1] > 2.0 * mean_change[0], mean_change


# ----------------------------------------------------------------------------- AffWild2

def _affwild_annotations(root: Path) -> dict[str, dict[str, list[int]]]:
    sets = {}
    for folder in ("Training_Set", "Validation_Set"):
        videos = {}
        for txt in sorted((root / "annotations" / "EXPR_Set" / folder).glob("*.txt")):
            lines = txt.read_text().splitlines()
            assert lines[0] == AFF_HEADER, txt
            videos[txt.stem] = [int(v) for v in lines[1:]]
        sets[folder] = videos
    return sets


def test_affwild2_annotations_frames_and_gaps(smoke_data: Path) -> None:
    root = smoke_data / "affwild2"
    sets = _affwild_annotations(root)
    assert len(sets["Training_Set"]) == SMOKE.aff_train_videos
    assert len(sets["Validation_Set"]) == SMOKE.aff_val_videos
    assert not set(sets["Training_Set"]) & set(sets["Validation_Set"])
    missing = 0
    for folder, videos in sets.items():
        labelled_with_image = Counter()
        all_labels = Counter()
        for video, labels in videos.items():
            assert len(labels) == SMOKE.aff_frames
            frames = sorted(p.name for p in (root / "cropped_aligned" / video).iterdir())
            assert all(re.fullmatch(r"\d{5}\.jpg", f) for f in frames)
            indices = [int(f[:5]) for f in frames]
            assert 1 <= min(indices) and max(indices) <= len(labels)  # line i = frame i
            missing += len(labels) - len(frames)
            all_labels.update(labels)
            labelled_with_image.update(labels[i - 1] for i in indices)
        assert set(all_labels) <= set(range(-1, 7))
        assert all_labels[-1] > 0, f"{folder}: no unlabelled (-1) frames"
        assert set(range(7)) <= set(labelled_with_image), f"{folder}: a class has no image"
    assert missing > 0, "no frame has a label but no image"
    sample = next((root / "cropped_aligned").rglob("*.jpg"))
    with Image.open(sample) as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (112, 112)


# ----------------------------------------------------------------------------- VGGFace2

def test_vggface2_identity_folders(smoke_data: Path) -> None:
    root = smoke_data / "vggface2" / "train"
    identities = sorted(p.name for p in root.iterdir())
    assert len(identities) == SMOKE.vgg_identities
    assert all(re.fullmatch(r"n\d{6}", name) for name in identities)
    sizes = set()
    for identity in identities:
        images = sorted(p.name for p in (root / identity).iterdir())
        assert images == [f"{j:04d}_01.jpg" for j in range(1, SMOKE.vgg_images + 1)]
        for name in images:
            with Image.open(root / identity / name) as im:
                assert im.format == "JPEG" and im.mode == "RGB"
                assert 80 <= min(im.size) and max(im.size) <= 200
                sizes.add(im.size)
    assert len(sizes) > 1, "VGGFace2 images should come in several sizes"


def _leave_one_out_nearest_mean(x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a nearest-class-mean classifier, each sample left out of its own class mean."""
    classes = np.unique(y)
    sums = np.stack([x[y == c].sum(0) for c in classes])
    counts = np.array([(y == c).sum() for c in classes], float)
    correct = 0
    for xi, yi in zip(x, y):
        means = sums / counts[:, None]
        own = np.searchsorted(classes, yi)
        means[own] = (sums[own] - xi) / (counts[own] - 1)
        correct += classes[np.argmin(((means - xi) ** 2).sum(1))] == yi
    return correct / len(y)


def test_vggface2_identities_are_distinguishable(smoke_data: Path) -> None:
    root = smoke_data / "vggface2" / "train"
    x, y = [], []
    for k, identity in enumerate(sorted(root.iterdir())):
        for path in sorted(identity.iterdir()):
            x.append(_array(path, size=32).ravel())
            y.append(k)
    acc = _leave_one_out_nearest_mean(np.stack(x), np.array(y))
    assert acc > 2.5 / SMOKE.vgg_identities, acc


# ----------------------------------------------------------------------------- cues

def _aligned_faces(expressions: list[int], size: int) -> np.ndarray:
    """One person, one pose and light, several expressions at full intensity (no jitter, no noise)."""
    rng = np.random.default_rng(3)
    n = len(expressions)
    ident = F.take(F.sample_identities(rng, 1), np.zeros(n, int))
    cond = F.take(F.sample_conditions(rng, 1), np.zeros(n, int))
    cond["noise"][:] = 0.0
    expr = F.expression_params(rng, np.array(expressions), np.ones(n), jitter=0.0)
    return F.render(ident, expr, cond, size, size, rng).astype(np.float32)


def _to_8px(img: np.ndarray) -> np.ndarray:
    small = Image.fromarray(img.astype(np.uint8)).resize((8, 8), Image.BILINEAR, reducing_gap=None)
    return np.asarray(small.resize(img.shape[1::-1], Image.BILINEAR), np.float32)


def test_some_cues_survive_8px_and_some_do_not() -> None:
    # Against the same neutral face, surprise (open mouth, raised brows) stays visible at
    # 8 px while anger and disgust (brow knit, glabella and nose wrinkles, pressed lips)
    # are mostly fine detail that 8 px wipes out.
    names = list(F.EXPRESSIONS)
    order = [names.index(e) for e in ("neutral", "surprise", "anger", "disgust")]
    faces = _aligned_faces(order, 96)
    low = np.stack([_to_8px(f) for f in faces])

    def kept(k: int) -> float:
        return np.abs(low[k] - low[0]).mean() / np.abs(faces[k] - faces[0]).mean()

    assert kept(1) > 1.5 * max(kept(2), kept(3))
    # ... although at full size they change part of the face a lot
    assert np.abs(faces[2] - faces[0]).max() > 60 and np.abs(faces[3] - faces[0]).max() > 60


def test_expressions_are_learnable_across_people_poses_and_lights() -> None:
    # Each image is a new person in a new pose, light and background; a linear classifier
    # on raw 48 px pixels still recognises the expression well above chance (1/7).
    rng = np.random.default_rng(0)
    y = np.tile(np.arange(len(F.EXPRESSIONS)), 100)
    x = static_faces(rng, y, 48, scale=FRAMING["fer2013"], gray=True)[..., 0].reshape(len(y), -1).astype(np.float32)
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)  # brightness is a nuisance
    model = RidgeClassifier(alpha=100.0).fit(x[:490], y[:490])
    assert model.score(x[490:], y[490:]) > 2.0 / 7


# ----------------------------------------------------------------------------- framing

def _head_width(scale: float, size: int, head_w: float = 0.6) -> int:
    """Pixels of one face's eye row that are not background (the background is found by drawing
    the face twice on two backgrounds), for a short-haired person facing the camera."""
    rng = np.random.default_rng(1)
    ident = F.sample_identities(rng, 1)
    ident.update(head_w=np.array([head_w], np.float32), hair_vol=np.array([0.02], np.float32),
                 long_hair=np.array([0.0], np.float32), glasses=np.array([0.0], np.float32))
    expr = F.expression_params(rng, np.array([0]), np.array([0.0]))
    cond = F.sample_conditions(rng, 1, scale=scale)
    cond.update(angle=np.zeros(1, np.float32), tx=np.zeros(1, np.float32), ty=np.zeros(1, np.float32),
                noise=np.zeros(1, np.float32))
    other = dict(cond, bg=255.0 - cond["bg"], bg_grid=-cond["bg_grid"])
    a, b = (F.render(ident, expr, c, size, size, np.random.default_rng(2)).astype(int) for c in (cond, other))
    eye_row = int(size / 2 + float(ident["eye_y"][0]) * scale * size / 2)
    return int((np.abs(a - b)[0, eye_row].max(-1) < 8).sum())


@pytest.mark.parametrize("dataset, size", [("fer2013", 48), ("rafdb", 100), ("oulucasia", 96), ("affwild2", 112),
                                           ("vggface2", 112)])
def test_faces_are_framed_as_declared(dataset: str, size: int) -> None:
    # FRAMING[d] is the head's half-width (0.6 here) times the scale over half the frame: at the eyes
    # the head spans 2 * 0.6 * scale of the half-frame, plus a little hair at the temples.
    scale = FRAMING[dataset]
    expected = min(size, 0.6 * scale * size)
    assert expected - 2 <= _head_width(scale, size) <= min(size, expected + 0.08 * scale * size)
    if dataset != "vggface2":  # the expression sets are aligned crops that the face fills
        assert _head_width(scale, size) >= 0.85 * size


def test_every_writer_draws_at_its_declared_framing(tmp_path: Path, monkeypatch) -> None:
    seen: list[float] = []
    draw = F.sample_conditions

    def spy(rng, n, *, scale=1.0, **kw):
        seen.append(scale)
        return draw(rng, n, scale=scale, **kw)

    monkeypatch.setattr(F, "sample_conditions", spy)
    for name, writer in formats.WRITERS.items():
        seen.clear()
        writer(tmp_path / name, SMOKE, np.random.default_rng(0))
        assert seen and set(seen) == {FRAMING[name]}, name


# ----------------------------------------------------------------------------- API / CLI

def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    # Two fresh folders: the session's smoke_data gains split files written by the readers.
    counts = write_synthetic(tmp_path / "a", scale="smoke", seed=0)
    write_synthetic(tmp_path / "c", scale="smoke", seed=0)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "c")
    manifest = json.loads((tmp_path / "a" / "synthetic.json").read_text())
    assert {k: v["counts"] for k, v in manifest.items()} == counts
    assert counts["fer2013"] == {"train": SMOKE.fer_train, "val": SMOKE.fer_val, "test": SMOKE.fer_test}
    write_synthetic(tmp_path / "b", scale="smoke", seed=1, datasets="fer2013,rafdb")
    other = _digest(tmp_path / "b")
    assert sorted({k.split("/")[0] for k in other}) == ["fer2013", "rafdb", "synthetic.json"]
    assert other["fer2013/fer2013.csv"] != _digest(tmp_path / "a")["fer2013/fer2013.csv"]


def test_datasets_written_in_parallel_are_the_same_bytes_and_a_failure_leaves_no_partial(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "one", scale="smoke")
    assert main(["synth", "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    # a dataset that cannot be written (a file where its folder must go) stops the run; the
    # datasets still being written are not left half-written
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ".oulucasia.partial").write_text("in the way")
    with pytest.raises(OSError):
        write_synthetic(tmp_path / "bad", scale="smoke", workers=2)
    assert not [p for p in (tmp_path / "bad").iterdir() if p.name.endswith(".partial") and p.is_dir()]
    assert "oulucasia" not in json.loads((tmp_path / "bad" / "synthetic.json").read_text())
    with pytest.raises(MaferError, match="workers must be at least 1, got 0"):
        write_synthetic(tmp_path / "none", workers=0)
    assert not (tmp_path / "none").exists()  # refused before anything is written


def test_cli_help_and_cli_writes_the_same_files(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["synth", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--out", "--scale", "--seed", "--datasets"):
        assert option in help_text
    assert main(["synth", "--out", str(tmp_path / "cli"), "--datasets", "rafdb,oulucasia"]) == 0
    assert "rafdb" in capsys.readouterr().out
    write_synthetic(tmp_path / "api", scale="smoke", seed=0, datasets=["rafdb", "oulucasia"])
    assert _digest(tmp_path / "cli") == _digest(tmp_path / "api")


def test_rewrite_replaces_stale_files_but_refuses_foreign_folders(tmp_path: Path, capsys) -> None:
    write_synthetic(tmp_path, datasets=["rafdb"])
    stale = tmp_path / "rafdb" / "Image" / "aligned" / "train_99999_aligned.jpg"
    stale.write_bytes(b"old")
    write_synthetic(tmp_path, datasets=["rafdb"])
    assert not stale.exists()
    (tmp_path / "fer2013").mkdir()
    (tmp_path / "fer2013" / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    with pytest.raises(MaferError, match="fer2013.*not written by `mafer synth`"):
        write_synthetic(tmp_path, datasets="fer2013")
    assert (tmp_path / "fer2013" / "fer2013.csv").read_text() == "emotion,pixels,Usage\n"
    assert main(["synth", "--out", str(tmp_path), "--datasets", "fer2013,imagenet"]) == 2
    assert "imagenet" in capsys.readouterr().err
    with pytest.raises(MaferError, match="scale"):
        write_synthetic(tmp_path, scale="huge")


# ----------------------------------------------------------------------------- face variants

# sha256 over the paths and bytes of every file of `write_synthetic(scale="smoke", seed=0)`
# but the manifest, computed with the generator as it was before its parameters became a
# FaceVariant: the demo variant must keep drawing exactly those faces
SMOKE_SEED0_DIGEST = "88e30fb1ce31b56bb79ba203ff340c03640fa562856c93dbb530cd4cc49a0319"


def test_demo_variant_draws_the_same_bytes_as_before(smoke_data: Path) -> None:
    h = hashlib.sha256()
    for p in sorted(smoke_data.rglob("*")):
        if p.is_file() and p.name != "synthetic.json":
            h.update(str(p.relative_to(smoke_data)).encode())
            h.update(p.read_bytes())
    assert h.hexdigest() == SMOKE_SEED0_DIGEST


def test_resting_face_variant_offsets_each_person_consistently() -> None:
    rest = F.VARIANTS["resting-face"]
    assert rest.resting_face_std > 0 and F.DEMO.resting_face_std == 0
    ident = F.sample_identities(np.random.default_rng(0), 50, rest)
    offsets = np.stack([ident["rest_" + f] for f in rest.resting_face_fields])
    assert offsets.std() == pytest.approx(rest.resting_face_std, rel=0.3)
    assert not any(k.startswith("rest_") for k in F.sample_identities(np.random.default_rng(0), 5))
    # a neutral face of one person, twice, and of another, in the same pose: the resting face
    # moves brows, lids and mouth, the same way in every image of its person
    who = np.array([0, 0, 1])
    people = F.take(ident, who)
    neutral = F.expression_params(np.random.default_rng(1), np.zeros(3, int), np.ones(3), jitter=0.0)
    cond = F.take(F.sample_conditions(np.random.default_rng(2), 1), np.zeros(3, int))
    still = {k: v for k, v in people.items() if not k.startswith("rest_")}
    moved = np.abs(F.render(people, neutral, cond, 96, 96, np.random.default_rng(3)).astype(int)
                   - F.render(still, neutral, cond, 96, 96, np.random.default_rng(3)).astype(int))
    assert (moved[0].max(-1) > 10).sum() >= 10
    assert np.abs(moved[0] - moved[1]).max() <= 2  # the same change (each image has its own noise)
    assert np.abs(moved[0] - moved[2]).max() > 10


def test_synth_cli_variant_is_written_and_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--out", str(tmp_path), "--datasets", "rafdb", "--variant", "resting-face"]) == 0
    assert "resting-face faces" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "synthetic.json").read_text())
    assert manifest["rafdb"]["variant"] == "resting-face"
    with pytest.raises(MaferError, match="unknown synthetic face variant 'smiley'"):
        write_synthetic(tmp_path / "x", variant="smiley")


# ----------------------------------------------------------------------------- a full disk

def test_a_full_disk_leaves_no_half_dataset_and_names_the_file(tmp_path: Path, monkeypatch) -> None:
    """The disk fills while Pillow writes the 10th image (simulated; tests/test_environment.py fills a real one)."""
    import errno

    write_synthetic(tmp_path, datasets=["rafdb"])  # an earlier complete copy, which must survive
    before = _digest(tmp_path / "rafdb")
    manifest = (tmp_path / "synthetic.json").read_text()
    calls = []
    save_jpeg = Image.SAVE["JPEG"]

    def fill_up(im, fp, filename):
        calls.append(Path(filename if isinstance(filename, str) else filename.decode()))
        if len(calls) == 10:
            fp.write(b"\xff\xd8\xff")  # half an image, as a full disk leaves it
            raise OSError(errno.ENOSPC, "No space left on device")  # as Pillow's writers: no file name
        return save_jpeg(im, fp, filename)

    monkeypatch.setitem(Image.SAVE, "JPEG", fill_up)
    with pytest.raises(MaferError) as info:
        write_synthetic(tmp_path, datasets=["rafdb", "fer2013"])
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'rafdb' / calls[-1].relative_to(tmp_path / '.rafdb.partial')}: ")
    assert "the disk is full (ENOSPC" in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rafdb", "synthetic.json"]  # no partial, no fer2013
    assert _digest(tmp_path / "rafdb") == before and (tmp_path / "synthetic.json").read_text() == manifest


def test_a_killed_run_leaves_only_a_hidden_partial_folder_which_the_next_run_removes(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setitem(Image.SAVE, "JPEG", killed)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path, datasets=["rafdb"])
    assert not (tmp_path / "rafdb").exists() and not (tmp_path / ".rafdb.partial").exists()
    (tmp_path / ".rafdb.partial" / "Image").mkdir(parents=True)  # as a SIGKILL would leave it
    monkeypatch.undo()
    write_synthetic(tmp_path, datasets=["rafdb"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rafdb", "synthetic.json"]
