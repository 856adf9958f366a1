"""The core under generated input: a fuzz target with a model of the maildrop, and a state machine.

``check_scenario`` is the fuzz target: a session with random settings fed a random stream of
commands, junk and overlong lines, cut at random byte boundaries and interrupted by STLS
handshakes, timeouts and drops. It checks the replies against a model of the maildrop and
against the same stream fed a line at a time. CI runs it briefly here; ``bench/fuzz_core.py``
runs it for as long as it is told.

``MaildropMachine`` drives sessions one after another over one store, in memory and as a
Maildir on disk, and checks every reply byte for byte against a model: STAT against LIST,
deletions only at QUIT, UIDs stable across sessions, sizes equal to the bytes sent.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from fakepop.mail import MailStore
from fakepop.mail.maildir import maildir_per_account
from fakepop.mail.wire import to_crlf
from fakepop.protocol import CLOSE, COMMANDS, Reply, Session, Settings, State
from fakepop.protocol.actions import START_TLS
from fakepop.protocol.actions import Action as CoreAction
from fakepop.protocol.sasl import MECHANISMS
from fakepop.protocol.transcript import SessionTranscript

from .pair import PASSWORD, USER, read_multiline

CRLF = b"\r\n"
STATUS = re.compile(rb"(\+OK|-ERR)( [^\r\n]*)?\r\n")
CONTINUATION = re.compile(rb"\+ [A-Za-z0-9+/]*={0,2}\r\n")
MAX_STATUS = 512  # RFC 2449, section 4: a status line, CRLF included

# --- the fuzz target: input --------------------------------------------------------------------

Action = Literal["tls", "timeout", "drop"]


@dataclass(frozen=True)
class Segment:
    """Bytes the client sends, the offsets where the network cuts them, then what happens."""

    data: bytes
    cuts: tuple[int, ...]
    then: Action | None


@dataclass(frozen=True)
class Scenario:
    messages: tuple[bytes, ...]
    settings: Settings
    stls: bool
    secure: bool
    segments: tuple[Segment, ...]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


PLAIN = _b64(b"\0alice\0secret")
PLAIN_AS = _b64(b"alice\0alice\0secret")
XOAUTH2 = _b64(b"user=alice\1auth=Bearer nope\1\1")
# Whole lines that reach the deeper states: logins of every kind, and the SASL responses.
GOOD_LINES = [
    f"USER {USER}",
    f"PASS {PASSWORD}",
    "PASS wrong",
    f"AUTH PLAIN {PLAIN}",
    f"AUTH PLAIN {PLAIN_AS}",
    "AUTH PLAIN",
    PLAIN,
    "AUTH LOGIN",
    _b64(b"alice"),
    _b64(b"secret"),
    "AUTH CRAM-MD5",
    "AUTH SCRAM-SHA-256",
    f"AUTH XOAUTH2 {XOAUTH2}",
    "AUTH OAUTHBEARER",
    "AUTH",
    "AUTH PLAIN =",
    "AUTH PLAIN !!!",
    "AUTH NOPE",
    "*",
    "=",
    "STLS",
    "UTF8",
    "LANG",
    "LANG en",
    "LANG *",
    "LANG xx",
    "CAPA",
    "QUIT",
    "RSET",
    "NOOP",
    "LAST",
    "STAT",
    "LIST",
    "UIDL",
    "APOP alice " + "0" * 32,
    "USER alice\u00e9",
    # Whole exchanges, each line after the first a SASL response.
    f"AUTH PLAIN\r\n{PLAIN}",
    f"AUTH LOGIN\r\n{_b64(b'alice')}\r\n{_b64(b'secret')}",
    f"AUTH LOGIN\r\n{_b64(b'alice')}\r\n*",
    "AUTH PLAIN\r\n*",
    "AUTH PLAIN\r\n!!",
    f"AUTH XOAUTH2 {XOAUTH2}\r\n",
    f"AUTH OAUTHBEARER\r\n{XOAUTH2}\r\n",
    f"AUTH CRAM-MD5\r\n{_b64(b'alice 0123456789abcdef0123456789abcdef')}",
    "UTF8\r\nUSER alice\u00e9",
]
VERBS = [*sorted(COMMANDS), "XYZZY", "STATUS", "RETRX", ""]
NUMBERS = ["0", "1", "2", "3", "4", "9", "-1", "+1", "01", "1.0", "x", "9" * 30, "\u0661", ""]
LOGIN = b"USER alice\r\nPASS secret\r\n"

verbs = st.sampled_from(VERBS).flatmap(lambda v: st.sampled_from([v, v, v.lower(), v.title()]))
commands = st.builds(
    lambda verb, args, sep: verb + sep + " ".join(args),
    verbs,
    st.lists(st.sampled_from(NUMBERS), max_size=3),
    st.sampled_from([" ", " ", " ", " ", "  ", "\t"]),
)
# What a client sends once logged in, mostly with numbers that name a message.
number = st.sampled_from(["1", "2", "3", "1", "2", "0", "5"])
transaction = st.one_of(
    st.sampled_from(["STAT", "LIST", "UIDL", "RSET", "NOOP", "QUIT"]),
    st.builds("{} {}".format, st.sampled_from(["LIST", "UIDL", "RETR", "DELE", "DELE"]), number),
    st.builds("TOP {} {}".format, number, st.sampled_from(["0", "1", "3"])),
)
junk = st.binary(max_size=60).map(lambda b: b.replace(b"\n", b""))
# Around each limit a Settings below may have: one octet either side decides.
overlong = st.builds(
    lambda start, size: (start + b"x" * size)[:size],
    st.sampled_from([b"USER ", b"AUTH PLAIN ", b"NOOP ", b"", b"QGFsaWNl"]),
    st.sampled_from([253, 254, 255, 256, 257, 299, 300, 301, 4096, 4097, 16385]),
)
lines = st.one_of(
    transaction.map(str.encode),
    transaction.map(str.encode),
    transaction.map(str.encode),
    transaction.map(str.encode),
    transaction.map(str.encode),
    st.sampled_from(GOOD_LINES).map(str.encode),
    st.sampled_from(GOOD_LINES).map(str.encode),
    commands.map(str.encode),
    junk,
    overlong,
)
ends = st.sampled_from([CRLF, CRLF, CRLF, CRLF, b"\n", b"\r", b""])


# How a segment may start: most scenarios get past the login, where the maildrop is, and
# many ask for TLS, with commands pipelined after STLS that must never run.
FIRST = [b"", LOGIN, LOGIN, LOGIN, b"STLS\r\n", b"STLS\r\n" + LOGIN, b"CAPA\r\nSTLS\r\n"]
LATER = [b"", b"", b"", LOGIN]


@st.composite
def segments(draw: st.DrawFn, first: bool = False) -> Segment:
    data = b"".join(draw(st.lists(st.tuples(lines, ends).map(b"".join), max_size=12)))
    data = draw(st.sampled_from(FIRST if first else LATER)) + data
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=6).map(sorted))
    then: Action | None = draw(st.sampled_from([None, None, "tls", "tls", "timeout", "drop"]))
    return Segment(data, tuple(cuts), then)


message_lines = st.sampled_from(
    [b"Subject: x", b"", b".", b"..", b".x", b"From: a", b"body", b"\xff\x00", b"\r"]
)
messages = st.one_of(
    st.binary(max_size=120),
    st.lists(st.tuples(message_lines, st.sampled_from([b"\r\n", b"\n", b"\r"])), max_size=10).map(
        lambda parts: b"".join(a + b for a, b in parts)
    ),
)

usually = st.sampled_from([True, True, True, False])
server_settings = st.builds(
    Settings,
    max_line_length=st.sampled_from([255, 300, 4096]),
    max_sasl_length=st.sampled_from([255, 300, 16384]),
    max_bad_commands=st.sampled_from([1, 3, 20, 20, 20, 20]),
    last=st.booleans(),
    utf8=usually,
    apop=usually,
    user_login=usually,
    require_tls=usually.map(lambda b: not b),
    sasl=st.sampled_from([(), ("PLAIN",), ("PLAIN", "LOGIN", "XOAUTH2"), tuple(MECHANISMS)]),
    max_auth_failures=st.sampled_from([None, None, 1, 3]),
    expire=st.sampled_from([None, 0, 7]),
)

scenarios = st.builds(
    Scenario,
    messages=st.one_of(st.lists(messages, min_size=1, max_size=5), st.just([])).map(tuple),
    settings=server_settings,
    stls=st.booleans(),
    secure=st.booleans(),
    segments=st.tuples(segments(first=True), st.lists(segments(), max_size=4)).map(
        lambda parts: (parts[0], *parts[1])
    ),
)


# --- the fuzz target: checks -------------------------------------------------------------------


@dataclass
class Model:
    """What the maildrop holds and what the session has marked, as the client was told."""

    uids: list[str]
    wires: list[bytes]
    deleted: set[int] = field(default_factory=set)  # message numbers
    committed: list[str] | None = None  # the UIDs a QUIT removed

    def live(self) -> list[int]:
        return [n for n in range(1, len(self.wires) + 1) if n not in self.deleted]

    def totals(self) -> tuple[int, int]:
        live = self.live()
        return len(live), sum(len(self.wires[n - 1]) for n in live)


@dataclass
class Run:
    """What one way of feeding a scenario produced."""

    output: list[bytes]  # per segment, challenges masked (they hold nonces)
    closed: bool
    mailbox: list[str]
    deleted: list[str]
    transcript: list[str]
    replies: set[bytes]  # the kinds of status line drawn out, for coverage counts


def _materialise(
    events: Sequence[CoreAction],
) -> tuple[list[tuple[bytes, bytes]], CoreAction | None]:
    """The replies as (status, body) and the action that ends them; an action must come last."""
    replies: list[tuple[bytes, bytes]] = []
    action: CoreAction | None = None
    for event in events:
        assert action is None, f"{event!r} after {action!r}"
        if isinstance(event, Reply):
            replies.append((event.status, b"".join(event.body)))  # a body is iterable once
        else:
            assert event in (CLOSE, START_TLS), event
            action = event
    return replies, action


def _check_form(status: bytes, body: bytes) -> None:
    """A status line a client can parse, and a multi-line body that ends where it should."""
    assert STATUS.fullmatch(status) or CONTINUATION.fullmatch(status), status
    assert len(status) <= MAX_STATUS, status
    if not body:
        return
    assert status.startswith(b"+OK"), (status, body)
    assert body.endswith(b".\r\n"), body[-20:]
    content = body[:-3]
    assert content == b"" or content.endswith(CRLF), content[-20:]
    for line in content.split(CRLF)[:-1]:
        assert line != b".", "a body line reads as the terminator"
        assert b"\r" not in line, line
        assert b"\n" not in line, line


# Replies that quote the client: one kind of reply, whatever was quoted.
QUOTING = re.compile(
    rb"(-ERR (?:Unknown command|Invalid message number|Invalid line count|Unsupported SASL"
    rb" mechanism|Unsupported language|\[AUTH\] \S+ may not log in as)).*\r\n"
)


UIDL_ONE = re.compile(rb"\+OK (\d+) \S+\r\n")
CHALLENGE = b"+ <challenge>\r\n"  # they hold nonces: two runs differ in them


def _normalise(status: bytes) -> bytes:
    """A status line as a kind of reply: challenges, numbers and quotes taken out."""
    if status.startswith(b"+ "):
        return CHALLENGE
    status = UIDL_ONE.sub(rb"+OK \1 <uid>\r\n", QUOTING.sub(rb"\1 ...\r\n", status))
    return re.sub(rb"\d+", b"N", status)


def _number(arg: str) -> int | None:
    return int(arg) if arg.isascii() and arg.isdigit() else None


def _check_reply(
    session: Session, model: Model, line: bytes, reply: tuple[bytes, bytes], was: State
) -> None:
    """Check a reply to one complete line against the model of the maildrop."""
    status, body = reply
    if was is State.AUTHORIZATION:
        if session.state is State.TRANSACTION:
            count, octets = model.totals()
            expected = f"+OK {USER}'s maildrop has {_plural(count)} ({octets} octets)\r\n"
            assert status == expected.encode(), status
        return
    if was is not State.TRANSACTION:
        return
    text = line.rstrip(b"\n")
    text = text[:-1] if text.endswith(b"\r") else text
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        assert not status.startswith(b"+"), status
        return
    verb, _, rest = decoded.partition(" ")
    verb = verb.upper() if verb.isascii() else verb
    args = rest.split()
    clean = (
        b"\0" not in text
        and b"\r" not in text
        and len(text) <= session.settings.max_line_length
        and all(len(a) <= 40 and a.isascii() for a in args)
        and bool(verb)
    )
    ok = status.startswith(b"+OK")
    live = model.live()
    if verb == "QUIT" and ok and not args:
        model.committed = [model.uids[n - 1] for n in sorted(model.deleted)]
        left = len(model.wires) - len(model.committed)
        assert status == b"+OK fakepop signing off (%d deleted, %d left)\r\n" % (
            len(model.committed),
            left,
        )
        return
    if verb == "STAT" and ok:
        assert status == b"+OK %d %d\r\n" % model.totals()
    elif verb in ("LIST", "UIDL") and ok and not args:
        listed = body.split(CRLF)[:-2]
        if verb == "LIST":
            rows = [b"%d %d" % (n, len(model.wires[n - 1])) for n in live]
        else:
            rows = [b"%d %s" % (n, model.uids[n - 1].encode()) for n in live]
        assert listed == rows, (verb, listed, rows)
        if verb == "LIST":
            count, octets = model.totals()
            assert status == f"+OK {_plural(count)} ({octets} octets)\r\n".encode()
    elif verb == "RSET" and ok:
        model.deleted.clear()
        total = sum(len(w) for w in model.wires)
        assert (
            status == f"+OK maildrop has {_plural(len(model.wires))} ({total} octets)\r\n".encode()
        )
    elif verb in ("LIST", "UIDL", "RETR", "TOP", "DELE") and args:
        number = _number(args[0])
        wanted = {"LIST": 1, "UIDL": 1, "RETR": 1, "DELE": 1, "TOP": 2}[verb]
        count_ok = verb != "TOP" or (len(args) > 1 and _number(args[1]) is not None)
        if clean and len(args) == wanted and count_ok:
            assert ok == (number in live), (line, status, live)
        if not ok:
            return
        assert number is not None
        assert number in live, (line, status)
        wire = model.wires[number - 1]
        if verb == "LIST":
            assert status == b"+OK %d %d\r\n" % (number, len(wire))
        elif verb == "UIDL":
            assert status == b"+OK %d %s\r\n" % (number, model.uids[number - 1].encode())
        elif verb == "DELE":
            assert status == b"+OK Message %d deleted\r\n" % number
            model.deleted.add(number)
        else:
            got, unstuffed, rest_ = read_multiline(status + body)
            assert rest_ == b""
            if verb == "RETR":
                assert got == b"+OK %d octets\r\n" % len(wire)
                assert unstuffed == wire
            else:
                assert wire.startswith(unstuffed)
                assert unstuffed == wire or unstuffed.endswith(CRLF)


def _feed(
    scenario: Scenario, by_line: bool, seen: set[bytes] | None = None
) -> tuple[Run, Model | None]:
    """Feed the scenario to a fresh session: a line at a time, or cut where its segments say."""
    store = MailStore({USER: PASSWORD})
    mailbox = store[USER].mailbox
    uids = [mailbox.add(m) for m in scenario.messages]
    model = Model(uids, [to_crlf(m) for m in scenario.messages])
    transcript = SessionTranscript(1)
    session = Session(
        store,
        scenario.settings,
        transcript=transcript,
        clock=lambda: 1_000_000.0,
        stls=scenario.stls,
        secure=scenario.secure,
    )
    replies: set[bytes] = set()
    greeting, action = _materialise(session.start())
    assert action is None
    assert greeting[0][0].startswith(b"+OK fakepop ready")
    output: list[bytes] = []
    handshake = False
    carry = b""  # the unfinished line the session holds, to know what a reply answers
    for segment in scenario.segments:
        if by_line:
            pieces = [p for p in re.split(rb"(?<=\n)", segment.data) if p]
        else:
            bounds = [0, *segment.cuts, len(segment.data)]
            pieces = [segment.data[a:b] for a, b in itertools.pairwise(bounds)]
        out = bytearray()
        for piece in pieces:
            was, closed, waiting = session.state, session.closed, session._awaiting_tls
            in_sasl = session._exchange is not None
            events = session.receive_data(piece)
            if closed or waiting:
                assert events == [], "answered after the end or before the handshake"
            got, action = _materialise(events)
            handshake = handshake or action is START_TLS
            for status, body in got:
                _check_form(status, body)
                replies.add(_normalise(status))
                out += (CHALLENGE if status.startswith(b"+ ") else status) + body
            if not session.closed:
                assert mailbox.locked == (session.account is not None)
                assert [m.uid for m in mailbox.messages] == uids, "deleted before QUIT"
            line, carry = carry + piece, b"" if piece.endswith(b"\n") else carry + piece
            if session._awaiting_tls:
                carry = b""  # STLS cleared the buffer
            if not by_line or closed or waiting:
                continue
            if line.endswith(b"\n") and not in_sasl and len(got) == 1:
                _check_reply(session, model, line, got[0], was)
            elif session.state is State.TRANSACTION and was is State.AUTHORIZATION:
                _check_reply(session, model, line, got[-1], was)
        if segment.then == "tls" and handshake and not session.closed:
            session.tls_started()
            handshake, carry = False, b""
        elif segment.then == "timeout":
            got, action = _materialise(session.timed_out())
            if got:
                assert got == [(b"-ERR Autologout: idle for too long\r\n", b"")]
                assert action is CLOSE
                replies.add(got[0][0])
            out += b"".join(s + b for s, b in got)
        elif segment.then == "drop":
            session.connection_lost()
        output.append(bytes(out))
    closed = session.closed
    session.connection_lost()
    assert not mailbox.locked
    left = [m.uid for m in mailbox.messages]
    if by_line:
        removed = model.committed or []
        assert left == [u for u in uids if u not in removed], (left, uids, removed)
        assert mailbox.deleted == sorted(removed)
    masked = [_mask_challenges(line) for line in transcript.lines()[1:]]
    if seen is not None:
        seen |= replies
    run = Run(output, closed, left, list(mailbox.deleted), masked, replies)
    return run, model if by_line else None


def _mask_challenges(line: str) -> str:
    return "S: + <challenge>" if line.startswith("S: + ") else line


def check_scenario(scenario: Scenario, seen: set[bytes] | None = None) -> None:
    """The fuzz target: raises AssertionError (or anything else) when the core misbehaves.

    ``seen`` collects the kinds of status line the scenario drew out, for coverage counts.
    """
    whole, _ = _feed(scenario, by_line=True, seen=seen)
    cut, _ = _feed(scenario, by_line=False)
    assert cut == whole


FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(scenarios)
def test_fuzz_core(scenario: Scenario) -> None:
    check_scenario(scenario)


def test_the_fuzz_target_catches_a_core_that_deletes_before_quit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The target can fail: a core that removes a message at DELE, not at QUIT, is caught."""
    scenario = Scenario(
        messages=(b"Subject: a\r\n\r\nA\r\n",),
        settings=Settings(),
        stls=False,
        secure=False,
        segments=(Segment(b"USER alice\r\nPASS secret\r\nDELE 1\r\n", (), None),),
    )
    check_scenario(scenario)
    dele = COMMANDS["DELE"]

    def eager(session: Session, args: tuple[str, ...]) -> object:
        result = dele.handler(session, args)
        assert session.account is not None
        session.account.mailbox.remove(session._messages[int(args[0]) - 1].uid)
        return result

    monkeypatch.setitem(COMMANDS, "DELE", dataclasses.replace(dele, handler=eager))
    with pytest.raises(AssertionError, match="deleted before QUIT"):
        check_scenario(scenario)


