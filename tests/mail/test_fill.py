"""add_mail: messages and paths into a maildrop, once per message on disk."""

from __future__ import annotations

import email.message
from pathlib import Path

import pytest

from fakepop.mail.fill import add_mail
from fakepop.mail.maildir import MaildirMailbox
from fakepop.mail.message import LoadedMessage
from fakepop.mail.store import Mailbox
from fakepop.mail.wire import to_crlf

ONE = b"Subject: one\r\n\r\n1\r\n"
TWO = b"Subject: two\n\n2\n"


def mail_dir(tmp_path: Path) -> Path:
    for name, raw in (("a.eml", ONE), ("b.eml", TWO)):
        (tmp_path / "eml").mkdir(exist_ok=True)
        (tmp_path / "eml" / name).write_bytes(raw)
    return tmp_path / "eml"


def test_messages_and_paths_in_the_order_given(tmp_path: Path) -> None:
    eml = mail_dir(tmp_path)
    text = email.message.EmailMessage()
    text["Subject"] = "three"
    text.set_content("3")
    mailbox = Mailbox()
    uids = add_mail(mailbox, [b"Subject: zero\r\n\r\n0\r\n", eml, text, LoadedMessage(ONE, "u1")])
    assert uids == [m.uid for m in mailbox.messages]
    assert uids[1:3] == ["a", "b"]  # a directory in name order, UIDs from the file names
    assert uids[4] == "u1"
    assert [m.read() for m in mailbox.messages][1:3] == [ONE, to_crlf(TWO)]


def test_text_on_one_line_is_a_path(tmp_path: Path) -> None:
    eml = mail_dir(tmp_path)
    assert add_mail(Mailbox(), [str(eml / "b.eml")]) == ["b"]
    with pytest.raises(OSError, match="no-such"):
        add_mail(Mailbox(), [str(tmp_path / "no-such")])


@pytest.mark.parametrize("on_disk", [False, True])
def test_mail_already_on_disk_is_not_added_again(tmp_path: Path, on_disk: bool) -> None:
    eml = mail_dir(tmp_path)

    def mailbox() -> Mailbox:
        return MaildirMailbox(tmp_path / "maildir") if on_disk else Mailbox()

    first = mailbox()
    assert len(add_mail(first, [eml, ONE, TWO, TWO])) == 5  # twice in one call: two messages
    again = mailbox()  # a restarted server: the Maildir keeps what the last run added
    assert add_mail(again, [eml, ONE, TWO, TWO]) == ([] if on_disk else [m.uid for m in again])
    assert len(again) == 5
