"""SIGKILL a Maildir-backed server at random moments, commits included: no mail lost or doubled.

Each trial serves a fresh Maildir of N messages from a server process, runs one
to three POP3 sessions that DELE messages and QUIT, delivers new mail into
new/ as another program would, and kills the server with SIGKILL: before QUIT,
right after sending it, within the time a QUIT's commit and reply take, or
once every QUIT has its +OK. Then the Maildir is opened again (which finishes an
interrupted commit) and every file in it is read and counted.

The server processes are forked from one interpreter that has imported fakepop
already: starting a fresh interpreter costs about 0.2 s, too much for each of
the trials.
"""

from __future__ import annotations

import os
import queue
import random
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from pop3 import Closed, LineClient

import fakepop
from fakepop import MaildirMailbox
from fakepop.mail import MaildropError
from fakepop.mail.maildir import JOURNAL, STAGING

SEED = 20261127
TRIALS = 150
MESSAGES = 40  # in each trial's Maildir at the start
USER, PASSWORD = "alice", "secret"
TIMEOUT = 10.0  # seconds for any socket read, server start or process exit
MOMENTS = ("before QUIT", "right after QUIT", "during the commit", "after +OK")

# Reads Maildir roots on stdin; for each, forks a server on it and prints "pid port".
LAUNCHER = """
import os, signal, sys, traceback
from fakepop import POP3Server

signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the killed servers
print("ready", flush=True)
for line in sys.stdin:
    if os.fork() == 0:
        try:
            server = POP3Server({"alice": "secret"}, maildir=line.rstrip("\\n")).start()
            print(os.getpid(), server.port, flush=True)
            while True:
                signal.pause()
        except BaseException:
            traceback.print_exc()
            print("error", flush=True)
        os._exit(1)
"""


class Launcher:
    """The forking interpreter, and the lines it prints."""

    def __init__(self, errors: IO[bytes]) -> None:
        # The fakepop under test, not another installed copy.
        source = str(Path(fakepop.__file__).resolve().parents[1])
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=dict(os.environ, PYTHONPATH=source),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        assert self.line() == "ready"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode().strip())

    def line(self) -> str:
        try:
            return self.lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("the launcher said nothing: see its stderr") from None

    def serve(self, root: Path) -> tuple[int, int]:
        """Start a server on the Maildirs under ``root``: its pid and port."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{root}\n".encode())
        self.process.stdin.flush()
        line = self.line()
        assert line != "error", "a server did not start: see launcher.err in the test's tmp_path"
        pid, port = line.split()
        return int(pid), int(port)

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        self.reader.join(timeout=TIMEOUT)  # it ends at the end of the output
        self.process.stdout.close()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    if not hasattr(os, "pidfd_open"):
        pytest.skip("needs pidfd_open (Linux 5.3) to kill and await a process that is not a child")
    with (tmp_path / "launcher.err").open("wb") as errors:
        launcher = Launcher(errors)
        try:
            yield launcher
        finally:
            launcher.close()


class Client(LineClient):
    """The raw client on a forked server's port, so that it can stop anywhere."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port, timeout=TIMEOUT)

    def ok(self, command: bytes) -> bytes:
        self.send(command)
        reply = self.line()
        assert reply.startswith(b"+OK"), (command, reply)
        return reply

    def login(self) -> None:
        assert self.line().startswith(b"+OK")
        self.ok(f"USER {USER}\r\n".encode())
        self.ok(f"PASS {PASSWORD}\r\n".encode())

    def uidl(self) -> list[str]:
        self.ok(b"UIDL\r\n")
        uids = []
        while (line := self.line()) != b".\r\n":
            uids.append(line.split()[1].decode())
        return uids

    def dele(self, numbers: list[int]) -> None:
        self.send(b"".join(b"DELE %d\r\n" % n for n in numbers))  # pipelined
        for _ in numbers:
            assert self.line().startswith(b"+OK")

    def quit_reply(self) -> bytes:
        """The reply to a QUIT already sent, or b"" if the server died first."""
        try:
            return self.line()
        except (Closed, ConnectionError, TimeoutError):
            return b""


