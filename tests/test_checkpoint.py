"""This project's checkpoints: atomic save, weights-only load, rebuild for evaluation, resume."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mafer.errors import MaferError
from mafer.models import (
    create_model,
    load_checkpoint,
    load_pretrained,
    model_from_checkpoint,
    save_checkpoint,
)

CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]


def trained_tiny():
    torch.manual_seed(0)
    model = create_model("senet_tiny", 7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max")
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 48, 48)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    scheduler.step(0.5)
    return model, optimizer, scheduler


def test_round_trip_restores_model_metadata_and_training_state(tmp_path):
    model, optimizer, scheduler = trained_tiny()
    config = {"lr": 1e-4, "data_dir": Path("/data"), "resolutions": (8, 16)}
    path = save_checkpoint(
        tmp_path / "run" / "best.pt", model, arch="senet_tiny", class_names=CLASSES,
        mean_bgr=(133.05986,) * 3, config=config, metrics={"val_acc": np.float64(0.61)},
        optimizer=optimizer, scheduler=scheduler, extra={"epoch": 3},
    )
    assert os.listdir(path.parent) == ["best.pt"]  # no temporary file left behind
    ckpt = load_checkpoint(path)
    assert ckpt["config"] == {"lr": 1e-4, "data_dir": "/data", "resolutions": (8, 16)}
    assert ckpt["metrics"] == {"val_acc": 0.61} and ckpt["extra"] == {"epoch": 3}

    fresh = create_model("senet_tiny", 7)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    fresh.load_state_dict(ckpt["model_state_dict"])
    fresh_optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    momentum = [s["momentum_buffer"] for s in fresh_optimizer.state.values()]
    expected = [s["momentum_buffer"] for s in optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum, expected))
    assert ckpt["scheduler_state_dict"]["best"] == 0.5

    rebuilt, meta = model_from_checkpoint(path)
    assert not rebuilt.training
    assert meta["arch"] == "senet_tiny" and meta["class_names"] == CLASSES
    assert meta["mean_bgr"] == [133.05986] * 3 and meta["format"] == "mafer"
    x = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(rebuilt(x), model.eval()(x))


def test_own_checkpoint_loads_into_a_new_head_for_fine_tuning(tmp_path):
    model, _, _ = trained_tiny()
    path = save_checkpoint(tmp_path / "c.pt", model, arch="senet_tiny", class_names=CLASSES, mean_bgr=(0, 0, 0))
    target = create_model("senet_tiny", 6)
    meta = load_pretrained(target, path, head=False)
    assert meta["format"] == "mafer" and meta["num_classes_in_file"] == 7
    torch.testing.assert_close(target.layer4[0].conv3.weight, model.layer4[0].conv3.weight)
    with pytest.raises(MaferError, match="head=False"):
        load_pretrained(create_model("senet_tiny", 6), path)


def test_wrapped_models_save_and_load_plain_names(tmp_path):
    model, _, _ = trained_tiny()
    path = save_checkpoint(tmp_path / "c.pt", torch.nn.DataParallel(model), arch="senet_tiny",
                           class_names=CLASSES, mean_bgr=(0, 0, 0))
    assert "conv1.weight" in load_checkpoint(path)["model_state_dict"]
    target = torch.nn.DataParallel(create_model("senet_tiny", 7))
    load_pretrained(target, path)
    torch.testing.assert_close(target.module.conv1.weight, model.conv1.weight)


def test_a_failed_save_keeps_the_previous_file(tmp_path):
    model, _, _ = trained_tiny()
    path = save_checkpoint(tmp_path / "c.pt", model, arch="senet_tiny", class_names=CLASSES, mean_bgr=(0, 0, 0))
    before = path.read_bytes()
    with pytest.raises(TypeError, match="config"):
        save_checkpoint(path, model, arch="senet_tiny", class_names=CLASSES, mean_bgr=(0, 0, 0), config={"f": print})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.pt"]


def test_class_names_must_match_the_classifier(tmp_path):
    with pytest.raises(ValueError, match="class names"):
        save_checkpoint(tmp_path / "c.pt", create_model("senet_tiny", 7), arch="senet_tiny", class_names=["a"], mean_bgr=(0, 0, 0))


def test_missing_and_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(MaferError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(MaferError, match="not found"):
        model_from_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(MaferError, match="not a checkpoint of this project"):
        load_checkpoint(foreign)
    with pytest.raises(MaferError, match="foreign.pt"):
        model_from_checkpoint(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(MaferError, match="notes.txt"):
        load_checkpoint(text)
    with pytest.raises(MaferError, match="notes.txt"):
        model_from_checkpoint(text)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_checkpoint_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": "mafer-checkpoint", "model_state_dict": {}, "x": _Payload(marker)}, path)
    with pytest.raises(MaferError, match="refused"):
        load_checkpoint(path)
    with pytest.raises(MaferError, match="refused"):
        model_from_checkpoint(path)
    assert not marker.exists()


def test_format_v1_checkpoints_with_model_name_still_load(tmp_path, as_format_v1):
    model, _, _ = trained_tiny()
    path = as_format_v1(save_checkpoint(tmp_path / "old.pt", model, arch="senet_tiny", class_names=CLASSES,
                                        mean_bgr=(0, 0, 0), config={"model": "senet_tiny", "image_size": 48}))
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == 1 and raw["model_name"] == "senet_tiny" and "arch" not in raw
    ckpt = load_checkpoint(path)
    assert ckpt["arch"] == "senet_tiny" and "model_name" not in ckpt
    assert ckpt["config"] == {"arch": "senet_tiny", "image_size": 48}
    rebuilt, meta = model_from_checkpoint(path)
    assert meta["arch"] == "senet_tiny" and meta["config"]["arch"] == "senet_tiny"
    x = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(rebuilt(x), model.eval()(x))
    assert load_pretrained(create_model("senet_tiny", 7), path)["arch"] == "senet_tiny"


def test_checkpoints_name_the_architecture_arch_and_refuse_an_unknown_one(tmp_path):
    model, _, _ = trained_tiny()
    path = save_checkpoint(tmp_path / "c.pt", model, arch="senet_tiny", class_names=CLASSES, mean_bgr=(0, 0, 0))
    raw = torch.load(path, weights_only=True)
    assert raw["arch"] == "senet_tiny" and raw["format_version"] == 3 and "model_name" not in raw
    raw["arch"] = "senet101"
    torch.save(raw, path)
    with pytest.raises(MaferError, match="unknown architecture 'senet101'"):
        model_from_checkpoint(path)
    newer = tmp_path / "newer.pt"
    torch.save(dict(raw, format_version=4), newer)
    with pytest.raises(MaferError, match="newer than this mafer"):
        load_checkpoint(newer)


def test_a_full_disk_is_one_line_naming_the_checkpoint_and_keeps_the_previous_file(tmp_path, monkeypatch):
    """torch says "[enforce fail at inline_container.cc] unexpected pos", never that the disk is full
    (simulated here; tests/test_environment.py fills a real one)."""
    import errno

    model, optimizer, _ = trained_tiny()
    path = save_checkpoint(tmp_path / "best.pt", model, arch="senet_tiny", class_names=CLASSES, mean_bgr=(0, 0, 0))
    before = path.read_bytes()
    real_fdopen = os.fdopen

    class FillsUp:
        def __init__(self, file):
            self.file, self.written = file, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 50_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.file.write(data)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FillsUp(real_fdopen(fd, mode)))
    with pytest.raises(MaferError) as info:
        save_checkpoint(path, model, arch="senet_tiny", class_names=CLASSES, mean_bgr=(0, 0, 0), optimizer=optimizer)
    assert str(info.value).startswith(f"{path}: cannot write the checkpoint: the disk is full (ENOSPC")
    assert "unexpected pos" not in str(info.value)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["best.pt"]
