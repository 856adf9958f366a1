"""TLS with real clients as processes: curl, fetchmail and openssl s_client.

They are not skipped when missing: install them (`.ci/run` does, with apt-get).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

TIMEOUT = 20.0  # seconds for a client process; each takes milliseconds when all is well

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

INSTALL = "install it (Debian: apt-get install curl fetchmail openssl), as .ci/run does"


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not on PATH: {INSTALL}", pytrace=False)
    return path


@pytest.fixture(scope="module")
def curl() -> str:
    return program("curl")


@pytest.fixture(scope="module")
def fetchmail() -> str:
    return program("fetchmail")


@pytest.fixture(scope="module")
def openssl() -> str:
    return program("openssl")


def clean_env(home: Path) -> dict[str, str]:
    """The environment without proxies, and with a HOME of its own, so no rc file interferes."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HOME"] = str(home)
    env["LC_ALL"] = "C"  # the messages checked below are the untranslated ones
    return env


def run(
    args: list[str], env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=stdin, capture_output=True, timeout=TIMEOUT, env=env)


class ServerFactory(Protocol):
    def __call__(self, **options: Any) -> POP3Server: ...


@pytest.fixture
def make_server() -> Iterator[ServerFactory]:
    servers: list[POP3Server] = []

    def make(**options: Any) -> POP3Server:
        server = POP3Server(users={"alice": "secret"}, tls=True, **options)
        server.start()
        servers.append(server)
        server.mailbox("alice").extend(MESSAGES)
        return server

    yield make
    for server in servers:
        server.stop()


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


class Curl:
    def __init__(self, path: str, server: POP3Server, env: dict[str, str]) -> None:
        self.path = path
        self.server = server
        self.env = env

    def __call__(self, url: str, *options: str) -> subprocess.CompletedProcess[bytes]:
        # -q first: ignore any .curlrc.
        args = [self.path, "-q", "-sS", "--max-time", "10", "-u", "alice:secret"]
        return run([*args, *options, url], self.env)

    def verified(self, url: str, *options: str) -> subprocess.CompletedProcess[bytes]:
        return self(url, "--cacert", str(self.server.ca_pem), *options)


CurlFor = Callable[[POP3Server], Curl]


@pytest.fixture
def curl_for(curl: str, tmp_path: Path) -> CurlFor:
    def make(server: POP3Server) -> Curl:
        return Curl(curl, server, clean_env(tmp_path))

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

MDA = """#!/bin/sh
# Deliver one message to the next numbered file in $1.
n=$(ls "$1" | wc -l)
exec cat > "$1/$((n + 1))"
"""


class Fetchmail:
    """fetchmail run once in the foreground, with its home, rc file and MDA under a tmp dir."""

    def __init__(self, path: str, home: Path) -> None:
        self.path = path
        self.home = home
        self.inbox = home / "inbox"
        self.inbox.mkdir()
        self.mda = home / "mda.sh"
        self.mda.write_text(MDA)
        self.mda.chmod(0o700)

    def __call__(
        self, server: POP3Server, port: int, options: str
    ) -> subprocess.CompletedProcess[bytes]:
        rc = self.home / "fetchmailrc"
        rc.write_text(
            "set no syslog\n"
            # By name: fetchmail matches only DNS names, never an IP address SAN.
            f"poll localhost proto POP3 port {port}\n"
            '  user "alice" there with password "secret" is "root" here\n'
            f'  {options} sslcertck sslcertfile "{server.ca_pem}"\n'
            f'  mda "{self.mda} {self.inbox}"\n'
        )
        rc.chmod(0o600)  # fetchmail refuses an rc file others can read
        assert stat.S_IMODE(rc.stat().st_mode) == 0o600
        env = clean_env(self.home)
        env["FETCHMAILHOME"] = str(self.home)
        # As root, fetchmail's lock is /var/run/fetchmail.pid whatever FETCHMAILHOME says:
        # a --pidfile of its own lets runs in parallel.
        pidfile = self.home / "fetchmail.pid"
        args = ["--nodetach", "--verbose", "--pidfile", str(pidfile), "-f", str(rc)]
        return run([self.path, *args], env)

    def delivered(self) -> list[bytes]:
        """The messages the MDA got, without the Received: header fetchmail puts on top."""
        files = sorted(self.inbox.iterdir(), key=lambda p: int(p.name))
        return [
            re.sub(rb"\AReceived: [^\n]*\n(?:[ \t][^\n]*\n)*", b"", f.read_bytes()) for f in files
        ]


@pytest.fixture
def fetch(fetchmail: str, tmp_path: Path) -> Fetchmail:
    return Fetchmail(fetchmail, tmp_path)


def as_delivered(raw: bytes) -> bytes:
    """fetchmail hands the MDA the message with LF line ends."""
    return to_crlf(raw).replace(b"\r\n", b"\n")


def fetchmail_output(result: subprocess.CompletedProcess[bytes]) -> str:
    return (result.stdout + result.stderr).decode("utf-8", "replace")


@pytest.mark.parametrize("mode", ["implicit", "stls"])
def test_fetchmail_retrieves_over_tls(server: POP3Server, fetch: Fetchmail, mode: str) -> None:
    assert server.tls_port is not None
    if mode == "implicit":
        result = fetch(server, server.tls_port, "ssl")
    else:
        result = fetch(server, server.port, "sslproto tls1.2+")
    output = fetchmail_output(result)
    assert result.returncode == 0, output
    assert "SSL/TLS: using protocol TLSv1.3" in output
    assert fetch.delivered() == [as_delivered(m) for m in MESSAGES]
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
    output = fetchmail_output(result)
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
    return run(args, clean_env(home), stdin=SESSION)


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
