"""`TrainConfig`: every option of a training run, in one dataclass.

The same fields are reachable from the command line (one flag per field, generated from the
dataclass), from a YAML file (``--config run.yaml``) and from Python (``TrainConfig(**params)``,
``TrainConfig.from_dict``). Precedence: defaults < preset < YAML < CLI flags.

Fields left at ``None`` mean "the paper's value for this stage": `resolve` fills them from
`recipe` (step 2 fine-tuning, step 1 on VGGFace2, or the AffWild2 stage), so one dataclass
serves every stage and the resolved values end up in the run's ``config.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from mafer.errors import MaferError
from mafer.yamlfile import read_yaml_mapping

PRETRAIN_MODES = ("base", "cr", "cr-simplified")
PRETRAIN_DATASETS = ("vggface2", "affwild2")
FINETUNE_DATASETS = ("fer2013", "rafdb", "oulucasia")
MODELS = ("senet50", "senet_tiny")

# Native sizes of the datasets whose images all share one size: they are cached at that size.
# Datasets with varied sizes are cached at image_size * 256 / 224 (the paper's Resize(256)).
NATIVE_SIZES = {"fer2013": 48, "rafdb": 100, "affwild2": 112}


FROM_SCRATCH_LR = 0.05  # SGD, random weights; demo data, 3 epochs: 47 % val accuracy (9 % at 1e-3)


def _opt(help_: str, default: Any = None, choices: tuple[str, ...] | None = None, *,
         resumable: bool = False) -> Any:
    """A field with its ``--help`` text, its choices and whether ``--resume`` may change it
    (only options that do not change the trajectory: where files are, how often to log...)."""
    return field(default=default, metadata={"help": help_, "choices": choices, "resumable": resumable})


@dataclass
class TrainConfig:
    """Every option of a step-1 (``pretrain``) or step-2 (``finetune``) run.

    ``None`` means "the recipe's value" (see `recipe`); call `resolve` to fill them in.
    """

    # what to train
    stage: str = _opt("pretrain (step 1) or finetune (step 2); set by the command", "finetune")
    mode: str = _opt("step 1 only: base (full resolution), cr (teacher-student) or cr-simplified", "base",
                      PRETRAIN_MODES)
    dataset: str = _opt("fer2013, rafdb, oulucasia (finetune); vggface2, affwild2 (pretrain)", "fer2013")
    data_dir: str = _opt("folder with one sub-folder per dataset (or the dataset folder itself)", "data",
                         resumable=True)
    out: str = _opt("run folder: best.pt, last.pt, config.yaml, metrics.jsonl, run_info.json", "runs/run",
                    resumable=True)
    init: str | None = _opt("checkpoint to start from (project, MAFER release or VGGFace2 weights)", resumable=True)
    fold: int | None = _opt("Oulu-CASIA: 0-based fold to train")
    folds: int = _opt("Oulu-CASIA: number of folds", 10)
    protocol: str = _opt("Oulu-CASIA folds over 'image' (the paper's) or 'subject'", "image", ("image", "subject"))
    # model and input
    model: str = _opt("senet50 (the paper's) or senet_tiny (demo)", "senet50", MODELS)
    image_size: int = _opt("network input size in pixels", 224)
    source_size: int | None = _opt("size the images are cached/decoded at before lowering and augmentation "
                                   "(default: the dataset's native size, else image_size*256/224)")
    in_memory: bool | None = _opt("cache the sets in memory as uint8 (default: when they fit in 4 GiB)", resumable=True)
    skip_bad: bool = _opt("skip unreadable images and malformed labels instead of stopping; they are listed in "
                          "the run folder's skipped.txt and counted in metrics.jsonl", False)
    augment: bool = _opt("the paper's training augmentation of the dataset (--no-augment: only the "
                         "evaluation resize/crop, e.g. for minute-long demo runs)", True)
    # schedule
    epochs: int | None = _opt("number of epochs (the paper does not state them; recipe default)")
    max_steps: int | None = _opt("stop after this many optimizer steps (the schedule still follows --epochs)",
                                 resumable=True)
    batch_size: int | None = _opt("images per process per forward pass")
    accum_steps: int | None = _opt("forward passes accumulated per optimizer step "
                                   "(effective batch = batch_size * accum_steps * processes)")
    # optimizer
    optimizer: str | None = _opt("sgd or adam", None, ("sgd", "adam"))
    lr: float | None = _opt("learning rate of the classifier")
    backbone_lr: float | None = _opt("learning rate of everything but the classifier")
    momentum: float = _opt("SGD momentum", 0.9)
    betas: tuple[float, float] = _opt("Adam betas", (0.9, 0.999))
    weight_decay: float | None = _opt("weight decay (L2, on every parameter)")
    # learning-rate schedule: ReduceLROnPlateau on a validation metric
    monitor: str | None = _opt("validation metric the plateau scheduler watches: acc, loss, acc_8px, loss_8px")
    best_metric: str | None = _opt("validation metric that picks best.pt (acc, acc_8px, ...)")
    plateau_factor: float | None = _opt("ReduceLROnPlateau factor")
    plateau_patience: int | None = _opt("ReduceLROnPlateau patience (in validations)")
    plateau_threshold: float | None = _opt("ReduceLROnPlateau threshold (relative)")
    plateau_min_lr: float | None = _opt("ReduceLROnPlateau minimum learning rate")
    # loss
    class_weighted: bool | None = _opt("weight the cross-entropy by w_c = 1 - n_c / N")
    cr_lambda: float = _opt("CR: weight of the feature MSE term", 0.1)
    # lowering (step 1)
    lower_p: float | None = _opt("constant lowering probability; unset = curriculum (cr, cr-simplified)")
    curriculum_start: float = _opt("curriculum: first lowering probability", 0.1)
    curriculum_step: float = _opt("curriculum: increase of p at each interval", 0.1)
    curriculum_stop: float = _opt("curriculum: last lowering probability", 1.0)
    curriculum_every: int | None = _opt("curriculum: optimizer steps between increases "
                                        "(default: a tenth of the planned steps)")
    # validation and checkpoints
    val_per_epoch: int | None = _opt("validations per epoch")
    val_resolution: int = _opt("step 1: the low resolution (pixels) validated besides full resolution", 8)
    save_every: int | None = _opt("also write last.pt every this many optimizer steps", resumable=True)
    # engine
    device: str = _opt("auto, cpu or cuda", "auto", ("auto", "cpu", "cuda"), resumable=True)
    seed: int | None = _opt("random seed (the paper's step 2 uses 17)")
    workers: int = _opt("data-loader worker processes (folder path) ", 4, resumable=True)
    resume: bool = _opt("continue the run in --out from its last.pt, exactly where it stopped", False, resumable=True)
    compile: bool = _opt("torch.compile the network", False, resumable=True)
    amp: bool = _opt("bf16 autocast on CUDA", True)
    channels_last: bool = _opt("channels_last memory format on CUDA", True)
    deterministic: bool = _opt("deterministic algorithms (slower on CUDA)", False)
    progress: bool | None = _opt("tqdm progress bars (default: when stderr is a terminal)", resumable=True)
    log_every: int = _opt("write a metrics.jsonl line every this many optimizer steps", 10, resumable=True)

    def __post_init__(self) -> None:
        # where each field's value came from (see `sources`); not a field: it is not an option
        self._sources: dict[str, str] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, params: Mapping[str, Any]) -> "TrainConfig":
        """Build from a mapping (notebook parameters, YAML); unknown keys raise MaferError."""
        return cls().updated(params)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        """Build from a YAML file of field names and values (see `TrainConfig.updated`)."""
        return cls().updated(read_yaml(path))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """A named preset (see ``PRESETS``: smoke, demo, paper) with optional overrides."""
        if name not in PRESETS:
            raise MaferError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}")
        return cls().updated(PRESETS[name], source=f"preset {name}").updated(overrides)

    def updated(self, params: Mapping[str, Any], source: str = "parameters") -> "TrainConfig":
        """A copy with ``params`` applied; unknown keys raise MaferError naming ``source``."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise MaferError(f"{source}: unknown training option(s) {', '.join(unknown)}; "
                             f"known options: {', '.join(sorted(known))}")
        values = dict(params)
        if isinstance(values.get("betas"), list):
            values["betas"] = tuple(values["betas"])
        return self._replaced(values, {k: source for k in values})

    def _replaced(self, values: Mapping[str, Any], sources: Mapping[str, str]) -> "TrainConfig":
        new = dataclasses.replace(self, **values)
        new._sources = {**self._sources, **sources}
        return new

    def sources(self) -> dict[str, str]:
        """For every field, where its value came from: ``default``, ``preset NAME``, ``file PATH``,
        ``flag --NAME``, ``recipe (...)`` or whatever source `updated` was given."""
        return {f.name: self._sources.get(f.name, "default") for f in fields(self)}

    def describe(self) -> str:
        """Every field, its value and its source, one per line (`--print-config`, run start)."""
        values = self.to_dict()
        width = max(len(name) for name in values)
        value_width = max(len(repr(v)) for v in values.values())
        return "\n".join(f"{name:<{width}}  {values[name]!r:<{value_width}}  {source}"
                         for name, source in self.sources().items())

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (tuples as lists), ready for YAML / JSON / checkpoints."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def to_yaml(self, path: str | Path) -> None:
        """Write every field to ``path`` (the run's ``config.yaml``), each with its source as a comment."""
        sources = self.sources()
        # lists in flow style, so that every field is one line and its comment sits on it
        lines = [yaml.safe_dump({k: v}, default_flow_style=None if isinstance(v, list) else False).rstrip("\n")
                 + f"  # {sources[k]}" for k, v in self.to_dict().items()]
        Path(path).write_text("\n".join(lines) + "\n")

    # ------------------------------------------------------------------ recipe
    def resolve(self) -> "TrainConfig":
        """A copy with every ``None`` recipe field filled in and the options checked."""
        self.check()
        filled = {k: v for k, v in recipe(self).items() if getattr(self, k) is None}
        cfg = self._replaced(filled, {k: f"recipe ({recipe_name(self)})" for k in filled})
        if cfg.source_size is None:
            cfg = cfg._replaced({"source_size": NATIVE_SIZES.get(cfg.dataset, math.ceil(cfg.image_size * 256 / 224))},
                                {"source_size": "recipe (native size, else image_size*256/224)"})
        cfg.check_values()
        return cfg

    @property
    def lowers(self) -> bool:
        """Whether training images are lowered (step 1 cr / cr-simplified)."""
        return self.stage == "pretrain" and self.mode != "base"

    def check(self) -> None:
        """MaferError on an option outside its set of choices."""
        _choice("stage", self.stage, ("pretrain", "finetune"))
        if self.stage == "pretrain":
            _choice("mode", self.mode, PRETRAIN_MODES)
            _choice("dataset", self.dataset, PRETRAIN_DATASETS)
            if self.mode == "cr" and not self.init:
                raise MaferError("mode 'cr' needs --init: the teacher is a frozen copy of that network")
        else:
            _choice("dataset", self.dataset, FINETUNE_DATASETS)
        _choice("model", self.model, MODELS)
        _choice("protocol", self.protocol, ("image", "subject"))
        _choice("device", self.device, ("auto", "cpu", "cuda"))

    def check_values(self) -> None:
        """MaferError on values that cannot work (after `resolve`)."""
        _choice("optimizer", self.optimizer, ("sgd", "adam"))
        for name in ("epochs", "batch_size", "accum_steps", "val_per_epoch", "log_every"):
            if getattr(self, name) < 1:
                raise MaferError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "save_every", "curriculum_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise MaferError(f"{name} must be at least 1, got {value}")
        if self.image_size < 32:
            raise MaferError(f"image_size must be at least 32 pixels, got {self.image_size}")
        if self.lower_p is not None and not 0.0 <= self.lower_p <= 1.0:
            raise MaferError(f"lower_p must be in [0, 1], got {self.lower_p}")
        for name in ("monitor", "best_metric"):
            metric = getattr(self, name)
            if metric.split("_")[0] not in ("acc", "loss") or metric not in self.val_metrics():
                raise MaferError(f"{name} {metric!r} is not a validation metric of this run; "
                                 f"expected one of {', '.join(self.val_metrics())}")

    def val_metrics(self) -> tuple[str, ...]:
        """Names of the validation metrics this run computes."""
        if self.stage == "finetune":
            return ("acc", "loss")
        low = self.val_resolution
        return ("acc", "loss", f"acc_{low}px", f"loss_{low}px")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MaferError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def recipe_name(cfg: TrainConfig) -> str:
    """Which of `recipe`'s tables applies: ``finetune``, ``pretrain MODE vggface2``, ``pretrain MODE affwild2``."""
    return "finetune" if cfg.stage == "finetune" else f"pretrain {cfg.mode} {cfg.dataset}"


def recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The paper's values of the ``None``-default fields for this stage, mode and dataset.

    - step 2 (fer2013, rafdb, oulucasia): Adam, classifier lr 1e-2, backbone 1e-4, wd 1e-4,
      batch 16 x 4, class-weighted CE, ReduceLROnPlateau(max, 0.1, 10, 0.001) on validation
      accuracy, validation twice per epoch, best by validation accuracy, seed 17, no lowering.
    - step 1 on VGGFace2: SGD lr 1e-3 (one lr: backbone_lr defaults to lr), momentum 0.9, wd 5e-4, batch 32 x 8,
      ReduceLROnPlateau(min, 0.5, 10, 0.1, min lr 1e-7) on the low-resolution validation loss,
      best by 8-px validation accuracy, lowering probability on a curriculum 0.1 -> 1.0
      (mode base: full resolution, full-resolution loss and accuracy).
    - step 1 on AffWild2 (the CR+AffWild2 stage): Adam, lr 1e-2 head / backbone lr x 0.01, batch 32 x 4,
      class-weighted CE, every frame lowered (p = 1); the paper gives no weight decay or
      scheduler for it, so step 2's are used, watching the 8-px validation accuracy.
    Without ``--init`` (base from random weights, the demo's stand-in for the VGGFace2
    pre-training the paper starts from) the lr is ``FROM_SCRATCH_LR``: 1e-3 is a fine-tuning lr.
    The paper states no epoch counts; ours are 30 (step 2), 10 (VGGFace2) and 5 (AffWild2).
    """
    low = f"{cfg.val_resolution}px"
    adam = dict(optimizer="adam", lr=1e-2, backbone_lr=1e-4, weight_decay=1e-4, class_weighted=True,
                plateau_factor=0.1, plateau_patience=10, plateau_threshold=1e-3, plateau_min_lr=0.0)
    if cfg.stage == "finetune":
        return dict(adam, epochs=30, batch_size=16, accum_steps=4, monitor="acc", best_metric="acc",
                    lower_p=0.0, val_per_epoch=2, seed=17)
    lowered = cfg.mode != "base"
    if cfg.dataset == "affwild2":
        lr = 1e-2 if cfg.lr is None else cfg.lr
        return dict(adam, lr=lr, backbone_lr=lr * 0.01, epochs=5, batch_size=32, accum_steps=4, val_per_epoch=1, seed=17,
                    lower_p=1.0 if lowered else 0.0,
                    monitor=f"acc_{low}" if lowered else "acc", best_metric=f"acc_{low}" if lowered else "acc")
    lr = cfg.lr if cfg.lr is not None else (1e-3 if cfg.init else FROM_SCRATCH_LR)
    return dict(optimizer="sgd", lr=lr, backbone_lr=lr, weight_decay=5e-4, class_weighted=False,
                epochs=10, batch_size=32, accum_steps=8, val_per_epoch=1, seed=17,
                plateau_factor=0.5, plateau_patience=10, plateau_threshold=0.1, plateau_min_lr=1e-7,
                monitor=f"loss_{low}" if lowered else "loss", best_metric=f"acc_{low}" if lowered else "acc",
                lower_p=None if lowered else 0.0)


# Named presets: fields set on top of the defaults (the recipe still fills what they leave None).
PRESETS: dict[str, dict[str, Any]] = {
    # the paper: SE-ResNet-50 at 224 px with the recipe's values
    "paper": {},
    # seconds on CPU, for tests and the smoke profile (mafer synth --scale smoke)
    "smoke": dict(model="senet_tiny", image_size=32, batch_size=8, accum_steps=1, epochs=1,
                  max_steps=4, workers=0, log_every=1, progress=False, in_memory=True),
    # one training (step 1 or 2) on `mafer synth --scale demo` data in about a minute on 2 CPU cores
    # (measured on a shared, loaded machine: AffWild2 stage 15 s, RAF-DB 33 s, CR 67 s, base 110 s)
    "demo": dict(model="senet_tiny", image_size=48, batch_size=16, accum_steps=2, epochs=3,
                 workers=0, log_every=5, in_memory=True),
}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The training options in a YAML config file; MaferError naming the file when it is not one."""
    return read_yaml_mapping(path, "config")


