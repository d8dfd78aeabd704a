"""The README's command examples run as printed, in order, in a fresh copy of the project.

The test runs them on smoke-scale data with the smoke preset (seconds); set
``MAFER_README_AS_PRINTED=1`` to run them exactly as printed and see each block's time (the
times the README states)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, re.S)
# smoke-scale stand-ins for the demo-scale values the README prints
SMOKE = [("--scale demo", "--scale smoke"), ("--preset demo", "--preset smoke"), ("-p preset demo", "-p preset smoke")]
AS_PRINTED = os.environ.get("MAFER_README_AS_PRINTED") == "1"


def runnable(block: str) -> bool:
    """Blocks a test can run: not `make book` / `make test` (what CI itself runs) and not the
    paper profile (it needs the licensed data)."""
    return not re.search(r"^make ", block, re.M) and "--profile paper" not in block


def test_the_readme_has_runnable_examples_that_use_only_existing_commands():
    blocks = [b for b in BLOCKS if runnable(b)]
    assert len(blocks) >= 3
    from mafer.cli import COMMANDS

    used = set(re.findall(r"\.venv/bin/mafer (\w+)", "\n".join(BLOCKS)))
    assert used and used <= set(COMMANDS)
    if not AS_PRINTED:
        assert all(old in README for old, _ in SMOKE), "update SMOKE to the README's examples"


@pytest.mark.slow
def test_readme_examples_run_as_printed_in_order(tmp_path, copy_project):
    project = copy_project(tmp_path / "clone")
    (project / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = dict(os.environ, PYTHONPATH=str(project))  # the copy's code, in the commands and their kernels
    for block in filter(runnable, BLOCKS):
        script = block
        if not AS_PRINTED:
            for old, new in SMOKE:
                script = script.replace(old, new)
        start = time.time()
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=project, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=3600)
        finally:
            if proc.poll() is None:  # timed out: stop the command that hangs, and everything it started
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 0, f"{block}\n{stdout[-2000:]}\n{stderr[-3000:]}"
        print(f"\n[{time.time() - start:.0f} s] {block.strip().splitlines()[0]}")
    runs = project / "runs"
    for run in ("base", "cr", "cr-rafdb", "cr-rafdb-seed1", "cr-rafdb-seed2", "cr-rafdb-seed3"):
        assert (runs / run / "best.pt").is_file(), run
    assert (runs / "cr-rafdb" / "eval.json").is_file()
    from mafer.models import load_checkpoint

    seeds = {load_checkpoint(runs / f"cr-rafdb-seed{k}" / "best.pt")["config"]["seed"] for k in (1, 2, 3)}
    assert seeds == {1, 2, 3}
