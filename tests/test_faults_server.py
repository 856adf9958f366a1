"""Faults over real sockets: every action as poplib and a raw socket see it, byte for byte.

Timing tests assert lower bounds only (a delay of 0.2 s takes at least 0.2 s);
a loaded machine may always be slower.
"""

from __future__ import annotations

import contextlib
import json
import poplib
import random
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from pop3 import LineClient, ServerFactory

from fakepop import POP3Server
from fakepop.protocol.fault_plan import FaultError, FaultPlan

TIMEOUT = 5.0  # seconds for any socket operation that should succeed at once
CLIENT_TIMEOUT = 0.5  # the client's patience in the tests where the server stalls
USER, PASSWORD = "alice", "secret"

M1 = b"Subject: one\r\n\r\nHello\r\n"  # 23 octets
M2 = b"Subject: dots\r\n\r\n.x\r\n..\r\nend\r\n"  # 30 octets; two lines start with "."
M2_STUFFED = b"Subject: dots\r\n\r\n..x\r\n...\r\nend\r\n"
M3 = b"Subject: three\r\n\r\n3\r\n"  # 21 octets
MESSAGES = [M1, M2, M3]
M1_RETR = b"+OK 23 octets\r\n" + M1 + b".\r\n"
ERROR = b"-ERR [SYS/TEMP] Temporary failure, try again later\r\n"
IN_USE = b"-ERR [IN-USE] Mailbox is locked by another session"
GREETING = b"+OK fakepop ready\r\n"
LOGGED_IN = b"+OK Send PASS\r\n+OK alice's maildrop has 3 messages (74 octets)\r\n"


class MakeServer(Protocol):
    def __call__(
        self, faults: FaultPlan | list[dict[str, Any]] | str | None = None, **options: Any
    ) -> POP3Server: ...


@pytest.fixture
def make_server(pop3_server_factory: ServerFactory) -> MakeServer:
    """Started servers with alice's three messages; no TLS unless asked, and no APOP, so the
    greeting is exact bytes. The plugin stops them after the test."""

    def make(
        faults: FaultPlan | list[dict[str, Any]] | str | None = None, **options: Any
    ) -> POP3Server:
        return pop3_server_factory(
            users={USER: PASSWORD},
            apop=False,
            faults=faults,
            messages=MESSAGES,
            **{"tls": False, **options},
        )

    return make


@pytest.fixture
def server(make_server: MakeServer) -> POP3Server:
    """alice's three messages, without TLS or APOP, and no faults."""
    return make_server()


def login(raw: LineClient) -> bytes:
    """USER and PASS pipelined; their two replies."""
    raw.send(b"USER alice\r\nPASS secret\r\n")
    return raw.line() + raw.line()


@contextlib.contextmanager
def pop(server: POP3Server, timeout: float = TIMEOUT) -> Iterator[poplib.POP3]:
    """poplib on the plain port, closed quietly whatever state the fault left it in."""
    client = poplib.POP3(server.host, server.port, timeout=timeout)
    try:
        yield client
    finally:
        with contextlib.suppress(OSError):
            client.close()


def poplib_login(client: poplib.POP3) -> bytes:
    client.user(USER)
    return client.pass_(PASSWORD)


def wait_until_unlocked(server: POP3Server) -> None:
    """The server releases the lock in its own thread, just after the connection ends."""
    deadline = time.monotonic() + TIMEOUT
    while server.mailbox(USER).locked:
        assert time.monotonic() < deadline, "the maildrop stayed locked"
        time.sleep(0.001)


def fetch_all(server: POP3Server) -> list[bytes]:
    """Every message, retrieved by a new poplib session that then quits."""
    with pop(server) as client:
        poplib_login(client)
        count, _ = client.stat()
        got = [b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in range(1, count + 1)]
        client.quit()
    return got


