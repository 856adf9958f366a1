"""What a test's failure report shows of fakepop's objects: their reprs."""

from __future__ import annotations

import poplib
from pathlib import Path

from fakepop import MaildirMailbox, Message, POP3Server

LONG = "a subject far longer than anyone would read in a failure report, cut short"


def test_a_message_shows_its_uid_size_and_subject() -> None:
    message = Message(b"Subject: =?utf-8?q?caf=C3=A9?= menu\r\n\r\nbody\r\n", uid="m1")
    assert repr(message) == f"<Message uid='m1' size={message.size} subject='caf\u00e9 menu'>"
    long = Message(f"Subject: {LONG}\n\nx\n")
    assert repr(long).endswith(f"subject={LONG[:57] + '...'!r}>")


def test_a_mailbox_shows_its_account_and_what_sessions_did() -> None:
    with POP3Server(users={"alice": "a"}, tls=False) as server:
        mailbox = server.mailbox("alice")
        mailbox.add(b"Subject: one\r\n\r\n1\r\n", uid="one")
        mailbox.add(b"Subject: two\r\n\r\n2\r\n", uid="two")
        size = sum(m.size for m in mailbox)
        assert repr(mailbox) == (
            f"<Mailbox 'alice': 2 messages, {size} octets, 0 retrieved, 0 deleted>"
        )
        client = poplib.POP3(server.host, server.port, timeout=5)
        client.user("alice")
        client.pass_("a")
        client.retr(1)
        client.retr(1)
        client.dele(2)
        client.quit()
        one = mailbox.messages[0].size
        assert (
            repr(mailbox) == f"<Mailbox 'alice': 1 messages, {one} octets, 1 retrieved, 1 deleted>"
        )


def test_a_maildir_mailbox_and_its_messages_show_where_and_what(tmp_path: Path) -> None:
    with POP3Server(users={"bob": "b"}, tls=False, maildir=tmp_path) as server:
        mailbox = server.mailbox("bob")
        assert isinstance(mailbox, MaildirMailbox)
        mailbox.add(b"Subject: on disk\n\nx\n", uid="disk-1")
        [message] = mailbox.messages
        assert repr(mailbox) == (
            f"<MaildirMailbox 'bob': 1 messages, {message.size} octets, 0 retrieved,"
            f" 0 deleted in {tmp_path / 'bob'}>"
        )
        assert (
            repr(message) == f"<MaildirMessage uid='disk-1' size={message.size} subject='on disk'>"
        )


def test_a_server_shows_where_it_listens_or_that_it_stopped() -> None:
    server = POP3Server(users={"carol": "c"}, tls=False)
    assert repr(server) == "<POP3Server stopped users=['carol']>"
    with server:
        assert repr(server) == f"<POP3Server {server.url} users=['carol']>"
