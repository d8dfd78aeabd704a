"""Classification metrics the paper reports: accuracy, per-class (average) accuracy, macro F1,
the authors' score 0.33*accuracy + 0.67*F1, confusion matrices and a bootstrap interval.

Everything works on plain integer label arrays, so the numbers can be checked by hand.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mafer.errors import MaferError

ArrayLike = Sequence[int] | np.ndarray


def _labels(values: ArrayLike, name: str, num_classes: int) -> np.ndarray:
    array = np.asarray(values).reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise MaferError(f"{name} must hold integer class labels, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise MaferError(f"{name} holds labels outside 0..{num_classes - 1}: "
                         f"min {array.min()}, max {array.max()}")
    return array


def _checked_pair(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    true = _labels(y_true, "y_true", num_classes)
    pred = _labels(y_pred, "y_pred", num_classes)
    if true.shape != pred.shape:
        raise MaferError(f"y_true has {true.size} labels but y_pred has {pred.size}")
    return true, pred


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """Counts ``[num_classes, num_classes]``: entry ``[t, p]`` = images of true class t predicted as p."""
    true, pred = _checked_pair(y_true, y_pred, num_classes)
    flat = np.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (recall per true class); rows without images stay zero."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=-1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def fold_average(matrices: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Average of the row-normalised confusion matrices of several folds.

    Each fold weighs the same whatever its size, as in the paper's "10-fold averaged" figures.
    """
    stack = np.asarray(matrices, dtype=np.float64)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise MaferError(f"expected square confusion matrices [folds, C, C], got shape {stack.shape}")
    return row_normalise(stack).mean(axis=0)


def metrics_from_confusion(matrix: np.ndarray) -> dict:
    """Accuracy, mean per-class accuracy, macro F1 and score from a count confusion matrix.

    Mean per-class accuracy (RAF-DB's "average accuracy") averages the recall of the classes
    that have test images. Macro F1 averages F1 over the classes that occur in the truth or
    the predictions (scikit-learn's default): a class never predicted has precision 0 and F1 0.
    """
    cm = np.asarray(matrix, dtype=np.int64)
    n = int(cm.sum())
    if n == 0:
        raise MaferError("cannot compute metrics on zero images")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    present = support > 0
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=present)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    seen = present | (predicted > 0)
    accuracy = float(tp.sum() / n)
    macro_f1 = float(f1[seen].mean())
    return {
        "accuracy": accuracy,
        "mean_class_accuracy": float(recall[present].mean()),
        "macro_f1": macro_f1,
        "score": authors_score(accuracy, macro_f1),
        "confusion_matrix": cm.tolist(),
        "n": n,
    }


def authors_score(accuracy: float, macro_f1: float) -> float:
    """The score the authors logged: ``0.33 * accuracy + 0.67 * macro F1``."""
    return 0.33 * accuracy + 0.67 * macro_f1


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict:
    """All metrics of one evaluation: keys ``accuracy``, ``mean_class_accuracy``, ``macro_f1``,
    ``score``, ``confusion_matrix`` (counts, rows = true class, as nested lists) and ``n``."""
    return metrics_from_confusion(confusion_matrix(y_true, y_pred, num_classes))


def bootstrap_accuracy_ci(y_true: ArrayLike, y_pred: ArrayLike, *, n_resamples: int = 1000,
                          level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval for accuracy: images resampled with replacement, fixed seed."""
    true, pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if true.size == 0 or true.shape != pred.shape:
        raise MaferError(f"bootstrap needs equal, non-empty label arrays, got {true.size} and {pred.size}")
    if not 0.0 < level < 1.0:
        raise MaferError(f"confidence level must be in (0, 1), got {level}")
    correct = (true == pred).astype(np.float64)
    rng = np.random.default_rng(seed)
    accuracies = np.empty(n_resamples)
    # chunks keep memory at ~chunk*n integers for large test sets
    chunk = max(1, 2_000_000 // correct.size)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        idx = rng.integers(0, correct.size, size=(stop - start, correct.size))
        accuracies[start:stop] = correct[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(accuracies, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
