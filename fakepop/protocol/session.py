"""A POP3 session without I/O: bytes in, replies and actions out.

The server feeds what it reads from the socket to ``receive_data`` and carries
out the actions it gets back, in order. Nothing here touches a socket or a
thread, so the whole protocol is tested in memory. Every timer (LOGIN-DELAY, a
token's expiry, a lock fault's seconds) reads the clock the caller hands in; the
wall clock only stamps the transcript's lines and the fault plan's records, and
makes APOP timestamps unique. The idle timer is the server's: it calls ``timed_out``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.parser
import email.utils
import functools
import hashlib
import hmac
import itertools
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from fakepop._version import __version__
from fakepop.mail.message import StoredMessage
from fakepop.mail.store import Account, MaildropError, MailStore, MessageGone, Snapshot
from fakepop.mail.wire import CRLF, TERMINATOR, dot_stuff, numbered, top_lines
from fakepop.personas import PERSONAS
from fakepop.protocol import fault_actions
from fakepop.protocol.actions import (
    CLOSE,
    STALL,
    START_TLS,
    Action,
    Close,
    Pause,
    Reply,
    Stall,
    Throttle,
    listing,
    multiline,
    status,
)
from fakepop.protocol.buffer import Line, LineBuffer, Overflow
from fakepop.protocol.commands import (
    ARG_MAX_LENGTH,
    AUTHORIZATION,
    BOTH,
    FORBIDDEN_VERBS,
    TRANSACTION,
    VERBS,
    Command,
    CommandError,
    State,
)
from fakepop.protocol.fault_actions import (
    Drop,
    FailCommit,
    Refuse,
    RefuseLogins,
    SkipHandshake,
    Truncate,
)
from fakepop.protocol.fault_plan import FaultPlan, Rule
from fakepop.protocol.quirks import Quirks
from fakepop.protocol.sasl import MECHANISMS, Challenge, Exchange, Failure, Step, Success
from fakepop.protocol.transcript import SessionTranscript
from fakepop.settings import Settings

MASK = "****"
_WORD = re.compile(r"[A-Za-z]+")
COMMAND_MAX_LENGTH = 255  # RFC 2449, section 4: octets in a command line, CRLF included
# RFC 1939, section 7: a password may hold spaces, so PASS takes the rest of the line as written.
VERBATIM = frozenset({"PASS"})
_SPACES = re.compile(" +")
LOCK_POLL = 0.1  # seconds between tries for a maildrop another session holds (lock_wait)
# The CAPA tag that offers a command, where it is not the verb itself.
CAPABILITY_OF = {"PASS": "USER", "AUTH": "SASL"}

# The clock part of APOP timestamps: unique per session, as RFC 1939 requires.
_apop_clock = itertools.count(time.time_ns() // 1000)


def _dated_since(message: StoredMessage, since: float) -> bool:
    """Whether the message's Date is ``since`` or later; True if it has no Date to read."""
    header = email.parser.BytesHeaderParser().parsebytes(b"".join(message.top_chunks(0)))
    try:
        date = email.utils.parsedate_to_datetime(str(header.get("Date", "")))
    except (TypeError, ValueError):  # none, or none a reader could make sense of
        return True
    if date.tzinfo is None:  # RFC 5322's "-0000": the zone is unknown; take UTC
        date = date.replace(tzinfo=datetime.UTC)
    return date.timestamp() >= since


