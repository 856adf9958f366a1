"""The wire form: CRLF line ends and byte-stuffing (RFC 1939, section 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fakepop.mail.message import Message
from fakepop.mail.wire import (
    CRLF,
    TERMINATOR,
    dot_stuff,
    lines_of,
    stuff_chunks,
    to_crlf,
    top_lines,
)


def test_constants() -> None:
    assert CRLF == b"\r\n"
    assert TERMINATOR == b".\r\n"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(b"a\nb\n", b"a\r\nb\r\n", id="lf"),
        pytest.param(b"a\rb\r", b"a\r\nb\r\n", id="cr"),
        pytest.param(b"a\r\nb\r\n", b"a\r\nb\r\n", id="crlf"),
        pytest.param(b"a\r\nb\nc\rd\n\re", b"a\r\nb\r\nc\r\nd\r\n\r\ne\r\n", id="mixed"),
        pytest.param(b"a\nb", b"a\r\nb\r\n", id="no-final-line-end"),
        pytest.param(b"a", b"a\r\n", id="one-line-no-end"),
        pytest.param(b"\n\n", b"\r\n\r\n", id="blank-lines"),
        pytest.param(b"a\r\r\nb", b"a\r\n\r\nb\r\n", id="cr-then-crlf"),
        pytest.param(b"", b"", id="empty"),
    ],
)
def test_to_crlf(raw: bytes, expected: bytes) -> None:
    assert to_crlf(raw) == expected
    assert to_crlf(expected) == expected  # already on the wire: left alone


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        pytest.param(b".x\r\n", b"..x\r\n", id="first-byte"),
        pytest.param(b".\r\n", b"..\r\n", id="first-line-is-dot"),
        pytest.param(b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n", id="dot-line"),
        pytest.param(b"a\r\n.\r\n.\r\n", b"a\r\n..\r\n..\r\n", id="consecutive-dot-lines"),
        pytest.param(b".\r\n.\r\n", b"..\r\n..\r\n", id="only-dot-lines"),
        pytest.param(b"a\r\n..b\r\n", b"a\r\n...b\r\n", id="two-dots"),
        pytest.param(b"a.b\r\nc.\r\n", b"a.b\r\nc.\r\n", id="inner-dots-untouched"),
        pytest.param(b"a\r\n", b"a\r\n", id="no-dots"),
        pytest.param(b"", b"", id="empty"),
    ],
)
def test_dot_stuff(wire: bytes, expected: bytes) -> None:
    assert dot_stuff(wire) == expected


TOPS = [
    b"Subject: a\r\nFrom: b\r\n\r\none\r\n.two\r\nthree\r\n",
    b"\r\nbody only\r\n.\r\n",  # no header: the blank line is the first line
    b"Subject: no body\r\nX: y\r\n",
    b"Subject: a\r\n\r\n",
    b".Subject: dot\r\n\r\n..\r\n",
]


@pytest.mark.parametrize("wire", TOPS)
@pytest.mark.parametrize("lines", [0, 1, 2, 10**20])
def test_top_lines_is_what_a_message_in_memory_sends_whatever_the_chunks(
    wire: bytes, lines: int
) -> None:
    expected = Message(wire).top(lines)
    for cut in range(len(wire) + 1):
        for second in range(cut, len(wire) + 1):
            chunks = [wire[:cut], wire[cut:second], wire[second:]]
            assert b"".join(stuff_chunks(top_lines(chunks, lines))) == expected, (cut, second)


def test_top_lines_stops_reading_after_the_last_line_it_sends() -> None:
    read: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for chunk in (b"H: 1\r\n\r\nline 1\r\nline", b" 2\r\nline 3\r\n", b"never read\r\n"):
            read.append(chunk)
            yield chunk

    assert b"".join(top_lines(chunks(), 2)) == b"H: 1\r\n\r\nline 1\r\nline 2\r\n"
    assert len(read) == 2


def test_top_lines_passes_a_long_line_on_in_the_pieces_it_came_in() -> None:
    piece = b"x" * 65536
    chunks = [b"Subject: long\r\n\r\n", *[piece] * 64, b"\r\nnext\r\n"]
    out = list(top_lines(chunks, 1))
    assert all(a is b for a, b in zip(out[:-1], chunks, strict=False))  # no copies
    assert b"".join(out) == b"".join(chunks[:-1]) + b"\r\n"


def test_lines_of_joins_a_line_split_anywhere() -> None:
    wire = b"a\r\n\r\nlong line\r\n.x\r\nend"
    for cut in range(len(wire) + 1):
        for second in range(cut, len(wire) + 1):
            chunks = [wire[:cut], wire[cut:second], wire[second:]]
            assert list(lines_of(chunks)) == [
                b"a\r\n",
                b"\r\n",
                b"long line\r\n",
                b".x\r\n",
                b"end",
            ]
