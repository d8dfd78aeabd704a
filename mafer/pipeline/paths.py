"""Every path of a pipeline run, relative to its results folder (``results/<profile>/``).

The one owner of the run's layout: the Snakefile's rules, the graph (`mafer.pipeline.graph`),
`mafer reproduce` and the book's sources all build their paths here. A template holds
Snakemake wildcards (``{model}``, ``{dataset}``, ``{part}``, ``{s1}``, ``{s2}``): the Snakefile
uses it as the pattern of a rule's output, Python code fills it with `fill`.

Each node that runs a notebook has a name (``step2/cr/rafdb-standard-seed17-18``); its executed
copy is ``notebooks/<name>.ipynb`` and its timing ``benchmarks/<benchmark name>.jsonl``.
"""

from __future__ import annotations

from typing import Any

DATA = "data"                        # the synthetic datasets, made in the results folder
SYNTH_DONE = f"{DATA}/.synth-done"   # written once the synthetic data are complete
SYNTH_LOG = "data-synth.log"
CONFIG = "config.yaml"               # the merged profile the results come from
SUMMARY = "summary.json"
COMPARISONS = "comparisons.json"
ACCURACIES = "accuracies.json"
NODES = "nodes.json"                 # wall time, start-up and memory of every node
NOTEBOOKS = "notebooks"
BENCHMARKS = "benchmarks"
FIGURES = "figures"
FAILED = "failed"                    # executed copies and records of failed nodes

# training runs (each holds best.pt, config.yaml, metrics.jsonl, run_info.json)
STEP1_RUN = "runs/step1/{model}/seed{s1}"
STEP2_RUN = "runs/step2/{model}/{dataset}/{part}/seed{s1}-{s2}"
CHECKPOINT = "best.pt"
# tested and projected
EVAL = "eval/{dataset}"              # one metrics file per checkpoint
EMBEDDINGS = "embeddings/{dataset}.npz"

# one fine-tuning of a model on a dataset: its part (``standard``, ``fold3``) and seeds
RUN_NAME = "{part}-seed{s1}-{s2}"

# node names
DATA_NODE = "data"
STEP1_NODE = "step1/{model}-seed{s1}"
STEP2_NODE = "step2/{model}/{dataset}-" + RUN_NAME
EVALUATION_NODE = "evaluation/{dataset}"
EMBEDDINGS_NODE = "embeddings/{dataset}"
RESULTS_NODE = "results"
CHECKPOINTS_NODE = "checkpoints"
# benchmark names that differ from the node's (the rule that draws the data overview)
_BENCHMARK_OF = {DATA_NODE: "data_overview"}
_NODE_OF = {bench: node for node, bench in _BENCHMARK_OF.items()}


def fill(template: str, **values: Any) -> str:
    """``template`` with its wildcards replaced: ``fill(STEP1_RUN, model="cr", s1=17)``."""
    return template.format(**values)


def notebook(node: str) -> str:
    """The executed notebook of node (or node template) ``node``."""
    return f"{NOTEBOOKS}/{node}.ipynb"


def benchmark(node: str) -> str:
    """Snakemake's timing record of node (or node template) ``node``."""
    return f"{BENCHMARKS}/{_BENCHMARK_OF.get(node, node)}.jsonl"


def node_of_benchmark(name: str) -> str:
    """The node whose timing is ``benchmarks/<name>.jsonl`` (inverse of `benchmark`)."""
    return _NODE_OF.get(name, name)


def figures(node: str) -> str:
    """The folder of a node's figures: ``figures/evaluation/rafdb``."""
    return f"{FIGURES}/{node}"


def checkpoint(run: str) -> str:
    """The checkpoint a training run leaves for the nodes after it."""
    return f"{run}/{CHECKPOINT}"
