"""Perl's Net::POP3 (libnet 3) as a POP3 client over real sockets, against the 50-message corpus.

A Perl script, written into the test's directory, runs one session as its arguments say and
prints what Net::POP3 returned as JSON, each message hex-encoded so every byte survives.
Net::POP3 hands back a message as lines, un-stuffed; their line ends depend on the transport:

- in plaintext, Net::Cmd's getline makes each CRLF "\\n", so RETR and TOP give ``stripcr`` of
  the wire form;
- under TLS the socket is a Net::POP3::_SSL, whose first base class is IO::Socket::SSL: its
  getline comes first and keeps the CRLF, so they give the wire form itself.

Either way that is byte for byte what the server sent, less the stuffing.

TLS is IO::Socket::SSL (implicit, ``SSL => 1``, or ``starttls()``), checking the certificate
against the server's CA and the name "localhost"; SASL is Authen::SASL's pure-Perl PLAIN,
LOGIN and CRAM-MD5 (CRAM-MD5 needs Digest::HMAC_MD5). Nothing is skipped when missing: install
them.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clients import (
    CERTIFICATE_FAULTS,
    PASSWORD,
    USER,
    client_commands,
    environment,
    missing,
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

MODULES = ("Net::POP3", "IO::Socket::SSL", "Authen::SASL", "Digest::HMAC_MD5", "JSON::PP")

SCRIPT = r"""
use strict;
use warnings;
use Net::POP3;
use Authen::SASL;
use IO::Socket::SSL;
use JSON::PP;

my %arg = @ARGV;
my %out;

sub finish {
    binmode STDOUT;
    print JSON::PP->new->canonical->encode(\%out);
    exit 0;
}

sub failed {
    my ($pop, $at) = @_;
    $out{error} = { at => $at, code => $pop->code, message => scalar $pop->message };
}

sub hex_of { unpack('H*', join('', @{ $_[0] })) }

my %ssl = (SSL_ca_file => $arg{ca});
my $pop = Net::POP3->new(
    $arg{host},
    Port => $arg{port},
    Timeout => 10,
    ($arg{tls} eq 'implicit' ? (SSL => 1, %ssl) : ()),
);
if (!$pop) {
    $out{error} = { at => 'connect', message => $IO::Socket::SSL::SSL_ERROR || "$@" };
    finish();
}
$out{banner} = $pop->banner;
if ($arg{tls} eq 'stls' && !$pop->starttls(%ssl)) {
    $out{error} = { at => 'starttls', message => "$IO::Socket::SSL::SSL_ERROR" };
    finish();
}
$out{capa} = $pop->capa;

