"""Oulu-CASIA under the authors' fold rule, and their released fold checkpoints tested on their own folds."""

import csv
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.model_selection import KFold

from mafer.cli import main
from mafer.datasets import DATASETS, get_dataset
from mafer.datasets.oulucasia import DATABASE_FILE
from mafer.errors import MaferError, MaferWarning
from mafer.evaluate import evaluate_checkpoint, evaluate_folds
from mafer.metrics import fold_average
from mafer.models import create_model
from mafer.released import fold_checkpoints

CLASSES = DATASETS["oulucasia"].classes


@pytest.fixture(scope="module")
def flat_oulu(smoke_data, tmp_path_factory):
    """The smoke set's peak frames in the authors' flat layout ``oulucasia/<Expression>/<Subject>_<frame>.jpeg``."""
    root = tmp_path_factory.mktemp("flat") / "oulucasia"
    for path in get_dataset("oulucasia", smoke_data, "all").samples:
        path = Path(path)
        target = root / path.parent.name / f"{path.parent.parent.name}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return root


def write_database(root: Path, out: Path, prefix: str = "/home/someone/OuluCasia", seed: int = 3) -> list[str]:
    """An ``oulucasia_database.csv`` as the authors' dataset class writes it (pandas index, image_path,
    expression; rows in an arbitrary listdir order), naming the images under another machine's
    ``prefix``. Returns the ``<Expression>/<image>`` of each row, in row order."""
    rows = [f"{d.name}/{f.name}" for d in root.iterdir() if d.is_dir() for f in d.iterdir()]
    random.Random(seed).shuffle(rows)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "image_path", "expression"])
        for i, row in enumerate(rows):
            writer.writerow([i, f"{prefix}/{row}", CLASSES.index(row.split("/")[0])])
    return rows


def relative(samples):
    return [f"{Path(p).parent.name}/{Path(p).name}" for p in samples]


def test_authors_folds_are_kfold_over_the_rows_of_their_database(flat_oulu, tmp_path):
    # the database may sit in the dataset folder (the authors' code writes it there) or be named
    database = tmp_path / DATABASE_FILE
    rows = write_database(flat_oulu, database)
    kfold = list(KFold(n_splits=10, shuffle=True, random_state=17).split(np.arange(len(rows))))
    tested = []
    for k in range(1, 11):
        parts = {s: get_dataset("oulucasia", flat_oulu, s, fold=k, protocol="authors", order=database)
                 for s in ("train", "val", "test")}
        assert relative(parts["test"].samples) == [rows[i] for i in sorted(kfold[k - 1][1])]
        rest = {rows[i] for i in kfold[k - 1][0]}
        assert set(relative(parts["train"].samples)) | set(relative(parts["val"].samples)) == rest
        assert not set(parts["train"].samples) & set(parts["val"].samples)
        assert len(parts["val"]) == int(len(rest) * 0.15)  # the authors' first 15 % of the shuffled part
        labels = {r: CLASSES.index(r.split("/")[0]) for r in rows}
        assert parts["test"].targets == [labels[r] for r in relative(parts["test"].samples)]
        assert parts["test"].fold_order.startswith(str(database))
        tested += relative(parts["test"].samples)
    assert sorted(tested) == sorted(rows)


def test_the_database_matches_a_copy_of_the_data_elsewhere_by_its_last_two_components(flat_oulu, tmp_path):
    copy = tmp_path / "elsewhere" / "oulucasia"
    shutil.copytree(flat_oulu, copy)
    (copy / "Happiness").rename(copy / "happy")  # a re-packaging's folder name
    rows = write_database(flat_oulu, copy / DATABASE_FILE, prefix="C:\\Users\\someone\\OuluCasia")
    (copy / DATABASE_FILE).write_text((copy / DATABASE_FILE).read_text().replace("/", "\\"))
    test = get_dataset("oulucasia", copy.parent, "test", fold=4, protocol="authors")
    kfold = list(KFold(n_splits=10, shuffle=True, random_state=17).split(np.arange(len(rows))))
    expected = [rows[i].replace("Happiness/", "happy/") for i in sorted(kfold[3][1])]
    assert relative(test.samples) == expected
    before = sorted(p.name for p in copy.rglob("*"))
    get_dataset("oulucasia", copy.parent, "all", protocol="authors")
    assert sorted(p.name for p in copy.rglob("*")) == before  # nothing written into the dataset folder


