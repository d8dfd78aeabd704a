"""Training: step 1 (`run_pretrain`) and step 2 (`run_finetune`), configured by one `TrainConfig`."""

from mafer.train.config import PRESETS, TrainConfig

__all__ = ["PRESETS", "TrainConfig", "run_finetune", "run_pretrain"]


def __getattr__(name: str):
    # the runners pull in torch, the models and the data code: import them only when used
    if name == "run_pretrain":
        from mafer.train.cli import run_pretrain
        return run_pretrain
    if name == "run_finetune":
        from mafer.train.cli import run_finetune
        return run_finetune
    raise AttributeError(f"module 'mafer.train' has no attribute {name!r}")
