"""Fold means, standard deviations and the paper's results table from ``mafer evaluate`` files.

Metrics files are grouped by (model, dataset, split, protocol). Within a group every file is
one fold (or one repeated run): each metric gets its mean, sample standard deviation
(``ddof=1``; ``None`` for a single file) and the per-file values, per test resolution.
Confusion matrices are summed (counts) and fold-averaged (mean of row-normalised matrices).

The results table follows the paper's layout: rows = models (the paper's, in the order of
`mafer.paper_models.MODELS`, then any other label), columns = FER2013 acc, RAF-DB overall acc, RAF-DB average
(per-class) acc, Oulu-CASIA k-fold acc (k: the folds our run averages; the paper's are 10), all
in percent. ``PAPER_RESULTS`` holds the numbers the paper reports, for side-by-side tables.

Repeated runs (training seeds) of a fold are files of the same group too. `compare` pairs the
per-image predictions the files hold (``mafer evaluate`` stores them) over the same test images
and seeds: each model's accuracy with a 95 % interval over seeds x images, and each model's
difference to base with its interval and p-value (`mafer.stats`); `comparison_sentence` says it
in words.

This module owns the files the pipeline's results node writes (read them with the functions
named; every accuracy and difference on the 0..1 scale, resolutions as strings: ``"native"``,
``"8"``, ...; models by their paper label):

- ``summary.json`` (`write_summary` / `read_summary`): ``{model: {dataset: {resolution:
  accuracy}}}``, the test accuracy averaged over folds and seeds (Oulu-CASIA: folds over images).
- ``accuracies.json`` and ``comparisons.json`` (`write_paired`, contents from `compare`):
  ``{model: {dataset: {resolution: {"accuracy", "ci95": [lo, hi], "n_seeds", "n_images"}}}}`` and
  ``{model: {dataset: {resolution: {"diff", "ci95": [lo, hi], "p", "n_seeds", "n_images",
  "method"}}}}`` (every model but base).

``mafer aggregate --out FILE`` writes another file, the full `aggregate` output plus the table.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mafer.datasets.info import DATASETS
from mafer.errors import MaferError
from mafer.metrics import SCALAR_METRICS, fold_average
from mafer.paper_models import BASE, LABELS, model_from_path


# Oulu-CASIA protocols whose folds are drawn over images, as the paper's: ours stratified, or the
# authors' exact rule (`mafer.datasets.oulucasia`). Either is the paper's column.
IMAGE_PROTOCOLS = ("image", "authors")
# (dataset, metric, protocols, column title); protocols matter for Oulu-CASIA only.
COLUMNS: tuple[tuple[str, str, tuple[str, ...] | None, str], ...] = (
    ("fer2013", "accuracy", None, "FER2013 acc"),
    ("rafdb", "accuracy", None, "RAF-DB overall acc"),
    ("rafdb", "mean_class_accuracy", None, "RAF-DB average acc"),
    ("oulucasia", "accuracy", IMAGE_PROTOCOLS, "Oulu-CASIA {k}-fold acc"),
)
SUBJECT_COLUMN = ("oulucasia", "accuracy", ("subject",), "Oulu-CASIA subject {k}-fold acc")
PAPER_FOLDS = 10  # {k} in a title: the paper's rows are 10-fold, ours say how many folds they average

# The paper's table (percent, as printed), as (mean, std); std None where the paper gives none.
PAPER_RESULTS: dict[str, dict[str, tuple[float, float | None]]] = {
    "base": {"FER2013 acc": (60.82, None), "RAF-DB overall acc": (77.09, None),
             "RAF-DB average acc": (65.39, 0.10), "Oulu-CASIA 10-fold acc": (59.84, 1.29)},
    "CR": {"FER2013 acc": (73.06, None), "RAF-DB overall acc": (88.43, None),
           "RAF-DB average acc": (81.90, 0.04), "Oulu-CASIA 10-fold acc": (98.40, 0.11)},
    "CR-Simplified": {"FER2013 acc": (72.33, None), "RAF-DB overall acc": (88.14, None),
                      "RAF-DB average acc": (83.16, 0.03), "Oulu-CASIA 10-fold acc": (96.72, 0.24)},
    "CR+AffWild2": {"FER2013 acc": (73.45, None), "RAF-DB overall acc": (88.07, None),
                    "RAF-DB average acc": (82.40, 0.04), "Oulu-CASIA 10-fold acc": (98.95, 0.15)},
}

# ---------------------------------------------------------------------------------- loading

def load_metrics(path: str | Path) -> dict:
    """Read one ``mafer evaluate`` JSON file; MaferError naming the file if it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MaferError(f"{path}: metrics file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MaferError(f"{path}: not a JSON metrics file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("resolutions"), dict) or "dataset" not in data:
        raise MaferError(f"{path}: expected `mafer evaluate` output with keys 'dataset' and 'resolutions'")
    for key, entry in data["resolutions"].items():
        missing = [m for m in SCALAR_METRICS if m not in entry]
        if missing:
            raise MaferError(f"{path}: resolution {key!r} lacks {', '.join(missing)}")
    return data


