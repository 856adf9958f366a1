"""AUTH (RFC 5034) and the login rules over real sockets, with a raw client of our own.

poplib has no AUTH, and its private _shortcmd is untyped: a few lines of socket code
say exactly what goes over the wire instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from pop3 import LineClient, ServerFactory, filled
from scramp import ScramClient

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf
from fakepop.protocol import apop_digest

DELAY = 0.2  # auth_failure_delay in the timing tests

MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\nend\n",
]
OCTETS = sum(len(to_crlf(m)) for m in MESSAGES)
ALICE_IN = b"+OK alice's maildrop has 2 messages (%d octets)\r\n" % OCTETS
ALICE_STAT = b"+OK 2 %d\r\n" % OCTETS

ALL = ["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"]
EMPTY_CHALLENGE = b"+ \r\n"
FAILED = b"-ERR [AUTH] Authentication failed\r\n"
BAD_TOKEN = b"-ERR [AUTH] Invalid or expired token\r\n"
BAD_LOGIN = b"-ERR [AUTH] Invalid user name or password\r\n"
NEEDS_TLS = (
    b"-ERR [AUTH] Plaintext authentication needs TLS: send STLS first, or use the TLS port\r\n"
)
TOO_MANY = b"-ERR [AUTH] Too many authentication failures, closing the connection\r\n"
GOOGLE_401 = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
INVALID_TOKEN = b'{"status":"invalid_token","scope":"https://mail.google.com/"}'


def b64(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def plain(authcid: str, password: str, authzid: str = "") -> str:
    return b64(f"{authzid}\0{authcid}\0{password}")


def xoauth2(user: str, token: str) -> str:
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def oauthbearer(user: str | None, token: str, port: int) -> str:
    gs2 = f"n,a={user}," if user is not None else "n,,"
    return b64(f"{gs2}\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01")


class Client(LineClient):
    """The raw client, greeted (after the handshake for implicit TLS), remembering every line
    it sends, to look for in the transcript."""

    def __init__(
        self, server: POP3Server, port: int | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(server, port)
        if tls is not None:  # implicit TLS: the handshake comes before the greeting
            self.wrap(tls)
        self.sent: list[str] = []
        self.greeting = self.line()

    def command(self, line: str | bytes) -> bytes:
        """Send a line and read the one-line reply (a status or a "+ " continuation)."""
        self.sent.append(line if isinstance(line, str) else line.decode())
        return super().command(line)

    def multiline(self, line: str) -> list[str]:
        status = self.command(line)
        assert status.startswith(b"+OK"), status
        lines: list[str] = []
        while (item := self.line()) != b".\r\n":
            lines.append(item[:-2].decode("utf-8"))
        return lines

    def challenge(self, line: str) -> bytes:
        reply = self.command(line)
        assert re.fullmatch(rb"\+ [A-Za-z0-9+/]*={0,2}\r\n", reply), reply
        return base64.b64decode(reply[2:-2], validate=True)


class Connect(Protocol):
    def __call__(
        self, server: POP3Server, port: int | None = None, tls: ssl.SSLContext | None = None
    ) -> Client: ...


def fill(server: POP3Server) -> None:
    server.mailbox("alice").extend(MESSAGES)
    server.add_token("alice", "alice-token")


@pytest.fixture
def make_server(pop3_server_factory: ServerFactory) -> ServerFactory:
    """Servers without TLS, with alice (holding MESSAGES), an admin, and a token for alice."""
    return filled(pop3_server_factory, {"alice": "secret", "admin": "adminpw"}, fill, tls=False)


@pytest.fixture
def server(make_server: ServerFactory) -> POP3Server:
    return make_server()


@pytest.fixture
def connect() -> Iterator[Connect]:
    clients: list[Client] = []

    def make(
        server: POP3Server, port: int | None = None, tls: ssl.SSLContext | None = None
    ) -> Client:
        clients.append(Client(server, port, tls))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def sasl_line(capa: list[str]) -> list[str]:
    return [line for line in capa if line.startswith("SASL")]


# --- what is offered ----------------------------------------------------------------------


def test_auth_alone_and_capa_list_the_same_mechanisms(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.multiline("AUTH") == ALL
    assert sasl_line(client.multiline("CAPA")) == ["SASL " + " ".join(ALL)]


@pytest.mark.parametrize(
    ("sasl", "line"),
    [
        (("PLAIN",), "SASL PLAIN"),
        (("plain", "xoauth2"), "SASL PLAIN XOAUTH2"),  # names are taken in any case
    ],
)
def test_sasl_setting_shapes_capa(
    make_server: ServerFactory, connect: Connect, sasl: tuple[str, ...], line: str
) -> None:
    client = connect(make_server(sasl=sasl))
    assert sasl_line(client.multiline("CAPA")) == [line]
    assert client.command("AUTH CRAM-MD5") == b"-ERR Unsupported SASL mechanism: CRAM-MD5\r\n"
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN


def test_no_sasl_means_no_auth(make_server: ServerFactory, connect: Connect) -> None:
    client = connect(make_server(sasl=()))
    assert sasl_line(client.multiline("CAPA")) == []
    assert client.command("AUTH") == b"-ERR Unknown command: AUTH\r\n"
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == (
        b"-ERR Unknown command: AUTH\r\n"
    )


def test_sasl_only_server(make_server: ServerFactory, connect: Connect) -> None:
    # Three refused commands in a row: more than the default budget before login.
    server = make_server(user_login=False, apop=False, max_bad_commands_before_login=4)
    client = connect(server)
    assert client.greeting == b"+OK fakepop ready\r\n"  # no APOP timestamp
    capa = client.multiline("CAPA")
    assert "USER" not in capa
    assert sasl_line(capa) == ["SASL " + " ".join(ALL)]
    assert client.command("USER alice") == b"-ERR Unknown command: USER\r\n"
    assert client.command("PASS secret") == b"-ERR Unknown command: PASS\r\n"
    assert client.command("APOP alice " + "0" * 32) == b"-ERR Unknown command: APOP\r\n"
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN
    assert client.command("STAT") == ALICE_STAT


def test_unsupported_mechanism(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH GSSAPI") == b"-ERR Unsupported SASL mechanism: GSSAPI\r\n"
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN


def test_auth_after_login(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN
    assert client.command(f"AUTH PLAIN {plain('admin', 'adminpw')}") == (
        b"-ERR AUTH is not allowed after login\r\n"
    )
    assert client.command("STAT") == ALICE_STAT


# --- each mechanism, end to end -----------------------------------------------------------


def scram(client: Client, mechanism: str, user: str, password: str) -> bytes:
    """Run SCRAM with scramp's client side; it checks the server's signature."""
    scram_client = ScramClient([mechanism], user, password)
    server_first = client.challenge(f"AUTH {mechanism} {b64(scram_client.get_client_first())}")
    scram_client.set_server_first(server_first.decode())
    reply = client.command(b64(scram_client.get_client_final()))
    if not reply.startswith(b"+ "):
        return reply
    scram_client.set_server_final(base64.b64decode(reply[2:-2]).decode())
    return client.command("")


def cram_md5(client: Client, user: str, password: str) -> bytes:
    stamp = client.challenge("AUTH CRAM-MD5")
    assert re.fullmatch(rb"<\d+\.\d+@localhost>", stamp), stamp
    digest = hmac.new(password.encode(), stamp, hashlib.md5).hexdigest()
    return client.command(b64(f"{user} {digest}"))


def login(client: Client, mechanism: str, user: str, secret: str, port: int) -> bytes:
    """Log in with ``mechanism``; ``secret`` is the password, or the token for the bearer ones.
    For a refused token, answer the error challenge as the mechanism's clients do."""
    if mechanism == "PLAIN":
        return client.command(f"AUTH PLAIN {plain(user, secret)}")
    if mechanism == "LOGIN":
        assert client.challenge("AUTH LOGIN") == b"Username:"
        assert client.challenge(b64(user)) == b"Password:"
        return client.command(b64(secret))
    if mechanism == "CRAM-MD5":
        return cram_md5(client, user, secret)
    if mechanism.startswith("SCRAM-"):
        return scram(client, mechanism, user, secret)
    if mechanism == "XOAUTH2":
        reply = client.command(f"AUTH XOAUTH2 {xoauth2(user, secret)}")
        return client.command("") if reply.startswith(b"+ ") else reply
    reply = client.command(f"AUTH OAUTHBEARER {oauthbearer(user, secret, port)}")
    return client.command("AQ==") if reply.startswith(b"+ ") else reply


