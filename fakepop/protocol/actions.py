"""Actions: what the session asks its server to do (send a reply, pause, close, ...).

An event is what happened (a command came, a client connected); an action is
what the core decided the server does about it. ``Action`` is every kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fakepop.mail.wire import CRLF, TERMINATOR


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply: its status line and, for a multi-line reply, the byte-stuffed body.

    ``body`` ends with the terminating ".\\r\\n" when the reply is multi-line. A
    message's body is produced as it is sent (a stored message is never copied,
    a message on disk is read in pieces), so it can be iterated only once.
    """

    status: bytes
    body: Iterable[bytes] = ()
    summary: str | None = None  # stands for the body in the transcript

    @property
    def ok(self) -> bool:
        return self.status.startswith(b"+")

    @property
    def size(self) -> int:
        """Octets on the wire."""
        return len(self.status) + sum(len(chunk) for chunk in self.body)

    def __bytes__(self) -> bytes:
        return self.status + b"".join(self.body)


@dataclass(frozen=True, slots=True)
class Close:
    """Close the connection once every reply before it is sent; with ``reset``, abortively."""

    reset: bool = False


CLOSE = Close()


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Run the TLS handshake as server once the replies before it are sent (RFC 2595 STLS)."""


START_TLS = StartTLS()


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait this many seconds before going on, as a server slowing down a password guesser."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Throttle:
    """Send the replies after this one no faster than ``bytes_per_second``."""

    bytes_per_second: float


@dataclass(frozen=True, slots=True)
class Stall:
    """Answer nothing more: hold the connection open until the client gives up."""


STALL = Stall()

Action = Reply | Close | StartTLS | Pause | Throttle | Stall


_ESCAPE_LINE_ENDS = str.maketrans({"\r": "\\r", "\n": "\\n"})


def status(ok: bool, text: str, code: str | None = None) -> bytes:
    """A status line: "+OK text" or "-ERR [CODE] text", with CRLF."""
    parts = ["+OK" if ok else "-ERR"]
    if code:
        parts.append(f"[{code}]")
    if text:
        # Text may quote the client: a CR or LF in it must not start a forged reply line.
        parts.append(text.translate(_ESCAPE_LINE_ENDS))
    return " ".join(parts).encode("utf-8") + CRLF


TRANSCRIPT_BODY_LINES = 50  # a longer listing is summarised in the transcript


def multiline(text: str, lines: list[str]) -> Reply:
    """A multi-line reply made of text lines (CAPA, SASL mechanisms, LANG)."""
    stuffed = [("." + line) if line.startswith(".") else line for line in lines]
    body = "".join(line + "\r\n" for line in stuffed).encode("utf-8")
    return listing(text, body, len(lines))


def listing(text: str, body: bytes, lines: int) -> Reply:
    """A multi-line reply whose ``lines`` CRLF-ended lines are ``body``, already stuffed."""
    summary = f"<{lines} lines>" if lines > TRANSCRIPT_BODY_LINES else None
    return Reply(status(True, text), (body, TERMINATOR), summary)
