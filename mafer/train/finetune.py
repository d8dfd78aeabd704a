"""`mafer finetune`: step 2 of the paper, a new classifier fine-tuned on FER2013, RAF-DB or Oulu-CASIA.

Examples::

    mafer finetune --dataset rafdb --data-dir data --init runs/cr/best.pt --out runs/cr_rafdb
    mafer finetune --dataset oulucasia --data-dir data --init runs/cr/best.pt --fold 3 --out runs/cr_oulu/fold3
    torchrun --nproc-per-node 4 -m mafer finetune ...   # the same run on 4 GPUs (DDP)

The recipe (Adam, backbone lr 1e-4, classifier lr 1e-2, class-weighted CE, batch 16 x 4,
ReduceLROnPlateau on validation accuracy, seed 17) is the default (the ``finetune`` row of
``mafer.train.config.RECIPES``); every value has a flag, ``--help`` names each default and
``--print-config`` prints every value of a run with where it came from.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Mapping

from mafer.train.config import TrainConfig, add_config_arguments, config_from_args
from mafer.train.engine import run_stage


def run_finetune(cfg: TrainConfig | Mapping[str, Any] | None = None, **overrides: Any) -> Path:
    """Run step 2 with ``cfg`` (a TrainConfig or a dict of its fields, plus keyword overrides); returns the run folder."""
    return run_stage("finetune", cfg, overrides)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, "finetune")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, "finetune")
    if args.print_config:
        print(cfg.resolve().describe())
        return 0
    out = run_finetune(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line, not one per process
        print(f"step 2 finished: {', '.join(str(p) for p in (out / 'best.pt', out / 'last.pt') if p.exists())}")
    return 0