def secret_for(mechanism: str) -> str:
    return "alice-token" if mechanism in ("XOAUTH2", "OAUTHBEARER") else "secret"


@pytest.mark.parametrize("mechanism", ALL)
def test_mechanism_logs_in(server: POP3Server, connect: Connect, mechanism: str) -> None:
    client = connect(server)
    assert login(client, mechanism, "alice", secret_for(mechanism), server.port) == ALICE_IN
    assert client.command("STAT") == ALICE_STAT
    assert server.mailbox("alice").locked


@pytest.mark.parametrize("mechanism", ALL)
def test_mechanism_refuses_a_wrong_secret(
    server: POP3Server, connect: Connect, mechanism: str
) -> None:
    client = connect(server)
    bad = BAD_TOKEN if mechanism in ("XOAUTH2", "OAUTHBEARER") else FAILED
    assert login(client, mechanism, "alice", "wrong", server.port) == bad
    assert not server.mailbox("alice").locked
    # The session goes on: the right secret still gets in.
    assert login(client, mechanism, "alice", secret_for(mechanism), server.port) == ALICE_IN


@pytest.mark.parametrize("mechanism", ALL)
def test_mechanism_cancelled_with_star(
    server: POP3Server, connect: Connect, mechanism: str
) -> None:
    client = connect(server)
    assert client.command(f"AUTH {mechanism}").startswith(b"+ ")
    assert client.command("*") == b"-ERR Authentication cancelled\r\n"
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN


@pytest.mark.parametrize("mechanism", ALL)
def test_mechanism_bad_base64(server: POP3Server, connect: Connect, mechanism: str) -> None:
    client = connect(server)
    assert client.command(f"AUTH {mechanism} #") == (
        b"-ERR Invalid base64 in the initial response\r\n"
    )
    assert client.command(f"AUTH {mechanism}").startswith(b"+ ")
    assert client.command("#") == b"-ERR Invalid base64 in SASL response\r\n"
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN


def test_plain_without_initial_response(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH PLAIN") == EMPTY_CHALLENGE
    assert client.command(plain("alice", "secret")) == ALICE_IN


def test_empty_initial_response(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH PLAIN =") == (
        b"-ERR [AUTH] Malformed PLAIN response: expected authzid NUL authcid NUL password\r\n"
    )
    assert client.command("AUTH XOAUTH2 =") == EMPTY_CHALLENGE
    assert client.command(xoauth2("alice", "alice-token")) == ALICE_IN


# --- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["unknown", "expired"])
def test_xoauth2_bad_token(server: POP3Server, connect: Connect, token: str) -> None:
    server.add_token("alice", "expired", expires_in=-1)
    client = connect(server)
    error = client.challenge(f"AUTH XOAUTH2 {xoauth2('alice', token)}")
    assert error == GOOGLE_401
    assert client.command("") == BAD_TOKEN
    assert not server.mailbox("alice").locked


def test_xoauth2_two_step_form(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH XOAUTH2") == EMPTY_CHALLENGE
    assert client.command(xoauth2("alice", "alice-token")) == ALICE_IN


def test_xoauth2_token_that_expires_later_is_good_now(server: POP3Server, connect: Connect) -> None:
    token = server.add_token("alice", expires_in=3600)
    assert len(token) >= 32  # a random one
    client = connect(server)
    assert client.command(f"AUTH XOAUTH2 {xoauth2('alice', token)}") == ALICE_IN


@pytest.mark.parametrize("token", ["unknown", "expired"])
@pytest.mark.parametrize("user", ["alice", None], ids=["a=alice", "no-a="])
def test_oauthbearer_bad_token(
    server: POP3Server, connect: Connect, token: str, user: str | None
) -> None:
    server.add_token("alice", "expired", expires_in=-1)
    client = connect(server)
    error = client.challenge(f"AUTH OAUTHBEARER {oauthbearer(user, token, server.port)}")
    assert error == INVALID_TOKEN
    assert client.command("AQ==") == BAD_TOKEN
    assert not server.mailbox("alice").locked


def test_oauthbearer_without_a_user_logs_in_to_the_tokens_owner(
    server: POP3Server, connect: Connect
) -> None:
    client = connect(server)
    assert client.command(f"AUTH OAUTHBEARER {oauthbearer(None, 'alice-token', 1)}") == ALICE_IN
    assert client.command("STAT") == ALICE_STAT


def test_oauthbearer_two_step_form(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command("AUTH OAUTHBEARER") == EMPTY_CHALLENGE
    assert client.command(oauthbearer("alice", "alice-token", server.port)) == ALICE_IN


def test_a_token_does_not_open_another_account(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.challenge(f"AUTH XOAUTH2 {xoauth2('admin', 'alice-token')}") == GOOGLE_401
    assert client.command("") == BAD_TOKEN
    error = client.challenge(f"AUTH OAUTHBEARER {oauthbearer('admin', 'alice-token', 1)}")
    assert error == INVALID_TOKEN


# --- authorization identity ---------------------------------------------------------------


def test_plain_authzid_allowed(server: POP3Server, connect: Connect) -> None:
    server.store["admin"].may_act_as.add("alice")
    client = connect(server)
    assert client.command(f"AUTH PLAIN {plain('admin', 'adminpw', 'alice')}") == ALICE_IN
    assert client.command("STAT") == ALICE_STAT  # the target's maildrop, not admin's
    assert server.mailbox("alice").locked
    assert not server.mailbox("admin").locked


def test_plain_authzid_refused(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert client.command(f"AUTH PLAIN {plain('admin', 'adminpw', 'alice')}") == (
        b"-ERR [AUTH] admin may not log in as alice\r\n"
    )
    assert client.command(f"AUTH PLAIN {plain('admin', 'adminpw')}") == (
        b"+OK admin's maildrop has 0 messages (0 octets)\r\n"
    )
    assert client.command("STAT") == b"+OK 0 0\r\n"


# --- TLS required -------------------------------------------------------------------------


def test_require_tls_offers_plain_and_login_only_under_tls(
    make_server: ServerFactory, connect: Connect
) -> None:
    server = make_server(tls=True, require_tls=True)
    client = connect(server)
    without = [m for m in ALL if m not in ("PLAIN", "LOGIN")]
    assert sasl_line(client.multiline("CAPA")) == ["SASL " + " ".join(without)]
    assert client.multiline("AUTH") == without
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == NEEDS_TLS
    assert client.command("AUTH LOGIN") == NEEDS_TLS
    assert client.command("STLS") == b"+OK Begin TLS negotiation\r\n"
    client.wrap(server.client_ssl_context())
    assert sasl_line(client.multiline("CAPA")) == ["SASL " + " ".join(ALL)]
    assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN

    implicit = connect(server, server.tls_port, server.client_ssl_context())
    assert sasl_line(implicit.multiline("CAPA")) == ["SASL " + " ".join(ALL)]


# --- account names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "options"),
    [
        pytest.param("alice@example.com", {"domains": ("example.com",)}, id="virtual-domain"),
        pytest.param("recent:alice", {"recent_prefix": True}, id="recent"),
        pytest.param("carol+mail.example.net", {}, id="plus-for-at"),
    ],
)
@pytest.mark.parametrize("method", ["USER/PASS", "APOP", "AUTH PLAIN"])
def test_account_name_rules(
    make_server: ServerFactory,
    connect: Connect,
    method: str,
    name: str,
    options: dict[str, Any],
) -> None:
    server = make_server(**options)
    server.users["carol@mail.example.net"] = "secret"
    server.mailbox("carol@mail.example.net").extend(MESSAGES)
    account = "carol@mail.example.net" if name.startswith("carol") else "alice"
    welcome = b"+OK %s's maildrop has 2 messages (%d octets)\r\n" % (account.encode(), OCTETS)
    for rules in (True, False):
        if not rules and name.startswith("carol"):
            continue  # user+host is always on: no server lacks the rule
        client = connect(server if rules else make_server())
        if method == "USER/PASS":
            assert client.command(f"USER {name}") == b"+OK Send PASS\r\n"
            reply = client.command("PASS secret")
        elif method == "APOP":
            stamp = re.search(rb"<[^>]*>", client.greeting)
            assert stamp is not None
            reply = client.command(f"APOP {name} {apop_digest(stamp[0].decode(), 'secret')}")
        else:
            reply = client.command(f"AUTH PLAIN {plain(name, 'secret')}")
        refused = FAILED if method == "AUTH PLAIN" else BAD_LOGIN
        assert reply == (welcome if rules else refused)
        if rules:
            assert client.command("STAT") == ALICE_STAT
            assert client.command("QUIT").startswith(b"+OK")


# --- failed-login delay and limit ---------------------------------------------------------


def timed(client: Client, line: str) -> tuple[bytes, float]:
    start = time.monotonic()
    reply = client.command(line)
    return reply, time.monotonic() - start


@pytest.mark.parametrize("method", ["PASS", "APOP", "AUTH PLAIN", "XOAUTH2"])
def test_auth_failure_delay_holds_back_the_refusal(
    make_server: ServerFactory, connect: Connect, method: str
) -> None:
    client = connect(make_server(auth_failure_delay=DELAY))
    if method == "PASS":
        assert client.command("USER alice") == b"+OK Send PASS\r\n"
        reply, elapsed = timed(client, "PASS wrong")
        refusal = BAD_LOGIN
    elif method == "APOP":
        reply, elapsed = timed(client, "APOP alice " + "0" * 32)
        refusal = BAD_LOGIN
    elif method == "AUTH PLAIN":
        reply, elapsed = timed(client, f"AUTH PLAIN {plain('alice', 'wrong')}")
        refusal = FAILED
    else:
        assert client.challenge(f"AUTH XOAUTH2 {xoauth2('alice', 'wrong')}") == GOOGLE_401
        reply, elapsed = timed(client, "")
        refusal = BAD_TOKEN
    assert reply == refusal
    assert elapsed >= DELAY


def test_max_auth_failures_hangs_up(make_server: ServerFactory, connect: Connect) -> None:
    server = make_server(max_auth_failures=2)
    client = connect(server)
    assert client.command(f"AUTH PLAIN {plain('alice', 'wrong')}") == FAILED
    assert client.command("USER alice") == b"+OK Send PASS\r\n"
    assert client.command("PASS wrong") == TOO_MANY
    assert client.closed_by_server()
    # The count is per connection: a new one starts afresh.
    fresh = connect(server)
    assert fresh.command(f"AUTH PLAIN {plain('alice', 'wrong')}") == FAILED
    assert fresh.command(f"AUTH PLAIN {plain('alice', 'secret')}") == ALICE_IN


# --- the transcript -------------------------------------------------------------------------


def test_transcript_masks_sasl_secrets(server: POP3Server, connect: Connect) -> None:
    clients = [connect(server) for _ in ALL]
    for client, mechanism in zip(clients, ALL, strict=True):
        assert login(client, mechanism, "alice", "wrong-secret", server.port).startswith(b"-ERR")
    server.stop()
    masked = server.transcript.text()
    clear = server.transcript.text(mask=False)
    # Every line a client sent after the AUTH word: base64 blobs that carry the secrets.
    blobs = [line.split()[-1] for c in clients for line in c.sent if line.split()[-1:] != []]
    blobs = [b for b in blobs if b not in ALL and len(b) > 4]
    assert len(blobs) >= 10
    for blob in blobs:
        assert blob not in masked
        assert blob in clear
    assert "wrong-secret" not in masked
    for session in server.transcript:
        for line in session.lines():
            if line.startswith("C: AUTH "):
                assert re.fullmatch(r"C: AUTH [A-Z0-9-]+( \*\*\*\*)?", line), line
            elif line.startswith("C: "):
                assert line == "C: ****", line


# --- any_login: any name and password get in -------------------------------------------------

NEWBIE_IN = b"+OK newbie's maildrop has 0 messages (0 octets)\r\n"


def any_login(client: Client, method: str, user: str, secret: str, port: int) -> bytes:
    if method == "USER":
        assert client.command(f"USER {user}") == b"+OK Send PASS\r\n"
        return client.command(f"PASS {secret}")
    if method == "APOP":
        match = re.search(rb"<[^>]*>", client.greeting)
        assert match is not None, client.greeting
        return client.command(f"APOP {user} {apop_digest(match.group().decode(), secret)}")
    return login(client, method, user, secret, port)


@pytest.mark.parametrize(
    "method", ["USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER"]
)
def test_any_login_lets_any_name_and_secret_in_and_makes_the_account(
    make_server: ServerFactory, connect: Connect, method: str
) -> None:
    server = make_server(any_login=True)
    client = connect(server)
    assert any_login(client, method, "newbie", "made-up", server.port) == NEWBIE_IN
    assert "newbie" in server.users
    server.transcript.assert_login(method, "newbie")
    client.command("QUIT")
    # An account that exists takes any secret too.
    other = connect(server)
    assert any_login(other, method, "alice", "wrong", server.port) == ALICE_IN


def test_without_any_login_a_made_up_name_stays_out(server: POP3Server, connect: Connect) -> None:
    client = connect(server)
    assert any_login(client, "USER", "newbie", "made-up", server.port) == BAD_LOGIN
    assert "newbie" not in server.users


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_any_login_keeps_scram_honest_and_a_first_password_is_kept(
    make_server: ServerFactory, connect: Connect, mechanism: str
) -> None:
    """SCRAM has the server prove it knows the password, so no server can take any: a name
    made by a first login with a password logs in by SCRAM with that password afterwards."""
    server = make_server(any_login=True)
    client = connect(server)
    assert scram(client, mechanism, "newbie", "made-up") == FAILED
    assert "newbie" not in server.users
    assert any_login(client, "PLAIN", "newbie", "first", server.port) == NEWBIE_IN
    client.command("QUIT")
    assert scram(connect(server), mechanism, "newbie", "first") == NEWBIE_IN


def test_any_login_serves_a_maildir_already_on_disk_and_refuses_a_name_it_cannot_hold(
    make_server: ServerFactory, connect: Connect, tmp_path: Path
) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "bob" / sub).mkdir(parents=True)
    (tmp_path / "bob" / "new" / "1.delivered").write_bytes(MESSAGES[0])
    server = make_server(any_login=True, maildir=tmp_path)
    client = connect(server)
    expected = b"+OK bob's maildrop has 1 message (%d octets)\r\n" % len(to_crlf(MESSAGES[0]))
    assert any_login(client, "USER", "bob", "anything", server.port) == expected
    other = connect(server)
    assert any_login(other, "USER", "../etc", "anything", server.port) == BAD_LOGIN
    assert "any_login made no account: account '../etc' cannot be a Maildir" in str(
        server.transcript
    )
