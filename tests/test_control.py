"""The control API of a ``fakepop serve`` process, through ``ControlClient`` and through curl."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import os
import poplib
import socket
import subprocess
import threading
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pop3 import ServerFactory
from required import program
from serving import Served, serve

from fakepop import POP3Server, PortInUse
from fakepop.control import (
    PREFIX,
    ROUTES,
    ControlClient,
    ControlError,
    ControlServer,
    is_loopback,
)
from fakepop.mail.loaders import fixtures_dir, load_eml_dir
from fakepop.mail.wire import to_crlf
from fakepop.settings import json_schema

TOKEN = "t0p-secret"
DEMO = load_eml_dir(fixtures_dir() / "demo")
DEMO_UIDS = [m.uid for m in DEMO]
DEMO_SIZE = sum(len(to_crlf(m.raw)) for m in DEMO)
RAW = b"From: ci@example.com\r\nSubject: via the API\r\n\r\n.a line with a dot\r\nbye\r\n"
OPENAPI = Path(__file__).resolve().parent.parent / "fakepop" / "control" / "openapi.json"


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with serve(
        "--json", "--port", "0", "--tls-port", "0", "--control-port", "0",
        "--control-token", TOKEN, "--user", "alice:secret",
        "--mailbox", f"alice={fixtures_dir() / 'demo'}",
    ) as served:  # fmt: skip
        yield served
        assert served.stop() == (0, "", "")


@pytest.fixture
def client(served: Served) -> Iterator[ControlClient]:
    client = ControlClient(served.info["control"]["url"], TOKEN)
    yield client
    client.reset()  # the next test starts from what the server started with


@pytest.fixture
def url(served: Served) -> str:
    return str(served.info["control"]["url"])


@contextlib.contextmanager
def pop3s(
    served: Served, client: ControlClient, user: str = "alice", password: str = "secret"
) -> Iterator[poplib.POP3_SSL]:
    """A session over implicit TLS that trusts the CA got from GET /ca; ended with QUIT."""
    port = served.info["pop3s"]["port"]
    with contextlib.closing(
        poplib.POP3_SSL("127.0.0.1", port, context=client.ssl_context(), timeout=5)
    ) as session:
        session.user(user)
        session.pass_(password)
        yield session
        session.quit()


def curl(
    method: str, url: str, *args: str, token: str | None = TOKEN
) -> tuple[int, dict[str, str], bytes]:
    """One request with curl: the status, the headers (lower-case names) and the body."""
    auth = ["-H", f"Authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [program("curl"), "-sS", "-i", "--noproxy", "*", "-X", method, *auth, *args, url],
        capture_output=True,
        check=True,
        timeout=10,
    )
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.interop  # runs curl
def test_health_is_open_and_the_rest_needs_the_token(served: Served, url: str) -> None:
    assert ControlClient(url).health()["status"] == "ok"
    for token in (None, "wrong"):
        with pytest.raises(ControlError) as refused:
            ControlClient(url, token).accounts()
        assert refused.value.status == 401
    status, headers, body = curl("GET", f"{url}/accounts", token=None)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["status"] == 401
    status, _, body = curl("GET", f"{url}/accounts")
    assert status == 200
    assert json.loads(body)["accounts"][0]["name"] == "alice"


@pytest.mark.interop  # runs curl
def test_the_index_lists_the_routes_and_the_openapi_document_is_served(
    served: Served, url: str
) -> None:
    # Without the token, and without a trailing slash, as a person types it.
    status, headers, body = curl("GET", url, token=None)
    assert (status, headers["content-type"]) == (200, "application/json")
    index = json.loads(body)
    assert index["openapi"] == f"{PREFIX}/openapi.json"
    assert {e["path"]: set(e["methods"]) for e in index["endpoints"]} == {
        PREFIX + route.template: set(route.methods) for route in ROUTES
    }
    assert curl("GET", url + "/", token=None)[2] == body
    status, headers, document = curl("GET", url + "/openapi.json", token=None)
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(document) == json.loads(OPENAPI.read_text(encoding="utf-8"))


def test_accounts_made_and_removed_through_the_api(served: Served, client: ControlClient) -> None:
    assert client.add_account("bob", "pw") == {"name": "bob", "messages": 0, "size": 0}
    assert [a["name"] for a in client.accounts()] == ["alice", "bob"]
    client.add_account("bob", "new password")  # an existing account: a new password
    with pop3s(served, client, "bob", "new password") as session:
        assert session.stat() == (0, 0)
    client.delete_account("bob")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"), pop3s(served, client, "bob", "pw"):
        pass
    with pytest.raises(ControlError) as missing:
        client.delete_account("bob")
    assert missing.value.status == 404


def test_a_message_added_through_the_api_is_fetched_by_poplib(
    served: Served, client: ControlClient
) -> None:
    uid = client.add_message("alice", RAW)
    assert [m["uid"] for m in client.messages("alice")] == [*DEMO_UIDS, uid]
    assert client.message("alice", uid) == RAW
    with pop3s(served, client) as session:
        number = len(DEMO_UIDS) + 1
        assert session.uidl(number) == f"+OK {number} {uid}".encode()
        _, lines, _ = session.retr(number)
        assert b"".join(line + b"\r\n" for line in lines) == RAW
        session.dele(number)
    mailbox = client.mailbox("alice")
    assert mailbox["deleted"] == [uid]
    assert mailbox["retrieved"] == {"1": [uid]}
    assert [m["uid"] for m in mailbox["messages"]] == DEMO_UIDS


def test_messages_removed_one_at_a_time_and_all_at_once(
    served: Served, client: ControlClient
) -> None:
    assert client.add_message("alice", b"Subject: x\n\nA slash in the UID\n", uid="a/b") == "a/b"
    assert client.messages("alice")[-1] == {
        "number": len(DEMO_UIDS) + 1,
        "uid": "a/b",
        "size": len(to_crlf(b"Subject: x\n\nA slash in the UID\n")),
    }
    client.delete_message("alice", "a/b")
    with pytest.raises(ControlError) as missing:
        client.delete_message("alice", "a/b")
    assert missing.value.status == 404
    assert client.purge("alice") == len(DEMO_UIDS)
    with pop3s(served, client) as session:
        assert session.stat() == (0, 0)


def test_a_fault_posted_through_the_api_is_met_by_poplib(
    served: Served, client: ControlClient
) -> None:
    rule = client.add_fault(on="RETR", action="error", code="SYS/TEMP", user="alice")
    assert rule["action"] == "error"
    assert client.faults() == [rule]
    with pop3s(served, client) as session:
        with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\]"):
            session.retr(1)
        session.retr(1)  # it fired once, as the rule says
    [fired] = client.fired()
    assert (fired["rule"], fired["event"], fired["user"]) == (0, "RETR", "alice")
    assert client.clear_faults() == 1
    assert client.faults() == []


def test_faults_round_trip_and_bad_ones_are_refused_whole(client: ControlClient) -> None:
    rules = client.add_faults(
        [{"on": "QUIT", "action": "commit-fail"}, {"on": "RETR", "action": "stall"}]
    )
    assert len(rules) == 1 + 1 == len(client.faults())
    with pytest.raises(ControlError) as refused:
        client.add_faults([{"action": "delay", "on": "STAT"}, {"action": "explode"}])
    assert refused.value.status == 400
    assert "body[1]: action must be one of" in refused.value.message
    assert client.faults() == rules  # nothing of the refused list was added
    client.clear_faults()
    assert client.add_faults(rules) == rules  # what GET answers can be POSTed back


def test_transcript_since_n_gives_only_newer_sessions(
    served: Served, client: ControlClient
) -> None:
    with pop3s(served, client) as session:
        session.stat()
    first = client.transcript()
    assert [s["session"] for s in first["sessions"]] == [first["last"]]
    with pop3s(served, client) as session:
        session.noop()
    newer = client.transcript(since=first["last"])
    [only] = newer["sessions"]
    assert only["session"] == newer["last"] == first["last"] + 1
    said = [(line["direction"], line["text"]) for line in only["lines"]]
    assert ("C", "USER alice") in said
    assert ("C", "NOOP") in said
    assert not any("secret" in text for _, text in said)  # passwords are masked
    unmasked = client.transcript(since=first["last"], mask=False)["sessions"][0]["lines"]
    assert any(line["text"] == "PASS secret" for line in unmasked)
    assert f"--- session {only['session']}" in client.transcript_text(since=first["last"])
    assert client.transcript(since=newer["last"])["sessions"] == []
    assert client.clear_transcript() == 1 + 1
    assert client.transcript()["sessions"] == []


def test_reset_puts_back_what_it_started_with(served: Served, client: ControlClient) -> None:
    client.add_account("bob", "pw")
    client.add_message("alice", RAW)
    client.add_fault(action="lock", attempts=5)
    client.reset()
    assert client.accounts() == [{"name": "alice", "messages": len(DEMO_UIDS), "size": DEMO_SIZE}]
    assert [m["uid"] for m in client.messages("alice")] == DEMO_UIDS
    assert client.faults() == []
    assert client.transcript() == {"last": 0, "sessions": []}


@pytest.mark.interop  # runs curl
@pytest.mark.parametrize(
    ("method", "path", "data", "status", "says"),
    [
        ("GET", "/accounts/nobody/messages", None, 404, "no account 'nobody'"),
        ("DELETE", "/accounts/alice/messages/no-such-uid", None, 404, "no message with UID"),
        ("GET", "/accounts/alice/messages/no-such-uid", None, 404, "no message with UID"),
        ("POST", "/accounts", "{not json", 400, "not valid JSON"),
        ("POST", "/accounts", "[" * 100_000, 400, "the body's JSON nests too deeply"),
        ("POST", "/faults", '{"seed": ' + "7" * 5000 + "}", 400, "an integer of 5000 digits"),
        ("POST", "/faults", '{"action": "delay", "seconds": NaN}', 400, "holds NaN"),
        (
            "POST",
            "/faults",
            '{"on": "RETR", "action": "delay", "seconds": 1e999}',
            400,
            "body[0]: seconds must be a finite number, got inf",
        ),
        (
            "POST",
            "/faults",
            '[{"on": "RETR", "action": "stall"},'
            ' {"on": "RETR", "action": "garbage", "length": 268435456}]',
            400,
            "body[1]: length must be between 0 and 16,777,216",
        ),
        ("POST", "/accounts", '{"name": 1, "password": "x"}', 400, "must both be strings"),
        ("POST", "/faults", '{"action": "explode"}', 400, "action must be one of"),
        ("POST", "/faults", '{"on": "NOPE", "action": "drop"}', 400, "unknown event 'NOPE'"),
        ("POST", "/accounts/alice/messages", "", 400, "the body is the message"),
        ("POST", "/accounts/alice/messages?uid=01-welcome", "x", 409, "already in the maildrop"),
        ("GET", "/transcript?since=soon", None, 400, "since is the number"),
        ("PATCH", "/settings", '{"idle_timout": 30}', 400, "did you mean 'idle_timeout'?"),
        ("PATCH", "/settings", '{"idle_timeout": "soon"}', 400, "idle_timeout: expected int"),
        ("PATCH", "/settings", '{"idle_timeout": 1e999}', 400, "idle_timeout: expected a number"),
        ("PATCH", "/settings", '{"max_line_length": 10}', 400, "at least 255"),
        ("PATCH", "/settings", "[30]", 400, "send an object of the fields to change"),
        ("PATCH", "/settings", '{"port": 1}', 409, "port cannot change while the server runs"),
        ("PATCH", "/settings", '{"tls_port": 1}', 409, "fakepop serve --tls-port"),
        ("PUT", "/accounts", "{}", 405, "use GET, POST"),
        ("DELETE", "/reset", None, 405, "use POST"),
        ("GET", "/nowhere", None, 404, "no such path"),
    ],
)
def test_errors_are_json_with_the_right_status(
    url: str, method: str, path: str, data: str | None, status: int, says: str
) -> None:
    kind = "message/rfc822" if "/messages" in path else "application/json"
    extra = ["--data-binary", data, "-H", f"Content-Type: {kind}"] if data is not None else []
    got, headers, body = curl(method, url + path, *extra)
    error: dict[str, Any] = json.loads(body)
    assert (got, error["status"]) == (status, status)
    assert headers["content-type"] == "application/json"
    assert says in error["error"]
    if status == 405:
        assert headers["allow"] in ("GET, POST", "POST")


@pytest.mark.interop  # runs curl
def test_a_ci_script_with_curl_only(served: Served, url: str, tmp_path: Path) -> None:
    """What a test in another language does: get the CA, deliver mail, fetch it over TLS."""
    ca = tmp_path / "ca.pem"
    subprocess.run(
        [
            program("curl"),
            "-fsS",
            "--noproxy",
            "*",
            "-o",
            str(ca),
            f"{url}/ca",
            "-H",
            f"Authorization: Bearer {TOKEN}",
        ],
        check=True,
        timeout=10,
    )
    (tmp_path / "mail.eml").write_bytes(RAW)
    status, _, body = curl(
        "POST",
        f"{url}/accounts/alice/messages",
        "--data-binary",
        f"@{tmp_path / 'mail.eml'}",
        "-H",
        "Content-Type: message/rfc822",
    )
    assert status == 201
    uid = json.loads(body)["uid"]
    try:
        pop3s_url = f"pop3s://localhost:{served.info['pop3s']['port']}/{len(DEMO_UIDS) + 1}"
        fetched = subprocess.run(
            [program("curl"), "-fsS", "--cacert", str(ca), "-u", "alice:secret", pop3s_url],
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout
        assert fetched == RAW
    finally:
        ControlClient(url, TOKEN).delete_message("alice", uid)


def test_the_openapi_description_has_every_route() -> None:
    spec = json.loads(OPENAPI.read_text(encoding="utf-8"))
    assert spec["servers"][0]["url"].endswith("/api/v1")
    described = {
        path: {m.upper() for m in item if m != "parameters"} for path, item in spec["paths"].items()
    }
    assert described == {route.template: set(route.methods) for route in ROUTES}
    for item in spec["paths"].values():
        for operation in (v for k, v in item.items() if k != "parameters"):
            assert operation["responses"], operation["operationId"]


def test_the_openapi_settings_are_the_schema() -> None:
    """The settings' parts of openapi.json are generated: FAKEPOP_UPDATE_OPENAPI=1 rewrites them."""
    text = OPENAPI.read_text(encoding="utf-8")
    spec = json.loads(text)
    spec["components"]["schemas"].update(
        Settings=json_schema(), SettingsChange=json_schema(runtime=True)
    )
    generated = json.dumps(spec, indent=2, ensure_ascii=False) + "\n"
    if generated != text and os.environ.get("FAKEPOP_UPDATE_OPENAPI") == "1":
        OPENAPI.write_text(generated, encoding="utf-8")
    else:
        assert generated == text, (
            "openapi.json's Settings and SettingsChange are not fakepop.settings.json_schema():"
            " FAKEPOP_UPDATE_OPENAPI=1 python -m pytest tests/test_control.py -k openapi"
            " rewrites them"
        )


