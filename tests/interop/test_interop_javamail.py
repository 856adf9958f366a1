"""Jakarta Mail 2.0.0's POP3 provider (com.sun.mail.pop3, Debian 12's libjakarta-mail-java)
as a client over real sockets: the library most Java helpdesk and mail-ingest apps use.

One JVM per test module (and xdist worker) runs ``tests/interop/JakartaMailDriver.java``,
launched from source; each test hands it scenarios, one line each, with the Session
properties an application would set, and gets back what the Store, Folder and Message
APIs returned, as length-prefixed records, so every message is compared byte for byte.

What the provider does, as these tests pin it:

- ``Message.writeTo`` writes the message as RETR sent it, un-stuffed, with its CRLF line
  ends: exactly ``to_crlf(raw)``. ``getInputStream`` is the body after the blank line
  (decoded, but the corpus has no transfer encoding to undo); ``getSize`` is LIST's size
  less the header's; the header comes from ``TOP n 0`` unless ``mail.pop3.disabletop``.
- It sends CAPA first, always; logs in with USER/PASS by default, even when CAPA offers
  neither USER nor that. ``mail.pop3.auth.mechanisms`` picks PLAIN or XOAUTH2 (AUTH with an
  initial response); its "LOGIN" is USER/PASS, not AUTH LOGIN; there is no
  ``mail.pop3.sasl.enable`` for POP3 in 2.0.0, and no CRAM-MD5 or SCRAM.
- STLS with ``mail.pop3.starttls.enable`` and ``.required``; the host name is checked only
  with ``mail.pop3[s].ssl.checkserveridentity``. With PIPELINING it pipelines LIST n and
  RETR n, and over TLS USER and PASS.
- ``Folder.close(true)`` sends DELE for messages flagged DELETED, then QUIT; only in a
  READ_WRITE folder.

Without Java (a JDK: the driver is launched from source) or Jakarta Mail these tests are skipped.
"""

from __future__ import annotations

import base64
import os
import select
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from clients import PASSWORD, USER, environment, missing, program
from corpus import corpus
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

DRIVER = Path(__file__).parent / "JakartaMailDriver.java"
# Both named: the mail jar's manifest looks for activation as jakarta.activation.jar, which
# Debian does not ship under that name.
JARS = ("/usr/share/java/jakarta-mail.jar", "/usr/share/java/jakarta-activation.jar")
TIMEOUT = 60.0  # seconds for the JVM to start, or for one scenario; far more than either takes

# For the scenarios that are not about the corpus: a dot line and bare LFs to be made CRLF.
SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
    b"From: c@example.com\r\nSubject: no final CRLF\r\n\r\nline 1\r\nline 2",
]

# How the JDK (or, for the host name, Jakarta Mail) says no to each faulty certificate.
CERTIFICATE_ERRORS = {
    "expired": "java.security.cert.CertificateExpiredException: NotAfter: ",
    "not-yet-valid": "java.security.cert.CertificateNotYetValidException: NotBefore: ",
    "wrong-host": "java.io.IOException: Can't verify identity of server: localhost",
    "untrusted-ca": "unable to find valid certification path to requested target",
    "self-signed": "unable to find valid certification path to requested target",
}


class Result:
    """What one scenario returned: records by (kind, number), and the exception chain
    ("class: message" a line) if it failed."""

    def __init__(self, records: dict[tuple[str, int], bytes]) -> None:
        error = records.pop(("ERROR", 0), None)
        self.error = None if error is None else error.decode("utf-8", "replace")
        self.records = records

    def __getitem__(self, key: tuple[str, int]) -> bytes:
        return self.records[key]

    def succeeded(self, server: POP3Server) -> Result:
        assert self.error is None, f"{self.error}\n{server.transcript}"
        return self


