"""The threaded server: listener threads, one thread a connection, sessions fed from sockets."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import errno
import itertools
import secrets
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from fakepop.mail.fill import add_mail
from fakepop.mail.loaders import read_file
from fakepop.mail.maildir import maildir_per_account
from fakepop.mail.manifest import load_manifest
from fakepop.mail.store import Mailbox, MailStore, SavedAccount
from fakepop.protocol.actions import Action, Close, Pause, Stall, StartTLS, Throttle, status
from fakepop.protocol.fault_plan import FaultPlan, Rule
from fakepop.protocol.session import Session
from fakepop.protocol.transcript import Transcript
from fakepop.settings import (
    FIELDS,
    RUNTIME,
    FixedSettingError,
    Settings,
    TLSOptions,
    apply,
    unknown_names,
)
from fakepop.tls import (
    DEFAULT_NAMES,
    Authority,
    CertificateFault,
    ServerCertificate,
    default_authority,
)

RECV_SIZE = 65536
COALESCE_LIMIT = 65536  # replies smaller than this are gathered into one write
LISTEN_BACKLOG = socket.SOMAXCONN  # a burst of connects must not overflow the accept queue
CLOSE_DRAIN_TIMEOUT = 1.0  # seconds to read what a client still sends after our last reply
# Out of descriptors or threads, wait before accepting again, doubling from 5 ms to 1 s, as
# Go's net/http does: the listener stays readable, and retrying at once would spin.
ACCEPT_RETRY_FIRST = 0.005
ACCEPT_RETRY_MAX = 1.0
ACCEPT_SHORTAGES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# A TLS write waits for the whole buffer it is given: small pieces make idle_timeout bound
# the time without progress, not the whole reply (2 MB/s readers of 50 MB must get it all).
TLS_SEND_SLICE = 65536


class PortInUse(OSError):
    """The port to listen on is taken: ``host`` and ``port`` say which, for a caller to name.

    Raised by ``POP3Server.start()`` and ``ControlServer.start()``.
    """

    def __init__(self, host: str, port: int) -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"port {port} on {host} is already in use; pick another or pass port=0 for any free"
            " port",
        )
        self.host = host
        self.port = port


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

    listeners: dict[socket.socket, bool]  # each listener, and whether it speaks implicit TLS
    wake_read: socket.socket  # readable when stop() wants the accept loop to end
    wake_write: socket.socket
    thread: threading.Thread


@dataclass(frozen=True)
class _Checkpoint:
    """What ``POP3Server.restore`` puts back."""

    accounts: tuple[SavedAccount, ...]
    settings: Settings
    faults: list[Rule]


# POP3Server's own keywords, besides the fields it takes as overrides.
KEYWORDS = ("users", "settings", "tls", "faults", "authority")


class POP3Server:
    """A POP3 server that runs in threads of the calling process.

    Use it as a context manager, or call ``start()`` and ``stop()``::

        with POP3Server(users={"alice": "secret"}) as server:
            server.mailbox("alice").add(b"Subject: hi\\r\\n\\r\\nHello\\r\\n")
            client = poplib.POP3(server.host, server.port)

    Args:
        users: account names and their passwords; each gets an empty maildrop.
        settings: how the server behaves; ``Settings()`` by default.
        tls: serve TLS, STLS on ``port`` and implicit TLS on ``tls_port``: True for
            ``TLSOptions()``, or the ``TLSOptions`` to use; False (the default) for none.
        faults: the rules of misbehaviour to start with: a ``FaultPlan``, rules (or their
            data as mappings), or the path of a TOML or JSON fault file. Add more any
            time with ``server.faults.add(...)``.
        authority: the CA to issue the certificate from; by default the process's own.
        **overrides: any field of ``Settings`` or ``TLSOptions`` by name
            (``idle_timeout=30``, ``tls_minimum=ssl.TLSVersion.TLSv1``), over ``settings``
            and ``tls``; ``fakepop.settings.FIELDS`` says what each one does. A TLS field
            does nothing without ``tls``.

    Raises:
        TypeError: a keyword that names no field; the message lists them and the nearest.
        ValueError: a value a field cannot take.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        settings: Settings | None = None,
        tls: TLSOptions | bool = False,
        faults: FaultPlan | Iterable[Rule | Mapping[str, Any]] | str | Path | None = None,
        authority: Authority | None = None,
        **overrides: Any,
    ) -> None:
        given = TLSOptions() if tls is True else tls or None
        self.settings, self.tls = apply(settings or Settings(), given, overrides, KEYWORDS)
        if self.settings.require_tls and self.tls is None:
            raise ValueError("require_tls=True needs tls=True: without TLS nobody could log in")
        limit = self.settings.transcript_limit
        self.transcript = Transcript(limit, changed=threading.Condition())
        maildir = self.settings.maildir
        on_disk = maildir_per_account(maildir) if maildir is not None else None

        def new_mailbox(name: str) -> Mailbox:
            mailbox = Mailbox() if on_disk is None else on_disk(name)
            mailbox.record_limit = limit
            mailbox.keep_bare_cr = self.settings.keep_bare_cr
            return mailbox

        self.store = MailStore(dict(users or {}), new_mailbox)
        self.users: MutableMapping[str, str] = Users(self.store)
        if isinstance(faults, FaultPlan):
            self.faults = faults
        elif isinstance(faults, str | Path):
            self.faults = FaultPlan()
            self.faults.load(faults)
        else:
            self.faults = FaultPlan(faults or ())
        if isinstance(self.faults.lock, contextlib.nullcontext):
            self.faults.lock = threading.Lock()  # its sessions check it from threads of their own
        if limit is not None:
            self.faults.fired_limit = limit
        self.host = self.settings.host
        self.port = self.settings.port
        options = self.tls
        self.tls_port: int | None = options.tls_port if options and options.implicit_tls else None
        self.stls = options is not None and options.stls
        no_ca = options is None or options.certificate is not None
        self.authority = None if no_ca else authority or default_authority()
        self._tls_context: ssl.SSLContext | None = None
        if options is not None:
            if options.certificate is not None:
                chain, key = (read_file(p) for p in options.certificate)
                leaf = ServerCertificate(chain, key)
            else:
                assert self.authority is not None
                named = options.certificate_fault
                fault = CertificateFault(named) if named else None
                names = tuple(dict.fromkeys((*DEFAULT_NAMES, *options.tls_names)))
                leaf = self.authority.certificate(names, options.key_type, fault)
            self._tls_context = leaf.server_context(
                _tls_version(options.tls_minimum), _tls_version(options.tls_maximum)
            )
        self._listening: _Listening | None = None
        self._connections: dict[int, _Connection] = {}
        self._lock = threading.Lock()
        self._errors: list[BaseException] = []
        self._stopping = threading.Event()
        self._short = False  # out of descriptors or threads, and the error already kept
        self._saved: _Checkpoint | None = None

    # --- public API -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The server as an RFC 2384 POP URL, e.g. ``pop://127.0.0.1:1110``."""
        return f"pop://{self._netloc(self.port)}"

    @property
    def tls_url(self) -> str:
        """The implicit-TLS listener as a URL, e.g. ``pop3s://127.0.0.1:1995``."""
        if self.tls_port is None:
            raise RuntimeError("this server has no implicit-TLS port: make it with tls=True")
        return f"pop3s://{self._netloc(self.tls_port)}"

    @property
    def ca_pem(self) -> Path:
        """The path of the CA certificate in PEM, for external clients to trust."""
        return self._require_authority().ca_pem

    def client_ssl_context(self) -> ssl.SSLContext:
        """An ``ssl.SSLContext`` that trusts the server's CA and checks host names."""
        return self._require_authority().client_context()

    @property
    def violations(self) -> list[tuple[int, str]]:
        """What clients did against the RFCs, as (session number, what), oldest first."""
        return [(s.session_id, text) for s in self.transcript for text in s.violations]

    @property
    def running(self) -> bool:
        return self._listening is not None

    def mailbox(self, user: str) -> Mailbox:
        """The maildrop of ``user``; KeyError, saying how to add the account, if there is none."""
        return self.store[user].mailbox

    def load_manifest(self, path: str | Path) -> None:
        """Create the accounts a ``fakepop.toml`` declares and give them their mail.

        Args:
            path: the manifest, or the fixtures directory that holds it.
        """
        for name, fixture in load_manifest(path).items():
            self.users[name] = fixture.password
            add_mail(self.mailbox(name), fixture.messages)

    def add_token(
        self, user: str, token: str | None = None, *, expires_in: float | None = None
    ) -> str:
        """Give ``user`` an OAuth token for XOAUTH2 and OAUTHBEARER, and return it.

        Args:
            user: the account.
            token: the token; a random one by default.
            expires_in: seconds until the server refuses it, as an expired token;
                it never expires by default. A negative value makes it expired already.
        """
        token = token or secrets.token_urlsafe(32)
        expires = None if expires_in is None else time.time() + expires_in
        self.store[user].tokens[token] = expires
        return token

    def remove_message(self, user: str, uid: str) -> None:
        """Take one message out of ``user``'s maildrop now, as an administrator would.

        It is not recorded in ``mailbox.deleted``, which holds what sessions deleted.

        Raises:
            KeyError: there is no such account, or no message with that UID in it.
        """
        try:
            self.mailbox(user).remove(uid)
        except KeyError:
            raise KeyError(f"no message with UID {uid!r} in the maildrop of {user!r}") from None

    def change_settings(self, **changes: Any) -> Settings:
        """Change the fields of ``settings`` that may change while the server runs.

        Sessions that start afterwards see the new values; those already open keep theirs.
        ``fakepop.settings.RUNTIME`` names the fields that may change.

        Returns:
            The new settings.

        Raises:
            TypeError: a name that is no field, with the nearest.
            FixedSettingError: fields that cannot change while the server runs, named.
            ValueError: a value a field cannot take.
        """
        unknown = [name for name in changes if name not in FIELDS]
        if unknown:
            raise TypeError(unknown_names(unknown, FIELDS, "unknown setting"))
        fixed = [name for name in changes if not FIELDS[name].runtime]
        if fixed:
            raise FixedSettingError(fixed)
        settings = dataclasses.replace(self.settings, **changes)
        if settings.require_tls and self.tls is None:
            raise ValueError("require_tls needs TLS, and this server has none")
        self.settings = settings  # one assignment: a session sees the old or the new, whole
        return settings

    def reset(self) -> None:
        """Forget every account and its mail, every fault rule and the transcript.

        Maildrops on disk (``maildir=``) are emptied. Sessions still open keep the
        snapshot they logged in with; session numbers start again from 1.
        """
        for account in self.store:
            account.mailbox.clear()
            self.store.remove_account(account.name)
        self.faults.clear()
        self.transcript.reset()

    def checkpoint(self) -> None:
        """Remember the server as it is now, for ``restore`` to put back.

        What is kept: the accounts with their passwords, tokens and every message
        (in memory, the messages themselves, not a copy; a Maildir is read), the
        fault rules with their counts, and the settings.
        """
        self._saved = _Checkpoint(
            self.store.checkpoint(), self.settings, copy.deepcopy(self.faults.rules)
        )

    def restore(self) -> None:
        """Put the server back as ``checkpoint`` found it, for the next test.

        Sessions still open are closed first (their clients see the connection
        drop, and nothing they did is committed). Then the accounts, passwords,
        tokens and messages (same UIDs, same bytes; what was retrieved and deleted
        forgotten) are those of the checkpoint, and so are the fault rules and the
        settings that may change at run time; the transcript is emptied and
        sessions are numbered from 1 again. A maildrop in memory is put back at
        no cost whatever its size; a Maildir is written again. Errors of the
        closed sessions stay for ``check()``.

        Raises:
            RuntimeError: ``checkpoint()`` was never called.
        """
        saved = self._saved
        if saved is None:
            raise RuntimeError("nothing to restore: call server.checkpoint() first")
        self._end_sessions()
        self.store.restore(saved.accounts)
        self.faults.clear()
        for rule in copy.deepcopy(saved.faults):
            self.faults.add(rule)
        # The settings that may change at run time; the others (the ports bound) stay.
        kept = {name: getattr(saved.settings, name) for name in RUNTIME}
        self.settings = dataclasses.replace(self.settings, **kept)
        self.transcript.reset()

    def start(self) -> POP3Server:
        """Listen and serve in background threads; returns at once, ready for clients."""
        if self._listening is not None:
            raise RuntimeError("the server is already running")
        listeners = {self._listen(self.port): False}
        if self.tls_port is not None:
            try:
                listeners[self._listen(self.tls_port)] = True
            except OSError:
                for sock in listeners:
                    sock.close()
                raise
        ports = [sock.getsockname()[1] for sock in listeners]
        self.port = ports[0]
        # The live settings name the ports bound, not the 0 that asked for any free one.
        self.settings = dataclasses.replace(self.settings, port=self.port)
        if self.tls_port is not None:
            self.tls_port = ports[1]
            if self.tls is not None:
                self.tls = dataclasses.replace(self.tls, tls_port=self.tls_port)
        # Made here, not in the accept thread: short of descriptors, start() must say so.
        opened: list[socket.socket | selectors.BaseSelector] = [*listeners]
        try:
            wake_read, wake_write = socket.socketpair()
            opened += [wake_read, wake_write]
            selector = selectors.DefaultSelector()
            opened.append(selector)
            for listener, implicit_tls in listeners.items():
                selector.register(listener, selectors.EVENT_READ, implicit_tls)
            selector.register(wake_read, selectors.EVENT_READ)
            thread = threading.Thread(
                target=self._accept_loop,
                args=(selector, wake_read),
                name=f"fakepop-accept-{self.port}",
                daemon=True,
            )
            self._stopping.clear()
            thread.start()
        except (OSError, RuntimeError):
            for item in opened:
                item.close()
            raise
        self._listening = _Listening(listeners, wake_read, wake_write, thread)
        return self

    def stop(self) -> None:
        """Close the listeners and every connection, join every thread, then ``check()``."""
        listening, self._listening = self._listening, None
        if listening is not None:
            self._stopping.set()
            listening.wake_write.send(b"x")
            listening.thread.join()
            for sock in (*listening.listeners, listening.wake_read, listening.wake_write):
                sock.close()
            self._end_sessions()
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

    # --- internals ------------------------------------------------------------------------

    def _end_sessions(self) -> None:
        """Close every open connection and wait for its thread."""
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.abort()
        for connection in connections:
            connection.thread.join()

    def _netloc(self, port: int) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{port}"

    def _require_authority(self) -> Authority:
        if self.authority is None:
            raise RuntimeError(
                "this server has no CA of its own: make it with tls=True and no certificate="
            )
        return self.authority

    def _listen(self, port: int) -> socket.socket:
        try:
            infos = socket.getaddrinfo(
                self.host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
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
                raise PortInUse(self.host, port) from None
            raise
        return sock

    def _accept_loop(self, selector: selectors.BaseSelector, wake: socket.socket) -> None:
        retry = 0.0  # seconds to wait before accepting again; 0 while nothing is short
        with selector:
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    assert isinstance(key.fileobj, socket.socket)
                    try:
                        sock, peer = key.fileobj.accept()
                    except OSError as e:
                        if e.errno not in ACCEPT_SHORTAGES:
                            continue  # the client left the queue before we took it: next
                        self._short_of(
                            OSError(
                                e.errno,
                                f"cannot accept connections: {e.strerror}; the server waits"
                                " until descriptors free up (ulimit -n raises the limit)",
                            )
                        )
                        retry = retry or ACCEPT_RETRY_FIRST
                        break
                    if self._spawn(sock, peer, implicit_tls=key.data):
                        retry = 0.0
                if retry:
                    if self._stopping.wait(retry):
                        return
                    retry = min(2 * retry, ACCEPT_RETRY_MAX)

    def _spawn(self, sock: socket.socket, peer: tuple[str, int] | str, implicit_tls: bool) -> bool:
        """Serve a new connection in a thread of its own; False if no thread could be had."""
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        with self._lock:
            limit = self.settings.max_connections
            full = len(self._connections) >= limit
        if full:
            _refuse(sock, f"Too many connections (the limit is {limit}), try again later")
            return True  # a limit, not a shortage: nothing to wait for
        session = Session(
            self.store,
            self.settings,
            transcript=self.transcript.new_session(where, _local_port(sock)),
            stls=self.stls and not implicit_tls,
            secure=implicit_tls,
            faults=self.faults,
        )
        connection = _Connection(
            sock,
            session,
            tls_context=self._tls_context,
            implicit_tls=implicit_tls,
            stopping=self._stopping,
            finished=self._finished,
        )
        with self._lock:
            self._connections[id(connection)] = connection
        try:
            connection.thread.start()
        except RuntimeError as e:  # "can't start new thread": out of memory or processes
            with self._lock:
                self._connections.pop(id(connection), None)
            session.transcript.add("*", "refused: the server cannot start a thread for it")
            session.transcript.end("refused", 0)
            self._short_of(
                RuntimeError(
                    f"cannot start a thread for a connection ({e}); connections are refused"
                    " with -ERR [SYS/TEMP] until threads free up"
                )
            )
            _refuse(sock, "Cannot start a session now, try again later")
            return False
        self._short = False
        return True

    def _short_of(self, error: BaseException) -> None:
        """Keep one error for a shortage of descriptors or threads, however long it lasts."""
        if not self._short:
            self._short = True
            self._record(error)

    def _finished(self, connection: _Connection, error: BaseException | None) -> None:
        with self._lock:
            self._connections.pop(id(connection), None)
            if error is not None:
                self._errors.append(error)

    def _record(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(error)


def _tls_version(version: str | None) -> ssl.TLSVersion:
    """``ssl.TLSVersion`` for "1.2"; None, no bound, is the newest there is."""
    if version is None:
        return ssl.TLSVersion.MAXIMUM_SUPPORTED
    return ssl.TLSVersion[{"1.0": "TLSv1"}.get(version, "TLSv" + version.replace(".", "_"))]


def _local_port(sock: socket.socket) -> int | None:
    try:
        return int(sock.getsockname()[1])
    except (OSError, IndexError, TypeError):  # gone already, or not an internet socket
        return None


def _refuse(sock: socket.socket, text: str) -> None:
    """Tell a client ``-ERR [SYS/TEMP] text`` and close: in plaintext even on the TLS port,
    as what the server lacks is the thread to run a handshake in."""
    with contextlib.suppress(OSError):
        sock.settimeout(0.1)
        sock.sendall(status(False, text, "SYS/TEMP"))
    sock.close()


class _Connection:
    """One client: its socket (wrapped in TLS when it comes to that), its session, its thread.

    It carries out what the session asks, and nothing more: the session decides
    every reply and every fault.

    Args:
        sock: the accepted socket.
        session: the protocol core for this client, made for this connection.
        tls_context: the server's, for implicit TLS and STLS; None without TLS.
        implicit_tls: run the handshake before the greeting.
        stopping: set when the server stops, for the transcript to say so.
        finished: called once the connection is closed, with the error that ended
            it (a bug, or the store's), for the server's ``check()``.
    """

    def __init__(
        self,
        sock: socket.socket,
        session: Session,
        *,
        tls_context: ssl.SSLContext | None,
        implicit_tls: bool,
        stopping: threading.Event,
        finished: Callable[[_Connection, BaseException | None], None],
    ) -> None:
        self.sock = sock
        self.session = session
        self.transcript = session.transcript
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.idle_timeout = session.settings.idle_timeout
        self.stopping = stopping
        self.finished = finished
        self.thread = threading.Thread(
            target=self.run, name=f"fakepop-session-{self.transcript.peer}", daemon=True
        )
        # Held while self.sock is replaced by its TLS wrapper, which takes over the descriptor:
        # abort() must shut down whichever socket owns it, or a handshake is not woken.
        self._swap = threading.Lock()
        self._aborted = False
        self._cut = threading.Event()  # set by abort(): pauses and trickles end at once
        self.sent = 0  # octets sent, for the transcript's end of session
        self.how = "client closed"  # how the session ended, for the same

    def abort(self) -> None:
        """Wake the thread from any read, write or handshake by shutting the socket down."""
        self._cut.set()
        with self._swap:
            self._aborted = True
            with contextlib.suppress(OSError):
                # The plain socket's method: SSLSocket.shutdown would drop the TLS state the
                # connection thread is still using.
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def run(self) -> None:
        session = self.session
        error: BaseException | None = None
        idle = self.idle_timeout
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(idle)
            if self.implicit_tls and not self._handshake():
                return
            action = self._send(session.start())
            line_began: float | None = None  # when the first byte of an unended line came
            while not isinstance(action, Close | Stall):
                if isinstance(action, StartTLS):
                    if not self._handshake():
                        return
                    session.tls_started()
                    line_began = None
                # A line must end within idle_timeout of its first byte: a client that
                # trickles a byte at a time must not hold its connection for ever.
                wait = idle if line_began is None else line_began + idle - time.monotonic()
                left = session.time_left()  # the session-limit quirk's, which commands don't reset
                if left is not None:
                    wait = min(wait, left)
                try:
                    data = self._receive(wait)
                except TimeoutError:
                    self.how = "idle timeout" if session.time_left() != 0 else "session time limit"
                    action = self._send(session.timed_out())
                    continue
                if not data:
                    return
                now = time.monotonic()
                action = self._answer(session, data)
                if not session.partial_line:
                    line_began = None
                elif line_began is None or b"\n" in data:
                    line_began = now
            self._end(action)
        except OSError:
            self.how = "connection lost"  # the client went away: nothing is committed
        except Exception as e:
            error = e
            self.how = "internal error"
            with contextlib.suppress(OSError):
                self.sock.sendall(status(False, "Internal server error", "SYS/TEMP"))
        finally:
            session.connection_lost()
            self.sock.close()
            if self.stopping.is_set() and self.how in ("client closed", "connection lost"):
                self.how = "server stopped"  # stop() shut the socket
            self.transcript.end(self.how, self.sent)
            self.finished(self, error or session.error)  # a store error ended the session

    def _receive(self, timeout: float) -> bytes:
        """What the client sends next; TimeoutError if nothing comes within ``timeout``."""
        if timeout <= 0:
            raise TimeoutError
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(RECV_SIZE)
        finally:
            self.sock.settimeout(self.idle_timeout)  # for the sends

    def _handshake(self) -> bool:
        """Run the TLS handshake as server; False, noted in the transcript, if it fails.

        The whole handshake must end within idle_timeout (Python's do_handshake takes the
        socket's timeout as its deadline), and stop() can cut it short.
        """
        assert self.tls_context is not None
        instead = self._send(self.session.tls_handshake())
        if instead is not None:  # a fault takes the handshake's place
            assert not isinstance(instead, StartTLS)
            self._end(instead)
            return False
        try:
            with self._swap:
                if self._aborted:
                    return False
                self.sock = self.tls_context.wrap_socket(
                    self.sock, server_side=True, do_handshake_on_connect=False
                )
            assert isinstance(self.sock, ssl.SSLSocket)
            self.sock.do_handshake()
        except (ssl.SSLError, OSError) as e:
            self.transcript.add("*", f"TLS handshake failed: {e}")
            self.how = "TLS handshake failed"
            return False
        assert isinstance(self.sock, ssl.SSLSocket)
        self.transcript.add("*", f"TLS established: {self.sock.version()} {self.sock.cipher()}")
        return True

    def _end(self, action: Close | Stall) -> None:
        """End the connection as the session asked: stalled, reset, or closed in good order."""
        if self.transcript.quit:
            self.how = "quit"
        elif self.how != "idle timeout":
            self.how = "stalled" if isinstance(action, Stall) else "closed by the server"
        if isinstance(action, Stall):
            self._stall()
        elif action.reset:
            self.how = "reset by the server"
            self._reset()
        else:
            self._close_gracefully()  # read what the client still sends: a FIN, never a reset

    def _answer(self, session: Session, data: bytes) -> Close | StartTLS | Stall | None:
        """Act on the commands in ``data``, each one's replies sent before the next is run.

        Replies smaller than COALESCE_LIMIT are gathered into one write, so a
        pipelining client gets few segments, yet the server never holds more
        than one reply's body, however many commands arrived at once.
        """
        session.feed(data)
        pending = bytearray()
        ending = None
        while ending is None and (actions := session.next_command()) is not None:
            ending = self._send(actions, pending)
        self._write(pending, None)
        return ending

    def _send(
        self, actions: Iterable[Action], pending: bytearray | None = None
    ) -> Close | StartTLS | Stall | None:
        """Carry out ``actions``: send the replies, pause, throttle; return the one that ends them.

        With ``pending``, small replies may be left in it for the caller to send
        along with the next command's.
        """
        keep = pending is not None
        pending = bytearray() if pending is None else pending
        ending: Close | StartTLS | Stall | None = None
        rate: float | None = None
        for action in actions:
            if isinstance(action, Close | StartTLS | Stall):
                ending = action
            elif isinstance(action, Throttle):
                self._write(pending, rate)
                pending.clear()
                rate = action.bytes_per_second
            elif isinstance(action, Pause):
                self._write(pending, rate)
                pending.clear()
                self._cut.wait(action.seconds)  # stop() and restore() cut the pause short
            else:
                for piece in itertools.chain((action.status,), action.body):
                    if len(piece) >= COALESCE_LIMIT:
                        self._write(pending, rate)
                        pending.clear()
                        self._write(piece, rate)
                    else:
                        pending += piece
                        if len(pending) >= COALESCE_LIMIT:
                            self._write(pending, rate)
                            pending.clear()
        if not keep or ending is not None or rate is not None:
            self._write(pending, rate)
            pending.clear()
        return ending

    def _write(self, data: bytes | bytearray, rate: float | None) -> None:
        """Send ``data``, no faster than ``rate`` bytes a second when there is a rate."""
        if not data:
            return
        if rate is None:
            self._send_all(data)
            return
        view = memoryview(data)
        step = max(1, int(rate / 20))  # twenty slices a second
        for offset in range(0, len(view), step):
            self._send_all(view[offset : offset + step])
            if self._cut.wait(step / rate):
                return

    def _send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``; TimeoutError after idle_timeout without progress.

        Not ``sendall``: its timeout bounds the whole transfer, which cuts off a client
        that reads a large message slowly but steadily.
        """
        view = memoryview(data)
        piece = TLS_SEND_SLICE if isinstance(self.sock, ssl.SSLSocket) else len(view)
        while view:
            sent = self.sock.send(view[:piece])
            self.sent += sent
            view = view[sent:]

    def _stall(self) -> None:
        """Say nothing more; read and drop what the client sends until it or the server gives up."""
        self.sock.settimeout(None)
        with contextlib.suppress(OSError):
            while self.sock.recv(RECV_SIZE):
                pass

    def _reset(self) -> None:
        """Close abortively: the client sees a connection reset, not an orderly end."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def _close_gracefully(self) -> None:
        """End TLS with close_notify, half-close, and read what the client still sends.

        Closing with unread input makes the kernel send a reset, which can
        destroy our last reply before the client reads it (pipelined QUIT);
        closing TLS without close_notify makes clients such as openssl s_client
        report an error.
        """
        deadline = time.monotonic() + CLOSE_DRAIN_TIMEOUT  # a trickling client gets no more
        self.sock.settimeout(CLOSE_DRAIN_TIMEOUT)
        if isinstance(self.sock, ssl.SSLSocket):
            try:
                self.sock = self.sock.unwrap()
            except (ssl.SSLError, OSError):
                return  # the client closed first: nothing left to say
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                if not self.sock.recv(RECV_SIZE):
                    break
