"""The table of the paper's four models that every module reads."""

import pytest

from mafer.aggregate import PAPER_RESULTS
from mafer.paper_models import BASE, BY_KEY, KEYS, LABELS, MODELS, model_from_name, model_from_path
from mafer.train.config import STEP1_MODES


def test_the_table_holds_the_papers_four_models_and_their_step1():
    assert LABELS == ("base", "CR", "CR-Simplified", "CR+AffWild2")  # the rows of the paper's Table 2
    assert KEYS == ("base", "cr", "cr_simplified", "cr_affwild2")
    assert BASE is MODELS[0] and BASE.step1_from is None
    assert [(m.step1_mode, m.step1_dataset, m.step1_from) for m in MODELS] == [
        ("base", "vggface2", None), ("cr", "vggface2", "base"), ("cr-simplified", "vggface2", "base"),
        ("cr-simplified", "affwild2", "cr")]
    assert all(m.step1_mode in STEP1_MODES for m in MODELS)
    assert all(m.step1_from is None or KEYS.index(m.step1_from) < KEYS.index(m.key) for m in MODELS)
    assert set(PAPER_RESULTS) == set(LABELS)


@pytest.mark.parametrize("name,label", [
    ("cr", "CR"), ("CR", "CR"), ("base-fold3", "base"), ("rafdb_cr", "CR"), ("cr_simplified", "CR-Simplified"),
    ("CR Simplified", "CR-Simplified"), ("crsimplified", "CR-Simplified"), ("cr-simple", "CR-Simplified"),
    ("CR+AffWild2", "CR+AffWild2"), ("cr_affwild2", "CR+AffWild2"), ("craffwild2", "CR+AffWild2"),
    ("rafdb_cr_affwild2", "CR+AffWild2"),
])
def test_folder_names_of_each_model_are_recognised(name, label):
    assert model_from_name(name).label == label


@pytest.mark.parametrize("name", ["crop", "basement", "rafdb", "", "seed17-18", "scr"])
def test_other_names_are_no_model(name):
    assert model_from_name(name) is None


def test_the_deepest_model_folder_of_a_path_wins():
    assert model_from_path("runs/step2/cr_simplified/rafdb/standard/seed17-17/best.pt") is BY_KEY["cr_simplified"]
    assert model_from_path("runs/base/cr.json") is BY_KEY["cr"]
    assert model_from_path("weights/senet50.pt") is None and model_from_path("") is None
