"""Certificates made at run time: a throwaway CA, leaf certificates and SSL contexts.

The CA is made once per process and its leaves once per set of names, so a
TLS server after the first costs no more to start than a plain one. A CA that
clients must trust across runs is kept in a directory (``Authority.load_or_create``).
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import enum
import fcntl
import functools
import ipaddress
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fakepop.mail.loaders import read_file

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
COMMON_NAME = "localhost"  # fetchmail 6.4 rejects a leaf whose subject has no common name
WRONG_HOST = "wrong-host.invalid"  # never resolves (RFC 2606), so never matches what a client dials
CA_CERT = "ca.pem"  # in a CA's directory: the certificate, what clients are given
CA_KEY = "ca.key"  # and its private key, readable by its owner only

# The directory of the CA files of authorities kept nowhere else: one per process, removed at
# exit, and by a watcher process when this one is killed (SIGKILL runs no atexit). The watcher
# reads a pipe only this process writes to; its end, whatever ended the process, is its cue.
_SCRATCH_PREFIX = "fakepop-ca-"
_WATCHER = (
    "import shutil, sys; sys.stdin.buffer.read(); shutil.rmtree(sys.argv[1], ignore_errors=True)"
)
_scratch: Path | None = None
_scratch_lock = threading.Lock()

KeyType = Literal["ecdsa", "rsa"]
_TRUSTME_KEY = {"ecdsa": trustme.KeyType.ECDSA, "rsa": trustme.KeyType.RSA}


class CertificateFault(enum.Enum):
    """A way the server's certificate can be wrong, for testing a client's verification."""

    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    WRONG_HOST = "wrong-host"
    UNTRUSTED_CA = "untrusted-ca"
    SELF_SIGNED = "self-signed"


@dataclass(frozen=True)
class ServerCertificate:
    """A certificate chain and its private key, in PEM."""

    chain_pem: bytes
    key_pem: bytes

    def server_context(
        self,
        minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
        maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
    ) -> ssl.SSLContext:
        """A server-side context with this certificate, made once per set of versions."""
        return _server_context(self, minimum, maximum)


@functools.cache
def _server_context(
    certificate: ServerCertificate, minimum: ssl.TLSVersion, maximum: ssl.TLSVersion
) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0 and 1.1; a test server asked for them means it.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = minimum
        context.maximum_version = maximum
    if minimum < ssl.TLSVersion.TLSv1_2:
        context.set_ciphers(
            "DEFAULT:@SECLEVEL=0"
        )  # OpenSSL refuses TLS 1.0/1.1 at its default level
    # load_cert_chain reads only files: hand it the PEM through one that lives for the call.
    with tempfile.NamedTemporaryFile(suffix=".pem") as pem:
        pem.write(certificate.key_pem + certificate.chain_pem)
        pem.flush()
        context.load_cert_chain(pem.name)
    return context


class AuthorityError(Exception):
    """A CA's directory that cannot be used; the message says what to do about it."""


