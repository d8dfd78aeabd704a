"""Layout variants of the released datasets (issue 23): frames numbered without padding, RAF-DB lists with a
third value or faces without the ``_aligned`` suffix, OpenFace crop names, archives without an archive's name,
file names that are not UTF-8. Each is read like the standard layout and named; what cannot be resolved is
one line that names the actual problem and never advises ``--skip-bad`` where skipping cannot help."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_affwild2 as write_affwild2_copy
from mafer.cli import main
from mafer.datasets import get_dataset
from mafer.datasets import base
from mafer.errors import MaferError

OULU = ("Surprise", "Happiness", "Sadness", "Anger", "Fear", "Disgust")


def image(path: Path, value: int = 0, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path, format="PNG")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# -- one order of files: by the numbers in their names -------------------------------------------
def test_natural_key_orders_numbers_by_value_whatever_the_padding_or_prefix():
    expected = ["1.jpeg", "2.jpeg", "9.jpeg", "010.jpeg", "10.jpeg", "11.jpeg", "12.jpeg"]
    names = expected[:]
    random.Random(0).shuffle(names)
    assert sorted(names, key=base.natural_key) == expected  # 010 and 10: equal by value, then by text
    assert sorted(["frame_det_00_10.bmp", "frame_det_00_9.bmp", "frame_det_01_1.bmp"], key=base.natural_key) == \
        ["frame_det_00_9.bmp", "frame_det_00_10.bmp", "frame_det_01_1.bmp"]
    assert sorted(["P10/Anger/1.jpeg", "P2/Anger/3.jpeg", "P2-b/x.jpeg"], key=base.natural_key) == \
        ["P2/Anger/3.jpeg", "P2-b/x.jpeg", "P10/Anger/1.jpeg"]  # component by component
    padded = [f"train_{i:05d}.jpg" for i in range(1, 30)]
    assert sorted(padded, key=base.natural_key) == sorted(padded)  # the releases' zero-padded names keep their order


def test_listings_of_every_reader_are_in_natural_order(tmp_path):
    for k in (1, 2, 10, 11, 3):
        image(tmp_path / f"P{k}" / f"{k}.png")
    assert [p.name for p in base.list_dirs(tmp_path)] == ["P1", "P2", "P3", "P10", "P11"]
    for k in range(1, 13):
        image(tmp_path / "frames" / f"{k}.png")
    assert [p.name for p in base.list_images(tmp_path / "frames")] == [f"{k}.png" for k in range(1, 13)]


# -- situation 1: Oulu-CASIA frames 1.jpeg .. 12.jpeg ----------------------------------------------
def write_oulu(root: Path, name, subjects: int = 4, frames: int = 12) -> None:
    """Subject / expression / frames; frame k (1-based) has the gray value 10 * k, so the peak frames are 100..120."""
    for s in range(1, subjects + 1):
        for expression in OULU:
            for k in range(1, frames + 1):
                image(root / f"P{s:03d}" / expression / name(k), value=10 * k)


def test_oulu_unpadded_frames_take_the_last_frames_by_number(tmp_path):
    write_oulu(tmp_path / "plain" / "oulucasia", lambda k: f"{k}.jpeg")
    write_oulu(tmp_path / "padded" / "oulucasia", lambda k: f"{k:03d}.jpeg")
    plain = get_dataset("oulucasia", tmp_path / "plain", "all")
    padded = get_dataset("oulucasia", tmp_path / "padded", "all")
    anger = sorted(Path(p).name for p in plain.samples if "/P001/Anger/" in p)
    assert anger == ["10.jpeg", "11.jpeg", "12.jpeg"]  # text order took 7, 8 and 9
    images, labels = plain.load_uint8()
    assert set(images[:, 0, 0, 0].tolist()) == {100, 110, 120}
    assert labels.tolist() == padded.targets and len(plain) == len(padded) == 4 * 6 * 3
    assert plain.details == ["peak frames: the last 3 of each sequence by the number in the file name "
                             "(e.g. P001/Anger: 10.jpeg, 11.jpeg, 12.jpeg)"]
    # folds are drawn over the same order: the same frames in every fold, padded or not
    for s in ("train", "val", "test"):
        a = get_dataset("oulucasia", tmp_path / "plain", s, fold=1, folds=3)
        b = get_dataset("oulucasia", tmp_path / "padded", s, fold=1, folds=3)
        assert [Path(p).parent.parts[-2:] + (int(Path(p).stem),) for p in a.samples] == \
               [Path(p).parent.parts[-2:] + (int(Path(p).stem),) for p in b.samples]


def test_summary_and_check_state_which_peak_frames_were_taken(tmp_path, capsys):
    write_oulu(tmp_path / "oulucasia", lambda k: f"{k}.jpeg", subjects=2)
    line = "peak frames: the last 3 of each sequence by the number in the file name (e.g. P001/Anger: 10.jpeg"
    rc, out, _ = cli(capsys, "data", "summary", "--dataset", "oulucasia", "--data-dir", str(tmp_path))
    assert rc == 0 and out.splitlines()[1].startswith(line)
    rc, out, _ = cli(capsys, "data", "check", "--dataset", "oulucasia", "--data-dir", str(tmp_path))
    assert rc == 0 and f"  {line}" in out
    rc, out, _ = cli(capsys, "data", "summary", "--dataset", "oulucasia", "--data-dir", str(tmp_path), "--json",
                     "--last-frames", "2")
    assert json.loads(out)["details"][0].startswith("peak frames: the last 2 of each sequence")


# -- situations 3 and 4: RAF-DB list lines with a third value, faces without _aligned ------------
def write_rafdb(root: Path, per_class: int = 20, n_test: int = 7) -> Path:
    lines = []
    for i in range(1, 7 * per_class + 1):
        lines.append(f"train_{i:05d}.jpg {(i % 7) + 1}")
        image(root / "Image" / "aligned" / f"train_{i:05d}_aligned.jpg", value=i % 256)
    for i in range(1, n_test + 1):
        lines.append(f"test_{i:04d}.jpg {(i % 7) + 1}")
        image(root / "Image" / "aligned" / f"test_{i:04d}_aligned.jpg", value=i)
    list_file = root / "EmoLabel" / "list_patition_label.txt"
    list_file.parent.mkdir(parents=True, exist_ok=True)
    list_file.write_text("\n".join(lines) + "\n")
    return list_file


def rafdb_splits(data_dir: Path) -> dict[str, tuple[list[str], list[int]]]:
    out = {}
    for split in ("train", "val", "test"):
        ds = get_dataset("rafdb", data_dir, split)
        out[split] = ([Path(p).name.replace("_aligned", "") for p in ds.samples], ds.targets)
    return out


def test_rafdb_third_value_per_line_reads_as_the_release(tmp_path, capsys):
    list_file = write_rafdb(tmp_path / "rafdb")
    standard = rafdb_splits(tmp_path)
    list_file.write_text("".join(f"{line} {int(line.split()[1]) // 4}\n" for line in list_file.read_text().splitlines()))
    assert list_file.read_text().startswith("train_00001.jpg 2 0\n")
    assert rafdb_splits(tmp_path) == standard  # same images, labels and validation draw
    ds = get_dataset("rafdb", tmp_path, "test")
    assert "with a third value per line (ignored: the label is the second)" in ds.variant and ds.variant_note == ""
    rc, out, _ = cli(capsys, "data", "summary", "--dataset", "rafdb", "--data-dir", str(tmp_path), "--no-verify")
    assert rc == 0 and "third value per line" in out.splitlines()[0]
    rc, out, _ = cli(capsys, "data", "check", "--dataset", "rafdb", "--data-dir", str(tmp_path), "--json")
    assert "third value per line" in json.loads(out)["variant"] and json.loads(out)["bad_items"] == []


def test_rafdb_faces_without_the_aligned_suffix_read_as_the_release(tmp_path, capsys):
    write_rafdb(tmp_path / "rafdb")
    standard = rafdb_splits(tmp_path)
    for path in (tmp_path / "rafdb" / "Image" / "aligned").iterdir():
        path.rename(path.with_name(path.name.replace("_aligned", "")))
    assert rafdb_splits(tmp_path) == standard
    test = get_dataset("rafdb", tmp_path, "test")
    assert test.samples[0] == str(tmp_path / "rafdb" / "Image" / "aligned" / "test_0001.jpg")
    assert test.variant.endswith("Image/aligned without the _aligned suffix)")
    rc, out, _ = cli(capsys, "data", "check", "--dataset", "rafdb", "--data-dir", str(tmp_path))
    assert rc == 0 and "variant: release (EmoLabel/list_patition_label.txt, Image/aligned without the _aligned " \
                       "suffix)" in out


def test_rafdb_layouts_it_cannot_resolve_name_the_problem_without_advising_skip_bad(tmp_path, capsys):
    list_file = write_rafdb(tmp_path / "rafdb", per_class=3)
    text = list_file.read_text()
    list_file.write_text(text.replace("\n", " 1 x\n"))  # four values: not a layout the reader knows
    rc, _, err = cli(capsys, "data", "summary", "--dataset", "rafdb", "--data-dir", str(tmp_path))
    assert rc == 2 and "--skip-bad" not in err and err.count("\n") == 1
    assert f"{list_file}:1: line 'train_00001.jpg 2 1 x'" in err and "skipping such items cannot help" in err
    list_file.write_text(text)
    shutil.move(tmp_path / "rafdb" / "Image" / "aligned", tmp_path / "rafdb" / "Image" / "original")
    with pytest.raises(MaferError) as exc:
        get_dataset("rafdb", tmp_path, "train", skip_bad=True)
    message = str(exc.value)
    assert message.startswith(f"{tmp_path / 'rafdb' / 'Image' / 'aligned'}: none of the 28 faces listed in")
    assert "train_00001_aligned.jpg and train_00001.jpg" in message and "Image/ holds original" in message
    assert "--skip-bad" not in message
    # a few faces missing in a complete copy: skipping helps, so the message says how
    shutil.move(tmp_path / "rafdb" / "Image" / "original", tmp_path / "rafdb" / "Image" / "aligned")
    (tmp_path / "rafdb" / "Image" / "aligned" / "test_0003_aligned.jpg").unlink()
    with pytest.raises(MaferError, match="test_0003_aligned.jpg not found .*--skip-bad"):
        get_dataset("rafdb", tmp_path, "test")


# -- situation 5: AffWild2 crops named by OpenFace ------------------------------------------------
def write_affwild2(root: Path) -> dict[str, int]:
    """Two training videos and one validation video; frame 3 of v2 has no crop. Returns labelled frames per split."""
    write_affwild2_copy(root, {"Training_Set": {"v1": [0, 1, -1, 2, 3, 4, 5, 6, 0, 1, 2, 3],
                                                "v2": [6, 5, 4, 3, 2, 1, 0]},
                               "Validation_Set": {"v3": [0, 1, 2, 3, 4, 5, 6, -1, 0, 1, 2]}},
                        lambda path, frame: image(path, value=frame))
    return {"train": 18, "val": 10}


def rename_crops(root: Path, name, folder=lambda video: video) -> None:
    crops = root / "cropped_aligned"
    for video in [d.name for d in crops.iterdir()]:
        target = crops / folder(video)
        (crops / video).rename(crops / f"{video}.tmp")
        target.mkdir()
        for path in (crops / f"{video}.tmp").iterdir():
            path.rename(target / name(int(path.stem)))
        (crops / f"{video}.tmp").rmdir()


def aff_items(data_dir: Path, split: str) -> tuple[list[tuple[str, int]], list[int], dict[str, int]]:
    ds = get_dataset("affwild2", data_dir, split)
    frames = [(Path(p).parent.name.removesuffix("_aligned"), int("".join(filter(str.isdigit, Path(p).stem))[-6:]))
              for p in ds.samples]
    return frames, ds.targets, ds.dropped


@pytest.mark.parametrize("naming", ["openface", "openface-folders", "unpadded"])
def test_affwild2_crops_named_otherwise_read_as_the_release(tmp_path, capsys, naming):
    write_affwild2(tmp_path / "affwild2")
    standard = {s: aff_items(tmp_path, s) for s in ("train", "val")}
    assert standard["train"][2]["no_face"] == 1
    if naming == "unpadded":
        rename_crops(tmp_path / "affwild2", lambda k: f"{k}.jpg")
    else:
        folder = (lambda v: f"{v}_aligned") if naming == "openface-folders" else (lambda v: v)  # OpenFace's out dir
        rename_crops(tmp_path / "affwild2", lambda k: f"frame_det_00_{k:06d}.bmp", folder)
        # a second face OpenFace found in frame 2 of v1: another naming, ignored
        v1 = next((tmp_path / "affwild2" / "cropped_aligned").glob("v1*"))
        image(v1 / "frame_det_01_000002.bmp", value=255)
    for split in ("train", "val"):
        assert aff_items(tmp_path, split) == standard[split], split
    ds = get_dataset("affwild2", tmp_path, "train")
    if naming == "unpadded":
        assert ds.variant == "ABAW2 EXPR_Set" and ds.details == []
        return
    assert ds.variant == ("ABAW2 EXPR_Set; face crops named like frame_det_00_000001.bmp (OpenFace's naming), "
                          "matched to frames by their number")
    assert ds.details[0].startswith("1 image file(s) beside the crops ignored as another naming (e.g. v1")
    assert int(ds.load_uint8()[0][:, 0, 0, 0].max()) < 255  # the second face is not read
    rc, out, _ = cli(capsys, "data", "summary", "--dataset", "affwild2", "--data-dir", str(tmp_path))
    lines = out.splitlines()
    assert rc == 0 and "frame_det_00_000001.bmp (OpenFace's naming)" in lines[0]
    assert "dropped (no_face): 1" in lines and "1 image file(s) beside the crops ignored" in lines[1]
    rc, out, _ = cli(capsys, "data", "check", "--dataset", "affwild2", "--data-dir", str(tmp_path))
    assert "  dropped (no_face): 1" in out.splitlines() and "frame_det_00_000001.bmp" in out


def test_affwild2_crops_without_frame_numbers_say_so_and_how_many_frames_were_dropped(tmp_path, capsys):
    labelled = write_affwild2(tmp_path / "affwild2")
    rename_crops(tmp_path / "affwild2", lambda k: f"face_{chr(ord('a') + k)}.jpg")
    rc, _, err = cli(capsys, "data", "summary", "--dataset", "affwild2", "--data-dir", str(tmp_path))
    assert rc == 2 and "--skip-bad" not in err and err.count("\n") == 1
    assert (f"all {labelled['train']} labelled frames were dropped for want of a face crop in "
            f"{tmp_path / 'affwild2' / 'cropped_aligned'}/<video>/ (crops here are named like face_") in err
    assert "expected a crop per frame named by its number (00001.jpg for frame 1" in err
    # every video folder missing: a layout problem, not bad items to skip
    shutil.rmtree(tmp_path / "affwild2" / "cropped_aligned")
    (tmp_path / "affwild2" / "cropped_aligned").mkdir()
    with pytest.raises(MaferError) as exc:
        get_dataset("affwild2", tmp_path, "val")
    assert "no face crops for this video" in str(exc.value) and "--skip-bad" not in str(exc.value)
    assert "skipping such items cannot help" in str(exc.value)


# -- bad images everywhere: skipping cannot help --------------------------------------------------
def test_undecodable_images_advise_skip_bad_only_where_it_helps(tmp_path):
    for expression in OULU:
        for k in range(3):
            image(tmp_path / expression / f"{k}.png")
    (tmp_path / "Fear" / "1.png").write_bytes(b"not a png")
    with pytest.raises(MaferError, match="--skip-bad"):
        get_dataset("oulucasia", tmp_path, "all").verify()
    for path in (tmp_path / "Fear").iterdir():
        path.write_bytes(b"not a png")
    with pytest.raises(MaferError) as exc:
        get_dataset("oulucasia", tmp_path, "all").verify()
    assert "class(es) Fear would have no images in split 'all' without them" in str(exc.value)
    assert "--skip-bad" not in str(exc.value)


# -- "also seen": a gunzipped FER2013 tar saved as `fer2013` ---------------------------------------
def test_fer2013_tar_without_an_archive_name_is_read_or_named_never_printed(tmp_path, capsys):
    rows = [f"{i % 7},{' '.join(['7'] * 2304)},{usage}" for i, usage in
            enumerate(["Training"] * 7 + ["PublicTest"] * 2 + ["PrivateTest"] * 2)]
    (tmp_path / "src" / "fer2013").mkdir(parents=True)
    (tmp_path / "src" / "fer2013" / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    with tarfile.open(tmp_path / "fer2013", "w") as t:  # Kaggle's fer2013.tar.gz after gunzip
        t.add(tmp_path / "src" / "fer2013", "fer2013")
    for data_dir in (tmp_path / "fer2013", tmp_path):  # named, or found in the data folder
        ds = get_dataset("fer2013", data_dir, "train")
        assert len(ds) == 7 and ds.variant == "fer2013.csv (Kaggle) inside fer2013 (a tar archive)"
    assert len(get_dataset("fer2013", tmp_path, "test")) == 2
    rc, out, err = cli(capsys, "data", "summary", "--dataset", "rafdb", "--data-dir", str(tmp_path / "fer2013"))
    assert rc == 2 and "fer2013: this is a tar archive" in err and "\x00" not in err
    # a tar without the CSV: what it is and the command that unpacks it, no header bytes
    with tarfile.open(tmp_path / "fer2013", "w") as t:
        t.add(tmp_path / "src" / "fer2013" / "fer2013.csv", "fer2013/README")
    rc, out, err = cli(capsys, "data", "summary", "--dataset", "fer2013", "--data-dir", str(tmp_path / "fer2013"))
    assert rc == 2 and "\x00" not in err and err.count("\n") == 1
    assert f"{tmp_path / 'fer2013'}: this tar archive holds none of fer2013.csv" in err
    assert f"tar -xf {tmp_path / 'fer2013'} -C {tmp_path / 'fer2013-extracted'}" in err
    # binary bytes in a CSV's header are shown escaped
    (tmp_path / "fer2013").unlink()
    (tmp_path / "fer2013.csv").write_bytes(b"fer2013/\x00\x00\x00\x000000755\x00\n1,2\n")
    with pytest.raises(MaferError) as exc:
        get_dataset("fer2013", tmp_path / "fer2013.csv")
    assert "\x00" not in str(exc.value) and "fer2013/\\x00\\x00" in str(exc.value)


# -- situation 13: names that are not UTF-8, printed to a strict terminal -------------------------
def mafer_strict(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    return subprocess.run([sys.executable, "-m", "mafer", *argv], env=env, capture_output=True, timeout=120)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_names_that_are_not_utf8_are_printed_escaped_to_a_strict_terminal(tmp_path):
    train = os.fsencode(tmp_path / "vggface2" / "train")
    for identity in (b"n000001", "Jos\xe9".encode("latin-1")):  # a Latin-1 identity folder
        for k in range(3):
            path = os.path.join(train, identity, b"%04d_01.jpg" % k)
            image(Path(os.fsdecode(path)), value=40 * k + len(identity))
    original = os.path.join(train, b"n000001", b"0000_01.jpg")
    shutil.copy(original, os.path.join(train, b"n000001", "0000_01 - 副本".encode("gbk") + b".jpg"))  # GBK copy
    check = mafer_strict("data", "check", "--dataset", "vggface2", "--data-dir", str(tmp_path))
    out, err = check.stdout.decode(), check.stderr.decode()
    assert check.returncode == 0 and "Traceback" not in err, err
    assert "0000_01 - \\udcb8\\udcb1\\udcb1\\udcbe.jpg" in out  # the duplicate group names the copy, escaped
    assert "duplicate images: 1 group(s)" in out and "  Jos\\udce9 " in out  # the identity's row
    os.mkdir(os.path.join(train, b"Ren\xe9"))  # an empty identity folder: the error names it, escaped
    failed = mafer_strict("data", "summary", "--dataset", "vggface2", "--data-dir", str(tmp_path))
    err = failed.stderr.decode()
    assert failed.returncode == 2 and "Traceback" not in err and "Ren\\udce9: identity folder has no images" in err
