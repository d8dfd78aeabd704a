"""Training engine: every mode runs, exact resume, CR's frozen teacher, the recipe, NaN stop, config mapping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mafer.cli import main as cli_main
from mafer.datasets import get_dataset
from mafer.errors import MaferError
from mafer.models import create_model, load_checkpoint, save_checkpoint
from mafer.train import TrainConfig, run_step2, run_step1
from mafer.train import data as train_data
from mafer.train.config import FROM_SCRATCH_LR, PRESETS
from mafer.train.distributed import setup
from mafer.train.engine import Trainer


CPU = torch.device("cpu")


def smoke(data: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig.preset("smoke", data_dir=str(data), out=str(out), **{"device": "cpu", **overrides})


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def identity_init(smoke_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A step-1 base run on the VGGFace2 stand-in: the --init of the CR runs."""
    out = tmp_path_factory.mktemp("base") / "run"
    return run_step1(smoke(smoke_data, out, mode="base", dataset="vggface2")) / "best.pt"


# --------------------------------------------------------------------------- runs
def test_step2_writes_the_run_folder(smoke_data: Path, tmp_path: Path) -> None:
    run = run_step2(smoke(smoke_data, tmp_path / "ft", dataset="rafdb"))
    assert {p.name for p in run.iterdir()} >= {"best.pt", "last.pt", "config.yaml", "metrics.jsonl", "run_info.json"}
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt["class_names"] == list(get_dataset("rafdb", smoke_data).classes)
    assert ckpt["config"]["stage"] == "step2" and ckpt["arch"] == "senet_tiny"
    assert "acc" in ckpt["metrics"]
    assert yaml.safe_load((run / "config.yaml").read_text())["optimizer"] == "adam"
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == 17 and info["versions"]["torch"] == torch.__version__ and info["device"] == "cpu"
    records = read_metrics(run)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    assert {"loss", "acc", "lr_backbone", "lr_classifier", "p", "images_per_s", "epoch"} <= set(train[0])
    assert any(r["kind"] == "val" and 0.0 <= r["val_acc"] <= 1.0 for r in records)
    # best.pt is the network for evaluation; the optimizer state to resume from lives in last.pt only
    assert ckpt["optimizer_state_dict"] is None and ckpt["scheduler_state_dict"] is None
    assert load_checkpoint(run / "last.pt")["optimizer_state_dict"]["state"]
    assert (run / "best.pt").stat().st_size < (run / "last.pt").stat().st_size / 2  # adam: two moments


def test_no_keep_last_leaves_best_pt_alone_and_resume_says_why(smoke_data: Path, tmp_path: Path) -> None:
    run = run_step2(smoke(smoke_data, tmp_path / "ft", dataset="rafdb", max_steps=2, keep_last=False))
    assert (run / "best.pt").is_file() and not (run / "last.pt").exists()
    with pytest.raises(MaferError, match="nothing to resume; expected the last.pt"):
        run_step2(smoke(smoke_data, run, dataset="rafdb", max_steps=3, keep_last=False, resume=True))


@pytest.mark.parametrize("mode,dataset", [("base", "affwild2"), ("cr-simplified", "vggface2"),
                                          ("cr", "vggface2"), ("cr-simplified", "affwild2")])
def test_step1_modes_run(mode: str, dataset: str, smoke_data: Path, identity_init: Path, tmp_path: Path) -> None:
    run = run_step1(smoke(smoke_data, tmp_path / "run", mode=mode, dataset=dataset, init=str(identity_init)))
    ckpt = load_checkpoint(run / "last.pt")
    classes = get_dataset(dataset, smoke_data).classes
    assert ckpt["num_classes"] == len(classes)  # affwild2: a new 7-way head on the identity network
    val = [r for r in read_metrics(run) if r["kind"] == "val"][-1]
    assert {"val_acc", "val_acc_8px", "val_loss_8px"} <= set(val)
    train = [r for r in read_metrics(run) if r["kind"] == "train"]
    expected_p = 0.0 if mode == "base" else (1.0 if dataset == "affwild2" else 0.1)
    assert train[0]["p"] == expected_p
    assert val["best_metric"] == ("acc" if mode == "base" else "acc_8px")


