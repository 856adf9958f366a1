"""The threaded server: a listener thread, one thread a connection, sessions fed from sockets."""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from types import TracebackType

from fakepop.mail.store import Mailbox, MailStore
from fakepop.protocol.events import Close, Event, status
from fakepop.protocol.session import Session
from fakepop.protocol.settings import IDLE_TIMEOUT, MAX_BAD_COMMANDS, MAX_LINE_LENGTH, Settings
from fakepop.protocol.transcript import Transcript

RECV_SIZE = 65536
COALESCE_LIMIT = 65536  # replies smaller than this are gathered into one write
LISTEN_BACKLOG = 128
CLOSE_DRAIN_TIMEOUT = 1.0  # seconds to read what a client still sends after our last reply


class Users(MutableMapping[str, str]):
    """The accounts of a server as a mapping of name to password; writes create accounts."""

    def __init__(self, store: MailStore) -> None:
        self._store = store

    def __getitem__(self, name: str) -> str:
        return self._store[name].password

    def __setitem__(self, name: str, password: str) -> None:
        self._store.add_account(name, password)

    def __delitem__(self, name: str) -> None:
        self._store.remove_account(name)

    def __iter__(self) -> Iterator[str]:
        return (account.name for account in self._store)

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"Users({dict(self)!r})"


@dataclass(frozen=True)
class _Listening:
    """The sockets and thread of a started server."""

    listener: socket.socket
    wake_read: socket.socket  # readable when stop() wants the accept loop to end
    wake_write: socket.socket
    thread: threading.Thread


