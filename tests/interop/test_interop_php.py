"""PHP's imap extension (php8.2-imap, on the UW c-client library 2007f) as a POP3 client over
real sockets: what osTicket and other PHP helpdesks ingest mail with.

Each test runs ``tests/interop/c_client.php`` once, a real PHP process, with a JSON plan; the
script prints what the imap functions returned as length-prefixed records, so every message
is compared byte for byte. What c-client does, as these tests pin it:

- ``imap_fetchheader`` is ``TOP n 0``; ``imap_body`` and ``imap_fetchbody`` are ``RETR n``
  (one message cached at a time), split after the first empty line. c-client reads the reply
  a line at a time, un-stuffs it and ends every line with CRLF, so the text is the wire form
  with one change: a NUL ends its line there, the rest of the line is lost (it copies lines
  with ``strlen``). A message with no empty line is all header and an empty body.
- Its UIDs are message numbers: it never sends UIDL, though CAPA offers it. A size is LIST's
  until the message is retrieved, then the octets c-client kept of it.
- It asks CAPA before and after login and, under STLS, again after the handshake. It logs in
  with the SASL mechanisms CAPA lists that it has, in its own order (CRAM-MD5, then PLAIN;
  LOGIN only when PLAIN is not offered), three tries each, and with USER/PASS only when
  ``DISABLE_AUTHENTICATOR`` leaves it none. AUTH carries no initial response. A login that
  fails ends with QUIT.
- Deletion is ``imap_delete`` then ``imap_expunge`` or ``CL_EXPUNGE``: DELE by the original
  number, then QUIT at ``imap_close``. ``imap_check`` is NOOP.
- TLS is OpenSSL. ``/ssl`` (implicit TLS) takes any version; ``/tls`` (STLS) is
  ``TLSv1_client_method()``, TLS 1.0 and nothing else, so it fails against a server that wants
  TLS 1.2, as fakepop does by default; and a mailbox with neither ``/notls`` nor ``/tls``
  sends STLS whenever CAPA offers it, so it fails the same way. The STLS tests below serve
  TLS 1.0 and lower the client's OpenSSL security level (``OPENSSL_CONF``) to let it. The
  certificate is checked, name included, against OpenSSL's default paths, which
  ``SSL_CERT_FILE`` points at the server's CA: no ``/novalidate-cert`` anywhere.

Without php or its imap extension these tests are skipped.
"""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path
from typing import Any, Protocol

import pytest
from clients import (
    CERTIFICATE_FAULTS,
    PASSWORD,
    USER,
    ScriptRun,
    environment,
    missing,
    program,
    run,
    sent,
)
from corpus import corpus
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

SCRIPT = Path(__file__).parent / "c_client.php"
# No php.ini, so no site setting interferes: only the extension under test.
PHP = ("-n", "-d", "extension=imap", "-d", "error_reporting=-1", "-d", "display_errors=stderr")

# What c-client's OpenSSL needs for TLS 1.0, all that its STLS speaks: OpenSSL 3 refuses the
# SHA-1 that TLS 1.0 signs with at any security level above 0.
OPENSSL_CONF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
CipherString = DEFAULT:@SECLEVEL=0
"""

# How the mailbox name asks for each transport, and what the client sends before it logs in.
FLAGS = {"notls": "/notls", "ssl": "/ssl", "tls": "/tls"}
BEFORE_LOGIN = {
    "notls": ["CAPA"],
    "ssl": ["TLS", "CAPA"],
    "tls": ["CAPA", "STLS", "TLS", "CAPA"],  # CAPA again under TLS (RFC 2595, section 4)
}
TRANSPORTS = list(FLAGS)

# Ways to log in: the mechanisms disabled, and what the server sees. c-client sends no
# initial response, so PLAIN waits for the empty challenge; CRAM-MD5 is its first choice.
LOGINS: dict[str, tuple[list[str] | None, list[str]]] = {
    "CRAM-MD5": (None, ["AUTH CRAM-MD5", "****"]),
    "PLAIN": (["CRAM-MD5"], ["AUTH PLAIN", "****"]),
    "LOGIN": (["CRAM-MD5", "PLAIN"], ["AUTH LOGIN", "****", "****"]),
    "USER": (["CRAM-MD5", "PLAIN", "LOGIN"], ["USER alice", "PASS ****"]),
}
# What c-client's PLAIN logs when it is used on a connection without TLS.
INSECURE_PLAIN = "SECURITY PROBLEM: insecure server advertised AUTH=PLAIN"
STLS_OFFERED = "a plaintext login on a connection that offered STLS"

# Not in the corpus: messages whose header or lines c-client splits its own way.
ODD = [
    b".the very first octet is a dot\r\nFrom: odd@fakepop.test\r\n\r\nbody\r\n",
    b"\r\nno header at all, the blank line first\r\n.\r\n",
    b"Subject: no blank line, all header\r\nX-Note: so the body is empty\r\n",
    b"Subject: a NUL\r\n\r\nbefore\x00after, lost\r\nthe next line\r\n",
]
SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]


@pytest.fixture(scope="module")
def php(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The php program, once it has shown it has the imap extension."""
    path = program("php", "PHP's imap")
    home = tmp_path_factory.mktemp("php")
    probe = run([path, *PHP, "-r", "echo imap_8bit('ok');"], environment(home))
    if probe.stdout != b"ok":
        detail = (probe.stdout + probe.stderr).decode("utf-8", "replace")
        missing("PHP's imap", "php cannot load the imap extension", detail)
    return path


