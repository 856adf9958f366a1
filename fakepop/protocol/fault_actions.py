"""The fault plan, its action side: what a fired rule has the session and the server do.

Most functions take replies as the session made them and return what a broken
server would have sent. Bodies stay lazy where they can: a message is cut or
trimmed as it streams, not copied first.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator

from fakepop.mail.wire import TERMINATOR
from fakepop.protocol.actions import CLOSE, STALL, Action, Close, Pause, Reply
from fakepop.protocol.fault_plan import Rule


def _stream(replies: Iterable[Reply]) -> Iterator[bytes]:
    for reply in replies:
        yield reply.status
        yield from reply.body


def _first(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The first ``limit`` bytes of a stream."""
    left = limit
    for chunk in chunks:
        if left <= 0:
            return
        yield chunk[:left]
        left -= len(chunk)


def _all_but(chunks: Iterable[bytes], tail: int) -> Iterator[bytes]:
    """A stream without its last ``tail`` bytes, never holding more than the tail back."""
    held = b""
    for chunk in chunks:
        held += chunk
        if len(held) > tail:
            yield held[:-tail] if tail else held
            held = held[-tail:] if tail else b""


def cut(replies: Iterable[Reply], after_bytes: int) -> Reply:
    """The replies as one stream cut off after ``after_bytes`` octets."""
    return Reply(b"", _first(_stream(replies), after_bytes))


def unterminated(reply: Reply, after_bytes: int | None) -> Reply:
    """A multi-line reply without its terminating line, or cut after ``after_bytes`` of body."""
    body = _all_but(reply.body, len(TERMINATOR))
    return Reply(reply.status, body if after_bytes is None else _first(body, after_bytes))


def wrong_size(reply: Reply, delta: int) -> Reply:
    """The octet count in the status line off by ``delta``: "+OK 120 octets" says 121.

    The count is the number before "octets" (RETR), else the last number (STAT, LIST n).
    """
    status = reply.status
    octets = [m.span(1) for m in re.finditer(rb"(\d+) octets", status)]
    spans = octets or [m.span() for m in re.finditer(rb"\d+", status)][-1:]
    if not spans:
        return reply
    start, end = spans[0]
    count = str(int(status[start:end]) + delta).encode()
    return Reply(status[:start] + count + status[end:], reply.body, reply.summary)


def unstuffed(reply: Reply) -> Reply:
    """The body with byte-stuffing undone, so lines starting with "." go out as they are."""
    body = b"".join(reply.body)
    if body.startswith(b".."):
        body = body[1:]
    return Reply(reply.status, (body.replace(b"\r\n..", b"\r\n."),), reply.summary)


def bare_lf(reply: Reply) -> Reply:
    """The reply with LF line ends instead of CRLF."""
    return Reply(bytes(reply).replace(b"\r\n", b"\n"))


def overlong(reply: Reply, length: int) -> Reply:
    """The status line padded to ``length`` octets, past what clients accept."""
    line = reply.status[:-2]
    padding = b" " + b"x" * max(0, length - len(line) - 3)
    return Reply(line + padding + b"\r\n", reply.body, reply.summary)


def garbage(rng: random.Random, length: int) -> Reply:
    """``length`` random octets, the same ones for the same seed."""
    return Reply(rng.randbytes(length))


def instead_of_handshake(rule: Rule) -> list[Action]:
    """What the server does at a TLS handshake where ``rule`` fired.

    A delay only postpones the handshake; anything else takes its place and ends
    the connection, as tls-abort's mode says: after a FIN the client sees the
    handshake fail, and garbage is 64 random octets where a ServerHello belongs.
    """
    params = rule.params
    if rule.action == "delay":
        return [Pause(params["seconds"])]
    if rule.action == "stall":
        return [STALL]
    if params.get("mode") == "reset":
        return [Close(reset=True)]
    if params.get("mode") == "garbage":
        return [Reply(rule.random().randbytes(64)), CLOSE]
    return [CLOSE]
