"""s-nail 14.9 (Debian 12's ``s-nail``, built with +pop3 and +tls) as a POP3 client over real
sockets: the mailx that scripts read a maildrop with, here in batch mode (``-#``), commands
on stdin, no resource files (``-: /``).

Each message is saved with ``copy N FILE``, one file each, and compared byte for byte. What
s-nail does, as these tests pin it:

- ``copy`` appends the message to an mbox: a ``From `` line (the sender and the Date:, or
  MAILER-DAEMON and now), the message with LF line ends and a ``>`` before each line that
  starts with ``From `` (mboxo: ``>From`` lines are left alone), then an empty line unless
  the message already ends with one. Nothing else changes: NULs and 8-bit octets pass.
- At the folder's opening it sends STAT, ``LIST n`` and ``TOP n 0`` for every message (RETR
  only, with ``pop3-bulk-load``); RETR when a message is first used. It never sends CAPA.
- It logs in with APOP when the greeting has a timestamp, USER/PASS with ``pop3-no-apop``, or
  AUTH XOAUTH2 with an initial response for ``pop3-auth=oauthbearer`` (under TLS only).
- ``delete`` then ``quit`` sends DELE and QUIT; ``exit``, and a failed login, close the
  connection without QUIT, so nothing is deleted.
- TLS: ``pop3s://`` or ``pop3-use-starttls`` (STLS straight after the greeting), checking
  the certificate and its name against ``tls-ca-file`` alone (``tls-ca-no-defaults``).

s-nail is skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from clients import (
    CERTIFICATE_FAULTS,
    PASSWORD,
    USER,
    environment,
    printed,
    program,
    run,
    sent,
    stripcr,
)
from corpus import corpus
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

TOKEN = "alice-token"

# Not in the corpus: what mbox quoting touches, and messages with an odd header.
ODD = [
    b"Subject: From lines\r\n\r\nFrom here on, quoted\r\n>From left alone\r\nFrom\r\n",
    b"\r\nno header at all, the blank line first\r\n.\r\n",
    b"Subject: no blank line, all header\r\nX-Note: so no body\r\n",
    b"Subject: a NUL and 8-bit octets\r\n\r\nbefore\x00after\r\n\x1a\x7f\xff\xfe\r\n",
]
SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]

# An mbox "From " line: the envelope sender and a ctime(3) date.
FROM_LINE = re.compile(rb"From \S+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n")

# How s-nail logs in: its variables, the password, and what the server sees.
LOGINS: dict[str, tuple[list[str], str, list[str]]] = {
    "apop": ([], PASSWORD, ["APOP alice ****"]),
    "user": (["pop3-no-apop"], PASSWORD, ["USER alice", "PASS ****"]),
    "xoauth2": (["pop3-auth=oauthbearer"], TOKEN, ["AUTH XOAUTH2 ****"]),
}


class SNail:
    """s-nail run once in batch mode, in the C locale with ``home`` as HOME; it saves into
    ``home/saved``."""

    def __init__(self, home: Path) -> None:
        self.path = program("s-nail")
        self.env = environment(home)
        self.saved = home / "saved"
        self.saved.mkdir()

    def __call__(
        self,
        server: POP3Server,
        transport: str,
        commands: list[str],
        *variables: str,
        password: str = PASSWORD,
    ) -> subprocess.CompletedProcess[bytes]:
        """``transport`` is "pop3", "pop3s" or "stls"; ``variables`` are set with -S."""
        if transport == "pop3s":
            url = f"pop3s://{USER}@localhost:{server.tls_port}"
        else:
            url = f"pop3://{USER}@localhost:{server.port}"
        settings = [
            "v15-compat",  # for pop3-auth and the USER@HOST variable chains
            "errexit",  # a failed command fails the run (batch mode turns it off)
            f"password={password}",
            *(
                [f"tls-ca-file={server.ca_pem}", "tls-ca-no-defaults"]
                if transport != "pop3"
                else []
            ),
            *(["pop3-use-starttls"] if transport == "stls" else []),
            *variables,
        ]
        args = [self.path, "-#", "-:", "/", *(f"-S{s}" for s in settings), "-f", url]
        return run(args, self.env, "".join(f"{c}\n" for c in commands).encode())

    def copy_each(self, count: int) -> list[str]:
        """The commands that copy messages 1 to ``count`` into a file each."""
        return [f"copy {n} {self.saved / f'{n:04d}'}" for n in range(1, count + 1)]

    def copies(self) -> list[bytes]:
        """The files ``copy_each`` wrote, in message order, without their "From " line."""
        got = []
        for file in sorted(self.saved.iterdir()):
            text = file.read_bytes()
            assert FROM_LINE.match(text), text[:100]
            got.append(text[text.index(b"\n") + 1 :])
        return got


@pytest.fixture
def snail(tmp_path: Path) -> SNail:
    return SNail(tmp_path)


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return [*corpus(), *ODD]


@pytest.fixture
def small(pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, messages=SMALL)
    server.add_token(USER, TOKEN)
    return server


def as_copied(wire: bytes) -> bytes:
    """What ``copy`` writes after the "From " line for a message sent as ``wire``."""
    text = re.sub(rb"(?m)^From ", b">From ", stripcr(wire))
    return text if text.endswith(b"\n\n") else text + b"\n"


def succeeded(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> None:
    assert (result.returncode, result.stderr) == (0, b""), f"{printed(result)}\n{server.transcript}"


def session_of(server: POP3Server) -> list[str]:
    """What the client sent in the server's only session, with "TLS" for the handshake."""
    (session,) = sent(server)
    return ["TLS" if line.startswith("TLS established: TLSv1.3 ") else line for line in session]


