"""fakepop with Dovecot's settings against a real Dovecot 2.3, session by session.

Each script is a list of command lines, covering every command in every state, right and
wrong. It runs against both servers, each account on each holding the same mail, and the
answers must agree: +OK or -ERR and the response code, the numbers STAT, LIST and UIDL give
for one message, the lines of multi-line answers (RETR, TOP, LIST; UIDL's message numbers),
and where the server closed the connection. What differs by design is left out: the
free text of replies, the greeting, CAPA's lines and UIDL's unique ids.

Dovecot is bench/dovecot.py's, run from a throwaway configuration (tests/real_dovecot.py).
Each session comes from an address of its own in 127/8: Dovecot slows down failed logins
per address, and this keeps every answer prompt.
"""

from __future__ import annotations

import base64
import itertools
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from real_dovecot import PASSWORD, ComparedDovecot, running_dovecot

from fakepop import POP3Server

pytestmark = pytest.mark.interop  # runs a real POP3 server

MESSAGES = (
    b"Subject: one\r\n\r\nHello\r\n",
    b"Subject: two\r\n\r\n.a line with a dot\r\n..and two\r\nend\r\n",
    b"Subject: three\n\nLF line ends only\n",
    b"Subject: four\r\n\na bare\rCR\r.and a dot after one\r\n",
)
# fakepop's settings that match Dovecot 2.3 as tests/real_dovecot.py configures it.
AS_DOVECOT: dict[str, Any] = {
    "argument_syntax": "dovecot",
    "apop": False,
    "sasl": ("PLAIN",),
    "utf8": False,
    "max_line_length": 2048,  # after login; Dovecot's login process allows about 1 KiB
    "max_bad_commands_before_login": 3,
    "max_bad_commands": 21,  # Dovecot closes at the 21st bad command in a row
    "long_line_closes": True,
    "in_use_closes": True,
    "lock_wait": 2,  # Dovecot waits 10 s; the wait is not compared
    "keep_bare_cr": True,
}
TIMEOUT = 30.0  # Dovecot answers a locked maildrop after 10 s
END_WAIT = 2.0  # for the close after a session's last line (immediate when it comes)
_source = itertools.count(1)


@dataclass
class Script:
    """Sessions in turn on one account; ``hold``: another session holds the maildrop."""

    name: str
    sessions: Sequence[Sequence[str | bytes]]
    hold: bool = False


def login(account: str) -> list[str | bytes]:
    return [f"USER {account}", f"PASS {PASSWORD}"]


