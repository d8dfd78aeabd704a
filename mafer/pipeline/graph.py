"""What the Snakefile's nodes depend on: models, their step-1 recipes and initial weights.

Kept out of the Snakefile so that the graph's logic is plain, importable, testable Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import mafer

# slug used in paths -> the name the paper's tables use
MODELS: dict[str, str] = {
    "base": "base",
    "cr": "CR",
    "cr_simplified": "CR-Simplified",
    "cr_affwild2": "CR+AffWild2",
}

# Step 1 of each model (see PAPER.md): base = plain identity training (stands in for the
# VGGFace2 weights when there are none), CR = teacher-student from base, CR-Simplified = one
# network on lowered images from base, CR+AffWild2 = CR further trained on lowered AffWild2 frames.
STEP1: dict[str, dict[str, str]] = {
    "base": {"mode": "base", "dataset": "vggface2"},
    "cr": {"mode": "cr", "dataset": "vggface2"},
    "cr_simplified": {"mode": "cr-simplified", "dataset": "vggface2"},
    "cr_affwild2": {"mode": "cr-simplified", "dataset": "affwild2"},
}

# Which mafer sources each kind of node runs: a change to one of them reruns the node.
# Training nodes leave out pipeline/views.py: redrawing a training curve is no reason to retrain.
_CODE = {
    "synth": ["synth"],
    "datasets": ["datasets", "resolution.py", "transforms.py", "evaluate.py", "pipeline/views.py"],
    "train": ["train", "models", "datasets", "resolution.py", "transforms.py", "batch_augment.py"],
    "evaluate": ["evaluate.py", "metrics.py", "aggregate.py", "figures.py", "models", "datasets", "resolution.py",
                 "transforms.py", "pipeline/views.py"],
    "embed": ["embed.py", "evaluate.py", "figures.py", "models", "datasets", "transforms.py", "pipeline/views.py"],
    "aggregate": ["aggregate.py", "figures.py", "metrics.py", "pipeline/views.py", "pipeline/graph.py"],
}


def code_files(kind: str) -> list[str]:
    """The mafer source files a node of ``kind`` runs (those that exist), as absolute paths."""
    root = Path(mafer.__file__).resolve().parent
    files: list[Path] = []
    for entry in _CODE[kind]:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return [str(f) for f in files]


def base_weights(config: Mapping[str, Any]) -> str:
    """The base network: the profile's VGGFace2 weight file, else the base step-1 checkpoint."""
    return config.get("base_weights") or "runs/step1/base/best.pt"


def step1_init(config: Mapping[str, Any], model: str) -> list[str]:
    """The checkpoint step 1 of ``model`` starts from (empty for base, trained from scratch)."""
    if model == "base":
        return []
    if model == "cr_affwild2":
        return ["runs/step1/cr/best.pt"]
    return [base_weights(config)]


def step2_init(config: Mapping[str, Any], model: str) -> str:
    """The checkpoint step 2 (fine-tuning) of ``model`` starts from."""
    return base_weights(config) if model == "base" else f"runs/step1/{model}/best.pt"


def finetune_parts(config: Mapping[str, Any], dataset: str) -> list[str]:
    """One fine-tuning run per Oulu-CASIA fold listed in the profile; one ``standard`` run otherwise."""
    if dataset == "oulucasia":
        return [f"fold{k}" for k in config["run_folds"]]
    return ["standard"]


def train_options(config: Mapping[str, Any], step: str, *keys: str) -> dict[str, Any]:
    """TrainConfig overrides of a ``step`` ("step1"/"step2") node: the profile's image size, then
    ``config[step]["common"]``, then the sections ``keys`` (a model slug, a dataset) in order."""
    options = {"image_size": config["image_size"]}
    for key in ("common", *keys):
        options |= config[step].get(key) or {}
    return options


def book_sources(config: Mapping[str, Any]) -> dict[str, str]:
    """Executed notebook (under the results folder) for each fixed page name the book renders."""
    book = config.get("book", {})
    model = book.get("model", "cr")
    dataset = book.get("dataset", "rafdb" if "rafdb" in config["datasets"] else config["datasets"][0])
    part = finetune_parts(config, dataset)[0]
    embed = config["embeddings"]["datasets"][0]
    return {
        "data.ipynb": "notebooks/data.ipynb",
        "step1.ipynb": f"notebooks/step1/{model}.ipynb",
        "step2.ipynb": f"notebooks/step2/{model}/{dataset}-{part}.ipynb",
        "evaluation.ipynb": f"notebooks/evaluation/{dataset}.ipynb",
        "embeddings.ipynb": f"notebooks/embeddings/{embed}.ipynb",
        "results.ipynb": "notebooks/results.ipynb",
    }
