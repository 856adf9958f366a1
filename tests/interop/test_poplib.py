"""Python's poplib against the server, over real sockets."""

from __future__ import annotations

import hashlib
import poplib
import socket
from collections.abc import Iterator
from typing import cast

import pytest
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
    b"From: c@example.com\r\nSubject: no final CRLF\r\n\r\nline 1\r\nline 2\r\nline 3",
    "From: Zoë <z@example.com>\r\nSubject: Grüße\r\n\r\nKöln\r\n".encode(),
    b"From: e@example.com\r\nSubject: empty body\r\n\r\n",
]


@pytest.fixture
def server(pop3_server_factory: ServerFactory) -> POP3Server:
    return pop3_server_factory(users={"alice": "secret"}, tls=False, messages=MESSAGES)


@pytest.fixture
def client(server: POP3Server) -> Iterator[poplib.POP3]:
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user("alice")
    client.pass_("secret")
    yield client
    client.close()


def unstuffed(lines: list[bytes]) -> bytes:
    """poplib removes the stuffing and the line ends; put the line ends back."""
    return b"".join(line + b"\r\n" for line in lines)


def test_stat_counts_octets_as_sent(client: poplib.POP3) -> None:
    sizes = [len(to_crlf(m)) for m in MESSAGES]
    assert client.stat() == (len(MESSAGES), sum(sizes))


def test_list_gives_each_size(client: poplib.POP3) -> None:
    response, lines, _ = client.list()
    total = sum(len(to_crlf(m)) for m in MESSAGES)
    assert response == f"+OK {len(MESSAGES)} messages ({total} octets)".encode()
    assert lines == [f"{i} {len(to_crlf(m))}".encode() for i, m in enumerate(MESSAGES, 1)]
    assert cast(bytes, client.list(2)) == f"+OK 2 {len(to_crlf(MESSAGES[1]))}".encode()


def test_retr_returns_every_message_byte_for_byte(client: poplib.POP3) -> None:
    for number, raw in enumerate(MESSAGES, 1):
        response, lines, octets = client.retr(number)
        wire = to_crlf(raw)
        assert response == f"+OK {len(wire)} octets".encode()
        assert unstuffed(lines) == wire
        assert octets == len(wire)  # poplib counts the un-stuffed octets with CRLFs


def test_top_gives_headers_and_n_lines(client: poplib.POP3) -> None:
    _, lines, _ = client.top(3, 2)
    assert lines == [b"From: c@example.com", b"Subject: no final CRLF", b"", b"line 1", b"line 2"]
    _, lines, _ = client.top(2, 0)
    assert lines == [b"From: b@example.com", b"Subject: bare LF", b""]


def test_uidl_lists_unique_ids(server: POP3Server, client: poplib.POP3) -> None:
    uids = [m.uid for m in server.mailbox("alice").messages]
    _, lines, _ = client.uidl()
    assert lines == [f"{i} {uid}".encode() for i, uid in enumerate(uids, 1)]
    assert client.uidl(4) == f"+OK 4 {uids[3]}".encode()
    assert len(set(uids)) == len(uids)


def test_dele_rset_noop(client: poplib.POP3) -> None:
    assert client.dele(1).startswith(b"+OK")
    assert client.stat()[0] == len(MESSAGES) - 1
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.retr(1)
    assert client.noop() == b"+OK"
    assert client.rset().startswith(b"+OK")
    assert client.stat()[0] == len(MESSAGES)


def test_dele_then_quit_deletes(server: POP3Server, client: poplib.POP3) -> None:
    client.dele(2)
    client.dele(4)
    assert client.quit().startswith(b"+OK")
    left = [m.read() for m in server.mailbox("alice").messages]
    assert left == [to_crlf(m) for i, m in enumerate(MESSAGES, 1) if i not in (2, 4)]


def test_errors_come_back_as_error_proto(client: poplib.POP3) -> None:
    with pytest.raises(poplib.error_proto, match=r"No such message: 99"):
        client.retr(99)
    with pytest.raises(poplib.error_proto, match=r"Invalid message number"):
        client.retr("x")
    # The session goes on after a client's mistake.
    assert client.stat()[0] == len(MESSAGES)


def test_capa_lists_the_extensions(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=5)
    capa = client.capa()
    for name in ("TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "UTF8"):
        assert name in capa
    assert capa["EXPIRE"] == ["NEVER"]
    assert capa["IMPLEMENTATION"][0] == "fakepop"
    client.quit()


def test_apop_logs_in_with_the_greeting_timestamp(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=5)
    assert client.apop("alice", "secret").startswith(b"+OK")
    assert client.stat()[0] == len(MESSAGES)
    client.quit()


def test_apop_with_a_wrong_secret_is_refused(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=5)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.apop("alice", "wrong")
    client.quit()


def test_apop_digest_is_md5_of_timestamp_and_secret(server: POP3Server) -> None:
    """Computed by hand, not by poplib, so a mistake shared with poplib cannot hide."""
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        replies = sock.makefile("rb")
        timestamp = replies.readline().rstrip(b"\r\n").split(b" ")[-1]
        assert timestamp.startswith(b"<")
        assert timestamp.endswith(b"@localhost>")
        digest = hashlib.md5(timestamp + b"secret").hexdigest()
        sock.sendall(f"APOP alice {digest}\r\nQUIT\r\n".encode())
        assert replies.readline().startswith(b"+OK alice's maildrop has 5 messages")
        replies.close()


def test_wrong_password_is_refused_with_auth_code(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user("alice")
    with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
        client.pass_("wrong")
    client.user("alice")
    assert client.pass_("secret").startswith(b"+OK")
    client.quit()


def test_utf8_mode_admits_utf8_user_names(server: POP3Server) -> None:
    server.users["jürgen"] = "pässword"
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.encoding = "utf-8"
    assert "UTF8" in client.capa()
    assert client.utf8() == b"+OK UTF8 enabled"
    client.user("jürgen")
    assert client.pass_("pässword").startswith(b"+OK")
    client.quit()


def test_non_ascii_user_name_without_utf8_gets_utf8_code(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.encoding = "utf-8"
    with pytest.raises(poplib.error_proto, match=r"-ERR \[UTF8\]"):
        client.user("jürgen")
    client.quit()


def test_quit_before_login_signs_off(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=5)
    assert client.quit().startswith(b"+OK")
