"""Hostile clients over real sockets: garbage, slowloris, idlers, floods, resets, half-closes.

After each, the server must go on serving others promptly, delete nothing it was not told
to at QUIT, unlock the maildrop, and have no error to report from its threads.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import poplib
import random
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pop3 import ServerFactory
from waiting import wait_until

from fakepop import POP3Server
from fakepop.mail.wire import dot_stuff

TIMEOUT = 5.0
PROMPT = 1.0  # seconds a well-behaved client may wait for a whole session while others attack
SMALL = b"Subject: small\r\n\r\nsmall body\r\n"


@functools.cache
def big() -> bytes:
    """About 8 MB, a line in ten starting with ".": more than socket buffers (4 MiB) hold."""
    return b"Subject: big\r\n\r\n" + b"".join(
        (b"." if n % 10 == 0 else b"") + b"%06d " % n + b"y" * 90 + b"\r\n" for n in range(80_000)
    )


@pytest.fixture
def start(pop3_server_factory: ServerFactory) -> ServerFactory:
    """Servers with TLS where alice holds a small message and a big one."""

    def make(**options: Any) -> POP3Server:
        return pop3_server_factory(
            users={"alice": "secret"}, tls=True, messages=[SMALL, big()], **options
        )

    return make


@pytest.fixture
def server(start: ServerFactory) -> POP3Server:
    return start()


def served_promptly(server: POP3Server) -> float:
    """A whole poplib session, login to QUIT with a RETR: it must work; returns its seconds."""
    began = time.monotonic()
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        client.user("alice")
        assert client.pass_("secret").startswith(b"+OK alice's maildrop has 2 messages")
        _, lines, octets = client.retr(1)
        assert b"".join(line + b"\r\n" for line in lines) == SMALL
        assert octets == len(SMALL)
        assert client.quit() == b"+OK fakepop signing off (0 deleted, 2 left)"
    finally:
        client.close()
    return time.monotonic() - began


def intact(server: POP3Server) -> None:
    """Nothing deleted, the maildrop unlocked, no error in the server's threads."""
    mailbox = server.mailbox("alice")
    wait_until(lambda: not mailbox.locked, "the maildrop stayed locked")
    assert [m.read() for m in mailbox] == [SMALL, big()]
    assert mailbox.deleted == []
    server.check()


def greeted(server: POP3Server, port: int | None = None) -> socket.socket:
    sock = socket.create_connection((server.host, port or server.port), timeout=TIMEOUT)
    if port is None:
        assert sock.recv(4096).startswith(b"+OK fakepop ready")
    return sock