class Run(ScriptRun):
    """A run of the script: its records hold c-client's errors and PHP's warnings as text."""

    def overview(self, number: int) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self["OVERVIEW", number])
        return decoded


class CClient:
    """Runs the script with a plan, in the C locale with an empty HOME; SSL_CERT_FILE makes
    the server's CA the one OpenSSL trusts."""

    def __init__(self, php: str, home: Path) -> None:
        self.php = php
        self.home = home
        self.openssl_conf = home / "openssl.cnf"
        self.openssl_conf.write_text(OPENSSL_CONF)

    def __call__(
        self, server: POP3Server, transport: str, password: str = PASSWORD, **plan: Any
    ) -> Run:
        """``transport`` is "notls", "ssl", "tls" or "" (c-client's default: STLS if offered);
        ``plan`` adds to the mailbox and login."""
        port = server.tls_port if transport == "ssl" else server.port
        mailbox = f"{{localhost:{port}/pop3{FLAGS.get(transport, '')}}}INBOX"
        plan = {"mailbox": mailbox, "user": USER, "password": password} | plan
        env = environment(self.home)
        env["SSL_CERT_FILE"] = str(server.ca_pem)
        if transport == "tls":
            env["OPENSSL_CONF"] = str(self.openssl_conf)
        return Run(run([self.php, *PHP, str(SCRIPT), json.dumps(plan)], env))


@pytest.fixture
def c_client(php: str, tmp_path: Path) -> CClient:
    return CClient(php, tmp_path)


class Serve(Protocol):
    def __call__(self, transport: str, **options: Any) -> POP3Server: ...


@pytest.fixture
def serve(pop3_server_factory: ServerFactory) -> Serve:
    """Started TLS servers for alice; for STLS, ones that take TLS 1.0, all c-client's STLS
    speaks. The plugin stops them after the test."""

    def make(transport: str, **options: Any) -> POP3Server:
        if transport == "tls":
            options = {"tls_minimum": ssl.TLSVersion.TLSv1, **options}
        return pop3_server_factory(users={USER: PASSWORD}, tls=True, **options)

    return make


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return [*corpus(), *ODD]


def opened(run: Run, server: POP3Server) -> Run:
    assert (run.returncode, run.stderr) == (0, ""), f"PHP failed:\n{run.stderr}{server.transcript}"
    assert run["OPEN", 0] == b"ok", f"{run.texts('ERROR')}\n{server.transcript}"
    assert run["CLOSE", 0] == b"ok"
    assert run["FINISHED", 0] == b""
    assert run.texts("ALERT") == []  # c-client's alerts are IMAP's; POP3 never raises one
    return run


def refused(run: Run, server: POP3Server) -> Run:
    """A run whose imap_open failed: PHP warns that it could not open the stream."""
    assert (run.returncode, run.stderr) == (0, ""), f"PHP failed:\n{run.stderr}{server.transcript}"
    assert run["OPEN", 0] == b"failed", str(server.transcript)
    assert run["FINISHED", 0] == b""
    assert run.texts("ALERT") == []
    (warning,) = run.texts("WARNING")
    assert re.fullmatch(
        r"imap_open\(\): Couldn't open stream \{localhost:\d+/pop3[/a-z]*\}INBOX", warning
    )
    return run


def as_read(wire: bytes) -> tuple[bytes, bytes]:
    """The header and the body c-client returns for ``wire``: each line up to any NUL, with
    CRLF; split after the first empty line, or all header when there is none."""
    lines = [line.split(b"\0")[0] for line in wire.split(b"\r\n")[:-1]]
    text = b"".join(line + b"\r\n" for line in lines)
    if b"" not in lines:
        return text, b""
    end = sum(len(line) + 2 for line in lines[: lines.index(b"") + 1])
    return text[:end], text[end:]


