"""`mafer step1` and `mafer step2`: the two training steps of the paper, one command each.

Step 1 (`mafer step1`): base, CR or CR-Simplified training on VGGFace2, or the AffWild2 stage::

    mafer step1 --mode base --dataset vggface2 --data-dir data --out runs/base
    mafer step1 --mode cr --dataset vggface2 --data-dir data --init runs/base/best.pt --out runs/cr
    mafer step1 --mode cr-simplified --dataset vggface2 --data-dir data --init runs/base/best.pt --out runs/crs
    mafer step1 --mode cr-simplified --dataset affwild2 --data-dir data --init runs/cr/best.pt --out runs/cr_aff

Step 2 (`mafer step2`): a new classifier fine-tuned on FER2013, RAF-DB or Oulu-CASIA::

    mafer step2 --dataset rafdb --data-dir data --init runs/cr/best.pt --out runs/cr_rafdb
    mafer step2 --dataset oulucasia --data-dir data --init runs/cr/best.pt --fold 3 --out runs/cr_oulu/fold3

Either runs on several GPUs under ``torchrun --nproc-per-node 4 -m mafer step2 ...`` (DDP).
The recipes (step 2: Adam, backbone lr 1e-4, classifier lr 1e-2, class-weighted CE, batch
16 x 4, ReduceLROnPlateau on validation accuracy, seed 17) are the defaults (the rows of
``mafer.train.config.RECIPES``); ``--preset demo`` / ``--preset smoke`` select the small
configurations (senet_tiny); every value has a flag, ``--help`` names each default and
``--print-config`` prints every value of a run with where it came from.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

from mafer.train.config import TrainConfig, add_config_arguments, config_from_args


def run_step1(cfg: TrainConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Path:
    """Run step 1 with ``cfg`` (a TrainConfig or a dict of its fields, plus keyword overrides); returns the run folder."""
    from mafer.train.engine import run_stage

    return run_stage("step1", cfg, overrides)


def run_step2(cfg: TrainConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Path:
    """Run step 2 with ``cfg`` (a TrainConfig or a dict of its fields, plus keyword overrides); returns the run folder."""
    from mafer.train.engine import run_stage

    return run_stage("step2", cfg, overrides)


def add_arguments(parser: argparse.ArgumentParser, stage: str) -> None:
    add_config_arguments(parser, stage)


def run(args: argparse.Namespace) -> int:
    stage = args.command
    cfg = config_from_args(args, stage)
    if args.print_config:
        print(cfg.resolve().describe())
        return 0
    from mafer.train.engine import train

    out = train(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        written = ", ".join(str(p) for p in (out / "best.pt", out / "last.pt") if p.exists())
        print(f"step {stage[-1]} finished: {written}")
    return 0
