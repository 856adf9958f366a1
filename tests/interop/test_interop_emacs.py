"""Emacs 28's pop3.el (Debian 12's ``emacs-nox``) as a POP3 client over real sockets: what Gnus
and Rmail fetch mail with.

Each test runs ``emacs --batch -Q -l tests/interop/emacs_pop3.el PLAN``, a real Emacs, with a
JSON plan: either pop3.el's commands one by one (``pop3-stat``, ``pop3-list``, ``pop3-retr``
into a buffer, ``pop3-dele``, ...) or ``pop3-movemail`` into an mbox file. Every message is
compared byte for byte. What pop3.el does, as these tests pin it:

- It un-stuffs a leading dot, makes every CRLF a LF, and, unless the message starts with
  ``From ``, puts a newline and a ``From `` line before it (the From: address; the Date:
  rearranged with its commas dropped, or "Sun" and the local time without one) and a
  ``Content-Length:`` header (the body's octets) at the end of its header: ``pop3_el_form``.
  ``pop3-retr`` and ``pop3-movemail`` alike; movemail drops the newline before the first.
- ``pop3-movemail`` sends STAT, then every RETR at once and every DELE at once (pipelined,
  whatever CAPA says), then QUIT; with ``pop3-leave-mail-on-server`` it sends UIDL (and LIST
  when there is something new) instead of STAT, fetches only UIDs its ``pop3-uidl-file`` has not
  seen, adds an ``X-UIDL:`` header, and deletes mail older than that many days, if a number.
- It asks CAPA only to look for STLS, and upgrades whenever it is offered, even with
  ``pop3-stream-type`` nil ("plain" never asks). It logs in with USER/PASS or APOP, never
  SASL; a refused login is an error with the server's -ERR line, and no QUIT is sent.
- TLS is Emacs's GnuTLS, trusting only ``gnutls-trustfiles`` (the server's CA), with
  ``gnutls-verify-error`` so that a bad certificate or name fails the connection. A connection
  in clear is refused by the Network Security Manager in batch mode (there is nobody to ask)
  unless ``nsm-trust-local-network`` lets a server on this machine through.

Emacs is skipped when missing (failed with FAKEPOP_REQUIRE_CLIENTS=1).
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from clients import (
    CERTIFICATE_FAULTS,
    PASSWORD,
    USER,
    environment,
    printed,
    program,
    run,
    sent,
)
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

DRIVER = Path(__file__).parent / "emacs_pop3.el"

SMALL = [
    b"From: A <a@example.com>\r\nSubject: one\r\nDate: Mon, 2 Feb 2026 10:11:12 +0100\r\n\r\n"
    b"First body.\r\n",
    b"From: b@example.com\nSubject: bare LF, no Date\n\n.starts with a dot\n..two dots\n.\nend\n",
]
# Not in the corpus: a message that already starts with a "From " line, which pop3.el leaves
# as it is, and one with no blank line, to which it adds one.
ODD = [
    b"From someone@example.com Mon Feb  2 10:11:12 2026\r\nFrom: c@example.com\r\n\r\nbody\r\n",
    b"From: d@example.com\r\nSubject: all header, no blank line\r\n",
]

# What the client sends under each pop3-stream-type before it logs in ("TLS" is the handshake).
BEFORE_LOGIN = {
    "ssl": ["TLS", "CAPA"],
    "starttls": ["CAPA", "STLS", "TLS", "CAPA"],  # CAPA again under TLS (RFC 2595, section 4)
    "default": ["CAPA", "STLS", "TLS", "CAPA"],  # nil: STLS whenever CAPA offers it
    "plain": [],  # no CAPA at all
}
LOGIN = ["USER alice", "PASS ****"]

# The date pop3.el makes up for a message without Date: ("%d %b %Y %T %z" rearranged).
MADE_UP_DATE = re.compile(rb"Sun ([A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \d{4})")


def header_field(text: bytes, name: bytes) -> bytes | None:
    """mail-fetch-field's answer: the first line of ``text`` (the whole message, as pop3.el
    narrows it) that starts with the field's name and a colon, unfolded and trimmed."""
    found = re.search(rb"^" + name + rb"[ \t]*:[ \t]*(.*(?:\n[ \t].*)*)", text, re.M | re.I)
    return None if found is None else found.group(1).strip()