class POP3Server:
    """A POP3 server that runs in threads of the calling process.

    Use it as a context manager, or call ``start()`` and ``stop()``::

        with POP3Server(users={"alice": "secret"}) as server:
            server.mailbox("alice").add(b"Subject: hi\\r\\n\\r\\nHello\\r\\n")
            client = poplib.POP3(server.host, server.port)

    Args:
        users: account names and their passwords; each gets an empty maildrop.
        host: the address to listen on; "::1" or another IPv6 address works too.
        port: the port; 0 (the default) picks a free one, read back as ``server.port``.
        hostname: the name in the greeting's APOP timestamp.
        idle_timeout: seconds of client silence before autologout (RFC 1939's 10 minutes).
        max_line_length: the longest command line accepted, in octets.
        max_bad_commands: bad commands a session may send before it is closed.
        expire: days advertised in CAPA's EXPIRE; None advertises NEVER.
        login_delay: seconds advertised in CAPA's LOGIN-DELAY and enforced between logins.
        user_login: offer USER and PASS.
        apop: offer APOP (the greeting then carries a timestamp).
        utf8: offer RFC 6856's UTF8 and LANG.
        last: accept RFC 1081's LAST command.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "localhost",
        idle_timeout: float = IDLE_TIMEOUT,
        max_line_length: int = MAX_LINE_LENGTH,
        max_bad_commands: int = MAX_BAD_COMMANDS,
        expire: int | None = None,
        login_delay: int | None = None,
        user_login: bool = True,
        apop: bool = True,
        utf8: bool = True,
        last: bool = False,
    ) -> None:
        self.settings = Settings(
            hostname=hostname,
            idle_timeout=idle_timeout,
            max_line_length=max_line_length,
            max_bad_commands=max_bad_commands,
            expire=expire,
            login_delay=login_delay,
            user_login=user_login,
            apop=apop,
            utf8=utf8,
            last=last,
        )
        self.store = MailStore(dict(users or {}))
        self.users: MutableMapping[str, str] = Users(self.store)
        self.transcript = Transcript()
        self.host = host
        self.port = port
        self._listening: _Listening | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []

    # --- public API -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server as an RFC 2384 POP URL, e.g. ``pop://127.0.0.1:1110``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"pop://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._listening is not None

    def mailbox(self, user: str) -> Mailbox:
        """The maildrop of ``user``; KeyError, saying how to add the account, if there is none."""
        return self.store[user].mailbox

    def start(self) -> POP3Server:
        """Listen and serve in background threads; returns at once, ready for clients."""
        if self._listening is not None:
            raise RuntimeError("the server is already running")
        listener = self._listen()
        self.port = listener.getsockname()[1]
        wake_read, wake_write = socket.socketpair()
        thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, wake_read),
            name=f"fakepop-accept-{self.port}",
            daemon=True,
        )
        self._listening = _Listening(listener, wake_read, wake_write, thread)
        thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, join every thread, then ``check()``."""
        listening, self._listening = self._listening, None
        if listening is not None:
            listening.wake_write.send(b"x")
            listening.thread.join()
            for sock in (listening.listener, listening.wake_read, listening.wake_write):
                sock.close()
            with self._lock:
                connections = list(self._connections.items())
            for sock, _ in connections:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            for _, thread in connections:
                thread.join()
        self.check()

    def check(self) -> None:
        """Re-raise what went wrong in the server's threads since the last check, if anything."""
        with self._lock:
            errors, self._errors = self._errors, []
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("errors in fakepop server threads", errors)  # type: ignore[type-var]

    def __enter__(self) -> POP3Server:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<POP3Server {state} users={sorted(self.users)}>"

    # --- threads --------------------------------------------------------------------------

    def _listen(self) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as e:
            raise OSError(f"cannot listen on {self.host!r}: {e.strerror}") from None
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            # A server restarted on the same port must rebind at once.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(LISTEN_BACKLOG)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise OSError(
                    e.errno,
                    f"port {self.port} on {self.host} is already in use; pick another"
                    " or pass port=0 for any free port",
                ) from None
            raise
        return sock

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    try:
                        conn, peer = listener.accept()
                    except OSError as e:
                        if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                            self._record(e)
                        continue
                    self._spawn(conn, peer)

    def _spawn(self, conn: socket.socket, peer: tuple[str, int] | str) -> None:
        thread = threading.Thread(
            target=self._serve, args=(conn, peer), name=f"fakepop-session-{peer}", daemon=True
        )
        with self._lock:
            self._connections[conn] = thread
        thread.start()

    def _serve(self, conn: socket.socket, peer: tuple[str, int] | str) -> None:
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        session = Session(self.store, self.settings, transcript=self.transcript.new_session(where))
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.settings.idle_timeout)
            closing = self._write(conn, session.start())
            while not closing:
                try:
                    data = conn.recv(RECV_SIZE)
                except TimeoutError:
                    events = session.timed_out()
                else:
                    if not data:
                        break
                    events = session.receive_data(data)
                closing = self._write(conn, events)
            else:
                self._close_gracefully(conn)
        except OSError:
            pass  # the client went away, or stop() shut the socket: nothing is committed
        except Exception as e:
            self._record(e)
            with contextlib.suppress(OSError):
                conn.sendall(status(False, "Internal server error", "SYS/TEMP"))
        finally:
            session.connection_lost()
            conn.close()
            with self._lock:
                self._connections.pop(conn, None)

    @staticmethod
    def _write(conn: socket.socket, events: Iterable[Event]) -> bool:
        """Send the replies among ``events``; True when one of them asks to close."""
        pending = bytearray()
        closing = False
        for event in events:
            if isinstance(event, Close):
                closing = True
                continue
            for piece in (event.status, *event.body):
                if len(piece) < COALESCE_LIMIT:
                    pending += piece
                    continue
                if pending:
                    conn.sendall(pending)
                    pending.clear()
                conn.sendall(piece)
        if pending:
            conn.sendall(pending)
        return closing

    @staticmethod
    def _close_gracefully(conn: socket.socket) -> None:
        """Half-close, then read what the client still sends, so the close is a FIN, not a reset.

        Closing with unread input makes the kernel send a reset, which can
        destroy our last reply before the client reads it (pipelined QUIT).
        """
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(CLOSE_DRAIN_TIMEOUT)
        with contextlib.suppress(OSError):
            while conn.recv(RECV_SIZE):
                pass

    def _record(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)
