"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mafer.caches import THREAD_VARIABLES

ROOT = Path(__file__).resolve().parent.parent


def _share_cores_between_workers() -> None:
    """Under pytest-xdist, each worker's torch, BLAS and numba take their share of the cores
    (at least one thread), unless the user set the thread count.

    Their defaults take every core in every worker, and OpenMP threads that outnumber the cores
    spin against each other: a test that trains for 5 s alone took 88 s beside another worker.
    Read at import by the libraries, so set before any test imports them; pipelines that tests
    start set their nodes' own threads (`mafer.pipeline.run_notebook`)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        for var in THREAD_VARIABLES:
            os.environ.setdefault(var, threads)


_share_cores_between_workers()

# Tests that share one expensive session fixture run on one pytest-xdist worker (`make test`
# runs `pytest -n 2 --dist loadgroup`), so the fixture is built once, not once per worker, and
# the tests that rerun the smoke project take their turns on it.
SHARED_FIXTURE_GROUPS = {"smoke_project": "smoke", "smoke_run": "smoke", "smoke_book": "smoke",
                         "copied_project": "smoke", "paper_check": "paper"}


AFFWILD2_HEADER = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise"


def write_affwild2(root: Path, videos: dict[str, dict[str, list[int]]], write_image,
                   missing: tuple[tuple[str, int], ...] = (("v2", 3),)) -> None:
    """An AffWild2 copy as released under ``root``: ``annotations/EXPR_Set/<split>/<video>.txt``
    (the header, then one label per frame, -1 unlabelled) and a face crop
    ``cropped_aligned/<video>/<frame:05d>.jpg`` (frames count from 1) written by
    ``write_image(path, frame)`` for every frame but the ``(video, frame)`` pairs in ``missing``.
    ``videos``: ``{split folder: {video: labels}}``."""
    for split, labels_of in videos.items():
        folder = root / "annotations" / "EXPR_Set" / split
        folder.mkdir(parents=True, exist_ok=True)
        for video, labels in labels_of.items():
            (folder / f"{video}.txt").write_text("\n".join([AFFWILD2_HEADER] + [str(y) for y in labels]) + "\n")
            for frame in range(1, len(labels) + 1):
                if (video, frame) not in missing:
                    write_image(root / "cropped_aligned" / video / f"{frame:05d}.jpg", frame)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        groups = {SHARED_FIXTURE_GROUPS[f] for f in getattr(item, "fixturenames", ()) if f in SHARED_FIXTURE_GROUPS}
        if len(groups) > 1:
            raise pytest.UsageError(f"{item.nodeid} uses fixtures of the groups {sorted(groups)}; "
                                    "one worker cannot hold both")
        if groups and item.get_closest_marker("slow") is None:  # `make test-fast` would run the whole graph
            raise pytest.UsageError(f"{item.nodeid} uses the session's {sorted(groups)[0]} run; mark it slow")
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups.pop()))


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
    return save_checkpoint(path, model, arch="senet_tiny", class_names=info.classes, mean_bgr=info.mean_bgr,
                           config={"dataset": dataset, "image_size": image_size})


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """Factory ``tiny_checkpoint(path, dataset, constant_class=None, seed=0, image_size=64) -> path``.

    Saves a senet_tiny classifier of ``dataset`` with random weights (or one that always
    predicts ``constant_class``), for tests of what reads checkpoints.
    """
    return _save_tiny_checkpoint


def _as_format_v1(path: Path) -> Path:
    """Rewrite the checkpoint ``path`` as format version 1 wrote it (mafer before the rename to
    ``arch``): the architecture under ``model_name``, the training option ``model`` in its config."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["format_version"] = 1
    ckpt["model_name"] = ckpt.pop("arch")
    if isinstance(ckpt.get("config"), dict) and "arch" in ckpt["config"]:
        ckpt["config"] = {("model" if k == "arch" else k): v for k, v in ckpt["config"].items()}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="session")
def as_format_v1():
    """Function ``as_format_v1(path) -> path``: the checkpoint rewritten in format version 1
    (``model_name`` and config ``model``, before ``arch``), as older mafer versions left it."""
    return _as_format_v1


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


@pytest.fixture(scope="session")
def smoke_project(tmp_path_factory: pytest.TempPathFactory, copy_project) -> Path:
    """A copy of the project under a path with a space and a non-ASCII character, where
    `mafer reproduce --profile smoke --jobs 2` ran once end to end, once per session.

    `python -m mafer` from there runs that copy's code, nodes and kernels included; the run's
    stderr is kept in ``<root>/first-run.log``."""
    root = copy_project(tmp_path_factory.mktemp("pipeline") / "My Projects ü" / "mafer")
    result = subprocess.run([sys.executable, "-m", "mafer", "reproduce", "--profile", "smoke", "--jobs", "2"],
                            cwd=root, capture_output=True, text=True, timeout=2400)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    (root / "first-run.log").write_text(result.stderr)
    return root


@pytest.fixture(scope="session")
def smoke_run(smoke_project: Path) -> Path:
    """The results root of the session's smoke run: ``<root>/smoke`` holds ``summary.json``,
    the runs and the executed notebooks."""
    return smoke_project / "results"


@pytest.fixture(scope="session")
def smoke_book(smoke_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The book built (``jupyter-book build``) from the smoke run's published pages, in a folder
    of its own (the smoke project stays as the run left it, for the rerun tests).

    Returns the book's root folder; the site is ``<root>/_build/html`` and the build's
    output is kept in ``<root>/build.log``."""
    book = tmp_path_factory.mktemp("bookroot")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(smoke_project / name, book / name)
    shutil.copytree(smoke_project / "book", book / "book")
    result = subprocess.run([str(Path(sys.executable).parent / "jupyter-book"), "build", ".", "--path-output", "."],
                            cwd=book, capture_output=True, text=True, timeout=600)
    (book / "build.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return book
