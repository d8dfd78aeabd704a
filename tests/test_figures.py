import xml.etree.ElementTree as ET

import matplotlib.pyplot as plt
import numpy as np
import pytest

from mafer.errors import MaferError
from mafer.figures import (
    plot_accuracy_bands,
    plot_accuracy_vs_resolution,
    plot_confusion_matrices,
    plot_differences,
    plot_embeddings,
)

CLASSES = ["Surprise", "Happiness", "Sadness"]


def assert_written(base):
    png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
    assert png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    return svg.read_text()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_confusion_matrices_side_by_side_with_fold_average(tmp_path):
    folds = np.array([[[4, 0, 0], [1, 3, 0], [0, 2, 2]], [[2, 0, 0], [0, 2, 0], [0, 0, 0]]])
    fig = plot_confusion_matrices({"base": folds[0], "CR": folds}, CLASSES, tmp_path / "cm", title="Oulu-CASIA")
    svg = assert_written(tmp_path / "cm")
    assert [ax.get_title() for ax in fig.axes] == ["base", "CR"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == CLASSES
    assert fig.axes[0].get_ylabel() == "True expression"
    assert "Happiness" in svg
    # fold average of row-normalised matrices: CR's class 0 row is (100 + 100) / 2; class 2 row 0.5 from
    # the one fold with class-2 images (the other says nothing about class 2)
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts[0] == "100" and texts[8] == "50"


def test_confusion_matrix_size_must_match_class_names(tmp_path):
    with pytest.raises(MaferError, match="2x2 but 3 class names"):
        plot_confusion_matrices({"base": np.eye(2)}, CLASSES, tmp_path / "cm")


def test_embedding_panels_one_per_model_and_method(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    npz_like = {"tsne": rng.normal(size=(60, 2)), "umap": rng.normal(size=(60, 2)), "labels": labels}
    fig = plot_embeddings({"base": npz_like, "CR": npz_like}, CLASSES, tmp_path / "emb.png")
    assert_written(tmp_path / "emb")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["base — t-SNE", "CR — t-SNE", "base — UMAP", "CR — UMAP"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == CLASSES

    fig = plot_embeddings({"CR": (npz_like["tsne"], labels)}, CLASSES, tmp_path / "single")
    assert [ax.get_title() for ax in fig.axes] == ["CR"]


def test_embedding_without_requested_projection(tmp_path):
    with pytest.raises(MaferError, match="none of the projections umap"):
        plot_embeddings({"CR": {"tsne": np.zeros((3, 2)), "labels": np.zeros(3)}}, CLASSES,
                        tmp_path / "e", methods=("umap",))


def test_accuracy_vs_resolution_from_evaluate_and_aggregate_outputs(tmp_path):
    evaluated = {"resolutions": {
        "native": {"accuracy": 0.9, "accuracy_ci": [0.85, 0.93]},
        "8": {"accuracy": 0.4, "accuracy_ci": [0.35, 0.46]},
        "16": {"accuracy": 0.7, "accuracy_ci": [0.65, 0.75]},
    }}
    aggregated = {"resolutions": {
        "8": {"accuracy": {"mean": 0.6, "std": 0.05}},
        "16": {"accuracy": {"mean": 0.8, "std": 0.02}},
        "native": {"accuracy": {"mean": 0.95, "std": None}},
    }}
    fig = plot_accuracy_vs_resolution({"base": evaluated, "CR": aggregated}, tmp_path / "acc", title="RAF-DB")
    assert_written(tmp_path / "acc")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8 px", "16 px", "native"]
    assert ax.get_ylabel() == "Accuracy (%)"
    base_line = ax.get_lines()[0]
    assert list(base_line.get_ydata()) == pytest.approx([40, 70, 90])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["base", "CR"]


def test_accuracy_vs_resolution_rejects_other_json(tmp_path):
    with pytest.raises(MaferError, match="no 'resolutions'"):
        plot_accuracy_vs_resolution({"base": {"accuracy": 0.5}}, tmp_path / "acc")


def _diff(d, lo, hi):
    return {"diff": d, "ci95": [lo, hi], "p": 0.5, "n_seeds": 3, "n_images": 100, "method": "m"}


def test_accuracy_bands_and_differences_to_base(tmp_path):
    accuracies = {model: {"native": {"accuracy": acc, "ci95": [acc - 0.05, acc + 0.04]},
                          "8": {"accuracy": acc / 2, "ci95": [acc / 2 - 0.1, acc / 2 + 0.1]}}
                  for model, acc in (("base", 0.6), ("CR", 0.7))}
    fig = plot_accuracy_bands(accuracies, tmp_path / "bands", title="RAF-DB")
    assert_written(tmp_path / "bands")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8 px", "native"]
    assert list(ax.get_lines()[1].get_ydata()) == pytest.approx([35, 70])
    band = ax.collections[1].get_paths()[0].vertices[:, 1]  # CR's band: 25..45 at 8 px, 65..74 native
    assert band.min() == pytest.approx(25) and band.max() == pytest.approx(74)

    comparisons = {"CR": {"rafdb": {"native": _diff(0.1, 0.05, 0.15), "8": _diff(-0.02, -0.06, 0.03)},
                          "fer2013": {"8": _diff(0.0, -0.01, 0.01)}},
                   "CR-Simplified": {"rafdb": {"8": _diff(0.04, 0.01, 0.08)}}}
    fig = plot_differences(comparisons, tmp_path / "diff", datasets=["fer2013", "rafdb", "oulucasia"])
    assert_written(tmp_path / "diff")
    assert [ax.get_title() for ax in fig.axes] == ["fer2013", "rafdb"]  # no comparison on Oulu-CASIA: no panel
    rafdb = fig.axes[1]
    assert [t.get_text() for t in rafdb.get_xticklabels()] == ["8 px", "native"]
    zero = [line for line in rafdb.get_lines() if list(line.get_ydata()) == [0, 0]]
    assert zero, "a zero line"
    cr = rafdb.containers[0]  # CR's errorbar: points -2 (8 px) and +10 (native) points
    assert list(cr.lines[0].get_ydata()) == pytest.approx([-2, 10])
    with pytest.raises(MaferError, match="comparisons.json is empty"):
        plot_differences({}, tmp_path / "none")


# ------------------------------------------------------------- matplotlib's backend is the caller's

_BACKEND_PROBE = """
import importlib, json, pkgutil, sys
import matplotlib

def chosen():
    return matplotlib.rcParams._get_backend_or_none()

before = chosen()
import mafer
names = [m.name for m in pkgutil.walk_packages(mafer.__path__, "mafer.")
         if not m.name.endswith("__main__") and (sys.argv[2] == "all" or m.name == "mafer.figures")]
for name in names:
    importlib.import_module(name)
after_import = chosen()
from mafer.figures import plot_accuracy_bands
fig = plot_accuracy_bands({"base": {"8": {"accuracy": 0.5, "ci95": [0.4, 0.6]},
                                    "native": {"accuracy": 0.8, "ci95": [0.7, 0.9]}}}, sys.argv[1])
import matplotlib.pyplot as plt
print(json.dumps({"modules": len(names), "before": before, "after_import": after_import,
                  "after_plot": chosen(), "pyplot_figures": plt.get_fignums()}))
"""


def _probe(tmp_path, backend, modules):
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if backend:
        env["MPLBACKEND"] = backend
    out = subprocess.run([sys.executable, "-c", _BACKEND_PROBE, str(tmp_path / "fig"), modules], env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert (tmp_path / "fig.png").stat().st_size > 1000
    return json.loads(out.splitlines()[-1])


def test_importing_mafer_leaves_matplotlib_backend_alone(tmp_path):
    """mafer.figures chose Agg at import, and a notebook importing it showed no plots of its own."""
    seen = _probe(tmp_path, None, "all")
    assert seen["modules"] > 30
    # no module chose a backend, and drawing a figure did not either: pyplot chooses when asked
    assert seen["before"] is None and seen["after_import"] is None and seen["after_plot"] is None
    assert seen["pyplot_figures"] == []  # the figure is the caller's to keep or drop, not pyplot's


def test_figures_show_where_the_callers_pyplot_shows_them(tmp_path):
    """In Jupyter (ipykernel sets this backend), the figures are pyplot's, which shows them after the cell."""
    inline = "module://matplotlib_inline.backend_inline"
    seen = _probe(tmp_path, inline, "figures")
    assert seen["before"] == seen["after_import"] == seen["after_plot"] == inline
    assert seen["pyplot_figures"] == [1]
