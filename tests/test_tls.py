"""TLS with Python's own clients over real sockets: implicit TLS, STLS, versions, certificates."""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import poplib
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pop3 import TIMEOUT, LineClient, ServerFactory, filled

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf
from fakepop.tls import CA_CERT, CA_KEY, Authority, AuthorityError

QUIET = 0.2  # how long to listen for bytes that must not come

MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]

FAULTS = {
    "expired": "certificate has expired",
    "not-yet-valid": "certificate is not yet valid",
    "wrong-host": "Hostname mismatch, certificate is not valid for 'localhost'.",
    "untrusted-ca": "unable to get local issuer certificate",
    "self-signed": "self-signed certificate",
}

SIGN_OFF = b"+OK fakepop signing off\r\n"
NEEDS_TLS = (
    b"-ERR [AUTH] Plaintext authentication needs TLS: send STLS first, or use the TLS port\r\n"
)


class Connect(Protocol):
    def __call__(self, server: POP3Server, port: int | None = None) -> Wire: ...


def fill(server: POP3Server) -> None:
    server.mailbox("alice").extend(MESSAGES)


@pytest.fixture
def make_server(pop3_server_factory: ServerFactory) -> ServerFactory:
    """TLS servers holding MESSAGES for alice."""
    return filled(pop3_server_factory, {"alice": "secret"}, fill, tls=True)


@pytest.fixture
def server(make_server: ServerFactory) -> POP3Server:
    return make_server()


class Wire(LineClient):
    """A raw client; no buffered plaintext hides under TLS, and a TLS close must be clean."""

    def starttls(self, context: ssl.SSLContext, hostname: str = "localhost") -> None:
        self.wrap(context, hostname, ragged_eofs=False)

    def multiline(self) -> list[bytes]:
        """A multi-line reply's status and body lines, line ends stripped."""
        lines = [self.line()]
        assert lines[0].startswith(b"+OK"), lines[0]
        while lines[-1] != b".\r\n":
            lines.append(self.line())
        return [line[:-2] for line in lines[:-1]]

    def silent(self) -> bool:
        """True if nothing more arrives within QUIET seconds."""
        if self.pending:
            return False
        self.sock.settimeout(QUIET)
        try:
            self.sock.recv(1)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(TIMEOUT)
        return False


@pytest.fixture
def wire() -> Iterator[Connect]:
    wires: list[Wire] = []

    def connect(server: POP3Server, port: int | None = None) -> Wire:
        wires.append(Wire(server, port))
        return wires[-1]

    yield connect
    for w in wires:
        w.close()


def unstuffed(lines: list[bytes]) -> bytes:
    """poplib removes the stuffing and the line ends; put the line ends back."""
    return b"".join(line + b"\r\n" for line in lines)


def tls_socket(client: poplib.POP3) -> ssl.SSLSocket:
    assert isinstance(client.sock, ssl.SSLSocket)
    return client.sock


def command(client: poplib.POP3, line: str) -> bytes:
    """Send a command poplib has no method for, or refuses to send, and read its status line."""
    client.sock.sendall(line.encode("ascii") + b"\r\n")
    return client.file.readline()


def login_and_retr_all(client: poplib.POP3) -> None:
    client.user("alice")
    assert client.pass_("secret") == b"+OK alice's maildrop has 2 messages (%d octets)" % sum(
        len(to_crlf(m)) for m in MESSAGES
    )
    for number, raw in enumerate(MESSAGES, 1):
        response, lines, octets = client.retr(number)
        assert response == f"+OK {len(to_crlf(raw))} octets".encode()
        assert unstuffed(lines) == to_crlf(raw)
        assert octets == len(to_crlf(raw))
    assert client.quit() == b"+OK fakepop signing off (0 deleted, 2 left)"


def abandon(client: poplib.POP3) -> None:
    """Clean up after a failed stls(): the TLS wrapper already closed the socket it took over,
    so poplib's close() would fail on it."""
    client.file.close()


def no_verify_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def peer_certificate(client: poplib.POP3) -> x509.Certificate:
    der = tls_socket(client).getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