def test_cr_teacher_is_frozen_and_loss_has_both_terms(smoke_data: Path, identity_init: Path, tmp_path: Path) -> None:
    cfg = smoke(smoke_data, tmp_path / "cr", mode="cr", dataset="vggface2", init=str(identity_init),
                stage="step1").resolve()
    trainer = Trainer(cfg, setup("cpu"))
    teacher_before = {k: v.clone() for k, v in trainer.teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert not trainer.teacher.training
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    trainer.fit()
    assert all(p.grad is None for p in trainer.teacher.parameters())
    assert all(torch.equal(v, teacher_before[k]) for k, v in trainer.teacher.state_dict().items())
    assert not all(torch.equal(v, student_before[k]) for k, v in trainer.model.state_dict().items())
    for r in (r for r in read_metrics(Path(cfg.out)) if r["kind"] == "train"):
        assert r["mse"] > 0 and r["ce"] > 0
        assert r["loss"] == pytest.approx(r["ce"] + 0.1 * r["mse"], rel=1e-5)


def test_cr_needs_a_teacher(smoke_data: Path, tmp_path: Path) -> None:
    with pytest.raises(MaferError, match="--init"):
        run_step1(smoke(smoke_data, tmp_path / "cr", mode="cr", dataset="vggface2"))


# --------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize("stage,options,cut,total", [
    # 2 steps per epoch, the second accumulating one batch; cut mid-epoch, run across epochs
    ("step1", dict(mode="cr-simplified", dataset="vggface2", accum_steps=2, curriculum_every=2), 3, 5),
    # 4 steps per epoch, validated twice per epoch (the plateau scheduler steps on the way)
    ("step2", dict(dataset="fer2013", accum_steps=2), 3, 5),
])
def test_interrupted_and_resumed_run_equals_straight_run(stage: str, options: dict, cut: int, total: int,
                                                         smoke_data: Path, tmp_path: Path) -> None:
    runner = run_step1 if stage == "step1" else run_step2
    common = dict(options, epochs=6, log_every=1)
    straight = runner(smoke(smoke_data, tmp_path / "straight", max_steps=total, **common))
    interrupted = runner(smoke(smoke_data, tmp_path / "cut", max_steps=cut, **common))
    assert load_checkpoint(interrupted / "last.pt")["extra"]["resume"]["step"] == cut
    (interrupted / "best.pt").unlink()  # as Snakemake does to a job's declared outputs before a rerun
    resumed = runner(smoke(smoke_data, tmp_path / "cut", max_steps=total, resume=True, **common))
    for name in ("last.pt", "best.pt"):
        a, b = load_checkpoint(straight / name), load_checkpoint(resumed / name)
        for key, value in a["model_state_dict"].items():
            assert torch.equal(value, b["model_state_dict"][key]), (name, key)
        assert a["metrics"] == b["metrics"], name
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert a["extra"]["resume"]["step"] == b["extra"]["resume"]["step"] == total
    losses = lambda run: [(r["step"], r["loss"], r["p"]) for r in read_metrics(run) if r["kind"] == "train"]
    assert losses(straight) == losses(resumed)  # same batches, same augmentation draws, same p
    info = json.loads((resumed / "run_info.json").read_text())
    assert info["resumes"][0]["resumed_at_step"] == cut


def test_folder_loader_gives_the_in_memory_batches(smoke_data: Path, tmp_path: Path) -> None:
    memory = run_step2(smoke(smoke_data, tmp_path / "memory", dataset="rafdb", max_steps=2, in_memory=True))
    folder = run_step2(smoke(smoke_data, tmp_path / "folder", dataset="rafdb", max_steps=2, in_memory=False))
    a, b = load_checkpoint(memory / "last.pt"), load_checkpoint(folder / "last.pt")
    assert all(torch.equal(v, b["model_state_dict"][k]) for k, v in a["model_state_dict"].items())