def notes(server: POP3Server, session: int = 1) -> list[str]:
    """The transcript's notes on a connection ("*: ..." lines)."""
    return [line for line in server.transcript[session - 1].lines() if line.startswith("*: ")]


# --- [IN-USE]: a lock rule and a held lock ----------------------------------------------


@pytest.mark.parametrize("user", [None, USER], ids=["default", "named-user"])
def test_lock_rule_gives_in_use_for_its_attempts_then_login_succeeds(
    user: str | None, make_server: MakeServer
) -> None:
    rule: dict[str, Any] = {"action": "lock", "attempts": 2}
    if user is not None:
        rule["user"] = user
    server = make_server([rule])
    for _ in range(2):
        with pop(server) as client:
            client.user(USER)
            with pytest.raises(poplib.error_proto) as info:
                client.pass_(PASSWORD)
            assert info.value.args == (IN_USE,)
            with pytest.raises(poplib.error_proto, match="EOF"):  # closed after [IN-USE]
                client.noop()
    with pop(server) as client:
        assert poplib_login(client) == b"+OK alice's maildrop has 3 messages (74 octets)"
        client.quit()
    assert [(f.event, f.session, f.user) for f in server.faults.fired] == [("login", 1, USER)]


def test_lock_rule_for_seconds(make_server: MakeServer) -> None:
    rule = {"action": "lock", "seconds": 0.3, "user": USER}
    # Tried again on one connection: the default closes it after [IN-USE].
    server = make_server([rule], in_use_closes=False)
    with pop(server) as client:
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"IN-USE"):
            client.pass_(PASSWORD)
        start = time.monotonic()  # the hold began before this refusal was sent
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"IN-USE"):
            client.pass_(PASSWORD)
        time.sleep(max(0.0, 0.35 - (time.monotonic() - start)))
        client.user(USER)
        assert client.pass_(PASSWORD).startswith(b"+OK alice's maildrop")
        client.quit()


def test_hold_lock_released_mid_test(make_server: MakeServer) -> None:
    server = make_server(in_use_closes=False)  # tried again on one connection
    mailbox = server.mailbox(USER)
    with pop(server) as client:
        with mailbox.hold_lock():
            client.user(USER)
            with pytest.raises(poplib.error_proto) as info:
                client.pass_(PASSWORD)
            assert info.value.args == (IN_USE,)
        # Released: the same connection logs in on its next try.
        assert poplib_login(client) == b"+OK alice's maildrop has 3 messages (74 octets)"
        assert client.retr(1)[1] == [b"Subject: one", b"", b"Hello"]
        client.quit()
    assert server.faults.fired == []


# --- drops ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_during_retr_after_dele_loses_and_deletes_nothing(
    mode: str, make_server: MakeServer
) -> None:
    rule = {"on": "RETR", "action": "drop", "at": "during", "after_bytes": 30, "mode": mode}
    server = make_server([rule])
    uids = [m.uid for m in server.mailbox(USER).messages]
    with pop(server) as client:
        poplib_login(client)
        assert client.dele(1) == b"+OK Message 1 deleted"
        if mode == "close":
            with pytest.raises(poplib.error_proto) as info:
                client.retr(2)
            assert info.value.args == ("-ERR EOF",)
        else:
            with pytest.raises(ConnectionResetError):
                client.retr(2)
    wait_until_unlocked(server)
    assert fetch_all(server) == MESSAGES
    mailbox = server.mailbox(USER)
    assert [m.uid for m in mailbox.messages] == uids
    assert mailbox.deleted == []


