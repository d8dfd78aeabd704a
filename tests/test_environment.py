"""The machine around mafer: a read-only installation and home, a full disk, a full output device.

The read-only and full-disk cases are made for real where the tests run as root: a private mount
namespace (``unshare -m``) in which site-packages and a home folder are bound read-only, or a
small tmpfs is mounted; nothing outside the namespace sees them. Elsewhere they are skipped with
the reason (the simulated versions in test_synth.py and test_checkpoint.py run everywhere).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from functools import cache
from pathlib import Path

import pytest

from mafer.synth import write_synthetic

SITE_PACKAGES = sysconfig.get_paths()["purelib"]
CACHE_VARIABLES = ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "NUMBA_CACHE_DIR", "MPLCONFIGDIR",
                   "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "MPLBACKEND")


@cache
def _namespace_problem() -> str | None:
    """Why mount namespaces cannot be made here, or None when they can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to mount in a private mount namespace (unshare -m)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare or mount is not installed"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount in a new namespace here ({probe.stderr.strip() or probe.returncode})"
    return None


def _skip_without_namespace() -> None:
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)


def _in_namespace(setup: str, command: list[str], env: dict[str, str], timeout: int = 300):
    """Run ``command`` after the shell lines ``setup`` in a private mount namespace."""
    script = f"set -e\n{setup}\nexec \"$@\"\n"
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *command], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _read_only(*paths: Path | str) -> str:
    # two steps: a bind mount ignores "ro" on older util-linux until it is remounted
    return "\n".join(f'mount --bind "{p}" "{p}"\nmount -o remount,ro,bind "{p}"' for p in paths)


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_VARIABLES}
    env["HOME"] = str(home)
    return env


# ---------------------------------------------------------------------------- read-only installation and home

_NUMBA_AND_MATPLOTLIB = """
import json, sys
sys.path.insert(0, sys.argv[1])
from mafer.caches import use_writable_caches
changed = use_writable_caches() if sys.argv[2] == "fixed" else {}
import numpy as np
import installed  # a module of the read-only "installation" with a cached numba function, as umap's rdist
assert installed.rdist(np.ones(3), np.zeros(3)) == 3.0
import matplotlib.font_manager  # builds its font cache in its cache folder
print(json.dumps(changed))
"""