def test_device_decode_source_gives_the_worker_decoded_batches(smoke_data: Path) -> None:
    # the CUDA path (files read as bytes, decoded a batch at a time on the device), run on the CPU
    dataset = get_dataset("vggface2", smoke_data, "train")
    order = [torch.arange(0, 6), torch.arange(6, 9)]
    workers = list(train_data.FolderSource(get_dataset("vggface2", smoke_data, "train"), 40, 0).batches(order, CPU))
    device = list(train_data.DeviceDecodeSource(dataset, 40, 0).batches(order, CPU))
    for (a, a_labels), (b, b_labels) in zip(workers, device, strict=True):
        assert a.shape == b.shape == (len(a_labels), 3, 40, 40) and b.dtype == torch.uint8
        assert torch.equal(a_labels, b_labels)
        assert (a.int() - b.int()).abs().float().mean() < 1.0


def test_fer2013_has_no_image_files_so_cuda_keeps_the_worker_path(smoke_data: Path) -> None:
    cfg = TrainConfig(dataset="fer2013", data_dir=str(smoke_data), in_memory=False)
    source = train_data.make_source(cfg.resolve(), get_dataset("fer2013", smoke_data, "train"), torch.device("cuda"))
    assert isinstance(source, train_data.FolderSource)


@pytest.mark.slow
def test_compiled_run_follows_the_eager_run(smoke_data: Path, tmp_path: Path) -> None:
    # --compile compiles the network and the augmentation; same batches and draws, same losses
    options = dict(dataset="rafdb", max_steps=2, log_every=1)
    eager = run_step2(smoke(smoke_data, tmp_path / "eager", **options))
    compiled = run_step2(smoke(smoke_data, tmp_path / "compiled", compile=True, **options))
    losses = lambda run: [r["loss"] for r in read_metrics(run) if r["kind"] == "train"]
    assert losses(compiled) == pytest.approx(losses(eager), rel=1e-3)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@needs_cuda
def test_cuda_folder_runs_decode_on_the_gpu(smoke_data: Path) -> None:
    cfg = TrainConfig(stage="step1", mode="base", dataset="vggface2", data_dir=str(smoke_data), in_memory=False,
                      workers=2).resolve()
    gpu = torch.device("cuda")
    source = train_data.make_source(cfg, get_dataset("vggface2", smoke_data, "train"), gpu)
    assert isinstance(source, train_data.DeviceDecodeSource)
    order = [torch.arange(0, 8)]
    (images, labels), = source.batches(order, gpu)
    (expected, expected_labels), = train_data.FolderSource(get_dataset("vggface2", smoke_data, "train"),
                                                           cfg.source_size, 0).batches(order, CPU)
    assert images.device.type == "cuda" and torch.equal(labels.cpu(), expected_labels)
    assert (images.cpu().int() - expected.int()).abs().float().mean() < 2.0


@needs_cuda
@pytest.mark.parametrize("compile_", [False, True])
def test_cuda_runs_bf16_channels_last(compile_: bool, smoke_data: Path, identity_init: Path, tmp_path: Path) -> None:
    cuda = dict(device="cuda", compile=compile_, amp=True, channels_last=True)
    ft = run_step2(smoke(smoke_data, tmp_path / "ft", dataset="rafdb", in_memory=False, workers=2, **cuda))
    cr = run_step1(smoke(smoke_data, tmp_path / "cr", mode="cr", dataset="vggface2", init=str(identity_init),
                            **cuda))
    for run in (ft, cr):
        info = json.loads((run / "run_info.json").read_text())
        assert info["device"].startswith("cuda")
        train = [r for r in read_metrics(run) if r["kind"] == "train"]
        assert train and all(r["loss"] == r["loss"] for r in train)  # no NaN under bf16


