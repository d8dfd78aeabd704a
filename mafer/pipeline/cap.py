"""Caps: run a profile's whole graph for real with less work per node (``mafer reproduce --cap``).

A cap changes only *how much* each node does: optimizer steps, images per step, test images per
evaluation, which of the profile's folds are trained, whether the evaluations add the BatchNorm
diagnostic (not the paper's protocol), and processes/threads. Everything that
defines the method stays the profile's: network, input size, transforms, weight file, presets,
learning rates, epochs (the schedule still follows them), test resolutions, aggregation. So
``mafer reproduce --profile paper --cap smoke --data-dir DATA --config base_weights=W.pkl``
executes every rule, notebook and code path of the paper profile (SE-ResNet-50 at 224 px from
the VGGFace2 weights) on a CPU in minutes; its numbers mean nothing.

`apply_cap` refuses any cap entry outside `CAPPABLE`, the keys that are amounts of work.
"""

from __future__ import annotations

import copy
from typing import Any

from mafer.errors import MaferError

# Training options (TrainConfig fields) a cap may set, in every step1/step2 section of a profile.
TRAIN_WORK_KEYS = frozenset({"max_steps", "batch_size", "accum_steps", "workers"})
# Profile entries a cap may set.
PROFILE_WORK_KEYS = frozenset({"run_folds", "max_test_images", "bn_recalibrated", "threads", "workers"})
CAPPABLE = PROFILE_WORK_KEYS | {"train"}

CAPS: dict[str, dict[str, Any]] = {
    # Every node of a profile in seconds on a CPU: one optimizer step of two images (BatchNorm
    # needs more than one), one test image per class, 2 of the folds, no BatchNorm diagnostic
    # (not the paper's protocol; it takes two of every three forward passes of a test, and the
    # smoke profile runs it). Folder datasets are read in the node's own process (workers 0)
    # with threads = cores / parallel nodes.
    "smoke": {
        "train": {"max_steps": 1, "batch_size": 2, "accum_steps": 1, "workers": 0},
        "max_test_images": 7,
        "bn_recalibrated": False,
        "run_folds": "first 2",
        "threads": None,
        "workers": 0,
    },
}


def cap_names() -> list[str]:
    return sorted(CAPS)


def apply_cap(config: dict[str, Any], cap: str) -> tuple[dict[str, Any], list[tuple[str, Any, Any]]]:
    """``config`` with the amounts of work of cap ``cap``, and the list of what changed.

    Returns ``(capped_config, changes)``; ``changes`` holds ``(dotted key, profile value, capped
    value)`` for every entry whose value differs. The capped run is named
    ``<profile>-cap-<cap>`` (its own results folder) and records ``cap: <cap>``.
    Raises MaferError for an unknown cap or an entry that is not an amount of work.
    """
    if cap not in CAPS:
        raise MaferError(f"unknown cap {cap!r}; expected one of {', '.join(cap_names())}")
    spec = CAPS[cap]
    not_work = sorted(set(spec) - CAPPABLE) + sorted(f"train.{k}" for k in set(spec.get("train", {})) - TRAIN_WORK_KEYS)
    if not_work:
        raise MaferError(f"cap {cap!r} sets {', '.join(not_work)}: not an amount of work "
                         f"(a cap may set {', '.join(sorted(PROFILE_WORK_KEYS))} and train.{{"
                         f"{', '.join(sorted(TRAIN_WORK_KEYS))}}})")
    capped = copy.deepcopy(config)
    changes: list[tuple[str, Any, Any]] = []

    def put(node: dict[str, Any], key: str, value: Any, dotted: str) -> None:
        before = node.get(key)
        if before != value:
            changes.append((dotted, before, value))
        node[key] = value

    for key, value in spec.items():
        if key == "train":
            continue
        if key == "run_folds" and isinstance(value, str):  # "first N": N of the profile's own folds
            value = list(config["run_folds"])[:int(value.split()[1])]
        put(capped, key, value, key)
    for step in ("step1", "step2"):
        sections = capped[step]
        # every section, not just `common`: a per-model or per-dataset section is applied after
        # `common` (see graph.train_options) and must not undo the cap
        for section in sorted({"common", *sections}):
            if sections.get(section) is None:
                sections[section] = {}
            for key, value in spec.get("train", {}).items():
                put(sections[section], key, value, f"{step}.{section}.{key}")
    put(capped, "name", f"{config['name']}-cap-{cap}", "name")
    capped["cap"] = cap
    return capped, changes


def describe_changes(cap: str, changes: list[tuple[str, Any, Any]]) -> str:
    """The lines `mafer reproduce` prints: what the cap changed, ``key: profile value -> capped value``."""
    lines = [f"cap {cap}: only the amount of work differs from the profile:"]
    lines += [f"  {key}: {before!r} -> {after!r}" for key, before, after in changes]
    return "\n".join(lines)