def test_a_patch_changes_the_running_fakepop_serve(served: Served, client: ControlClient) -> None:
    started = client.settings()
    assert (
        started["max_bad_commands_before_login"],
        started["apop"],
        started["tls_minimum"],
    ) == (3, True, "1.2")
    changed = client.change_settings(max_bad_commands_before_login=1, apop=False)
    assert changed == {**started, "max_bad_commands_before_login": 1, "apop": False}
    with (
        socket.create_connection(("127.0.0.1", served.info["pop3"]["port"]), timeout=5) as sock,
        sock.makefile("rb") as replies,
    ):
        assert b"<" not in replies.readline()  # no APOP timestamp in the greeting
        sock.sendall(b"BOGUS\r\n")
        assert replies.readline().startswith(b"-ERR")
        assert replies.readline() == b""  # closed at the first bad command
    client.reset()
    assert client.settings() == started


def test_the_client_says_when_nothing_answers() -> None:
    with POP3Server() as server:
        port = server.port  # free once the server stops
    with pytest.raises(ControlError, match="cannot reach the control API") as unreachable:
        ControlClient(f"http://127.0.0.1:{port}", timeout=2).health()
    assert unreachable.value.status == 0


def test_a_public_address_needs_a_token_or_an_explicit_yes() -> None:
    server = POP3Server()
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert not is_loopback("0.0.0.0")
    with pytest.raises(ValueError, match="without a token"):
        ControlServer(server, "0.0.0.0")
    ControlServer(server, "0.0.0.0", token="t")
    ControlServer(server, "0.0.0.0", insecure=True)