@pytest.mark.parametrize(
    ("at", "mode", "received", "error"),
    [
        ("instead", "close", b"", None),
        ("instead", "reset", b"", ConnectionResetError),
        ("after", "close", M1_RETR, None),
        ("after", "reset", M1_RETR, ConnectionResetError),
        ("during", "close", M1_RETR[:20], None),
        ("during", "reset", M1_RETR[:20], ConnectionResetError),
    ],
)
def test_drop(
    at: str, mode: str, received: bytes, error: type[Exception] | None, make_server: MakeServer
) -> None:
    rule = {"on": "RETR", "action": "drop", "at": at, "mode": mode, "after_bytes": 20}
    server = make_server([rule])
    with LineClient(server) as raw:
        assert raw.line() == GREETING
        assert login(raw) == LOGGED_IN
        raw.send(b"RETR 1\r\n")
        if error is None:
            assert raw.rest() == received  # then EOF
        else:
            with pytest.raises(error):
                raw.rest()
            assert bytes(raw.received[len(GREETING + LOGGED_IN) :]) == received
        wait_until_unlocked(server)
        cut = ["*: sent at most the first 20 octets"] if at == "during" else []
        assert notes(server) == [
            f"*: fault: on=RETR action=drop at={at} after_bytes=20 mode={mode}",
            *cut,
        ]


# --- errors -----------------------------------------------------------------------------


def test_sys_temp_at_pass(make_server: MakeServer) -> None:
    server = make_server([{"on": "PASS", "action": "error"}])
    with pop(server) as client:
        client.user(USER)
        with pytest.raises(poplib.error_proto) as info:
            client.pass_(PASSWORD)
        assert info.value.args == (ERROR[:-2],)
        assert poplib_login(client).startswith(b"+OK alice's maildrop")
        client.quit()
    assert [(f.event, f.session, f.user) for f in server.faults.fired] == [("PASS", 1, USER)]
    assert server.transcript[0].lines() == [
        "S: +OK fakepop ready",
        "C: USER alice",
        "S: +OK Send PASS",
        "C: PASS ****",
        "*: fault: on=PASS action=error code=SYS/TEMP text=Temporary failure, try again later",
        "S: -ERR [SYS/TEMP] Temporary failure, try again later",
        "C: USER alice",
        "S: +OK Send PASS",
        "C: PASS ****",
        "S: +OK alice's maildrop has 3 messages (74 octets)",
        "C: QUIT",
        "S: +OK fakepop signing off (0 deleted, 3 left)",
    ]


def test_error_with_custom_code_and_text_and_the_session_goes_on(make_server: MakeServer) -> None:
    rule = {"on": "RETR", "action": "error", "code": "SYS/PERM", "text": "Mailbox on fire"}
    server = make_server([rule])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"RETR 1\r\nRETR 1\r\nQUIT\r\n")
        assert raw.rest() == (
            b"-ERR [SYS/PERM] Mailbox on fire\r\n"
            + M1_RETR
            + b"+OK fakepop signing off (0 deleted, 3 left)\r\n"
        )


# --- stalls and timeouts ----------------------------------------------------------------


def test_stall_at_retr_trips_poplibs_timeout(make_server: MakeServer) -> None:
    server = make_server([{"on": "RETR", "action": "stall"}])
    with pop(server, timeout=CLIENT_TIMEOUT) as client:
        poplib_login(client)
        start = time.monotonic()
        with pytest.raises(TimeoutError):  # socket.timeout is TimeoutError
            client.retr(1)
        assert time.monotonic() - start >= CLIENT_TIMEOUT * 0.9
    wait_until_unlocked(server)
    assert server.mailbox(USER).retrieved == {}


def test_stall_at_greeting(make_server: MakeServer) -> None:
    server = make_server([{"on": "greeting", "action": "stall"}])
    with LineClient(server, timeout=CLIENT_TIMEOUT) as raw, pytest.raises(TimeoutError):
        raw.line()
    assert raw.received == b""


# --- the seeded plan --------------------------------------------------------------------


