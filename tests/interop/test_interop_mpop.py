"""mpop 1.4 as a POP3 client over real sockets, against the 50-message corpus.

mpop delivers to a Maildir here (its own ``delivery maildir``), read back in delivery order.
It changes a message on the way in two ways, seen in what it writes:

- every CRLF becomes LF: the wire form has only CRLF line ends (the server normalises bare CR
  and LF), so ``stripcr(wire)`` is exactly what mpop got;
- it puts a ``Received:`` header on top unless ``received_header off``.

Nothing else is touched, so with ``received_header off`` each file is ``stripcr`` of the wire
form, byte for byte. mpop pipelines when CAPA offers PIPELINING, as fakepop does. It is not
skipped when missing: install it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from clients import (
    CERTIFICATE_FAULTS,
    PASSWORD,
    RECEIVED,
    USER,
    client_commands,
    environment,
    maildir_delivered,
    printed,
    program,
    run,
    sent,
    stripcr,
    top,
)
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.mail.wire import to_crlf

pytestmark = pytest.mark.interop  # every test here runs a real POP3 client

# sysexits.h, which mpop exits with.
EX_OK, EX_UNAVAILABLE, EX_NOPERM = 0, 69, 77

# The ways to log in tested here, as mpop's --auth names them, and the command the server sees.
# mpop sends no SASL initial response except for OAUTHBEARER (RFC 7628 wants one). SCRAM ends
# with the server's signature as a challenge and an empty response (RFC 5034, section 4).
LOGINS = {
    "user": ["USER alice", "PASS ****"],
    "apop": ["APOP alice ****"],
    "plain": ["AUTH PLAIN", "****"],
    "login": ["AUTH LOGIN", "****", "****"],
    "cram-md5": ["AUTH CRAM-MD5", "****"],
    "scram-sha-1": ["AUTH SCRAM-SHA-1", "****", "****", "****"],
    "scram-sha-256": ["AUTH SCRAM-SHA-256", "****", "****", "****"],
    "oauthbearer": ["AUTH OAUTHBEARER ****"],
    "xoauth2": ["AUTH XOAUTH2", "****"],
}
BEARER = {"oauthbearer", "xoauth2"}  # the password is an OAuth token
TOKEN = "alice-token"

# What mpop does after STAT when nothing is to be skipped: LIST and UIDL (pipelined).
LISTINGS = ["STAT", "LIST", "UIDL"]

SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]


def on(flag: bool) -> str:
    return "on" if flag else "off"


class Mpop:
    """mpop run once with a configuration file of its own in a temporary HOME, delivering to
    the Maildir ``home/Maildir``; its UIDs list is ``home/uidls``."""

    def __init__(self, home: Path) -> None:
        self.path = program("mpop")
        self.home = home
        self.maildir = home / "Maildir"
        for sub in ("cur", "new", "tmp"):  # mpop makes no directories
            (self.maildir / sub).mkdir(parents=True)
        self.uidls = home / "uidls"

    def __call__(
        self,
        server: POP3Server,
        *options: str,
        tls: str = "off",
        auth: str = "user",
        password: str = PASSWORD,
        keep: bool = True,
        only_new: bool = False,
        received_header: bool = False,
    ) -> subprocess.CompletedProcess[bytes]:
        """One run; ``tls`` is "off", "stls" or "implicit"; ``options`` go on the command line
        and win over the file."""
        port = server.tls_port if tls == "implicit" else server.port
        lines = [
            "defaults",
            "timeout 10",
            "account default",
            f"host {server.host}",
            f"port {port}",
            f"user {USER}",
            f'password "{password}"',
            f"auth {auth}",
            f"tls {on(tls != 'off')}",
            f"tls_starttls {on(tls != 'implicit')}",
            *([f'tls_trust_file "{server.ca_pem}"'] if tls != "off" else []),
            f'delivery maildir "{self.maildir}"',
            f'uidls_file "{self.uidls}"',
            f"keep {on(keep)}",
            f"only_new {on(only_new)}",
            f"received_header {on(received_header)}",
        ]
        config = self.home / "mpoprc"
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)  # mpop refuses a file with a password that others can read
        return run([self.path, f"--file={config}", *options], environment(self.home))

    def delivered(self) -> list[bytes]:
        return maildir_delivered(self.maildir)


@pytest.fixture
def mpop(tmp_path: Path) -> Mpop:
    return Mpop(tmp_path)


@pytest.fixture
def small(pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    server.add_token(USER, TOKEN)
    return server


def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
    """mpop's output and the server's transcript, for a failed assertion to show."""
    return f"{printed(result)}\n{server.transcript}"


def as_delivered(raw: bytes) -> bytes:
    """What mpop writes for a message: the wire form with LF line ends."""
    return stripcr(to_crlf(raw))


def tls_note(line: str) -> bool:
    return line.startswith("TLS established: TLSv1.3 ")


@pytest.mark.parametrize("pipelining", ["auto", "off"])
@pytest.mark.parametrize("tls", ["off", "stls", "implicit"])
def test_retrieves_the_corpus_byte_for_byte(
    mpop: Mpop, server: POP3Server, messages: list[bytes], tls: str, pipelining: str
) -> None:
    uids = [m.uid for m in server.mailbox(USER).messages]
    result = mpop(server, f"--pipelining={pipelining}", tls=tls)
    assert result.returncode == EX_OK, output(result, server)
    delivered = mpop.delivered()
    assert len(delivered) == len(messages)
    for n, (raw, got) in enumerate(zip(messages, delivered, strict=True), 1):
        assert got == as_delivered(raw), f"message {n} differs"
    assert [m.uid for m in server.mailbox(USER).messages] == uids  # keep on: nothing deleted
    (session,) = sent(server)
    start = {
        "off": ["CAPA"],
        "stls": ["CAPA", "STLS", "TLS", "CAPA"],  # CAPA again under TLS, as RFC 2595 asks
        "implicit": ["TLS", "CAPA"],
    }[tls]
    assert [("TLS" if tls_note(line) else line) for line in session[: len(start)]] == start
    retrs = [f"RETR {n}" for n in range(1, len(messages) + 1)]
    assert session[len(start) :] == [*LOGINS["user"], *LISTINGS, *retrs, "QUIT"]


def test_received_header(mpop: Mpop, small: POP3Server) -> None:
    """mpop's default: a Received: header naming the server's address, mpop and POP3."""
    result = mpop(small, received_header=True)
    assert result.returncode == EX_OK, output(result, small)
    for raw, got in zip(SMALL, mpop.delivered(), strict=True):
        received = RECEIVED.match(got)
        assert received is not None, got[:200]
        assert re.fullmatch(
            rb"Received: from 127\.0\.0\.1 \(localhost \[127\.0\.0\.1\]\)\n"
            rb"\tby \S+ \(mpop-1\.4\.\d+\) with POP3\n"
            rb"\tfor <[^>\n]+>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n",
            received.group(),
        ), received.group()
        assert got[received.end() :] == as_delivered(raw)


def test_version_lists_the_methods_tested(tmp_path: Path) -> None:
    """The mechanisms below come from libgsasl: a build without one would fail its test
    for want of it, not for a fault of the server's; this says so first."""
    result = run([program("mpop"), "--version"], environment(tmp_path))
    assert result.returncode == EX_OK, printed(result)
    methods = re.search(rb"Supported authentication methods:\n([^\n]*)\n", result.stdout)
    assert methods is not None, printed(result)
    assert set(LOGINS) <= set(methods.group(1).decode().split())


