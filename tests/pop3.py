"""Servers started on demand for a test, and a raw client that talks to one line by line."""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from fakepop import POP3Server

TIMEOUT = 5.0  # seconds for a socket operation


class ServerFactory(Protocol):
    def __call__(self, **options: Any) -> POP3Server: ...


@contextlib.contextmanager
def servers(
    users: Mapping[str, str], fill: Callable[[POP3Server], None], **defaults: Any
) -> Iterator[ServerFactory]:
    """Make started servers with ``users`` and ``defaults`` (a server's own options win),
    each given its mail by ``fill``; all of them are stopped at the end."""
    started: list[POP3Server] = []

    def make(**options: Any) -> POP3Server:
        server = POP3Server(users=dict(users), **{**defaults, **options})
        server.start()
        started.append(server)
        fill(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


class LineClient:
    """A raw POP3 client that reads with recv() only, so nothing waits unread in a buffer,
    nor any plaintext under TLS."""

    def __init__(self, server: POP3Server, port: int | None = None) -> None:
        self.sock: socket.socket = socket.create_connection(
            (server.host, server.port if port is None else port), timeout=TIMEOUT
        )
        self.pending = b""

    def wrap(
        self, context: ssl.SSLContext, hostname: str = "localhost", *, ragged_eofs: bool = True
    ) -> None:
        """Start TLS: at once for implicit TLS, or after +OK to STLS. Without ``ragged_eofs``
        a close without close_notify raises SSLEOFError."""
        assert self.pending == b"", "the server sent plaintext after +OK to STLS"
        self.sock = context.wrap_socket(
            self.sock, server_hostname=hostname, suppress_ragged_eofs=ragged_eofs
        )

    def line(self) -> bytes:
        while b"\r\n" not in self.pending:
            data = self.sock.recv(4096)
            assert data, f"the server closed the connection; unread: {self.pending!r}"
            self.pending += data
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line + b"\r\n"

    def close(self) -> None:
        self.sock.close()