SCRIPTS = [
    Script(
        "authorization-every-command",
        [
            [
                "CAPA",
                "CAPA x",  # arguments ignored
                "NOOP",  # bad before login: one
                "CAPA",  # a good command starts the count again
                "STAT",
                "LIST",
                "CAPA",
                "RETR 1",
                "TOP 1 0",
                "CAPA",
                "DELE 1",
                "UIDL",
                "CAPA",
                "RSET",
                "LAST",  # Dovecot has no LAST (RFC 1081; gone since RFC 1725)
                "CAPA",
                "UTF8",  # neither offers RFC 6856
                "LANG",
                "CAPA",
                "APOP {account} 0123456789abcdef0123456789abcdef",  # no APOP offered
                "AUTH",
                "AUTH PLAIN",
                "*",
                "user {account}",
                "pass {password}",
                "stat",
                "QUIT x",
            ]
        ],
    ),
    Script("three-bad-commands-close", [["FOO", "BAR", "BAZ", "CAPA"]]),
    Script("empty-lines-are-bad-commands", [["", "", "", "CAPA"]]),
    Script("a-good-command-resets-the-count", [["FOO", "BAR", "CAPA", "BAZ", "QUX", "QUIT"]]),
    Script("user-with-a-trailing-space", [["USER {account} ", "PASS {password}", "QUIT"]]),
    Script("user-with-two-spaces", [["USER  {account}", "PASS {password}", "QUIT"]]),
    Script("a-wrong-password", [["USER {account}", "PASS wrong", "PASS wrong", "QUIT"]]),
    Script(
        "auth-plain",
        [
            ["AUTH PLAIN", "AHt7YWNjb3VudH19AHNlY3JldA==", "STAT", "QUIT"],
            ["AUTH PLAIN AHt7YWNjb3VudH19AHNlY3JldA==", "LIST", "QUIT"],
        ],
    ),
    Script(
        "transaction-every-command",
        [
            [
                *login("{account}"),
                "STAT",
                "STAT x",
                "LIST",
                "LIST 1",
                "LIST  1",
                "LIST 1 ",
                "LIST 1 2",
                "LIST 0",
                "LIST 9",
                "LIST x",
                "NOOP",
                "UIDL",
                "UIDL 2",
                "UIDL 1 ",
                "RETR 1",
                "RETR 2",
                "RETR 3",
                "RETR 4",
                "TOP 4 1",
                "RETR",
                "RETR 9",
                "RETR 1 ",
                "NOOP x",
                "TOP 1 0",
                "TOP 2 1",
                "TOP 3 100",
                "TOP 1  0",
                "TOP 1 0 ",
                "TOP 1",
                "TOP 1 x",
                "RSET x",
                "CAPA",
                "CAPA x",
                "USER {account}",
                "PASS {password}",
                "AUTH PLAIN",
                "APOP {account} 0123456789abcdef0123456789abcdef",
                "NOOP",
                "STLS",
                "UTF8",
                "LANG",
                "LAST",
                "FOO",
                "",
                "NOOP",
                "DELE 1",
                "DELE 1",
                "RETR 1",
                "TOP 1 0",
                "LIST 1",
                "LIST",
                "UIDL",
                "STAT",
                "RSET",
                "STAT",
                "DELE 3",
                "DELE 1",
                "QUIT x",  # the argument is ignored: the deletions are committed
            ],
            [*login("{account}"), "STAT", "LIST", "UIDL", "RETR 1", "QUIT"],
        ],
    ),
    Script(
        "no-quit-deletes-nothing",
        [[*login("{account}"), "DELE 1", "DELE 2"], [*login("{account}"), "STAT", "QUIT"]],
    ),
    Script("a-long-line-before-login", [[b"X" * 5000, "CAPA"]]),
    Script("a-long-line-after-login", [[*login("{account}"), b"NOOP " + b"x" * 5000, "STAT"]]),
    Script(
        "twenty-bad-commands-after-login",
        [[*login("{account}"), *["FOO"] * 20, "NOOP", *["FOO"] * 21, "STAT"]],
    ),
    Script("in-use", [[*login("{account}"), "STAT"]], hold=True),
]


# --- a client that keeps what can be compared -------------------------------------------


class Closed(Exception):
    """The server closed the connection."""


