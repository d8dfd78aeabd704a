"""`mafer reproduce`: run the paper's experiment graph (Snakemake + papermill) for one profile.

A profile (``mafer/pipeline/profiles/{smoke,demo,paper}.yaml`` or a YAML file of your own)
says which data, network, schedule, folds and test resolutions to use. The merged config is
written to ``<results>/<profile>/config.yaml`` and Snakemake runs in ``<results>/<profile>/``:
every node executes one notebook with papermill and keeps the executed copy under
``notebooks/``; nodes whose inputs, parameters and code did not change are skipped; the last
node copies the notebooks the book renders into ``book/generated/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mafer.errors import MaferError
from mafer.yamlfile import read_yaml_mapping
from mafer.pipeline import PROFILES_DIR, SNAKEFILE
from mafer.pipeline.graph import normalize_seeds

REQUIRED_KEYS = ("name", "datasets", "folds", "run_folds", "resolutions", "preset", "image_size",
                 "step1", "step2", "embeddings")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mafer reproduce`; anything after ``--`` goes to Snakemake unchanged."""
    parser.add_argument("--profile", default="demo",
                        help="smoke, demo, paper, or a profile YAML file (default: demo)")
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
                             "(e.g. base_weights=/w/senet50_ft_weight.pkl step2.common.epochs=5 run_folds=[0,1])")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per node (default: the profile's, else CPU cores / jobs)")
    parser.add_argument("--force", action="store_true", help="rerun every node, changed or not")
    parser.add_argument("--keep-going", action="store_true", help="go on with independent nodes after a failure")
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
    data = read_yaml_mapping(path, "profile")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise MaferError(f"{path}: profile lacks {', '.join(missing)}")
    return data


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set ``KEY=VALUE`` pairs (dotted keys reach nested mappings, values parsed as YAML)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise MaferError(f"--config {item!r}: expected KEY=VALUE")
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as exc:
            raise MaferError(f"--config {item!r}: value is not valid YAML ({exc})") from None
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise MaferError(f"--config {item!r}: {part!r} is not a mapping in the profile")
            node = child
        node[leaf] = value
    return config


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """The profile with the command line applied, paths made absolute, inputs checked."""
    config = apply_overrides(load_profile(args.profile), args.config)
    config["seeds"] = normalize_seeds(config.get("seeds"), load_profile(args.profile).get("seeds"))
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
    bad = [d for d in config["datasets"] if d not in ("fer2013", "rafdb", "oulucasia")]
    if bad:
        raise MaferError(f"datasets: unknown {', '.join(bad)}; expected fer2013, rafdb, oulucasia")
    if "oulucasia" in config["datasets"]:
        wrong = [k for k in config["run_folds"] if not 0 <= int(k) < int(config["folds"])]
        if wrong or not config["run_folds"]:
            raise MaferError(f"run_folds {config['run_folds']} must be a non-empty list of folds "
                             f"in 0..{int(config['folds']) - 1}")
    cores = os.cpu_count() or 1
    config["threads"] = args.threads or config.get("threads") or max(1, cores // max(1, args.jobs))
    config["notebooks_dir"] = str(notebooks_dir())
    config["book_dir"] = str(Path(args.book_dir).resolve())
    return config


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
    """The ``python -m snakemake`` command line for this run."""
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
           "--configfile", str(config_file), "--cores", str(max(args.jobs * int(config["threads"]), 1)),
           "--jobs", str(args.jobs), "--rerun-triggers", "mtime", "params", "code", "input",
           "--rerun-incomplete", "--show-failed-logs"]
    gpus = int(config.get("gpus_per_job", 0))
    if gpus:
        cmd += ["--resources", f"gpu={max(gpus, _visible_gpus())}"]
    # the job list of a dry run, else one line per finished job (run_notebook) and Snakemake's progress
    cmd += ["--dry-run"] if args.dry_run else ["--quiet", "rules", "host"]
    if args.force:
        cmd += ["--forceall"]
    if args.keep_going:
        cmd += ["--keep-going"]
    extra = list(args.snakemake_args or [])
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return cmd + extra


def _visible_gpus() -> int:
    try:
        import torch
        return torch.cuda.device_count()
    except ImportError:
        return 0


def report_failures(workdir: Path, since: float) -> list[dict[str, Any]]:
    """Print (and return) the notebooks that failed in this run, with their partial executed copies."""
    failures = []
    for record in sorted((workdir / "failed").rglob("*.json")):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if data.get("time", 0) >= since:
            failures.append(data)
    for data in failures:
        print(f"mafer reproduce: notebook {data['notebook']} failed: {data['error']}\n"
              f"  partial executed copy: {data.get('partial') or '(none written)'}", file=sys.stderr)
    return failures


def run(args: argparse.Namespace) -> int:
    """Merge the profile, run Snakemake, report the outcome (and the failed notebooks)."""
    config = resolve_config(args)
    workdir = (Path(args.results) / config["name"]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    cmd = snakemake_command(config_file, workdir, args, config)
    print(f"mafer reproduce: profile {config['name']} -> {workdir} "
          f"({args.jobs} parallel node(s), {config['threads']} thread(s) each)", file=sys.stderr)
    start = time.time()
    # the rules call `python`: this environment's, so that every node runs the same interpreter
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    rc = subprocess.call(cmd, env=env)
    elapsed = time.time() - start
    if rc != 0:
        failures = report_failures(workdir, start)
        if not failures:
            print(f"mafer reproduce: snakemake failed (exit {rc}); see its log above", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"mafer reproduce: done in {elapsed:.0f} s; summary: {workdir / 'summary.json'}; "
              f"book pages: {config['book_dir']}", file=sys.stderr)
    return 0
