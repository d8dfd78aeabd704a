"""Shared pytest fixtures."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with smoke-scale synthetic copies of all five datasets (seed 0), made once per session."""
    from mafer.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth_smoke")
    write_synthetic(out, scale="smoke", seed=0)
    return out


def _save_tiny_checkpoint(path: Path, dataset: str, constant_class: int | None = None, seed: int = 0,
                          image_size: int = 64) -> Path:
    import torch

    from mafer.datasets import DATASETS
    from mafer.models import create_model, save_checkpoint

    info = DATASETS[dataset]
    torch.manual_seed(seed)
    model = create_model("senet_tiny", info.num_classes)
    if constant_class is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.nn.functional.one_hot(torch.tensor(constant_class), info.num_classes) * 10.0)
    return save_checkpoint(path, model, model_name="senet_tiny", class_names=info.classes, mean_bgr=info.mean_bgr,
                           config={"dataset": dataset, "image_size": image_size})


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """Factory ``tiny_checkpoint(path, dataset, constant_class=None, seed=0, image_size=64) -> path``.

    Saves a senet_tiny classifier of ``dataset`` with random weights (or one that always
    predicts ``constant_class``), for tests of what reads checkpoints.
    """
    return _save_tiny_checkpoint


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke profile run once per session, end to end, with 2 parallel nodes.

    Returns the results root: ``<root>/smoke`` is the run (``summary.json``, runs, notebooks),
    ``<root>/book/generated`` the pages it published for the book."""
    root = tmp_path_factory.mktemp("pipeline")
    result = subprocess.run([sys.executable, "-m", "mafer", "reproduce", "--profile", "smoke", "--results", str(root),
                             "--book-dir", str(root / "book" / "generated"), "--jobs", "2"],
                            cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return root


@pytest.fixture(scope="session")
def smoke_book(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built (``jupyter-book build``) from the smoke run's published pages.

    Returns the book's root folder; the site is ``<root>/_build/html`` and the build's
    output is kept in ``<root>/build.log``."""
    book = tmp_path_factory.mktemp("bookroot")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, book / name)
    shutil.copytree(ROOT / "book", book / "book", ignore=shutil.ignore_patterns("generated"))
    shutil.copytree(smoke_run / "book" / "generated", book / "book" / "generated")
    result = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--path-output", "."],
                            cwd=book, capture_output=True, text=True, timeout=600)
    (book / "build.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return book
