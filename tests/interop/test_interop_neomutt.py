"""NeoMutt 20220429 (Debian 12's ``neomutt``, built with GnuTLS and GNU SASL) as a POP3 client
over real sockets.

NeoMutt has no batch mode: each test runs it on a pseudo-terminal with a muttrc of its own
(``-n -F``: no system one) and the keys to press given to ``push`` with ``-e``, ending in
``<exit>`` or ``<quit>``, so it does its work and exits by itself; what it drew is read only to
empty the terminal and to show in a failure, never parsed. A run that has not exited in
``TIMEOUT`` seconds is killed and fails: a prompt nobody answers (an untrusted certificate
asks one, so the certificate faults are not tested here) would be that.

What NeoMutt does, as these tests pin it:

- ``<fetch-mail>`` appends every message to the spool mbox as ``From <local user> <now>``,
  the message with LF line ends and un-stuffed, and an empty line; nothing is quoted, not even
  a body line starting with ``From ``. It sends CAPA before login and after it, STAT twice,
  then RETR (and DELE after each with ``pop_delete``) one at a time, and QUIT.
- Opened as a folder (``-f pops://...``) it reads UIDL, then ``LIST n`` and ``TOP n 0`` for
  each header; ``<quit>`` sends the deletions as DELE and QUIT.
- It logs in with the methods ``pop_authenticators`` names (``user``, ``apop``; by default
  SASL first, with the strongest mechanism CAPA offers, then APOP, then USER).

NeoMutt is skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from clients import PASSWORD, USER, environment, program, sent, stripcr
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

TIMEOUT = 10.0  # seconds; a run takes well under one

# The "From " line of a fetched message: the local user and a ctime(3) date, now.
FROM_LINE = re.compile(rb"^From \S+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n", re.M)

SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]


class Run:
    """One NeoMutt run: its exit status and what it drew on the terminal."""

    def __init__(self, returncode: int, screen: bytes) -> None:
        self.returncode = returncode
        self.screen = screen.decode("utf-8", "replace")


class NeoMutt:
    """NeoMutt on a pseudo-terminal of 80 by 24, in the C locale with ``home`` as HOME, its
    spool mbox ``home/spool``."""

    def __init__(self, home: Path) -> None:
        self.path = program("neomutt", "NeoMutt")
        self.home = home
        self.spool = home / "spool"
        self.spool.write_bytes(b"")

    def __call__(self, server: POP3Server, keys: str, *settings: str, folder: str = "") -> Run:
        """Push ``keys``; ``settings`` are muttrc lines after the common ones; ``folder`` is
        opened instead of the spool."""
        muttrc = self.home / "muttrc"
        muttrc.write_text(
            "\n".join(
                [
                    f'set pop_pass="{PASSWORD}"',
                    f'set ssl_ca_certificates_file="{server.ca_pem}"',
                    f'set spoolfile="{self.spool}"',
                    f'set folder="{self.home}"',
                    f'set mbox="{self.home / "mbox"}"',
                    'set record=""',
                    f'set postponed="{self.home / "postponed"}"',
                    # No question at exit, no pause after a message, nothing cached on disk.
                    "set move=no",
                    "set quit=yes",
                    "set sleep_time=0",
                    'set header_cache=""',
                    'set message_cachedir=""',
                    *settings,
                ]
            )
            + "\n"
        )
        muttrc.chmod(0o600)
        env = environment(self.home)
        env["TERM"] = "vt100"
        args = [self.path, "-n", "-F", str(muttrc), "-e", f"push '{keys}'"]
        if folder:
            args += ["-f", folder]
        master, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        process = subprocess.Popen(
            args, stdin=terminal, stdout=terminal, stderr=terminal, env=env, start_new_session=True
        )
        os.close(terminal)
        screen = b""
        deadline = time.monotonic() + TIMEOUT
        try:
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([master], [], [], left)[0]:
                    continue
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: NeoMutt has exited and closed the terminal
                    break
                if not data:
                    break
                screen += data
            else:
                process.kill()
                process.wait()
                pytest.fail(f"NeoMutt still ran after {TIMEOUT:g} s; it drew:\n{screen!r}")
        finally:
            os.close(master)
        return Run(process.wait(TIMEOUT), screen)

    def fetched(self) -> bytes:
        """The spool, each "From " line NeoMutt wrote as ``FROM``; emptied for the next run."""
        text = self.spool.read_bytes()
        self.spool.write_bytes(b"")
        return FROM_LINE.sub(b"FROM\n", text)


def as_fetched(messages: list[bytes]) -> bytes:
    """What <fetch-mail> appends for ``messages``, its "From " lines as ``FROM``."""
    return b"".join(b"FROM\n" + stripcr(to_crlf(raw)) + b"\n" for raw in messages)


@pytest.fixture
def neomutt(tmp_path: Path) -> NeoMutt:
    return NeoMutt(tmp_path)


@pytest.fixture
def small(pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    return server


def session_of(server: POP3Server) -> list[str]:
    """What the client sent in the server's one session, the handshake as "TLS"; stops it."""
    (session,) = sent(server)
    return ["TLS" if line.startswith("TLS established: ") else line for line in session]


