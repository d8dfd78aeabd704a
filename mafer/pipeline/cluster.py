"""Running the experiment graph on a SLURM cluster: `mafer reproduce --executor slurm`.

Every node of the graph becomes one SLURM job, submitted by Snakemake's SLURM executor plugin
(``snakemake-executor-plugin-slurm``). What each job asks for:

- CPUs: the node's ``threads`` (profile entry ``threads`` or ``--threads``) become
  ``--cpus-per-task`` (the plugin's mapping of Snakemake threads);
- GPUs: ``gpus_per_job`` of the profile is the rules' ``resources: gpu=N``, which the plugin
  turns into ``--gpus=N``;
- memory (``mem_mb``, MB -> ``--mem``) and wall time (``runtime``, minutes -> ``-t``) per rule,
  from the profile's ``resources`` section (``default`` for every rule, then one entry per rule
  name of the Snakefile), overlaid with a user YAML file of the same shape
  (``--cluster-resources FILE``);
- ``--partition`` / ``--account`` become ``slurm_partition`` / ``slurm_account`` of every job.

Jobs inherit the environment of `mafer reproduce` (the plugin submits with ``--export=ALL``;
`mafer reproduce` puts this environment's ``python`` first on ``PATH``), and run in the results
folder, which must be on a file system the compute nodes share.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mafer.errors import MaferError
from mafer.yamlfile import read_yaml_mapping

EXECUTORS = ("local", "slurm")
RULES = ("synthetic_data", "data_overview", "step1", "step2", "evaluation", "embeddings", "results",
         "publish_book")
# Snakemake resource names the SLURM plugin turns into sbatch options (mem_mb -> --mem,
# runtime -> -t, slurm_extra -> verbatim); `gpu` and CPUs come from the profile's
# gpus_per_job and threads, so that one setting drives local and cluster runs alike.
RESOURCE_KEYS = ("mem_mb", "mem_mb_per_cpu", "runtime", "disk_mb", "slurm_partition", "slurm_account",
                 "slurm_extra", "gpu_model", "constraint", "qos")
PLUGIN = "snakemake_executor_plugin_slurm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The cluster options of `mafer reproduce`."""
    group = parser.add_argument_group("cluster (SLURM)")
    group.add_argument("--executor", choices=EXECUTORS, default=None,
                       help="local: run the nodes on this machine (default); slurm: submit every "
                            "node as a SLURM job")
    group.add_argument("--partition", help="SLURM partition of every job (default: the cluster's default)")
    group.add_argument("--account", help="SLURM account charged for every job")
    group.add_argument("--cluster-resources", metavar="FILE",
                       help="YAML file overriding the profile's `resources` section "
                            "(default: and per rule: mem_mb, runtime in minutes, ...)")


def executor(args: argparse.Namespace) -> str:
    """``slurm`` when asked for by ``--executor slurm`` or, after ``--``, Snakemake's own option."""
    if getattr(args, "executor", None):
        return args.executor
    extra = list(getattr(args, "snakemake_args", None) or [])
    for i, item in enumerate(extra):
        if item == "--executor" and i + 1 < len(extra):
            return extra[i + 1]
        if item.startswith("--executor="):
            return item.split("=", 1)[1]
    return "local"


