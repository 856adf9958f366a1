"""SASL mechanisms for AUTH (RFC 5034), server side, without I/O.

Each mechanism is an exchange: it takes the client's initial response and then
each later response (decoded from base64) and answers with a challenge to send,
a success naming the account, or a failure. The registry, in preference order,
is both what AUTH accepts and what CAPA's SASL line lists.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Protocol

from scramp import ScramException, ScramMechanism

from fakepop.mail.store import Account

SCRAM_ITERATIONS = 4096  # RFC 7677's minimum for SCRAM-SHA-256
GOOGLE_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True, slots=True)
class Challenge:
    """Send ``+ base64(data)`` and wait for the client's next response."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    account: Account


@dataclass(frozen=True, slots=True)
class Failure:
    text: str = "Authentication failed"
    code: str = "AUTH"  # RFC 3206: the credentials were wrong


Step = Challenge | Success | Failure


class Accounts(Protocol):
    """What a mechanism needs from the session it runs in."""

    def resolve(self, name: str) -> Account | None:
        """The account a login name names, after the server's name rules."""

    def now(self) -> float:
        """Seconds since the epoch, for token expiry."""

    def challenge_stamp(self) -> str:
        """A fresh ``<pid.clock@hostname>`` string, for CRAM-MD5."""

    def token_owner(self, token: str) -> Account | None:
        """The account holding ``token``, for OAUTHBEARER without a user name."""

    def admit(self, name: str, password: str | None) -> Account | None:
        """With ``any_login``, the account ``name`` names, made if need be; else None.

        ``password`` is the one a new account gets, when the mechanism carries it.
        """


def check_password(account: Account | None, password: str) -> bool:
    """Compare in constant time; a missing account fails the same way as a wrong password."""
    if account is None:
        return False
    return hmac.compare_digest(account.password.encode("utf-8"), password.encode("utf-8"))


def check_token(account: Account | None, token: str, now: float) -> bool:
    if account is None:
        return False
    expires = account.tokens.get(token, 0.0)
    return expires is None or expires > now


class Exchange(ABC):
    """One run of a mechanism."""

    name: ClassVar[str]
    plaintext: ClassVar[bool]  # sends the password itself: refused before TLS when TLS is required

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    @abstractmethod
    def start(self, initial: bytes | None) -> Step:
        """Begin, with the initial response if the client sent one (``b""`` for "=")."""

    @abstractmethod
    def respond(self, data: bytes) -> Step:
        """The client's next response, decoded."""

    def _act_as(self, account: Account, authzid: str) -> Step:
        """Log ``account`` in as the authorization identity it named (RFC 4422, 3.4.1):
        itself, or an account it may act as; none named means itself."""
        if not authzid:
            return Success(account)
        target = self.accounts.resolve(authzid)
        if target is account or (target is not None and target.name in account.may_act_as):
            return Success(target)
        return Failure(f"{_quoted(account.name)} may not log in as {_quoted(authzid)}")


MECHANISMS: dict[str, type[Exchange]] = {}


def mechanism(cls: type[Exchange]) -> type[Exchange]:
    """Register an exchange under its name; registration order is CAPA's order."""
    MECHANISMS[cls.name] = cls
    return cls


def _quoted(name: str) -> str:
    """A client's name, fit to quote in a one-line ASCII reply: CR, LF and the like escaped."""
    return name.encode("unicode_escape").decode("ascii")