@pytest.mark.fakepop(users={"alice": "secret"}, tls=False)
def test_in_process_control_server_and_its_default_reset(pop3_server: POP3Server) -> None:
    with ControlServer(pop3_server) as control:
        client = ControlClient(control.url)
        client.wait_healthy(5)
        client.add_message("alice", RAW)
        with pytest.raises(ControlError) as no_ca:
            client.ca_pem()
        assert no_ca.value.status == 404  # no TLS, so no CA
        client.reset()
        assert client.accounts() == []  # forgotten: nothing was set up to come back


def _keys_match(value: Any, hint: Any) -> None:
    """Assert that ``value`` has exactly the keys of the TypedDicts ``hint`` names, deep."""
    if typing.is_typeddict(hint):
        assert set(value) == set(hint.__annotations__), (hint.__name__, value)
        for key, inner in typing.get_type_hints(hint).items():
            _keys_match(value[key], inner)
    elif typing.get_origin(hint) is list:
        [inner] = typing.get_args(hint)
        for item in value:
            _keys_match(item, inner)


@pytest.mark.fakepop(users={"alice": "secret"}, tls=True)
def test_the_client_has_a_method_for_every_route_and_its_answers_have_their_types(
    monkeypatch: pytest.MonkeyPatch, pop3_server: POP3Server
) -> None:
    called: set[tuple[str, str]] = set()
    request = ControlClient._request

    def recording(self: ControlClient, method: str, path: str, *args: Any) -> bytes:
        segments = path.partition("?")[0].strip("/").split("/")
        [template] = [r.template for r in ROUTES if r.match(segments) is not None]
        called.add((method, template))
        return request(self, method, path, *args)

    monkeypatch.setattr(ControlClient, "_request", recording)
    with ControlServer(pop3_server) as control:
        client = ControlClient(control.url)
        client.add_account("bob", "pw")
        uid = client.add_message("alice", RAW)
        doomed = client.add_message("alice", RAW)
        client.add_fault(on="RETR", action="error", times=1)
        with contextlib.closing(
            poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
        ) as session:
            session.user("alice")
            session.pass_("secret")
            with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
                session.retr(1)  # the fault fires
            session.retr(2)
            session.dele(2)
            session.quit()
        answers: dict[str, Any] = {
            "health": client.health(),
            "index": client.index(),
            "openapi": client.openapi(),
            "ca_pem": client.ca_pem(),
            "accounts": client.accounts(),
            "mailbox": client.mailbox("alice"),
            "message": client.message("alice", uid),
            "fault_report": client.fault_report(),
            "transcript": client.transcript(),
            "settings": client.settings(),
            "change_settings": client.change_settings(idle_timeout=30),
            "wait_for_retrieval": client.wait_for_retrieval("alice", doomed),
            "wait_for_deletion": client.wait_for_deletion("alice", doomed),
        }
        assert answers["fault_report"]["fired"]
        assert answers["transcript"]["sessions"][0]["lines"]
        client.delete_message("alice", uid)
        client.purge("alice")
        client.delete_account("bob")
        client.clear_faults()
        client.clear_transcript()
        client.reset()
    assert called == {(m, route.template) for route in ROUTES for m in route.methods}
    for name, answer in answers.items():
        _keys_match(answer, typing.get_type_hints(getattr(ControlClient, name))["return"])