def node_resources(config: dict[str, Any], user_file: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Per-rule cluster requests: the profile's ``resources``, then ``user_file`` entry by entry.

    Returns ``{"default": {...}, rule: {...}}`` with values as Snakemake resources take them
    (``mem_mb`` in MB, ``runtime`` in minutes or a string such as ``"2h"``). Unknown rule or
    resource names, and non-positive sizes, raise MaferError naming the file.
    """
    merged: dict[str, dict[str, Any]] = {}
    sources = [(config.get("resources") or {}, f"profile {config.get('name')!r}")]
    if user_file:
        sources.append((read_yaml_mapping(Path(user_file), "cluster resources"), str(user_file)))
    for section, where in sources:
        if not isinstance(section, dict):
            raise MaferError(f"{where}: `resources` must map default/rule names to resource mappings")
        for rule, values in section.items():
            if rule != "default" and rule not in RULES:
                raise MaferError(f"{where}: unknown rule {rule!r} in resources; expected default or one of "
                                 f"{', '.join(RULES)}")
            if not isinstance(values, dict):
                raise MaferError(f"{where}: resources of {rule!r} must be a mapping such as "
                                 "{mem_mb: 16000, runtime: 120}")
            for key, value in values.items():
                if key not in RESOURCE_KEYS:
                    hint = (" (CPUs follow the profile's `threads`, GPUs its `gpus_per_job`)"
                            if key in ("threads", "cpus_per_task", "gpu", "gpus") else "")
                    raise MaferError(f"{where}: unknown resource {key!r} for {rule!r}; expected one of "
                                     f"{', '.join(RESOURCE_KEYS)}{hint}")
                if key in ("mem_mb", "mem_mb_per_cpu", "disk_mb") and not (
                        isinstance(value, int) and not isinstance(value, bool) and value > 0):
                    raise MaferError(f"{where}: {rule}.{key} must be a positive whole number of MB, got {value!r}")
                if key == "runtime" and not (isinstance(value, str) and value.strip()
                                             or isinstance(value, int) and not isinstance(value, bool) and value > 0):
                    raise MaferError(f"{where}: {rule}.runtime must be minutes (> 0) or a duration such as "
                                     f"'2h', got {value!r}")
            merged.setdefault(rule, {}).update(values)
    return merged


def _resource_items(values: dict[str, Any]) -> list[str]:
    return [f"{key}={value}" if not isinstance(value, str) else f"{key}={value!r}"
            for key, value in values.items()]


def snakemake_args(args: argparse.Namespace, config: dict[str, Any]) -> list[str]:
    """Snakemake options that run every node as a SLURM job ([] for a local run).

    Checks first that the plugin is installed and (unless this is a dry run) that the SLURM
    controller answers, so that either problem is one line, not Snakemake's usage text.
    """
    name = executor(args)
    if name == "local":
        given = [f"--{option.replace('_', '-')}" for option in ("partition", "account", "cluster_resources")
                 if getattr(args, option, None)]
        if given:
            raise MaferError(f"{', '.join(given)}: SLURM option(s); add --executor slurm")
        return []
    if name != "slurm":
        return []  # another Snakemake executor given after --: Snakemake checks it
    require_plugin()
    resources = node_resources(config, getattr(args, "cluster_resources", None))
    default = dict(resources.pop("default", {}))
    if args.partition:
        default["slurm_partition"] = args.partition
    if args.account:
        default["slurm_account"] = args.account
    cmd = ["--executor", "slurm"]
    if default:
        cmd += ["--default-resources", *_resource_items(default)]
    per_rule = [f"{rule}:{item}" for rule, values in resources.items() for item in _resource_items(values)]
    if per_rule:
        cmd += ["--set-resources", *per_rule]
    # the plugin deletes the logs of jobs that succeed unless told otherwise; they say where
    # each node ran and are small
    cmd += ["--slurm-keep-successful-logs"]
    if not args.dry_run:
        accounting = check_scheduler(args.partition)
        if not accounting:
            # without an accounting database `sacct` answers nothing and the run would wait for
            # ever; squeue knows the jobs for MinJobAge seconds after they end
            cmd += ["--slurm-status-command", "squeue"]
    return cmd


def require_plugin() -> None:
    """MaferError unless Snakemake's SLURM executor plugin is importable here."""
    if importlib.util.find_spec(PLUGIN) is None:
        raise MaferError("the SLURM executor needs the Snakemake plugin snakemake-executor-plugin-slurm: "
                         "pip install snakemake-executor-plugin-slurm (make install installs it)")


def _slurm(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    if shutil.which(cmd[0]) is None:
        raise MaferError(f"--executor slurm: the SLURM command {cmd[0]!r} is not on PATH; run mafer reproduce "
                         "on a machine that submits jobs to the cluster (a login node)")
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise MaferError(f"--executor slurm: {' '.join(cmd)} got no answer in {timeout:.0f} s; "
                         "is the SLURM controller (slurmctld) running and reachable?") from None


def check_scheduler(partition: str | None = None) -> bool:
    """Check that the SLURM controller answers (and knows ``partition``); True if it keeps accounting.

    Raises MaferError with the scheduler's own message when ``sinfo`` fails, or naming the
    partitions that exist when ``partition`` is not one of them.
    """
    result = _slurm(["sinfo", "--noheader", "--format=%R"])
    if result.returncode != 0:
        said = (result.stderr or result.stdout).strip().splitlines()
        raise MaferError("--executor slurm: the SLURM controller is not reachable (sinfo: "
                         f"{said[-1] if said else f'exit {result.returncode}'})")
    partitions = sorted({line.strip() for line in result.stdout.splitlines() if line.strip()})
    if partition and partition not in partitions:
        raise MaferError(f"--partition {partition}: no such SLURM partition; this cluster has "
                         f"{', '.join(partitions) or 'none'}")
    config = _slurm(["scontrol", "show", "config"])
    for line in config.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip() not in ("accounting_storage/none", "(null)", "")
    return False
