"""Bad input and limits over real sockets: each answered with an exact -ERR, each limit enforced.

Every limit has a safe default and can be configured; both are tested here over the wire.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pop3 import LineClient, ServerFactory
from serving import serve
from waiting import wait_until

from fakepop import POP3Server
from fakepop.settings import (
    IDLE_TIMEOUT,
    MAX_BAD_COMMANDS,
    MAX_CONNECTIONS,
    MAX_LINE_LENGTH,
    MAX_SASL_LENGTH,
)

TIMEOUT = 5.0
MAIL = b"Subject: test\r\n\r\nbody\r\n"  # 23 octets
MEBIBYTE = 1 << 20
SIGN_OFF = b"+OK fakepop signing off (0 deleted, 2 left)\r\n"


class Client(LineClient):
    """The raw client, greeted unless told not to, that logs in as alice."""

    def __init__(self, server: POP3Server | str, port: int | None = None, *, greeting: bool = True):
        super().__init__(server, port, greeting=greeting)

    def login(self) -> None:
        assert self.command("USER alice") == b"+OK Send PASS\r\n"
        assert self.command("PASS secret") == b"+OK alice's maildrop has 2 messages (46 octets)\r\n"


Connect = Callable[..., Client]


@pytest.fixture
def make_server(pop3_server_factory: ServerFactory) -> ServerFactory:
    """Servers where alice holds two messages; without TLS unless asked."""

    def make(**options: Any) -> POP3Server:
        defaults = {"users": {"alice": "secret"}, "tls": False, "messages": [MAIL, MAIL]}
        return pop3_server_factory(**{**defaults, **options})

    return make


@pytest.fixture
def server(pop3_server_factory: ServerFactory) -> POP3Server:
    return pop3_server_factory(users={"alice": "secret"}, tls=False, messages=[MAIL, MAIL])


@pytest.fixture
def tls_server(pop3_server_factory: ServerFactory) -> POP3Server:
    return pop3_server_factory(users={"alice": "secret"}, tls=True, messages=[MAIL, MAIL])


@pytest.fixture
def connect() -> Iterator[Connect]:
    clients: list[Client] = []

    def make(server: POP3Server, port: int | None = None, **options: bool) -> Client:
        clients.append(Client(server, port, **options))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


# --- bad input -------------------------------------------------------------------------------


def test_a_mebibyte_line_without_crlf_gets_one_err_and_memory_stays_bounded(
    make_server: ServerFactory, connect: Connect
) -> None:
    client = connect(make_server(long_line_closes=False))  # the rest of the line is read too
    junk = memoryview(b"x" * MEBIBYTE)  # made before tracing: only the server's memory counts
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        for _ in range(4):
            client.send(junk)
        client.send(b"\r\nCAPA\r\n")
        assert client.line() == b"-ERR Line too long: the limit is 4096 octets\r\n"
        assert client.line() == b"+OK Capability list follows\r\n"  # once: the rest was dropped
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 4 MiB went through; the server held at most a receive buffer's worth of it at a time.
    assert peak - baseline < MEBIBYTE // 2, f"{(peak - baseline) / MEBIBYTE:.2f} MiB"


@pytest.mark.parametrize(
    ("store", "size", "count"),
    [
        ("memory", 40_000, 400),  # replies under the write-gathering limit: 16 MB in all
        ("maildir", 500_000, 64),  # messages read whole from their files: 32 MB in all
    ],
)
def test_pipelined_retrs_are_answered_one_at_a_time(
    connect: Connect,
    make_server: ServerFactory,
    tmp_path: Path,
    store: str,
    size: int,
    count: int,
) -> None:
    # A client may send a burst of commands in one write; the server must not build every
    # reply before sending the first, or a burst of RETRs would cost memory by the gigabyte.
    mail = b"Subject: big\r\n\r\n" + b"x" * (size - 20) + b"\r\n"
    server = make_server(maildir=tmp_path) if store == "maildir" else make_server()
    server.mailbox("alice").add(mail)
    client = connect(server)
    client.command("USER alice")
    assert client.command("PASS secret").startswith(b"+OK alice's maildrop has 3 messages")
    burst = b"RETR 3\r\n" * count + b"QUIT\r\n"
    reply = b"+OK %d octets\r\n%s.\r\n" % (len(mail), mail)
    expected = len(reply) * count + len(b"+OK fakepop signing off (0 deleted, 3 left)\r\n")
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        client.send(burst)
        received = 0
        while data := client.sock.recv(65536):
            received += len(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == expected
    # One reply at a time, and the transcript's lines: under 2 MiB. All at once: 16 or 32 MiB.
    assert peak - baseline < 2 * MEBIBYTE, f"{(peak - baseline) / MEBIBYTE:.2f} MiB"


def test_nul_bytes(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    client.login()
    assert client.command(b"ST\0AT") == b"-ERR Command contains a NUL or a bare CR\r\n"
    assert client.command(b"DELE 1\0") == b"-ERR Command contains a NUL or a bare CR\r\n"
    assert client.command("STAT") == b"+OK 2 46\r\n"  # nothing was deleted, the session goes on


def test_invalid_utf8(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command(b"USER \xc3\x28") == b"-ERR Command is not valid UTF-8\r\n"
    assert client.command(b"\xff\xfe") == b"-ERR Command is not valid UTF-8\r\n"
    assert client.command(b"USER alice") == b"+OK Send PASS\r\n"


def test_bare_cr(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    client.login()
    # A bare CR never ends a line, and a line holding one is refused whole.
    assert client.command(b"DELE 1\rSTAT") == b"-ERR Command contains a NUL or a bare CR\r\n"
    assert client.command(b"STAT\r") == b"-ERR Command contains a NUL or a bare CR\r\n"
    assert client.command("QUIT") == SIGN_OFF


def test_bare_lf(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    # A bare LF ends a line, as most servers allow; each part is answered on its own.
    client.send(b"NO\nOP\r\nUSER alice\n")
    assert client.line() == b"-ERR Unknown command: NO\r\n"
    assert client.line() == b"-ERR Unknown command: OP\r\n"
    assert client.line() == b"+OK Send PASS\r\n"
    client.close()
    server.stop()  # the session's end is in the transcript
    violations = [text for _, text in server.violations]
    assert violations.count("a command line ended in a bare LF, not CRLF") == 2


@pytest.mark.parametrize(
    ("number", "reply"),
    [
        ("0", b"No such message: 0 (the maildrop has 2)"),
        ("-1", b"Invalid message number: -1"),
        ("9" * 40, b"No such message: " + b"9" * 40 + b" (the maildrop has 2)"),
        ("9" * 41, b"Argument too long: the limit is 40 characters"),
        ("one", b"Invalid message number: one"),
        ("1e3", b"Invalid message number: 1e3"),
        ("\u0661", b"Invalid message number: \\u0661"),  # an Arabic-Indic digit one
    ],
    ids=["zero", "minus-one", "huge", "over-40", "word", "exponent", "non-ascii-digit"],
)
def test_message_numbers(server: POP3Server, connect: Connect, number: str, reply: bytes) -> None:
    client = connect(server)
    client.login()
    for command in ("RETR {}", "LIST {}", "UIDL {}", "DELE {}", "TOP {} 1"):
        assert client.command(command.format(number)) == b"-ERR " + reply + b"\r\n", command
    assert client.command("QUIT") == SIGN_OFF
    assert len(server.mailbox("alice")) == 2


def test_top_with_a_negative_count(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    client.login()
    assert client.command("TOP 1 -1") == b"-ERR Invalid line count: -1\r\n"
    assert client.command("TOP 1 -0") == b"-ERR Invalid line count: -0\r\n"
    assert client.command("TOP 1 0") == b"+OK top of message follows\r\n"


def test_bad_base64_in_sasl(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH PLAIN !!!") == b"-ERR Invalid base64 in the initial response\r\n"
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command("AGFsaWNl*") == b"-ERR Invalid base64 in SASL response\r\n"
    # The exchange is over: the next line is a command again.
    assert client.command("USER alice") == b"+OK Send PASS\r\n"


def test_an_overlong_sasl_response(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command(b"A" * (MAX_SASL_LENGTH + 1)) == (
        b"-ERR SASL response over 16384 octets\r\n"
    )
    assert client.command("USER alice") == b"+OK Send PASS\r\n"


def test_an_overlong_auth_line_names_the_limit_it_broke(
    server: POP3Server, connect: Connect
) -> None:
    client = connect(server)
    # An AUTH line may be as long as a SASL response: 10,000 octets is accepted ...
    accepted = client.command(b"AUTH PLAIN " + b"A" * 10_000)
    assert accepted == (
        b"-ERR [AUTH] Malformed PLAIN response: expected authzid NUL authcid NUL password\r\n"
    )
    # ... so the refusal of a longer one must name that limit, not the command line's.
    refused = client.command(b"AUTH PLAIN " + b"A" * MAX_SASL_LENGTH)
    assert refused == b"-ERR Line too long: the limit is 16384 octets, closing the connection\r\n"


def test_the_transcript_names_the_limit_an_overlong_line_broke(
    make_server: ServerFactory, connect: Connect
) -> None:
    server = make_server(long_line_closes=False)
    client = connect(server)
    assert client.command(b"NOOP " + b"x" * 5000) == (
        b"-ERR Line too long: the limit is 4096 octets\r\n"
    )
    assert client.command(b"AUTH PLAIN " + b"A" * 17_000) == (
        b"-ERR Line too long: the limit is 16384 octets\r\n"
    )
    overlong = [line for line in server.transcript[0].lines() if line.startswith("C: <")]
    assert overlong == ["C: <line over 4096 octets>", "C: <line over 16384 octets>"]


def test_stls_twice(tls_server: POP3Server, connect: Connect) -> None:
    client = connect(tls_server)
    assert client.command("STLS") == b"+OK Begin TLS negotiation\r\n"
    client.wrap(tls_server.client_ssl_context())
    assert client.command("STLS") == b"-ERR TLS is already active\r\n"
    assert tls_server.tls_port is not None
    implicit = connect(tls_server, tls_server.tls_port, greeting=False)
    implicit.wrap(tls_server.client_ssl_context())
    assert implicit.line().startswith(b"+OK fakepop ready")
    assert implicit.command("STLS") == b"-ERR TLS is already active\r\n"
    client.login()


def test_stls_after_login(tls_server: POP3Server, connect: Connect) -> None:
    client = connect(tls_server)
    client.login()
    assert client.command("STLS") == b"-ERR STLS is not allowed after login\r\n"
    assert client.command("STAT") == b"+OK 2 46\r\n"  # still plaintext, still logged in


def test_pipelined_commands_after_stls_are_never_run(
    tls_server: POP3Server, connect: Connect
) -> None:
    client = connect(tls_server)
    client.send(b"STLS\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n")  # one write
    assert client.line() == b"+OK Begin TLS negotiation\r\n"
    client.wrap(tls_server.client_ssl_context())
    # Had the injected login run, this would be +OK.
    assert client.command("STAT") == b"-ERR STAT is not allowed before login\r\n"
    assert client.command("PASS secret") == b"-ERR Send USER first\r\n"
    client.login()
    assert client.command("QUIT") == SIGN_OFF


def test_commands_after_quit_are_not_answered(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    client.send(b"QUIT\r\nUSER alice\r\nNOOP\r\n")
    assert client.line() == b"+OK fakepop signing off\r\n"
    assert client.closed_by_server()
    client = connect(server)
    client.login()
    client.send(b"DELE 1\r\nQUIT\r\nRSET\r\nSTAT\r\n")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    assert client.line() == b"+OK fakepop signing off (1 deleted, 1 left)\r\n"
    assert client.closed_by_server()  # RSET after QUIT did not undo the deletion
    wait_until(lambda: not server.mailbox("alice").locked, "the maildrop stayed locked")
    assert len(server.mailbox("alice")) == 1


# --- limits: the defaults, and configured ones -----------------------------------------------


def test_the_defaults() -> None:
    server = POP3Server()
    assert server.settings.max_connections == MAX_CONNECTIONS == 1024
    settings = server.settings
    assert settings.max_bad_commands == MAX_BAD_COMMANDS == 20
    assert settings.idle_timeout == IDLE_TIMEOUT == 600
    assert settings.max_line_length == MAX_LINE_LENGTH == 4096
    assert settings.max_sasl_length == MAX_SASL_LENGTH == 16384


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("max_connections", 0, "max_connections must be at least 1"),
        ("max_bad_commands", 0, "max_bad_commands must be at least 1"),
        ("idle_timeout", 0, "idle_timeout must be a positive number of seconds"),
        ("max_line_length", 254, "max_line_length must be at least 255"),
        ("max_sasl_length", 254, "max_sasl_length must be at least 255 octets"),
    ],
)
def test_a_limit_cannot_be_switched_off(option: str, value: int, says: str) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(ValueError, match=says):
        POP3Server(**options)


def fill(server: POP3Server, count: int) -> list[socket.socket]:
    """``count`` connections, each greeted: the server holds a thread for every one."""
    held: list[socket.socket] = []
    while len(held) < count:
        # In greeted batches: a burst past the listen backlog would wait on SYN retries.
        batch = [
            socket.create_connection((server.host, server.port), timeout=TIMEOUT)
            for _ in range(min(64, count - len(held)))
        ]
        held += batch
        for sock in batch:
            assert sock.recv(4096).startswith(b"+OK fakepop ready")
    return held


def test_the_default_connection_limit_over_sockets(server: POP3Server, connect: Connect) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * MAX_CONNECTIONS + 100  # both ends of every connection are in this process
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"{wanted} file descriptors needed, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    held = fill(server, MAX_CONNECTIONS)
    try:
        extra = connect(server, greeting=False)
        assert extra.line() == (
            b"-ERR [SYS/TEMP] Too many connections (the limit is 1024), try again later\r\n"
        )
        assert extra.closed_by_server()
    finally:
        for sock in held:
            sock.close()


def test_a_configured_connection_limit_on_the_tls_port(
    connect: Connect, make_server: ServerFactory
) -> None:
    server = make_server(tls=True, max_connections=3)
    assert server.tls_port is not None
    held = [
        socket.create_connection((server.host, server.tls_port), timeout=TIMEOUT) for _ in range(3)
    ]
    # In plaintext even here: a thread for the handshake is what the server lacks.
    extra = connect(server, server.tls_port, greeting=False)
    assert extra.line() == (
        b"-ERR [SYS/TEMP] Too many connections (the limit is 3), try again later\r\n"
    )
    assert extra.closed_by_server()
    for sock in held:
        sock.close()


@pytest.mark.parametrize("limit", [None, 3])
def test_bad_commands_per_session(
    connect: Connect, limit: int | None, make_server: ServerFactory
) -> None:
    server = make_server() if limit is None else make_server(max_bad_commands=limit)
    budget = MAX_BAD_COMMANDS if limit is None else limit
    client = connect(server)
    client.login()
    client.send(b"DELE 1\r\n" + b"BOGUS\r\n" * budget + b"STAT\r\n")
    assert client.line() == b"+OK Message 1 deleted\r\n"
    for _ in range(budget - 1):
        assert client.line() == b"-ERR Unknown command: BOGUS\r\n"
    assert client.line() == b"-ERR Too many bad commands, closing the connection\r\n"
    assert client.closed_by_server()
    wait_until(lambda: not server.mailbox("alice").locked, "the maildrop stayed locked")
    assert len(server.mailbox("alice")) == 2  # closed without QUIT: nothing deleted
    # The budget is a session's: the next connection has all of it.
    again = connect(server)
    assert again.command("BOGUS") == b"-ERR Unknown command: BOGUS\r\n"
    again.login()


def test_idle_time_by_default_is_ten_minutes(server: POP3Server, connect: Connect) -> None:
    connect(server)
    # The limit is the connection's socket timeout: read it from the connection itself.
    wait_until(lambda: len(server._connections) == 1, "no connection")
    [connection] = server._connections.values()
    assert connection.sock.gettimeout() == 600.0


def test_a_configured_idle_time(connect: Connect, make_server: ServerFactory) -> None:
    server = make_server(tls=True, idle_timeout=0.3)
    client = connect(server)
    client.login()
    assert client.command("DELE 1") == b"+OK Message 1 deleted\r\n"
    began = time.monotonic()
    assert client.line() == b"-ERR Autologout: idle for too long\r\n"
    assert client.closed_by_server()
    assert 0.25 < time.monotonic() - began < 3
    wait_until(lambda: not server.mailbox("alice").locked, "the maildrop stayed locked")
    assert len(server.mailbox("alice")) == 2
    # A client that never starts its TLS handshake is let go just the same.
    assert server.tls_port is not None
    silent = connect(server, server.tls_port, greeting=False)
    began = time.monotonic()
    assert silent.closed_by_server()
    assert time.monotonic() - began < 3
    stalled = connect(server)
    assert stalled.command("STLS") == b"+OK Begin TLS negotiation\r\n"
    assert stalled.closed_by_server()


@pytest.mark.parametrize("limit", [None, 300])
def test_line_length(connect: Connect, limit: int | None, make_server: ServerFactory) -> None:
    server = make_server() if limit is None else make_server(max_line_length=limit)
    longest = MAX_LINE_LENGTH if limit is None else limit
    client = connect(server)
    assert client.command(b"USER " + b"a" * (longest - 5)) == b"+OK Send PASS\r\n"
    too_long = b"USER " + b"a" * (longest - 4)
    refused = b"-ERR Line too long: the limit is %d octets, closing the connection\r\n"
    assert client.command(too_long) == refused % longest
    assert client.closed_by_server()
    connect(server).login()


@pytest.mark.parametrize("limit", [None, 1000])
def test_sasl_response_size(
    connect: Connect, limit: int | None, make_server: ServerFactory
) -> None:
    server = make_server() if limit is None else make_server(max_sasl_length=limit)
    longest = MAX_SASL_LENGTH if limit is None else limit
    malformed = (
        b"-ERR [AUTH] Malformed PLAIN response: expected authzid NUL authcid NUL password\r\n"
    )
    client = connect(server)
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command(b"A" * longest) == malformed  # decoded, and refused as PLAIN
    assert client.command("AUTH PLAIN") == b"+ \r\n"
    assert client.command(b"A" * (longest + 4)) == (
        b"-ERR SASL response over %d octets\r\n" % longest
    )
    client.login()


def test_every_limit_can_be_set_for_fakepop_serve(tmp_path: Path) -> None:
    """The command line (and so the container) can set them all, in the config's [server]."""
    config = tmp_path / "fakepop-serve.toml"
    config.write_text(
        "[server]\nmax_connections = 2\nmax_bad_commands_before_login = 2\nidle_timeout = 1\n"
        "max_line_length = 300\nmax_sasl_length = 1000\nlong_line_closes = false\n"
    )
    with serve("--port", "0", "--no-tls", "--json", "--config", str(config)) as served:
        port = served.info["pop3"]["port"]
        with (
            contextlib.closing(Client("127.0.0.1", port)) as idle,
            contextlib.closing(Client("127.0.0.1", port)) as client,
            contextlib.closing(Client("127.0.0.1", port, greeting=False)) as extra,
        ):
            assert extra.line() == (
                b"-ERR [SYS/TEMP] Too many connections (the limit is 2), try again later\r\n"
            )
            began = time.monotonic()
            assert client.command(b"USER " + b"u" * 296) == (
                b"-ERR Line too long: the limit is 300 octets\r\n"
            )
            assert client.command("AUTH PLAIN") == b"+ \r\n"
            assert client.command(b"A" * 1001) == b"-ERR SASL response over 1000 octets\r\n"
            client.send(b"BOGUS\r\nBOGUS\r\n")
            assert client.line() == b"-ERR Unknown command: BOGUS\r\n"
            assert client.line() == b"-ERR Too many bad commands, closing the connection\r\n"
            assert client.closed_by_server()
            # Meanwhile the other said nothing since its greeting, just before ``began``.
            assert idle.line() == b"-ERR Autologout: idle for too long\r\n"
            assert 0.5 < time.monotonic() - began < 3