class Server:
    """A forked server process, killed and awaited through a pidfd, so never another process."""

    def __init__(self, launcher: Launcher, root: Path) -> None:
        pid, self.port = launcher.serve(root)
        self.pidfd = os.pidfd_open(pid)
        self.dead = False

    def kill(self) -> None:
        if not self.dead:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            ready, _, _ = select.select([self.pidfd], [], [], TIMEOUT)
            assert ready, "a SIGKILLed server did not exit"
            self.dead = True

    def close(self) -> None:
        try:
            self.kill()
        finally:
            os.close(self.pidfd)


def message(trial: int, n: int, kind: str) -> bytes:
    return (
        f"From: Sender <sender@crash.fakepop.test>\n"
        f"To: Alice <alice@crash.fakepop.test>\n"
        f"Subject: {kind} message {n} of trial {trial}\n"
        f"Date: Fri, 27 Nov 2026 09:00:00 +0000\n"
        f"Message-ID: <{kind}-{trial}-{n}@crash.fakepop.test>\n"
        f"\nbody {n}\n"
    ).encode()


@dataclass
class Trial:
    """One server's life: what was sent, what was acknowledged, what must hold after the kill."""

    number: int
    rng: random.Random
    maildir: Path
    contents: dict[str, bytes] = field(default_factory=dict)  # uid: content, all unique
    # Put into new/ while the server ran; a later session may see, DELE and delete them.
    delivered: set[str] = field(default_factory=set)
    marked: set[str] = field(default_factory=set)  # DELE sent for these
    acknowledged: set[str] = field(default_factory=set)  # and +OK to the QUIT read
    last_session: set[str] = field(default_factory=set)  # marked in the session killed

    def fill(self) -> None:
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True)
        for n in range(MESSAGES):
            uid = f"{1795770000 + n}.M{n}P{self.number}.crash"
            seen = self.rng.random() < 0.5
            path = self.maildir / "cur" / f"{uid}:2,S" if seen else self.maildir / "new" / uid
            self.contents[uid] = message(self.number, n, "original")
            path.write_bytes(self.contents[uid])

    def maybe_deliver(self) -> None:
        """Half the time, deliver a message as another program would: tmp/, then new/."""
        if self.rng.random() < 0.5:
            return
        n = len(self.delivered)
        uid = f"{1795780000 + n}.M{n}P{self.number}.delivered"
        self.contents[uid] = message(self.number, n, "delivered")
        (self.maildir / "tmp" / uid).write_bytes(self.contents[uid])
        os.rename(self.maildir / "tmp" / uid, self.maildir / "new" / uid)
        self.delivered.add(uid)


@dataclass
class Tally:
    trials: int = 0
    moments: Counter[str] = field(default_factory=Counter)
    after_quit: int = 0  # killed after QUIT was sent, before its +OK was read
    journal_left: int = 0  # killed past the commit point: the journal was still there
    staging_left: int = 0  # killed while moving files aside, before the commit point
    deliveries: int = 0
    lost: int = 0
    delivered_lost: int = 0
    duplicated: int = 0
    kept_though_acknowledged: int = 0
    half_committed: int = 0
    quit_latency: list[float] = field(default_factory=lambda: [0.005])
    failures: list[str] = field(default_factory=list)


def run(trial: Trial, launcher: Launcher, tally: Tally) -> None:
    rng = trial.rng
    trial.fill()
    server = Server(launcher, trial.maildir.parent)
    try:
        moment = rng.choice(MOMENTS)
        tally.moments[moment] += 1
        sessions = rng.randint(1, 3)
        trial.maybe_deliver()
        for n in range(sessions):
            client = Client(server.port)
            try:
                session(trial, client, server, tally, moment if n == sessions - 1 else "after +OK")
            finally:
                client.close()
        trial.maybe_deliver()
    finally:
        server.close()


