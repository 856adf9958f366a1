"""What the command table is made of: states, verbs, one entry a verb.

The table itself, ``COMMANDS``, is built in ``fakepop.protocol.session`` beside the
handlers; this module knows no session, so the fault plan can name verbs from here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar


class State(enum.Enum):
    """The states of a POP3 session (RFC 1939, section 3)."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


AUTHORIZATION = frozenset({State.AUTHORIZATION})
TRANSACTION = frozenset({State.TRANSACTION})
BOTH = AUTHORIZATION | TRANSACTION

# Every verb the server knows, whether or not a server offers it, in the order of the
# session's table, which has exactly these; fault rules may name any of them.
VERBS = (
    "USER", "PASS", "APOP", "QUIT", "STAT", "LIST", "RETR", "TOP", "DELE", "NOOP",
    "RSET", "UIDL", "LAST", "CAPA", "AUTH", "STLS", "UTF8", "LANG",
)  # fmt: skip

ARG_MAX_LENGTH = 40  # RFC 1939, section 3: an argument is at most 40 characters

# HTTP's methods: a browser's cross-origin POST to the POP3 port sends a request whose body
# would run as commands. Like Postfix's smtpd_forbidden_commands, a session that gets one
# of these, or a first word ending in ":" as a header's name does, is closed at once.
FORBIDDEN_VERBS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


class CommandError(Exception):
    """A command that cannot be carried out; dispatch answers ``-ERR [code] text``.

    ``bad`` marks a client's mistake in syntax, which counts against the
    session's budget of bad commands; a refusal such as "no such message" does not.
    """

    def __init__(self, text: str, code: str | None = None, *, bad: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.bad = bad


S = TypeVar("S")  # the session the command runs in


@dataclass(frozen=True)
class Command(Generic[S]):
    """One verb of the protocol."""

    verb: str
    states: frozenset[State]
    syntax: str  # the usage shown when the arguments are wrong, e.g. "TOP msg n"
    min_args: int
    max_args: int
    rest: bool  # the one argument is the rest of the line, spaces included (PASS)
    capability: Callable[[S], str | None] | None  # its CAPA line, if it has one
    available: Callable[[S], bool]
    mask: Callable[[str], str] | None  # hides secrets in the arguments for the transcript
    handler: Callable[[S, tuple[str, ...]], Any]
