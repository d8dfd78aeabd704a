"""Images per second of the training engine's own step, and of the paper-style CPU input pipeline.

Every training row calls ``mafer.train.engine.Trainer.train_step`` (the code ``mafer step2``
and ``mafer step1`` run) on a batch held in memory on the device; rows are timed after
warm-up, the device synchronised around the timed loop:

* ``ours step2``: ``step2`` with the recipe (Adam, class-weighted CE): a uint8 batch ->
  the engine's input path (augmentation of the fine-tuning set, ``preprocess``) -> forward/backward
  -> optimiser step;
* ``ours CR step1``: ``step1 --mode cr``: uint8 batch -> per-image lowering -> the same
  augmentation draws for the lowered and the full-resolution copy -> frozen teacher forward ->
  student forward/backward -> CE + ``cr_lambda`` x feature MSE -> SGD step;
* ``... model-only``: the same ``train_step`` with the input path skipped, from random
  preprocessed tensors (the issue's baseline), for our model and for timm's
  ``legacy_seresnet50`` (when timm imports) trained by the same engine;
* ``augment`` / ``decode``: the input path alone (``Trainer.train_inputs``; batched JPEG decoding);
* ``paper-style``: per image, PIL decode + PIL lowering + ``mafer.transforms`` v2 transforms,
  one process, one thread: images/s per CPU core.

On CUDA the engine's defaults apply (bf16 autocast, channels_last); ``--compile`` adds rows with
the config's ``compile`` on, as ``--compile`` trains. ``--json OUT`` writes the table (after
every row, so a run cut short still leaves what it measured). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, installed or not
from mafer.datasets.info import dataset_info
from mafer.image import decode_bytes, lowered_size
from mafer.models import create_model
from mafer.resolution import sample_resolutions
from mafer.train.config import TrainConfig
from mafer.train.data import InMemorySource, TrainingData
from mafer.train.distributed import DistEnv
from mafer.train.engine import Trainer
from mafer.transforms import train_transform

VGGFACE2_CLASSES = 8631
# The numbers (one H200, 224 px, bf16 autocast, channels_last) and goals.
REFERENCE = {
    "timm legacy_seresnet50 step2 model-only, eager": 3353,
    "timm legacy_seresnet50 step2 model-only, compiled": 5931,
    "timm legacy_seresnet50 CR step1 model-only, eager": 2620,
    "timm legacy_seresnet50 CR step1 model-only, compiled": 4590,
    "paper-style CPU pipeline, per core": 180,
}
GOALS = {"step2": 6500, "cr": 5000, "vs_paper_style": 2.0}


@dataclass
class Row:
    name: str
    what: str
    batch: int
    images_per_s: float | None = None
    ms_per_step: float | None = None
    note: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- timing
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], device: torch.device, batch: int, iters: int, warmup: int) -> dict[str, float]:
    """Images/s and ms per step of ``step`` (one batch each) after ``warmup`` untimed calls."""
    start = time.perf_counter()
    for _ in range(max(warmup, 1)):
        step()
    synchronize(device)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return {"images_per_s": batch * iters / elapsed, "ms_per_step": 1000 * elapsed / iters, "warmup_s": warm_s}


# ------------------------------------------------------------------------------------- the engine's step
class TimmNetwork(nn.Module):
    """A timm model behind the interface the engine trains (pooled ``forward_features``,
    ``forward_head``, ``classifier``), so its rows run the very same `Trainer.train_step`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.net = model
        self.classifier = model.get_classifier()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.classifier(features)


class ModelOnlyTrainer(Trainer):
    """The engine's step from inputs that are already preprocessed (the model-only baseline):
    no lowering, augmentation or preprocessing; the CR teacher sees the student's input."""

    timm_model: str | None = None  # set: train this timm model instead of ``cfg.arch``

    def build_networks(self, num_classes: int) -> tuple[nn.Module, nn.Module | None]:
        if self.timm_model is None:
            return super().build_networks(num_classes)
        import timm

        model = TimmNetwork(timm.create_model(self.timm_model, pretrained=False, num_classes=num_classes))
        teacher = copy.deepcopy(model).eval().requires_grad_(False) if self.cfg.mode == "cr" else None
        return model, teacher

    def train_inputs(self, images: Tensor, p: float) -> tuple[Tensor, Tensor | None]:
        return images, images if self.teacher is not None else None


