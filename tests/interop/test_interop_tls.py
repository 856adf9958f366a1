"""TLS with real clients as processes: curl, fetchmail and openssl s_client.

They are skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from clients import Curl, FetchmailHome, environment, printed, program, run, stripcr
from pop3 import ServerFactory, filled

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
    b"From: c@example.com\r\nSubject: no final CRLF\r\n\r\nline 1\r\nline 2",
]
TOTAL = sum(len(to_crlf(m)) for m in MESSAGES)

FAULTS = ["expired", "not-yet-valid", "wrong-host", "untrusted-ca", "self-signed"]

# What OpenSSL 3 calls each fault; curl, fetchmail and s_client all pass it on.
OPENSSL_REASONS = {
    "expired": (10, "certificate has expired"),
    "not-yet-valid": (9, "certificate is not yet valid"),
    "wrong-host": (62, "hostname mismatch"),
    "untrusted-ca": (20, "unable to get local issuer certificate"),
    "self-signed": (18, "self-signed certificate"),
}

# curl checks the host name itself and words that failure its own way.
CURL_REASONS = {
    fault: f"curl: (60) SSL certificate problem: {reason}\n"
    for fault, (_, reason) in OPENSSL_REASONS.items()
}
CURL_REASONS["wrong-host"] = (
    "curl: (60) SSL: no alternative certificate subject name matches target host name 'localhost'\n"
)


@pytest.fixture(scope="module")
def openssl() -> str:
    return program("openssl")


def fill(server: POP3Server) -> None:
    server.mailbox("alice").extend(MESSAGES)


@pytest.fixture
def make_server(pop3_server_factory: ServerFactory) -> ServerFactory:
    return filled(pop3_server_factory, {"alice": "secret"}, fill, tls=True)


@pytest.fixture
def server(make_server: ServerFactory) -> POP3Server:
    return make_server()


def client_lines(server: POP3Server) -> list[str]:
    """What clients said, and the connection notes, in every session; stops the server first
    so every session is over and fully recorded."""
    server.stop()
    return [
        line
        for session in server.transcript
        for line in session.lines()
        if not line.startswith("S: ")
    ]


# --- curl ---------------------------------------------------------------------------------


class VerifyingCurl:
    """curl that trusts the CA of one server."""

    def __init__(self, curl: Curl, server: POP3Server) -> None:
        self.curl = curl
        self.server = server

    def verified(self, url: str, *options: str) -> subprocess.CompletedProcess[bytes]:
        return self.curl(["--cacert", str(self.server.ca_pem), *options, url])


CurlFor = Callable[[POP3Server], VerifyingCurl]


@pytest.fixture
def curl_for(tmp_path: Path) -> CurlFor:
    def make(server: POP3Server) -> VerifyingCurl:
        return VerifyingCurl(Curl(tmp_path), server)

    return make


def pop3s(server: POP3Server, path: str = "") -> str:
    return f"pop3s://localhost:{server.tls_port}/{path}"


def pop3(server: POP3Server, path: str = "") -> str:
    return f"pop3://localhost:{server.port}/{path}"


def test_curl_retr_over_implicit_tls(server: POP3Server, curl_for: CurlFor) -> None:
    curl = curl_for(server)
    for number, raw in enumerate(MESSAGES, 1):
        result = curl.verified(pop3s(server, str(number)))
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == to_crlf(raw)
    listing = curl.verified(pop3s(server))
    assert listing.stdout == b"".join(
        f"{n} {len(to_crlf(m))}\r\n".encode() for n, m in enumerate(MESSAGES, 1)
    )
    lines = client_lines(server)
    # curl prefers a SASL mechanism from CAPA: CRAM-MD5, the strongest it has here.
    assert lines.count("C: AUTH CRAM-MD5") == len(MESSAGES) + 1
    assert not any(line.startswith(("C: USER", "C: STLS")) for line in lines)
    assert sum(line.startswith("*: TLS established: TLSv1.3 ") for line in lines) == 4


def test_curl_retr_over_stls(server: POP3Server, curl_for: CurlFor) -> None:
    curl = curl_for(server)
    for number, raw in enumerate(MESSAGES, 1):
        result = curl.verified(pop3(server, str(number)), "--ssl-reqd")
        assert (result.returncode, result.stderr) == (0, b"")
        assert result.stdout == to_crlf(raw)
    server.stop()
    for session in server.transcript:
        said = [line for line in session.lines() if not line.startswith("S: ")]
        assert said[:2] == ["C: CAPA", "C: STLS"]
        assert said[2].startswith("*: TLS established: TLSv1.3 ")
        assert said[3:5] == ["C: CAPA", "C: AUTH CRAM-MD5"]  # CAPA again, as RFC 2595 asks
        assert said[-1] == "C: QUIT"


def test_curl_ssl_reqd_fails_without_stls(make_server: ServerFactory, curl_for: CurlFor) -> None:
    server = make_server(stls=False)
    curl = curl_for(server)
    result = curl.verified(pop3(server, "1"), "--ssl-reqd")
    assert (result.returncode, result.stdout) == (64, b"")
    assert result.stderr == b"curl: (64) STLS not supported.\n"
    assert "C: AUTH CRAM-MD5" not in client_lines(server)


def test_curl_with_require_tls(make_server: ServerFactory, curl_for: CurlFor) -> None:
    server = make_server(require_tls=True)
    curl = curl_for(server)
    # PLAIN is not offered before TLS, so curl cannot use it there.
    plain = curl.verified(pop3(server, "1"), "--login-options", "AUTH=PLAIN")
    assert (plain.returncode, plain.stdout) == (67, b"")
    assert plain.stderr == b"curl: (67) Login denied\n"  # no mechanism in common
    secure = curl.verified(pop3(server, "1"), "--ssl-reqd", "--login-options", "AUTH=PLAIN")
    assert (secure.returncode, secure.stdout) == (0, to_crlf(MESSAGES[0]))
    implicit = curl.verified(pop3s(server, "1"), "--login-options", "AUTH=PLAIN")
    assert (implicit.returncode, implicit.stdout) == (0, to_crlf(MESSAGES[0]))
    # CRAM-MD5 never shows the password, so it is offered in plaintext too.
    challenge = curl.verified(pop3(server, "1"))
    assert (challenge.returncode, challenge.stdout) == (0, to_crlf(MESSAGES[0]))
    server.stop()
    first, *_ = server.transcript
    assert not any(line.startswith("C: AUTH PLAIN") for line in first.lines())


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_curl_refuses_a_faulty_certificate(
    make_server: ServerFactory, curl_for: CurlFor, fault: str, mode: str
) -> None:
    server = make_server(certificate_fault=fault)
    curl = curl_for(server)
    url, options = (
        (pop3s(server, "1"), ()) if mode == "implicit" else (pop3(server, "1"), ("--ssl-reqd",))
    )
    result = curl.verified(url, *options)
    assert (result.returncode, result.stdout) == (60, b"")
    assert result.stderr.decode().startswith(CURL_REASONS[fault])
    insecure = curl.verified(url, *options, "--insecure")
    assert (insecure.returncode, insecure.stderr) == (0, b"")
    assert insecure.stdout == to_crlf(MESSAGES[0])
    server.stop()
    refused, accepted = server.transcript
    said = [line for line in refused.lines() if line.startswith("C: ")]
    assert said == ([] if mode == "implicit" else ["C: CAPA", "C: STLS"])
    notes = [line for line in refused.lines() if line.startswith("*: ")]
    # curl checks the host name itself, once OpenSSL's handshake is complete.
    failed = "established" if fault == "wrong-host" else "handshake failed"
    assert len(notes) == 1
    assert notes[0].startswith(f"*: TLS {failed}: ")
    assert "C: AUTH CRAM-MD5" in accepted.lines()


# --- fetchmail ----------------------------------------------------------------------------


class Fetchmail(FetchmailHome):
    """fetchmail over TLS, checking the server's certificate against its CA."""

    def __call__(
        self, server: POP3Server, port: int, options: str
    ) -> subprocess.CompletedProcess[bytes]:
        rc = (
            "set no syslog\n"
            # By name: fetchmail matches only DNS names, never an IP address SAN.
            f"poll localhost proto POP3 port {port}\n"
            '  user "alice" there with password "secret" is "root" here\n'
            f'  {options} sslcertck sslcertfile "{server.ca_pem}"\n'
            f"  {self.deliver}\n"
        )
        return self.run(rc, "--verbose")