def seeded_run(make_server: MakeServer, seed: int) -> list[tuple[str, int]]:
    """Three sessions driven identically against a fresh server; where the plan fired."""
    # delay 0 changes nothing on the wire, so every run sends the same commands.
    rule = {
        "on": "*",
        "action": "delay",
        "seconds": 0,
        "probability": 0.4,
        "seed": seed,
        "times": "always",
    }
    server = make_server([rule])
    for _ in range(3):
        with pop(server) as client:
            poplib_login(client)
            for _ in range(4):
                client.noop()
            client.stat()
            client.retr(2)
            client.quit()
        wait_until_unlocked(server)
    return [(f.event, f.session) for f in server.faults.fired]


def test_a_seeded_probabilistic_plan_fires_at_the_same_points(make_server: MakeServer) -> None:
    first, again, other = (
        seeded_run(make_server, 2024),
        seeded_run(make_server, 2024),
        seeded_run(make_server, 2025),
    )
    assert first == again
    assert first != other
    # 3 sessions of 12 events (connect, greeting, USER, PASS, login, 4 NOOP, STAT, RETR,
    # QUIT): some fire, not all.
    assert 0 < len(first) < 36
    assert {session for _, session in first} <= {1, 2, 3}


# --- delay and bandwidth ------------------------------------------------------------------


def test_delay_at_retr(make_server: MakeServer) -> None:
    rule = {"on": "RETR", "action": "delay", "seconds": 0.2}
    server = make_server([rule])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        start = time.monotonic()
        raw.send(b"RETR 1\r\n")
        assert raw.read(len(M1_RETR)) == M1_RETR
        assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize("event", ["connect", "greeting"])
def test_slow_greeting(event: str, make_server: MakeServer) -> None:
    server = make_server([{"on": event, "action": "delay", "seconds": 0.2}])
    start = time.monotonic()
    with LineClient(server) as raw:
        assert raw.line() == GREETING
        assert time.monotonic() - start >= 0.2


def test_bandwidth(make_server: MakeServer) -> None:
    # About 50 KB in lines poplib accepts, at 100 KB/s: half a second.
    body = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 641
    assert len(body) == 50_014
    rule = {"on": "RETR", "action": "bandwidth", "bytes_per_second": 100_000}
    server = make_server([rule])
    server.mailbox(USER).add(body)
    with pop(server) as client:
        poplib_login(client)
        start = time.monotonic()
        resp, lines, _ = client.retr(4)
        elapsed = time.monotonic() - start
        client.quit()
    assert resp == b"+OK 50014 octets"
    assert b"".join(line + b"\r\n" for line in lines) == body
    assert elapsed >= 0.4


# --- truncate ---------------------------------------------------------------------------


def test_truncate_then_close(make_server: MakeServer) -> None:
    server = make_server([{"on": "RETR", "action": "truncate"}])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"RETR 2\r\n")
        assert raw.rest() == b"+OK 30 octets\r\n" + M2_STUFFED  # no ".", then EOF
        wait_until_unlocked(server)
        assert notes(server)[1:] == ["*: the body was cut: no terminating line"]


def test_truncate_then_close_with_poplib(make_server: MakeServer) -> None:
    server = make_server([{"on": "RETR", "action": "truncate"}])
    with pop(server) as client:
        poplib_login(client)
        with pytest.raises(poplib.error_proto) as info:
            client.retr(1)
        assert info.value.args == ("-ERR EOF",)
    wait_until_unlocked(server)
    assert fetch_all(server) == MESSAGES


def test_truncate_after_bytes_then_stall(make_server: MakeServer) -> None:
    rule = {"on": "RETR", "action": "truncate", "after_bytes": 8, "then": "stall"}
    server = make_server([rule])
    with LineClient(server, timeout=CLIENT_TIMEOUT) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"RETR 1\r\n")
        assert raw.read(15 + 8) == b"+OK 23 octets\r\n" + M1[:8]
        with pytest.raises(TimeoutError):
            raw.rest()  # the socket stays open, silent
        assert bytes(raw.received).endswith(b"+OK 23 octets\r\n" + M1[:8])
        assert notes(server)[1:] == ["*: the body was cut after 8 octets: no terminating line"]


