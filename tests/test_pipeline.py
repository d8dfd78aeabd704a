"""The companion pipeline: profiles, `mafer reproduce`, the notebook runner, and (slow) the
smoke profile end to end: every notebook, summary.json, reruns, failures and the book."""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import yaml

from mafer.aggregate import accuracy_summary
from mafer.errors import MaferError
from mafer.models import create_model, load_checkpoint, save_checkpoint
from mafer.paper_models import LABELS
from mafer.pipeline import graph, views
from mafer.pipeline.run_notebook import execute, node_signature, prepare_run_dir
from mafer.reproduce import add_arguments, apply_overrides, load_profile, resolve_config, snakemake_command

ROOT = Path(__file__).resolve().parent.parent
MODELS = list(LABELS)
DATASETS = ["fer2013", "rafdb", "oulucasia"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def reproduce(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mafer", "reproduce", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=3600)


def job_counts(log: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (job name -> count) from a dry run's output."""
    table = log.split("Job stats:", 1)[1].split("total", 1)[0] if "Job stats:" in log else ""
    rows = (line.split() for line in table.splitlines())
    return {row[0]: int(row[1]) for row in rows if len(row) == 2 and row[1].isdigit()}


# ------------------------------------------------------------------ profiles and config

@pytest.mark.parametrize("name", ["smoke", "demo", "paper"])
def test_profiles_name_every_model_dataset_and_fold(name):
    profile = load_profile(name)
    assert profile["name"] == name
    assert set(profile["datasets"]) == set(DATASETS)
    assert all(1 <= k <= profile["folds"] for k in profile["run_folds"])
    assert "native" in profile["resolutions"] and 8 in profile["resolutions"]


def test_paper_profile_is_the_papers_setting():
    paper = load_profile("paper")
    assert (paper["preset"], paper["image_size"], paper["folds"]) == ("paper", 224, 10)
    assert paper["run_folds"] == list(range(1, 11)) and paper["gpus_per_job"] == 1
    # one set of test resolutions: what `mafer evaluate` tests by default is what the paper's graph tests
    from mafer.evaluate import DEFAULT_RESOLUTIONS

    assert paper["resolutions"] == load_profile("released")["resolutions"] == list(DEFAULT_RESOLUTIONS)
    assert set(load_profile("demo")["resolutions"]) <= set(DEFAULT_RESOLUTIONS)
    smoke = load_profile("smoke")
    assert len(smoke["run_folds"]) == 2 and len(smoke["resolutions"]) == 3


def test_overrides_reach_nested_entries_and_parse_yaml():
    config = apply_overrides(load_profile("smoke"), ["step2.common.epochs=5", "run_folds=[1,4]",
                                                     "protocol=subject", "embeddings.methods=[tsne]"])
    assert config["step2"]["common"]["epochs"] == 5
    assert config["run_folds"] == [1, 4] and config["protocol"] == "subject"
    assert config["embeddings"]["methods"] == ["tsne"]
    with pytest.raises(MaferError, match="KEY=VALUE"):
        apply_overrides(config, ["no-equals-sign"])
    with pytest.raises(MaferError, match="not a mapping"):
        apply_overrides(config, ["protocol.x=1"])


def test_bad_profiles_and_missing_inputs_are_named(tmp_path):
    with pytest.raises(MaferError, match="unknown profile 'nope'"):
        load_profile("nope")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\n")
    with pytest.raises(MaferError, match=f"{broken}: profile lacks datasets"):
        load_profile(str(broken))
    with pytest.raises(MaferError, match="give --data-dir"):
        resolve_config(parse("--profile", "paper"))
    with pytest.raises(MaferError, match="needs the VGGFace2 weights"):
        resolve_config(parse("--profile", "paper", "--data-dir", str(tmp_path)))
    with pytest.raises(MaferError, match="senet50_ft_weight.pkl: base weight file"):
        resolve_config(parse("--profile", "paper", "--data-dir", str(tmp_path),
                             "--config", f"base_weights={tmp_path / 'senet50_ft_weight.pkl'}"))
    # other profiles train a base network on the given data's VGGFace2 instead
    own = resolve_config(parse("--profile", "demo", "--data-dir", str(tmp_path)))
    assert own["data_dir"] == str(tmp_path.resolve()) and own["synthetic"] is None and own["base_weights"] is None
    with pytest.raises(MaferError, match="run_folds"):
        resolve_config(parse("--profile", "smoke", "--config", "run_folds=[11]"))


def test_threads_per_node_share_the_cores(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert resolve_config(parse("--profile", "smoke", "--jobs", "2"))["threads"] == 4
    assert resolve_config(parse("--profile", "smoke", "--jobs", "16"))["threads"] == 1
    assert resolve_config(parse("--profile", "smoke", "--threads", "3"))["threads"] == 3


def test_snakemake_gets_the_profile_cores_gpus_and_extra_options(tmp_path, monkeypatch):
    monkeypatch.setattr("mafer.reproduce._visible_gpus", lambda: 4)
    weights = tmp_path / "senet50_ft_weight.pkl"
    weights.write_bytes(b"")
    args = parse("--profile", "paper", "--data-dir", str(tmp_path), "--config", f"base_weights={weights}",
                 "--jobs", "4", "--", "--printshellcmds")
    cmd = snakemake_command(tmp_path / "config.yaml", tmp_path, args, resolve_config(args))
    assert cmd[cmd.index("--jobs") + 1] == "4" and cmd[cmd.index("--cores") + 1] == "32"  # 8 threads per node
    assert cmd[cmd.index("--resources") + 1] == "gpu=4"
    assert cmd[-1] == "--printshellcmds" and "--" not in cmd  # cluster runs: tests/test_slurm.py
    assert "--resources" not in snakemake_command(tmp_path / "c.yaml", tmp_path, parse("--profile", "smoke"),
                                                  resolve_config(parse("--profile", "smoke")))


# ------------------------------------------------------------------ the graph

def test_step1_and_step2_start_from_the_right_checkpoints(tmp_path):
    demo = load_profile("demo")
    assert graph.step1_init(demo, "base") == []
    assert graph.step1_init(demo, "cr") == ["runs/step1/base/seed17/best.pt"]
    assert graph.step1_init(demo, "cr_simplified") == ["runs/step1/base/seed17/best.pt"]
    assert graph.step1_init(demo, "cr_affwild2") == ["runs/step1/cr/seed17/best.pt"]
    assert graph.step2_init(demo, "base") == "runs/step1/base/seed17/best.pt"
    assert graph.step2_init(demo, "cr") == "runs/step1/cr/seed17/best.pt"
    # a step-1 seed's chain starts from the same seed's base
    assert graph.step1_init(demo, "cr", 3) == ["runs/step1/base/seed3/best.pt"]
    assert graph.step2_init(demo, "cr_affwild2", 3) == "runs/step1/cr_affwild2/seed3/best.pt"
    paper = dict(load_profile("paper"), base_weights="/w/senet50_ft_weight.pkl")
    assert graph.step1_init(paper, "cr") == ["/w/senet50_ft_weight.pkl"]
    assert graph.step2_init(paper, "base") == "/w/senet50_ft_weight.pkl"
    assert graph.step1_checkpoints(paper) == [f"runs/step1/{m}/seed17/best.pt" for m in ("cr", "cr_simplified",
                                                                                          "cr_affwild2")]
    assert graph.step2_parts(demo, "oulucasia") == [f"fold{k}" for k in demo["run_folds"]]
    assert graph.step2_parts(demo, "rafdb") == ["standard"]


@pytest.mark.parametrize("part,fold", [("standard", None), ("fold1", 1), ("fold3", 3), ("fold12", 12)])
def test_a_graph_part_is_a_fold_number_or_none(part, fold):
    assert graph.parse_part(part) == fold
    assert graph.part_name(fold) == part


@pytest.mark.parametrize("part", ["fold", "fold-1", "fold0", "fold03", "foldx", "Fold3", "fold3 ", "fold٣", "std", ""])
def test_a_bad_graph_part_is_named(part):
    with pytest.raises(MaferError, match=re.escape(f"graph part {part!r}: expected 'standard' or 'fold<k>'")):
        graph.parse_part(part)


@pytest.mark.parametrize("fold", [-1, 0, 1.0, "3", True])
def test_a_bad_fold_number_is_named(fold):
    with pytest.raises(MaferError, match=re.escape(f"fold {fold!r}: expected a fold number")):
        graph.part_name(fold)


def test_code_files_are_the_import_closure_of_what_a_node_runs():
    step2 = graph.code_files(str(ROOT / "notebooks" / "step2.ipynb"), skip=graph.PRESENTATION, relative_to=ROOT)
    # imported through mafer.train, not named anywhere by hand
    for module in ("mafer/train/engine.py", "mafer/device.py", "mafer/image.py", "mafer/models/senet.py",
                   "mafer/__init__.py"):
        assert module in step2
    assert "mafer/pipeline/views.py" not in step2 and "mafer/synth/__init__.py" not in step2
    embeddings = graph.code_files(str(ROOT / "notebooks" / "embeddings.ipynb"))
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in embeddings)
    names = {Path(f).relative_to(ROOT).as_posix() for f in embeddings}
    assert {"mafer/resolution.py", "mafer/metrics.py", "mafer/pipeline/views.py", "mafer/embed.py"} <= names
    assert "mafer/stats.py" in names  # imported inside a function of aggregate.py
    # the evaluation of a run list is the pipeline's (graph.evaluate_runs), not the drawing module's:
    # a node that only draws or embeds does not depend on it
    assert "mafer/pipeline/graph.py" not in names


def test_imports_are_resolved_relative_and_lazy_and_bad_sources_named(tmp_path, monkeypatch):
    package = tmp_path / "mafer"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import a\n")
    (package / "sub" / "a.py").write_text("def f():\n    from ..b import g\n")
    (package / "b.py").write_text("import numpy\nfrom mafer.c import *\n")
    (package / "c.py").write_text("")
    (package / "d.py").write_text("import (\n")
    monkeypatch.setattr(graph, "PROJECT_ROOT", tmp_path)
    names = [p.relative_to(tmp_path).as_posix() for p in graph.import_closure(["mafer.sub"])]
    assert names == ["mafer/__init__.py", "mafer/b.py", "mafer/c.py", "mafer/sub/__init__.py", "mafer/sub/a.py"]
    with pytest.raises(MaferError, match="d.py: cannot read its imports"):
        graph.import_closure(["mafer.d"])


def test_nodes_rerun_when_numeric_packages_change_version():
    versions = graph.package_versions()
    assert set(versions) == set(graph.NUMERIC_PACKAGES) >= {"torch", "torchvision", "numpy", "Pillow", "opencv-python-headless"}
    assert versions["numpy"] == np.__version__
    snakefile = (ROOT / "mafer" / "pipeline" / "Snakefile").read_text()
    assert snakefile.count("versions=VERSIONS") == 8  # every node that computes numbers


def test_book_pages_are_the_ones_toc_names():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    text = json.dumps(toc)
    for page in graph.book_sources(load_profile("demo")):
        assert f"book/generated/{Path(page).stem}" in text


# ------------------------------------------------------------------ the notebook runner

def _notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    params = nbformat.v4.new_code_cell("value = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_a_failing_notebook_leaves_its_partial_copy_and_a_record(tmp_path):
    notebook = _notebook(tmp_path / "boom.ipynb", "print('before'); raise ValueError(f'boom {value}')")
    output = tmp_path / "out" / "boom.ipynb"
    with pytest.raises(SystemExit):
        execute(notebook, output, {"value": 7}, threads=1, failed_dir=tmp_path / "failed")
    record = json.loads((tmp_path / "failed" / "boom.json").read_text())
    assert record["notebook"] == str(notebook)
    assert "ValueError: boom 7" in record["error"]
    partial = nbformat.read(record["partial"], 4)
    assert any(o.get("ename") == "ValueError" for o in partial.cells[-1].outputs)


def test_unknown_parameters_fail_before_the_kernel_starts(tmp_path):
    notebook = _notebook(tmp_path / "ok.ipynb", "print(value)")
    with pytest.raises(SystemExit):
        execute(notebook, tmp_path / "ok-out.ipynb", {"valeu": 2}, threads=1, failed_dir=tmp_path / "failed")
    record = json.loads((tmp_path / "failed" / "ok-out.json").read_text())
    assert "no parameter(s) valeu" in record["error"] and record["partial"] is None


# ------------------------------------------------------------------ what the notebooks show

def _group(model, dataset, accs, protocol="image"):
    return {"model": model, "dataset": dataset, "split": "test", "protocol": protocol,
            "resolutions": {r: {"accuracy": {"mean": a}} for r, a in accs.items()}}


def test_summary_is_model_dataset_resolution_accuracy():
    aggregated = {"groups": [_group("base", "rafdb", {"native": 0.5, "8": 0.25}),
                             _group("CR", "oulucasia", {"native": 0.9, "8": 0.7}),
                             _group("CR", "oulucasia", {"native": 0.1}, protocol="subject")]}
    summary = accuracy_summary(aggregated)
    assert summary == {"base": {"rafdb": {"native": 0.5, "8": 0.25}}, "CR": {"oulucasia": {"native": 0.9, "8": 0.7}}}
    assert views.lowest_resolution(["native", 16, "8", 32]) == "8" and views.lowest_resolution(["native"]) == "native"
    table = views.resolution_table({"base": {"rafdb": {"native": 0.5, "16": 0.4, "8": 0.25}}}, "rafdb")
    assert list(table.columns) == ["8", "16", "native"] and table.loc["base", "8"] == 25.0


def _entry(diff, lo, hi, p=0.01):
    return {"diff": diff, "ci95": [lo, hi], "p": p, "n_seeds": 3, "n_images": 600, "method": "m"}


def test_verdict_comes_from_the_comparisons_for_both_outcomes():
    comparisons = {"CR": {"rafdb": {"16": _entry(0.041, 0.012, 0.070, 0.003), "8": _entry(0.005, -0.021, 0.030, 0.7)}},
                   "CR-Simplified": {"rafdb": {"16": _entry(-0.05, -0.08, -0.02)}}}
    verdict = views.comparison_verdict(comparisons, "16", datasets=("rafdb",))
    assert verdict.startswith("CR is better than base at 16 px on RAF-DB: +4.1 points, 95 % interval [+1.2, +7.0] "
                              "(p = 0.003; 3 seeds x 600 images). CR-Simplified is worse than base at 16 px on RAF-DB")
    assert views.comparison_verdict(comparisons, "8", datasets=("rafdb",)) == (
        "No difference detectable between CR and base at 8 px on RAF-DB: +0.5 points, 95 % interval "
        "[-2.1, +3.0] (p = 0.7; 3 seeds x 600 images).")
    assert "no paired comparison" in views.comparison_verdict(comparisons, "32")
    found = views.detectable_summary(comparisons)
    assert "CR is better than base at 16 px on RAF-DB" in found and "at 8 px" not in found
    assert views.detectable_summary({"CR": {"rafdb": {"8": comparisons["CR"]["rafdb"]["8"]}}}).startswith(
        "No difference to base is detectable")


def test_seeds_are_a_dimension_of_the_graph(monkeypatch):
    demo = load_profile("demo")
    assert graph.seed_runs(demo, "rafdb") == [(17, 17), (17, 18), (17, 19)]
    assert graph.seed_runs(demo, "oulucasia") == [(17, 17)]
    assert graph.seed_runs(load_profile("paper"), "fer2013") == [(17, 17)]  # the paper's one run, seed 17
    assert graph.seed_runs({}, "rafdb") == [(17, 17)]
    assert graph.run_name("fold3", 17, 18) == "fold3-seed17-18"
    assert graph.split_run_name("fold3-seed17-18") == ("fold3", {"step1": 17, "step2": 18})
    assert graph.split_run_name("standard") == ("standard", None)
    # a plain list on the command line: the step-2 seeds of every dataset, step 1 as the profile says
    config = resolve_config(parse("--profile", "paper", "--data-dir", ".", "--config", "seeds=[0,1,2]",
                                  "base_weights=pyproject.toml"))
    assert config["seeds"] == {"step1": [17], "step2": [0, 1, 2]}
    assert graph.seed_runs(config, "oulucasia") == [(17, 0), (17, 1), (17, 2)]
    config = resolve_config(parse("--profile", "smoke", "--config", "seeds.step1=[1,2]", "seeds.step2.rafdb=[5]"))
    assert graph.seed_runs(config, "rafdb") == [(1, 5), (2, 5)]
    assert graph.step2_init(config, "cr", 2) == "runs/step1/cr/seed2/best.pt"
    for bad in ("seeds=[]", "seeds=[1,1]", "seeds=[a]", "seeds={step3: [1]}", "seeds.step1=7.5"):
        with pytest.raises(MaferError, match="seeds"):
            resolve_config(parse("--profile", "smoke", "--config", bad))


def test_metrics_log_lines_that_are_not_json_are_named(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 2.0}\n{"step": 2, oops\n')
    with pytest.raises(MaferError, match=r"metrics.jsonl:2: not a JSON line"):
        views.read_metrics_log(tmp_path)
    with pytest.raises(MaferError, match="metrics log not found"):
        views.read_metrics_log(tmp_path / "nowhere")


# ------------------------------------------------------------------ Snakemake

def test_dry_run_lists_the_jobs_and_runs_none(tmp_path):
    result = reproduce("--profile", "smoke", "--dry-run", "--results", str(tmp_path),
                       "--book-dir", str(tmp_path / "book"))
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    # base step 1 stands in for VGGFace2; 4 models x (FER2013 + 2 RAF-DB seeds + 2 Oulu folds) fine-tunings
    assert counts["step1"] == 4 and counts["step2"] == 20 and counts["evaluation"] == 3
    assert counts["synthetic_data"] == counts["results"] == counts["publish_book"] == 1
    assert not (tmp_path / "smoke").exists()  # a dry run makes no results folder
    # three step-2 seeds everywhere: 4 models x 3 seeds x (FER2013 + RAF-DB + 2 Oulu folds)
    result = reproduce("--profile", "smoke", "--dry-run", "--results", str(tmp_path),
                       "--book-dir", str(tmp_path / "book"), "--config", "seeds=[0,1,2]")
    assert result.returncode == 0, result.stderr
    counts = job_counts(result.stdout + result.stderr)
    assert counts["step1"] == 4 and counts["step2"] == 48 and counts["evaluation"] == 3
    assert "runs/step2/cr/oulucasia/fold1/seed17-2/best.pt" in result.stdout + result.stderr


def test_the_old_profile_seed_entry_is_read_as_data_seed_with_a_note(tmp_path):
    # `seed` (synthetic data, projections) sat beside `seeds` (training) until it was renamed
    old = tmp_path / "old.yaml"
    old.write_text((ROOT / "mafer/pipeline/profiles/smoke.yaml").read_text().replace("data_seed: 0", "seed: 3"))
    with pytest.warns(UserWarning, match="profile entry 'seed' is now called 'data_seed'"):
        config = load_profile(str(old))
    assert config["data_seed"] == 3 and "seed" not in config
    with pytest.warns(UserWarning, match="--config seed: profile entry 'seed' is now called 'data_seed'"):
        assert apply_overrides(load_profile("smoke"), ["seed=5"])["data_seed"] == 5
    result = reproduce("--profile", str(old), "--dry-run", "--results", str(tmp_path), "--config", "seed=4")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if "is now called" in line]
    assert notes == [f"mafer reproduce: note: {old}: profile entry 'seed' is now called 'data_seed'",
                     "mafer reproduce: note: --config seed: profile entry 'seed' is now called 'data_seed'"]


@pytest.mark.parametrize("override, message", [
    ("run_folds=1", "run_folds (from --config): expected a list, got 1"),
    ("datasets=rafdb", 'datasets (from --config): expected a list, got "rafdb"'),
    ("protocol=subjects", 'protocol (from --config): expected one of "image", "subject", "authors", got "subjects"'),
    ("embeddings.methods=[pca]", 'embeddings.methods.0 (from --config): expected one of "tsne", "umap", got "pca"'),
    ("resolutions=[native,8,big]", "resolutions.2 (from --config): got \"big\", expected 'native' or a positive"),
    ("image_size=large", 'image_size (from --config): expected an integer, got "large"'),
    ("embedings.methods=[tsne]", "no profile entry 'embedings'"),
    ("seeds=[1,x]", 'seeds.1 (from --config): expected an integer, got "x"'),
    ("seeds.step2={rafdb: 3}", "seeds.step2.rafdb (from --config): expected a list, got 3"),
    ("seeds=seventeen", 'seeds (from --config): got "seventeen", expected a list of step-2 seeds, or a mapping'),
    ("synthetic_variant=smiling", 'synthetic_variant: expected one of "demo", "resting-face", got "smiling"'),
    # the training sections, read by TrainConfig itself before any node runs
    ("step2.common.backbone_lrr=0.001",
     "step2.common (from --config): unknown training option 'backbone_lrr'; did you mean 'backbone_lr'?"),
    ("step1.cr={optimiser: sgd}", "step1.cr (from --config): unknown training option 'optimiser'; did you mean 'optimizer'?"),
    ("step2.rafdb={lr: fast}", "step2.rafdb (from --config): lr must be a number or null; got 'fast'"),
    ("step2.common.optimizer=adamw", "step2.common (from --config): optimizer must be one of sgd, adam; got 'adamw'"),
    ("step1.crr={epochs: 2}", 'step1 (from --config): got "crr", expected one of common, base, cr, cr_simplified, '
                              'cr_affwild2'),
    ("book.model=crs", 'book.model (from --config): expected one of "base", "cr", "cr_simplified", "cr_affwild2"'),
    ("2}", "--config '2}': expected KEY=VALUE; quote a value that holds spaces"),  # {fold: 2} split by the shell
    ("step2.oulucasia={fold: 3}", "step2.oulucasia (from --config): 'fold' is set by the pipeline for each node from run_folds"),
])
def test_config_overrides_are_checked_against_the_schema(override, message):
    with pytest.raises(MaferError) as err:
        resolve_config(parse("--profile", "smoke", "--config", override))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_options_before_double_dash_cannot_swallow_targets(tmp_path):
    config = resolve_config(parse("--profile", "smoke"))
    for argv in ((), ("--dry-run",), ("--force", "--keep-going")):
        cmd = snakemake_command(tmp_path / "c.yaml", tmp_path, parse("--profile", "smoke", *argv, "--", "summary.json"),
                                config)
        assert cmd[-1] == "summary.json" and cmd[-3] == "--jobs"  # the option before the targets takes one value


def test_a_stale_lock_is_explained_with_the_command_that_removes_it(tmp_path):
    from mafer.reproduce import lock_state

    args = parse("--profile", "smoke", "--results", str(tmp_path))
    work = tmp_path / "smoke"
    assert lock_state(work, args) is None
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.input.lock").write_text("")
    (work / ".snakemake" / "mafer-reproduce.json").write_text(json.dumps({"pid": 2 ** 22 + 7, "started": "x"}))
    stale = lock_state(work, args)
    assert "did not end cleanly" in stale and f"mafer reproduce --profile smoke --results {tmp_path} --unlock" in stale


def test_a_live_run_is_never_disturbed_by_a_second_run_or_an_unlock(tmp_path):
    """Two `mafer reproduce` on one results folder, or `--unlock` typed while one runs: the
    second is refused at once with the first's pid, and the first's files stay as they were."""
    from mafer.reproduce import run_lock

    work = tmp_path / "smoke"
    (work / ".snakemake" / "locks").mkdir(parents=True)
    (work / ".snakemake" / "locks" / "0.input.lock").write_text("")  # the live run's Snakemake lock
    owner = work / ".snakemake" / "mafer-reproduce.json"
    owner.write_text(json.dumps({"pid": os.getpid(), "started": "2026-12-03 10:00:00"}))
    with run_lock(work):  # the first run holds the folder
        before = snapshot(work)
        for extra in ((), ("--unlock",)):
            result = reproduce("--profile", "smoke", "--results", str(tmp_path), *extra)
            assert result.returncode == 2, result.stderr
            assert (f"in use by another `mafer reproduce` (pid {os.getpid()}, started 2026-12-03 10:00:00); "
                    f"wait for it, or stop it with: kill {os.getpid()}") in result.stderr
            assert "Traceback" not in result.stderr
            assert snapshot(work) == before  # its PID file and Snakemake's lock untouched
    # once the first is gone (its flock goes with its process), the leftover lock is explained
    result = reproduce("--profile", "smoke", "--results", str(tmp_path))
    assert result.returncode == 2 and "did not end cleanly" in result.stderr


def _imported_by(code: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has imported after running ``code``."""
    probe = f"import sys\n{code}\nprint(' '.join(m for m in {modules!r} if sys.modules.get(m) is not None))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


def test_every_node_pays_only_for_the_libraries_it_uses():
    """Start-up is most of a small node's time: the launcher, the wrapper and a training notebook's
    imports leave out what they do not use (each was seconds per node)."""
    heavy = ("torch", "torchvision", "sklearn", "scipy", "seaborn", "umap", "rfc3987_syntax")
    # `mafer reproduce` and the wrapper around every node: no numeric library at all
    assert _imported_by("import mafer.cli, mafer.reproduce\nmafer.reproduce.validate_config("
                        "mafer.reproduce.load_profile('smoke'))", heavy) == []
    assert _imported_by("import mafer.pipeline.run_notebook, papermill", heavy) == []
    # a training notebook's imports (step2.ipynb's): torch, nothing of the evaluation's or figures' libraries
    training = ("from mafer.models import load_checkpoint\nfrom mafer.pipeline import views\n"
                "from mafer.train import TrainConfig, run_step2, run_step1\nimport mafer.train.engine")
    assert _imported_by(training, heavy) == ["torch"]
    # the results notebook's imports and its reading of the embeddings file: statistics, no network
    results = ("from mafer.aggregate import aggregate, write_paired\nfrom mafer.figures import plot_confusion_matrices"
               "\nfrom mafer.stats import METHOD\nfrom mafer.pipeline import views\nfrom mafer.embed import load_embeddings")
    assert _imported_by(results, heavy) == ["scipy"]


def test_progress_lines_follow_snakemakes_count_without_a_terminal():
    from mafer.reproduce import relay_progress

    out = io.StringIO()  # what a CI log or a pipe gets: no terminal
    clock = iter([30.0, 40.0, 100.0])
    relay_progress(["Building DAG of jobs...\n", "1 of 4 steps (25%) done\n", "rule step1:\n",
                    "2 of 4 steps (50%) done\n", "3 of 4 steps (75%) done\n"], out, start=0.0, clock=lambda: next(clock))
    lines = out.getvalue().splitlines()
    assert lines[0] == "Building DAG of jobs..."  # Snakemake's own lines pass through unchanged
    # no estimate from the first, longest nodes alone
    assert lines[2] == "mafer reproduce: 1/4 nodes done, 30 s elapsed, time left shown from 3 nodes on"
    assert lines[5] == "mafer reproduce: 2/4 nodes done, 40 s elapsed, time left shown from 3 nodes on"
    assert lines[-1] == "mafer reproduce: 3/4 nodes done, 1 min 40 s elapsed, about 33 s left"


def test_node_records_split_wall_time_into_startup_and_work(tmp_path):
    from mafer.reproduce import write_node_records

    bench = tmp_path / "benchmarks" / "step2" / "cr"
    bench.mkdir(parents=True)
    (bench / "rafdb-standard-seed17-17.jsonl").write_text(json.dumps({"s": 20.0, "max_rss": 900.0, "cpu_time": 30.0}))
    (tmp_path / "benchmarks" / "publish_book.jsonl").write_text(json.dumps({"s": 0.5, "max_rss": 20.0, "cpu_time": 0.4}))
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"], "papermill": {"duration": 0.01}}),
        nbformat.v4.new_code_cell("x = 2", metadata={"tags": ["injected-parameters"], "papermill": {"duration": 0.01}}),
        nbformat.v4.new_code_cell("import torch", metadata={"papermill": {"duration": 4.0}}),
        nbformat.v4.new_markdown_cell("Training"),
        nbformat.v4.new_code_cell("train()", metadata={"papermill": {"duration": 12.0}}),
        nbformat.v4.new_code_cell("plot()", metadata={"papermill": {"duration": 1.5}}),
    ])
    (tmp_path / "notebooks" / "step2" / "cr").mkdir(parents=True)
    nbformat.write(nb, tmp_path / "notebooks" / "step2" / "cr" / "rafdb-standard-seed17-17.ipynb")
    nodes = json.loads(write_node_records(tmp_path).read_text())
    assert nodes["step2/cr/rafdb-standard-seed17-17"] == {
        "seconds": 20.0, "startup_seconds": 6.5, "work_seconds": 13.5, "max_rss_mb": 900.0, "cpu_seconds": 30.0}
    assert nodes["publish_book"]["startup_seconds"] is None and nodes["publish_book"]["work_seconds"] == 0.5


# ------------------------------------------------------------------ end to end (slow)
# (smoke_project, smoke_run and smoke_book: the session fixtures of conftest.py)

def snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


@pytest.mark.slow
def test_smoke_pipeline_writes_summary_and_every_executed_notebook(smoke_project, smoke_run):
    work = smoke_run / "smoke"
    summary = json.loads((work / "summary.json").read_text())
    assert list(summary) == MODELS
    for model in MODELS:
        assert sorted(summary[model]) == sorted(DATASETS)
        for dataset in DATASETS:
            accs = summary[model][dataset]
            assert list(accs) == ["native", "8", "16"]
            assert all(0.0 <= a <= 1.0 for a in accs.values())
    # Oulu-CASIA: the mean over the two folds the profile trains
    folds = [json.loads((work / f"eval/oulucasia/CR/fold{k}-seed17-17.json").read_text()) for k in (1, 2)]
    mean = sum(f["resolutions"]["native"]["accuracy"] for f in folds) / 2
    assert summary["CR"]["oulucasia"]["native"] == pytest.approx(mean, abs=1e-6)
    # the BatchNorm diagnostic beside every lowered resolution's plain metrics, labelled in the book
    assert all("bn_recalibrated" in f["resolutions"]["8"] for f in folds)
    assert "not the paper's protocol" in (work / "notebooks/evaluation/oulucasia.ipynb").read_text()
    executed = sorted(p.relative_to(work / "notebooks").as_posix() for p in (work / "notebooks").rglob("*.ipynb"))
    assert len(executed) == 1 + 4 + (16 + 4) + 3 + 1 + 1  # the smoke profile fine-tunes on RAF-DB with 2 seeds
    assert "step2/cr_affwild2/oulucasia-fold1-seed17-17.ipynb" in executed
    nb = nbformat.read(work / "notebooks/step2/cr_affwild2/oulucasia-fold1-seed17-17.ipynb", 4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "fold = 1" in injected.source and "runs/step1/cr_affwild2/seed17/best.pt" in injected.source
    nb = nbformat.read(work / "notebooks/step2/cr/rafdb-standard-seed17-18.ipynb", 4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "seed = 18" in injected.source
    assert json.loads((work / "runs/step2/cr/rafdb/standard/seed17-18/run_info.json").read_text())["seed"] == 18
    book = smoke_project / "book" / "generated"
    published = sorted(p.name for p in book.glob("*.ipynb"))
    assert published == sorted(graph.book_sources(load_profile("smoke")))
    assert json.loads((book / "run.json").read_text())["profile"] == "smoke"
    # the record of the run's settings, with the paths relative to the results folder
    recorded = yaml.safe_load((work / "config.yaml").read_text())
    assert recorded["name"] == "smoke" and recorded["notebooks_dir"] == "../../notebooks"
    assert recorded["book_dir"] == "../../book/generated"
    # the final message names what ran and where the results are; the kernels' logs stay quiet
    log = (smoke_project / "first-run.log").read_text()
    assert "30 notebook node(s) ran" in log and f"summary: {work / 'summary.json'}" in log
    assert "without encryption" not in log and "Traceback" not in log
    # a progress line per finished node, without a terminal (the fixture captures the output)
    progress = re.findall(r"^mafer reproduce: (\d+)/(\d+) nodes done, .+ elapsed, (?:about .+ left|time left shown "
                          r"from 4 nodes on)$", log, re.M)
    assert [int(done) for done, _ in progress] == list(range(1, 34)) and {total for _, total in progress} == {"33"}
    # every node's wall time, split into start-up (process, kernel, imports) and work
    nodes = json.loads((work / "nodes.json").read_text())
    assert len(nodes) == 32  # Snakemake's 33 steps count the target rule `all` too
    for name, node in nodes.items():
        assert node["seconds"] > 0 and node["work_seconds"] > 0, name
        if name in ("synthetic_data", "publish_book"):  # no notebook: no kernel to start
            assert node["startup_seconds"] is None, name
        else:
            assert node["startup_seconds"] > 0, name
            assert node["startup_seconds"] + node["work_seconds"] == pytest.approx(node["seconds"], abs=0.02), name


@pytest.mark.slow
def test_smoke_pipeline_writes_paired_comparisons_over_two_seeds(smoke_run):
    work = smoke_run / "smoke"
    comparisons = json.loads((work / "comparisons.json").read_text())
    assert list(comparisons) == MODELS[1:]  # every model but base
    for model in MODELS[1:]:
        assert sorted(comparisons[model]) == sorted(DATASETS)
        for dataset in DATASETS:
            assert list(comparisons[model][dataset]) == ["native", "8", "16"]
            for entry in comparisons[model][dataset].values():
                assert set(entry) == {"diff", "ci95", "p", "n_seeds", "n_images", "method"}
                lo, hi = entry["ci95"]
                assert -1 <= lo <= entry["diff"] <= hi <= 1 and 0 <= entry["p"] <= 1
    # RAF-DB: the profile's two step-2 seeds, paired over the same test images
    rafdb = comparisons["CR"]["rafdb"]["native"]
    labels = json.loads((work / "eval/rafdb/CR/standard-seed17-18.json").read_text())["labels"]
    assert (rafdb["n_seeds"], rafdb["n_images"]) == (2, len(labels))
    assert comparisons["CR"]["oulucasia"]["8"]["n_seeds"] == 1
    summary = json.loads((work / "summary.json").read_text())
    runs = [json.loads((work / f"eval/rafdb/CR/standard-seed17-{s}.json").read_text()) for s in (17, 18)]
    assert summary["CR"]["rafdb"]["8"] == pytest.approx(sum(r["resolutions"]["8"]["accuracy"] for r in runs) / 2,
                                                         abs=1e-6)
    accuracies = json.loads((work / "accuracies.json").read_text())
    assert accuracies["base"]["rafdb"]["native"]["n_seeds"] == 2


@pytest.mark.slow
def test_rerun_with_nothing_changed_runs_nothing(smoke_project, smoke_run):
    result = reproduce("--profile", "smoke", "--dry-run", cwd=smoke_project)
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr
    result = reproduce("--profile", "smoke", cwd=smoke_project)
    assert result.returncode == 0, result.stderr
    assert "nothing to do, all 30 notebook node(s) were up to date" in result.stderr


@pytest.mark.slow
def test_a_changed_parameter_reruns_only_what_depends_on_it_and_a_dry_run_writes_nothing(smoke_project, smoke_run):
    before = snapshot(smoke_run)
    result = reproduce("--profile", "smoke", "--dry-run", "--config", "embeddings.methods=[tsne]", cwd=smoke_project)
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout + result.stderr) == {"embeddings": 1, "results": 1, "publish_book": 1, "all": 1}
    assert snapshot(smoke_run) == before  # config.yaml, logs, locks: nothing under results/ changed


@pytest.mark.slow
def test_targets_and_options_after_double_dash_reach_snakemake(smoke_project, smoke_run):
    extra = ["--", "notebooks/data.ipynb", "--forcerun", "data_overview"]
    dry = reproduce("--profile", "smoke", "--dry-run", *extra, cwd=smoke_project)
    assert dry.returncode == 0, dry.stderr
    assert job_counts(dry.stdout + dry.stderr) == {"data_overview": 1}
    real = reproduce("--profile", "smoke", *extra, cwd=smoke_project)
    assert real.returncode == 0, real.stderr
    assert "1 notebook node(s) ran (data), 29 up to date" in real.stderr
    # the book pages depend on that notebook: the whole graph brings them up to date again, so
    # that the tests after this one start from a finished project
    assert reproduce("--profile", "smoke", cwd=smoke_project).returncode == 0


@pytest.fixture(scope="module")
def copied_project(smoke_project, tmp_path_factory):
    """The finished smoke project copied elsewhere (file times kept, as cp -a and mv do)."""
    dest = tmp_path_factory.mktemp("moved") / "другое место" / "mafer copy"
    shutil.copytree(smoke_project, dest, symlinks=True)
    return dest


@pytest.mark.slow
def test_a_moved_or_copied_project_reruns_nothing(copied_project):
    result = reproduce("--profile", "smoke", "--dry-run", cwd=copied_project)
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]


@pytest.mark.slow
def test_nodes_depend_on_the_code_they_import(copied_project):
    def dry_run_after_editing(path: Path) -> dict[str, int]:
        # an edit, not a touch: Snakemake reruns for a newer input only when its content changed
        text, stat = path.read_bytes(), path.stat()
        path.write_bytes(text + b"\n# edited\n")
        try:
            result = reproduce("--profile", "smoke", "--dry-run", cwd=copied_project)
        finally:
            path.write_bytes(text)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert result.returncode == 0, result.stderr[-3000:]
        return job_counts(result.stdout + result.stderr)

    counts = dry_run_after_editing(copied_project / "mafer" / "device.py")
    assert counts.get("step1") == 4 and counts.get("step2") == 20, counts  # training imports device.py
    counts = dry_run_after_editing(copied_project / "mafer" / "pipeline" / "views.py")
    assert "step1" not in counts and "step2" not in counts  # a drawing helper is no reason to retrain
    assert counts["data_overview"] == counts["results"] == 1 and counts["evaluation"] == 3


@pytest.mark.slow
def test_the_book_builds_from_the_published_notebooks(smoke_book):
    book = smoke_book  # conftest.py: the session's smoke run, built with jupyter-book
    assert "[mystnb.glue" not in (book / "build.log").read_text()  # every glued number was found
    html = book / "_build" / "html" / "book"
    for page in ("index", "method", "step1", "step2", "results", "reproduce"):
        assert (html / f"{page}.html").is_file()
    for page in graph.book_sources(load_profile("smoke")):
        text = (html / "generated" / page.replace(".ipynb", ".html")).read_text()
        assert "<img" in text, f"{page} embeds no figure"
    index = (html / "index.html").read_text()
    assert "figures/method.svg" in index or "method.svg" in index
    assert "synthetic faces" in index and "smoke" in index
    assert "Traceback" not in (html / "generated" / "results.html").read_text()


@pytest.mark.slow
def test_a_failing_node_fails_the_pipeline_is_named_and_reruns_next_time(smoke_project, smoke_run):
    # runs last in this module: a batch of no images (a range only the node's own config checks)
    # makes the RAF-DB fine-tunings raise
    result = reproduce("--profile", "smoke", "--config", "step2.rafdb={batch_size: 0}", cwd=smoke_project)
    assert result.returncode == 1
    assert re.search(r"notebooks/step2.ipynb FAILED in cell In \[\d+\] \(`config = TrainConfig.preset\(", result.stderr)
    assert "batch_size must be at least 1, got 0" in result.stderr
    record = next((smoke_run / "smoke" / "failed").rglob("rafdb-standard-seed17-*.json"))
    partial = Path(json.loads(record.read_text())["partial"])
    assert partial.is_file() and f"partial executed copy: {partial}" in result.stderr
    # the profile as before: the failed nodes lost their outputs and are planned again
    again = reproduce("--profile", "smoke", "--dry-run", cwd=smoke_project)
    assert "Nothing to be done" not in again.stdout + again.stderr
    assert 1 <= job_counts(again.stdout + again.stderr).get("step2", 0) <= 8  # 4 models x 2 RAF-DB seeds


# ------------------------------------------------------------------ interrupts (slow)

def _start(*argv: str, log: Path) -> subprocess.Popen:
    """`mafer reproduce` in a session of its own (so that its group can be signalled)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "mafer", "reproduce", *argv], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _cmdline(process) -> str:
    """``process``'s command line, empty for one that has just exited (a zombie until reaped, or gone)."""
    import psutil

    try:
        return " ".join(process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):  # ZombieProcess is a NoSuchProcess
        return ""


def _kernels_started(proc: subprocess.Popen, timeout: float = 600) -> list:
    """Every process below ``proc`` once a notebook kernel runs among them."""
    import psutil

    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        family = psutil.Process(proc.pid).children(recursive=True)
        if any("ipykernel_launcher" in _cmdline(p) for p in family):
            time.sleep(2)  # let the kernel get to work
            return psutil.Process(proc.pid).children(recursive=True)
        time.sleep(0.5)
    raise AssertionError(f"no notebook kernel started (exit code {proc.poll()})")


@pytest.mark.slow
def test_an_interrupt_stops_every_process_frees_the_lock_and_the_next_run_continues(tmp_path):
    import psutil

    argv = ("--profile", "smoke", "--results", str(tmp_path / "results"), "--book-dir", str(tmp_path / "book"))
    work = tmp_path / "results" / "smoke"
    for how in ("process", "group"):
        log = tmp_path / f"{how}.log"
        proc = _start(*argv, log=log)
        try:
            family = _kernels_started(proc)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
        if how == "process":
            os.kill(proc.pid, signal.SIGTERM)  # `kill PID`
        else:
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
        assert proc.wait(timeout=120) in (128 + signal.SIGTERM, 128 + signal.SIGINT), log.read_text()
        gone, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, f"left running: {[_cmdline(p) for p in alive]}"
        text = log.read_text()
        assert "finished and are kept" in text and "Continue with: mafer reproduce --profile smoke" in text
        locks = work / ".snakemake" / "locks"
        assert not locks.exists() or not any(locks.iterdir())
        assert (work / "data" / ".synth-done").is_file()  # a finished node is kept
    # the same command again just continues (here: up to the data overview)
    result = reproduce(*argv, "--", "notebooks/data.ipynb")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "notebooks" / "data.ipynb").is_file()


@pytest.mark.slow
def test_an_interrupted_training_node_resumes_from_its_last_checkpoint(tmp_path):
    node = "runs/step1/base/seed17"
    # a checkpoint every step and more of them than the smoke profile's 3, so that the interrupt
    # lands in the middle of training
    options = ("--config", "step1.base={save_every: 1, max_steps: 40, epochs: 50}")

    def argv(name: str) -> tuple[str, ...]:
        return ("--profile", "smoke", "--jobs", "2", "--results", str(tmp_path / name),
                "--book-dir", str(tmp_path / f"{name}-book"), *options, "--", f"{node}/best.pt")

    straight = reproduce(*argv("straight"))
    assert straight.returncode == 0, straight.stderr[-3000:]
    run = tmp_path / "cut" / "smoke" / node
    log = tmp_path / "interrupted.log"
    proc = _start(*argv("cut"), log=log)
    deadline = time.time() + 600
    while not (run / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=120) == 128 + signal.SIGINT, log.read_text()[-3000:]
    assert "FAILED" in log.read_text() and not (run / "best.pt").exists()  # cut short; Snakemake removed best.pt
    resumed = reproduce(*argv("cut"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    step = re.search(rf"resuming the interrupted run in {node} from its last.pt \(step (\d+)\)", resumed.stderr)
    assert step and 1 <= int(step.group(1)) < 40, resumed.stderr[-3000:]
    # what an uninterrupted run of the same node gives, to the bit
    reference = tmp_path / "straight" / "smoke" / node
    a, b = load_checkpoint(reference / "best.pt"), load_checkpoint(run / "best.pt")
    assert all(torch.equal(v, b["model_state_dict"][k]) for k, v in a["model_state_dict"].items())
    assert a["metrics"] == b["metrics"]
    assert b["optimizer_state_dict"] is None  # best.pt: the network only
    # a finished node keeps no last.pt: nothing continues it, and it is most of a run's disk
    assert not (run / "last.pt").exists() and not (reference / "last.pt").exists()
    trajectory = lambda folder: [(r["kind"], r["step"], r.get("loss"), r.get("val_acc"))
                                 for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]
    assert trajectory(reference) == trajectory(run)


def test_a_training_node_resumes_only_an_interrupted_run_of_itself(tmp_path):
    run, inputs = tmp_path / "run", [tmp_path / "init.pt"]
    inputs[0].write_bytes(b"weights")
    signature = node_signature({"seed": 1}, inputs)
    assert prepare_run_dir(run, signature) is None and (run / "node-signature.txt").is_file()
    save_checkpoint(run / "last.pt", create_model("senet_tiny", num_classes=2), arch="senet_tiny",
                    class_names=["a", "b"], mean_bgr=[0, 0, 0], extra={"resume": {"step": 3}})
    assert prepare_run_dir(run, node_signature({"seed": 1}, inputs)) == 3  # the same node: resume
    for changed_parameters, content in (({"seed": 2}, b"weights"), ({"seed": 1}, b"other weights")):
        inputs[0].write_bytes(content)
        assert prepare_run_dir(run, node_signature(changed_parameters, inputs)) is None
        assert not (run / "last.pt").exists()  # something changed: the old run goes, training starts over
        save_checkpoint(run / "last.pt", create_model("senet_tiny", num_classes=2), arch="senet_tiny",
                        class_names=["a", "b"], mean_bgr=[0, 0, 0], extra={"resume": {"step": 3}})
    (run / "last.pt").write_bytes(b"cut while written")
    assert prepare_run_dir(run, node_signature({"seed": 1}, inputs)) is None


def test_book_numbers_missing_from_a_run_say_why(monkeypatch):
    glued = {}
    monkeypatch.setattr("myst_nb.glue", lambda name, value, display=True: glued.__setitem__(name, value))
    run = {model: {"rafdb": {"native": 0.5, "16": 0.3}} for model in MODELS}  # no 8 px, no FER2013
    views.glue_accuracies(run)
    assert glued["acc_cr_rafdb_native"] == "50.00" and glued["gain_cr_rafdb_native"] == "+0.00"
    assert glued["acc_base_rafdb_8"] == "n/a: this run tests no 8 px faces"
    assert glued["gain_cr_fer2013_8"] == "n/a: this run has no fer2013"
    quoted = set()
    for page in (ROOT / "book").glob("*.md"):
        quoted |= set(re.findall(r"results\.ipynb::((?:acc|gain)_\w+):", page.read_text()))
    assert quoted and quoted <= set(glued)  # every number the book quotes is there, or says why not


def test_snakemake_can_be_stopped_even_when_reproduce_was_started_with_sigint_ignored():
    # `mafer reproduce ... &` from a script (or nohup, or a CI runner) starts it with SIGINT ignored;
    # Snakemake inherits the signal dispositions at exec, so reproduce resets them for it
    from mafer.reproduce import _stop_with_parent

    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        plain = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
        reset = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                               preexec_fn=_stop_with_parent)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert plain.stdout.strip() == "False"  # what the child would inherit without the reset
    assert reset.stdout.strip() == "True"