# ---------------------------------------------------------------------- command line
_CLI_SKIP = {"stage"}  # set by the command itself
_STAGE_ONLY = {"pretrain": {"fold", "folds", "protocol"}, "finetune": {"mode"}}  # flags the other stage lacks


def add_config_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    """One flag per `TrainConfig` field (``--image-size``...), plus ``--config``, ``--preset`` and
    ``--print-config``; the help epilog lists the presets and this stage's recipes.

    Every flag defaults to ``None`` so that only the flags actually given override the YAML.
    """
    parser.add_argument("--config", metavar="YAML", help="YAML file of training options (flags override it)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named preset (table below)")
    parser.add_argument("--print-config", action="store_true",
                        help="print every option, its value and where it came from (default, preset, "
                             "recipe, file, flag), and exit without training")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = help_epilog(stage)
    hints = field_types()
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name in _CLI_SKIP or f.name in _STAGE_ONLY[stage]:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = hints[f.name]
        default = getattr(defaults, f.name)
        help_ = f.metadata["help"]
        if f.name in RECIPE_FIELDS:
            help_ += " (default: the recipe's, below)"
        elif default is not None and kind is not bool and f.name != "dataset":
            help_ += f" (default: {default if kind is not tuple else ' '.join(map(str, default))})"
        elif kind is bool and default is not None:
            help_ += f" (default: {'on' if default else 'off'})"
        choices = f.metadata["choices"]
        if f.name == "dataset":
            choices = PRETRAIN_DATASETS if stage == "pretrain" else FINETUNE_DATASETS
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif kind is tuple:
            parser.add_argument(flag, type=float, nargs=2, default=None, help=help_)
        else:
            parser.add_argument(flag, type=kind, default=None, choices=choices, help=help_)