# --- replies gone wrong -------------------------------------------------------------------


def test_wrong_size(make_server: MakeServer) -> None:
    server = make_server([{"on": "RETR", "action": "wrong-size", "delta": 7}])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"RETR 1\r\n")
        assert raw.read(len(M1_RETR)) == b"+OK 30 octets\r\n" + M1 + b".\r\n"
    wait_until_unlocked(server)
    with pop(server) as client:
        poplib_login(client)
        assert client.retr(1)[0] == b"+OK 23 octets"  # spent: the true size again
        client.quit()
    assert notes(server) == [
        "*: fault: on=RETR action=wrong-size delta=7",
        "*: sent instead: b'+OK 30 octets\\r\\n'",
    ]


def test_unstuffed(make_server: MakeServer) -> None:
    server = make_server([{"on": "RETR", "action": "unstuffed"}])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"RETR 2\r\nRETR 2\r\n")
        assert raw.read(15 + len(M2) + 3) == b"+OK 30 octets\r\n" + M2 + b".\r\n"
        assert raw.read(15 + len(M2_STUFFED) + 3) == b"+OK 30 octets\r\n" + M2_STUFFED + b".\r\n"


def garbage_bytes(make_server: MakeServer, seed: int) -> bytes:
    rule = {"on": "NOOP", "action": "garbage", "length": 32, "seed": seed}
    server = make_server([rule])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"NOOP\r\n")
        garbage = raw.read(32)
        raw.send(b"NOOP\r\n")  # the session goes on
        assert raw.line() == b"+OK\r\n"
        return garbage


def test_garbage_is_the_same_for_the_same_seed(make_server: MakeServer) -> None:
    first = garbage_bytes(make_server, 3)
    assert first == garbage_bytes(make_server, 3) == random.Random(3).randbytes(32)
    assert garbage_bytes(make_server, 4) != first


def test_bare_lf(make_server: MakeServer) -> None:
    server = make_server([{"on": "RETR", "action": "bare-lf"}])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"RETR 1\r\nNOOP\r\n")
        assert raw.read(len(M1_RETR) - 5) == b"+OK 23 octets\nSubject: one\n\nHello\n.\n"
        assert raw.line() == b"+OK\r\n"


def test_overlong_is_too_long_for_poplib(make_server: MakeServer) -> None:
    server = make_server([{"on": "STAT", "action": "overlong"}])
    with pop(server) as client:
        poplib_login(client)
        with pytest.raises(poplib.error_proto) as info:
            client.stat()
        assert info.value.args == ("line too long",)
    wait_until_unlocked(server)
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        server.faults.add(on="STAT", action="overlong", length=3000)
        raw.send(b"STAT\r\n")
        assert raw.line() == b"+OK 3 74 " + b"x" * (3000 - 11) + b"\r\n"


# --- commit-fail ------------------------------------------------------------------------


@pytest.mark.parametrize(("remove", "removed"), [("none", 0), ("some", 1), (2, 2)])
def test_commit_fail(remove: str | int, removed: int, make_server: MakeServer) -> None:
    server = make_server([{"action": "commit-fail", "remove": remove}])
    mailbox = server.mailbox(USER)
    mailbox.add(b"Subject: four\r\n\r\n4\r\n")
    uids = [m.uid for m in mailbox.messages]
    with pop(server) as client:
        poplib_login(client)
        for n in (1, 2, 3):
            client.dele(n)
        with pytest.raises(poplib.error_proto) as info:
            client.quit()
        assert info.value.args == (
            b"-ERR [SYS/TEMP] Some deleted messages not removed (%d of 3 removed)" % removed,
        )
    wait_until_unlocked(server)
    assert [m.uid for m in mailbox.messages] == uids[removed:]
    assert mailbox.deleted == sorted(uids[:removed])


# --- TLS --------------------------------------------------------------------------------


def tls_server(make_server: MakeServer, mode: str) -> POP3Server:
    return make_server([{"action": "tls-abort", "mode": mode}], tls=True)