def pop3_el_form(wire: bytes, clock_date: bytes = b"") -> bytes:
    """What pop3.el makes of a message whose wire form (un-stuffed, CRLF) is ``wire``, as
    ``pop3-retr`` leaves it in a buffer: see the module's docstring. ``clock_date`` is the
    date it puts in the "From " line of a message without Date:."""
    text = wire.replace(b"\r\n", b"\n")
    if text.startswith((b"From ", b"\x01\x01\x01\x01\n", b"BABYL OPTIONS:")):
        return text  # already has a separator
    sender = header_field(text, b"From") or b"nil"
    address = re.search(rb"<([^>]*)>", sender)  # mail-strip-quoted-names: "A <x>" is x
    date = header_field(text, b"Date")
    if date:
        words = date.split(b" ")
        # "Fri, 27 Nov 2026 09:00:00 +0000" becomes "Fri, Nov 27 09:00:00 2026".
        if re.search(rb"[A-Z]", words[0], re.I):  # case-fold-search is on
            stamp = b" ".join([words[0], words[2], words[1], words[4], words[3]])
        else:
            stamp = b" ".join([b"Sun", words[1], words[0], words[3], words[2]])
    else:
        stamp = clock_date
    separator = b"\nFrom %s  %s\n" % (address.group(1) if address else sender, stamp)
    separator = separator.replace(b",", b"")
    end = text.find(b"\n\n")
    if end < 0:  # no blank line: one is added at the end
        text += b"\n"
        end = len(text) - 2
    head, body = text[: end + 1], text[end + 2 :]
    return separator + head + b"Content-Length: %d\n\n" % len(body) + body


def made_up_date(line: bytes) -> bytes:
    """The date in a "From " line for which pop3.el read the clock; it must be about now."""
    found = MADE_UP_DATE.fullmatch(line.partition(b"  ")[2])
    assert found is not None, line
    when = datetime.datetime.strptime(found.group(1).decode(), "%b %d %H:%M:%S %Y")
    assert abs(when - datetime.datetime.now()) < datetime.timedelta(days=1), line
    return found.group()


def assert_form(got: bytes, raw: bytes, what: str = "") -> None:
    """``got`` is pop3.el's form of the raw message ``raw``, byte for byte."""
    wire = to_crlf(raw)
    has_date = header_field(wire.replace(b"\r\n", b"\n"), b"Date") is not None
    date = b"" if has_date else made_up_date(got.split(b"\n")[1])
    expected = pop3_el_form(wire, date)
    assert got == expected, f"{what} differs: {got[:300]!r}\n!= {expected[:300]!r}"


def mbox_form(got: bytes, messages: list[bytes]) -> bytes:
    """What pop3-movemail writes for ``messages``: each in pop3.el's form, the first without
    its leading newline. The dates it made up are taken from ``got``, by the sender."""
    expected = b""
    for raw in messages:
        wire = to_crlf(raw)
        lf = wire.replace(b"\r\n", b"\n")
        date = b""
        if header_field(lf, b"Date") is None:
            sender = header_field(lf, b"From") or b"nil"
            at = got.find(b"From " + sender + b"  Sun ")
            date = made_up_date(got[at : got.find(b"\n", at)])
        expected += pop3_el_form(wire, date)
    return expected[1:]


class Run:
    """One Emacs run: its exit status, output, what the steps returned, and its directory."""

    def __init__(self, result: subprocess.CompletedProcess[bytes], out: Path) -> None:
        self.returncode = result.returncode
        self.printed = printed(result)
        self.out = out
        results = out / "results.json"
        self.results: dict[str, Any] = json.loads(results.read_text()) if results.exists() else {}

    def retrieved(self, number: int) -> bytes:
        """What pop3-retr left in its buffer for message ``number``."""
        return (self.out / f"retr-{number}").read_bytes()


