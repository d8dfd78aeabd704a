"""`TrainConfig`: every option of a training run, in one dataclass.

The same fields are reachable from the command line (one flag per field, generated from the
dataclass), from a YAML file (``--config run.yaml``) and from Python (``TrainConfig(**params)``,
``TrainConfig.from_dict``). Precedence: defaults < preset < YAML < CLI flags.

Fields left at ``None`` mean "the paper's value for this stage": `resolve` fills them from
the row of ``RECIPES`` (a literal table: step 2 fine-tuning, step 1 on VGGFace2, or the AffWild2
stage) that `recipe_name` picks, so one dataclass serves every stage and the resolved values end
up in the run's ``config.yaml``. ``--help`` prints ``PRESETS`` and ``RECIPES``; ``--print-config``
prints every value with the layer it came from.

``arch`` is the network architecture (``senet50``, ``senet_tiny``: timm's and torchvision's
term); "model" is kept for the paper's four experimental models (base, CR, CR-Simplified,
CR+AffWild2). The old option name ``model`` is still read, with a deprecation notice.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import os
import sys
import types
import typing
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from mafer.datasets.info import DATASETS, OULU_PROTOCOLS, STEP1_DATASETS, STEP2_DATASETS
from mafer.errors import MaferError
from mafer.yamlfile import read_yaml_mapping

STEP1_MODES = ("base", "cr", "cr-simplified")
ARCHS = ("senet50", "senet_tiny")  # `mafer.models.arch_names()`, without importing torch for --help
# options renamed since a release: old name -> new name (still read from files, dicts and flags)
RENAMED_OPTIONS = {"model": "arch"}
# values renamed since a release: option -> {old value: new value}. The two steps were called
# pretrain and finetune; they are the paper's step 1 and step 2 everywhere now.
RENAMED_VALUES = {"stage": {"pretrain": "step1", "finetune": "step2"}}



FROM_SCRATCH_LR = 0.05  # SGD from random weights: 1e-3, a fine-tuning rate, barely moves the network


def _opt(help_: str, default: Any = None, choices: tuple[str, ...] | None = None, *,
         resumable: bool = False) -> Any:
    """A field with its ``--help`` text, its choices and whether ``--resume`` may change it
    (only options that do not change the trajectory: where files are, how often to log...)."""
    return field(default=default, metadata={"help": help_, "choices": choices, "resumable": resumable})


@dataclass
class TrainConfig:
    """Every option of a step-1 (``step1``) or step-2 (``step2``) run.

    ``None`` means "the recipe's value" (see `recipe`); call `resolve` to fill them in.
    """

    # what to train
    stage: str = _opt("step1 or step2, the paper's two training steps; set by the command", "step2")
    mode: str = _opt("step 1 only: base (full resolution), cr (teacher-student) or cr-simplified", "base",
                      STEP1_MODES)
    dataset: str = _opt(f"{', '.join(STEP2_DATASETS)} (step2); {', '.join(STEP1_DATASETS)} (step1)",
                        "fer2013")
    data_dir: str = _opt("folder with one sub-folder per dataset (or the dataset folder itself)", "data",
                         resumable=True)
    out: str = _opt("run folder: best.pt, last.pt, config.yaml, metrics.jsonl, run_info.json", "runs/run",
                    resumable=True)
    init: str | None = _opt("checkpoint to start from (project, MAFER release or VGGFace2 weights)", resumable=True)
    fold: int | None = _opt("Oulu-CASIA: fold to train, 1..folds (numbered as the authors' best_model_ckp_fold_<k>.pt)")
    folds: int = _opt("Oulu-CASIA: number of folds", 10)
    protocol: str = _opt("Oulu-CASIA folds: stratified over 'image', over 'subject', or 'authors' (their exact "
                         "KFold over their oulucasia_database.csv)", "image", OULU_PROTOCOLS)
    order: str | None = _opt("Oulu-CASIA protocol 'authors': the authors' oulucasia_database.csv whose rows the "
                             "folds are drawn over (default: the dataset folder's own, if any)")
    # network and input
    arch: str = _opt("network architecture: senet50 (the paper's SE-ResNet-50) or senet_tiny (demo)", "senet50",
                     ARCHS)
    image_size: int = _opt("network input size in pixels", 224)
    source_size: int | None = _opt("size the images are cached/decoded at before lowering and augmentation "
                                   "(default: the dataset's native size, else image_size*256/224)")
    in_memory: bool | None = _opt("cache the sets in memory as uint8 (default: when they fit in 4 GiB)", resumable=True)
    skip_bad: bool = _opt("skip unreadable images and malformed labels instead of stopping; they are listed in "
                          "the run folder's skipped.txt and counted in metrics.jsonl", False)
    augment: bool = _opt("the paper's training augmentation of the dataset (--no-augment: only the "
                         "evaluation resize/crop, e.g. for minute-long demo runs)", True)
    # schedule
    epochs: int | None = _opt("number of epochs (the paper does not state them)")
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
    keep_last: bool = _opt("keep last.pt once the run has ended; it is needed only to continue the run with "
                           "--resume and more steps (--no-keep-last frees a checkpoint with optimizer state "
                           "per run)", True, resumable=True)
    # engine
    device: str = _opt("auto, cpu or cuda", "auto", ("auto", "cpu", "cuda"), resumable=True)
    seed: int | None = _opt("random seed (the paper's step 2 uses 17)")
    workers: int = _opt("data-loader worker processes (folder path) ", 4, resumable=True)
    resume: bool = _opt("continue the run in --out from its last.pt, exactly where it stopped", False, resumable=True)
    compile: bool = _opt("torch.compile the network", False, resumable=True)
    amp: bool = _opt("bf16 autocast on CUDA", True)
    channels_last: bool = _opt("channels_last memory format (faster convolutions on CUDA, and on CPUs through oneDNN)",
                               True)
    deterministic: bool = _opt("deterministic algorithms (slower on CUDA)", False)
    progress: bool | None = _opt("tqdm progress bars (default: when stderr is a terminal)", resumable=True)
    log_every: int = _opt("write a metrics.jsonl line every this many optimizer steps", 10, resumable=True)

    def __post_init__(self) -> None:
        # where each field's value came from (see `sources`); not a field: it is not an option
        self._sources: dict[str, str] = {}
        if self.stage in RENAMED_VALUES["stage"]:  # TrainConfig(stage="finetune") from older code
            self.stage = _renamed({"stage": self.stage}, "TrainConfig")["stage"]

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
        """A copy with ``params`` applied; unknown keys raise MaferError naming ``source``.

        Old option names (``RENAMED_OPTIONS``) are read as the new ones, with a FutureWarning."""
        params = _renamed(params, source)
        known = {f.name for f in fields(self)}
        unknown = sorted(map(str, set(params) - known))
        if unknown:
            near = difflib.get_close_matches(unknown[0], known, n=1)
            raise MaferError(f"{source}: unknown training option {unknown[0]!r}; "
                             + (f"did you mean {near[0]!r}?" if near else
                                f"known options: {', '.join(sorted(known))}"))
        values = {key: _checked_value(key, value, source) for key, value in params.items()}
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
            # images of one size are cached at it; varied ones at the paper's Resize(256) of 224
            native = DATASETS[cfg.dataset].native_size
            cfg = cfg._replaced({"source_size": native or math.ceil(cfg.image_size * 256 / 224)},
                                {"source_size": "recipe (native size, else image_size*256/224)"})
        cfg.check_values()
        return cfg

    @property
    def lowers(self) -> bool:
        """Whether training images are lowered (step 1 cr / cr-simplified)."""
        return self.stage == "step1" and self.mode != "base"

    def check(self) -> None:
        """MaferError on an option outside its set of choices."""
        _choice("stage", self.stage, ("step1", "step2"))
        if self.stage == "step1":
            _choice("mode", self.mode, STEP1_MODES)
            _choice("dataset", self.dataset, STEP1_DATASETS)
            if self.mode == "cr" and not self.init:
                raise MaferError("mode 'cr' needs --init: the teacher is a frozen copy of that network")
        else:
            _choice("dataset", self.dataset, STEP2_DATASETS)
        _choice("arch", self.arch, ARCHS)
        _choice("protocol", self.protocol, OULU_PROTOCOLS)
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
        if self.stage == "step2":
            return ("acc", "loss")
        low = self.val_resolution
        return ("acc", "loss", f"acc_{low}px", f"loss_{low}px")


def _checked_value(name: str, value: Any, source: str) -> Any:
    """``value`` for field ``name`` if it has the field's type (and is one of its choices); a
    path as its text, a list of two numbers as a tuple. MaferError naming ``source`` otherwise:
    a profile, a YAML file or notebook parameters are checked when read, not when a run uses them."""
    kind, optional = _field_kinds(TrainConfig)[0][name], name in _optional_fields()
    words = {int: "a whole number", float: "a number", str: "text", bool: "true or false",
             tuple: "two numbers"}
    if value is None:
        if optional:
            return None
    elif kind is str and isinstance(value, (str, os.PathLike)):
        value = os.fspath(value)
        choices = TrainConfig.__dataclass_fields__[name].metadata["choices"]
        if choices is None or value in choices:
            return value
        raise MaferError(f"{source}: {name} must be one of {', '.join(choices)}; got {value!r}")
    elif kind is bool and isinstance(value, bool):
        return value
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    elif (kind is tuple and isinstance(value, (list, tuple)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        return tuple(value)
    raise MaferError(f"{source}: {name} must be {words[kind]}" + (" or null" if optional else "")
                     + f"; got {value!r}")


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise MaferError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _renamed(params: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """``params`` with old option names and values replaced by the new ones (a FutureWarning for each)."""
    for key in [k for k in params if k in RENAMED_OPTIONS]:
        new = RENAMED_OPTIONS[key]
        if new in params:
            raise MaferError(f"{source}: both {key!r} (the old name) and {new!r} given; keep only {new!r}")
        warnings.warn(f"{source}: training option {key!r} is now called {new!r}", FutureWarning, stacklevel=3)
    params = {RENAMED_OPTIONS.get(k, k): v for k, v in params.items()}
    for key, values in RENAMED_VALUES.items():
        if isinstance(params.get(key), str) and params[key] in values:
            warnings.warn(f"{source}: {key} {params[key]!r} is now called {values[params[key]]!r}", FutureWarning,
                          stacklevel=3)
            params[key] = values[params[key]]
    return params


FROM_SCRATCH = "from scratch"  # suffix of the recipe of a VGGFace2 step 1 without --init


def recipe_name(cfg: TrainConfig) -> str:
    """The row of ``RECIPES`` that applies: ``step2``, ``step1 MODE DATASET``, or
    ``step1 MODE vggface2 from scratch`` (step 1 on VGGFace2 without ``--init``)."""
    if cfg.stage == "step2":
        return "step2"
    scratch = f" {FROM_SCRATCH}" if cfg.dataset == "vggface2" and not cfg.init else ""
    return f"step1 {cfg.mode} {cfg.dataset}{scratch}"


@dataclass(frozen=True)
class LrTimes:
    """A recipe value that follows the run's resolved ``lr`` (``--lr`` moves it too)."""

    factor: float

    def __repr__(self) -> str:
        return "lr" if self.factor == 1 else f"lr*{self.factor:g}"