def test_resume_refuses_changed_options_and_existing_runs(smoke_data: Path, tmp_path: Path) -> None:
    run_step2(smoke(smoke_data, tmp_path / "run", dataset="rafdb", max_steps=2))
    with pytest.raises(MaferError, match="already holds a run"):
        run_step2(smoke(smoke_data, tmp_path / "run", dataset="rafdb", max_steps=2))
    with pytest.raises(MaferError, match="batch_size"):
        run_step2(smoke(smoke_data, tmp_path / "run", dataset="rafdb", batch_size=4, resume=True))
    with pytest.raises(MaferError, match="nothing to resume"):
        run_step2(smoke(smoke_data, tmp_path / "empty", dataset="rafdb", resume=True))
    for name in ("best.pt", ".best.pt.kept"):
        (tmp_path / "run" / name).unlink()
    with pytest.raises(MaferError, match="best weights .* are lost"):
        run_step2(smoke(smoke_data, tmp_path / "run", dataset="rafdb", max_steps=3, resume=True))


def test_arch_flag_reaches_the_checkpoint_and_a_format_v1_last_pt_resumes(
        smoke_data: Path, tmp_path: Path, as_format_v1) -> None:
    out = tmp_path / "cli"
    argv = ["step2", "--arch", "senet_tiny", "--image-size", "32", "--batch-size", "8", "--accum-steps", "1",
            "--epochs", "1", "--workers", "0", "--in-memory", "--no-progress", "--dataset", "rafdb",
            "--data-dir", str(smoke_data), "--out", str(out), "--device", "cpu"]
    assert cli_main(argv + ["--max-steps", "2"]) == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["arch"] == ckpt["config"]["arch"] == "senet_tiny"  # the default is senet50: the flag got there
    assert "arch: senet_tiny  # flag --arch" in (out / "config.yaml").read_text()
    # a run interrupted before the rename (last.pt with model_name and config "model") resumes
    as_format_v1(out / "last.pt")
    assert cli_main(argv + ["--max-steps", "3", "--resume"]) == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["extra"]["resume"]["step"] == 3 and ckpt["arch"] == "senet_tiny" and ckpt["format_version"] == 3
    # and a changed architecture is still caught by the comparison of the saved options
    as_format_v1(out / "last.pt")
    with pytest.raises(MaferError, match="arch \\(saved 'senet_tiny', now 'senet50'\\)"):
        run_step2(TrainConfig.from_dict({**ckpt["config"], "arch": "senet50", "max_steps": 4, "resume": True}))


# --------------------------------------------------------------------------- the recipe
def test_step2_recipe_class_weights_and_two_learning_rates(smoke_data: Path, identity_init: Path,
                                                              tmp_path: Path) -> None:
    cfg = TrainConfig(dataset="rafdb", data_dir=str(smoke_data), out=str(tmp_path / "r"), init=str(identity_init),
                      arch="senet_tiny", image_size=32, device="cpu").resolve()
    assert (cfg.optimizer, cfg.batch_size, cfg.accum_steps, cfg.seed, cfg.val_per_epoch) == ("adam", 16, 4, 17, 2)
    assert (cfg.weight_decay, cfg.monitor, cfg.best_metric, cfg.lower_p) == (1e-4, "acc", "acc", 0.0)
    assert (cfg.plateau_factor, cfg.plateau_patience, cfg.plateau_threshold) == (0.1, 10, 1e-3)
    trainer = Trainer(cfg, setup("cpu"))
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["backbone"]["lr"] == 1e-4 and groups["classifier"]["lr"] == 1e-2
    assert all(g["weight_decay"] == 1e-4 and g["betas"] == (0.9, 0.999) for g in groups.values())
    head = {id(p) for p in trainer.model.classifier.parameters()}
    assert {id(p) for p in groups["classifier"]["params"]} == head
    assert len(groups["backbone"]["params"]) + len(head) == len(list(trainer.model.parameters()))
    counts = torch.tensor(list(get_dataset("rafdb", smoke_data).class_counts().values()), dtype=torch.float32)
    assert torch.allclose(trainer.weights, 1 - counts / counts.sum())
    assert trainer.scheduler.mode == "max" and trainer.scheduler.factor == 0.1
    # step 2 always starts from a new classifier, even from a checkpoint with as many classes
    assert not torch.equal(trainer.model.classifier.weight, load_checkpoint(identity_init)["model_state_dict"]
                           ["classifier.weight"][: trainer.model.classifier.out_features])