def reset(sock: socket.socket) -> None:
    """Close abortively: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def drain(sock: socket.socket) -> bytes:
    """Everything the server still sends, up to its close."""
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            received += data
    return bytes(received)


# --- garbage --------------------------------------------------------------------------------

STREAMS = 10_000
SENDERS = 8
SEED = 1939
TOKENS = [
    b"USER mallory\r\n",
    b"PASS mallory-pw\r\n",
    b"USER alice\r\n",
    b"PASS wrong\r\n",
    b"APOP mallory 0123456789abcdef0123456789abcdef\r\n",
    b"AUTH PLAIN\r\n",
    b"AUTH PLAIN AG1hbGxvcnkAbWFsbG9yeS1wdw==\r\n",
    b"AUTH LOGIN\r\n",
    b"AUTH XOAUTH2\r\n",
    b"*\r\n",
    b"STAT\r\n",
    b"LIST\r\n",
    b"UIDL 1\r\n",
    b"RETR 1\r\n",
    b"TOP 1 0\r\n",
    b"DELE 1\r\n",
    b"RSET\r\n",
    b"CAPA\r\n",
    b"UTF8\r\n",
    b"STLS\r\n",
    b"QUIT\r\n",
    b"\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"\xff\xfe",
    b"x" * 300,
]


def random_stream(rng: random.Random) -> bytes:
    """A short stream: protocol words that reach the deeper states, among random bytes."""
    parts = []
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.5:
            parts.append(rng.choice(TOKENS))
        else:
            parts.append(rng.randbytes(rng.randint(0, 40)))
    return b"".join(parts)


def send_all(
    server: POP3Server, jobs: list[tuple[int, bytes]], answers: list[bytes], errors: list[str]
) -> None:
    """Each stream on a connection of its own: send it, half-close, read all the server says."""
    for port, stream in jobs:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect((server.host, port))
            try:
                sock.sendall(stream)
                sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                # The server may hang up first (a failed TLS handshake, too many bad commands).
                if e.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                    raise
            answers.append(drain(sock))
        except OSError as e:  # a timeout above all: the server left a client hanging
            errors.append(f"{stream!r} to port {port}: {e!r}")
            answers.append(b"")
        finally:
            sock.close()


def test_random_byte_streams_from_concurrent_senders(start: ServerFactory) -> None:
    server = start()
    server.users["mallory"] = "mallory-pw"  # the attackers' own account, and its mail
    server.mailbox("mallory").extend([SMALL, SMALL])
    assert server.tls_port is not None
    rng = random.Random(SEED)
    jobs = [
        (server.tls_port if rng.random() < 0.1 else server.port, random_stream(rng))
        for _ in range(STREAMS)
    ]
    shares = [jobs[i::SENDERS] for i in range(SENDERS)]
    answers: list[list[bytes]] = [[] for _ in range(SENDERS)]
    errors: list[str] = []
    threads = [
        threading.Thread(target=send_all, args=(server, share, got, errors))
        for share, got in zip(shares, answers, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a sender hung"
    assert errors == []
    pairs = [
        (port, answer)
        for share, got in zip(shares, answers, strict=True)
        for (port, _), answer in zip(share, got, strict=True)
    ]
    assert len(pairs) == STREAMS
    assert all(a.startswith(b"+OK fakepop ready") for port, a in pairs if port == server.port)
    assert not any(b"Internal server error" in answer for _, answer in pairs)
    # The implicit-TLS port never speaks plaintext, whatever it is sent.
    assert not any(b"fakepop" in answer for port, answer in pairs if port != server.port)

    wait_until(lambda: not server.mailbox("mallory").locked, "mallory's maildrop stayed locked")
    assert len(server.transcript) == STREAMS  # each stream had a session of its own
    assert served_promptly(server) < PROMPT
    intact(server)


# --- other protocols -------------------------------------------------------------------------


def test_a_browsers_cross_origin_post_runs_nothing(server: POP3Server) -> None:
    # What fetch("http://127.0.0.1:<port>/", {method: "POST", mode: "no-cors", body}) sends:
    # fewer header lines than the bad-command budget, then a body written as POP3.
    body = b"USER alice\r\nPASS secret\r\nDELE 1\r\nDELE 2\r\nQUIT\r\n"
    request = (
        b"POST / HTTP/1.1\r\n"
        + b"Host: 127.0.0.1:%d\r\n" % server.port
        + b"Connection: keep-alive\r\n"
        + b"Content-Length: %d\r\n" % len(body)
        + b'sec-ch-ua-platform: "Linux"\r\n'
        + b"User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
        + b"Content-Type: text/plain;charset=UTF-8\r\n"
        + b"Accept: */*\r\n"
        + b"Origin: http://evil.example\r\n"
        + b"Sec-Fetch-Site: cross-site\r\n"
        + b"Sec-Fetch-Mode: no-cors\r\n"
        + b"Sec-Fetch-Dest: empty\r\n"
        + b"Referer: http://evil.example/\r\n"
        + b"Accept-Encoding: gzip, deflate, br\r\n"
        + b"Accept-Language: en-US,en;q=0.9\r\n"
        + b"\r\n"
        + body
    )
    sock = greeted(server)
    sock.sendall(request)
    assert drain(sock) == b"-ERR This is a POP3 server, not HTTP: closing the connection\r\n"
    sock.close()
    [session] = server.transcript
    assert session.user is None  # the body never ran
    intact(server)


# --- slow and idle clients ------------------------------------------------------------------


def test_slowloris_does_not_hold_up_others(server: POP3Server) -> None:
    lorises = [greeted(server) for _ in range(50)]
    line = b"USER " + b"a" * 200  # never finished: no line feed ever comes
    stop = threading.Event()

    def trickle() -> None:
        sent = 0
        while not stop.is_set():
            for sock in lorises:
                sock.sendall(line[sent % len(line) : sent % len(line) + 1])
            sent += 1
            stop.wait(0.02)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        time.sleep(0.2)
        times = [served_promptly(server) for _ in range(5)]
        assert max(times) < PROMPT, times
    finally:
        stop.set()
        trickler.join(TIMEOUT)
    for sock in lorises:
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)  # a partial line is never answered
        sock.close()
    intact(server)


SHORT_IDLE = 0.5  # seconds: idle_timeout for the tests of slow clients


def test_a_line_trickled_a_byte_at_a_time_is_cut_off_after_idle_timeout(
    start: ServerFactory,
) -> None:
    server = start(idle_timeout=SHORT_IDLE)
    loris = greeted(server)
    loris.settimeout(0.1)
    began = time.monotonic()
    said = b""
    # A byte every 0.1 s, each well within idle_timeout: the line itself must end in time.
    while time.monotonic() - began < TIMEOUT and not said.endswith(b"\r\n"):
        with contextlib.suppress(TimeoutError):
            said += loris.recv(4096)
        with contextlib.suppress(OSError):
            loris.sendall(b"a")
    assert said == b"-ERR Autologout: idle for too long\r\n"
    loris.close()
    assert served_promptly(server) < PROMPT
    intact(server)


@pytest.mark.parametrize("tls", [False, True])
def test_a_slow_reader_of_a_large_message_gets_all_of_it(tls: bool, start: ServerFactory) -> None:
    server = start(idle_timeout=SHORT_IDLE)
    client = small_window(server, tls)
    client.sendall(b"USER alice\r\nPASS secret\r\nRETR 2\r\nQUIT\r\n")
    received = bytearray()
    began = time.monotonic()
    # About 4 MB/s: the 8 MB reply takes some four times idle_timeout, never idle that long.
    while data := client.recv(16384):
        received += data
        time.sleep(max(0.0, len(received) / 4e6 - (time.monotonic() - began)))
    client.close()
    assert time.monotonic() - began > 2 * SHORT_IDLE
    reply = b"+OK %d octets\r\n" % len(big()) + dot_stuff(big()) + b".\r\n"
    assert received.endswith(reply + b"+OK fakepop signing off (0 deleted, 2 left)\r\n")
    intact(server)


def test_a_client_that_reads_nothing_is_cut_off_after_idle_timeout(start: ServerFactory) -> None:
    server = start(idle_timeout=SHORT_IDLE)
    client = small_window(server)
    client.sendall(b"USER alice\r\nPASS secret\r\nDELE 1\r\nRETR 2\r\n")
    wait_until(lambda: server.mailbox("alice").locked, "no login")
    wait_until(lambda: not server._connections, "the server kept sending to a non-reader")
    client.close()
    intact(server)  # DELE 1 was never committed


def test_two_hundred_idle_connections_do_not_hold_up_others(server: POP3Server) -> None:
    idle = [greeted(server) for _ in range(200)]
    assert server.tls_port is not None
    idle += [greeted(server, server.tls_port) for _ in range(20)]  # not even a ClientHello
    try:
        times = [served_promptly(server) for _ in range(5)]
        assert max(times) < PROMPT, times
        # Every idler, the TLS ones too, holds a session of its own all along.
        wait_until(lambda: len(server.transcript) == 225, "an idler was not taken on")
    finally:
        for sock in idle:
            sock.close()
    intact(server)


def test_more_connections_than_the_maximum(start: ServerFactory) -> None:
    server = start(max_connections=5)
    held = [greeted(server) for _ in range(5)]
    extra = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    assert drain(extra) == (
        b"-ERR [SYS/TEMP] Too many connections (the limit is 5), try again later\r\n"
    )
    extra.close()
    held.pop().close()

    def a_new_one_is_greeted() -> bool:
        with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
            return sock.recv(4096).startswith(b"+OK fakepop ready")

    wait_until(a_new_one_is_greeted, "no connection was served after one closed")
    held.pop().close()
    wait_until(lambda: len(server._connections) < 5, "a closed connection kept its slot")
    assert served_promptly(server) < PROMPT
    for sock in held:
        sock.close()
    intact(server)


# --- resets and half-closes ------------------------------------------------------------------


def small_window(server: POP3Server, tls: bool = False) -> socket.socket:
    """A connection whose small receive buffer makes the server wait mid-reply; with ``tls``,
    on the implicit-TLS port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(TIMEOUT)
    if not tls:
        sock.connect((server.host, server.port))
        return sock
    assert server.tls_port is not None
    sock.connect((server.host, server.tls_port))
    return server.client_ssl_context().wrap_socket(sock, server_hostname="localhost")


