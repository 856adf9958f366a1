"""fetchmail 6.4 as a POP3 client over real sockets, against the 50-message corpus.

fetchmail hands each message to an MDA, here a shell script that stores it in
a numbered file, so every retrieved message is compared byte for byte with
what the server holds. fetchmail changes a message on its way to an MDA in
two ways, documented in fetchmail(1) and seen in what the script receives:

- it puts its own ``Received:`` header on top, unless ``set invisible``;
- ``stripcr`` is on by default when delivering to an MDA: it drops every CR,
  so the MDA gets LF line ends; ``no stripcr`` passes CRLF through.

Everything else that could touch a message (``rewrite`` of addresses without
a domain, ``mimedecode``, ``dropstatus``, ``dropdelivered``) is turned off in
the rc file, so those two are the only ones undone before comparing. With
``set invisible`` and ``no stripcr`` the MDA gets the wire form exactly.

In keep mode fetchmail retrieves with RETR; when it deletes, with
``TOP n 99999999``, so both are checked. fetchmail is not skipped when missing:
install it.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import corpus

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

USER, PASSWORD = "alice", "secret"
TIMEOUT = 60.0  # seconds for one fetchmail run; it takes well under one when all is well
INSTALL = "install it (Debian: apt-get install curl fetchmail), as .ci/run does"

# Stores the message on stdin in the next numbered file: fetchmail runs one MDA at a time.
MDA = """#!/bin/sh
inbox="$(dirname "$0")/inbox"
n=$(ls "$inbox" | wc -l)
exec cat > "$inbox/$(printf %03d $((n + 1)))"
"""

# fetchmail's Received: header: one line, then continuation lines that start with white space.
RECEIVED = re.compile(rb"\AReceived: [^\n]*\n(?:[ \t][^\n]*\n)*")


@pytest.fixture(scope="module")
def fetchmail_path() -> str:
    path = shutil.which("fetchmail")
    if path is None:
        pytest.fail(f"fetchmail is not on PATH: {INSTALL}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return corpus()


@pytest.fixture
def server(messages: list[bytes]) -> Iterator[POP3Server]:
    with POP3Server(users={USER: PASSWORD}) as server:
        server.mailbox(USER).extend(messages)
        yield server


class Fetchmail:
    """fetchmail run in the foreground with its home, rc file, ids, lock and MDA in one dir."""

    def __init__(self, path: str, home: Path) -> None:
        self.path = path
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir()
        self.mda = home / "mda.sh"
        self.mda.write_text(MDA)
        self.mda.chmod(0o700)

    def rc(
        self,
        server: POP3Server,
        *,
        keep: bool,
        transparent: bool = True,
        protocol: str = "POP3",
        auth: str = "password",
        password: str = PASSWORD,
        uidl: bool = False,
    ) -> str:
        lines = [
            "set no syslog",
            "set no bouncemail",  # a failed delivery fails the run instead of mailing someone
            # No Received: header on top of each message.
            *(["set invisible"] if transparent else []),
            f"poll {server.host} protocol {protocol} port {server.port} auth {auth}",
            "  no envelope timeout 10" + (" uidl" if uidl else ""),
            f'  user "{USER}" there with password "{password}"',
            "  sslproto '' no sslcertck",  # plain POP3: never try STLS
            f'  mda "{shlex.quote(str(self.mda))}"',  # run by the shell
            "  keep" if keep else "  no keep",
            "  no rewrite",  # else addresses without a domain get "@127.0.0.1"
            "  no mimedecode no dropstatus no dropdelivered",  # the defaults, spelled out
            # CRLF as sent; without it fetchmail drops every CR on the way to an MDA.
            *(["  no stripcr"] if transparent else []),
        ]
        return "\n".join(lines) + "\n"

    def __call__(self, server: POP3Server, **options: Any) -> subprocess.CompletedProcess[bytes]:
        rc = self.home / "fetchmailrc"
        rc.write_text(self.rc(server, **options))
        rc.chmod(0o600)  # fetchmail refuses an rc file others can read
        assert stat.S_IMODE(rc.stat().st_mode) == 0o600
        env = dict(os.environ, HOME=str(self.home), FETCHMAILHOME=str(self.home), LC_ALL="C")
        if os.geteuid() == 0:
            # As root, fetchmail runs the MDA as FETCHMAILUSER (else LOGNAME, USER): stay root,
            # who owns the inbox.
            env["FETCHMAILUSER"] = pwd.getpwuid(0).pw_name
        # --pidfile: FETCHMAILHOME places the lock only when not root (fetchmail(1), FILES).
        pidfile = self.home / "fetchmail.pid"
        args = [self.path, "--nodetach", "--pidfile", str(pidfile), "-f", str(rc)]
        return subprocess.run(args, capture_output=True, timeout=TIMEOUT, env=env, check=False)

    def delivered(self) -> list[bytes]:
        """What the MDA got, in delivery order; the inbox is emptied for the next run."""
        files = sorted(self.inbox.iterdir())
        got = [f.read_bytes() for f in files]
        for f in files:
            f.unlink()
        return got


@pytest.fixture
def fetchmail(fetchmail_path: str, tmp_path: Path) -> Fetchmail:
    return Fetchmail(fetchmail_path, tmp_path)


def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
    """fetchmail's output and the server's transcript, for a failed assertion to show."""
    text = (result.stdout + result.stderr).decode("utf-8", "replace")
    return f"{text}\n{server.transcript}"


def client_commands(server: POP3Server) -> list[list[str]]:
    """The verbs the client sent, a list per session; stops the server so every session ended."""
    server.stop()
    return [
        [line[3:].split(" ")[0] for line in session.lines() if line.startswith("C: ")]
        for session in server.transcript
    ]


def undo_defaults(delivered: bytes) -> bytes:
    """The message as the server sent it, from what fetchmail's defaults gave the MDA."""
    # fetchmail's own Received: header goes on top unless "set invisible".
    received = RECEIVED.match(delivered)
    assert received is not None, delivered[:200]
    assert b"with POP3 (fetchmail-" in received.group()
    rest = delivered[received.end() :]
    # stripcr, the default with an MDA, drops every CR: each LF was a CRLF on the wire.
    assert b"\r" not in rest
    return rest.replace(b"\n", b"\r\n")