@pytest.fixture
def fetch(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path)


def as_delivered(raw: bytes) -> bytes:
    """fetchmail hands the MDA the message with LF line ends."""
    return stripcr(to_crlf(raw))


@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_fetchmail_retrieves_over_tls(server: POP3Server, fetch: Fetchmail, mode: str) -> None:
    assert server.tls_port is not None
    if mode == "implicit":
        result = fetch(server, server.tls_port, "ssl")
    else:
        result = fetch(server, server.port, "sslproto tls1.2+")
    output = printed(result)
    assert result.returncode == 0, output
    assert "SSL/TLS: using protocol TLSv1.3" in output
    assert fetch.delivered(strip_received=True) == [as_delivered(m) for m in MESSAGES]
    assert server.mailbox("alice").messages == []  # fetchmail deleted them, and QUIT committed
    lines = client_lines(server)
    if mode == "stls":
        assert lines[:2] == ["C: CAPA", "C: STLS"]
        assert lines[2].startswith("*: TLS established: TLSv1.3 ")
        assert lines[3:6] == ["C: CAPA", "C: AUTH CRAM-MD5", "C: ****"]
    else:
        assert lines[0].startswith("*: TLS established: TLSv1.3 ")
        assert lines[1:4] == ["C: CAPA", "C: AUTH CRAM-MD5", "C: ****"]
    assert lines[-1] == "C: QUIT"


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_fetchmail_refuses_a_faulty_certificate(
    make_server: ServerFactory, fetch: Fetchmail, fault: str, mode: str
) -> None:
    server = make_server(certificate_fault=fault)
    assert server.tls_port is not None
    if mode == "implicit":
        result = fetch(server, server.tls_port, "ssl")
    else:
        result = fetch(server, server.port, "sslproto tls1.2+")
    output = printed(result)
    assert result.returncode == 2, output  # PS_SOCKET
    _, reason = OPENSSL_REASONS[fault]
    assert f"Server certificate verification error: {reason}\n" in output
    assert fetch.delivered() == []
    assert len(server.mailbox("alice").messages) == len(MESSAGES)
    lines = client_lines(server)
    # Nothing was said after the failed handshake: no password went out.
    assert lines[-1].startswith("*: TLS handshake failed: ")
    assert not any(line.startswith(("C: USER", "C: PASS")) for line in lines)


