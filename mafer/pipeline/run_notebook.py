"""Execute one notebook of the pipeline with papermill (one Snakemake job = one call).

``python -m mafer.pipeline.run_notebook NOTEBOOK OUTPUT --parameters JSON --threads N``

The kernel is the Python running this module (the project's virtual environment), so a
notebook never runs in some other interpreter that happens to own the name ``python3``.
When the notebook fails, Snakemake deletes its declared output; the partial executed copy
is therefore kept under ``--failed-dir`` together with a JSON record that ``mafer
reproduce`` reads to say which notebook failed and where to look.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# The environment's own kernel specs win over a user-level `python3` pointing elsewhere.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")

from traitlets.config import Config  # noqa: E402

from mafer.caches import THREAD_VARIABLES, use_writable_caches  # noqa: E402
from mafer.errors import MaferError  # noqa: E402
from mafer.pipeline import paths  # noqa: E402

# Curve-encrypted kernel transport, as the kernel spec declares it supports: no plain-TCP warning
# from every kernel, and code and outputs are not sent in the clear.
KERNEL_CONFIG = Config({"KernelManager": {"transport_encryption": "auto"}})

# The project's kernel (what the notebooks name and `make lab` offers); installed into this
# environment on first use when missing.
KERNEL_NAME = "mafer"
KERNEL_DISPLAY_NAME = "Python (mafer)"


def failure_record_path(failed_dir: Path, output: Path) -> Path:
    """Where the failure record of the job that writes ``output`` goes (its path mirrored under ``failed_dir``)."""
    return failed_dir / _relative(output).with_suffix(".json")


def _relative(path: Path) -> Path:
    """``path`` relative to the working folder (the results folder in the pipeline), else its name."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return Path(path.name)


def check_kernel(kernel_name: str = KERNEL_NAME) -> None:
    """Fail early when ``kernel_name`` would start an interpreter other than this one."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        if kernel_name != KERNEL_NAME:
            raise MaferError(f"no Jupyter kernel named {kernel_name!r} for {sys.executable}; "
                             "install ipykernel in this environment") from None
        install_kernel()
        spec = KernelSpecManager().get_kernel_spec(kernel_name)
    exe = spec.argv[0]
    # jupyter_client swaps a bare "python" for sys.executable when it starts the kernel
    if exe not in ("python", "python3") and Path(exe).resolve() != Path(sys.executable).resolve():
        raise MaferError(f"{spec.resource_dir}/kernel.json: kernel {kernel_name!r} starts {exe}, "
                         f"expected {sys.executable}; remove that kernel spec or reinstall ipykernel here")


def install_kernel() -> None:
    """Install the project's kernel spec (``mafer``, this interpreter) into this environment."""
    try:
        from ipykernel.kernelspec import install
    except ImportError:
        raise MaferError(f"ipykernel is not installed for {sys.executable}; run make install") from None
    try:
        install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix)
    except OSError as exc:
        raise MaferError(f"cannot install the {KERNEL_NAME!r} Jupyter kernel into {sys.prefix} ({exc}); "
                         "run make install") from None