# --- implicit TLS -------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_implicit_tls_login_and_retr(server: POP3Server, host: str) -> None:
    assert server.tls_port is not None
    assert server.tls_url == f"pop3s://127.0.0.1:{server.tls_port}"
    client = poplib.POP3_SSL(
        host, server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    assert client.getwelcome().startswith(b"+OK fakepop ready <")
    assert tls_socket(client).version() == "TLSv1.3"
    login_and_retr_all(client)
    server.stop()
    assert "TLS established: TLSv1.3" in str(server.transcript)


def test_implicit_tls_capa_has_user_and_no_stls(server: POP3Server) -> None:
    assert server.tls_port is not None
    client = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    capa = client.capa()
    assert "USER" in capa
    assert "STLS" not in capa
    # STLS is not offered where TLS is already on.
    assert command(client, "STLS").startswith(b"-ERR ")
    login_and_retr_all(client)


# --- STLS ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_stls_then_login(server: POP3Server, host: str) -> None:
    client = poplib.POP3(host, server.port, timeout=TIMEOUT)
    assert "STLS" in client.capa()
    assert client.stls(context=server.client_ssl_context()) == b"+OK Begin TLS negotiation"
    assert tls_socket(client).version() == "TLSv1.3"
    assert "STLS" not in client.capa()
    # poplib itself refuses a second stls(): send it by hand.
    assert command(client, "STLS") == b"-ERR TLS is already active\r\n"
    login_and_retr_all(client)
    server.stop()
    [session] = server.transcript
    notes = [line for line in session.lines() if line.startswith("*: TLS ")]
    assert len(notes) == 1
    assert notes[0].startswith("*: TLS established: TLSv1.3")


def test_stls_after_login_is_refused(server: POP3Server) -> None:
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    client.user("alice")
    client.pass_("secret")
    assert command(client, "STLS") == b"-ERR STLS is not allowed after login\r\n"
    # The session goes on in plaintext.
    assert client.stat() == (2, sum(len(to_crlf(m)) for m in MESSAGES))
    client.quit()


def test_commands_pipelined_after_stls_are_discarded(server: POP3Server, wire: Connect) -> None:
    """RFC 2595 section 4 / CVE-2011-0411: a command injected after STLS must never run."""
    w = wire(server)
    assert w.line().startswith(b"+OK fakepop ready <")
    w.send(b"STLS\r\nCAPA\r\n")  # one write, so the server reads both lines at once
    assert w.line() == b"+OK Begin TLS negotiation\r\n"
    assert w.silent(), "the injected CAPA was answered in plaintext"
    w.starttls(server.client_ssl_context())
    # Had the injected CAPA run after the handshake, two CAPA replies would come back here.
    w.send(b"CAPA\r\n")
    capa = w.multiline()
    assert capa[0] == b"+OK Capability list follows"
    assert b"STLS" not in capa
    assert b"USER" in capa
    assert w.command(b"QUIT") == SIGN_OFF
    assert w.sock.recv(4096) == b""
    server.stop()
    commands = [line for line in server.transcript[0].lines() if line.startswith("C: ")]
    assert commands == ["C: STLS", "C: CAPA", "C: QUIT"]


def test_user_given_before_stls_is_forgotten(server: POP3Server, wire: Connect) -> None:
    w = wire(server)
    w.line()
    assert w.command(b"USER alice") == b"+OK Send PASS\r\n"
    assert w.command(b"STLS") == b"+OK Begin TLS negotiation\r\n"
    w.starttls(server.client_ssl_context())
    assert w.command(b"PASS secret") == b"-ERR Send USER first\r\n"
    assert w.command(b"USER alice") == b"+OK Send PASS\r\n"
    assert w.command(b"PASS secret").startswith(b"+OK alice's maildrop has 2 messages")


def test_utf8_mode_is_reset_by_stls(server: POP3Server, wire: Connect) -> None:
    server.users["jürgen"] = "pässword"
    w = wire(server)
    w.line()
    assert w.command(b"UTF8") == b"+OK UTF8 enabled\r\n"
    assert w.command(b"STLS") == b"+OK Begin TLS negotiation\r\n"
    w.starttls(server.client_ssl_context())
    assert w.command("USER jürgen".encode()).startswith(b"-ERR [UTF8] ")


def test_failed_stls_handshake_is_noted(server: POP3Server, wire: Connect) -> None:
    w = wire(server)
    w.line()
    assert w.command(b"STLS") == b"+OK Begin TLS negotiation\r\n"
    w.send(b"USER alice\r\n")  # plaintext where a ClientHello belongs
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while data := w.sock.recv(4096):
            received += data
    assert b"OK" not in received
    assert b"ERR" not in received
    server.stop()
    [session] = server.transcript
    assert session.lines()[-1].startswith("*: TLS handshake failed: ")
    assert "C: USER alice" not in session.lines()


# --- require_tls --------------------------------------------------------------------------


def test_require_tls_refuses_plaintext_login(make_server: ServerFactory, wire: Connect) -> None:
    server = make_server(require_tls=True)
    w = wire(server)
    timestamp = w.line().rstrip(b"\r\n").split(b" ")[-1]
    assert timestamp.startswith(b"<")
    # Right credentials, all refused: the refusal is about the channel, not the secret.
    digest = hashlib.md5(timestamp + b"secret").hexdigest().encode()
    assert w.command(b"USER alice") == NEEDS_TLS
    assert w.command(b"PASS secret") == NEEDS_TLS
    assert w.command(b"APOP alice " + digest) == NEEDS_TLS
    w.send(b"CAPA\r\n")
    capa = w.multiline()
    assert b"USER" not in capa
    assert b"STLS" in capa
    assert w.command(b"QUIT") == SIGN_OFF
    assert not server.mailbox("alice").locked


def test_require_tls_allows_login_after_stls(make_server: ServerFactory) -> None:
    server = make_server(require_tls=True)
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    capa = client.capa()
    assert "USER" not in capa
    assert "STLS" in capa
    with pytest.raises(poplib.error_proto) as refused:
        client.user("alice")
    assert refused.value.args == (NEEDS_TLS[:-2],)
    client.stls(context=server.client_ssl_context())
    assert "USER" in client.capa()
    login_and_retr_all(client)


def test_require_tls_allows_apop_after_stls(make_server: ServerFactory) -> None:
    server = make_server(require_tls=True)
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    with pytest.raises(poplib.error_proto) as refused:
        client.apop("alice", "secret")
    assert refused.value.args == (NEEDS_TLS[:-2],)
    client.stls(context=server.client_ssl_context())
    assert client.apop("alice", "secret").startswith(b"+OK alice's maildrop has 2 messages")
    client.quit()


def test_require_tls_allows_login_over_implicit_tls(make_server: ServerFactory) -> None:
    server = make_server(require_tls=True)
    assert server.tls_port is not None
    client = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    assert "USER" in client.capa()
    login_and_retr_all(client)


def test_require_tls_needs_tls() -> None:
    with pytest.raises(ValueError, match="require_tls=True needs tls=True"):
        POP3Server(require_tls=True)


# --- turning either listener off ----------------------------------------------------------


def test_stls_off(make_server: ServerFactory) -> None:
    server = make_server(stls=False)
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    assert "STLS" not in client.capa()
    assert command(client, "STLS") == b"-ERR Unknown command: STLS\r\n"
    client.quit()
    # Implicit TLS still works.
    assert server.tls_port is not None
    login_and_retr_all(
        poplib.POP3_SSL(
            "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
        )
    )


def test_implicit_tls_off(make_server: ServerFactory) -> None:
    server = make_server(implicit_tls=False)
    assert server.tls_port is None
    with pytest.raises(RuntimeError, match="no implicit-TLS port"):
        _ = server.tls_url
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    client.stls(context=server.client_ssl_context())
    login_and_retr_all(client)


def test_without_tls_there_is_no_stls(pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={"alice": "secret"}, tls=False)
    assert server.tls_port is None
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    assert "STLS" not in client.capa()
    assert command(client, "STLS") == b"-ERR Unknown command: STLS\r\n"
    client.quit()
    with pytest.raises(RuntimeError, match="no CA of its own"):
        server.client_ssl_context()


# --- TLS versions -------------------------------------------------------------------------


def test_tls_minimum_refuses_older_clients(make_server: ServerFactory) -> None:
    server = make_server(tls_minimum=ssl.TLSVersion.TLSv1_3)
    assert server.tls_port is not None
    old = server.client_ssl_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        poplib.POP3_SSL("localhost", server.tls_port, timeout=TIMEOUT, context=old)
    client = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    assert tls_socket(client).version() == "TLSv1.3"
    login_and_retr_all(client)
    server.stop()
    first, second = server.transcript
    assert "*: TLS handshake failed: " in first.lines()[0]
    assert second.lines()[0].startswith("*: TLS established: TLSv1.3")


def test_tls_minimum_applies_to_stls(make_server: ServerFactory) -> None:
    server = make_server(tls_minimum=ssl.TLSVersion.TLSv1_3)
    old = server.client_ssl_context()
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        client.stls(context=old)
    abandon(client)


def test_tls_maximum_caps_the_version(make_server: ServerFactory) -> None:
    server = make_server(tls_maximum=ssl.TLSVersion.TLSv1_2)
    assert server.tls_port is not None
    implicit = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    assert tls_socket(implicit).version() == "TLSv1.2"
    login_and_retr_all(implicit)
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    client.stls(context=server.client_ssl_context())
    assert tls_socket(client).version() == "TLSv1.2"
    login_and_retr_all(client)
    server.stop()
    assert str(server.transcript).count("*: TLS established: TLSv1.2 ") == 2


def test_old_tls_asked_for_does_not_warn() -> None:
    # TLS 1.0 on request (c-client's STLS speaks nothing newer): Python's deprecation of the
    # TLSVersion members is not the caller's to act on, and is an error under -W error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # A name of its own: a new certificate, so a server context no other test cached.
        with POP3Server(
            users={"alice": "secret"},
            tls=True,
            tls_names=("old-tls.fakepop.test",),
            tls_minimum=ssl.TLSVersion.TLSv1,
        ):
            pass


# --- certificates -------------------------------------------------------------------------


@pytest.mark.parametrize(("fault", "reason"), FAULTS.items())
def test_certificate_fault_fails_verification(
    make_server: ServerFactory, fault: str, reason: str
) -> None:
    server = make_server(certificate_fault=fault)
    assert server.tls_port is not None
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        poplib.POP3_SSL(
            "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
        )
    assert caught.value.verify_message == reason
    # The same over STLS.
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        client.stls(context=server.client_ssl_context())
    assert caught.value.verify_message == reason
    abandon(client)
    server.stop()
    failed = [s for s in server.transcript if "TLS handshake failed: " in s.text()]
    assert len(failed) == 2


def test_wrong_host_by_ip_is_an_ip_mismatch(make_server: ServerFactory) -> None:
    server = make_server(certificate_fault="wrong-host")
    assert server.tls_port is not None
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        poplib.POP3_SSL(
            "127.0.0.1", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
        )
    assert (
        caught.value.verify_message
        == "IP address mismatch, certificate is not valid for '127.0.0.1'."
    )


@pytest.mark.parametrize("fault", FAULTS)
def test_certificate_fault_passes_without_verification(
    make_server: ServerFactory, fault: str
) -> None:
    server = make_server(certificate_fault=fault)
    assert server.tls_port is not None
    login_and_retr_all(
        poplib.POP3_SSL("localhost", server.tls_port, timeout=TIMEOUT, context=no_verify_context())
    )
    client = poplib.POP3("localhost", server.port, timeout=TIMEOUT)
    client.stls(context=no_verify_context())
    login_and_retr_all(client)


def test_certificate_is_ecdsa_by_default_and_names_localhost(server: POP3Server) -> None:
    assert server.tls_port is not None
    client = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    certificate = peer_certificate(client)
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)
    cn = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    assert [a.value for a in cn] == ["localhost"]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    client.quit()