def test_no_augment_trains_on_the_evaluation_view(smoke_data: Path, tmp_path: Path) -> None:
    cfg = smoke(smoke_data, tmp_path / "plain", dataset="rafdb", augment=False).resolve()
    trainer = Trainer(cfg, setup("cpu"))
    images = torch.randint(0, 256, (4, 3, 100, 100), dtype=torch.uint8)
    x, _ = trainer.train_inputs(images, 0.0)
    assert torch.equal(x, trainer.to_input(trainer.augment_eval(images)))
    augmented = Trainer(smoke(smoke_data, tmp_path / "aug", dataset="rafdb").resolve(), setup("cpu"))
    assert not torch.equal(augmented.train_inputs(images, 0.0)[0], x)


def test_step1_recipes() -> None:
    cr = TrainConfig(stage="step1", mode="cr", dataset="vggface2", init="x.pt").resolve()
    assert (cr.optimizer, cr.lr, cr.backbone_lr, cr.momentum, cr.weight_decay) == ("sgd", 1e-3, 1e-3, 0.9, 5e-4)
    assert (cr.batch_size, cr.accum_steps, cr.cr_lambda, cr.lower_p) == (32, 8, 0.1, None)
    assert (cr.monitor, cr.best_metric, cr.plateau_factor, cr.plateau_threshold, cr.plateau_min_lr) == \
        ("loss_8px", "acc_8px", 0.5, 0.1, 1e-7)
    aff = TrainConfig(stage="step1", mode="cr-simplified", dataset="affwild2").resolve()
    assert (aff.optimizer, aff.lr, aff.backbone_lr, aff.batch_size, aff.accum_steps) == ("adam", 1e-2, 1e-4, 32, 4)
    assert aff.class_weighted and aff.lower_p == 1.0
    scratch = TrainConfig(stage="step1", mode="base", dataset="vggface2").resolve()
    assert scratch.lower_p == 0.0 and scratch.lr == scratch.backbone_lr == FROM_SCRATCH_LR  # no --init


# --------------------------------------------------------------------------- failures
def test_nan_loss_stops_with_the_step(smoke_data: Path, tmp_path: Path) -> None:
    cfg = smoke(smoke_data, tmp_path / "nan", dataset="rafdb", optimizer="sgd", lr=1e30, backbone_lr=1e30)
    with pytest.raises(MaferError, match=r"step \d+ .*not a finite number"):
        run_step2(cfg)


