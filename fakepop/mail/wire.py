"""The wire form of mail: CRLF line ends and byte-stuffing (RFC 1939, section 3)."""

from __future__ import annotations

import re

CRLF = b"\r\n"
TERMINATOR = b".\r\n"  # ends every multi-line reply

_LINE_END = re.compile(rb"\r\n|\r|\n")


def to_crlf(raw: bytes) -> bytes:
    """Normalise bare LF and bare CR to CRLF and end a non-empty message with CRLF.

    The result is the message as sent, before byte-stuffing: its length is the
    size that STAT, LIST and RETR report.
    """
    if b"\r" not in raw:  # the common case: LF only
        wire = raw.replace(b"\n", CRLF)
    elif b"\n" not in raw:
        wire = raw.replace(b"\r", CRLF)
    else:
        wire = _LINE_END.sub(CRLF, raw)
    if wire and not wire.endswith(CRLF):
        wire += CRLF
    return wire


def dot_stuff(wire: bytes) -> bytes:
    """Prefix every line that starts with "." with another ".", the first line included.

    ``wire`` must already have CRLF line ends, so every line starts either at
    offset 0 or right after a CRLF.
    """
    stuffed = wire.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed
