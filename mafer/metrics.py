"""Classification metrics the paper reports: accuracy, per-class (average) accuracy, macro F1,
the authors' score 0.33*accuracy + 0.67*F1, confusion matrices and a bootstrap interval.

Everything works on plain integer label arrays; the metrics themselves are scikit-learn's and the
bootstrap SciPy's, with the project's checks (label range, lengths) in front. Both are imported
where used: a training process reads `fold_average` through the figures and pays neither.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from mafer.errors import MaferError

ArrayLike = Sequence[int] | np.ndarray
# the one-number metrics of `classification_metrics`, in the order files and tables show them
SCALAR_METRICS: tuple[str, ...] = ("accuracy", "mean_class_accuracy", "macro_f1", "score")


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
    """Counts ``[num_classes, num_classes]`` int64: entry ``[t, p]`` = images of true class t
    predicted as p (`sklearn.metrics.confusion_matrix` over the labels ``0..num_classes-1``)."""
    true, pred = _checked_pair(y_true, y_pred, num_classes)
    import sklearn.metrics as sk

    return sk.confusion_matrix(true, pred, labels=np.arange(num_classes)).astype(np.int64)


def row_normalise(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (recall per true class); rows without images stay zero."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=-1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def fold_average(matrices: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """Average ``[C, C]`` float64 of the row-normalised confusion matrices ``[folds, C, C]`` of several folds.

    Each fold weighs the same whatever its size, as in the paper's "10-fold averaged" figures.
    A row averages only the folds with test images of that class (a fold without any says
    nothing about its recall), so every row with images somewhere sums to 1; rows of a class
    no fold tests stay zero. MaferError when the matrices are not square.
    """
    stack = np.asarray(matrices, dtype=np.float64)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2]:
        raise MaferError(f"expected square confusion matrices [folds, C, C], got shape {stack.shape}")
    tested = (stack.sum(axis=-1) > 0).sum(axis=0)[:, None]  # [C, 1]: folds with images of each class
    return np.divide(row_normalise(stack).sum(axis=0), tested, out=np.zeros(stack.shape[1:]), where=tested > 0)


def authors_score(accuracy: float, macro_f1: float) -> float:
    """The score the authors logged: ``0.33 * accuracy + 0.67 * macro F1``."""
    return 0.33 * accuracy + 0.67 * macro_f1


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict:
    """All metrics of one evaluation, through scikit-learn.

    Keys: ``accuracy``; ``mean_class_accuracy`` (RAF-DB's "average accuracy": the mean recall
    of the classes that have test images, `balanced_accuracy_score`); ``macro_f1`` (F1
    averaged over the classes that occur in the truth or the predictions, a class never
    predicted counting 0: ``f1_score(average="macro", zero_division=0)``); ``score`` (the
    authors', `authors_score`); ``confusion_matrix`` (counts, rows = true class, nested lists);
    ``n``. MaferError on labels outside ``0..num_classes-1``, unequal lengths or no images.
    """
    true, pred = _checked_pair(y_true, y_pred, num_classes)
    if true.size == 0:
        raise MaferError("cannot compute metrics on zero images")
    import sklearn.metrics as sk

    accuracy = float(sk.accuracy_score(true, pred))
    with warnings.catch_warnings():
        # a class predicted but absent from the truth has no recall: left out of the mean, as intended;
        # and one label only is a legitimate (tiny) test set, not a shape problem
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        warnings.filterwarnings("ignore", message="A single label was found")
        macro_f1 = float(sk.f1_score(true, pred, average="macro", zero_division=0))
        mean_class_accuracy = float(sk.balanced_accuracy_score(true, pred))
    return {
        "accuracy": accuracy,
        "mean_class_accuracy": mean_class_accuracy,
        "macro_f1": macro_f1,
        "score": authors_score(accuracy, macro_f1),
        "confusion_matrix": confusion_matrix(true, pred, num_classes).tolist(),
        "n": int(true.size),
    }


def bootstrap_accuracy_ci(y_true: ArrayLike, y_pred: ArrayLike, *, n_resamples: int = 1000,
                          level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval ``(low, high)`` of the accuracy: the images resampled with
    replacement ``n_resamples`` times (`scipy.stats.bootstrap`, ``method="percentile"``,
    seeded by ``seed``), the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the
    resampled accuracies."""
    true, pred = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    if true.size == 0 or true.shape != pred.shape:
        raise MaferError(f"bootstrap needs equal, non-empty label arrays, got {true.size} and {pred.size}")
    if not 0.0 < level < 1.0:
        raise MaferError(f"confidence level must be in (0, 1), got {level}")
    correct = (true == pred).astype(np.float64)
    if correct.min() == correct.max():  # every resample has the same accuracy
        return float(correct[0]), float(correct[0])
    from scipy import stats

    result = stats.bootstrap((correct,), np.mean, n_resamples=n_resamples, confidence_level=level,
                             method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
