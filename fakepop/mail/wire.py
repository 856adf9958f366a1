"""The wire form of mail: CRLF line ends and byte-stuffing (RFC 1939, section 3)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence

CRLF = b"\r\n"
TERMINATOR = b".\r\n"  # ends every multi-line reply

_LINE_END = re.compile(rb"\r\n|\r|\n")
# Most mail has no line starting with ".": finding that out is cheaper than copying it.
_DOT_LINE = re.compile(rb"\n\.")


def to_crlf(raw: bytes, keep_bare_cr: bool = False) -> bytes:
    """Normalise bare LF and bare CR to CRLF and end a non-empty message with CRLF.

    The result is the message as sent, before byte-stuffing: its length is the
    size that STAT, LIST and RETR report. With ``keep_bare_cr`` a CR not followed by
    LF is no line end but a byte of its line, sent as it is, as Dovecot does.
    """
    if keep_bare_cr:
        wire = raw.replace(CRLF, b"\n").replace(b"\n", CRLF)
    elif b"\r" not in raw:  # the common case: LF only
        wire = raw.replace(b"\n", CRLF)
    elif b"\n" not in raw:
        wire = raw.replace(b"\r", CRLF)
    else:
        wire = _LINE_END.sub(CRLF, raw)
    if wire and not wire.endswith(CRLF):
        wire += CRLF
    return wire


def unended(last: bytes, keep_bare_cr: bool = False) -> bool:
    """Whether text whose last byte is ``last`` lacks a final line end, which ``to_crlf`` adds.

    Empty text (``last`` is b"") needs none. With ``keep_bare_cr`` a final CR ends no line.
    """
    return last not in (b"", b"\n") and (keep_bare_cr or last != b"\r")


def dot_stuff(wire: bytes) -> bytes:
    """Prefix every line that starts with "." with another ".", the first line included.

    ``wire`` must already have CRLF line ends, so every line starts either at
    offset 0 or right after a CRLF.
    """
    if _DOT_LINE.search(wire) is None:
        return b"." + wire if wire.startswith(b".") else wire
    stuffed = wire.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed


def crlf_chunks(chunks: Iterable[bytes], keep_bare_cr: bool = False) -> Iterator[bytes]:
    """``to_crlf`` over a stream: the same bytes, whatever the chunk boundaries.

    A CR at the end of a chunk is held back until the next one shows whether
    it begins a CRLF.
    """
    held_cr = False
    last = b""
    for chunk in chunks:
        if held_cr:
            chunk = b"\r" + chunk
        held_cr = chunk.endswith(b"\r")
        if held_cr:
            chunk = chunk[:-1]
        if not chunk:
            continue
        if keep_bare_cr:  # only LF ends a line
            last = chunk.replace(CRLF, b"\n").replace(b"\n", CRLF)
        elif b"\r" in chunk:
            last = _LINE_END.sub(CRLF, chunk)
        else:
            last = chunk.replace(b"\n", CRLF)
        yield last
    if held_cr and keep_bare_cr:  # a bare CR, the message's last byte
        last = b"\r"
        yield last
    if (held_cr and not keep_bare_cr) or (last and not last.endswith(CRLF)):
        yield CRLF  # a held CR ends the text as a CRLF


def stuff_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``dot_stuff`` over a stream of CRLF text: correct at every chunk boundary.

    Within a chunk every "." after a CRLF is doubled; across a boundary the
    line may start at the chunk's first byte (the CRLF ended the last chunk),
    or at its second (the chunk starts with the LF of a split CRLF).
    """
    tail = CRLF  # the stream starts at the start of a line
    for chunk in chunks:
        if not chunk:
            continue
        stuffed = chunk if _DOT_LINE.search(chunk) is None else chunk.replace(b"\r\n.", b"\r\n..")
        if chunk[:1] == b"." and tail.endswith(CRLF):
            stuffed = b"." + stuffed
        elif chunk[:2] == b"\n." and tail.endswith(b"\r"):
            stuffed = b"\n." + stuffed[1:]
        yield stuffed
        tail = (tail + chunk[-2:])[-2:]  # not tail + chunk: that copies the chunk


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines of a stream of CRLF text, each with its CRLF.

    A line split across chunks is joined once, when its end comes: gathering it
    chunk by chunk would copy a long line again at every chunk.
    """
    partial: list[bytes] = []  # the pieces of a line not ended yet
    for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            line = chunk[start : end + 1]
            if partial:
                partial.append(line)
                line = b"".join(partial)
                partial.clear()
            yield line
            start = end + 1
        if start < len(chunk):
            partial.append(chunk[start:])
    if partial:
        yield b"".join(partial)


def top_lines(chunks: Iterable[bytes], lines: int) -> Iterator[bytes]:
    """What TOP sends of a stream of CRLF text, unstuffed: the header, the blank line
    after it and the first ``lines`` lines of the body; all of it when it has no body.

    The chunks are passed on as they are, the last one cut after the line that
    ends the top, so a line of any length costs one pass and no copy of itself.
    """
    in_header = True
    left = lines
    length = 0  # octets of the current line in the chunks before this one
    for chunk in chunks:
        start = 0  # where the current line starts in this chunk
        while in_header or left > 0:
            end = chunk.find(b"\n", start)
            if end < 0:
                length += len(chunk) - start
                break
            if in_header:
                in_header = length + end + 1 - start > len(CRLF)  # only the blank line is CRLF
            else:
                left -= 1
            length = 0
            start = end + 1
        else:
            if start:
                yield chunk[:start]
            return
        yield chunk


def numbered(column: Sequence[int] | Sequence[str]) -> bytes:
    """Lines of "n value" CRLF, numbered from 1: the body of LIST or UIDL.

    The values are sizes or UIDs, which are ASCII and never start a line with ".".
    """
    pairs = itertools.chain.from_iterable(zip(range(1, len(column) + 1), column, strict=True))
    return ("%s %s\r\n" * len(column) % tuple(pairs)).encode("ascii")  # one C call: fastest