def check_parameters(notebook: Path, parameters: dict) -> None:
    """MaferError when ``parameters`` names one the notebook's ``parameters`` cell does not
    define (papermill would only warn and run with the default)."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    if not declared:
        raise MaferError(f"{notebook}: no cell tagged 'parameters'; expected one defining the notebook's parameters")
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise MaferError(f"{notebook}: no parameter(s) {', '.join(unknown)}; "
                         f"its parameters cell defines {', '.join(declared)}")


# In a training node's run folder: the signature of the node that started the run there.
SIGNATURE_FILE = "node-signature.txt"


def node_signature(parameters: dict, inputs: Sequence[Path]) -> str:
    """sha256 (hex) of what defines a node's results: its parameters, the versions of the
    packages that change numbers, and the content of its input files (given relative to the
    results folder, so a moved project keeps its signatures)."""
    from mafer.pipeline.graph import package_versions

    digest = hashlib.sha256(json.dumps({"parameters": parameters, "versions": package_versions()},
                                       sort_keys=True).encode())
    for path in sorted(inputs, key=str):
        with open(path, "rb") as f:
            digest.update(f"{path}\0{hashlib.file_digest(f, 'sha256').hexdigest()}\0".encode())
    return digest.hexdigest()


def prepare_run_dir(run_dir: Path, signature: str) -> int | None:
    """Make ``run_dir`` ready for a training node with ``signature``.

    Returns the step to resume from when the folder holds an interrupted run (``last.pt``) of
    the very same node; otherwise empties the folder (a node that reruns because something
    changed trains from scratch, not on top of the run it replaces) and returns None."""
    last, record = run_dir / "last.pt", run_dir / SIGNATURE_FILE
    if last.is_file() and record.is_file() and record.read_text().strip() == signature:
        from mafer.models import load_checkpoint  # torch: only a node that may resume pays its import

        try:
            return int(load_checkpoint(last)["extra"]["resume"]["step"])
        except (MaferError, KeyError, TypeError, ValueError):  # unreadable (cut while written): start over
            pass
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    record.write_text(signature + "\n")
    return None


def execute(notebook: Path, output: Path, parameters: dict, *, threads: int, failed_dir: Path,
            cwd: Path | None = None, run_dir: Path | None = None, inputs: Sequence[Path] = ()) -> None:
    """Run ``notebook`` into ``output`` with ``parameters``; on failure keep the partial copy and raise.

    ``run_dir``: the run folder of a training node (``inputs``: the node's input files). An
    interrupted run of the same node there is resumed from its ``last.pt`` (the notebook's
    ``options`` get ``resume: true``), with the result an uninterrupted run gives; anything
    else there is removed first."""
    import papermill as pm

    if run_dir is not None:
        step = prepare_run_dir(run_dir, node_signature(parameters, inputs))
        if step is not None:
            print(f"mafer pipeline: resuming the interrupted run in {run_dir} from its last.pt (step {step})",
                  file=sys.stderr)
            parameters = parameters | {"options": dict(parameters.get("options") or {}, resume=True)}

    for var in THREAD_VARIABLES:  # the kernel inherits them: one job = `threads` cores
        os.environ[var] = str(threads)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = failure_record_path(failed_dir, output)
    partial = (failed_dir / _relative(output)).resolve()
    record.unlink(missing_ok=True)  # a success clears the traces of an earlier failure
    partial.unlink(missing_ok=True)
    start = time.time()
    try:
        check_kernel()
        check_parameters(notebook, parameters)
        pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name=KERNEL_NAME,
                            cwd=str(cwd) if cwd else None, progress_bar=False,
                            request_save_on_cell_execute=True, config=KERNEL_CONFIG)
    except BaseException as exc:
        partial.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            shutil.copyfile(output, partial)
        error = exc.evalue if hasattr(exc, "evalue") else str(exc)
        ename = getattr(exc, "ename", type(exc).__name__)
        cell = _failed_cell(exc)
        record.write_text(json.dumps({
            "notebook": str(notebook), "output": str(output),
            "partial": str(partial) if partial.exists() else None,
            "cell": cell, "error": f"{ename}: {error}", "parameters": parameters,
            "seconds": round(time.time() - start, 1), "time": time.time(),
        }, indent=2))
        print(f"\nmafer pipeline: notebook {notebook} FAILED{f' in {cell}' if cell else ''}: {ename}: {error}\n"
              f"  executed copy kept for inspection: {partial if partial.exists() else '(none written)'}",
              file=sys.stderr)
        raise SystemExit(1) from None
    print(f"mafer pipeline: {notebook.name} -> {output} ({time.time() - start:.0f} s)", file=sys.stderr)


def _failed_cell(exc: BaseException) -> str | None:
    """"cell In [N] (`first line`)" of the cell papermill reports as failed, else None."""
    count = getattr(exc, "exec_count", None)
    if count is None:
        return None
    first = next((line for line in (getattr(exc, "source", "") or "").splitlines() if line.strip()), "")
    first = first if len(first) <= 70 else first[:67] + "..."
    return f"cell In [{count}] (`{first}`)"


def _terminate(signum, frame):
    # as Ctrl-C: papermill saves the executed copy and shuts the kernel down
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry used by the Snakefile's rules."""
    signal.signal(signal.SIGTERM, _terminate)
    use_writable_caches()  # before the kernel starts: it inherits them (numba, matplotlib, IPython, Jupyter)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--parameters", default="{}", help="papermill parameters as a JSON object")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads this job may use")
    parser.add_argument("--failed-dir", type=Path, default=Path(paths.FAILED))
    parser.add_argument("--cwd", type=Path, default=None, help="working folder of the kernel")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="a training node's run folder: resume an interrupted run of the same node, else empty it")
    parser.add_argument("--inputs", type=Path, nargs="*", default=[],
                        help="the node's input files (with --run-dir: part of the node's signature)")
    args = parser.parse_args(argv)
    try:
        parameters = json.loads(args.parameters)
    except ValueError as exc:
        print(f"run_notebook: --parameters is not JSON ({exc})", file=sys.stderr)
        return 2
    try:
        execute(args.notebook, args.output, parameters, threads=args.threads,
                failed_dir=args.failed_dir, cwd=args.cwd, run_dir=args.run_dir, inputs=args.inputs)
    except MaferError as exc:  # only from reading the arguments; notebook failures exit in execute()
        print(f"run_notebook: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
