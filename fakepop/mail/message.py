"""A message as a POP3 server holds it: its wire form, size and unique id."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fakepop.mail.wire import CRLF, dot_stuff, to_crlf, unended

UID_MAX_LENGTH = 70  # RFC 1939, section 7: 1 to 70 characters in the range 0x21 to 0x7E
_UID_CHARACTERS = re.compile(r"[\x21-\x7e]*")  # far faster than a loop over each character

MessageSource = bytes | str | email.message.Message


def as_bytes(source: MessageSource) -> bytes:
    """The octets of a message given as bytes, text or an ``email`` message object."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str):
        return source.encode("utf-8")
    if isinstance(source, email.message.Message):
        # SMTPUTF8 keeps raw UTF-8 headers (RFC 6532) instead of encoding them.
        return source.as_bytes(policy=email.policy.SMTPUTF8)
    raise TypeError(
        f"a message must be bytes, str or email.message.Message, not {type(source).__name__}"
    )


_SUBJECT_SHOWN = 60  # characters of the Subject a repr shows


def subject_of(head: bytes) -> str | None:
    """The decoded Subject of a message from its first bytes, cut for a repr; None if none."""
    end = head.find(b"\r\n\r\n")
    header = head if end < 0 else head[: end + 2]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(header)
    try:
        subject = parsed["Subject"]
    except (ValueError, IndexError):  # a header the parser cannot make sense of
        return None
    if subject is None:
        return None
    text = " ".join(str(subject).split())
    return text if len(text) <= _SUBJECT_SHOWN else text[: _SUBJECT_SHOWN - 3] + "..."


def content_uid(wire: bytes) -> str:
    """A unique id derived from the content, so the same mail gets the same id every run."""
    return hashlib.sha1(wire, usedforsecurity=False).hexdigest()


def check_uid(uid: str) -> str:
    """Return ``uid`` if RFC 1939 allows it as a unique-id, else raise ValueError saying why."""
    if not 1 <= len(uid) <= UID_MAX_LENGTH:
        raise ValueError(f"a UID must be 1 to {UID_MAX_LENGTH} characters, not {len(uid)}: {uid!r}")
    if not _UID_CHARACTERS.fullmatch(uid):
        raise ValueError(f"a UID may hold only printable ASCII without spaces (0x21-0x7E): {uid!r}")
    return uid


@dataclass(frozen=True)
class LoadedMessage:
    """A message read from a fixture, with the UID it should get (None: one from its content)."""

    raw: bytes
    uid: str | None = None


class StoredMessage(Protocol):
    """What a session needs of a message, wherever the mailbox keeps it."""

    @property
    def uid(self) -> str: ...

    @property
    def size(self) -> int:
        """Octets as sent, before byte-stuffing: what STAT, LIST and RETR report."""

    @property
    def unended(self) -> bool:
        """The mail as stored lacked a final line end: the CRLF ending the wire form was added."""

    def read(self) -> bytes:
        """The wire form (CRLF line ends), unstuffed."""

    def chunks(self) -> Iterable[bytes]:
        """The byte-stuffed wire form, without the terminating ".", in pieces to send."""

    def top_chunks(self, lines: int) -> Iterable[bytes]:
        """The byte-stuffed header, blank line and first ``lines`` lines of the body."""


class Message:
    """One message in memory: its wire form (CRLF line ends), size in octets and unique id.

    The byte-stuffed form is made once, on first retrieval, and sent as it is
    for every RETR after that.
    """

    __slots__ = ("_stuffed", "uid", "unended", "wire")

    def __init__(
        self, source: MessageSource, uid: str | None = None, *, keep_bare_cr: bool = False
    ) -> None:
        raw = as_bytes(source)
        self.wire = to_crlf(raw, keep_bare_cr)
        # Kept for the glued-dot quirk, which sends the mail without the CRLF added here.
        self.unended = unended(raw[-1:], keep_bare_cr)
        self.uid = check_uid(uid) if uid is not None else content_uid(self.wire)
        self._stuffed: bytes | None = None

    @property
    def size(self) -> int:
        """Octets as sent, before byte-stuffing: what STAT, LIST and RETR report."""
        return len(self.wire)

    def read(self) -> bytes:
        return self.wire

    def chunks(self) -> tuple[bytes]:
        return (self.stuffed(),)

    def top_chunks(self, lines: int) -> tuple[bytes]:
        return (self.top(lines),)

    def stuffed(self) -> bytes:
        """The byte-stuffed wire form, without the terminating ".", made once."""
        if self._stuffed is None:
            self._stuffed = dot_stuff(self.wire)
        return self._stuffed

    def top(self, lines: int) -> bytes:
        """The byte-stuffed header, the blank line and the first ``lines`` lines of the body."""
        wire = self.wire
        if wire.startswith(CRLF):
            end = 2
        else:
            end = wire.find(b"\r\n\r\n")
            if end < 0:  # no body at all
                return self.stuffed()
            end += 4
        for _ in range(lines):
            end = wire.find(CRLF, end)
            if end < 0:
                return self.stuffed()
            end += 2
        if end >= len(wire):
            return self.stuffed()
        return dot_stuff(wire[:end])

    def __repr__(self) -> str:
        return f"<Message uid={self.uid!r} size={self.size} subject={subject_of(self.wire)!r}>"
