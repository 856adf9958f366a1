"""A receive buffer that splits bytes into command lines, bounding their length."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import NamedTuple


class Overflow(enum.Enum):
    """Marks a line that grew past the bound; the rest of it, up to the next LF, is dropped."""

    LINE_TOO_LONG = enum.auto()


class Line(NamedTuple):  # a tuple: one a command, and cheapest to make
    """One received line, without its terminator."""

    data: bytes
    crlf: bool  # False when the line ended in a bare LF


class LineBuffer:
    """Collects bytes and hands out complete lines.

    The buffer remembers how far it has searched for a line feed, so a line
    that arrives one byte at a time is never rescanned, and it never holds more
    than ``max_line_length`` bytes of an unfinished line: past that it reports
    ``Overflow`` once and discards input until the next line feed, where the
    session resynchronises.
    """

    def __init__(self, max_line_length: int, limit: Callable[[bytes], int] | None = None) -> None:
        """Make an empty buffer.

        Args:
            max_line_length: the bound on a line, without its line end.
            limit: a bound that depends on how the line starts (given at most its first
                8 bytes), when some lines may be longer than others; at most
                ``max_line_length``.
        """
        self.max_line_length = max_line_length
        self._limit = limit or (lambda start: max_line_length)
        self.exceeded = 0  # the limit the last overlong line broke
        self._data = bytearray()
        self._searched = 0
        self._discarding = False

    def feed(self, data: bytes) -> None:
        self._data += data

    @property
    def partial(self) -> bool:
        """Part of a line is held (or an overlong one is being dropped): its end is awaited."""
        return bool(self._data) or self._discarding

    def clear(self) -> None:
        """Forget everything received and not yet read as a line."""
        self._data.clear()
        self._searched = 0
        self._discarding = False

    def next_line(self) -> Line | Overflow | None:
        """The next complete line, ``Overflow`` for an overlong one, or None for want of data."""
        while True:
            end = self._data.find(b"\n", self._searched)
            if end < 0:
                if self._discarding:
                    self._data.clear()
                    self._searched = 0
                elif len(self._data) > self._limit(bytes(self._data[:8])) + 1:  # +1: CR, LF to come
                    self.exceeded = self._limit(bytes(self._data[:8]))
                    self._data.clear()
                    self._searched = 0
                    self._discarding = True
                    return Overflow.LINE_TOO_LONG
                else:
                    self._searched = len(self._data)
                return None
            raw = bytes(self._data[:end])
            del self._data[: end + 1]
            self._searched = 0
            if self._discarding:
                self._discarding = False
                continue
            crlf = raw.endswith(b"\r")
            if crlf:
                raw = raw[:-1]
            if len(raw) > self._limit(raw[:8]):
                self.exceeded = self._limit(raw[:8])
                return Overflow.LINE_TOO_LONG
            return Line(raw, crlf)