# --- the state machine ---------------------------------------------------------------------------

MAIL = st.one_of(
    st.sampled_from(
        [b"Subject: a\r\n\r\nA\r\n", b".\n..\n.x\n", b"", b"Subject: b\n\nline 1\nline 2\n"]
    ),
    st.binary(max_size=80),
)


def _top(wire: bytes, count: int) -> bytes:
    """The header, the blank line and ``count`` body lines: RFC 1939's TOP, independently."""
    lines = [line + CRLF for line in wire.split(CRLF)[:-1]]
    if CRLF not in lines:
        return wire
    blank = lines.index(CRLF)
    return b"".join(lines[: blank + 1 + count])


def _stuff(wire: bytes) -> bytes:
    lines = [line + CRLF for line in wire.split(CRLF)[:-1]]
    return b"".join(b"." + line if line.startswith(b".") else line for line in lines)


def _plural(count: int) -> str:
    return f"{count} message" + ("" if count == 1 else "s")


class MaildropMachine(RuleBasedStateMachine):
    """Sessions one after another over one maildrop, mail arriving at any time.

    Every command batch is pipelined and cut at random byte boundaries; every reply is
    compared byte for byte with what the model says RFC 1939 requires.
    """

    def __init__(self) -> None:
        super().__init__()
        self.store = self.make_store()
        self.mailbox = self.store[USER].mailbox
        self.model: list[tuple[str, bytes]] = []  # the maildrop now: (UID, wire form)
        self.session: Session | None = None
        self.snapshot: list[tuple[str, bytes]] = []  # what the session logged in to
        self.deleted: set[int] = set()  # message numbers marked in this session
        self.removed: list[str] = []  # UIDs committed by QUITs, in order

    def make_store(self) -> MailStore:
        return MailStore({USER: PASSWORD})

    def feed(self, data: st.DataObject, wire: bytes) -> tuple[bytes, CoreAction | None]:
        assert self.session is not None
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6), label="cuts"))
        bounds = [0, *cuts, len(wire)]
        out = bytearray()
        action: CoreAction | None = None
        for a, b in itertools.pairwise(bounds):
            replies, ended = _materialise(self.session.receive_data(wire[a:b]))
            assert action is None or not replies, "replies after the connection ended"
            action = action or ended
            out += b"".join(status + body for status, body in replies)
        return bytes(out), action

    # --- outside a session ---

    @initialize(mail=st.lists(MAIL, max_size=4))
    def delivered_first(self, mail: list[bytes]) -> None:
        for raw in mail:
            self.deliver(raw)

    @rule(raw=MAIL)
    def deliver(self, raw: bytes) -> None:
        uid = self.mailbox.add(raw)
        assert uid not in [u for u, _ in self.model], "a UID given twice"
        self.model.append((uid, to_crlf(raw)))

    @precondition(lambda self: self.session is None)
    @rule(data=st.data())
    def log_in(self, data: st.DataObject) -> None:
        self.session = Session(self.store, clock=lambda: 1_000_000.0)
        self.session.start()
        self.snapshot = list(self.model)
        self.deleted = set()
        octets = sum(len(w) for _, w in self.snapshot)
        has = f"{_plural(len(self.snapshot))} ({octets} octets)"
        expected = f"+OK Send PASS\r\n+OK {USER}'s maildrop has {has}\r\n".encode()
        out, action = self.feed(data, f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        assert (out, action) == (expected, None)

    @precondition(lambda self: self.session is not None)
    @rule()
    def second_login_is_refused(self) -> None:
        other = Session(self.store, clock=lambda: 1_000_000.0)
        other.start()
        replies, _ = _materialise(other.receive_data(b"USER alice\r\nPASS secret\r\n"))
        assert replies[-1] == (b"-ERR [IN-USE] Mailbox is locked by another session\r\n", b"")
        other.connection_lost()  # must not release the first session's lock

    # --- in a session ---

    def live(self) -> list[int]:
        return [n for n in range(1, len(self.snapshot) + 1) if n not in self.deleted]

    def expect(self, verb: str, args: tuple[int, ...]) -> bytes:
        """The exact reply RFC 1939 and fakepop's wording give, from the model alone."""
        live = self.live()
        count = len(self.snapshot)
        octets = sum(len(self.snapshot[n - 1][1]) for n in live)
        if verb == "STAT":
            return b"+OK %d %d\r\n" % (len(live), octets)
        if verb == "NOOP":
            return b"+OK\r\n"
        if verb == "RSET":
            self.deleted.clear()
            total = sum(len(w) for _, w in self.snapshot)
            return f"+OK maildrop has {_plural(count)} ({total} octets)\r\n".encode()
        if verb in ("LIST", "UIDL") and not args:
            if verb == "LIST":
                head = f"+OK {_plural(len(live))} ({octets} octets)\r\n".encode()
                rows = [b"%d %d" % (n, len(self.snapshot[n - 1][1])) for n in live]
            else:
                head = b"+OK unique-id listing follows\r\n"
                rows = [b"%d %s" % (n, self.snapshot[n - 1][0].encode()) for n in live]
            return head + b"".join(row + CRLF for row in rows) + b".\r\n"
        number = args[0]
        if not 1 <= number <= count:
            return b"-ERR No such message: %d (the maildrop has %d)\r\n" % (number, count)
        if number in self.deleted:
            return b"-ERR Message %d is deleted\r\n" % number
        uid, wire = self.snapshot[number - 1]
        if verb == "LIST":
            return b"+OK %d %d\r\n" % (number, len(wire))
        if verb == "UIDL":
            return b"+OK %d %s\r\n" % (number, uid.encode())
        if verb == "DELE":
            self.deleted.add(number)
            return b"+OK Message %d deleted\r\n" % number
        if verb == "RETR":
            return b"+OK %d octets\r\n" % len(wire) + _stuff(wire) + b".\r\n"
        assert verb == "TOP"
        return b"+OK top of message follows\r\n" + _stuff(_top(wire, args[1])) + b".\r\n"

    @precondition(lambda self: self.session is not None)
    @rule(data=st.data())
    def pipeline(self, data: st.DataObject) -> None:
        n = st.integers(0, len(self.snapshot) + 1)
        command = st.one_of(  # each verb about as likely as any other
            st.tuples(st.sampled_from(["STAT", "STAT", "NOOP", "RSET", "RSET", "LIST", "UIDL"])),
            st.tuples(st.sampled_from(["LIST", "UIDL", "RETR", "DELE", "DELE", "DELE"]), n),
            st.tuples(st.just("TOP"), n, st.integers(0, 4)),
        )
        batch = data.draw(st.lists(command, min_size=1, max_size=6), label="commands")
        wire = b"".join(" ".join(map(str, c)).encode() + CRLF for c in batch)
        expected = b"".join(self.expect(str(c[0]), tuple(int(a) for a in c[1:])) for c in batch)
        out, action = self.feed(data, wire)
        assert out == expected
        assert action is None

    @precondition(lambda self: self.session is not None)
    @rule(data=st.data())
    def quit(self, data: st.DataObject) -> None:
        gone = [self.snapshot[n - 1][0] for n in sorted(self.deleted)]
        left = len(self.snapshot) - len(gone)
        out, action = self.feed(data, b"QUIT\r\n")
        assert out == b"+OK fakepop signing off (%d deleted, %d left)\r\n" % (len(gone), left)
        assert action is CLOSE
        self.model = [(u, w) for u, w in self.model if u not in gone]
        self.removed += sorted(gone)
        self.session = None

    @precondition(lambda self: self.session is not None)
    @rule(timed_out=st.booleans())
    def drop(self, timed_out: bool) -> None:
        assert self.session is not None
        if timed_out:
            replies, action = _materialise(self.session.timed_out())
            assert replies == [(b"-ERR Autologout: idle for too long\r\n", b"")]
            assert action is CLOSE
        else:
            self.session.connection_lost()
        self.session = None

    def teardown(self) -> None:
        if self.session is not None:
            self.session.connection_lost()

    @invariant()
    def the_maildrop_is_the_model(self) -> None:
        messages = self.mailbox.messages
        assert [(m.uid, m.read()) for m in messages] == self.model
        assert [m.size for m in messages] == [len(w) for _, w in self.model]
        assert self.mailbox.deleted == self.removed

    @invariant()
    def locked_exactly_while_logged_in(self) -> None:
        assert self.mailbox.locked == (self.session is not None)


class MaildirMachine(MaildropMachine):
    """The same over a Maildir: messages are files, sizes are counted from them, QUIT journals."""

    def make_store(self) -> MailStore:
        self.root = Path(tempfile.mkdtemp(prefix="fakepop-fuzz-"))
        return MailStore({USER: PASSWORD}, maildir_per_account(self.root))

    def teardown(self) -> None:
        super().teardown()
        shutil.rmtree(self.root, ignore_errors=True)


MACHINE = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
# The subclass first: settings on a class are inherited, and may not be set twice.
TestMaildropOnDisk = settings(MACHINE, max_examples=25)(MaildirMachine).TestCase
TestMaildropInMemory = settings(MACHINE)(MaildropMachine).TestCase