class Handshake:
    """A TLS client handshake on the raw connection, through memory BIOs.

    ssl.SSLSocket can leak itself when a reset comes before the handshake starts;
    BIOs also let bytes the raw client already read (after "+OK" to STLS) go to TLS.
    """

    def __init__(self, server: POP3Server, raw: LineClient) -> None:
        self.raw = raw
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        context = server.client_ssl_context()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        self.incoming.write(raw.read(len(raw.received) - raw.consumed))

    def send_hello(self) -> None:
        with contextlib.suppress(ssl.SSLWantReadError):
            self.tls.do_handshake()
        self._flush()

    def finish(self) -> None:
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                data = self.raw.sock.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()
            else:
                self._flush()
                return

    def _flush(self) -> None:
        # Even an empty send reports a reset: send only when there is something to send.
        if self.outgoing.pending:
            self.raw.sock.sendall(self.outgoing.read())


def handshake(server: POP3Server, raw: LineClient) -> None:
    Handshake(server, raw).finish()


# What the client's handshake raises for each mode: an orderly close is an EOF,
# a reset a reset, and garbage is not TLS at all.
ABORTS: dict[str, type[OSError]] = {
    "close": ssl.SSLEOFError,
    "reset": ConnectionResetError,
    "garbage": ssl.SSLError,
}


def not_eof(mode: str, error: BaseException) -> None:
    """Garbage must reach the client: an EOF would mean it was lost to the close."""
    if mode == "garbage":
        assert not isinstance(error, ssl.SSLEOFError), repr(error)


@pytest.mark.parametrize("mode", ABORTS)
def test_tls_abort_on_implicit_tls(mode: str, make_server: MakeServer) -> None:
    server = tls_server(make_server, mode)
    assert server.tls_port is not None
    # A reset may come before connect() returns: it counts too.
    with pytest.raises(ABORTS[mode]) as info, LineClient(server, port=server.tls_port) as raw:
        handshake(server, raw)
    not_eof(mode, info.value)
    server.stop()
    assert server.transcript[0].lines() == [
        f"*: fault: on=tls-handshake action=tls-abort mode={mode}"
    ]


@pytest.mark.parametrize("mode", ABORTS)
def test_tls_abort_after_stls(mode: str, make_server: MakeServer) -> None:
    server = tls_server(make_server, mode)
    with LineClient(server) as raw:
        assert raw.line() == GREETING
        raw.send(b"STLS\r\n")
        assert raw.line() == b"+OK Begin TLS negotiation\r\n"
        with pytest.raises(ABORTS[mode]) as info:
            handshake(server, raw)
        not_eof(mode, info.value)
        server.stop()
        assert server.transcript[0].lines()[-3:] == [
            "C: STLS",
            "S: +OK Begin TLS negotiation",
            f"*: fault: on=tls-handshake action=tls-abort mode={mode}",
        ]


@pytest.mark.parametrize("mode", ABORTS)
def test_tls_abort_with_the_client_hello_already_there(mode: str, make_server: MakeServer) -> None:
    # The plan's lock holds the server back at the fault until the ClientHello has
    # arrived: closing with it unread would send a reset, not an orderly close.
    server = tls_server(make_server, mode)
    with contextlib.ExitStack() as stack:
        assert server.tls_port is not None
        with server.faults.lock:
            raw = stack.enter_context(LineClient(server, port=server.tls_port))
            client = Handshake(server, raw)
            client.send_hello()
            time.sleep(0.05)
        with pytest.raises(ABORTS[mode]) as info:
            client.finish()
        not_eof(mode, info.value)


