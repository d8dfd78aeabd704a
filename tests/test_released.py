"""The paper's tables from the authors' released checkpoints: `mafer reproduce --profile released`."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mafer.models import create_model
from mafer.paper_models import LABELS
from mafer.pipeline.graph import oulu_order
from mafer.released import released_checkpoints

ROOT = Path(__file__).resolve().parent.parent
# the release's models under the spellings a user may give their folders
MODEL_FOLDERS = {"base": "base", "CR": "cr", "CR-Simplified": "CR-Simplified", "CR+AffWild2": "cr_affwild2"}


def write_release(folder: Path, models=MODEL_FOLDERS.values()) -> Path:
    """The release layout with random SE-ResNet-50 weights in the authors' format (model_state_dict,
    epoch, best_acc), every file a hard link to one of two (7 and 6 classes), to spare the disk."""
    torch.manual_seed(0)
    sources = {}
    for classes in (7, 6):
        sources[classes] = folder / f"random-{classes}.pt"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"model_state_dict": create_model("senet50", classes).state_dict(), "epoch": 4,
                    "best_acc": 0.5}, sources[classes])
    for model in models:
        (folder / model / "oulucasia").mkdir(parents=True)
        for dataset in ("fer2013", "rafdb"):
            os.link(sources[7], folder / model / f"{dataset}.pt")
        for k in range(1, 11):
            os.link(sources[6], folder / model / "oulucasia" / f"best_model_ckp_fold_{k}.pt")
    return folder


def reproduce(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mafer", "reproduce", "--profile", "released", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=1800)


def test_the_release_layout_is_found_under_any_spelling_and_gaps_are_named(tmp_path):
    release = write_release(tmp_path / "release")
    (release / "cr" / "rafdb.pt").unlink()
    for k in (3, 4):
        (release / "base" / "oulucasia" / f"best_model_ckp_fold_{k}.pt").unlink()
    found, notes = released_checkpoints(release, ["fer2013", "rafdb", "oulucasia"], list(range(1, 11)))
    assert set(found["fer2013"]) == {"base", "cr", "cr_simplified", "cr_affwild2"}
    assert set(found["rafdb"]) == {"base", "cr_simplified", "cr_affwild2"}
    assert sorted(found["oulucasia"]["base"]) == [1, 2, 5, 6, 7, 8, 9, 10]
    assert found["oulucasia"]["cr_affwild2"][10] == str(release / "cr_affwild2/oulucasia/best_model_ckp_fold_10.pt")
    assert notes == [f"released checkpoints: CR ({release / 'cr'}): no rafdb.pt; left out",
                     f"released checkpoints: base ({release / 'base'}): no checkpoint for fold(s) 3, 4 in oulucasia/; "
                     "left out"]


def test_a_misspelt_model_folder_is_named_and_never_taken_for_another_model(tmp_path):
    release = write_release(tmp_path / "release", models=["base", "CR-Simplfied", "CR+AffWild2"])
    found, notes = released_checkpoints(release, ["rafdb"], [])
    assert set(found["rafdb"]) == {"base", "cr_affwild2"}  # not "cr": that folder is CR-Simplified, misspelt
    assert notes[0].startswith("released checkpoints: CR-Simplfied/ in ") and notes[0].endswith("names no model "
        "(expected one of base, cr, cr_simplified, cr_affwild2 or base, CR, CR-Simplified, CR+AffWild2); ignored")
    assert "no folder for model CR in" in notes[1] and "no folder for model CR-Simplified in" in notes[2]


def test_the_oulucasia_order_file_goes_to_oulucasia_nodes_only():
    config = {"oulucasia_order": "/data/oulucasia_database.csv"}
    assert oulu_order(config, "oulucasia") == {"order": "/data/oulucasia_database.csv"}
    assert oulu_order(config, "rafdb") == oulu_order(config, "fer2013") == oulu_order({}, "oulucasia") == {}


def test_a_missing_model_is_left_out_with_one_line_and_nothing_is_trained(tmp_path, smoke_data):
    release = write_release(tmp_path / "release", models=["base", "cr"])
    (release / "cr" / "oulucasia" / "best_model_ckp_fold_2.pt").unlink()
    result = reproduce("--data-dir", str(smoke_data), "--config", f"checkpoints={release}", "--dry-run",
                       "--results", str(tmp_path / "results"), "--book-dir", str(tmp_path / "book"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mafer reproduce: released checkpoints: no folder for model CR-Simplified" in result.stderr
    # a fold one model lacks is left out for all: the models are compared on the same test images
    assert "oulucasia fold(s) 2 left out for every model" in result.stderr
    assert "fold2" not in result.stdout + result.stderr and "best_model_ckp_fold_3.pt" in result.stdout
    assert "rule step1" not in result.stdout + result.stderr and "rule step2" not in result.stdout + result.stderr
    assert "rule released_checkpoints" in result.stdout + result.stderr
    without = reproduce("--data-dir", str(smoke_data), "--dry-run", "--results", str(tmp_path / "results"))
    assert without.returncode == 2 and "give --config checkpoints=DIR" in without.stderr
    assert "Traceback" not in without.stderr


@pytest.mark.slow
def test_released_profile_end_to_end_fills_every_cell_trains_nothing_and_builds_its_book(tmp_path, smoke_data):
    release = write_release(tmp_path / "release")
    results, book = tmp_path / "results", tmp_path / "bookroot"
    result = reproduce("--cap", "smoke", "--data-dir", str(smoke_data), "--config", f"checkpoints={release}",
                       "image_size=64", "--results", str(results), "--book-dir", str(book / "book" / "generated"),
                       "--jobs", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    run = results / "released-cap-smoke"
    summary = json.loads((run / "summary.json").read_text())
    resolutions = yaml.safe_load((run / "config.yaml").read_text())["resolutions"]
    assert list(summary) == list(LABELS)
    for model in LABELS:
        assert set(summary[model]) == {"fer2013", "rafdb", "oulucasia"}
        for dataset in summary[model].values():
            assert list(dataset) == [str(r) for r in resolutions]
    assert not (run / "runs").exists()  # no training node ran
    nodes = json.loads((run / "nodes.json").read_text())  # node name -> its times
    assert "checkpoints" in nodes and not any(name.startswith(("step1", "step2")) for name in nodes)
    oulu = json.loads((run / "eval/oulucasia/CR/fold2.json").read_text())
    assert oulu["protocol"] == "authors" and oulu["fold"] == 2 and oulu["checkpoint"].endswith("fold_2.pt")
    # the book of a released run: its table of contents has the checkpoint inventory for the training pages
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "book", book / "book", dirs_exist_ok=True, ignore=shutil.ignore_patterns("generated"))
    built = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--path-output", ".",
                            "--toc", "book/toc-released.yml"], cwd=book, capture_output=True, text=True, timeout=600)
    log = built.stdout + built.stderr
    assert built.returncode == 0 and "mystnb.glue" not in log and "WARNING" not in log, log[-3000:]
    page = (book / "_build/html/book/generated/checkpoints.html").read_text()
    assert "best_model_ckp_fold_2.pt" in page and "mafer-authors" in page
