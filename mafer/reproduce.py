"""`mafer reproduce`: run the paper's experiment graph (Snakemake + papermill) for one profile.

A profile (``mafer/pipeline/profiles/{smoke,demo,paper}.yaml`` or a YAML file of your own)
says which data, network, schedule, folds and test resolutions to use. Snakemake runs in
``<results>/<profile>/``; when a run starts executing nodes, the merged config it runs with
is recorded in ``<results>/<profile>/config.yaml`` (a dry run writes nothing there):
every node executes one notebook with papermill and keeps the executed copy under
``notebooks/``; nodes whose inputs, parameters and code did not change are skipped; the last
node copies the notebooks the book renders into ``book/generated/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TextIO

import yaml

from mafer.datasets.info import DATASETS, OULU_PROTOCOLS, STEP2_DATASETS
from mafer.errors import MaferError, MaferWarning
from mafer.yamlfile import read_yaml_mapping
from mafer.pipeline import PIPELINE_DIR, PROFILES_DIR, SNAKEFILE, cluster, paths
from mafer.pipeline.cap import apply_cap, cap_names, describe_changes
from mafer.pipeline.graph import NODE_FIELDS, RELEASED_TOC, normalize_seeds, part_name
from mafer.paper_models import KEYS
from mafer.released import LAYOUT, released_checkpoints
from mafer.train.config import PRESETS, TrainConfig

PROJECT_ROOT = PIPELINE_DIR.parent.parent
SCHEMA = PIPELINE_DIR / "profile_schema.yaml"
# seconds Snakemake gets to stop its jobs after an interrupt before the rest is killed
STOP_GRACE_S = 30
# who runs in a results folder: the pid of the `mafer reproduce` that holds RUN_LOCK (for messages)
PID_FILE = ".snakemake/mafer-reproduce.json"
# held (flock) by the `mafer reproduce` running in a results folder, for as long as it runs; the
# kernel releases it when that process ends, however it ends, so it never goes stale
RUN_LOCK = ".snakemake/mafer-reproduce.lock"

# profile entries renamed since a release: old -> new, still read (profile files and --config) with a notice.
# `seed` sat beside `seeds` (training) but seeds the synthetic data and the projections only.
RENAMED_KEYS = {"seed": "data_seed"}
REQUIRED_KEYS = ("name", "datasets", "folds", "run_folds", "resolutions", "preset", "image_size",
                 "step1", "step2", "embeddings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mafer reproduce`; anything after ``--`` goes to Snakemake unchanged."""
    parser.add_argument("--profile", default="demo",
                        help=f"{', '.join(sorted(p.stem for p in PROFILES_DIR.glob('*.yaml')))}, or a profile "
                             "YAML file (default: demo)")
    parser.add_argument("--jobs", "-j", type=int, default=2, help="nodes run in parallel (default: 2)")
    parser.add_argument("--dry-run", "-n", action="store_true", help="list the jobs that would run, run none")
    parser.add_argument("--data-dir", help="folder holding the datasets (overrides the profile; "
                                           "replaces the synthetic data)")
    parser.add_argument("--results", default="results", help="results root; the run goes to RESULTS/<profile> "
                                                               "(default: results)")
    parser.add_argument("--book-dir", default="book/generated",
                        help="where the last node puts the executed notebooks the book renders "
                             "(default: book/generated)")
    parser.add_argument("--config", metavar="KEY=VALUE", nargs="+", default=[], action="extend",
                        help="override profile entries, dotted keys for nested ones, values in YAML "
                             "(e.g. base_weights=/w/senet50_ft_weight.pkl step2.common.epochs=5 run_folds=[1,2])")
    parser.add_argument("--cap", choices=cap_names(),
                        help="run every node of the profile with less work (a few optimizer steps, test "
                             "images and folds; nothing else changes) into RESULTS/<profile>-cap-<cap>")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per node (default: the profile's, else CPU cores / jobs)")
    parser.add_argument("--force", action="store_true", help="rerun every node, changed or not")
    parser.add_argument("--keep-going", action="store_true", help="go on with independent nodes after a failure")
    parser.add_argument("--unlock", action="store_true",
                        help="remove the lock an interrupted or crashed run left in RESULTS/<profile>, run nothing")
    cluster.add_arguments(parser)
    parser.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                        help="after --: extra Snakemake options (e.g. -- --executor slurm)")


