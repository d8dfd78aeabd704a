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
import json
import os
import shutil
import sys
import time
from pathlib import Path

# The environment's own kernel specs win over a user-level `python3` pointing elsewhere.
os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")

from mafer.errors import MaferError  # noqa: E402

KERNEL_NAME = "python3"


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
        raise MaferError(f"no Jupyter kernel named {kernel_name!r} for {sys.executable}; "
                         "install ipykernel in this environment") from None
    exe = spec.argv[0]
    # jupyter_client swaps a bare "python" for sys.executable when it starts the kernel
    if exe not in ("python", "python3") and Path(exe).resolve() != Path(sys.executable).resolve():
        raise MaferError(f"{spec.resource_dir}/kernel.json: kernel {kernel_name!r} starts {exe}, "
                         f"expected {sys.executable}; remove that kernel spec or reinstall ipykernel here")


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


def execute(notebook: Path, output: Path, parameters: dict, *, threads: int, failed_dir: Path,
            cwd: Path | None = None) -> None:
    """Run ``notebook`` into ``output`` with ``parameters``; on failure keep the partial copy and raise."""
    import papermill as pm

    # torch, numpy and sklearn in the kernel read these at import: one job = `threads` cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
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
                            request_save_on_cell_execute=True)
    except BaseException as exc:
        partial.parent.mkdir(parents=True, exist_ok=True)
        if output.exists():
            shutil.copyfile(output, partial)
        error = exc.evalue if hasattr(exc, "evalue") else str(exc)
        ename = getattr(exc, "ename", type(exc).__name__)
        record.write_text(json.dumps({
            "notebook": str(notebook), "output": str(output),
            "partial": str(partial) if partial.exists() else None,
            "error": f"{ename}: {error}", "parameters": parameters,
            "seconds": round(time.time() - start, 1), "time": time.time(),
        }, indent=2))
        print(f"\nmafer pipeline: notebook {notebook} FAILED ({ename}: {error})\n"
              f"  partial executed copy: {partial if partial.exists() else '(none written)'}",
              file=sys.stderr)
        raise SystemExit(1) from None
    print(f"mafer pipeline: {notebook.name} -> {output} ({time.time() - start:.0f} s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry used by the Snakefile's rules."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--parameters", default="{}", help="papermill parameters as a JSON object")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads this job may use")
    parser.add_argument("--failed-dir", type=Path, default=Path("failed"))
    parser.add_argument("--cwd", type=Path, default=None, help="working folder of the kernel")
    args = parser.parse_args(argv)
    try:
        parameters = json.loads(args.parameters)
    except ValueError as exc:
        print(f"run_notebook: --parameters is not JSON ({exc})", file=sys.stderr)
        return 2
    try:
        execute(args.notebook, args.output, parameters, threads=args.threads,
                failed_dir=args.failed_dir, cwd=args.cwd)
    except MaferError as exc:  # only from reading the arguments; notebook failures exit in execute()
        print(f"run_notebook: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
