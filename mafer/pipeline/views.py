"""What the companion notebooks show that is not a paper figure: data overviews, training
curves, the results tables beside the paper's. The files they read and write belong to
`mafer.aggregate` (``summary.json``, ``comparisons.json``) and `mafer.embed` (embeddings).

Each notebook cell calls one of these (or a function of `mafer.figures`) so that the
notebooks stay narrative. Figures are saved as PNG+SVG (`mafer.figures.save_figure`) and
returned for display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mafer.aggregate import accuracy_summary, comparison_sentence, detectable
from mafer.datasets import DATASETS, get_dataset
from mafer.datasets.info import STEP2_DATASETS
from mafer.errors import MaferError
from mafer.figures import plot_embeddings, save_figure
from mafer.paper_models import BASE, BY_KEY, MODELS

def _dataset(name: str, data_dir: str | Path, split: str, folds: int, protocol: str, fold: int | None = 1):
    if DATASETS[name].has_folds:
        return get_dataset(name, data_dir, split, fold=fold, folds=folds, protocol=protocol)
    return get_dataset(name, data_dir, split)


def class_counts(data_dir: str | Path, datasets: Sequence[str], *, folds: int = 10,
                 protocol: str = "image") -> dict[str, pd.DataFrame]:
    """Images per class and split, one table per dataset (Oulu-CASIA: fold 1 of ``folds``)."""
    tables = {}
    for name in datasets:
        columns = {split: _dataset(name, data_dir, split, folds, protocol).class_counts()
                   for split in DATASETS[name].splits}
        table = pd.DataFrame(columns)
        table.loc["total"] = table.sum()
        tables[name] = table
    return tables


def plot_class_counts(tables: Mapping[str, pd.DataFrame], path: str | Path) -> Figure:
    """Bar charts of the images per class and split, one panel per dataset."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 3.6), squeeze=False)
    for ax, (name, table) in zip(axes.flat, tables.items()):
        table.drop(index="total").plot.bar(ax=ax, width=0.8)
        ax.set_title(name)
        ax.set_ylabel("images")
        ax.tick_params(axis="x", labelrotation=45)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _examples(dataset, per_class: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    targets = np.asarray(dataset.targets)
    picks = []
    for c in range(len(dataset.classes)):
        members = np.flatnonzero(targets == c)
        picks.append(sorted(rng.choice(members, size=min(per_class, len(members)), replace=False).tolist()))
    return picks


def plot_face_grid(data_dir: str | Path, dataset: str, path: str | Path, *, per_class: int = 5,
                   split: str = "train", seed: int = 0, folds: int = 10, protocol: str = "image") -> Figure:
    """A few training faces of every class (one row per class), as stored on disk."""
    ds = _dataset(dataset, data_dir, split, folds, protocol)
    picks = _examples(ds, per_class, seed)
    fig, axes = plt.subplots(len(picks), per_class, figsize=(1.3 * per_class, 1.3 * len(picks)), squeeze=False)
    for row, (name, indices) in enumerate(zip(ds.classes, picks)):
        for col in range(per_class):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col < len(indices):
                ax.imshow(ds[indices[col]][0].permute(1, 2, 0).numpy())
            else:
                ax.set_visible(False)
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{dataset} ({split}): {per_class} faces per class")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_face_at_resolutions(data_dir: str | Path, dataset: str, resolutions: Sequence[int | str],
                             image_size: int, path: str | Path, *, index: int = 0, split: str = "test",
                             folds: int = 10, protocol: str = "image", title: str | None = None) -> Figure:
    """One face as the network receives it at each test resolution.

    Exactly the evaluation's input (`mafer.evaluate.LoweredEvalTransform`): the stored face is
    lowered to ``r`` (shorter side, antialiased bilinear) and brought back up, then goes
    through the dataset's eval transform to ``image_size``.
    """
    from mafer.evaluate import LoweredEvalTransform

    ds = _dataset(dataset, data_dir, split, folds, protocol)
    image, label = ds[index]
    keys = [str(r) for r in resolutions]
    fig, axes = plt.subplots(1, len(keys), figsize=(1.8 * len(keys), 2.2), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        shown = LoweredEvalTransform(dataset, image_size, key if key == "native" else int(key))(image)
        ax.imshow(shown.permute(1, 2, 0).numpy())
        ax.set_title("native" if key == "native" else f"{key} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{dataset}: a '{ds.classes[label]}' face at every test resolution "
                          f"({image_size} px network input)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def read_metrics_log(run_dir: str | Path) -> pd.DataFrame:
    """The run's ``metrics.jsonl`` (one JSON object per line) as a table."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise MaferError(f"{path}: metrics log not found; expected a finished training run") from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise MaferError(f"{path}:{number}: not a JSON line ({exc})") from None
    return pd.DataFrame(rows)


def plot_training_curves(run_dir: str | Path, path: str | Path) -> Figure:
    """Training loss and every validation metric of a run against the optimizer step."""
    log = read_metrics_log(run_dir)
    step = "step" if "step" in log else log.columns[0]
    numeric = [c for c in log.columns if c != step and pd.api.types.is_numeric_dtype(log[c])]
    losses = [c for c in numeric if "loss" in c]
    scores = [c for c in numeric if "acc" in c]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, columns, ylabel in ((axes[0], losses, "loss"), (axes[1], scores, "accuracy")):
        for column in columns:
            values = log[[step, column]].dropna()
            ax.plot(values[step], values[column], marker="o" if len(values) < 30 else None, label=column)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if columns:
            ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def resolution_table(summary: Mapping[str, Mapping[str, Mapping[str, float]]], dataset: str) -> pd.DataFrame:
    """Accuracy (percent) of every model on ``dataset`` at every test resolution (native last)."""
    table = pd.DataFrame({model: {res: acc * 100 for res, acc in per_dataset[dataset].items()}
                          for model, per_dataset in summary.items() if dataset in per_dataset}).T
    numeric = sorted((c for c in table.columns if c.isdigit()), key=int)
    return table[numeric + [c for c in table.columns if not c.isdigit()]].round(2)


def lowest_resolution(resolutions: Iterable[str | int]) -> str:
    """The lowest numeric resolution among ``resolutions`` ("native" if there is none)."""
    numeric = sorted((str(r) for r in resolutions if str(r).isdigit()), key=int)
    return numeric[0] if numeric else "native"


def glue_accuracies(summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> pd.DataFrame:
    """Glue every accuracy (percent, 2 decimals) as ``acc_<model>_<dataset>_<resolution>`` and
    each step-1 model's gain over base as ``gain_<model>_<dataset>_<resolution>``, for the book's
    prose (``{glue:text}`` roles); ``<model>`` is the model's key in `mafer.paper_models.MODELS`
    (``cr_simplified``). Returns them."""
    from myst_nb import glue

    slug = {m.label: m.key for m in MODELS}
    rows = []
    for model, per_dataset in summary.items():
        for dataset, accs in per_dataset.items():
            for res, acc in accs.items():
                name = f"{slug.get(model, model)}_{dataset}_{res}"
                glue(f"acc_{name}", f"{100 * acc:.2f}", display=False)
                base = summary.get(BASE.label, {}).get(dataset, {}).get(res)
                gain = None if base is None or model == BASE.label else 100 * (acc - base)
                if gain is not None:
                    glue(f"gain_{name}", f"{gain:+.2f}", display=False)
                rows.append({"model": model, "dataset": dataset, "resolution": res,
                             "accuracy (%)": round(100 * acc, 2), "gain over base (points)": gain})
    for name, text in missing_book_numbers(summary).items():
        glue(name, text, display=False)
    return pd.DataFrame(rows)


# The resolutions and datasets the book's prose quotes by name (book/*.md glue roles).
BOOK_RESOLUTIONS = ("native", "8")
BOOK_DATASETS = STEP2_DATASETS


def missing_book_numbers(summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, str]:
    """For each ``acc_``/``gain_`` number the book quotes that this run lacks (a profile without a
    dataset or without 8 px), the words the page shows instead, saying why."""
    datasets = {d for per_dataset in summary.values() for d in per_dataset}
    resolutions = {r for per_dataset in summary.values() for accs in per_dataset.values() for r in accs}
    missing = {}
    for slug, model in ((m.key, m.label) for m in MODELS):
        for dataset in BOOK_DATASETS:
            for res in BOOK_RESOLUTIONS:
                if res in summary.get(model, {}).get(dataset, {}):
                    continue
                if dataset not in datasets:
                    why = f"n/a: this run has no {dataset}"
                elif res not in resolutions:
                    why = f"n/a: this run tests no {res} px faces"
                else:
                    why = f"n/a: this run has no {model} result here"
                name = f"{slug}_{dataset}_{res}"
                missing[f"acc_{name}"] = why
                if model != BASE.label:
                    missing[f"gain_{name}"] = why
    return missing



def interval_table(accuracies: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
                   dataset: str) -> pd.DataFrame:
    """``mean [lo, hi]`` (percent, 95 % interval over seeds x images) of every model on ``dataset``
    (rows) at every test resolution (columns, native last)."""
    table = pd.DataFrame({model: {res: f"{100 * e['accuracy']:.1f} [{100 * e['ci95'][0]:.1f}, "
                                       f"{100 * e['ci95'][1]:.1f}]" for res, e in per_dataset[dataset].items()}
                          for model, per_dataset in accuracies.items() if dataset in per_dataset}).T
    numeric = sorted((c for c in table.columns if c.isdigit()), key=int)
    return table[numeric + [c for c in table.columns if not c.isdigit()]]


def comparison_verdict(comparisons: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]], resolution: str,
                       datasets: Sequence[str] = ("fer2013", "rafdb"),
                       models: Sequence[str] = (BY_KEY["cr"].label, BY_KEY["cr_simplified"].label)) -> str:
    """The paper's claim checked on this run, from ``comparisons.json``: one sentence per model
    and dataset at ``resolution`` (`mafer.aggregate.comparison_sentence`: better / worse than
    base, or no difference detectable, with the difference and its 95 % interval)."""
    sentences = [comparison_sentence(model, dataset, resolution, comparisons[model][dataset][resolution])
                 for model in models for dataset in datasets
                 if resolution in comparisons.get(model, {}).get(dataset, {})]
    if not sentences:
        return "This run has no paired comparison with base to report."
    return ". ".join(s[0].upper() + s[1:] for s in sentences) + "."


def detectable_summary(comparisons: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]) -> str:
    """Where this run detects a difference to base (95 % interval excluding 0), in words."""
    found = detectable(comparisons)
    if not found:
        return ("No difference to base is detectable in this run: at every resolution, on every dataset, "
                "the 95 % interval of every model's difference holds 0.")
    return "Detectable differences (95 % interval excluding 0): " + "; ".join(
        comparison_sentence(*item) for item in found) + "."


def data_note(profile: str, synthetic: bool, cap: str | None = None, released: bool = False) -> str:
    """The sentence that says where the numbers below come from (``cap``: mafer reproduce --cap;
    ``released``: the run tested the authors' released checkpoints and trained nothing)."""
    if cap:
        return (f"> **A capped run: these numbers mean nothing** (profile `{profile}`, made with "
                f"`mafer reproduce --cap {cap}`): every node of the profile ran for real, with its network, "
                "input size, weights and test resolutions, but for a few optimizer steps and a few test "
                "images. It checks that the whole graph runs, not what it measures.")
    if synthetic:
        return (f"> **These numbers come from synthetic data** (profile `{profile}`): faces drawn by "
                "`mafer synth` and a tiny network trained for minutes on a CPU. They show whether the "
                "paper's *effect* appears, not the paper's accuracies; the paper's numbers are for "
                "SE-ResNet-50 on the real datasets.")
    if released:
        return (f"> **The authors' released checkpoints** (profile `{profile}`): nothing was trained in this run; "
                "the numbers are the released networks tested here" + (" on synthetic data, so they mean nothing"
                                                                       if synthetic else " on the real datasets") + ".")
    return f"> Numbers from the real datasets (profile `{profile}`)."


def checkpoint_table(checkpoints: Mapping[str, Mapping[str, Mapping[str, str]]]) -> pd.DataFrame:
    """One row per checkpoint file of ``{dataset: {model: {run: checkpoint}}}``: dataset, model, run
    (``standard`` or ``fold<k>``), file, size (MB), SHA-256 (first 12 hex digits), the file's
    format (`mafer.models.weights`) and what it records of its training: epoch and best validation
    accuracy (the authors' ``epoch`` / ``best_acc``), training seed (ours). MaferError naming a
    file that is not a checkpoint."""
    import hashlib

    from mafer.models.weights import read_weight_file

    rows = []
    for dataset, per_model in checkpoints.items():
        for model, runs in per_model.items():
            for run, checkpoint in runs.items():
                path = Path(checkpoint)
                digest = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                weights = read_weight_file(path)
                meta, metrics = weights.meta, weights.meta.get("metrics") or {}  # metrics: ours, at the best step
                rows.append({"dataset": dataset, "model": model, "run": run, "file": str(path),
                             "MB": round(path.stat().st_size / 2**20, 1), "sha256": digest.hexdigest()[:12],
                             "format": weights.format, "epoch": meta.get("epoch", metrics.get("epoch")),
                             "best validation accuracy": meta.get("best_acc", metrics.get("acc")),
                             "seed": (meta.get("config") or {}).get("seed")})
    return pd.DataFrame(rows)


def accuracy_table(aggregated: Mapping[str, Any], dataset: str, bn_recalibrated: bool = False) -> pd.DataFrame:
    """Test accuracy (percent, fold mean) of every model on ``dataset`` (rows) at every resolution;
    with ``bn_recalibrated`` that of the BatchNorm diagnostic (`mafer.evaluate.bn_recalibrated`)."""
    return resolution_table(accuracy_summary(aggregated, bn_recalibrated=bn_recalibrated), dataset)


def plot_embeddings_file(path: str | Path, fig_path: str | Path, *, title: str | None = None) -> Figure:
    """Draw an embeddings file (`mafer.embed.load_embeddings`: written by ``mafer embed`` or by
    notebooks/embeddings.ipynb): every model's projections, coloured by the classes the file
    names (`mafer.figures.plot_embeddings`). MaferError naming the file if it is not one."""
    from mafer.embed import load_embeddings

    embeddings = load_embeddings(path)
    what = " ".join(embeddings.info[k] for k in ("dataset", "split") if k in embeddings.info)
    return plot_embeddings(embeddings.models, embeddings.classes, fig_path,
                           title=title or f"{what or Path(path).stem} features")


def cluster_scores(features: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> pd.DataFrame:
    """Silhouette score of the expression labels (cosine distance) in each model's feature space."""
    from sklearn.metrics import silhouette_score

    scores = {}
    for model, (feats, labels) in features.items():
        ok = len(np.unique(labels)) > 1 and len(labels) > len(np.unique(labels))
        scores[model] = float(silhouette_score(feats, labels, metric="cosine")) if ok else float("nan")
    return pd.DataFrame({"silhouette": scores})
