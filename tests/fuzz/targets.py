"""Fuzz targets that take a coverage-guided fuzzer's bytes, and the input format they read.

Each target decodes its input into a case and checks it, raising on a defect. Nothing
here imports atheris: ``tests/fuzz/test_corpus.py`` replays the kept corpus through these
functions, and ``bench/fuzz_atheris.py`` runs them under atheris.

- ``core``: the protocol core. The checks are ``check_scenario``'s (tests/protocol/test_fuzz.py):
  replies well formed and as a model of the maildrop says, nothing deleted before QUIT,
  nothing answered after STLS or the end, the same bytes out however the input is cut.
- ``wire``: the wire-form encoder (fakepop/mail/wire.py), whole and streamed.
- ``stores``: the Maildir and the memory store answer the same sessions byte for byte
  (``check_stores_agree``, tests/mail/test_differential.py).

The formats: short inputs are valid, and zero bytes mean defaults.

- core: ``SETTINGS`` (4 bytes), a message count byte, per message a length byte and its
  bytes, then the client's stream.
- wire: a byte whose low 4 bits count the cuts (2 bytes each, big-endian) and whose high bit
  cuts every (first cut % 7 + 1) bytes instead, a TOP line count byte, then the message.
- stores: ``SETTINGS``, then visits. A visit is a flags byte (1: STLS offered, 2: under TLS),
  a delivery count byte, per delivery a UID length byte (0: from the content) with the UID's
  bytes and a message (a length byte and its bytes), then the client's stream up to ESC "N",
  which starts the next visit.

In a client's stream ESC (0xFF) is an escape: ESC "/" cuts the stream there, as the network
may; ESC "T", "I", "D" or "." ends a segment, then runs the TLS handshake (if STLS was
answered), an idle timeout, a dropped connection, or nothing; ESC "*" n repeats the byte
before it 64 * (n + 1) times, for overlong lines from short inputs; ESC ESC is one ESC byte.
An ESC before any other byte is kept as it is.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from mail.test_differential import UID_CHARACTERS, Script, Visit, check_stores_agree
from protocol.pair import read_multiline
from protocol.test_fuzz import Action, Scenario, Segment, check_scenario

from fakepop.mail.message import Message
from fakepop.mail.wire import crlf_chunks, dot_stuff, lines_of, stuff_chunks, to_crlf
from fakepop.protocol import Settings
from fakepop.protocol.sasl import MECHANISMS

CORPUS = Path(__file__).resolve().parent / "corpus"  # a directory per target
ESC = 0xFF
CUT, REPEAT, NEXT_VISIT = ord("/"), ord("*"), ord("N")
THEN: dict[int, Action | None] = {
    ord("T"): "tls",
    ord("I"): "timeout",
    ord("D"): "drop",
    ord("."): None,
}
REPEAT_UNIT = 64  # ESC "*" n: (n + 1) * 64 copies, up to 16,384: past every line limit
MAX_SEGMENTS = 16  # per stream: enough for STLS, SASL and drops; more adds only time
MAX_MESSAGES = 5
MAX_VISITS = 6
MAX_CUTS = 15

T = TypeVar("T")


class Reader:
    """Takes values off the front of a fuzzer's input; past its end every byte reads as zero."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        value = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return value

    def take(self, size: int) -> bytes:
        part = self.data[self.pos : self.pos + size]
        self.pos += size
        return part

    def rest(self) -> bytes:
        part = self.data[self.pos :]
        self.pos = len(self.data)
        return part


def _pick(options: Sequence[T], value: int) -> T:
    return options[value % len(options)]