def step_config(args: argparse.Namespace, stage: str, workdir: Path, compile_: bool) -> TrainConfig:
    """The run a row times: step 2 (``step2`` on ``--step2-dataset``) or CR step 1 (``step1
    --mode cr`` on ``--cr-dataset``, teacher = a random ``--init``), with the recipe's optimiser
    and loss, one batch of ``--batch-size`` per optimiser step."""
    common = dict(arch=args.arch, image_size=args.image_size, batch_size=args.batch_size, accum_steps=1,
                  device=args.device.split(":")[0], compile=compile_, progress=False, in_memory=True)
    out = workdir / f"{stage}-{'compiled' if compile_ else 'eager'}-{len(list(workdir.iterdir()))}"
    if stage == "step2":
        return TrainConfig(stage="step2", dataset=args.step2_dataset, source_size=args.step2_source,
                           out=str(out), **common).resolve()
    init = workdir / f"init-{args.arch}.pt"
    if not init.exists():  # the teacher is a frozen copy of --init; random weights time the same
        torch.save(create_model(args.arch, VGGFACE2_CLASSES).state_dict(), init)
    return TrainConfig(stage="step1", mode="cr", dataset=args.cr_dataset, source_size=args.cr_source,
                       init=str(init), lower_p=args.lower_p, out=str(out), **common).resolve()


def step_trainer(cfg: TrainConfig, device: torch.device, batch: Tensor, model_only: bool = False,
                 timm_model: str | None = None) -> tuple[Trainer, Tensor]:
    """A `Trainer` of ``cfg`` whose data is ``batch`` in memory (train and validation alike),
    and labels for it drawn over the dataset's classes."""
    info = dataset_info(cfg.dataset)
    classes = list(info.classes) or [f"n{i:06d}" for i in range(VGGFACE2_CLASSES)]
    labels = torch.randint(0, len(classes), (len(batch),), generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(labels, minlength=len(classes)).tolist()
    source = InMemorySource(batch, labels, device)
    data = TrainingData(source, source, classes, info.mean_bgr, counts, root="benchmark batch")
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=device)
    cls = type("Trainer", (ModelOnlyTrainer,), {"timm_model": timm_model}) if model_only else Trainer
    return cls(cfg, env, data), labels.to(device)


def step_fn(trainer: Trainer, batch: Tensor, labels: Tensor) -> Callable[[], dict[str, float]]:
    """One optimiser step of the engine on ``batch``: ``Trainer.train_step``, nothing else."""
    group = [(batch, labels)]
    return lambda: trainer.train_step(group)


def augment_fn(trainer: Trainer, batch: Tensor) -> Callable[[], Any]:
    """The engine's input path alone: (lowering ->) augmentation -> preprocess (``Trainer.train_inputs``)."""
    p = trainer.cfg.lower_p if trainer.cfg.lowers else 0.0
    return lambda: trainer.train_inputs(batch, p)


