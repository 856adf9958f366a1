"""A lean POP3 client for benchmarks: raw sockets, large reads into one buffer, no line parsing.

poplib reads a reply line by line and is slower than the servers it would measure; this
client reads as much as the socket has into a reusable buffer and only looks for the end of a
reply ("\\r\\n" for a status line, "\\r\\n.\\r\\n" for a multi-line one).
"""

from __future__ import annotations

import functools
import socket
import ssl
import time
from dataclasses import dataclass
from types import TracebackType

TERMINATOR = b"\r\n.\r\n"
MIN_READ = 1 << 16  # never ask the socket for less than this
DEFAULT_CAPACITY = 1 << 18


class ProtocolError(Exception):
    """The server answered something other than what the benchmark expects."""


@functools.cache
def client_context(cafile: str) -> ssl.SSLContext:
    """A verifying client context that trusts only ``cafile``; one per process."""
    return ssl.create_default_context(cafile=cafile)


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens; with ``cafile`` the port speaks implicit TLS (RFC 8314)."""

    host: str
    port: int
    cafile: str | None = None
    server_name: str = "localhost"

    @property
    def tls(self) -> bool:
        return self.cafile is not None

    def connect(self, timeout: float = 60.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.cafile is None:
            return sock
        try:
            return client_context(self.cafile).wrap_socket(sock, server_hostname=self.server_name)
        except BaseException:
            sock.close()
            raise


@dataclass(frozen=True)
class Body:
    """Where the body of the last multi-line reply lies in the client's buffer.

    Valid until the client reads again. ``start`` is the first octet after the status
    line's CRLF; ``end`` is just past the body's last CRLF, before the terminating ".".
    """

    status: bytes
    start: int
    end: int


class Client:
    """One connection. ``buffer`` may be handed in to reuse memory that is already touched."""

    def __init__(self, sock: socket.socket, buffer: bytearray | None = None) -> None:
        self.sock = sock
        self.buffer = buffer if buffer is not None else bytearray(DEFAULT_CAPACITY)
        self._view = memoryview(self.buffer)
        self.start = 0  # the first unconsumed octet
        self.end = 0  # just past the last octet received

    @classmethod
    def open(
        cls, endpoint: Endpoint, buffer: bytearray | None = None, greeting: bool = True
    ) -> Client:
        client = cls(endpoint.connect(), buffer)
        if greeting:
            try:
                client.status()
            except BaseException:
                client.close()
                raise
        return client

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._view.release()
        self.sock.close()

    # --- reading -------------------------------------------------------------------------

    def _fill(self) -> None:
        """Receive more; make room first by dropping consumed octets, then by growing."""
        if self.start == self.end:
            self.start = self.end = 0  # nothing unconsumed: the whole buffer is free again
        if len(self.buffer) - self.end < MIN_READ:
            if self.start:
                kept = self.end - self.start
                self._view[:kept] = self._view[self.start : self.end]
                self.start, self.end = 0, kept
            if len(self.buffer) - self.end < MIN_READ:
                self._view.release()
                self.buffer += bytes(max(len(self.buffer), MIN_READ))
                self._view = memoryview(self.buffer)
        received = self.sock.recv_into(self._view[self.end :])
        if not received:
            raise ProtocolError("the server closed the connection in the middle of a reply")
        self.end += received

    def _find(self, pattern: bytes, offset: int) -> int:
        """The offset from ``start`` of ``pattern`` at or after ``offset``, reading as needed.

        Offsets are relative to ``start`` because ``_fill`` may move the unconsumed octets.
        """
        while True:
            found = self.buffer.find(pattern, self.start + offset, self.end)
            if found >= 0:
                return found - self.start
            offset = max(offset, self.end - self.start - len(pattern) + 1)
            self._fill()

    def status(self) -> bytes:
        """The next status line, without CRLF; ProtocolError unless it is +OK."""
        eol = self._find(b"\r\n", 0)
        line = bytes(self.buffer[self.start : self.start + eol])
        self.start += eol + 2
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"expected +OK, got {line[:200]!r}")
        return line

    def multiline(self, sized: bool = False) -> Body:
        """Read a whole multi-line reply; its body stays in the buffer until the next read.

        With ``sized`` the status line gives the body's size before byte-stuffing
        ("+OK 1234 octets", as RETR's does): stuffing only adds octets, so the terminator
        cannot come sooner, and the octets before that are never scanned.
        """
        eol = self._find(b"\r\n", 0)
        if self.buffer[self.start : self.start + 3] != b"+OK":
            line = bytes(self.buffer[self.start : self.start + eol])
            self.start += eol + 2
            raise ProtocolError(f"expected +OK, got {line[:200]!r}")
        search = eol  # from the status line's CRLF: an empty body ends there
        if sized:
            size = int(self.buffer[self.start : self.start + eol].split()[1])
            search = max(eol, eol + size)  # the body's last CRLF starts at eol + 2 + size - 2
            while self.end - self.start < search:
                self._fill()
        end = self._find(TERMINATOR, search)
        status = bytes(self.buffer[self.start : self.start + eol])
        body = Body(status, self.start + eol + 2, self.start + end + 2)
        self.start += end + len(TERMINATOR)
        return body

    def unstuffed_size(self, body: Body) -> int:
        """Octets of the body before byte-stuffing: every line that starts with ".." lost one."""
        if body.end <= body.start:
            return 0
        # The status line's CRLF sits just before the body, so the first line counts too.
        stuffed = self.buffer.count(b"\r\n..", body.start - 2, body.end)
        return body.end - body.start - stuffed

    def lines(self, body: Body) -> int:
        return self.buffer.count(b"\r\n", body.start, body.end)

    # --- commands ------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.status()

    def login(self, user: str, password: str) -> None:
        self.command(b"USER " + user.encode())
        self.command(b"PASS " + password.encode())

    def stat(self) -> tuple[int, int]:
        words = self.command(b"STAT").split()
        return int(words[1]), int(words[2])

    def retr(self, number: int, expected: int | None = None) -> int:
        """RETR a message and check its size against the status line (and ``expected``)."""
        self.sock.sendall(b"RETR %d\r\n" % number)
        return self.check_retr(self.multiline(sized=True), expected)

    def check_retr(self, body: Body, expected: int | None = None) -> int:
        declared = int(body.status.split()[1])
        size = self.unstuffed_size(body)
        if size != declared or (expected is not None and size != expected):
            raise ProtocolError(
                f"RETR sent {size} octets; the status line said {declared}, expected {expected}"
            )
        return size

    def quit(self) -> None:
        """QUIT, then wait for the server to close: the session is over on both sides."""
        self.command(b"QUIT")
        try:
            while self.sock.recv(MIN_READ):
                pass
        except (ssl.SSLError, ConnectionResetError):
            pass  # a TLS server that closes without close_notify


def session(endpoint: Endpoint, user: str, password: str, messages: int) -> None:
    """Connect, log in with USER/PASS, STAT (checking the count), QUIT: one whole session."""
    with Client.open(endpoint) as client:
        client.login(user, password)
        count, _ = client.stat()
        if count != messages:
            raise ProtocolError(f"STAT said {count} messages, expected {messages}")
        client.quit()


def timed_sessions(
    endpoint: Endpoint, user: str, password: str, messages: int, count: int
) -> float:
    """Seconds for ``count`` sessions one after the other."""
    begin = time.perf_counter()
    for _ in range(count):
        session(endpoint, user, password, messages)
    return time.perf_counter() - begin