def session(trial: Trial, client: Client, server: Server, tally: Tally, moment: str) -> None:
    """Log in, DELE some messages, QUIT; kill the server at ``moment`` of it."""
    rng = trial.rng
    client.login()
    uids = client.uidl()
    numbers = rng.sample(range(1, len(uids) + 1), rng.randint(0, len(uids)))
    client.dele(numbers)
    marked = {uids[n - 1] for n in numbers}
    trial.marked |= marked
    trial.maybe_deliver()
    if moment == "before QUIT":
        trial.last_session = marked
        server.kill()
        return
    sent = time.monotonic()
    client.send(b"QUIT\r\n")
    if moment == "right after QUIT":
        server.kill()
    elif moment == "during the commit":
        # Somewhere within a typical QUIT's round trip, where the commit is, or just after it.
        time.sleep(rng.uniform(0.2, 1.2) * statistics.median(tally.quit_latency))
        server.kill()
    reply = client.quit_reply()
    if moment == "after +OK":
        assert reply.startswith(b"+OK"), reply
        tally.quit_latency.append(time.monotonic() - sent)
    else:
        trial.last_session = marked
    if reply.startswith(b"+OK"):
        trial.acknowledged |= marked
    elif moment != "after +OK":
        tally.after_quit += 1


def check(trial: Trial, tally: Tally) -> None:
    """Open the Maildir again, as the next server would, and count what is in it."""
    maildir = trial.maildir
    tally.trials += 1
    tally.deliveries += len(trial.delivered)
    tally.journal_left += (maildir / JOURNAL).exists()
    tally.staging_left += (maildir / STAGING).exists()
    reopened = MaildirMailbox(maildir, create=False)  # finishes an interrupted commit
    holder = object()
    try:  # the killed server's lock on the Maildir died with it
        reopened.acquire(holder)
    except MaildropError:
        stale_lock = 1
    else:
        reopened.release(holder)
        stale_lock = 0
    found: Counter[bytes] = Counter()
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            found[path.read_bytes()] += 1
    gone = {uid for uid, content in trial.contents.items() if content not in found}
    problems = {
        "journal still there": int((maildir / JOURNAL).exists()),
        "staging still there": int((maildir / STAGING).exists()),
        "unknown files": len(set(found) - set(trial.contents.values())),
        "lost": len(gone - trial.marked),
        "delivered lost": len((gone & trial.delivered) - trial.marked),
        "duplicated": sum(n - 1 for n in found.values()),
        "kept though acknowledged": len(trial.acknowledged - gone),
        # A commit is all or nothing: the session killed deleted all its DELEs or none.
        "half committed": int(bool(gone & trial.last_session) and not trial.last_session <= gone),
        "messages != files": abs(len(reopened.messages) - sum(found.values())),
        "stale lock": stale_lock,
    }
    tally.lost += problems["lost"]
    tally.delivered_lost += problems["delivered lost"]
    tally.duplicated += problems["duplicated"]
    tally.kept_though_acknowledged += problems["kept though acknowledged"]
    tally.half_committed += problems["half committed"]
    wrong = {k: v for k, v in problems.items() if v}
    if wrong:
        tally.failures.append(f"trial {trial.number}: {wrong}")


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(
    launcher: Launcher, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    tally = Tally()
    started = time.monotonic()
    for number in range(TRIALS):
        trial = Trial(number, random.Random(rng.getrandbits(64)), tmp_path / f"{number}" / USER)
        run(trial, launcher, tally)
        check(trial, tally)
    print(
        f"\n{tally.trials} trials (seed {SEED}) in {time.monotonic() - started:.1f} s; kills: "
        + ", ".join(f"{tally.moments[m]} {m}" for m in MOMENTS)
        + f"\n{tally.after_quit} kills after QUIT was sent and before its +OK was read: "
        f"{tally.journal_left} past the commit point (journal left to finish), "
        f"{tally.staging_left} while files were being moved aside"
        f"\n{tally.deliveries} messages delivered during the runs; lost {tally.lost}, "
        f"of them delivered {tally.delivered_lost}; duplicated {tally.duplicated}; "
        f"kept though acknowledged {tally.kept_though_acknowledged}; "
        f"half committed {tally.half_committed}"
    )
    assert tally.failures == []
    assert tally.trials == TRIALS
    assert tally.after_quit > 0
