"""The line buffer: splitting at line ends and bounding the length of a line."""

from __future__ import annotations

from fakepop.protocol.buffer import Line, LineBuffer, Overflow
from fakepop.settings import Settings

from .pair import Pair

LIMIT = 255


def drain(buffer: LineBuffer) -> list[Line | Overflow]:
    out: list[Line | Overflow] = []
    while (item := buffer.next_line()) is not None:
        out.append(item)
    return out


def test_splits_at_crlf_and_at_bare_lf() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"STAT\r\nLIST 1\nNOOP\r\n\r\n")
    assert drain(buffer) == [
        Line(b"STAT", crlf=True),
        Line(b"LIST 1", crlf=False),
        Line(b"NOOP", crlf=True),
        Line(b"", crlf=True),
    ]


def test_only_the_cr_before_the_lf_is_taken_off() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"NO\rOP\r\nNOOP\r\r\n")
    assert drain(buffer) == [Line(b"NO\rOP", crlf=True), Line(b"NOOP\r", crlf=True)]


def test_an_unfinished_line_waits_for_its_lf() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"STAT\r")
    assert buffer.next_line() is None
    buffer.feed(b"\nLI")
    assert drain(buffer) == [Line(b"STAT", crlf=True)]
    buffer.feed(b"ST\r\n")
    assert drain(buffer) == [Line(b"LIST", crlf=True)]


def test_a_line_fed_one_byte_at_a_time() -> None:
    buffer = LineBuffer(LIMIT)
    data = b"UIDL 12\r\n"
    for i in range(len(data) - 1):
        buffer.feed(data[i : i + 1])
        assert buffer.next_line() is None
    buffer.feed(data[-1:])
    assert drain(buffer) == [Line(b"UIDL 12", crlf=True)]


def test_a_line_of_exactly_the_limit_is_accepted_even_byte_by_byte() -> None:
    # Its CR makes limit + 1 octets while the LF is still on its way.
    data = b"x" * LIMIT + b"\r\n"
    buffer = LineBuffer(LIMIT)
    out: list[Line | Overflow] = []
    for i in range(len(data)):
        buffer.feed(data[i : i + 1])
        out += drain(buffer)
    assert out == [Line(b"x" * LIMIT, crlf=True)]


def test_an_overlong_line_that_arrives_complete() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"x" * (LIMIT + 1) + b"\r\nNOOP\r\n")
    assert drain(buffer) == [Overflow.LINE_TOO_LONG, Line(b"NOOP", crlf=True)]


def test_one_octet_over_the_limit_without_a_cr_is_overlong() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"x" * (LIMIT + 1))
    assert buffer.next_line() is None  # the next octet could still be the CR
    buffer.feed(b"\n")
    assert drain(buffer) == [Overflow.LINE_TOO_LONG]


def test_an_overlong_line_is_reported_once_and_dropped_up_to_the_next_lf() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"x" * (LIMIT + 2))
    assert drain(buffer) == [Overflow.LINE_TOO_LONG]
    for _ in range(10):
        buffer.feed(b"y" * 1000)
        assert drain(buffer) == []
    buffer.feed(b"tail, still dropped\r\nNOOP\r\n")
    assert drain(buffer) == [Line(b"NOOP", crlf=True)]


def test_memory_stays_bounded_without_a_line_feed() -> None:
    buffer = LineBuffer(LIMIT)
    chunk = b"z" * 1024
    for _ in range(1024):  # 1 MiB
        buffer.feed(chunk)
        drain(buffer)
        assert len(buffer._data) <= LIMIT + 1


def test_clear_forgets_the_unfinished_line_and_the_discarding() -> None:
    buffer = LineBuffer(LIMIT)
    buffer.feed(b"x" * (LIMIT + 2))
    assert drain(buffer) == [Overflow.LINE_TOO_LONG]
    buffer.clear()
    buffer.feed(b"NOOP\r\n")
    assert drain(buffer) == [Line(b"NOOP", crlf=True)]


def test_session_resynchronises_after_an_overlong_line() -> None:
    pair = Pair(settings=Settings(long_line_closes=False))
    limit = pair.session.settings.max_line_length
    too_long = b"-ERR Line too long: the limit is %d octets\r\n" % limit
    # Reported as soon as it is too long, not when its end arrives.
    assert pair.send(b"USER " + b"a" * limit) == too_long
    assert pair.send(b"a" * 10_000) == b""
    assert pair.send(b"aaa\r\nCAPA\r\n").startswith(b"+OK Capability list follows\r\n")
    assert pair.send(b"N" * (limit + 1) + b"\r\nUSER alice\r\n") == too_long + b"+OK Send PASS\r\n"
    assert not pair.closed


def test_session_memory_stays_bounded_when_a_mebibyte_arrives_without_lf() -> None:
    pair = Pair(settings=Settings(long_line_closes=False))  # the buffer, not the close
    limit = pair.session.settings.max_line_length
    replies = b""
    for _ in range(16):
        replies += pair.send(b"\xff" * 65536)  # 1 MiB, invalid UTF-8 as well
        assert len(pair.session._buffer._data) <= limit + 1
    assert replies == b"-ERR Line too long: the limit is %d octets\r\n" % limit
    assert pair.send(b"\r\nNOOP\r\n") == b"-ERR NOOP is not allowed before login\r\n"
