"""`mafer reproduce --executor slurm`: the cluster options, the per-rule resource requests, the
one-line errors, and (slow) nodes of the smoke profile run through a real one-node SLURM cluster
that this module starts (Debian's slurm-wlm and munge; installed with apt-get when missing and
possible, else skipped outside CI) and stops, by PID, at the end."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from mafer.errors import MaferError
from mafer.pipeline import cluster
from mafer.reproduce import add_arguments, load_profile, resolve_config, snakemake_command

ROOT = Path(__file__).resolve().parent.parent
MAFER = [sys.executable, "-m", "mafer", "reproduce"]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def dry_run_jobs(log: str) -> list[dict]:
    """One dict per job of a Snakemake dry run: rule, wildcards, threads, resources."""
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule |rule \w+:\n)", log):
        head = re.search(r"^(?:\[[^\]]+\]\n)?rule (\w+):", block)
        if not head:
            continue
        fields = dict(re.findall(r"^\s{4}(\w+): (.*)$", block, re.M))
        resources = {}
        for item in re.split(r", (?=\w+=)", fields.get("resources", "")):
            key, _, value = item.partition("=")
            if key:
                resources[key] = int(value) if value.isdigit() else value
        jobs.append({"rule": head.group(1), "wildcards": fields.get("wildcards", ""),
                     "threads": int(fields.get("threads", 1)), "resources": resources})
    return jobs


@pytest.fixture
def paper_args(tmp_path):
    weights = tmp_path / "senet50_ft_weight.pkl"
    weights.write_bytes(b"")
    return ["--profile", "paper", "--data-dir", str(tmp_path), "--config", f"base_weights={weights}",
            "--results", str(tmp_path / "results"), "--book-dir", str(tmp_path / "book")]


# ------------------------------------------------------------------ resources

def test_paper_resources_map_to_slurm_requests_on_a_dry_run(paper_args):
    """GPU, CPU threads, memory and wall time of every node, as the SLURM plugin submits them."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    result = subprocess.run(MAFER + paper_args + ["--executor", "slurm", "--partition", "gpu", "--account", "lab",
                                                  "--dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout + result.stderr)
    profile = load_profile("paper")
    requested = profile["resources"]
    by_rule: dict[str, list[dict]] = {}
    for job in jobs:
        by_rule.setdefault(job["rule"], []).append(job)
    assert len(by_rule["step1"]) == 3 and len(by_rule["step2"]) == 4 * 12  # base weights given: 3 step-1 models
    for rule in ("step1", "step2", "evaluation", "embeddings", "results", "data_overview"):
        want = requested.get(rule, {}) | {k: v for k, v in requested["default"].items() if k not in requested.get(rule, {})}
        for job in by_rule[rule]:
            res = job["resources"]
            assert (res["mem_mb"], res["runtime"]) == (want["mem_mb"], want["runtime"]), (rule, res)
            assert res["slurm_partition"] == "gpu" and res["slurm_account"] == "lab"
            assert job["threads"] == profile["threads"] == 8
            assert res.get("gpu", 0) == (1 if rule in ("step1", "step2", "evaluation", "embeddings") else 0), rule

    # what the plugin turns one fine-tuning node into
    job = by_rule["step2"][0]
    resources = SimpleNamespace(**job["resources"])
    resources.get = lambda key, default=None: getattr(resources, key, default)
    fake = SimpleNamespace(resources=resources, threads=job["threads"], name="step2")
    sbatch = get_submit_command(fake, {"run_uuid": "x", "slurm_logfile": "log", "comment_str": "c",
                                       "account": "-A lab", "partition": "-p gpu", "workdir": "/w"})
    sbatch += set_gres_string(fake)
    assert "--cpus-per-task=8" in sbatch and "--mem 32000" in sbatch and "-t 720" in sbatch
    assert "--gpus=1" in sbatch, sbatch


def test_a_users_resource_file_overrides_the_profile(paper_args, tmp_path):
    mine = tmp_path / "my-resources.yaml"
    mine.write_text("default: {runtime: 90}\nstep2: {mem_mb: 12345, runtime: 3h}\n")
    config = resolve_config(parse(*paper_args))
    merged = cluster.node_resources(config, mine)
    assert merged["default"] == {"mem_mb": 8000, "runtime": 90}
    assert merged["step2"] == {"mem_mb": 12345, "runtime": "3h"} and merged["step1"]["mem_mb"] == 64000
    cmd = snakemake_command(tmp_path / "c.yaml", tmp_path, parse(*paper_args, "--executor", "slurm", "--dry-run",
                                                                 "--cluster-resources", str(mine)), config)
    assert cmd[cmd.index("--executor") + 1] == "slurm" and "--resources" not in cmd  # no local GPU cap
    assert "step2:mem_mb=12345" in cmd and "step2:runtime='3h'" in cmd and "runtime=90" in cmd

    for text, message in [("stepp2: {mem_mb: 1}\n", "unknown rule 'stepp2'"),
                          ("step2: {mem: 1000}\n", "unknown resource 'mem' for 'step2'"),
                          ("step2: {threads: 4}\n", "CPUs follow the profile's `threads`"),
                          ("step2: {mem_mb: -5}\n", "step2.mem_mb must be a positive whole number"),
                          ("step2: {runtime: 0}\n", "step2.runtime must be minutes"),
                          ("step2: [1, 2]\n", "resources of 'step2' must be a mapping")]:
        mine.write_text(text)
        with pytest.raises(MaferError, match=re.escape(str(mine)) + ".*" + re.escape(message)):
            cluster.node_resources(config, mine)


