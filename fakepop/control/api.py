"""The control API's routes, and ``ControlServer``, which serves them for a ``POP3Server``.

``ControlServer`` serves JSON under ``/api/v1`` from a thread of the process that runs the
``POP3Server``, so tests written in any language can add accounts and mail, set faults and
read the transcript of a ``fakepop serve`` (or its container); ``ControlClient`` is the Python
side. A route is one entry of ``ROUTES``: its path, a handler per method, and the media type
of a body that is not JSON. ``openapi.json``, beside this file, describes every route.
"""

from __future__ import annotations

import errno
import functools
import socket
import threading
import time
from collections.abc import Callable
from importlib import resources
from types import TracebackType

from fakepop._version import __version__
from fakepop.control import client as answers  # the answers' shapes, shared with the client
from fakepop.control.client import PREFIX
from fakepop.control.http import (
    ApiError,
    JSONServer,
    Request,
    Response,
    Route,
    is_loopback,
    json_response,
)
from fakepop.mail.store import WAIT_TIMEOUT
from fakepop.protocol.fault_plan import FaultError, Rule
from fakepop.server import POP3Server, PortInUse
from fakepop.settings import FIELDS, RUNTIME, FixedSettingError, from_json, to_json

POLL_INTERVAL = 0.05  # how soon stop() ends the HTTP server's loop
MAX_WAIT = 300.0  # seconds POST /accounts/{name}/wait may hold a request (and its thread)


# --- handlers ------------------------------------------------------------------------------


def _health(api: ControlServer, request: Request) -> Response:
    health: answers.Health = {"status": "ok", "version": __version__}
    return json_response(200, health)


def _index(api: ControlServer, request: Request) -> Response:
    endpoints: list[answers.Endpoint] = [
        {"path": PREFIX + route.template, "methods": list(route.methods), "auth": route.auth}
        for route in ROUTES
    ]
    index: answers.ApiIndex = {
        "version": __version__,
        "openapi": f"{PREFIX}/openapi.json",
        "endpoints": endpoints,
    }
    return json_response(200, index)


@functools.cache
def _openapi_document() -> bytes:
    # From the installed package, where the wheel puts it beside this module.
    return resources.files("fakepop.control").joinpath("openapi.json").read_bytes()


def _openapi(api: ControlServer, request: Request) -> Response:
    return Response(200, _openapi_document(), "application/json")


def _ca(api: ControlServer, request: Request) -> Response:
    authority = api.pop3.authority
    if authority is None:
        raise ApiError(
            404, "this server has no CA: it runs without TLS or with its own certificate"
        )
    return Response(200, authority.ca.cert_pem.bytes(), "application/x-pem-file")


def _account_summary(api: ControlServer, name: str) -> answers.AccountSummary:
    messages = api.pop3.mailbox(name).messages
    return {"name": name, "messages": len(messages), "size": sum(m.size for m in messages)}


def _list_accounts(api: ControlServer, request: Request) -> Response:
    accounts = [_account_summary(api, name) for name in api.pop3.users]
    return json_response(200, {"accounts": accounts})


def _add_account(api: ControlServer, request: Request) -> Response:
    data = request.json()
    if not isinstance(data, dict):
        raise ApiError(400, 'send an object: {"name": "alice", "password": "secret"}')
    name, password = data.get("name"), data.get("password")
    if not isinstance(name, str) or not isinstance(password, str):
        raise ApiError(
            400, 'name and password must both be strings: {"name": ..., "password": ...}'
        )
    unknown = sorted(set(data) - {"name", "password"})
    if unknown:
        raise ApiError(400, f"unknown key {', '.join(unknown)}; the keys are name and password")
    existed = name in api.pop3.users
    try:
        api.pop3.users[name] = password
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    return json_response(200 if existed else 201, _account_summary(api, name))


def _account(api: ControlServer, name: str) -> str:
    if api.pop3.store.get(name) is None:
        raise ApiError(404, f"no account {name!r}; create it with POST {PREFIX}/accounts")
    return name


