"""What was said in a session, both ways, with timestamps; secrets can be masked."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, NamedTuple, Protocol

Direction = Literal["C", "S", "*"]  # from the client, from the server, a note on the connection

# Lines kept of one session in a bounded transcript: the first half, then the latest. A
# client that sends CAPA for ever would otherwise grow it by 400 times what it sends.
SESSION_LINES = 500


WAIT_TIMEOUT = 5.0  # seconds wait_for gives the client under test by default


class Condition(Protocol):
    """What of ``threading.Condition`` a transcript uses: the core imports no threads."""

    def __enter__(self) -> bool: ...
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...
    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool: ...
    def notify_all(self) -> None: ...


class Entry(NamedTuple):  # a tuple: made several times a command, and cheapest to make
    time: float
    direction: Direction
    text: str
    masked: str | None = None  # the text with secrets replaced, when it holds any

    def render(self, mask: bool = True) -> str:
        return self.masked if mask and self.masked is not None else self.text


class Observer(Protocol):
    """Told of each line and each session's end as they happen, from the session's thread.

    What it does delays the session, so it should be quick and must not raise.
    """

    def line(self, session: SessionTranscript, entry: Entry) -> None: ...

    def ended(self, session: SessionTranscript) -> None: ...


@dataclass
class SessionTranscript:
    """The lines of one session, in order."""

    session_id: int
    peer: str = ""
    port: int | None = None  # the server's port the client connected to
    entries: list[Entry] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # what the client did against the RFCs
    user: str | None = None  # the account logged in to
    login: str | None = None  # how: "USER", "APOP" or "AUTH <mechanism>"
    quit: bool = False  # the client said QUIT and got +OK
    max_lines: int | None = None  # past this, lines from the middle are left out
    left_out: int = 0  # lines left out, counted in a note where they were
    started: float = field(default_factory=time.time)
    command_count: int = 0  # lines from the client, however many are kept
    faults: list[str] = field(default_factory=list)  # the rules that fired, described
    bytes_sent: int = 0  # set when the session ends
    how: str | None = None  # how it ended ("quit", "idle timeout", ...); None while it runs
    ended: bool = False  # the connection is closed
    # whose observers to tell and waiters to wake
    hub: Transcript | None = field(default=None, repr=False, compare=False)

    def logged_in(self, user: str, method: str) -> None:
        self.user, self.login = user, method

    def commands(self, mask: bool = True) -> list[str]:
        """What the client sent, command lines and SASL responses, in order."""
        return [e.render(mask) for e in self.entries if e.direction == "C"]

    def add(self, direction: Direction, text: str, masked: str | None = None) -> None:
        entry = Entry(time.time(), direction, text, masked)
        if direction == "C":
            self.command_count += 1
        if self.hub is not None and self.hub.observers:
            for observer in self.hub.observers:
                observer.line(self, entry)
        entries = self.entries
        if self.max_lines is None or len(entries) < self.max_lines:
            entries.append(entry)
            return
        # Full: keep the first half as it is, and a note in place of what follows it, so
        # the line after the note is the oldest of the latest ones.
        middle = self.max_lines // 2
        if self.left_out:
            del entries[middle + 1]
        self.left_out += 1
        entries[middle] = Entry(entries[middle].time, "*", f"... {self.left_out} lines left out")
        entries.append(entry)

    def fault(self, description: str) -> None:
        """Note a fault rule that fired in this session."""
        self.faults.append(description)
        self.add("*", f"fault: {description}")

    def end(self, how: str | None = None, bytes_sent: int = 0) -> None:
        """The connection is closed: note it and wake ``Transcript.wait_for``.

        The core says so first (``Session.connection_lost``, no ``how``); a server
        then says how the session ended and what it sent, for the observers.
        """
        if how is not None:
            self.how, self.bytes_sent = how, bytes_sent
            if self.hub is not None:
                for observer in self.hub.observers:
                    observer.ended(self)
        if not self.ended:
            self.ended = True
            if self.hub is not None:
                self.hub._notify()

    def violate(self, text: str) -> None:
        """Note something the client did that the RFCs forbid; strict mode reports these."""
        if self.max_lines is None or len(self.violations) < self.max_lines:
            self.violations.append(text)
        self.add("*", f"client violation: {text}")

    def lines(self, mask: bool = True) -> list[str]:
        """The lines alone, prefixed "C: " or "S: " as in the RFCs' examples."""
        return [f"{e.direction}: {e.render(mask)}" for e in self.entries]

    def text(self, mask: bool = True) -> str:
        head = f"--- session {self.session_id}" + (f" from {self.peer}" if self.peer else "")
        body = (
            f"{time.strftime('%H:%M:%S', time.localtime(e.time))}.{int(e.time * 1000) % 1000:03d}"
            f" {e.direction}: {e.render(mask)}"
            for e in self.entries
        )
        return "\n".join([head, *body])


