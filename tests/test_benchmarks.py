"""benchmarks/throughput.py: the CPU smoke run (CI) and the pieces its numbers rest on."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mafer.image import lower

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "throughput.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def run_quick(tmp_path: Path, device: str, *extra: str) -> tuple[str, dict]:
    out = tmp_path / "throughput.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--device", device, "--quick", "--json", str(out), *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_quick_cpu_run_prints_and_writes_the_table(tmp_path: Path) -> None:
    stdout, table = run_quick(tmp_path, "cpu")
    assert "| row | what | batch | img/s | ms/step | note |" in stdout
    rows = {row["name"]: row for row in table["rows"]}
    for name in ("augment step2", "augment CR step1", "decode JPEG", "ours step2, eager", "ours CR step1, eager",
                 "ours step2 model-only, eager", "ours CR step1 model-only, eager",
                 "paper-style step2 per core", "paper-style CR step1 per core"):
        assert name in rows, name
        assert rows[name]["error"] is None, rows[name]["error"]
        assert rows[name]["images_per_s"] > 0
        assert f"| {name} |" in stdout
    if table["machine"]["timm"] is not None:
        assert rows["timm step2 model-only, eager"]["images_per_s"] > 0
    assert table["settings"]["arch"] == "senet_tiny" and table["settings"]["image_size"] == 64
    # the ratio to the paper-style pipeline uses its per-core rate times the cores
    cores = table["settings"]["cores"]
    expected = rows["ours step2, eager"]["images_per_s"] / (rows["paper-style step2 per core"]["images_per_s"] * cores)
    ratio = table["ratios"][f"ours step2 eager / (paper-style per core x {cores} cores)"]
    assert ratio == pytest.approx(expected)
    assert all(goal["met"] is None for goal in table["goals"])  # goals are judged on CUDA at 224 px only


def test_rows_filter_measures_only_the_matching_rows(tmp_path: Path) -> None:
    _, table = run_quick(tmp_path, "cpu", "--rows", "^augment", "--no-timm")
    assert [row["name"] for row in table["rows"]] == ["augment step2", "augment CR step1"]


def test_quick_run_times_the_engines_train_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training rows time `Trainer.train_step` itself (the code `mafer step1/step2` run),
    not a copy of it; the augment rows time the engine's `train_inputs`."""
    from mafer.train.engine import Trainer

    bench = load_benchmark()
    calls: list[tuple[str, str, int]] = []
    train_step, train_inputs = Trainer.train_step, Trainer.train_inputs

    def spy_step(self, group):
        calls.append(("train_step", self.cfg.stage, len(group[0][0])))
        return train_step(self, group)

    def spy_inputs(self, images, p):
        calls.append(("train_inputs", self.cfg.stage, len(images)))
        return train_inputs(self, images, p)

    monkeypatch.setattr(Trainer, "train_step", spy_step)
    monkeypatch.setattr(Trainer, "train_inputs", spy_inputs)
    args = bench.parse_args(["--device", "cpu", "--quick", "--no-timm", "--no-paper-style",
                             "--rows", "^(ours|augment)"])
    table = bench.run(args)
    assert [r.error for r in table.rows] == [None] * 6
    per_row = args.warmup + args.iters
    steps = [c for c in calls if c[0] == "train_step"]
    # 2 full rows and 2 model-only rows, each warm-up + timed steps, one batch of --batch-size per step
    assert len(steps) == 4 * per_row and {c[2] for c in steps} == {args.batch_size}
    assert {c[1] for c in steps} == {"step2", "step1"}
    # the input path runs inside train_step for the full rows, and alone for the augment rows
    assert len([c for c in calls if c[0] == "train_inputs"]) == 4 * per_row


def test_goals_and_ratios_from_rows() -> None:
    bench = load_benchmark()
    args = bench.parse_args(["--device", "cuda", "--cores", "16"])
    table = bench.Table(args, machine_info={})
    for name, rate in (("ours step2, eager", 5000.0), ("ours step2, compiled", 7000.0),
                       ("timm step2 model-only, compiled", 5931.0), ("paper-style step2 per core", 180.0),
                       ("ours CR step1, compiled", 4000.0), ("timm CR step1 model-only, compiled", 4590.0)):
        table.rows.append(bench.Row(name, "", 256, images_per_s=rate))
    goals = {g["goal"]: g["met"] for g in table.goals()}
    assert goals["ours step2 >= 6500 img/s (one H200, 224 px, whole input path)"] is True
    assert goals["ours step2 ahead of timm compiled model-only (same run)"] is True
    assert goals["ours step2 >= 2.0x paper-style x 16 cores"] is True  # 7000 >= 2 * 180 * 16
    assert goals["ours CR step1 >= 5000 img/s (one H200, 224 px, whole input path)"] is False
    assert goals["ours CR step1 ahead of timm compiled model-only (same run)"] is False
    assert goals["ours CR step1 >= 2.0x paper-style x 16 cores"] is None  # not measured
    ratios = table.ratios()
    assert ratios["ours step2 compiled / timm compiled model-only"] == pytest.approx(7000 / 5931)


