"""`mafer pretrain`: step 1 of the paper (base, CR, CR-Simplified; VGGFace2 or the AffWild2 stage).

Examples::

    mafer pretrain --mode base --dataset vggface2 --data-dir data --out runs/base
    mafer pretrain --mode cr --dataset vggface2 --data-dir data --init runs/base/best.pt --out runs/cr
    mafer pretrain --mode cr-simplified --dataset vggface2 --data-dir data --init runs/base/best.pt --out runs/crs
    mafer pretrain --mode cr-simplified --dataset affwild2 --data-dir data --init runs/cr/best.pt --out runs/cr_aff
    torchrun --nproc-per-node 4 -m mafer pretrain ...   # the same run on 4 GPUs (DDP)

``--preset demo`` / ``--preset smoke`` select the small configurations (senet_tiny).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

from mafer.train.config import TrainConfig, add_config_arguments, config_from_args
from mafer.train.engine import run_stage


def run_pretrain(cfg: TrainConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Path:
    """Run step 1 with ``cfg`` (a TrainConfig or a dict of its fields, plus keyword overrides); returns the run folder."""
    return run_stage("pretrain", cfg, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "pretrain")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, "pretrain")
    if args.print_config:
        print(cfg.resolve().describe())
        return 0
    out = run_pretrain(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(f"step 1 finished: {', '.join(str(p) for p in (out / 'best.pt', out / 'last.pt') if p.exists())}")
    return 0
