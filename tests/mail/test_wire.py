"""The wire form: CRLF line ends and byte-stuffing (RFC 1939, section 3)."""

from __future__ import annotations

import pytest

from fakepop.mail.wire import CRLF, TERMINATOR, dot_stuff, to_crlf


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
