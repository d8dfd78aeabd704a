"""Dataset readers: label orders, splits, both FER2013 and Oulu-CASIA variants, saved splits, bad input."""

from __future__ import annotations

import codecs
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_affwild2 as write_affwild2_copy
from mafer.datasets import DATASETS, get_dataset
from mafer.datasets.base import decode_image
from mafer.errors import MaferError

RNG = np.random.default_rng(0)
SMOKE_SPLITS = {"fer2013": ("train", "val", "test"), "rafdb": ("train", "val", "test"), "oulucasia": ("all",),
                "affwild2": ("train", "val"), "vggface2": ("train", "val")}
OULU_DIRS = ("Surprise", "Happiness", "Sadness", "Anger", "Fear", "Disgust")


# -- hand-made files ---------------------------------------------------------------------------
def save_image(path: Path, size=(20, 20), gray: bool = False, value: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if gray else (*size, 3)
    pixels = np.full(shape, value, np.uint8) if value is not None else RNG.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def fer_row(emotion, usage, n_pixels=2304, value=None) -> dict[str, str]:
    pixels = [value] * n_pixels if value is not None else RNG.integers(0, 256, n_pixels).tolist()
    return {"emotion": str(emotion), "Usage": usage, "pixels": " ".join(map(str, pixels))}


def write_fer(folder: Path, rows: list[dict[str, str]], icml: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if icml:  # the ICML challenge's column order, with its leading spaces
        path = folder / "icml_face_data.csv"
        lines = ["emotion, Usage, pixels"] + [f"{r['emotion']}, {r['Usage']}, {r['pixels']}" for r in rows]
    else:
        path = folder / "fer2013.csv"
        lines = ["emotion,pixels,Usage"] + [f"{r['emotion']},{r['pixels']},{r['Usage']}" for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def fer_rows() -> list[dict[str, str]]:
    usages = ["Training"] * 14 + ["PublicTest"] * 7 + ["PrivateTest"] * 7
    return [fer_row(i % 7, usage) for i, usage in enumerate(usages)]


def write_rafdb(root: Path, n_train_per_class: int = 20, n_test: int = 7) -> Path:
    lines = []
    for i in range(1, 7 * n_train_per_class + 1):
        lines.append(f"train_{i:05d}.jpg {(i % 7) + 1}")
        save_image(root / "Image" / "aligned" / f"train_{i:05d}_aligned.jpg", (10, 10))
    for i in range(1, n_test + 1):
        lines.append(f"test_{i:04d}.jpg {(i % 7) + 1}")
        save_image(root / "Image" / "aligned" / f"test_{i:04d}_aligned.jpg", (10, 10))
    list_file = root / "EmoLabel" / "list_patition_label.txt"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


def write_oulu_subjects(root: Path, subjects: int = 6, frames: int = 5) -> None:
    for s in range(1, subjects + 1):
        for expression in OULU_DIRS:
            for k in range(frames):
                save_image(root / f"P{s:03d}" / expression / f"{k:03d}.jpeg", (12, 16), gray=True)


def write_oulu_flat(root: Path, per_class: int = 5) -> None:
    for expression in OULU_DIRS:
        for k in range(per_class):
            save_image(root / expression / f"{expression}_{k}.png", (12, 12))


def write_affwild2(root: Path) -> None:
    """Two training videos, one validation video; frame 3 of v2 has no face crop."""
    write_affwild2_copy(root, {"Training_Set": {"v1": [0, 1, -1, 2, 3, 4, 5, 6], "v2": [6, 5, 4, 3, 2, 1, 0]},
                               "Validation_Set": {"v3": [0, 1, 2, 3, 4, 5, 6, -1]}},
                        lambda path, frame: save_image(path, (8, 8)))


def write_vggface2(root: Path, identities=("n000010", "n000002", "n000005"), per_identity: int = 5) -> None:
    for identity in identities:
        for k in range(per_identity):
            save_image(root / "train" / identity / f"{k:04d}_01.jpg", (10, 10))


def assert_names(exc: pytest.ExceptionInfo, *parts: str) -> None:
    for part in parts:
        assert part in str(exc.value), (part, str(exc.value))


# -- info ----------------------------------------------------------------------------------------
def test_label_orders_and_means_are_the_papers():
    assert DATASETS["fer2013"].classes == ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
    assert DATASETS["rafdb"].classes == ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
    assert DATASETS["oulucasia"].classes == ("Surprise", "Happiness", "Sadness", "Anger", "Fear", "Disgust")
    assert DATASETS["affwild2"].classes == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
    assert DATASETS["vggface2"].classes == ()
    assert DATASETS["fer2013"].mean_bgr == (133.05986,) * 3
    assert DATASETS["rafdb"].mean_bgr == (102.15835, 114.51117, 146.58075)
    assert DATASETS["oulucasia"].mean_bgr == (131.07828,) * 3
    assert DATASETS["vggface2"].mean_bgr == DATASETS["affwild2"].mean_bgr == (91.4953, 103.8827, 131.0912)


def test_unknown_dataset_and_options(tmp_path):
    with pytest.raises(MaferError, match="unknown dataset 'ferplus'"):
        get_dataset("ferplus", tmp_path)
    write_fer(tmp_path / "fer2013", fer_rows())
    with pytest.raises(MaferError, match="unknown option"):
        get_dataset("fer2013", tmp_path, colour=True)
    with pytest.raises(MaferError, match="oulucasia only"):
        get_dataset("fer2013", tmp_path, fold=0)
    with pytest.raises(MaferError, match="unknown split 'dev'"):
        get_dataset("fer2013", tmp_path, "dev")
    with pytest.raises(MaferError, match="data folder not found"):
        get_dataset("fer2013", tmp_path / "nowhere")


# -- FER2013 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("icml", [False, True], ids=["fer2013.csv", "icml_face_data.csv"])
def test_fer2013_both_csv_variants(tmp_path, icml):
    rows = fer_rows()
    write_fer(tmp_path / "fer2013", rows, icml=icml)
    for split, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        ds = get_dataset("fer2013", tmp_path, split)  # data_dir holding fer2013/
        mine = [r for r in rows if r["Usage"] == usage]
        assert ds.targets == [int(r["emotion"]) for r in mine]
        assert ds.classes == list(DATASETS["fer2013"].classes)
        image, label = ds[0]
        assert image.dtype == torch.uint8 and image.shape == (3, 48, 48)
        expected = torch.tensor([int(v) for v in mine[0]["pixels"].split()], dtype=torch.uint8).view(48, 48)
        assert all(torch.equal(image[c], expected) for c in range(3))  # gray repeated to RGB
    assert get_dataset("fer2013", tmp_path / "fer2013", "train").class_counts() == {c: 2 for c in ds.classes}


@pytest.mark.parametrize("row, line, expected", [
    (fer_row(3, "Training", n_pixels=2300), 3, "2300 pixel values; expected 2304"),
    (fer_row(7, "Training"), 3, "emotion '7'; expected an integer label 0..6"),
    (fer_row(2, "Validation"), 3, "Usage 'Validation'; expected one of Training, PublicTest, PrivateTest"),
    (fer_row(2, "Training", value=300), 3, "expected 0..255"),
])
def test_fer2013_bad_rows_name_file_and_line(tmp_path, row, line, expected):
    rows = [fer_row(i, "Training") for i in range(7)]
    csv_path = write_fer(tmp_path, rows[:1] + [row] + rows[1:])
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path, "train")
    assert_names(exc, f"{csv_path}:{line}", expected)
    ds = get_dataset("fer2013", tmp_path, "train", skip_bad=True)
    assert ds.targets == list(range(7))
    assert len(ds.bad_items) == 1 and f"{csv_path}:{line}" in ds.bad_items[0]


def test_fer2013_missing_file_and_header(tmp_path):
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path)
    assert_names(exc, str(tmp_path), "fer2013.csv or icml_face_data.csv")
    (tmp_path / "fer2013.csv").write_text("label,pixels\n0,1 2 3\n")
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path)
    assert_names(exc, f"{tmp_path / 'fer2013.csv'}:1", "emotion", "Usage")


