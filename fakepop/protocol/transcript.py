"""What was said in a session, both ways, with timestamps; secrets can be masked."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["C", "S", "*"]  # from the client, from the server, a note on the connection


@dataclass(frozen=True, slots=True)
class Entry:
    time: float
    direction: Direction
    text: str
    masked: str | None = None  # the text with secrets replaced, when it holds any

    def render(self, mask: bool = True) -> str:
        return self.masked if mask and self.masked is not None else self.text


@dataclass
class SessionTranscript:
    """The lines of one session, in order."""

    session_id: int
    peer: str = ""
    entries: list[Entry] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # what the client did against the RFCs

    def add(self, direction: Direction, text: str, masked: str | None = None) -> None:
        self.entries.append(Entry(time.time(), direction, text, masked))

    def violate(self, text: str) -> None:
        """Note something the client did that the RFCs forbid; strict mode reports these."""
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
    """Every session of a server, oldest first."""

    def __init__(self) -> None:
        self.sessions: list[SessionTranscript] = []
        self._ids = itertools.count(1)  # next() is atomic, so connection threads get distinct ids

    def new_session(self, peer: str = "") -> SessionTranscript:
        session = SessionTranscript(next(self._ids), peer)
        self.sessions.append(session)
        return session

    def __iter__(self) -> Iterator[SessionTranscript]:
        return iter(list(self.sessions))

    def __len__(self) -> int:
        return len(self.sessions)

    def __getitem__(self, index: int) -> SessionTranscript:
        return self.sessions[index]

    def text(self, mask: bool = True) -> str:
        """All sessions as text; passwords and AUTH payloads masked unless ``mask`` is False."""
        return "\n".join(s.text(mask) for s in self)

    def __str__(self) -> str:
        return self.text()
