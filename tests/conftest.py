"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


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


PROJECT_FILES = ("mafer", "notebooks", "book", "_config.yml", "_toc.yml", "pyproject.toml", "README.md")


@pytest.fixture(scope="session")
def copy_project():
    """Factory ``copy_project(dest) -> dest``: the project's sources (no results, venv, built
    book or caches) copied to ``dest``, as a fresh clone would have them."""
    import shutil

    root = Path(__file__).resolve().parent.parent

    def copy(dest: Path) -> Path:
        dest.mkdir(parents=True)
        for name in PROJECT_FILES:
            src = root / name
            if src.is_dir():
                shutil.copytree(src, dest / name,
                                ignore=shutil.ignore_patterns("__pycache__", "generated", "_build", "*.egg-info"))
            else:
                shutil.copy2(src, dest / name)
        return dest

    return copy