# ------------------------------------------------------------------------------------- data
def source_batch(n: int, size: int, device: torch.device, seed: int = 0) -> Tensor:
    """Smooth random uint8 RGB faces-sized images ``[n, 3, size, size]`` on ``device``."""
    g = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (n, 3, max(size // 8, 2), max(size // 8, 2)), generator=g).float()
    big = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.randn(big.shape, generator=g) * 8
    return (big + noise).clamp(0, 255).round().to(torch.uint8).to(device)


def jpeg_bytes(images: Tensor, quality: int = 90) -> list[bytes]:
    out = []
    for image in images.cpu():
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


# ------------------------------------------------------------------------------------- paper-style CPU pipeline
def pil_lower(image: Image.Image, r: int) -> Image.Image:
    """The reference lowering: shorter side to r and back, PIL bilinear."""
    width, height = image.size
    if r <= 0 or r >= width or r >= height:
        return image
    h, w = lowered_size(height, width, r)
    return image.resize((w, h), Image.BILINEAR).resize((width, height), Image.BILINEAR)


def paper_style_rate(encoded: list[bytes], dataset: str, image_size: int, lower_p: float | None,
                     seconds: float) -> dict[str, float]:
    """Images/s of one CPU thread: PIL decode (+ PIL lowering and a second, same-draw transform
    of the full-resolution image for CR) + the per-image v2 transforms of ``mafer.transforms``."""
    transform = train_transform(dataset, image_size)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def one(data: bytes) -> None:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        if lower_p is None:
            transform(torch.from_numpy(np.array(image)).permute(2, 0, 1))
            return
        r = int(sample_resolutions(1, lower_p)[0])
        state = torch.get_rng_state()
        transform(torch.from_numpy(np.array(pil_lower(image, r))).permute(2, 0, 1))
        torch.set_rng_state(state)  # the teacher's copy gets the student's crop and flips
        transform(torch.from_numpy(np.array(image)).permute(2, 0, 1))

    try:
        for data in encoded[:3]:
            one(data)
        count, start = 0, time.perf_counter()
        while count < 5 or time.perf_counter() - start < seconds:
            one(encoded[count % len(encoded)])
            count += 1
        elapsed = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return {"images_per_s": count / elapsed, "ms_per_step": 1000 * elapsed / count}


def decode_rate(encoded: list[bytes], size: int, device: torch.device, iters: int) -> dict[str, float]:
    """Images/s of ``mafer.image.decode_bytes`` on a list of JPEGs (nvJPEG on CUDA)."""
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in encoded]
    return time_steps(lambda: decode_bytes(data, size=size, device=device), device, len(data), iters, warmup=1)


# ------------------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke: senet_tiny (timm: legacy_seresnet18), 64 px, batch 8, 2 iterations")
    p.add_argument("--arch", default=None, help="our architecture: senet50 (default) or senet_tiny (--quick)")
    p.add_argument("--image-size", type=int, default=None, help="network input size (224; 64 with --quick)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (256 on CUDA, 16 on CPU, 8 --quick)")
    p.add_argument("--iters", type=int, default=None, help="timed steps per row (30 CUDA, 3 CPU, 2 --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (5 CUDA, 1 CPU; compile adds 2)")
    p.add_argument("--compile", action="store_true", help="add torch.compile rows (ours and timm)")
    p.add_argument("--no-timm", action="store_true", help="skip the timm rows")
    p.add_argument("--timm-model", default=None,
                   help="timm model of the baseline rows (legacy_seresnet50; legacy_seresnet18 with --quick)")
    p.add_argument("--no-paper-style", action="store_true", help="skip the per-core CPU pipeline rows")
    p.add_argument("--step2-dataset", default="rafdb", help="fine-tuning set whose augmentation step 2 runs")
    p.add_argument("--step2-source", type=int, default=100, help="source image side for step 2 (RAF-DB aligned: 100)")
    p.add_argument("--cr-dataset", default="vggface2", help="set whose augmentation CR step 1 runs")
    p.add_argument("--cr-source", type=int, default=256, help="source image side for CR step 1 (cached VGGFace2: 256)")
    p.add_argument("--lower-p", type=float, default=1.0,
                   help="lowering probability in CR step 1 (the curriculum ends at 1)")
    p.add_argument("--paper-seconds", type=float, default=None, help="seconds per paper-style row (3; 0.3 --quick)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1,
                   help="CPU cores the paper-style pipeline may use (default: this machine's)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; 1 with --quick, robust on shared CI runners)")
    p.add_argument("--rows", default=None,
                   help="measure only the rows whose name matches this regular expression, e.g. 'compiled'")
    p.add_argument("--json", type=Path, default=None, help="write the table and ratios to this JSON file")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    quick = args.quick
    defaults = dict(arch="senet_tiny" if quick else "senet50", image_size=64 if quick else 224,
                    timm_model="legacy_seresnet18" if quick else "legacy_seresnet50",
                    batch_size=8 if quick else (256 if cuda else 16), iters=2 if quick else (30 if cuda else 3),
                    warmup=1 if quick else (5 if cuda else 1), paper_seconds=0.3 if quick else 3.0,
                    threads=1 if quick else torch.get_num_threads())
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if quick:
        args.step2_source = min(args.step2_source, 48)
        args.cr_source = min(args.cr_source, 80)
    return args


def machine(args: argparse.Namespace) -> dict[str, Any]:
    info = {"device": args.device, "cpu_cores": os.cpu_count(), "torch_threads": args.threads,
            "cores_for_paper_style": args.cores,
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    try:
        import timm

        info["timm"] = timm.__version__
    except ImportError:
        info["timm"] = None
    return info


class Table:
    """Collects rows, prints each as it comes, writes the JSON after each."""

    def __init__(self, args: argparse.Namespace, machine_info: dict[str, Any] | None = None):
        self.args, self.rows = args, []
        self.machine = machine_info if machine_info is not None else machine(args)
        self.settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}

    def add(self, row: Row, measure: Callable[[], dict[str, float]]) -> Row | None:
        if self.args.rows and not re.search(self.args.rows, row.name):
            return None
        try:
            result = measure()
            row.images_per_s, row.ms_per_step = result["images_per_s"], result["ms_per_step"]
            row.extra = {k: v for k, v in result.items() if k not in ("images_per_s", "ms_per_step")}
            if row.name.endswith("compiled"):
                row.note = f"warm-up (compilation included) {result['warmup_s']:.1f} s"
        except Exception as exc:  # one failing row (OOM, compile error) must not lose the others
            row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        finally:
            if self.args.device.startswith("cuda"):
                torch.cuda.empty_cache()
        self.rows.append(row)
        rate = f"{row.images_per_s:10.1f}" if row.images_per_s is not None else f"{'error':>10}"
        print(f"  {row.name:<46} {rate} img/s  {row.error or row.note}", flush=True)
        self.write()
        return row

    def rate(self, name: str) -> float | None:
        return next((r.images_per_s for r in self.rows if r.name == name), None)

    def ratios(self) -> dict[str, float | None]:
        def div(a: float | None, b: float | None, scale: float = 1.0) -> float | None:
            return a / (b * scale) if a is not None and b else None

        out: dict[str, float | None] = {}
        for step in ("step2", "CR step1"):
            timm_name, paper = f"timm {step} model-only, compiled", f"paper-style {step} per core"
            for variant in ("eager", "compiled"):
                ours = self.rate(f"ours {step}, {variant}")
                out[f"ours {step} {variant} / timm compiled model-only"] = div(ours, self.rate(timm_name))
                out[f"ours {step} {variant} / (paper-style per core x {self.args.cores} cores)"] = div(
                    ours, self.rate(paper), self.args.cores)
        return out

    def goals(self) -> list[dict[str, Any]]:
        a = self.args
        on_target = (a.device.startswith("cuda") and a.image_size == 224 and a.arch == "senet50"
                     and a.timm_model == "legacy_seresnet50")
        rows = []
        for step, key in (("step2", "step2"), ("CR step1", "cr")):
            best = max((r for r in (self.rate(f"ours {step}, eager"), self.rate(f"ours {step}, compiled")) if r),
                       default=None)
            timm_c = self.rate(f"timm {step} model-only, compiled")
            paper = self.rate(f"paper-style {step} per core")
            rows.append({
                "goal": f"ours {step} >= {GOALS[key]} img/s (one H200, 224 px, whole input path)",
                "measured": best, "met": (best >= GOALS[key]) if (best and on_target) else None})
            rows.append({"goal": f"ours {step} ahead of timm compiled model-only (same run)",
                         "measured": best / timm_c if best and timm_c else None,
                         "met": (best > timm_c) if best and timm_c and on_target else None})
            rows.append({"goal": f"ours {step} >= {GOALS['vs_paper_style']}x paper-style x {self.args.cores} cores",
                         "measured": best / (paper * self.args.cores) if best and paper else None,
                         "met": (best >= GOALS["vs_paper_style"] * paper * self.args.cores)
                         if best and paper and on_target else None})
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "settings": self.settings, "rows": [asdict(r) for r in self.rows],
                "ratios": self.ratios(), "goals": self.goals(), "reference": REFERENCE}

    def write(self) -> None:
        if self.args.json is not None:
            self.args.json.parent.mkdir(parents=True, exist_ok=True)
            self.args.json.write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    def print_summary(self) -> None:
        print()
        print("| row | what | batch | img/s | ms/step | note |")
        print("|---|---|---:|---:|---:|---|")
        for r in self.rows:
            rate = f"{r.images_per_s:.1f}" if r.images_per_s is not None else "-"
            ms = f"{r.ms_per_step:.1f}" if r.ms_per_step is not None else "-"
            print(f"| {r.name} | {r.what} | {r.batch} | {rate} | {ms} | {r.error or r.note} |")
        print()
        print("| ratio | value |")
        print("|---|---:|")
        for name, value in self.ratios().items():
            print(f"| {name} | {value:.2f} |" if value is not None else f"| {name} | n/a |")
        print()
        print("| goal | measured | met |")
        print("|---|---:|---|")
        for g in self.goals():
            value = g["measured"]
            shown = "-" if value is None else (f"{value:.1f}" if value > 50 else f"{value:.2f}")
            met = {True: "yes", False: "NO", None: "n/a (goals are for senet50, 224 px, CUDA)"}[g["met"]]
            print(f"| {g['goal']} | {shown} | {met} |")