def test_no_handshake_after_stls(make_server: MakeServer) -> None:
    server = make_server([{"action": "no-handshake"}], tls=True)
    with LineClient(server, timeout=CLIENT_TIMEOUT) as raw:
        assert raw.line() == GREETING
        raw.send(b"STLS\r\n")
        assert raw.line() == b"+OK Begin TLS negotiation\r\n"
        with pytest.raises(TimeoutError):
            handshake(server, raw)
    assert notes(server) == ["*: fault: on=STLS action=no-handshake"]


def test_delay_and_stall_at_the_tls_handshake(make_server: MakeServer) -> None:
    rules: list[dict[str, Any]] = [
        {"on": "tls-handshake", "action": "delay", "seconds": 0.2},
        {"on": "tls-handshake", "action": "stall"},
    ]
    server = make_server(rules, tls=True)
    assert server.tls_port is not None
    with LineClient(server, port=server.tls_port) as raw:
        start = time.monotonic()
        with server.client_ssl_context().wrap_socket(raw.sock, server_hostname="localhost") as tls:
            assert time.monotonic() - start >= 0.2
            assert tls.recv(100) == GREETING
    with (
        LineClient(server, port=server.tls_port, timeout=CLIENT_TIMEOUT) as raw,
        pytest.raises(TimeoutError),
    ):
        handshake(server, raw)


# --- connect and greeting -----------------------------------------------------------------


def test_drop_before_the_greeting(make_server: MakeServer) -> None:
    server = make_server([{"on": "connect", "action": "drop"}])
    with LineClient(server) as raw:
        assert raw.rest() == b""
        assert raw.received == b""


def read_new_connection(server: POP3Server, received: list[bytes]) -> None:
    """Connect and read until the end, noting what arrived even when the read fails."""
    with LineClient(server) as raw:  # connect() itself may see a reset
        try:
            raw.rest()
        finally:
            received.append(bytes(raw.received))


def test_reset_before_the_greeting(make_server: MakeServer) -> None:
    rule = {"on": "connect", "action": "drop", "mode": "reset"}
    received: list[bytes] = []
    server = make_server([rule])
    with pytest.raises(ConnectionResetError):
        read_new_connection(server, received)
    assert received in ([], [b""])


@pytest.mark.parametrize("event", ["connect", "greeting"])
def test_error_greeting_then_close(event: str, make_server: MakeServer) -> None:
    server = make_server([{"on": event, "action": "error"}])
    with LineClient(server) as raw:
        assert raw.rest() == ERROR  # then EOF
    with pop(server) as client:  # spent: the next client is greeted
        assert client.getwelcome() == GREETING[:-2]
        client.quit()


# --- the login event and the filters ------------------------------------------------------


def test_login_event_for_one_user(make_server: MakeServer) -> None:
    s = make_server([{"on": "login", "action": "error", "user": "bob", "times": "always"}])
    s.users["bob"] = "pw"
    with LineClient(s) as raw:
        raw.read(len(GREETING))
        assert login(raw) == LOGGED_IN
    with LineClient(s) as raw:
        raw.read(len(GREETING))
        raw.send(b"USER bob\r\nPASS wrong\r\nPASS pw\r\nUSER bob\r\nPASS pw\r\n")
        assert raw.line() == b"+OK Send PASS\r\n"
        assert raw.line() == b"-ERR [AUTH] Invalid user name or password\r\n"
        assert raw.line() == b"-ERR Send USER first\r\n"
        assert raw.line() == b"+OK Send PASS\r\n"
        assert raw.line() == ERROR
    assert [(f.event, f.session, f.user) for f in s.faults.fired] == [("login", 2, "bob")]


def test_session_filter(make_server: MakeServer) -> None:
    server = make_server([{"on": "greeting", "action": "error", "session": 2}])
    greetings = []
    for _ in range(3):
        with LineClient(server) as raw:
            greetings.append(raw.line())
    assert greetings == [GREETING, ERROR, GREETING]


