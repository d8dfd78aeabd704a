"""Where a pipeline run's time goes, per kind of node: start-up (process, kernel, imports) and work.

Reads the ``nodes.json`` that ``mafer reproduce`` writes into every results folder (each node's
wall time from Snakemake's benchmark files, split by the executed notebook's cell timings) and
prints a Markdown table: nodes, mean start-up, mean work and mean wall seconds per kind (the
rule, plus the dataset for fine-tunings). Given two files (before, after), it prints both side
by side with the change of the summed wall time.

    python benchmarks/nodes.py results/smoke/nodes.json
    python benchmarks/nodes.py before/nodes.json results/smoke/nodes.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mafer.reproduce import node_notebook, notebook_work_seconds  # noqa: E402


def kind(name: str) -> str:
    """``step2/cr/rafdb-standard-seed17-18`` -> ``step2 rafdb``; ``evaluation/fer2013`` -> ``evaluation``."""
    parts = name.split("/")
    if parts[0] == "step2":
        return f"step2 {parts[2].split('-')[0]}"
    return parts[0]


def per_kind(nodes: dict[str, dict], results: Path) -> dict[str, dict[str, float]]:
    """Per kind: ``n`` and the mean ``startup``, ``work`` and ``wall`` seconds (start-up None
    for nodes without a notebook). A nodes.json written before the split existed gets it from
    the executed notebooks beside it."""
    table: dict[str, dict[str, list]] = {}
    for name, node in nodes.items():
        wall, startup = node["seconds"], node.get("startup_seconds")
        if "startup_seconds" not in node:  # an older record: split it from the notebook
            notebook = node_notebook(results, name)
            work = notebook_work_seconds(notebook) if notebook.is_file() else None
            startup = None if work is None else wall - min(work, wall)
        row = table.setdefault(kind(name), {"wall": [], "startup": []})
        row["wall"].append(wall)
        row["startup"].append(startup)
    out = {}
    for name, row in table.items():
        starts = [s for s in row["startup"] if s is not None]
        wall = sum(row["wall"]) / len(row["wall"])
        startup = sum(starts) / len(starts) if len(starts) == len(row["wall"]) else None
        out[name] = {"n": len(row["wall"]), "startup": startup, "work": wall - (startup or 0.0), "wall": wall,
                     "total": sum(row["wall"])}
    return out


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nodes", type=Path, nargs="+", help="nodes.json of one run, or of two (before after)")
    args = parser.parse_args(argv)
    if len(args.nodes) > 2:
        parser.error("give one nodes.json, or two to compare")
    runs = []
    for path in args.nodes:
        try:
            runs.append(per_kind(json.loads(path.read_text()), path.parent))
        except (OSError, ValueError) as exc:
            parser.error(f"{path}: cannot read a nodes.json ({exc.strerror if isinstance(exc, OSError) else exc}); "
                         "`mafer reproduce` writes one when a run ends")
    kinds = list(dict.fromkeys(k for run in runs for k in run))
    labels = ["", ""] if len(runs) == 1 else [" before", " after"]
    header = ["kind", "nodes"] + [f"{what}{label} (s)" for label in labels[:len(runs)]
                                  for what in ("start-up", "work", "wall")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * 2 + "---:|" * (3 * len(runs)))
    for name in kinds:
        cells = [name, str(max(run.get(name, {}).get("n", 0) for run in runs))]
        for run in runs:
            row = run.get(name, {})
            cells += [_cell(row.get("startup")), _cell(row.get("work")), _cell(row.get("wall"))]
        print("| " + " | ".join(cells) + " |")
    totals = [sum(row["total"] for row in run.values()) for run in runs]
    print()
    print("summed node wall time: " + " -> ".join(f"{t:.0f} s" for t in totals)
          + (f" ({totals[1] / totals[0] - 1:+.0%})" if len(totals) == 2 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
