"""Ruby's Net::POP3 (net-pop 0.1.1, bundled with Ruby 3.1) as a client over real sockets.

Redmine's and Zammad's mail fetchers use it. Each test runs ``tests/interop/net_pop3.rb``
once, a real Ruby process, with a JSON plan; the script prints what Net::POP3 returned as
length-prefixed records, so every message is compared byte for byte.

What Net::POP3 does, as these tests pin it:

- ``POPMail#pop`` (RETR) and ``#header`` (TOP n 0) return the reply un-stuffed, with the
  CRLF line ends of the wire: exactly the message's wire form, ``to_crlf(raw)``.
- It logs in with USER/PASS, or APOP with ``Net::APOP``; it never sends CAPA, so never AUTH.
- It has implicit TLS only (``enable_ssl``, parameters for ``SSLContext#set_params``); it
  has no STLS: net-pop 0.1.1's source never sends the command, nor any way to ask for it.

Ruby is skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clients import PASSWORD, USER, ScriptRun, environment, missing, program, run
from corpus import corpus
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

SCRIPT = Path(__file__).parent / "net_pop3.rb"

# Not in the corpus, as fetchmail rewrites them; Net::POP3 takes them as they come.
ODD = [
    b".the very first octet is a dot\r\nFrom: odd@fakepop.test\r\n\r\nbody\r\n",
    b"\r\nno header at all, the blank line first\r\n.\r\n",
]

# Small, for the tests not about the corpus: dot lines, and bare LFs to be made CRLF.
SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]

# How OpenSSL refuses each certificate: in the handshake, the host name too, since
# SSLContext#set_params turns verify_hostname on (Net::POP3 checks it again afterwards).
CERTIFICATE_ERRORS = {
    "expired": "certificate verify failed (certificate has expired)",
    "not-yet-valid": "certificate verify failed (certificate is not yet valid)",
    "wrong-host": "certificate verify failed (hostname mismatch)",
    "untrusted-ca": "certificate verify failed (unable to get local issuer certificate)",
    "self-signed": "certificate verify failed (self-signed certificate)",
}


@pytest.fixture(scope="module")
def ruby() -> str:
    """The ruby program, once it has shown it can load Net::POP3."""
    path = program("ruby", "Ruby's Net::POP3")
    probe = run([path, "-rnet/pop", "-e", "print Net::POP3"], environment())
    if probe.stdout != b"Net::POP3":
        missing("Ruby's Net::POP3", "ruby cannot load net/pop", probe.stderr.decode())
    return path


class NetPOP3:
    """Runs the script with a plan, in the C locale with an empty HOME (no gemrc)."""

    def __init__(self, ruby: str, home: Path) -> None:
        self.ruby = ruby
        self.env = environment(home)

    def __call__(self, server: POP3Server, **plan: Any) -> ScriptRun:
        """``plan`` adds to and overrides: the server's plain port, alice's USER/PASS login,
        and nothing to do with each message."""
        plan = {"host": server.host, "port": server.port, "user": USER, "password": PASSWORD} | plan
        args = [self.ruby, str(SCRIPT), json.dumps(plan)]
        return ScriptRun(run(args, self.env))


@pytest.fixture
def net_pop3(ruby: str, tmp_path: Path) -> NetPOP3:
    return NetPOP3(ruby, tmp_path)


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return [*corpus(), *ODD]


def top0(wire: bytes) -> bytes:
    """What TOP n 0 returns, un-stuffed: the header and the blank line that ends it."""
    if wire.startswith(b"\r\n"):
        return b"\r\n"  # no header: the blank line comes first
    end = wire.find(b"\r\n\r\n")
    return wire if end < 0 else wire[: end + 4]


def said(server: POP3Server) -> list[list[str]]:
    """What the client sent in each session, passwords masked; stops the server first so
    every session is over and fully recorded."""
    server.stop()
    return [
        [line[3:] for line in session.lines() if line.startswith("C: ")]
        for session in server.transcript
    ]


def succeeded(run: ScriptRun, server: POP3Server) -> ScriptRun:
    assert (run.returncode, run.stderr) == (0, ""), f"Ruby failed:\n{server.transcript}"
    assert run["FINISHED", 0] == b""
    return run


def test_each_mail_pop_unique_id_and_header(
    net_pop3: NetPOP3, messages: list[bytes], pop3_server_factory: ServerFactory
) -> None:
    """The corpus and two odd messages: RETR, UIDL and TOP n 0 of each, byte for byte."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    uids = server.mailbox(USER).extend(messages)
    run = succeeded(net_pop3(server, each=["pop", "uid", "header"]), server)
    wires = [to_crlf(m) for m in messages]
    assert run["COUNT", 0] == b"%d" % len(messages)
    assert run["OCTETS", 0] == b"%d" % sum(map(len, wires))
    assert run.numbers("MAIL") == list(range(1, len(messages) + 1))
    for n, (wire, uid) in enumerate(zip(wires, uids, strict=True), 1):
        assert run["SIZE", n] == b"%d" % len(wire)
        assert run["MAIL", n] == wire, f"message {n} differs"
        assert run["UID", n] == uid.encode()
        assert run["HEADER", n] == top0(wire), f"the header of message {n} differs"
    (commands,) = said(server)
    assert len(server.mailbox(USER)) == len(messages)  # nothing deleted
    # STAT and LIST once; UIDL once, for every message, at the first unique_id.
    expected = ["USER alice", "PASS ****", "STAT", "LIST"]
    for n in range(1, len(messages) + 1):
        expected += [f"RETR {n}", *(["UIDL"] if n == 1 else []), f"TOP {n} 0"]
    assert commands == [*expected, "QUIT"]


