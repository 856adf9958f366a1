"""The Maildir store and the memory store answer every session the same.

The same mail, delivered at the same points, and the same command streams, cut at the
same byte boundaries: every byte the server sends is the same from either store, and so
is the maildrop left behind (UIDs, sizes, contents, what QUIT deleted, what was
retrieved). ``bench/fuzz_atheris.py stores`` runs the same comparison for as long as it
is told, from the fuzzer's bytes.

What legitimately differs, and is masked: the APOP timestamp in the greeting and the
SASL challenges, which hold a fresh nonce each session. The Maildir refuses a UID with
"/" or ":" (part of its file names), so the scripts give only UIDs both stores take.
"""

from __future__ import annotations

import itertools
import re
import string
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from protocol.pair import PASSWORD, USER
from protocol.test_fuzz import Segment, messages, segments, server_settings

from fakepop.mail import Mailbox, MailStore
from fakepop.mail.maildir import READ_SIZE, WHOLE_READ, maildir_per_account
from fakepop.protocol import Action, Reply, Session
from fakepop.protocol.actions import START_TLS
from fakepop.protocol.transcript import SessionTranscript
from fakepop.settings import Settings

Mail = tuple[bytes, str | None]  # a message and the UID to give it (None: from its content)
_TIMESTAMP = re.compile(rb"<[^<>\r\n]*>")  # the greeting's APOP timestamp: per session


@dataclass(frozen=True)
class Visit:
    """One connection: the mail delivered before it, then what its client sends."""

    deliver: tuple[Mail, ...]
    stls: bool
    secure: bool
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Script:
    settings: Settings
    visits: tuple[Visit, ...]


def _render(events: Sequence[Action]) -> tuple[bytes, bool]:
    """The bytes sent for ``events``, actions spelt out; and whether STLS was answered."""
    out = bytearray()
    tls = False
    for event in events:
        if isinstance(event, Reply):
            challenge = event.status.startswith(b"+ ")
            out += b"+ <challenge>\r\n" if challenge else event.status
            out += b"".join(event.body)
        else:
            tls = tls or event is START_TLS
            out += b"<%s>" % repr(event).encode()
    return bytes(out), tls


def _masked(line: str) -> str:
    return "S: + <challenge>" if line.startswith("S: + ") else line


def serve(store: MailStore, script: Script) -> list[bytes]:
    """What the server sent on each visit, its transcript, then the maildrop as left."""
    mailbox = store[USER].mailbox
    record: list[bytes] = []
    for number, visit in enumerate(script.visits, 1):
        for raw, uid in visit.deliver:
            try:
                mailbox.add(raw, uid=uid)
            except ValueError as error:  # a UID given twice: both must refuse it alike
                record.append(f"refused: {error}".encode())
        transcript = SessionTranscript(number)
        session = Session(
            store,
            script.settings,
            transcript=transcript,
            clock=lambda: 1_000_000.0,
            stls=visit.stls,
            secure=visit.secure,
        )
        greeting, _ = _render(session.start())
        out = bytearray(_TIMESTAMP.sub(b"<timestamp>", greeting))
        handshake = False
        for segment in visit.segments:
            bounds = [0, *segment.cuts, len(segment.data)]
            for a, b in itertools.pairwise(bounds):
                sent, tls = _render(session.receive_data(segment.data[a:b]))
                out += sent
                handshake = handshake or tls
            if segment.then == "tls" and handshake and not session.closed:
                session.tls_started()
                handshake = False
                out += b"<handshake>"
            elif segment.then == "timeout":
                out += _render(session.timed_out())[0]
            elif segment.then == "drop":
                session.connection_lost()
                out += b"<dropped>"
        session.connection_lost()
        record.append(bytes(out))
        lines = [_masked(line) for line in transcript.lines()[1:]]
        record.append("\n".join(lines).encode("utf-8", "surrogateescape"))
    record.append(repr(_state(mailbox)).encode())
    return record


def _state(mailbox: Mailbox) -> object:
    messages = [(m.uid, m.size, m.read()) for m in mailbox.messages]
    return messages, mailbox.deleted, mailbox.retrieved, mailbox.locked


def check_stores_agree(script: Script) -> None:
    """The fuzz target: raises AssertionError where the two stores answer differently."""
    with tempfile.TemporaryDirectory(prefix="fakepop-differential-") as maildirs:
        memory = MailStore({USER: PASSWORD})
        maildir = MailStore({USER: PASSWORD}, maildir_per_account(maildirs))
        expected = serve(memory, script)
        got = serve(maildir, script)
    for number, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"record {number}: Maildir {have[:2000]!r} != memory {want[:2000]!r}"


# --- scripts ------------------------------------------------------------------------------------

# Characters a UID may have in both stores (RFC 1939: 0x21-0x7E; the Maildir takes no / or :).
UID_CHARACTERS = "".join(c for c in string.printable[:94] if c not in "/:")
uids = st.one_of(st.none(), st.none(), st.none(), st.text(UID_CHARACTERS, min_size=1, max_size=12))
mail = st.tuples(messages, uids)
# A visit's first segment mostly logs in (segments(first=True)): the maildrop is reached.
visits = st.builds(
    Visit,
    deliver=st.lists(mail, max_size=3).map(tuple),
    stls=st.booleans(),
    secure=st.booleans(),
    segments=st.lists(segments(first=True), min_size=1, max_size=3).map(tuple),
)
scripts = st.builds(
    Script, settings=server_settings, visits=st.lists(visits, min_size=1, max_size=4).map(tuple)
)

LOGIN = b"USER alice\r\nPASS secret\r\n"


def _visit(data: bytes, *mail: Mail, cuts: tuple[int, ...] = ()) -> Visit:
    return Visit(tuple(mail), False, False, (Segment(data, cuts, None),))


# What the end of one read and the start of the next hold ("|" is the boundary): a CRLF
# split, a bare CR before a dot line, a dot line starting a read, a stuffed-looking line.
READ_EDGES = [b"\r|\n.", b"\r|.x", b"\r\n|.", b"\n|..", b".|\r\n", b"x\r|\r"]


def _cut_at_reads(reads: int) -> bytes:
    """A message of ``reads`` file reads whose every read boundary falls on an edge case."""
    body = bytearray(b"Subject: big\n\n")
    for k in range(1, reads + 1):
        before, after = READ_EDGES[k % len(READ_EDGES)].split(b"|")
        fill = k * READ_SIZE - len(before) - len(body)
        body += (b"x" * 70 + b"\n") * (fill // 71) + b"y" * (fill % 71) + before + after
    return bytes(body + b"end\n")


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)
@given(scripts)
@example(  # sessions one after another: DELE, QUIT, then what is left, with new mail
    Script(
        Settings(),
        (
            _visit(LOGIN + b"LIST\r\nDELE 1\r\nQUIT\r\n", (b"a\n", None), (b".\n..\n", "u1")),
            _visit(LOGIN + b"UIDL\r\nRETR 1\r\nTOP 2 0\r\nQUIT\r\n", (b"a\n", None), cuts=(3, 40)),
        ),
    )
)
@example(  # the same content twice, and a UID given twice
    Script(Settings(), (_visit(LOGIN + b"UIDL\r\n", (b"x", None), (b"x", None), (b"y", "x")),))
)
def test_the_stores_answer_every_session_the_same(script: Script) -> None:
    check_stores_agree(script)


def test_the_stores_agree_on_mail_the_maildir_streams() -> None:
    """Mail over WHOLE_READ is read from disk in pieces: cut lines, bare CRs and dots at
    every read boundary come out as the memory store sends them."""
    big = _cut_at_reads(WHOLE_READ // READ_SIZE + 3)
    assert len(big) > WHOLE_READ
    commands = b"LIST\r\nRETR 1\r\nTOP 1 3\r\nTOP 1 40000\r\nRETR 2\r\nQUIT\r\n"
    script = Script(Settings(), (_visit(LOGIN + commands, (big, None), (big[:-1] + b"\r", None)),))
    check_stores_agree(script)


def test_a_uid_that_looks_like_a_maildir_size_is_not_a_size() -> None:
    script = Script(Settings(), (_visit(LOGIN + b"LIST\r\n", (b"Subject: x\n\nhello\n", "a,W=3")),))
    check_stores_agree(script)