def test_keep_mode_with_fetchmail_defaults(
    fetchmail: Fetchmail, server: POP3Server, messages: list[bytes]
) -> None:
    uids = [m.uid for m in server.mailbox(USER).messages]
    result = fetchmail(server, keep=True, transparent=False)
    assert result.returncode == 0, output(result, server)
    delivered = fetchmail.delivered()
    assert len(delivered) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, delivered, strict=True), 1):
        assert undo_defaults(got) == to_crlf(raw), f"message {n} differs"
    assert [m.uid for m in server.mailbox(USER).messages] == uids
    (commands,) = client_commands(server)
    assert commands.count("RETR") == len(messages)  # keep: RETR, not TOP
    assert "DELE" not in commands
    assert commands[-1] == "QUIT"


def test_delete_mode_delivers_the_wire_form_exactly(
    fetchmail: Fetchmail, server: POP3Server, messages: list[bytes]
) -> None:
    result = fetchmail(server, keep=False)
    assert result.returncode == 0, output(result, server)
    delivered = fetchmail.delivered()
    assert len(delivered) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, delivered, strict=True), 1):
        assert got == to_crlf(raw), f"message {n} differs"
    assert server.mailbox(USER).messages == []  # deleted at fetchmail's QUIT
    (commands,) = client_commands(server)
    assert commands.count("TOP") == len(messages)  # TOP n 99999999 when not keeping
    assert commands.count("DELE") == len(messages)
    assert commands[-1] == "QUIT"


def test_uidl_mode_fetches_only_new_mail(
    fetchmail: Fetchmail, server: POP3Server, messages: list[bytes], tmp_path: Path
) -> None:
    result = fetchmail(server, keep=True, uidl=True)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [to_crlf(m) for m in messages]
    # fetchmail remembers the UIDs it has seen in $FETCHMAILHOME/.fetchids.
    seen = (tmp_path / ".fetchids").read_text()
    assert all(m.uid in seen for m in server.mailbox(USER).messages)

    new = b"From: late@fakepop.test\r\nSubject: arrived after the first poll\r\n\r\nnew\r\n"
    server.mailbox(USER).add(new)
    result = fetchmail(server, keep=True, uidl=True)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [new]

    result = fetchmail(server, keep=True, uidl=True)
    assert result.returncode == 1, output(result, server)  # 1: no new mail
    assert fetchmail.delivered() == []
    assert len(server.mailbox(USER).messages) == len(messages) + 1


# rc options for each way to log in, and the command fetchmail then logs in with;
# "auth any" takes the best SASL mechanism in CAPA.
LOGINS: dict[str, tuple[dict[str, Any], str]] = {
    "sasl": ({"auth": "any"}, "AUTH"),
    "user": ({"auth": "password"}, "USER"),
    "apop": ({"protocol": "APOP", "auth": "any"}, "APOP"),
}


@pytest.mark.parametrize("login", LOGINS)
def test_login(fetchmail: Fetchmail, messages: list[bytes], login: str) -> None:
    options, verb = LOGINS[login]
    with POP3Server(users={USER: PASSWORD}) as server:
        server.mailbox(USER).add(messages[1])
        result = fetchmail(server, keep=False, **options)
        assert result.returncode == 0, output(result, server)
        assert fetchmail.delivered() == [to_crlf(messages[1])]
        (commands,) = client_commands(server)
    assert verb in commands
    assert ({"AUTH", "APOP", "USER"} - {verb}) & set(commands) == set()


@pytest.mark.parametrize("login", LOGINS)
def test_wrong_password_fails(fetchmail: Fetchmail, messages: list[bytes], login: str) -> None:
    options, verb = LOGINS[login]
    with POP3Server(users={USER: PASSWORD}) as server:
        server.mailbox(USER).add(messages[1])
        result = fetchmail(server, keep=False, password="wrong", **options)
        assert result.returncode == 3, output(result, server)  # 3: authentication failed
        assert fetchmail.delivered() == []
        assert len(server.mailbox(USER).messages) == 1
        (commands,) = client_commands(server)
    assert verb in commands
    assert "STAT" not in commands
