"""`TrainConfig` on the command line: --print-config, the sources of the values, --help, field types."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
import yaml

from mafer.cli import main
from mafer.errors import MaferError
from mafer.train import config as C


def print_config(capsys: pytest.CaptureFixture, *argv: str) -> dict[str, tuple[str, str]]:
    assert main(list(argv) + ["--print-config"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        name, value, source = line.split(maxsplit=2)
        rows[name] = (value, source)
    return rows


def test_print_config_names_the_source_of_every_value(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_yaml = tmp_path / "run.yaml"
    run_yaml.write_text("epochs: 7\nseed: 3\n")
    rows = print_config(capsys, "step2", "--preset", "demo", "--config", str(run_yaml), "--lr", "0.5",
                        "--dataset", "rafdb")
    assert set(rows) == {f.name for f in dataclasses.fields(C.TrainConfig)}
    assert rows["momentum"] == ("0.9", "default")
    assert rows["arch"] == ("'senet_tiny'", "preset demo")
    assert rows["epochs"] == ("7", f"file {run_yaml}")
    assert rows["lr"] == ("0.5", "flag --lr")
    assert rows["dataset"] == ("'rafdb'", "flag --dataset")
    assert rows["backbone_lr"] == ("0.0001", "recipe (step2)")
    assert rows["source_size"][0] == "100" and rows["source_size"][1].startswith("recipe")
    # a flag beats the file, the file beats the preset
    rows = print_config(capsys, "step2", "--preset", "demo", "--config", str(run_yaml), "--epochs", "2")
    assert rows["epochs"] == ("2", "flag --epochs")
    # a switch is named as it was given
    assert print_config(capsys, "step2", "--no-augment")["augment"] == ("False", "flag --no-augment")
    assert print_config(capsys, "step2", "--augment")["augment"] == ("True", "flag --augment")


def test_the_recipe_fills_only_what_was_not_given() -> None:
    cfg = C.TrainConfig(stage="step1", dataset="vggface2").updated({"lr": 0.2}, "flag --lr").resolve()
    assert cfg.sources()["lr"] == "flag --lr"
    # the VGGFace2 row's backbone lr follows --lr; without --init the from-scratch row applies
    assert (cfg.backbone_lr, cfg.sources()["backbone_lr"]) == (0.2, "recipe (step1 base vggface2 from scratch)")
    cfg = C.TrainConfig(stage="step1", mode="cr", dataset="affwild2", init="x.pt", val_resolution=16).resolve()
    assert (cfg.lr, cfg.backbone_lr, cfg.monitor, cfg.best_metric) == (1e-2, 1e-4, "acc_16px", "acc_16px")
    assert cfg.sources()["monitor"] == "recipe (step1 cr affwild2)"


def test_every_recipe_row_fills_the_same_fields_and_every_stage_has_its_rows() -> None:
    assert all(set(row) == C.RECIPE_FIELDS for row in C.RECIPES.values())
    assert C.RECIPE_FIELDS <= {f.name for f in dataclasses.fields(C.TrainConfig)}
    for mode in C.STEP1_MODES:
        for dataset in C.STEP1_DATASETS:
            for init in ("x.pt", None):
                if mode == "cr" and init is None:
                    continue  # refused: CR's teacher is the --init network
                cfg = C.TrainConfig(stage="step1", mode=mode, dataset=dataset, init=init).resolve()
                assert all(getattr(cfg, k) is not None for k in C.RECIPE_FIELDS - {"lower_p"}), (mode, dataset)
                assert C.recipe_name(cfg) in C.RECIPES


def test_config_yaml_keeps_values_and_sources(tmp_path: Path) -> None:
    cfg = C.TrainConfig.preset("smoke").resolve()
    cfg.to_yaml(tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "arch: senet_tiny  # preset smoke" in text
    assert "lr: 0.01  # recipe (step2)" in text and "betas: [0.9, 0.999]  # default" in text
    assert C.TrainConfig.from_dict(yaml.safe_load(text)).to_dict() == cfg.to_dict()


def test_help_shows_defaults_and_names_presets_and_recipes(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["step2", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--lr LR", "--epochs EPOCHS", "--batch-size BATCH_SIZE"):
        assert f"{flag} " in text
    assert "SGD momentum (default: 0.9)" in text
    # each recipe-filled flag names its value in the recipe table and the presets that set it
    assert "--lr LR learning rate of the classifier (default: recipe table below: 0.01)" in text
    assert "(default: recipe table below: 16; presets: smoke 8, demo 32)" in text
    assert "(default: senet50; presets: smoke senet_tiny, demo senet_tiny)" in text
    assert "presets (--preset NAME" in text and "demo arch=senet_tiny, image_size=48" in text
    assert "step2: optimizer=adam, lr=0.01, backbone_lr=0.0001" in text
    with pytest.raises(SystemExit):
        main(["step1", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: recipe table below: 0.001 (vggface2), 0.05 (vggface2 from scratch), 0.01 (affwild2))" in text
    assert "(default: recipe table below: lr (vggface2), lr*0.01 (affwild2))" in text
    assert "loss (base vggface2), loss_8px (cr/cr-simplified vggface2)" in text
    for row in ("step1 cr vggface2:", "step1 base vggface2 from scratch:", "step1 cr-simplified affwild2:"):
        assert row in text
    assert "step2:" not in text


def test_each_step_offers_only_the_options_it_reads(capsys: pytest.CaptureFixture) -> None:
    step1_only = ("--mode", "--cr-lambda", "--lower-p", "--curriculum-start", "--curriculum-step",
                  "--curriculum-stop", "--curriculum-every", "--val-resolution")
    with pytest.raises(SystemExit):
        main(["step2", "--help"])
    text = capsys.readouterr().out
    assert not [flag for flag in step1_only if f"{flag} " in text]
    assert "--dataset {fer2013,rafdb,oulucasia}" in text and "vggface2" not in text
    with pytest.raises(SystemExit):
        main(["step1", "--help"])
    text = capsys.readouterr().out
    assert all(f"{flag} " in text for flag in step1_only) and "--fold " not in text and "fer2013" not in text
    # a step-1 option given to step 2 is refused in one line, before anything runs
    with pytest.raises(SystemExit) as stopped:
        main(["step2", "--dataset", "rafdb", "--cr-lambda", "0.2", "--print-config"])
    assert stopped.value.code == 2 and "unrecognized arguments: --cr-lambda 0.2" in capsys.readouterr().err


def test_arch_flag_reaches_the_config_and_the_old_model_name_still_works(
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    rows = print_config(capsys, "step2", "--arch", "senet_tiny")
    assert rows["arch"] == ("'senet_tiny'", "flag --arch")
    assert main(["step2", "--model", "senet_tiny", "--print-config"]) == 0
    out, err = capsys.readouterr()
    assert next(line.split(maxsplit=2) for line in out.splitlines() if line.startswith("arch ")) == \
        ["arch", "'senet_tiny'", "flag --arch"]
    assert err.strip() == "mafer: --model is deprecated, use --arch"
    # an old config file (or notebook parameters) with `model:` is read as arch, with a warning
    old = tmp_path / "old.yaml"
    old.write_text("model: senet_tiny\n")
    with pytest.warns(FutureWarning, match="'model' is now called 'arch'"):
        assert C.TrainConfig.from_yaml(old).arch == "senet_tiny"
    with pytest.raises(MaferError, match="both 'model'"):
        C.TrainConfig.from_dict({"model": "senet50", "arch": "senet_tiny"})


def test_the_old_step_names_still_run_with_a_notice(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    # the steps were `mafer pretrain` / `mafer finetune`, stage pretrain / finetune, run_pretrain /
    # run_finetune before they took the paper's names: commands, config files and code still work
    for old, new in (("pretrain", "step1"), ("finetune", "step2")):
        assert main([old, "--dataset", "affwild2" if old == "pretrain" else "rafdb", "--print-config"]) == 0
        out, err = capsys.readouterr()
        assert err.strip() == f"mafer: 'mafer {old}' is now 'mafer {new}' (the paper's step names); running it now"
        assert next(line.split(maxsplit=2) for line in out.splitlines() if line.startswith("stage ")) == \
            ["stage", f"'{new}'", "command"]
        old_config = tmp_path / f"{old}.yaml"
        old_config.write_text(f"stage: {old}\n")
        with pytest.warns(FutureWarning, match=f"stage '{old}' is now called '{new}'"):
            assert C.TrainConfig.from_yaml(old_config).stage == new
        with pytest.warns(FutureWarning, match=f"stage '{old}' is now called '{new}'"):
            assert C.TrainConfig(stage=old).stage == new
    import mafer.train

    with pytest.warns(FutureWarning, match="mafer.train.run_finetune is now mafer.train.run_step2"):
        assert mafer.train.run_finetune is mafer.train.run_step2


def test_resumable_fields_come_from_the_field_metadata() -> None:
    resumable = C.resumable_fields()
    assert {"max_steps", "device", "out", "workers", "compile"} <= resumable
    assert not {"lr", "seed", "batch_size", "dataset"} & resumable


def test_field_types_from_annotations_and_unsupported_types_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    types_ = C.field_types()
    assert types_["lr"] is float and types_["epochs"] is int and types_["betas"] is tuple
    assert types_["augment"] is bool and types_["init"] is str

    @dataclasses.dataclass
    class Odd(C.TrainConfig):
        crops: list[int] | None = None

    monkeypatch.setattr(C, "TrainConfig", Odd)
    with pytest.raises(TypeError, match="crops: unsupported type"):
        C.field_types()
    with pytest.raises(TypeError, match="crops"):
        C.add_config_arguments(argparse.ArgumentParser(), "step2")