def _text(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


@mechanism
class Plain(Exchange):
    """RFC 4616: ``authzid NUL authcid NUL password`` in one response."""

    name = "PLAIN"
    plaintext = True

    def start(self, initial: bytes | None) -> Step:
        return Challenge(b"") if initial is None else self.respond(initial)

    def respond(self, data: bytes) -> Step:
        parts = [_text(p) for p in data.split(b"\0")]
        if len(parts) != 3 or None in parts:
            return Failure("Malformed PLAIN response: expected authzid NUL authcid NUL password")
        authzid, authcid, password = (p or "" for p in parts)
        account = self.accounts.admit(authcid, password)
        if account is None:
            account = self.accounts.resolve(authcid)
            if not check_password(account, password):
                return Failure()
            assert account is not None
        return self._act_as(account, authzid)


@mechanism
class Login(Exchange):
    """The de facto LOGIN mechanism: user name, then password, each asked for."""

    name = "LOGIN"
    plaintext = True

    def __init__(self, accounts: Accounts) -> None:
        super().__init__(accounts)
        self.user: str | None = None

    def start(self, initial: bytes | None) -> Step:
        if not initial:
            return Challenge(b"Username:")
        return self.respond(initial)

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None:
            return Failure("LOGIN response is not valid UTF-8")
        if self.user is None:
            self.user = text
            return Challenge(b"Password:")
        admitted = self.accounts.admit(self.user, text)
        if admitted is not None:
            return Success(admitted)
        account = self.accounts.resolve(self.user)
        return Success(account) if account and check_password(account, text) else Failure()


@mechanism
class CramMD5(Exchange):
    """RFC 2195: the client answers a timestamp with its HMAC-MD5 under the password."""

    name = "CRAM-MD5"
    plaintext = False

    def start(self, initial: bytes | None) -> Step:
        if initial:
            return Failure("CRAM-MD5 takes no initial response")
        self.stamp = self.accounts.challenge_stamp().encode("ascii")
        return Challenge(self.stamp)

    def respond(self, data: bytes) -> Step:
        user, _, digest = (_text(data) or "").rpartition(" ")
        admitted = self.accounts.admit(user, None) if user else None
        if admitted is not None:
            return Success(admitted)
        account = self.accounts.resolve(user)
        if account is None:
            return Failure()
        key = account.password.encode("utf-8")
        expected = hmac.new(key, self.stamp, hashlib.md5).hexdigest()
        # As bytes: compare_digest refuses text that is not ASCII, which a client may send.
        given = digest.lower().encode("utf-8", "replace")
        return Success(account) if hmac.compare_digest(expected.encode(), given) else Failure()


@functools.lru_cache(maxsize=1024)
def _scram_auth_info(mechanism: str, password: str) -> tuple[bytes, bytes, bytes, int]:
    """Salt, stored key, server key and iterations for a password: PBKDF2 is slow, so once."""
    return ScramMechanism(mechanism).make_auth_info(password, iteration_count=SCRAM_ITERATIONS)  # type: ignore[no-any-return]


_DECOY_KEY = os.urandom(32)  # per process: decoy salts cannot be told from real ones


@functools.lru_cache(maxsize=1024)
def _scram_decoy(mechanism: str, user: str) -> tuple[bytes, bytes, bytes, int]:
    """Auth info for a user with no account: the same salt each time, and no password."""
    # 32 octets: the length of scramp's own salts.
    digest = hmac.new(_DECOY_KEY, f"{mechanism}\0{user}".encode(), hashlib.sha256).digest()
    return ScramMechanism(mechanism).make_auth_info(  # type: ignore[no-any-return]
        os.urandom(32).hex(), iteration_count=SCRAM_ITERATIONS, salt=digest
    )


class _GivenHeader:
    """The client's GS2 header as sent, authorization identity included.

    scramp refuses a client-first message that names an authorization identity
    (RFC 5802, section 5.1 allows one) and checks the final message's ``c=``
    against the header it would rebuild. The identity is taken off before
    scramp sees the first message, and this stands in for the header, so that
    ``c=`` is checked against what the client really sent.
    """

    def __init__(self, header: str) -> None:
        self.header = header.encode("utf-8")

    def make_cbind_input(self, channel_binding: object) -> bytes:
        return self.header  # no channel binding is offered: the input is the header alone


class _Scram(Exchange):
    """RFC 5802 / 7677, the server side from scramp, without channel binding."""

    plaintext = False

    def __init__(self, accounts: Accounts) -> None:
        super().__init__(accounts)
        self.account: Account | None = None
        self.server = ScramMechanism(self.name).make_server(self._auth_info)
        self.stage = 0
        self.authzid = ""

    def _client_first(self, text: str) -> None:
        flag, authzid, rest = [*text.split(",", 2), "", ""][:3]
        if not authzid.startswith("a="):
            self.server.set_client_first(text)
            return
        self.server.set_client_first(f"{flag},,{rest}")
        self.server.gs2_header = _GivenHeader(f"{flag},{authzid},")
        self.authzid = authzid[2:].replace("=2C", ",").replace("=3D", "=")  # saslname

    def _auth_info(self, user: str) -> tuple[bytes, bytes, bytes, int]:
        self.account = self.accounts.resolve(user)
        if self.account is None:
            # RFC 5802, section 5.1: an unknown user gets a salt as stable as a real one,
            # so the server-first message does not tell who has an account; the proof
            # then fails, as a wrong password's does.
            return _scram_decoy(self.name, user)
        return _scram_auth_info(self.name, self.account.password)

    def start(self, initial: bytes | None) -> Step:
        return Challenge(b"") if initial is None else self.respond(initial)

    def respond(self, data: bytes) -> Step:
        text = _text(data)
        if text is None:
            return Failure("SCRAM message is not valid UTF-8")
        self.stage += 1
        try:
            if self.stage == 1:
                self._client_first(text)
                return Challenge(self.server.get_server_first().encode("utf-8"))
            if self.stage == 2:
                self.server.set_client_final(text)
                return Challenge(self.server.get_server_final().encode("utf-8"))
        except ScramException:
            return Failure()
        # The client's empty answer to the server-final message ends the exchange.
        if text or self.account is None:
            return Failure("SCRAM exchange is already complete")
        return self._act_as(self.account, self.authzid)


@mechanism
class ScramSHA1(_Scram):
    name = "SCRAM-SHA-1"


@mechanism
class ScramSHA256(_Scram):
    name = "SCRAM-SHA-256"


class _Bearer(Exchange):
    """Token mechanisms: on a bad token the server sends an error challenge, the client
    answers it with a dummy response, and only then does the server say -ERR."""

    plaintext = False

    def __init__(self, accounts: Accounts) -> None:
        super().__init__(accounts)
        self.failed = False

    def start(self, initial: bytes | None) -> Step:
        # Without an initial response (the two-step form Office 365 clients use) ask for it.
        return Challenge(b"") if not initial else self.respond(initial)

    def respond(self, data: bytes) -> Step:
        if self.failed:
            return Failure("Invalid or expired token")
        outcome = self.check(data)
        if isinstance(outcome, Account):
            return Success(outcome)
        self.failed = True
        return Challenge(json.dumps(outcome, separators=(",", ":")).encode("ascii"))

    @abstractmethod
    def check(self, data: bytes) -> Account | dict[str, str]:
        """The account the token is good for, or the error to send in the challenge."""


def _fields(pairs: list[bytes]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        key, sep, value = (_text(pair) or "").partition("=")
        if sep:
            fields[key] = value
    return fields


def _bearer(fields: dict[str, str]) -> str | None:
    scheme, _, token = fields.get("auth", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


@mechanism
class XOAuth2(_Bearer):
    """Google's and Microsoft's ``user=... ^A auth=Bearer token ^A^A``."""

    name = "XOAUTH2"

    def check(self, data: bytes) -> Account | dict[str, str]:
        fields = _fields(data.split(b"\x01"))
        token = _bearer(fields)
        account = self.accounts.resolve(fields.get("user", ""))
        if token is None:
            return {"status": "400", "schemes": "Bearer", "scope": GOOGLE_SCOPE}
        admitted = self.accounts.admit(fields["user"], None) if fields.get("user") else None
        if admitted is not None:
            return admitted
        if account is None or not check_token(account, token, self.accounts.now()):
            return {"status": "401", "schemes": "Bearer", "scope": GOOGLE_SCOPE}
        return account


@mechanism
class OAuthBearer(_Bearer):
    """RFC 7628: a GS2 header naming the user, then ``auth=Bearer token`` among key=value pairs."""

    name = "OAUTHBEARER"

    def check(self, data: bytes) -> Account | dict[str, str]:
        header, *pairs = data.split(b"\x01")
        user = ""
        for part in (_text(header) or "").split(","):
            if part.startswith("a="):
                user = part[2:].replace("=2C", ",").replace("=3D", "=")
        token = _bearer(_fields(pairs))
        error = {"status": "invalid_token", "scope": GOOGLE_SCOPE}
        if token is None:
            return {"status": "invalid_request", "scope": GOOGLE_SCOPE}
        admitted = self.accounts.admit(user, None) if user else None
        if admitted is not None:
            return admitted
        now = self.accounts.now()
        account = self.accounts.resolve(user) if user else self.accounts.token_owner(token)
        if not check_token(account, token, now):
            return error
        assert account is not None
        return account
