"""getmail 6 as a POP3 client over real sockets, against the 50-message corpus.

getmail (SimplePOP3Retriever, SimplePOP3SSLRetriever) fetches with Python's poplib and delivers
to a Maildir, read back in delivery order. What it writes differs from the wire form in ways
getmail documents, undone exactly here:

- each line ends in the platform's line end, LF: poplib strips CRLF, getmail joins lines with
  ``os.linesep`` (the server sends only CRLF, so ``stripcr`` of the wire form is the rest);
- it puts ``Return-Path: <sender>`` on top, always; the sender is the message's own
  Return-Path (which it removes from where it was) or Sender, else "unknown";
- ``Delivered-To:`` and ``Received:`` headers follow unless ``delivered_to`` and ``received``
  are off, as they are here except in the test of those two.

getmail reparses each message with the email package and writes it out again; for the corpus
that changes no byte. Its Maildir and Mboxrd destinations refuse to deliver as root, so as root
getmail runs as nobody. It is
skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).

getmail delivers each message in a child process, and 6.18 loses the child's exit when it comes
before the parent is ready to hear of it (it installs its SIGCHLD handler after fork(), and
notifies a condition nobody waits on yet): the run then stops with "waiting child pid N timed
out" (getmail6 issue #226). That happened here under load, so getmail runs from a launcher that
waits for each child with os.waitpid instead. Nothing else of getmail is changed: it speaks POP3
and delivers exactly as installed.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from clients import (
    CERTIFICATE_FAULTS,
    PASSWORD,
    USER,
    client_commands,
    environment,
    maildir_delivered,
    printed,
    program,
    run,
    sent,
    stripcr,
)
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

RETURN_PATH = b"Return-Path: <unknown>\n"  # no Return-Path or Sender in the message
GETMAIL_FAILED = 127  # getmail's exit status when a retriever failed

SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]


# Runs getmail (sys.argv[1], then its arguments) with its delivery children waited for by
# os.waitpid, which cannot miss one; the checks after the wait are getmail's own.
LAUNCHER = """
import os
import runpy
import sys

from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError


def wait_for_child(self, childpid):
    _, status = os.waitpid(childpid, 0)
    if os.WIFSIGNALED(status):
        raise getmailOperationError(
            "child pid %d killed by signal %d" % (childpid, os.WTERMSIG(status))
        )
    return os.waitstatus_to_exitcode(status)


baseclasses.ForkingBase._prepare_child = lambda self: None
baseclasses.ForkingBase._wait_for_child = wait_for_child
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def on(flag: bool) -> str:
    return "true" if flag else "false"


def interpreter(script: str) -> list[str]:
    """The #! line of ``script``: getmail's Python, which has getmailcore."""
    with open(script, "rb") as f:
        first = f.readline().decode()
    assert first.startswith("#!"), f"{script} is not a script: {first!r}"
    return first[2:].split()


