"""An in-memory client for a Session: lines in, the server's wire bytes out (like h11's tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fakepop.mail import Mailbox, MailStore
from fakepop.protocol import CLOSE, Action, Reply, Session, Settings
from fakepop.protocol.actions import START_TLS
from fakepop.protocol.transcript import SessionTranscript

USER = "alice"
PASSWORD = "secret"


def split(events: Iterable[Action]) -> tuple[bytes, Action | None]:
    """The bytes a server sends for ``events``, and the action that ends them, if any.

    An action (CLOSE, START_TLS) anywhere but last would make a server drop
    replies or run them through the wrong channel, so it fails here.
    """
    out = bytearray()
    action: Action | None = None
    for event in events:
        assert action is None, f"{event!r} after {action!r}"
        if isinstance(event, Reply):
            out += bytes(event)
        else:
            assert event is CLOSE or event is START_TLS, event
            action = event
    return bytes(out), action


def wire(events: Iterable[Action]) -> tuple[bytes, bool]:
    """The bytes a server sends for ``events``, and whether they end with CLOSE."""
    out, action = split(events)
    return out, action is CLOSE


def lines(*commands: str) -> bytes:
    """Command lines as a client sends them, each ended by CRLF."""
    return b"".join(c.encode("utf-8") + b"\r\n" for c in commands)


class Pair:
    """A Session over a MailStore, driven the way a client drives a server.

    By default the store holds one account, ``alice`` with password ``secret``,
    holding ``messages``.
    """

    def __init__(
        self,
        *messages: bytes,
        store: MailStore | None = None,
        settings: Settings | None = None,
        clock: Callable[[], float] = lambda: 1_000_000.0,
        transcript: SessionTranscript | None = None,
        stls: bool = False,
        secure: bool = False,
    ) -> None:
        self.store = MailStore({USER: PASSWORD}) if store is None else store
        self.uids = [self.mailbox.add(m) for m in messages]
        self.session = Session(
            self.store, settings, transcript=transcript, clock=clock, stls=stls, secure=secure
        )
        self.greeting, self.closed = wire(self.session.start())
        self.start_tls = False  # the session asked for the TLS handshake

    @property
    def mailbox(self) -> Mailbox:
        return self.store[USER].mailbox

    def send(self, data: bytes) -> bytes:
        """Feed raw bytes; return the replies' wire bytes and note a CLOSE or START_TLS."""
        out, action = split(self.session.receive_data(data))
        self.closed = self.closed or action is CLOSE
        self.start_tls = self.start_tls or action is START_TLS
        return out

    def cmd(self, *commands: str) -> bytes:
        """Send command lines (pipelined when several); return the replies' wire bytes."""
        return self.send(lines(*commands))

    def login(self, user: str = USER, password: str = PASSWORD) -> bytes:
        """USER and PASS; return the reply to PASS."""
        assert self.cmd(f"USER {user}") == b"+OK Send PASS\r\n"
        return self.cmd(f"PASS {password}")


def read_multiline(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Read one multi-line reply off the front of ``data`` as a client does (RFC 1939, 3).

    Returns its status line (with CRLF), its body with the byte-stuffing undone,
    and whatever follows the terminating ".".
    """
    pos = data.index(b"\r\n") + 2
    status = data[:pos]
    body = bytearray()
    while True:
        end = data.index(b"\r\n", pos)
        line = data[pos:end]
        pos = end + 2
        if line == b".":
            return status, bytes(body), data[pos:]
        body += (line[1:] if line.startswith(b".") else line) + b"\r\n"


def listing(data: bytes) -> list[str]:
    """The lines of a multi-line reply that must be the whole of ``data`` (CAPA, LIST, UIDL)."""
    status, body, rest = read_multiline(data)
    assert status.startswith(b"+OK"), status
    assert rest == b"", rest
    return body.decode("utf-8").split("\r\n")[:-1]