def load_profile(profile: str) -> dict[str, Any]:
    """The mapping in a named profile or a profile YAML file; MaferError naming the file otherwise."""
    path = Path(profile)
    if not path.suffix:
        path = PROFILES_DIR / f"{profile}.yaml"
        if not path.is_file():
            names = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
            raise MaferError(f"unknown profile {profile!r}; expected one of {names} or a YAML file")
    data = _renamed_keys(read_yaml_mapping(path, "profile"), str(path))
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise MaferError(f"{path}: profile lacks {', '.join(missing)}")
    return data


def _renamed_keys(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` with the old top-level names of ``RENAMED_KEYS`` read as the new ones, a note for each."""
    for old, new in RENAMED_KEYS.items():
        if old in data:
            if new in data:
                raise MaferError(f"{source}: both {old!r} (the old name) and {new!r} given; keep only {new!r}")
            warnings.warn(f"{source}: profile entry {old!r} is now called {new!r}", MaferWarning)  # once per run
            data[new] = data.pop(old)
    return data


def _new_key(key: str) -> str:
    top, dot, rest = key.partition(".")
    if top not in RENAMED_KEYS:
        return key
    warnings.warn(f"--config {key}: profile entry {top!r} is now called {RENAMED_KEYS[top]!r}", MaferWarning,
                  stacklevel=3)
    return RENAMED_KEYS[top] + dot + rest


def _not_key_value(item: str) -> str:
    # the usual cause: a value with spaces the shell split, e.g. step2.rafdb={epochs: 5}
    return (f"--config {item!r}: expected KEY=VALUE; quote a value that holds spaces, "
            "e.g. --config 'step2.rafdb={epochs: 5}'")


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``KEY=VALUE`` pairs (dotted keys reach nested mappings, values parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise MaferError(_not_key_value(item))
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as exc:
            raise MaferError(f"--config {item!r}: value is not valid YAML ({exc})") from None
        key = _new_key(key)
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MaferError(f"--config {item!r}: {part!r} is not a mapping in the profile")
            node = child
        node[leaf] = value
    return config


@functools.cache
def _schema() -> dict[str, Any]:
    schema = yaml.safe_load(SCHEMA.read_text())
    schema["$defs"] = {"dataset": {"enum": list(STEP2_DATASETS)}, "model": {"enum": list(KEYS)},
                       "preset": {"enum": list(PRESETS)}, "protocol": {"enum": list(OULU_PROTOCOLS)}}
    for step, names in (("step1", KEYS), ("step2", STEP2_DATASETS)):
        schema["properties"][step]["propertyNames"]["description"] = f"one of common, {', '.join(names)}"
    return schema


def check_override_keys(profile: dict[str, Any], overrides: list[str]) -> None:
    """MaferError when a ``--config`` key names no entry of the profile or of the schema (a typo
    would otherwise add an entry nothing reads)."""
    known = set(_schema()["properties"]) | set(profile)
    for item in overrides:
        key, sep, _ = item.partition("=")
        if not sep or not key:
            raise MaferError(_not_key_value(item))
        top = key.split(".")[0]
        if top not in known and top not in RENAMED_KEYS:
            raise MaferError(f"--config {item!r}: no profile entry {top!r}; expected one of {', '.join(sorted(known))}")


def validate_config(config: dict[str, Any], overrides: list[str] = ()) -> None:
    """Check the merged profile against ``profile_schema.yaml`` (types, allowed values); a
    one-line MaferError naming the entry, what was expected and what was given."""
    import jsonschema

    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema()).iter_errors(config))
    if error is None:
        from mafer.synth.faces import VARIANTS

        variant = config.get("synthetic_variant", "demo")
        if variant not in VARIANTS:
            raise MaferError(f"synthetic_variant: expected one of {', '.join(map(json.dumps, VARIANTS))}, "
                             f"got {json.dumps(variant)}")
        check_training_sections(config, [item.partition("=")[0] for item in overrides])
        return
    where = ".".join(str(part) for part in error.absolute_path) or "profile"
    overridden = {item.partition("=")[0].split(".")[0] for item in overrides}
    source = " (from --config)" if error.absolute_path and error.absolute_path[0] in overridden else ""
    raise MaferError(f"{where}{source}: {_schema_message(error)}")


def check_training_sections(config: Mapping[str, Any], overridden: Iterable[str] = ()) -> None:
    """Read every ``step1``/``step2`` section of a profile with `TrainConfig` itself, before any
    node runs: an unknown key (with the nearest valid one), a value of the wrong type or outside
    its choices, or a field the graph sets per node (`graph.NODE_FIELDS`) is one MaferError naming the
    section, and ``(from --config)`` when a ``--config`` key in ``overridden`` wrote into it."""
    overridden = list(overridden)
    for step in ("step1", "step2"):
        for section, options in (config.get(step) or {}).items():
            where = f"{step}.{section}"
            if any(key in (step, where) or key.startswith(where + ".") for key in overridden):
                where += " (from --config)"
            for key in options or {}:
                if key in NODE_FIELDS:
                    raise MaferError(f"{where}: {key!r} is set by the pipeline for each node from "
                                     f"{NODE_FIELDS[key]}; remove it from the section")
            TrainConfig.preset(config["preset"]).updated(options or {}, source=where)


def _schema_message(error) -> str:
    """What was expected, in words, and the value given."""
    given = json.dumps(error.instance)
    if len(given) > 60:
        given = given[:57] + "..."
    expected = error.schema
    if error.validator == "enum":
        return f"expected one of {', '.join(map(json.dumps, expected['enum']))}, got {given}"
    if error.validator == "type":
        words = {"array": "a list", "object": "a mapping", "integer": "an integer", "string": "a string",
                 "boolean": "true or false", "null": "null", "number": "a number"}
        kinds = expected["type"] if isinstance(expected["type"], list) else [expected["type"]]
        return f"expected {' or '.join(words.get(k, k) for k in kinds)}, got {given}"
    if error.validator in ("anyOf", "oneOf"):
        return f"got {given}, expected {expected.get('description', 'one of the forms the schema allows')}"
    return f"{error.message}"


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """The profile with the command line applied, paths made absolute, inputs checked."""
    config = load_profile(args.profile)
    profile_seeds = copy.deepcopy(config.get("seeds"))  # before --config and --cap change them
    if getattr(args, "cap", None):
        config, changes = apply_cap(config, args.cap)
        print(describe_changes(args.cap, changes), file=sys.stderr)
    check_override_keys(config, args.config)
    config = apply_overrides(config, args.config)
    validate_config(config, args.config)
    config["seeds"] = normalize_seeds(config.get("seeds"), profile_seeds)
    if args.data_dir:
        config["data_dir"], config["synthetic"] = args.data_dir, None
    if not config.get("synthetic"):
        if not config.get("data_dir"):
            raise MaferError(f"profile {config['name']!r} uses real data: give --data-dir DIR "
                             "(the folder holding fer2013/, rafdb/, oulucasia/, affwild2/, vggface2/)")
        config["data_dir"] = _existing(config["data_dir"], "data folder")
    else:
        config["data_dir"] = None
    if config.get("base_weights"):
        config["base_weights"] = _existing(config["base_weights"], "base weight file (base_weights)")
    elif config.get("base_weights_required"):
        raise MaferError(f"profile {config['name']!r} needs the VGGFace2 weights of SE-ResNet-50: "
                         "--config base_weights=/path/senet50_ft_weight.pkl")
    if any(DATASETS[name].has_folds for name in config["datasets"]):
        wrong = [k for k in config["run_folds"] if not 1 <= int(k) <= int(config["folds"])]
        if wrong or not config["run_folds"]:
            raise MaferError(f"run_folds {config['run_folds']} must be a non-empty list of folds "
                             f"in 1..{int(config['folds'])}")
    for key, what in (("oulucasia_order", "the authors' oulucasia_database.csv (oulucasia_order)"),
                      ("released_results", "results folder of a released-checkpoints run (released_results)")):
        if config.get(key):
            config[key] = _existing(config[key], what)
    if config.get("checkpoints") or config.get("checkpoints_required"):
        resolve_released(config)
    cores = os.cpu_count() or 1
    config["threads"] = args.threads or config.get("threads") or max(1, cores // max(1, args.jobs))
    config["notebooks_dir"] = str(notebooks_dir())
    config["book_dir"] = str(Path(args.book_dir).resolve())
    return config


def resolve_released(config: dict[str, Any]) -> None:
    """Point a run at released checkpoints (`mafer.released` layout under ``config["checkpoints"]``).

    Sets ``released`` ({dataset: {model key: {run: checkpoint}}}, which the Snakefile tests in
    place of training) and ``released_notes``; datasets (and embedded datasets) no model has are
    dropped. Prints one line per model, dataset or fold the folder lacks. MaferError without a
    folder, or when it holds none of the profile's checkpoints.
    """
    if not config.get("checkpoints"):
        raise MaferError(f"profile {config['name']!r} tests released checkpoints: give --config checkpoints=DIR "
                         f"({LAYOUT})")
    config["checkpoints"] = _existing(config["checkpoints"], "folder of released checkpoints (checkpoints)")
    folds = config["run_folds"] if any(DATASETS[name].has_folds for name in config["datasets"]) else []
    found, notes = released_checkpoints(config["checkpoints"], config["datasets"], folds)
    for note in notes:
        print(f"mafer reproduce: {note}", file=sys.stderr)
    for dataset, per_model in found.items():  # paired comparisons need every model on the same test images
        shared = set.intersection(*(set(runs) for runs in per_model.values()))
        dropped = sorted(set().union(*(set(runs) for runs in per_model.values())) - shared)
        if dropped:
            note = (f"released checkpoints: {dataset} fold(s) {', '.join(map(str, dropped))} left out for every "
                    "model, since not every model has them (models are compared on the same test images)")
            notes.append(note)
            print(f"mafer reproduce: {note}", file=sys.stderr)
            found[dataset] = {m: {k: p for k, p in runs.items() if k in shared} for m, runs in per_model.items()
                              if shared}
    found = {dataset: per_model for dataset, per_model in found.items() if per_model}
    if not found:
        raise MaferError(f"{config['checkpoints']}: none of the checkpoints of {', '.join(config['datasets'])}; "
                         f"expected {LAYOUT}")
    config["released"] = {dataset: {model: {part_name(fold): path for fold, path in runs.items()}
                                    for model, runs in per_model.items()} for dataset, per_model in found.items()}
    config["released_notes"] = notes
    config["datasets"] = [d for d in config["datasets"] if d in found]
    embedded = [d for d in config["embeddings"]["datasets"] if d in found]
    config["embeddings"] = {**config["embeddings"], "datasets": embedded or config["datasets"][:1]}


def _existing(path: str, what: str) -> str:
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise MaferError(f"{path}: {what} not found")
    return str(p)


def notebooks_dir() -> Path:
    """The project's notebooks/ (next to the mafer package in a checkout)."""
    here = Path(__file__).resolve().parent.parent / "notebooks"
    if not here.is_dir():
        raise MaferError(f"{here}: notebooks folder not found; run mafer reproduce from a checkout "
                         "of the project (pip install -e .)")
    return here


def snakemake_command(config_file: Path, workdir: Path, args: argparse.Namespace,
                      config: dict[str, Any]) -> list[str]:
    """The ``python -m snakemake`` command line for this run.

    Options that take several values come first and ``--jobs N`` last, so that targets and
    options given after ``--`` reach Snakemake as given (a target after ``--quiet`` would be
    read as one of its values)."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(config_file),
           "--rerun-triggers", "mtime", "params", "code", "input", "software-env",
           "--rerun-incomplete", "--show-failed-logs"]
    gpus = int(config.get("gpus_per_job", 0))
    on_cluster = cluster.snakemake_args(args, config)
    if gpus and not on_cluster:  # a scheduler, not this machine's GPU count, limits a cluster run
        cmd += ["--resources", f"gpu={max(gpus, _visible_gpus())}"]
    if args.unlock:
        cmd += ["--unlock"]
    elif args.dry_run:
        cmd += ["--dry-run"]
    else:  # one line per finished job (run_notebook) and Snakemake's progress
        cmd += ["--quiet", "rules", "host"]
    if args.force:
        cmd += ["--forceall"]
    if args.keep_going:
        cmd += ["--keep-going"]
    cmd += ["--cores", str(max(args.jobs * int(config["threads"]), 1)), "--jobs", str(args.jobs)]
    extra = list(args.snakemake_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + on_cluster + extra


def _visible_gpus() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except ImportError:
        return 0


def report_failures(workdir: Path, since: float) -> list[dict[str, Any]]:
    """Print (and return) the notebooks that failed in this run, with their partial executed copies."""
    failures = []
    for record in sorted((workdir / paths.FAILED).rglob("*.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if data.get("time", 0) >= since:
            failures.append(data)
    for data in failures:
        cell = f" in {data['cell']}" if data.get("cell") else ""
        print(f"mafer reproduce: notebook {data['notebook']} failed{cell}: {data['error']}\n"
              f"  partial executed copy: {data.get('partial') or '(none written)'}", file=sys.stderr)
    return failures


def _relative_to(path: str | None, workdir: Path) -> str | None:
    """``path`` relative to the working folder when both lie in the project (a moved or copied
    project keeps the paths Snakemake recorded), else absolute."""
    if not path:
        return path
    target = Path(path).resolve()
    inside = [p.is_relative_to(PROJECT_ROOT) for p in (target, workdir)]
    return os.path.relpath(target, workdir) if all(inside) else str(target)


def lock_state(workdir: Path, args: argparse.Namespace) -> str | None:
    """None when ``workdir`` holds no Snakemake lock; else the sentence that explains it. Asked
    while holding `RUN_LOCK`: no other `mafer reproduce` runs there, so the lock is a leftover."""
    locks = workdir / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        return None
    pid = _owner(workdir).get("pid")
    return (f"{workdir} is locked by an earlier run that did not end cleanly (killed or crashed"
            f"{f', pid {pid}' if pid else ''}); if no other Snakemake runs there, remove the lock with: "
            f"{_command_line(args)}")


def _owner(workdir: Path) -> dict[str, Any]:
    try:
        owner = json.loads((workdir / PID_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


@contextlib.contextmanager
def run_lock(workdir: Path):
    """Hold ``workdir``'s `RUN_LOCK` (an exclusive ``flock``) for the block: one `mafer reproduce`
    (run or ``--unlock``) per results folder at a time. MaferError at once, changing nothing,
    when another one holds it."""
    import fcntl

    path = workdir / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(workdir)
            pid = owner.get("pid")
            who = f" (pid {pid}, started {owner.get('started')})" if pid else ""
            raise MaferError(f"{workdir} is in use by another `mafer reproduce`{who}; wait for it"
                             f"{f', or stop it with: kill {pid}' if pid else ''} (--unlock is for a run that is gone)"
                             ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _command_line(args: argparse.Namespace | None = None) -> str:
    """This command as typed, or (given ``args``) the one that unlocks its results folder."""
    argv = sys.argv[1:] if args is None else ["reproduce", "--profile", args.profile, "--results", args.results,
                                              "--unlock"]
    return "mafer " + " ".join(shlex.quote(a) for a in argv)


def _executed_notebooks(workdir: Path) -> dict[Path, float]:
    folder = workdir / paths.NOTEBOOKS
    return {p: p.stat().st_mtime for p in folder.rglob("*.ipynb")} if folder.is_dir() else {}


class _Interrupt:
    """Forwards SIGINT/SIGTERM/SIGHUP to Snakemake's process group (it stops its jobs, whose
    kernels exit with their parent) and remembers that the run was interrupted."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.signum, self.previous = proc, None, {}

    def __enter__(self) -> "_Interrupt":
        for sig in self.SIGNALS:
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            print(f"\nmafer reproduce: {signal.Signals(signum).name} received; stopping Snakemake and its "
                  "notebooks (finished nodes are kept)...", file=sys.stderr)
        self.signum = signum
        _signal_group(self.proc.pid, signal.SIGINT)  # Snakemake's own clean stop: jobs, lock, incomplete marks

    def wait(self) -> int:
        deadline = None
        while True:
            try:
                return self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                if self.signum is None:
                    continue
                deadline = deadline or time.time() + STOP_GRACE_S
                if time.time() > deadline:
                    _signal_group(self.proc.pid, signal.SIGKILL)


def _stop_with_parent() -> None:
    """In the Snakemake child, before it starts: let it (and the jobs it starts) be stopped by the
    signals `_Interrupt` forwards, and ask Linux for a SIGINT when `mafer reproduce` dies, even by
    SIGKILL, which no handler sees (elsewhere a no-op).

    A program started in the background by a script (``mafer reproduce ... &``, nohup, some CI
    runners) inherits SIGINT (and SIGHUP) *ignored*, and an ignored signal stays ignored across
    exec: Snakemake and every notebook would then run on through a forwarded Ctrl-C."""
    for sig in _Interrupt.SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def node_notebook(workdir: Path, name: str) -> Path:
    """The executed notebook of node ``name`` (its benchmark name, ``step2/cr/rafdb-standard-seed17-17``)."""
    return workdir / paths.notebook(paths.node_of_benchmark(name))


def write_node_records(workdir: Path) -> Path:
    """``nodes.json``: wall time, its split into start-up and work, and peak memory of every node.

    ``{"<rule>/<wildcards>": {"seconds", "startup_seconds", "work_seconds", "max_rss_mb",
    "cpu_seconds"}}``. ``seconds``, memory and CPU time are Snakemake's, from the rules'
    ``benchmark:`` files (``benchmarks/**/*.jsonl``, rewritten when a node reruns; memory sampled
    every 0.5 s for the first 15 s, then every 30 s). ``work_seconds`` is what the node's
    notebook spent after its imports cell (`notebook_work_seconds`); ``startup_seconds`` the rest:
    process, kernel and imports. Nodes without a notebook (the synthetic data, the book's
    pages) have ``startup_seconds`` null and all their time as work.
    """
    nodes: dict[str, dict[str, float | None]] = {}
    for path in sorted((workdir / paths.BENCHMARKS).rglob("*.jsonl")):
        try:
            record = json.loads(path.read_text().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            continue
        name = path.relative_to(workdir / paths.BENCHMARKS).with_suffix("").as_posix()
        seconds = record.get("s")
        notebook = node_notebook(workdir, name)
        work = notebook_work_seconds(notebook) if notebook.is_file() else None
        if work is None or not isinstance(seconds, (int, float)):
            startup, work = None, seconds
        else:
            work = min(work, seconds)
            startup = round(seconds - work, 2)
        nodes[name] = {"seconds": seconds, "startup_seconds": startup, "work_seconds": work,
                       "max_rss_mb": record.get("max_rss"), "cpu_seconds": record.get("cpu_time")}
    out = workdir / paths.NODES
    out.write_text(json.dumps(nodes, indent=1) + "\n")
    return out


def notebook_work_seconds(notebook: Path) -> float | None:
    """Seconds an executed notebook spent in its cells after the imports cell (the first code
    cell after the parameters papermill injected), from papermill's per-cell ``duration``;
    None when the file holds no such record."""
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    code = [c for c in cells if c.get("cell_type") == "code"]
    injected = [i for i, c in enumerate(code) if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    if not injected:
        return None
    durations = [c.get("metadata", {}).get("papermill", {}).get("duration") for c in code[injected[0] + 2:]]
    if not durations or any(not isinstance(d, (int, float)) for d in durations):
        return None
    return round(sum(durations), 2)


def run(args: argparse.Namespace) -> int:
    """Merge the profile, run Snakemake, report the outcome (and the failed notebooks)."""
    config = resolve_config(args)
    workdir = (Path(args.results) / config["name"]).resolve()
    book_dir = Path(config["book_dir"])
    # staged outside the results: the Snakefile records it as config.yaml once jobs start running
    staging = Path(tempfile.mkdtemp(prefix="mafer-reproduce-"))
    try:
        if args.dry_run and not workdir.exists():
            # Snakemake needs its working folder: an empty stand-in plans the same jobs and leaves
            # no results folder behind
            workdir = staging / config["name"]
            workdir.mkdir()
        for key in ("notebooks_dir", "book_dir", "data_dir", "base_weights"):
            config[key] = _relative_to(config.get(key), workdir)
        config_file = staging / "config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        if args.dry_run:
            cmd = snakemake_command(config_file, workdir, args, config) + ["--nolock"]
            with _kept_as_is(workdir / ".snakemake"):
                return 0 if subprocess.call(cmd, env=_environment()) == 0 else 1
        workdir.mkdir(parents=True, exist_ok=True)
        with run_lock(workdir):
            if not args.unlock and (state := lock_state(workdir, args)):
                raise MaferError(state)
            return _run(config_file, workdir, args, config, book_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def _kept_as_is(folder: Path):
    """Put ``folder`` (Snakemake's ``.snakemake``) back as it was afterwards: a dry run stores its
    file cache and lock folder there, and a dry run is to leave the results folder untouched."""
    def entries() -> dict[Path, os.stat_result]:
        return {p: p.stat() for p in [folder, *folder.rglob("*")]} if folder.exists() else {}

    before = entries()
    saved = {p: p.read_bytes() for p in before if p.is_file()}
    try:
        yield
    finally:
        for p in sorted(set(entries()) - set(before), key=lambda q: len(q.parts), reverse=True):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        for p, data in saved.items():
            if p.read_bytes() != data:
                p.write_bytes(data)
        for p in sorted(before, key=lambda q: len(q.parts), reverse=True):
            os.utime(p, ns=(before[p].st_atime_ns, before[p].st_mtime_ns))


def _environment() -> dict[str, str]:
    """The rules call `python`: this environment's, with this checkout's mafer first on the path,
    so that Snakemake, every node and every kernel run the same code."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, PATH=path, PYTHONPATH=pythonpath)


def _run(config_file: Path, workdir: Path, args: argparse.Namespace, config: dict[str, Any], book_dir: Path) -> int:
    cmd = snakemake_command(config_file, workdir, args, config)
    if args.unlock:
        rc = subprocess.call(cmd, env=_environment(), stdout=subprocess.DEVNULL)
        print(f"mafer reproduce: {'removed the lock of' if rc == 0 else 'could not unlock'} {workdir}", file=sys.stderr)
        return 0 if rc == 0 else 1
    print(f"mafer reproduce: profile {config['name']} -> {workdir} "
          f"({args.jobs} parallel node(s), {config['threads']} thread(s) each)", file=sys.stderr)
    before = _executed_notebooks(workdir)
    start = time.time()
    # its own process group: a signal to ours (Ctrl-C, kill -TERM -PGID) is forwarded once, cleanly
    proc = subprocess.Popen(cmd, env=_environment(), start_new_session=True, preexec_fn=_stop_with_parent,
                            stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1)
    relay = threading.Thread(target=relay_progress, args=(proc.stderr, sys.stderr, start), daemon=True)
    relay.start()
    pid_file = workdir / PID_FILE
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps({"pid": os.getpid(), "snakemake": proc.pid,
                                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
    with _Interrupt(proc) as interrupt:
        rc = interrupt.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # nothing Snakemake started outlives the run
    relay.join(timeout=10)  # the rest of Snakemake's log; a stray process holding the pipe does not hold us
    pid_file.unlink(missing_ok=True)
    elapsed = time.time() - start
    if interrupt.signum is not None:
        if lock_state(workdir, args):  # Snakemake was killed before it could remove its lock
            subprocess.call(snakemake_command(config_file, workdir, argparse.Namespace(
                **{**vars(args), "unlock": True, "snakemake_args": []}), config),
                env=_environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ran = _changed(before, _executed_notebooks(workdir))
        print(f"mafer reproduce: interrupted after {elapsed:.0f} s; {len(ran)} node(s) finished and are kept, "
              f"unfinished ones rerun next time. Continue with: {_command_line()}", file=sys.stderr)
        return 128 + interrupt.signum
    if rc != 0:
        failures = report_failures(workdir, start)
        if not failures:
            print(f"mafer reproduce: snakemake failed (exit {rc}); see its log above", file=sys.stderr)
        if state := lock_state(workdir, args):
            print(f"mafer reproduce: {state}", file=sys.stderr)
        return 1
    write_node_records(workdir)
    print(final_message(workdir, book_dir, _changed(before, _executed_notebooks(workdir)), before, elapsed),
          file=sys.stderr)
    return 0


# Snakemake's own count of finished jobs ("4 of 33 steps (12%) done")
_STEPS_DONE = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done")


def relay_progress(lines: Iterable[str], out: TextIO, start: float, clock: Callable[[], float] = time.time) -> None:
    """Copy Snakemake's log ``lines`` to ``out`` and, after each of its "N of M steps done" lines,
    add ``mafer reproduce: N/M nodes done, <elapsed> elapsed, about <left> left``.

    The time left is the mean time per finished node so far times the nodes left (nodes run
    side by side count as they finish), shown once a tenth of the nodes (at least 3) are done:
    the first nodes (the synthetic data, the base network) run alone and are the longest, so a
    mean over them alone overstates the rest several times over. Written line by line, so it
    shows with or without a terminal (a CI log, ``| tee``, a SLURM job's output)."""
    for line in lines:
        out.write(line)
        if match := _STEPS_DONE.match(line.strip()):
            done, total = int(match.group(1)), int(match.group(2))
            elapsed = max(clock() - start, 0.0)
            first_estimate = max(3, -(-total // 10))
            left = (f"about {_duration(elapsed / done * (total - done))} left" if done >= first_estimate
                    else f"time left shown from {first_estimate} nodes on")
            out.write(f"mafer reproduce: {done}/{total} nodes done, {_duration(elapsed)} elapsed, {left}\n")
        out.flush()


def _duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _changed(before: dict[Path, float], after: dict[Path, float]) -> list[Path]:
    return sorted(p for p, mtime in after.items() if before.get(p) != mtime)


def final_message(workdir: Path, book_dir: Path, ran: list[Path], before: dict[Path, float], elapsed: float) -> str:
    """What ran, what was up to date, and where the results are (naming only files that exist)."""
    skipped = len(set(before) - set(ran))
    if ran:
        names = ", ".join(p.relative_to(workdir / paths.NOTEBOOKS).with_suffix("").as_posix() for p in ran[:6])
        more = f" and {len(ran) - 6} more" if len(ran) > 6 else ""
        what = f"{len(ran)} notebook node(s) ran ({names}{more}), {skipped} up to date"
    else:
        what = f"nothing to do, all {skipped} notebook node(s) were up to date"
    lines = [f"mafer reproduce: done in {elapsed:.0f} s: {what}."]
    places = [("summary", workdir / paths.SUMMARY), ("executed notebooks", workdir / paths.NOTEBOOKS),
              ("figures", workdir / paths.FIGURES), ("run config", workdir / paths.CONFIG),
              ("time and memory per node", workdir / paths.NODES),
              ("book pages", book_dir)]
    lines += [f"  {label}: {path}" for label, path in places if path.exists()]
    if book_dir.is_dir():
        released = (book_dir / "checkpoints.ipynb").is_file()  # published by a run on released checkpoints
        lines.append(f"  build the book with: jupyter-book build . --path-output . --toc {RELEASED_TOC}" if released
                     else "  build the book with: jupyter-book build . --path-output .  (or make book)")
    return "\n".join(lines)
