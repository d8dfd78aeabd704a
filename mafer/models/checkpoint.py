"""This project's checkpoints: everything needed to evaluate a model or resume its training.

A checkpoint is a ``torch.save`` dict of plain values and tensors only, so that
``torch.load(weights_only=True)`` reads it:

``format`` ("mafer-checkpoint"), ``format_version``, ``arch`` (the architecture, e.g.
``senet50``), ``num_classes``,
``class_names``, ``mean_bgr``, ``model_state_dict``, ``config`` (the resolved training
configuration), ``metrics``, ``optimizer_state_dict``, ``scheduler_state_dict``,
``extra`` (a training run's: the step, and every rank's random states to resume with),
``versions``. Version 1 checkpoints (``model_name`` instead of
``arch``) are read in the current names.

It is written atomically (temporary file + ``os.replace``), so an interrupted save never
leaves a half-written ``best.pt``; a full disk is one line naming the checkpoint
(`mafer.writes.disk_full_error`), with no temporary file left.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import pickle
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mafer import __version__
from mafer.datasets.info import VGGFACE2_MEAN_BGR
from mafer.device import pick_device
from mafer.errors import MaferError
from mafer.models.senet import SENet, arch_names, create_model, unwrap_model
from mafer.models.weights import CHECKPOINT_FORMAT, load_weights, read_weight_file, upgrade_own_checkpoint
from mafer.writes import RecordingWriter, disk_full_error, is_disk_full

__all__ = ["save_checkpoint", "load_checkpoint", "model_from_checkpoint"]

# 3: Oulu-CASIA folds in the config numbered 1..folds (as the authors' files; 1-2: 0-based);
# 2: the architecture is stored as ``arch`` (1: ``model_name``)
FORMAT_VERSION = 3
_REQUIRED_KEYS = ("arch", "num_classes", "class_names", "mean_bgr", "model_state_dict")


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain Python types and CPU tensors (what ``weights_only`` loading accepts)."""
    if isinstance(value, enum.Enum):
        return _plain(value.value, where)
    if value is None or isinstance(value, bool):
        return value
    for plain_type in (str, int, float):  # also turns subclasses (e.g. torch's TorchVersion) plain
        if isinstance(value, plain_type):
            return plain_type(value)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "to_dict"):
        return _plain(value.to_dict(), where)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value), where)
    if isinstance(value, Mapping):
        return {_plain(k, where): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(f"cannot store {where} ({type(value).__name__}) in a checkpoint: use plain values or tensors")


def _state_dict_of(obj: Any, where: str) -> Any:
    """An optimizer/scheduler (or its ``state_dict()`` already) as plain values."""
    if obj is None:
        return None
    state = obj.state_dict() if hasattr(obj, "state_dict") else obj
    return _plain(state, where)


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, then rename; a full disk is a MaferError
    naming ``path`` (torch reports it as "unexpected pos"), and leaves no temporary file."""
    tmp = None
    writer = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            writer = RecordingWriter(f, path)
            torch.save(payload, writer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = writer.error if writer is not None and writer.error is not None else exc
        if is_disk_full(cause):
            raise disk_full_error(path, cause, " the checkpoint") from None
        raise


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    arch: str,
    class_names: Sequence[str],
    mean_bgr: Sequence[float],
    config: Any = None,
    metrics: Mapping[str, Any] | None = None,
    optimizer: Any = None,
    scheduler: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint of ``model`` (architecture ``arch``, see `create_model`) atomically and
    return its path.

    ``config`` may be a dict, a dataclass or anything with ``to_dict()``; ``optimizer`` and
    ``scheduler`` may be the objects or their state dicts (None: a checkpoint to evaluate or
    start from, not to resume). Wrapped models (DDP, ``torch.compile``) are unwrapped.
    """
    path = Path(path)
    model = unwrap_model(model)
    num_classes = model.classifier.out_features
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for a classifier with {num_classes} outputs")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "num_classes": num_classes,
        "class_names": [str(c) for c in class_names],
        "mean_bgr": [float(m) for m in mean_bgr],
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": _plain(config, "config"),
        "metrics": _plain(dict(metrics or {}), "metrics"),
        "optimizer_state_dict": _state_dict_of(optimizer, "optimizer"),
        "scheduler_state_dict": _state_dict_of(scheduler, "scheduler"),
        "extra": _plain(dict(extra or {}), "extra"),
        "versions": _plain({"mafer": __version__, "torch": torch.__version__}, "versions"),
    }
    _atomic_save(payload, path)
    return path


def _weights_only_reason(exc: Exception) -> str:
    """The informative line of torch's long weights-only refusal message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if "Unsupported" in line or "WeightsUnpickler" in line]
    return (reasons or lines or [type(exc).__name__])[0]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only``, on the CPU).

    Older format versions come back in the current key names (see `upgrade_own_checkpoint`).
    """
    path = Path(path)
    if not path.is_file():
        raise MaferError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise MaferError(
            f"{path}: refused to load: it holds objects other than tensors and plain values "
            f"({_weights_only_reason(exc)})"
        ) from None
    except Exception as exc:
        raise MaferError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise MaferError(
            f"{path}: not a checkpoint of this project (no 'format': '{CHECKPOINT_FORMAT}'); "
            "read the authors' checkpoints and the VGGFace2 weights with load_pretrained or model_from_checkpoint"
        )
    if checkpoint.get("format_version", 0) > FORMAT_VERSION:
        raise MaferError(f"{path}: checkpoint format version {checkpoint['format_version']} is newer than this mafer ({FORMAT_VERSION})")
    checkpoint = upgrade_own_checkpoint(checkpoint)
    missing = [k for k in _REQUIRED_KEYS if k not in checkpoint]
    if missing:
        raise MaferError(f"{path}: checkpoint lacks {missing}")
    return checkpoint


def model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[SENet, dict[str, Any]]:
    """Rebuild the model stored in ``path``, in eval mode on ``device`` ("auto" = CUDA if present).

    Accepts this project's checkpoints and every format of :func:`mafer.models.load_pretrained`
    (the external ones all hold ``senet50``). The metadata has ``arch``,
    ``num_classes``, ``class_names`` and ``mean_bgr`` (None where the file does not say),
    ``config``, ``metrics`` and ``format``.
    """
    weights = read_weight_file(path)
    if weights.format == "mafer":
        arch, num_classes = weights.meta["arch"], weights.meta["num_classes"]
        if arch not in arch_names():
            raise MaferError(f"{path}: checkpoint of an unknown architecture {arch!r}; expected one of {arch_names()}")
    else:
        arch, num_classes = "senet50", weights.num_classes
        if num_classes is None:
            raise MaferError(f"{path}: the file has no classifier ('{weights.file_key('classifier.weight')}')")
    model = create_model(arch, num_classes)
    meta = load_weights(model, weights, head=True)
    identities = weights.format in ("vggface2-pickle", "mmdnn-module")
    meta = {
        "class_names": None,
        "mean_bgr": list(VGGFACE2_MEAN_BGR) if identities else None,
        "config": None,
        "metrics": {k: meta[k] for k in ("epoch", "best_acc") if k in meta},
        **meta,
        "arch": arch,
        "num_classes": num_classes,
    }
    return model.to(pick_device(device)).eval(), meta