# Validation metric names of the low resolution: "{low}" becomes f"{val_resolution}px" (8px).
_LOW = "{low}"

# the paper's step-2 optimisation; the AffWild2 stage uses it too (the paper gives that stage no
# weight decay or scheduler of its own)
_STEP2_OPTIM = dict(optimizer="adam", lr=1e-2, backbone_lr=1e-4, weight_decay=1e-4, class_weighted=True,
                    plateau_factor=0.1, plateau_patience=10, plateau_threshold=1e-3, plateau_min_lr=0.0)
# step 1 on VGGFace2: SGD with one lr (the backbone's follows --lr); cr, cr-simplified watch the
# low-resolution validation loss and keep the best low-resolution accuracy
_VGGFACE2 = dict(optimizer="sgd", lr=1e-3, backbone_lr=LrTimes(1), weight_decay=5e-4, class_weighted=False,
                 epochs=10, batch_size=32, accum_steps=8, val_per_epoch=1, seed=17, plateau_factor=0.5,
                 plateau_patience=10, plateau_threshold=0.1, plateau_min_lr=1e-7)
_VGGFACE2_BASE = dict(_VGGFACE2, monitor="loss", best_metric="acc", lower_p=0.0)
# lower_p None: the curriculum (curriculum_start -> curriculum_stop)
_VGGFACE2_LOWERED = dict(_VGGFACE2, monitor=f"loss_{_LOW}", best_metric=f"acc_{_LOW}", lower_p=None)
# the CR+AffWild2 stage: every frame lowered (p = 1) unless mode base
_AFFWILD2 = dict(_STEP2_OPTIM, backbone_lr=LrTimes(0.01), epochs=5, batch_size=32, accum_steps=4, val_per_epoch=1,
                 seed=17)
