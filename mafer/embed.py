"""Deep features of a dataset and their 2-D t-SNE / UMAP projections (``mafer embed``).

The features are the network's pooled 2048-d vectors (``model.forward_features``), computed on
the test faces at one resolution (lowered as in step 1, or native), as in the paper's t-SNE
figure. The npz written holds ``features [N, D]``, ``labels [N]``, ``classes``, one ``[N, 2]``
array per projection method, and ``dataset``, ``split``, ``resolution``, ``checkpoint``.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np

from mafer.datasets import dataset_info
from mafer.errors import MaferError
from mafer.evaluate import (
    LoweredEvalTransform,
    add_data_arguments,
    check_classes,
    checkpoint_image_size,
    default_workers,
    limited,
    load_classifier,
    make_loader,
    open_test_data,
    parse_resolutions,
    run_model,
)
from mafer.device import pick_device

METHODS = ("tsne", "umap")
MIN_POINTS = 4  # below this neither t-SNE's perplexity nor UMAP's neighbourhood is meaningful


def extract_features(dataset: str, data_dir: str | os.PathLike, checkpoint: str | os.PathLike,
                     split: str = "test", fold: int | None = None, folds: int = 10, protocol: str = "image",
                     resolution: str | int = "native", device: str = "auto", image_size: int | None = None,
                     batch_size: int = 64, workers: int | None = None,
                     skip_bad: bool = False, max_images: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled features ``[N, D]`` (float32) and labels ``[N]`` (int64) of ``split`` at ``resolution``.

    With ``skip_bad`` unreadable images are left out (see ``mafer.evaluate.open_test_data``);
    ``max_images`` keeps that many, every class in turn (``mafer.evaluate.class_interleaved``).
    """
    (resolution,) = parse_resolutions([resolution])
    dev = pick_device(device)
    model, meta = load_classifier(checkpoint, dev, dataset)
    data = open_test_data(dataset, data_dir, split, fold, folds, protocol, skip_bad)
    check_classes(meta, data, checkpoint)
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


# ---------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--resolution", default="native", help="test resolution of the faces (native, 8, 16, ...)")
    parser.add_argument("--methods", default="tsne,umap", help="projections to compute: tsne, umap (comma-separated)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the projections")
    parser.add_argument("--out", required=True, type=Path, help="npz file to write")


def run(args: argparse.Namespace) -> int:
    methods = parse_methods(args.methods)
    features, labels = extract_features(args.dataset, args.data_dir, args.checkpoint, split=args.split,
                                        fold=args.fold, folds=args.folds, protocol=args.protocol,
                                        resolution=args.resolution, device=args.device,
                                        image_size=args.image_size, batch_size=args.batch_size, workers=args.workers,
                                        skip_bad=args.skip_bad)
    projections = {method: project(features, method, args.seed) for method in methods}
    classes = list(dataset_info(args.dataset).classes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "wb") as f:  # a file object keeps np.savez from appending .npz to the name
        np.savez_compressed(f, features=features, labels=labels, classes=np.array(classes),
                            dataset=np.array(args.dataset), split=np.array(args.split),
                            resolution=np.array(str(args.resolution)), checkpoint=np.array(str(args.checkpoint)),
                            **projections)
    print(f"{len(features)} faces, {features.shape[1]}-d features"
          + (f", projections: {', '.join(methods)}" if methods else "") + f"; wrote {args.out}")
    return 0