def test_rsa_key(make_server: ServerFactory) -> None:
    server = make_server(key_type="rsa")
    assert server.tls_port is not None
    client = poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    )
    assert isinstance(peer_certificate(client).public_key(), rsa.RSAPublicKey)
    login_and_retr_all(client)


def test_tls_names_adds_a_name(make_server: ServerFactory, wire: Connect) -> None:
    server = make_server(tls_names=("pop.example.test",))
    assert server.tls_port is not None
    w = wire(server, server.tls_port)
    w.starttls(server.client_ssl_context(), "pop.example.test")
    assert w.line().startswith(b"+OK fakepop ready <")
    # localhost is still named, and a name not given is still refused.
    poplib.POP3_SSL(
        "localhost", server.tls_port, timeout=TIMEOUT, context=server.client_ssl_context()
    ).quit()
    other = wire(server, server.tls_port)
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        other.starttls(server.client_ssl_context(), "other.example.test")


def test_own_certificate(make_server: ServerFactory, tmp_path: Path) -> None:
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", common_name="localhost")
    certfile, keyfile = tmp_path / "chain.pem", tmp_path / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    keyfile.write_bytes(leaf.private_key_pem.bytes())
    server = make_server(certificate=(certfile, keyfile))
    assert server.tls_port is not None
    with pytest.raises(RuntimeError, match="no CA of its own"):
        _ = server.ca_pem
    with pytest.raises(RuntimeError, match="no CA of its own"):
        server.client_ssl_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(context)
    login_and_retr_all(
        poplib.POP3_SSL("localhost", server.tls_port, timeout=TIMEOUT, context=context)
    )
    client = poplib.POP3("127.0.0.1", server.port, timeout=TIMEOUT)
    client.stls(context=context)
    login_and_retr_all(client)