class Authority:
    """A certificate authority and the PEM file of its certificate for clients to trust.

    Args:
        ca: the trustme CA to use; a new ECDSA one by default.
    """

    def __init__(self, ca: trustme.CA | None = None) -> None:
        self.ca = ca or trustme.CA()
        self._lock = threading.Lock()
        self._leaves: dict[
            tuple[tuple[str, ...], KeyType, CertificateFault | None], ServerCertificate
        ] = {}
        self._ca_pem: Path | None = None

    @classmethod
    def load_or_create(
        cls, directory: str | os.PathLike[str], *, replace: bool = False
    ) -> Authority:
        """The CA kept in ``directory``, made there first if it is not.

        The directory holds ``ca.pem``, the certificate, which ``ca_pem`` then names
        and clients are given, and ``ca.key``, its key, readable by its owner only.
        Processes that call this at once on one directory take turns (an ``flock`` on
        it), so they all get the same CA.

        Args:
            directory: where the CA is kept; made if missing.
            replace: make a new CA in place of files that are not a CA and its key,
                rather than refuse them: for a cache, whose files are fakepop's own.

        Raises:
            AuthorityError: only one of the two files is there, or they are not a CA
                and its key (unless ``replace``), or the directory cannot be written.
        """
        where = Path(directory)
        try:
            where.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(where, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise AuthorityError(f"cannot keep a CA in {where}: {e.strerror or e}") from e
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            cert, key = where / CA_CERT, where / CA_KEY
            if cert.exists() or key.exists():
                try:
                    authority = cls(_load_ca(cert, key))
                except AuthorityError:
                    if not replace:
                        raise
                else:
                    authority._ca_pem = cert
                    return authority
            return cls._create(cert, key)
        finally:
            os.close(descriptor)  # and with it the lock

    @classmethod
    def _create(cls, cert: Path, key: Path) -> Authority:
        authority = cls()
        authority._ca_pem = cert
        try:
            # Each file written beside and renamed, the key first: whoever finds ca.pem
            # finds its key. The key is private from the start: a CA key others can read
            # lets them impersonate any host.
            _write_new(key, authority.ca.private_key_pem.bytes(), 0o600)
            _write_new(cert, authority.ca.cert_pem.bytes(), 0o666)  # less the umask
        except OSError as e:
            raise AuthorityError(f"cannot write the CA to {cert.parent}: {e.strerror or e}") from e
        return authority

    @property
    def ca_pem(self) -> Path:
        """The CA certificate as a PEM file: give it to curl --cacert, fetchmail, openssl."""
        with self._lock:
            if self._ca_pem is None:
                directory = Path(tempfile.mkdtemp(dir=_scratch_directory()))
                self._ca_pem = directory / CA_CERT
                self.ca.cert_pem.write_to_path(str(self._ca_pem))
            return self._ca_pem

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA and checks host names."""
        # Only this CA: loading the system's store as well would cost tens of milliseconds.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, and checks host names
        context.load_verify_locations(cadata=self.ca.cert_pem.bytes().decode("ascii"))
        return context

    def certificate(
        self,
        names: tuple[str, ...] = DEFAULT_NAMES,
        key_type: KeyType = "ecdsa",
        fault: CertificateFault | None = None,
    ) -> ServerCertificate:
        """A leaf for ``names``, issued once per set of names, key type and fault."""
        key = (names, key_type, fault)
        with self._lock:
            certificate = self._leaves.get(key)
            if certificate is None:
                certificate = self._leaves[key] = self._issue(names, key_type, fault)
            return certificate

    def _issue(
        self, names: tuple[str, ...], key_type: KeyType, fault: CertificateFault | None
    ) -> ServerCertificate:
        if fault is CertificateFault.SELF_SIGNED:
            return _self_signed(names, key_type)
        issuer = stranger_authority().ca if fault is CertificateFault.UNTRUSTED_CA else self.ca
        now = datetime.datetime.now(datetime.UTC)
        not_before, not_after = None, None
        if fault is CertificateFault.EXPIRED:
            not_before, not_after = (
                now - datetime.timedelta(days=60),
                now - datetime.timedelta(days=1),
            )
        elif fault is CertificateFault.NOT_YET_VALID:
            not_before, not_after = (
                now + datetime.timedelta(days=1),
                now + datetime.timedelta(days=60),
            )
        common_name = COMMON_NAME
        if fault is CertificateFault.WRONG_HOST:
            names, common_name = (WRONG_HOST,), WRONG_HOST
        leaf = issuer.issue_cert(
            *names,
            common_name=common_name,
            not_before=not_before,
            not_after=not_after,
            key_type=_TRUSTME_KEY[key_type],
        )
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        return ServerCertificate(chain, leaf.private_key_pem.bytes())


def _load_ca(cert: Path, key: Path) -> trustme.CA:
    """The CA whose certificate and key are in ``cert`` and ``key``, checked to be a pair."""
    if not (cert.exists() and key.exists()):
        have, lack = (cert, key) if cert.exists() else (key, cert)
        raise AuthorityError(
            f"{cert.parent} holds {have.name} but not {lack.name}: a CA needs both;"
            f" add {lack.name}, or remove {have.name} to have a new CA made"
        )
    try:
        cert_pem, key_pem = read_file(cert), read_file(key)
        certificate = x509.load_pem_x509_certificate(cert_pem)
        private_key = serialization.load_pem_private_key(key_pem, password=None)
    except (OSError, ValueError, TypeError) as e:
        raise AuthorityError(f"{cert} and {key} must be a CA certificate and its key: {e}") from e
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if private_key.public_key().public_bytes(*der) != certificate.public_key().public_bytes(*der):
        raise AuthorityError(f"{key} is not the key of {cert}: remove both for a new CA")
    return trustme.CA.from_pem(cert_pem, key_pem)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all: into a file beside it, then renamed over it."""
    partial = path.with_name(f".{path.name}.new")
    partial.unlink(missing_ok=True)  # left by a process killed while writing
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    os.replace(partial, path)


@functools.cache
def _scratch_directory() -> Path:
    """This process's directory for CA files, made on first use, gone when the process is."""
    global _scratch
    with _scratch_lock:
        if _scratch is None:
            _scratch = Path(tempfile.mkdtemp(prefix=_SCRATCH_PREFIX))
            atexit.register(_remove, _scratch, _watch(_scratch))
        return _scratch


def _watch(directory: Path) -> subprocess.Popen[bytes] | None:
    """A process that removes ``directory`` once this one has ended, however it ended."""
    if not sys.executable:  # embedded: there is no interpreter to start; atexit alone
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHER, str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C at the terminal is for this process, not it
        )
    except OSError:
        return None


def _remove(directory: Path, watcher: subprocess.Popen[bytes] | None) -> None:
    """At exit: let the watcher go, and remove the directory whether it did or not."""
    if watcher is not None and watcher.stdin is not None:
        watcher.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):  # it gets there on its own
            watcher.wait(5)
    shutil.rmtree(directory, ignore_errors=True)


def default_authority() -> Authority:
    """The process's CA, made on first use."""
    return Authority()


@functools.cache
def stranger_authority() -> Authority:
    """A second CA that no client is told to trust, for the untrusted-CA fault."""
    return Authority()


def _self_signed(names: tuple[str, ...], key_type: KeyType) -> ServerCertificate:
    """A leaf that signs itself: trustme issues only CA-signed leaves."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return ServerCertificate(
        certificate.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _general_names(names: tuple[str, ...]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result
