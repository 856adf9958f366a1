"""Authentication with real clients as processes: curl 7.88 and fetchmail 6.4.

They are skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).

What they speak, as these tests pin it: curl does PLAIN, LOGIN, CRAM-MD5, XOAUTH2 and
OAUTHBEARER (no SCRAM); fetchmail 6.4 does CRAM-MD5 and USER/PASS (and APOP as a
protocol), but none of PLAIN, LOGIN, SCRAM, XOAUTH2 or OAUTHBEARER for POP3.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import clients
import pytest
from clients import FetchmailHome, environment, printed, program, run, stripcr
from pop3 import ServerFactory, filled

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

MESSAGE = b"From: a@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\nend"
WIRE = to_crlf(MESSAGE)
ADMIN_MESSAGE = b"From: b@example.com\r\nSubject: admin's own\r\n\r\nx\r\n"  # CRLF already

LOGIN_DENIED = b"curl: (67) Login denied\n"


def fill(server: POP3Server) -> None:
    server.mailbox("alice").add(MESSAGE)
    server.mailbox("admin").add(ADMIN_MESSAGE)
    server.add_token("alice", "alice-token")
    server.add_token("alice", "old-token", expires_in=-1)


@pytest.fixture
def make_server(pop3_server_factory: ServerFactory) -> ServerFactory:
    return filled(pop3_server_factory, {"alice": "secret", "admin": "adminpw"}, fill, tls=False)


@pytest.fixture
def server(make_server: ServerFactory) -> POP3Server:
    return make_server()


def said(server: POP3Server, *, mask: bool = True) -> list[list[str]]:
    """What clients said in each session, after stopping the server so all are recorded."""
    server.stop()
    return [
        [line for line in session.lines(mask) if line.startswith("C: ")]
        for session in server.transcript
    ]


def session_lines(server: POP3Server, *, mask: bool = True) -> list[list[str]]:
    server.stop()
    return [session.lines(mask) for session in server.transcript]


# --- curl ---------------------------------------------------------------------------------


class Curl:
    """curl retrieving message 1."""

    def __init__(self, curl: clients.Curl) -> None:
        self.curl = curl

    def __call__(
        self, server: POP3Server, *options: str, user: str = "alice:secret"
    ) -> subprocess.CompletedProcess[bytes]:
        return self.curl([*options, f"pop3://127.0.0.1:{server.port}/1"], user=user)


@pytest.fixture
def curl(tmp_path: Path) -> Curl:
    return Curl(clients.Curl(tmp_path))


def ok(result: subprocess.CompletedProcess[bytes]) -> bytes:
    assert (result.returncode, result.stderr) == (0, b""), result.stderr
    return result.stdout


def denied(result: subprocess.CompletedProcess[bytes]) -> None:
    assert (result.returncode, result.stdout, result.stderr) == (67, b"", LOGIN_DENIED)


# What curl sends, with and without --sasl-ir: CRAM-MD5 has no initial response to send.
CURL_EXCHANGES = {
    ("PLAIN", False): ["C: AUTH PLAIN", "C: ****"],
    ("PLAIN", True): ["C: AUTH PLAIN ****"],
    ("LOGIN", False): ["C: AUTH LOGIN", "C: ****", "C: ****"],
    ("LOGIN", True): ["C: AUTH LOGIN ****", "C: ****"],
    ("CRAM-MD5", False): ["C: AUTH CRAM-MD5", "C: ****"],
    ("CRAM-MD5", True): ["C: AUTH CRAM-MD5", "C: ****"],
}


@pytest.mark.parametrize("sasl_ir", [False, True], ids=["no-ir", "sasl-ir"])
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_curl_password_mechanisms(
    server: POP3Server, curl: Curl, mechanism: str, sasl_ir: bool
) -> None:
    options = ["--login-options", f"AUTH={mechanism}", *(["--sasl-ir"] if sasl_ir else [])]
    assert ok(curl(server, *options)) == WIRE
    denied(curl(server, *options, user="alice:wrong"))
    good, bad = said(server)
    exchange = CURL_EXCHANGES[mechanism, sasl_ir]
    assert good == ["C: CAPA", *exchange, "C: RETR 1", "C: QUIT"]
    # curl hangs up at once after -ERR, without QUIT.
    assert bad == ["C: CAPA", *exchange]
    assert server.transcript[1].lines()[-1] == "S: -ERR [AUTH] Authentication failed"


def test_curl_prefers_cram_md5(server: POP3Server, curl: Curl) -> None:
    assert ok(curl(server)) == WIRE
    assert said(server)[0][:3] == ["C: CAPA", "C: AUTH CRAM-MD5", "C: ****"]


def test_curl_has_no_scram(server: POP3Server, curl: Curl) -> None:
    for mechanism in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        denied(curl(server, "--login-options", f"AUTH={mechanism}"))
    # Nothing in common: curl gives up without an AUTH.
    assert said(server) == [["C: CAPA"], ["C: CAPA"]]


def test_curl_plain_with_authzid(server: POP3Server, curl: Curl) -> None:
    server.store["admin"].may_act_as.add("alice")
    plain = ["--login-options", "AUTH=PLAIN", "--sasl-authzid"]
    # admin logs in as alice: alice's message comes back, not admin's.
    assert ok(curl(server, *plain, "alice", user="admin:adminpw")) == WIRE
    denied(curl(server, *plain, "admin", user="alice:secret"))
    allowed, refused = session_lines(server, mask=False)
    assert "C: AUTH PLAIN" in allowed
    assert "C: YWxpY2UAYWRtaW4AYWRtaW5wdw==" in allowed  # "alice\0admin\0adminpw"
    assert refused[-1] == "S: -ERR [AUTH] alice may not log in as admin"


def test_curl_drops_the_authzid_unless_told_to_use_plain(server: POP3Server, curl: Curl) -> None:
    server.store["admin"].may_act_as.add("alice")
    # CRAM-MD5, curl's first choice, has no room for an authzid: curl logs admin in as admin.
    assert ok(curl(server, "--sasl-authzid", "alice", user="admin:adminpw")) == ADMIN_MESSAGE
    (session,) = session_lines(server)
    assert "C: AUTH CRAM-MD5" in session
    assert f"S: +OK admin's maildrop has 1 message ({len(ADMIN_MESSAGE)} octets)" in session


def test_curl_with_a_virtual_domain_login(make_server: ServerFactory, curl: Curl) -> None:
    server = make_server(domains=("example.com",))
    user = "alice@example.com:secret"
    assert ok(curl(server, "--login-options", "AUTH=PLAIN", user=user)) == WIRE
    assert ok(curl(server, "--login-options", "AUTH=+APOP", user=user)) == WIRE
    plain, apop = said(server)
    assert plain[1] == "C: AUTH PLAIN"
    assert apop[0] == "C: CAPA"
    assert apop[1] == "C: APOP alice@example.com ****"


BEARER_ERRORS = {
    "XOAUTH2": b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}',
    "OAUTHBEARER": b'{"status":"invalid_token","scope":"https://mail.google.com/"}',
}


@pytest.mark.parametrize("sasl_ir", [False, True], ids=["no-ir", "sasl-ir"])
@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_curl_bearer_token(
    make_server: ServerFactory, curl: Curl, mechanism: str, sasl_ir: bool
) -> None:
    # With one mechanism offered, --oauth2-bearer makes curl use it.
    server = make_server(sasl=(mechanism,))
    ir = ["--sasl-ir"] if sasl_ir else []
    assert ok(curl(server, "--oauth2-bearer", "alice-token", *ir, user="alice")) == WIRE
    for token in ("bad-token", "old-token"):
        denied(curl(server, "--oauth2-bearer", token, *ir, user="alice"))
    good, bad, expired = session_lines(server)
    # Without --sasl-ir curl takes the two-step form: AUTH, an empty challenge, the token.
    auth = f"C: AUTH {mechanism}"
    start = [f"{auth} ****"] if sasl_ir else [auth, "S: + ", "C: ****"]
    at = good.index(start[0])
    assert good[at : at + len(start) + 1] == [
        *start,
        f"S: +OK alice's maildrop has 1 message ({len(WIRE)} octets)",
    ]
    for failed in (bad, expired):
        at = failed.index(start[0]) + len(start)
        assert failed[at].startswith("S: + ")
        assert base64.b64decode(failed[at][5:]) == BEARER_ERRORS[mechanism]
        if mechanism == "OAUTHBEARER":
            # RFC 7628: curl answers the error with ^A and takes the -ERR.
            assert failed[at + 1 :] == ["C: ****", "S: -ERR [AUTH] Invalid or expired token"]
        else:
            # curl 7.88 takes the XOAUTH2 error challenge as the end, and hangs up.
            assert failed[at + 1 :] == []


def test_curl_oauthbearer_message_and_error_answer(make_server: ServerFactory, curl: Curl) -> None:
    server = make_server(sasl=("OAUTHBEARER",))
    denied(curl(server, "--oauth2-bearer", "bad-token", user="alice"))
    (session,) = said(server, mask=False)
    message = f"n,a=alice,\x01host=127.0.0.1\x01port={server.port}\x01auth=Bearer bad-token\x01\x01"
    assert session[-2] == "C: " + base64.b64encode(message.encode()).decode()
    assert session[-1] == "C: AQ=="  # a single ^A


NO_OAUTHBEARER = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")


@pytest.mark.parametrize(
    ("sasl", "login_options", "chosen"),
    [
        pytest.param(None, None, "OAUTHBEARER", id="all"),
        pytest.param(None, "AUTH=PLAIN", "OAUTHBEARER", id="all-asking-plain"),
        pytest.param(NO_OAUTHBEARER, None, "XOAUTH2", id="xoauth2"),
        pytest.param(NO_OAUTHBEARER, "AUTH=PLAIN", "XOAUTH2", id="xoauth2-asking-plain"),
        pytest.param(("PLAIN", "CRAM-MD5"), None, None, id="no-bearer-mechanism"),
        pytest.param(("PLAIN", "CRAM-MD5"), "AUTH=PLAIN", "PLAIN", id="plain-asked-for"),
    ],
)
def test_curl_bearer_mechanism_follows_capa(
    make_server: ServerFactory,
    curl: Curl,
    sasl: tuple[str, ...] | None,
    login_options: str | None,
    chosen: str | None,
) -> None:
    # curl 7.88 with a bearer token takes a bearer mechanism whenever CAPA offers one, even
    # when AUTH= asks for another; with none offered it needs AUTH= to use the password.
    server = make_server() if sasl is None else make_server(sasl=sasl)
    options = ["--oauth2-bearer", "alice-token"]
    if login_options is not None:
        options += ["--login-options", login_options]
    result = curl(server, *options)
    if chosen is None:
        denied(result)
    else:
        assert ok(result) == WIRE
    (session,) = said(server)
    assert session[:2] == (["C: CAPA"] if chosen is None else ["C: CAPA", f"C: AUTH {chosen}"])


def test_curl_on_a_sasl_only_server(make_server: ServerFactory, curl: Curl) -> None:
    server = make_server(user_login=False, apop=False)
    assert ok(curl(server)) == WIRE
    denied(curl(server, "--login-options", "AUTH=+APOP"))  # nothing but SASL to log in with
    sasl, apop = said(server)
    assert sasl[1] == "C: AUTH CRAM-MD5"
    assert apop == ["C: CAPA"]


# --- fetchmail ----------------------------------------------------------------------------


class Fetchmail(FetchmailHome):
    """fetchmail without TLS, told on its command line how to log in."""

    def __call__(
        self, server: POP3Server, *options: str, password: str = "secret", proto: str = "POP3"
    ) -> subprocess.CompletedProcess[bytes]:
        rc = (
            "set no syslog\n"
            f"poll localhost proto {proto} port {server.port}\n"
            f'  user "alice" there with password "{password}" is "root" here\n'
            # No TLS here: without it, fetchmail 6.4 asks for STLS and gives up.
            "  sslproto ''\n"
            f"  {self.deliver}\n"
        )
        return self.run(rc, "--verbose", *options)


@pytest.fixture
def fetch(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path)


AS_DELIVERED = stripcr(WIRE)  # fetchmail hands the MDA LF line ends
PS_AUTHFAIL = 3


def fetched(fetch: Fetchmail, result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 0, printed(result)
    assert fetch.delivered(strip_received=True) == [AS_DELIVERED]


def refused(fetch: Fetchmail, result: subprocess.CompletedProcess[bytes], reason: str) -> None:
    text = printed(result)
    assert result.returncode == PS_AUTHFAIL, text
    assert f"fetchmail: {reason}\n" in text
    assert "fetchmail: Authorization failure on alice@localhost\n" in text
    assert fetch.delivered() == []


def test_fetchmail_cram_md5(server: POP3Server, fetch: Fetchmail) -> None:
    fetched(fetch, fetch(server, "--auth", "cram-md5"))
    assert server.mailbox("alice").messages == []  # fetched, deleted, QUIT committed
    assert said(server)[0][:3] == ["C: CAPA", "C: AUTH CRAM-MD5", "C: ****"]


def test_fetchmail_cram_md5_wrong_password(server: POP3Server, fetch: Fetchmail) -> None:
    result = fetch(server, "--auth", "cram-md5", password="wrong")
    refused(fetch, result, "[AUTH] Authentication failed")
    assert said(server) == [["C: CAPA", "C: AUTH CRAM-MD5", "C: ****", "C: QUIT"]]


def test_fetchmail_password_is_user_pass(server: POP3Server, fetch: Fetchmail) -> None:
    fetched(fetch, fetch(server, "--auth", "password"))
    # No CAPA, no AUTH: straight to USER and PASS.
    assert said(server)[0][:2] == ["C: USER alice", "C: PASS ****"]


def test_fetchmail_password_wrong(server: POP3Server, fetch: Fetchmail) -> None:
    result = fetch(server, "--auth", "password", password="wrong")
    refused(fetch, result, "[AUTH] Invalid user name or password")
    assert said(server) == [["C: USER alice", "C: PASS ****", "C: QUIT"]]


def test_fetchmail_any_picks_cram_md5(server: POP3Server, fetch: Fetchmail) -> None:
    fetched(fetch, fetch(server, "--auth", "any"))
    assert said(server)[0][:3] == ["C: CAPA", "C: AUTH CRAM-MD5", "C: ****"]


def test_fetchmail_any_falls_back_to_user_pass_after_cram_md5_fails(
    server: POP3Server, fetch: Fetchmail
) -> None:
    result = fetch(server, "--auth", "any", password="wrong")
    refused(fetch, result, "[AUTH] Invalid user name or password")
    assert said(server) == [
        ["C: CAPA", "C: AUTH CRAM-MD5", "C: ****", "C: USER alice", "C: PASS ****", "C: QUIT"]
    ]


def test_fetchmail_any_with_only_plain_offered_uses_user_pass(
    make_server: ServerFactory, fetch: Fetchmail
) -> None:
    # fetchmail 6.4 has no PLAIN for POP3.
    server = make_server(sasl=("PLAIN",))
    fetched(fetch, fetch(server, "--auth", "any"))
    assert said(server)[0][:3] == ["C: CAPA", "C: USER alice", "C: PASS ****"]


def test_fetchmail_on_a_sasl_only_server(make_server: ServerFactory, fetch: Fetchmail) -> None:
    server = make_server(user_login=False, apop=False)
    fetched(fetch, fetch(server, "--auth", "any"))
    result = fetch(server, "--auth", "password")
    assert result.returncode == PS_AUTHFAIL, printed(result)
    assert "fetchmail: Unknown command: USER\n" in printed(result)
    cram, user = said(server)
    assert cram[1] == "C: AUTH CRAM-MD5"
    assert user == ["C: USER alice", "C: QUIT"]


def test_fetchmail_apop(server: POP3Server, fetch: Fetchmail) -> None:
    fetched(fetch, fetch(server, proto="APOP"))
    assert said(server)[0][0] == "C: APOP alice ****"


def test_fetchmail_apop_wrong_password(server: POP3Server, fetch: Fetchmail) -> None:
    result = fetch(server, proto="APOP", password="wrong")
    refused(fetch, result, "[AUTH] Invalid user name or password")
    assert said(server) == [["C: APOP alice ****", "C: QUIT"]]


@pytest.mark.parametrize(
    ("auth", "known"),
    [("cram-md5", True), ("oauthbearer", False), ("xoauth2", False), ("scram-sha-1", False)],
)
def test_fetchmail_auth_types(tmp_path: Path, auth: str, known: bool) -> None:
    fetchmail = program("fetchmail")
    result = run([fetchmail, "--auth", auth, "--version"], environment(tmp_path))
    if known:
        assert result.returncode == 0, printed(result)
        assert b"This is fetchmail release 6.4." in result.stdout
    else:
        assert result.returncode == 5, printed(result)  # PS_SYNTAX
        assert f"Invalid authentication `{auth}' specified.\n" in printed(result)