class Getmail:
    """getmail run once with a getmailrc of its own in ``home``, delivering to the Maildir
    ``home/Maildir/``; its record of the mail it has seen (the oldmail file) is kept there.

    With ``user``, getmail runs as that user (setpriv), who must own ``home``.
    """

    def __init__(self, home: Path, user: pwd.struct_passwd | None = None) -> None:
        self.path = program("getmail")
        self.home = home
        self.user = user
        self.prefix: list[str] = []
        if user is not None:
            self.prefix = [program("setpriv"), f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}"]
            self.prefix.append("--clear-groups")
        self.maildir = home / "Maildir"
        for sub in ("cur", "new", "tmp"):
            self.own(self.maildir / sub, directory=True)
        self.own(self.maildir, directory=True)

    def own(self, path: Path, *, text: str | None = None, directory: bool = False) -> None:
        """Make ``path`` (a directory, or a file holding ``text``) the getmail user's."""
        if directory:
            path.mkdir(parents=True, exist_ok=True)
        if text is not None:
            path.write_text(text)
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def __call__(
        self,
        server: POP3Server,
        *,
        ssl: bool = False,
        apop: bool = False,
        password: str = PASSWORD,
        read_all: bool = True,
        delete: bool = False,
        headers: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """One run; ``headers`` leaves getmail's Delivered-To: and Received: on."""
        if ssl:
            ca = self.home / "ca.pem"  # a copy getmail may read: the CA's directory is 0700
            self.own(ca, text=server.ca_pem.read_text())
            retriever = [
                "type = SimplePOP3SSLRetriever",
                "server = localhost",  # the name getmail checks the certificate for
                f"port = {server.tls_port}",
                f"ca_certs = {ca}",
            ]
        else:
            retriever = [
                "type = SimplePOP3Retriever",
                f"server = {server.host}",
                f"port = {server.port}",
            ]
        lines = [
            "[retriever]",
            *retriever,
            f"username = {USER}",
            f"password = {password}",
            f"use_apop = {on(apop)}",
            "timeout = 10",
            "[destination]",
            "type = Maildir",
            f"path = {self.maildir}/",
            "[options]",
            f"read_all = {on(read_all)}",
            f"delete = {on(delete)}",
            *([] if headers else ["delivered_to = false", "received = false"]),
            "message_log_syslog = false",
        ]
        rc = self.home / "getmailrc"
        self.own(rc, text="\n".join(lines) + "\n")
        getmail = [*interpreter(self.path), "-c", LAUNCHER, self.path]
        args = [*self.prefix, *getmail, f"--getmaildir={self.home}", f"--rcfile={rc}"]
        return run(args, environment(self.home))

    def delivered(self) -> list[bytes]:
        return maildir_delivered(self.maildir)

    def oldmail(self) -> str:
        """The UIDs getmail has seen, from its oldmail file."""
        (file,) = self.home.glob("oldmail-*")
        return file.read_text()


@pytest.fixture
def getmail(tmp_path: Path) -> Iterator[Getmail]:
    if os.geteuid() != 0:
        yield Getmail(tmp_path)
        return
    # pytest's tmp_path lies in a directory only root may enter: nobody gets one in /tmp.
    home = Path(tempfile.mkdtemp(prefix="fakepop-getmail-"))
    try:
        client = Getmail(home, pwd.getpwnam("nobody"))
        client.own(home)
        yield client
    finally:
        shutil.rmtree(home)


@pytest.fixture
def small(pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(SMALL)
    return server


def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
    """getmail's output and the server's transcript, for a failed assertion to show."""
    return f"{printed(result)}\n{server.transcript}"


def as_delivered(raw: bytes) -> bytes:
    """What getmail writes for a message with no Return-Path or Sender header."""
    return RETURN_PATH + stripcr(to_crlf(raw))


@pytest.mark.parametrize("ssl", [False, True], ids=["pop3", "pop3-ssl"])
def test_retrieves_the_corpus_byte_for_byte(
    getmail: Getmail, server: POP3Server, messages: list[bytes], ssl: bool
) -> None:
    uids = [m.uid for m in server.mailbox(USER).messages]
    result = getmail(server, ssl=ssl)
    assert result.returncode == 0, output(result, server)
    delivered = getmail.delivered()
    assert len(delivered) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, delivered, strict=True), 1):
        assert got == as_delivered(raw), f"message {n} differs"
    assert [m.uid for m in server.mailbox(USER).messages] == uids  # delete = false
    (session,) = sent(server)
    if ssl:
        assert session.pop(0).startswith("TLS established: TLSv1.3 ")
    retrs = [f"RETR {n}" for n in range(1, len(messages) + 1)]
    # getmail lists twice: once when it connects, again before it retrieves.
    listings = ["UIDL", "LIST", "UIDL", "LIST"]
    assert session == ["USER alice", "PASS ****", *listings, *retrs, "QUIT"]


def test_headers_getmail_adds(getmail: Getmail, small: POP3Server) -> None:
    """By default Return-Path, Delivered-To and Received, which names the server's address and
    port and the message's UID."""
    moved = b"From: c@example.com\r\nReturn-Path: <bounce@example.com>\r\n\r\nbody\r\n"
    small.mailbox(USER).add(moved)
    uids = [m.uid.encode() for m in small.mailbox(USER).messages]
    result = getmail(small, headers=True)
    assert result.returncode == 0, output(result, small)
    added = re.compile(
        rb"Return-Path: <(?P<sender>[^>\n]*)>\n"
        rb"Delivered-To: unknown\n"  # a single-user retriever knows no recipient
        rb"Received: from 127\.0\.0\.1 \(127\.0\.0\.1:(?P<port>\d+)\) by \S+ with POP3 getmail6\n"
        rb"  msgid:(?P<uid>\S+); \d\d \w{3} \d{4} \d\d:\d\d:\d\d -0000\n"
    )
    delivered = getmail.delivered()
    for raw, uid, got in zip([*SMALL, moved], uids, delivered, strict=True):
        header = added.match(got)
        assert header is not None, got[:300]
        assert (header["port"], header["uid"]) == (str(small.port).encode(), uid)
        if raw is moved:
            # The message's own Return-Path goes: getmail's, on top, names its address.
            assert header["sender"] == b"bounce@example.com"
            assert got[header.end() :] == b"From: c@example.com\n\nbody\n"
        else:
            assert header["sender"] == b"unknown"
            assert got[header.end() :] == stripcr(to_crlf(raw))


