"""poplib and fetchmail fetch the sample mailboxes (fixtures/) and generated mail, byte for byte.

The maildrops come from ``fixtures/fakepop.toml`` (in memory, in one server the tests of
this module share, put back after each; and copied into a Maildir store), from
``fixtures/maildir`` served straight from disk, and from ``generate_messages``. fetchmail
runs as in test_interop_fetchmail.py: an MDA script stores each message in a numbered
file; ``set invisible`` and ``no stripcr`` make what the MDA gets the wire form exactly.
The server offers SASL and the rc file names no way to log in (``auth=None``), so
fetchmail logs in with CRAM-MD5.
"""

from __future__ import annotations

import poplib
import shutil
import subprocess
from pathlib import Path

import pytest
from clients import Fetchmail, printed

from fakepop import MaildirMailbox, POP3Server, load_maildir
from fakepop.mail.generate import generate_messages
from fakepop.mail.manifest import load_manifest
from fakepop.mail.wire import to_crlf
from fakepop.pytest_plugin import pop3_server_fixture

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MANIFEST = load_manifest(FIXTURES / "fakepop.toml")
ACCOUNTS = ["alice", "bob"]  # the ones with mail
TIMEOUT = 10.0  # seconds for a socket operation


def wires(account: str) -> list[bytes]:
    return [to_crlf(m.raw) for m in MANIFEST[account].messages]


def password(account: str) -> str:
    return MANIFEST[account].password


# One server for the module, put back after each test.
server = pop3_server_fixture(scope="module", fixtures=FIXTURES, tls=False)


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


@pytest.fixture
def fetchmail(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path / "fetchmail")


def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
    return f"{printed(result)}\n{server.transcript.text()[-5000:]}"


@pytest.mark.parametrize("account", ACCOUNTS)
def test_fetchmail_keeps_the_manifest_byte_for_byte(
    fetchmail: Fetchmail, server: POP3Server, account: str
) -> None:
    result = fetchmail(server, account, password(account), keep=True, auth=None)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == wires(account)
    assert len(server.mailbox(account)) == len(wires(account))


@pytest.mark.parametrize("run", [1, 2])
def test_fetchmail_deletes_the_manifest_and_the_next_test_has_it_again(
    fetchmail: Fetchmail, server: POP3Server, run: int
) -> None:
    result = fetchmail(server, "alice", password("alice"), keep=False, auth=None)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == wires("alice")
    assert len(server.mailbox("alice")) == 0


def test_fetchmail_fetches_and_deletes_manifest_mail_from_a_maildir_store(
    fetchmail: Fetchmail, tmp_path: Path
) -> None:
    with POP3Server(users={"alice": "pw"}, maildir=tmp_path / "store") as server:
        server.mailbox("alice").extend(MANIFEST["alice"].messages)
        result = fetchmail(server, "alice", "pw", keep=False, auth=None)
        assert result.returncode == 0, output(result, server)
        assert sorted(fetchmail.delivered()) == sorted(wires("alice"))
        assert list((tmp_path / "store" / "alice" / "new").iterdir()) == []


def test_fetchmail_fetches_and_deletes_the_fixture_maildir_from_disk(
    fetchmail: Fetchmail, tmp_path: Path
) -> None:
    shutil.copytree(FIXTURES / "maildir", tmp_path / "store" / "bob")
    with POP3Server(users={"bob": "pw"}, maildir=tmp_path / "store") as server:
        result = fetchmail(server, "bob", "pw", keep=False, auth=None)
        assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [to_crlf(m.raw) for m in load_maildir(FIXTURES / "maildir")]
    assert MaildirMailbox(tmp_path / "store" / "bob", create=False).messages == []
    assert [p.name for p in (tmp_path / "store" / "bob").iterdir()] != []  # cur/ new/ tmp/ stay


def test_fetchmail_fetches_generated_mail(fetchmail: Fetchmail) -> None:
    generated = generate_messages(30, seed=1)
    with POP3Server(users={"gen": "pw"}) as server:
        server.mailbox("gen").extend(generated)
        result = fetchmail(server, "gen", "pw", keep=False, auth=None)
        assert result.returncode == 0, output(result, server)
        assert fetchmail.delivered() == [to_crlf(m) for m in generated]
        assert len(server.mailbox("gen")) == 0