def smoke_fer(smoke_data) -> tuple[str, dict[str, tuple[list, list]]]:
    """The smoke FER2013 CSV's text and the (pixels, targets) of each split read from it."""
    ref = {}
    for split in ("train", "val", "test"):
        ds = get_dataset("fer2013", smoke_data, split)
        ref[split] = (ds.load_uint8()[0], ds.targets)
    return (smoke_data / "fer2013" / "fer2013.csv").read_text(), ref


def assert_same_fer(data_dir: Path, ref: dict, splits=("train", "val", "test")) -> None:
    for split in splits:
        ds = get_dataset("fer2013", data_dir, split)
        assert ds.targets == ref[split][1] and torch.equal(ds.load_uint8()[0], ref[split][0]), split


@pytest.mark.parametrize("kind", ["tar.gz", "tar", "zip"])
def test_fer2013_archives_are_read_in_place(smoke_data, tmp_path, kind):
    import tarfile
    import zipfile

    text, ref = smoke_fer(smoke_data)
    archive = tmp_path / f"fer2013.{kind}"
    member = "fer2013/fer2013.csv"  # Kaggle's fer2013.tar.gz holds fer2013/fer2013.csv, README and .bib
    (tmp_path / "src" / "fer2013").mkdir(parents=True)
    (tmp_path / "src" / member).write_text(text)
    (tmp_path / "src" / "fer2013" / "README").write_text("readme\n")
    if kind == "zip":
        with zipfile.ZipFile(archive, "w") as z:
            z.write(tmp_path / "src" / member, member)
    else:
        with tarfile.open(archive, "w:gz" if kind == "tar.gz" else "w") as t:
            t.add(tmp_path / "src" / "fer2013", "fer2013")
    shutil.rmtree(tmp_path / "src")
    assert_same_fer(tmp_path, ref)  # the archive found in --data-dir
    assert_same_fer(archive, ref)  # and named directly
    assert sorted(p.name for p in tmp_path.iterdir()) == [archive.name]  # nothing extracted next to it
    assert "inside fer2013." in get_dataset("fer2013", archive).variant


