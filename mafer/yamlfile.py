"""Reading the YAML files users write (training configs, pipeline profiles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mafer.errors import MaferError


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping in a YAML file (empty file -> ``{}``); MaferError naming the file otherwise.

    ``what`` names the file's role in messages, e.g. ``"config"`` or ``"profile"``.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MaferError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as exc:
        raise MaferError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MaferError(f"{path}: expected a mapping of {what} entries, got {type(data).__name__}")
    return data