class Client:
    """Sends a line at a time and reads its whole answer; no waits, so closes show as EOF."""

    def __init__(self, port: int) -> None:
        number = next(_source)
        self.sock = socket.socket()
        self.sock.settimeout(TIMEOUT)
        self.sock.bind((f"127.0.{number // 250 + 1}.{number % 250 + 1}", 0))
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""

    def line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                raise Closed
            self.buffer += data
        line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
        return line

    def send(self, line: bytes) -> None:
        try:
            self.sock.sendall(line + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            raise Closed from None

    def close(self) -> None:
        self.sock.close()


@dataclass
class Answer:
    """What is compared of one answer."""

    status: str  # "+OK", "-ERR", "-ERR [CODE]", "+" (a SASL continuation), or "closed"
    body: list[str] = field(default_factory=list)
    text: str = ""  # the free text, kept for messages only

    def __repr__(self) -> str:
        return " ".join([self.status, *(f"|{line}" for line in self.body)])


_CODE = re.compile(r"-ERR (\[[^\]]+\])")


def multiline(line: bytes) -> bool:
    verb, *words = line.decode("ascii", "replace").split()
    return verb.upper() in ("CAPA", "RETR", "TOP") or (
        verb.upper() in ("LIST", "UIDL", "AUTH") and not words
    )


def status(first: str, verb: str = "", words: Sequence[str] = ()) -> str:
    """A status line as compared: its code, and the numbers of STAT and of LIST and UIDL n."""
    if first.startswith("+OK"):
        if verb in ("STAT", "LIST", "UIDL") and (verb == "STAT" or words):
            numbers = first.split()[1:3]
            return " ".join(["+OK", *(numbers if verb != "UIDL" else numbers[:1])])
        return "+OK"
    if first.startswith("-ERR"):
        code = _CODE.match(first)
        return "-ERR" + (f" {code[1]}" if code else "")
    return "+" if first.startswith("+") else f"? {first}"


def answer(client: Client, line: bytes) -> Answer:
    first = client.line().decode("utf-8", "replace")
    verb, *words = line.decode("ascii", "replace").split() or [""]
    verb = verb.upper()
    reply = Answer(status(first, verb, words), text=first)
    if reply.status.startswith("+OK") and multiline(line):
        while (body := client.line().decode("utf-8", "replace")) != ".":
            if verb == "UIDL":
                body = body.split()[0]  # the number; unique ids are each server's own
            reply.body.append(body)
        if verb == "CAPA":
            reply.body = []  # each server offers its own
    return reply


def run_session(port: int, lines: Sequence[bytes]) -> list[tuple[str, Answer]]:
    """Each line with its answer; "closed" for the first line the server did not take."""
    client = Client(port)
    answers: list[tuple[str, Answer]] = []
    try:
        client.line()  # the greeting: its text is each server's own
        for line in lines:
            shown = line[:40].decode("ascii", "replace")
            try:
                client.send(line)
                answers.append((shown, answer(client, line)))
            except Closed:
                answers.append((shown, Answer("closed")))
                break
        else:
            client.sock.settimeout(END_WAIT)  # did the last line close it, or is it open?
            try:
                more = client.line().decode("utf-8", "replace")
                answers.append(("", Answer(status(more), text=more)))
            except Closed:
                answers.append(("", Answer("closed")))
            except TimeoutError:
                pass
    finally:
        client.close()
    return answers


def compared(answers: list[tuple[str, Answer]], dovecot: bool) -> list[str]:
    """The answers as compared. Dovecot answers the bad command that ends its budget, then
    sends a line saying so and closes; fakepop sends the second line instead of the first.
    Dovecot's second line is read as the next command's answer, or never, when the close
    came first (Linux drops what was not read once a reset arrives), so it is left out."""
    kept = [
        (command, reply)
        for command, reply in answers
        if not (dovecot and reply.text.startswith("-ERR Too many"))
    ]
    return [
        f"{command!r}: {reply!r}" if reply.status != "closed" else "closed"
        for command, reply in kept
    ]


def run_script(port: int, script: Script, account: str, dovecot: bool) -> list[list[str]]:
    holder = None
    if script.hold:
        holder = Client(port)
        holder.line()
        for line in login(account):
            holder.send(str(line).encode())
            assert holder.line().startswith(b"+OK")
    try:
        return [
            compared(run_session(port, [expand(line, account) for line in session]), dovecot)
            for session in script.sessions
        ]
    finally:
        if holder is not None:
            holder.send(b"QUIT")
            holder.close()


def expand(line: str | bytes, account: str) -> bytes:
    if isinstance(line, bytes):
        return line
    if line.startswith("AHt7"):  # AUTH PLAIN's response, for this account
        return base64.b64encode(f"\0{account}\0{PASSWORD}".encode())
    if line.startswith("AUTH PLAIN AHt7"):
        plain = base64.b64encode(f"\0{account}\0{PASSWORD}".encode()).decode()
        return f"AUTH PLAIN {plain}".encode()
    return line.format(account=account, password=PASSWORD).encode()


# --- the servers ------------------------------------------------------------------------


def account(script: Script) -> str:
    return script.name.replace("-", "")[:30]


@pytest.fixture(scope="module")
def dovecot() -> Iterator[ComparedDovecot]:
    with running_dovecot({account(s): MESSAGES for s in SCRIPTS}) as server:
        yield server


@pytest.fixture(scope="module")
def fakepop() -> Iterator[POP3Server]:
    with POP3Server(users=dict.fromkeys(map(account, SCRIPTS), PASSWORD), **AS_DOVECOT) as server:
        for script in SCRIPTS:
            server.mailbox(account(script)).extend(MESSAGES)
        yield server


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_fakepop_answers_as_dovecot(
    script: Script, dovecot: ComparedDovecot, fakepop: POP3Server
) -> None:
    name = account(script)
    theirs = run_script(dovecot.port, script, name, dovecot=True)
    ours = run_script(fakepop.port, script, name, dovecot=False)
    assert ours == theirs, "\n".join(
        f"session {n}:\n  fakepop: {a}\n  Dovecot: {b}"
        for n, (a, b) in enumerate(zip(ours, theirs, strict=True), 1)
    )
    assert dovecot.errors() == []