def test_archives_other_readers_cannot_read_are_refused_with_the_extract_command(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "RAF-DB.zip", "w") as z:
        z.writestr("basic/EmoLabel/list_patition_label.txt", "train_00001.jpg 1\n")
    with pytest.raises(MaferError) as exc:
        get_dataset("rafdb", tmp_path, "train")
    assert_names(exc, str(tmp_path / "RAF-DB.zip"), f"unzip {tmp_path / 'RAF-DB.zip'} -d {tmp_path / 'rafdb'}")
    (tmp_path / "fer2013.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path, "train")
    assert_names(exc, str(tmp_path / "fer2013.tar.gz"), "cannot read the archive", "re-download")


def test_fer2013_binary_file_named_csv_is_one_clear_line(tmp_path):
    (tmp_path / "fer2013.csv").write_bytes(b"\x1f\x8b\x08\x00\xff\xfe\x00compressed")  # a .tar.gz renamed
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path)
    assert_names(exc, str(tmp_path / "fer2013.csv"), "not a text file", "archive")


def test_fer2013_challenge_train_and_test_csv(smoke_data, tmp_path):
    text, ref = smoke_fer(smoke_data)
    rows = [line.split(",") for line in text.splitlines()[1:]]
    (tmp_path / "train.csv").write_text("emotion,pixels\n" + "".join(f"{e},{p}\n" for e, p, u in rows
                                                                     if u == "Training"))
    (tmp_path / "test.csv").write_text("pixels\n" + "".join(f"{p}\n" for e, p, u in rows if u != "Training"))
    assert_same_fer(tmp_path, ref, ("train",))
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path, "test")
    assert_names(exc, "train.csv holds only the Training rows", "fer2013.csv or icml_face_data.csv")
    (tmp_path / "train.csv").unlink()
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path, "train")
    assert_names(exc, f"{tmp_path / 'test.csv'}:1", "no labels")


@pytest.mark.parametrize("encoding", ["utf8-bom", "crlf", "utf16-bom-crlf"])
def test_fer2013_csv_encodings(smoke_data, tmp_path, encoding):
    text, ref = smoke_fer(smoke_data)
    (tmp_path / "fer2013.csv").write_bytes(encodings(text)[encoding])
    assert_same_fer(tmp_path, ref)


def test_fer2013_image_folders(smoke_data, tmp_path):
    text, ref = smoke_fer(smoke_data)
    names = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # as the repackaging names them
    for folder, splits in (("train", ("train",)), ("test", ("val", "test"))):
        k = 0
        for split in splits:
            for pixels, label in zip(*ref[split]):
                path = tmp_path / "fer2013" / folder / names[label] / f"im{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels[0].numpy()).save(path)
                k += 1
    train, val, test = (get_dataset("fer2013", tmp_path, s) for s in ("train", "val", "test"))
    assert "image folders" in test.variant and "PublicTest and PrivateTest" in test.variant_note
    assert sorted(test.targets) == sorted(ref["val"][1] + ref["test"][1])
    assert sorted(train.targets + val.targets) == sorted(ref["train"][1])
    assert len(val) > 0 and set(train.samples).isdisjoint(val.samples)
    assert train.image_file(0) == train.samples[0] and train.image_file(0).endswith(".png")


