"""The command table: one entry a verb, read by dispatch and by CAPA alike."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fakepop.protocol.session import Session


class State(enum.Enum):
    """The states of a POP3 session (RFC 1939, section 3)."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


AUTHORIZATION = frozenset({State.AUTHORIZATION})
TRANSACTION = frozenset({State.TRANSACTION})
BOTH = AUTHORIZATION | TRANSACTION

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


Handler = Callable[["Session", tuple[str, ...]], Any]


@dataclass(frozen=True)
class Command:
    """One verb of the protocol."""

    verb: str
    states: frozenset[State]
    syntax: str  # the usage shown when the arguments are wrong, e.g. "TOP msg n"
    min_args: int
    max_args: int
    rest: bool  # the one argument is the rest of the line, spaces included (PASS)
    capability: Callable[[Session], str | None] | None  # its CAPA line, if it has one
    available: Callable[[Session], bool]
    mask: Callable[[str], str] | None  # hides secrets in the arguments for the transcript
    handler: Handler


COMMANDS: dict[str, Command] = {}


def _advertise(
    capability: str | Callable[[Session], str | None] | None, available: Callable[[Session], bool]
) -> Callable[[Session], str | None] | None:
    """The CAPA line of a command as a function of the session: never shown when unavailable."""
    if capability is None:
        return None
    if isinstance(capability, str):
        line = capability
        return lambda session: line if available(session) else None
    shown = capability
    return lambda session: shown(session) if available(session) else None


def _always(session: Session) -> bool:
    return True


def command(
    syntax: str,
    states: frozenset[State],
    *,
    rest: bool = False,
    capability: str | Callable[[Session], str | None] | None = None,
    available: Callable[[Session], bool] = _always,
    mask: Callable[[str], str] | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated session method as the handler of the verb ``syntax`` names.

    ``syntax`` is the usage as the RFCs write it, optional arguments in
    brackets: "LIST [msg]", "TOP msg n". ``capability`` is the command's CAPA
    line, or a function of the session that gives it (or None to leave it out).
    """
    verb, *names = syntax.split()
    required = sum(not n.startswith("[") for n in names)

    def register(handler: Handler) -> Handler:
        COMMANDS[verb] = Command(
            verb=verb,
            states=states,
            syntax=syntax,
            # A rest-of-line command gets its arguments as one string, split by its handler.
            min_args=min(required, 1) if rest else required,
            max_args=min(len(names), 1) if rest else len(names),
            rest=rest,
            capability=_advertise(capability, available),
            available=available,
            mask=mask,
            handler=handler,
        )
        return handler

    return register
