"""Real POP3 clients as processes, run the same way by every interop test: fetchmail and curl;
and what the interop tests share: the transcript as clients saw it, TOP's expected bytes, and
the mail mpop and getmail delivered to a Maildir.

A missing client (or a runtime it needs) skips its tests, saying which Debian package to
install; with FAKEPOP_REQUIRE_CLIENTS=1 (which `.ci/run` sets) it fails them instead: see
``missing`` and ``program`` in tests/required.py.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from required import CLIENTS
from required import missing as missing  # re-exported for the test files
from required import program as program

from fakepop import POP3Server

USER, PASSWORD = "alice", "secret"  # the account the clients log in to unless told otherwise
TIMEOUT = 60.0  # seconds for one client process; each takes well under one when all is well
# All the Debian packages of the clients, as .ci/run installs them.
PACKAGES = " ".join(dict.fromkeys(" ".join(CLIENTS.values()).split()))


def environment(home: Path | None = None) -> dict[str, str]:
    """This environment without proxies, with ``home`` as HOME so no rc file of the user's
    interferes, and in the C locale: the messages checked are the untranslated ones."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    if home is not None:
        env["HOME"] = str(home)
    env["LC_ALL"] = "C"
    return env


def run(
    args: Sequence[str], env: Mapping[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """Run a client to its end with ``stdin`` as all of its input."""
    return subprocess.run(
        list(args), input=stdin, capture_output=True, timeout=TIMEOUT, env=env, check=False
    )


def printed(result: subprocess.CompletedProcess[bytes]) -> str:
    """What a client printed, stdout then stderr."""
    return (result.stdout + result.stderr).decode("utf-8", "replace")


def url(server: POP3Server, path: str = "") -> str:
    return f"pop3://{server.host}:{server.port}/{path}"


def client_commands(server: POP3Server) -> list[list[str]]:
    """The verbs the client sent, a list per session; stops the server so every session ended."""
    server.stop()
    return [
        [line[3:].split(" ")[0] for line in session.lines() if line.startswith("C: ")]
        for session in server.transcript
    ]


def sent(server: POP3Server) -> list[list[str]]:
    """What the client sent in each session, without "C: ", and the TLS notes ("TLS
    established: ...", "TLS handshake failed: ..."); stops the server so every session ended."""
    server.stop()
    return [
        [line[3:] for line in session.lines() if line.startswith(("C: ", "*: TLS "))]
        for session in server.transcript
    ]


# The certificate faults a server can be told to have; every TLS client must refuse each.
CERTIFICATE_FAULTS = ["expired", "not-yet-valid", "wrong-host", "untrusted-ca", "self-signed"]


def top(wire: bytes, lines: int) -> bytes:
    """What TOP msg n returns, un-stuffed: the header, the blank line, ``lines`` body lines."""
    if wire.startswith(b"\r\n"):
        end = 2  # no header: the blank line comes first
    else:
        blank = wire.find(b"\r\n\r\n")
        if blank < 0:
            return wire  # no blank line: it is all header
        end = blank + 4
    for _ in range(lines):
        line_end = wire.find(b"\r\n", end)
        if line_end < 0:
            return wire
        end = line_end + 2
    return wire[:end]


# Maildir file names as mpop and getmail write them: "<secs>.M<usecs>P<pid>Q<n>.<host>" (getmail
# adds "R<random>" after the count). Q counts the deliveries of one process, from 0 or 1.
DELIVERY_COUNT = re.compile(r"\.M\d+P\d+Q(\d+)[.R]")


def maildir_delivered(maildir: Path) -> list[bytes]:
    """The messages one client run delivered to ``maildir``'s new/, in delivery order; the
    files are removed, so the next run's are the only ones there."""
    files = list((maildir / "new").iterdir())
    assert not any((maildir / "cur").iterdir()), "a client delivered to cur/"

    def count(file: Path) -> int:
        found = DELIVERY_COUNT.search(file.name)
        assert found is not None, f"not a Maildir name mpop or getmail writes: {file.name}"
        return int(found.group(1))

    files.sort(key=count)
    got = [f.read_bytes() for f in files]
    for f in files:
        f.unlink()
    return got


# --- curl ---------------------------------------------------------------------------------


class Curl:
    """curl as a POP3 client; a call is one curl run of one or more transfers."""

    def __init__(self, home: Path | None = None) -> None:
        self.path = program("curl")
        self.env = environment(home)

    def __call__(
        self,
        *transfers: Sequence[str],
        user: str = f"{USER}:{PASSWORD}",
        max_time: float = 10,
        verbose: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """Each transfer (URLs and their options) after the first follows a --next.

        curl resets its options at --next, so each transfer repeats the common ones;
        it still reuses the connection, so all of them share one POP3 session.
        """
        common = ["--silent", "--show-error", "--max-time", f"{max_time:g}", "--user", user]
        if verbose:
            common.append("--verbose")
        command = [self.path, "-q"]  # -q must come first: it stops curl from reading a .curlrc
        for i, transfer in enumerate(transfers):
            command += [*(["--next"] if i else []), *common, *transfer]
        return run(command, self.env)


# --- fetchmail ----------------------------------------------------------------------------

# Stores the message on stdin in the next numbered file: fetchmail runs one MDA at a time.
MDA = """#!/bin/sh
inbox="$(dirname "$0")/inbox"
n=$(ls "$inbox" | wc -l)
exec cat > "$inbox/$(printf %04d $((n + 1)))"
"""

# fetchmail's Received: header: one line, then continuation lines that start with white space.
RECEIVED = re.compile(rb"\AReceived: [^\n]*\n(?:[ \t][^\n]*\n)*")


def records(out: bytes) -> dict[tuple[str, int], bytes]:
    """What a client script printed as records: "KIND NUMBER LENGTH" LF, LENGTH octets, LF.

    Length-prefixed, so messages come through byte for byte whatever they hold.
    """
    found: dict[tuple[str, int], bytes] = {}
    while out:
        head, _, out = out.partition(b"\n")
        kind, number, length = head.decode().split(" ")
        size = int(length)
        payload, out = out[:size], out[size:]
        assert out.startswith(b"\n"), f"a record of {size} octets overran: {head!r}"
        out = out[1:]
        found[kind, int(number)] = payload
    return found


class ScriptRun:
    """One run of a client script that prints records: exit status, stderr, the records."""

    def __init__(self, result: subprocess.CompletedProcess[bytes]) -> None:
        self.returncode = result.returncode
        self.stderr = result.stderr.decode("utf-8", "replace")
        self.records = records(result.stdout)

    def __getitem__(self, key: tuple[str, int]) -> bytes:
        return self.records[key]

    def numbers(self, kind: str) -> list[int]:
        """The numbers of the records of ``kind``, in order."""
        return sorted(n for k, n in self.records if k == kind)

    def texts(self, kind: str) -> list[str]:
        """Every record of ``kind`` as text, in order."""
        return [self.records[kind, n].decode() for n in self.numbers(kind)]


def stripcr(wire: bytes) -> bytes:
    """What fetchmail hands an MDA by default: stripcr makes each CRLF a LF."""
    return wire.replace(b"\r\n", b"\n")


class FetchmailHome:
    """fetchmail run once in the foreground, with its home, rc file, ids, lock and MDA in one
    directory; the rc file is the caller's, with ``self.deliver`` to hand messages to the MDA."""

    def __init__(self, home: Path) -> None:
        self.path = program("fetchmail")
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir(parents=True)
        self.mda = home / "mda.sh"
        self.mda.write_text(MDA)
        self.mda.chmod(0o700)
        self.deliver = f'mda "{shlex.quote(str(self.mda))}"'  # run by the shell

    def run(self, rc: str, *options: str) -> subprocess.CompletedProcess[bytes]:
        """One run with ``rc`` as the rc file and ``options`` on the command line."""
        rcfile = self.home / "fetchmailrc"
        rcfile.write_text(rc)
        rcfile.chmod(0o600)  # fetchmail refuses an rc file others can read
        assert stat.S_IMODE(rcfile.stat().st_mode) == 0o600
        env = environment(self.home)
        env["FETCHMAILHOME"] = str(self.home)
        if os.geteuid() == 0:
            # As root, fetchmail runs the MDA as FETCHMAILUSER (else LOGNAME, USER): stay root,
            # who owns the inbox.
            env["FETCHMAILUSER"] = pwd.getpwuid(0).pw_name
        # As root, fetchmail's lock is /var/run/fetchmail.pid whatever FETCHMAILHOME says
        # (fetchmail(1), FILES): a --pidfile of its own lets runs go in parallel.
        pidfile = self.home / "fetchmail.pid"
        args = [self.path, "--nodetach", "--pidfile", str(pidfile), "-f", str(rcfile), *options]
        return run(args, env)

    def delivered(self, *, strip_received: bool = False) -> list[bytes]:
        """What the MDA got, in delivery order; the inbox is emptied for the next run.

        ``strip_received`` takes off the Received: header fetchmail puts on top of each.
        """
        files = sorted(self.inbox.iterdir())
        got = [f.read_bytes() for f in files]
        for f in files:
            f.unlink()
        return [RECEIVED.sub(b"", m) for m in got] if strip_received else got


class Fetchmail(FetchmailHome):
    """fetchmail over plain POP3, with an rc file in which it leaves each message as sent;
    with ``fetchall``, every run fetches every message, seen before or not."""

    def __init__(self, home: Path, *, fetchall: bool = False) -> None:
        super().__init__(home)
        self.fetchall = fetchall

    def __call__(
        self,
        server: POP3Server,
        user: str = USER,
        password: str = PASSWORD,
        *,
        keep: bool,
        transparent: bool = True,
        protocol: str = "POP3",
        auth: str | None = "password",
        uidl: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """One run; ``transparent`` turns off the two changes fetchmail makes by default, its
        Received: header and stripcr. ``auth=None`` leaves the way to log in to fetchmail."""
        lines = [
            "set no syslog",
            "set no bouncemail",  # a failed delivery fails the run instead of mailing someone
            # No Received: header on top of each message.
            *(["set invisible"] if transparent else []),
            f"poll {server.host} protocol {protocol} port {server.port}"
            + (f" auth {auth}" if auth is not None else ""),
            "  no envelope timeout 10" + (" uidl" if uidl else ""),
            f'  user "{user}" there with password "{password}"',
            *(["  fetchall"] if self.fetchall else []),
            "  sslproto '' no sslcertck",  # plain POP3: never try STLS
            f"  {self.deliver}",
            "  keep" if keep else "  no keep",
            "  no rewrite",  # else addresses without a domain get "@127.0.0.1"
            "  no mimedecode no dropstatus no dropdelivered",  # the defaults, spelled out
            # CRLF as sent; without it fetchmail drops every CR on the way to an MDA.
            *(["  no stripcr"] if transparent else []),
        ]
        return self.run("\n".join(lines) + "\n")