# the fields `recipe` fills when they are None
RECIPE_FIELDS = frozenset(recipe(TrainConfig(stage="finetune"))) | {"source_size"}


def help_epilog(stage: str) -> str:
    """The presets and the stage's recipes as tables, for ``--help``."""
    lines = ["presets (--preset NAME; fields set on top of the defaults, the recipe fills the rest):"]
    for name, values in PRESETS.items():
        lines.append(f"  {name:6s} " + (", ".join(f"{k}={v}" for k, v in values.items()) or "(nothing: the recipe)"))
    examples = ([TrainConfig(stage="finetune")] if stage == "finetune" else
                [TrainConfig(stage="pretrain", mode=mode, dataset=dataset, init="X")
                 for dataset in PRETRAIN_DATASETS for mode in PRETRAIN_MODES])
    lines.append("")
    lines.append("recipes (values of the options left unset; the paper's, see `mafer.train.config.recipe`):")
    for cfg in examples:
        values = recipe(cfg)
        lines.append(f"  {recipe_name(cfg)}" + (" (with --init; without it lr "
                                                 f"{FROM_SCRATCH_LR})" if cfg.stage == "pretrain" and
                                                 cfg.dataset == "vggface2" else "") + ":")
        lines.append("    " + ", ".join(f"{k}={'curriculum' if k == 'lower_p' and v is None else v}"
                                        for k, v in values.items()))
    return "\n".join(lines)