def test_a_database_that_does_not_fit_the_files_is_one_clear_error(flat_oulu, tmp_path):
    database = tmp_path / DATABASE_FILE
    rows = write_database(flat_oulu, database)
    lines = database.read_text().splitlines()

    def fails(text, *expected):
        database.write_text("\n".join(text) + "\n")
        with pytest.raises(MaferError) as info:
            get_dataset("oulucasia", flat_oulu, "test", fold=1, protocol="authors", order=database)
        message = str(info.value)
        assert str(database) in message and "\n" not in message
        for part in expected:
            assert part in message, message

    fails(lines[:-1], "1 image(s) of the dataset folder are in no row", rows[-1])
    fails(lines + ["999,/x/Anger/ghost.jpeg,3"], f"line {len(lines) + 1}", "Anger/ghost.jpeg", "matches no image")
    fails(lines + [lines[1]], f"lines 2 and {len(lines) + 1}", "both name")
    wrong = lines[1].rsplit(",", 1)[0] + f",{(CLASSES.index(rows[0].split('/')[0]) + 1) % 6}"
    fails([lines[0], wrong] + lines[2:], "line 2", "expression", "expected the authors' labels")
    fails(["a,b,c"] + lines[1:], "columns", "image_path")
    with pytest.raises(MaferError, match="missing.csv: order file not found"):
        get_dataset("oulucasia", flat_oulu, "test", fold=1, protocol="authors", order=tmp_path / "missing.csv")
    with pytest.raises(MaferError, match="applies to protocol 'authors' only"):
        get_dataset("oulucasia", flat_oulu, "test", fold=1, protocol="image", order=database)


def test_without_a_database_the_rule_runs_over_path_order_and_says_so(flat_oulu):
    with pytest.warns(MaferWarning, match="can be tested without leakage only on their own database order") as said:
        test = get_dataset("oulucasia", flat_oulu, "test", fold=2, protocol="authors")
        get_dataset("oulucasia", flat_oulu, "train", fold=3, protocol="authors")
    assert len(said) == 1  # once per dataset folder, not once per fold opened
    everything = get_dataset("oulucasia", flat_oulu, "all").samples
    kfold = list(KFold(n_splits=10, shuffle=True, random_state=17).split(np.arange(len(everything))))
    assert test.samples == [everything[i] for i in sorted(kfold[1][1])] and test.fold_order == "path order"


@pytest.fixture(scope="module")
def released_folds(tmp_path_factory):
    """A folder of ten fold checkpoints in the authors' format (random SE-ResNet-50 weights), hard-linked to one file."""
    folder = tmp_path_factory.mktemp("released") / "cr" / "oulucasia"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    one = folder.parent / "weights.pt"
    torch.save({"model_state_dict": create_model("senet50", 6).state_dict(), "optimizer_state_dict": {},
                "epoch": 4, "best_acc": 0.9}, one)
    for k in range(1, 11):
        os.link(one, folder / f"best_model_ckp_fold_{k}.pt")
    return folder


def test_released_fold_checkpoints_are_each_tested_on_their_own_fold(flat_oulu, released_folds, tmp_path, capsys):
    database = tmp_path / DATABASE_FILE
    write_database(flat_oulu, database)
    out, dump = tmp_path / "cr_oulu.json", tmp_path / "predictions.csv"
    rc = main(["evaluate", "--dataset", "oulucasia", "--data-dir", str(flat_oulu.parent), "--checkpoint",
               str(released_folds), "--order", str(database), "--resolutions", "native,8", "--image-size", "32",
               "--device", "cpu", "--workers", "0", "--model", "CR", "--out", str(out), "--dump-predictions", str(dump)])
    printed = capsys.readouterr().out
    assert rc == 0 and "10 fold checkpoints (authors folds" in printed
    result = json.loads(out.read_text())
    assert result["folds_tested"] == list(range(1, 11)) and result["protocol"] == "authors"
    with open(dump, newline="") as f:
        rows = list(csv.DictReader(f))
    for k, one in zip(range(1, 11), result["per_fold"]):
        assert one["fold"] == k and one["checkpoint"].endswith(f"best_model_ckp_fold_{k}.pt")
        tested = {row["item"] for row in rows if row["fold"] == str(k) and row["resolution"] == "native"}
        train = get_dataset("oulucasia", flat_oulu.parent, "train", fold=k, protocol="authors", order=database)
        val = get_dataset("oulucasia", flat_oulu.parent, "val", fold=k, protocol="authors", order=database)
        assert tested and not tested & (set(train.samples) | set(val.samples))  # no leakage
        assert len(tested) == one["resolutions"]["native"]["n"]
    everything = set(get_dataset("oulucasia", flat_oulu.parent, "all").samples)
    assert {row["item"] for row in rows} == everything and len(rows) == 2 * len(everything)
    for r in ("native", "8"):
        per_fold = [one["resolutions"][r] for one in result["per_fold"]]
        entry = result["resolutions"][r]
        assert entry["accuracy"] == pytest.approx(np.mean([m["accuracy"] for m in per_fold]))
        assert entry["accuracy_std"] == pytest.approx(np.std([m["accuracy"] for m in per_fold], ddof=1))
        np.testing.assert_allclose(entry["confusion_matrix_fold_average"],
                                   fold_average([m["confusion_matrix"] for m in per_fold]))
        assert entry["n"] == len(everything) and entry["folds"] == 10


