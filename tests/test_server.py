"""The threaded server over real sockets: locking, commits, limits, lifecycle."""

from __future__ import annotations

import poplib
import socket
import threading
import time

import pytest
from pop3 import LineClient, ServerFactory

from fakepop import Message, POP3Server

MAIL = b"Subject: test\r\n\r\nbody\r\n"


@pytest.fixture
def server(pop3_server_factory: ServerFactory) -> POP3Server:
    return pop3_server_factory(users={"alice": "secret"}, tls=False, messages=[MAIL, MAIL, MAIL])


def login(server: POP3Server) -> poplib.POP3:
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user("alice")
    client.pass_("secret")
    return client


def wait_until_unlocked(server: POP3Server, user: str) -> None:
    """The server releases the lock in its own thread, just after the client's socket closes."""
    deadline = time.monotonic() + 5
    while server.mailbox(user).locked:
        assert time.monotonic() < deadline, "the maildrop stayed locked"
        time.sleep(0.001)


def test_second_login_gets_in_use_until_the_first_quits(server: POP3Server) -> None:
    first = login(server)
    second = poplib.POP3(server.host, server.port, timeout=5)
    second.user("alice")
    with pytest.raises(poplib.error_proto, match=r"-ERR \[IN-USE\]"):
        second.pass_("secret")
    with pytest.raises(poplib.error_proto):  # closed after [IN-USE], as Dovecot does
        second.noop()
    second.close()
    first.quit()
    wait_until_unlocked(server, "alice")
    third = login(server)
    third.quit()


def test_dele_then_drop_deletes_nothing(server: POP3Server) -> None:
    client = login(server)
    client.dele(1)
    client.dele(2)
    client.close()  # no QUIT
    wait_until_unlocked(server, "alice")
    assert len(server.mailbox("alice")) == 3


def test_dele_then_quit_deletes(server: POP3Server) -> None:
    client = login(server)
    client.dele(1)
    client.quit()
    wait_until_unlocked(server, "alice")
    assert len(server.mailbox("alice")) == 2


def test_mail_added_during_a_session_shows_in_the_next(server: POP3Server) -> None:
    client = login(server)
    server.mailbox("alice").add(b"Subject: late\r\n\r\nlate\r\n")
    assert client.stat()[0] == 3
    client.quit()
    wait_until_unlocked(server, "alice")
    client = login(server)
    assert client.stat()[0] == 4
    client.quit()


def test_pipelined_commands_in_one_packet_are_answered_in_order(server: POP3Server) -> None:
    raw = LineClient(server, greeting=True)
    raw.send(b"USER alice\r\nPASS secret\r\nSTAT\r\nLIST 2\r\nNOOP\r\nQUIT\r\n")
    replies = [raw.line() for _ in range(6)]
    assert replies[0].startswith(b"+OK")
    assert replies[1].startswith(b"+OK alice's maildrop has 3 messages")
    assert replies[2:] == [
        f"+OK 3 {3 * len(MAIL)}\r\n".encode(),
        f"+OK 2 {len(MAIL)}\r\n".encode(),
        b"+OK\r\n",
        b"+OK fakepop signing off (0 deleted, 3 left)\r\n",
    ]
    assert raw.closed_by_server()
    raw.close()


def test_overlong_line_gets_err_and_the_connection_closes(server: POP3Server) -> None:
    raw = LineClient(server, greeting=True)
    raw.send(b"NOOP " + b"x" * 10_000 + b"\r\nCAPA\r\n")
    assert raw.line() == b"-ERR Line too long: the limit is 4096 octets, closing the connection\r\n"
    assert raw.closed_by_server()
    raw.close()


@pytest.mark.fakepop(users={"alice": "secret"}, tls=False, long_line_closes=False)
def test_overlong_line_gets_err_and_the_session_goes_on(pop3_server: POP3Server) -> None:
    raw = LineClient(pop3_server, greeting=True)
    raw.send(b"NOOP " + b"x" * 10_000 + b"\r\nCAPA\r\n")
    assert raw.line() == b"-ERR Line too long: the limit is 4096 octets\r\n"
    assert raw.line() == b"+OK Capability list follows\r\n"
    raw.close()


