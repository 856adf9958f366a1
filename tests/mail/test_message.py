"""Messages: wire form, size, unique id and TOP (RFC 1939, sections 7 and 11)."""

from __future__ import annotations

import email.message
from typing import Any

import pytest

from fakepop.mail.message import UID_MAX_LENGTH, Message, check_uid
from fakepop.mail.wire import to_crlf

SAMPLES = [
    b"Subject: hi\n\nHello\n",
    b"Subject: hi\r\n\r\nHello\r\n",
    b"Subject: hi\r\rHello",
    b"no line end at all",
    b"Subject: x\n\n.\n..\n.leading dot\n",
    b"",
]


@pytest.mark.parametrize("raw", SAMPLES)
def test_size_is_the_length_of_the_crlf_form(raw: bytes) -> None:
    message = Message(raw)
    assert message.wire == to_crlf(raw)
    assert message.size == len(to_crlf(raw))


def test_size_counts_the_added_final_crlf() -> None:
    assert Message(b"Subject: x\n\nbody").size == len(b"Subject: x\r\n\r\nbody\r\n")


def test_content_uid_is_stable_and_follows_the_wire_form() -> None:
    a = Message(b"Subject: hi\n\nHello\n")
    assert a.uid == Message(b"Subject: hi\n\nHello\n").uid
    assert a.uid == Message(b"Subject: hi\r\n\r\nHello\r\n").uid  # same octets on the wire
    assert a.uid != Message(b"Subject: hi\n\nHello!\n").uid


@pytest.mark.parametrize("raw", SAMPLES)
def test_content_uid_is_a_valid_unique_id(raw: bytes) -> None:
    uid = Message(raw).uid
    assert 1 <= len(uid) <= 70
    assert all(0x21 <= ord(c) <= 0x7E for c in uid)


def test_explicit_uid_is_kept() -> None:
    assert Message(b"x", uid="my-uid.1").uid == "my-uid.1"


@pytest.mark.parametrize("uid", ["!", "~", "a" * UID_MAX_LENGTH, "whqtswO00WBw418f9t5JxYwZ"])
def test_check_uid_accepts(uid: str) -> None:
    assert check_uid(uid) == uid


@pytest.mark.parametrize(
    "uid",
    [
        pytest.param("", id="empty"),
        pytest.param("a" * (UID_MAX_LENGTH + 1), id="71-chars"),
        pytest.param("a b", id="space"),
        pytest.param("a\tb", id="tab"),
        pytest.param("\x7f", id="del"),
        pytest.param("caf\u00e9", id="non-ascii"),
    ],
)
def test_check_uid_rejects(uid: str) -> None:
    with pytest.raises(ValueError, match="UID"):
        check_uid(uid)
    with pytest.raises(ValueError, match="UID"):
        Message(b"x", uid=uid)


MESSAGE = b"Subject: top\r\nFrom: a@example.org\r\n\r\none\r\n.two\r\nthree\r\n"
HEADER = b"Subject: top\r\nFrom: a@example.org\r\n\r\n"


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(0, HEADER, id="0"),
        pytest.param(1, HEADER + b"one\r\n", id="1"),
        pytest.param(2, HEADER + b"one\r\n..two\r\n", id="2-stuffed"),
        pytest.param(3, HEADER + b"one\r\n..two\r\nthree\r\n", id="3-all"),
        pytest.param(4, HEADER + b"one\r\n..two\r\nthree\r\n", id="beyond"),
        pytest.param(10**9, HEADER + b"one\r\n..two\r\nthree\r\n", id="far-beyond"),
    ],
)
def test_top(n: int, expected: bytes) -> None:
    assert Message(MESSAGE).top(n) == expected


def test_top_beyond_the_body_is_the_stuffed_message() -> None:
    message = Message(MESSAGE)
    assert message.top(3) == message.stuffed()
    assert message.top(100) == message.stuffed()


def test_top_of_a_message_without_body() -> None:
    for raw in (b"Subject: only a header\r\n", b"Subject: x\r\n\r\n"):
        message = Message(raw)
        assert message.top(0) == raw
        assert message.top(5) == raw


def test_top_of_a_message_starting_with_a_blank_line() -> None:
    message = Message(b"\r\nbody 1\r\nbody 2\r\n")
    assert message.top(0) == b"\r\n"
    assert message.top(1) == b"\r\nbody 1\r\n"


def test_top_of_a_body_starting_with_a_dot() -> None:
    message = Message(b"Subject: x\r\n\r\n.\r\n.hidden\r\n")
    assert message.top(0) == b"Subject: x\r\n\r\n"
    assert message.top(1) == b"Subject: x\r\n\r\n..\r\n"
    assert message.top(2) == b"Subject: x\r\n\r\n..\r\n..hidden\r\n"


def test_stuffed_is_made_once() -> None:
    message = Message(b".a\n.b\n")
    assert message.stuffed() == b"..a\r\n..b\r\n"
    assert message.stuffed() is message.stuffed()


def test_accepts_text_as_utf8() -> None:
    message = Message("Subject: Gr\u00fc\u00dfe\n\nK\u00e4se\n")
    assert message.wire == "Subject: Gr\u00fc\u00dfe\r\n\r\nK\u00e4se\r\n".encode()


def test_accepts_an_email_message_keeping_raw_utf8_headers() -> None:
    mail = email.message.EmailMessage()
    mail["Subject"] = "Gr\u00fc\u00dfe"
    mail["From"] = "J\u00f6rg <joerg@example.org>"
    mail.set_content("Hello\n.dot\n")
    message = Message(mail)
    assert "Subject: Gr\u00fc\u00dfe\r\n".encode() in message.wire
    assert "From: J\u00f6rg <joerg@example.org>\r\n".encode() in message.wire
    assert b"=?utf-8?" not in message.wire.lower()  # not RFC 2047 encoded
    assert b"\r\n\r\nHello\r\n.dot\r\n" in message.wire
    assert b"\n" not in message.wire.replace(b"\r\n", b"")


def test_rejects_other_types() -> None:
    source: Any = 42
    with pytest.raises(TypeError, match=r"bytes, str or email\.message\.Message, not int"):
        Message(source)


def test_repr() -> None:
    assert repr(Message(b"x", uid="u1")) == "<Message uid='u1' size=3 subject=None>"