class JakartaMail:
    """The driver in a JVM of its own; a call runs one scenario and waits for its end."""

    def __init__(self, java: str, home: Path) -> None:
        self.log = home / "jvm-stderr.txt"
        with self.log.open("wb") as stderr:  # a file, so the JVM never blocks on a full pipe
            self.process = subprocess.Popen(
                [java, "-cp", os.pathsep.join(JARS), str(DRIVER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=environment(home),
            )
        self.pending = b""
        if self._record() != ("READY", 0, b""):
            raise AssertionError("the driver did not start with READY")

    def __call__(
        self, server: POP3Server, properties: Mapping[str, str] | None = None, **request: Any
    ) -> Result:
        """One scenario: ``request`` adds to and overrides a READ_ONLY open of alice's INBOX
        over plain POP3, reading nothing; ``properties`` are Session properties."""
        request = {
            "protocol": "pop3",
            "host": server.host,
            "port": server.port,
            "user": USER,
            "password": PASSWORD,
            "mode": "READ_ONLY",
            **request,
            **(properties or {}),
        }
        line = " ".join(f"{key}={quote(str(value), safe='')}" for key, value in request.items())
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()
        records: dict[tuple[str, int], bytes] = {}
        while (record := self._record())[0] != "END":
            kind, number, payload = record
            assert (kind, number) not in records, f"{kind} {number} twice"
            records[kind, number] = payload
        return Result(records)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()  # the driver ends at the end of its input
        try:
            self.process.wait(timeout=TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            assert self.process.stdout is not None
            self.process.stdout.close()

    def _record(self) -> tuple[str, int, bytes]:
        kind, number, length = self._read_until(b"\n").decode().split(" ")
        payload = self._read(int(length) + 1)
        assert payload.endswith(b"\n"), f"a {kind} record overran"
        return kind, int(number), payload[:-1]

    def _read_until(self, end: bytes) -> bytes:
        while end not in self.pending:
            self._fill()
        head, _, self.pending = self.pending.partition(end)
        return head

    def _read(self, size: int) -> bytes:
        while len(self.pending) < size:
            self._fill()
        data, self.pending = self.pending[:size], self.pending[size:]
        return data

    def _fill(self) -> None:
        """Read what the JVM has written; fails, with its stderr, if it died or went silent."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()  # the raw descriptor: nothing waits in a buffer
        deadline = time.monotonic() + TIMEOUT
        while not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            if time.monotonic() >= deadline:
                pytest.fail(f"the JVM said nothing for {TIMEOUT:g} s:\n{self.stderr()}")
        data = os.read(fd, 1 << 20)
        if not data:
            self.process.wait(timeout=TIMEOUT)
            pytest.fail(
                f"the JVM exited ({self.process.returncode}):\n{self.stderr()}",
                pytrace=False,
            )
        self.pending += data

    def stderr(self) -> str:
        return self.log.read_text("utf-8", "replace")


@pytest.fixture(scope="module")
def jakarta_mail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JakartaMail]:
    java = program("java", "Jakarta Mail")
    # The driver is launched from source, which takes a JDK's compiler, not only a JRE.
    program("javac", "Jakarta Mail")
    absent = [jar for jar in JARS if not Path(jar).is_file()]
    if absent:
        missing("Jakarta Mail", f"{', '.join(absent)} missing")
    driver = JakartaMail(java, tmp_path_factory.mktemp("jakarta-mail"))
    yield driver
    driver.close()


def parts(wire: bytes) -> tuple[bytes, bytes]:
    """A message's header lines (each ending CRLF) and its body, without the blank line."""
    end = wire.find(b"\r\n\r\n")
    assert end > 0, "every message here has a header and a blank line"
    return wire[: end + 2], wire[end + 4 :]


def said(server: POP3Server) -> list[list[str]]:
    """What the client sent in each session, passwords masked, and the notes ("*: ...");
    stops the server first so every session is over and fully recorded."""
    server.stop()
    return [
        [line.removeprefix("C: ") for line in session.lines() if not line.startswith("S: ")]
        for session in server.transcript
    ]


# What Jakarta Mail sends to log in with USER/PASS and open INBOX.
LOGIN = ["CAPA", "USER alice", "PASS ****", "STAT", "NOOP"]  # NOOP: is the connection alive?

TLS_PROPERTIES = {
    # Off by default in Jakarta Mail 2.0.0: any name the CA vouches for would do.
    "mail.pop3s.ssl.checkserveridentity": "true",
    # By default a failed TLS connection is tried again with the JDK's own trust store,
    # and the error of that second try is the one reported.
    "mail.pop3s.socketFactory.fallback": "false",
}
STLS_PROPERTIES = {
    "mail.pop3.starttls.enable": "true",
    "mail.pop3.starttls.required": "true",  # no STLS in CAPA: refuse, do not go on in clear
    "mail.pop3.ssl.checkserveridentity": "true",
}


def test_read_only_corpus_byte_for_byte(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """getUID, the header (TOP n 0), getSize, writeTo and getInputStream of all 50 messages."""
    messages = corpus()
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    uids = server.mailbox(USER).extend(messages)
    result = jakarta_mail(
        server, {"mail.pop3.disabletop": "false"}, read="uid,headers,size,raw,body"
    ).succeeded(server)
    assert result["COUNT", 0] == b"%d" % len(messages)
    for n, (raw, uid) in enumerate(zip(messages, uids, strict=True), 1):
        wire = to_crlf(raw)
        header, body = parts(wire)
        assert result["UID", n] == uid.encode()
        assert result["HEADERS", n] == header, f"the header of message {n} differs"
        assert result["SIZE", n] == b"%d" % len(body)
        assert result["RAW", n] == wire, f"message {n} differs"
        assert result["BODY", n] == body, f"the body of message {n} differs"
    (commands,) = said(server)
    assert len(server.mailbox(USER)) == len(messages)
    # getSize is LIST's size less the header's. writeTo streams a RETR of its own;
    # getInputStream retrieves the message again, with LIST n pipelined before the RETR
    # when it does not know the size (here: 0, an empty body, which it takes for unknown).
    expected = list(LOGIN)
    for n, raw in enumerate(messages, 1):
        again = [f"LIST {n}", f"RETR {n}"] if not parts(to_crlf(raw))[1] else [f"RETR {n}"]
        expected += [f"UIDL {n}", f"TOP {n} 0", f"LIST {n}", f"RETR {n}", *again]
    assert commands == [*expected, "QUIT"]


def test_header_from_retr_when_top_is_disabled(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """With ``mail.pop3.disabletop`` the header is parsed from RETR, which writeTo then
    copies: one retrieval per message, with its size (LIST n) pipelined before it."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(SMALL)
    result = jakarta_mail(server, {"mail.pop3.disabletop": "true"}, read="headers,raw").succeeded(
        server
    )
    for n, raw in enumerate(SMALL, 1):
        assert result["HEADERS", n] == parts(to_crlf(raw))[0]
        assert result["RAW", n] == to_crlf(raw)
    (commands,) = said(server)
    per_message = [c for n in (1, 2, 3) for c in (f"LIST {n}", f"RETR {n}")]
    assert commands == [*LOGIN, *per_message, "QUIT"]


def test_read_write_expunge_deletes_at_close(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """The ingest loop: read each message, flag it DELETED, close(true): DELE, then QUIT."""
    messages = corpus()[:7]  # the dot lines and line-end cases, not the big one
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    mailbox = server.mailbox(USER)
    uids = mailbox.extend(messages)
    result = jakarta_mail(
        server, mode="READ_WRITE", read="raw", delete="true", expunge="true"
    ).succeeded(server)
    assert [result["RAW", n] for n in range(1, 8)] == [to_crlf(m) for m in messages]
    (commands,) = said(server)
    deletions = [f"DELE {n}" for n in range(1, 8)]
    assert commands == [*LOGIN, *(f"RETR {n}" for n in range(1, 8)), *deletions, "QUIT"]
    assert mailbox.messages == []
    mailbox.assert_deleted(*uids)
    server.transcript.assert_quit()


@pytest.mark.parametrize(
    ("mode", "expunge"), [("READ_ONLY", "true"), ("READ_WRITE", "false")], ids=["ro", "rw"]
)
def test_nothing_is_deleted_without_expunge_in_read_write(
    jakarta_mail: JakartaMail, mode: str, expunge: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    mailbox = server.mailbox(USER)
    uids = mailbox.extend(SMALL)
    result = jakarta_mail(server, mode=mode, delete="true", expunge=expunge)
    assert result.succeeded(server)["COUNT", 0] == b"3"
    (commands,) = said(server)
    assert commands == [*LOGIN, "QUIT"]  # no DELE, and no RSET either
    assert [m.uid for m in mailbox.messages] == uids
    mailbox.assert_deleted()  # none


def test_pop3s_with_pipelining(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """Implicit TLS, trusting only the server's CA. getInputStream first: the size is not
    known, so LIST n and RETR n go out pipelined (CAPA offers PIPELINING); writeTo then
    copies what RETR brought. Over TLS, USER and PASS are pipelined too."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    result = jakarta_mail(
        server,
        TLS_PROPERTIES,
        protocol="pop3s",
        host="localhost",
        port=server.tls_port,
        ca=server.ca_pem,
        read="body,raw",
    ).succeeded(server)
    for n, raw in enumerate(SMALL, 1):
        assert result["BODY", n] == parts(to_crlf(raw))[1]
        assert result["RAW", n] == to_crlf(raw)
    (commands,) = said(server)
    assert commands[0].startswith("*: TLS established: TLSv1.3 ")
    per_message = [c for n in (1, 2, 3) for c in (f"LIST {n}", f"RETR {n}")]
    assert commands[1:] == [*LOGIN, *per_message, "QUIT"]


def test_stls(jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    uids = server.mailbox(USER).extend(SMALL)
    result = jakarta_mail(
        server, STLS_PROPERTIES, host="localhost", ca=server.ca_pem, read="uid,raw"
    ).succeeded(server)
    for n, (raw, uid) in enumerate(zip(SMALL, uids, strict=True), 1):
        assert result["UID", n] == uid.encode()
        assert result["RAW", n] == to_crlf(raw)
    server.stop()
    (session,) = server.transcript
    lines = session.lines()
    said_ = [line for line in lines if not line.startswith("S: ")]
    assert said_[:2] == ["C: CAPA", "C: STLS"]
    assert said_[2].startswith("*: TLS established: TLSv1.3 ")
    assert said_[3:6] == ["C: CAPA", "C: USER alice", "C: PASS ****"]  # CAPA again: RFC 2595
    second_capa = lines[lines.index("C: CAPA", lines.index("C: STLS")) :]
    assert "S: STLS" not in second_capa[: second_capa.index("S: .")]
    assert said_[-1] == "C: QUIT"


def sasl_mechanisms(capabilities: list[str]) -> list[str]:
    (line,) = (line for line in capabilities if line.startswith("SASL "))
    return line.split()[1:]


def test_stls_then_plain_where_tls_is_required(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """PLAIN is offered only under TLS: Jakarta Mail must pick it from the CAPA it asks for
    again after STLS, which must list it, and no longer STLS."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, require_tls=True)
    server.mailbox(USER).extend(SMALL)
    properties = {**STLS_PROPERTIES, "mail.pop3.auth.mechanisms": "PLAIN"}
    result = jakarta_mail(server, properties, host="localhost", ca=server.ca_pem, read="raw")
    assert result.succeeded(server)["RAW", 2] == to_crlf(SMALL[1])
    server.stop()
    (session,) = server.transcript
    lines = session.lines()
    before, after = (
        [line.removeprefix("S: ") for line in lines[i : lines.index("S: .", i)]]
        for i, line in enumerate(lines)
        if line == "C: CAPA"
    )
    assert "STLS" in before
    assert "PLAIN" not in sasl_mechanisms(before)
    assert "STLS" not in after
    assert "PLAIN" in sasl_mechanisms(after)
    assert session.login == "AUTH PLAIN"


def test_stls_required_but_not_offered(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, stls=False)
    result = jakarta_mail(server, STLS_PROPERTIES, host="localhost", ca=server.ca_pem)
    (commands,) = said(server)
    assert result.error == (
        "jakarta.mail.AuthenticationFailedException: STLS required but not supported"
    )
    assert commands == ["CAPA", "QUIT"]  # no password in clear


@pytest.mark.parametrize("fault", CERTIFICATE_ERRORS)
@pytest.mark.parametrize("mode", ["pop3s", "stls"])
def test_refuses_a_faulty_certificate(
    jakarta_mail: JakartaMail, fault: str, mode: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    if mode == "pop3s":
        request: dict[str, Any] = {"protocol": "pop3s", "port": server.tls_port}
        properties = TLS_PROPERTIES
    else:
        request, properties = {}, STLS_PROPERTIES
    result = jakarta_mail(server, properties, host="localhost", ca=server.ca_pem, **request)
    (commands,) = said(server)
    assert result.error is not None
    assert result.error.startswith("jakarta.mail.MessagingException: Connect failed\n")
    assert CERTIFICATE_ERRORS[fault] in result.error
    assert result.records == {}
    # One connection, no fallback; nothing said after the handshake, no password sent.
    *before, note = commands
    assert before == ([] if mode == "pop3s" else ["CAPA", "STLS"])
    verdict = "established" if fault == "wrong-host" else "handshake failed"  # checked after
    assert note.startswith(f"*: TLS {verdict}: ")


# (server options, Session properties, the login fakepop saw)
LOGINS: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {
    "default": ({}, {}, "USER"),
    # Jakarta Mail's POP3 "LOGIN" mechanism is USER/PASS, not AUTH LOGIN.
    "LOGIN": ({}, {"mail.pop3.auth.mechanisms": "LOGIN"}, "USER"),
    "PLAIN": ({}, {"mail.pop3.auth.mechanisms": "PLAIN"}, "AUTH PLAIN"),
    "APOP": ({}, {"mail.pop3.apop.enable": "true"}, "APOP"),
    # As Gmail and Office 365: OAuth only, the token in place of the password.
    "XOAUTH2": (
        {"sasl": ("XOAUTH2",), "user_login": False, "apop": False},
        {"mail.pop3.auth.mechanisms": "XOAUTH2"},
        "AUTH XOAUTH2",
    ),
}


@pytest.mark.parametrize("login", LOGINS)
def test_login(jakarta_mail: JakartaMail, login: str, pop3_server_factory: ServerFactory) -> None:
    options, properties, method = LOGINS[login]
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False, **options)
    server.mailbox(USER).extend(SMALL)
    password = server.add_token(USER) if login == "XOAUTH2" else PASSWORD
    result = jakarta_mail(server, properties, password=password, read="raw")
    assert result.succeeded(server)["RAW", 3] == to_crlf(SMALL[2])
    server.stop()
    (session,) = server.transcript
    assert (session.login, session.user) == (method, USER)
    assert session.quit


def test_default_login_on_a_sasl_only_server(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """By default Jakarta Mail sends USER though CAPA offers only SASL, and stops at -ERR:
    an application must name the mechanism (``mail.pop3.auth.mechanisms``)."""
    options: dict[str, Any] = {"sasl": ("PLAIN",), "user_login": False, "apop": False}
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False, **options)
    result = jakarta_mail(server)
    (commands,) = said(server)
    assert result.error == "jakarta.mail.AuthenticationFailedException: Unknown command: USER"
    assert commands == [
        "CAPA",
        "USER alice",
        "*: client violation: USER used, but the CAPA answer did not offer USER",
        "QUIT",
    ]


def test_wrong_password(jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    result = jakarta_mail(server, password="wrong")
    (commands,) = said(server)
    assert result.error == (
        "jakarta.mail.AuthenticationFailedException: [AUTH] Invalid user name or password"
    )
    assert commands == ["CAPA", "USER alice", "PASS ****", "QUIT"]


def test_fetch_profile_uid_and_envelope(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """How an ingest app finds new mail: Folder.fetch of UIDs (one UIDL for all) and
    envelopes (TOP n 0 and LIST n each); getUID, the header and getSize then cost nothing."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    uids = server.mailbox(USER).extend(SMALL)
    result = jakarta_mail(server, fetch="uid,envelope", read="uid,headers,size")
    result.succeeded(server)
    for n, (raw, uid) in enumerate(zip(SMALL, uids, strict=True), 1):
        header, body = parts(to_crlf(raw))
        assert result["UID", n] == uid.encode()
        assert result["HEADERS", n] == header
        assert result["SIZE", n] == b"%d" % len(body)
    (commands,) = said(server)
    envelopes = [c for n in (1, 2, 3) for c in (f"TOP {n} 0", f"LIST {n}")]
    assert commands == [*LOGIN, "UIDL", *envelopes, "QUIT"]


def test_plain_with_an_authorization_identity(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """A shared mailbox: admin logs in with PLAIN and acts as alice."""
    server = pop3_server_factory(users={USER: PASSWORD, "admin": "root"}, tls=False)
    server.store["admin"].may_act_as.add(USER)
    server.mailbox(USER).extend(SMALL)
    properties = {"mail.pop3.auth.mechanisms": "PLAIN", "mail.pop3.sasl.authorizationid": USER}
    result = jakarta_mail(server, properties, user="admin", password="root", read="raw")
    assert result.succeeded(server)["RAW", 1] == to_crlf(SMALL[0])
    server.stop()
    (session,) = server.transcript
    assert (session.login, session.user) == ("AUTH PLAIN", USER)


def test_xoauth2_with_a_bad_token(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """fakepop answers a bad token as Gmail does: an error challenge ("+ " and base64 JSON),
    then -ERR [AUTH] once the client answers it. Jakarta Mail 2.0.0 takes the challenge for
    success and sends STAT, which is that answer: it fails at STAT, served nothing."""
    options: dict[str, Any] = {"sasl": ("XOAUTH2",), "user_login": False, "apop": False}
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False, **options)
    server.add_token(USER)
    properties = {"mail.pop3.auth.mechanisms": "XOAUTH2"}
    result = jakarta_mail(server, properties, password="not-the-token", read="raw")
    server.stop()
    assert result.error == (
        "jakarta.mail.MessagingException: Open failed\n"
        "java.io.IOException: STAT command failed: [AUTH] Invalid or expired token"
    )
    (session,) = server.transcript
    assert session.login is None
    request = base64.b64encode(b"user=alice\1auth=Bearer not-the-token\1\1").decode()
    challenge = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
    assert session.lines(mask=False)[-6:] == [
        f"C: AUTH XOAUTH2 {request}",
        f"S: + {base64.b64encode(challenge).decode()}",
        "C: STAT",
        "S: -ERR [AUTH] Invalid or expired token",
        "C: QUIT",
        "S: +OK fakepop signing off",
    ]


def test_a_locked_maildrop_fails_the_login(
    jakarta_mail: JakartaMail, pop3_server_factory: ServerFactory
) -> None:
    """Another session (a delivery agent, another poller) holds the maildrop: RFC 2449's
    [IN-USE] reaches the application in the exception's message."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    mailbox = server.mailbox(USER)
    mailbox.extend(SMALL)
    with mailbox.hold_lock():
        result = jakarta_mail(server, mode="READ_WRITE", read="raw")
    (commands,) = said(server)
    assert result.error == (
        "jakarta.mail.AuthenticationFailedException: [IN-USE] Mailbox is locked by another session"
    )
    assert result.records == {}
    assert commands == ["CAPA", "USER alice", "PASS ****"]  # closed after [IN-USE]: no QUIT
    assert len(mailbox) == 3