def parse_labels(items: Iterable[str]) -> dict[str, str]:
    """``["PATTERN=NAME", ...]`` (from ``--label``) as a dict, in order."""
    labels = {}
    for item in items:
        pattern, sep, name = item.rpartition("=")
        if not sep or not pattern or not name:
            raise MaferError(f"--label {item!r}: expected PATTERN=NAME, e.g. 'runs/cr/*=CR'")
        labels[pattern] = name
    return labels


def model_label(path: str | Path, metrics: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """Which model a metrics file belongs to.

    In order: the first ``labels`` pattern (glob or substring) matching the metrics file's path
    or its checkpoint path; the file's ``model`` key (``mafer evaluate --model``); a folder of
    the checkpoint path (deepest first), then of the metrics path, named like a paper model
    (`mafer.paper_models.model_from_path`: ``cr``, ``cr_simplified``, ``CR+AffWild2``,
    ``base-fold3``, ``rafdb_cr``...).
    """
    candidates = [str(path), str(metrics.get("checkpoint", ""))]
    for pattern, name in (labels or {}).items():
        if any(fnmatch.fnmatch(c, pattern) or pattern in c for c in candidates):
            return name
    if metrics.get("model"):
        return str(metrics["model"])
    found = model_from_path(str(Path(str(metrics.get("checkpoint", ""))).parent)) or model_from_path(str(path))
    if found:
        return found.label
    raise MaferError(f"{path}: cannot tell which model these metrics belong to; pass "
                     f"`--label PATTERN=NAME` to aggregate or `--model NAME` to evaluate")


# ---------------------------------------------------------------------------------- grouping

def _spread(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else None,
            "values": [float(v) for v in values]}


def summarize_group(files: Sequence[tuple[str, Mapping[str, Any]]]) -> dict:
    """Mean/std per metric and resolution over the files of one (model, dataset) group."""
    first_path, first = files[0]
    for path, metrics in files[1:]:
        if metrics.get("classes") != first.get("classes"):
            raise MaferError(f"{path}: classes {metrics.get('classes')} differ from {first_path}'s "
                             f"{first.get('classes')}; cannot average them")
    folds = [m.get("fold") for _, m in files]
    seeds = [seed_label(m) for _, m in files]
    seen: dict[Any, str] = {}
    for (path, _), fold, seed in zip(files, folds, seeds):
        if fold is not None and (fold, seed) in seen:
            raise MaferError(f"{path}: fold {fold}" + ("" if seed is None else f", seed {seed},")
                             + f" appears twice (also in {seen[fold, seed]})")
        seen[fold, seed] = path
    keys = list(dict.fromkeys(k for _, m in files for k in m["resolutions"]))
    resolutions = {}
    for key in keys:
        entries = [m["resolutions"][key] for _, m in files if key in m["resolutions"]]
        summary = {metric: _spread([e[metric] for e in entries]) for metric in SCALAR_METRICS}
        adapted = [e["bn_recalibrated"] for e in entries if "bn_recalibrated" in e]
        if adapted and len(adapted) == len(entries):  # the diagnostic of `mafer.evaluate.bn_recalibrated`
            summary["bn_recalibrated"] = {metric: _spread([a[metric] for a in adapted]) for metric in SCALAR_METRICS}
        summary["n"] = int(sum(e.get("n", 0) for e in entries))
        summary["runs"] = len(entries)
        matrices = [e["confusion_matrix"] for e in entries if "confusion_matrix" in e]
        if len(matrices) == len(entries):
            summary["confusion_matrix"] = np.sum(matrices, axis=0).tolist()
            summary["confusion_matrix_fold_average"] = fold_average(matrices).tolist()
        resolutions[key] = summary
    return {"files": [p for p, _ in files], "folds": folds, "seeds": seeds, "classes": first.get("classes"),
            "resolutions": resolutions}


def _model_order(name: str) -> tuple[int, str]:
    return (LABELS.index(name), "") if name in LABELS else (len(LABELS), name)


def aggregate(paths: Sequence[str | Path], labels: Mapping[str, str] | None = None) -> dict:
    """Group metrics files by (model, dataset, split, protocol) and summarise each group.

    Returns ``{"groups": [{"model", "dataset", "split", "protocol", "files", "folds", "classes",
    "resolutions": {res: {metric: {"mean", "std", "values"}, "n", "runs", "confusion_matrix",
    "confusion_matrix_fold_average"}}}]}``, models in the paper's order.
    """
    grouped = group_files(paths, labels)
    groups = []
    for (model, dataset, split, protocol), files in grouped.items():
        groups.append({"model": model, "dataset": dataset, "split": split, "protocol": protocol,
                       **summarize_group(files)})
    return {"groups": groups}


def group_files(paths: Sequence[str | Path], labels: Mapping[str, str] | None = None
                ) -> dict[tuple[str, str, str, str], list[tuple[str, dict]]]:
    """Read metrics files into ``{(model, dataset, split, protocol): [(path, metrics), ...]}``,
    models in the paper's order."""
    if not paths:
        raise MaferError("aggregate needs at least one metrics file")
    grouped: dict[tuple, list[tuple[str, dict]]] = {}
    for path in paths:
        metrics = load_metrics(path)
        key = (model_label(path, metrics, labels), metrics["dataset"], metrics.get("split", "test"),
               metrics.get("protocol") or "image")
        grouped.setdefault(key, []).append((str(path), metrics))
    return {key: grouped[key] for key in sorted(grouped, key=lambda k: (_model_order(k[0]), k[1:]))}


def seed_label(metrics: Mapping[str, Any]) -> str | None:
    """The training seed(s) of a metrics file: ``"<step-1 seed>-<step-2 seed>"`` from the pipeline's
    ``seeds`` entry, else the checkpoint's ``seed`` (``mafer evaluate``), else None."""
    seeds = metrics.get("seeds")
    if isinstance(seeds, Mapping) and seeds:
        return "-".join(str(seeds[k]) for k in sorted(seeds))
    return None if metrics.get("seed") is None else str(metrics["seed"])


# ---------------------------------------------------------------------------------- summary.json

def accuracy_summary(aggregated: Mapping[str, Any], split: str = "test",
                     bn_recalibrated: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """``{model: {dataset: {resolution: accuracy}}}`` (mean over folds and seeds, 0..1, 6 decimals)
    from `aggregate` output, ``split`` split only; Oulu-CASIA is the k-fold mean of a protocol of
    `IMAGE_PROTOCOLS` (the paper's). With ``bn_recalibrated`` the accuracies of the BatchNorm
    diagnostic (``mafer evaluate --bn-recalibrated``; not the paper's protocol), where the files have it."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for group in aggregated["groups"]:
        if group["split"] != split or (group["dataset"] == "oulucasia" and group["protocol"] not in IMAGE_PROTOCOLS):
            continue
        entries = {str(res): entry.get("bn_recalibrated") if bn_recalibrated else entry
                   for res, entry in group["resolutions"].items()}
        accuracies = {res: round(entry["accuracy"]["mean"], 6) for res, entry in entries.items() if entry}
        if accuracies:
            summary.setdefault(group["model"], {})[group["dataset"]] = accuracies
    return summary


def _write_json(path: str | Path, content: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_summary(aggregated: Mapping[str, Any], path: str | Path) -> dict:
    """Write ``summary.json`` (`accuracy_summary` of ``aggregated``) and return its content."""
    summary = accuracy_summary(aggregated)
    _write_json(path, summary)
    return summary


def read_summary(path: str | Path) -> dict[str, dict[str, dict[str, float]]]:
    """Read a ``summary.json`` (`write_summary`); MaferError naming the file and the first entry
    that is not ``{model: {dataset: {resolution: accuracy in 0..1}}}``."""
    path = Path(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MaferError(f"{path}: summary not found; expected the summary.json of a finished `mafer reproduce` "
                         "run") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MaferError(f"{path}: not a JSON summary ({exc})") from None
    expected = "expected {model: {dataset: {resolution: accuracy in 0..1}}}"
    if not isinstance(summary, dict):
        raise MaferError(f"{path}: {expected}, got a {type(summary).__name__}")
    for model, per_dataset in summary.items():
        if not isinstance(per_dataset, dict):
            raise MaferError(f"{path}: entry {model!r}: {expected}")
        for dataset, per_res in per_dataset.items():
            if not isinstance(per_res, dict):
                raise MaferError(f"{path}: entry {model!r}/{dataset!r}: {expected}")
            for res, acc in per_res.items():
                if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 1:
                    raise MaferError(f"{path}: entry {model!r}/{dataset!r}/{res!r} = {acc!r}: {expected}")
    return summary


def write_paired(paths: Sequence[str | Path], comparisons_path: str | Path, accuracies_path: str | Path,
                 labels: Mapping[str, str] | None = None) -> dict[str, dict]:
    """`compare` the metrics files ``paths``; write ``comparisons.json`` and ``accuracies.json``
    (schemas in the module docstring) and return both (``{"comparisons", "accuracies"}``)."""
    paired = compare(paths, labels)
    _write_json(comparisons_path, paired["comparisons"])
    _write_json(accuracies_path, paired["accuracies"])
    return paired


# ---------------------------------------------------------------------------------- paired statistics



def _runs_by_fold(files: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[Any, list[tuple[str, Mapping]]]:
    """The group's files per fold (None first, then by number), each fold's runs sorted by seed."""
    by_fold: dict[Any, list[tuple[str, Mapping]]] = {}
    for path, metrics in files:
        by_fold.setdefault(metrics.get("fold"), []).append((path, metrics))
    order = sorted(by_fold, key=lambda f: (f is not None, f if f is not None else 0))
    return {fold: sorted(by_fold[fold], key=lambda pm: (seed_label(pm[1]) or "", pm[0])) for fold in order}


def _predictions(path: str, metrics: Mapping[str, Any], resolution: str) -> tuple[np.ndarray, np.ndarray]:
    labels = metrics.get("labels")
    predictions = metrics["resolutions"].get(resolution, {}).get("predictions")
    if labels is None or predictions is None:
        raise MaferError(f"{path}: no per-image predictions at resolution {resolution!r}; evaluate the "
                         "checkpoint again with this version of `mafer evaluate`, which stores them")
    if len(labels) != len(predictions):
        raise MaferError(f"{path}: {len(predictions)} predictions at resolution {resolution!r} for "
                         f"{len(labels)} labels; expected one per test image")
    return np.asarray(labels), np.asarray(predictions)


def correctness(files: Sequence[tuple[str, Mapping[str, Any]]], resolution: str,
                reference: Sequence[tuple[str, Mapping[str, Any]]] | None = None) -> np.ndarray:
    """Per-image correctness ``[k, n]`` (float 0/1) of one group's files at ``resolution``.

    Rows are the seeds (sorted by seed label), columns the test images of every fold side by
    side (folds in order). Every fold must have the same number of seeds. With ``reference``
    (the files of the model compared with) the folds, seed counts and test labels must match
    it, image for image; MaferError naming the file otherwise.
    """
    runs = _runs_by_fold(files)
    other = _runs_by_fold(reference) if reference is not None else None
    if other is not None and list(runs) != list(other):
        raise MaferError(f"{files[0][0]}: folds {list(runs)} differ from {reference[0][0]}'s {list(other)}; "
                         "a paired comparison needs the same test images")
    counts = {fold: len(r) for fold, r in runs.items()}
    if len(set(counts.values())) > 1:
        raise MaferError(f"{files[0][0]}: runs per fold differ ({counts}); expected the same seeds on every fold")
    columns = []
    for fold, fold_runs in runs.items():
        if other is not None and len(other[fold]) != len(fold_runs):
            raise MaferError(f"{fold_runs[0][0]}: {len(fold_runs)} seed(s) against {len(other[fold])} in "
                             f"{other[fold][0][0]}; a paired comparison needs as many seeds for both models")
        rows = []
        for i, (path, metrics) in enumerate(fold_runs):
            labels, predictions = _predictions(path, metrics, resolution)
            if other is not None:
                ref_path, ref_metrics = other[fold][i]
                ref_labels = np.asarray(ref_metrics.get("labels"))
                if not np.array_equal(labels, ref_labels):
                    raise MaferError(f"{path}: its test labels differ from {ref_path}'s; a paired comparison "
                                     "needs the same test images in the same order")
            if rows and len(labels) != len(rows[0]):
                raise MaferError(f"{path}: {len(labels)} test images against {len(rows[0])} in {fold_runs[0][0]}")
            rows.append((predictions == labels).astype(np.float64))
        columns.append(np.stack(rows))
    return np.concatenate(columns, axis=1)


def compare(paths: Sequence[str | Path], labels: Mapping[str, str] | None = None, base: str = BASE.label,
            split: str = "test") -> dict[str, dict]:
    """Paired statistics over seeds and test images from ``mafer evaluate`` files (with predictions).

    Returns ``{"accuracies": {model: {dataset: {resolution: {"accuracy", "ci95": [lo, hi],
    "n_seeds", "n_images"}}}}, "comparisons": {model: {dataset: {resolution: {"diff",
    "ci95": [lo, hi], "p", "n_seeds", "n_images", "method"}}}}}``, all on the 0..1 scale:
    ``comparisons`` (what ``comparisons.json`` holds) is every model other than ``base`` minus
    ``base`` on the same images, seeds paired in sorted order (`mafer.stats.paired_difference`);
    ``accuracies`` is each model's mean accuracy with its two-way bootstrap interval
    (`mafer.stats.accuracy_interval`). Only the ``split`` split; Oulu-CASIA with folds over images
    (`IMAGE_PROTOCOLS`, the paper's), the subject protocol as dataset ``oulucasia-subject``.
    """
    from mafer.stats import accuracy_interval, paired_difference

    groups: dict[str, dict[str, list]] = {}
    for (model, dataset, group_split, protocol), files in group_files(paths, labels).items():
        if group_split == split:
            name = dataset if dataset != "oulucasia" or protocol in IMAGE_PROTOCOLS else f"{dataset}-{protocol}"
            groups.setdefault(model, {})[name] = files
    accuracies: dict[str, dict] = {}
    comparisons: dict[str, dict] = {}
    for model, per_dataset in groups.items():
        for dataset, files in per_dataset.items():
            resolutions = list(dict.fromkeys(k for _, m in files for k in m["resolutions"]))
            accuracies.setdefault(model, {})[dataset] = {
                res: accuracy_interval(correctness(files, res)) for res in resolutions}
            reference = groups.get(base, {}).get(dataset)
            if model == base or reference is None:
                continue
            shared = [r for r in resolutions if all(r in m["resolutions"] for _, m in reference)]
            comparisons.setdefault(model, {})[dataset] = {
                res: paired_difference(correctness(files, res, reference), correctness(reference, res, files))
                for res in shared}
    return {"accuracies": accuracies, "comparisons": comparisons}


def _points(value: float) -> str:
    return f"{100 * value:+.1f}"


def comparison_sentence(model: str, dataset: str, resolution: str, entry: Mapping[str, Any],
                        base: str = BASE.label) -> str:
    """One comparison in words: "CR is better than base at 16 px on RAF-DB: +4.1 points, 95 % interval
    [+1.2, +7.0] (p = 0.003; 3 seeds x 600 images)", or "no difference detectable ..." when the
    interval holds 0."""
    where = f"at {'native resolution' if resolution == 'native' else resolution + ' px'} on " \
            f"{DATASETS[dataset].title if dataset in DATASETS else dataset}"
    lo, hi = entry["ci95"]
    numbers = (f"{_points(entry['diff'])} points, 95 % interval [{_points(lo)}, {_points(hi)}] "
               f"(p = {entry['p']:.3g}; {entry['n_seeds']} seed{'s' if entry['n_seeds'] != 1 else ''} "
               f"x {entry['n_images']} images)")
    if lo > 0:
        return f"{model} is better than {base} {where}: {numbers}"
    if hi < 0:
        return f"{model} is worse than {base} {where}: {numbers}"
    return f"no difference detectable between {model} and {base} {where}: {numbers}"


def detectable(comparisons: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]]
               ) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """``(model, dataset, resolution, entry)`` of every comparison whose 95 % interval excludes 0."""
    return [(model, dataset, res, entry) for model, per_dataset in comparisons.items()
            for dataset, per_res in per_dataset.items() for res, entry in per_res.items()
            if entry["ci95"][0] > 0 or entry["ci95"][1] < 0]


# ---------------------------------------------------------------------------------- tables

def _find_group(groups: Sequence[Mapping], model: str, dataset: str, protocols: tuple[str, ...] | None,
                split: str) -> Mapping | None:
    for group in groups:
        if (group["model"], group["dataset"], group["split"]) == (model, dataset, split) and \
                (protocols is None or group["protocol"] in protocols):
            return group
    return None


def results_table(summary: Mapping[str, Any], resolution: str = "native", split: str = "test",
                  with_paper: bool = False, released: Mapping[str, Any] | None = None) -> list[dict]:
    """Rows of the paper's table: ``{"model", "source": "ours"|"released"|"paper", <column>: (mean %, std %) | None}``.

    ``resolution`` picks the test resolution of our numbers; ``released`` (`aggregate` output of
    a run on the authors' released checkpoints) adds that run's row under each model, and
    ``with_paper`` the paper's. The Oulu-CASIA subject-independent column appears when such
    results exist.
    """
    groups = summary["groups"] + (released["groups"] if released else [])
    columns = list(COLUMNS)
    if any(g["dataset"] == "oulucasia" and g["protocol"] == "subject" for g in groups):
        columns.append(SUBJECT_COLUMN)
    models = sorted({g["model"] for g in groups} | (set(LABELS) if with_paper else set()), key=_model_order)
    ours_titles = [_title(title, groups, dataset, protocol, split) for dataset, _, protocol, title in columns]
    paper_titles = [title.format(k=PAPER_FOLDS) for *_, title in columns]
    # every row has every title, ours first: where our fold count is not the paper's, the two are
    # separate columns (a 3-fold mean is not a 10-fold one)
    empty = dict.fromkeys(ours_titles + (paper_titles if with_paper else []))
    rows = []
    for model in models:
        for source, run in (("ours", summary), ("released", released)):
            if run is None:
                continue
            row: dict[str, Any] = {"model": model, "source": source, **empty}
            for (dataset, metric, protocol, _), title in zip(columns, ours_titles):
                group = _find_group(run["groups"], model, dataset, protocol, split)
                entry = group["resolutions"].get(str(resolution)) if group else None
                row[title] = None if entry is None else (
                    entry[metric]["mean"] * 100, None if entry[metric]["std"] is None else entry[metric]["std"] * 100)
            if any(row[title] is not None for title in ours_titles):
                rows.append(row)
        if with_paper and model in PAPER_RESULTS:
            rows.append({"model": model, "source": "paper", **empty,
                         **{title: PAPER_RESULTS[model].get(title) for title in paper_titles}})
    return rows


def _title(title: str, groups: Sequence[Mapping], dataset: str, protocols: tuple[str, ...] | None,
          split: str) -> str:
    """A column title with ``{k}`` replaced by the number of folds our groups of that column average."""
    counts = sorted({len(g["folds"]) for g in groups if g["dataset"] == dataset and g["split"] == split
                     and (protocols is None or g["protocol"] in protocols)})
    return title.format(k="/".join(map(str, counts)) if counts else PAPER_FOLDS)


def _columns_of(rows: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(k for row in rows for k in row if k not in ("model", "source")))


def _cell(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def to_markdown(rows: Sequence[Mapping]) -> str:
    """The table as Markdown; a paper row's model reads ``name (paper)``, a released-checkpoints
    row's ``name (released checkpoints)``."""
    columns = _columns_of(rows)
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    suffix = {"paper": " (paper)", "released": " (released checkpoints)"}
    for row in rows:
        name = row["model"] + suffix.get(row["source"], "")
        lines.append(f"| {name} | " + " | ".join(_cell(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Mapping]) -> str:
    """The table as CSV: ``model, source`` then a mean and a std column per table column."""
    columns = _columns_of(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["model", "source"] + [f"{c} {part}" for c in columns for part in ("mean", "std")])
    for row in rows:
        cells = []
        for c in columns:
            mean, std = row[c] or (None, None)
            cells += ["" if mean is None else f"{mean:.4f}", "" if std is None else f"{std:.4f}"]
        writer.writerow([row["model"], row["source"]] + cells)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics JSON files written by `mafer evaluate`")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write: every group (model, dataset, split, protocol) with its "
                             "accuracies over seeds and folds, and the results table (not the pipeline's summary.json)")
    parser.add_argument("--csv", type=Path, help="also write the results table as CSV")
    parser.add_argument("--markdown", type=Path, help="also write the results table as Markdown")
    parser.add_argument("--label", action="append", default=[], metavar="PATTERN=NAME",
                        help="model name for metrics files whose path or checkpoint path matches PATTERN "
                             "(glob or substring); repeatable")
    parser.add_argument("--resolution", default="native", help="test resolution of the table (default native)")
    parser.add_argument("--split", default="test", help="split of the table (default test)")
    parser.add_argument("--paper", action="store_true", help="add the paper's numbers under each model")
    parser.add_argument("--comparisons", type=Path,
                        help="also write each model's paired difference to base per dataset and resolution "
                             "(interval over seeds x images, p-value) to this JSON file, and print them")
    parser.add_argument("--base", default=BASE.label, help="model the others are compared with (default base)")


def run(args: argparse.Namespace) -> int:
    summary = aggregate(args.metrics, parse_labels(args.label))
    rows = results_table(summary, args.resolution, args.split, with_paper=args.paper)
    summary["table"] = {"resolution": str(args.resolution), "split": args.split, "unit": "percent",
                        "rows": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                                 for row in rows]}
    _write_json(args.out, summary)
    markdown = to_markdown(rows)
    for path, text in ((args.csv, to_csv(rows)), (args.markdown, markdown)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    print(markdown, end="")
    if args.comparisons:
        paired = compare(args.metrics, parse_labels(args.label), base=args.base, split=args.split)
        _write_json(args.comparisons, paired["comparisons"])
        print()
        for model, per_dataset in paired["comparisons"].items():
            for dataset, per_res in per_dataset.items():
                for res, entry in per_res.items():
                    print(comparison_sentence(model, dataset, res, entry, args.base))
        print(f"wrote {args.comparisons}")
    return 0