# --- closing ------------------------------------------------------------------------------


@pytest.mark.parametrize("implicit", [True, False], ids=["implicit", "stls"])
def test_quit_ends_tls_with_close_notify(server: POP3Server, wire: Connect, implicit: bool) -> None:
    if implicit:
        w = wire(server, server.tls_port)
        w.starttls(server.client_ssl_context())
        w.line()
    else:
        w = wire(server)
        w.line()
        assert w.command(b"STLS") == b"+OK Begin TLS negotiation\r\n"
        w.starttls(server.client_ssl_context())
    assert w.command(b"USER alice") == b"+OK Send PASS\r\n"
    assert w.command(b"PASS secret").startswith(b"+OK ")
    assert w.command(b"QUIT") == b"+OK fakepop signing off (0 deleted, 2 left)\r\n"
    tls = w.sock
    assert isinstance(tls, ssl.SSLSocket)
    # With suppress_ragged_eofs=False a close without close_notify raises SSLEOFError.
    assert tls.recv(4096) == b""
    plain = tls.unwrap()  # answers the close_notify; the server then half-closes TCP
    w.sock = plain
    assert plain.recv(4096) == b""


# --- a CA kept in a directory ---------------------------------------------------------------


def test_a_new_cert_dir_gets_a_ca_and_keeps_it(tmp_path: Path) -> None:
    assert not (tmp_path / "new").exists()
    authority = Authority.load_or_create(tmp_path / "new")
    cert = authority.ca_pem
    assert cert == tmp_path / "new" / CA_CERT
    assert cert.read_bytes() == authority.ca.cert_pem.bytes()
    again = Authority.load_or_create(tmp_path / "new")
    assert again.ca.cert_pem.bytes() == cert.read_bytes()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / CA_CERT).write_bytes(cert.read_bytes())
    with pytest.raises(AuthorityError, match=r"holds ca\.pem but not ca\.key"):
        Authority.load_or_create(tmp_path / "half")
    (tmp_path / "half" / CA_KEY).write_bytes(
        Authority.load_or_create(tmp_path / "other").ca.private_key_pem.bytes()
    )
    with pytest.raises(AuthorityError, match="is not the key of"):
        Authority.load_or_create(tmp_path / "half")