def test_local_runs_are_unchanged_and_cluster_options_need_the_executor(paper_args, tmp_path):
    config = resolve_config(parse(*paper_args))
    assert cluster.snakemake_args(parse(*paper_args), config) == []
    assert cluster.executor(parse(*paper_args, "--", "--executor", "slurm")) == "slurm"
    with pytest.raises(MaferError, match="--partition, --cluster-resources: SLURM option.*add --executor slurm"):
        cluster.snakemake_args(parse(*paper_args, "--partition", "gpu", "--cluster-resources", "r.yaml"), config)


# ------------------------------------------------------------------ one clear line

def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "usage:" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_a_missing_plugin_is_one_line(tmp_path):
    # a stand-in package that hides the installed plugin
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import importlib.util\n_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name.startswith('snakemake_executor_plugin_slurm') "
        "else _find(name, *a)\n")
    env = dict(os.environ, PYTHONPATH=str(hide))
    for form in (["--executor", "slurm"], ["--", "--executor", "slurm"]):
        result = subprocess.run(MAFER + ["--profile", "smoke", "--results", str(tmp_path / "r"), *form], cwd=ROOT,
                                capture_output=True, text=True, timeout=120, env=env)
        assert "pip install snakemake-executor-plugin-slurm" in _one_line_error(result)


