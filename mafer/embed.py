"""Deep features of a dataset and their 2-D t-SNE / UMAP projections (``mafer embed``).

The features are the network's pooled 2048-d vectors (``model.forward_features``), computed on
the test faces at one resolution (lowered as in step 1, or native), as in the paper's t-SNE
figure.

This module owns the embeddings file, which ``mafer embed`` (one model) and the pipeline's
embeddings notebook (every model) write with `save_embeddings` and the results notebook reads
with `load_embeddings`. It is an ``.npz`` (NumPy's zip of ``.npy`` arrays, read with
``allow_pickle=False``) holding, for M models of N faces each (N may differ between models):

- ``models``: ``[M]`` str, the model names (the paper's labels, `mafer.paper_models`), in order;
- ``<model>/labels``: ``[N]`` int64, the true class of each face, in ``0..C-1``;
- ``<model>/features`` (optional): ``[N, D]`` float32, the pooled features;
- ``<model>/tsne``, ``<model>/umap`` (each optional): ``[N, 2]`` float32 projections (`METHODS`);
- ``classes``: ``[C]`` str, the class names in label order;
- ``info/<key>``: 0-d str, what the faces were (``dataset``, ``split``, ``resolution``, ...).
"""

from __future__ import annotations

import argparse
import os
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from mafer.datasets import dataset_info
from mafer.errors import MaferError
from mafer.paper_models import model_from_path

METHODS = ("tsne", "umap")
MIN_POINTS = 4  # below this neither t-SNE's perplexity nor UMAP's neighbourhood is meaningful