def opening(count: int) -> list[str]:
    """What s-nail sends once logged in, before it reads any message."""
    return [
        "STAT",
        *(f"LIST {n}" for n in range(1, count + 1)),
        *(f"TOP {n} 0" for n in range(1, count + 1)),
    ]


def test_built_with_pop3_and_tls(tmp_path: Path) -> None:
    result = run([program("s-nail"), "-Xversion", "-Xx"], environment(tmp_path))
    assert result.returncode == 0, printed(result)
    assert result.stdout.startswith(b"s-nail v14.9.")
    features = result.stdout.split()
    assert b"+pop3" in features
    assert b"+tls" in features


@pytest.mark.parametrize("transport", ["pop3", "pop3s", "stls"])
def test_copies_the_corpus_byte_for_byte(
    snail: SNail, messages: list[bytes], transport: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    uids = server.mailbox(USER).extend(messages)
    result = snail(server, transport, [*snail.copy_each(len(messages)), "quit"])
    succeeded(result, server)
    copies = snail.copies()
    assert len(copies) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, copies, strict=True), 1):
        assert got == as_copied(to_crlf(raw)), f"message {n} differs"
    assert [m.uid for m in server.mailbox(USER).messages] == uids  # copy deletes nothing
    session = session_of(server)
    # The sender and date of the "From " line come from the message's From: and Date:.
    first = (snail.saved / "0001").read_bytes()
    assert first.startswith(b"From corpus@fakepop.test Fri Nov 27 09:00:00 2026\n")
    start = {"pop3": [], "pop3s": ["TLS"], "stls": ["STLS", "TLS"]}[transport]
    retrs = [f"RETR {n}" for n in range(1, len(messages) + 1)]
    assert session == [*start, "APOP alice ****", *opening(len(messages)), *retrs, "QUIT"]
    assert server.violations == []


