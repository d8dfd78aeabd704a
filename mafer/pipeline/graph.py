"""What the Snakefile's nodes depend on: the paper's models (`mafer.paper_models`), their
step-1 inputs and initial weights, run and part names.

Kept out of the Snakefile so that the graph's logic is plain, importable, testable Python.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import mafer
from mafer.datasets.info import DATASETS
from mafer.errors import MaferError
from mafer.paper_models import BASE, BY_KEY, KEYS
from mafer.pipeline import paths

# Modules the notebooks import only to draw and tabulate. A node whose product is a trained
# network does not depend on them: redrawing a training curve is no reason to retrain.
PRESENTATION = ("mafer.pipeline.views", "mafer.figures")

# Packages whose version changes the numbers a node computes: a new version reruns the node.
NUMERIC_PACKAGES = ("torch", "torchvision", "numpy", "Pillow", "opencv-python-headless", "scipy", "scikit-learn")

PROJECT_ROOT = Path(mafer.__file__).resolve().parent.parent


def _module_file(module: str) -> Path | None:
    """The source file of a ``mafer`` module or package (None for anything else)."""
    parts = module.split(".")
    if parts[0] != "mafer":
        return None
    base = PROJECT_ROOT.joinpath(*parts)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(source: str, module: str, is_package: bool, where: str) -> set[str]:
    """Every module an import statement of ``source`` names (anywhere, lazy imports included),
    with ``from package import name`` also naming ``package.name`` in case it is a submodule."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MaferError(f"{where}: cannot read its imports ({exc})") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                package = module.split(".")
                package = package if is_package else package[:-1]
                package = package[:len(package) - (node.level - 1)]
                base = ".".join(package + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names |= {f"{base}.{alias.name}" for alias in node.names}
    return names


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module runs its packages' ``__init__``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def notebook_imports(notebook: Path) -> list[str]:
    """The ``mafer`` modules a notebook's code cells import (IPython magics and shell lines skipped)."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    lines = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            source = cell.get("source", "")
            source = "".join(source) if isinstance(source, list) else source
            lines += [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    names = _imported_modules("\n".join(lines), "__notebook__", False, str(notebook))
    return sorted(n for n in names if _module_file(n))


def import_closure(roots: Iterable[str]) -> list[Path]:
    """The source files of ``roots`` (``mafer`` module names) and of every ``mafer`` module they
    import, directly or through others, found by reading their ``import`` statements with ``ast``."""
    seen: dict[str, Path] = {}
    todo = [m for root in roots for m in _with_parents(root)]
    while todo:
        module = todo.pop()
        path = _module_file(module)
        if module in seen or path is None:
            continue
        seen[module] = path
        imported = _imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py",
                                     str(path))
        todo += [m for name in imported for m in _with_parents(name)]
    return sorted(set(seen.values()))


def code_files(entry: str, *, skip: Iterable[str] = (), relative_to: str | Path | None = None) -> list[str]:
    """The project's source files a node runs: the import closure of ``entry``.

    ``entry`` is a notebook path (its cells' ``mafer`` imports are the roots) or a ``mafer``
    module name. ``skip`` drops roots (e.g. ``PRESENTATION`` for training nodes); a skipped
    module still counts when a kept one imports it. Paths are relative to ``relative_to``
    (the Snakemake working folder, so that a moved or copied project keeps the same inputs),
    else absolute. Raises MaferError when a source cannot be parsed.
    """
    roots = notebook_imports(Path(entry)) if entry.endswith(".ipynb") else [entry]
    files = import_closure(r for r in roots if r not in set(skip))
    if relative_to is None:
        return [str(f) for f in files]
    return [os.path.relpath(f, relative_to) for f in files]


def package_versions(packages: Iterable[str] = NUMERIC_PACKAGES) -> dict[str, str]:
    """Installed version of each package (``"absent"`` when not installed), for the nodes' params."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


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
    return paths.fill(paths.RUN_NAME, part=part, s1=s1, s2=s2)


def split_run_name(name: str) -> tuple[str, dict[str, int] | None]:
    """``"fold3-seed17-18"`` -> ``("fold3", {"step1": 17, "step2": 18})``; a name without seeds -> ``(name, None)``."""
    part, sep, seeds = name.partition("-seed")
    s1, dash, s2 = seeds.partition("-")
    if sep and dash and s1.isdigit() and s2.isdigit():
        return part, {"step1": int(s1), "step2": int(s2)}
    return name, None


def evaluate_runs(checkpoints: Mapping[str, Mapping[str, str]], dataset: str, data_dir: str | Path,
                  out_dir: str | Path, **options: Any) -> list[Path]:
    """Evaluate every run of every model and write ``<out_dir>/<model>/<run>.json``.

    ``checkpoints`` maps model -> {run name (`mafer.pipeline.graph.run_name`, e.g.
    ``fold3-seed17-18``) -> checkpoint}; the fold comes from the run name, and each file records
    the run's step-1 and step-2 ``seeds`` (None for a name without them), which
    `mafer.aggregate.compare` pairs. ``options`` go to `mafer.evaluate.evaluate_checkpoints`,
    which tests the checkpoints of one part (the same test images) together, reading the images
    once per resolution. Returns the files written, model by model and run by run."""
    from mafer.evaluate import evaluate_checkpoints  # torch: only the evaluation node needs it

    by_part: dict[str, list[tuple[str, str, str]]] = {}
    for model, runs in checkpoints.items():
        for run, checkpoint in runs.items():
            by_part.setdefault(split_run_name(run)[0], []).append((model, run, checkpoint))
    results = {}
    for part, members in by_part.items():
        tested = evaluate_checkpoints(dataset, data_dir, [(checkpoint, model) for model, _, checkpoint in members],
                                      fold=parse_part(part), **options)
        results.update({(model, run): result for (model, run, _), result in zip(members, tested)})
    written = []
    for model, runs in checkpoints.items():
        for run in runs:
            result = results[model, run]
            result["seeds"] = split_run_name(run)[1]
            path = Path(out_dir) / model / f"{run}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result, indent=2))
            written.append(path)
    return written


def step1_dir(model: str, seed: int) -> str:
    return paths.fill(paths.STEP1_RUN, model=model, s1=seed)


def step2_dir(model: str, dataset: str, part: str, s1: int, s2: int) -> str:
    return paths.fill(paths.STEP2_RUN, model=model, dataset=dataset, part=part, s1=s1, s2=s2)


def step1_checkpoints(config: Mapping[str, Any]) -> list[str]:
    """Every checkpoint step 1 trains: each model at each step-1 seed, base only when the profile
    gives no base weight file."""
    trained = [m for m in KEYS if m != BASE.key or not config.get("base_weights")]
    return [paths.checkpoint(step1_dir(m, s1)) for m in trained for s1 in step1_seeds(config)]


def base_weights(config: Mapping[str, Any], seed: int | None = None) -> str:
    """The base network: the profile's VGGFace2 weight file, else the base step-1 checkpoint of
    step-1 seed ``seed`` (default: the first)."""
    return config.get("base_weights") or paths.checkpoint(
        step1_dir(BASE.key, step1_seeds(config)[0] if seed is None else seed))


def step1_init(config: Mapping[str, Any], model: str, seed: int | None = None) -> list[str]:
    """The checkpoint step 1 of ``model`` (a key, step-1 seed ``seed``, default the first) starts
    from: its table entry's ``step1_from`` (empty for base, trained from scratch); a seed's chain
    starts from the same seed's base."""
    seed = step1_seeds(config)[0] if seed is None else seed
    start = BY_KEY[model].step1_from
    if start is None:
        return []
    return [base_weights(config, seed) if start == BASE.key else paths.checkpoint(step1_dir(start, seed))]


def step2_init(config: Mapping[str, Any], model: str, seed: int | None = None) -> str:
    """The checkpoint step 2 (fine-tuning) of ``model`` starts from: its step-1 run of seed ``seed``."""
    seed = step1_seeds(config)[0] if seed is None else seed
    return base_weights(config, seed) if model == BASE.key else paths.checkpoint(step1_dir(model, seed))


STANDARD_PART = "standard"  # the one fine-tuning of a dataset with a fixed test split


def part_name(fold: int | None) -> str:
    """The graph part of a fine-tuning: ``"fold<k>"`` for Oulu-CASIA fold ``k`` (1..folds),
    ``"standard"`` for None. Inverse of `parse_part`."""
    if fold is None:
        return STANDARD_PART
    if isinstance(fold, bool) or not isinstance(fold, int) or fold < 1:
        raise MaferError(f"fold {fold!r}: expected a fold number 1, 2, 3, ... or None")
    return f"fold{fold}"


def parse_part(part: str) -> int | None:
    """``"fold3"`` -> 3, ``"standard"`` -> None (what `part_name` writes); MaferError for anything else."""
    if part == STANDARD_PART:
        return None
    digits = part[len("fold"):] if part.startswith("fold") else ""
    if not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
        raise MaferError(f"graph part {part!r}: expected {STANDARD_PART!r} or 'fold<k>' with k = 1, 2, 3, ...")
    return int(digits)


def step2_parts(config: Mapping[str, Any], dataset: str) -> list[str]:
    """One fine-tuning run per fold listed in the profile (Oulu-CASIA); one ``standard`` run otherwise."""
    if DATASETS[dataset].has_folds:
        return [part_name(k) for k in config["run_folds"]]
    return [STANDARD_PART]


def oulu_order(config: Mapping[str, Any], dataset: str) -> dict[str, str]:
    """``{"order": file}``, the authors' Oulu-CASIA database the profile names (``oulucasia_order``),
    for Oulu-CASIA nodes only (the other readers have no such option); ``{}`` otherwise."""
    return {"order": config["oulucasia_order"]} if dataset == "oulucasia" and config.get("oulucasia_order") else {}


# TrainConfig fields every training node sets itself, and the profile entry (or option) that decides each
NODE_FIELDS = {"stage": "the step (step1 or step2)", "mode": "the model (step1 sections are per model)",
               "dataset": "datasets", "data_dir": "--data-dir", "out": "--results", "resume": "the pipeline "
               "(an interrupted node resumes by itself)", "init": "the graph (the step-1 run, or base_weights)",
               "fold": "run_folds", "folds": "folds", "protocol": "protocol", "seed": "seeds",
               "order": "oulucasia_order"}


def train_options(config: Mapping[str, Any], step: str, *keys: str) -> dict[str, Any]:
    """TrainConfig overrides of a ``step`` ("step1"/"step2") node: the profile's image size, then
    ``config[step]["common"]``, then the sections ``keys`` (a model slug, a dataset) in order.

    A node's last.pt goes when its training ends (``keep_last: false``): Snakemake never continues
    a finished node, and the file (network plus optimizer state) is most of a run's disk."""
    options = {"image_size": config["image_size"], "keep_last": False}
    for key in ("common", *keys):
        options |= config[step].get(key) or {}
    return options


RELEASED_TOC = "book/toc-released.yml"  # the book of a released-checkpoints run: no training pages


def book_sources(config: Mapping[str, Any]) -> dict[str, str]:
    """Executed notebook (under the results folder) for each fixed page name the book renders.

    A run on released checkpoints (``config["released"]``) trains nothing: its book has the
    checkpoint inventory in place of the step-1 and step-2 pages (table of contents `RELEASED_TOC`)."""
    book = config.get("book", {})
    if config.get("released") is not None:
        dataset = book.get("dataset", "rafdb" if "rafdb" in config["datasets"] else config["datasets"][0])
        return {"data.ipynb": paths.notebook(paths.DATA_NODE),
                "checkpoints.ipynb": paths.notebook(paths.CHECKPOINTS_NODE),
                "evaluation.ipynb": paths.notebook(paths.fill(paths.EVALUATION_NODE, dataset=dataset)),
                "embeddings.ipynb": paths.notebook(paths.fill(paths.EMBEDDINGS_NODE,
                                                              dataset=config["embeddings"]["datasets"][0])),
                "results.ipynb": paths.notebook(paths.RESULTS_NODE)}
    model = book.get("model", "cr")
    dataset = book.get("dataset", "rafdb" if "rafdb" in config["datasets"] else config["datasets"][0])
    part = step2_parts(config, dataset)[0]
    s1, s2 = seed_runs(config, dataset)[0]
    embed = config["embeddings"]["datasets"][0]
    return {
        "data.ipynb": paths.notebook(paths.DATA_NODE),
        "step1.ipynb": paths.notebook(paths.fill(paths.STEP1_NODE, model=model, s1=s1)),
        "step2.ipynb": paths.notebook(paths.fill(paths.STEP2_NODE, model=model, dataset=dataset, part=part,
                                                 s1=s1, s2=s2)),
        "evaluation.ipynb": paths.notebook(paths.fill(paths.EVALUATION_NODE, dataset=dataset)),
        "embeddings.ipynb": paths.notebook(paths.fill(paths.EMBEDDINGS_NODE, dataset=embed)),
        "results.ipynb": paths.notebook(paths.RESULTS_NODE),
    }
