"""Uncertainty of accuracies and of paired differences between models, over seeds and images.

The unit of evidence is a ``[k, n]`` matrix of per-image correctness (1 = the image's predicted
class is its label): ``k`` training seeds (rows) of one model, ``n`` test images (columns; the
k-fold test parts of Oulu-CASIA side by side). Two models are compared on the same images and
with their seeds paired row by row.

- Intervals (accuracy, and the difference of two models): a two-way percentile bootstrap over
  seeds and images, done by `scipy.stats.bootstrap` with the seed indices and the image indices
  as two samples resampled independently; each resample's statistic is the mean of the
  resampled rows and columns. With one seed only images are resampled (the interval then knows
  nothing of seed-to-seed variation).
- p-value of a difference: `scipy.stats.permutation_test` with ``permutation_type="samples"``
  on the per-image correctness averaged over seeds, i.e. a paired permutation (sign-flip) test
  over images of "both models predict equally well on every image".

The paper reports no test of any difference; this is the companion's addition.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from mafer.errors import MaferError

N_RESAMPLES = 9999
LEVEL = 0.95
SEED = 0
BATCH = 256  # resamples per vectorised call: bounds memory at BATCH x k x n floats
METHOD = ("paired two-way percentile bootstrap over seeds x images (scipy.stats.bootstrap, "
          f"{N_RESAMPLES} resamples) for the interval; paired permutation test over images "
          f"(scipy.stats.permutation_test, permutation_type='samples', {N_RESAMPLES} resamples) for p")


def _as_matrix(correct: Any, name: str) -> np.ndarray:
    matrix = np.asarray(correct, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] == 0 or matrix.shape[0] == 0:
        raise MaferError(f"{name}: expected per-image correctness of shape [seeds, images], got {matrix.shape}")
    return matrix


def seed_image_interval(values: Any, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                        seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of ``values.mean()`` for a ``[k, n]`` matrix (seeds x images).

    Seeds and images are resampled independently (two-way bootstrap); with ``k == 1`` images
    only. Returns ``(low, high)`` in the units of ``values``.
    """
    matrix = _as_matrix(values, "values")
    k, n = matrix.shape
    if n == 1 and k == 1:
        value = float(matrix[0, 0])
        return value, value

    def statistic(*indices, axis=-1):
        if len(indices) == 2:
            seeds, images = indices
            rows = matrix[seeds].mean(axis=-2)  # [..., n]: the resampled seeds' mean per image
        else:
            (images,) = indices
            rows = np.broadcast_to(matrix[0], images.shape[:-1] + (n,))
        return np.take_along_axis(rows, images, axis=-1).mean(axis=-1)

    data = (np.arange(k), np.arange(n)) if k > 1 else (np.arange(n),)
    result = stats.bootstrap(data, statistic, n_resamples=n_resamples, confidence_level=level,
                             method="percentile", vectorized=True, batch=BATCH,
                             random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


def paired_difference(correct_a: Any, correct_b: Any, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> dict[str, Any]:
    """Accuracy of model A minus model B on the same images, with interval and p-value.

    ``correct_a``, ``correct_b``: ``[k, n]`` (or ``[n]``) per-image correctness, 0/1 (or any
    score in 0..1), rows = paired seeds, columns = the same test images in the same order.
    Returns ``{"diff", "ci95": [lo, hi], "p", "n_seeds", "n_images", "method"}``: ``diff`` on
    the 0..1 scale (0.041 = 4.1 points), ``p`` two-sided. MaferError when the shapes differ.
    """
    a, b = _as_matrix(correct_a, "correct_a"), _as_matrix(correct_b, "correct_b")
    if a.shape != b.shape:
        raise MaferError(f"paired comparison needs the same seeds x images for both models; got {a.shape} "
                         f"and {b.shape}")
    low, high = seed_image_interval(a - b, level, n_resamples, seed)
    test = stats.permutation_test((a.mean(axis=0), b.mean(axis=0)), lambda x, y, axis=-1: (x - y).mean(axis=axis),
                                  permutation_type="samples", vectorized=True, n_resamples=n_resamples,
                                  batch=BATCH, alternative="two-sided", random_state=np.random.default_rng(seed))
    return {"diff": float((a - b).mean()), "ci95": [low, high], "p": float(min(test.pvalue, 1.0)),
            "n_seeds": int(a.shape[0]),
            "n_images": int(a.shape[1]), "method": METHOD}


def accuracy_interval(correct: Any, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                      seed: int = SEED) -> dict[str, Any]:
    """Mean accuracy of a ``[k, n]`` correctness matrix with its two-way bootstrap interval.

    Returns ``{"accuracy", "ci95": [lo, hi], "n_seeds", "n_images"}`` on the 0..1 scale.
    """
    matrix = _as_matrix(correct, "correct")
    low, high = seed_image_interval(matrix, level, n_resamples, seed)
    return {"accuracy": float(matrix.mean()), "ci95": [low, high], "n_seeds": int(matrix.shape[0]),
            "n_images": int(matrix.shape[1])}