def test_pil_lowering_matches_the_tensor_lowering() -> None:
    """The paper-style pipeline lowers with PIL bilinear; mafer.image.lower is its antialiased twin."""
    bench = load_benchmark()
    image = bench.source_batch(1, 96, torch.device("cpu"))[0]
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    for r in (8, 16, 32):
        ours = lower(image.unsqueeze(0), r)[0].int()
        theirs = torch.from_numpy(np.array(bench.pil_lower(pil, r))).permute(2, 0, 1).int()
        assert (ours - theirs).abs().float().mean() < 3.0
    assert bench.pil_lower(pil, 128) is pil  # r >= the image: unchanged


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_quick_cuda_run(tmp_path: Path) -> None:
    _, table = run_quick(tmp_path, "cuda")
    assert table["machine"]["gpu"]
    assert all(row["error"] is None for row in table["rows"]), [r["error"] for r in table["rows"]]


def test_nodes_table_compares_two_runs_per_kind_of_node(tmp_path: Path) -> None:
    def node(wall: float, startup: float | None) -> dict:
        return {"seconds": wall, "startup_seconds": startup, "work_seconds": wall - (startup or 0.0),
                "max_rss_mb": 500.0, "cpu_seconds": wall}

    runs = []
    for name, scale in (("before", 2.0), ("after", 1.0)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "nodes.json").write_text(json.dumps({
            "step2/cr/rafdb-standard-seed17-17": node(10.0 * scale, 6.0 * scale),
            "step2/base/rafdb-standard-seed17-18": node(12.0 * scale, 8.0 * scale),
            "evaluation/rafdb": node(20.0, 5.0),
            "synthetic_data": node(3.0, None),
        }))
        runs.append(str(folder / "nodes.json"))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nodes.py"), *runs], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
            for line in proc.stdout.splitlines() if line.startswith("| ")}
    # kind, nodes, then start-up / work / wall before and after: the means over the kind's nodes
    assert rows["step2 rafdb"] == ["step2 rafdb", "2", "14.0", "8.0", "22.0", "7.0", "4.0", "11.0"]
    assert rows["synthetic_data"][2] == "-"  # no notebook, no kernel: no start-up to split off
    assert "summed node wall time: 67 s -> 45 s (-33%)" in proc.stdout
    missing = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "nodes.py"), str(tmp_path / "none" / "nodes.json")],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"{tmp_path / 'none' / 'nodes.json'}: cannot read a nodes.json" in missing.stderr


@pytest.mark.slow
def test_demo_mechanism_probes_a_finished_run(smoke_run: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo_mechanism.py"), str(smoke_run / "smoke"),
                           "--datasets", "rafdb", "--resolutions", "native,8"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [float(c) for c in line.strip().strip("|").split("|")[1:]]
            for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| probe")}
    assert list(rows)[:3] == ["majority class", "logistic regression, 12x12 gray pixels",
                              "linear probe: random senet_tiny"]
    # a probe per step-1 model of the run, each a test accuracy in percent at both resolutions
    assert {f"linear probe: step-1 {m}" for m in ("base", "CR", "CR-Simplified", "CR+AffWild2")} <= set(rows)
    assert all(len(cells) == 2 and all(0 <= c <= 100 for c in cells) for cells in rows.values())
    # the majority rate does not depend on the resolution; the others are fitted at each one
    assert rows["majority class"][0] == rows["majority class"][1]


@pytest.mark.slow
def test_the_demo_architecture_learns_8px_faces() -> None:
    # The demo's claim check needs a network that can read an 8-pixel face at all: trained on
    # 700 synthetic RAF-DB faces (the declared framing) lowered to 8 px and tested on 210 new
    # people at 8 px, senet_tiny at the demo's 48 px input must beat the majority rate (1/7:
    # balanced classes) by far more than chance allows (4 standard errors on 210 faces is 0.24).
    spec = importlib.util.spec_from_file_location("demo_mechanism", ROOT / "benchmarks" / "demo_mechanism.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.learn_8px("senet_tiny", seed=0, epochs=1, n_train=70, n_test=35)
    assert first == module.learn_8px("senet_tiny", seed=0, epochs=1, n_train=70, n_test=35)  # seeded
    assert all(0.0 <= accuracy <= 1.0 and abs(accuracy * 35 - round(accuracy * 35)) < 1e-6 for accuracy in first)
    network, linear = module.learn_8px("senet_tiny", seed=0, epochs=12, n_train=700, n_test=210)
    assert network > 0.25 and linear > 0.25, (network, linear)
    # the command the README's data-size rows come from prints what the function returns
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo_mechanism.py"), "--learn-8px", "--seeds", "0",
                           "--epochs", "1", "--n-train", "70", "--n-test", "35"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 35 new synthetic RAF-DB faces at 8 px" in proc.stdout and "trained on 70 at 8 px" in proc.stdout
    assert f"| 0 | {100 * first[0]:.1f} | {100 * first[1]:.1f} |" in proc.stdout