def _delete_account(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    del api.pop3.users[name]
    return json_response(200, {"deleted": name})


def _list_messages(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    return json_response(200, _maildrop_report(api, name))


def _maildrop_report(api: ControlServer, name: str) -> answers.MaildropReport:
    mailbox = api.pop3.mailbox(name)
    messages: list[answers.MessageSummary] = [
        {"number": number, "uid": m.uid, "size": m.size}
        for number, m in enumerate(mailbox.messages, 1)
    ]
    # Copied first, each in one step: session threads add to them meanwhile.
    retrieved = {str(session): list(uids) for session, uids in dict(mailbox.retrieved).items()}
    report: answers.MaildropReport = {
        "account": name,
        "messages": messages,
        "deleted": list(mailbox.deleted),
        "retrieved": retrieved,
    }
    return report


def _wait(api: ControlServer, request: Request) -> Response:
    """Hold the request until sessions have retrieved and deleted the UIDs named, or time runs out.

    A list given empty waits for any retrieval (or deletion); a key left out, for none.
    """
    name = _account(api, request.params["name"])
    data = request.json()
    usage = '{"retrieved": [uid, ...], "deleted": [uid, ...], "timeout": seconds}'
    if not isinstance(data, dict):
        raise ApiError(400, f"send an object: {usage}")
    unknown = sorted(set(data) - {"retrieved", "deleted", "timeout"})
    if unknown:
        raise ApiError(400, f"unknown key {', '.join(unknown)}: send {usage}")
    waits = {key: data[key] for key in ("retrieved", "deleted") if key in data}
    if not waits:
        raise ApiError(400, f"say what to wait for: {usage}")
    for key, uids in waits.items():
        if not isinstance(uids, list) or not all(isinstance(uid, str) for uid in uids):
            raise ApiError(400, f"{key} must be a list of UIDs (strings), got {uids!r}")
    timeout = data.get("timeout", WAIT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout < 0:
        raise ApiError(400, f"timeout must be a number of seconds, 0 or more, got {timeout!r}")
    if timeout > MAX_WAIT:
        raise ApiError(400, f"timeout is at most {MAX_WAIT:g} seconds, got {timeout!r}")
    mailbox = api.pop3.mailbox(name)
    deadline = time.monotonic() + timeout
    try:
        if "retrieved" in waits:
            mailbox.wait_for_retrieval(*waits["retrieved"], timeout=timeout)
        if "deleted" in waits:
            # What the retrievals' wait left of the timeout; the whole of it when there was none.
            left = max(0.0, deadline - time.monotonic()) if "retrieved" in waits else timeout
            mailbox.wait_for_deletion(*waits["deleted"], timeout=left)
    except TimeoutError as e:
        report: answers.WaitTimedOut = {"error": str(e), **_maildrop_report(api, name)}
        return json_response(408, report)
    return json_response(200, _maildrop_report(api, name))


def _add_message(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    if not request.body:
        raise ApiError(400, "the body is the message: send its raw RFC 5322 bytes")
    mailbox = api.pop3.mailbox(name)
    uid = request.query.get("uid")
    if uid is not None and uid in {m.uid for m in mailbox.messages}:
        raise ApiError(409, f"UID {uid!r} is already in the maildrop of {name!r}")
    try:
        uid = mailbox.add(request.body, uid=uid)
    except ValueError as e:
        raise ApiError(400, str(e)) from None
    return json_response(201, {"uid": uid})


def _purge_messages(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    mailbox = api.pop3.mailbox(name)
    count = len(mailbox.messages)
    mailbox.clear()
    return json_response(200, {"deleted": count})


def _get_message(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    uid = request.params["uid"]
    for message in api.pop3.mailbox(name).messages:
        if message.uid == uid:
            return Response(200, message.read(), "message/rfc822")
    raise ApiError(404, f"no message with UID {uid!r} in the maildrop of {name!r}")


def _delete_message(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    uid = request.params["uid"]
    try:
        api.pop3.remove_message(name, uid)
    except KeyError:
        raise ApiError(404, f"no message with UID {uid!r} in the maildrop of {name!r}") from None
    return json_response(200, {"deleted": uid})


def rule_data(rule: Rule) -> answers.RuleData:
    """A rule in its data form: the keys of a ``[[faults]]`` table, ready to POST again."""
    data: answers.RuleData = {"on": rule.on, "action": rule.action}
    data.update((key, value) for key, value in rule.params.items() if value is not None)
    if rule.user is not None:
        data["user"] = rule.user
    if rule.session is not None:
        data["session"] = rule.session
    data["nth"] = rule.nth
    data["times"] = "always" if rule.times is None else rule.times
    data["probability"] = rule.probability
    data["seed"] = rule.seed
    return data


def _list_faults(api: ControlServer, request: Request) -> Response:
    plan = api.pop3.faults
    rules = plan.rules
    index = {id(rule): number for number, rule in enumerate(rules)}
    fired: list[answers.Fired] = [
        {
            "rule": index.get(id(record.rule)),
            "event": record.event,
            "session": record.session,
            "user": record.user,
            "time": record.time,
        }
        for record in list(plan.fired)
    ]
    report: answers.FaultReport = {"faults": [rule_data(rule) for rule in rules], "fired": fired}
    return json_response(200, report)


def _add_faults(api: ControlServer, request: Request) -> Response:
    data = request.json()
    if isinstance(data, dict) and set(data) == {"faults"}:
        data = data["faults"]  # what GET /faults answers, posted back
    elif isinstance(data, dict):
        data = [data]
    try:
        rules = api.pop3.faults.extend(data, "body")
    except FaultError as e:
        raise ApiError(400, str(e)) from None
    return json_response(201, {"faults": [rule_data(rule) for rule in rules]})


def _clear_faults(api: ControlServer, request: Request) -> Response:
    count = len(api.pop3.faults)
    api.pop3.faults.clear()
    return json_response(200, {"deleted": count})


def _flag(request: Request, key: str, default: bool) -> bool:
    value = request.query.get(key)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise ApiError(400, f"{key} must be true or false, got {value!r}")


def _transcript(api: ControlServer, request: Request) -> Response:
    since_text = request.query.get("since", "0")
    try:
        since = int(since_text)
    except ValueError:
        since = -1
    if since < 0:
        raise ApiError(400, f"since is the number of the last session you have, got {since_text!r}")
    mask = _flag(request, "mask", True)
    sessions = list(api.pop3.transcript)
    chosen = [s for s in sessions if s.session_id > since]
    if request.query.get("format", "json") == "text":
        text = "\n".join(s.text(mask) for s in chosen)
        return Response(200, (text + "\n" if text else "").encode("utf-8"), "text/plain")
    if request.query.get("format", "json") != "json":
        raise ApiError(400, "format is json or text")
    report: answers.TranscriptReport = {
        "last": max((s.session_id for s in sessions), default=since),
        "sessions": [
            {
                "session": s.session_id,
                "peer": s.peer,
                "lines": [
                    {"time": e.time, "direction": e.direction, "text": e.render(mask)}
                    for e in list(s.entries)
                ],
                "violations": list(s.violations),
            }
            for s in chosen
        ],
    }
    return json_response(200, report)


def _clear_transcript(api: ControlServer, request: Request) -> Response:
    sessions = api.pop3.transcript.sessions
    count = len(sessions)
    sessions.clear()
    return json_response(200, {"deleted": count})


def _settings(api: ControlServer, request: Request) -> Response:
    settings: answers.SettingsData = to_json(api.pop3.settings, api.pop3.tls)
    return json_response(200, settings)


def _change_settings(api: ControlServer, request: Request) -> Response:
    data = request.json()
    if not isinstance(data, dict):
        raise ApiError(400, 'send an object of the fields to change: {"idle_timeout": 30}')
    try:
        with api.lock:
            settings = api.pop3.change_settings(**from_json(data))
    except FixedSettingError as e:
        names, flags = ", ".join(e.names), " ".join(FIELDS[name].flag for name in e.names)
        raise ApiError(
            409, f"{e}. {names}: fixed once the server starts; set with fakepop serve {flags}"
        ) from None
    except (TypeError, ValueError) as e:  # a name that is no field; a value it cannot take
        raise ApiError(400, str(e)) from None
    changed: answers.SettingsData = to_json(settings, api.pop3.tls)
    return json_response(200, changed)


def _reset(api: ControlServer, request: Request) -> Response:
    api.reset()
    return json_response(200, {"reset": True})


ROUTES: tuple[Route[ControlServer], ...] = (
    # What the API is, like /health, needs no token: it holds nothing of the server's.
    Route("/", {"GET": _index}, auth=False),
    Route("/openapi.json", {"GET": _openapi}, auth=False),
    Route("/health", {"GET": _health}, auth=False),
    Route("/ca", {"GET": _ca}),
    Route("/accounts", {"GET": _list_accounts, "POST": _add_account}),
    Route("/accounts/{name}", {"DELETE": _delete_account}),
    Route(
        "/accounts/{name}/messages",
        {"GET": _list_messages, "POST": _add_message, "DELETE": _purge_messages},
        # The message itself. Neither it nor JSON is a type a web page may send to
        # another site without asking first (a CORS preflight).
        body_types={"POST": "message/rfc822"},
    ),
    Route("/accounts/{name}/messages/{uid}", {"GET": _get_message, "DELETE": _delete_message}),
    Route("/accounts/{name}/wait", {"POST": _wait}),
    Route("/faults", {"GET": _list_faults, "POST": _add_faults, "DELETE": _clear_faults}),
    Route("/transcript", {"GET": _transcript, "DELETE": _clear_transcript}),
    Route("/settings", {"GET": _settings, "PATCH": _change_settings}),
    Route("/reset", {"POST": _reset}),
)


# --- the server ----------------------------------------------------------------------------


class ControlServer:
    """The control API of ``pop3``, served over HTTP from a daemon thread.

    Args:
        pop3: the server to control.
        host: the address to listen on. Anything but a loopback address needs ``token``
            or ``insecure=True``: whoever reaches the API can read and change all mail.
        port: the port; 0 picks a free one, read back as ``control.port``.
        token: when set, every route but ``/health`` needs ``Authorization: Bearer <token>``.
        insecure: allow a non-loopback ``host`` without a token.
        reset: what ``POST /reset`` does besides putting back the settings ``pop3`` had
            when this was made; by default ``pop3.reset()``, which forgets all accounts,
            mail, faults and the transcript. ``fakepop serve`` passes one that then sets
            up what it was configured with again.

    A web page the developer opens can send requests to the API too; it is refused
    what it could do unasked. A request with an ``Origin`` other than the API's own
    gets 403 (tests and scripts send none). A body must be ``application/json``
    (a message POSTed: ``message/rfc822``), which a page cannot send to another
    site without a CORS preflight, which the API never grants; else 415. Without a
    token, a ``Host`` that a DNS-rebinding page could send gets 403: it must be an
    IP address, ``localhost`` (or a name under ``.localhost``), a name without a
    dot (a compose service) or this machine's name, on any port, since a port
    mapping changes it.
    """

    def __init__(
        self,
        pop3: POP3Server,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str | None = None,
        insecure: bool = False,
        reset: Callable[[], None] | None = None,
    ) -> None:
        if token is None and not insecure and not is_loopback(host):
            raise ValueError(
                f"the control API would listen on {host} without a token, open to anyone who"
                " reaches it: set a token (--control-token), or allow it (--control-insecure)"
            )
        self.pop3 = pop3
        self.host = host
        self.port = port
        self.token = token
        self._reset = reset or pop3.reset
        self._settings = pop3.settings  # what PATCH /settings changed, POST /reset puts back
        # One reset or settings change at a time: two PATCHes at once must not lose one.
        self.lock = threading.Lock()
        self._httpd: JSONServer[ControlServer] | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:8110/api/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PREFIX}"

    def reset(self) -> None:
        """What ``POST /reset`` does: see ``reset`` above."""
        with self.lock:
            self._reset()
            self.pop3.change_settings(**{name: getattr(self._settings, name) for name in RUNTIME})

    def start(self) -> ControlServer:
        """Listen and serve in a daemon thread; returns once listening."""
        if self._httpd is not None:
            raise RuntimeError("the control API is already running")
        try:
            infos = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as e:
            raise OSError(f"cannot listen on {self.host!r}: {e.strerror}") from None
        family, _, _, _, address = infos[0]
        try:
            self._httpd = JSONServer(
                (str(address[0]), int(address[1])),
                family,
                prefix=PREFIX,
                routes=ROUTES,
                served=self,
                token=self.token,
            )
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(self.host, self.port) from None
            raise
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(POLL_INTERVAL,),
            name=f"fakepop-control-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; requests in flight are cut off."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> ControlServer:
        return self if self._httpd is not None else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