class Pop3El:
    """Runs the driver with a plan, in the C locale with ``home`` as HOME (and nothing of the
    user's: -Q); each run gets a directory of its own for its results."""

    def __init__(self, home: Path) -> None:
        self.path = program("emacs", "Emacs's pop3.el")
        self.home = home
        self.runs = 0

    def __call__(
        self, server: POP3Server, stream: str = "ssl", password: str = PASSWORD, **plan: Any
    ) -> Run:
        """``stream`` is pop3-stream-type ("ssl", "starttls", "plain", or "default" for nil);
        ``plan`` has "steps" or "movemail", and what else the driver reads."""
        self.runs += 1
        out = self.home / f"run{self.runs}"
        out.mkdir()
        port = server.tls_port if stream == "ssl" else server.port
        plan = {
            "host": "localhost",
            "port": port,
            "user": USER,
            "password": password,
            "stream": None if stream == "default" else stream,
            "ca": str(server.ca_pem),
            "out": str(out),
            "uidl_file": str(self.home / "pop3-uidl"),
        } | plan
        if plan.get("movemail") is True:
            plan["movemail"] = str(out / "mbox")
        (out / "plan.json").write_text(json.dumps(plan))
        args = [self.path, "--batch", "-Q", "-l", str(DRIVER), str(out / "plan.json")]
        return Run(run(args, environment(self.home)), out)


@pytest.fixture
def pop3_el(tmp_path: Path) -> Pop3El:
    return Pop3El(tmp_path)


