import numpy as np
import pytest

from mafer.errors import MaferError
from mafer.stats import accuracy_interval, paired_difference, seed_image_interval


@pytest.fixture
def correct():
    """Per-image correctness of one model: 3 seeds x 400 images, about 60 % right."""
    return (np.random.default_rng(0).random((3, 400)) < 0.6).astype(float)


def test_identical_predictions_give_no_difference(correct):
    result = paired_difference(correct, correct.copy())
    assert result["diff"] == 0.0
    lo, hi = result["ci95"]
    assert lo <= 0.0 <= hi and hi - lo < 1e-12
    assert result["p"] == pytest.approx(1.0)
    assert (result["n_seeds"], result["n_images"]) == (3, 400)
    assert "bootstrap" in result["method"] and "permutation" in result["method"]


def test_one_model_right_wherever_the_other_is_wrong(correct):
    # A is right on every image; B is wrong exactly where A's copy below is wrong: A - B = the error rate
    better = np.ones_like(correct)
    result = paired_difference(better, correct)
    assert result["diff"] == pytest.approx(1 - correct.mean())
    lo, hi = result["ci95"]
    assert 0.3 < lo < result["diff"] < hi < 0.5 and hi - lo < 0.15  # tight and far from 0
    assert result["p"] < 0.001
    # the reverse comparison mirrors it
    worse = paired_difference(correct, better)
    assert worse["diff"] == pytest.approx(-result["diff"]) and worse["ci95"][1] < 0


def test_intervals_cover_the_truth_and_widen_with_seed_spread():
    rng = np.random.default_rng(1)
    # every seed of a model at 70 %: the interval holds 0.7; resampling 3 seeds and the images
    # both is conservative (the images alone would give about +-2 sqrt(0.21 / 1200) = +-0.026)
    same = (rng.random((3, 400)) < 0.7).astype(float)
    acc = accuracy_interval(same)
    assert acc["ci95"][0] < 0.7 < acc["ci95"][1] and 0.05 < acc["ci95"][1] - acc["ci95"][0] < 0.12
    # seeds at 50 %, 70 %, 90 %: resampling seeds makes the interval much wider
    spread = np.stack([(rng.random(400) < p).astype(float) for p in (0.5, 0.7, 0.9)])
    lo, hi = seed_image_interval(spread)
    assert hi - lo > 0.25
    # one seed: images only, still an interval around the mean
    single = accuracy_interval(same[0])
    assert single["n_seeds"] == 1 and single["ci95"][0] < same[0].mean() < single["ci95"][1]


def test_results_are_reproducible_and_shapes_are_checked(correct):
    assert paired_difference(correct, correct[::-1]) == paired_difference(correct, correct[::-1])
    with pytest.raises(MaferError, match="same seeds x images"):
        paired_difference(correct, correct[:2])
    with pytest.raises(MaferError, match="seeds, images"):
        accuracy_interval(np.zeros((2, 0)))
