"""AUTH (RFC 5034) in memory: every mechanism through the Session, checked against the RFCs.

SCRAM is checked against scramp's client side, CRAM-MD5 against an HMAC-MD5 computed
here, the token mechanisms against the wire forms Google and RFC 7628 give.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest
from scramp import ScramClient, ScramException

from fakepop.mail import MailStore
from fakepop.protocol import CLOSE, Reply, Settings, State, apop_digest
from fakepop.protocol.actions import Action, Pause
from fakepop.protocol.transcript import SessionTranscript

from .pair import PASSWORD, USER, Pair, lines, listing

M1 = b"Subject: one\r\n\r\nHello\r\n"  # 23 octets
ALICE_IN = b"+OK alice's maildrop has 1 message (23 octets)\r\n"

SCRAMS = ["SCRAM-SHA-1", "SCRAM-SHA-256"]
MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5", *SCRAMS, "XOAUTH2", "OAUTHBEARER"]  # CAPA's order

EMPTY_CHALLENGE = b"+ \r\n"  # RFC 5034's continuation with no data: "+" SP CRLF
FAILED = b"-ERR [AUTH] Authentication failed\r\n"
CANCELLED = b"-ERR Authentication cancelled\r\n"
BAD_BASE64 = b"-ERR Invalid base64 in SASL response\r\n"
BAD_INITIAL = b"-ERR Invalid base64 in the initial response\r\n"
BAD_TOKEN = b"-ERR [AUTH] Invalid or expired token\r\n"
BAD_LOGIN = b"-ERR [AUTH] Invalid user name or password\r\n"
NEEDS_TLS = (
    b"-ERR [AUTH] Plaintext authentication needs TLS: send STLS first, or use the TLS port\r\n"
)
TOO_MANY = b"-ERR [AUTH] Too many authentication failures, closing the connection\r\n"

# Not base64 at all, base64 missing its padding, and not even ASCII: all are refused.
NOT_BASE64 = ["!!!!", "YWxpY2U", "\u00e9"]

GOOGLE_401 = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
GOOGLE_400 = b'{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}'
INVALID_TOKEN = b'{"status":"invalid_token","scope":"https://mail.google.com/"}'
INVALID_REQUEST = b'{"status":"invalid_request","scope":"https://mail.google.com/"}'

NOW = 1_000_000.0  # Pair's clock


def b64(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def challenge(reply: bytes) -> bytes:
    """The data of a continuation "+ base64" (RFC 5034, section 4); it must be the whole reply."""
    assert reply.startswith(b"+ "), reply
    assert reply.endswith(b"\r\n"), reply
    assert reply.count(b"\r\n") == 1, reply
    return base64.b64decode(reply[2:-2], validate=True)


def back_to_commands(pair: Pair) -> None:
    """The exchange is over: the next line is a command again, and a login still works."""
    assert pair.session.state is State.AUTHORIZATION
    assert pair.cmd("CAPA").startswith(b"+OK Capability list follows\r\n")
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}").startswith(b"+OK alice's")


def plain(authcid: str, password: str, authzid: str = "") -> bytes:
    return f"{authzid}\0{authcid}\0{password}".encode()


def cram_response(stamp: bytes, user: str, password: str) -> str:
    """RFC 2195: the user name, a space, and HMAC-MD5(password, challenge) in lowercase hex."""
    digest = hmac.new(password.encode("utf-8"), stamp, hashlib.md5).hexdigest()
    return b64(f"{user} {digest}")


def xoauth2(user: str, token: str, scheme: str = "Bearer") -> bytes:
    return f"user={user}\x01auth={scheme} {token}\x01\x01".encode()


def oauthbearer(user: str | None, token: str) -> bytes:
    """RFC 7628, section 3.1: a GS2 header, then key=value pairs, each ended by ^A."""
    gs2 = f"n,a={user}," if user is not None else "n,,"
    return f"{gs2}\x01host=localhost\x01port=110\x01auth=Bearer {token}\x01\x01".encode()


def with_tokens(**tokens: float | None) -> Pair:
    pair = Pair(M1)
    pair.store[USER].tokens.update(tokens)
    return pair


# --- listing the mechanisms -------------------------------------------------------------


def test_auth_alone_lists_every_mechanism() -> None:
    assert Pair().cmd("AUTH") == (
        b"+OK Supported SASL mechanisms follow\r\n"
        b"PLAIN\r\nLOGIN\r\nCRAM-MD5\r\nSCRAM-SHA-1\r\nSCRAM-SHA-256\r\nXOAUTH2\r\nOAUTHBEARER\r\n"
        b".\r\n"
    )


def test_capa_sasl_line_lists_every_mechanism() -> None:
    assert "SASL " + " ".join(MECHANISMS) in listing(Pair().cmd("CAPA"))


@pytest.mark.parametrize(
    ("sasl", "line"),
    [
        (("PLAIN",), "SASL PLAIN"),
        (("XOAUTH2", "PLAIN"), "SASL XOAUTH2 PLAIN"),  # the configured order
    ],
)
def test_capa_and_auth_follow_the_configured_mechanisms(sasl: tuple[str, ...], line: str) -> None:
    pair = Pair(M1, settings=Settings(sasl=sasl))
    capa = listing(pair.cmd("CAPA"))
    assert [c for c in capa if c.startswith("SASL")] == [line]
    assert listing(pair.cmd("AUTH")) == list(sasl)
    assert pair.cmd("AUTH LOGIN") == b"-ERR Unsupported SASL mechanism: LOGIN\r\n"
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == ALICE_IN


def test_no_mechanisms_means_no_sasl_line_and_no_auth() -> None:
    pair = Pair(settings=Settings(sasl=()))
    assert not any(c.startswith("SASL") for c in listing(pair.cmd("CAPA")))
    assert pair.cmd("AUTH") == b"-ERR Unknown command: AUTH\r\n"
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == (
        b"-ERR Unknown command: AUTH\r\n"
    )
    assert pair.login().startswith(b"+OK alice's maildrop")


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown SASL mechanism GSSAPI"):
        Settings(sasl=("PLAIN", "GSSAPI"))


# --- the AUTH command -------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["GSSAPI", "SCRAM-SHA-256-PLUS", "NTLM"])
def test_unsupported_mechanism_gets_err_and_no_exchange(mechanism: str) -> None:
    pair = Pair(M1)
    reply = f"-ERR Unsupported SASL mechanism: {mechanism}\r\n".encode()
    assert pair.cmd(f"AUTH {mechanism}") == reply
    assert pair.cmd(f"AUTH {mechanism} {b64('x')}") == reply
    back_to_commands(pair)


def test_mechanism_names_are_case_insensitive() -> None:
    assert Pair(M1).cmd(f"auth plain {b64(plain(USER, PASSWORD))}") == ALICE_IN


def test_auth_with_more_than_an_initial_response_is_a_usage_error() -> None:
    pair = Pair(M1)
    assert pair.cmd("AUTH PLAIN AAAA AAAA") == b"-ERR Usage: AUTH mechanism [initial-response]\r\n"
    back_to_commands(pair)


def test_auth_after_login_is_refused() -> None:
    pair = Pair(M1)
    assert pair.login() == ALICE_IN
    assert pair.cmd("AUTH") == b"-ERR AUTH is not allowed after login\r\n"
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == (
        b"-ERR AUTH is not allowed after login\r\n"
    )
    assert pair.session.state is State.TRANSACTION


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_star_cancels_the_exchange(mechanism: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH {mechanism}").startswith(b"+ ")
    assert pair.cmd("*") == CANCELLED  # RFC 5034, section 4: the server answers -ERR
    back_to_commands(pair)


@pytest.mark.parametrize("bad", NOT_BASE64)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_bad_base64_initial_response(mechanism: str, bad: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH {mechanism} {bad}") == BAD_INITIAL
    back_to_commands(pair)


@pytest.mark.parametrize("bad", NOT_BASE64)
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_bad_base64_response_ends_the_exchange(mechanism: str, bad: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH {mechanism}").startswith(b"+ ")
    assert pair.cmd(bad) == BAD_BASE64
    back_to_commands(pair)


def test_a_response_over_the_line_limit_ends_the_exchange() -> None:
    pair = Pair(M1, settings=Settings(max_sasl_length=255))
    assert pair.cmd("AUTH PLAIN") == EMPTY_CHALLENGE
    assert pair.cmd("A" * 400) == b"-ERR SASL response over 255 octets\r\n"
    back_to_commands(pair)


def test_exchange_lines_are_not_commands() -> None:
    pair = Pair(M1)
    assert pair.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
    # "QUIT" is valid base64: inside an exchange it is the user name, not a command.
    assert pair.cmd("QUIT") == b"+ UGFzc3dvcmQ6\r\n"
    assert not pair.closed
    assert pair.cmd(b64("secret")) == FAILED


def test_a_pipelined_exchange_is_answered_in_order() -> None:
    pair = Pair(M1)
    out = pair.send(lines("AUTH LOGIN", b64(USER), b64(PASSWORD), "STAT"))
    assert out == b"+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n" + ALICE_IN + b"+OK 1 23\r\n"


# --- PLAIN (RFC 4616) -------------------------------------------------------------------


def test_plain_with_initial_response() -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == ALICE_IN
    assert pair.session.state is State.TRANSACTION
    assert pair.mailbox.locked


def test_plain_without_initial_response_gets_an_empty_challenge() -> None:
    pair = Pair(M1)
    assert pair.cmd("AUTH PLAIN") == EMPTY_CHALLENGE
    assert pair.cmd(b64(plain(USER, PASSWORD))) == ALICE_IN


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong"), ("bob", PASSWORD), (USER, "")])
def test_plain_with_wrong_credentials(user: str, password: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH PLAIN {b64(plain(user, password))}") == FAILED
    assert pair.cmd("AUTH PLAIN") == EMPTY_CHALLENGE
    assert pair.cmd(b64(plain(user, password))) == FAILED
    back_to_commands(pair)


@pytest.mark.parametrize(
    "initial",
    [
        pytest.param("=", id="empty"),
        pytest.param(b64("alice\0secret"), id="one-nul"),
        pytest.param(b64("\0alice\0secret\0"), id="three-nuls"),
        pytest.param(b64(b"\0alice\0\xff"), id="not-utf8"),
    ],
)
def test_plain_malformed_message(initial: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH PLAIN {initial}") == (
        b"-ERR [AUTH] Malformed PLAIN response: expected authzid NUL authcid NUL password\r\n"
    )
    back_to_commands(pair)


def admin_store() -> MailStore:
    store = MailStore({USER: PASSWORD, "admin": "adminpw"})
    store["admin"].mailbox.add(b"Subject: admin's own\r\n\r\nx\r\n")
    return store


def test_plain_authzid_allowed_opens_the_targets_maildrop() -> None:
    store = admin_store()
    store["admin"].may_act_as.add(USER)
    pair = Pair(M1, M1, store=store)
    reply = pair.cmd(f"AUTH PLAIN {b64(plain('admin', 'adminpw', authzid=USER))}")
    assert reply == b"+OK alice's maildrop has 2 messages (46 octets)\r\n"
    assert pair.cmd("STAT") == b"+OK 2 46\r\n"
    assert pair.mailbox.locked
    assert not store["admin"].mailbox.locked


def test_plain_authzid_refused_without_may_act_as() -> None:
    pair = Pair(M1, store=admin_store())
    reply = pair.cmd(f"AUTH PLAIN {b64(plain('admin', 'adminpw', authzid=USER))}")
    assert reply == b"-ERR [AUTH] admin may not log in as alice\r\n"
    assert pair.session.state is State.AUTHORIZATION
    assert not pair.mailbox.locked


def test_plain_authzid_only_goes_one_way() -> None:
    store = admin_store()
    store["admin"].may_act_as.add(USER)
    pair = Pair(M1, store=store)
    reply = pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD, authzid='admin'))}")
    assert reply == b"-ERR [AUTH] alice may not log in as admin\r\n"


def test_plain_authzid_with_a_wrong_password_says_nothing_about_the_target() -> None:
    store = admin_store()
    store["admin"].may_act_as.add(USER)
    pair = Pair(M1, store=store)
    assert pair.cmd(f"AUTH PLAIN {b64(plain('admin', 'wrong', authzid=USER))}") == FAILED


def test_plain_authzid_naming_oneself_is_the_same_as_none() -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD, authzid=USER))}") == ALICE_IN


def test_plain_authzid_follows_the_account_name_rules() -> None:
    store = admin_store()
    store["admin"].may_act_as.add(USER)
    pair = Pair(M1, store=store, settings=Settings(domains=("example.com",)))
    initial = b64(plain("admin@example.com", "adminpw", authzid="alice@example.com"))
    assert pair.cmd(f"AUTH PLAIN {initial}") == ALICE_IN


def test_plain_refusal_is_one_reply_line_whatever_the_authzid_holds() -> None:
    # The authzid comes out of base64, so it may hold CR LF: echoed raw, it would forge a reply.
    pair = Pair(M1, store=admin_store())
    initial = b64(plain("admin", "adminpw", authzid="x\r\n+OK forged"))
    reply = pair.cmd(f"AUTH PLAIN {initial}")
    assert reply.startswith(b"-ERR [AUTH] ")
    assert reply.endswith(b"\r\n")
    assert b"\r" not in reply[:-2], reply
    assert b"\n" not in reply[:-2], reply
    assert pair.session.state is State.AUTHORIZATION


# --- LOGIN ------------------------------------------------------------------------------


def test_login_asks_for_user_name_then_password() -> None:
    pair = Pair(M1)
    # The prompts every LOGIN client expects: "Username:" and "Password:" in base64.
    assert pair.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
    assert pair.cmd(b64(USER)) == b"+ UGFzc3dvcmQ6\r\n"
    assert pair.cmd(b64(PASSWORD)) == ALICE_IN


def test_login_initial_response_is_the_user_name() -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH LOGIN {b64(USER)}") == b"+ UGFzc3dvcmQ6\r\n"
    assert pair.cmd(b64(PASSWORD)) == ALICE_IN


def test_login_empty_initial_response_asks_for_the_user_name() -> None:
    pair = Pair(M1)
    assert pair.cmd("AUTH LOGIN =") == b"+ VXNlcm5hbWU6\r\n"
    assert pair.cmd(b64(USER)) == b"+ UGFzc3dvcmQ6\r\n"
    assert pair.cmd(b64(PASSWORD)) == ALICE_IN


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong"), ("bob", PASSWORD)])
def test_login_with_wrong_credentials(user: str, password: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH LOGIN {b64(user)}") == b"+ UGFzc3dvcmQ6\r\n"
    assert pair.cmd(b64(password)) == FAILED
    back_to_commands(pair)


def test_login_cancel_at_the_password_prompt() -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH LOGIN {b64(USER)}") == b"+ UGFzc3dvcmQ6\r\n"
    assert pair.cmd("*") == CANCELLED
    back_to_commands(pair)


def test_login_bad_base64_at_the_password_prompt() -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH LOGIN {b64(USER)}") == b"+ UGFzc3dvcmQ6\r\n"
    assert pair.cmd("secret!") == BAD_BASE64
    back_to_commands(pair)


# --- CRAM-MD5 (RFC 2195) ----------------------------------------------------------------


def test_cram_response_helper_matches_rfc_2195_example() -> None:
    stamp = b"<1896.697170952@postoffice.reston.mci.net>"
    assert cram_response(stamp, "tim", "tanstaaftanstaaf") == (
        "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"
    )


def test_cram_md5_replays_rfc_2195_example(monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Pair(store=MailStore({"tim": "tanstaaftanstaaf"}))
    stamp = "<1896.697170952@postoffice.reston.mci.net>"
    monkeypatch.setattr(pair.session, "challenge_stamp", lambda: stamp)
    assert pair.cmd("AUTH CRAM-MD5") == (
        b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"
    )
    assert pair.cmd("dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw") == (
        b"+OK tim's maildrop has 0 messages (0 octets)\r\n"
    )


def test_cram_md5_logs_in() -> None:
    pair = Pair(M1, settings=Settings(hostname="pop.example.org"))
    stamp = challenge(pair.cmd("AUTH CRAM-MD5"))
    # RFC 2195: a msg-id, "<" unique-digits "@" hostname ">"
    assert re.fullmatch(rb"<\d+\.\d+@pop\.example\.org>", stamp), stamp
    assert pair.cmd(cram_response(stamp, USER, PASSWORD)) == ALICE_IN


@pytest.mark.parametrize(("user", "password"), [(USER, "wrong"), ("bob", PASSWORD)])
def test_cram_md5_with_wrong_credentials(user: str, password: str) -> None:
    pair = Pair(M1)
    stamp = challenge(pair.cmd("AUTH CRAM-MD5"))
    assert pair.cmd(cram_response(stamp, user, password)) == FAILED
    back_to_commands(pair)


def test_cram_md5_challenges_are_fresh_so_a_response_cannot_be_replayed() -> None:
    pair = Pair(M1)
    first = challenge(pair.cmd("AUTH CRAM-MD5"))
    assert pair.cmd("*") == CANCELLED
    second = challenge(pair.cmd("AUTH CRAM-MD5"))
    assert first != second
    assert pair.cmd(cram_response(first, USER, PASSWORD)) == FAILED


@pytest.mark.parametrize("response", [b"alice", b"", b"alice 0123", b"\xff\xfe"])
def test_cram_md5_malformed_response(response: bytes) -> None:
    pair = Pair(M1)
    challenge(pair.cmd("AUTH CRAM-MD5"))
    assert pair.cmd(b64(response)) == FAILED


def test_cram_md5_refuses_an_initial_response() -> None:
    pair = Pair(M1)
    stamp = b"<1.2@localhost>"
    initial = cram_response(stamp, USER, PASSWORD)
    assert pair.cmd(f"AUTH CRAM-MD5 {initial}") == (
        b"-ERR [AUTH] CRAM-MD5 takes no initial response\r\n"
    )
    back_to_commands(pair)


def test_cram_md5_empty_initial_response_gets_the_challenge() -> None:
    pair = Pair(M1)
    stamp = challenge(pair.cmd("AUTH CRAM-MD5 ="))
    assert pair.cmd(cram_response(stamp, USER, PASSWORD)) == ALICE_IN


# --- SCRAM (RFC 5802, RFC 7677) ---------------------------------------------------------


def scram_fields(message: bytes) -> dict[str, str]:
    return dict(field.split("=", 1) for field in message.decode("utf-8").split(","))


@pytest.mark.parametrize("initial", [True, False], ids=["initial-response", "no-initial-response"])
@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_logs_in_and_the_server_proves_it_knows_the_password(
    mechanism: str, initial: bool
) -> None:
    pair = Pair(M1)
    client = ScramClient([mechanism], USER, PASSWORD)
    first: str = client.get_client_first()
    assert first.startswith("n,,n=alice,r=")  # no channel binding, no authzid
    if initial:
        reply = pair.cmd(f"AUTH {mechanism} {b64(first)}")
    else:
        assert pair.cmd(f"AUTH {mechanism}") == EMPTY_CHALLENGE
        reply = pair.cmd(b64(first))
    server_first = challenge(reply)
    fields = scram_fields(server_first)
    assert list(fields) == ["r", "s", "i"]
    assert fields["r"].startswith(scram_fields(first[3:].encode())["r"])
    assert len(fields["r"]) > len(scram_fields(first[3:].encode())["r"])
    assert int(fields["i"]) >= 4096  # RFC 7677, section 4
    client.set_server_first(server_first.decode())
    server_final = challenge(pair.cmd(b64(client.get_client_final())))
    assert server_final.startswith(b"v=")
    client.set_server_final(server_final.decode())  # raises unless v= proves the password
    # RFC 5034 has no success with data: the client acknowledges v= with an empty line.
    assert pair.cmd("") == ALICE_IN
    assert pair.session.state is State.TRANSACTION


def scram_login(
    pair: Pair, mechanism: str, user: str, password: str, header: str, binding: str | None = None
) -> bytes:
    """A SCRAM exchange made by hand, so that the GS2 header (``"n,a=alice,"``) and the
    channel binding it sends back (``c=``, by default the header itself) can be chosen."""
    digest = "sha1" if mechanism == "SCRAM-SHA-1" else "sha256"
    bare = f"n={user},r=fakepopclientnonce"
    server_first = challenge(pair.cmd(f"AUTH {mechanism} {b64(header + bare)}")).decode()
    fields = scram_fields(server_first.encode())
    salted = hashlib.pbkdf2_hmac(
        digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
    )
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    without_proof = f"c={b64(header if binding is None else binding)},r={fields['r']}"
    signature = hmac.new(
        hashlib.new(digest, client_key).digest(),
        f"{bare},{server_first},{without_proof}".encode(),
        digest,
    ).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    reply = pair.cmd(b64(f"{without_proof},p={b64(proof)}"))
    return reply if reply.startswith(b"-") else pair.cmd("")


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_with_the_user_as_authorization_identity(mechanism: str) -> None:
    # RFC 5802, section 5.1 allows "a=" in the client's first message (NeoMutt sends it).
    pair = Pair(M1)
    assert scram_login(pair, mechanism, USER, PASSWORD, f"n,a={USER},") == ALICE_IN
    assert scram_login(Pair(M1), mechanism, USER, PASSWORD, "n,,") == ALICE_IN


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_authorization_identity_follows_may_act_as(mechanism: str) -> None:
    store = admin_store()
    refused = scram_login(Pair(M1, store=store), mechanism, "admin", "adminpw", "n,a=alice,")
    assert refused == b"-ERR [AUTH] admin may not log in as alice\r\n"
    store["admin"].may_act_as.add(USER)
    pair = Pair(store=store)  # alice's maildrop holds M1 already
    assert scram_login(pair, mechanism, "admin", "adminpw", "n,a=alice,") == ALICE_IN
    assert pair.mailbox.locked


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_binding_must_repeat_the_header_sent(mechanism: str) -> None:
    # c= carries the GS2 header back; one without the authorization identity is a forgery.
    pair = Pair(M1)
    assert scram_login(pair, mechanism, USER, PASSWORD, f"n,a={USER},", binding="n,,") == FAILED
    back_to_commands(pair)


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_server_signature_differs_for_another_password(mechanism: str) -> None:
    # The check above can fail: a client holding another password rejects the server.
    store = MailStore({USER: "other"})
    pair = Pair(store=store)
    client = ScramClient([mechanism], USER, "other")
    first: str = client.get_client_first()
    server_first = challenge(pair.cmd(f"AUTH {mechanism} {b64(first)}"))
    client.set_server_first(server_first.decode())
    server_final = challenge(pair.cmd(b64(client.get_client_final())))
    nonce = scram_fields(server_first)["r"][: len(scram_fields(first[3:].encode())["r"])]
    impostor = ScramClient([mechanism], USER, PASSWORD, c_nonce=nonce)
    impostor.get_client_first()
    impostor.set_server_first(server_first.decode())
    impostor.get_client_final()
    with pytest.raises(ScramException):
        impostor.set_server_final(server_final.decode())


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_wrong_password(mechanism: str) -> None:
    pair = Pair(M1)
    client = ScramClient([mechanism], USER, "wrong")
    server_first = challenge(pair.cmd(f"AUTH {mechanism} {b64(client.get_client_first())}"))
    client.set_server_first(server_first.decode())
    assert pair.cmd(b64(client.get_client_final())) == FAILED
    back_to_commands(pair)


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_unknown_user_is_refused_only_at_the_proof(mechanism: str) -> None:
    # RFC 5802, section 5.1: the server-first message must not tell who has an account.
    def server_first(user: str) -> tuple[Pair, ScramClient, dict[str, str]]:
        pair = Pair(M1)
        client = ScramClient([mechanism], user, PASSWORD)
        reply = challenge(pair.cmd(f"AUTH {mechanism} {b64(client.get_client_first())}"))
        client.set_server_first(reply.decode())
        return pair, client, scram_fields(reply)

    pair, client, fields = server_first("bob")
    assert list(fields) == ["r", "s", "i"]
    assert fields["i"] == server_first(USER)[2]["i"]
    assert len(base64.b64decode(fields["s"])) == len(base64.b64decode(server_first(USER)[2]["s"]))
    assert server_first("bob")[2]["s"] == fields["s"]  # stable, as a real account's salt is
    assert server_first("carol")[2]["s"] != fields["s"]
    assert pair.cmd(b64(client.get_client_final())) == FAILED
    back_to_commands(pair)


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_empty_initial_response_is_a_malformed_client_first(mechanism: str) -> None:
    pair = Pair(M1)
    assert pair.cmd(f"AUTH {mechanism} =") == FAILED
    back_to_commands(pair)


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_channel_binding_is_not_offered(mechanism: str) -> None:
    pair = Pair(M1)
    first = "p=tls-unique,,n=alice,r=abcdefghijklmnop"
    assert pair.cmd(f"AUTH {mechanism} {b64(first)}") == FAILED


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_cancel_after_server_first(mechanism: str) -> None:
    pair = Pair(M1)
    client = ScramClient([mechanism], USER, PASSWORD)
    challenge(pair.cmd(f"AUTH {mechanism} {b64(client.get_client_first())}"))
    assert pair.cmd("*") == CANCELLED
    back_to_commands(pair)


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_bad_base64_after_server_first(mechanism: str) -> None:
    pair = Pair(M1)
    client = ScramClient([mechanism], USER, PASSWORD)
    challenge(pair.cmd(f"AUTH {mechanism} {b64(client.get_client_first())}"))
    assert pair.cmd("c=biws,r=x") == BAD_BASE64
    back_to_commands(pair)


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_wants_an_empty_acknowledgement(mechanism: str) -> None:
    pair = Pair(M1)
    client = ScramClient([mechanism], USER, PASSWORD)
    server_first = challenge(pair.cmd(f"AUTH {mechanism} {b64(client.get_client_first())}"))
    client.set_server_first(server_first.decode())
    challenge(pair.cmd(b64(client.get_client_final())))
    assert pair.cmd(b64("more")) == b"-ERR [AUTH] SCRAM exchange is already complete\r\n"
    assert not pair.mailbox.locked
    back_to_commands(pair)


# --- XOAUTH2 ----------------------------------------------------------------------------


def test_xoauth2_with_initial_response() -> None:
    pair = with_tokens(tok=None)
    assert pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(USER, 'tok'))}") == ALICE_IN


@pytest.mark.parametrize("start", ["AUTH XOAUTH2", "AUTH XOAUTH2 ="])
def test_xoauth2_two_step_form(start: str) -> None:
    # Office 365 clients send AUTH XOAUTH2 alone and the token after an empty challenge.
    pair = with_tokens(tok=None)
    assert pair.cmd(start) == EMPTY_CHALLENGE
    assert pair.cmd(b64(xoauth2(USER, "tok"))) == ALICE_IN


@pytest.mark.parametrize(
    ("user", "token"),
    [
        pytest.param(USER, "nope", id="unknown-token"),
        pytest.param(USER, "old", id="expired"),
        pytest.param(USER, "now", id="expires-this-instant"),
        pytest.param("bob", "tok", id="unknown-user"),
        pytest.param(USER, "bobs", id="another-users-token"),
    ],
)
def test_xoauth2_bad_token_gets_googles_error_then_err(user: str, token: str) -> None:
    store = MailStore({USER: PASSWORD, "bob": "pw"})
    store["bob"].tokens["bobs"] = None
    pair = Pair(M1, store=store)
    pair.store[USER].tokens.update(tok=None, old=NOW - 1, now=NOW)
    error = challenge(pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(user, token))}"))
    assert error == GOOGLE_401
    assert json.loads(error)["status"] == "401"
    assert pair.session.state is State.AUTHORIZATION
    # Google's clients answer the error challenge with an empty line; then comes -ERR.
    assert pair.cmd("") == BAD_TOKEN
    back_to_commands(pair)


def test_xoauth2_token_valid_until_its_expiry() -> None:
    pair = with_tokens(fresh=NOW + 0.5)
    assert pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(USER, 'fresh'))}") == ALICE_IN


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(xoauth2(USER, "tok", scheme="Basic"), id="not-bearer"),
        pytest.param(b"user=alice\x01\x01", id="no-auth"),
        pytest.param(b"user=alice\x01auth=Bearer \x01\x01", id="empty-token"),
    ],
)
def test_xoauth2_malformed_auth_gets_400(message: bytes) -> None:
    pair = with_tokens(tok=None)
    assert challenge(pair.cmd(f"AUTH XOAUTH2 {b64(message)}")) == GOOGLE_400
    assert pair.cmd("") == BAD_TOKEN


def test_xoauth2_bearer_scheme_is_case_insensitive() -> None:
    pair = with_tokens(tok=None)
    assert pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(USER, 'tok', scheme='bearer'))}") == ALICE_IN


def test_xoauth2_cancel_at_the_error_challenge() -> None:
    pair = with_tokens(tok=None)
    challenge(pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(USER, 'nope'))}"))
    assert pair.cmd("*") == CANCELLED
    back_to_commands(pair)


def test_xoauth2_bad_base64_at_the_error_challenge() -> None:
    pair = with_tokens(tok=None)
    challenge(pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(USER, 'nope'))}"))
    assert pair.cmd("{}") == BAD_BASE64
    back_to_commands(pair)


def test_xoauth2_good_token_after_the_error_is_too_late() -> None:
    pair = with_tokens(tok=None)
    challenge(pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2(USER, 'nope'))}"))
    assert pair.cmd(b64(xoauth2(USER, "tok"))) == BAD_TOKEN
    assert not pair.mailbox.locked


# --- OAUTHBEARER (RFC 7628) -------------------------------------------------------------


def test_oauthbearer_with_initial_response() -> None:
    pair = with_tokens(tok=None)
    assert pair.cmd(f"AUTH OAUTHBEARER {b64(oauthbearer(USER, 'tok'))}") == ALICE_IN


@pytest.mark.parametrize("start", ["AUTH OAUTHBEARER", "AUTH OAUTHBEARER ="])
def test_oauthbearer_without_initial_response(start: str) -> None:
    pair = with_tokens(tok=None)
    assert pair.cmd(start) == EMPTY_CHALLENGE
    assert pair.cmd(b64(oauthbearer(USER, "tok"))) == ALICE_IN


def test_oauthbearer_without_a_user_the_token_names_the_account() -> None:
    pair = with_tokens(tok=None)
    assert pair.cmd(f"AUTH OAUTHBEARER {b64(oauthbearer(None, 'tok'))}") == ALICE_IN


def test_oauthbearer_user_name_escapes_are_decoded() -> None:
    # RFC 5801's saslname: "," is sent as =2C and "=" as =3D.
    store = MailStore({"a,b=c": "pw"})
    store["a,b=c"].tokens["tok"] = None
    pair = Pair(store=store)
    assert pair.cmd(f"AUTH OAUTHBEARER {b64(oauthbearer('a=2Cb=3Dc', 'tok'))}") == (
        b"+OK a,b=c's maildrop has 0 messages (0 octets)\r\n"
    )


@pytest.mark.parametrize(
    ("user", "token"),
    [
        pytest.param(USER, "nope", id="unknown-token"),
        pytest.param(USER, "old", id="expired"),
        pytest.param("bob", "tok", id="unknown-user"),
        pytest.param(USER, "bobs", id="another-users-token"),
        pytest.param(None, "nope", id="unknown-token-no-user"),
        pytest.param(None, "old", id="expired-no-user"),
    ],
)
def test_oauthbearer_bad_token_gets_an_error_then_err(user: str | None, token: str) -> None:
    store = MailStore({USER: PASSWORD, "bob": "pw"})
    store["bob"].tokens["bobs"] = None
    pair = Pair(M1, store=store)
    pair.store[USER].tokens.update(tok=None, old=NOW - 1)
    error = challenge(pair.cmd(f"AUTH OAUTHBEARER {b64(oauthbearer(user, token))}"))
    assert error == INVALID_TOKEN
    assert json.loads(error)["status"] == "invalid_token"  # RFC 7628, section 3.2.2
    # RFC 7628, section 3.2.3: the client answers the error with a single ^A.
    assert pair.cmd("AQ==") == BAD_TOKEN
    back_to_commands(pair)


def test_oauthbearer_without_auth_is_an_invalid_request() -> None:
    pair = with_tokens(tok=None)
    message = b"n,a=alice,\x01host=localhost\x01\x01"
    assert challenge(pair.cmd(f"AUTH OAUTHBEARER {b64(message)}")) == INVALID_REQUEST
    assert pair.cmd("AQ==") == BAD_TOKEN


def test_oauthbearer_cancel_at_the_error_challenge() -> None:
    pair = with_tokens(tok=None)
    challenge(pair.cmd(f"AUTH OAUTHBEARER {b64(oauthbearer(USER, 'nope'))}"))
    assert pair.cmd("*") == CANCELLED
    back_to_commands(pair)


def test_oauthbearer_bad_base64_at_the_error_challenge() -> None:
    pair = with_tokens(tok=None)
    challenge(pair.cmd(f"AUTH OAUTHBEARER {b64(oauthbearer(USER, 'nope'))}"))
    assert pair.cmd("\x01") == BAD_BASE64
    back_to_commands(pair)


# --- TLS required -----------------------------------------------------------------------


def test_require_tls_hides_plaintext_mechanisms_until_stls() -> None:
    pair = Pair(M1, settings=Settings(require_tls=True), stls=True)
    before = listing(pair.cmd("CAPA"))
    assert "SASL CRAM-MD5 SCRAM-SHA-1 SCRAM-SHA-256 XOAUTH2 OAUTHBEARER" in before
    assert "USER" not in before
    assert listing(pair.cmd("AUTH")) == [m for m in MECHANISMS if m not in ("PLAIN", "LOGIN")]
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == NEEDS_TLS
    assert pair.cmd("AUTH PLAIN") == NEEDS_TLS
    assert pair.cmd("AUTH LOGIN") == NEEDS_TLS
    assert pair.session.state is State.AUTHORIZATION
    assert pair.cmd("STLS") == b"+OK Begin TLS negotiation\r\n"
    assert pair.start_tls
    pair.session.tls_started()
    after = listing(pair.cmd("CAPA"))
    assert "SASL " + " ".join(MECHANISMS) in after
    assert "USER" in after
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == ALICE_IN


def test_require_tls_with_only_plaintext_mechanisms_offers_no_sasl_before_tls() -> None:
    pair = Pair(M1, settings=Settings(require_tls=True, sasl=("PLAIN", "LOGIN")), stls=True)
    assert not any(c.startswith("SASL") for c in listing(pair.cmd("CAPA")))
    assert pair.cmd("AUTH") == b"+OK Supported SASL mechanisms follow\r\n.\r\n"
    secure = Pair(M1, settings=Settings(require_tls=True, sasl=("PLAIN", "LOGIN")), secure=True)
    assert "SASL PLAIN LOGIN" in listing(secure.cmd("CAPA"))


def test_require_tls_still_allows_a_challenge_mechanism_in_plaintext() -> None:
    pair = Pair(M1, settings=Settings(require_tls=True), stls=True)
    stamp = challenge(pair.cmd("AUTH CRAM-MD5"))
    assert pair.cmd(cram_response(stamp, USER, PASSWORD)) == ALICE_IN


# --- account names ------------------------------------------------------------------------

BOB = "bob@mail.example.net"
RULES = Settings(domains=("example.com",), recent_prefix=True)


@pytest.mark.parametrize(
    ("login", "settings", "account"),
    [
        pytest.param("alice", Settings(), USER, id="exact"),
        pytest.param("alice@example.com", RULES, USER, id="virtual-domain"),
        pytest.param("recent:alice", RULES, USER, id="recent"),
        pytest.param("recent:alice@example.com", RULES, USER, id="recent-and-domain"),
        pytest.param("bob+mail.example.net", Settings(), BOB, id="plus-for-at"),
        pytest.param("alice+example.com", RULES, USER, id="plus-then-domain"),
        pytest.param("alice@example.com", Settings(), None, id="domain-not-configured"),
        pytest.param("alice@example.org", RULES, None, id="other-domain"),
        pytest.param("recent:alice", Settings(), None, id="recent-not-enabled"),
        pytest.param("bob+mail.example.org", RULES, None, id="plus-wrong-host"),
    ],
)
@pytest.mark.parametrize("method", ["USER/PASS", "APOP", "AUTH PLAIN"])
def test_account_name_rules(
    method: str, login: str, settings: Settings, account: str | None
) -> None:
    store = MailStore({USER: PASSWORD, BOB: PASSWORD})
    pair = Pair(M1, store=store, settings=settings)
    if method == "USER/PASS":
        reply = pair.login(login, PASSWORD)
        refused = BAD_LOGIN
    elif method == "APOP":
        assert pair.session.timestamp is not None
        reply = pair.cmd(f"APOP {login} {apop_digest(pair.session.timestamp, PASSWORD)}")
        refused = BAD_LOGIN
    else:
        reply = pair.cmd(f"AUTH PLAIN {b64(plain(login, PASSWORD))}")
        refused = FAILED
    if account is None:
        assert reply == refused
    elif account == USER:
        assert reply == ALICE_IN
    else:
        assert reply == f"+OK {account}'s maildrop has 0 messages (0 octets)\r\n".encode()


@pytest.mark.parametrize("mechanism", SCRAMS)
def test_scram_follows_the_account_name_rules(mechanism: str) -> None:
    pair = Pair(M1, settings=RULES)
    client = ScramClient([mechanism], "recent:alice@example.com", PASSWORD)
    server_first = challenge(pair.cmd(f"AUTH {mechanism} {b64(client.get_client_first())}"))
    client.set_server_first(server_first.decode())
    client.set_server_final(challenge(pair.cmd(b64(client.get_client_final()))).decode())
    assert pair.cmd("") == ALICE_IN


def test_xoauth2_follows_the_account_name_rules() -> None:
    pair = Pair(M1, settings=RULES)
    pair.store[USER].tokens["tok"] = None
    assert pair.cmd(f"AUTH XOAUTH2 {b64(xoauth2('alice@example.com', 'tok'))}") == ALICE_IN


# --- failed-login delay and limit ---------------------------------------------------------


def events_for(pair: Pair, *commands: str) -> list[Action]:
    """The events themselves: Pair.send turns them into bytes and has no room for a Pause."""
    return pair.session.receive_data(lines(*commands))


def replies(events: list[Action]) -> bytes:
    return b"".join(bytes(e) for e in events if isinstance(e, Reply))


DELAYED = Settings(auth_failure_delay=0.2)


@pytest.mark.parametrize(
    "commands",
    [
        pytest.param(("USER alice", "PASS wrong"), id="user-pass"),
        pytest.param(("APOP alice " + "0" * 32,), id="apop"),
        pytest.param((f"AUTH PLAIN {b64(plain(USER, 'wrong'))}",), id="plain"),
        pytest.param(("AUTH LOGIN", b64(USER), b64("wrong")), id="login"),
        pytest.param(
            (f"AUTH XOAUTH2 {b64(xoauth2(USER, 'nope'))}", ""), id="xoauth2-after-challenge"
        ),
    ],
)
def test_failure_is_paused_before_its_reply(commands: tuple[str, ...]) -> None:
    pair = Pair(M1, settings=DELAYED)
    events = events_for(pair, *commands)
    pause = events.index(Pause(0.2))
    assert events.count(Pause(0.2)) == 1
    # The pause comes straight before the -ERR, after any earlier reply has gone out.
    refusal = events[pause + 1]
    assert isinstance(refusal, Reply)
    assert refusal.status.startswith(b"-ERR [AUTH] ")
    assert pause + 2 == len(events)


@pytest.mark.parametrize(
    "commands",
    [
        pytest.param(("USER alice", "PASS secret"), id="user-pass"),
        pytest.param((f"AUTH PLAIN {b64(plain(USER, PASSWORD))}",), id="plain"),
        pytest.param(("AUTH PLAIN", "*"), id="cancel"),
        pytest.param(("AUTH PLAIN", "!!!!"), id="bad-base64"),
        pytest.param(("AUTH GSSAPI",), id="unsupported"),
        pytest.param((f"AUTH XOAUTH2 {b64(xoauth2(USER, 'nope'))}",), id="error-challenge"),
    ],
)
def test_no_pause_for_anything_but_a_failed_login(commands: tuple[str, ...]) -> None:
    pair = Pair(M1, settings=DELAYED)
    events = events_for(pair, *commands)
    assert not any(isinstance(e, Pause) for e in events), events


def test_max_auth_failures_closes_after_the_last_allowed_failure() -> None:
    pair = Pair(M1, settings=Settings(max_auth_failures=2))
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, 'wrong'))}") == FAILED
    assert not pair.closed
    # Failures of every kind count together.
    assert pair.login(USER, "wrong") == TOO_MANY
    assert pair.closed
    assert pair.cmd("CAPA") == b""


def test_max_auth_failures_with_a_delay_pauses_then_closes() -> None:
    pair = Pair(M1, settings=Settings(max_auth_failures=1, auth_failure_delay=0.2))
    events = events_for(pair, f"AUTH PLAIN {b64(plain(USER, 'wrong'))}")
    assert events[0] == Pause(0.2)
    assert replies(events) == TOO_MANY
    assert events[-1] is CLOSE


def test_cancel_and_bad_base64_are_not_failed_logins() -> None:
    pair = Pair(M1, settings=Settings(max_auth_failures=1))
    assert pair.cmd("AUTH PLAIN", "*") == EMPTY_CHALLENGE + CANCELLED
    assert pair.cmd("AUTH PLAIN", "!!!!") == EMPTY_CHALLENGE + BAD_BASE64
    assert pair.cmd("AUTH PLAIN !!!!") == BAD_INITIAL
    assert pair.cmd("AUTH GSSAPI") == b"-ERR Unsupported SASL mechanism: GSSAPI\r\n"
    assert not pair.closed
    assert pair.cmd(f"AUTH PLAIN {b64(plain(USER, PASSWORD))}") == ALICE_IN


# --- the transcript -------------------------------------------------------------------------


def test_transcript_masks_every_sasl_secret() -> None:
    transcript = SessionTranscript(1)
    pair = Pair(M1, transcript=transcript)
    pair.store[USER].tokens["tok-123"] = None
    sent: list[str] = []

    def say(*commands: str) -> bytes:
        sent.extend(commands)
        return pair.cmd(*commands)

    plain_ir = b64(plain(USER, PASSWORD))
    assert say(f"AUTH PLAIN {b64(plain(USER, 'wrong-pw'))}") == FAILED
    assert say("AUTH LOGIN", b64(USER), b64("wrong-pw")).endswith(FAILED)
    stamp = challenge(say("AUTH CRAM-MD5"))
    assert say(cram_response(stamp, USER, "wrong-pw")) == FAILED
    assert say("AUTH XOAUTH2", b64(xoauth2(USER, "tok-123x")), "").endswith(BAD_TOKEN)
    assert say(f"AUTH XOAUTH2 {plain_ir}x") == BAD_INITIAL
    assert say(f"AUTH PLAIN {plain_ir}") == ALICE_IN
    blobs = [word for line in sent for word in line.split()[-1:] if len(word) > 8]
    masked = transcript.text()
    for secret in ["wrong-pw", "tok-123", PASSWORD, *blobs]:
        assert secret not in masked
    assert "C: AUTH PLAIN ****" in transcript.lines()
    assert transcript.lines().count("C: ****") == 5  # two LOGIN lines, CRAM, two XOAUTH2 lines
    clear = transcript.text(mask=False)
    for blob in blobs:
        assert blob in clear
    assert f"C: AUTH PLAIN {plain_ir}" in transcript.lines(mask=False)
