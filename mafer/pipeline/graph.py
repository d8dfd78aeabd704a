"""What the Snakefile's nodes depend on: models, their step-1 recipes and initial weights.

Kept out of the Snakefile so that the graph's logic is plain, importable, testable Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import mafer
from mafer.errors import MaferError

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
    "aggregate": ["aggregate.py", "stats.py", "figures.py", "metrics.py", "pipeline/views.py", "pipeline/graph.py"],
}


def code_files(kind: str) -> list[str]:
    """The mafer source files a node of ``kind`` runs (those that exist), as absolute paths."""
    root = Path(mafer.__file__).resolve().parent
    files: list[Path] = []
    for entry in _CODE[kind]:
        path = root / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return [str(f) for f in files]


# The paper's training seed (step 2; our presets use it for every stage): a profile without
# `seeds` runs each node once with it.
DEFAULT_SEED = 17


def _seed_list(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        raise MaferError(f"{where}: expected a non-empty list of integer seeds, e.g. [17, 18, 19]; got {value!r}")
    if len(set(value)) != len(value):
        raise MaferError(f"{where}: seed listed twice in {value}")
    return list(value)


def normalize_seeds(value: Any, profile_value: Any = None) -> dict[str, Any]:
    """The profile's ``seeds`` as ``{"step1": [..], "step2": [..] | {dataset: [..]}}``.

    ``value`` is a mapping with ``step1`` and/or ``step2`` (``step2`` a list for every dataset or
    a mapping dataset -> list), or a plain list (``--config seeds=[0,1,2]``): the step-2 seeds,
    step 1 keeping ``profile_value``'s. Missing entries are ``[DEFAULT_SEED]``. MaferError on
    anything else.
    """
    if value is None:
        value = {}
    if isinstance(value, (list, int)) and not isinstance(value, bool):
        step1 = normalize_seeds(profile_value)["step1"] if isinstance(profile_value, Mapping) else [DEFAULT_SEED]
        return {"step1": step1, "step2": _seed_list(value, "seeds")}
    if not isinstance(value, Mapping) or set(value) - {"step1", "step2"}:
        raise MaferError(f"seeds: expected a list of step-2 seeds or a mapping with step1 and step2; got {value!r}")
    step2 = value.get("step2", [DEFAULT_SEED])
    if isinstance(step2, Mapping):
        step2 = {str(d): _seed_list(v, f"seeds.step2.{d}") for d, v in step2.items()}
    else:
        step2 = _seed_list(step2, "seeds.step2")
    return {"step1": _seed_list(value.get("step1", [DEFAULT_SEED]), "seeds.step1"), "step2": step2}


def step1_seeds(config: Mapping[str, Any]) -> list[int]:
    """The seeds each step-1 model is trained with (one run folder each)."""
    return normalize_seeds(config.get("seeds"))["step1"]


def step2_seeds(config: Mapping[str, Any], dataset: str) -> list[int]:
    """The seeds each fine-tuning on ``dataset`` runs with, from each step-1 seed."""
    step2 = normalize_seeds(config.get("seeds"))["step2"]
    return step2.get(dataset, [DEFAULT_SEED]) if isinstance(step2, dict) else step2


def seed_runs(config: Mapping[str, Any], dataset: str) -> list[tuple[int, int]]:
    """``(step-1 seed, step-2 seed)`` of every fine-tuning of one model on one part of ``dataset``."""
    return [(s1, s2) for s1 in step1_seeds(config) for s2 in step2_seeds(config, dataset)]


def run_name(part: str, s1: int, s2: int) -> str:
    """The name of one fine-tuning run: ``<part>-seed<step-1 seed>-<step-2 seed>`` (``standard-seed17-18``)."""
    return f"{part}-seed{s1}-{s2}"


def split_run_name(name: str) -> tuple[str, dict[str, int] | None]:
    """``"fold3-seed17-18"`` -> ``("fold3", {"step1": 17, "step2": 18})``; a name without seeds -> ``(name, None)``."""
    part, sep, seeds = name.partition("-seed")
    s1, dash, s2 = seeds.partition("-")
    if sep and dash and s1.isdigit() and s2.isdigit():
        return part, {"step1": int(s1), "step2": int(s2)}
    return name, None


def step1_dir(model: str, seed: int) -> str:
    return f"runs/step1/{model}/seed{seed}"


def step2_dir(model: str, dataset: str, part: str, s1: int, s2: int) -> str:
    return f"runs/step2/{model}/{dataset}/{part}/seed{s1}-{s2}"


def base_weights(config: Mapping[str, Any], seed: int | None = None) -> str:
    """The base network: the profile's VGGFace2 weight file, else the base step-1 checkpoint of
    step-1 seed ``seed`` (default: the first)."""
    return config.get("base_weights") or f"{step1_dir('base', step1_seeds(config)[0] if seed is None else seed)}/best.pt"


def step1_init(config: Mapping[str, Any], model: str, seed: int | None = None) -> list[str]:
    """The checkpoint step 1 of ``model`` (step-1 seed ``seed``, default the first) starts from
    (empty for base, trained from scratch); a seed's chain starts from the same seed's base."""
    seed = step1_seeds(config)[0] if seed is None else seed
    if model == "base":
        return []
    if model == "cr_affwild2":
        return [f"{step1_dir('cr', seed)}/best.pt"]
    return [base_weights(config, seed)]


def step2_init(config: Mapping[str, Any], model: str, seed: int | None = None) -> str:
    """The checkpoint step 2 (fine-tuning) of ``model`` starts from: its step-1 run of seed ``seed``."""
    seed = step1_seeds(config)[0] if seed is None else seed
    return base_weights(config, seed) if model == "base" else f"{step1_dir(model, seed)}/best.pt"


def finetune_parts(config: Mapping[str, Any], dataset: str) -> list[str]:
    """One fine-tuning run per Oulu-CASIA fold listed in the profile; one ``standard`` run otherwise."""
    if dataset == "oulucasia":
        return [f"fold{k}" for k in config["run_folds"]]
    return ["standard"]


def book_sources(config: Mapping[str, Any]) -> dict[str, str]:
    """Executed notebook (under the results folder) for each fixed page name the book renders."""
    book = config.get("book", {})
    model = book.get("model", "cr")
    dataset = book.get("dataset", "rafdb" if "rafdb" in config["datasets"] else config["datasets"][0])
    part = finetune_parts(config, dataset)[0]
    s1, s2 = seed_runs(config, dataset)[0]
    embed = config["embeddings"]["datasets"][0]
    return {
        "data.ipynb": "notebooks/data.ipynb",
        "step1.ipynb": f"notebooks/step1/{model}-seed{s1}.ipynb",
        "step2.ipynb": f"notebooks/step2/{model}/{dataset}-{run_name(part, s1, s2)}.ipynb",
        "evaluation.ipynb": f"notebooks/evaluation/{dataset}.ipynb",
        "embeddings.ipynb": f"notebooks/embeddings/{embed}.ipynb",
        "results.ipynb": "notebooks/results.ipynb",
    }
