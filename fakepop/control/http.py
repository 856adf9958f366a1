"""HTTP for the control API: requests and answers as JSON, a router, and the checks on callers.

Nothing here knows POP3: ``JSONServer`` serves a table of ``Route`` entries, handing each
handler the object it serves (the API) and the ``Request``. It refuses what a web page in
the developer's browser could send unasked (see ``ControlServer``), reads bodies with a
bound, chunked or not, and answers every refusal as JSON with a status that says why.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import re
import socket
import socketserver
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

from fakepop._version import __version__
from fakepop.mail.store import MaildropError

MAX_BODY = 64 * 1024 * 1024  # a message POSTed may be large; anything past this is a mistake
MAX_DIGITS = 19  # of an integer in a JSON body: every number the API takes fits in 64 bits
MAX_HEADER_LINE = 1024  # a chunk-size line or a trailer (RFC 9112, section 7.1)
MAX_TRAILERS = 64  # trailer fields after a chunked body; none is used, a few are tolerated
JSON = "application/json"

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # RFC 9112: 1*HEXDIG; 16 digits are 64 bits
# A Host header: a name, an IPv4 address or a bracketed IPv6 one, and maybe a port.
_HOST = re.compile(r"(\[[0-9A-Za-z:.%_-]+\]|[0-9A-Za-z._-]+)(:[0-9]{1,5})?")

Served = TypeVar("Served")  # what the routes' handlers are given: the API object


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
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, data: Any) -> Response:
    """``data`` as a JSON answer."""
    # allow_nan=False: never answer Infinity or NaN, which JSON parsers refuse.
    return Response(status, json.dumps(data, allow_nan=False).encode("utf-8") + b"\n")


def error_response(status: int, message: str) -> Response:
    return json_response(status, {"error": message, "status": status})


@dataclass(frozen=True)
class Route(Generic[Served]):
    """A path under the API's prefix, with ``{name}`` parameters, and a handler per method.

    Args:
        template: the path, e.g. ``/accounts/{name}``.
        methods: the handler of each HTTP method.
        auth: whether the token, when there is one, is needed.
        body_types: the media type a method's body must be sent as, when not JSON.
    """

    template: str
    methods: Mapping[str, Callable[[Served, Request], Response]]
    auth: bool = True
    body_types: Mapping[str, str] = field(default_factory=dict)

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


class JSONServer(ThreadingHTTPServer, Generic[Served]):
    """Serves ``routes`` under ``prefix``, handing each handler ``served``.

    Args:
        address: the bound address, as ``getaddrinfo`` gives it.
        family: its address family.
        prefix: where the routes are, e.g. ``/api/v1``.
        routes: the routes, tried in order.
        served: what every handler is given.
        token: when set, the routes with ``auth`` need ``Authorization: Bearer <token>``.
    """

    daemon_threads = True  # a client holding a connection open must not hold up stop()

    def __init__(
        self,
        address: tuple[str, int],
        family: int,
        *,
        prefix: str,
        routes: Sequence[Route[Served]],
        served: Served,
        token: str | None,
    ) -> None:
        self.address_family = family
        self.prefix = prefix
        self.routes = routes
        self.served = served
        self.token = token
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host name up in DNS, which can take seconds
        # where there is no resolver; nothing here needs the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def authorized(self, header: str | None) -> bool:
        if self.token is None:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode("utf-8"), self.token.encode("utf-8")
        )


class _Handler(BaseHTTPRequestHandler):
    server: JSONServer[Any]
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
        self._send(error_response(code, message or HTTPStatus(code).phrase), close=True)

    def _dispatch(self) -> None:
        server = self.server
        method = "GET" if self.command == "HEAD" else self.command
        try:
            # The body first, even of a request to be refused: closing with it unread
            # would reset the connection under the answer.
            body = self._body()
            self._check_caller()
            route, params, query = self._route()
            if route.auth and not server.authorized(self.headers.get("Authorization")):
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
                    f"{self.command} is not allowed on {server.prefix}{route.template};"
                    f" use {allowed}",
                    {"Allow": allowed},
                )
            self._check_content_type(route.body_types.get(method, JSON), body)
            response = handler(server.served, Request(params, query, body))
        except ApiError as e:
            response = error_response(e.status, e.message)
            response.headers.update(e.headers)
        except MaildropError as e:  # another process holds a Maildir: changing it must wait
            response = error_response(409, f"[{e.code}] {e.text}: try again once it is released")
        except Exception as e:  # a bug: answer, and keep serving
            response = error_response(500, f"internal error: {type(e).__name__}: {e}")
        self._send(response, close=self.close_connection)

    def _check_caller(self) -> None:
        """Refuse what a web page in the developer's browser could send: see ``ControlServer``."""
        host = self.headers.get("Host")
        if self.server.token is None and host is not None and not _trusted_host(host):
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

    def _route(self) -> tuple[Route[Any], dict[str, str], dict[str, str]]:
        prefix = self.server.prefix
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        path = parts.path
        if path == prefix:
            path += "/"  # the index
        if not path.startswith(prefix + "/"):
            raise ApiError(404, f"no such path {path!r}; the API is under {prefix}/")
        segments = path[len(prefix) + 1 :].rstrip("/").split("/")
        for route in self.server.routes:
            params = route.match(segments)
            if params is not None:
                return route, params, query
        raise ApiError(
            404, f"no such path {path!r}; see fakepop/control/openapi.json for the routes"
        )

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
