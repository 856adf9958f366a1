"""poplib and fetchmail fetch the sample mailboxes (fixtures/) and generated mail, byte for byte.

The maildrops come from ``fixtures/fakepop.toml`` (in memory, and copied into a
Maildir store), from ``fixtures/maildir`` served straight from disk, and from
``generate_messages``. fetchmail runs as in test_interop_fetchmail.py: an MDA
script stores each message in a numbered file; ``set invisible`` and ``no
stripcr`` make what the MDA gets the wire form exactly. The server offers SASL,
so fetchmail logs in with CRAM-MD5.
"""

from __future__ import annotations

import os
import poplib
import pwd
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakepop import MaildirMailbox, POP3Server, load_maildir
from fakepop.mail.generate import generate_messages
from fakepop.mail.manifest import load_manifest
from fakepop.mail.wire import to_crlf

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MANIFEST = load_manifest(FIXTURES / "fakepop.toml")
ACCOUNTS = ["alice", "bob"]  # the ones with mail
TIMEOUT = 10.0  # seconds for a socket operation
FETCHMAIL_TIMEOUT = 60.0  # seconds for one fetchmail run; a few when all is well

# Stores the message on stdin in the next numbered file: fetchmail runs one MDA at a time.
MDA = """#!/bin/sh
inbox="$(dirname "$0")/inbox"
n=$(ls "$inbox" | wc -l)
exec cat > "$inbox/$(printf %04d $((n + 1)))"
"""


def wires(account: str) -> list[bytes]:
    return [to_crlf(m.raw) for m in MANIFEST[account].messages]


def password(account: str) -> str:
    return MANIFEST[account].password


@pytest.fixture(scope="module")
def server() -> Iterator[POP3Server]:
    with POP3Server() as server:
        server.load_manifest(FIXTURES)
        yield server


def poplib_fetch(server: POP3Server, user: str, secret: str) -> tuple[list[bytes], list[str]]:
    """Every message by RETR, with CRLFs put back after poplib's un-stuffing, and the UIDs."""
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        client.user(user)
        client.pass_(secret)
        count, octets = client.stat()
        got = [b"".join(line + b"\r\n" for line in client.retr(n)[1]) for n in range(1, count + 1)]
        assert octets == sum(len(m) for m in got)
        uids = [line.split()[1].decode() for line in client.uidl()[1]]
        client.quit()
    finally:
        client.close()
    return got, uids


# --- poplib ---------------------------------------------------------------------------------


@pytest.mark.parametrize("account", ACCOUNTS)
def test_poplib_fetches_the_manifest_byte_for_byte(server: POP3Server, account: str) -> None:
    got, uids = poplib_fetch(server, account, password(account))
    assert got == wires(account)
    named = [(n, m.uid) for n, m in enumerate(MANIFEST[account].messages) if m.uid]
    assert [(n, uids[n]) for n, _ in named] == named


def test_poplib_fetches_the_manifest_from_a_maildir_store(tmp_path: Path) -> None:
    with POP3Server(maildir=tmp_path) as server:
        server.load_manifest(FIXTURES)
        for account in ACCOUNTS:
            got, _ = poplib_fetch(server, account, password(account))
            # Byte for byte; the order a Maildir store keeps is checked in tests/mail.
            assert sorted(got) == sorted(wires(account))
            assert len(list((tmp_path / account / "new").iterdir())) == len(got)


def test_poplib_fetches_the_fixture_maildir_from_disk(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "maildir", tmp_path / "bob")
    with POP3Server(users={"bob": "pw"}, maildir=tmp_path) as server:
        got, uids = poplib_fetch(server, "bob", "pw")
    loaded = load_maildir(FIXTURES / "maildir")
    assert got == [to_crlf(m.raw) for m in loaded]
    assert uids == [m.uid for m in loaded]


def test_poplib_fetches_generated_mail(server: POP3Server) -> None:
    generated = generate_messages(30, seed=1)
    server.users["gen"] = "pw"
    server.mailbox("gen").extend(generated)
    got, _ = poplib_fetch(server, "gen", "pw")
    assert got == [to_crlf(m) for m in generated]


# --- fetchmail ------------------------------------------------------------------------------


