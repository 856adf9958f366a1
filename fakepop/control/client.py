"""``ControlClient``: the control API from Python, a method for each endpoint.

Answers are ``TypedDict``s: the JSON as the API sends it, so a result can be printed,
compared with a literal or posted back (``add_faults(client.faults())``), and mypy still
knows every key. The API's handlers are typed with the same dictionaries, so the server
and the client cannot disagree on a key unnoticed. Only the standard library is used.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

PREFIX = "/api/v1"

RuleData = dict[str, Any]
"""A fault rule in its data form: the keys of a ``[[faults]]`` table, which vary by action."""

SettingsData = dict[str, Any]
"""The live settings as JSON: each field of ``fakepop.Settings`` and, with TLS, of
``fakepop.TLSOptions``, by name (``fakepop.settings.to_json``). Open-ended rather than a
``TypedDict``: a new field is then written once, in ``fakepop.settings``, and no more."""


class Health(TypedDict):
    status: str
    version: str


class AccountSummary(TypedDict):
    name: str
    messages: int
    size: int  # octets, summed over the messages


class MessageSummary(TypedDict):
    number: int  # as a session numbers it: from 1
    uid: str
    size: int


class MaildropReport(TypedDict):
    account: str
    messages: list[MessageSummary]
    deleted: list[str]  # UIDs whose deletion a session committed
    retrieved: dict[str, list[str]]  # session number -> UIDs sent by RETR or TOP


class WaitTimedOut(MaildropReport):
    error: str  # what was waited for, and what happened instead


class Fired(TypedDict):
    rule: int | None  # the rule's index in ``faults``; None once the rule is removed
    event: str
    session: int | None
    user: str | None
    time: float


class FaultReport(TypedDict):
    faults: list[RuleData]
    fired: list[Fired]


class TranscriptLine(TypedDict):
    time: float
    direction: str
    text: str


class TranscriptSession(TypedDict):
    session: int
    peer: str
    lines: list[TranscriptLine]
    violations: list[str]


class TranscriptReport(TypedDict):
    last: int  # pass it as ``since`` next time to get only newer sessions
    sessions: list[TranscriptSession]


class Endpoint(TypedDict):
    path: str  # with the prefix: /api/v1/accounts/{name}
    methods: list[str]
    auth: bool  # whether the token, when there is one, is needed


class ApiIndex(TypedDict):
    version: str
    openapi: str  # the path of the OpenAPI document
    endpoints: list[Endpoint]


class ControlError(Exception):
    """The control API refused a request; ``status`` is the HTTP status, 0 if unreachable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class ControlClient:
    """A client for the control API of a ``fakepop serve``, with a method for each endpoint.

    Args:
        url: where the API is: ``http://127.0.0.1:8110`` or ``http://127.0.0.1:8110/api/v1``.
        token: the bearer token, if the server wants one.
        timeout: seconds to wait for each answer.

    Raises ``ControlError`` with the status and the server's message when a request fails.
    Proxy variables (``http_proxy``) are ignored: the API is on a host the tests reach directly.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 10.0) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith(PREFIX) else base + PREFIX
        self.token = token
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"ControlClient({self.url!r})"

    # --- health and the CA -------------------------------------------------------------

    def health(self) -> Health:
        """``GET /health``: ``{"status": "ok", "version": ...}``."""
        result: Health = self._json("GET", "/health")
        return result

    def index(self) -> ApiIndex:
        """``GET /api/v1``: the version and every endpoint with its methods."""
        result: ApiIndex = self._json("GET", "")
        return result

    def openapi(self) -> dict[str, Any]:
        """``GET /api/v1/openapi.json``: the OpenAPI 3.1 document that describes the API."""
        result: dict[str, Any] = self._json("GET", "/openapi.json")
        return result

    def wait_healthy(self, timeout: float = 30.0) -> Health:
        """Ask ``/health`` until the server answers, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.health()
            except ControlError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.1)

    def ca_pem(self) -> bytes:
        """``GET /ca``: the CA certificate, in PEM, that the server's certificate chains to."""
        return self._request("GET", "/ca")

    def save_ca(self, path: str | Path) -> Path:
        """Write the CA certificate to ``path``, for curl --cacert and the like."""
        file = Path(path)
        file.write_bytes(self.ca_pem())
        return file

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts the server's CA (only it) and checks host names."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=self.ca_pem().decode("ascii"))
        return context

    # --- accounts ---------------------------------------------------------------------

    def accounts(self) -> list[AccountSummary]:
        """``GET /accounts``: each account's name, number of messages and their size."""
        result: list[AccountSummary] = self._json("GET", "/accounts")["accounts"]
        return result

    def add_account(self, name: str, password: str) -> AccountSummary:
        """``POST /accounts``: create an account, or change the password of one."""
        result: AccountSummary = self._json(
            "POST", "/accounts", {"name": name, "password": password}
        )
        return result

    def delete_account(self, name: str) -> None:
        """``DELETE /accounts/{name}``."""
        self._json("DELETE", f"/accounts/{_quote(name)}")

    # --- messages ---------------------------------------------------------------------

    def mailbox(self, account: str) -> MaildropReport:
        """``GET /accounts/{name}/messages``: the messages; what sessions deleted, retrieved."""
        result: MaildropReport = self._json("GET", f"/accounts/{_quote(account)}/messages")
        return result

    def messages(self, account: str) -> list[MessageSummary]:
        """The messages of ``account`` now: number, uid and size of each."""
        return self.mailbox(account)["messages"]

    def add_message(self, account: str, raw_bytes: bytes, uid: str | None = None) -> str:
        """``POST /accounts/{name}/messages``: deliver a raw RFC 5322 message; returns its UID."""
        query = f"?uid={_quote(uid)}" if uid is not None else ""
        body = self._request(
            "POST",
            f"/accounts/{_quote(account)}/messages{query}",
            raw_bytes,
            "message/rfc822",
        )
        result: str = json.loads(body)["uid"]
        return result

    def message(self, account: str, uid: str) -> bytes:
        """``GET /accounts/{name}/messages/{uid}``: the message as sent (CRLF line ends)."""
        return self._request("GET", f"/accounts/{_quote(account)}/messages/{_quote(uid)}")

    def delete_message(self, account: str, uid: str) -> None:
        """``DELETE /accounts/{name}/messages/{uid}``."""
        self._json("DELETE", f"/accounts/{_quote(account)}/messages/{_quote(uid)}")

    def purge(self, account: str) -> int:
        """``DELETE /accounts/{name}/messages``: remove every message; returns how many."""
        result: int = self._json("DELETE", f"/accounts/{_quote(account)}/messages")["deleted"]
        return result

    def wait_for_retrieval(self, account: str, *uids: str, timeout: float = 5.0) -> MaildropReport:
        """``POST /accounts/{name}/wait``: return once sessions were sent every one of ``uids``.

        As ``Mailbox.wait_for_retrieval``: with no UIDs, any one retrieval will do.

        Returns:
            The maildrop as ``mailbox()`` reports it, once the wait is met.

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the API answered 408); the
                message says what was retrieved meanwhile.
        """
        return self._wait(account, "retrieved", uids, timeout)

    def wait_for_deletion(self, account: str, *uids: str, timeout: float = 5.0) -> MaildropReport:
        """``POST /accounts/{name}/wait``: return once committed QUITs have deleted ``uids``.

        As ``Mailbox.wait_for_deletion``: with no UIDs, any one deletion will do.

        Raises:
            TimeoutError: ``timeout`` seconds passed first (the API answered 408); the
                message says what was deleted meanwhile.
        """
        return self._wait(account, "deleted", uids, timeout)

    def _wait(self, account: str, key: str, uids: Sequence[str], timeout: float) -> MaildropReport:
        payload = json.dumps({key: list(uids), "timeout": timeout}).encode("utf-8")
        path = f"/accounts/{_quote(account)}/wait"
        try:
            # The answer may take the whole wait, on top of the usual time to answer.
            body = self._request("POST", path, payload, "application/json", self.timeout + timeout)
        except ControlError as e:
            if e.status == 408:
                raise TimeoutError(e.message) from None
            raise
        result: MaildropReport = json.loads(body)
        return result

    # --- faults -----------------------------------------------------------------------

    def fault_report(self) -> FaultReport:
        """``GET /faults``: the rules in their data form, and the faults that fired."""
        result: FaultReport = self._json("GET", "/faults")
        return result

    def faults(self) -> list[RuleData]:
        """The rules, in their data form."""
        return self.fault_report()["faults"]

    def fired(self) -> list[Fired]:
        """The faults that fired: the rule's index in ``faults()``, event, session, user, time."""
        return self.fault_report()["fired"]

    def add_faults(self, rules: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[RuleData]:
        """``POST /faults``: add one rule or a list, as ``[[faults]]`` tables; all or none."""
        payload = dict(rules) if isinstance(rules, Mapping) else [dict(r) for r in rules]
        result: list[RuleData] = self._json("POST", "/faults", payload)["faults"]
        return result

    def add_fault(self, **keys: Any) -> RuleData:
        """Add one rule given as keywords: ``add_fault(on="RETR", action="drop")``."""
        return self.add_faults(keys)[0]

    def clear_faults(self) -> int:
        """``DELETE /faults``: remove every rule; returns how many there were."""
        result: int = self._json("DELETE", "/faults")["deleted"]
        return result

    # --- settings ---------------------------------------------------------------------

    def settings(self) -> SettingsData:
        """``GET /settings``: the server's live settings, keyed by field name."""
        result: SettingsData = self._json("GET", "/settings")
        return result

    def change_settings(self, **changes: Any) -> SettingsData:
        """``PATCH /settings``: change fields that may change at run time; all or none.

        Values are as ``settings()`` gives them (JSON: a list for a tuple, null for None).
        Sessions that start afterwards see the change. A field fixed once the server starts
        is a ``ControlError`` with status 409; an unknown name or a bad value, 400.

        Returns:
            The new live settings.
        """
        result: SettingsData = self._json("PATCH", "/settings", changes)
        return result

    # --- transcript and reset ---------------------------------------------------------

    def transcript(self, since: int = 0, *, mask: bool = True) -> TranscriptReport:
        """``GET /transcript``: the sessions after session ``since``, and the ``last`` number.

        Pass the ``last`` of one answer as ``since`` of the next to get only newer sessions.
        """
        query = f"?since={since}" + ("" if mask else "&mask=false")
        result: TranscriptReport = self._json("GET", f"/transcript{query}")
        return result

    def transcript_text(self, since: int = 0, *, mask: bool = True) -> str:
        """The transcript as text, as ``server.transcript.text()`` prints it."""
        query = f"?since={since}&format=text" + ("" if mask else "&mask=false")
        return self._request("GET", f"/transcript{query}").decode("utf-8")

    def clear_transcript(self) -> int:
        """``DELETE /transcript``: forget the sessions so far; numbering goes on."""
        result: int = self._json("DELETE", "/transcript")["deleted"]
        return result

    def reset(self) -> None:
        """``POST /reset``: back to the accounts, mail, faults and settings it started with."""
        self._json("POST", "/reset")

    # --- plumbing ---------------------------------------------------------------------

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        return json.loads(self._request(method, path, body, "application/json"))

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None and content_type:
            request.add_header("Content-Type", content_type)
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=timeout or self.timeout) as answer:
                data: bytes = answer.read()
                return data
        except urllib.error.HTTPError as e:
            raise ControlError(e.code, _error_message(e.read(), e.reason)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ControlError(0, f"cannot reach the control API at {self.url}: {reason}") from None


def _error_message(body: bytes, fallback: str) -> str:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip() or fallback
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return fallback


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")
