"""The training loop of both steps: plain PyTorch, one process or many (torchrun + DDP).

Per optimizer step: take this rank's slices of the next ``accum_steps`` global batches of the
epoch's seeded permutation, and for each one lower the uint8 images (step 1; per-image ``r``,
before resize/crop, as the paper), augment them batched on the device, preprocess, forward,
backward; then check the loss is finite and step. Validation runs at fixed steps of each
epoch (step 1: at full resolution and at ``val_resolution`` px), drives ReduceLROnPlateau and
keeps ``best.pt`` (the network and its metadata); ``last.pt`` holds everything needed to resume
exactly, optimizer and RNG states included (checkpoints are written atomically by
`mafer.models.save_checkpoint`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import mafer
from mafer.batch_augment import BatchAugment
from mafer.errors import MaferError
from mafer.image import lower
from mafer.models import create_model, load_checkpoint, preprocess, save_checkpoint
from mafer.models.weights import load_weights, read_weight_file
from mafer.resolution import LoweringCurriculum, sample_resolutions
from mafer.train import data as train_data
from mafer.train.config import TrainConfig, resumable_fields
from mafer.train.distributed import DistEnv, all_reduce_sum, barrier, gather_objects, setup, teardown

BEST_KEPT = ".best.pt.kept"  # second name of best.pt, see Trainer._keep_best


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links
        shutil.copyfile(src, dst)


class FeaturesAndLogits(nn.Module):
    """``x -> (pooled features, logits)`` in one forward, so DDP and torch.compile see both outputs."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.model.forward_features(x)
        return features, self.model.forward_head(features)


def run_stage(stage: str, cfg: TrainConfig | Mapping[str, Any] | None, overrides: Mapping[str, Any]) -> Path:
    """Run ``stage`` (``step1`` or ``step2``) with ``cfg`` (a TrainConfig or a dict of its
    fields) updated by ``overrides``; returns the run folder."""
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg or {})
    return train(cfg.updated(dict(overrides, stage=stage)))


def train(cfg: TrainConfig) -> Path:
    """Run one training (step 1 or step 2, per ``cfg.stage``) and return its run folder."""
    cfg = cfg.resolve()
    env = setup(cfg.device)
    try:
        Trainer(cfg, env).fit()
    finally:
        teardown(env)
    return Path(cfg.out)


# ---------------------------------------------------------------------- building blocks
def seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    """Seed torch's global generators; optionally force deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")


def class_weights(counts: list[int]) -> Tensor:
    """The paper's cross-entropy weights ``w_c = 1 - n_c / N`` from the training counts."""
    n = torch.tensor(counts, dtype=torch.float32)
    return 1.0 - n / n.sum()


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Two groups: ``backbone`` (everything but the classifier, ``cfg.backbone_lr``) and ``classifier`` (``cfg.lr``)."""
    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    return [dict(params=backbone, lr=cfg.backbone_lr, name="backbone"),
            dict(params=head, lr=cfg.lr, name="classifier")]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (step 1 on VGGFace2) or Adam (step 2, AffWild2) over the two parameter groups;
    on CUDA the fused kernels (one launch for all parameters, same arithmetic and state)."""
    groups = param_groups(model, cfg)
    fused = next(model.parameters()).device.type == "cuda"
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay, fused=fused)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
    """ReduceLROnPlateau on ``cfg.monitor`` (max for accuracies, min for losses)."""
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if cfg.monitor.startswith("acc") else "min", factor=cfg.plateau_factor,
        patience=cfg.plateau_patience, threshold=cfg.plateau_threshold, min_lr=cfg.plateau_min_lr)