def finished(run: Run, server: POP3Server) -> None:
    assert run.returncode == 0, f"{run.screen}\n{server.transcript}"


# pop_host and the muttrc lines for each way to TLS, and what is sent before the login.
TRANSPORTS = {
    "pops": (["set ssl_force_tls=yes"], ["TLS", "CAPA"]),
    "stls": (["set ssl_starttls=yes", "set ssl_force_tls=yes"], ["CAPA", "STLS", "TLS", "CAPA"]),
}


def pop_host(server: POP3Server, transport: str) -> str:
    if transport == "pops":
        return f'set pop_host="pops://{USER}@localhost:{server.tls_port}"'
    return f'set pop_host="pop://{USER}@localhost:{server.port}"'


@pytest.mark.parametrize(("transport", "delete"), [("pops", True), ("stls", False)])
def test_fetch_mail_the_corpus(
    neomutt: NeoMutt, server: POP3Server, messages: list[bytes], transport: str, delete: bool
) -> None:
    """<fetch-mail> into the spool, byte for byte; with pop_delete, DELE after each RETR and
    the maildrop empty after QUIT."""
    mailbox = server.mailbox(USER)
    uids = [m.uid for m in mailbox.messages]
    settings, before = TRANSPORTS[transport]
    run = neomutt(
        server,
        "<fetch-mail><exit>",
        pop_host(server, transport),
        *settings,
        'set pop_authenticators="user"',
        f"set pop_delete={'yes' if delete else 'no'}",
    )
    finished(run, server)
    assert neomutt.fetched() == as_fetched(messages)
    numbers = range(1, len(messages) + 1)
    each = [line for n in numbers for line in [f"RETR {n}", f"DELE {n}"][: 2 if delete else 1]]
    assert session_of(server) == [
        *before, "USER alice", "PASS ****", "CAPA", "STAT", "STAT", *each, "QUIT"
    ]  # fmt: skip
    if delete:
        assert mailbox.messages == []
        mailbox.assert_deleted(*uids)
    else:
        assert [m.uid for m in mailbox.messages] == uids
    assert server.violations == []


def test_apop(neomutt: NeoMutt, small: POP3Server) -> None:
    """pop_authenticators="apop": the digest of the greeting's timestamp and the password."""
    run = neomutt(
        small,
        "<fetch-mail><exit>",
        pop_host(small, "pops"),
        'set pop_authenticators="apop"',
        "set pop_delete=yes",
    )
    finished(run, small)
    assert neomutt.fetched() == as_fetched(SMALL)
    assert session_of(small)[2:4] == ["APOP alice ****", "CAPA"]
    small.transcript.assert_login("APOP", user=USER)
    assert small.mailbox(USER).messages == []


def test_open_as_a_folder_and_delete_everything(neomutt: NeoMutt, small: POP3Server) -> None:
    """-f pops://...: the headers by TOP, then every message marked deleted and <quit>."""
    mailbox = small.mailbox(USER)
    uids = [m.uid for m in mailbox.messages]
    run = neomutt(
        small,
        "<delete-pattern>~A<enter><quit>",
        'set pop_authenticators="user"',
        "set delete=yes",  # no question before the deletions go out
        folder=f"pops://{USER}@localhost:{small.tls_port}",
    )
    finished(run, small)
    assert mailbox.messages == []
    mailbox.assert_deleted(*uids)
    assert session_of(small) == [
        "TLS", "CAPA", "USER alice", "PASS ****", "CAPA", "STAT", "UIDL",
        "LIST 1", "TOP 1 0", "LIST 2", "TOP 2 0", "DELE 1", "DELE 2", "QUIT",
    ]  # fmt: skip


def test_wrong_password_fetches_nothing(neomutt: NeoMutt, small: POP3Server) -> None:
    """The refused PASS ends the session: NeoMutt closes the connection without QUIT."""
    run = neomutt(
        small, "<fetch-mail><exit>", pop_host(small, "pops"), 'set pop_authenticators="user"',
        "set pop_delete=yes", 'set pop_pass="wrong"',
    )  # fmt: skip
    finished(run, small)
    assert neomutt.fetched() == b""
    assert len(small.mailbox(USER)) == len(SMALL)
    assert session_of(small) == ["TLS", "CAPA", "USER alice", "PASS ****"]


def test_scram_with_the_user_as_authzid(neomutt: NeoMutt, small: POP3Server) -> None:
    """By default NeoMutt tries SASL first, with the strongest mechanism CAPA lists:
    SCRAM-SHA-256, its client-first message carrying ``a=alice``. The server must accept an
    authzid that is the authenticated user (RFC 5802, section 5.1; RFC 4422, section 3.4.1),
    as fakepop's PLAIN does; it refuses it, and NeoMutt falls back to APOP."""
    run = neomutt(small, "<fetch-mail><exit>", pop_host(small, "pops"), "set pop_delete=no")
    finished(run, small)
    assert neomutt.fetched() == as_fetched(SMALL)
    session = session_of(small)
    assert session[2:7] == ["AUTH SCRAM-SHA-256", "****", "****", "****", "CAPA"]
    small.transcript.assert_login("AUTH SCRAM-SHA-256", user=USER)
