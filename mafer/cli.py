"""The `mafer` command line.

Each command lives in its own module, which defines ``add_arguments(parser)`` and
``run(args) -> int | None``. Modules are imported only when their command runs, so
``mafer --help`` stays fast and a broken optional dependency cannot break other commands.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Sequence

from mafer import __version__
from mafer.caches import use_writable_caches
from mafer.errors import MaferError, MaferWarning
from mafer.writes import disk_full_error, is_disk_full, stream_is_full, stream_name

STAGE_COMMANDS = ("step1", "step2")
OLD_COMMANDS = {"pretrain": "step1", "finetune": "step2"}  # their names before they took the paper's
# name -> (module, one-line help). Order is the order shown in `mafer --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("mafer.synth", "generate synthetic faces in the real datasets' on-disk formats"),
    "data": ("mafer.datasets.cli", "inspect a dataset: counts per split and class, channel mean"),
    "step1": ("mafer.train.cli", "step 1: base, CR or CR-Simplified training (VGGFace2 or AffWild2)"),
    "step2": ("mafer.train.cli", "step 2: fine-tune on FER2013, RAF-DB or Oulu-CASIA"),
    "evaluate": ("mafer.evaluate", "accuracy, F1 and confusion matrices at several test resolutions"),
    "aggregate": ("mafer.aggregate", "k-fold means and the results table across models and datasets"),
    "embed": ("mafer.embed", "deep features of a dataset and their t-SNE / UMAP projections"),
    "predict": ("mafer.predict", "expression probabilities for face images"),
    "reproduce": ("mafer.reproduce", "run the paper's experiment graph (Snakemake + papermill)"),
}


def _build_parser(selected: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mafer",
        description="MAFER companion: multi-resolution facial expression recognition, reproducibly.",
    )
    parser.add_argument("--version", action="version", version=f"mafer {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == selected:
            # the training module serves both steps: its options depend on which
            add = importlib.import_module(module).add_arguments
            add(p, name) if name in STAGE_COMMANDS else add(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mafer` console script."""
    _escape_unencodable_output()
    use_writable_caches()  # before a command imports numba or matplotlib, or starts a kernel
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in OLD_COMMANDS:
        print(f"mafer: 'mafer {argv[0]}' is now 'mafer {OLD_COMMANDS[argv[0]]}' (the paper's step names); "
              "running it now", file=sys.stderr)
        argv[0] = OLD_COMMANDS[argv[0]]
    selected = argv[0] if argv and argv[0] in COMMANDS else None
    parser = _build_parser(selected)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _format_warnings(f"mafer {args.command}")
    try:
        rc = importlib.import_module(COMMANDS[args.command][0]).run(args)
    except MaferError as exc:
        print(f"mafer {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mafer {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        return _disk_full(args.command, exc)
    try:
        sys.stdout.flush()  # output still buffered when the reader has gone fails here
    except BrokenPipeError:
        return _closed_pipe()
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        return _disk_full(args.command, exc, stdout=True)
    return int(rc or 0)


def _disk_full(command: str, exc: OSError, stdout: bool = False) -> int:
    """One line for a full disk (``mafer ... --json > /dev/full`` included), then exit 2 as for other errors.

    A failed ``print`` names no file: when the error names none and standard output goes to a
    full file system (or /dev/full), it is taken for the one. Its unwritten output is dropped
    (stdout pointed at /dev/null), or Python's flush at exit would print a second error.
    """
    stdout = stdout or (exc.filename is None and stream_is_full(sys.stdout))
    name = stream_name(sys.stdout) if stdout else exc.filename
    print(f"mafer {command}: error: {disk_full_error(name, exc)}", file=sys.stderr)
    if stdout:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass  # not a real file descriptor (a test's captured stdout): nothing is flushed at exit
    return 2


def _format_warnings(prefix: str) -> None:
    """Print a `MaferWarning` as one line, ``<prefix>: note: <message>``; other warnings as Python does."""
    python_format = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if issubclass(category, MaferWarning):
            return f"{prefix}: note: {message}\n"
        return python_format(message, category, filename, lineno, line)

    warnings.formatwarning = one_line


def _escape_unencodable_output() -> None:
    """Make stdout and stderr print what their encoding cannot hold escaped (``\\udce9``) instead of failing.

    A file name that is not valid UTF-8 (a Latin-1 folder, a GBK "- 副本" copy) reaches Python as
    lone surrogates (PEP 383); a strict stream (``PYTHONIOENCODING=utf-8:strict``, or a Latin-1
    terminal for a Chinese name) raises UnicodeEncodeError on it, and a report that names such a
    file would die half printed. Streams that already have a lenient handler (Python's default
    ``surrogateescape`` under a C locale, which writes the original bytes back) are left as they are.
    """
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _closed_pipe() -> int:
    """The reader of our output went away (``mafer ... | head``): end quietly, like other Unix tools.

    Python would flush stdout once more at exit and print a second traceback; pointing stdout at
    /dev/null first makes that flush a no-op.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


if __name__ == "__main__":
    sys.exit(main())