# What Net::POP3 returns: the message count from login() and apop(), true from auth().
my $login = $arg{login};
my $ok;
if ($login eq 'user') {
    $ok = $pop->login($arg{user}, $arg{pass});
} elsif ($login eq 'apop') {
    $ok = $pop->apop($arg{user}, $arg{pass});
} elsif ($login eq 'auth') {
    # Net::POP3 lets Authen::SASL choose among the mechanisms CAPA lists.
    $ok = $pop->auth($arg{user}, $arg{pass});
} else {
    my $sasl = Authen::SASL->new(
        mechanism => $login,
        callback => { user => $arg{user}, pass => $arg{pass}, authname => $arg{user} },
    );
    $ok = $pop->auth($sasl);
}
if (!$ok) {
    failed($pop, 'login');
} else {
    $out{login} = "$ok";
    $out{popstat} = [$pop->popstat];
    $out{list} = $pop->list;
    $out{uidl} = $pop->uidl;
    $out{last_before} = $pop->last if $arg{last};
    for my $n (sort { $a <=> $b } keys %{ $out{list} }) {
        $out{list_one}{$n} = $pop->list($n);
        $out{uidl_one}{$n} = $pop->uidl($n);
        my $lines = $pop->get($n) or failed($pop, "RETR $n");
        $out{retr}{$n} = hex_of($lines);
        if (defined $arg{top}) {
            my $top = $pop->top($n, $arg{top}) or failed($pop, "TOP $n");
            $out{top}{$n} = hex_of($top);
        }
        if ($arg{delete}) {
            $pop->delete($n) or failed($pop, "DELE $n");
        }
    }
    $out{last_after} = $pop->last if $arg{last};
    if ($arg{reset}) {
        # reset() returns false after a good RSET unless get() kept a list; ok() tells.
        $pop->reset;
        $pop->ok or failed($pop, 'RSET');
    }
}
$out{quit} = $pop->quit ? JSON::PP::true : JSON::PP::false;
finish();
"""


@dataclass
class Session:
    """What the script printed: Net::POP3's results, messages as bytes."""

    banner: str | None
    capa: dict[str, Any]
    login: str | None
    error: dict[str, str] | None
    popstat: tuple[int, int] | None
    listing: dict[int, int]
    uidl: dict[int, str]
    list_one: dict[int, int]
    uidl_one: dict[int, str]
    retr: dict[int, bytes]
    top: dict[int, bytes]
    last_before: int | None
    last_after: int | None
    quit: bool

    @classmethod
    def parse(cls, out: dict[str, Any]) -> Session:
        def numbered(key: str, value: Callable[[Any], Any]) -> dict[int, Any]:
            """A JSON object keyed by message number, as a dict in message order."""
            items = (out.get(key) or {}).items()
            return {int(n): value(v) for n, v in sorted(items, key=lambda item: int(item[0]))}

        def count(key: str) -> int | None:
            return None if out.get(key) is None else int(out[key])

        popstat = out.get("popstat")
        return cls(
            banner=out.get("banner"),
            capa=out.get("capa") or {},
            login=out.get("login"),
            error=out.get("error"),
            popstat=None if popstat is None else (int(popstat[0]), int(popstat[1])),
            listing=numbered("list", int),
            uidl=numbered("uidl", str),
            list_one=numbered("list_one", int),
            uidl_one=numbered("uidl_one", str),
            retr=numbered("retr", bytes.fromhex),
            top=numbered("top", bytes.fromhex),
            last_before=count("last_before"),
            last_after=count("last_after"),
            quit=bool(out.get("quit")),
        )


def perl_with_modules(home: Path) -> str:
    """perl, once it has loaded every module the script uses; one missing skips the test."""
    perl = program("perl", "Perl's Net::POP3")
    check = run([perl, *(f"-M{m}" for m in MODULES), "-e", "1"], environment(home))
    if check.returncode != 0:
        missing("Perl's Net::POP3", "a Perl module is missing", printed(check))
    return perl


class NetPOP3:
    """The script above run by ``perl``, one session a call."""

    def __init__(self, perl: str, home: Path) -> None:
        self.perl = perl
        self.env = environment(home)
        self.script = home / "pop3.pl"
        self.script.write_text(SCRIPT)

    def __call__(
        self,
        server: POP3Server,
        *,
        tls: str = "none",
        login: str = "user",
        password: str = PASSWORD,
        top: int | None = None,
        delete: bool = False,
        reset: bool = False,
        last: bool = False,
    ) -> Session:
        """``tls``: "none", "stls" or "implicit"; ``login``: "user" (login()), "apop", "auth"
        (auth() choosing), or a SASL mechanism for auth() to use."""
        port = server.tls_port if tls == "implicit" else server.port
        args = {
            "host": "localhost",  # the name IO::Socket::SSL checks the certificate for
            "port": str(port),
            "tls": tls,
            "ca": str(server.ca_pem) if tls != "none" else "",
            "login": login,
            "user": USER,
            "pass": password,
            **({"top": str(top)} if top is not None else {}),
            **({"delete": "1"} if delete else {}),
            **({"reset": "1"} if reset else {}),
            **({"last": "1"} if last else {}),
        }
        command = [self.perl, str(self.script), *(x for kv in args.items() for x in kv)]
        result = run(command, self.env)
        assert (result.returncode, result.stderr) == (0, b""), self.output(result, server)
        return Session.parse(json.loads(result.stdout))

    @staticmethod
    def output(result: subprocess.CompletedProcess[bytes], server: POP3Server) -> str:
        return f"{printed(result)}\n{server.transcript}"