@pytest.mark.parametrize("how", ["reset", "half-close"])
def test_going_away_in_the_middle_of_retr(server: POP3Server, how: str) -> None:
    sock = small_window(server)
    sock.sendall(b"USER alice\r\nPASS secret\r\nDELE 1\r\nRETR 2\r\n")
    received = bytearray()
    while len(received) < 65536:
        data = sock.recv(65536)
        assert data, f"the server closed early: {bytes(received[-200:])!r}"
        received += data
    assert received.startswith(b"+OK fakepop ready")
    sent = received[received.index(b"+OK %d octets\r\n" % len(big())) :]
    assert len(sent) < len(big()) // 2  # the server is still sending
    if how == "reset":
        reset(sock)
    else:
        sock.shutdown(socket.SHUT_WR)
        # The reply is finished whole; then the server sees the end and leaves, without QUIT.
        sent += drain(sock)
        sock.close()
        assert bytes(sent) == b"+OK %d octets\r\n" % len(big()) + dot_stuff(big()) + b".\r\n"
    began = time.monotonic()
    wait_until(lambda: not server.mailbox("alice").locked, "the maildrop stayed locked")
    assert time.monotonic() - began < PROMPT  # the server noticed at once
    assert served_promptly(server) < PROMPT
    intact(server)  # DELE 1 was never committed