class Fetchmail:
    """fetchmail in the foreground, with its home, rc file, lock and MDA in one directory."""

    def __init__(self, path: str, home: Path) -> None:
        self.path = path
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir()
        self.mda = home / "mda.sh"
        self.mda.write_text(MDA)
        self.mda.chmod(0o700)

    def __call__(
        self, server: POP3Server, user: str, secret: str, *, keep: bool
    ) -> subprocess.CompletedProcess[bytes]:
        rc = self.home / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            "set no bouncemail\n"
            "set invisible\n"  # no Received: header of fetchmail's own
            f"poll {server.host} protocol POP3 port {server.port}\n"
            "  no envelope timeout 10\n"
            f'  user "{user}" there with password "{secret}"\n'
            "  sslproto '' no sslcertck\n"  # plain POP3: never try STLS
            f'  mda "{shlex.quote(str(self.mda))}"\n'
            + ("  keep\n" if keep else "  no keep\n")
            + "  no rewrite no mimedecode no dropstatus no dropdelivered\n"
            "  no stripcr\n"  # CRLF as sent, not LF
        )
        rc.chmod(0o600)  # fetchmail refuses an rc file others can read
        env = dict(os.environ, HOME=str(self.home), FETCHMAILHOME=str(self.home), LC_ALL="C")
        if os.geteuid() == 0:
            env["FETCHMAILUSER"] = pwd.getpwuid(0).pw_name  # run the MDA as root, who owns it
        pidfile = self.home / "fetchmail.pid"  # FETCHMAILHOME places the lock only for non-root
        return subprocess.run(
            [self.path, "--nodetach", "--pidfile", str(pidfile), "-f", str(rc)],
            capture_output=True,
            timeout=FETCHMAIL_TIMEOUT,
            env=env,
            check=False,
        )

    def delivered(self) -> list[bytes]:
        """What the MDA got, in delivery order; the inbox is emptied for the next run."""
        files = sorted(self.inbox.iterdir())
        got = [f.read_bytes() for f in files]
        for f in files:
            f.unlink()
        return got


@pytest.fixture
def fetchmail(tmp_path: Path) -> Fetchmail:
    path = shutil.which("fetchmail")
    if path is None:
        pytest.fail("fetchmail is not on PATH: install it (apt-get install fetchmail)")
    home = tmp_path / "fetchmail"
    home.mkdir()
    return Fetchmail(path, home)


def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
    text = (result.stdout + result.stderr).decode("utf-8", "replace")
    return f"{text}\n{server.transcript.text()[-5000:]}"


@pytest.mark.parametrize("account", ACCOUNTS)
def test_fetchmail_keeps_the_manifest_byte_for_byte(
    fetchmail: Fetchmail, server: POP3Server, account: str
) -> None:
    result = fetchmail(server, account, password(account), keep=True)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == wires(account)
    assert len(server.mailbox(account)) == len(wires(account))


def test_fetchmail_fetches_and_deletes_manifest_mail_from_a_maildir_store(
    fetchmail: Fetchmail, tmp_path: Path
) -> None:
    with POP3Server(users={"alice": "pw"}, maildir=tmp_path / "store") as server:
        server.mailbox("alice").extend(MANIFEST["alice"].messages)
        result = fetchmail(server, "alice", "pw", keep=False)
        assert result.returncode == 0, output(result, server)
        assert sorted(fetchmail.delivered()) == sorted(wires("alice"))
        assert list((tmp_path / "store" / "alice" / "new").iterdir()) == []


def test_fetchmail_fetches_and_deletes_the_fixture_maildir_from_disk(
    fetchmail: Fetchmail, tmp_path: Path
) -> None:
    shutil.copytree(FIXTURES / "maildir", tmp_path / "store" / "bob")
    with POP3Server(users={"bob": "pw"}, maildir=tmp_path / "store") as server:
        result = fetchmail(server, "bob", "pw", keep=False)
        assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [to_crlf(m.raw) for m in load_maildir(FIXTURES / "maildir")]
    assert MaildirMailbox(tmp_path / "store" / "bob", create=False).messages == []
    assert [p.name for p in (tmp_path / "store" / "bob").iterdir()] != []  # cur/ new/ tmp/ stay


def test_fetchmail_fetches_generated_mail(fetchmail: Fetchmail) -> None:
    generated = generate_messages(30, seed=1)
    with POP3Server(users={"gen": "pw"}) as server:
        server.mailbox("gen").extend(generated)
        result = fetchmail(server, "gen", "pw", keep=False)
        assert result.returncode == 0, output(result, server)
        assert fetchmail.delivered() == [to_crlf(m) for m in generated]
        assert len(server.mailbox("gen")) == 0