@pytest.fixture(scope="module")
def perl(tmp_path_factory: pytest.TempPathFactory) -> str:
    return perl_with_modules(tmp_path_factory.mktemp("perl"))


@pytest.fixture
def netpop3(perl: str, tmp_path: Path) -> NetPOP3:
    return NetPOP3(perl, tmp_path)


SMALL = [
    b"From: a@example.com\r\nSubject: one\r\n\r\nFirst body.\r\n",
    b"From: b@example.com\nSubject: bare LF\n\n.starts with a dot\n..two dots\n.\nend\n",
]


@pytest.fixture
def small(pop3_server_factory: ServerFactory) -> POP3Server:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True)
    server.mailbox(USER).extend(SMALL)
    return server


def tls_note(line: str) -> bool:
    return line.startswith("TLS established: TLSv1.3 ")


def as_got(wire: bytes, tls: str) -> bytes:
    """What Net::POP3 returns for ``wire``: LF line ends in plaintext, CRLF under TLS."""
    return wire if tls != "none" else stripcr(wire)


# How each way of logging in looks to the server, after the script's CAPA: auth() asks CAPA
# again for the SASL line, sends PLAIN's initial response with AUTH, and LOGIN's and
# CRAM-MD5's after the challenges.
LOGINS = {
    "user": ["USER alice", "PASS ****"],
    "apop": ["APOP alice ****"],
    "auth": ["CAPA", "AUTH CRAM-MD5", "****"],  # Authen::SASL's best of CAPA's SASL line
    "PLAIN": ["CAPA", "AUTH PLAIN ****"],
    "LOGIN": ["CAPA", "AUTH LOGIN", "****", "****"],
    "CRAM-MD5": ["CAPA", "AUTH CRAM-MD5", "****"],
}
TRANSPORTS = ["none", "stls", "implicit"]


@pytest.mark.parametrize("tls", TRANSPORTS)
def test_reads_the_corpus_byte_for_byte(
    netpop3: NetPOP3, server: POP3Server, messages: list[bytes], tls: str
) -> None:
    wires = [to_crlf(m) for m in messages]
    uids = [m.uid for m in server.mailbox(USER).messages]
    got = netpop3(server, tls=tls, top=1)
    assert got.error is None, got.error
    assert got.banner is not None
    assert re.fullmatch(r"fakepop ready <\d+\.\d+@localhost>\r?\n", got.banner)
    assert got.login == str(len(messages))  # login() returns the count from PASS's +OK
    assert got.popstat == (len(messages), sum(map(len, wires)))
    sizes = {n: len(wire) for n, wire in enumerate(wires, 1)}
    assert got.listing == got.list_one == sizes
    assert got.uidl == got.uidl_one == dict(enumerate(uids, 1))
    for n, wire in enumerate(wires, 1):
        assert got.retr[n] == as_got(wire, tls), f"RETR {n} differs"
        assert got.top[n] == as_got(top(wire, 1), tls), f"TOP {n} 1 differs"
    assert got.quit
    # CAPA under TLS offers no STLS (RFC 2595, section 4).
    assert ("STLS" in got.capa) == (tls == "none")
    assert got.capa["SASL"].split() == [
        "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2", "OAUTHBEARER"
    ]  # fmt: skip
    assert [m.uid for m in server.mailbox(USER).messages] == uids
    (session,) = sent(server)
    start = {"none": [], "stls": ["STLS", "TLS"], "implicit": ["TLS"]}[tls]
    assert [("TLS" if tls_note(line) else line) for line in session[: len(start)]] == start
    per_message = [
        line
        for n in range(1, len(messages) + 1)
        for line in (f"LIST {n}", f"UIDL {n}", f"RETR {n}", f"TOP {n} 1")
    ]
    assert session[len(start) :] == [
        "CAPA", *LOGINS["user"], "STAT", "LIST", "UIDL", *per_message, "QUIT"
    ]  # fmt: skip


