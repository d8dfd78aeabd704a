"""The one way every text file of a dataset (label lists, CSVs, annotations) is read.

Copies of the datasets circulate re-saved by many tools: with or without a UTF-8 byte-order
mark, as UTF-16 (Windows "Unicode" text), with CRLF or LF line ends. Reading them with the
locale's default encoding makes the same file parse differently on different machines (a BOM
glued to the first header name, a CR glued to the last field); reading them all here makes the
parsed content identical whatever the encoding and line ends.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path

from mafer.errors import MaferError

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),  # before UTF-16: same first bytes
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(data: bytes, source: str | os.PathLike = "<bytes>") -> str:
    """``data`` as text with ``\\n`` line ends and no byte-order mark.

    The encoding comes from the byte-order mark (UTF-8, UTF-16 LE/BE, UTF-32), else UTF-8.
    Raises MaferError naming ``source`` when the bytes are not valid in that encoding (for
    instance a compressed archive passed where a text file was expected).
    """
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), "utf-8")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise MaferError(f"{source}: not a text file in {encoding.replace('-sig', '')} (byte {exc.start}: "
                         f"{exc.reason}); expected UTF-8 or UTF-16 text (is it an archive or a binary file?)") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | os.PathLike) -> str:
    """The text of file ``path`` (see ``decode_text``): any of UTF-8 (BOM or not), UTF-16/32 with BOM, CRLF/LF/CR.

    Raises MaferError naming the file when it is missing, unreadable or not text.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MaferError(f"{path}: file not found") from None
    except OSError as exc:
        raise MaferError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_text(data, path)


def read_lines(path: str | os.PathLike) -> list[str]:
    """The lines of text file ``path`` without their line ends (see ``read_text``)."""
    text = read_text(path)
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines
