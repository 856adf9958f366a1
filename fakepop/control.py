"""The HTTP control API of a running server, and a client for it.

``ControlServer`` serves JSON under ``/api/v1`` from a thread of the process that runs the
``POP3Server``, so tests written in any language can add accounts and mail, set faults and read
the transcript of a ``fakepop serve`` (or its container). ``ControlClient`` is the Python side.
Both use only the standard library. ``docs/openapi.json`` describes every route.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import re
import socket
import socketserver
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from fakepop._version import __version__
from fakepop.mail.store import MaildropError
from fakepop.protocol.fault_plan import FaultError, Rule
from fakepop.server import POP3Server

PREFIX = "/api/v1"
MAX_BODY = 64 * 1024 * 1024  # a message POSTed may be large; anything past this is a mistake
POLL_INTERVAL = 0.05  # how soon stop() ends the HTTP server's loop
MAX_DIGITS = 19  # of an integer in a JSON body: every number the API takes fits in 64 bits
MAX_HEADER_LINE = 1024  # a chunk-size line or a trailer (RFC 9112, section 7.1)
MAX_TRAILERS = 64  # trailer fields after a chunked body; none is used, a few are tolerated
JSON = "application/json"
# What each body must be sent as: JSON, but a message POSTed is the message itself. Neither is
# a type a web page may send to another site without asking first (a CORS preflight).
BODY_TYPES = {("/accounts/{name}/messages", "POST"): "message/rfc822"}

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # RFC 9112: 1*HEXDIG; 16 digits are 64 bits
# A Host header: a name, an IPv4 address or a bracketed IPv6 one, and maybe a port.
_HOST = re.compile(r"(\[[0-9A-Za-z:.%_-]+\]|[0-9A-Za-z._-]+)(:[0-9]{1,5})?")


class ApiError(Exception):
    """An error answered as JSON with its HTTP status."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Request:
    """What a route handler gets: the path's parameters, the query and the body."""

    params: dict[str, str]
    query: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        if not self.body.strip():
            raise ApiError(400, "the body is empty; send JSON")
        try:
            return json.loads(self.body, parse_int=_whole, parse_constant=_not_a_number)
        except RecursionError:
            raise ApiError(400, "the body's JSON nests too deeply: no request needs more") from None
        except ValueError as e:  # UnicodeDecodeError and JSONDecodeError among them
            raise ApiError(400, f"the body is not valid JSON: {e}") from None


def _whole(text: str) -> int:
    # Python refuses to convert over 4,300 digits, with advice meant for the programmer.
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ApiError(
            400, f"the body holds an integer of {len(text)} digits; none here needs {MAX_DIGITS}"
        )
    return int(text)


def _not_a_number(text: str) -> Any:
    raise ApiError(400, f"the body holds {text}, which is not JSON: send a number")


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, data: Any) -> Response:
    # allow_nan=False: never answer Infinity or NaN, which JSON parsers refuse.
    return Response(status, json.dumps(data, allow_nan=False).encode("utf-8") + b"\n")


Handler = Callable[["ControlServer", Request], Response]


@dataclass(frozen=True)
class Route:
    """A path under ``/api/v1``, with ``{name}`` parameters, and a handler per method."""

    template: str
    methods: Mapping[str, Handler]
    auth: bool = True

    def match(self, segments: list[str]) -> dict[str, str] | None:
        parts = self.template.strip("/").split("/")
        if len(parts) != len(segments):
            return None
        params = {}
        for part, segment in zip(parts, segments, strict=True):
            if part.startswith("{"):
                if not segment:
                    return None
                params[part[1:-1]] = urllib.parse.unquote(segment)
            elif part != segment:
                return None
        return params


# --- handlers ------------------------------------------------------------------------------


def _health(api: ControlServer, request: Request) -> Response:
    return _json(200, {"status": "ok", "version": __version__})


def _ca(api: ControlServer, request: Request) -> Response:
    authority = api.pop3.authority
    if authority is None:
        raise ApiError(
            404, "this server has no CA: it runs without TLS or with its own certificate"
        )
    return Response(200, authority.ca.cert_pem.bytes(), "application/x-pem-file")


