"""The companion notebooks: thin, parameterised, clean, and runnable under papermill with
parameters other than their defaults."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill as pm
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = {"data", "step1", "step2", "evaluation", "embeddings", "results"}


def test_the_companion_has_its_six_notebooks_and_the_pipeline_runs_each():
    assert {p.stem for p in NOTEBOOKS} == EXPECTED
    snakefile = (ROOT / "mafer" / "pipeline" / "Snakefile").read_text()
    assert set(re.findall(r'nb_cmd\("(\w+)\.ipynb"', snakefile)) == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_one_parameters_cell_first_and_is_committed_clean(path):
    nb = nbformat.read(path, 4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
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
        assert len(cell.source.splitlines()) <= 14, f"{path.name}: keep cells short:\n{cell.source}"


@pytest.mark.slow
def test_data_notebook_runs_under_papermill_with_other_parameters(smoke_data, tmp_path):
    out = tmp_path / "data.ipynb"
    figures = tmp_path / "figures"
    pm.execute_notebook(str(ROOT / "notebooks" / "data.ipynb"), str(out), kernel_name="python3", progress_bar=False,
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