def test_delete_is_committed_at_finish(
    net_pop3: NetPOP3, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    mailbox = server.mailbox(USER)
    uids = mailbox.extend([*SMALL, *ODD])
    run = succeeded(net_pop3(server, each=["pop", "delete"]), server)
    for n, raw in enumerate([*SMALL, *ODD], 1):
        assert run["MAIL", n] == to_crlf(raw)
    (commands,) = said(server)
    assert commands == [
        "USER alice",
        "PASS ****",
        "STAT",
        "LIST",
        *(f"{verb} {n}" for n in range(1, 5) for verb in ("RETR", "DELE")),
        "QUIT",
    ]
    assert mailbox.messages == []
    mailbox.assert_deleted(*uids)
    server.transcript.assert_quit()


def test_reset_undoes_the_deletions(net_pop3: NetPOP3, pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    mailbox = server.mailbox(USER)
    uids = mailbox.extend(SMALL)
    succeeded(net_pop3(server, each=["delete"], reset=True), server)
    (commands,) = said(server)
    assert commands[-4:] == ["DELE 1", "DELE 2", "RSET", "QUIT"]
    assert [m.uid for m in mailbox.messages] == uids
    mailbox.assert_deleted()  # none


def test_apop(net_pop3: NetPOP3, pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(SMALL)
    run = succeeded(net_pop3(server, apop=True, each=["pop"]), server)
    assert [run["MAIL", n] for n in (1, 2)] == [to_crlf(m) for m in SMALL]
    (commands,) = said(server)
    assert commands[0] == "APOP alice ****"  # the digest of the greeting's timestamp
    assert "USER alice" not in commands
    server.transcript.assert_login("APOP", user=USER)


@pytest.mark.parametrize("apop", [False, True], ids=["user", "apop"])
def test_wrong_password_is_refused(
    net_pop3: NetPOP3, apop: bool, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(SMALL)
    run = net_pop3(server, apop=apop, password="wrong")
    (commands,) = said(server)
    assert run.returncode == 1
    assert "-ERR [AUTH] Invalid user name or password (Net::POPAuthenticationError)" in run.stderr
    assert run.records == {}
    # Net::POP3 closes the socket on a failed login without QUIT.
    assert commands == (["APOP alice ****"] if apop else ["USER alice", "PASS ****"])


def test_a_locked_maildrop_fails_the_login(
    net_pop3: NetPOP3, pop3_server_factory: ServerFactory
) -> None:
    """Another session holds the maildrop: Net::POP3 raises its authentication error, with
    RFC 2449's [IN-USE] in the message, and closes without QUIT."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    mailbox = server.mailbox(USER)
    mailbox.extend(SMALL)
    with mailbox.hold_lock():
        run = net_pop3(server, each=["pop", "delete"])
    (commands,) = said(server)
    assert run.returncode == 1
    refusal = "-ERR [IN-USE] Mailbox is locked by another session (Net::POPAuthenticationError)"
    assert refusal in run.stderr
    assert commands == ["USER alice", "PASS ****"]
    assert len(mailbox) == 2


def test_implicit_tls(net_pop3: NetPOP3, pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    uids = server.mailbox(USER).extend(SMALL)
    assert server.tls_port is not None
    plan = {"host": "localhost", "port": server.tls_port, "ca_file": str(server.ca_pem)}
    run = succeeded(net_pop3(server, **plan, each=["pop", "uid", "header"]), server)
    for n, (raw, uid) in enumerate(zip(SMALL, uids, strict=True), 1):
        assert run["MAIL", n] == to_crlf(raw)
        assert run["UID", n] == uid.encode()
        assert run["HEADER", n] == top0(to_crlf(raw))
    server.stop()
    (session,) = server.transcript
    lines = session.lines()
    assert lines[0].startswith("*: TLS established: TLSv1.3 ")
    commands = [line for line in lines if line.startswith("C: ")]
    assert commands[:2] == ["C: USER alice", "C: PASS ****"]
    server.transcript.assert_quit()


@pytest.mark.parametrize("fault", CERTIFICATE_ERRORS)
def test_refuses_a_faulty_certificate(
    net_pop3: NetPOP3, fault: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    assert server.tls_port is not None
    plan = {"host": "localhost", "port": server.tls_port, "ca_file": str(server.ca_pem)}
    run = net_pop3(server, **plan, each=["pop"])
    server.stop()
    assert run.returncode == 1
    assert f"{CERTIFICATE_ERRORS[fault]} (OpenSSL::SSL::SSLError)" in run.stderr
    assert run.records == {}
    (session,) = server.transcript
    lines = session.lines()
    assert len(lines) == 1  # nothing said, no password sent
    assert lines[0].startswith("*: TLS handshake failed: ")


def test_no_stls_so_a_tls_only_server_refuses_before_the_password(
    net_pop3: NetPOP3, pop3_server_factory: ServerFactory
) -> None:
    """Net::POP3 cannot STLS: a server that wants TLS first says no to USER, and Net::POP3
    gives up there, before the password crosses the network in clear."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, require_tls=True)
    run = net_pop3(server)
    (commands,) = said(server)
    assert run.returncode == 1
    assert "-ERR [AUTH] " in run.stderr
    assert "(Net::POPAuthenticationError)" in run.stderr
    assert commands == ["USER alice"]