ALERT = re.compile(rb"(\x15\x03[\x01-\x04]\x00\x02[\x01\x02].)?", re.DOTALL)


def client_hello(server: POP3Server) -> bytes:
    """A real ClientHello, as the first flight of a TLS client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = server.client_ssl_context().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # a handshake record
    return hello


@pytest.mark.parametrize("how", ["reset", "half-close"])
@pytest.mark.parametrize("where", ["implicit", "stls"])
def test_going_away_in_the_middle_of_the_tls_handshake(
    server: POP3Server, where: str, how: str
) -> None:
    # Someone else is logged in and has marked a message: the attack must not touch that.
    bystander = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    bystander.user("alice")
    bystander.pass_("secret")
    bystander.dele(2)
    assert server.tls_port is not None
    if where == "implicit":
        sock = socket.create_connection((server.host, server.tls_port), timeout=TIMEOUT)
    else:
        sock = greeted(server)
        sock.sendall(b"STLS\r\n")
        assert sock.recv(4096) == b"+OK Begin TLS negotiation\r\n"
    hello = client_hello(server)
    sock.sendall(hello[: len(hello) // 2])
    began = time.monotonic()
    if how == "reset":
        reset(sock)
    else:
        sock.shutdown(socket.SHUT_WR)
        # No ServerHello to half a ClientHello and no plaintext: at most a TLS alert.
        assert ALERT.fullmatch(drain(sock))
        sock.close()

    def handshake_failed() -> bool:
        return any(
            line.startswith("*: TLS handshake failed: ")
            for session in server.transcript
            for line in session.lines()
        )

    wait_until(handshake_failed, "the server did not give up the handshake")
    assert time.monotonic() - began < PROMPT  # at once, not after the idle timeout
    bystander.rset()
    assert bystander.quit() == b"+OK fakepop signing off (0 deleted, 2 left)"
    tls = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    tls.user("alice")
    tls.pass_("secret")
    assert tls.retr(1)[2] == len(SMALL)
    tls.quit()
    assert served_promptly(server) < PROMPT
    intact(server)


# --- the host runs short of descriptors or threads -------------------------------------------

# A server in a child process of its own, where resource limits can be lowered for real: it
# prints its port, then answers each line the test sends it by doing the next step.
SHORT_OF_DESCRIPTORS = """
import json, os, resource, sys, time
from fakepop import POP3Server
server = POP3Server(users={"alice": "secret"})
server.start()
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
print(json.dumps(server.port), flush=True)
sys.stdin.readline()  # a client is waiting in the listen queue
time.sleep(0.2)
began = time.process_time()
time.sleep(1.0)
cpu = time.process_time() - began
errors = [str(e) for e in server._errors]
for descriptor in held:
    os.close(descriptor)
