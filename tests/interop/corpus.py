"""Fifty raw messages for the interop tests: the cases real clients get wrong, and filler.

Everything is deterministic, so a failure names the same message on every run.
"""

from __future__ import annotations

BIG_SIZE = 5 * 1024 * 1024  # the large message is at least this many octets


def _message(
    subject: str, body: bytes, *, tag: str = "", sender: str = "", extra: bytes = b""
) -> bytes:
    """A plain message with CRLF line ends; ``body`` is taken as it is."""
    tag = tag or subject.replace(" ", "-")
    sender = sender or "Corpus <corpus@fakepop.test>"
    head = (
        f"From: {sender}\r\n"
        "To: alice <alice@fakepop.test>\r\n"
        f"Subject: {subject}\r\n"
        "Date: Fri, 27 Nov 2026 09:00:00 +0000\r\n"
        f"Message-ID: <{tag}@corpus.fakepop.test>\r\n"
    )
    return head.encode("utf-8") + extra + b"\r\n" + body


def _big() -> bytes:
    """Over 5 MiB of 76-octet lines with a dot line every 997 lines.

    997 is prime, so the dot lines drift across every power-of-two chunk
    boundary a client or the server might read or write in.
    """
    plain = b"x" * 74 + b"\r\n"
    block = plain * 996 + b".dot line: stuffed on the wire, un-stuffed by the client\r\n"
    body = block * (BIG_SIZE // len(block) + 1)
    return _message("big", body)


def _tricky() -> list[bytes]:
    return [
        # The first body line is a lone ".", which must not end the reply.
        _message("body starts with a lone dot", b".\r\nafter the dot\r\n"),
        # A line that is exactly ".", one that is "..", and others starting with ".".
        _message(
            "dot lines",
            b"before\r\n.\r\n..\r\n...\r\n.hidden\r\n. space\r\nafter\r\n",
        ),
        # The very last line is "."; after stuffing the reply ends "..\r\n.\r\n".
        _message("ends with a dot line", b"last line next\r\n.\r\n"),
        # Dot lines only, nothing else in the body.
        _message("only dots", b"..\r\n.\r\n..\r\n"),
        # RFC 6532: raw UTF-8 in Subject and From, not encoded words.
        _message(
            "Grüße aus Köln — 日本語 ✉",
            "Grüße, ça va?\r\n".encode(),
            tag="utf8-headers",
            sender="Jürgen Müller <jürgen@bücher.test>",
            extra=b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n",
        ),
        # Stored with bare LF line ends: the server sends CRLF.
        b"From: lf@fakepop.test\nSubject: bare LF\n\nline one\n.dot after LF\nline three\n",
        # Stored with bare CR line ends (old Mac): the server sends CRLF.
        b"From: cr@fakepop.test\rSubject: bare CR\r\rline one\r.dot after CR\rline three\r",
        # No line end after the last line: the server adds CRLF.
        _message("no final line end", b"first\r\nthe last line has no CRLF"),
        # Headers, the blank line, and no body at all.
        _message("empty body", b""),
        # A mix of CRLF, bare LF and bare CR in one message ("\n\r" is two line ends).
        b"From: mixed@fakepop.test\r\nSubject: mixed line ends\n\rcrlf\r\nlf\ncr\r.dot\r\n",
        # A last line of "." with no line end: on the wire it becomes "..\r\n" then ".\r\n".
        _message("lone dot without line end", b"body\r\n."),
        # Long lines: 998 octets, the most RFC 5322 allows.
        _message("long lines", (b"y" * 998 + b"\r\n") * 3),
        # CRLF "." CRLF, the end of a multi-line reply, twice inside the body.
        _message("terminator inside", b"text\r\n.\r\n\r\n.\r\nmore\r\n"),
        # Blank lines at the end of the body survive retrieval.
        _message("trailing blank lines", b"text\r\n\r\n\r\n"),
    ]


def _ordinary(n: int) -> bytes:
    lines = b"".join(b"Line %d of message %d.\r\n" % (i, n) for i in range(1, n % 7 + 2))
    return _message(f"ordinary {n}", b"Hello.\r\n" + lines)


def corpus() -> list[bytes]:
    """Exactly 50 raw messages: the tricky ones, the 5 MiB one in the middle, ordinary ones."""
    tricky = _tricky()
    ordinary = [_ordinary(n) for n in range(1, 50 - len(tricky))]
    big = _big()
    assert len(big) >= BIG_SIZE
    messages = [*tricky[:7], big, *tricky[7:], *ordinary]
    assert len(messages) == 50
    return messages