_AFFWILD2_LOWERED = dict(_AFFWILD2, lower_p=1.0, monitor=f"acc_{_LOW}", best_metric=f"acc_{_LOW}")

# The values of the ``None``-default fields, one row per stage, mode and dataset (see `recipe_name`):
# the paper's (section 4) where it states them. It states no epoch counts; ours are 30 (step 2),
# 10 (VGGFace2) and 5 (AffWild2). A VGGFace2 step 1 from random weights (no --init: the demo's
# stand-in for the VGGFace2 pre-training the paper starts from) uses FROM_SCRATCH_LR, since 1e-3
# is a fine-tuning lr.
RECIPES: dict[str, dict[str, Any]] = {
    "step2": dict(_STEP2_OPTIM, epochs=30, batch_size=16, accum_steps=4, monitor="acc", best_metric="acc",
                     lower_p=0.0, val_per_epoch=2, seed=17),
    "step1 base vggface2": _VGGFACE2_BASE,
    "step1 cr vggface2": _VGGFACE2_LOWERED,
    "step1 cr-simplified vggface2": _VGGFACE2_LOWERED,
    f"step1 base vggface2 {FROM_SCRATCH}": dict(_VGGFACE2_BASE, lr=FROM_SCRATCH_LR),
    f"step1 cr-simplified vggface2 {FROM_SCRATCH}": dict(_VGGFACE2_LOWERED, lr=FROM_SCRATCH_LR),
    "step1 base affwild2": dict(_AFFWILD2, lower_p=0.0, monitor="acc", best_metric="acc"),
    "step1 cr affwild2": _AFFWILD2_LOWERED,
    "step1 cr-simplified affwild2": _AFFWILD2_LOWERED,
}


def recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The ``RECIPES`` row of ``cfg`` with its values worked out for ``cfg``: ``LrTimes`` against
    ``cfg.lr`` (or the row's lr), ``{low}`` in metric names as ``cfg.val_resolution`` pixels."""
    name = recipe_name(cfg)
    if name not in RECIPES:
        raise MaferError(f"no recipe {name!r}; expected one of {', '.join(RECIPES)}")
    row = RECIPES[name]
    lr = cfg.lr if cfg.lr is not None else row["lr"]
    return {k: lr * v.factor if isinstance(v, LrTimes) else
            v.format(low=f"{cfg.val_resolution}px") if isinstance(v, str) else v for k, v in row.items()}


# Named presets: fields set on top of the defaults (the recipe still fills what they leave None).
PRESETS: dict[str, dict[str, Any]] = {
    # the paper: SE-ResNet-50 at 224 px with the recipe's values
    "paper": {},
    # seconds on CPU, for tests and the smoke profile (mafer synth --scale smoke)
    "smoke": dict(arch="senet_tiny", image_size=32, batch_size=8, accum_steps=1, epochs=1,
                  max_steps=4, workers=0, log_every=1, progress=False, in_memory=True),
    # one training (step 1 or 2) on `mafer synth --scale demo` data in under a minute on 2 CPU cores
    "demo": dict(arch="senet_tiny", image_size=48, batch_size=32, accum_steps=1, epochs=3,
                 workers=0, log_every=5, in_memory=True),
}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The training options in a YAML config file; MaferError naming the file when it is not one."""
    return read_yaml_mapping(path, "config")


# ---------------------------------------------------------------------- command line
_CLI_SKIP = {"stage"}  # set by the command itself
# the flags each command lacks: the options the other step alone reads (step 2 never lowers its
# training images, has no teacher and validates at full resolution only)
_STAGE_ONLY = {"step1": {"fold", "folds", "protocol", "order"},
               "step2": {"mode", "cr_lambda", "lower_p", "curriculum_start", "curriculum_step", "curriculum_stop",
                         "curriculum_every", "val_resolution"}}


def add_config_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    """One flag per `TrainConfig` field (``--image-size``...), plus ``--config``, ``--preset`` and
    ``--print-config``; each flag's help says where its default comes from (the field's default,
    the recipe table's rows, the presets), and the epilog prints ``PRESETS`` and the stage's
    ``RECIPES``. Old flag names (``RENAMED_OPTIONS``: ``--model``) still work, with a notice.

    Every flag defaults to ``None`` so that only the flags actually given override the YAML.
    """
    parser.add_argument("--config", metavar="YAML", help="YAML file of training options (flags override it)")
    parser.add_argument("--preset", choices=list(PRESETS), help="named preset (table below)")
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
        kind = hints[f.name]
        default = getattr(defaults, f.name)
        help_ = f.metadata["help"]
        presets = _preset_summary(f.name)
        if f.name in RECIPE_FIELDS:
            help_ += f" (default: recipe table below: {_recipe_summary(f.name, stage)}{presets and '; ' + presets})"
        elif default is not None and f.name != "dataset":
            shown = ("on" if default else "off") if kind is bool else \
                " ".join(map(str, default)) if kind is tuple else default
            help_ += f" (default: {shown}{presets and '; ' + presets})"
        elif presets:
            help_ += f" ({presets})"
        choices = f.metadata["choices"]
        if f.name == "dataset":
            choices = STEP1_DATASETS if stage == "step1" else STEP2_DATASETS
            help_ = "the dataset this step trains on" + (f" (default: {default})" if default in choices else "")
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif kind is tuple:
            parser.add_argument(flag, type=float, nargs=2, default=None, help=help_)
        else:
            parser.add_argument(flag, type=kind, default=None, choices=choices, help=help_)
            for old in (old for old, new in RENAMED_OPTIONS.items() if new == f.name):
                parser.add_argument("--" + old.replace("_", "-"), dest=f.name, type=kind, default=None,
                                    choices=choices, action=_RenamedFlag, help=argparse.SUPPRESS)


class _RenamedFlag(argparse.Action):
    """The old name of a flag: stores the value under the new name and prints a one-line notice."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"mafer: {option_string} is deprecated, use --{self.dest.replace('_', '-')}", file=sys.stderr)
        setattr(namespace, self.dest, values)


# the fields the recipe fills when they are None (every row of RECIPES sets the same fields)
RECIPE_FIELDS = frozenset(RECIPES["step2"])


def _shown(name: str, value: Any) -> str:
    """A recipe value as ``--help`` shows it (the metric names at the default --val-resolution)."""
    if name == "lower_p" and value is None:
        return "curriculum"
    if isinstance(value, str):
        return value.format(low=f"{TrainConfig().val_resolution}px")
    return repr(value) if isinstance(value, LrTimes) else str(value)


def _stage_recipes(stage: str) -> list[str]:
    return [name for name in RECIPES if name.split()[0] == stage]


def _recipe_summary(name: str, stage: str) -> str:
    """``name``'s values over the stage's recipe rows, each with the rows that have it:
    ``0.001 (vggface2), 0.05 (vggface2 from scratch), 0.01 (affwild2)``."""
    rows = _stage_recipes(stage)
    values = {row: _shown(name, RECIPES[row][name]) for row in rows}
    if len(set(values.values())) == 1:
        return values[rows[0]]
    # rows are "step1 MODE DATASET[ from scratch]": a from-scratch row is named only where it
    # differs from the row with --init, and a dataset stands for all of its modes
    modes_of: dict[str, list[str]] = {}
    where: dict[str, dict[str, list[str]]] = {}
    for row in rows:
        _, mode, rest = row.split(maxsplit=2)
        modes_of.setdefault(rest, []).append(mode)
        twin = row.removesuffix(f" {FROM_SCRATCH}")
        if twin == row or values[twin] != values[row]:
            where.setdefault(values[row], {}).setdefault(rest, []).append(mode)
    return ", ".join(f"{value} (" + ", ".join(rest if modes == modes_of[rest] else f"{'/'.join(modes)} {rest}"
                                             for rest, modes in having.items()) + ")"
                     for value, having in where.items())


def _preset_summary(name: str) -> str:
    """``presets: smoke 8, demo 16`` for the presets that set ``name`` (empty if none does)."""
    setting = [f"{preset} {values[name]}" for preset, values in PRESETS.items() if name in values]
    return f"preset{'s' if len(setting) > 1 else ''}: " + ", ".join(setting) if setting else ""


def help_epilog(stage: str) -> str:
    """``PRESETS`` and the stage's rows of ``RECIPES`` as tables, for ``--help``."""
    lines = ["presets (--preset NAME; fields set on top of the defaults, the recipe fills the rest):"]
    for name, values in PRESETS.items():
        lines.append(f"  {name:6s} " + (", ".join(f"{k}={v}" for k, v in values.items()) or "(nothing: the recipe)"))
    lines.append("")
    lines.append("recipes (mafer.train.config.RECIPES: the values of the options left unset, the paper's; "
                 "--print-config shows which row a run uses)")
    if stage == "step1":
        lines.append(f"  row by --mode and --dataset; '{FROM_SCRATCH}': VGGFace2 without --init; 8px: the "
                     "--val-resolution; lr*0.01: the run's lr times 0.01")
    for row in _stage_recipes(stage):
        lines.append(f"  {row}:")
        lines.append("    " + ", ".join(f"{k}={_shown(k, RECIPES[row][k])}" for k in RECIPES["step2"]))
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
    def flag(name: str) -> str:
        off = field_types()[name] is bool and given[name] is False
        return "flag --" + ("no-" if off else "") + name.replace("_", "-")

    return cfg._replaced({}, {name: flag(name) for name in given} | {"stage": "command"})


def resumable_fields() -> frozenset[str]:
    """Fields an interrupted run's ``--resume`` may change (their metadata says so)."""
    return frozenset(f.name for f in fields(TrainConfig) if f.metadata["resumable"])


_SIMPLE_TYPES = (int, float, str, bool)


def field_types() -> dict[str, type]:
    """The plain type (int, float, str, bool, tuple) of each field, read with `typing.get_type_hints`.

    ``X | None`` counts as ``X``; ``tuple[float, float]`` as tuple (a two-number flag). Any
    other annotation is a TypeError: the flag generator would not know how to parse it.
    """
    return dict(_field_kinds(TrainConfig)[0])


def _optional_fields() -> frozenset[str]:
    """Fields annotated ``X | None`` (``None``: the recipe's value, or unset)."""
    return _field_kinds(TrainConfig)[1]


@functools.cache
def _field_kinds(cls: type) -> tuple[dict[str, type], frozenset[str]]:
    out, optional = {}, set()
    for name, hint in typing.get_type_hints(cls).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
            hint = args[0]
            optional.add(name)
        if hint in _SIMPLE_TYPES:
            out[name] = hint
        elif typing.get_origin(hint) is tuple and typing.get_args(hint) == (float, float):
            out[name] = tuple
        else:
            raise TypeError(f"TrainConfig.{name}: unsupported type {hint!r}; the command line handles "
                            "int, float, str, bool, tuple[float, float] and those | None")
    return out, frozenset(optional)