def test_maildir_top_with_a_huge_line_count_sends_the_whole_message(
    connect: Connect, make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server(maildir=tmp_path)
    client = connect(server)
    client.login()
    client.send(b"TOP 1 100000000000000000000\r\n")
    assert client.line() == b"+OK top of message follows\r\n"
    assert [client.line() for _ in range(4)] == [*MAIL.splitlines(keepends=True), b".\r\n"]
    assert client.command("QUIT") == SIGN_OFF
    # An error in the session's thread fails the test at teardown, when the plugin stops it.


def test_maildir_top_of_one_very_long_line_streams_it(
    connect: Connect, make_server: ServerFactory, tmp_path: Path
) -> None:
    # TOP once gathered a line whole, copying it again at each 64 KiB read: quadratic time,
    # and the line held in memory. Now the line passes through in the pieces it is read in.
    server = make_server(maildir=tmp_path)
    long = b"Subject: long\r\n\r\n" + b"x" * (16 * MEBIBYTE) + b"\r\nsecond\r\n"
    server.mailbox("alice").add(long)
    client = connect(server)
    client.command("USER alice")
    assert client.command("PASS secret").startswith(b"+OK alice's maildrop has 3 messages")
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        client.send(b"TOP 3 1\r\n")
        assert client.line() == b"+OK top of message follows\r\n"
        expected = len(long) - len(b"second\r\n") + len(b".\r\n")
        received = len(client.pending)
        while received < expected:
            data = client.sock.recv(1 << 20)
            assert data
            received += len(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == expected
    # A few 64 KiB reads in flight and the socket's buffers; the line whole would be 16 MiB.
    assert peak - baseline < 4 * MEBIBYTE, f"{(peak - baseline) / MEBIBYTE:.2f} MiB"


# --- what a long-running server remembers ------------------------------------------------------


def test_a_transcript_limit_bounds_all_that_the_server_remembers(
    connect: Connect, make_server: ServerFactory
) -> None:
    server = make_server(
        transcript_limit=2, faults=[{"on": "NOOP", "action": "error", "times": 100}]
    )
    uids = [m.uid for m in server.mailbox("alice")]
    for _ in range(5):
        client = connect(server)
        client.login()
        for command in ("RETR 1", "RETR 1", "RETR 2"):
            client.send(command.encode() + b"\r\n")
            while client.line() != b".\r\n":
                pass
        assert client.command("NOOP").startswith(b"-ERR")  # the fault fires
        assert client.command("QUIT") == SIGN_OFF
        wait_until(lambda: not server.mailbox("alice").locked, "the maildrop stayed locked")
    assert [s.session_id for s in server.transcript] == [4, 5]
    # The latest two sessions, and the first two UIDs each was sent.
    assert server.mailbox("alice").retrieved == {4: [uids[0]] * 2, 5: [uids[0]] * 2}
    assert [f.session for f in server.faults.fired] == [4, 5]


def test_a_client_that_pipelines_without_reading_costs_bounded_memory(
    connect: Connect, make_server: ServerFactory
) -> None:
    server = make_server(transcript_limit=10, idle_timeout=0.5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # few replies queue here
    sock.settimeout(0.5)
    sock.connect((server.host, server.port))
    burst = b"CAPA\r\n" * 10_000
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        sent = 0
        # Until the server stops reading (its replies fill the socket buffers) and then
        # gives up on a client that reads nothing.
        with contextlib.suppress(OSError):
            while sent < 64 * MEBIBYTE:
                sock.sendall(burst)
                sent += len(burst)
        wait_until(lambda: not server._connections, "the server kept the non-reader", 30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sock.close()
    [session] = server.transcript
    assert session.left_out > 0
    # Replies to thousands of commands: queued in socket buffers, not in the server.
    assert peak - baseline < MEBIBYTE, f"{(peak - baseline) / MEBIBYTE:.2f} MiB"
