"""Training: step 1 (`run_step1`) and step 2 (`run_step2`), configured by one `TrainConfig`."""

from mafer.train.config import PRESETS, TrainConfig

__all__ = ["PRESETS", "TrainConfig", "run_step1", "run_step2"]

_OLD_NAMES = {"run_pretrain": "run_step1", "run_finetune": "run_step2"}  # before the paper's step names


def __getattr__(name: str):
    if name in _OLD_NAMES:
        import warnings

        warnings.warn(f"mafer.train.{name} is now mafer.train.{_OLD_NAMES[name]}", FutureWarning, stacklevel=2)
        name = _OLD_NAMES[name]
    # the runners pull in torch, the models and the data code: import them only when used
    if name == "run_step1":
        from mafer.train.cli import run_step1
        return run_step1
    if name == "run_step2":
        from mafer.train.cli import run_step2
        return run_step2
    raise AttributeError(f"module 'mafer.train' has no attribute {name!r}")