# --- openssl s_client ---------------------------------------------------------------------

SESSION = b"USER alice\r\nPASS secret\r\nSTAT\r\nQUIT\r\n"
REPLIES = (
    b"+OK Send PASS\r\n"
    b"+OK alice's maildrop has 3 messages (%d octets)\r\n"
    b"+OK 3 %d\r\n"
    b"+OK fakepop signing off (0 deleted, 3 left)\r\n"
) % (TOTAL, TOTAL)


def s_client(
    openssl: str, server: POP3Server, port: int, *options: str, home: Path
) -> subprocess.CompletedProcess[bytes]:
    args = [openssl, "s_client", "-connect", f"127.0.0.1:{port}", *options]
    args += ["-CAfile", str(server.ca_pem), "-verify_return_error"]
    args += ["-servername", "localhost", "-verify_hostname", "localhost"]
    # -quiet implies -ign_eof: s_client reads until the server closes, and fails
    # ("unexpected eof while reading") if it closes without close_notify.
    args += ["-quiet"]
    return run(args, environment(home), stdin=SESSION)


def test_openssl_starttls_pop3(server: POP3Server, openssl: str, tmp_path: Path) -> None:
    result = s_client(openssl, server, server.port, "-starttls", "pop3", home=tmp_path)
    errors = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, errors
    # s_client swallows the greeting and the +OK to STLS itself.
    assert result.stdout == REPLIES
    assert not re.search(r"error|alert", errors, re.IGNORECASE), errors
    lines = client_lines(server)
    assert lines[0] == "C: STLS"
    assert lines[1].startswith("*: TLS established: ")
    assert lines[2:] == ["C: USER alice", "C: PASS ****", "C: STAT", "C: QUIT"]


def test_openssl_implicit_tls(server: POP3Server, openssl: str, tmp_path: Path) -> None:
    assert server.tls_port is not None
    result = s_client(openssl, server, server.tls_port, home=tmp_path)
    errors = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 0, errors
    greeting, _, rest = result.stdout.partition(b"\r\n")
    assert re.fullmatch(rb"\+OK fakepop ready <\d+\.\d+@localhost>", greeting)
    assert rest == REPLIES
    assert not re.search(r"error|alert", errors, re.IGNORECASE), errors


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_openssl_refuses_a_faulty_certificate(
    make_server: ServerFactory, openssl: str, tmp_path: Path, fault: str, mode: str
) -> None:
    server = make_server(certificate_fault=fault)
    assert server.tls_port is not None
    if mode == "implicit":
        result = s_client(openssl, server, server.tls_port, home=tmp_path)
    else:
        result = s_client(openssl, server, server.port, "-starttls", "pop3", home=tmp_path)
    errors = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 1, errors
    code, reason = OPENSSL_REASONS[fault]
    assert f"verify error:num={code}:{reason}\n" in errors
    assert "certificate verify failed" in errors
    assert b"+OK Send PASS" not in result.stdout
    lines = client_lines(server)
    assert lines[-1].startswith("*: TLS handshake failed: ")
    assert "C: USER alice" not in lines
