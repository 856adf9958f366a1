"""The fault plan, its action side: what a fired rule has the session and the server do.

``decide`` turns a rule that fired at a command, the connect, the greeting or
a login into one typed action. The session carries out those of the protocol
(``Refuse``, ``RefuseLogins``, ``FailCommit``, ``SkipHandshake``, ``Drop``,
``Truncate``, ``Rewrite``) and hands the server those only a socket can do:
``Pause``, ``Throttle``, ``Stall`` and the ``Close`` a drop ends in.
``instead_of_handshake`` does the same for a rule that fired at a TLS handshake.

The reply transforms take replies as the session made them and return what a
broken server would have sent. Bodies stay lazy where they can: a message is
cut or trimmed as it streams, not copied first.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from fakepop.mail.wire import TERMINATOR
from fakepop.protocol.actions import CLOSE, STALL, Action, Close, Pause, Reply, Stall, Throttle
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


@dataclass(frozen=True)
class Refuse:
    """``-ERR [code] text`` instead of the command's reply; the command is not run."""

    code: str
    text: str


@dataclass(frozen=True)
class RefuseLogins:
    """Logins to ``user``'s maildrop get ``[IN-USE]``, for ``attempts`` or ``seconds``.

    ``user`` None means whoever the session is logging in as; the event goes on.
    """

    user: str | None
    attempts: int | None
    seconds: float | None


@dataclass(frozen=True)
class FailCommit:
    """QUIT's commit removes ``remove`` ("none", "some" or a number) and says ``-ERR [code]``."""

    remove: str | int
    code: str


@dataclass(frozen=True)
class SkipHandshake:
    """``+OK`` to STLS, then no handshake and no more replies."""


@dataclass(frozen=True)
class Drop:
    """The connection ends: ``at`` "instead" of the reply, "after" it, or "during" it,
    ``after_bytes`` into it; with ``reset``, abortively."""

    at: str
    after_bytes: int
    reset: bool


@dataclass(frozen=True)
class Truncate:
    """A multi-line reply without its terminating line (cut ``after_bytes`` into its body);
    then a close, or with ``stall`` nothing more."""

    after_bytes: int | None
    stall: bool


@dataclass(frozen=True)
class Rewrite:
    """The command's last reply replaced by ``change(reply)``."""

    change: Callable[[Reply], Reply]


# What a rule fired at a command, the greeting or a login does.
FaultAction = (
    Refuse
    | RefuseLogins
    | FailCommit
    | SkipHandshake
    | Drop
    | Truncate
    | Rewrite
    | Pause
    | Throttle
    | Stall
)


def decide(rule: Rule) -> FaultAction:
    """The action ``rule`` takes where it fired, its parameters checked when it was made."""
    params = rule.params
    match rule.action:
        case "error":
            return Refuse(params["code"], params["text"])
        case "lock":
            return RefuseLogins(rule.user, params["attempts"], params["seconds"])
        case "commit-fail":
            return FailCommit(params["remove"], params["code"])
        case "no-handshake":
            return SkipHandshake()
        case "drop":
            return Drop(params["at"], params["after_bytes"], params["mode"] == "reset")
        case "truncate":
            return Truncate(params["after_bytes"], params["then"] == "stall")
        case "delay":
            return Pause(params["seconds"])
        case "bandwidth":
            return Throttle(params["bytes_per_second"])
        case "stall":
            return STALL
        case "wrong-size":
            return Rewrite(functools.partial(wrong_size, delta=params["delta"]))
        case "unstuffed":
            return Rewrite(unstuffed)
        case "garbage":
            rng, length = rule.random(), params["length"]
            return Rewrite(lambda _: garbage(rng, length))
        case "bare-lf":
            return Rewrite(bare_lf)
        case "overlong":
            return Rewrite(functools.partial(overlong, length=params["length"]))
    raise AssertionError(f"tls-abort fires only at a TLS handshake, not as {rule.action!r}")


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