def test_a_port_in_use_is_a_port_in_use_error_naming_it(pop3_server: POP3Server) -> None:
    taken = pop3_server.port
    for listener in (POP3Server(port=taken), ControlServer(pop3_server, port=taken)):
        with pytest.raises(PortInUse) as in_use:
            listener.start()
        assert (in_use.value.host, in_use.value.port) == ("127.0.0.1", taken)
        assert in_use.value.errno == errno.EADDRINUSE


# --- what a web page, or a malformed request, cannot do --------------------------------------


@pytest.fixture
def open_api(pop3_server_factory: ServerFactory) -> Iterator[ControlServer]:
    """An API with no token, as ``fakepop serve --control-port`` starts it by default."""
    server = pop3_server_factory(users={"alice": "secret"}, tls=False, messages=[RAW])
    with ControlServer(server) as control:
        yield control


def call(
    control: ControlServer,
    method: str,
    path: str,
    body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One request on a connection of its own: the status and the JSON answer."""
    connection = http.client.HTTPConnection("127.0.0.1", control.port, timeout=5)
    try:
        connection.request(method, PREFIX + path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def unchanged(control: ControlServer) -> bool:
    pop3 = control.pop3
    return (
        list(pop3.users) == ["alice"]
        and len(pop3.mailbox("alice").messages) == 1
        and (len(pop3.faults) == 0)
    )


EVIL = "https://evil.example"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "says"),
    [
        # What a page's fetch(..., {mode: "no-cors"}) or a <form> may send to another site
        # without a CORS preflight: text/plain, a form or multipart; browsers add Origin.
        (
            "POST",
            "/accounts",
            '{"name": "alice", "password": "owned"}',
            {"Content-Type": "text/plain;charset=UTF-8", "Origin": EVIL},
            403,
            "a request from the web page at 'https://evil.example' is refused",
        ),
        ("POST", "/reset", "", {"Content-Type": FORM, "Origin": EVIL}, 403, "web page"),
        ("POST", "/reset", None, {"Origin": "null"}, 403, "web page at 'null'"),
        (
            "POST",
            "/accounts/alice/messages",
            "Subject: injected\r\n\r\nx\r\n",
            {"Content-Type": "text/plain", "Origin": EVIL},
            403,
            "web page",
        ),
        # The same without Origin (an old browser): the type alone refuses it.
        (
            "POST",
            "/faults",
            '{"on": "RETR", "action": "stall"}',
            {"Content-Type": "text/plain"},
            415,
            "send the body as Content-Type: application/json, not text/plain",
        ),
        ("POST", "/reset", "", {"Content-Type": FORM}, 415, f"application/json, not {FORM}"),
        (
            "POST",
            "/accounts/alice/messages",
            "Subject: injected\r\n\r\nx\r\n",
            {"Content-Type": "multipart/form-data; boundary=x"},
            415,
            "send the body as Content-Type: message/rfc822",
        ),
        ("POST", "/faults", '{"on": "RETR", "action": "stall"}', {}, 415, "no Content-Type"),
        # A DNS-rebinding page: same origin as far as the browser knows, under its own name.
        (
            "POST",
            "/reset",
            None,
            {"Host": "evil.example:8110", "Origin": "http://evil.example:8110"},
            403,
            "Host 'evil.example:8110' is a name a web page could rebind",
        ),
        ("GET", "/accounts", None, {"Host": "evil.example"}, 403, "set a token"),
    ],
)
def test_what_a_web_page_can_send_is_refused_and_changes_nothing(
    open_api: ControlServer,
    method: str,
    path: str,
    body: str | None,
    headers: dict[str, str],
    status: int,
    says: str,
) -> None:
    got, answer = call(open_api, method, path, body, headers)
    assert (got, answer["status"]) == (status, status)
    assert says in answer["error"]
    assert unchanged(open_api)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "localhost:{port}",
        "[::1]:{port}",
        "localhost:18110",  # docker run -p 18110:8110: the port is the mapped one
        "LOCALHOST.",
        "fakepop:8110",  # a compose service, from another container
        "172.17.0.2:8110",  # the container's address
        "[fe80::1%25eth0]:8110",
        "app.localhost:{port}",
        "{hostname}",
    ],
)
def test_a_host_no_page_could_send_is_answered(open_api: ControlServer, host: str) -> None:
    host = host.format(port=open_api.port, hostname=socket.gethostname())
    assert call(open_api, "GET", "/accounts", None, {"Host": host})[0] == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "127.0.0.1.nip.io:{port}", "localhost.evil.example", "a b", "x@y"],
)
def test_a_host_a_rebinding_page_could_send_is_refused(open_api: ControlServer, host: str) -> None:
    host = host.format(port=open_api.port)
    assert call(open_api, "GET", "/accounts", None, {"Host": host})[0] == 403


@pytest.mark.interop  # runs curl
def test_with_a_token_any_host_name_is_answered(url: str) -> None:
    # Behind a token, a page cannot act, whatever name it uses; the API may be on a CI host.
    assert curl("GET", f"{url}/accounts", "-H", "Host: ci-box.example.com:8110")[0] == 200
    assert curl("GET", f"{url}/accounts", "-H", "Origin: https://evil.example")[0] == 403


def test_the_api_s_own_origin_and_json_with_a_charset_are_answered(
    open_api: ControlServer,
) -> None:
    own = f"127.0.0.1:{open_api.port}"
    headers = {"Origin": f"http://{own}", "Content-Type": "application/json; charset=utf-8"}
    body = '{"name": "bob", "password": "pw"}'
    assert call(open_api, "POST", "/accounts", body, headers)[0] == 201
    headers["Origin"] = f"http://localhost:{open_api.port}"  # another host: another origin
    assert call(open_api, "POST", "/accounts", body, headers)[0] == 403


def test_an_over_long_account_name_with_maildirs_is_a_400(
    tmp_path: Path, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(tls=False, maildir=tmp_path)
    with ControlServer(server) as control:
        client = ControlClient(control.url)
        with pytest.raises(ControlError) as refused:
            client.add_account("a" * 256, "pw")
        assert refused.value.status == 400
        assert "account name too long for a Maildir: at most 255 bytes" in refused.value.message
        assert client.add_account("a" * 255, "pw")["name"] == "a" * 255


def test_a_maildrop_another_server_holds_is_a_409_and_keeps_its_mail(
    tmp_path: Path, pop3_server_factory: ServerFactory
) -> None:
    holder = pop3_server_factory(users={"alice": "secret"}, tls=False, maildir=tmp_path)
    server = pop3_server_factory(users={"alice": "secret"}, tls=False, maildir=tmp_path)
    with ControlServer(server) as control:
        uid = server.mailbox("alice").add(RAW)
        client = ControlClient(control.url)
        with holder.mailbox("alice").hold_lock():
            calls: list[Callable[[], None]] = [
                lambda: client.delete_message("alice", uid),
                client.reset,
            ]
            for call in calls:
                with pytest.raises(ControlError) as refused:
                    call()
                assert refused.value.status == 409
                assert "[IN-USE]" in refused.value.message
        assert [m.uid for m in server.mailbox("alice")] == [uid]


def test_get_faults_is_always_json_a_strict_parser_reads(open_api: ControlServer) -> None:
    def strict(text: str) -> Any:
        raise AssertionError(f"{text} is not JSON")

    plan = open_api.pop3.faults
    plan.add(on="RETR", action="delay", seconds=86_400.0, probability=0.5)
    plan.add(on="RETR", action="garbage", length=16 * 1024 * 1024, seed=2**63 - 1, times="always")
    connection = http.client.HTTPConnection("127.0.0.1", open_api.port, timeout=5)
    try:
        connection.request("GET", PREFIX + "/faults")
        listed = json.loads(connection.getresponse().read(), parse_constant=strict)
    finally:
        connection.close()
    client = ControlClient(open_api.url)
    client.clear_faults()
    assert client.add_faults(listed["faults"]) == listed["faults"]  # posted back as they came


@pytest.mark.parametrize("size", [b"-1", b"+5", b"0x5", b"5_0", b" ", b"1" * 17])
def test_a_chunk_size_that_is_not_hex_digits_is_refused(
    open_api: ControlServer, size: bytes
) -> None:
    # int("-1", 16) is -1, and read(-1) read until the client closed: 200 MiB in memory, say.
    with socket.create_connection(("127.0.0.1", open_api.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/accounts/alice/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: message/rfc822\r\nTransfer-Encoding: chunked\r\n\r\n"
            + size
            + b"\r\n"
            + b"x" * 65536
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.endswith(b"}\n"):
            data = sock.recv(65536)
            assert data, answer
            answer += data
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"a chunk size is 1 to 16 hex digits" in answer
    assert b"Connection: close" in answer
    assert unchanged(open_api)


def test_a_chunked_body_is_read_exactly(open_api: ControlServer) -> None:
    with socket.create_connection(("127.0.0.1", open_api.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/accounts/alice/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: message/rfc822\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"c;ext=1\r\nSubject: x\r\n\r\n5\r\n\r\nx\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n"
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201 ")
    assert open_api.pop3.mailbox("alice").messages[-1].read() == b"Subject: x\r\n\r\nx\r\n"


def test_requests_on_a_kept_alive_connection_are_answered_at_once(
    open_api: ControlServer,
) -> None:
    # Headers and body went out in two writes: Nagle held the body back until the client's
    # delayed ACK, 40 ms a request. 200 requests took 9 s; one write each: well under 1 s.
    connection = http.client.HTTPConnection("127.0.0.1", open_api.port, timeout=5)
    started = time.monotonic()
    for _ in range(100):
        connection.request("GET", PREFIX + "/health")
        assert connection.getresponse().read()
        body = '{"name": "bob", "password": "pw"}'
        connection.request("POST", PREFIX + "/accounts", body, {"Content-Type": "application/json"})
        assert connection.getresponse().read()
    connection.close()
    assert time.monotonic() - started < 5


def test_the_api_waits_for_a_background_client_and_says_what_happened_instead(
    open_api: ControlServer,
) -> None:
    client = ControlClient(open_api.url)
    server = open_api.pop3
    [uid] = [m.uid for m in server.mailbox("alice")]

    def fetch_and_delete() -> None:
        with contextlib.closing(poplib.POP3(server.host, server.port, timeout=5)) as session:
            session.user("alice")
            session.pass_("secret")
            session.retr(1)
            session.dele(1)
            session.quit()

    with pytest.raises(TimeoutError) as nothing_yet:
        client.wait_for_deletion("alice", uid, timeout=0.1)
    assert str(nothing_yet.value) == (
        f"waited 0.1 s for the deletion of UIDs ['{uid}']; deleted so far: nothing"
    )
    fetcher = threading.Thread(target=fetch_and_delete, daemon=True)
    fetcher.start()
    report = client.wait_for_deletion("alice", uid)
    assert report["deleted"] == [uid]
    assert report["messages"] == []
    assert client.wait_for_retrieval("alice", uid)["retrieved"] == {"1": [uid]}
    fetcher.join(5)
    status, timed_out = call(
        open_api, "POST", "/accounts/alice/wait", '{"retrieved": ["other"], "timeout": 0}',
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 408
    assert timed_out["error"] == (
        f"waited 0 s for the retrieval of UIDs ['other']; retrieved so far: ['{uid}']"
    )
    assert timed_out["deleted"] == [uid]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("{}", "say what to wait for"),
        ('{"deleted": "x"}', "deleted must be a list of UIDs"),
        ('{"deleted": [], "timeout": 301}', "timeout is at most 300 seconds"),
        ('{"deleted": [], "timeout": -1}', "timeout must be a number of seconds"),
        ('{"deleted": [], "until": 1}', "unknown key until"),
    ],
)
def test_a_wait_the_api_cannot_do_is_refused(open_api: ControlServer, body: str, says: str) -> None:
    status, error = call(
        open_api, "POST", "/accounts/alice/wait", body, {"Content-Type": "application/json"}
    )
    assert status == 400
    assert says in error["error"]
