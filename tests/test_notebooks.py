"""The companion notebooks: thin, parameterised, clean, and runnable under papermill with
parameters other than their defaults."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import json
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

from mafer.errors import MaferError
from mafer.pipeline.params import REPOSITORY, mapping_parameter, work_in

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"data", "step1", "step2", "evaluation", "embeddings", "results", "checkpoints"}


def test_the_companion_has_its_seven_notebooks_and_the_pipeline_runs_each():
    assert {p.stem for p in NOTEBOOKS} == EXPECTED
    snakefile = (ROOT / "mafer" / "pipeline" / "Snakefile").read_text()
    assert set(re.findall(r'nb_cmd\("(\w+)\.ipynb"', snakefile)) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_first_and_is_committed_clean(path):
    nb = nbformat.read(path, 4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "mafer"  # the project's kernel, the only one `make lab` offers
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    declared = pm.inspect_notebook(str(path))
    assert declared and all(p["help"] for p in declared.values()), "every parameter says what it is"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_cells_call_mafer_rather_than_hold_logic(path):
    nb = nbformat.read(path, 4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not re.search(r"^\s*(def|class)\s", cell.source, re.M), f"{path.name}: logic belongs in mafer"
        if "parameters" not in cell.metadata.get("tags", []):  # the parameters cell only declares values
            assert len(cell.source.splitlines()) <= 14, f"{path.name}: keep cells short:\n{cell.source}"


@pytest.mark.slow
def test_data_notebook_runs_under_papermill_with_other_parameters(smoke_data, tmp_path):
    out = tmp_path / "data.ipynb"
    figures = tmp_path / "figures"
    pm.execute_notebook(str(ROOT / "notebooks" / "data.ipynb"), str(out), progress_bar=False,
                        parameters=dict(data_dir=str(smoke_data), datasets=["rafdb", "oulucasia"],
                                        resolutions=["native", 12], image_size=40, folds=4, out_dir=str(figures)))
    nb = nbformat.read(out, 4)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1 + 2 + 2  # class counts, a face grid and a resolution strip per dataset
    assert sorted(p.name for p in figures.glob("*.png")) == [
        "class_counts.png", "faces_oulucasia.png", "faces_rafdb.png", "resolutions_oulucasia.png",
        "resolutions_rafdb.png"]
    glued = {o["metadata"]["scrapbook"]["name"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
             if "scrapbook" in o.get("metadata", {})}
    assert glued == {"data_check", "n_images_rafdb", "n_images_oulucasia"}
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert printed.count("verdict: usable, but numbers are not comparable with the paper") == 5  # all of smoke_data


def test_relative_paths_start_at_the_repository_or_the_given_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert work_in(None) == ROOT == REPOSITORY and Path.cwd() == ROOT
    assert work_in(tmp_path) == tmp_path.resolve() and Path.cwd() == tmp_path.resolve()
    with pytest.raises(MaferError, match="nowhere.*folder not found"):
        work_in(tmp_path / "nowhere")


def test_mapping_parameters_refuse_strings_with_how_to_pass_a_mapping():
    assert mapping_parameter("options", {"epochs": 5}) == {"epochs": 5}
    with pytest.raises(MaferError, match=r"parameter options must be a mapping, got str '\{\"epochs\": 5\}'.*-y"):
        mapping_parameter("options", '{"epochs": 5}')


@pytest.mark.slow
def test_papermill_by_hand_from_any_folder_with_a_yaml_file_of_parameters(smoke_data, tmp_path):
    papermill = [str(Path(sys.executable).parent / "papermill"), "--no-progress-bar"]
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data_dir": str(smoke_data), "datasets": ["rafdb"], "resolutions": ["native", 8],
                                      "image_size": 32, "out_dir": "figures", "base_dir": str(work)}))
    result = subprocess.run([*papermill, str(ROOT / "notebooks" / "data.ipynb"), "out.ipynb", "-f", str(params)],
                            cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (work / "figures" / "faces_rafdb.png").is_file() and not (elsewhere / "figures").exists()
    # a mapping given with -p arrives as a string: refused in words before any training
    result = subprocess.run([*papermill, "notebooks/step2.ipynb", str(tmp_path / "bad.ipynb"),
                             "-p", "options", '{"epochs": 5}', "-p", "base_dir", str(work)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "parameter options must be a mapping" in result.stdout + result.stderr


@pytest.mark.slow
def test_make_lab_runs_as_root_with_lab_args_and_offers_only_the_project_kernel(tmp_path):
    port = 18000 + os.getpid() % 1000
    proc = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS=--no-browser --port {port} --port-retries 0 "
                             "--IdentityProvider.token=t0ken"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        specs = None
        for _ in range(120):
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/kernelspecs?token=t0ken", timeout=2) as r:
                    specs = json.load(r)
                break
            except OSError:
                time.sleep(1)
        assert specs is not None, proc.stdout.read() if proc.poll() is not None else "JupyterLab did not answer"
        assert set(specs["kernelspecs"]) == {"mafer"} and specs["default"] == "mafer"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
