"""The companion pipeline: the experiment graph (Snakefile), its profiles and helpers.

`mafer reproduce` (mafer/reproduce.py) runs it; every node executes one notebook of
``notebooks/`` with papermill (`mafer.pipeline.run_notebook`).
"""

from pathlib import Path

PIPELINE_DIR = Path(__file__).resolve().parent
SNAKEFILE = PIPELINE_DIR / "Snakefile"
PROFILES_DIR = PIPELINE_DIR / "profiles"
