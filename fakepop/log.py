"""What ``fakepop serve -v`` prints: a line per session, or per line said, as text or JSON.

``SessionLog`` is a transcript observer (``Transcript.subscribe``); it formats and
writes, the server decides nothing here.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from fakepop.protocol.transcript import Entry, SessionTranscript

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")


def _stamp(when: float) -> str:
    """UTC, to the millisecond, as log collectors parse it: 2026-01-02T03:04:05.678Z."""
    moment = datetime.fromtimestamp(when, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def session_record(session: SessionTranscript, when: float) -> dict[str, Any]:
    """The fields of the line for one ended session, by name, in the order printed."""
    return {
        "time": _stamp(when),
        "event": "session",
        "session": session.session_id,
        "peer": session.peer,
        "port": session.port,
        "user": session.user,
        "login": session.login,
        "commands": session.command_count,
        "bytes_sent": session.bytes_sent,
        "ended": session.how,
        "seconds": round(when - session.started, 3),
        "faults": list(session.faults),
    }


def line_record(session: SessionTranscript, entry: Entry) -> dict[str, Any]:
    """The fields of one line said (masked, as the transcript masks), by name."""
    return {
        "time": _stamp(entry.time),
        "event": "line",
        "session": session.session_id,
        "peer": session.peer,
        "direction": entry.direction,
        "text": entry.render(),
    }


def _value(value: Any) -> str:
    """A value of a text line as key=value: quoted when it holds a space, - when absent."""
    if value is None:
        return "-"
    text = str(value)
    if not text or any(c in text for c in ' "='):
        return json.dumps(text)
    return text


def as_text(record: dict[str, Any]) -> str:
    """``time event key=value ...``; for a line, the line as the transcript shows it."""
    if record["event"] == "line":
        return (
            f"{record['time']} session={record['session']} {record['direction']}: {record['text']}"
        )
    fields = dict(record)
    faults = fields.pop("faults")
    words = [fields.pop("time"), fields.pop("event")]
    words += [f"{key}={_value(value)}" for key, value in fields.items()]
    words.append(f"faults={len(faults)}")
    words += [f"fault={_value(fault)}" for fault in faults]
    return " ".join(words)


class SessionLog:
    """Writes a line to ``stream`` as each session ends, and with ``lines`` each line said.

    Args:
        stream: where to write (``fakepop serve`` gives stderr).
        lines: every line both ways too, as it happens (``-vv``).
        log_format: "text" for people, "json" for one JSON object a line.
    """

    def __init__(self, stream: TextIO, *, lines: bool = False, log_format: LogFormat = "text"):
        self.stream = stream
        self.lines = lines
        self.json = log_format == "json"
        self._lock = threading.Lock()  # one line at a time from the sessions' threads

    def line(self, session: SessionTranscript, entry: Entry) -> None:
        if self.lines:
            self._write(line_record(session, entry))

    def ended(self, session: SessionTranscript) -> None:
        self._write(session_record(session, time.time()))

    def _write(self, record: dict[str, Any]) -> None:
        text = json.dumps(record) if self.json else as_text(record)
        with self._lock:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr closed or broken: the server goes on without its log