def read_settings(reader: Reader) -> tuple[Settings, bool, bool]:
    """The server's settings, and whether STLS is offered and the connection is under TLS."""
    limits, flags, offers, names = (reader.byte() for _ in range(4))
    settings = Settings(
        max_line_length=_pick([4096, 255, 300], limits),
        max_sasl_length=_pick([16384, 255, 300], limits // 3),
        max_bad_commands=_pick([20, 1, 3], limits // 9),
        max_auth_failures=_pick([None, 1, 3], limits // 27),
        last=bool(flags & 1),
        utf8=not flags & 2,
        apop=not flags & 4,
        user_login=not flags & 8,
        require_tls=bool(flags & 16),
        sasl=_pick([tuple(MECHANISMS), (), ("PLAIN",), ("PLAIN", "LOGIN", "XOAUTH2")], offers),
        expire=_pick([None, 0, 7], offers // 4),
        login_delay=_pick([None, 60], offers // 12),
        recent_prefix=bool(names & 1),
        domains=("example.com",) if names & 2 else (),
    )
    return settings, bool(flags & 32), bool(flags & 64)


def read_message(reader: Reader) -> bytes:
    return reader.take(reader.byte())


def read_stream(reader: Reader, visits: bool = False) -> tuple[Segment, ...]:
    """The client's segments, up to the end of the input or, with ``visits``, ESC "N"."""
    data = reader.data
    found: list[Segment] = []
    current = bytearray()
    cuts: list[int] = []
    while reader.pos < len(data) and len(found) < MAX_SEGMENTS:
        end = data.find(ESC, reader.pos)
        if end < 0:
            current += reader.rest()
            break
        current += data[reader.pos : end]
        reader.pos = end + 1
        code = reader.byte()
        if code == CUT:
            cuts.append(len(current))
        elif code in THEN:
            found.append(Segment(bytes(current), tuple(cuts), THEN[code]))
            current, cuts = bytearray(), []
        elif code == REPEAT:
            count = reader.byte()
            if current:
                current += current[-1:] * (REPEAT_UNIT * (count + 1))
        elif code == NEXT_VISIT and visits:
            break
        elif code == ESC:
            current.append(ESC)
        else:
            reader.pos -= 1  # an ESC before an ordinary byte: both are data
            current.append(ESC)
    if (current or not found) and len(found) < MAX_SEGMENTS:
        found.append(Segment(bytes(current), tuple(c for c in cuts if c <= len(current)), None))
    return tuple(found)


def read_scenario(data: bytes) -> Scenario:
    reader = Reader(data)
    settings, stls, secure = read_settings(reader)
    messages = tuple(read_message(reader) for _ in range(reader.byte() % (MAX_MESSAGES + 1)))
    return Scenario(messages, settings, stls, secure, read_stream(reader))


def core(data: bytes) -> None:
    """The protocol core: bytes in, session events out, across every state."""
    check_scenario(read_scenario(data))


def read_script(data: bytes) -> Script:
    reader = Reader(data)
    settings, _, _ = read_settings(reader)
    visits: list[Visit] = []
    while len(visits) < MAX_VISITS and (reader.pos < len(data) or not visits):
        flags = reader.byte()
        deliveries = []
        for _ in range(reader.byte() % (MAX_MESSAGES + 1)):
            uid = reader.take(reader.byte() % 13)
            name = "".join(UID_CHARACTERS[b % len(UID_CHARACTERS)] for b in uid) or None
            deliveries.append((read_message(reader), name))
        stream = read_stream(reader, visits=True)
        visits.append(Visit(tuple(deliveries), bool(flags & 1), bool(flags & 2), stream))
    return Script(settings, tuple(visits))


def stores(data: bytes) -> None:
    """The differential target: the Maildir store answers as the memory store does."""
    check_stores_agree(read_script(data))


def _pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def _top_model(wire: bytes, lines: int) -> bytes:
    """RFC 1939's TOP, from the lines: the header, the blank line, then ``lines`` lines."""
    rows = wire.splitlines(keepends=True)
    blank = rows.index(b"\r\n") if b"\r\n" in rows else len(rows)
    return b"".join(rows[: blank + 1 + lines])


def wire(data: bytes) -> None:
    """The wire form: CRLF normalisation, byte-stuffing, and both over any chunking."""
    reader = Reader(data)
    head = reader.byte()
    positions = [int.from_bytes(reader.take(2), "big") for _ in range(head & MAX_CUTS)]
    lines = reader.byte()
    raw = reader.rest()
    if head & 0x80 and positions:
        step = positions[0] % 7 + 1
        cuts: list[int] = list(range(step, len(raw), step))
    else:
        cuts = [p % (len(raw) + 1) for p in positions]

    expected = to_crlf(raw)
    assert b"\r" not in expected.replace(b"\r\n", b""), "a bare CR left"
    assert b"\n" not in expected.replace(b"\r\n", b""), "a bare LF left"
    assert expected == b"" or expected.endswith(b"\r\n")
    assert to_crlf(expected) == expected, "normalising twice changes the message"
    assert b"".join(crlf_chunks(_pieces(raw, cuts))) == expected, "streamed CRLF differs"
    assert sum(len(c) for c in crlf_chunks(_pieces(raw, cuts))) == len(expected)
    message = Message(raw)
    assert message.size == len(expected) == len(message.read())

    stuffed = dot_stuff(expected)
    assert b"".join(stuff_chunks(_pieces(expected, cuts))) == stuffed, "streamed stuffing differs"
    assert b"".join(stuff_chunks(crlf_chunks(_pieces(raw, cuts)))) == stuffed, "the Maildir path"
    assert b"".join(message.chunks()) == stuffed
    # A client un-stuffs the reply and stops at the terminator: it gets the message, no more.
    _, unstuffed, after = read_multiline(b"+OK\r\n" + stuffed + b".\r\n")
    assert (unstuffed, after) == (expected, b""), "un-stuffing does not give the message back"
    assert b"".join(lines_of(_pieces(expected, cuts))) == expected
    assert all(line.endswith(b"\r\n") for line in lines_of(_pieces(expected, cuts)))

    top = b"".join(message.top_chunks(lines))
    assert top == dot_stuff(_top_model(expected, lines)), "TOP differs from RFC 1939's"


TARGETS = ("core", "wire", "stores")
