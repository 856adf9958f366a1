"""Servers made for a test with their mail, and a raw client that talks to one line by line."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Protocol, Self

from fakepop import POP3Server

TIMEOUT = 5.0  # seconds for a socket operation


class ServerFactory(Protocol):
    def __call__(self, **options: Any) -> POP3Server: ...


def filled(
    make: ServerFactory,
    users: Mapping[str, str],
    fill: Callable[[POP3Server], None],
    **defaults: Any,
) -> ServerFactory:
    """Make servers with the plugin's ``make`` (``pop3_server_factory``), with ``users`` and
    ``defaults`` (a server's own options win), each given its mail by ``fill``."""

    def filled_server(**options: Any) -> POP3Server:
        server = make(users=dict(users), **{**defaults, **options})
        fill(server)
        return server

    return filled_server


class Closed(EOFError):
    """The server closed the connection before the bytes a test waited for."""


class LineClient:
    """A raw POP3 client: bytes out exactly as given, lines or counted bytes in.

    It reads with recv() only, so nothing waits unread in a buffer, nor any plaintext under
    TLS. Every byte read stays in ``received``, even when a later read fails; ``consumed`` is how
    much of it the test has taken. ``server`` is a started server, or a host name with ``port``.
    """

    def __init__(
        self,
        server: POP3Server | str,
        port: int | None = None,
        *,
        greeting: bool = False,
        timeout: float = TIMEOUT,
    ) -> None:
        if isinstance(server, str):
            assert port is not None, "a host name needs a port"
            address = (server, port)
        else:
            address = (server.host, server.port if port is None else port)
        self.sock: socket.socket = socket.create_connection(address, timeout=timeout)
        self.received = bytearray()
        self.consumed = 0
        self.greeting = self.line() if greeting else b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> bytes:
        """What has arrived and the test has not read yet."""
        return bytes(self.received[self.consumed :])

    def wrap(
        self, context: ssl.SSLContext, hostname: str = "localhost", *, ragged_eofs: bool = True
    ) -> None:
        """Start TLS: at once for implicit TLS, or after +OK to STLS. Without ``ragged_eofs``
        a close without close_notify raises SSLEOFError."""
        assert self.pending == b"", "the server sent plaintext after +OK to STLS"
        self.sock = context.wrap_socket(
            self.sock, server_hostname=hostname, suppress_ragged_eofs=ragged_eofs
        )

    def send(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)

    def command(self, line: str | bytes) -> bytes:
        """Send one line (CRLF added) and read the one-line reply."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.line()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise Closed(f"the server closed the connection; unread: {self.pending!r}")
        self.received += data

    def line(self) -> bytes:
        """The next line, CRLF included."""
        while (end := self.received.find(b"\r\n", self.consumed)) < 0:
            self._fill()
        return self.read(end + 2 - self.consumed)

    def read(self, count: int) -> bytes:
        """Exactly ``count`` more bytes."""
        while len(self.received) - self.consumed < count:
            self._fill()
        data = bytes(self.received[self.consumed : self.consumed + count])
        self.consumed += count
        return data

    def rest(self) -> bytes:
        """Everything until the server closes (raises if it resets or stays silent)."""
        with contextlib.suppress(Closed):
            while True:
                self._fill()
        return self.read(len(self.received) - self.consumed)

    def closed_by_server(self) -> bool:
        """True if nothing is unread and the server closes (or resets) without sending more."""
        if self.pending:
            return False
        with contextlib.suppress(ConnectionResetError):
            return self.sock.recv(65536) == b""
        return True

    def close(self) -> None:
        self.sock.close()