def test_fer2013_empty_class_in_training_split(tmp_path):
    csv_path = write_fer(tmp_path, [fer_row(i % 6, "Training") for i in range(12)])  # no Neutral
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path)
    assert_names(exc, str(csv_path.parent), "Neutral", "no images")


# -- RAF-DB --------------------------------------------------------------------------------------
def test_rafdb_names_labels_and_val_split_by_the_authors_rule(tmp_path):
    list_file = write_rafdb(tmp_path / "rafdb")
    train = get_dataset("rafdb", tmp_path, "train")
    val = get_dataset("rafdb", tmp_path, "val")
    test = get_dataset("rafdb", tmp_path, "test")
    assert Path(test.samples[0]) == tmp_path / "rafdb" / "Image" / "aligned" / "test_0001_aligned.jpg"
    assert test.targets[0] == 1  # file label 2 -> Fear
    # int(0.05 * (20 train + 1 test)) = 1 per class; with 19 + 1 it would be int(1.0) = 1, with 19 + 0 none
    assert val.class_counts() == {c: 1 for c in train.classes}
    assert set(train.samples).isdisjoint(val.samples)
    assert len(train) + len(val) == 140 and len(test) == 7
    assert get_dataset("rafdb", tmp_path, "val").samples == val.samples  # seeded, the same every time
    assert sorted(p.name for p in list_file.parent.iterdir()) == [list_file.name]  # nothing saved next to the list

    # the count rule counts test images too: a class with 19 train + 1 test images gives int(0.05 * 20) = 1,
    # a class with 19 train and no test image int(0.95) = 0
    lines = list_file.read_text().splitlines()
    fear_train = [i for i, line in enumerate(lines) if line.startswith("train_") and line.endswith(" 2")]
    no_fear_test = [line for i, line in enumerate(lines) if i != fear_train[0]
                    and not (line.startswith("test_") and line.endswith(" 2"))]
    list_file.write_text("\n".join(no_fear_test) + "\n")
    assert get_dataset("rafdb", tmp_path, "val").class_counts()["Fear"] == 0


def encodings(text: str) -> dict[str, bytes]:
    """The same text as the tools that re-save datasets write it."""
    crlf = text.replace("\n", "\r\n")
    return {"utf8": text.encode(), "utf8-bom": codecs.BOM_UTF8 + text.encode(), "crlf": crlf.encode(),
            "utf16-bom-crlf": crlf.encode("utf-16"), "utf16-be": codecs.BOM_UTF16_BE + text.encode("utf-16-be")}


@pytest.mark.parametrize("encoding", ["utf8-bom", "crlf", "utf16-bom-crlf", "utf16-be"])
def test_rafdb_list_encodings_and_line_ends_change_nothing(tmp_path, encoding):
    list_file = write_rafdb(tmp_path, n_train_per_class=20)
    reference = {s: (ds.samples, ds.targets) for s in ("train", "val", "test")
                 for ds in [get_dataset("rafdb", tmp_path, s)]}
    list_file.write_bytes(encodings(list_file.read_text())[encoding])
    for split, expected in reference.items():
        ds = get_dataset("rafdb", tmp_path, split)
        assert (ds.samples, ds.targets) == expected, (encoding, split)


def test_rafdb_both_spellings_and_a_hint_for_others(tmp_path):
    list_file = write_rafdb(tmp_path / "rafdb", n_train_per_class=3)
    expected = get_dataset("rafdb", tmp_path, "test").samples
    list_file.rename(list_file.with_name("list_partition_label.txt"))  # as RAF-DB's README spells it
    assert get_dataset("rafdb", tmp_path, "test").samples == expected
    list_file.with_name("list_partition_label.txt").rename(list_file.with_name("list_partition_labels.txt"))
    with pytest.raises(MaferError) as exc:
        get_dataset("rafdb", tmp_path, "test")
    assert_names(exc, "EmoLabel/list_partition_labels.txt", "list_patition_label.txt or list_partition_label.txt")


