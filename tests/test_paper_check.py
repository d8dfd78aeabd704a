"""The paper profile, executed with a cap (`mafer reproduce --profile paper --cap smoke`).

Unit tests: the cap changes only the amount of work (the resolved training configs of every
node, capped and uncapped, compared field by field). Slow: the capped paper graph run for real
on smoke-scale synthetic data from a VGGFace2-format pickle of random SE-ResNet-50 weights,
checking summary.json, the book's paper-layout table, and that every run record holds the
paper's settings (SE-ResNet-50, 224 px, the datasets' means, the seven test resolutions).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from mafer.datasets import dataset_info
from mafer.embed import extract_features
from mafer.errors import MaferError
from mafer.evaluate import class_interleaved, evaluate_checkpoint
from mafer.paper_models import KEYS, LABELS
from mafer.paper_models import MODELS as PAPER_MODELS
from mafer.pipeline import cap as cap_module
from mafer.pipeline import graph
from mafer.pipeline.cap import TRAIN_WORK_KEYS, apply_cap
from mafer.reproduce import add_arguments, load_profile, resolve_config
from mafer.train import TrainConfig
from test_weights import SENET50, mmdnn_state, vggface2_arrays, write_py2_pickle

ROOT = Path(__file__).resolve().parent.parent
MODELS = list(LABELS)
DATASETS = ["fer2013", "rafdb", "oulucasia"]
PAPER_RESOLUTIONS = ["native", "8", "16", "24", "32", "48", "64"]


def resolved(tmp_path: Path, *extra: str) -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "w.pkl").touch()
    args = parser.parse_args(["--profile", "paper", "--data-dir", str(tmp_path / "data"),
                              "--config", f"base_weights={tmp_path / 'w.pkl'}", *extra])
    return resolve_config(args)


def node_configs(config: dict) -> dict[str, TrainConfig]:
    """The resolved TrainConfig of every training node, built as notebooks/step1 and step2 build it."""
    nodes = {}
    for paper_model in PAPER_MODELS:
        model = paper_model.key
        init = graph.step1_init(config, model)
        if model == "base" and config.get("base_weights"):
            continue  # the VGGFace2 weights are the base network: no step-1 node
        nodes[f"step1/{model}"] = TrainConfig.preset(
            config["preset"], stage="step1", mode=paper_model.step1_mode, dataset=paper_model.step1_dataset,
            data_dir=config["data_dir"], out=f"runs/step1/{model}", init=init[0] if init else None,
            **graph.train_options(config, "step1", model)).resolve()
    for model in KEYS:
        for dataset in config["datasets"]:
            for part in graph.step2_parts(config, dataset):
                nodes[f"step2/{model}/{dataset}-{part}"] = TrainConfig.preset(
                    config["preset"], stage="step2", dataset=dataset, data_dir=config["data_dir"],
                    out=f"runs/step2/{model}/{dataset}/{part}", init=graph.step2_init(config, model),
                    fold=graph.parse_part(part), folds=config["folds"],
                    protocol=config["protocol"], **graph.train_options(config, "step2", dataset)).resolve()
    return nodes


def test_the_cap_changes_only_the_amount_of_work(tmp_path, capsys):
    paper = resolved(tmp_path)
    capped = resolved(tmp_path, "--cap", "smoke")
    printed = capsys.readouterr().err
    # the profile: only amounts of work (and the run's name and cap label) differ
    differing = {k for k in paper.keys() | capped.keys() if paper.get(k) != capped.get(k)} - {"step1", "step2"}
    assert differing <= {"name", "cap", "run_folds", "max_test_images", "bn_recalibrated", "threads", "workers"}
    assert capped["name"] == "paper-cap-smoke" and capped["cap"] == "smoke"
    assert capped["run_folds"] == paper["run_folds"][:2] and capped["folds"] == paper["folds"] == 10
    for key in ("image_size", "resolutions", "preset", "base_weights", "datasets", "embeddings", "protocol"):
        assert capped[key] == paper[key], key
    # every training node of the capped graph: field by field against the same node uncapped
    paper_nodes, capped_nodes = node_configs(paper), node_configs(capped)
    assert len(paper_nodes) == 3 + 4 * (1 + 1 + 10) and len(capped_nodes) == 3 + 4 * (1 + 1 + 2)
    assert set(capped_nodes) <= set(paper_nodes)
    for node, cfg in capped_nodes.items():
        ours, theirs = dataclasses.asdict(cfg), dataclasses.asdict(paper_nodes[node])
        changed = {k for k in ours if ours[k] != theirs[k]}
        assert changed <= TRAIN_WORK_KEYS, (node, changed)
        assert (cfg.arch, cfg.image_size, cfg.augment) == ("senet50", 224, True), node
        assert (cfg.max_steps, cfg.batch_size, cfg.accum_steps) == (1, 2, 1), node
    # what the cap changed is printed, one line per entry, from the profile's value to the cap's
    assert "cap smoke: only the amount of work differs" in printed
    assert "run_folds: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] -> [1, 2]" in printed
    assert "step2.common.max_steps: None -> 1" in printed and "max_test_images: None -> 7" in printed
    assert "bn_recalibrated: None -> False" in printed  # the diagnostic, not the paper's protocol


def test_a_cap_reaches_per_model_sections_and_command_line_overrides_win(tmp_path):
    demo = load_profile("demo")  # step1.base sets its own epochs and learning rates
    capped, changes = apply_cap(demo, "smoke")
    assert capped["step1"]["base"]["max_steps"] == 1 and capped["step1"]["cr_affwild2"]["batch_size"] == 2
    assert capped["step1"]["base"]["epochs"] == demo["step1"]["base"]["epochs"]
    assert ("step1.base.max_steps", None, 1) in changes
    assert demo["step1"]["base"].get("max_steps") is None  # the profile itself is left alone
    config = resolved(tmp_path, "--cap", "smoke", "--config", "max_test_images=3")
    assert config["max_test_images"] == 3


def test_a_cap_that_changes_the_method_is_refused(monkeypatch):
    monkeypatch.setitem(cap_module.CAPS, "bad", {"image_size": 32, "train": {"arch": "senet_tiny"}})
    with pytest.raises(MaferError, match="image_size, train.arch: not an amount of work"):
        apply_cap(load_profile("paper"), "bad")
    with pytest.raises(MaferError, match="unknown cap 'nope'"):
        apply_cap(load_profile("paper"), "nope")


def test_class_interleaved_takes_every_class_in_turn():
    targets = [2, 2, 2, 0, 0, 1, 2, 1]
    assert class_interleaved(targets, 3) == [0, 3, 5]  # the first of each class, in dataset order
    assert class_interleaved(targets, 5) == [0, 3, 4, 5, 7]  # then the second of classes 0 and 1
    assert class_interleaved(targets, None) is None and class_interleaved(targets, 8) is None
    with pytest.raises(MaferError, match="max_images must be at least 1"):
        class_interleaved(targets, 0)


def test_a_capped_evaluation_tests_one_image_per_class_and_says_so(smoke_data, tmp_path, tiny_checkpoint):
    checkpoint = tiny_checkpoint(tmp_path / "rafdb.pt", "rafdb", image_size=32)
    result = evaluate_checkpoint("rafdb", smoke_data, checkpoint, resolutions=["native", 8], device="cpu",
                                 workers=0, max_images=7)
    assert result["max_images"] == 7
    for entry in result["resolutions"].values():
        assert entry["n"] == 7 and [sum(row) for row in entry["confusion_matrix"]] == [1] * 7
    features, labels = extract_features("rafdb", smoke_data, checkpoint, device="cpu", workers=0, max_images=5)
    assert features.shape[0] == 5 and sorted(labels.tolist()) == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ the capped paper graph (slow)

def write_vggface2_pickle(path: Path) -> Path:
    """Random SE-ResNet-50 weights as ``senet50_ft_weight.pkl`` stores them: 8631 identities, the
    VGGFace2 key names (conv1, layer1.0.conv1, ..., fc), numpy arrays, a latin1 protocol-2 pickle."""
    write_py2_pickle(vggface2_arrays(mmdnn_state(*SENET50, num_classes=8631)), path)
    return path


@pytest.fixture(scope="module")
def paper_check(smoke_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("paper_check")
    weights = write_vggface2_pickle(root / "senet50_ft_weight.pkl")
    # two nodes at a time, one core each: no GPU here, so the nodes' GPU request (the profile's
    # gpus_per_job: 1, which serialises them on a one-GPU machine) is dropped
    result = subprocess.run(
        [sys.executable, "-m", "mafer", "reproduce", "--profile", "paper", "--cap", "smoke",
         "--data-dir", str(smoke_data), "--config", f"base_weights={weights}", "gpus_per_job=0",
         "--results", str(root / "results"), "--book-dir", str(root / "book"), "--jobs", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    yield root, result.stderr
    shutil.rmtree(root / "results" / "paper-cap-smoke" / "runs", ignore_errors=True)  # 400 MB per node


@pytest.mark.slow
def test_capped_paper_graph_fills_every_cell_with_the_papers_settings(paper_check):
    root, log = paper_check
    work = root / "results" / "paper-cap-smoke"
    assert "cap smoke: only the amount of work differs" in log
    summary = json.loads((work / "summary.json").read_text())
    assert list(summary) == MODELS
    for model in MODELS:
        assert sorted(summary[model]) == sorted(DATASETS)
        for dataset in DATASETS:
            assert list(summary[model][dataset]) == PAPER_RESOLUTIONS
            assert all(0.0 <= a <= 1.0 for a in summary[model][dataset].values())
    # the book's table in the paper's layout: one row per model, a number in every cell
    results_nb = nbformat.read(root / "book" / "results.ipynb", 4)
    outputs = [o for c in results_nb.cells for o in c.get("outputs", [])]
    texts = [o.get("data", {}).get("text/markdown", "") for o in outputs]
    assert any("A capped run: these numbers mean nothing" in t for t in texts)
    table = next(t for t in texts if t.startswith("| model |") and "(paper)" in t).splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[1:] == ["FER2013 acc", "RAF-DB overall acc", "RAF-DB average acc", "Oulu-CASIA 2-fold acc",
                          "Oulu-CASIA 10-fold acc"]  # ours over 2 folds, the paper's over 10: not one column
    for model in MODELS:
        row = next(line for line in table if line.startswith(f"| {model} |"))
        cells = dict(zip(header, (c.strip() for c in row.strip("|").split("|"))))
        for column in header[1:5]:
            assert cells[column].replace(" ± ", "").replace(".", "").isdigit(), (row, column)
        assert "±" in cells["Oulu-CASIA 2-fold acc"], row  # the mean ± std over the folds
    # the run records hold the paper's settings, not the demo's
    for config_file in sorted((work / "runs").rglob("config.yaml")):
        cfg = yaml.safe_load(config_file.read_text())
        assert (cfg["arch"], cfg["image_size"], cfg["max_steps"]) == ("senet50", 224, 1), config_file
        dataset = cfg["dataset"]
        assert cfg["source_size"] in (256, {"fer2013": 48, "rafdb": 100, "affwild2": 112}.get(dataset)), config_file
    step1 = sorted(p.parent.parent.name for p in (work / "runs" / "step1").glob("*/seed17/config.yaml"))
    assert step1 == ["cr", "cr_affwild2", "cr_simplified"]  # base: the VGGFace2 pickle itself
    cr = yaml.safe_load((work / "runs/step1/cr/seed17/config.yaml").read_text())
    assert cr["init"].endswith("senet50_ft_weight.pkl") and cr["mode"] == "cr"
    evals = sorted((work / "eval").glob("*/*/*.json"))
    assert len(evals) == 4 * (1 + 1 + 2)
    for path in evals:
        record = json.loads(path.read_text())
        assert record["image_size"] == 224 and list(record["resolutions"]) == PAPER_RESOLUTIONS, path
        assert record["max_images"] == 7 and record["resolutions"]["native"]["n"] <= 7
        assert "bn_recalibrated" not in record["resolutions"]["8"]  # the cap leaves the diagnostic out
        info = dataset_info(record["dataset"])
        assert record["classes"] == list(info.classes)
    from mafer.models import load_checkpoint
    for run, dataset in (("step1/cr/seed17", "vggface2"), ("step2/cr/rafdb/standard/seed17-17", "rafdb")):
        meta = load_checkpoint(work / "runs" / run / "best.pt")
        assert meta["arch"] == "senet50", run
        assert meta["mean_bgr"] == pytest.approx(list(dataset_info(dataset).mean_bgr)), run
    # time and peak memory of every node
    nodes = json.loads((work / "nodes.json").read_text())
    assert len([n for n in nodes if n.startswith(("step1/", "step2/"))]) == 3 + 16
    assert {"evaluation/oulucasia", "embeddings/rafdb", "results", "publish_book"} <= set(nodes)
    assert all(v["seconds"] > 0 and v["max_rss_mb"] > 0 for v in nodes.values())