def tls_note(line: str) -> bool:
    return line.startswith("TLS established: ")


def session_of(server: POP3Server) -> list[str]:
    """What the client sent in the server's only session, with "TLS" for the handshake."""
    (session,) = sent(server)
    return ["TLS" if tls_note(line) else line for line in session]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reads_the_corpus_byte_for_byte(
    c_client: CClient, messages: list[bytes], transport: str, serve: Serve
) -> None:
    """The corpus and the odd messages: header, body, the body as part 1, the whole message,
    UID and overview of each; the MIME warning is c-client's about the corpus's UTF-8 message,
    which has a Content-Type and no MIME-Version."""
    each = ["header", "body", "text", "whole", "uid", "overview"]
    server = serve(transport)
    uids = server.mailbox(USER).extend(messages)
    run = opened(c_client(server, transport, each=each, check=True), server)
    assert run["COUNT", 0] == b"%d" % len(messages)
    # c-client's name for the mailbox it opened: under implicit TLS it adds /notls.
    flags = {"notls": "/notls", "ssl": "/notls/ssl", "tls": "/tls"}[transport]
    assert re.fullmatch(
        rb'\{localhost:\d+/pop3%s/user="alice"\}INBOX' % flags.encode(), run["MAILBOX", 0]
    )
    for n, raw in enumerate(messages, 1):
        wire = to_crlf(raw)
        header, body = as_read(wire)
        assert run["HEADER", n] == header, f"the header of message {n} differs"
        assert run["BODY", n] == run["TEXT", n] == body, f"the body of message {n} differs"
        assert run["WHOLE", n] == header + body, f"message {n} differs"
        assert run["UID", n] == b"%d" % n  # the message number, not UIDL's
        overview = run.overview(n)
        # The size is LIST's until RETR, then what c-client kept: less for a NUL.
        assert (overview["msgno"], overview["uid"]) == (n, n)
        assert overview["size"] == len(header + body)
        assert (overview["size"] == len(wire)) == (b"\0" not in wire)
        assert (overview["recent"], overview["deleted"]) == (1, 0)
    assert run.texts("ERROR") == ["Warning: MIME header encountered in non-MIME message"]
    assert [m.uid for m in server.mailbox(USER).messages] == uids  # nothing deleted
    session = session_of(server)
    start = BEFORE_LOGIN[transport]
    assert session[: len(start)] == start
    per_message = [
        line for n in range(1, len(messages) + 1) for line in (f"TOP {n} 0", f"RETR {n}")
    ]
    assert session[len(start) :] == [
        *LOGINS["CRAM-MD5"][1], "CAPA", "STAT", "LIST", "NOOP", *per_message, "QUIT"
    ]  # fmt: skip
    assert server.violations == []


def test_stls_is_tls_1_0(c_client: CClient, serve: Serve) -> None:
    """c-client's STLS handshake is TLS 1.0: the server says so, and nothing else is offered."""
    server = serve("tls")
    server.mailbox(USER).extend(SMALL)
    opened(c_client(server, "tls"), server)
    server.stop()
    (session,) = server.transcript
    (note,) = [line for line in session.lines() if line.startswith("*: TLS established: ")]
    assert note.startswith("*: TLS established: TLSv1 ("), note