def _account_summary(api: ControlServer, name: str) -> dict[str, Any]:
    messages = api.pop3.mailbox(name).messages
    return {"name": name, "messages": len(messages), "size": sum(m.size for m in messages)}


def _list_accounts(api: ControlServer, request: Request) -> Response:
    return _json(200, {"accounts": [_account_summary(api, name) for name in api.pop3.users]})


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
    return _json(200 if existed else 201, _account_summary(api, name))


def _account(api: ControlServer, name: str) -> str:
    if api.pop3.store.get(name) is None:
        raise ApiError(404, f"no account {name!r}; create it with POST {PREFIX}/accounts")
    return name


def _delete_account(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    del api.pop3.users[name]
    return _json(200, {"deleted": name})


def _list_messages(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    mailbox = api.pop3.mailbox(name)
    messages = [
        {"number": number, "uid": m.uid, "size": m.size}
        for number, m in enumerate(mailbox.messages, 1)
    ]
    # Copied first, each in one step: session threads add to them meanwhile.
    retrieved = {str(session): list(uids) for session, uids in dict(mailbox.retrieved).items()}
    return _json(
        200,
        {
            "account": name,
            "messages": messages,
            "deleted": list(mailbox.deleted),
            "retrieved": retrieved,
        },
    )


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
    return _json(201, {"uid": uid})


def _purge_messages(api: ControlServer, request: Request) -> Response:
    name = _account(api, request.params["name"])
    mailbox = api.pop3.mailbox(name)
    count = len(mailbox.messages)
    mailbox.clear()
    return _json(200, {"deleted": count})


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
    return _json(200, {"deleted": uid})


def rule_data(rule: Rule) -> dict[str, Any]:
    """A rule in its data form: the keys of a ``[[faults]]`` table, ready to POST again."""
    data: dict[str, Any] = {"on": rule.on, "action": rule.action}
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
    fired = [
        {
            "rule": index.get(id(record.rule)),
            "event": record.event,
            "session": record.session,
            "user": record.user,
            "time": record.time,
        }
        for record in list(plan.fired)
    ]
    return _json(200, {"faults": [rule_data(rule) for rule in rules], "fired": fired})


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
    return _json(201, {"faults": [rule_data(rule) for rule in rules]})


def _clear_faults(api: ControlServer, request: Request) -> Response:
    count = len(api.pop3.faults)
    api.pop3.faults.clear()
    return _json(200, {"deleted": count})


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
    return _json(
        200,
        {
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
        },
    )


def _clear_transcript(api: ControlServer, request: Request) -> Response:
    sessions = api.pop3.transcript.sessions
    count = len(sessions)
    sessions.clear()
    return _json(200, {"deleted": count})


def _reset(api: ControlServer, request: Request) -> Response:
    api.reset()
    return _json(200, {"reset": True})


ROUTES: tuple[Route, ...] = (
    Route("/health", {"GET": _health}, auth=False),
    Route("/ca", {"GET": _ca}),
    Route("/accounts", {"GET": _list_accounts, "POST": _add_account}),
    Route("/accounts/{name}", {"DELETE": _delete_account}),
    Route(
        "/accounts/{name}/messages",
        {"GET": _list_messages, "POST": _add_message, "DELETE": _purge_messages},
    ),
    Route("/accounts/{name}/messages/{uid}", {"GET": _get_message, "DELETE": _delete_message}),
    Route("/faults", {"GET": _list_faults, "POST": _add_faults, "DELETE": _clear_faults}),
    Route("/transcript", {"GET": _transcript, "DELETE": _clear_transcript}),
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
        reset: what ``POST /reset`` does; by default ``pop3.reset()``, which forgets all
            accounts, mail, faults and the transcript. ``fakepop serve`` passes one that
            then sets up what it was configured with again.

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
        self._reset_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:8110/api/v1``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PREFIX}"

    def reset(self) -> None:
        with self._reset_lock:
            self._reset()

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
        self._httpd = _HTTPServer((str(address[0]), int(address[1])), family, self)
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

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8"), self.token.encode("utf-8")
        )


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address."""
    try:
        infos = socket.getaddrinfo(host or None, 0, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(
        ipaddress.ip_address(str(address).split("%")[0]).is_loopback for address in addresses
    )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a client holding a connection open must not hold up stop()

    def __init__(self, address: tuple[str, int], family: int, control: ControlServer) -> None:
        self.address_family = family
        self.control = control
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS, which can take seconds
        # where there is no resolver; nothing here needs the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    server_version = f"fakepop/{__version__}"
    timeout = 60  # an idle keep-alive connection gives up its thread after this
    # Buffered: the status line, headers and body go out in one write, flushed after each
    # request. Unbuffered, the body was a second small segment that Nagle held back until
    # the client's delayed ACK: 40 ms on every request but the first of a connection.
    wbufsize = 1 << 16

    def setup(self) -> None:
        super().setup()
        # A body larger than the buffer still ends in a small segment: send it at once too.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a test server's requests are the tests' business, not the console's

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own errors (a malformed request line, say) as JSON like the rest.
        self.close_connection = True
        self._send(_error(code, message or HTTPStatus(code).phrase), close=True)

    def _dispatch(self) -> None:
        control = self.server.control
        method = "GET" if self.command == "HEAD" else self.command
        try:
            # The body first, even of a request to be refused: closing with it unread
            # would reset the connection under the answer.
            body = self._body()
            self._check_caller(control)
            route, params, query = self._route()
            if route.auth and not control.authorized(self.headers.get("Authorization")):
                raise ApiError(
                    401,
                    "this control API needs a token: send 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": 'Bearer realm="fakepop"'},
                )
            handler = route.methods.get(method)
            if handler is None:
                allowed = ", ".join(route.methods)
                raise ApiError(
                    405,
                    f"{self.command} is not allowed on {PREFIX}{route.template}; use {allowed}",
                    {"Allow": allowed},
                )
            self._check_content_type(BODY_TYPES.get((route.template, method), JSON), body)
            response = handler(control, Request(params, query, body))
        except ApiError as e:
            response = _error(e.status, e.message)
            response.headers.update(e.headers)
        except MaildropError as e:  # another process holds a Maildir: changing it must wait
            response = _error(409, f"[{e.code}] {e.text}: try again once it is released")
        except Exception as e:  # a bug: answer, and keep serving
            response = _error(500, f"internal error: {type(e).__name__}: {e}")
        self._send(response, close=self.close_connection)

    def _check_caller(self, control: ControlServer) -> None:
        """Refuse what a web page in the developer's browser could send: see ``ControlServer``."""
        host = self.headers.get("Host")
        if control.token is None and host is not None and not _trusted_host(host):
            raise ApiError(
                403,
                f"Host {host[:100]!r} is a name a web page could rebind to this address: call"
                " the API by an IP address, localhost or a name without a dot, or set a token"
                " (--control-token) to allow any name",
            )
        origin = self.headers.get("Origin")
        if origin is not None and not _same_origin(origin, host):
            raise ApiError(
                403,
                f"a request from the web page at {origin[:100]!r} is refused: drive the"
                " control API from a test or a script, which sends no Origin header",
            )

    def _check_content_type(self, expected: str, body: bytes) -> None:
        """Refuse a body, or a declared type, other than ``expected``: a page's form or text."""
        if "Content-Type" not in self.headers and not body:
            return  # nothing sent, nothing to misread: GET, DELETE, POST /reset
        if self.headers.get_content_type() != expected:
            got = self.headers.get("Content-Type", "no Content-Type")
            raise ApiError(415, f"send the body as Content-Type: {expected}, not {got[:100]}")

    def _route(self) -> tuple[Route, dict[str, str], dict[str, str]]:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if not path.startswith(PREFIX + "/"):
            raise ApiError(404, f"no such path {path!r}; the API is under {PREFIX}/")
        segments = path[len(PREFIX) + 1 :].rstrip("/").split("/")
        for route in ROUTES:
            params = route.match(segments)
            if params is not None:
                return route, params, query
        raise ApiError(404, f"no such path {path!r}; see docs/openapi.json for the routes")

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked()
        text = self.headers.get("Content-Length") or "0"
        if not (text.isascii() and text.isdigit()):  # int() would take "-1", " +1_0"
            self.close_connection = True
            raise ApiError(400, "Content-Length is not a number of octets")
        length = int(text) if len(text) <= MAX_DIGITS else MAX_BODY + 1
        if length > MAX_BODY:
            self.close_connection = True  # the body stays unread
            raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _chunked(self) -> bytes:
        if "Content-Length" in self.headers:
            self.close_connection = True  # framed two ways: what follows is not to be trusted
        try:
            return self._chunks()
        except ApiError:
            self.close_connection = True  # the rest of the body is still unread
            raise

    def _chunks(self) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(MAX_HEADER_LINE + 1)
            size_text = line.split(b";")[0].strip()
            if len(line) > MAX_HEADER_LINE or not _CHUNK_SIZE.fullmatch(size_text):
                # int(..., 16) would take "-1" and read to the end of the stream, unbounded.
                raise ApiError(400, "bad chunked encoding: a chunk size is 1 to 16 hex digits")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(MAX_TRAILERS):
                    if self.rfile.readline(MAX_HEADER_LINE + 1) in (b"\r\n", b"\n", b""):
                        return bytes(body)
                raise ApiError(400, f"bad chunked encoding: more than {MAX_TRAILERS} trailers")
            if len(body) + size > MAX_BODY:
                raise ApiError(413, f"the body is larger than {MAX_BODY} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise ApiError(400, "bad chunked encoding: a chunk is not its size, then CRLF")
            body += chunk

    def _send(self, response: Response, close: bool) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


def _error(status: int, message: str) -> Response:
    return _json(status, {"error": message, "status": status})


def _host_and_port(authority: str) -> tuple[str, int] | None:
    """The lower-case host name (IPv6 without brackets, no final dot) and port of a Host."""
    match = _HOST.fullmatch(authority.strip())
    if match is None:
        return None
    name = match[1].strip("[]").lower()
    return (name[:-1] if name.endswith(".") else name), int(match[2][1:] if match[2] else 80)


def _trusted_host(authority: str) -> bool:
    """Whether a Host header is one a DNS-rebinding page cannot send.

    Such a page is at a name its owner registered, which has a dot and is no IP
    address; rebound, the name leads to this API, but the browser still sends it as
    the Host. So an IP address (whichever: the API may be behind a port mapping),
    ``localhost`` and names under ``.localhost`` (RFC 6761: always loopback), a
    name without a dot (a compose service, ``/etc/hosts``) and this machine's host
    name are trusted, on any port (a mapping such as ``-p 18110:8110`` changes it).
    """
    parsed = _host_and_port(authority)
    if parsed is None or not parsed[0]:
        return False
    name = parsed[0]
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(name)
        return True
    return (
        name == "localhost"
        or name.endswith(".localhost")
        or "." not in name
        or name == socket.gethostname().lower()
    )


def _same_origin(origin: str, host: str | None) -> bool:
    """Whether ``Origin`` is this API's own: http, and the host and port of ``Host``."""
    scheme, _, authority = origin.strip().partition("://")
    if scheme.lower() != "http" or host is None:
        return False  # "null" (a sandboxed page or a file), https, or no Host to compare
    own, theirs = _host_and_port(host), _host_and_port(authority)
    return own is not None and own == theirs


# --- the client ----------------------------------------------------------------------------


class ControlError(Exception):
    """The control API refused a request; ``status`` is the HTTP status, 0 if unreachable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class ControlClient:
    """A client for the control API of a ``fakepop serve``, with a method for each route.

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

    def health(self) -> dict[str, Any]:
        """``GET /health``: ``{"status": "ok", "version": ...}``."""
        result: dict[str, Any] = self._json("GET", "/health")
        return result

    def wait_healthy(self, timeout: float = 30.0) -> dict[str, Any]:
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
        return self._request("GET", "/ca")[1]

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

    def accounts(self) -> list[dict[str, Any]]:
        """``GET /accounts``: each account's name, number of messages and their size."""
        result: list[dict[str, Any]] = self._json("GET", "/accounts")["accounts"]
        return result

    def add_account(self, name: str, password: str) -> dict[str, Any]:
        """``POST /accounts``: create an account, or change the password of one."""
        result: dict[str, Any] = self._json(
            "POST", "/accounts", {"name": name, "password": password}
        )
        return result

    def delete_account(self, name: str) -> None:
        """``DELETE /accounts/{name}``."""
        self._json("DELETE", f"/accounts/{_quote(name)}")

    # --- messages ---------------------------------------------------------------------

    def mailbox(self, account: str) -> dict[str, Any]:
        """``GET /accounts/{name}/messages``: the messages; what sessions deleted, retrieved."""
        result: dict[str, Any] = self._json("GET", f"/accounts/{_quote(account)}/messages")
        return result

    def messages(self, account: str) -> list[dict[str, Any]]:
        """The messages of ``account`` now: number, uid and size of each."""
        result: list[dict[str, Any]] = self.mailbox(account)["messages"]
        return result

    def add_message(self, account: str, raw_bytes: bytes, uid: str | None = None) -> str:
        """``POST /accounts/{name}/messages``: deliver a raw RFC 5322 message; returns its UID."""
        query = f"?uid={_quote(uid)}" if uid is not None else ""
        _, body, _ = self._request(
            "POST",
            f"/accounts/{_quote(account)}/messages{query}",
            raw_bytes,
            "message/rfc822",
        )
        result: str = json.loads(body)["uid"]
        return result

    def message(self, account: str, uid: str) -> bytes:
        """``GET /accounts/{name}/messages/{uid}``: the message as sent (CRLF line ends)."""
        return self._request("GET", f"/accounts/{_quote(account)}/messages/{_quote(uid)}")[1]

    def delete_message(self, account: str, uid: str) -> None:
        """``DELETE /accounts/{name}/messages/{uid}``."""
        self._json("DELETE", f"/accounts/{_quote(account)}/messages/{_quote(uid)}")

    def purge(self, account: str) -> int:
        """``DELETE /accounts/{name}/messages``: remove every message; returns how many."""
        result: int = self._json("DELETE", f"/accounts/{_quote(account)}/messages")["deleted"]
        return result

    # --- faults -----------------------------------------------------------------------

    def faults(self) -> list[dict[str, Any]]:
        """``GET /faults``: the rules, in their data form."""
        result: list[dict[str, Any]] = self._json("GET", "/faults")["faults"]
        return result

    def fired(self) -> list[dict[str, Any]]:
        """The faults that fired: the rule's index in ``faults()``, event, session, user, time."""
        result: list[dict[str, Any]] = self._json("GET", "/faults")["fired"]
        return result

    def add_faults(
        self, rules: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """``POST /faults``: add one rule or a list, as ``[[faults]]`` tables; all or none."""
        payload = dict(rules) if isinstance(rules, Mapping) else [dict(r) for r in rules]
        result: list[dict[str, Any]] = self._json("POST", "/faults", payload)["faults"]
        return result

    def add_fault(self, **keys: Any) -> dict[str, Any]:
        """Add one rule given as keywords: ``add_fault(on="RETR", action="drop")``."""
        return self.add_faults(keys)[0]

    def clear_faults(self) -> int:
        """``DELETE /faults``: remove every rule; returns how many there were."""
        result: int = self._json("DELETE", "/faults")["deleted"]
        return result

    # --- transcript and reset ---------------------------------------------------------

    def transcript(self, since: int = 0, *, mask: bool = True) -> dict[str, Any]:
        """``GET /transcript``: the sessions after session ``since``, and the ``last`` number.

        Pass the ``last`` of one answer as ``since`` of the next to get only newer sessions.
        """
        query = f"?since={since}" + ("" if mask else "&mask=false")
        result: dict[str, Any] = self._json("GET", f"/transcript{query}")
        return result

    def transcript_text(self, since: int = 0, *, mask: bool = True) -> str:
        """The transcript as text, as ``server.transcript.text()`` prints it."""
        query = f"?since={since}&format=text" + ("" if mask else "&mask=false")
        return self._request("GET", f"/transcript{query}")[1].decode("utf-8")

    def clear_transcript(self) -> int:
        """``DELETE /transcript``: forget the sessions so far; numbering goes on."""
        result: int = self._json("DELETE", "/transcript")["deleted"]
        return result

    def reset(self) -> None:
        """``POST /reset``: back to the accounts, mail and faults the server started with."""
        self._json("POST", "/reset")

    # --- plumbing ---------------------------------------------------------------------

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        _, data, _ = self._request(method, path, body, "application/json")
        return json.loads(data)

    def _request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None and content_type:
            request.add_header("Content-Type", content_type)
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return answer.status, answer.read(), answer.headers.get_content_type()
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