@pytest.mark.parametrize("auth", LOGINS)
@pytest.mark.parametrize("tls", ["off", "stls"])
def test_login(mpop: Mpop, small: POP3Server, auth: str, tls: str) -> None:
    password = TOKEN if auth in BEARER else PASSWORD
    result = mpop(small, tls=tls, auth=auth, password=password)
    assert result.returncode == EX_OK, output(result, small)
    assert mpop.delivered() == [as_delivered(m) for m in SMALL]
    (session,) = sent(small)
    at = session.index("CAPA", 3 if tls == "stls" else 0) + 1
    assert session[at:] == [*LOGINS[auth], *LISTINGS, "RETR 1", "RETR 2", "QUIT"]
    assert small.transcript[0].user == USER


@pytest.mark.parametrize("auth", LOGINS)
def test_wrong_password_fails(mpop: Mpop, small: POP3Server, auth: str) -> None:
    result = mpop(small, auth=auth, password="wrong", keep=False)
    assert result.returncode == EX_NOPERM, output(result, small)
    assert f"mpop: authentication failed (method {auth.upper()})\n" in printed(result)
    assert mpop.delivered() == []
    assert len(small.mailbox(USER).messages) == len(SMALL)
    (session,) = sent(small)
    if auth.startswith("scram"):
        exchange = LOGINS[auth][:3]  # refused at the client's proof
    elif auth in BEARER:
        # The error challenge (RFC 7628, section 3.2.2), which mpop answers with an empty
        # line where the RFC asks for a ^A; the server takes either.
        exchange = [*LOGINS[auth], "****"]
    else:
        exchange = LOGINS[auth]
    # mpop hangs up after the -ERR without QUIT.
    assert session[1:] == exchange
    assert small.transcript[0].lines()[-1].startswith("S: -ERR [AUTH] ")


