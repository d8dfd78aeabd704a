"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with smoke-scale synthetic copies of all five datasets (seed 0), made once per session."""
    from mafer.synth import write_synthetic

    out = tmp_path_factory.mktemp("synth_smoke")
    write_synthetic(out, scale="smoke", seed=0)
    return out