def test_nth_and_times_always(make_server: MakeServer) -> None:
    rule = {"on": "NOOP", "action": "error", "nth": 2, "times": "always"}
    server = make_server([rule])
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"NOOP\r\nNOOP\r\nNOOP\r\nQUIT\r\n")
        assert raw.rest() == (
            b"+OK\r\n" + ERROR + ERROR + b"+OK fakepop signing off (0 deleted, 3 left)\r\n"
        )


def test_star_counts_every_event(make_server: MakeServer) -> None:
    # connect, greeting, USER, PASS: the fourth event is PASS.
    server = make_server([{"on": "*", "action": "error", "nth": 4}])
    with LineClient(server) as raw:
        assert raw.line() == GREETING
        assert login(raw) == b"+OK Send PASS\r\n" + ERROR
        assert [f.event for f in server.faults.fired] == ["PASS"]


def test_rules_added_while_running_apply_to_the_next_event(server: POP3Server) -> None:
    with LineClient(server) as raw:
        raw.read(len(GREETING))
        login(raw)
        raw.send(b"NOOP\r\n")
        assert raw.line() == b"+OK\r\n"
        server.faults.add(on="noop", action="error", code="X-TEST", text="now")
        raw.send(b"NOOP\r\n")
        assert raw.line() == b"-ERR [X-TEST] now\r\n"


# --- rules from files -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["toml", "json"])
def test_faults_from_a_file(tmp_path: Path, kind: str, make_server: MakeServer) -> None:
    path = tmp_path / f"faults.{kind}"
    rules = [
        {"on": "PASS", "action": "error", "code": "SYS/TEMP", "text": "from a file"},
        {"on": "RETR", "action": "wrong-size", "delta": -3},
    ]
    if kind == "json":
        path.write_text(json.dumps(rules))
    else:
        path.write_text(
            '[[faults]]\non = "PASS"\naction = "error"\ncode = "SYS/TEMP"\ntext = "from a file"\n'
            '[[faults]]\non = "RETR"\naction = "wrong-size"\ndelta = -3\n'
        )
    server = make_server(str(path))
    assert [r.describe() for r in server.faults] == [
        "on=PASS action=error code=SYS/TEMP text=from a file",
        "on=RETR action=wrong-size delta=-3",
    ]
    with pop(server) as client:
        client.user(USER)
        with pytest.raises(poplib.error_proto, match=r"^b'-ERR \[SYS/TEMP\] from a file'$"):
            client.pass_(PASSWORD)
        poplib_login(client)
        assert client.retr(1)[0] == b"+OK 20 octets"
        client.quit()


def test_load_while_running(tmp_path: Path, server: POP3Server) -> None:
    path = tmp_path / "later.toml"
    path.write_text('[[faults]]\non = "greeting"\naction = "error"\ntext = "later"\n')
    server.faults.load(path)
    with LineClient(server) as raw:
        assert raw.rest() == b"-ERR [SYS/TEMP] later\r\n"


# The plan is given when the server is made: these make servers and never start them.


def test_a_plan_passed_in_is_the_servers_plan() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error"}])
    assert POP3Server(users={USER: PASSWORD}, faults=plan).faults is plan


def test_a_servers_plan_counts_under_a_lock_and_keeps_one_given() -> None:
    # Its sessions check it from threads of their own; the core cannot make the lock.
    server = POP3Server(users={USER: PASSWORD}, faults=FaultPlan())
    assert isinstance(server.faults.lock, type(threading.Lock()))
    lock = threading.RLock()
    assert POP3Server(users={USER: PASSWORD}, faults=FaultPlan(lock=lock)).faults.lock is lock


def test_a_missing_fault_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match=r"^no fault file at .*nowhere\.toml$"):
        POP3Server(users={USER: PASSWORD}, faults=tmp_path / "nowhere.toml")


def test_a_bad_rule_is_refused_when_the_server_is_made() -> None:
    with pytest.raises(FaultError, match=r"^fault 1: a lock needs attempts = N or seconds = T$"):
        POP3Server(users={USER: PASSWORD}, faults=[{"action": "lock"}])
