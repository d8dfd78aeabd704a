"""The paper's figures: confusion matrices, t-SNE / UMAP panels and accuracy against resolution;
and the companion's: accuracy with its 95 % band, and each model's difference to base with its interval.

Every function uses colour-blind-safe colours (seaborn's "colorblind" palette for categories,
viridis for matrices), writes ``<path>.png`` and ``<path>.svg`` and returns the Figure.

Importing this module (or any of mafer) leaves matplotlib's backend alone: a notebook's or a
script's own ``plt.plot`` shows as before. The figures are drawn on a canvas of their own
(`new_figure`): a plain ``Figure`` on the non-interactive Agg canvas, unknown to pyplot, which
needs no display; only where the caller's pyplot shows figures itself (a notebook's inline
backend, or an interactive backend with interactive mode on) are they made through pyplot, so
that they show there like the caller's own.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mafer.errors import MaferError
from mafer.metrics import fold_average
from mafer.paper_models import BASE

METHOD_TITLES = {"tsne": "t-SNE", "umap": "UMAP"}
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _chosen_backend() -> str | None:
    """The backend pyplot uses, or None while none is chosen yet (asking must not choose one)."""
    params = matplotlib.rcParams
    if hasattr(params, "_get_backend_or_none"):
        return params._get_backend_or_none()
    backend = dict.__getitem__(params, "backend")
    return backend if isinstance(backend, str) else None


def _pyplot_shows_figures() -> bool:
    """True where the caller's pyplot displays new figures by itself: Jupyter's inline backend
    (ipykernel's default, with or without ``%matplotlib inline``), or a window backend with
    interactive mode on (``plt.ion()``)."""
    backend = _chosen_backend()
    if backend is None or backend.lower() in _NON_INTERACTIVE:
        return False
    if "inline" in backend:
        return True
    return "matplotlib.pyplot" in sys.modules and matplotlib.is_interactive()


def new_figure(**kwargs: Any) -> Figure:
    """A Figure for the plots here (``kwargs`` as for ``Figure``, e.g. ``figsize``).

    A plain ``Figure`` on an Agg canvas, which pyplot does not know (no backend chosen or changed,
    nothing to close, no display needed), unless the caller's pyplot shows figures by itself
    (`_pyplot_shows_figures`): then ``pyplot.figure``, so that the figure shows there as before.
    """
    if _pyplot_shows_figures():
        import matplotlib.pyplot as plt

        return plt.figure(**kwargs)
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _subplots(n_rows: int, n_cols: int, figsize: tuple[float, float], **kwargs: Any) -> tuple[Figure, Any]:
    """``pyplot.subplots`` on `new_figure`."""
    fig = new_figure(figsize=figsize)
    return fig, fig.subplots(n_rows, n_cols, **kwargs)


def _colorblind(n: int) -> list:
    """seaborn's "colorblind" palette, ``n`` RGB tuples."""
    # seaborn imported where drawn: it imports scipy.stats (seconds), which a training node's
    # process, importing this module only for its helpers, need not pay
    import seaborn as sns

    return sns.color_palette("colorblind", n)


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``<path>.png`` and ``<path>.svg`` (a ``.png``/``.svg`` suffix on ``path`` is dropped)."""
    path = Path(path)
    if path.suffix.lower() in (".png", ".svg"):
        path = path.with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    png, svg = path.with_name(path.name + ".png"), path.with_name(path.name + ".svg")
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(svg, bbox_inches="tight")
    return png, svg


def _grid(n_panels: int, n_rows: int = 1, panel_size: float = 4.0) -> tuple[Figure, np.ndarray]:
    n_cols = -(-n_panels // n_rows)
    return _subplots(n_rows, n_cols, (panel_size * n_cols, panel_size * n_rows), squeeze=False)


def plot_confusion_matrices(matrices: Mapping[str, Any], class_names: Sequence[str],
                            path: str | Path, *, title: str | None = None) -> Figure:
    """Row-normalised confusion matrices, one panel per model, side by side.

    ``matrices`` maps a model name to a count matrix ``[C, C]`` (rows = true class) or to a
    stack ``[folds, C, C]``; a stack is fold-averaged by row-normalising each fold's matrix and
    averaging them (every fold weighs the same, as in the paper's 10-fold figures).
    """
    import seaborn as sns  # see _colorblind

    if not matrices:
        raise MaferError("plot_confusion_matrices needs at least one model's matrix")
    n_classes = len(class_names)
    fig, axes = _grid(len(matrices), panel_size=0.6 * n_classes + 2.2)
    for ax, (model, matrix) in zip(axes.flat, matrices.items()):
        normalised = fold_average(matrix)
        if normalised.shape != (n_classes, n_classes):
            raise MaferError(f"confusion matrix of {model!r} is {normalised.shape[0]}x{normalised.shape[1]} "
                             f"but {n_classes} class names were given")
        sns.heatmap(normalised * 100, ax=ax, vmin=0, vmax=100, cmap="viridis", square=True,
                    annot=True, fmt=".0f", cbar=False, annot_kws={"fontsize": 8},
                    xticklabels=class_names, yticklabels=class_names)
        ax.set_title(model)
        ax.set_xlabel("Predicted expression")
        ax.set_ylabel("True expression")
        ax.tick_params(axis="x", labelrotation=45)
        ax.tick_params(axis="y", labelrotation=0)
    if title:
        fig.suptitle(f"{title} (row-normalised, %)")
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _embedding_panels(embeddings: Mapping[str, Any], methods: Sequence[str]):
    """``[(method, model, points, labels)]`` from tuples or npz-like mappings."""
    panels = []
    for model, value in embeddings.items():
        if isinstance(value, tuple):
            points, labels = value
            panels.append((None, model, points, labels))
            continue
        found = [m for m in methods if m in value]
        if not found:
            raise MaferError(f"embedding of {model!r} has none of the projections {', '.join(methods)}; "
                             f"it has {', '.join(value.keys())}")
        panels.extend((m, model, value[m], value["labels"]) for m in found)
    return panels


def plot_embeddings(embeddings: Mapping[str, Any], class_names: Sequence[str], path: str | Path, *,
                    methods: Sequence[str] = ("tsne", "umap"), title: str | None = None) -> Figure:
    """2-D projections of deep features, one panel per model (and per method), coloured by expression.

    ``embeddings`` maps a model name to ``(points [N, 2], labels [N])`` or to a mapping with
    ``labels`` and one ``[N, 2]`` array per method, as in ``mafer.embed.load_embeddings(path).models``;
    with mappings, each method in ``methods`` gets a row of panels.
    """
    panels = _embedding_panels(embeddings, methods)
    if not panels:
        raise MaferError("plot_embeddings needs at least one model's projection")
    row_methods = list(dict.fromkeys(method for method, *_ in panels))
    models = list(dict.fromkeys(model for _, model, *_ in panels))
    fig, axes = _subplots(len(row_methods), len(models), (4.0 * len(models), 4.0 * len(row_methods)),
                          squeeze=False)
    palette = _colorblind(len(class_names))
    for method, model, points, labels in panels:
        ax = axes[row_methods.index(method), models.index(model)]
        points, labels = np.asarray(points), np.asarray(labels)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
            raise MaferError(f"projection of {model!r} must be [N, 2] with N labels, "
                             f"got {points.shape} and {labels.shape}")
        for c, name in enumerate(class_names):
            chosen = labels == c
            ax.scatter(points[chosen, 0], points[chosen, 1], s=8, alpha=0.8, color=palette[c],
                       label=name, linewidths=0)
        method_name = METHOD_TITLES.get(method, method)
        ax.set_title(f"{model} — {method_name}" if method_name else model)
        ax.set_xlabel(f"{method_name or 'dimension'} 1")
        ax.set_ylabel(f"{method_name or 'dimension'} 2")
    for ax in axes.flat:
        if not ax.collections:
            ax.set_visible(False)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), title="Expression",
               markerscale=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def _resolution_order(keys) -> list[str]:
    """Numeric resolutions ascending, then ``native`` (the full-size image) last."""
    keys = [str(k) for k in keys]
    numeric = sorted((k for k in keys if k.isdigit()), key=int)
    return numeric + [k for k in keys if not k.isdigit()]


def _curve(result: Mapping[str, Any], metric: str, model: str):
    """x labels, values and error bars ``[2, n]`` (below, above) from evaluate or aggregate output."""
    try:
        per_resolution = result["resolutions"]
    except (KeyError, TypeError):
        raise MaferError(f"results of {model!r} have no 'resolutions' (expected mafer evaluate "
                         f"or mafer aggregate output)") from None
    order = _resolution_order(per_resolution)
    values, below, above = [], [], []
    for key in order:
        entry = per_resolution[key]
        value = entry[metric]
        if isinstance(value, Mapping):  # aggregate: mean and std over folds
            std = value.get("std") or 0.0
            values.append(value["mean"])
            below.append(std)
            above.append(std)
        else:
            values.append(value)
            lo, hi = entry.get("accuracy_ci", (value, value)) if metric == "accuracy" else (value, value)
            below.append(value - lo)
            above.append(hi - value)
    return order, np.array(values), np.array([below, above])


def plot_accuracy_vs_resolution(results: Mapping[str, Mapping[str, Any]], path: str | Path, *,
                                metric: str = "accuracy", title: str | None = None) -> Figure:
    """Accuracy (or another metric) against test resolution, several models on one axis.

    ``results`` maps a model name to ``mafer evaluate`` output (error bars = its bootstrap 95 %
    interval) or to an ``aggregate`` group (error bars = standard deviation over folds).
    Resolutions are ordered 8, 16, ... with ``native`` last.
    """
    if not results:
        raise MaferError("plot_accuracy_vs_resolution needs at least one model's results")
    curves = {model: _curve(result, metric, model) for model, result in results.items()}
    order = _resolution_order(dict.fromkeys(k for keys, *_ in curves.values() for k in keys))
    fig, ax = _subplots(1, 1, (6.5, 4.2))
    palette = _colorblind(len(curves))
    dodge = 0.08  # shifts the models sideways so that their error bars do not hide each other
    for i, (model, (keys, values, errors)) in enumerate(curves.items()):
        x = [order.index(k) + dodge * (i - (len(curves) - 1) / 2) for k in keys]
        ax.errorbar(x, values * 100, yerr=errors * 100, label=model, color=palette[i],
                    marker=_MARKERS[i % len(_MARKERS)], capsize=3, linewidth=1.5)
    return _finish_resolution_axes(fig, ax, order, f"{metric.replace('_', ' ').capitalize()} (%)", "Model",
                                   title, path)


def _x_labels(order: Sequence[str]) -> list[str]:
    return [k if k == "native" else f"{k} px" for k in order]


def _finish_resolution_axes(fig: Figure, ax, order: Sequence[str], ylabel: str, legend_title: str,
                            title: str | None, path: str | Path) -> Figure:
    """Resolution ticks (``8 px`` ... ``native``), labels, grid, legend and title; save and return."""
    ax.set_xticks(range(len(order)), _x_labels(order))
    ax.set_xlabel("Test resolution (shorter side)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(title=legend_title)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
    return fig


def plot_accuracy_bands(accuracies: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path, *,
                        title: str | None = None) -> Figure:
    """Accuracy against test resolution with its 95 % interval as a band, several models on one axis.

    ``accuracies``: ``{model: {resolution: {"accuracy": 0..1, "ci95": [lo, hi]}}}`` (one dataset of
    `mafer.aggregate.compare`'s ``accuracies``; the interval is over seeds x test images).
    Resolutions are ordered 8, 16, ... with ``native`` last. Draws percent.
    """
    if not accuracies:
        raise MaferError("plot_accuracy_bands needs at least one model's accuracies")
    order = _resolution_order(dict.fromkeys(k for per_res in accuracies.values() for k in per_res))
    fig, ax = _subplots(1, 1, (6.5, 4.2))
    palette = _colorblind(len(accuracies))
    for i, (model, per_res) in enumerate(accuracies.items()):
        keys = [k for k in order if k in per_res]
        x = [order.index(k) for k in keys]
        mean = np.array([per_res[k]["accuracy"] for k in keys]) * 100
        low, high = (np.array([per_res[k]["ci95"][j] for k in keys]) * 100 for j in (0, 1))
        ax.plot(x, mean, label=model, color=palette[i], marker=_MARKERS[i % len(_MARKERS)], linewidth=1.5)
        ax.fill_between(x, low, high, color=palette[i], alpha=0.2, linewidth=0)
    return _finish_resolution_axes(fig, ax, order, "Accuracy (%)", "Model (band: 95 % interval)", title, path)


def plot_differences(comparisons: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]], path: str | Path, *,
                     datasets: Sequence[str] | None = None, base: str = BASE.label,
                     titles: Mapping[str, str] | None = None) -> Figure:
    """Each model's accuracy minus ``base`` with its 95 % interval at each test resolution, one panel per dataset.

    ``comparisons``: ``{model: {dataset: {resolution: {"diff", "ci95": [lo, hi], ...}}}}`` (0..1, the
    content of ``comparisons.json``); drawn in percentage points around a zero line. ``datasets``
    picks and orders the panels (default: every dataset found).
    """
    found = list(dict.fromkeys(d for per_dataset in comparisons.values() for d in per_dataset))
    datasets = [d for d in (datasets or found) if d in found]
    if not datasets:
        raise MaferError("plot_differences needs at least one comparison (comparisons.json is empty)")
    fig, axes = _subplots(1, len(datasets), (4.6 * len(datasets), 3.8), squeeze=False, sharey=True)
    palette = _colorblind(len(comparisons) + 1)[1:]  # colour 0 is base's in the other plots
    dodge = 0.1
    for ax, dataset in zip(axes.flat, datasets):
        order = _resolution_order(dict.fromkeys(k for m in comparisons.values() for k in m.get(dataset, {})))
        models = [m for m in comparisons if dataset in comparisons[m]]
        for i, model in enumerate(models):
            per_res = comparisons[model][dataset]
            keys = [k for k in order if k in per_res]
            x = [order.index(k) + dodge * (i - (len(models) - 1) / 2) for k in keys]
            diff = np.array([per_res[k]["diff"] for k in keys]) * 100
            low, high = (np.array([per_res[k]["ci95"][j] for k in keys]) * 100 for j in (0, 1))
            ax.errorbar(x, diff, yerr=[diff - low, high - diff], label=model,
                        color=palette[list(comparisons).index(model)], marker=_MARKERS[(i + 1) % len(_MARKERS)],
                        capsize=3, linestyle="none")
        ax.axhline(0.0, color="black", linewidth=1)
        ax.set_xticks(range(len(order)), _x_labels(order))
        ax.set_xlabel("Test resolution (shorter side)")
        ax.set_title((titles or {}).get(dataset, dataset))
        ax.grid(True, alpha=0.3)
    axes.flat[0].set_ylabel(f"Accuracy minus {base}'s (points)")
    axes.flat[0].legend(title="Model (bar: 95 % interval)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    return fig
