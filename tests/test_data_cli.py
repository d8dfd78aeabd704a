"""`mafer data summary` and `mafer data mean`: JSON schema, tables, bad input without tracebacks."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mafer.cli import main
from mafer.datasets import DATASETS, get_dataset

SPLITS = {"fer2013": ["train", "val", "test"], "rafdb": ["train", "val", "test"], "oulucasia": ["all"],
          "affwild2": ["train", "val"], "vggface2": ["train", "val"]}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["data", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", sorted(SPLITS))
def test_summary_json_schema(smoke_data, capsys, name):
    rc, out, _ = run_cli(capsys, "summary", "--dataset", name, "--data-dir", str(smoke_data), "--json")
    assert rc == 0
    summary = json.loads(out)
    assert summary["dataset"] == name and list(summary["splits"]) == SPLITS[name]
    if name == "vggface2":
        assert summary["classes"] == sorted(p.name for p in (smoke_data / "vggface2" / "train").iterdir())
    else:
        assert summary["classes"] == list(DATASETS[name].classes)
    for split, counts in summary["splits"].items():
        assert list(counts) == summary["classes"] and all(isinstance(n, int) for n in counts.values())
        assert counts == get_dataset(name, smoke_data, split).class_counts()
    assert "bad_items" not in summary


def test_summary_table(smoke_data, capsys):
    rc, out, _ = run_cli(capsys, "summary", "--dataset", "rafdb", "--data-dir", str(smoke_data))
    assert rc == 0
    lines = out.splitlines()
    assert lines[0] == "rafdb: 7 classes (release (EmoLabel/list_patition_label.txt, Image/aligned))" and lines[1].split() == ["class", "train", "val", "test"]
    assert [line.split()[0] for line in lines[2:9]] == list(DATASETS["rafdb"].classes)
    totals = [len(get_dataset("rafdb", smoke_data, s)) for s in ("train", "val", "test")]
    assert lines[9].split() == ["total", *map(str, totals)]


def test_bad_csv_row_fails_cleanly_or_is_listed(smoke_data, tmp_path, capsys):
    shutil.copytree(smoke_data / "fer2013", tmp_path / "fer2013")
    csv_path = tmp_path / "fer2013" / "fer2013.csv"
    n_lines = len(csv_path.read_text().splitlines())
    with open(csv_path, "a") as f:
        f.write("3," + " ".join(["1"] * 100) + ",Training\n")
    rc, out, err = run_cli(capsys, "summary", "--dataset", "fer2013", "--data-dir", str(tmp_path))
    assert rc == 2 and "Traceback" not in err
    assert f"{csv_path}:{n_lines + 1}" in err and "expected 2304" in err

    rc, out, err = run_cli(capsys, "summary", "--dataset", "fer2013", "--data-dir", str(tmp_path), "--json",
                           "--skip-bad")
    summary = json.loads(out)
    assert rc == 0 and len(summary["bad_items"]) == 1 and f"{csv_path}:{n_lines + 1}" in summary["bad_items"][0]
    assert summary["splits"]["train"] == get_dataset("fer2013", smoke_data).class_counts()


def test_truncated_image_fails_cleanly_or_is_listed(smoke_data, tmp_path, capsys):
    shutil.copytree(smoke_data / "vggface2", tmp_path / "vggface2")
    victim = sorted((tmp_path / "vggface2" / "train").glob("*/*.jpg"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    args = ["summary", "--dataset", "vggface2", "--data-dir", str(tmp_path), "--json"]
    rc, _, err = run_cli(capsys, *args)
    assert rc == 2 and str(victim) in err and "Traceback" not in err
    rc, out, _ = run_cli(capsys, *args, "--skip-bad")
    summary = json.loads(out)
    assert rc == 0 and len(summary["bad_items"]) == 1 and str(victim) in summary["bad_items"][0]
    total = sum(sum(counts.values()) for counts in summary["splits"].values())
    assert total == len(list((tmp_path / "vggface2" / "train").glob("*/*.jpg"))) - 1
    rc, out, _ = run_cli(capsys, *args, "--no-verify")  # counting only: the image is not decoded
    assert rc == 0 and "bad_items" not in json.loads(out)


def test_unknown_layout_fails_cleanly(tmp_path, capsys):
    (tmp_path / "oulucasia" / "P001" / "happy_faces").mkdir(parents=True)
    rc, _, err = run_cli(capsys, "summary", "--dataset", "oulucasia", "--data-dir", str(tmp_path))
    assert rc == 2 and "no known Oulu-CASIA layout" in err and str(tmp_path / "oulucasia") in err


def test_mean_is_bgr_of_the_training_split(smoke_data, tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "mean", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--json")
    result = json.loads(out)
    images, _ = get_dataset("rafdb", smoke_data, "train").load_uint8()
    rgb = images.to(torch.float64).mean(dim=(0, 2, 3))
    assert rc == 0 and result["split"] == "train" and result["images"] == len(images)
    assert np.allclose(result["mean_bgr"], rgb.flip(0).numpy(), atol=1e-6)

    folder = tmp_path / "fer2013"
    folder.mkdir()
    rows = [f"{i},{' '.join(['100'] * 2304)},Training" for i in range(7)]
    rows += [f"0,{' '.join(['0'] * 2304)},PublicTest"]  # not training: must not count
    (folder / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    rc, out, _ = run_cli(capsys, "mean", "--dataset", "fer2013", "--data-dir", str(tmp_path))
    assert rc == 0 and out.strip().endswith("mean BGR: 100.00000 100.00000 100.00000")


# -- mafer data check -----------------------------------------------------------------------------
def test_check_all_on_the_complete_synthetic_set(smoke_data, capsys):
    rc, out, _ = run_cli(capsys, "check", "--all", "--data-dir", str(smoke_data), "--json")
    reports = {r["dataset"]: r for r in json.loads(out)}
    assert rc == 0 and sorted(reports) == sorted(SPLITS)
    for name, r in reports.items():
        assert r["splits"] == {s: get_dataset(name, smoke_data, s).class_counts() for s in SPLITS[name]}
        assert r["bad_items"] == [] and r["duplicates"] == [] and r["reference"]["source"]
        # synthetic data is far smaller than the release: usable, never "matches"
        assert r["verdict_kind"] == "usable" and r["verdict"].startswith("usable, but numbers are not comparable")
        assert all(not row["matches"] for row in r["comparisons"])
    assert reports["rafdb"]["comparisons"][0]["expected"]["Happiness"] == 4772
    rc, out, _ = run_cli(capsys, "check", "--dataset", "rafdb", "--data-dir", str(smoke_data))
    assert rc == 0 and "variant: release (EmoLabel/list_patition_label.txt" in out and "train+val: 70 found, 12271 in the release" in out
    assert out.strip().splitlines()[-1].startswith("  verdict: usable, but numbers are not comparable")


def test_check_reports_the_release_counts_as_a_match(monkeypatch, smoke_data, capsys):
    from mafer.datasets import check

    counts = {s: get_dataset("fer2013", smoke_data, s).class_counts() for s in SPLITS["fer2013"]}
    monkeypatch.setitem(check.REFERENCES, "fer2013", check.Reference("test", "test", counts))
    report = check.check_dataset("fer2013", smoke_data)
    assert report["verdict"] == check.MATCHES
    n_test = sum(counts["test"].values())
    assert f"    test: {n_test} found, {n_test} in the release: as in the release" in check.format_report(report)


def test_check_on_a_damaged_set(smoke_data, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(smoke_data / "rafdb", data / "rafdb")
    shutil.copytree(smoke_data / "oulucasia", data / "oulucasia")
    test = get_dataset("rafdb", data, "test").samples
    truncated, missing = test[0], test[1]
    with open(truncated, "r+b") as f:
        f.truncate(300)
    (data / "rafdb" / "Image" / "aligned" / missing.rsplit("/", 1)[-1]).unlink()
    shutil.copy(test[2], test[3])  # a duplicated face
    for frame in (data / "oulucasia").glob("*/Fear/*"):  # a class without readable images
        frame.write_bytes(b"not a jpeg")
    rc, out, _ = run_cli(capsys, "check", "--all", "--data-dir", str(data), "--json")
    reports = {r["dataset"]: r for r in json.loads(out)}
    assert rc == 1 and sorted(reports) == ["oulucasia", "rafdb"]
    raf = reports["rafdb"]
    assert len(raf["bad_items"]) == 2 and sum(raf["splits"]["test"].values()) == len(test) - 2
    assert any(truncated in item for item in raf["bad_items"]) and any(missing in item for item in raf["bad_items"])
    assert raf["duplicates"] == [[test[2], test[3]]]
    assert "2 item(s) are missing, unreadable" in raf["verdict"] and "--skip-bad" in raf["verdict"]
    assert reports["oulucasia"]["verdict"] == ("unusable because class(es) Fear have no readable images "
                                               "in split 'all'")
    shutil.rmtree(data / "rafdb" / "EmoLabel")
    rc, out, _ = run_cli(capsys, "check", "--dataset", "rafdb", "--data-dir", str(data))
    assert rc == 1 and "verdict: unusable because" in out and "RAF-DB not found" in out


def test_closed_pipe_ends_quietly(smoke_data):
    """`mafer ... --json | head`: the reader goes away; no traceback, no 'Exception ignored' line."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "mafer", "data", "summary", "--dataset", "vggface2",
                             "--data-dir", str(smoke_data), "--json", "--no-verify"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_the_reproduce_page_tells_to_run_the_check_and_shows_its_executed_output():
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parents[1]
    page = (root / "book" / "reproduce.md").read_text()
    assert "mafer data check --all --data-dir" in page and "before you spend GPU hours" in page
    assert "```{glue} data_check\n:doc: generated/data.ipynb\n```" in page  # output of an executed cell
    nb = nbformat.read(root / "notebooks" / "data.ipynb", 4)
    assert any('glue("data_check"' in c.source and "check_dataset" in c.source for c in nb.cells)


def test_summary_says_when_a_variant_is_not_comparable(smoke_data, tmp_path, capsys):
    from PIL import Image

    for folder, split in (("train", "train"), ("test", "test")):
        ds = get_dataset("fer2013", smoke_data, split)
        for k, (image, label) in enumerate(ds):
            path = tmp_path / "fer2013" / folder / ds.classes[label].lower() / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0].numpy()).save(path)
    rc, out, _ = run_cli(capsys, "summary", "--dataset", "fer2013", "--data-dir", str(tmp_path))
    assert rc == 0 and "image folders" in out and "PublicTest and PrivateTest together" in out
    rc, out, _ = run_cli(capsys, "check", "--dataset", "fer2013", "--data-dir", str(tmp_path), "--json")
    assert "PublicTest and PrivateTest together" in json.loads(out)["verdict"]
