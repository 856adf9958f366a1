"""Faults as curl 7.88 and fetchmail 6.4 see them, over real sockets.

Each client meets a locked maildrop ([IN-USE]), a refused login ([SYS/TEMP]),
a connection dropped in the middle of RETR and, for curl, a server that stops
answering; then the fault is gone and the client must get every message, with
nothing lost and nothing deleted by the session that broke off. What each
client prints and exits with is asserted exactly: that is what a test of a
program built on them would see.

curl is run with --verbose where the server's reply matters: its error line
alone says "Access denied. -" for any refused login. fetchmail runs as in
tests/test_interop_fetchmail.py: its own home, an rc file of mode 0600, an MDA
script that files each message, ``set invisible`` and ``no stripcr`` so the MDA
gets the wire form exactly.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from clients import PASSWORD, USER, Curl, Fetchmail, url
from pop3 import ServerFactory

from fakepop import POP3Server

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

M1 = b"From: a@fakepop.test\r\nSubject: one\r\n\r\nHello\r\n"
M2 = b"From: b@fakepop.test\r\nSubject: dots\r\n\r\n.x\r\n..\r\nend\r\n"
M3 = b"From: c@fakepop.test\r\nSubject: three\r\n\r\n" + b"line of text\r\n" * 20
MESSAGES = [M1, M2, M3]


def retr_wire(message: bytes) -> bytes:
    """A RETR reply as the server sends it: status, byte-stuffed lines, terminator."""
    stuffed = b"".join(
        b"." + line if line.startswith(b".") else line for line in message.splitlines(keepends=True)
    )
    return b"+OK %d octets\r\n" % len(message) + stuffed + b".\r\n"


@pytest.fixture
def server(pop3_server_factory: ServerFactory) -> POP3Server:
    # USER and PASS only: curl would take a SASL mechanism or APOP when offered one.
    server = pop3_server_factory(users={USER: PASSWORD}, sasl=(), apop=False, tls=False)
    server.mailbox(USER).extend(MESSAGES)
    return server


def server_lines(server: POP3Server) -> list[str]:
    """The server's replies and notes, over every session (no client lines)."""
    return [line for s in server.transcript for line in s.lines() if not line.startswith("C: ")]


def uids(server: POP3Server) -> list[str]:
    return [m.uid for m in server.mailbox(USER).messages]


# --- curl -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def curl() -> Curl:
    return Curl()


def curl_list(curl: Curl, server: POP3Server) -> bytes:
    result = curl([url(server)])
    assert (result.returncode, result.stderr) == (0, b""), str(server.transcript)
    return result.stdout


LISTING = b"".join(b"%d %d\r\n" % (n, len(m)) for n, m in enumerate(MESSAGES, 1))


def curl_fetch_all(curl: Curl, server: POP3Server, out: Path) -> list[bytes]:
    """RETR of every message in one curl run."""
    transfers = [
        [url(server, str(n)), "--output", str(out / f"{n}.eml")]
        for n in range(1, len(MESSAGES) + 1)
    ]
    result = curl(*transfers)
    assert (result.returncode, result.stderr) == (0, b""), str(server.transcript)
    return [(out / f"{n}.eml").read_bytes() for n in range(1, len(MESSAGES) + 1)]


def test_curl_in_use_from_a_lock_rule(curl: Curl, server: POP3Server) -> None:
    server.faults.add(action="lock", attempts=2, user=USER)
    for _ in range(2):
        result = curl([url(server)], verbose=True)
        assert result.returncode == 67  # CURLE_LOGIN_DENIED
        assert result.stdout == b""
        assert b"\n< -ERR [IN-USE] Mailbox is locked by another session\r\n" in result.stderr
        # curl quotes only the first character of the refusal.
        assert result.stderr.endswith(b"\ncurl: (67) Access denied. -\n")
    assert curl_list(curl, server) == LISTING


def test_curl_in_use_while_the_lock_is_held(curl: Curl, server: POP3Server) -> None:
    with server.mailbox(USER).hold_lock():
        result = curl([url(server)])
        assert (result.returncode, result.stdout, result.stderr) == (
            67,
            b"",
            b"curl: (67) Access denied. -\n",
        )
    assert curl_list(curl, server) == LISTING
    assert "S: -ERR [IN-USE] Mailbox is locked by another session" in server_lines(server)