def _unended(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A message's stuffed chunks without the CRLF that ends the last: the glued-dot quirk's."""
    held = b""
    for chunk in chunks:
        if held:
            yield held
        held = chunk
    # The added CRLF is never split: to_crlf appends it, crlf_chunks yields it whole.
    if held := held[: -len(CRLF)]:
        yield held


def apop_timestamp(hostname: str) -> str:
    """A fresh timestamp in RFC 1939's msg-id form ``<process-ID.clock@hostname>``."""
    return f"<{os.getpid()}.{next(_apop_clock)}@{hostname}>"


def apop_digest(timestamp: str, password: str) -> str:
    """The digest a client sends with APOP: MD5 of the timestamp and the password, in hex."""
    data = (timestamp + password).encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _messages(count: int) -> str:
    return f"{count} message" + ("" if count == 1 else "s")


def _ok(text: str = "") -> Reply:
    return Reply(status(True, text))


def _err(text: str, code: str | None = None) -> Reply:
    return Reply(status(False, text, code))


def _said(ok: bool, text: str) -> Reply:
    """A status line with a quirk's text as it is, a bare "+OK" when it is empty."""
    tail = b" " + text.encode("utf-8") if text else b""
    return Reply((b"+OK" if ok else b"-ERR") + tail + CRLF)


# The capabilities fakepop may list (RFC 2449, 2595, 5034, 6856): in a capa-lines quirk, one
# of these that fakepop does not offer at the moment is left out rather than sent as given.
_TAGS = frozenset(
    [
        "TOP",
        "USER",
        "SASL",
        "RESP-CODES",
        "LOGIN-DELAY",
        "PIPELINING",
        "EXPIRE",
        "UIDL",
        "IMPLEMENTATION",
        "STLS",
        "UTF8",
        "LANG",
        "AUTH-RESP-CODE",
    ]
)


def _listed(spec: str, offered: list[str]) -> list[str]:
    """The CAPA lines a capa-lines quirk lists, ``offered`` being fakepop's own."""
    own = {line.split()[0]: line for line in offered}
    lines = []
    for item in (part.strip() for part in spec.split(",")):
        if item in own:
            lines.append(own[item])
        elif item and item not in _TAGS:
            lines.append(item)
    return lines


def _long_uid(uid: str) -> str:
    """``uid`` made longer than the 70 characters RFC 1939 allows, and still unique."""
    return f"{uid}-{hashlib.sha256(uid.encode()).hexdigest()}".ljust(71, "0")


@functools.lru_cache(maxsize=64)
def quirks_of(persona: str | None, specs: tuple[str, ...]) -> Quirks:
    """The quirks of ``persona`` and then ``specs``: a value given in both is the latter's."""
    own = PERSONAS[persona].quirks if persona is not None else ()
    return Quirks.parse((*own, *specs))


Handler = Callable[["Session", tuple[str, ...]], Any]

# The command table: one entry a verb, read by dispatch and by CAPA alike; the
# ``command`` decorators of Session's handlers fill it as the class is made.
COMMANDS: dict[str, Command[Session]] = {}


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
    """Make the decorated session method the handler of the verb ``syntax`` names.

    ``syntax`` is the usage as the RFCs write it, optional arguments in
    brackets: "LIST [msg]", "TOP msg n". ``capability`` is the command's CAPA
    line, or a function of the session that gives it (or None to leave it out).
    """
    verb, *names = syntax.split()
    assert verb in VERBS, f"{verb} is missing from commands.VERBS"
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


class Session:
    """One client's conversation with the server.

    A server sends what ``start`` returns (the greeting), then for the bytes it
    receives calls ``feed`` and ``next_command`` until that returns None,
    sending each command's replies before asking for the next, and carries out
    the actions among them (Close, StartTLS, Pause, ...); before each TLS
    handshake it asks ``tls_handshake``. ``receive_data`` does both at once, for
    tests; ``timed_out`` and ``connection_lost`` say what happened to the
    connection. ``error`` is the store's error that ended the session, if one
    did, for the server to re-raise from ``check()``.

    Args:
        store: the accounts and maildrops the session logs in to.
        settings: what the server offers and its limits.
        transcript: where the lines of the session are recorded.
        clock: seconds since the epoch, for every timer: LOGIN-DELAY, OAuth token
            expiry, a lock fault's seconds.
        stls: offer STLS on this connection (the server has a certificate).
        secure: the connection is already under TLS (the implicit-TLS port).
        faults: the server's fault plan, asked at the connect, the greeting, each
            command, each login and each TLS handshake.
    """

    def __init__(
        self,
        store: MailStore,
        settings: Settings | None = None,
        *,
        transcript: SessionTranscript | None = None,
        clock: Callable[[], float] = time.time,
        stls: bool = False,
        secure: bool = False,
        faults: FaultPlan | None = None,
    ) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.quirks = quirks_of(self.settings.persona, self.settings.quirks)
        self.transcript = transcript if transcript is not None else SessionTranscript(0)
        self.state = State.AUTHORIZATION
        self.closed = False
        self.utf8 = False
        self.language = self.settings.languages[0][0]
        self.account: Account | None = None
        self.timestamp = apop_timestamp(self.settings.hostname) if self.settings.apop else None
        self.stls = stls
        self.secure = secure
        self.faults = faults
        self._awaiting_tls = False  # STLS was answered: input is dropped until the handshake
        self._clock = clock
        limit = self.quirks.session_limit  # counted from the connection, on the session's clock
        self._ends = None if limit is None else clock() + limit
        # SASL responses may be longer than commands (long OAuth tokens).
        longest = max(self.settings.max_line_length, self.settings.max_sasl_length)
        self._buffer = LineBuffer(longest, self._line_limit)
        self._user: str | None = None  # named by USER, waiting for PASS
        self._messages = Snapshot()
        # STAT's, LIST's and UIDL's columns, which quirks may make differ from the messages'.
        self._sizes: Sequence[int] = ()
        self._size_listing = b""
        self._uids: Sequence[str] = ()
        self._uid_listing = b""
        self._deleted: set[int] = set()  # indexes into _messages
        self._retrieved: set[str] = set()  # UIDs RETR sent, for the popped-on-retr quirk
        self._recent = False  # logged in as Gmail's recent:user
        # Kept up to date by DELE and RSET, so STAT costs nothing per message.
        self._live_count = 0
        self._live_octets = 0
        self._highest = 0  # for LAST
        self._bad_commands = 0  # in a row: a good command starts the count again
        # A login waiting for a maildrop another session holds: the account, the method,
        # when to give up (on the session's clock) and the tries left.
        self._lock_wait: tuple[Account, str, float, int] | None = None
        self._auth_failures = 0
        self._exchange: Exchange | None = None  # a SASL exchange under way
        self._offered: set[str] | None = None  # CAPA tags (and SASL mechanisms) last listed
        self.error: OSError | None = None  # the store's, that ended the session

    # --- the interface to a server --------------------------------------------------------

    def start(self) -> list[Action]:
        """The greeting."""
        text = "fakepop ready" if self.quirks.greeting is None else self.quirks.greeting
        if self.timestamp:
            text = f"{text} {self.timestamp}" if text else self.timestamp
        greet = _ok(text) if self.quirks.greeting is None else _said(True, text)
        events = self._unless_fault(
            "connect",
            None,
            lambda: self._unless_fault("greeting", None, lambda: [self._send(greet)]),
        )
        greeting = next((e for e in events if isinstance(e, Reply)), None)
        if greeting is not None and greeting.status.startswith(b"-ERR") and not self.closed:
            events += self._hang_up(reset=False)  # a server that greets with -ERR goes away
        return events

    def receive_data(self, data: bytes) -> list[Action]:
        """Take bytes from the client; return what to send, and whether to close, in order."""
        self.feed(data)
        events: list[Action] = []
        while (more := self.next_command()) is not None:
            events += more
        return events

    def feed(self, data: bytes) -> None:
        """Take bytes from the client without acting on them yet: ``next_command`` does."""
        if not (self.closed or self._awaiting_tls):
            # After STLS, plaintext sent before the handshake is never executed.
            self._buffer.feed(data)

    def next_command(self) -> list[Action] | None:
        """Act on the next complete line received; None if no line is waiting.

        A server that sends one command's replies before it asks for the next
        holds a single reply however many commands a client pipelines: a
        message is read from its store only when its turn to be sent comes.
        """
        if self.closed or self._awaiting_tls:
            return None
        if self.time_left() == 0:  # commands came until the end: they do not extend it
            return self.timed_out()
        act: Callable[[], list[Action]]
        if self._lock_wait is not None:  # try the maildrop again before reading on
            act = functools.partial(self._take, *self._lock_wait[:2])
        else:
            line = self._buffer.next_line()
            if line is None:
                return None
            if line is Overflow.LINE_TOO_LONG:
                self.transcript.add("C", f"<line over {self._buffer.exceeded} octets>")
                return self._too_long()
            assert isinstance(line, Line)
            act = functools.partial(self._line, line)
        try:
            return act()
        except OSError as e:  # the session does no I/O but the store's
            return self._store_failed(e)

    @property
    def partial_line(self) -> bool:
        """The client has begun a line and not ended it: the server bounds how long it may take."""
        return not self.closed and self._buffer.partial

    def tls_started(self) -> None:
        """The STLS handshake is done: start afresh, forgetting all the client said before.

        RFC 2595, section 4: the server must discard what it learnt from the
        client before TLS, such as a user name, and the client must ask CAPA again.
        """
        self._awaiting_tls = False
        self.secure = True
        self._user = None
        self._offered = None
        self.utf8 = False
        self.language = self.settings.languages[0][0]
        self._buffer.clear()

    def tls_handshake(self) -> list[Action]:
        """Asked before each TLS handshake (implicit TLS, or after STLS): what comes first.

        Nothing, or a Pause, and the server runs the handshake; else the actions
        that take its place and end the connection (a fault of the plan's).
        """
        rule = self._fired("tls-handshake", None)
        if rule is None:
            return []
        actions = fault_actions.instead_of_handshake(rule)
        if not isinstance(actions[-1], Pause):
            self.connection_lost()
        return actions

    def time_left(self) -> float | None:
        """Seconds until the session-limit quirk ends the session; None without it.

        The server waits for the client no longer than this, then calls ``timed_out``.
        """
        return None if self._ends is None else max(0.0, self._ends - self._clock())

    def timed_out(self) -> list[Action]:
        """The client was idle for ``settings.idle_timeout``, or the session-limit quirk's
        time is up: close, deleting nothing.

        RFC 1939 would close without a word; like Dovecot, the client is told why.
        """
        if self.closed:
            return []
        text = "Session time limit reached" if self.time_left() == 0 else None
        events = [self._send(_err(text or "Autologout: idle for too long")), self._close()]
        self.connection_lost()
        return events

    def connection_lost(self) -> None:
        """The connection is gone: unlock the maildrop without applying deletions."""
        self.closed = True
        if self.account is not None:
            if self._deleted and self.error is None:  # not the client's doing
                self.transcript.violate(
                    f"the session ended without QUIT after marking {len(self._deleted)}"
                    " message(s) deleted: the deletions were not applied"
                )
            self.account.mailbox.release(self)
            self.account = None
        self.transcript.end()

    # --- dispatch ------------------------------------------------------------------------

    def _line_limit(self, start: bytes) -> int:
        """The longest line allowed: an AUTH line or SASL response may be longer than a command."""
        if self._exchange is not None or start[:5].upper() == b"AUTH ":
            return self.settings.max_sasl_length
        return self.settings.max_line_length

    def _too_long(self) -> list[Action]:
        """Refuse a line over its limit: a SASL response ends its exchange, a command is bad."""
        limit = self._buffer.exceeded
        if self._exchange is not None:
            self._exchange = None
            return [self._send(_err(f"SASL response over {limit} octets"))]
        if self.settings.long_line_closes:  # as Dovecot: the rest of the line is not waited for
            text = f"Line too long: the limit is {limit} octets, closing the connection"
            events: list[Action] = [self._send(_err(text)), self._close()]
            self.connection_lost()
            return events
        return self._bad(f"Line too long: the limit is {limit} octets")

    def _line(self, line: Line) -> list[Action]:
        raw = line.data
        if self._exchange is not None:
            self.transcript.add("C", raw.decode("ascii", "replace"), MASK)
            return self._sasl_response(raw)
        try:
            text = raw.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "replace")
            valid = False
        verb, space, rest = text.partition(" ")
        # Keywords are ASCII (RFC 2449, section 3): str.upper() would map "\u017ftat" to "STAT".
        cmd = COMMANDS.get(verb.upper()) if verb.isascii() else None
        # Mask by the leading word, whatever follows it: "PASS\tsecret" is no command, but a secret.
        masking = cmd
        if masking is None:
            word = _WORD.match(text)
            masking = COMMANDS.get(word[0].upper()) if word else None
        masked = None
        if masking is not None and masking.mask is not None and len(text) > len(masking.verb):
            masked = f"{masking.verb} {masking.mask(text[len(masking.verb) + 1 :])}"
        self.transcript.add("C", text, masked)
        if verb.upper() in FORBIDDEN_VERBS or verb.endswith(":"):
            return self._forbidden()
        self._conformance(line, cmd)

        if b"\0" in raw or b"\r" in raw:
            return self._bad("Command contains a NUL or a bare CR")
        if not valid:
            return self._bad("Command is not valid UTF-8")
        if not verb:
            return self._bad("Empty command" if not rest else "Command starts with a space")
        if cmd is None or not cmd.available(self):
            # Only the first word: after a tab may come a password meant for PASS.
            return self._bad(f"Unknown command: {self._echo((verb.split(None, 1) or [''])[0])}")
        if self.state not in cmd.states:
            where = "before login" if self.state is State.AUTHORIZATION else "after login"
            self.transcript.violate(f"{cmd.verb} sent {where}, in the wrong state")
            return self._bad(f"{cmd.verb} is not allowed {where}")
        try:
            args = self._arguments(cmd, bool(space), rest)
        except CommandError as e:
            return self._bad(e.text)
        # USER and APOP name the account before the session knows it: rules may match on it.
        named = args[0].strip().split(" ")[0] if cmd.verb in ("USER", "APOP") and args else None
        return self._unless_fault(cmd.verb, named, lambda: self._run(cmd.handler, args))

    def _arguments(self, cmd: Command[Session], space: bool, rest: str) -> tuple[str, ...]:
        """The arguments of ``cmd`` in ``rest``, the line after the verb and ``space``.

        As ``settings.argument_syntax`` says: "strict" refuses what RFC 1939, section 3,
        does not allow, with a CommandError naming it (noted for strict mode too);
        "dovecot" reads the line as Dovecot 2.3 does.
        """
        dovecot = self.settings.argument_syntax == "dovecot"
        if cmd.rest:
            args: tuple[str, ...] = (rest,) if rest else ()
            if not dovecot and cmd.verb not in VERBATIM:
                self._check_spaces(cmd, space, rest)
        elif dovecot:
            if cmd.max_args == 0:
                return ()  # Dovecot ignores them
            words = _SPACES.split(rest.lstrip(" ")) if rest.strip(" ") else []
            if words and not words[-1]:
                raise CommandError("Noise after the last argument: a space ends the line")
            args = tuple(words)
        else:
            self._check_spaces(cmd, space, rest)
            args = tuple(rest.split(" ")) if rest else ()
            if args and cmd.max_args == 0:
                self.transcript.violate(f"{cmd.verb} sent with arguments: it takes none")
        if not cmd.rest and any(len(a) > ARG_MAX_LENGTH for a in args):
            raise CommandError(f"Argument too long: the limit is {ARG_MAX_LENGTH} characters")
        if not cmd.min_args <= len(args) <= cmd.max_args:
            raise CommandError(f"Usage: {cmd.syntax}")
        return args

    def _check_spaces(self, cmd: Command[Session], space: bool, rest: str) -> None:
        """Refuse a space RFC 1939, section 3, does not allow: one separates each word."""
        if space and (not rest or rest.endswith(" ")):
            where = "a space at the end of the line"
        elif rest.startswith(" ") or "  " in rest:
            where = "two spaces in a row"
        else:
            return
        self.transcript.violate(
            f"{cmd.verb} line with {where}: RFC 1939, section 3, separates words by one space"
        )
        raise CommandError(
            f"{where[0].upper()}{where[1:]}: words are separated by one space (RFC 1939, section 3)"
        )

    def _conformance(self, line: Line, cmd: Command[Session] | None) -> None:
        """Note what the client does against the RFCs, for strict mode; changes no reply."""
        violate = self.transcript.violate
        if not line.crlf:
            violate("a command line ended in a bare LF, not CRLF")
        if b"\r" in line.data:
            violate("a command line holds a bare CR")
        if cmd is None:
            return
        if cmd.verb != "AUTH" and len(line.data) + 2 > COMMAND_MAX_LENGTH:
            violate(f"{cmd.verb} line of {len(line.data) + 2} octets, over RFC 2449's 255")
        tag = CAPABILITY_OF.get(cmd.verb, cmd.verb if cmd.capability else None)
        if tag is not None and self._offered is not None and tag not in self._offered:
            violate(f"{cmd.verb} used, but the CAPA answer did not offer {tag}")

    def _run(
        self, handler: Callable[[Session, tuple[str, ...]], object], args: tuple[str, ...]
    ) -> list[Action]:
        try:
            result = handler(self, args)
        except CommandError as e:
            if e.bad:
                return self._bad(e.text)
            return [self._send(_err(e.text, e.code))]
        self._bad_commands = 0
        if isinstance(result, Reply):
            return [self._send(result)]
        assert isinstance(result, list)
        return result

    # --- faults ----------------------------------------------------------------------------

    def _unless_fault(
        self, event: str, user: str | None, run: Callable[[], list[Action]]
    ) -> list[Action]:
        """``run()``, unless a rule of the fault plan fires at ``event``: then as it decides.

        An event is what happened (a command's verb, "connect", "greeting", "login");
        what comes back are the actions the server is to carry out.
        """
        who = user or (self.account.name if self.account else self._user)
        rule = self._fired(event, who)
        if rule is None:
            return run()
        return self._fault(rule, run, who)

    def _fired(self, event: str, user: str | None) -> Rule | None:
        """The rule of the fault plan that fires at ``event``, noted in the transcript."""
        if self.faults is None:
            return None
        rule = self.faults.check(event, session=self.transcript.session_id, user=user)
        if rule is not None:
            self.transcript.fault(rule.describe())
        return rule

    def _fault(self, rule: Rule, run: Callable[[], list[Action]], who: str | None) -> list[Action]:
        """Carry out what ``rule`` decides, ``run()`` being what the session would have done."""
        fault = fault_actions.decide(rule)
        if isinstance(fault, Refuse):
            return [self._send(_err(fault.text, fault.code))]
        if isinstance(fault, Stall):
            self.closed = True
            return [fault]
        if isinstance(fault, SkipHandshake):
            self.closed = True
            return [self._send(_ok("Begin TLS negotiation")), STALL]
        if isinstance(fault, FailCommit):
            return self._quit(fail=fault)
        if isinstance(fault, RefuseLogins):
            account = self.store.get(fault.user or who or "")
            if account is not None:
                # Counted on this session's clock, as LOGIN-DELAY is.
                until = None if fault.seconds is None else self._clock() + fault.seconds
                account.mailbox.refuse_logins(fault.attempts, until=until)
            return run()
        if isinstance(fault, Pause | Throttle):  # the server slows down what follows
            return [fault, *run()]
        if isinstance(fault, Drop):
            actions = [] if fault.at == "instead" else run()
            replies = [a for a in actions if isinstance(a, Reply)]
            if fault.at == "during":
                replies = [fault_actions.cut(replies, fault.after_bytes)]
                self.transcript.add("*", f"sent at most the first {fault.after_bytes} octets")
            return [*replies, *self._hang_up(reset=fault.reset)]
        actions = [a for a in run() if not isinstance(a, Close)]
        replies = [a for a in actions if isinstance(a, Reply)]
        if not replies:
            return actions
        last = replies[-1]
        if isinstance(fault, Truncate):
            cut = fault_actions.unterminated(last, fault.after_bytes)
            body = "" if fault.after_bytes is None else f" after {fault.after_bytes} octets"
            self.transcript.add("*", f"the body was cut{body}: no terminating line")
            ending = [STALL] if fault.stall else self._hang_up(reset=False)
            self.closed = True
            return [*replies[:-1], cut, *ending]
        changed = fault.change(last)
        if changed.status != last.status:
            self.transcript.add("*", f"sent instead: {changed.status[:80]!r}")
        return [changed if a is last else a for a in actions] + ([CLOSE] if self.closed else [])

    def _store_failed(self, error: OSError, outcome: str = "") -> list[Action]:
        """The store failed under a command: say so (RFC 3206), end the session, keep the error.

        The server re-raises ``error`` from ``check()``: it is fakepop's failure
        (or the disk's), never the client's.
        """
        self.error = error
        self.transcript.add("*", f"store error: {error!r}")
        reason = error.strerror or type(error).__name__
        text = f"The maildrop cannot be used now ({reason}){outcome}, try again later"
        reply = _err(text, "SYS/TEMP")
        events = [self._send(reply), self._close()]
        self.connection_lost()
        return events

    def _hang_up(self, reset: bool) -> list[Action]:
        """Close as if the server went away: the maildrop is released, nothing committed."""
        self.closed = True
        self.connection_lost()
        return [Close(reset=reset)]

    def _bad(self, text: str) -> list[Action]:
        """Answer a client's mistake; at the budget's end (bad commands in a row), say so and close.

        As Dovecot, the budget before login is smaller: a client that cannot log in
        gets few tries at guessing commands.
        """
        self._bad_commands += 1
        settings = self.settings
        before = self.state is State.AUTHORIZATION
        limit = settings.max_bad_commands_before_login if before else settings.max_bad_commands
        if self._bad_commands >= limit:
            reply = self._send(_err("Too many bad commands, closing the connection"))
            events: list[Action] = [reply, self._close()]
            self.connection_lost()
            return events
        return [self._send(_err(text))]

    def _forbidden(self) -> list[Action]:
        """Close at once on an HTTP request or header, running nothing the client sent after."""
        self.transcript.violate("an HTTP request or header line, sent to a POP3 server")
        reply = self._send(_err("This is a POP3 server, not HTTP: closing the connection"))
        events: list[Action] = [reply, self._close()]
        self.connection_lost()
        return events

    def _send(self, reply: Reply) -> Reply:
        """Record a reply in the transcript on its way out."""
        self.transcript.add("S", reply.status[:-2].decode("utf-8", "replace"))
        if reply.summary is not None:
            self.transcript.add("S", reply.summary)
        elif reply.body:
            for text in b"".join(reply.body).split(b"\r\n")[:-1]:
                self.transcript.add("S", text.decode("utf-8", "replace"))
        return reply

    def _close(self) -> Action:
        self.closed = True
        return CLOSE

    def _echo(self, text: str) -> str:
        """Client text quoted in a reply: short, and ASCII unless UTF8 mode is on."""
        text = text[:ARG_MAX_LENGTH]
        return text if self.utf8 else text.encode("ascii", "backslashreplace").decode("ascii")

    # --- helpers for the handlers -------------------------------------------------------

    def _message(self, arg: str) -> tuple[int, StoredMessage]:
        """The message a client's argument names, as (number, message)."""
        if not (arg.isascii() and arg.isdigit()):
            raise CommandError(f"Invalid message number: {self._echo(arg)}", bad=True)
        number = int(arg)
        if not 1 <= number <= len(self._messages):
            count = len(self._messages)
            raise CommandError(f"No such message: {arg} (the maildrop has {count})")
        if number - 1 in self._deleted:
            self.transcript.violate(f"message {number} used after it was marked deleted")
            raise CommandError(f"Message {number} is deleted")
        return number, self._messages[number - 1]

    def _read(self, number: int, chunks: Callable[[], Iterable[bytes]]) -> Iterable[bytes]:
        """A message's content to send, noted as retrieved.

        A message another program deleted is refused and the session goes on; any
        other error of the store's ends it (``_store_failed``), even mid-message.
        """
        try:
            body = self._guarded(chunks())
        except MessageGone:
            raise CommandError(f"Message {number} was deleted by another program") from None
        assert self.account is not None
        self.account.mailbox.record_retrieval(
            self.transcript.session_id, self._messages[number - 1].uid
        )
        return body

    def _guarded(self, body: Iterable[bytes]) -> Iterator[bytes]:
        """``body``, noting a store error met while it is sent, which can only end the session.

        A reply under way cannot turn into -ERR: the server closes the
        connection, and keeps ``self.error`` for ``check()``.
        """
        try:
            yield from body
        except OSError as e:
            self.error = e
            self.transcript.add("*", f"store error: {e!r}")
            raise

    def _count_live(self) -> None:
        sizes = self._sizes
        total = self._messages.octets if sizes is self._messages.sizes else sum(sizes)
        self._live_count = len(sizes) - len(self._deleted)
        self._live_octets = total - sum(sizes[i] for i in self._deleted)

    def _columns(self) -> None:
        """STAT's, LIST's and UIDL's values for the maildrop just opened, as the quirks say.

        Without quirks they are the snapshot's, made once for every session that shares it.
        """
        messages, quirks = self._messages, self.quirks
        sizes: Sequence[int] = messages.sizes
        if quirks.sizes_lf:  # as the file on disk holds it, LF line ends
            sizes = [size - m.read().count(CRLF) for size, m in zip(sizes, messages, strict=True)]
        if quirks.glued_dot:  # the line end fakepop added is not sent: not counted
            added = 1 if quirks.sizes_lf else len(CRLF)
            sizes = [s - added if m.unended else s for s, m in zip(sizes, messages, strict=True)]
        if quirks.sizes_kib:
            sizes = [-(-size // 1024) * 1024 for size in sizes]
        self._sizes = sizes
        self._size_listing = messages.size_listing if sizes is messages.sizes else numbered(sizes)
        uids = [m.uid for m in messages]
        if quirks.uidl_per_session:
            stamp = next(_apop_clock)  # unique in the process, and across restarts
            uids = [f"{uid}.{stamp}" for uid in uids]
        if quirks.uidl_long:  # RFC 1939 allows 70 characters
            uids = [_long_uid(uid) for uid in uids]
        if quirks.uidl_duplicate:  # each even-numbered message takes the one before's
            uids = [uids[i - 1] if i % 2 else uid for i, uid in enumerate(uids)]
        if quirks.uidl_blank:
            uids = [""] * len(uids)
        changed = quirks.uidl_per_session or quirks.uidl_long or quirks.uidl_duplicate
        self._uids = uids
        self._uid_listing = numbered(uids) if changed or quirks.uidl_blank else messages.uid_listing

    def _seen(self, account: Account) -> None:
        """Leave out of the session what Gmail's quirks hide: popped mail, mail older than
        recent mode shows, all but the oldest."""
        quirks, messages = self.quirks, self._messages
        if quirks.popped_on_retr and not self._recent and account.mailbox.popped:
            popped = account.mailbox.popped
            messages = Snapshot(m for m in messages if m.uid not in popped)
        if quirks.recent_days is not None and self._recent:
            since = self._clock() - quirks.recent_days * 86400
            messages = Snapshot(m for m in messages if _dated_since(m, since))
        if quirks.oldest is not None and len(messages) > quirks.oldest:
            messages = Snapshot(messages[: quirks.oldest])
        self._messages = messages

    def _ending(self) -> tuple[bytes]:
        """What ends a message's multi-line reply: the dot, after a blank line for qmail."""
        return (CRLF + TERMINATOR,) if self.quirks.blank_before_dot else (TERMINATOR,)

    def _quirky_top(self, message: StoredMessage, lines: int) -> tuple[bytes]:
        """TOP's body as the quirks make it: the whole message, or cut after N octets."""
        wire = message.read()
        if not self.quirks.top_ignores_lines:
            wire = b"".join(top_lines((wire,), lines))
        limit = self.quirks.top_bytes
        if limit is not None and len(wire) > limit:
            wire = wire[:limit]  # then ended as a line, so that the dot stands alone
            wire += b"\n" if wire.endswith(b"\r") else CRLF
        return (dot_stuff(wire),)

    def _text(self, quirk: str | None, text: str) -> Reply:
        """+OK with ``text``, or the quirk's text in its place."""
        return Reply(self._status_line(quirk, text))

    def _status_line(self, quirk: str | None, text: str) -> bytes:
        """The +OK status line with ``text``, or the quirk's text in its place."""
        return status(True, text) if quirk is None else _said(True, quirk).status

    def _listing(self, status_line: bytes, whole: bytes) -> Reply:
        """LIST's or UIDL's reply: ``whole``, a line per message, less the deleted ones."""
        if self._deleted:
            lines = whole.splitlines(keepends=True)
            whole = b"".join([line for i, line in enumerate(lines) if i not in self._deleted])
        reply = listing("", whole, self._live_count)
        return Reply(status_line, reply.body, reply.summary)

    def _login(
        self, name: str, password: str | None, verify: Callable[[Account], bool], method: str
    ) -> list[Action]:
        self._user = None
        account = self.admit(name, password)
        if account is None:
            account = self.resolve(name)
            if account is None or not verify(account):
                return self._auth_failed("Invalid user name or password")
        return self._enter(account, method)

    def _enter(self, account: Account, method: str) -> list[Action]:
        """Lock the maildrop and move to the transaction state; ``method`` is how we got here."""
        limit = self.quirks.login_limit
        if limit is not None and account.mailbox.logins >= limit:
            return self._auth_failed(f"Too many logins ({limit}), try again later")
        return self._unless_fault("login", account.name, lambda: self._take(account, method))

    def _take(self, account: Account, method: str) -> list[Action]:
        """Lock the maildrop and enter TRANSACTION; on [IN-USE], wait (``lock_wait``) and retry.

        The wait is a Pause between tries, so the server stays responsive to a stop; after
        [IN-USE], with ``in_use_closes``, the connection is closed, as Dovecot does.
        """
        now = self._clock()
        try:
            self._messages = self.store.open(account, self, now, self.settings.login_delay)
        except MaildropError as e:
            wait = self.settings.lock_wait
            if e.code == "IN-USE" and wait > 0:
                if self._lock_wait is None:
                    self._lock_wait = (account, method, now + wait, math.ceil(wait / LOCK_POLL))
                _, _, until, tries = self._lock_wait
                if now < until and tries > 0:
                    self._lock_wait = (account, method, until, tries - 1)
                    return [Pause(min(LOCK_POLL, until - now))]
            self._lock_wait = None
            busy = self.quirks.busy_text
            refusal = _err(e.text, e.code) if busy is None else _said(False, busy)
            events: list[Action] = [self._send(refusal)]
            if e.code == "IN-USE" and self.settings.in_use_closes:
                events.append(self._close())
                self.connection_lost()
            return events
        self._lock_wait = None
        self.account = account
        self.state = State.TRANSACTION
        self.transcript.logged_in(account.name, method)
        if self.quirks.login_limit is not None:
            account.mailbox.logins += 1
        self._seen(account)
        self._columns()
        self._count_live()
        name = self._echo(account.name)
        count, octets = self._live_count, self._live_octets
        text = f"{name}'s maildrop has {_messages(count)} ({octets} octets)"
        return [self._send(self._text(self.quirks.login_text, text))]

    def _auth_failed(self, text: str, code: str = "AUTH") -> list[Action]:
        """Refuse a login: after the configured delay, and past the limit, hang up."""
        self._auth_failures += 1
        events: list[Action] = []
        if self.settings.auth_failure_delay:
            events.append(Pause(self.settings.auth_failure_delay))
        limit = self.settings.max_auth_failures
        if limit is not None and self._auth_failures >= limit:
            text = "Too many authentication failures, closing the connection"
            events += [self._send(_err(text, code)), self._close()]
            self.connection_lost()
            return events
        failure = self.quirks.login_failure_text
        events.append(self._send(_err(text, code) if failure is None else _said(False, failure)))
        if self.quirks.drop_after_login_failure:
            events.append(self._close())
            self.connection_lost()
        return events

    # --- what SASL mechanisms ask of the session (fakepop.protocol.sasl.Accounts) ---------

    def resolve(self, name: str) -> Account | None:
        settings = self.settings
        self._recent = settings.recent_prefix and name.startswith("recent:")
        return self.store.resolve(name, settings.domains, settings.recent_prefix)

    def now(self) -> float:
        return self._clock()

    def challenge_stamp(self) -> str:
        return apop_timestamp(self.settings.hostname)

    def token_owner(self, token: str) -> Account | None:
        return self.store.token_owner(token)

    def admit(self, name: str, password: str | None) -> Account | None:
        """With ``any_login``, the account ``name`` names, made on its first login; else None.

        A name that cannot be an account (a Maildir cannot hold "a/b") is noted in the
        transcript and gets None, so the login fails as a wrong password's does.
        """
        if not self.settings.any_login:
            return None
        account = self.resolve(name)
        if account is not None:
            return account
        try:
            return self.store.first_login(name, password or "")
        except ValueError as e:
            self.transcript.add("*", f"any_login made no account: {e}")
            return None

    def _mechanisms(self) -> list[str]:
        """The SASL mechanisms on offer now: plaintext ones wait for TLS where it is required."""
        plaintext = self._plaintext_allowed()
        return [m for m in self.settings.sasl if plaintext or not MECHANISMS[m].plaintext]

    def _sasl_response(self, raw: bytes) -> list[Action]:
        """A line of an AUTH exchange: "*" cancels (RFC 5034, section 4), else base64."""
        assert self._exchange is not None
        if raw.strip() == b"*":
            self._exchange = None
            return [self._send(_err("Authentication cancelled"))]
        try:
            data = base64.b64decode(raw, validate=True)
        except binascii.Error:
            self._exchange = None
            return [self._send(_err("Invalid base64 in SASL response"))]
        return self._sasl_step(self._exchange.respond(data))

    def _sasl_step(self, step: Step) -> list[Action]:
        exchange = self._exchange
        if isinstance(step, Challenge):
            if not step.data and self.quirks.sasl_bare_plus:
                return [self._send(Reply(b"+\r\n"))]
            challenge = b"+ " + base64.b64encode(step.data) + b"\r\n"
            return [self._send(Reply(challenge))]
        self._exchange = None
        if isinstance(step, Success):
            assert exchange is not None
            return self._enter(step.account, f"AUTH {exchange.name}")
        assert isinstance(step, Failure)
        return self._auth_failed(step.text, step.code)

    def _plaintext_login(self, how: str) -> None:
        if not self.secure and self._offered is not None and "STLS" in self._offered:
            self.transcript.violate(f"{how}: a plaintext login on a connection that offered STLS")

    def _plaintext_allowed(self) -> bool:
        return self.secure or not self.settings.require_tls

    def _check_tls(self) -> None:
        if not self._plaintext_allowed():
            raise CommandError(
                "Plaintext authentication needs TLS: send STLS first, or use the TLS port", "AUTH"
            )

    def _check_utf8(self, text: str, what: str) -> None:
        if not text.isascii() and not self.utf8:
            raise CommandError(f"Non-ASCII {what} need the UTF8 command first", "UTF8")

    def _expire(self) -> str:
        account = self.account
        if account is not None and account.expire is not None:
            days: int | None = account.expire
        else:
            days = self.settings.expire
        line = "EXPIRE " + ("NEVER" if days is None else str(days))
        if account is None and any(a.expire is not None for a in self.store):
            line += " USER"
        return line

    def _login_delay(self) -> str | None:
        account = self.account
        per_user = any(a.login_delay is not None for a in self.store)
        if account is None:
            if not (self.settings.login_delay or per_user):
                return None
            return f"LOGIN-DELAY {self.settings.login_delay or 0}" + (" USER" if per_user else "")
        delay = account.login_delay
        if delay is None:
            delay = self.settings.login_delay
        return f"LOGIN-DELAY {delay}" if delay else None

    # --- the commands --------------------------------------------------------------------

    @command(
        "USER name",
        AUTHORIZATION,
        rest=True,
        capability=lambda s: "USER" if s._plaintext_allowed() else None,
        available=lambda s: s.settings.user_login,
    )
    def do_user(self, args: tuple[str, ...]) -> Reply:
        self._check_tls()
        name = args[0]  # as written: a space is part of the name (strict syntax refuses it)
        self._check_utf8(name, "user names")
        self._user = name
        return self._text(self.quirks.user_text, "Send PASS")

    @command(
        "PASS string",
        AUTHORIZATION,
        rest=True,
        available=lambda s: s.settings.user_login,
        mask=lambda _: MASK,
    )
    def do_pass(self, args: tuple[str, ...]) -> list[Action]:
        self._check_tls()
        if self._user is None:
            self.transcript.violate("PASS without USER")
            raise CommandError("Send USER first", bad=True)
        self._plaintext_login("PASS")
        password = args[0]
        self._check_utf8(password, "passwords")
        given = password.encode("utf-8")
        return self._login(
            self._user,
            password,
            lambda a: hmac.compare_digest(a.password.encode("utf-8"), given),
            "USER",
        )

    @command(
        "APOP name digest",
        AUTHORIZATION,
        rest=True,
        available=lambda s: s.timestamp is not None,
        mask=lambda rest: f"{rest.strip().rpartition(' ')[0]} {MASK}",  # as do_apop splits
    )
    def do_apop(self, args: tuple[str, ...]) -> list[Action]:
        name, _, digest = args[0].strip().rpartition(" ")
        if not name or len(digest) != 32 or not all(c in "0123456789abcdefABCDEF" for c in digest):
            raise CommandError("Usage: APOP name digest (32 hex digits)", bad=True)
        self._check_tls()
        self._check_utf8(name, "user names")
        timestamp = self.timestamp or ""
        given = digest.lower().encode("ascii")
        return self._login(
            name,
            None,
            lambda a: hmac.compare_digest(apop_digest(timestamp, a.password).encode(), given),
            "APOP",
        )

    @command("QUIT", BOTH)
    def do_quit(self, args: tuple[str, ...]) -> list[Action]:
        return self._quit()

    def _quit(self, fail: FailCommit | None = None) -> list[Action]:
        """Sign off; from TRANSACTION, commit the deletions (RFC 1939's UPDATE state).

        With ``fail`` (a commit-fail fault) the commit removes none or only some of
        the marked messages and the reply is an error, as a failing store's would be.
        """
        account = self.account
        if account is None:
            self.transcript.quit = True
            reply = self._text(self.quirks.quit_text, "fakepop signing off")
            return [self._send(reply), self._close()]
        self.state = State.UPDATE
        marked = [self._messages[i].uid for i in sorted(self._deleted)]
        removed = marked
        if fail is not None:
            remove = fail.remove
            count = (
                remove if isinstance(remove, int) else 0 if remove == "none" else len(marked) // 2
            )
            removed = marked[:count]
        try:
            account.mailbox.release(self, delete=set(removed))
        except OSError as e:  # the commit is all or nothing
            return self._store_failed(e, ": no message was deleted")
        self.account = None
        if self.quirks.popped_on_retr:
            account.mailbox.popped.update(self._retrieved.difference(removed))
        if fail is not None:
            text = f"Some deleted messages not removed ({len(removed)} of {len(marked)} removed)"
            return [self._send(_err(text, fail.code)), self._close()]
        left = len(self._messages) - len(removed)
        self.transcript.quit = True
        reply = self._text(
            self.quirks.quit_text, f"fakepop signing off ({len(removed)} deleted, {left} left)"
        )
        return [self._send(reply), self._close()]

    @command("STAT", TRANSACTION)
    def do_stat(self, args: tuple[str, ...]) -> Reply:
        # exactly "+OK nn mm": clients parse it
        return _ok(f"{self._live_count} {self._live_octets}")

    @command("LIST [msg]", TRANSACTION)
    def do_list(self, args: tuple[str, ...]) -> Reply:
        if args:
            number, _ = self._message(args[0])
            return _ok(f"{number} {self._sizes[number - 1]}")
        text = f"{_messages(self._live_count)} ({self._live_octets} octets)"
        return self._listing(self._status_line(self.quirks.list_text, text), self._size_listing)

    @command("RETR msg", TRANSACTION)
    def do_retr(self, args: tuple[str, ...]) -> Reply:
        number, message = self._message(args[0])
        self._highest = max(self._highest, number)
        self._retrieved.add(message.uid)
        body = self._read(number, lambda: message.chunks())
        if self.quirks.glued_dot and message.unended:
            body = _unended(body)
        octets = str(self._sizes[number - 1])
        quirk = self.quirks.retr_text
        return Reply(
            self._status_line(
                None if quirk is None else quirk.replace("{octets}", octets), f"{octets} octets"
            ),
            itertools.chain(body, self._ending()),
            f"<message {number}: {message.size} octets>",
        )

    @command("TOP msg n", TRANSACTION, capability="TOP")
    def do_top(self, args: tuple[str, ...]) -> Reply:
        number, message = self._message(args[0])
        count = args[1]
        if not (count.isascii() and count.isdigit()):
            raise CommandError(f"Invalid line count: {self._echo(count)}", bad=True)
        self._highest = max(self._highest, number)
        quirks = self.quirks
        if quirks.top_bytes is None and not quirks.top_ignores_lines:
            body = self._read(number, lambda: message.top_chunks(int(count)))
        else:
            body = self._read(number, lambda: self._quirky_top(message, int(count)))
        return Reply(
            self._status_line(quirks.top_text, "top of message follows"),
            itertools.chain(body, self._ending()),
            f"<top of message {number}, {count} lines>",
        )

    @command("DELE msg", TRANSACTION)
    def do_dele(self, args: tuple[str, ...]) -> Reply:
        number, _ = self._message(args[0])
        self._deleted.add(number - 1)
        self._live_count -= 1
        self._live_octets -= self._sizes[number - 1]
        self._highest = max(self._highest, number)
        return self._text(self.quirks.dele_text, f"Message {number} deleted")

    @command("NOOP", TRANSACTION)
    def do_noop(self, args: tuple[str, ...]) -> Reply:
        return self._text(self.quirks.noop_text, "")

    @command("RSET", TRANSACTION)
    def do_rset(self, args: tuple[str, ...]) -> Reply:
        self._deleted.clear()
        self._highest = 0
        self._count_live()
        text = f"maildrop has {_messages(self._live_count)} ({self._live_octets} octets)"
        return self._text(self.quirks.rset_text, text)

    @command("UIDL [msg]", TRANSACTION, capability="UIDL", available=lambda s: not s.quirks.no_uidl)
    def do_uidl(self, args: tuple[str, ...]) -> Reply:
        if args:
            number, _ = self._message(args[0])
            return _ok(f"{number} {self._uids[number - 1]}")
        text = self._status_line(self.quirks.uidl_text, "unique-id listing follows")
        return self._listing(text, self._uid_listing)

    @command("LAST", TRANSACTION, available=lambda s: s.settings.last)
    def do_last(self, args: tuple[str, ...]) -> Reply:
        return _ok(str(self._highest))

    @command("CAPA", BOTH, available=lambda s: not s.quirks.no_capa)
    def do_capa(self, args: tuple[str, ...]) -> Reply:
        lines = [line for c in COMMANDS.values() if c.capability and (line := c.capability(self))]
        lines += ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", self._expire()]
        login_delay = self._login_delay()
        if login_delay:
            lines.append(login_delay)
        lines.append(f"IMPLEMENTATION fakepop {__version__}")
        if self.quirks.capa_lines is not None:
            lines = _listed(self.quirks.capa_lines, lines)
        if self.quirks.capa_by_state:  # as Gmail: what is of use in the state the session is in
            unused = "PIPELINING" if self.state is State.AUTHORIZATION else "SASL"
            lines = [line for line in lines if line.split()[0] != unused]
        offered = {line.split()[0] for line in lines}
        self._offered = offered | (set(self._mechanisms()) if "SASL" in offered else set())
        reply = multiline("Capability list follows", lines)
        if self.quirks.capa_bare_ok:
            return Reply(b"+OK\r\n", reply.body, reply.summary)
        if self.quirks.capa_text is not None:
            return Reply(self._status_line(self.quirks.capa_text, ""), reply.body, reply.summary)
        return reply

    @command(
        "AUTH [mechanism] [initial-response]",
        AUTHORIZATION,
        rest=True,
        capability=lambda s: " ".join(["SASL", *s._mechanisms()]) if s._mechanisms() else None,
        available=lambda s: bool(s.settings.sasl),
        mask=lambda rest: f"{rest.split()[0]} {MASK}" if len(rest.split()) > 1 else rest,
    )
    def do_auth(self, args: tuple[str, ...]) -> list[Action] | Reply:
        words = args[0].split() if args else []
        if not words:  # a probe some clients send: list the mechanisms
            return multiline("Supported SASL mechanisms follow", self._mechanisms())
        if len(words) > 2:
            raise CommandError("Usage: AUTH mechanism [initial-response]", bad=True)
        name = words[0].upper()
        if name not in self.settings.sasl:
            raise CommandError(f"Unsupported SASL mechanism: {self._echo(words[0])}")
        exchange = MECHANISMS[name](self)
        if exchange.plaintext:
            self._check_tls()
            self._plaintext_login(f"AUTH {name}")
        if self._offered is not None and name not in self._offered:
            self.transcript.violate(f"AUTH {name}, a mechanism CAPA did not offer")
        if len(words) == 2 and name == "XOAUTH2" and self.quirks.xoauth2_two_step:
            return self._auth_failed("Send AUTH XOAUTH2 alone, then the token after the +")
        initial = None
        if len(words) == 2:
            try:  # RFC 5034, section 4: "=" is an empty initial response
                initial = b"" if words[1] == "=" else base64.b64decode(words[1], validate=True)
            except ValueError:  # binascii.Error, or text that is not even ASCII
                raise CommandError("Invalid base64 in the initial response") from None
        self._exchange = exchange
        return self._sasl_step(exchange.start(initial))

    @command(
        "STLS",
        AUTHORIZATION,
        # RFC 2595, section 4: listed only where STLS is permitted, before login and TLS.
        capability=lambda s: None if s.secure or s.state is not State.AUTHORIZATION else "STLS",
        available=lambda s: s.stls or s.secure,  # under TLS it answers "already active"
    )
    def do_stls(self, args: tuple[str, ...]) -> list[Action]:
        if self.secure:
            raise CommandError("TLS is already active")
        self._awaiting_tls = True
        self._buffer.clear()
        return [self._send(_ok("Begin TLS negotiation")), START_TLS]

    @command(
        "UTF8",
        AUTHORIZATION,
        # RFC 6856, section 2: "USER" promises UTF-8 in USER and PASS, so only where they are.
        capability=lambda s: (
            "UTF8 USER" if s.settings.user_login and s._plaintext_allowed() else "UTF8"
        ),
        available=lambda s: s.settings.utf8,
    )
    def do_utf8(self, args: tuple[str, ...]) -> Reply:
        self.utf8 = True
        return _ok("UTF8 enabled")

    @command("LANG [tag]", BOTH, capability="LANG", available=lambda s: s.settings.utf8)
    def do_lang(self, args: tuple[str, ...]) -> Reply:
        languages = self.settings.languages
        if not args:
            return multiline("Language listing follows", [f"{t} {name}" for t, name in languages])
        wanted = args[0]
        if wanted == "*":
            self.language = languages[0][0]
            return _ok(f"Language is the default, {self.language}")
        for tag, _ in languages:
            if tag.lower() == wanted.lower():
                self.language = tag
                return _ok(f"Language changed to {tag}")
        raise CommandError(f"Unsupported language: {self._echo(wanted)}")