@pytest.mark.parametrize(("tls", "chosen"), [("off", "scram-sha-256"), ("stls", "plain")])
def test_auth_on_picks_a_method(mpop: Mpop, small: POP3Server, tls: str, chosen: str) -> None:
    """``auth on``: without TLS mpop takes only a method that hides the password, the
    strongest offered; under TLS, PLAIN."""
    result = mpop(small, tls=tls, auth="on")
    assert result.returncode == EX_OK, output(result, small)
    assert mpop.delivered() == [as_delivered(m) for m in SMALL]
    (session,) = sent(small)
    at = session.index("CAPA", 3 if tls == "stls" else 0) + 1
    assert session[at : at + len(LOGINS[chosen])] == LOGINS[chosen]


@pytest.mark.parametrize("store", ["memory", "maildir"])
def test_keep_off_deletes_every_message(
    mpop: Mpop,
    messages: list[bytes],
    tmp_path: Path,
    store: str,
    pop3_server_factory: ServerFactory,
) -> None:
    """mpop pipelines RETR and DELE; the deletions are done at its QUIT, from memory or from
    a Maildir on disk."""
    maildir = tmp_path / "store" if store == "maildir" else None
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, maildir=maildir)
    server.mailbox(USER).extend(messages)
    result = mpop(server, tls="implicit", keep=False)
    assert result.returncode == EX_OK, output(result, server)
    assert mpop.delivered() == [as_delivered(m) for m in messages]
    assert server.mailbox(USER).messages == []  # deleted at mpop's QUIT
    (commands,) = client_commands(server)
    assert commands.count("RETR") == commands.count("DELE") == len(messages)
    assert commands[-1] == "QUIT"
    if maildir is not None:
        assert [p.name for p in (maildir / USER).glob("*/*")] == []


def test_a_locked_maildrop(mpop: Mpop, small: POP3Server) -> None:
    """-ERR [IN-USE] to PASS (RFC 2449, section 8.1.2): mpop 1.4 reads no response code, so it
    fails as for a wrong password, passing the server's text on; unlocked, the mail comes."""
    with small.mailbox(USER).hold_lock():
        result = mpop(small)
    assert result.returncode == EX_NOPERM, output(result, small)
    assert "mpop: authentication failed (method USER)\n" in printed(result)
    assert "mpop: POP3 server message: -ERR [IN-USE] " in printed(result)
    assert mpop.delivered() == []
    result = mpop(small)
    assert result.returncode == EX_OK, output(result, small)
    assert mpop.delivered() == [as_delivered(m) for m in SMALL]


def test_only_new_fetches_what_uidl_has_not_seen(
    mpop: Mpop, server: POP3Server, messages: list[bytes]
) -> None:
    result = mpop(server, only_new=True)
    assert result.returncode == EX_OK, output(result, server)
    assert mpop.delivered() == [as_delivered(m) for m in messages]
    # mpop keeps the UIDs it has retrieved in its uidls file.
    seen = mpop.uidls.read_text()
    assert all(m.uid in seen for m in server.mailbox(USER).messages)

    result = mpop(server, only_new=True)
    assert result.returncode == EX_OK, output(result, server)
    assert mpop.delivered() == []

    new = b"From: late@fakepop.test\r\nSubject: arrived after the first poll\r\n\r\nnew\r\n"
    uid = server.mailbox(USER).add(new)
    result = mpop(server, only_new=True)
    assert result.returncode == EX_OK, output(result, server)
    assert mpop.delivered() == [stripcr(new)]
    assert uid in mpop.uidls.read_text()

    first, second, third = sent(server)
    assert first.count("UIDL") == second.count("UIDL") == third.count("UIDL") == 1
    assert [line for line in second if line.startswith("RETR")] == []
    assert [line for line in third if line.startswith("RETR")] == [f"RETR {len(messages) + 1}"]
    assert len(server.mailbox(USER).messages) == len(messages) + 1  # keep on


# An mpop filter: it stores the header it is given in the next numbered file and decides by the
# Subject: ordinary mail is deleted unread (1), the big message skipped (2), the rest fetched (0).
FILTER = """#!/bin/sh
headers="$(dirname "$0")/headers"
n=$(ls "$headers" | wc -l)
file="$headers/$(printf %04d $((n + 1)))"
cat > "$file"
if grep -q '^Subject: ordinary' "$file"; then exit 1; fi
if grep -q '^Subject: big' "$file"; then exit 2; fi
exit 0
"""


