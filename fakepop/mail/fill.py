"""Filling a maildrop with mail given as messages or as paths to load.

The one way ``fakepop serve``, the pytest plugin's marker and a manifest add mail, so
that each treats a path and a maildrop kept on disk alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from fakepop.mail.loaders import load
from fakepop.mail.maildir import MaildirMailbox
from fakepop.mail.message import LoadedMessage, Message, MessageSource, as_bytes, content_uid
from fakepop.mail.store import Mailbox
from fakepop.mail.wire import to_crlf

MailItem = MessageSource | Message | LoadedMessage | os.PathLike[str]


def add_mail(mailbox: Mailbox, items: Iterable[MailItem]) -> list[str]:
    """Add ``items`` to ``mailbox``, in order, and return the UIDs of those added.

    Args:
        mailbox: the maildrop.
        items: messages (bytes, text, ``email.message.Message``, ``Message``,
            ``LoadedMessage``), or paths (a ``Path``, or text on one line) of an ``.eml``,
            a directory of them, an mbox or a Maildir, read with ``fakepop.load``.

    A message whose UID a Maildir maildrop already holds is not added again, so that a
    server restarted on the same directory serves its mail once.

    Raises:
        OSError: a path cannot be read.
        ValueError: a path is no mail, or a message's UID is not one RFC 1939 allows.
    """
    # Taken before adding: the same message given twice is two messages, as in memory.
    there = {m.uid for m in mailbox.messages} if isinstance(mailbox, MaildirMailbox) else set()
    return [mailbox.add(m) for m in _messages(items) if not there or _uid(m) not in there]


def _messages(items: Iterable[MailItem]) -> Iterator[MessageSource | Message | LoadedMessage]:
    for item in items:
        if isinstance(item, os.PathLike) or (isinstance(item, str) and "\n" not in item):
            yield from load(item)
        else:
            yield item


def _uid(message: MessageSource | Message | LoadedMessage) -> str:
    """The UID ``message`` gets when added without one: its own, else its content's."""
    if isinstance(message, Message):
        return message.uid
    if isinstance(message, LoadedMessage):
        return message.uid or content_uid(to_crlf(message.raw))
    return content_uid(to_crlf(as_bytes(message)))