print(json.dumps({"cpu": cpu, "errors": errors}), flush=True)
sys.stdin.readline()
server._errors.clear()
server.stop()
"""

SHORT_OF_THREADS = """
import json, resource, sys, threading
from fakepop import POP3Server
server = POP3Server(users={"alice": "secret"})
server.start()
with open("/proc/self/status") as status:
    used = next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmSize:"))
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
# A thread's stack larger than the address space left: no thread can start.
threading.stack_size(1 << 30)
resource.setrlimit(resource.RLIMIT_AS, (used + (256 << 20), hard))
print(json.dumps(server.port), flush=True)
sys.stdin.readline()  # a client was refused
report = {"connections": len(server._connections), "errors": [str(e) for e in server._errors]}
threading.stack_size(0)
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
print(json.dumps(report), flush=True)
sys.stdin.readline()
server._errors.clear()
server.stop()
"""


@contextlib.contextmanager
def child_server(script: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """Run ``script`` in a child Python; yield it and the port it printed."""
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        yield child, json.loads(child.stdout.readline())
    finally:
        child.kill()
        child.wait(TIMEOUT)
        for stream in (child.stdin, child.stdout):
            if stream is not None:
                stream.close()


def step(child: subprocess.Popen[str]) -> Any:
    """Let the child go on to its next step; what it reports."""
    assert child.stdin is not None
    assert child.stdout is not None
    child.stdin.write("\n")
    child.stdin.flush()
    return json.loads(child.stdout.readline())


def test_out_of_descriptors_the_server_backs_off_and_serves_again() -> None:
    with child_server(SHORT_OF_DESCRIPTORS) as (child, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        report = step(child)
        # Accepting failed all along: it waited between tries, and kept one error.
        assert report["cpu"] < 0.5, report
        [error] = report["errors"]
        assert "cannot accept connections: Too many open files" in error
        assert "ulimit -n" in error
        # Descriptors freed: the waiting client is served.
        assert client.recv(4096).startswith(b"+OK fakepop ready")
        client.close()
        assert child.stdin is not None
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(TIMEOUT) == 0


def test_a_connection_no_thread_can_be_started_for_is_refused() -> None:
    with child_server(SHORT_OF_THREADS) as (child, port):
        client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        assert drain(client) == (b"-ERR [SYS/TEMP] Cannot start a session now, try again later\r\n")
        client.close()
        report = step(child)
        assert report["connections"] == 0  # its slot was freed
        [error] = report["errors"]
        assert "cannot start a thread for a connection" in error
        # Threads can be had again: the accept loop goes on serving.
        again = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        assert child.stdin is not None
        assert again.recv(4096).startswith(b"+OK fakepop ready")
        again.close()
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(TIMEOUT) == 0
