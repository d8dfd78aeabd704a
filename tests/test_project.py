"""Project-level promises: the environment files agree, and every CLI command has help."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mafer.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_normalise(r) for r in pip_section if not r.startswith("-e")}
    assert listed == expected, f"only in environment.yml: {listed - expected}; only in pyproject: {expected - listed}"
    assert "-e ." in pip_section, "environment.yml must install the project itself"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert project["requires-python"].lstrip(">=") in python, (python, project["requires-python"])


def test_jupyter_book_stays_on_the_offline_1x_series():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(_normalise(d) == "jupyter-book>=1.0,<2" for d in deps)


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_module_has_its_entry_points_and_help(name, capsys):
    module = importlib.import_module(COMMANDS[name][0])
    assert callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert f"mafer {name}" in capsys.readouterr().out


def test_console_script_runs_without_command():
    out = subprocess.run([sys.executable, "-m", "mafer"], capture_output=True, text=True, check=True).stdout
    assert "synth" in out and "reproduce" in out


def test_unknown_command_is_rejected():
    proc = subprocess.run([sys.executable, "-m", "mafer", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_yaml_files_users_write_fail_with_the_file_named(tmp_path):
    from mafer.errors import MaferError
    from mafer.yamlfile import read_yaml_mapping

    bad = tmp_path / "bad.yaml"
    bad.write_text("key: [unclosed\n")
    with pytest.raises(MaferError, match="bad.yaml: not valid YAML"):
        read_yaml_mapping(bad, "config")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(MaferError, match="list.yaml: expected a mapping of profile entries, got list"):
        read_yaml_mapping(listing, "profile")
    with pytest.raises(MaferError, match="missing.yaml: config file not found"):
        read_yaml_mapping(tmp_path / "missing.yaml", "config")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml_mapping(empty, "config") == {}


def test_tests_sharing_the_smoke_run_stay_on_one_xdist_worker(tmp_path):
    """`make test` runs two workers; the session's smoke run must be built once and its tests
    take their turns on it (a pytest or pytest-xdist upgrade once split such groups silently)."""
    (tmp_path / "conftest.py").write_text(f"""
import importlib.util
import pytest

spec = importlib.util.spec_from_file_location("project_conftest", {str(ROOT / "tests" / "conftest.py")!r})
project = importlib.util.module_from_spec(spec)
spec.loader.exec_module(project)
pytest_collection_modifyitems = project.pytest_collection_modifyitems


@pytest.fixture(scope="session")
def smoke_run():
    return None
""")
    (tmp_path / "test_groups.py").write_text("""
import os
import time
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("i", range(6))
def test_shared(smoke_run, i, tmp_path_factory):
    time.sleep(0.2)
    (tmp_path_factory.getbasetemp().parent.parent / f"shared-{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("i", range(6))
def test_free(i):
    time.sleep(0.2)
""")
    (tmp_path / "base").mkdir()
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                             "--basetemp", str(tmp_path / "base" / "t")], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    workers = {(tmp_path / "base" / f"shared-{i}").read_text() for i in range(6)}
    assert len(workers) == 1, workers
