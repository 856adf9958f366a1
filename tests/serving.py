"""``fakepop serve`` as a child process, as users and CI scripts start it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

FAKEPOP = (sys.executable, "-m", "fakepop")
READY_TIMEOUT = 20.0
LAST_HOW_TO_LINE = "  stop with Ctrl-C"


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without any ``FAKEPOP_*`` variable, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKEPOP_")}
    env.update(variables)
    return env


class _Lines:
    """The lines a stream gives, read by a thread so that waiting for one can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def next(self, timeout: float = READY_TIMEOUT) -> str | None:
        """The next line without its newline; None at the end of the stream."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"fakepop said nothing for {timeout} s") from None
        return None if line is None else line.rstrip("\n")

    def rest(self, timeout: float = READY_TIMEOUT) -> str:
        """Everything up to the end of the stream."""
        self._thread.join(timeout)
        lines = []
        while (line := self._queue.get_nowait()) is not None:
            lines.append(line)
        return "".join(lines)


@dataclass
class Served:
    """A running ``fakepop serve``: its process, its ready line and the lines after it."""

    process: subprocess.Popen[str]
    ready: str
    stdout: _Lines
    how_to: list[str] = field(default_factory=list)

    @property
    def info(self) -> dict[str, Any]:
        """The ``--json`` ready line, parsed."""
        data: dict[str, Any] = json.loads(self.ready)
        return data

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        """Send ``signum`` and wait: the exit status and the rest of stdout and stderr."""
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        assert self.process.stderr is not None
        return code, self.stdout.rest(), self.process.stderr.read()


@contextlib.contextmanager
def serve(
    *args: str, env: Mapping[str, str] | None = None, cwd: str | Path | None = None
) -> Iterator[Served]:
    """Start ``fakepop`` with ``args``, wait for its ready line, and end it afterwards."""
    process = subprocess.Popen(
        [*FAKEPOP, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else environment(),
        cwd=cwd,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        stdout = _Lines(process.stdout)
        ready = stdout.next()
        if ready is None:
            process.wait(10)
            raise AssertionError(
                f"fakepop exited {process.returncode} before ready: {process.stderr.read()}"
            )
        served = Served(process, ready, stdout)
        if not ready.startswith("{") and not {"-q", "--quiet"} & set(args):
            while (line := stdout.next()) is not None and line != LAST_HOW_TO_LINE:
                served.how_to.append(line)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stdout.close()
        process.stderr.close()


def run(*commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run ``fakepop`` once for each list of arguments, all at once, each to its end."""
    processes = [
        subprocess.Popen(
            [*FAKEPOP, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        for args in commands
    ]
    results = []
    for args, process in zip(commands, processes, strict=True):
        out, err = process.communicate(timeout=30)
        results.append(subprocess.CompletedProcess(list(args), process.returncode, out, err))
    return results