def test_bad_options_raise() -> None:
    with pytest.raises(MaferError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(MaferError, match="dataset"):
        TrainConfig(stage="step2", dataset="vggface2").resolve()
    with pytest.raises(MaferError, match="monitor"):
        TrainConfig(dataset="rafdb", monitor="acc_8px").resolve()
    with pytest.raises(MaferError, match="preset"):
        TrainConfig.preset("huge")
    # values are checked when read (YAML file, notebook parameters, profile), not when a run uses them
    for params, message in [({"bach_size": 8}, "unknown training option 'bach_size'; did you mean 'batch_size'"),
                            ({"epochs": "5"}, "epochs must be a whole number or null; got '5'"),
                            ({"augment": "no"}, "augment must be true or false; got 'no'"),
                            ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adam; got 'rmsprop'"),
                            ({"betas": [0.9]}, "betas must be two numbers; got \\[0.9\\]")]:
        with pytest.raises(MaferError, match=f"^file x.yaml: {message}"):
            TrainConfig().updated(params, source="file x.yaml")
    read = TrainConfig().updated({"lr": 1, "betas": [0.9, 0.99], "data_dir": Path("/data"), "seed": None})
    assert (read.lr, read.betas, read.data_dir, read.seed) == (1, (0.9, 0.99), "/data", None)


def test_too_small_training_set(smoke_data: Path, tmp_path: Path) -> None:
    with pytest.raises(MaferError, match="fewer than one batch"):
        run_step2(smoke(smoke_data, tmp_path / "r", dataset="rafdb", batch_size=10_000))


# --------------------------------------------------------------------------- configuration
def test_precedence_defaults_preset_yaml_flags(smoke_data: Path, tmp_path: Path) -> None:
    from mafer.train.config import add_config_arguments, config_from_args
    import argparse

    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("lr: 0.5\nbatch_size: 4\nbetas: [0.8, 0.99]\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, "step2")
    args = parser.parse_args(["--preset", "demo", "--config", str(yaml_file), "--batch-size", "2", "--no-amp"])
    cfg = config_from_args(args, "step2")
    assert cfg.arch == PRESETS["demo"]["arch"]  # preset over default
    assert cfg.lr == 0.5 and cfg.betas == (0.8, 0.99)  # YAML over preset/default
    assert cfg.batch_size == 2 and cfg.amp is False  # flags over YAML
    assert cfg.backbone_lr is None and cfg.resolve().backbone_lr == 1e-4  # untouched: the recipe
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(MaferError, match="bad.yaml"):
        TrainConfig.from_yaml(bad)


def test_cli_runs_and_reports_errors(smoke_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli"
    argv = ["step2", "--preset", "smoke", "--dataset", "fer2013", "--data-dir", str(smoke_data),
            "--out", str(out), "--max-steps", "2", "--device", "cpu"]
    assert cli_main(argv) == 0
    assert (out / "best.pt").is_file()
    assert cli_main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_init_with_another_architecture_is_refused(smoke_data: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "senet50.pt"
    save_checkpoint(wrong, create_model("senet50", 7), arch="senet50", class_names=list("abcdefg"),
                    mean_bgr=(0.0, 0.0, 0.0))
    with pytest.raises(MaferError, match="senet50.pt"):
        run_step2(smoke(smoke_data, tmp_path / "r", dataset="rafdb", init=str(wrong)))


def test_skip_bad_skips_a_truncated_image_and_lists_it(smoke_data: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(smoke_data / "rafdb", data / "rafdb")
    victim = Path(get_dataset("rafdb", data, "train").samples[3])
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    argv = ["step2", "--preset", "smoke", "--dataset", "rafdb", "--data-dir", str(data), "--max-steps", "1",
            "--device", "cpu"]
    assert cli_main(argv + ["--out", str(tmp_path / "fails")]) == 2
    err = capsys.readouterr().err
    assert str(victim) in err and "--skip-bad" in err and "Traceback" not in err

    assert cli_main(argv + ["--out", str(tmp_path / "ft"), "--skip-bad"]) == 0
    skipped = (tmp_path / "ft" / "skipped.txt").read_text().splitlines()
    assert len(skipped) == 1 and str(victim) in skipped[0]
    data_line = next(r for r in read_metrics(tmp_path / "ft") if r["kind"] == "data")
    assert data_line["skipped_train"] == 1 and data_line["skipped_val"] == 0
    assert json.loads((tmp_path / "ft" / "run_info.json").read_text())["skipped"] == {"train": 1, "val": 0}

    # the same from a config field, on the from-disk path (step 1 on AffWild2 frames)
    shutil.copytree(smoke_data / "affwild2", data / "affwild2")
    failing = smoke(data, tmp_path / "pre-fails", stage="step1", mode="base", dataset="affwild2",
                    in_memory=False, workers=1, max_steps=1)
    frames = get_dataset("affwild2", data, "train").samples
    first = int(train_data.epoch_permutation(len(frames), failing.resolve().seed, 0)[0])
    frame = Path(frames[first])  # in the first batch
    frame.write_bytes(b"")
    with pytest.raises(MaferError) as exc:  # met by a loader worker in mid-run: one line, the option named
        run_step1(failing)
    assert str(exc.value).startswith(str(frame)) and "--skip-bad" in str(exc.value) and "\n" not in str(exc.value)
    run = run_step1(smoke(data, tmp_path / "pre", mode="base", dataset="affwild2", in_memory=False,
                             skip_bad=True, max_steps=1))
    assert str(frame) in (run / "skipped.txt").read_text()
