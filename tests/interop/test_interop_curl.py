"""curl 7.88 as a POP3 client over real sockets, against the 50-message corpus.

curl un-stuffs what it retrieves and keeps CRLF, so what it writes for
``pop3://host:port/N`` is the wire form of message N, byte for byte. Several
URLs in one curl run share one connection and one session, which keeps this
file fast. curl is
skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients import PASSWORD, USER, Curl, client_commands, top, url
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

# How each login method is had: curl prefers SASL, then APOP when the greeting has a
# timestamp, then USER; it cannot be told which, so the server offers only the one wanted.
LOGINS: dict[str, tuple[dict[str, Any], str]] = {
    "sasl": ({}, "AUTH"),
    "apop": ({"sasl": ()}, "APOP"),
    "user": ({"sasl": (), "apop": False}, "USER"),
}


@pytest.fixture(scope="module")
def curl() -> Curl:
    return Curl()


@pytest.fixture
def server(messages: list[bytes], pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(messages)
    return server


def succeeded(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> bytes:
    """curl's output, after checking it exited 0; the transcript says why when it did not."""
    assert (result.returncode, result.stderr) == (0, b""), f"curl failed:\n{server.transcript}"
    return result.stdout


def test_list(curl: Curl, server: POP3Server, messages: list[bytes]) -> None:
    listing = succeeded(curl([url(server)]), server)
    expected = b"".join(b"%d %d\r\n" % (n, len(to_crlf(m))) for n, m in enumerate(messages, 1))
    assert listing == expected


def test_retr_every_message_byte_for_byte(
    curl: Curl, server: POP3Server, messages: list[bytes], tmp_path: Path
) -> None:
    # One transfer of 50 URLs, each with its --output.
    urls: list[str] = []
    for n in range(1, len(messages) + 1):
        urls += [url(server, str(n)), "--output", str(tmp_path / f"{n:02d}.eml")]
    succeeded(curl(urls), server)
    for n, raw in enumerate(messages, 1):
        got = (tmp_path / f"{n:02d}.eml").read_bytes()
        assert got == to_crlf(raw), f"message {n} differs"
    # One run, one session: RETR 1 to RETR 50 on one login.
    (commands,) = client_commands(server)
    assert commands.count("RETR") == len(messages)
    assert commands[-1] == "QUIT"


def test_top_every_message(
    curl: Curl, server: POP3Server, messages: list[bytes], tmp_path: Path
) -> None:
    """TOP n 1: the header, the blank line and the first body line, un-stuffed by curl."""
    transfers = [
        ["--request", f"TOP {n} 1", url(server), "--output", str(tmp_path / f"{n:02d}.top")]
        for n in range(1, len(messages) + 1)
    ]
    succeeded(curl(*transfers), server)
    for n, raw in enumerate(messages, 1):
        got = (tmp_path / f"{n:02d}.top").read_bytes()
        assert got == top(to_crlf(raw), 1), f"TOP {n} 1 differs"
    (commands,) = client_commands(server)  # 50 transfers, one session
    assert commands.count("TOP") == len(messages)


@pytest.mark.parametrize("login", LOGINS)
def test_login(
    curl: Curl, login: str, messages: list[bytes], pop3_server_factory: ServerFactory
) -> None:
    options, verb = LOGINS[login]
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False, **options)
    server.mailbox(USER).add(messages[0])
    got = succeeded(curl([url(server, "1")]), server)
    assert got == to_crlf(messages[0])
    (commands,) = client_commands(server)
    assert verb in commands
    assert ({"AUTH", "APOP", "USER"} - {verb}) & set(commands) == set()


@pytest.mark.parametrize("login", LOGINS)
def test_wrong_password_fails(curl: Curl, login: str, pop3_server_factory: ServerFactory) -> None:
    options, verb = LOGINS[login]
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False, **options)
    result = curl([url(server)], user=f"{USER}:wrong")
    assert result.returncode == 67, (result, str(server.transcript))  # CURLE_LOGIN_DENIED
    assert result.stdout == b""
    (commands,) = client_commands(server)
    assert verb in commands
    assert "LIST" not in commands


def test_dele_is_committed_at_quit(curl: Curl, server: POP3Server, messages: list[bytes]) -> None:
    mailbox = server.mailbox(USER)
    before = [m.uid for m in mailbox.messages]
    # --head: DELE answers one line, which curl must not wait to see ended by ".".
    got = succeeded(curl(["--request", "DELE", "--head", url(server, "3")]), server)
    assert got == b""
    assert [m.uid for m in mailbox.messages] == before[:2] + before[3:]
    assert len(mailbox.messages) == len(messages) - 1
    (commands,) = client_commands(server)
    assert commands[-2:] == ["DELE", "QUIT"]


def test_uidl(curl: Curl, server: POP3Server) -> None:
    listing = succeeded(curl(["--request", "UIDL", url(server)]), server)
    expected = b"".join(
        b"%d %s\r\n" % (n, m.uid.encode()) for n, m in enumerate(server.mailbox(USER), 1)
    )
    assert listing == expected


# Not in the corpus, because fetchmail rewrites them: a first line that starts with "."
# ("incorrect header line found") and a message with no header at all (it makes one up).
ODD = [
    b".the very first octet is a dot\r\nFrom: odd@fakepop.test\r\n\r\nbody\r\n",
    b"\r\nno header at all, the blank line first\r\n.\r\n",
]


def test_retr_and_top_of_odd_messages(
    curl: Curl, tmp_path: Path, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(ODD)
    transfers: list[list[str]] = []
    for n in range(1, len(ODD) + 1):
        transfers.append([url(server, str(n)), "--output", str(tmp_path / f"{n}.eml")])
        top_n = ["--request", f"TOP {n} 0", url(server), "--output", str(tmp_path / f"{n}.top")]
        transfers.append(top_n)
    succeeded(curl(*transfers), server)
    for n, raw in enumerate(ODD, 1):
        assert (tmp_path / f"{n}.eml").read_bytes() == to_crlf(raw)
        assert (tmp_path / f"{n}.top").read_bytes() == top(to_crlf(raw), 0)
    assert top(to_crlf(ODD[1]), 0) == b"\r\n"
