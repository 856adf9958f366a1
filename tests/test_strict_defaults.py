"""The default is no kinder than real servers: what Dovecot 2.3 refuses, fakepop refuses too,
and each behaviour is a setting a persona can change (``argument_syntax``, ``long_line_closes``,
``in_use_closes``, ``lock_wait``, ``max_bad_commands_before_login``, ``keep_bare_cr``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pop3 import LineClient, ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import crlf_chunks, to_crlf

MAIL = b"Subject: one\r\n\r\nHello\r\n"
RFC = b"words are separated by one space (RFC 1939, section 3)\r\n"
TRAILING = b"-ERR A space at the end of the line: " + RFC
DOUBLE = b"-ERR Two spaces in a row: " + RFC
IN_USE = b"-ERR [IN-USE] Mailbox is locked by another session\r\n"
LOGGED_IN = b"+OK alice's maildrop has 1 message (23 octets)\r\n"


@pytest.fixture
def make(pop3_server_factory: ServerFactory) -> ServerFactory:
    def make_server(**options: Any) -> POP3Server:
        server = pop3_server_factory(users={"alice": "secret"}, tls=False, apop=False, **options)
        server.mailbox("alice").add(MAIL)
        return server

    return make_server


def connect(server: POP3Server) -> LineClient:
    return LineClient(server, greeting=True)


def login(server: POP3Server) -> LineClient:
    client = connect(server)
    assert client.command("USER alice") == b"+OK Send PASS\r\n"
    assert client.command("PASS secret") == LOGGED_IN
    return client


def violations(server: POP3Server) -> list[str]:
    return [v for session in server.transcript.sessions for v in session.violations]


# --- spaces between words: RFC 1939, section 3 ------------------------------------------


def test_extra_spaces_are_refused_and_named(make: ServerFactory) -> None:
    server = make()
    with connect(server) as client:
        assert client.command("USER alice ") == TRAILING
        assert client.command("USER  alice") == DOUBLE
        assert client.command("USER alice") == b"+OK Send PASS\r\n"
        assert client.command("PASS secret") == LOGGED_IN
        assert client.command("LIST 1 ") == TRAILING
        assert client.command("TOP 1  0") == DOUBLE
        assert client.command("LIST 1") == b"+OK 1 23\r\n"
        assert client.command("QUIT").startswith(b"+OK")
    assert violations(server) == [
        "USER line with a space at the end of the line: RFC 1939, section 3, separates words"
        " by one space",
        "USER line with two spaces in a row: RFC 1939, section 3, separates words by one space",
        "LIST line with a space at the end of the line: RFC 1939, section 3, separates words"
        " by one space",
        "TOP line with two spaces in a row: RFC 1939, section 3, separates words by one space",
    ]


def test_a_password_keeps_its_spaces(make: ServerFactory) -> None:
    # RFC 1939, section 7: the server may treat spaces in PASS's argument as the password's.
    server = make()
    server.users["bob"] = " two  words "
    with connect(server) as client:
        client.command("USER bob")
        assert client.command("PASS  two  words ").startswith(b"+OK bob's maildrop")


def test_arguments_to_a_command_that_takes_none_are_refused_and_named(make: ServerFactory) -> None:
    server = make()
    with login(server) as client:
        assert client.command("STAT x") == b"-ERR Usage: STAT\r\n"
        assert client.command("NOOP x") == b"-ERR Usage: NOOP\r\n"
        assert client.command("QUIT x") == b"-ERR Usage: QUIT\r\n"
    assert violations(server) == [
        "STAT sent with arguments: it takes none",
        "NOOP sent with arguments: it takes none",
        "QUIT sent with arguments: it takes none",
    ]


def test_dovecot_syntax_reads_the_line_as_dovecot_does(make: ServerFactory) -> None:
    server = make(argument_syntax="dovecot")
    with connect(server) as client:
        # The name is taken as written: "alice " is no account, so PASS fails.
        assert client.command("USER alice ") == b"+OK Send PASS\r\n"
        assert client.command("PASS secret").startswith(b"-ERR [AUTH]")
        assert client.command("USER alice") == b"+OK Send PASS\r\n"
        assert client.command("PASS secret") == LOGGED_IN
        assert client.command("LIST  1") == b"+OK 1 23\r\n"  # spaces before a number skipped
        assert client.command("LIST 1 ") == (
            b"-ERR Noise after the last argument: a space ends the line\r\n"
        )
        assert client.command("STAT x") == b"+OK 1 23\r\n"  # ignored
        assert client.command("QUIT x").startswith(b"+OK")
    assert violations(server) == []


# --- overlong lines and bad commands ------------------------------------------------------


def test_bad_commands_before_login_close_at_the_third_in_a_row(make: ServerFactory) -> None:
    server = make()
    with connect(server) as client:
        client.send(b"FOO\r\nBAR\r\nCAPA\r\nBAZ\r\nQUX\r\n")  # CAPA starts the count again
        for verb in (b"FOO", b"BAR"):
            assert client.line() == b"-ERR Unknown command: " + verb + b"\r\n"
        assert client.line() == b"+OK Capability list follows\r\n"
        while client.line() != b".\r\n":
            pass
        for verb in (b"BAZ", b"QUX"):
            assert client.line() == b"-ERR Unknown command: " + verb + b"\r\n"
        assert client.command("STAT") == b"-ERR Too many bad commands, closing the connection\r\n"
        assert client.closed_by_server()


def test_bad_commands_after_login_are_counted_in_a_row(make: ServerFactory) -> None:
    server = make(max_bad_commands=3)
    with login(server) as client:
        client.send(b"FOO\r\nFOO\r\nNOOP\r\nFOO\r\nFOO\r\nFOO\r\n")
        replies = [client.line() for _ in range(6)]
        assert replies[2] == b"+OK\r\n"
        assert replies[-1] == b"-ERR Too many bad commands, closing the connection\r\n"
        assert client.closed_by_server()


# --- [IN-USE] -------------------------------------------------------------------------------


def test_in_use_closes_the_connection(make: ServerFactory) -> None:
    server = make()
    with login(server), connect(server) as second:
        second.command("USER alice")
        assert second.command("PASS secret") == IN_USE
        assert second.closed_by_server()


def test_in_use_keeps_the_connection_when_told(make: ServerFactory) -> None:
    server = make(in_use_closes=False)
    with login(server) as first, connect(server) as second:
        second.command("USER alice")
        assert second.command("PASS secret") == IN_USE
        assert first.command("QUIT").startswith(b"+OK")
        second.command("USER alice")
        assert second.command("PASS secret") == LOGGED_IN


def test_a_login_waits_for_the_lock_and_gets_the_maildrop_once_it_is_free(
    make: ServerFactory,
) -> None:
    server = make(lock_wait=60)
    with login(server) as first, connect(server) as second:
        second.command("USER alice")
        second.send(b"PASS secret\r\n")  # waits: no answer while the first holds the maildrop
        assert first.command("QUIT").startswith(b"+OK")
        assert second.line() == LOGGED_IN


def test_a_login_that_waited_in_vain_gets_in_use_and_is_closed(make: ServerFactory) -> None:
    server = make(lock_wait=0.3)
    with login(server), connect(server) as second:
        second.command("USER alice")
        assert second.command("PASS secret") == IN_USE
        assert second.closed_by_server()
    waited = [line for line in server.transcript[1].lines() if line.startswith("S: ")]
    assert waited == ["S: +OK fakepop ready", "S: +OK Send PASS", "S: " + IN_USE[:-2].decode()]


# --- a bare CR in stored mail ----------------------------------------------------------------

BARE_CR = b"Subject: cr\r\n\r\nbare\rCR\r.not a line\n"


@pytest.mark.parametrize("store", ["memory", "maildir"])
def test_a_bare_cr_is_a_line_end_by_default_and_kept_when_told(
    pop3_server_factory: ServerFactory, tmp_path: Path, store: str
) -> None:
    for keep, wire in (
        (False, b"Subject: cr\r\n\r\nbare\r\nCR\r\n..not a line\r\n"),
        (True, b"Subject: cr\r\n\r\nbare\rCR\r.not a line\r\n"),  # as Dovecot sends it
    ):
        maildir = tmp_path / str(keep) if store == "maildir" else None
        server = pop3_server_factory(
            users={"alice": "secret"}, tls=False, maildir=maildir, keep_bare_cr=keep
        )
        server.mailbox("alice").add(BARE_CR)
        size = len(wire.replace(b"\r\n..", b"\r\n."))  # the size is before byte-stuffing
        with connect(server) as client:
            client.command("USER alice")
            client.command("PASS secret")
            assert client.command("LIST 1") == b"+OK 1 %d\r\n" % size
            assert client.command("RETR 1") == b"+OK %d octets\r\n" % size
            assert client.read(len(wire) + 3) == wire + b".\r\n"


@pytest.mark.parametrize("raw", [BARE_CR, b"a\rb\r\nc\nd\r", b"\r\r\n\r", b"no line end"])
def test_crlf_chunks_keeping_bare_cr_is_to_crlf_at_every_boundary(raw: bytes) -> None:
    whole = to_crlf(raw, keep_bare_cr=True)
    for cut in range(len(raw) + 1):
        chunks = [raw[:cut], raw[cut:]]
        assert b"".join(crlf_chunks(chunks, keep_bare_cr=True)) == whole