@pytest.mark.parametrize("transport", ["tls", ""], ids=["tls", "default"])
def test_stls_fails_against_a_tls_1_2_server(
    c_client: CClient, transport: str, pop3_server_factory: ServerFactory
) -> None:
    """fakepop's default TLS 1.2 minimum, like most servers': c-client's TLS 1.0 STLS fails.
    With no flag it tries STLS because CAPA offers it, so "/notls" or "/ssl" is needed."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    run = refused(c_client(server, transport), server)
    server.stop()
    assert run.texts("ERROR") == ["TLS/SSL failure for localhost: SSL negotiation failed"]
    (session,) = sent(server)
    assert session[:2] == ["CAPA", "STLS"]
    assert session[2].startswith("TLS handshake failed: [SSL: UNSUPPORTED_PROTOCOL] ")
    assert len(session) == 3  # no password went out


@pytest.mark.parametrize("login", LOGINS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_login(c_client: CClient, transport: str, login: str, serve: Serve) -> None:
    """Each way c-client logs in, and what it says about it: PLAIN without TLS is a
    "SECURITY PROBLEM" to c-client, and a plaintext login where STLS was offered to fakepop."""
    disable, exchange = LOGINS[login]
    server = serve(transport)
    server.mailbox(USER).extend(SMALL)
    plan: dict[str, Any] = {"each": ["header", "body"]}
    if disable is not None:
        plan["disable"] = disable
    run = opened(c_client(server, transport, **plan), server)
    for n, raw in enumerate(SMALL, 1):
        assert run["HEADER", n] + run["BODY", n] == to_crlf(raw)
    insecure = transport == "notls" and login == "PLAIN"
    assert run.texts("ERROR") == ([INSECURE_PLAIN] if insecure else [])
    session = session_of(server)
    start = BEFORE_LOGIN[transport]
    assert session[len(start) : len(start) + len(exchange) + 1] == [*exchange, "CAPA"]
    assert session[-1] == "QUIT"
    assert server.transcript[0].user == USER
    # Where the password itself crosses in clear: AUTH PLAIN, AUTH LOGIN, or PASS.
    plaintext = {"PLAIN": "AUTH PLAIN", "LOGIN": "AUTH LOGIN", "USER": "PASS"}
    violations = [text for _, text in server.violations]
    if transport == "notls" and login in plaintext:
        assert violations == [f"{plaintext[login]}: {STLS_OFFERED}"]
    else:
        assert violations == []


def test_wrong_password(c_client: CClient, serve: Serve) -> None:
    """Three tries of CRAM-MD5, then three of PLAIN (LOGIN is skipped as PLAIN is offered),
    then QUIT; every refusal's text reaches imap_errors()."""
    server = serve("notls")
    server.mailbox(USER).extend(SMALL)
    run = refused(c_client(server, "notls", password="wrong"), server)
    session = session_of(server)
    failed = "[AUTH] Authentication failed"
    assert run.texts("ERROR") == [
        f"Retrying CRAM-MD5 authentication after {failed}",
        f"Retrying CRAM-MD5 authentication after {failed}",
        INSECURE_PLAIN,
        f"Retrying PLAIN authentication after {failed}",
        INSECURE_PLAIN,
        f"Retrying PLAIN authentication after {failed}",
        INSECURE_PLAIN,
        f"Can not authenticate to POP3 server: {failed}",
    ]
    assert session == [
        "CAPA", *LOGINS["CRAM-MD5"][1] * 3, *LOGINS["PLAIN"][1] * 3, "QUIT"
    ]  # fmt: skip
    assert len(server.mailbox(USER)) == len(SMALL)


def test_wrong_password_with_user_and_one_try(c_client: CClient, serve: Serve) -> None:
    """No SASL and ``n_retries`` 1: USER and PASS once, then QUIT."""
    server = serve("ssl")
    server.mailbox(USER).extend(SMALL)
    run = c_client(server, "ssl", password="wrong", retries=1, disable=LOGINS["USER"][0])
    refused(run, server)
    session = session_of(server)
    assert run.texts("ERROR") == ["[AUTH] Invalid user name or password", "Too many login failures"]
    assert session == ["TLS", "CAPA", "USER alice", "PASS ****", "QUIT"]


def test_an_empty_password_cancels_the_exchange(c_client: CClient, serve: Serve) -> None:
    """With no password c-client's authenticators answer the challenge with "*"; RFC 5034,
    section 4: the server "MUST reject the AUTH command by sending an -ERR reply"."""
    server = serve("ssl")
    server.mailbox(USER).extend(SMALL)
    run = refused(c_client(server, "ssl", password=""), server)
    server.stop()
    assert run.texts("ERROR") == ["POP3 Authentication cancelled"] * 2
    (session,) = server.transcript
    lines = session.lines(mask=False)  # the transcript masks "*" too; there is no password
    assert [line for line in lines if line.startswith("C: ")] == [
        "C: CAPA", "C: AUTH CRAM-MD5", "C: *", "C: AUTH PLAIN", "C: *", "C: QUIT"
    ]  # fmt: skip
    replies = [lines[i + 1] for i, line in enumerate(lines) if line == "C: *"]
    assert replies == ["S: -ERR Authentication cancelled"] * 2


def test_a_locked_maildrop(c_client: CClient, serve: Serve) -> None:
    """-ERR [IN-USE] (RFC 2449, section 8.1.2) to the first mechanism, and the server closes,
    as Dovecot does: c-client would try the next mechanism, finds the connection gone and
    reports no error text, so [IN-USE] never reaches the application; unlocked, the mail comes.
    """
    server = serve("ssl")
    mailbox = server.mailbox(USER)
    mailbox.extend(SMALL)
    with mailbox.hold_lock():
        run = refused(c_client(server, "ssl", retries=1), server)
    assert run.texts("ERROR") == []
    run = opened(c_client(server, "ssl", each=["header", "body"]), server)
    assert run["HEADER", 2] + run["BODY", 2] == to_crlf(SMALL[1])
    first, _ = sent(server)
    assert first[1:] == ["CAPA", "AUTH CRAM-MD5", "****"]


