"""DistributedDataParallel: the same command under torchrun, 2 CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mafer.models import load_checkpoint


def torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node 2 -m mafer ARGS``; the whole process group dies on a timeout."""
    env = dict(os.environ, OMP_NUM_THREADS="1")  # two processes on a 2-core machine
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "mafer", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers
        stdout, stderr = proc.communicate()
        raise AssertionError(f"torchrun timed out:\n{stderr[-3000:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.mark.slow
def test_two_processes_train_one_model(smoke_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    common = ["--preset", "smoke", "--dataset", "fer2013", "--data-dir", str(smoke_data), "--out", str(out),
              "--device", "cpu", "--batch-size", "4", "--accum-steps", "2", "--epochs", "3"]
    done = torchrun(["step2", *common, "--max-steps", "2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["extra"]["resume"]["world_size"] == 2 and ckpt["extra"]["resume"]["step"] == 2
    assert len(ckpt["extra"]["resume"]["rng"]) == 2  # every rank's augmentation generator is kept
    assert (out / "best.pt").is_file()
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    train = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in train if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 2]  # rank 0 alone writes the log
    assert all(r["images"] == 4 * 2 * 2 for r in steps)  # per step: batch 4 x 2 accumulated x 2 processes
    resumed = torchrun(["step2", *common, "--max-steps", "3", "--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = load_checkpoint(out / "last.pt")
    assert after["extra"]["resume"]["step"] == 3
    assert any(not torch.equal(v, ckpt["model_state_dict"][k]) for k, v in after["model_state_dict"].items())