def build_networks(cfg: TrainConfig, num_classes: int) -> tuple[nn.Module, nn.Module | None]:
    """The trainable network and, for CR, the frozen teacher (a copy of the ``--init`` network).

    The classifier comes from ``--init`` only in step 1 when its class count matches the data;
    step 2 always starts with a new classifier (the paper's recipe).
    """
    model = create_model(cfg.arch, num_classes)
    if cfg.init:
        weights = read_weight_file(cfg.init)
        keep_head = cfg.stage == "step1" and weights.num_classes == num_classes
        load_weights(model, weights, head=keep_head)
    teacher = None
    if cfg.stage == "step1" and cfg.mode == "cr":
        # only the teacher's pooled features are used, so its classifier does not matter
        teacher = copy.deepcopy(model).eval().requires_grad_(False)
    return model, teacher


def git_commit() -> dict[str, Any]:
    """Commit and dirty flag of the source tree the package runs from (empty when not a git checkout)."""
    root = Path(mafer.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": dirty}


def run_info(cfg: TrainConfig, env: DistEnv) -> dict[str, Any]:
    """What makes a run reproducible: versions, commit, seed, device, processes, command line."""
    import numpy
    import torchvision

    info: dict[str, Any] = {
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": cfg.seed,
        "device": str(env.device),
        "device_name": torch.cuda.get_device_name(env.device) if env.device.type == "cuda" else platform.processor(),
        "world_size": env.world_size,
        "hostname": platform.node(),
        "versions": {"python": platform.python_version(), "mafer": mafer.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "numpy": numpy.__version__},
    }
    return info | git_commit()


class MetricsLog:
    """``metrics.jsonl``: one JSON object per logged training step and per validation (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.exists():
            # lines an interrupted run wrote after its last checkpoint would be written again
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------- the loop
class Trainer:
    """One training run: data, networks, optimizer, schedule, checkpoints and logs."""

    def __init__(self, cfg: TrainConfig, env: DistEnv, data: train_data.TrainingData | None = None):
        """``cfg`` resolved; ``data`` defaults to the splits ``cfg`` names (`open_training_data`)."""
        self.cfg, self.env, self.device = cfg, env, env.device
        self.out = Path(cfg.out)
        self._check_out_folder()
        seed_everything(cfg.seed, cfg.deterministic, self.device)
        self._build_data(data if data is not None else train_data.open_training_data(cfg, self.device))
        self._build_model()
        self.step, self.best = 0, None
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cfg.amp and self.device.type == "cuda")
        resume_state = self._load_resume() if cfg.resume else None
        self.log = MetricsLog(self.out / "metrics.jsonl", env.is_main, self.step if resume_state else None)
        if env.is_main:
            print(f"{cfg.stage} options (value, source):\n{cfg.describe()}", flush=True)
            cfg.to_yaml(self.out / "config.yaml")
            self._write_run_info(resumed=resume_state is not None)
            if cfg.skip_bad and resume_state is None:
                self._write_skipped()

    # -- setup -------------------------------------------------------------------------
    def _check_out_folder(self) -> None:
        last = self.out / "last.pt"
        if self.cfg.resume and not last.is_file():
            raise MaferError(f"{last}: nothing to resume; expected the last.pt of an earlier run in {self.out}")
        if not self.cfg.resume and last.exists():
            raise MaferError(f"{self.out}: already holds a run (last.pt); pass --resume to continue it "
                             "or choose another --out")
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.env)

    def _build_data(self, data: train_data.TrainingData) -> None:
        cfg, env = self.cfg, self.env
        self.classes, self.mean_bgr = data.classes, data.mean_bgr
        self.train_source, self.val_source = data.train, data.val
        self.skipped = data.skipped
        self.val_index = train_data.eval_batches(len(self.val_source), cfg.batch_size * 2, env.rank, env.world_size)
        self.micro_per_epoch = train_data.micro_batches_per_epoch(
            len(self.train_source), cfg.batch_size, env.world_size, data.root)
        self.steps_per_epoch = train_data.steps_per_epoch(self.micro_per_epoch, cfg.accum_steps)
        planned = cfg.epochs * self.steps_per_epoch
        self.last_step = min(planned, cfg.max_steps or planned)
        per_epoch = self.steps_per_epoch
        self.val_points = {round(per_epoch * k / cfg.val_per_epoch) for k in range(1, cfg.val_per_epoch + 1)} - {0}
        self.curriculum = LoweringCurriculum(cfg.curriculum_start, cfg.curriculum_step, cfg.curriculum_stop,
                                             cfg.curriculum_every or max(1, planned // 10))
        self.weights = class_weights(data.class_counts).to(self.device) if cfg.class_weighted else None
        # float output goes straight into preprocess, without a round trip through uint8
        self.augment_train = BatchAugment(cfg.dataset, cfg.image_size, train=cfg.augment, dtype=torch.float32,
                                          compile=cfg.compile)
        self.augment_eval = BatchAugment(cfg.dataset, cfg.image_size, train=False, dtype=torch.float32)
        # one generator drives lowering and augmentation; it is part of the resume state
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed * 1_000_003 + 7919 * env.rank + 1)

    def _build_model(self) -> None:
        cfg, device = self.cfg, self.device
        model, teacher = self.build_networks(len(self.classes))
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(device, memory_format=self.memory_format)
        self.teacher = teacher.to(device, memory_format=self.memory_format) if teacher is not None else None
        net: nn.Module = FeaturesAndLogits(self.model)
        if self.env.distributed:
            net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        self.ddp = net if self.env.distributed else None
        teacher_net = FeaturesAndLogits(self.teacher) if self.teacher is not None else None
        if cfg.compile:
            net = torch.compile(net)
            teacher_net = torch.compile(teacher_net) if teacher_net is not None else None
        self.net, self.teacher_net = net, teacher_net
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg)

    def build_networks(self, num_classes: int) -> tuple[nn.Module, nn.Module | None]:
        """The trainable network and the CR teacher (`build_networks`); a subclass may build others."""
        return build_networks(self.cfg, num_classes)

    def _write_run_info(self, resumed: bool) -> None:
        path = self.out / "run_info.json"
        info = run_info(self.cfg, self.env)
        if self.cfg.skip_bad:
            info["skipped"] = {split: len(items) for split, items in self.skipped.items()}
        if resumed and path.exists():
            first = json.loads(path.read_text())
            first.setdefault("resumes", []).append(info | {"resumed_at_step": self.step})
            info = first
        path.write_text(json.dumps(info, indent=1) + "\n")

    def _write_skipped(self) -> None:
        """``skipped.txt``: one line per bad item left out under ``skip_bad``; their counts in metrics.jsonl."""
        lines = list(dict.fromkeys(self.skipped["train"] + self.skipped["val"]))  # list errors repeat per split
        (self.out / "skipped.txt").write_text("".join(line + "\n" for line in lines))
        self.log.write({"kind": "data", "step": 0, "train_images": len(self.train_source),
                        "val_images": len(self.val_source), "skipped_train": len(self.skipped["train"]),
                        "skipped_val": len(self.skipped["val"])})

    # -- inputs ------------------------------------------------------------------------
    def lowering_p(self) -> float:
        """Probability of lowering a training image at the current step."""
        if not self.cfg.lowers:
            return 0.0
        return self.cfg.lower_p if self.cfg.lower_p is not None else self.curriculum.p(self.step)

    def to_input(self, images: Tensor) -> Tensor:
        return preprocess(images, self.mean_bgr).contiguous(memory_format=self.memory_format)

    def train_inputs(self, images: Tensor, p: float) -> tuple[Tensor, Tensor | None]:
        """Student input and (CR) teacher input: lowered / full resolution, with the same augmentation draws."""
        if not self.cfg.lowers:
            return self.to_input(self.augment_train(images, self.generator)), None
        lowered = lower(images, sample_resolutions(len(images), p, self.generator))
        if self.teacher is None:
            return self.to_input(self.augment_train(lowered, self.generator)), None
        # channel groups of one image share their draws: the teacher sees the student's crop, flip, ...
        both = self.augment_train(torch.cat([lowered, images], dim=1), self.generator)
        return self.to_input(both[:, :3]), self.to_input(both[:, 3:])

    # -- one optimizer step ------------------------------------------------------------
    def forward_loss(self, x: Tensor, x_teacher: Tensor | None, labels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(loss, cross-entropy, feature MSE, logits)``; MSE is 0 outside CR."""
        with self.autocast:
            features, logits = self.net(x)
            ce = F.cross_entropy(logits.float(), labels, weight=self.weights)
            mse = torch.zeros((), device=self.device)
            if self.teacher_net is not None:
                with torch.no_grad():
                    target, _ = self.teacher_net(x_teacher)
                mse = F.mse_loss(features.float(), target.float())
        return ce + self.cfg.cr_lambda * mse, ce, mse, logits

    def train_step(self, group: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
        """Accumulate the gradients of ``group`` (a list of batches), check the loss, step the optimizer."""
        p = self.lowering_p()
        totals = torch.zeros(5, device=self.device)  # loss, ce, mse (summed per batch), correct, images
        for i, (images, labels) in enumerate(group):
            x, x_teacher = self.train_inputs(images, p)
            syncing = self.ddp is None or i == len(group) - 1
            with contextlib.nullcontext() if syncing else self.ddp.no_sync():
                loss, ce, mse, logits = self.forward_loss(x, x_teacher, labels)
                (loss / len(group)).backward()
            correct = (logits.detach().argmax(1) == labels).sum()
            totals += torch.stack([loss.detach(), ce.detach(), mse.detach(), correct.float(),
                                   torch.tensor(float(len(labels)), device=self.device)])
        totals = all_reduce_sum(totals, self.env).tolist()
        batches = len(group) * self.env.world_size
        if not math.isfinite(totals[0]):
            epoch, batch = divmod(self.step, self.steps_per_epoch)
            raise MaferError(f"step {self.step + 1} (epoch {epoch}, batch {batch * self.cfg.accum_steps}): the loss "
                             f"is {totals[0] / batches}, not a finite number; training stopped before the update. "
                             f"Lower the learning rates (--lr, --backbone-lr) or check the data in {self.cfg.data_dir}")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        metrics = {"loss": totals[0] / batches, "ce": totals[1] / batches, "acc": totals[3] / totals[4],
                   "images": totals[4], "p": p}
        if self.teacher is not None:
            metrics["mse"] = totals[2] / batches
        return metrics

    def groups(self) -> Iterator[list[tuple[Tensor, Tensor]]]:
        """From the current step on: the batches of each optimizer step, epoch after epoch."""
        cfg, env = self.cfg, self.env
        while self.step < self.last_step:
            epoch, step_in_epoch = divmod(self.step, self.steps_per_epoch)
            order = train_data.epoch_permutation(len(self.train_source), cfg.seed, epoch)
            batches = train_data.rank_batches(order, cfg.batch_size, env.rank, env.world_size)
            batches = batches[step_in_epoch * cfg.accum_steps:]
            group: list[tuple[Tensor, Tensor]] = []
            for batch in self.train_source.batches(batches, self.device):
                group.append(batch)
                if len(group) == cfg.accum_steps:
                    yield group
                    group = []
                    if self.step >= self.last_step:
                        return
            if group:
                yield group

    # -- validation --------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Validation accuracy and (unweighted) cross-entropy; step 1 also at ``val_resolution`` px."""
        resolutions: list[int | None] = [None]
        if self.cfg.stage == "step1":
            resolutions.append(self.cfg.val_resolution)
        self.model.eval()
        sums = torch.zeros(2 * len(resolutions) + 1, device=self.device)
        for images, labels in self.val_source.batches(self.val_index, self.device):
            for k, r in enumerate(resolutions):
                shown = images if r is None else lower(images, r)
                with self.autocast:
                    logits = self.model(self.to_input(self.augment_eval(shown, None))).float()
                sums[2 * k] += F.cross_entropy(logits, labels, reduction="sum")
                sums[2 * k + 1] += (logits.argmax(1) == labels).sum()
            sums[-1] += len(labels)
        self.model.train()
        sums = all_reduce_sum(sums, self.env).tolist()
        out = {}
        for k, r in enumerate(resolutions):
            suffix = "" if r is None else f"_{r}px"
            out["loss" + suffix], out["acc" + suffix] = sums[2 * k] / sums[-1], sums[2 * k + 1] / sums[-1]
        return out

    def is_better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.cfg.best_metric.startswith("acc") else value < self.best

    def after_validation(self, metrics: dict[str, float], scheduled: bool) -> None:
        """Log, step the plateau scheduler (scheduled validations only), keep best.pt and last.pt."""
        if scheduled:
            self.scheduler.step(metrics[self.cfg.monitor])
        improved = self.is_better(metrics[self.cfg.best_metric])
        if improved:
            self.best = metrics[self.cfg.best_metric]
        self.log.write({"kind": "val", "step": self.step, "epoch": self.step / self.steps_per_epoch}
                       | {f"val_{k}": v for k, v in metrics.items()} | self.learning_rates()
                       | {"best": self.best, "best_metric": self.cfg.best_metric})
        if improved:
            self.save(self.out / "best.pt", metrics, training_state=False)
            self._keep_best()
        self.save(self.out / "last.pt", metrics)
        if getattr(self, "progress_lines", False):
            shown = ", ".join(f"val {k} {v:.4g}" for k, v in metrics.items() if k in ("loss", "acc"))
            print(f"{self.cfg.stage} {self.cfg.dataset}: step {self.step}/{self.last_step} "
                  f"(epoch {self.step / self.steps_per_epoch:.2f}), {shown}, best {self.cfg.best_metric} "
                  f"{self.best:.4g}", file=sys.stderr, flush=True)

    # -- checkpoints -------------------------------------------------------------------
    def rng_state(self) -> dict[str, Tensor]:
        state = {"generator": self.generator.get_state(), "torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _keep_best(self) -> None:
        """Give best.pt a second name (a hard link: no extra disk) that `--resume` restores it from.

        Workflow managers delete a job's declared outputs before they run it again (Snakemake
        does, and `mafer reproduce` declares best.pt), so an interrupted run resumed by them
        would otherwise lose the best weights it had already found."""
        if not self.env.is_main:
            return
        kept = self.out / BEST_KEPT
        kept.unlink(missing_ok=True)
        _link_or_copy(self.out / "best.pt", kept)

    def save(self, path: Path, metrics: dict[str, float], training_state: bool = True) -> None:
        """Write a checkpoint (rank 0). With ``training_state`` it holds everything `--resume`
        needs, every rank's RNG included; without (best.pt), the network and its metadata only:
        resuming reads last.pt, and the optimizer state would double or triple the file."""
        rng = ([{k: v.cpu() for k, v in state.items()} for state in gather_objects(self.rng_state(), self.env)]
               if training_state else None)
        if self.env.is_main:
            epoch, step_in_epoch = divmod(self.step, self.steps_per_epoch)
            resume = {"step": self.step, "epoch": epoch, "batch_index": step_in_epoch * self.cfg.accum_steps,
                      "best": self.best, "rng": rng, "world_size": self.env.world_size}
            save_checkpoint(path, self.model, arch=self.cfg.arch, class_names=self.classes,
                        mean_bgr=self.mean_bgr, config=self.cfg.to_dict(),
                        metrics=metrics | {"step": self.step, "epoch": self.step / self.steps_per_epoch},
                        optimizer=self.optimizer if training_state else None,
                        scheduler=self.scheduler if training_state else None,
                        extra={"resume": resume} if training_state else {})
        barrier(self.env)

    def _load_resume(self) -> dict[str, Any]:
        path = self.out / "last.pt"
        ckpt = load_checkpoint(path)
        saved = dict(ckpt.get("config") or {})
        current = self.cfg.to_dict()
        resumable = resumable_fields()
        changed = sorted(k for k in current if k not in resumable and saved.get(k) != current[k])
        if changed:
            raise MaferError(f"{path}: cannot resume with different options: "
                             + ", ".join(f"{k} (saved {saved.get(k)!r}, now {current[k]!r})" for k in changed))
        resume = ckpt["extra"]["resume"]
        best, kept = self.out / "best.pt", self.out / BEST_KEPT
        if resume["best"] is not None and not best.is_file():
            if not kept.is_file():
                raise MaferError(f"{best}: missing, and no {BEST_KEPT} to restore it from; the best weights "
                                 f"of the interrupted run are lost, so it cannot resume exactly: start it again")
            if self.env.is_main:
                _link_or_copy(kept, best)
            barrier(self.env)
        self.model.load_state_dict(ckpt["model_state_dict"])
        self.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        self.scheduler.load_state_dict(ckpt["scheduler_state_dict"])
        self.step, self.best = resume["step"], resume["best"]
        if resume["world_size"] != self.env.world_size:
            raise MaferError(f"{path}: saved by {resume['world_size']} process(es), resumed with "
                             f"{self.env.world_size}; resume with the same number of processes")
        rng = resume["rng"][self.env.rank]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        return resume

    # -- run ---------------------------------------------------------------------------
    def learning_rates(self) -> dict[str, float]:
        return {f"lr_{g['name']}": g["lr"] for g in self.optimizer.param_groups}

    def fit(self) -> None:
        """Train from the current step to the last one, validating and checkpointing on the way."""
        cfg = self.cfg
        show = self.env.is_main and (cfg.progress if cfg.progress is not None else sys.stderr.isatty())
        desc = " ".join([cfg.stage] + ([cfg.mode] if cfg.stage == "step1" else []) + [cfg.dataset])
        bar = tqdm(total=self.last_step, initial=self.step, disable=not show, unit="step", desc=desc)
        # without a terminal (logs, CI, nohup) a bar prints nothing until the end: a line per validation
        self.progress_lines = self.env.is_main and cfg.progress is None and not show
        self.model.train()
        last_validated = self.step if cfg.resume else None
        window = LogWindow()
        for group in self.groups():
            metrics = self.train_step(group)
            window.add(metrics)
            bar.update(1)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['acc']:.3f}")
            if self.step % cfg.log_every == 0 or self.step == self.last_step:
                self.log.write({"kind": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch}
                               | window.flush() | self.learning_rates())
            if self.step % self.steps_per_epoch in {p % self.steps_per_epoch for p in self.val_points}:
                self.after_validation(self.validate(), scheduled=True)
                last_validated = self.step
            elif cfg.save_every and self.step % cfg.save_every == 0:
                self.save(self.out / "last.pt", {})
        bar.close()
        if last_validated != self.step:
            # a run cut short by --max-steps: validate for best.pt, but leave the scheduler alone so
            # that resuming it follows exactly the trajectory of an uninterrupted run
            self.after_validation(self.validate(), scheduled=False)
        if not cfg.keep_last and self.env.is_main:
            (self.out / "last.pt").unlink(missing_ok=True)


class LogWindow:
    """Training metrics since the last metrics.jsonl line: their means over the steps, and images/s."""

    def __init__(self) -> None:
        self.start, self.sums, self.steps = time.perf_counter(), {}, 0

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.steps += 1

    def flush(self) -> dict[str, float]:
        now = time.perf_counter()
        record = {key: value / self.steps for key, value in self.sums.items()}
        record["images_per_s"] = self.sums["images"] / max(now - self.start, 1e-9)
        self.start, self.sums, self.steps = now, {}, 0
        return record