def test_an_empty_maildrop(c_client: CClient, serve: Serve) -> None:
    server = serve("ssl")
    run = opened(c_client(server, "ssl", each=["header"]), server)
    session = session_of(server)
    assert run["COUNT", 0] == b"0"
    assert run.texts("ERROR") == ["Mailbox is empty"]  # a warning, in imap_errors() too
    assert session[-4:] == ["CAPA", "STAT", "LIST", "QUIT"]


@pytest.mark.parametrize(
    ("plan", "deleted"),
    [
        ({"delete": "1:*", "expunge": True}, [1, 2, 3, 4]),
        ({"delete": "1:*", "close_expunge": True}, [1, 2, 3, 4]),
        ({"delete": "1:*", "undelete": "2", "expunge": True}, [1, 3, 4]),
        ({"delete": "1,3"}, []),  # never expunged: nothing is sent, nothing deleted
    ],
    ids=["expunge", "CL_EXPUNGE", "undelete", "not-expunged"],
)
def test_delete(c_client: CClient, plan: dict[str, Any], deleted: list[int], serve: Serve) -> None:
    """DELE by the original message number, though c-client renumbers as it expunges; the
    server deletes at QUIT."""
    server = serve("notls")
    mailbox = server.mailbox(USER)
    uids = mailbox.extend([*SMALL, *ODD[:2]])
    run = opened(c_client(server, "notls", each=["header", "body"], **plan), server)
    for n, raw in enumerate([*SMALL, *ODD[:2]], 1):
        assert run["HEADER", n] + run["BODY", n] == to_crlf(raw)
    if plan.get("expunge"):
        assert run["COUNT", 1] == b"%d" % (4 - len(deleted))
    session = session_of(server)
    assert [line for line in session if line.startswith("DELE")] == [f"DELE {n}" for n in deleted]
    assert session[-1] == "QUIT"
    assert [m.uid for m in mailbox.messages] == [
        u for n, u in enumerate(uids, 1) if n not in deleted
    ]
    mailbox.assert_deleted(*(uids[n - 1] for n in deleted))
    server.transcript.assert_quit()


def test_without_capa(c_client: CClient, serve: Serve) -> None:
    """A server without CAPA (RFC 1939 only): c-client asks for the mechanisms with a bare
    AUTH, sends no LIST, and reads headers with RETR, as it trusts TOP only where CAPA lists it."""
    server = serve("notls")
    server.faults.add(on="CAPA", action="error", code="SYS/PERM", times="always")
    smalls = [*SMALL, *ODD]
    server.mailbox(USER).extend(smalls)
    run = opened(c_client(server, "notls", each=["header", "body", "overview"]), server)
    for n, raw in enumerate(smalls, 1):
        header, body = as_read(to_crlf(raw))
        assert (run["HEADER", n], run["BODY", n]) == (header, body)
        # Without LIST the size is what c-client stored of RETR's reply.
        assert run.overview(n)["size"] == len(header + body)
    session = session_of(server)
    retrs = [f"RETR {n}" for n in range(1, len(smalls) + 1)]
    assert session == ["CAPA", "AUTH", *LOGINS["CRAM-MD5"][1], "STAT", *retrs, "QUIT"]


@pytest.mark.parametrize("fault", CERTIFICATE_FAULTS)
@pytest.mark.parametrize("transport", ["ssl", "tls"])
def test_refuses_a_faulty_certificate(
    c_client: CClient, fault: str, transport: str, serve: Serve
) -> None:
    reasons = {
        "expired": "certificate has expired",
        "not-yet-valid": "certificate is not yet valid",
        "wrong-host": "hostname mismatch",  # c-client's own check of the name, after the handshake
        "untrusted-ca": "unable to get local issuer certificate",
        "self-signed": "self-signed certificate",
    }
    server = serve(transport, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    run = refused(c_client(server, transport), server)
    (session,) = sent(server)
    (error,) = run.texts("ERROR")
    assert re.fullmatch(rf"Certificate failure for localhost: {reasons[fault]}: /\S.*", error)
    assert session[:-1] == (["CAPA", "STLS"] if transport == "tls" else [])
    assert session[-1].startswith("TLS ")  # nothing said under TLS: no password went out