def test_a_first_line_that_is_not_a_header(
    snail: SNail, pop3_server_factory: ServerFactory
) -> None:
    """A stuffed dot opens the message: the server's stuffing is undone, but s-nail takes a
    first line without a colon for the body and puts an empty header before it."""
    odd = b".the very first octet is a dot\r\nFrom: odd@fakepop.test\r\n\r\nbody\r\n"
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).add(odd)
    result = snail(server, "pop3", [*snail.copy_each(1), "quit"])
    assert result.returncode == 0, printed(result)
    assert snail.copies() == [b"\n" + as_copied(to_crlf(odd))]
    assert b"s-nail: Not a header line, skipping: '.the very first octet is a dot'\n" in (
        result.stderr
    )


def test_bulk_load_retrieves_at_once(snail: SNail, pop3_server_factory: ServerFactory) -> None:
    """``pop3-bulk-load``: RETR every message at the opening, no TOP."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend([*SMALL, *ODD])
    result = snail(server, "pop3", [*snail.copy_each(6), "quit"], "pop3-bulk-load")
    succeeded(result, server)
    assert snail.copies() == [as_copied(to_crlf(m)) for m in [*SMALL, *ODD]]
    session = session_of(server)
    lists = [f"LIST {n}" for n in range(1, 7)]
    retrs = [f"RETR {n}" for n in range(1, 7)]
    assert session == ["APOP alice ****", "STAT", *lists, *retrs, "QUIT"]


@pytest.mark.parametrize("login", LOGINS)
def test_login(snail: SNail, small: POP3Server, login: str) -> None:
    variables, password, exchange = LOGINS[login]
    # s-nail sends a bearer token only under TLS.
    transport = "pop3s" if login == "xoauth2" else "pop3"
    result = snail(small, transport, [*snail.copy_each(2), "quit"], *variables, password=password)
    succeeded(result, small)
    assert snail.copies() == [as_copied(to_crlf(m)) for m in SMALL]
    session = session_of(small)
    start = ["TLS"] if transport == "pop3s" else []
    assert session[: len(start) + len(exchange) + 1] == [*start, *exchange, "STAT"]
    assert small.transcript[0].user == USER


def test_a_bearer_token_needs_tls(snail: SNail, small: POP3Server) -> None:
    variables, _, _ = LOGINS["xoauth2"]
    result = snail(small, "pop3", [*snail.copy_each(1)], *variables, password=TOKEN)
    assert result.returncode == 1
    assert "s-nail: POP3 authentication OAUTHBEARER needs TLS" in printed(result)
    assert session_of(small) == []  # the greeting, then it hung up


@pytest.mark.parametrize("login", ["apop", "user"])
def test_wrong_password_fails(snail: SNail, small: POP3Server, login: str) -> None:
    variables, _, exchange = LOGINS[login]
    result = snail(small, "pop3", [*snail.copy_each(2), "quit"], *variables, password="wrong")
    assert result.returncode == 1
    text = printed(result)
    assert "s-nail: POP3 error: -ERR [AUTH] Invalid user name or password\n" in text
    assert ("s-nail: POP3 APOP authentication failed!\n" in text) == (login == "apop")
    assert "s-nail: copy: needs an active mailbox\n" in text
    assert list(snail.saved.iterdir()) == []
    assert session_of(small) == exchange  # no QUIT after the -ERR
    assert len(small.mailbox(USER)) == len(SMALL)


def test_wrong_token_error_challenge(snail: SNail, small: POP3Server) -> None:
    """A refused token gets the error challenge (RFC 7628, section 3.2.2) that the client must
    answer to end the exchange. s-nail takes the "+" for success and sends STAT, which the
    server reads as that answer: -ERR [AUTH], so s-nail still fails, and says why."""
    variables, _, _ = LOGINS["xoauth2"]
    result = snail(small, "pop3s", [*snail.copy_each(1)], *variables, password="wrong")
    assert result.returncode == 1
    assert "s-nail: POP3 error: -ERR [AUTH] Invalid or expired token\n" in printed(result)
    small.stop()
    (session,) = small.transcript
    lines = session.lines(mask=False)
    assert lines[3].startswith("S: + ")  # the error challenge, base64 JSON
    assert lines[4:] == ["C: STAT", "S: -ERR [AUTH] Invalid or expired token"]


@pytest.mark.parametrize(
    ("commands", "deleted"),
    [
        (["delete *", "quit"], [1, 2, 3, 4, 5, 6]),
        (["delete 2 5", "quit"], [2, 5]),
        (["delete *", "exit"], []),  # exit: no QUIT, so the server deletes nothing
    ],
    ids=["all", "some", "exit"],
)
def test_delete(
    snail: SNail, commands: list[str], deleted: list[int], pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    mailbox = server.mailbox(USER)
    uids = mailbox.extend([*SMALL, *ODD])
    result = snail(server, "pop3s", commands)
    succeeded(result, server)
    session = session_of(server)
    ending = [*(f"DELE {n}" for n in deleted), "QUIT"] if commands[-1] == "quit" else []
    assert session == ["TLS", "APOP alice ****", *opening(6), *ending]
    kept = [uid for n, uid in enumerate(uids, 1) if n not in deleted]
    assert [m.uid for m in mailbox.messages] == kept
    mailbox.assert_deleted(*(uids[n - 1] for n in deleted))


def test_a_locked_maildrop(snail: SNail, small: POP3Server) -> None:
    """-ERR [IN-USE] (RFC 2449, section 8.1.2) to APOP: s-nail fails, quoting it; unlocked,
    the mail comes."""
    with small.mailbox(USER).hold_lock():
        result = snail(small, "pop3", [*snail.copy_each(2), "quit"])
    assert result.returncode == 1
    assert "s-nail: POP3 error: -ERR [IN-USE] Mailbox is locked by another session\n" in (
        printed(result)
    )
    result = snail(small, "pop3", [*snail.copy_each(2), "quit"])
    succeeded(result, small)
    assert snail.copies() == [as_copied(to_crlf(m)) for m in SMALL]


@pytest.mark.parametrize("transport", ["pop3", "stls"])
def test_a_server_that_requires_tls(
    snail: SNail, transport: str, pop3_server_factory: ServerFactory
) -> None:
    """``require_tls``: APOP before STLS is refused with [AUTH]; after it, it is taken."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, require_tls=True)
    server.mailbox(USER).extend(SMALL)
    result = snail(server, transport, [*snail.copy_each(2), "quit"])
    session = session_of(server)
    if transport == "pop3":
        assert result.returncode == 1
        assert "s-nail: POP3 error: -ERR [AUTH] Plaintext authentication needs TLS" in (
            printed(result)
        )
        assert session == ["APOP alice ****"]
    else:
        assert (result.returncode, result.stderr) == (0, b""), printed(result)
        assert snail.copies() == [as_copied(to_crlf(m)) for m in SMALL]
        assert session[:3] == ["STLS", "TLS", "APOP alice ****"]


# How s-nail words each fault: OpenSSL's verification error, or its own check of the name.
REASONS = {
    "expired": "s-nail:   err 10: certificate has expired\n",
    "not-yet-valid": "s-nail:   err 9: certificate is not yet valid\n",
    "wrong-host": "s-nail: TLS certificate does not match: localhost:",
    "untrusted-ca": "s-nail:   err 20: unable to get local issuer certificate\n",
    "self-signed": "s-nail:   err 18: self-signed certificate\n",
}


@pytest.mark.parametrize("fault", CERTIFICATE_FAULTS)
@pytest.mark.parametrize("transport", ["pop3s", "stls"])
def test_refuses_a_faulty_certificate(
    snail: SNail, fault: str, transport: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    result = snail(server, transport, [*snail.copy_each(2), "quit"])
    (session,) = sent(server)
    assert result.returncode == 1
    assert REASONS[fault] in printed(result)
    assert list(snail.saved.iterdir()) == []
    # Nothing said under TLS: no password went out.
    assert session[:-1] == (["STLS"] if transport == "stls" else [])
    assert session[-1].startswith("TLS ")