def test_curl_sys_temp_at_pass(curl: Curl, server: POP3Server) -> None:
    server.faults.add(on="PASS", action="error")
    result = curl([url(server)], verbose=True)
    assert result.returncode == 67
    assert b"\n< -ERR [SYS/TEMP] Temporary failure, try again later\r\n" in result.stderr
    assert result.stderr.endswith(b"\ncurl: (67) Access denied. -\n")
    assert curl_list(curl, server) == LISTING


# RETR 3 cut after 100 octets: the status line, the 40-octet header and 44 octets of
# body, which ends in the middle of a line (so no client holds any of it back).
CUT = 100
M3_PART = retr_wire(M3)[len(b"+OK 322 octets\r\n") : CUT]
assert M3_PART.endswith(b"\r\nli")

# curl's exit and output for that cut: a reset fails with 56; an orderly close exits 0
# with the part it got, as if the message were whole.
CURL_DROPS = {
    "close": (0, b""),
    "reset": (56, b"curl: (56) Recv failure: Connection reset by peer\n"),
}


@pytest.mark.parametrize("mode", CURL_DROPS)
def test_curl_drop_during_retr_after_dele(
    curl: Curl, server: POP3Server, tmp_path: Path, mode: str
) -> None:
    server.faults.add(on="RETR", action="drop", at="during", after_bytes=CUT, mode=mode)
    before = uids(server)
    part = tmp_path / "3.part"
    result = curl(
        ["--request", "DELE", "--head", url(server, "1")],  # one line: do not wait for "."
        [url(server, "3"), "--output", str(part)],
    )
    assert (result.returncode, result.stderr) == CURL_DROPS[mode]
    got = part.read_bytes() if part.exists() else b""
    if mode == "close":
        assert got == M3_PART
    else:
        assert M3_PART.startswith(got)  # a reset may destroy what was not read yet
    commands = [line for line in server.transcript[0].lines() if line.startswith("C: ")]
    assert commands == ["C: CAPA", "C: USER alice", "C: PASS ****", "C: DELE 1", "C: RETR 3"]
    assert curl_fetch_all(curl, server, tmp_path) == MESSAGES
    assert uids(server) == before
    assert server.mailbox(USER).deleted == []


def test_curl_stall_trips_max_time(curl: Curl, server: POP3Server) -> None:
    server.faults.add(on="RETR", action="stall")
    result = curl([url(server, "1")], max_time=1)
    assert result.returncode == 28  # CURLE_OPERATION_TIMEDOUT
    assert result.stdout == b""
    assert re.fullmatch(
        rb"curl: \(28\) Operation timed out after \d+ milliseconds with 0 bytes received\n",
        result.stderr,
    ), result.stderr
    # The stalled session lets go of the maildrop once the server sees curl hang up.
    deadline = time.monotonic() + 5
    while server.mailbox(USER).locked:
        assert time.monotonic() < deadline, "the maildrop stayed locked"
        time.sleep(0.001)
    assert curl_list(curl, server) == LISTING


# --- fetchmail --------------------------------------------------------------------------

ROOT_WARNING = "fetchmail: WARNING: Running as root is discouraged."
WHERE = "alice@127.0.0.1"


@pytest.fixture
def fetchmail(tmp_path: Path) -> Fetchmail:
    return Fetchmail(tmp_path, fetchall=True)


def said(result: subprocess.CompletedProcess[bytes]) -> tuple[int, list[str], list[str]]:
    """Exit status, stdout lines and stderr lines, without the warning for root."""
    stderr = [line for line in result.stderr.decode().splitlines() if line != ROOT_WARNING]
    return result.returncode, result.stdout.decode().splitlines(), stderr


def reading(n: int, *, flushed: bool, ending: str = "") -> str:
    size = len(MESSAGES[n - 1])
    return f"reading message {WHERE}:{n} of 3 ({size} octets)" + (
        ending or (" flushed" if flushed else " not flushed")
    )


def fetched_all(fetchmail: Fetchmail, server: POP3Server, *, keep: bool) -> None:
    """A clean run: exit 0 and every message delivered exactly as sent."""
    total = sum(len(m) for m in MESSAGES)
    assert said(fetchmail(server, keep=keep)) == (
        0,
        [
            f"3 messages for {USER} at 127.0.0.1 ({total} octets).",
            *(reading(n, flushed=not keep) for n in (1, 2, 3)),
        ],
        [],
    ), str(server.transcript)
    assert fetchmail.delivered() == MESSAGES