def test_released_fold_checkpoints_on_other_folds_are_refused(flat_oulu, released_folds):
    # the silent fault: the authors' fold-k network on our stratified fold k sees its training images
    with pytest.raises(MaferError, match="best_model_ckp_fold_3.pt: trained on Oulu-CASIA protocol authors "
                                         r"\(asked: image\)"):
        evaluate_checkpoint("oulucasia", flat_oulu.parent, released_folds / "best_model_ckp_fold_3.pt", fold=3,
                            protocol="image", resolutions=["native"], image_size=32, device="cpu", workers=0)
    with pytest.raises(MaferError, match=r"fold 3 \(asked: 4\)"):
        evaluate_checkpoint("oulucasia", flat_oulu.parent, released_folds / "best_model_ckp_fold_3.pt", fold=4,
                            resolutions=["native"], image_size=32, device="cpu", workers=0)
    with pytest.raises(MaferError, match="protocol authors"):
        evaluate_folds(flat_oulu.parent, released_folds, protocol="subject", resolutions=["native"], image_size=32,
                       device="cpu", workers=0)


def test_fold_checkpoint_folders_of_this_project(tmp_path, tiny_checkpoint):
    for k in (1, 2):  # mafer step2 --fold k --out DIR/fold<k>, or the pipeline's fold<k>/seed<a>-<b>/best.pt
        tiny_checkpoint(tmp_path / "runs" / f"fold{k}" / ("best.pt" if k == 1 else "seed17-17/best.pt"), "oulucasia")
    assert fold_checkpoints(tmp_path / "runs") == {1: tmp_path / "runs/fold1/best.pt",
                                                   2: tmp_path / "runs/fold2/seed17-17/best.pt"}
    tiny_checkpoint(tmp_path / "runs" / "fold2" / "seed17-18" / "best.pt", "oulucasia")
    with pytest.raises(MaferError, match="2 checkpoints for fold 2"):
        fold_checkpoints(tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaferError, match="empty: no fold checkpoints; expected the authors' best_model_ckp_fold_<k>"):
        fold_checkpoints(tmp_path / "empty")


def test_a_folder_of_our_fold_checkpoints_is_tested_with_the_folds_they_were_trained_on(flat_oulu, tmp_path,
                                                                                        tiny_checkpoint, capsys):
    for k in (1, 2):  # as `mafer step2 --fold k --folds 3` records it
        path = tiny_checkpoint(tmp_path / "runs" / f"fold{k}" / "best.pt", "oulucasia", image_size=32)
        raw = torch.load(path, weights_only=True)
        raw["config"].update(fold=k, folds=3, protocol="image")
        torch.save(raw, path)
    result = evaluate_folds(flat_oulu.parent, tmp_path / "runs", resolutions=["native"], device="cpu", workers=0)
    assert result["folds"] == 3 and result["folds_tested"] == [1, 2] and result["protocol"] == "image"
    assert [r["folds"] for r in result["per_fold"]] == [3, 3]
    rc = main(["evaluate", "--dataset", "oulucasia", "--data-dir", str(flat_oulu.parent), "--checkpoint",
               str(tmp_path / "runs"), "--resolutions", "native", "--device", "cpu", "--workers", "0",
               "--out", str(tmp_path / "m.json")])
    assert rc == 0 and "note: no checkpoint for fold(s) 3 of 3; the means below are over the 2 folds tested" \
        in capsys.readouterr().out
    with pytest.raises(MaferError, match=r"folds 3 \(asked: 10\)"):
        evaluate_folds(flat_oulu.parent, tmp_path / "runs", folds=10, resolutions=["native"], device="cpu", workers=0)