def config_from_args(args: argparse.Namespace, stage: str) -> TrainConfig:
    """defaults < preset < YAML (``--config``) < flags given on the command line."""
    cfg = TrainConfig(stage=stage)
    if getattr(args, "preset", None):
        cfg = cfg.updated(PRESETS[args.preset], source=f"preset {args.preset}")
    if getattr(args, "config", None):
        cfg = cfg.updated(read_yaml(args.config), source=f"file {args.config}")
        cfg.stage = stage
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig)
             if f.name not in _CLI_SKIP and getattr(args, f.name, None) is not None}
    cfg = cfg.updated(given, source="command line")
    return cfg._replaced({}, {name: "flag --" + name.replace("_", "-") for name in given} | {"stage": "command"})


def resumable_fields() -> frozenset[str]:
    """Fields an interrupted run's ``--resume`` may change (their metadata says so)."""
    return frozenset(f.name for f in fields(TrainConfig) if f.metadata["resumable"])


_SIMPLE_TYPES = (int, float, str, bool)


def field_types() -> dict[str, type]:
    """The plain type (int, float, str, bool, tuple) of each field, read with `typing.get_type_hints`.

    ``X | None`` counts as ``X``; ``tuple[float, float]`` as tuple (a two-number flag). Any
    other annotation is a TypeError: the flag generator would not know how to parse it.
    """
    out = {}
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
            hint = args[0]
        if hint in _SIMPLE_TYPES:
            out[name] = hint
        elif typing.get_origin(hint) is tuple and typing.get_args(hint) == (float, float):
            out[name] = tuple
        else:
            raise TypeError(f"TrainConfig.{name}: unsupported type {hint!r}; the command line handles "
                            "int, float, str, bool, tuple[float, float] and those | None")
    return out