def test_apop(getmail: Getmail, small: POP3Server) -> None:
    result = getmail(small, apop=True)
    assert result.returncode == 0, output(result, small)
    assert getmail.delivered() == [as_delivered(m) for m in SMALL]
    (session,) = sent(small)
    assert session[0] == "APOP alice ****"
    assert small.transcript[0].user == USER


@pytest.mark.parametrize("apop", [False, True], ids=["user", "apop"])
def test_wrong_password_fails(getmail: Getmail, small: POP3Server, apop: bool) -> None:
    result = getmail(small, apop=apop, password="wrong", delete=True)
    assert result.returncode == GETMAIL_FAILED, output(result, small)
    assert "operation error (POP error (b'-ERR [AUTH] Invalid user name or password'))\n" in (
        printed(result)
    )
    assert getmail.delivered() == []
    assert len(small.mailbox(USER).messages) == len(SMALL)
    (session,) = sent(small)
    login = ["APOP alice ****"] if apop else ["USER alice", "PASS ****"]
    # getmail answers the -ERR with RSET, which the server refuses before login (RFC 1939
    # allows RSET only in the TRANSACTION state), and hangs up without QUIT.
    assert session == [*login, "RSET"]
    assert small.transcript[0].lines()[-1] == "S: -ERR RSET is not allowed before login"


def test_delete_empties_the_maildrop(
    getmail: Getmail, server: POP3Server, messages: list[bytes]
) -> None:
    result = getmail(server, ssl=True, delete=True)
    assert result.returncode == 0, output(result, server)
    assert getmail.delivered() == [as_delivered(m) for m in messages]
    assert server.mailbox(USER).messages == []  # deleted at getmail's QUIT
    (commands,) = client_commands(server)
    assert commands.count("RETR") == commands.count("DELE") == len(messages)
    assert commands[-1] == "QUIT"


def test_read_all_false_fetches_only_new_mail(
    getmail: Getmail, server: POP3Server, messages: list[bytes]
) -> None:
    result = getmail(server, read_all=False)
    assert result.returncode == 0, output(result, server)
    assert getmail.delivered() == [as_delivered(m) for m in messages]
    seen = getmail.oldmail()
    assert all(m.uid in seen for m in server.mailbox(USER).messages)

    result = getmail(server, read_all=False)
    assert result.returncode == 0, output(result, server)
    assert getmail.delivered() == []

    new = b"From: late@fakepop.test\r\nSubject: arrived after the first poll\r\n\r\nnew\r\n"
    uid = server.mailbox(USER).add(new)
    result = getmail(server, read_all=False)
    assert result.returncode == 0, output(result, server)
    assert getmail.delivered() == [RETURN_PATH + stripcr(new)]
    assert uid in getmail.oldmail()

    first, second, third = sent(server)
    assert [line for line in second if line.startswith("RETR")] == []
    assert [line for line in third if line.startswith("RETR")] == [f"RETR {len(messages) + 1}"]
    assert first[-1] == second[-1] == third[-1] == "QUIT"
    assert len(server.mailbox(USER).messages) == len(messages) + 1


@pytest.mark.parametrize("fault", CERTIFICATE_FAULTS)
def test_ssl_refuses_a_faulty_certificate(
    getmail: Getmail, fault: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    result = getmail(server, ssl=True)
    assert result.returncode == GETMAIL_FAILED, output(result, server)
    text = printed(result)
    # getmail checks the host name itself, after the handshake.
    reason = (
        "hostname 'localhost' doesn't match 'wrong-host.invalid'"
        if fault == "wrong-host"
        else "CERTIFICATE_VERIFY_FAILED"
    )
    assert reason in text, text
    assert getmail.delivered() == []
    (session,) = sent(server)
    assert not any(line.startswith(("USER", "PASS", "APOP")) for line in session)