@pytest.mark.fakepop(users={"alice": "secret"}, tls=False, max_bad_commands_before_login=3)
def test_bad_command_budget_closes_the_connection(pop3_server: POP3Server) -> None:
    raw = LineClient(pop3_server, greeting=True)
    raw.send(b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n")
    assert raw.line() == b"-ERR Unknown command: FOO\r\n"
    assert raw.line() == b"-ERR Unknown command: BAR\r\n"
    assert raw.line() == b"-ERR Too many bad commands, closing the connection\r\n"
    assert raw.closed_by_server()
    raw.close()


@pytest.mark.fakepop(users={"alice": "secret"}, tls=False, idle_timeout=0.2, messages=[MAIL])
def test_idle_client_is_logged_out_and_nothing_is_deleted(pop3_server: POP3Server) -> None:
    raw = LineClient(pop3_server, greeting=True)
    raw.send(b"USER alice\r\nPASS secret\r\nDELE 1\r\n")
    for _ in range(3):
        assert raw.line().startswith(b"+OK")
    assert raw.line() == b"-ERR Autologout: idle for too long\r\n"
    assert raw.closed_by_server()
    raw.close()
    wait_until_unlocked(pop3_server, "alice")
    assert len(pop3_server.mailbox("alice")) == 1


def test_ipv6_loopback(pop3_server_factory: ServerFactory) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6")
    try:
        server = pop3_server_factory(users={"alice": "secret"}, tls=False, host="::1")
    except OSError as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    assert server.url == f"pop://[::1]:{server.port}"
    client = poplib.POP3("::1", server.port, timeout=5)
    client.user("alice")
    assert client.pass_("secret").startswith(b"+OK")
    client.quit()


def test_restart_on_the_same_port_rebinds_at_once(server: POP3Server) -> None:
    login(server).quit()  # leaves a connection in TIME_WAIT
    port = server.port
    server.stop()
    with POP3Server(users={"alice": "secret"}, port=port) as again:
        assert again.port == port
        login(again).quit()
    server.start()  # the fixture stops it again


def test_port_in_use_says_so(server: POP3Server) -> None:
    with pytest.raises(OSError, match=f"port {server.port} on 127.0.0.1 is already in use"):
        POP3Server(port=server.port).start()


def test_url_and_users(server: POP3Server) -> None:
    assert server.url == f"pop://127.0.0.1:{server.port}"
    server.users["bob"] = "hunter2"
    assert dict(server.users) == {"alice": "secret", "bob": "hunter2"}
    assert len(server.mailbox("bob")) == 0
    del server.users["bob"]
    with pytest.raises(KeyError, match=r"server.users\['bob'\] = password"):
        server.mailbox("bob")


def test_stop_closes_open_sessions_without_committing(server: POP3Server) -> None:
    client = login(server)
    client.dele(1)
    server.stop()
    with pytest.raises((poplib.error_proto, OSError)):
        client.stat()
    client.close()
    assert len(server.mailbox("alice")) == 3
    assert not server.mailbox("alice").locked
    server.start()


class Exploding(Message):
    def stuffed(self) -> bytes:
        raise RuntimeError("boom")


def test_errors_in_server_threads_are_reraised_by_check(server: POP3Server) -> None:
    server.mailbox("alice").add(Exploding(b"Subject: x\r\n\r\nx\r\n"))
    client = login(server)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\]"):
        client.retr(4)
    client.close()
    deadline = time.monotonic() + 5
    with pytest.raises(RuntimeError, match="boom"):  # noqa: PT012
        while time.monotonic() < deadline:
            server.check()
            time.sleep(0.001)
    server.check()  # reported once


def test_transcript_records_both_directions_and_masks_the_password(server: POP3Server) -> None:
    login(server).quit()
    wait_until_unlocked(server, "alice")
    text = server.transcript.text()
    assert "C: USER alice" in text
    assert "C: PASS ****" in text
    assert "secret" not in text
    assert "C: PASS secret" in server.transcript.text(mask=False)
    assert server.transcript[0].lines()[0].startswith("S: +OK fakepop ready <")