def run(args: argparse.Namespace) -> Table:
    """Measure every row; return the filled table."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    table = Table(args)
    print(f"machine: {json.dumps(table.machine)}", flush=True)
    n, size = args.batch_size, args.image_size
    step2_batch = source_batch(n, args.step2_source, device, seed=0)
    cr_batch = source_batch(n, args.cr_source, device, seed=1)
    timing = dict(device=device, batch=n, iters=args.iters)
    warm = dict(eager=args.warmup, compiled=args.warmup + 2)
    timm_model = None if args.no_timm else args.timm_model
    if timm_model is not None and importlib.util.find_spec("timm") is None:
        print("  (timm is not importable: timm rows skipped)", flush=True)
        timm_model = None
    workdir = Path(tempfile.mkdtemp(prefix="mafer-throughput-"))  # the trainers' run folders
    try:
        variants = ["eager", "compiled"] if args.compile else ["eager"]
        for variant in variants:
            compile_, suffix = variant == "compiled", ", compiled" if variant == "compiled" else ""
            step2 = lambda: step_config(args, "step2", workdir, compile_)
            cr = lambda: step_config(args, "step1", workdir, compile_)
            table.add(Row("augment step2" + suffix,
                          f"Trainer.train_inputs {args.step2_dataset} {args.step2_source}->{size} + preprocess", n),
                      lambda: time_steps(augment_fn(step_trainer(step2(), device, step2_batch)[0], step2_batch),
                                         warmup=warm[variant], **timing))
            table.add(Row("augment CR step1" + suffix, f"Trainer.train_inputs: lowering p={args.lower_p} + "
                          f"{args.cr_dataset} augmentation x2 + preprocess", n),
                      lambda: time_steps(augment_fn(step_trainer(cr(), device, cr_batch)[0], cr_batch),
                                         warmup=warm[variant], **timing))
        encoded = jpeg_bytes(cr_batch[: min(n, 64)])
        table.add(Row("decode JPEG", f"image.decode_bytes {args.cr_source}px JPEGs on {device.type}"
                      + (" (nvJPEG, batched)" if device.type == "cuda" else " (one thread per call)"), len(encoded)),
                  lambda: decode_rate(encoded, args.cr_source, device, iters=max(args.iters // 3, 1)))

        if not args.no_paper_style:  # before the models: seconds, and a run cut short still has them
            step2_jpegs = jpeg_bytes(step2_batch[: min(n, 32)])
            table.add(Row("paper-style step2 per core",
                          f"PIL decode + v2 {args.step2_dataset} transforms, 1 thread", 1),
                      lambda: paper_style_rate(step2_jpegs, args.step2_dataset, size, None, args.paper_seconds))
            table.add(Row("paper-style CR step1 per core",
                          f"PIL decode + PIL lowering + v2 {args.cr_dataset} transforms x2, 1 thread", 1),
                      lambda: paper_style_rate(encoded[:32], args.cr_dataset, size, args.lower_p, args.paper_seconds))

        model_only_input = torch.randn(n, 3, size, size, device=device)
        if device.type == "cuda":
            model_only_input = model_only_input.contiguous(memory_format=torch.channels_last)
        for variant in variants:
            compile_ = variant == "compiled"
            step2 = lambda: step_config(args, "step2", workdir, compile_)
            cr = lambda: step_config(args, "step1", workdir, compile_)

            def engine_row(cfg: TrainConfig, batch: Tensor, **kw: Any) -> dict[str, float]:
                trainer, labels = step_trainer(cfg, device, batch, **kw)
                return time_steps(step_fn(trainer, batch, labels), warmup=warm[variant], **timing)

            table.add(Row(f"ours step2, {variant}",
                          f"Trainer.train_step: {args.step2_dataset} aug + {args.arch} fwd/bwd + Adam", n),
                      lambda: engine_row(step2(), step2_batch))
            table.add(Row(f"ours CR step1, {variant}", f"Trainer.train_step: lowering + {args.cr_dataset} aug + "
                          f"teacher fwd + student fwd/bwd + MSE + CE + SGD", n),
                      lambda: engine_row(cr(), cr_batch))
            # the baseline first, then ours: the same engine step from random preprocessed input
            for key, name in (("timm", timm_model), ("ours", None)):
                if key == "timm" and name is None:
                    continue
                shown = name or args.arch
                table.add(Row(f"{key} step2 model-only, {variant}",
                              f"Trainer.train_step, input path skipped: {shown} fwd/bwd + Adam, random input", n),
                          lambda: engine_row(step2(), model_only_input, model_only=True, timm_model=name))
                table.add(Row(f"{key} CR step1 model-only, {variant}",
                              f"Trainer.train_step, input path skipped: {shown} teacher fwd + student fwd/bwd "
                              f"+ MSE + CE + SGD, random input", n),
                          lambda: engine_row(cr(), model_only_input, model_only=True, timm_model=name))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    table = run(args)
    table.print_summary()
    table.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
