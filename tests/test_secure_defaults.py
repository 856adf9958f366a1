"""Secure by default: the control API, TLS versions, private key files, paths, secrets in logs."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import stat
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from pop3 import LineClient, ServerFactory
from serving import FAKEPOP, environment, serve

from fakepop import POP3Server
from fakepop.control import ControlServer
from fakepop.protocol import apop_digest

pytest_plugins = ["pytester"]  # allowed in a test module; a non-root conftest may not say it

TIMEOUT = 5.0
PASSWORD = "pw-Zq8-never-logged"
TOKEN = "tok-Xy7-never-printed"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def non_loopback_address() -> str | None:
    """An address of this host that is not loopback, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only picks the outgoing interface
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def unreachable_from_outside(port: int) -> None:
    """Nothing listens on ``port`` at this host's non-loopback address."""
    address = non_loopback_address()
    if address is None:
        return  # a host with loopback only: nothing else to reach it by
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=TIMEOUT).close()


def status_of(url: str, token: str | None = None, scheme: str = "Bearer") -> int:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with NO_PROXY.open(request, timeout=TIMEOUT) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def fetch(url: str) -> bytes:
    with NO_PROXY.open(url, timeout=TIMEOUT) as response:
        body: bytes = response.read()
        return body


def fakepop(*argv: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """Run ``fakepop`` to its end; a run that does not end is killed."""
    return subprocess.run(
        [*FAKEPOP, *argv],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=30,
        umask=umask,
        check=False,
    )


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def old_tls_client(context: ssl.SSLContext) -> ssl.SSLContext:
    """The same context offering only TLS 1.0 and 1.1, as an outdated client would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1_1 is
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL will not offer them at all
    return context


def refused_as_too_old(host: str, port: int, context: ssl.SSLContext) -> None:
    with (
        socket.create_connection((host, port), timeout=TIMEOUT) as sock,
        pytest.raises(ssl.SSLError) as refused,
    ):
        context.wrap_socket(sock, server_hostname="localhost").close()
    if "NO_PROTOCOLS_AVAILABLE" in str(refused.value):
        pytest.skip("this OpenSSL cannot offer TLS 1.1 even at security level 0")
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(refused.value)  # the server's alert


# --- the control API --------------------------------------------------------------------------


@pytest.fixture
def pop3(pop3_server_factory: ServerFactory) -> POP3Server:
    return pop3_server_factory(users={"alice": PASSWORD}, tls=False)


def test_the_control_api_listens_on_loopback_by_default(pop3: POP3Server) -> None:
    with ControlServer(pop3) as control:
        assert control.host == "127.0.0.1"
        assert status_of(f"{control.url}/accounts") == 200
        unreachable_from_outside(control.port)


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_any_other_address_needs_a_token_or_a_yes(pop3: POP3Server, host: str) -> None:
    with pytest.raises(ValueError, match="without a token"):
        ControlServer(pop3, host)


def test_an_empty_host_never_means_every_address(pop3: POP3Server) -> None:
    # "" is the wildcard to socket.bind: refused, or not listening at all, are both fine.
    with contextlib.suppress(ValueError):
        control = ControlServer(pop3, "")
        with pytest.raises(OSError, match="cannot listen"):
            control.start()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_a_token_guards_everything_but_health(pop3: POP3Server, host: str) -> None:
    with ControlServer(pop3, host, token=TOKEN) as control:
        url = f"http://127.0.0.1:{control.port}/api/v1"
        assert status_of(f"{url}/health") == 200
        for path in ("/accounts", "/transcript", "/faults", "/accounts/alice/messages"):
            assert status_of(url + path) == 401, path
            assert status_of(url + path, TOKEN[:-1]) == 401, path
            assert status_of(url + path, TOKEN + "x") == 401, path
            assert status_of(url + path, TOKEN, scheme="Basic") == 401, path
            assert status_of(url + path, TOKEN) == 200, path
        assert status_of(f"{url}/accounts", TOKEN, scheme="bearer") == 200  # case-insensitive


def test_insecure_must_be_asked_for(pop3: POP3Server) -> None:
    with ControlServer(pop3, "0.0.0.0", insecure=True) as control:
        assert status_of(f"http://127.0.0.1:{control.port}/api/v1/accounts") == 200


def test_the_control_apis_transcript_is_masked_unless_asked(pop3: POP3Server) -> None:
    with session(pop3) as client:
        login(client, "alice", PASSWORD)
    with ControlServer(pop3) as control:
        masked = fetch(f"{control.url}/transcript") + fetch(f"{control.url}/transcript?format=text")
        assert b"PASS ****" in masked
        assert PASSWORD.encode() not in masked
        clear = fetch(f"{control.url}/transcript?mask=false&format=text")
        assert f"PASS {PASSWORD}".encode() in clear


# --- fakepop serve and fakepop ca ---------------------------------------------------------------


def test_serve_json_prints_no_secrets_and_keeps_its_defaults_safe(tmp_path: Path) -> None:
    cert_dir = tmp_path / "ca"
    args = ("--port", "0", "--tls-port", "0", "--control-port", "0", "--json")
    secrets = ("--user", f"alice:{PASSWORD}", "--control-token", TOKEN)
    with contextlib.ExitStack() as stack:
        with umask(0):  # the child's: the key must be private whatever the umask
            served = stack.enter_context(serve(*args, *secrets, "--cert-dir", str(cert_dir)))
        assert PASSWORD not in served.ready
        assert TOKEN not in served.ready
        info = served.info
        # The control API on loopback, and wanting the token.
        assert info["control"]["host"] == "127.0.0.1"
        assert status_of(f"{info['control']['url']}/accounts") == 401
        assert status_of(f"{info['control']['url']}/accounts", TOKEN) == 200
        unreachable_from_outside(info["control"]["port"])
        # The CA key written private, its certificate without it.
        assert info["ca"] == str(cert_dir / "ca.pem")
        assert mode(cert_dir / "ca.key") == 0o600
        assert b"PRIVATE KEY" not in (cert_dir / "ca.pem").read_bytes()
        # TLS 1.2 at least.
        context = ssl.create_default_context(cafile=info["ca"])
        refused_as_too_old("127.0.0.1", info["pop3s"]["port"], old_tls_client(context))
        tls12 = ssl.create_default_context(cafile=info["ca"])
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", info["pop3s"]["port"]), timeout=TIMEOUT) as s,
            tls12.wrap_socket(s, server_hostname="localhost") as tls,
        ):
            assert tls.version() == "TLSv1.2"
        code, out, err = served.stop()
    assert code == 0
    for text in (out, err):
        assert PASSWORD not in text
        assert TOKEN not in text


def test_serve_ready_line_prints_no_secrets() -> None:
    args = ("--port", "0", "--tls-port", "0", "--control-port", "0")
    with serve(*args, "--user", f"alice:{PASSWORD}", "--control-token", TOKEN) as served:
        assert served.ready.startswith("fakepop ready pop3=")
        assert PASSWORD not in served.ready
        assert TOKEN not in served.ready
        assert not any(TOKEN in line for line in served.how_to)
        code, out, err = served.stop()
    assert code == 0
    assert TOKEN not in out + err


def test_fakepop_ca_writes_the_key_private_whatever_the_umask(tmp_path: Path) -> None:
    result = fakepop("ca", "--out", str(tmp_path / "ca"), umask=0)
    assert result.returncode == 0, result.stderr
    assert mode(tmp_path / "ca" / "ca.key") == 0o600
    assert b"PRIVATE KEY" in (tmp_path / "ca" / "ca.key").read_bytes()
    assert b"PRIVATE KEY" not in (tmp_path / "ca" / "ca.pem").read_bytes()
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_refusals_that_keep_files_and_addresses_in_bounds(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    root.mkdir()
    manifest = tmp_path / "fixtures"
    manifest.mkdir()
    (tmp_path / "outside.eml").write_bytes(b"Subject: outside\r\n\r\nnot yours\r\n")
    (manifest / "link.eml").symlink_to(tmp_path / "outside.eml")
    runs = {
        "maildir": ("--maildir", str(root), "--user", "../evil:pw"),
        "hidden": ("--maildir", str(root), "--user", ".evil:pw"),
        "manifest": ("--manifest", str(manifest / "up.toml")),
        "symlink": ("--manifest", str(manifest / "link.toml")),
        "control": ("--control-port", "0", "--control-host", "0.0.0.0"),
    }
    for name, target in (("up", "../outside.eml"), ("link", "link.eml")):
        (manifest / f"{name}.toml").write_text(
            f'[accounts.alice]\npassword = "p"\nmessages = [{{ path = "{target}" }}]\n'
        )
    with concurrent.futures.ThreadPoolExecutor(len(runs)) as pool:
        done = {
            name: pool.submit(fakepop, "serve", "--port", "0", "--tls-port", "0", *argv)
            for name, argv in runs.items()
        }
        results = {name: future.result() for name, future in done.items()}
    says = {
        "maildir": "cannot be a Maildir under",
        "hidden": "cannot be a Maildir under",
        "manifest": "leaves the manifest's directory",
        "symlink": "leaves the manifest's directory",
        "control": "without a token",
    }
    for name, result in results.items():
        assert result.returncode == 2, (name, result.stderr)
        assert says[name] in result.stderr, (name, result.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixtures", "mail", "outside.eml"]
    assert list(root.iterdir()) == []


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(pop3_server_factory: ServerFactory) -> POP3Server:
    return pop3_server_factory(users={"alice": PASSWORD}, tls=True)


def test_tls_below_1_2_is_refused_by_default(tls_server: POP3Server) -> None:
    assert tls_server.tls_port is not None
    refused_as_too_old(
        "127.0.0.1", tls_server.tls_port, old_tls_client(ssl.create_default_context())
    )
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=TIMEOUT) as sock:
        sock.recv(4096)
        sock.sendall(b"STLS\r\n")
        assert sock.recv(4096) == b"+OK Begin TLS negotiation\r\n"
        with pytest.raises(ssl.SSLError, match="TLSV1_ALERT_PROTOCOL_VERSION"):
            old_tls_client(ssl.create_default_context()).wrap_socket(
                sock, server_hostname="localhost"
            )
    tls_server.stop()
    failures = [line for line in str(tls_server.transcript).splitlines() if "TLS handshake" in line]
    assert len(failures) == 2
    assert all("unsupported protocol" in line for line in failures), failures


def test_the_client_contexts_given_out_verify(tls_server: POP3Server) -> None:
    context = tls_server.client_ssl_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


# --- files --------------------------------------------------------------------------------------


def test_the_pytest_caches_ca_key_is_private_whatever_the_umask(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:benchmark")
    pytester.makepyfile(
        """
        def test_uses_the_ca(pop3_authority):
            assert pop3_authority.ca is not None
        """
    )
    with umask(0):
        pytester.runpytest("-p", "no:xdist").assert_outcomes(passed=1)
    cached = pytester.path / ".pytest_cache" / "d" / "fakepop" / "ca.key"
    assert mode(cached) == 0o600
    assert b"PRIVATE KEY" in cached.read_bytes()


def test_the_ca_file_handed_to_clients_holds_no_key(tls_server: POP3Server) -> None:
    assert b"PRIVATE KEY" not in tls_server.ca_pem.read_bytes()


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ".hidden", "a\\b", "x\ny", "x\0y", ""])
def test_the_control_api_keeps_accounts_inside_the_maildir_root(
    tmp_path: Path, name: str, pop3_server_factory: ServerFactory
) -> None:
    root = tmp_path / "mail"
    server = pop3_server_factory(users={}, tls=False, maildir=root)  # no account: no Maildir yet
    with ControlServer(server) as control:
        request = urllib.request.Request(
            f"{control.url}/accounts",
            data=json.dumps({"name": name, "password": "pw"}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            NO_PROXY.open(request, timeout=TIMEOUT)
        refused.value.close()
        assert refused.value.code == 400
        assert {p.name for p in tmp_path.iterdir()} <= {"mail"}
        assert not root.exists() or list(root.iterdir()) == []


@pytest.mark.parametrize("uid", ["../../evil", "a/b", "new:2,S"])
def test_the_control_api_keeps_uids_out_of_file_paths(
    tmp_path: Path, uid: str, pop3_server_factory: ServerFactory
) -> None:
    root = tmp_path / "mail"
    server = pop3_server_factory(users={"alice": "pw"}, tls=False, maildir=root)
    with ControlServer(server) as control:
        quoted = urllib.parse.quote(uid, safe="")
        request = urllib.request.Request(
            f"{control.url}/accounts/alice/messages?uid={quoted}",
            data=b"Subject: x\r\n\r\nx\r\n",
            headers={"Content-Type": "message/rfc822"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            NO_PROXY.open(request, timeout=TIMEOUT)
        refused.value.close()
        assert refused.value.code == 400
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mail"]
        assert [p.name for p in root.iterdir()] == ["alice"]
        assert [p for p in (root / "alice").rglob("*") if p.is_file()] == []


# --- secrets in the transcript --------------------------------------------------------------------


@contextlib.contextmanager
def session(server: POP3Server) -> Iterator[LineClient]:
    """A greeted raw client that says QUIT at the end."""
    with LineClient(server, greeting=True) as client:
        yield client
        client.command("QUIT")


def login(client: LineClient, user: str, password: str) -> None:
    assert client.command(f"USER {user}") == b"+OK Send PASS\r\n"
    assert client.command(f"PASS {password}").startswith(b"+OK")


def test_the_transcript_masks_every_kind_of_login(pop3: POP3Server) -> None:
    token = pop3.add_token("alice", TOKEN)
    plain = b64(b"\0alice\0" + PASSWORD.encode())
    xoauth2 = b64(f"user=alice\1auth=Bearer {token}\1\1".encode())
    secrets = [PASSWORD.encode(), plain, b64(PASSWORD.encode()), xoauth2]
    with session(pop3) as client:
        assert client.command("USER alice") == b"+OK Send PASS\r\n"
        assert client.command(f"PASS {PASSWORD}x").startswith(b"-ERR [AUTH]")  # a near miss
        login(client, "alice", PASSWORD)
    with session(pop3) as client:
        timestamp = re.search(rb"<[^>]+>", client.greeting)
        assert timestamp is not None
        digest = apop_digest(timestamp[0].decode(), PASSWORD)
        secrets.append(digest.encode())
        assert client.command(f"APOP alice {digest}").startswith(b"+OK")
    with session(pop3) as client:
        assert client.command(b"AUTH PLAIN " + plain).startswith(b"+OK")
    with session(pop3) as client:
        assert client.command("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
        assert client.command(b64(b"alice")) == b"+ UGFzc3dvcmQ6\r\n"
        assert client.command(b64(PASSWORD.encode())).startswith(b"+OK")
    with session(pop3) as client:
        challenge = client.command("AUTH CRAM-MD5")
        stamp = base64.b64decode(challenge[2:])
        cram = hmac.new(PASSWORD.encode(), stamp, hashlib.md5).hexdigest()
        secrets.append(b64(f"alice {cram}".encode()))
        assert client.command(b64(f"alice {cram}".encode())).startswith(b"+OK")
    with session(pop3) as client:
        assert client.command(b"AUTH XOAUTH2 " + xoauth2).startswith(b"+OK")
    pop3.stop()
    masked = pop3.transcript.text().encode()
    clear = pop3.transcript.text(mask=False).encode()
    assert masked.count(b"+OK alice's maildrop") == 6  # every login is in it ...
    for secret in secrets:
        assert secret not in masked, secret  # ... and no secret
        assert secret in clear, secret  # unless asked
    assert token.encode() not in clear  # sent in base64 only, so never logged as such


@pytest.mark.parametrize("separator", ["\t", "\0"])
def test_a_password_after_a_wrong_separator_is_not_logged(pop3: POP3Server, separator: str) -> None:
    with session(pop3) as client:
        assert client.command("USER alice") == b"+OK Send PASS\r\n"
        assert client.command(f"PASS{separator}{PASSWORD}").startswith(b"-ERR ")
    pop3.stop()
    assert PASSWORD not in pop3.transcript.text()


def test_a_failing_tests_report_shows_the_transcript_masked(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:benchmark")
    pytester.makepyfile(
        f"""
        import poplib


        def test_fails_after_a_login(pop3_server):
            pop3_server.users["alice"] = {PASSWORD!r}
            client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            client.user("alice")
            client.pass_({PASSWORD!r})
            client.quit()
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:xdist", "--tb=short")  # no source: it holds it
    result.assert_outcomes(failed=1)
    report = result.stdout.str()
    assert "POP3 transcript" in report
    assert "C: PASS ****" in report
    assert PASSWORD not in report
