import re
import shutil

import numpy as np
import pytest

from mafer.cli import main
from mafer.datasets import DATASETS, get_dataset
from mafer.embed import extract_features, load_embeddings, project, save_embeddings
from mafer.errors import MaferError
from mafer.models import create_model
from mafer.pipeline import views


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "rafdb.pt", "rafdb")


@pytest.fixture(scope="module")
def embedded(smoke_data, checkpoint, tmp_path_factory):
    """What `mafer embed` writes for the smoke RAF-DB test faces (both projections), and its output."""
    out = tmp_path_factory.mktemp("embed") / "features.npz"
    rc = main(["embed", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--checkpoint", str(checkpoint),
               "--methods", "tsne,umap", "--device", "cpu", "--workers", "0", "--model", "CR", "--out", str(out)])
    assert rc == 0
    return out


def test_cli_writes_features_labels_and_projections(smoke_data, checkpoint, embedded):
    test = get_dataset("rafdb", smoke_data, "test")
    loaded = load_embeddings(embedded)
    assert list(loaded.models) == ["CR"]
    entry = loaded.models["CR"]
    assert entry["features"].dtype == np.float32
    assert entry["features"].shape == (len(test), create_model("senet_tiny", 7).num_features)
    assert entry["labels"].dtype == np.int64 and entry["labels"].tolist() == test.targets
    assert loaded.classes == list(DATASETS["rafdb"].classes)
    for method in ("tsne", "umap"):
        assert entry[method].shape == (len(test), 2) and np.isfinite(entry[method]).all()
    assert loaded.info == {"dataset": "rafdb", "split": "test", "resolution": "native", "checkpoint": str(checkpoint)}


def test_the_file_of_mafer_embed_is_drawn_by_the_pipelines_results_plot(embedded, tmp_path):
    fig = views.plot_embeddings_file(embedded, tmp_path / "emb")
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["CR — t-SNE", "CR — UMAP"]
    assert fig.texts[0].get_text() == "rafdb test features"
    assert (tmp_path / "emb.png").stat().st_size > 0 and (tmp_path / "emb.svg").stat().st_size > 0


def test_the_model_name_comes_from_the_checkpoint_path(smoke_data, checkpoint, tmp_path, capsys):
    named = tmp_path / "runs" / "cr_simplified" / "best.pt"
    named.parent.mkdir(parents=True)
    shutil.copy(checkpoint, named)
    out = tmp_path / "e.npz"
    assert main(["embed", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--checkpoint", str(named),
                 "--methods", "", "--device", "cpu", "--workers", "0", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert list(load_embeddings(out).models) == ["CR-Simplified"]


def _two_models(rng):
    return {"base": {"labels": np.array([0, 1, 2, 1, 0]), "tsne": rng.random((5, 2))},
            "CR+AffWild2": {"labels": np.array([2, 2]), "umap": rng.random((2, 2)), "features": rng.random((2, 8))}}


def test_embeddings_round_trip_with_the_documented_dtypes(tmp_path):
    models = _two_models(np.random.default_rng(0))
    path = save_embeddings(tmp_path / "e.npz", models, ["a", "b", "c"], dataset="rafdb", resolution="8")
    loaded = load_embeddings(path)
    assert list(loaded.models) == ["base", "CR+AffWild2"] and loaded.classes == ["a", "b", "c"]
    assert loaded.info == {"dataset": "rafdb", "resolution": "8"}
    assert set(loaded.models["CR+AffWild2"]) == {"labels", "umap", "features"}
    np.testing.assert_allclose(loaded.models["base"]["tsne"], models["base"]["tsne"].astype(np.float32))
    assert loaded.models["base"]["tsne"].dtype == np.float32 and loaded.models["base"]["labels"].dtype == np.int64
    with np.load(path, allow_pickle=False) as npz:  # the layout the module docstring documents
        assert sorted(npz.files) == sorted(["models", "classes", "info/dataset", "info/resolution", "base/labels",
                                            "base/tsne", "CR+AffWild2/labels", "CR+AffWild2/umap",
                                            "CR+AffWild2/features"])


def test_bad_embeddings_files_are_named_with_what_was_expected(tmp_path):
    good = save_embeddings(tmp_path / "good.npz", _two_models(np.random.default_rng(0)), ["a", "b", "c"])
    cases = {}
    cases["text.npz"] = (lambda p: p.write_text("not an npz"), "cannot read embeddings")
    cases["truncated.npz"] = (lambda p: p.write_bytes(good.read_bytes()[: good.stat().st_size // 2]),
                              "cannot read embeddings")
    cases["single.npy"] = (lambda p: np.save(open(p, "wb"), np.zeros(3)), "a single array, not an npz")
    cases["pickled.npz"] = (lambda p: np.savez(open(p, "wb"), models=np.array([{"x": 1}], dtype=object)),
                            "cannot read embeddings")
    cases["old.npz"] = (lambda p: np.savez(open(p, "wb"), features=np.zeros((4, 3)), labels=np.zeros(4, int)),
                        "no 'models' entry")
    cases["range.npz"] = (lambda p: np.savez(open(p, "wb"), models=np.array(["m"]), classes=np.array(["a"]),
                                             **{"m/labels": np.array([0, 3])}), r"m/labels holds 0..3; expected 0..0")
    cases["shape.npz"] = (lambda p: np.savez(open(p, "wb"), models=np.array(["m"]), classes=np.array(["a"]),
                                             **{"m/labels": np.zeros(3, int), "m/tsne": np.zeros((3, 3))}),
                          r"m/tsne must be \[N, 2\] floats with N = 3")
    cases["nolabels.npz"] = (lambda p: np.savez(open(p, "wb"), models=np.array(["m"]), classes=np.array(["a"]),
                                                **{"m/tsne": np.zeros((3, 2))}), "model 'm' has no labels")
    for name, (write, message) in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(MaferError, match=re.escape(str(path)) + ": " + ".*" + message):
            load_embeddings(path)
    with pytest.raises(MaferError, match="missing.npz: embeddings file not found; expected an embeddings file"):
        load_embeddings(tmp_path / "missing.npz")
    with pytest.raises(MaferError, match=r"out.npz: model 'm' has unknown entries pca"):
        save_embeddings(tmp_path / "out.npz", {"m": {"labels": np.zeros(2, int), "pca": np.zeros((2, 2))}}, ["a"])
    assert not (tmp_path / "out.npz").exists()


def test_features_depend_on_test_resolution(smoke_data, checkpoint):
    native, labels = extract_features("rafdb", smoke_data, checkpoint, device="cpu", workers=0)
    low, low_labels = extract_features("rafdb", smoke_data, checkpoint, resolution=8, device="cpu", workers=0)
    assert native.shape == low.shape and labels.tolist() == low_labels.tolist()
    assert not np.allclose(native, low)


def test_projection_is_seeded_and_checks_its_input():
    features = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    first = project(features, "tsne", seed=1)
    assert first.shape == (30, 2)
    assert np.array_equal(first, project(features, "tsne", seed=1))
    with pytest.raises(MaferError, match="unknown projection method 'pca'"):
        project(features, "pca")
    with pytest.raises(MaferError, match="at least 4 points"):
        project(features[:3], "umap")