def test_an_unreachable_scheduler_is_one_line(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    sinfo = fake / "sinfo"
    sinfo.write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller (connect failure)' >&2\n"
                     "exit 1\n")
    sinfo.chmod(0o755)
    path = os.pathsep.join([str(fake), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    result = subprocess.run(MAFER + ["--profile", "smoke", "--results", str(tmp_path / "r"), "--executor", "slurm"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, PATH=path))
    line = _one_line_error(result)
    assert "SLURM controller is not reachable" in line and "Unable to contact slurm controller" in line
    sinfo.unlink()
    bare = os.pathsep.join([str(fake), str(Path(sys.executable).parent)])  # no SLURM commands at all
    result = subprocess.run(MAFER + ["--profile", "smoke", "--results", str(tmp_path / "r"), "--executor", "slurm"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, env=dict(os.environ, PATH=bare))
    assert "'sinfo' is not on PATH" in _one_line_error(result)


# ------------------------------------------------------------------ a real one-node cluster (slow)

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "srun")


def _have_slurm() -> bool:
    return all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS)


def _install_or_skip() -> None:
    """Install Debian's slurm-wlm and munge when missing (as root, with apt-get); otherwise skip
    outside CI and fail in CI, saying why."""
    if _have_slurm():
        return
    why = "needs Debian's slurm-wlm and munge packages"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
            if done.returncode != 0:
                why += f"; {' '.join(cmd[:2])} failed: {done.stderr.strip()[-300:]}"
                break
        if _have_slurm():
            return
    else:
        why += " (not root or no apt-get, so they cannot be installed here)"
    if os.environ.get("CI"):
        pytest.fail(f"the SLURM test {why}")
    pytest.skip(f"the SLURM test {why}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, check, timeout: float = 60) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """slurmctld + slurmd on this machine (one node, partition `mafer`, no accounting database)
    and a munged of its own. The client commands and the job steps read the standard
    /etc/slurm/slurm.conf (the plugin's job steps drop SLURM_CONF), so the test writes it there
    unless one already exists, and removes it at the end."""
    _install_or_skip()
    conf = Path("/etc/slurm/slurm.conf")
    # A run of this test killed before its clean-up leaves its file behind; that one is ours to replace.
    if conf.exists() and "ClusterName=mafertest\n" not in conf.read_text(errors="replace"):
        pytest.skip(f"{conf} exists: this machine has a SLURM configuration of its own; not touching it")
    work = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (work / sub).mkdir()
    munge = work / "munge"
    munge.mkdir(mode=0o711)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = int(int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 1024 * 0.8)
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(f"""\
ClusterName=mafertest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={munge}/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/slurmctld.pid
SlurmdPidFile={work}/slurmd.pid
SlurmctldLogFile={work}/log/slurmctld.log
SlurmdLogFile={work}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
MinJobAge=3600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=mafer Nodes={host} Default=NO MaxTime=INFINITE State=UP
""")
    daemons: list[subprocess.Popen] = []
    try:
        daemons.append(subprocess.Popen(
            ["munged", "--foreground", "--force", f"--socket={munge}/munge.socket", f"--key-file={key}",
             f"--pid-file={munge}/munged.pid", f"--seed-file={munge}/munged.seed"],
            stdout=subprocess.DEVNULL, stderr=open(work / "log" / "munged.log", "w")))
        _wait("munged", lambda: (munge / "munge.socket").exists())
        daemons.append(subprocess.Popen(["slurmctld", "-D", "-f", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=open(work / "log" / "slurmctld.out", "w")))
        daemons.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf), "-N", host], stdout=subprocess.DEVNULL,
                                        stderr=open(work / "log" / "slurmd.out", "w")))
        _wait("an idle SLURM node", lambda: subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True).stdout.strip() == "idle")
        yield SimpleNamespace(work=work, partition="mafer", host=host)
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        conf.unlink(missing_ok=True)


# A few nodes stand for the graph: the synthetic data (a rule without threads), a step-1 and a
# step-2 training (threads, memory, the run folders' resume logic), each one SLURM job.
SLURM_TARGET = "runs/step2/base/fer2013/standard/seed17-17/best.pt"


@pytest.mark.slow
def test_smoke_nodes_run_as_slurm_jobs_and_give_the_local_result(slurm_cluster, smoke_run, tmp_path):
    start = time.time()
    options = ["--profile", "smoke", "--results", str(tmp_path), "--book-dir", str(tmp_path / "book")]
    result = subprocess.run(
        MAFER + options + ["--executor", "slurm", "--partition", slurm_cluster.partition, "--jobs", "2",
                           # the plugin waits 40 s before its first status check, for large clusters
                           "--", "--slurm-init-seconds-before-status-checks", "2",
                           "--seconds-between-status-checks", "2", SLURM_TARGET],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    elapsed = time.time() - start
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    work = tmp_path / "smoke"

    # every node was one SLURM job, with the profile's requests, and finished
    rows = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%P|%C|%m|%l"],
                          capture_output=True, text=True, check=True).stdout.splitlines()
    jobs = [dict(zip(("id", "state", "comment", "partition", "cpus", "mem", "limit"), row.split("|"))) for row in rows]
    jobs = [j for j in jobs if j["comment"].startswith("rule_")]
    dry = subprocess.run(MAFER + ["--profile", "smoke", "--results", str(tmp_path / "dry"), "--dry-run",
                                  "--book-dir", str(tmp_path / "dry-book"), "--", SLURM_TARGET],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    nodes = [j for j in dry_run_jobs(dry.stdout + dry.stderr) if j["rule"] != "all"]
    assert sorted(n["rule"] for n in nodes) == ["step1", "step2", "synthetic_data"]
    assert sorted(j["comment"].split("_wildcards_")[0] for j in jobs) == sorted(f"rule_{n['rule']}" for n in nodes)
    requests = cluster.node_resources(load_profile("smoke"))
    threads = yaml.safe_load((work / "config.yaml").read_text())["threads"]
    for job in jobs:
        rule = next(r for r in cluster.RULES if job["comment"] == f"rule_{r}" or job["comment"].startswith(f"rule_{r}_wildcards"))
        want = requests["default"] | requests.get(rule, {})
        assert job["state"] == "COMPLETED" and job["partition"] == slurm_cluster.partition, job
        assert job["mem"] == f"{want['mem_mb']}M" and job["limit"] == f"{want['runtime']}:00", job
        # --cpus-per-task = the node's threads (the file-copying rule declares none: 1; the synthetic
        # data one dataset per core of the run's --jobs x threads, at most 5)
        cpus = {"publish_book": 1, "synthetic_data": min(2 * threads, 5)}.get(rule, threads)
        assert job["cpus"] == str(cpus), job
    # the plugin's per-job logs, kept for jobs that succeed too
    logs = sorted(p.stem for p in (work / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert logs == sorted(j["id"] for j in jobs)

    # the same network as the local run of the same node: the scheduler changes where, not what
    from mafer.models import load_checkpoint

    ours, local = (load_checkpoint(root / SLURM_TARGET) for root in (work, smoke_run / "smoke"))
    assert ours["metrics"] == local["metrics"]
    for name, tensor in local["model_state_dict"].items():
        assert torch.equal(ours["model_state_dict"][name], tensor), name
    print(f"SLURM smoke nodes: {len(jobs)} jobs in {elapsed:.0f} s")