def test_numba_and_matplotlib_caches_leave_a_read_only_installation_and_home(tmp_path):
    """numba: "cannot cache function 'rdist': no locator available" with both read-only."""
    _skip_without_namespace()
    home, installation = tmp_path / "home", tmp_path / "site-packages"
    home.mkdir()
    installation.mkdir()
    (installation / "installed.py").write_text(textwrap.dedent("""
        import numba

        @numba.njit(cache=True)
        def rdist(x, y):
            return ((x - y) ** 2).sum()
    """))
    setup = _read_only(installation, home)
    env = _clean_env(home) | {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    run = [sys.executable, "-c", _NUMBA_AND_MATPLOTLIB, str(installation)]
    before = _in_namespace(setup, run + ["unfixed"], env)
    assert before.returncode != 0 and "cannot cache function 'rdist'" in before.stderr  # the reported failure
    after = _in_namespace(setup, run + ["fixed"], env)
    assert after.returncode == 0, after.stderr
    changed = json.loads(after.stdout)
    fallback = tmp_path / "tmp" / f"mafer-cache-{os.getuid()}"
    assert changed["NUMBA_CACHE_DIR"] == str(fallback / "numba") and changed["XDG_CACHE_HOME"] == str(fallback)
    assert changed["MPLCONFIGDIR"] == str(fallback / "matplotlib")
    assert "JUPYTER_RUNTIME_DIR" in changed and "IPYTHONDIR" in changed
    assert any((fallback / "numba").rglob("*.nbi"))  # the cache is kept where it can be, for the next run
    assert "Matplotlib created a temporary" not in after.stderr  # matplotlib did not have to improvise
    assert not any(installation.rglob("__pycache__")) and not any(home.iterdir())


def test_writable_defaults_are_kept_and_numba_never_writes_into_the_installation(tmp_path, monkeypatch):
    """Runs everywhere: a writable home keeps every default but numba's, which goes to ~/.cache/numba."""
    from mafer.caches import use_writable_caches

    for variable in CACHE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    changed = use_writable_caches()
    assert changed == {"NUMBA_CACHE_DIR": str(tmp_path / ".cache" / "numba")}
    assert os.environ["NUMBA_CACHE_DIR"] == changed["NUMBA_CACHE_DIR"]
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert use_writable_caches() == {}  # what the user set is kept


@pytest.mark.slow
def test_embed_umap_runs_with_read_only_site_packages_and_home(tmp_path, tiny_checkpoint):
    """The reported command, on small data, in a namespace where site-packages and HOME are read-only
    (UMAP's compilation takes most of its half minute)."""
    _skip_without_namespace()
    home = tmp_path / "home"
    home.mkdir()
    write_synthetic(tmp_path / "data", datasets=["rafdb"])
    checkpoint = tiny_checkpoint(tmp_path / "raf.pt", "rafdb")
    out = tmp_path / "embeddings.npz"
    result = _in_namespace(_read_only(SITE_PACKAGES, home),
                           [sys.executable, "-m", "mafer", "embed", "--dataset", "rafdb", "--data-dir",
                            str(tmp_path / "data"), "--checkpoint", str(checkpoint), "--methods", "umap",
                            "--device", "cpu", "--workers", "0", "--out", str(out)],
                           _clean_env(home), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "projections: umap" in result.stdout and out.stat().st_size > 0
    assert "cannot cache" not in result.stderr and "Matplotlib created a temporary" not in result.stderr
    assert not any(home.iterdir())


# ---------------------------------------------------------------------------- a full disk

def test_synth_on_a_full_disk_is_one_line_and_leaves_no_half_dataset(tmp_path):
    _skip_without_namespace()
    disk = tmp_path / "disk"
    disk.mkdir()
    result = _in_namespace(
        f'mount -t tmpfs -o size=200k tmpfs "{disk}"',
        ["sh", "-c", f'"{sys.executable}" -m mafer synth --out "{disk}/data" --datasets rafdb; echo "rc=$?"; '
                     f'ls -A "{disk}/data"'], os.environ.copy())
    lines = result.stdout.splitlines()
    assert "rc=2" in lines
    assert lines[lines.index("rc=2") + 1:] == []  # the folder is empty: no rafdb, no partial, no manifest
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"mafer synth: error: {disk}/data/rafdb/")
    assert "the disk is full (ENOSPC" in result.stderr


_CHECKPOINT_ON_A_FULL_DISK = """
import os, sys
sys.path.insert(0, sys.argv[2])
from conftest import _save_tiny_checkpoint
from mafer.errors import MaferError
path = os.path.join(sys.argv[1], "run", "best.pt")
_save_tiny_checkpoint(path, "fer2013")
before = open(path, "rb").read()
with open(os.path.join(sys.argv[1], "filler"), "wb") as f:  # leave about 100 kB
    f.write(bytes(os.statvfs(sys.argv[1]).f_bavail * os.statvfs(sys.argv[1]).f_frsize - 100_000))
try:
    _save_tiny_checkpoint(path, "fer2013", seed=1)
except MaferError as exc:
    print(exc)
print(open(path, "rb").read() == before, sorted(os.listdir(os.path.dirname(path))))
"""


def test_checkpoint_save_on_a_full_disk_names_it_and_keeps_the_previous_one(tmp_path):
    _skip_without_namespace()
    disk = tmp_path / "disk"
    disk.mkdir()
    result = _in_namespace(f'mount -t tmpfs -o size=4m tmpfs "{disk}"',
                           [sys.executable, "-c", _CHECKPOINT_ON_A_FULL_DISK, str(disk), str(Path(__file__).parent)],
                           os.environ.copy())
    assert result.returncode == 0, result.stderr[-3000:]
    message, kept = result.stdout.splitlines()
    assert message.startswith(f"{disk}/run/best.pt: cannot write the checkpoint: the disk is full (ENOSPC")
    assert kept == "True ['best.pt']"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="/dev/full is a Linux device")
def test_output_to_a_full_device_is_one_line_and_no_second_error_at_exit(tmp_path):
    """Python flushes stdout again at exit; without care that prints "Exception ignored ... OSError"."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "mafer", "synth", "--out", str(tmp_path), "--datasets",
                                 "rafdb"], stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "mafer synth: error: standard output (/dev/full): cannot write: the disk is full (ENOSPC, no space left "
        "on the device); free some space or write elsewhere, then run again"]
