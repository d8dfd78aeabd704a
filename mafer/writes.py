"""A full disk, said in one line that names the file being written.

Python says "[Errno 28] No space left on device" without a file name when the write goes
through a file object (Pillow, ``zipfile``, ``print``), and torch's zip writer turns it into
"RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos", which does not say
that the disk is full at all. The writers of datasets and checkpoints catch it with
`disk_full_error`, and `mafer.cli` does for standard output and for whatever else is left.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO, Any

from mafer.errors import MaferError

__all__ = ["DISK_FULL", "is_disk_full", "disk_full_error", "stream_name", "stream_is_full", "RecordingWriter"]

DISK_FULL = {errno.ENOSPC: "the disk is full (ENOSPC, no space left on the device)",
             errno.EDQUOT: "the disk quota is used up (EDQUOT)"}


def is_disk_full(exc: BaseException | None) -> bool:
    """True for an OSError whose errno says no space (ENOSPC) or no quota (EDQUOT) is left,
    also when it is the cause or context of ``exc``."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _errno_of(exc: BaseException) -> int:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return errno.ENOSPC


def disk_full_error(path: str | os.PathLike | None, exc: BaseException, what: str = "") -> MaferError:
    """The one-line error for a write of ``path`` (default: the file the OSError names) that
    found the disk full: ``<path>: cannot write<what>: the disk is full (ENOSPC ...); free space
    or write elsewhere``."""
    name = path if path is not None else getattr(exc, "filename", None)
    return MaferError(f"{f'{name}: ' if name else ''}cannot write{what}: {DISK_FULL[_errno_of(exc)]}; "
                      "free some space or write elsewhere, then run again")


def stream_name(stream: IO[Any]) -> str:
    """``standard output (/dev/full)``: the stream's role, with the file it goes to where the system says."""
    import sys

    label = "standard output" if stream is sys.stdout else "standard error" if stream is sys.stderr else None
    try:
        target = os.readlink(f"/proc/self/fd/{stream.fileno()}")
    except (OSError, ValueError, AttributeError):
        target = ""
    label = label or str(getattr(stream, "name", "") or target or "the output")
    return f"{label} ({target})" if target and target != label else label


def stream_is_full(stream: IO[Any]) -> bool:
    """True when ``stream`` goes to a file on a file system with no space left, or to ``/dev/full``:
    the likely target of a failed write that names no file."""
    try:
        fd = stream.fileno()
        info = os.fstat(fd)
        if stat.S_ISCHR(info.st_mode):
            return os.path.exists("/dev/full") and info.st_rdev == os.stat("/dev/full").st_rdev
        return stat.S_ISREG(info.st_mode) and os.fstatvfs(fd).f_bavail == 0
    except (OSError, ValueError, AttributeError):
        return False


class RecordingWriter:
    """A binary file object that remembers the OSError of a failed write, for writers (torch's zip
    writer) that replace it by their own error; ``error`` is that OSError, or None."""

    def __init__(self, file: IO[bytes], path: Path):
        self.file, self.path, self.error = file, path, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()
