"""fetchmail 6.4 as a POP3 client over real sockets, against the 50-message corpus.

fetchmail hands each message to an MDA, here a shell script that stores it in
a numbered file, so every retrieved message is compared byte for byte with
what the server holds. fetchmail changes a message on its way to an MDA in
two ways, documented in fetchmail(1) and seen in what the script receives:

- it puts its own ``Received:`` header on top, unless ``set invisible``;
- ``stripcr`` is on by default when delivering to an MDA: it drops every CR,
  so the MDA gets LF line ends; ``no stripcr`` passes CRLF through.

Everything else that could touch a message (``rewrite`` of addresses without
a domain, ``mimedecode``, ``dropstatus``, ``dropdelivered``) is turned off in
the rc file, so those two are the only ones undone before comparing. With
``set invisible`` and ``no stripcr`` the MDA gets the wire form exactly.

In keep mode fetchmail retrieves with RETR; when it deletes, with
``TOP n 99999999``, so both are checked. fetchmail is
skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients import PASSWORD, RECEIVED, USER, Fetchmail, client_commands, printed
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client


@pytest.fixture
def server(messages: list[bytes], pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).extend(messages)
    return server


@pytest.fixture
def fetchmail(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path)


def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
    """fetchmail's output and the server's transcript, for a failed assertion to show."""
    return f"{printed(result)}\n{server.transcript}"


def undo_defaults(delivered: bytes) -> bytes:
    """The message as the server sent it, from what fetchmail's defaults gave the MDA."""
    # fetchmail's own Received: header goes on top unless "set invisible".
    received = RECEIVED.match(delivered)
    assert received is not None, delivered[:200]
    assert b"with POP3 (fetchmail-" in received.group()
    rest = delivered[received.end() :]
    # stripcr, the default with an MDA, drops every CR: each LF was a CRLF on the wire.
    assert b"\r" not in rest
    return rest.replace(b"\n", b"\r\n")


def test_keep_mode_with_fetchmail_defaults(
    fetchmail: Fetchmail, server: POP3Server, messages: list[bytes]
) -> None:
    uids = [m.uid for m in server.mailbox(USER).messages]
    result = fetchmail(server, keep=True, transparent=False)
    assert result.returncode == 0, output(result, server)
    delivered = fetchmail.delivered()
    assert len(delivered) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, delivered, strict=True), 1):
        assert undo_defaults(got) == to_crlf(raw), f"message {n} differs"
    assert [m.uid for m in server.mailbox(USER).messages] == uids
    (commands,) = client_commands(server)
    assert commands.count("RETR") == len(messages)  # keep: RETR, not TOP
    assert "DELE" not in commands
    assert commands[-1] == "QUIT"


def test_delete_mode_delivers_the_wire_form_exactly(
    fetchmail: Fetchmail, server: POP3Server, messages: list[bytes]
) -> None:
    result = fetchmail(server, keep=False)
    assert result.returncode == 0, output(result, server)
    delivered = fetchmail.delivered()
    assert len(delivered) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, delivered, strict=True), 1):
        assert got == to_crlf(raw), f"message {n} differs"
    assert server.mailbox(USER).messages == []  # deleted at fetchmail's QUIT
    (commands,) = client_commands(server)
    assert commands.count("TOP") == len(messages)  # TOP n 99999999 when not keeping
    assert commands.count("DELE") == len(messages)
    assert commands[-1] == "QUIT"


def test_uidl_mode_fetches_only_new_mail(
    fetchmail: Fetchmail, server: POP3Server, messages: list[bytes], tmp_path: Path
) -> None:
    result = fetchmail(server, keep=True, uidl=True)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [to_crlf(m) for m in messages]
    # fetchmail remembers the UIDs it has seen in $FETCHMAILHOME/.fetchids.
    seen = (tmp_path / ".fetchids").read_text()
    assert all(m.uid in seen for m in server.mailbox(USER).messages)

    new = b"From: late@fakepop.test\r\nSubject: arrived after the first poll\r\n\r\nnew\r\n"
    server.mailbox(USER).add(new)
    result = fetchmail(server, keep=True, uidl=True)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [new]

    result = fetchmail(server, keep=True, uidl=True)
    assert result.returncode == 1, output(result, server)  # 1: no new mail
    assert fetchmail.delivered() == []
    assert len(server.mailbox(USER).messages) == len(messages) + 1


# rc options for each way to log in, and the command fetchmail then logs in with;
# "auth any" takes the best SASL mechanism in CAPA.
LOGINS: dict[str, tuple[dict[str, Any], str]] = {
    "sasl": ({"auth": "any"}, "AUTH"),
    "user": ({"auth": "password"}, "USER"),
    "apop": ({"protocol": "APOP", "auth": "any"}, "APOP"),
}


@pytest.mark.parametrize("login", LOGINS)
def test_login(
    fetchmail: Fetchmail, messages: list[bytes], login: str, pop3_server_factory: ServerFactory
) -> None:
    options, verb = LOGINS[login]
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).add(messages[1])
    result = fetchmail(server, keep=False, **options)
    assert result.returncode == 0, output(result, server)
    assert fetchmail.delivered() == [to_crlf(messages[1])]
    (commands,) = client_commands(server)
    assert verb in commands
    assert ({"AUTH", "APOP", "USER"} - {verb}) & set(commands) == set()


@pytest.mark.parametrize("login", LOGINS)
def test_wrong_password_fails(
    fetchmail: Fetchmail, messages: list[bytes], login: str, pop3_server_factory: ServerFactory
) -> None:
    options, verb = LOGINS[login]
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    server.mailbox(USER).add(messages[1])
    result = fetchmail(server, keep=False, password="wrong", **options)
    assert result.returncode == 3, output(result, server)  # 3: authentication failed
    assert fetchmail.delivered() == []
    assert len(server.mailbox(USER).messages) == 1
    (commands,) = client_commands(server)
    assert verb in commands
    assert "STAT" not in commands