def test_rafdb_class_folder_repackaging(smoke_data, tmp_path):
    release = {s: get_dataset("rafdb", smoke_data, s) for s in ("train", "val", "test")}
    root = tmp_path / "rafdb" / "DATASET"
    names = {}
    for line in (smoke_data / "rafdb" / "EmoLabel" / "list_patition_label.txt").read_text().splitlines():
        name, label = line.split()
        stem = name[:-4]
        target = root / name.split("_")[0] / label / f"{stem}_aligned.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(smoke_data / "rafdb" / "Image" / "aligned" / f"{stem}_aligned.jpg", target)
        names[target.name] = int(label) - 1
    for split, ref in release.items():
        ds = get_dataset("rafdb", tmp_path, split)
        assert "class folders" in ds.variant
        assert ds.class_counts() == ref.class_counts(), split
        assert all(names[Path(p).name] == y for p, y in zip(ds.samples, ds.targets))
    assert {Path(p).name for p in get_dataset("rafdb", tmp_path, "val").samples} == \
        {Path(p).name for p in release["val"].samples}  # same files drawn: the draw sorts by name


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def read_every_split(data_dir: Path) -> None:
    for name, splits in SMOKE_SPLITS.items():
        for split in splits:
            ds = get_dataset(name, data_dir, split)
            ds.verify()
            ds.load_uint8(32)


