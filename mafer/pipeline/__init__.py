"""The companion pipeline: the experiment graph (Snakefile), its profiles and helpers.

`mafer reproduce` (mafer/reproduce.py) runs it; every node executes one notebook of
``notebooks/`` with papermill (`mafer.pipeline.run_notebook`).
"""

import sys
from pathlib import Path

# jsonschema (the profile checks here; papermill -> nbformat in every node) imports rfc3987_syntax
# when installed, which builds ~35 Earley parsers at import: seconds per process
# (python-jsonschema/jsonschema#1428), for the "iri" format checks that neither the profile
# schema nor the notebook schema uses. Marked absent, jsonschema leaves those two checks out.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]

PIPELINE_DIR = Path(__file__).resolve().parent
SNAKEFILE = PIPELINE_DIR / "Snakefile"
PROFILES_DIR = PIPELINE_DIR / "profiles"
