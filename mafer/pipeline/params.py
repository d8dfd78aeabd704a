"""Parameters of the companion notebooks: where their relative paths start, and type checks
papermill does not make.

Run by hand (``papermill notebooks/step2.ipynb out.ipynb`` from any folder), a notebook's
default paths are relative to the repository; the pipeline passes ``base_dir="."``, its
results folder, where its own relative paths start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from mafer.errors import MaferError

REPOSITORY = Path(__file__).resolve().parent.parent.parent


def work_in(base_dir: str | os.PathLike | None = None) -> Path:
    """Make ``base_dir`` (None: the repository root) the working folder of the kernel, so the
    notebook's relative paths resolve there whatever folder papermill was started from.
    Returns the folder; MaferError when it does not exist."""
    folder = Path(base_dir).expanduser() if base_dir is not None else REPOSITORY
    if not folder.is_dir():
        raise MaferError(f"base_dir {str(folder)!r}: folder not found; expected the folder the notebook's "
                         "relative paths start from (None: the repository)")
    os.chdir(folder)
    return folder.resolve()


def mapping_parameter(name: str, value: Any) -> dict[str, Any]:
    """``value`` as a dict, or a MaferError saying how to pass a mapping to papermill (``-p``
    passes every value as a string or number)."""
    if isinstance(value, Mapping):
        return dict(value)
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise MaferError(f"parameter {name} must be a mapping, got {type(value).__name__} {shown}; pass it with "
                     f"papermill -y '{name}: {{key: value}}' or -f params.yaml (papermill -p makes a string)")