@pytest.fixture
def small(pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    return server


def succeeded(run: Run, server: POP3Server) -> Run:
    assert run.returncode == 0, f"{run.results}\n{run.printed}\n{server.transcript}"
    assert "error" not in run.results
    return run


def session_of(server: POP3Server) -> list[str]:
    """What the client sent in the server's one session, the handshake as "TLS"; stops it."""
    (session,) = sent(server)
    return ["TLS" if line.startswith("TLS established: ") else line for line in session]


def steps(*names: str | tuple[str, int]) -> list[list[Any]]:
    return [[name] if isinstance(name, str) else list(name) for name in names]


def test_the_form_of_a_message() -> None:
    """pop3_el_form, on what the module's docstring says, so the tests below rest on it."""
    assert pop3_el_form(to_crlf(SMALL[0])) == (
        b"\nFrom a@example.com  Mon Feb 2 10:11:12 2026\n"
        b"From: A <a@example.com>\nSubject: one\nDate: Mon, 2 Feb 2026 10:11:12 +0100\n"
        b"Content-Length: 12\n\nFirst body.\n"
    )
    assert pop3_el_form(to_crlf(ODD[0])) == ODD[0].replace(b"\r\n", b"\n")
    assert pop3_el_form(to_crlf(ODD[1]), b"Sun Feb 01 00:00:00 2026") == (
        b"\nFrom d@example.com  Sun Feb 01 00:00:00 2026\n"
        b"From: d@example.com\nSubject: all header, no blank line\nContent-Length: 0\n\n"
    )


@pytest.mark.parametrize("stream", ["ssl", "starttls"])
def test_retr_the_corpus_byte_for_byte(
    pop3_el: Pop3El, server: POP3Server, messages: list[bytes], stream: str
) -> None:
    """STAT, LIST, then RETR of every message into a buffer, one command at a time."""
    mailbox = server.mailbox(USER)
    sizes = [[n, m.size] for n, m in enumerate(mailbox.messages, 1)]
    retrs = [("retr", n) for n in range(1, len(messages) + 1)]
    result = succeeded(pop3_el(server, stream, steps=steps("stat", "list", *retrs, "quit")), server)
    assert result.results["1 stat"] == [len(messages), sum(size for _, size in sizes)]
    assert result.results["2 list"] == sizes
    assert re.fullmatch(r"<\d+\.\d+@localhost>", result.results["timestamp"])  # APOP's
    for n, raw in enumerate(messages, 1):
        assert_form(result.retrieved(n), raw, f"message {n}")
    assert len(mailbox) == len(messages)  # nothing deleted
    retr_lines = [f"RETR {n}" for n in range(1, len(messages) + 1)]
    assert session_of(server) == [
        *BEFORE_LOGIN[stream],
        *LOGIN,
        "STAT",
        "LIST",
        *retr_lines,
        "QUIT",
    ]
    assert server.violations == []


@pytest.mark.parametrize("stream", ["ssl", "starttls"])
def test_movemail_the_corpus_and_delete_it(
    pop3_el: Pop3El, server: POP3Server, messages: list[bytes], stream: str
) -> None:
    """pop3-movemail: an mbox of every message, then every message deleted at QUIT."""
    mailbox = server.mailbox(USER)
    uids = [m.uid for m in mailbox.messages]
    result = succeeded(pop3_el(server, stream, movemail=True), server)
    assert result.results == {"movemail": True}
    got = (result.out / "mbox").read_bytes()
    assert got == mbox_form(got, messages)
    assert mailbox.messages == []
    mailbox.assert_deleted(*uids)
    server.transcript.assert_quit()
    numbers = range(1, len(messages) + 1)
    assert session_of(server) == [
        *BEFORE_LOGIN[stream],
        *LOGIN,
        "STAT",
        *(f"RETR {n}" for n in numbers),
        *(f"DELE {n}" for n in numbers),
        "QUIT",
    ]


def test_leave_mail_on_server_fetches_only_new_mail(pop3_el: Pop3El, small: POP3Server) -> None:
    """pop3-leave-mail-on-server t: UIDL, LIST only when something is new, RETR of what the
    pop3-uidl-file has not seen, each with an X-UIDL: header; nothing deleted."""
    mailbox = small.mailbox(USER)
    uids = [m.uid for m in mailbox.messages]
    first = succeeded(pop3_el(small, movemail=True, leave=True), small)
    got = (first.out / "mbox").read_bytes()
    assert got == with_x_uidl(mbox_form(got, SMALL), uids)
    second = succeeded(pop3_el(small, movemail=True, leave=True), small)
    assert not (second.out / "mbox").exists()  # nothing new, no file
    new = b"From: n@example.com\r\nDate: Tue, 3 Feb 2026 10:00:00 +0000\r\n\r\nnew\r\n"
    uid = mailbox.add(new)
    third = succeeded(pop3_el(small, movemail=True, leave=True), small)
    got = (third.out / "mbox").read_bytes()
    assert got == with_x_uidl(mbox_form(got, [new]), [uid])
    assert [m.uid for m in mailbox.messages] == [*uids, uid]
    small.transcript.assert_quit()
    sessions = [["TLS" if s.startswith("TLS ") else s for s in session] for session in sent(small)]
    start = [*BEFORE_LOGIN["ssl"], *LOGIN, "UIDL"]
    assert sessions == [
        [*start, "LIST", "RETR 1", "RETR 2", "QUIT"],
        [*start, "QUIT"],
        [*start, "LIST", "RETR 3", "QUIT"],
    ]


def test_leave_mail_on_server_for_days_deletes_old_mail(
    pop3_el: Pop3El, small: POP3Server, tmp_path: Path
) -> None:
    """pop3-leave-mail-on-server 1: mail the pop3-uidl-file saw two days ago is deleted by
    UIDL, the rest fetched; the file then holds only what is left on the server."""
    mailbox = small.mailbox(USER)
    old, new = (m.uid for m in mailbox.messages)
    seconds = int(datetime.datetime.now().timestamp()) - 2 * 86400
    # pop3.el's own format: server, user, then each UID and when it was first seen as (HI LO).
    stamp = f"({seconds >> 16} {seconds & 0xFFFF})"
    (tmp_path / "pop3-uidl").write_text(f'(("localhost" ("{USER}" "{old}" {stamp})))\n')
    result = succeeded(pop3_el(small, movemail=True, leave=1), small)
    got = (result.out / "mbox").read_bytes()
    assert got == with_x_uidl(mbox_form(got, SMALL[1:]), [new])
    assert [m.uid for m in mailbox.messages] == [new]
    mailbox.assert_deleted(old)
    saved = (tmp_path / "pop3-uidl").read_text()
    assert new in saved
    assert old not in saved
    assert session_of(small) == [
        *BEFORE_LOGIN["ssl"], *LOGIN, "UIDL", "LIST", "RETR 2", "DELE 1", "QUIT"
    ]  # fmt: skip


def with_x_uidl(mbox: bytes, uids: list[str]) -> bytes:
    """``mbox`` with pop3.el's X-UIDL: header last in each message's header, in order."""
    parts = re.split(rb"(?<=\n)(?=Content-Length: \d+\n\n)", mbox)
    assert len(parts) == len(uids) + 1
    out = parts[0]
    for uid, part in zip(uids, parts[1:], strict=True):
        length, _, rest = part.partition(b"\n")
        out += length + b"\nX-UIDL: " + uid.encode() + b"\n" + rest
    return out


def test_commands_one_by_one(pop3_el: Pop3El, small: POP3Server) -> None:
    """LIST n, DELE, RSET, NOOP: only what is still marked at QUIT is deleted."""
    mailbox = small.mailbox(USER)
    uids = [m.uid for m in mailbox.messages]
    plan = steps(("dele", 1), "rset", ("dele", 2), ("list", 1), "noop", "stat", "quit")
    result = succeeded(pop3_el(small, steps=plan), small)
    size = mailbox.messages[0].size
    assert result.results["4 list"] == size
    assert result.results["6 stat"] == [1, size]
    assert [m.uid for m in mailbox.messages] == [uids[0]]
    mailbox.assert_deleted(uids[1])
    assert session_of(small)[len(BEFORE_LOGIN["ssl"]) + 2 :] == [
        "DELE 1", "RSET", "DELE 2", "LIST 1", "NOOP", "STAT", "QUIT"
    ]  # fmt: skip


def test_last(pop3_el: Pop3El, pop3_server_factory: ServerFactory) -> None:
    """pop3-last sends RFC 1081's LAST, which RFC 1939 dropped: fakepop refuses it unless
    ``last=True``, and pop3.el signals the -ERR; with it, the highest message retrieved."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    result = pop3_el(server, steps=steps("last"))
    assert result.returncode == 1
    assert result.results["error"] == "-ERR Unknown command: LAST"
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, last=True)
    server.mailbox(USER).extend(SMALL)
    plan = steps("last", ("retr", 2), "last", "rset", "last", "quit")
    result = succeeded(pop3_el(server, steps=plan), server)
    assert [result.results[f"{n} last"] for n in (1, 3, 5)] == [0, 2, 0]
    assert_form(result.retrieved(2), SMALL[1])


@pytest.mark.parametrize("stream", ["default", "plain"])
def test_apop(pop3_el: Pop3El, small: POP3Server, stream: str) -> None:
    """pop3-authentication-scheme 'apop: the digest of the greeting's timestamp and the
    password."""
    result = pop3_el(small, stream, auth="apop", trust_local=True, steps=steps("stat", "quit"))
    succeeded(result, small)
    assert result.results["1 stat"] == [2, sum(m.size for m in small.mailbox(USER).messages)]
    assert session_of(small) == [*BEFORE_LOGIN[stream], "APOP alice ****", "STAT", "QUIT"]
    small.transcript.assert_login("APOP", user=USER)


@pytest.mark.parametrize("stream", ["plain", "default"])
def test_in_clear_on_a_trusted_local_network(
    pop3_el: Pop3El,
    small: POP3Server,
    stream: str,
    pop3_server_factory: ServerFactory,
) -> None:
    """With nsm-trust-local-network, no TLS: 'plain never asks CAPA; nil asks it and, as
    STLS is not offered here, logs in in clear."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, stls=stream == "plain")
    server.mailbox(USER).extend(SMALL)
    result = succeeded(pop3_el(server, stream, trust_local=True, movemail=True), server)
    got = (result.out / "mbox").read_bytes()
    assert got == mbox_form(got, SMALL)
    capa = [] if stream == "plain" else ["CAPA"]
    assert session_of(server) == [
        *capa, *LOGIN, "STAT", "RETR 1", "RETR 2", "DELE 1", "DELE 2", "QUIT"
    ]  # fmt: skip
    assert server.mailbox(USER).messages == []


@pytest.mark.parametrize(("stream", "stls"), [("plain", True), ("starttls", False)])
def test_no_password_in_clear_unless_trusted(
    pop3_el: Pop3El, stream: str, stls: bool, pop3_server_factory: ServerFactory
) -> None:
    """In batch mode the Network Security Manager refuses a connection in clear (there is
    nobody to ask), and 'starttls refuses a server without STLS: no password goes out.
    pop3-open-server then fails on the nil process it was given."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, stls=stls)
    server.mailbox(USER).extend(SMALL)
    result = pop3_el(server, stream, movemail=True)
    assert result.returncode == 1
    assert result.results == {"error": "Wrong type argument: processp, nil"}
    assert session_of(server) == ([] if stream == "plain" else ["CAPA"])
    assert len(server.mailbox(USER)) == len(SMALL)


@pytest.mark.parametrize("auth", ["pass", "apop"])
def test_wrong_password(pop3_el: Pop3El, small: POP3Server, auth: str) -> None:
    """The -ERR is an error from pop3-read-response, before pop3-pass or pop3-apop can send
    the QUIT they mean to: the connection just closes, nothing is deleted."""
    result = pop3_el(small, auth=auth, password="wrong", movemail=True)
    assert result.returncode == 1
    assert result.results == {"error": "-ERR [AUTH] Invalid user name or password"}
    login = LOGIN if auth == "pass" else ["APOP alice ****"]
    assert session_of(small) == [*BEFORE_LOGIN["ssl"], *login]
    assert len(small.mailbox(USER)) == len(SMALL)


def test_a_locked_maildrop(pop3_el: Pop3El, pop3_server_factory: ServerFactory) -> None:
    """-ERR [IN-USE] to PASS (RFC 2449, section 8.1.2) reaches the caller as the error's
    text; unlocked, the mail comes. Only where the server keeps the connection: where it
    closes at once, as Dovecot and fakepop's default do, pop3.el at times reports the error
    as an empty line ("\\r\\n"), the close having come before it read the answer."""
    small = pop3_server_factory(users={USER: PASSWORD}, tls=True, in_use_closes=False)
    small.mailbox(USER).extend(SMALL)
    mailbox = small.mailbox(USER)
    with mailbox.hold_lock():
        result = pop3_el(small, movemail=True)
    assert result.returncode == 1
    assert result.results == {"error": "-ERR [IN-USE] Mailbox is locked by another session"}
    assert len(mailbox) == len(SMALL)
    result = succeeded(pop3_el(small, movemail=True), small)
    got = (result.out / "mbox").read_bytes()
    assert got == mbox_form(got, SMALL)
    assert mailbox.messages == []


# GnuTLS's verdicts: its certificate status bits in hex (INVALID 0x2 with EXPIRED 0x400,
# NOT_ACTIVATED 0x200 or SIGNER_NOT_FOUND 0x40), or the name check's own message.
CERTIFICATE_ERRORS = {
    "expired": "Certificate validation failed localhost, verification code 402",
    "not-yet-valid": "Certificate validation failed localhost, verification code 202",
    "wrong-host": 'The x509 certificate does not match "localhost"',
    "untrusted-ca": "Certificate validation failed localhost, verification code 42",
    "self-signed": "Certificate validation failed localhost, verification code 42",
}


@pytest.mark.parametrize(
    ("stream", "fault"),
    [
        *(("ssl", fault) for fault in CERTIFICATE_FAULTS),
        *(("starttls", fault) for fault in CERTIFICATE_FAULTS),
        ("default", "untrusted-ca"),
    ],
)
def test_refuses_a_faulty_certificate(
    pop3_el: Pop3El, stream: str, fault: str, pop3_server_factory: ServerFactory
) -> None:
    """gnutls-verify-error makes every fault an error, the name included; with
    pop3-stream-type nil too, where it could have fallen back to a connection in clear."""
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    result = pop3_el(server, stream, movemail=True)
    assert result.returncode == 1
    assert result.results == {"error": CERTIFICATE_ERRORS[fault]}
    # Up to the handshake, which the server saw complete; nothing after it.
    assert session_of(server) == BEFORE_LOGIN[stream][:-1]
    assert len(server.mailbox(USER)) == len(SMALL)