def test_filter_reads_headers_by_top(
    mpop: Mpop, server: POP3Server, messages: list[bytes], tmp_path: Path
) -> None:
    """A filter gets each message's header from ``TOP n 0`` and decides what mpop does."""
    script = tmp_path / "filter.sh"
    script.write_text(FILTER)
    script.chmod(0o700)
    (tmp_path / "headers").mkdir()
    uids = [m.uid for m in server.mailbox(USER).messages]
    result = mpop(server, f"--filter={script}", keep=False)
    assert result.returncode == EX_OK, output(result, server)
    wires = [to_crlf(m) for m in messages]
    # The header and the blank line after it, with LF line ends.
    headers = [f.read_bytes() for f in sorted((tmp_path / "headers").iterdir())]
    assert headers == [stripcr(top(wire, 0)) for wire in wires]
    fetched = [n for n, wire in enumerate(wires, 1) if b"\r\nSubject: ordinary" not in wire]
    big = next(n for n, wire in enumerate(wires, 1) if b"\r\nSubject: big\r\n" in wire)
    fetched.remove(big)
    assert mpop.delivered() == [stripcr(wires[n - 1]) for n in fetched]
    # Fetched mail and ordinary mail deleted; only the skipped one is left.
    assert [m.uid for m in server.mailbox(USER).messages] == [uids[big - 1]]
    (session,) = sent(server)
    assert [line for line in session if line.startswith("TOP ")] == [
        f"TOP {n} 0" for n in range(1, len(messages) + 1)
    ]
    assert [line for line in session if line.startswith("RETR ")] == [f"RETR {n}" for n in fetched]
    deleted = [n for n in range(1, len(messages) + 1) if n != big]
    assert [line for line in session if line.startswith("DELE ")] == [f"DELE {n}" for n in deleted]
    assert session[-1] == "QUIT"


def test_serverinfo_reads_capa(mpop: Mpop, small: POP3Server) -> None:
    """``--serverinfo`` prints what mpop understood of the greeting and of CAPA."""
    result = mpop(small, "--serverinfo", tls="stls")
    assert result.returncode == EX_OK, output(result, small)
    text = printed(result)
    for capability in ("CAPA", "IMPLEMENTATION", "PIPELINING", "TOP", "UIDL", "RESP-CODES"):
        assert f"\n    {capability}:\n" in text, text
    assert "\n        fakepop " in text  # the IMPLEMENTATION text
    assert "\n    EXPIRE NEVER:\n" in text
    methods = "USER PLAIN SCRAM-SHA-1 SCRAM-SHA-256 APOP CRAM-MD5 LOGIN OAUTHBEARER XOAUTH2"
    assert f"\n        {methods} \n" in text
    assert "\n    (TLS1.3)-" in text


def capa_replies(lines: list[str]) -> list[list[str]]:
    """The capability lines of each CAPA reply in a session's transcript lines."""
    replies: list[list[str]] = []
    listing: list[str] | None = None
    for line in lines:
        if line == "S: +OK Capability list follows":
            listing = []
        elif listing is not None and line == "S: .":
            replies.append(listing)
            listing = None
        elif listing is not None:
            listing.append(line[3:])
    return replies


def test_capa_after_login_does_not_offer_stls(mpop: Mpop, small: POP3Server) -> None:
    """mpop --serverinfo asks CAPA before login and again after it (RFC 2449, section 5: the
    list may differ between the states). STLS may be listed only before: RFC 2595, section 4
    ("The capability name "STLS" indicates this command is present and permitted in the
    current state"; STLS is "Only permitted in AUTHORIZATION state")."""
    result = mpop(small, "--serverinfo")  # in plaintext, where the server offers STLS
    assert result.returncode == EX_OK, output(result, small)
    small.stop()
    before, after = capa_replies(small.transcript[0].lines())
    assert "STLS" in before
    assert "STLS" not in after


# How GnuTLS words each fault, after "The certificate is NOT trusted."
GNUTLS_REASONS = {
    "expired": "The certificate chain uses expired certificate.",
    "not-yet-valid": "The certificate chain uses not yet valid certificate.",
    "wrong-host": "The name in the certificate does not match the expected.",
    "untrusted-ca": "The certificate issuer is unknown.",
    "self-signed": "The certificate issuer is unknown.",
}


@pytest.mark.parametrize("fault", CERTIFICATE_FAULTS)
@pytest.mark.parametrize("tls", ["stls", "implicit"])
def test_refuses_a_faulty_certificate(
    mpop: Mpop, fault: str, tls: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    result = mpop(server, tls=tls)
    assert result.returncode == EX_UNAVAILABLE, output(result, server)
    reason = f"The certificate is NOT trusted. {GNUTLS_REASONS[fault]} \n"
    assert f"mpop: TLS certificate verification failed: {reason}" in printed(result)
    assert mpop.delivered() == []
    (session,) = sent(server)
    # mpop checks the certificate once the handshake is done, and hangs up: no password
    # went out, nothing at all was said under TLS.
    assert session[:-1] == (["CAPA", "STLS"] if tls == "stls" else [])
    assert tls_note(session[-1])