def test_reset_empties_the_transcript_a_test_holds(server: POP3Server) -> None:
    transcript = server.transcript
    login(server).quit()
    wait_until_unlocked(server, "alice")
    server.reset()
    assert server.transcript is transcript
    assert len(transcript) == 0
    server.users["bob"] = "hunter2"
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user("bob")
    client.pass_("hunter2")
    client.quit()
    assert [s.session_id for s in transcript] == [1]
    assert transcript[0].user == "bob"


STOP_BOUND = 5.0  # seconds: stop() must return within 2 s; generous for a loaded machine


@pytest.mark.parametrize("stall", ["silent", "half-hello", "after-stls"])
def test_stop_does_not_wait_for_a_stalled_tls_handshake(stall: str) -> None:
    server = POP3Server(users={"alice": "secret"}, tls=True)  # idle_timeout: 600 s
    server.start()
    assert server.tls_port is not None
    if stall == "after-stls":
        client = socket.create_connection((server.host, server.port), timeout=5)
        assert client.recv(4096).startswith(b"+OK fakepop ready")
        client.sendall(b"STLS\r\n")
        assert client.recv(4096) == b"+OK Begin TLS negotiation\r\n"
    else:
        client = socket.create_connection((server.host, server.tls_port), timeout=5)
        if stall == "half-hello":
            client.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a hello cut short
    deadline = time.monotonic() + 5
    while not server._connections:  # the handshake is under way in a connection thread
        assert time.monotonic() < deadline, "the connection was not taken on"
        time.sleep(0.001)
    time.sleep(0.05)
    stopper = threading.Thread(target=server.stop)
    stopper.start()
    stopper.join(STOP_BOUND)
    assert not stopper.is_alive(), "stop() waited for the handshake"
    client.close()


def fetch_in_background(server: POP3Server, *, delete: bool, quit: bool = True) -> threading.Thread:
    """A fetch daemon's session, in a thread: retrieve every message, delete them if told."""

    def run() -> None:
        client = login(server)
        for n in range(1, len(client.list()[1]) + 1):
            client.retr(n)
            if delete:
                client.dele(n)
        if quit:
            client.quit()
        else:
            client.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_waits_return_once_a_background_client_has_fetched_and_deleted(
    server: POP3Server,
) -> None:
    mailbox = server.mailbox("alice")
    first, second = [m.uid for m in mailbox][:2]
    thread = fetch_in_background(server, delete=True)
    mailbox.wait_for_retrieval(first, second)
    mailbox.wait_for_deletion(first, second)
    assert {first, second} <= set(mailbox.deleted)
    session = server.transcript.wait_for(user="alice", quit=True)
    assert session.quit
    assert session.user == "alice"
    thread.join(5)


def test_wait_for_deletion_says_what_happened_when_the_client_deletes_nothing(
    server: POP3Server,
) -> None:
    mailbox = server.mailbox("alice")
    uid = mailbox.messages[0].uid
    fetch_in_background(server, delete=False)
    mailbox.wait_for_retrieval(uid)
    with pytest.raises(TimeoutError) as raised:
        mailbox.wait_for_deletion(uid, timeout=0.2)
    assert str(raised.value) == (
        f"waited 0.2 s for the deletion of UIDs ['{uid}']; deleted so far: nothing"
    )
    with pytest.raises(TimeoutError, match=r"retrieval of UIDs \['nope'\]; retrieved so far: \["):
        mailbox.wait_for_retrieval("nope", timeout=0.1)


def test_transcript_wait_for_names_the_sessions_that_ended_instead(server: POP3Server) -> None:
    fetch_in_background(server, delete=True, quit=False).join(5)
    session = server.transcript.wait_for(user="alice")
    assert not session.quit
    with pytest.raises(TimeoutError) as raised:
        server.transcript.wait_for(quit=True, timeout=0.1)
    assert str(raised.value) == (
        "waited 0.1 s for a session with QUIT to end; ended: 1 (alice, no QUIT); still open: none"
    )