def extract_features(dataset: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
                     split: str = "test", fold: int | None = None, folds: int | None = None,
                     protocol: str | None = None,
                     resolution: str | int = "native", device: str = "auto", image_size: int | None = None,
                     batch_size: int = 64, workers: int | None = None, skip_bad: bool = False,
                     max_images: int | None = None,
                     order: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``[N, D]`` (float32) and labels ``[N]`` (int64) of ``split`` at ``resolution``.

    Oulu-CASIA's ``fold`` / ``folds`` / ``protocol`` / ``order`` as in `mafer.evaluate.evaluate_checkpoint`.

    With ``skip_bad`` unreadable images are left out (see ``mafer.evaluate.open_test_data``);
    ``max_images`` keeps that many, every class in turn (``mafer.evaluate.class_interleaved``).
    """
    # torch and torchvision (seconds of start-up) only here: reading or drawing an embeddings
    # file, as the results node does, needs neither
    from mafer.device import pick_device
    from mafer.evaluate import (LoweredEvalTransform, checkpoint_image_size, default_workers, limited, make_loader,
                                open_checkpoint_and_data, parse_resolutions, run_model)

    (resolution,) = parse_resolutions([resolution])
    dev = pick_device(device)
    model, meta, data, _, _ = open_checkpoint_and_data(dataset, data_dir, checkpoint, split, fold, folds, protocol,
                                                       dev, skip_bad, order)
    data.transform = LoweredEvalTransform(dataset, checkpoint_image_size(meta, image_size), resolution)
    loader = make_loader(limited(data, max_images), batch_size, default_workers() if workers is None else workers, dev)
    features, labels = run_model(model, loader, meta["mean_bgr"], dev, features=True)
    return features.numpy().astype(np.float32), labels.numpy().astype(np.int64)


def project(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """2-D projection ``[N, 2]`` (float32) of ``features`` by t-SNE (scikit-learn) or UMAP (umap-learn).

    t-SNE: perplexity min(30, (N-1)/3), PCA initialisation. UMAP: n_neighbors min(15, N-1).
    Both are seeded, so a rerun gives the same picture.
    """
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2:
        raise MaferError(f"features must be [N, D], got shape {features.shape}")
    n = len(features)
    if n < MIN_POINTS:
        raise MaferError(f"{method} needs at least {MIN_POINTS} points, got {n}")
    if method == "tsne":
        from sklearn.manifold import TSNE

        tsne = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed)
        return tsne.fit_transform(features).astype(np.float32)
    if method == "umap":
        from mafer.caches import use_writable_caches

        use_writable_caches()  # numba (UMAP's compiler) caches into site-packages or ~/.cache, maybe read-only
        with warnings.catch_warnings():
            # importing umap pulls in tqdm.auto, which warns in a notebook without ipywidgets; umap
            # shows no progress bar here
            warnings.filterwarnings("ignore", message="IProgress not found")
            import umap

        with warnings.catch_warnings():
            # umap warns that a fixed random_state disables parallelism: reproducibility is the point here
            warnings.filterwarnings("ignore", message=".*n_jobs value 1 overridden.*")
            reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed,
                                init="spectral" if n > 16 else "random")
            return reducer.fit_transform(features).astype(np.float32)
    raise MaferError(f"unknown projection method {method!r}; expected one of {', '.join(METHODS)}")


def parse_methods(text: str) -> list[str]:
    """``"tsne,umap"`` -> ``["tsne", "umap"]``; MaferError for unknown names ("" -> no projection)."""
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise MaferError(f"unknown projection method(s) {', '.join(unknown)}; expected {', '.join(METHODS)}")
    return methods


def project_all(features: Mapping[str, tuple[np.ndarray, np.ndarray]], methods: Sequence[str], seed: int = 0,
                keep_features: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """``{model: (features [N, D], labels [N])}`` -> ``{model: {"labels", <method>: [N, 2], ...}}``,
    the entries `save_embeddings` writes (``"features"`` too with ``keep_features``)."""
    return {model: {"labels": labels, **({"features": feats} if keep_features else {}),
                    **{method: project(feats, method, seed) for method in methods}}
            for model, (feats, labels) in features.items()}


@dataclass
class Embeddings:
    """The content of an embeddings file (see the module docstring): ``models`` maps a model name
    to its arrays (``labels``, optional ``features`` and projections), ``classes`` the class
    names, ``info`` what the faces were."""

    models: dict[str, dict[str, np.ndarray]]
    classes: list[str]
    info: dict[str, str] = field(default_factory=dict)


ENTRY_KEYS = ("labels", "features", *METHODS)
_EXPECTED = "expected an embeddings file of `mafer embed` or notebooks/embeddings.ipynb (mafer.embed.save_embeddings)"


def _checked_entry(model: str, entry: Mapping[str, np.ndarray], num_classes: int, where: str) -> dict[str, np.ndarray]:
    """The arrays of one model with the format's dtypes; MaferError (prefixed ``where``) on a
    missing or unknown key, a wrong shape or a label out of range."""
    unknown = [k for k in entry if k not in ENTRY_KEYS]
    if unknown:
        raise MaferError(f"{where}: model {model!r} has unknown entries {', '.join(unknown)}; "
                         f"expected labels, features, {', '.join(METHODS)}")
    if "labels" not in entry:
        raise MaferError(f"{where}: model {model!r} has no labels; expected {model}/labels [N]")
    labels = np.asarray(entry["labels"])
    if labels.ndim != 1 or not (np.issubdtype(labels.dtype, np.integer) or labels.size == 0):
        raise MaferError(f"{where}: {model}/labels must be [N] integers, got {labels.dtype} {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise MaferError(f"{where}: {model}/labels holds {labels.min()}..{labels.max()}; "
                         f"expected 0..{num_classes - 1} ({num_classes} classes)")
    checked = {"labels": labels.astype(np.int64)}
    for key, value in entry.items():
        if key == "labels":
            continue
        value = np.asarray(value)
        width = "D" if key == "features" else "2"
        if value.ndim != 2 or len(value) != len(labels) or (key != "features" and value.shape[1] != 2) \
                or not np.issubdtype(value.dtype, np.floating):
            raise MaferError(f"{where}: {model}/{key} must be [N, {width}] floats with N = {len(labels)} "
                             f"(its labels), got {value.dtype} {value.shape}")
        checked[key] = value.astype(np.float32)
    return checked


def save_embeddings(path: str | os.PathLike, models: Mapping[str, Mapping[str, np.ndarray]],
                    classes: Sequence[str], **info: str) -> Path:
    """Write an embeddings file (format in the module docstring) and return its path.

    ``models`` maps a model name to ``{"labels": [N] int, "features": [N, D], "tsne": [N, 2],
    ...}`` (labels required, the rest optional; see `project_all`); ``classes`` names the labels;
    ``info`` says what the faces were (``dataset="rafdb", split="test", resolution="native"``).
    MaferError if an entry does not fit the format. The name is kept as given (no ``.npz`` added).
    """
    path = Path(path)
    classes = [str(c) for c in classes]
    arrays = {"models": np.array(list(models), dtype=str), "classes": np.array(classes, dtype=str)}
    for model, entry in models.items():
        if "/" in model:
            raise MaferError(f"{path}: model name {model!r} must not contain '/'")
        for key, value in _checked_entry(model, entry, len(classes), str(path)).items():
            arrays[f"{model}/{key}"] = value
    arrays |= {f"info/{key}": np.array(str(value)) for key, value in info.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:  # a file object keeps np.savez from appending .npz to the name
        np.savez_compressed(f, **arrays)
    return path


def load_embeddings(path: str | os.PathLike) -> Embeddings:
    """Read an embeddings file written by `save_embeddings` (``allow_pickle=False``: nothing in it
    runs code). MaferError naming the file for a missing, truncated or foreign file and for
    entries that break the format (module docstring)."""
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise MaferError(f"{path}: a single array, not an npz; {_EXPECTED}")
        with npz:  # reads every array now, so that a damaged member is reported here
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise MaferError(f"{path}: embeddings file not found; {_EXPECTED}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise MaferError(f"{path}: cannot read embeddings ({exc}); {_EXPECTED}") from None
    for key in ("models", "classes"):
        if key not in arrays or arrays[key].ndim != 1 or arrays[key].dtype.kind != "U":
            raise MaferError(f"{path}: no {key!r} entry ([M] names); {_EXPECTED}")
    classes = arrays["classes"].tolist()
    models = {}
    for model in arrays["models"].tolist():
        entry = {key.split("/", 1)[1]: value for key, value in arrays.items() if key.startswith(f"{model}/")}
        models[model] = _checked_entry(model, entry, len(classes), str(path))
    info = {key.split("/", 1)[1]: str(value) for key, value in arrays.items() if key.startswith("info/")}
    return Embeddings(models, classes, info)


# ---------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mafer.evaluate import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--resolution", default="native", help="test resolution of the faces (native, 8, 16, ...)")
    parser.add_argument("--methods", default="tsne,umap", help="projections to compute: tsne, umap (comma-separated)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the projections")
    parser.add_argument("--model", help="model name in the file (base, CR, ...; default: a paper model named "
                                        "by a folder of the checkpoint path, else the checkpoint's file name)")
    parser.add_argument("--out", required=True, type=Path, help="npz file to write")


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    features, labels = extract_features(args.dataset, args.data_dir, args.checkpoint, split=args.split,
                                        fold=args.fold, folds=args.folds, protocol=args.protocol,
                                        resolution=args.resolution, device=args.device,
                                        image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
                                        skip_bad=args.skip_bad, order=args.order)
    found = model_from_path(str(args.checkpoint))
    model = args.model or (found.label if found else args.checkpoint.stem)
    save_embeddings(args.out, project_all({model: (features, labels)}, methods, args.seed, keep_features=True),
                    dataset_info(args.dataset).classes, dataset=args.dataset, split=args.split,
                    resolution=str(args.resolution), checkpoint=str(args.checkpoint))
    print(f"{len(features)} faces, {features.shape[1]}-d features"
          + (f", projections: {', '.join(methods)}" if methods else "") + f"; wrote {args.out}")
    return 0