def test_the_ca_files_are_a_certificate_for_clients_and_a_private_key(tmp_path: Path) -> None:
    authority = Authority.load_or_create(tmp_path)
    assert (tmp_path / CA_CERT).read_bytes() == authority.ca.cert_pem.bytes()
    assert (tmp_path / CA_KEY).read_bytes() == authority.ca.private_key_pem.bytes()
    assert (tmp_path / CA_KEY).stat().st_mode & 0o077 == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [CA_KEY, CA_CERT]  # nothing left over


def test_replace_makes_a_new_ca_where_the_files_are_no_ca(tmp_path: Path) -> None:
    (tmp_path / CA_CERT).write_bytes(trustme.CA().cert_pem.bytes())  # and no key
    with pytest.raises(AuthorityError):
        Authority.load_or_create(tmp_path)
    authority = Authority.load_or_create(tmp_path, replace=True)
    assert (tmp_path / CA_CERT).read_bytes() == authority.ca.cert_pem.bytes()
    assert Authority.load_or_create(tmp_path).ca.cert_pem.bytes() == authority.ca.cert_pem.bytes()


def test_a_directory_that_cannot_be_made_says_so(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(AuthorityError, match="cannot keep a CA in"):
        Authority.load_or_create(tmp_path / "file" / "ca")


def _ca_of(directory: str) -> bytes:
    return Authority.load_or_create(directory).ca.cert_pem.bytes()


def test_processes_starting_at_once_on_one_directory_get_one_ca(tmp_path: Path) -> None:
    # As pytest-xdist workers on one cache, or two fakepop serve on one volume, do.
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pems = pool.map(_ca_of, [os.fspath(tmp_path)] * 8)
    assert set(pems) == {(tmp_path / CA_CERT).read_bytes()}