def test_readers_write_nothing_into_the_data_folder(smoke_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    before = tree_snapshot(data)
    read_every_split(data)
    assert tree_snapshot(data) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway; the snapshot test covers it")
def test_readers_work_on_a_read_only_copy(smoke_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(smoke_data, data)
    paths = [data, *data.rglob("*")]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        read_every_split(data)
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)


def test_rafdb_bad_lines_and_missing_images(tmp_path):
    list_file = write_rafdb(tmp_path, n_train_per_class=3)
    lines = list_file.read_text().splitlines()
    lines[2] = "train_00003.jpg 9"
    list_file.write_text("\n".join(lines) + "\n")
    with pytest.raises(MaferError) as exc:
        get_dataset("rafdb", tmp_path, "test")
    assert_names(exc, f"{list_file}:3", "label 9", "expected 1..7")

    lines[2] = "train_00003.jpg 3"
    list_file.write_text("\n".join(lines) + "\n")
    (tmp_path / "Image" / "aligned" / "test_0002_aligned.jpg").unlink()
    with pytest.raises(MaferError) as exc:
        get_dataset("rafdb", tmp_path, "test")
    assert_names(exc, f"{list_file}:{3 * 7 + 2}", "test_0002_aligned.jpg", "not found")
    ds = get_dataset("rafdb", tmp_path, "test", skip_bad=True)
    assert len(ds) == 6 and len(ds.bad_items) == 1


# -- Oulu-CASIA ----------------------------------------------------------------------------------
def test_oulu_subject_layout_keeps_last_frames(tmp_path):
    write_oulu_subjects(tmp_path / "oulucasia", subjects=2, frames=5)
    ds = get_dataset("oulucasia", tmp_path, "all")
    assert ds.layout == "subject" and len(ds) == 2 * 6 * 3
    assert {Path(p).name for p in ds.samples} == {"002.jpeg", "003.jpeg", "004.jpeg"}
    assert ds.class_counts() == {c: 6 for c in DATASETS["oulucasia"].classes}
    assert ds.targets[ds.samples.index(str(tmp_path / "oulucasia/P001/Fear/004.jpeg"))] == 4
    image, _ = ds[0]
    assert image.shape == (3, 12, 16) and torch.equal(image[0], image[2])
    assert len(get_dataset("oulucasia", tmp_path, "all", last_frames=1)) == 12


def test_oulu_flat_layout(tmp_path):
    write_oulu_flat(tmp_path, per_class=4)
    ds = get_dataset("oulucasia", tmp_path, "all")
    assert ds.layout == "flat" and ds.class_counts() == {c: 4 for c in DATASETS["oulucasia"].classes}
    assert ds.targets[ds.samples.index(str(tmp_path / "Anger" / "Anger_0.png"))] == 3
    with pytest.raises(MaferError, match="protocol 'subject' needs the original"):
        get_dataset("oulucasia", tmp_path, "train", fold=1, folds=3, protocol="subject")


@pytest.mark.filterwarnings("ignore::mafer.errors.MaferWarning")  # authors' rule without their database file
@pytest.mark.parametrize("protocol", ["image", "subject", "authors"])
def test_oulu_folds_partition_the_data(tmp_path, protocol):
    write_oulu_subjects(tmp_path, subjects=6, frames=3)
    folds = 3
    everything = set(get_dataset("oulucasia", tmp_path, "all").samples)
    tests, test_subjects = [], []
    for fold in range(1, folds + 1):  # numbered 1..folds, as the authors' best_model_ckp_fold_<k>.pt
        parts = {s: get_dataset("oulucasia", tmp_path, s, fold=fold, folds=folds, protocol=protocol)
                 for s in ("train", "val", "test")}
        names = {s: set(d.samples) for s, d in parts.items()}
        assert names["train"] | names["val"] | names["test"] == everything
        assert not (names["train"] & names["val"]) and not (names["train"] & names["test"])
        assert not (names["val"] & names["test"])
        assert 0.08 <= len(parts["val"]) / (len(parts["train"]) + len(parts["val"])) <= 0.35
        if protocol == "subject":  # no subject in two of train / val / test
            subjects = {s: set(d.subjects) for s, d in parts.items()}
            assert not (subjects["train"] & subjects["test"]) and not (subjects["val"] & subjects["test"])
            assert not (subjects["train"] & subjects["val"])
        tests.append(names["test"])
        test_subjects.append(set(parts["test"].subjects))
    assert set().union(*tests) == everything and sum(map(len, tests)) == len(everything)
    if protocol == "subject":  # each subject is tested in exactly one fold
        assert sum(map(len, test_subjects)) == len(set().union(*test_subjects)) == 6
    again = get_dataset("oulucasia", tmp_path, "test", fold=2, folds=folds, protocol=protocol)
    assert set(again.samples) == tests[1]  # fixed seed


def test_oulu_release_upper_folders_use_vl_strong(tmp_path):
    root = tmp_path / "oulucasia"
    write_oulu_subjects(root / "OriginalImg" / "VL" / "Strong", subjects=2, frames=4)
    write_oulu_subjects(root / "OriginalImg" / "VL" / "Weak", subjects=1, frames=4)
    write_oulu_subjects(root / "OriginalImg" / "NI" / "Strong", subjects=3, frames=4)
    for given in (root, root / "OriginalImg", root / "OriginalImg" / "VL"):
        ds = get_dataset("oulucasia", given, "all")
        assert ds.root == root / "OriginalImg" / "VL" / "Strong" and len(ds) == 2 * 6 * 3
        assert ds.variant.endswith("VL/Strong") and ds.variant_note == ""
    weak = get_dataset("oulucasia", tmp_path, "all", illumination="Weak")
    assert len(weak) == 1 * 6 * 3 and "VL/Weak" in weak.variant_note
    assert len(get_dataset("oulucasia", tmp_path, "all", camera="NI")) == 3 * 6 * 3
    shutil.rmtree(root / "OriginalImg" / "VL" / "Strong")
    with pytest.raises(MaferError) as exc:
        get_dataset("oulucasia", tmp_path, "all")
    assert_names(exc, "no Strong/ folder", "found Weak")


def test_oulu_bad_layouts_and_options(tmp_path):
    (tmp_path / "misc" / "stuff").mkdir(parents=True)
    with pytest.raises(MaferError) as exc:
        get_dataset("oulucasia", tmp_path, "all")
    assert_names(exc, str(tmp_path), "no known Oulu-CASIA layout", "<Expression>/<image>")
    write_oulu_flat(tmp_path / "flat", per_class=2)
    with pytest.raises(MaferError, match="needs a fold"):
        get_dataset("oulucasia", tmp_path / "flat", "train")
    with pytest.raises(MaferError, match="12 images cannot make 20 folds"):
        get_dataset("oulucasia", tmp_path / "flat", "test", fold=1, folds=20)
    with pytest.raises(MaferError, match="fold 0 of 10 .* expected 1 <= fold <= folds"):
        get_dataset("oulucasia", tmp_path / "flat", "test", fold=0)
    with pytest.raises(MaferError, match="unknown protocol"):
        get_dataset("oulucasia", tmp_path / "flat", "all", protocol="video")
    shutil.rmtree(tmp_path / "flat" / "Fear")
    with pytest.raises(MaferError, match="Fear have no images"):
        get_dataset("oulucasia", tmp_path / "flat", "all")


# -- AffWild2 ------------------------------------------------------------------------------------
def test_affwild2_drops_unlabelled_frames_and_frames_without_crop(tmp_path):
    write_affwild2(tmp_path / "affwild2")
    train = get_dataset("affwild2", tmp_path, "train")
    assert len(train) == 7 + 6 and train.dropped == {"unlabelled": 1, "no_face": 1, "other": 0}
    assert train.targets[:7] == [0, 1, 2, 3, 4, 5, 6]
    assert Path(train.samples[2]).name == "00004.jpg"  # line 4 of v1 = frame 3 is -1: skipped
    val = get_dataset("affwild2", tmp_path, "val")
    assert val.class_counts() == {c: 1 for c in DATASETS["affwild2"].classes}


@pytest.mark.parametrize("layout", ["top-level", "under-annotations"])
def test_affwild2_later_abaw_layout_with_other(smoke_data, tmp_path, layout):
    """The later challenges: EXPR_Classification_Challenge/Train_Set, an eighth class Other (label 7),
    and the authors' nested frame folder; Other frames are dropped and counted, never bad items."""
    ref = {s: get_dataset("affwild2", smoke_data, s) for s in ("train", "val")}
    root = tmp_path / "affwild2"
    shutil.copytree(smoke_data / "affwild2" / "cropped_aligned", root / "cropped_images_aligned" / "cropped_aligned")
    base = root if layout == "top-level" else root / "annotations"
    others = {}
    for split, old, new in (("train", "Training_Set", "Train_Set"), ("val", "Validation_Set", "Validation_Set")):
        others[split] = 0
        for file in sorted((smoke_data / "affwild2" / "annotations" / "EXPR_Set" / old).glob("*.txt")):
            lines = file.read_text().splitlines()
            lines[0] += ",Other"
            for i in range(3, len(lines), 7):  # some frames of every video become Other
                if lines[i] != "-1":
                    lines[i] = "7"
                    others[split] += 1
            target = base / "EXPR_Classification_Challenge" / new / file.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8-sig"))
    for split in ("train", "val"):
        ds = get_dataset("affwild2", tmp_path, split)
        assert "EXPR_Classification_Challenge" in ds.variant and "ABAW2" in ds.variant_note
        assert ds.bad_items == [] and ds.dropped["other"] == others[split] > 0
        assert ds.dropped["unlabelled"] == ref[split].dropped["unlabelled"]
        kept = dict(zip((Path(p).relative_to(root / "cropped_images_aligned") for p in ds.samples), ds.targets))
        refs = dict(zip((Path(p).relative_to(smoke_data / "affwild2") for p in ref[split].samples), ref[split].targets))
        assert kept.items() <= refs.items()  # the other frames keep their labels
        labelled = len(refs) + ref[split].dropped["no_face"]
        assert len(kept) + ds.dropped["other"] + ds.dropped["no_face"] == labelled
    # an eighth label without the Other header is an error
    file = next((base / "EXPR_Classification_Challenge" / "Validation_Set").glob("*.txt"))
    file.write_text(file.read_text(encoding="utf-8-sig").replace(",Other", ""))
    with pytest.raises(MaferError, match="label 7; expected -1 \\(none\\) or 0..6"):
        get_dataset("affwild2", tmp_path, "val")


def test_affwild2_bad_annotations(tmp_path):
    write_affwild2(tmp_path)
    file = tmp_path / "annotations" / "EXPR_Set" / "Validation_Set" / "v3.txt"
    lines = file.read_text().splitlines()
    file.write_text("\n".join(lines[:3] + ["9"] + lines[4:]) + "\n")
    with pytest.raises(MaferError) as exc:
        get_dataset("affwild2", tmp_path, "val")
    assert_names(exc, f"{file}:4", "label 9")
    file.write_text("Happy,Sad\n0\n")
    with pytest.raises(MaferError) as exc:
        get_dataset("affwild2", tmp_path, "val")
    assert_names(exc, f"{file}:1", "Neutral,Anger")


# -- VGGFace2 ------------------------------------------------------------------------------------
def test_vggface2_identities_and_saved_holdout(tmp_path):
    write_vggface2(tmp_path / "vggface2")
    train = get_dataset("vggface2", tmp_path, "train")
    val = get_dataset("vggface2", tmp_path, "val")
    assert train.classes == val.classes == ["n000002", "n000005", "n000010"]
    assert val.class_counts() == {c: 2 for c in train.classes}
    assert train.class_counts() == {c: 3 for c in train.classes}
    assert set(train.samples).isdisjoint(val.samples)
    assert get_dataset("vggface2", tmp_path, "val").samples == val.samples
    assert sorted(p.name for p in (tmp_path / "vggface2").iterdir()) == ["train"]  # nothing saved next to the data


def test_vggface2_empty_identity_folder(tmp_path):
    write_vggface2(tmp_path)
    (tmp_path / "train" / "n000099").mkdir()
    with pytest.raises(MaferError) as exc:
        get_dataset("vggface2", tmp_path)
    assert_names(exc, "n000099", "no images")
    ds = get_dataset("vggface2", tmp_path, skip_bad=True)
    assert "n000099" not in ds.classes and any("n000099" in item for item in ds.bad_items)


# -- decoding, bad images, load_uint8 ------------------------------------------------------------
def test_decode_gray_and_bad_images(tmp_path):
    save_image(tmp_path / "g.png", (5, 7), gray=True)
    image = decode_image(tmp_path / "g.png")
    assert image.shape == (3, 5, 7) and image.dtype == torch.uint8 and torch.equal(image[0], image[1])
    save_image(tmp_path / "t.jpg", (64, 64))
    truncate(tmp_path / "t.jpg")
    with pytest.raises(MaferError) as exc:
        decode_image(tmp_path / "t.jpg")
    assert_names(exc, str(tmp_path / "t.jpg"), "cannot decode")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(MaferError, match="junk.jpg"):
        decode_image(tmp_path / "junk.jpg")
    with pytest.raises(MaferError, match="missing.jpg: file not found"):
        decode_image(tmp_path / "missing.jpg")


def test_truncated_image_in_a_dataset(tmp_path):
    write_oulu_flat(tmp_path, per_class=3)
    bad = tmp_path / "Sadness" / "Sadness_1.png"
    truncate(bad)
    ds = get_dataset("oulucasia", tmp_path, "all")
    with pytest.raises(MaferError) as exc:
        ds[ds.samples.index(str(bad))]
    assert_names(exc, str(bad))
    with pytest.raises(MaferError, match="Sadness_1.png"):
        ds.verify()
    ds = get_dataset("oulucasia", tmp_path, "all", skip_bad=True)
    images, labels = ds.load_uint8()
    assert images.shape == (17, 3, 12, 12) and labels.tolist() == ds.targets
    assert len(ds.bad_items) == 1 and str(bad) in ds.bad_items[0]
    assert str(bad) not in ds.samples


def test_load_uint8_resizes_and_caches(tmp_path):
    write_oulu_subjects(tmp_path, subjects=1, frames=3)
    ds = get_dataset("oulucasia", tmp_path, "all")
    with pytest.raises(MaferError, match="load_uint8"):
        save_image(Path(ds.samples[0]), (30, 12))  # one image of another size
        ds.load_uint8()
    images, labels = ds.load_uint8(8)
    assert images.shape == (18, 3, 8, 8) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert ds.load_uint8(8)[0] is images


# -- the synthetic datasets of `mafer synth` -----------------------------------------------------
@pytest.mark.parametrize("name, splits", SMOKE_SPLITS.items())
def test_smoke_data_loads(smoke_data, name, splits):
    for split in splits:
        ds = get_dataset(name, smoke_data, split)
        assert len(ds) > 0 and sum(ds.class_counts().values()) == len(ds)
        assert set(ds.targets) <= set(range(len(ds.classes)))
        image, label = ds[len(ds) - 1]
        assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
        if name != "vggface2":
            assert ds.classes == list(DATASETS[name].classes)
        if split in ("train", "all"):
            assert min(ds.class_counts().values()) > 0


def test_readers_scale_a_16bit_face_instead_of_clamping_it(smoke_data, tmp_path):
    # every reader decodes through mafer.image.decode_file: 16-bit gray is scaled to 0..255
    shutil.copytree(smoke_data / "rafdb", tmp_path / "rafdb")
    ds = get_dataset("rafdb", tmp_path, "test")
    path = ds.image_file(0)
    gray = np.asarray(Image.open(path).convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(path, format="PNG")  # 16-bit, as some tools save faces
    image, _ = ds[0]
    assert abs(float(image.float().mean()) - float(gray.mean())) < 1  # clamped, it would read as white (255)
