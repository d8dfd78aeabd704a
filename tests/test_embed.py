import numpy as np
import pytest

from mafer.cli import main
from mafer.datasets import DATASETS, get_dataset
from mafer.embed import extract_features, project
from mafer.errors import MaferError
from mafer.models import create_model


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_checkpoint):
    return tiny_checkpoint(tmp_path_factory.mktemp("ck") / "rafdb.pt", "rafdb")


def test_cli_writes_features_labels_and_projections(smoke_data, checkpoint, tmp_path, capsys):
    out = tmp_path / "features.npz"
    rc = main(["embed", "--dataset", "rafdb", "--data-dir", str(smoke_data), "--checkpoint", str(checkpoint),
               "--methods", "tsne,umap", "--device", "cpu", "--workers", "0", "--out", str(out)])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    test = get_dataset("rafdb", smoke_data, "test")
    with np.load(out, allow_pickle=False) as npz:
        assert npz["features"].dtype == np.float32
        assert npz["features"].shape == (len(test), create_model("senet_tiny", 7).num_features)
        assert npz["labels"].tolist() == test.targets
        assert npz["classes"].tolist() == list(DATASETS["rafdb"].classes)
        for method in ("tsne", "umap"):
            assert npz[method].shape == (len(test), 2) and np.isfinite(npz[method]).all()
        assert str(npz["dataset"]) == "rafdb" and str(npz["resolution"]) == "native"


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