class Transcript:
    """Every session of a server, oldest first; or the latest ``limit`` of them.

    Args:
        limit: the sessions kept, the oldest forgotten first, each of at most
            ``SESSION_LINES`` lines; 0 keeps none. None (the default) keeps every
            line of every session, as a test wants.
        changed: notified as sessions end, for ``wait_for`` across threads (the
            server passes a ``threading.Condition``); without it ``wait_for``
            looks once, as nothing else can end a session meanwhile.
    """

    def __init__(self, limit: int | None = None, *, changed: Condition | None = None) -> None:
        if limit is not None and limit < 0:
            raise ValueError("transcript_limit must be 0 or more (0 keeps none), or None for all")
        self.limit = limit
        self._changed = changed
        self.sessions: list[SessionTranscript] = []
        self._ids = itertools.count(1)  # next() is atomic, so connection threads get distinct ids
        # A tuple replaced whole, never changed, so a session thread iterates it safely.
        self.observers: tuple[Observer, ...] = ()

    def subscribe(self, observer: Observer) -> None:
        """Tell ``observer`` of every line and every session's end from now on."""
        self.observers = (*self.observers, observer)

    def unsubscribe(self, observer: Observer) -> None:
        """Stop telling ``observer``; nothing if it was not subscribed."""
        self.observers = tuple(o for o in self.observers if o is not observer)

    def reset(self) -> None:
        """Forget every session and number the next one 1 again.

        In place, so a test that holds ``server.transcript`` sees the reset.
        """
        self.sessions.clear()
        self._ids = itertools.count(1)

    def new_session(self, peer: str = "", port: int | None = None) -> SessionTranscript:
        limit = self.limit
        session = SessionTranscript(
            next(self._ids),
            peer,
            port,
            max_lines=None if limit is None else SESSION_LINES,
            hub=self,
        )
        if limit != 0:
            self.sessions.append(session)
        if limit:
            # A slice, not an index: reset() may empty the list meanwhile.
            del self.sessions[: len(self.sessions) - limit]
        return session

    def _notify(self) -> None:
        if self._changed is not None:
            with self._changed:
                self._changed.notify_all()

    def __iter__(self) -> Iterator[SessionTranscript]:
        return iter(list(self.sessions))

    def __len__(self) -> int:
        return len(self.sessions)

    def __getitem__(self, index: int) -> SessionTranscript:
        return self.sessions[index]

    def text(self, mask: bool = True, since: int = 0) -> str:
        """All sessions as text; passwords and AUTH payloads masked unless ``mask`` is False.

        Args:
            mask: hide secrets.
            since: only the sessions numbered above this one.
        """
        return "\n".join(s.text(mask) for s in self if s.session_id > since)

    # --- for assertions in tests -------------------------------------------------------------

    def commands(self) -> list[str]:
        """Every command line the clients sent, in order, secrets masked."""
        return [line for session in self for line in session.commands()]

    def assert_sent(self, command: str) -> None:
        """Fail unless some client sent ``command`` (a line, or its start: "RETR", "TOP 1")."""
        __tracebackhide__ = True  # a failure points at the test's line, not this one
        wanted = command.upper()
        sent = self.commands()
        if not any(
            line.upper() == wanted or line.upper().startswith(wanted + " ") for line in sent
        ):
            raise AssertionError(f"no client sent {command!r}; they sent: {sent}")

    def assert_login(self, method: str, user: str | None = None) -> None:
        """Fail unless a session logged in with ``method`` ("USER", "APOP", "PLAIN", ...).

        Args:
            method: how: USER/PASS, APOP, or a SASL mechanism with or without "AUTH ".
            user: and as this account.
        """
        __tracebackhide__ = True  # a failure points at the test's line, not this one
        wanted = method.upper()
        logins = [(s.login, s.user) for s in self if s.login is not None]
        for login, who in logins:
            assert login is not None
            if wanted in (login, login.removeprefix("AUTH ")) and user in (None, who):
                return
        raise AssertionError(
            f"no session logged in with {method}"
            + (f" as {user}" if user else "")
            + f"; logins: {logins or 'none'}"
        )

    def assert_quit(self) -> None:
        """Fail unless every session ended with QUIT answered +OK."""
        __tracebackhide__ = True  # a failure points at the test's line, not this one
        unquit = [s.session_id for s in self if not s.quit]
        if unquit:
            raise AssertionError(f"sessions {unquit} ended without a completed QUIT")

    def wait_for(
        self,
        *,
        user: str | None = None,
        quit: bool | None = None,
        timeout: float = WAIT_TIMEOUT,
    ) -> SessionTranscript:
        """The first session to have ended that matches; waits for one as long as ``timeout``.

        For a client that runs in the background: the test waits for its session
        to end, then asserts on it. Sessions that ended before the call count
        (``reset()`` forgets them).

        Args:
            user: one logged in to this account.
            quit: True, one that ended with QUIT answered +OK; False, one that did not.
            timeout: seconds to wait.

        Raises:
            TimeoutError: no such session ended in time; the message lists those
                that did, and those still open.
        """
        __tracebackhide__ = True
        if timeout < 0:
            raise ValueError(f"timeout must be 0 or more seconds, not {timeout}")

        def found() -> SessionTranscript | None:
            return next(
                (s for s in self if s.ended and user in (None, s.user) and quit in (None, s.quit)),
                None,
            )

        if self._changed is None:
            session = found()
        else:
            with self._changed:
                self._changed.wait_for(lambda: found() is not None, timeout)
                session = found()
        if session is not None:
            return session
        how = {None: "", True: "with QUIT", False: "without QUIT"}[quit]
        wanted = " ".join([f"of {user}" if user else "", how]).strip()
        ended = [
            f"{s.session_id} ({s.user or 'no login'}, {'QUIT' if s.quit else 'no QUIT'})"
            for s in self
            if s.ended
        ]
        still_open = [s.session_id for s in self if not s.ended]
        raise TimeoutError(
            f"waited {timeout:g} s for a session {wanted + ' ' if wanted else ''}to end;"
            f" ended: {', '.join(ended) or 'none'}; still open: {still_open or 'none'}"
        )

    def __str__(self) -> str:
        return self.text()
