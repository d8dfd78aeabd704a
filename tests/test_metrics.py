import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mafer.errors import MaferError
from mafer.metrics import (
    authors_score,
    bootstrap_accuracy_ci,
    classification_metrics,
    confusion_matrix,
    fold_average,
    row_normalise,
)

# 3 classes; class 2 is never predicted.
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 0, 1, 1, 1, 0, 0, 1, 1]


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[3, 1, 0], [1, 2, 0], [1, 2, 0]]


def test_metrics_by_hand_with_a_class_never_predicted():
    m = classification_metrics(Y_TRUE, Y_PRED, 3)
    assert m["n"] == 10
    assert m["accuracy"] == pytest.approx(0.5)
    # recalls 3/4, 2/3, 0
    assert m["mean_class_accuracy"] == pytest.approx((0.75 + 2 / 3 + 0) / 3)
    # precisions 3/5, 2/5, 0 -> F1 2/3, 1/2, 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro", zero_division=0))
    assert m["score"] == pytest.approx(0.33 * 0.5 + 0.67 * (2 / 3 + 0.5) / 3)
    assert m["confusion_matrix"] == [[3, 1, 0], [1, 2, 0], [1, 2, 0]]


def test_class_absent_from_truth_and_predictions_does_not_count():
    with_unused_class = classification_metrics(Y_TRUE, Y_PRED, 4)
    assert with_unused_class["macro_f1"] == pytest.approx(classification_metrics(Y_TRUE, Y_PRED, 3)["macro_f1"])
    assert with_unused_class["mean_class_accuracy"] == pytest.approx((0.75 + 2 / 3) / 3)
    assert np.asarray(with_unused_class["confusion_matrix"]).shape == (4, 4)


def test_perfect_predictions():
    m = classification_metrics([0, 1, 2, 2], [0, 1, 2, 2], 3)
    assert m["accuracy"] == m["mean_class_accuracy"] == m["macro_f1"] == 1.0
    assert authors_score(1.0, 1.0) == pytest.approx(1.0)


def test_labels_out_of_range_or_mismatched_lengths():
    with pytest.raises(MaferError, match="outside 0..2"):
        classification_metrics([0, 3], [0, 1], 3)
    with pytest.raises(MaferError, match="3 labels"):
        classification_metrics([0, 1, 2], [0, 1], 3)
    with pytest.raises(MaferError, match="zero images"):
        classification_metrics([], [], 3)


def test_row_normalise_and_fold_average():
    a = np.array([[2, 2], [0, 4]])
    b = np.array([[1, 0], [0, 0]])  # class 1 has no image in this fold
    assert row_normalise(a).tolist() == [[0.5, 0.5], [0.0, 1.0]]
    assert row_normalise(b).tolist() == [[1.0, 0.0], [0.0, 0.0]]
    # class 1's row averages the folds that test it: its recall is 1.0, not pulled to 0.5 by fold b
    assert fold_average([a, b]).tolist() == [[0.75, 0.25], [0.0, 1.0]]
    assert fold_average([b, b]).tolist() == [[1.0, 0.0], [0.0, 0.0]]  # no fold tests class 1


def test_bootstrap_interval_contains_accuracy_and_is_reproducible():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, (y_true + 1) % 3)
    accuracy = float((y_true == y_pred).mean())
    lo, hi = bootstrap_accuracy_ci(y_true, y_pred, n_resamples=500, seed=0)
    assert lo < accuracy < hi
    assert 0.05 < hi - lo < 0.2  # about 4 standard errors sqrt(.7*.3/200) ~ 0.13
    assert (lo, hi) == bootstrap_accuracy_ci(y_true, y_pred, n_resamples=500, seed=0)


REFERENCE = json.loads((Path(__file__).parent / "data" / "metrics_reference.json").read_text())["cases"]


@pytest.mark.parametrize("case", REFERENCE, ids=[c["name"] for c in REFERENCE])
def test_metrics_equal_the_former_implementation(case):
    """scikit-learn's metrics give what the project's own formulas gave (random and degenerate cases)."""
    got = classification_metrics(case["y_true"], case["y_pred"], case["num_classes"])
    expected = case["metrics"]
    assert got["confusion_matrix"] == expected["confusion_matrix"] and got["n"] == expected["n"]
    for key in ("accuracy", "mean_class_accuracy", "macro_f1", "score"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key


@pytest.mark.parametrize("case", REFERENCE, ids=[c["name"] for c in REFERENCE])
def test_bootstrap_interval_agrees_with_the_former_implementation(case):
    """Same method (percentile bootstrap of the accuracy), other random draws: the intervals
    agree within the resampling error of 1000 resamples."""
    lo, hi = bootstrap_accuracy_ci(case["y_true"], case["y_pred"], n_resamples=1000, seed=0)
    old_lo, old_hi = case["accuracy_ci"]
    n = len(case["y_true"])
    tolerance = 1.0 / n + 0.01  # one image, plus the Monte-Carlo error of a 2.5 % quantile
    assert lo == pytest.approx(old_lo, abs=tolerance) and hi == pytest.approx(old_hi, abs=tolerance)
    assert lo <= case["metrics"]["accuracy"] <= hi
