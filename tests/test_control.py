"""The control API of a ``fakepop serve`` process, through ``ControlClient`` and through curl."""

from __future__ import annotations

import contextlib
import json
import poplib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving import Served, serve

from fakepop import POP3Server
from fakepop.control import ROUTES, ControlClient, ControlError, ControlServer, is_loopback
from fakepop.mail.loaders import fixtures_dir, load_eml_dir
from fakepop.mail.wire import to_crlf

TOKEN = "t0p-secret"
DEMO = load_eml_dir(fixtures_dir() / "demo")
DEMO_UIDS = [m.uid for m in DEMO]
DEMO_SIZE = sum(len(to_crlf(m.raw)) for m in DEMO)
RAW = b"From: ci@example.com\r\nSubject: via the API\r\n\r\n.a line with a dot\r\nbye\r\n"
OPENAPI = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"


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
        ["curl", "-sS", "-i", "--noproxy", "*", "-X", method, *auth, *args, url],
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


@pytest.mark.parametrize(
    ("method", "path", "data", "status", "says"),
    [
        ("GET", "/accounts/nobody/messages", None, 404, "no account 'nobody'"),
        ("DELETE", "/accounts/alice/messages/no-such-uid", None, 404, "no message with UID"),
        ("GET", "/accounts/alice/messages/no-such-uid", None, 404, "no message with UID"),
        ("POST", "/accounts", "{not json", 400, "not valid JSON"),
        ("POST", "/accounts", '{"name": 1, "password": "x"}', 400, "must both be strings"),
        ("POST", "/faults", '{"action": "explode"}', 400, "action must be one of"),
        ("POST", "/faults", '{"on": "NOPE", "action": "drop"}', 400, "unknown event 'NOPE'"),
        ("POST", "/accounts/alice/messages", "", 400, "the body is the message"),
        ("POST", "/accounts/alice/messages?uid=01-welcome", "x", 409, "already in the maildrop"),
        ("GET", "/transcript?since=soon", None, 400, "since is the number"),
        ("PUT", "/accounts", "{}", 405, "use GET, POST"),
        ("DELETE", "/reset", None, 405, "use POST"),
        ("GET", "/nowhere", None, 404, "no such path"),
    ],
)
def test_errors_are_json_with_the_right_status(
    url: str, method: str, path: str, data: str | None, status: int, says: str
) -> None:
    extra = ["--data-binary", data] if data is not None else []
    got, headers, body = curl(method, url + path, *extra)
    error: dict[str, Any] = json.loads(body)
    assert (got, error["status"]) == (status, status)
    assert headers["content-type"] == "application/json"
    assert says in error["error"]
    if status == 405:
        assert headers["allow"] in ("GET, POST", "POST")


def test_a_ci_script_with_curl_only(served: Served, url: str, tmp_path: Path) -> None:
    """What a test in another language does: get the CA, deliver mail, fetch it over TLS."""
    ca = tmp_path / "ca.pem"
    subprocess.run(
        [
            "curl",
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
        "POST", f"{url}/accounts/alice/messages", "--data-binary", f"@{tmp_path / 'mail.eml'}"
    )
    assert status == 201
    uid = json.loads(body)["uid"]
    try:
        pop3s_url = f"pop3s://localhost:{served.info['pop3s']['port']}/{len(DEMO_UIDS) + 1}"
        fetched = subprocess.run(
            ["curl", "-fsS", "--cacert", str(ca), "-u", "alice:secret", pop3s_url],
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


def test_in_process_control_server_and_its_default_reset() -> None:
    with POP3Server({"alice": "secret"}) as server, ControlServer(server) as control:
        client = ControlClient(control.url)
        client.wait_healthy(5)
        client.add_message("alice", RAW)
        with pytest.raises(ControlError) as no_ca:
            client.ca_pem()
        assert no_ca.value.status == 404  # no TLS, so no CA
        client.reset()
        assert client.accounts() == []  # forgotten: nothing was set up to come back