LOCK_BUSY = (
    9,  # PS_LOCKBUSY
    ["fetchmail: Query status=9 (LOCKBUSY)"],
    [
        "fetchmail: [IN-USE] Mailbox is locked by another session",
        "fetchmail: lock busy!  Is another session active?",
        f"fetchmail: Lock-busy error on {WHERE}",
        f"fetchmail: lock busy on server error while fetching from {WHERE}",
    ],
)


def test_fetchmail_in_use_from_a_lock_rule(fetchmail: Fetchmail, server: POP3Server) -> None:
    server.faults.add(action="lock", attempts=1, user=USER)
    assert said(fetchmail(server, keep=True)) == LOCK_BUSY
    assert fetchmail.delivered() == []
    fetched_all(fetchmail, server, keep=True)


def test_fetchmail_in_use_while_the_lock_is_held(fetchmail: Fetchmail, server: POP3Server) -> None:
    with server.mailbox(USER).hold_lock():
        assert said(fetchmail(server, keep=True)) == LOCK_BUSY
    assert fetchmail.delivered() == []
    fetched_all(fetchmail, server, keep=True)


def test_fetchmail_sys_temp_at_pass(fetchmail: Fetchmail, server: POP3Server) -> None:
    server.faults.add(on="PASS", action="error")
    assert said(fetchmail(server, keep=True)) == (
        3,  # PS_AUTHFAIL: fetchmail does not tell [SYS/TEMP] from a wrong password
        ["fetchmail: Query status=3 (AUTHFAIL)"],
        [f"fetchmail: Authorization failure on {WHERE}"],
    )
    assert "S: -ERR [SYS/TEMP] Temporary failure, try again later" in server_lines(server)
    fetched_all(fetchmail, server, keep=True)


def test_fetchmail_drop_during_retr_after_dele(fetchmail: Fetchmail, server: POP3Server) -> None:
    # Not keeping: RETR 1, DELE 1, RETR 2, DELE 2, then RETR 3 is cut off.
    server.faults.add(on="RETR", action="drop", at="during", after_bytes=CUT, nth=3)
    before = uids(server)
    total = sum(len(m) for m in MESSAGES)
    assert said(fetchmail(server, keep=False)) == (
        2,  # PS_SOCKET
        [
            f"3 messages for {USER} at 127.0.0.1 ({total} octets).",
            reading(1, flushed=True),
            reading(2, flushed=True),
            reading(3, flushed=False, ending="fetchmail: Query status=2 (SOCKET)"),
        ],
        [f"fetchmail: socket error while fetching from {WHERE}"],
    )
    # The MDA got messages 1 and 2, and the whole lines of message 3 that came before
    # the drop: fetchmail passes a message on line by line.
    assert fetchmail.delivered() == [M1, M2, M3_PART.removesuffix(b"li")]
    commands = [line[3:] for line in server.transcript[0].lines() if line.startswith("C: ")]
    assert commands[-6:] == ["DELE 1", "LIST 2", "RETR 2", "DELE 2", "LIST 3", "RETR 3"]
    assert uids(server) == before
    assert server.mailbox(USER).deleted == []
    # The next run gets every message again, and this time deletes them.
    fetched_all(fetchmail, server, keep=False)
    assert uids(server) == []
    assert server.mailbox(USER).deleted == sorted(before)


def test_fetchmail_commit_fail(fetchmail: Fetchmail, server: POP3Server) -> None:
    server.faults.add(action="commit-fail", remove="some")
    before = uids(server)
    total = sum(len(m) for m in MESSAGES)
    assert said(fetchmail(server, keep=False)) == (
        4,  # PS_PROTOCOL: QUIT was answered -ERR
        [
            f"3 messages for {USER} at 127.0.0.1 ({total} octets).",
            *(reading(n, flushed=True) for n in (1, 2, 3)),
            "fetchmail: Query status=4 (PROTOCOL)",
        ],
        [],
    )
    assert fetchmail.delivered() == MESSAGES
    assert uids(server) == before[1:]  # "some": one of the three marked
    assert server.mailbox(USER).deleted == [before[0]]