@pytest.mark.parametrize("login", LOGINS)
@pytest.mark.parametrize("tls", TRANSPORTS)
def test_login(netpop3: NetPOP3, small: POP3Server, login: str, tls: str) -> None:
    got = netpop3(small, tls=tls, login=login)
    assert got.error is None, got.error
    # login() and apop() return the count; auth() only says it worked.
    assert got.login == (str(len(SMALL)) if login in ("user", "apop") else "1")
    assert list(got.retr.values()) == [as_got(to_crlf(m), tls) for m in SMALL]
    (session,) = sent(small)
    at = session.index("CAPA") + 1  # the script's CAPA, after TLS
    assert session[at : at + len(LOGINS[login])] == LOGINS[login]
    assert small.transcript[0].user == USER


@pytest.mark.parametrize("login", LOGINS)
def test_wrong_password_fails(netpop3: NetPOP3, small: POP3Server, login: str) -> None:
    got = netpop3(small, login=login, password="wrong", delete=True)
    reason = (
        "Invalid user name or password" if login in ("user", "apop") else "Authentication failed"
    )
    assert got.error == {"at": "login", "code": "500", "message": f"[AUTH] {reason}\n"}
    assert got.retr == {}
    assert got.quit  # QUIT in the AUTHORIZATION state: +OK, and nothing to commit
    assert len(small.mailbox(USER).messages) == len(SMALL)
    (session,) = sent(small)
    assert session == ["CAPA", *LOGINS[login], "QUIT"]


def test_delete_empties_the_maildrop_at_quit(
    netpop3: NetPOP3, server: POP3Server, messages: list[bytes]
) -> None:
    got = netpop3(server, tls="implicit", delete=True)
    assert got.error is None, got.error
    assert list(got.retr.values()) == [to_crlf(m) for m in messages]
    assert got.quit
    assert server.mailbox(USER).messages == []
    (commands,) = client_commands(server)
    assert commands.count("DELE") == len(messages)
    assert commands[-1] == "QUIT"


def test_reset_undoes_the_deletions(netpop3: NetPOP3, small: POP3Server) -> None:
    uids = [m.uid for m in small.mailbox(USER).messages]
    got = netpop3(small, delete=True, reset=True)
    assert got.error is None, got.error
    assert got.quit
    assert [m.uid for m in small.mailbox(USER).messages] == uids
    (commands,) = client_commands(small)
    assert commands[-3:] == ["DELE", "RSET", "QUIT"]


def test_an_empty_maildrop(netpop3: NetPOP3, pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False)
    got = netpop3(server)
    # "0E0": Perl's zero that is true, so the login reads as a success.
    assert got.login == "0E0"
    assert got.popstat == (0, 0)
    assert (got.listing, got.uidl, got.retr) == ({}, {}, {})
    assert got.quit


def test_last(netpop3: NetPOP3, pop3_server_factory: ServerFactory) -> None:
    """RFC 1081's LAST, when the server offers it: the highest message number accessed."""
    server = pop3_server_factory(users={USER: PASSWORD}, last=True, tls=False)
    server.mailbox(USER).extend(SMALL)
    got = netpop3(server, last=True)
    assert (got.last_before, got.last_after) == (0, len(SMALL))


@pytest.mark.parametrize("fault", CERTIFICATE_FAULTS)
@pytest.mark.parametrize("tls", ["stls", "implicit"])
def test_refuses_a_faulty_certificate(
    netpop3: NetPOP3, fault: str, tls: str, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=True, certificate_fault=fault)
    server.mailbox(USER).extend(SMALL)
    got = netpop3(server, tls=tls)
    assert len(server.mailbox(USER).messages) == len(SMALL)
    (session,) = sent(server)
    # IO::Socket::SSL checks the name too during the handshake, and words it its own way.
    reason = (
        "hostname verification failed"
        if fault == "wrong-host"
        else "SSL connect attempt failed error:0A000086:SSL routines::certificate verify failed"
    )
    at = "connect" if tls == "implicit" else "starttls"
    assert got.error == {"at": at, "message": reason}
    assert got.login is None
    # The client's alert ended the handshake: no password went out.
    assert session[:-1] == (["STLS"] if tls == "stls" else [])
    assert session[-1].startswith("TLS handshake failed: ")
