"""The POP3 session in memory: RFC 1939, 2449, 3206, 6856 and RFC 1081's LAST."""

from __future__ import annotations

import hashlib
import os
import re

import pytest

from fakepop import __version__
from fakepop.mail import MailStore
from fakepop.protocol import CLOSE, COMMANDS, Reply, Session, Settings, State, apop_digest
from fakepop.protocol.transcript import SessionTranscript

from .pair import PASSWORD, USER, Pair, listing, read_multiline, wire

M1 = b"Subject: one\r\n\r\nHello\r\n"  # 23 octets
# Stored with bare LF and no final line end; 33 octets once on the wire.
M2 = b"Subject: dots\n\n.\n..\n.x\nend"
M2_WIRE = b"Subject: dots\r\n\r\n.\r\n..\r\n.x\r\nend\r\n"
M2_STUFFED = b"Subject: dots\r\n\r\n..\r\n...\r\n..x\r\nend\r\n"

# poplib's pattern for the APOP timestamp in a greeting.
POPLIB_TIMESTAMP = re.compile(rb"\+OK.[^<]*(<.*>)")


def logged_in(settings: Settings | None = None) -> Pair:
    pair = Pair(M1, M2, settings=settings)
    assert pair.login() == b"+OK alice's maildrop has 2 messages (56 octets)\r\n"
    return pair


# --- the greeting -----------------------------------------------------------------------


def test_greeting_carries_one_apop_timestamp() -> None:
    pair = Pair()
    match = POPLIB_TIMESTAMP.match(pair.greeting)
    assert match is not None
    assert pair.greeting.count(b"<") == pair.greeting.count(b">") == 1
    assert pair.greeting.endswith(b"\r\n")
    stamp = re.fullmatch(rb"<(\d+)\.(\d+)@localhost>", match.group(1))
    assert stamp is not None
    assert int(stamp.group(1)) == os.getpid()
    assert pair.session.timestamp == match.group(1).decode()


def test_greeting_timestamps_differ_between_sessions() -> None:
    assert Pair().session.timestamp != Pair().session.timestamp


def test_greeting_names_the_configured_host() -> None:
    assert Pair(settings=Settings(hostname="pop.example.org")).greeting.endswith(
        b"@pop.example.org>\r\n"
    )


def test_greeting_without_apop_has_no_timestamp() -> None:
    pair = Pair(settings=Settings(apop=False))
    assert pair.greeting == b"+OK fakepop ready\r\n"
    assert pair.cmd("APOP alice " + "0" * 32) == b"-ERR Unknown command: APOP\r\n"


# --- USER and PASS ------------------------------------------------------------------------


def test_user_pass_logs_in() -> None:
    pair = Pair(M1, M2)
    assert pair.cmd("USER alice") == b"+OK Send PASS\r\n"
    assert pair.cmd("PASS secret") == b"+OK alice's maildrop has 2 messages (56 octets)\r\n"
    assert pair.session.state is State.TRANSACTION
    assert pair.mailbox.locked


@pytest.mark.parametrize(
    ("messages", "reply"),
    [
        ((), b"+OK alice's maildrop has 0 messages (0 octets)\r\n"),
        ((M1,), b"+OK alice's maildrop has 1 message (23 octets)\r\n"),
    ],
)
def test_login_reply_counts_messages(messages: tuple[bytes, ...], reply: bytes) -> None:
    assert Pair(*messages).login() == reply


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("bob", "secret")])
def test_failed_login_says_auth(user: str, password: str) -> None:
    pair = Pair(M1)
    # The same text for an unknown user and a wrong password: nothing to probe.
    assert pair.login(user, password) == b"-ERR [AUTH] Invalid user name or password\r\n"
    assert pair.session.state is State.AUTHORIZATION
    assert not pair.mailbox.locked
    # A failed PASS ends the USER: the client starts over (RFC 1939, section 7).
    assert pair.cmd("PASS secret") == b"-ERR Send USER first\r\n"
    assert pair.login() == b"+OK alice's maildrop has 1 message (23 octets)\r\n"


def test_pass_without_user() -> None:
    pair = Pair()
    assert pair.cmd("PASS secret") == b"-ERR Send USER first\r\n"
    assert pair.session.state is State.AUTHORIZATION


def test_pass_keeps_spaces_in_the_password() -> None:
    store = MailStore({USER: " pass word "})
    pair = Pair(store=store)
    assert pair.login(password="pass word") == b"-ERR [AUTH] Invalid user name or password\r\n"
    assert pair.login(password=" pass word ").startswith(b"+OK alice's maildrop")


def test_a_later_user_replaces_the_earlier() -> None:
    pair = Pair(store=MailStore({"alice": "secret", "bob": "pw"}))
    assert pair.cmd("USER alice", "USER bob", "PASS pw") == (
        b"+OK Send PASS\r\n+OK Send PASS\r\n+OK bob's maildrop has 0 messages (0 octets)\r\n"
    )


def test_user_login_can_be_switched_off() -> None:
    pair = Pair(settings=Settings(user_login=False))
    assert pair.cmd("USER alice", "PASS secret") == (
        b"-ERR Unknown command: USER\r\n-ERR Unknown command: PASS\r\n"
    )


# --- APOP ---------------------------------------------------------------------------------


def test_apop_digest_matches_rfc_1939_example() -> None:
    digest = apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
    assert digest == "c4c9334bac560ecc979e58001b3e22fb"


def test_apop_with_the_right_digest() -> None:
    pair = Pair(M1)
    timestamp = pair.session.timestamp
    assert timestamp is not None
    digest = hashlib.md5((timestamp + PASSWORD).encode()).hexdigest()
    assert pair.cmd(f"APOP alice {digest}") == (
        b"+OK alice's maildrop has 1 message (23 octets)\r\n"
    )
    assert pair.session.state is State.TRANSACTION


def test_apop_digest_is_case_insensitive() -> None:
    pair = Pair()
    assert pair.session.timestamp is not None
    digest = apop_digest(pair.session.timestamp, PASSWORD).upper()
    assert pair.cmd(f"APOP alice {digest}").startswith(b"+OK alice's maildrop")


def test_apop_digest_is_bound_to_this_sessions_timestamp() -> None:
    other = Pair()
    assert other.session.timestamp is not None
    pair = Pair(store=other.store)
    stale = apop_digest(other.session.timestamp, PASSWORD)
    assert pair.cmd(f"APOP alice {stale}") == b"-ERR [AUTH] Invalid user name or password\r\n"


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("bob", PASSWORD)])
def test_apop_with_a_wrong_digest(user: str, password: str) -> None:
    pair = Pair()
    assert pair.session.timestamp is not None
    digest = apop_digest(pair.session.timestamp, password)
    assert pair.cmd(f"APOP {user} {digest}") == b"-ERR [AUTH] Invalid user name or password\r\n"
    assert pair.session.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    "args",
    [
        pytest.param("alice", id="no-digest"),
        pytest.param("alice c4c9334b", id="short"),
        pytest.param("alice " + "0" * 33, id="long"),
        pytest.param("alice " + "g" * 32, id="not-hex"),
        pytest.param("0" * 32, id="no-name"),
    ],
)
def test_apop_with_a_malformed_digest(args: str) -> None:
    pair = Pair()
    assert pair.cmd(f"APOP {args}") == b"-ERR Usage: APOP name digest (32 hex digits)\r\n"


def test_apop_without_arguments() -> None:
    assert Pair().cmd("APOP") == b"-ERR Usage: APOP name digest\r\n"


# --- the maildrop lock ----------------------------------------------------------------------


def test_a_second_session_gets_in_use() -> None:
    first = logged_in()
    second = Pair(store=first.store)
    assert second.login() == b"-ERR [IN-USE] Mailbox is locked by another session\r\n"
    assert second.session.state is State.AUTHORIZATION
    assert second.closed  # as Dovecot: in_use_closes
    assert first.cmd("QUIT").startswith(b"+OK")
    third = Pair(store=first.store)
    assert third.login() == b"+OK alice's maildrop has 2 messages (56 octets)\r\n"


def test_apop_also_gets_in_use() -> None:
    first = logged_in()
    second = Pair(store=first.store)
    assert second.session.timestamp is not None
    digest = apop_digest(second.session.timestamp, PASSWORD)
    assert second.cmd(f"APOP alice {digest}") == (
        b"-ERR [IN-USE] Mailbox is locked by another session\r\n"
    )


def test_a_session_works_on_the_snapshot_taken_at_login() -> None:
    pair = logged_in()
    pair.mailbox.add(b"Subject: late\r\n\r\n\r\n")
    assert pair.cmd("STAT", "LIST 3") == (
        b"+OK 2 56\r\n-ERR No such message: 3 (the maildrop has 2)\r\n"
    )
    pair.cmd("QUIT")
    assert Pair(store=pair.store).login() == b"+OK alice's maildrop has 3 messages (75 octets)\r\n"


# --- the transaction commands ---------------------------------------------------------------


def test_stat_is_exactly_count_and_octets() -> None:
    assert logged_in().cmd("STAT") == b"+OK 2 56\r\n"


def test_stat_of_an_empty_maildrop() -> None:
    pair = Pair()
    pair.login()
    assert pair.cmd("STAT") == b"+OK 0 0\r\n"
    assert pair.cmd("LIST") == b"+OK 0 messages (0 octets)\r\n.\r\n"
    assert pair.cmd("UIDL") == b"+OK unique-id listing follows\r\n.\r\n"


def test_list() -> None:
    pair = logged_in()
    assert pair.cmd("LIST") == b"+OK 2 messages (56 octets)\r\n1 23\r\n2 33\r\n.\r\n"
    assert pair.cmd("LIST 2") == b"+OK 2 33\r\n"


def test_retr_sends_the_crlf_form_byte_stuffed() -> None:
    pair = logged_in()
    assert pair.cmd("RETR 1") == b"+OK 23 octets\r\n" + M1 + b".\r\n"
    assert pair.cmd("RETR 2") == b"+OK 33 octets\r\n" + M2_STUFFED + b".\r\n"
    status, body, rest = read_multiline(pair.cmd("RETR 2"))
    assert (status, body, rest) == (b"+OK 33 octets\r\n", M2_WIRE, b"")


def test_retr_of_an_empty_message() -> None:
    pair = Pair(b"")
    pair.login()
    assert pair.cmd("RETR 1") == b"+OK 0 octets\r\n.\r\n"


def test_top() -> None:
    pair = logged_in()
    top = b"+OK top of message follows\r\n"
    assert pair.cmd("TOP 2 0") == top + b"Subject: dots\r\n\r\n.\r\n"
    assert pair.cmd("TOP 2 2") == top + b"Subject: dots\r\n\r\n..\r\n...\r\n.\r\n"
    assert pair.cmd("TOP 2 99") == top + M2_STUFFED + b".\r\n"


def test_dele_hides_the_message() -> None:
    pair = logged_in()
    assert pair.cmd("DELE 1") == b"+OK Message 1 deleted\r\n"
    assert pair.cmd("STAT") == b"+OK 1 33\r\n"
    assert pair.cmd("LIST") == b"+OK 1 message (33 octets)\r\n2 33\r\n.\r\n"
    uid = pair.uids[1].encode()
    assert pair.cmd("UIDL") == b"+OK unique-id listing follows\r\n2 %s\r\n.\r\n" % uid
    deleted = b"-ERR Message 1 is deleted\r\n"
    for command in ("RETR 1", "LIST 1", "TOP 1 0", "UIDL 1", "DELE 1"):
        assert pair.cmd(command) == deleted, command
    assert not pair.closed


def test_rset_undeletes() -> None:
    pair = logged_in()
    pair.cmd("DELE 1", "DELE 2")
    assert pair.cmd("STAT") == b"+OK 0 0\r\n"
    assert pair.cmd("RSET") == b"+OK maildrop has 2 messages (56 octets)\r\n"
    assert pair.cmd("STAT", "RETR 1") == b"+OK 2 56\r\n+OK 23 octets\r\n" + M1 + b".\r\n"


def test_noop() -> None:
    assert logged_in().cmd("NOOP") == b"+OK\r\n"


def test_uidl() -> None:
    pair = logged_in()
    a, b = (u.encode() for u in pair.uids)
    assert pair.cmd("UIDL") == b"+OK unique-id listing follows\r\n1 %s\r\n2 %s\r\n.\r\n" % (a, b)
    assert pair.cmd("UIDL 2") == b"+OK 2 %s\r\n" % b


def test_uidl_shows_explicit_uids() -> None:
    pair = Pair()
    pair.mailbox.add(M1, uid="whqtswO00WBw418f9t5JxYwZ")
    pair.login()
    assert pair.cmd("UIDL 1") == b"+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n"


# --- ending a session -------------------------------------------------------------------------


def test_quit_before_login_closes_and_commits_nothing() -> None:
    pair = Pair(M1)
    assert pair.cmd("USER alice", "QUIT") == b"+OK Send PASS\r\n+OK fakepop signing off\r\n"
    assert pair.closed
    assert pair.session.state is State.AUTHORIZATION
    assert len(pair.mailbox) == 1


def test_quit_after_login_commits_the_deletions() -> None:
    pair = logged_in()
    pair.cmd("DELE 1")
    assert pair.cmd("QUIT") == b"+OK fakepop signing off (1 deleted, 1 left)\r\n"
    assert pair.closed
    assert pair.session.state is State.UPDATE
    assert [m.read() for m in pair.mailbox] == [M2_WIRE]
    assert not pair.mailbox.locked


def test_quit_keeps_mail_that_arrived_during_the_session() -> None:
    pair = logged_in()
    late = pair.mailbox.add(b"late\r\n")
    pair.cmd("DELE 1", "DELE 2", "QUIT")
    assert [m.uid for m in pair.mailbox] == [late]


def test_connection_lost_commits_nothing_and_unlocks() -> None:
    pair = logged_in()
    pair.cmd("DELE 1")
    pair.session.connection_lost()
    assert pair.session.closed
    assert len(pair.mailbox) == 2
    assert not pair.mailbox.locked
    assert pair.session.receive_data(b"STAT\r\n") == []


def test_timed_out_commits_nothing_and_unlocks() -> None:
    pair = logged_in()
    pair.cmd("DELE 1")
    events = pair.session.timed_out()
    assert events[-1] is CLOSE
    assert len(pair.mailbox) == 2
    assert not pair.mailbox.locked
    assert pair.session.closed
    assert pair.session.timed_out() == []
    assert pair.session.receive_data(b"QUIT\r\n") == []
    assert len(pair.mailbox) == 2


def test_autologout_says_why_and_closes() -> None:
    # RFC 1939 allows a silent close; like Dovecot, the client is told why.
    pair = logged_in()
    events = pair.session.timed_out()
    assert events[-1] is CLOSE
    assert [bytes(e) for e in events[:-1] if isinstance(e, Reply)] == [
        b"-ERR Autologout: idle for too long\r\n"
    ]


def test_nothing_is_answered_after_close() -> None:
    pair = logged_in()
    assert pair.cmd("QUIT", "STAT", "NOOP") == b"+OK fakepop signing off (0 deleted, 2 left)\r\n"
    assert pair.closed
    assert pair.session.receive_data(b"STAT\r\n") == []
    assert pair.session.timed_out() == []


# --- mistakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("STAT", b"-ERR STAT is not allowed before login\r\n"),
        ("LIST", b"-ERR LIST is not allowed before login\r\n"),
        ("RETR 1", b"-ERR RETR is not allowed before login\r\n"),
        ("DELE 1", b"-ERR DELE is not allowed before login\r\n"),
        ("NOOP", b"-ERR NOOP is not allowed before login\r\n"),
        ("RSET", b"-ERR RSET is not allowed before login\r\n"),
        ("TOP 1 1", b"-ERR TOP is not allowed before login\r\n"),
        ("UIDL", b"-ERR UIDL is not allowed before login\r\n"),
    ],
)
def test_transaction_commands_before_login(command: str, reply: bytes) -> None:
    assert Pair(M1).cmd(command) == reply


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("USER alice", b"-ERR USER is not allowed after login\r\n"),
        ("PASS secret", b"-ERR PASS is not allowed after login\r\n"),
        ("APOP alice " + "0" * 32, b"-ERR APOP is not allowed after login\r\n"),
        ("UTF8", b"-ERR UTF8 is not allowed after login\r\n"),
    ],
)
def test_authorization_commands_after_login(command: str, reply: bytes) -> None:
    pair = logged_in()
    assert pair.cmd(command) == reply
    assert pair.session.state is State.TRANSACTION


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"XYZZY", b"-ERR Unknown command: XYZZY\r\n"),
        (b"STLS", b"-ERR Unknown command: STLS\r\n"),
        (b"LAST", b"-ERR Unknown command: LAST\r\n"),
        (b"STATUS", b"-ERR Unknown command: STATUS\r\n"),
        (b"", b"-ERR Empty command\r\n"),
        (b" STAT", b"-ERR Command starts with a space\r\n"),
        (b"ST\0AT", b"-ERR Command contains a NUL or a bare CR\r\n"),
        (b"STAT\0", b"-ERR Command contains a NUL or a bare CR\r\n"),
        (b"ST\rAT", b"-ERR Command contains a NUL or a bare CR\r\n"),
        (b"STAT\r", b"-ERR Command contains a NUL or a bare CR\r\n"),
        (b"\xffSTAT", b"-ERR Command is not valid UTF-8\r\n"),
        (b"STAT \xc3", b"-ERR Command is not valid UTF-8\r\n"),
        ("\u00fcber".encode(), b"-ERR Unknown command: \\xfcber\r\n"),
    ],
)
def test_bad_lines(line: bytes, reply: bytes) -> None:
    pair = logged_in()
    assert pair.send(line + b"\r\n") == reply
    assert pair.cmd("STAT") == b"+OK 2 56\r\n"  # the session goes on


@pytest.mark.parametrize(
    "verb",
    [
        pytest.param("\u017ftat", id="long-s"),  # upper() gives "STAT"
        pytest.param("l\u0131st", id="dotless-i"),  # upper() gives "LIST"
        pytest.param("u\u017fer", id="long-s-user"),
    ],
)
def test_non_ascii_verbs_are_unknown(verb: str) -> None:
    # Keywords are printable ASCII (RFC 2449, section 3); case folding is ASCII's.
    pair = logged_in()
    escaped = verb.encode("ascii", "backslashreplace")
    assert pair.cmd(verb) == b"-ERR Unknown command: " + escaped + b"\r\n"


@pytest.mark.parametrize("verb", ["stat", "Stat", "sTaT", "STAT"])
def test_verbs_are_case_insensitive(verb: str) -> None:
    assert logged_in().cmd(verb) == b"+OK 2 56\r\n"


def test_lowercase_login() -> None:
    pair = Pair(M1)
    assert pair.cmd("user alice", "pass secret") == (
        b"+OK Send PASS\r\n+OK alice's maildrop has 1 message (23 octets)\r\n"
    )


def test_lines_may_end_in_a_bare_lf() -> None:
    assert logged_in().send(b"STAT\nNOOP\n") == b"+OK 2 56\r\n+OK\r\n"


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("RETR 0", b"-ERR No such message: 0 (the maildrop has 2)\r\n"),
        ("RETR 3", b"-ERR No such message: 3 (the maildrop has 2)\r\n"),
        (f"RETR {10**30}", b"-ERR No such message: %d (the maildrop has 2)\r\n" % 10**30),
        ("LIST 0", b"-ERR No such message: 0 (the maildrop has 2)\r\n"),
        ("UIDL 9", b"-ERR No such message: 9 (the maildrop has 2)\r\n"),
        ("DELE 3", b"-ERR No such message: 3 (the maildrop has 2)\r\n"),
        ("TOP 3 0", b"-ERR No such message: 3 (the maildrop has 2)\r\n"),
        ("RETR -1", b"-ERR Invalid message number: -1\r\n"),
        ("RETR +1", b"-ERR Invalid message number: +1\r\n"),
        ("RETR one", b"-ERR Invalid message number: one\r\n"),
        ("RETR 1.0", b"-ERR Invalid message number: 1.0\r\n"),
        ("RETR \u0661", b"-ERR Invalid message number: \\u0661\r\n"),  # an Arabic-Indic 1
        ("DELE x", b"-ERR Invalid message number: x\r\n"),
        ("TOP 1 -1", b"-ERR Invalid line count: -1\r\n"),
        ("TOP 1 x", b"-ERR Invalid line count: x\r\n"),
        ("TOP x 1", b"-ERR Invalid message number: x\r\n"),
        ("LIST " + "1" * 41, b"-ERR Argument too long: the limit is 40 characters\r\n"),
    ],
)
def test_message_numbers(command: str, reply: bytes) -> None:
    pair = logged_in()
    assert pair.cmd(command) == reply
    assert pair.cmd("STAT") == b"+OK 2 56\r\n"


def test_leading_zeros_name_the_same_message() -> None:
    assert logged_in().cmd("LIST 002") == b"+OK 2 33\r\n"


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("STAT 1", b"-ERR Usage: STAT\r\n"),
        ("NOOP x", b"-ERR Usage: NOOP\r\n"),
        ("RSET x", b"-ERR Usage: RSET\r\n"),
        ("RETR", b"-ERR Usage: RETR msg\r\n"),
        ("RETR 1 2", b"-ERR Usage: RETR msg\r\n"),
        ("DELE", b"-ERR Usage: DELE msg\r\n"),
        ("LIST 1 2", b"-ERR Usage: LIST [msg]\r\n"),
        ("UIDL 1 2", b"-ERR Usage: UIDL [msg]\r\n"),
        ("TOP 1", b"-ERR Usage: TOP msg n\r\n"),
        ("TOP 1 2 3", b"-ERR Usage: TOP msg n\r\n"),
        ("QUIT now", b"-ERR Usage: QUIT\r\n"),
        ("CAPA x", b"-ERR Usage: CAPA\r\n"),
    ],
)
def test_wrong_argument_counts(command: str, reply: bytes) -> None:
    pair = logged_in()
    assert pair.cmd(command) == reply
    assert not pair.closed


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("USER", b"-ERR Usage: USER name\r\n"),
        (
            "USER ",
            b"-ERR A space at the end of the line: words are separated by one space"
            b" (RFC 1939, section 3)\r\n",
        ),
        ("PASS", b"-ERR Usage: PASS string\r\n"),
        ("UTF8 x", b"-ERR Usage: UTF8\r\n"),
        ("LANG en de", b"-ERR Usage: LANG [tag]\r\n"),
    ],
)
def test_wrong_argument_counts_before_login(command: str, reply: bytes) -> None:
    assert Pair().cmd(command) == reply


def test_bad_commands_close_the_connection_at_the_budget() -> None:
    pair = Pair(settings=Settings(max_bad_commands=3))
    assert pair.cmd("BOGUS", "STAT") == (
        b"-ERR Unknown command: BOGUS\r\n-ERR STAT is not allowed before login\r\n"
    )
    assert not pair.closed
    assert pair.cmd("PASS x", "NOOP") == b"-ERR Too many bad commands, closing the connection\r\n"
    assert pair.closed


HTTP_REFUSED = b"-ERR This is a POP3 server, not HTTP: closing the connection\r\n"


@pytest.mark.parametrize(
    "line",
    [
        "POST / HTTP/1.1",
        "GET / HTTP/1.1",
        "get /index.html HTTP/1.0",
        "CONNECT pop.example.org:110 HTTP/1.1",
        "PUT /x HTTP/1.1",
        "Host: localhost:1110",
        "User-Agent: Mozilla/5.0",
        "content-type: text/plain",
    ],
)
def test_an_http_request_or_header_closes_the_connection_at_once(line: str) -> None:
    pair = Pair(M1)
    # The request's body runs as POP3 if the session goes on: nothing after it is run.
    assert pair.cmd(line, "USER alice", "PASS secret", "DELE 1", "QUIT") == HTTP_REFUSED
    assert pair.closed
    assert not pair.mailbox.locked
    assert len(pair.mailbox) == 1


def test_an_http_header_after_login_closes_without_committing() -> None:
    pair = logged_in()
    assert pair.cmd("DELE 1", "Origin: http://evil.example", "QUIT") == (
        b"+OK Message 1 deleted\r\n" + HTTP_REFUSED
    )
    assert pair.closed
    assert not pair.mailbox.locked
    assert len(pair.mailbox) == 2


def test_the_default_budget_is_twenty() -> None:
    pair = logged_in()
    assert pair.cmd(*["BOGUS"] * 19) == b"-ERR Unknown command: BOGUS\r\n" * 19
    assert not pair.closed
    assert pair.cmd("BOGUS") == b"-ERR Too many bad commands, closing the connection\r\n"
    assert pair.closed


def test_overlong_lines_count_against_the_budget() -> None:
    settings = Settings(
        max_line_length=255, max_bad_commands_before_login=2, long_line_closes=False
    )
    pair = Pair(settings=settings)
    line = b"x" * 256 + b"\r\n"
    assert pair.send(line) == b"-ERR Line too long: the limit is 255 octets\r\n"
    assert pair.send(line) == b"-ERR Too many bad commands, closing the connection\r\n"
    assert pair.closed


def test_closing_on_the_budget_commits_nothing() -> None:
    pair = logged_in(Settings(max_bad_commands=2))
    pair.cmd("DELE 1", "BOGUS", "BOGUS")
    assert pair.closed
    assert len(pair.mailbox) == 2
    assert not pair.mailbox.locked


def test_refusals_do_not_count_against_the_budget() -> None:
    pair = logged_in(Settings(max_bad_commands=2))
    reply = pair.cmd(*["RETR 9"] * 10)
    assert reply == b"-ERR No such message: 9 (the maildrop has 2)\r\n" * 10
    assert not pair.closed


def test_a_pipelined_burst_is_answered_in_order() -> None:
    pair = Pair(M1, M2)
    replies = pair.cmd(
        "CAPA", "USER alice", "PASS secret", "STAT", "LIST 1", "BOGUS", "DELE 1", "STAT", "QUIT"
    )
    status, body, rest = read_multiline(replies)
    assert status == b"+OK Capability list follows\r\n"
    assert b"PIPELINING\r\n" in body
    assert rest == (
        b"+OK Send PASS\r\n"
        b"+OK alice's maildrop has 2 messages (56 octets)\r\n"
        b"+OK 2 56\r\n"
        b"+OK 1 23\r\n"
        b"-ERR Unknown command: BOGUS\r\n"
        b"+OK Message 1 deleted\r\n"
        b"+OK 1 33\r\n"
        b"+OK fakepop signing off (1 deleted, 1 left)\r\n"
    )
    assert pair.closed
    assert len(pair.mailbox) == 1


def test_next_command_runs_one_buffered_command_at_a_time() -> None:
    # A server sends each reply before asking for the next, so a burst never makes it build
    # every reply at once; the session acts on nothing until asked.
    pair = logged_in()
    session = pair.session
    session.feed(b"DELE 1\r\nSTAT\r\nRSET\r\nST")
    assert "DELE 1" not in session.transcript.commands()
    assert wire(session.next_command() or []) == (b"+OK Message 1 deleted\r\n", False)
    assert wire(session.next_command() or []) == (b"+OK 1 33\r\n", False)
    session.feed(b"AT\r\n")
    assert wire(session.next_command() or []) == (
        b"+OK maildrop has 2 messages (56 octets)\r\n",
        False,
    )
    assert wire(session.next_command() or []) == (b"+OK 2 56\r\n", False)
    assert session.next_command() is None


# --- CAPA -------------------------------------------------------------------------------------

NOT_COMMANDS = {
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
    "EXPIRE",
    "LOGIN-DELAY",
    "IMPLEMENTATION",
}
TAG_VERBS = {"SASL": "AUTH"}  # the one RFC 2449 tag that is not its command's verb


def capa(pair: Pair) -> list[str]:
    reply = pair.cmd("CAPA")
    assert reply.startswith(b"+OK Capability list follows\r\n")
    lines = listing(reply)
    assert len(lines) == len(set(lines))
    return lines


def core(lines: list[str]) -> set[str]:
    """The CAPA lines other than SASL's, whose mechanisms have tests of their own."""
    return {line for line in lines if not line.startswith("SASL")}


def test_capa_before_login() -> None:
    assert core(capa(Pair())) == {
        "USER",
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
        f"IMPLEMENTATION fakepop {__version__}",
        "UTF8 USER",
        "LANG",
    }


def test_capa_after_login() -> None:
    assert core(capa(logged_in())) == core(capa(Pair()))


def test_capa_follows_the_settings() -> None:
    pair = Pair(settings=Settings(user_login=False, utf8=False, expire=0))
    assert core(capa(pair)) == {
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE 0",
        f"IMPLEMENTATION fakepop {__version__}",
    }


@pytest.mark.parametrize(
    "settings",
    [Settings(user_login=False), Settings(require_tls=True)],
    ids=["no-user-login", "tls-required-and-absent"],
)
def test_utf8_promises_user_only_where_user_is_offered(settings: Settings) -> None:
    # RFC 6856, section 2: the USER argument says UTF-8 is taken in USER and PASS.
    lines = capa(Pair(settings=settings))
    assert "UTF8" in lines
    assert "USER" not in lines
    assert "UTF8 USER" not in lines


def test_capa_expire() -> None:
    store = MailStore({"alice": "secret", "bob": "pw"})
    assert "EXPIRE 30" in capa(Pair(store=store, settings=Settings(expire=30)))
    store["bob"].expire = 5
    before = Pair(store=store, settings=Settings(expire=30))
    assert "EXPIRE 30 USER" in capa(before)  # it varies by user
    before.login()
    assert "EXPIRE 30" in capa(before)  # alice has the server's
    bob = Pair(store=store, settings=Settings(expire=30))
    bob.login("bob", "pw")
    assert "EXPIRE 5" in capa(bob)


def test_capa_expire_never_varying_by_user() -> None:
    store = MailStore({"alice": "secret"})
    store["alice"].expire = 7
    pair = Pair(store=store)
    assert "EXPIRE NEVER USER" in capa(pair)
    pair.login()
    assert "EXPIRE 7" in capa(pair)


def login_delays(pair: Pair) -> list[str]:
    return [line for line in capa(pair) if line.startswith("LOGIN-DELAY")]


def test_capa_login_delay() -> None:
    assert login_delays(Pair()) == []
    assert login_delays(logged_in()) == []
    settings = Settings(login_delay=900)
    assert login_delays(Pair(settings=settings)) == ["LOGIN-DELAY 900"]
    assert login_delays(logged_in(settings)) == ["LOGIN-DELAY 900"]


def test_capa_login_delay_varying_by_user() -> None:
    store = MailStore({"alice": "secret", "bob": "pw"})
    store["bob"].login_delay = 60
    settings = Settings(login_delay=900)
    alice = Pair(store=store, settings=settings)
    assert login_delays(alice) == ["LOGIN-DELAY 900 USER"]
    alice.login()
    assert login_delays(alice) == ["LOGIN-DELAY 900"]
    bob = Pair(store=store, settings=settings)
    bob.login("bob", "pw")
    assert login_delays(bob) == ["LOGIN-DELAY 60"]


# (settings, STLS offered, already under TLS)
CAPA_CASES = [
    pytest.param(Settings(), False, False, id="default"),
    pytest.param(Settings(user_login=False), False, False, id="no-user"),
    pytest.param(Settings(utf8=False), False, False, id="no-utf8"),
    pytest.param(Settings(apop=False), False, False, id="no-apop"),
    pytest.param(Settings(last=True), False, False, id="last"),
    pytest.param(Settings(login_delay=10, expire=3), False, False, id="delay-expire"),
    pytest.param(Settings(), True, False, id="stls"),
    pytest.param(Settings(require_tls=True), True, False, id="require-tls"),
    pytest.param(Settings(require_tls=True), False, True, id="implicit-tls"),
]


def session_in(state: State, settings: Settings, stls: bool, secure: bool) -> Pair:
    pair = Pair(settings=settings, stls=stls, secure=secure)
    if state is State.TRANSACTION:
        if settings.require_tls and not pair.session.secure:
            assert pair.cmd("STLS") == b"+OK Begin TLS negotiation\r\n"
            pair.session.tls_started()
        timestamp = pair.session.timestamp
        if timestamp is None:
            assert pair.login().startswith(b"+OK")
        else:
            reply = pair.cmd(f"APOP alice {apop_digest(timestamp, PASSWORD)}")
            assert reply.startswith(b"+OK")
    return pair


@pytest.mark.parametrize(("settings", "stls", "secure"), CAPA_CASES)
@pytest.mark.parametrize("state", [State.AUTHORIZATION, State.TRANSACTION])
def test_capa_and_dispatch_agree(
    settings: Settings, stls: bool, secure: bool, state: State
) -> None:
    pair = session_in(state, settings, stls, secure)
    lines = capa(pair)
    for line in lines:
        tag = line.split()[0]
        if tag in NOT_COMMANDS:
            continue
        # A capability naming a command names one the session knows, offers, and shows so.
        verb = TAG_VERBS.get(tag, tag)
        assert verb in COMMANDS, line
        advertise = COMMANDS[verb].capability
        assert advertise is not None, line
        assert advertise(pair.session) == line
        assert COMMANDS[verb].available(pair.session), line
        fresh = session_in(state, settings, stls, secure)
        assert not fresh.cmd(verb).startswith(b"-ERR Unknown command"), line
    if "STLS" in lines:  # RFC 2595, section 4: "present and permitted in the current state"
        assert session_in(state, settings, stls, secure).cmd("STLS").startswith(b"+OK")
    # And every command that has a capability line now is advertised.
    for cmd in COMMANDS.values():
        shown = cmd.capability(pair.session) if cmd.capability else None
        if shown is not None:
            assert shown in lines, cmd.verb


def test_every_capa_line_is_a_tag_an_rfc_defines() -> None:
    known = NOT_COMMANDS | {"USER", "TOP", "UIDL", "UTF8", "LANG", "SASL", "STLS"}
    for line in capa(Pair(settings=Settings(login_delay=1), stls=True)):
        assert line.split()[0] in known, line


# --- STLS (RFC 2595), in memory ------------------------------------------------------------------


def test_stls_is_offered_only_with_a_certificate() -> None:
    assert "STLS" not in capa(Pair())
    assert Pair().cmd("STLS") == b"-ERR Unknown command: STLS\r\n"
    assert "STLS" in capa(Pair(stls=True))
    assert "STLS" not in capa(Pair(stls=True, secure=True))


def test_stls_asks_for_the_handshake_and_drops_what_follows() -> None:
    pair = Pair(M1, stls=True)
    assert pair.cmd("USER alice", "STLS", "PASS secret", "STAT") == (
        b"+OK Send PASS\r\n+OK Begin TLS negotiation\r\n"
    )
    assert pair.start_tls
    assert not pair.closed
    assert pair.send(b"NOOP\r\n") == b""  # plaintext before the handshake is never run
    pair.session.tls_started()
    assert pair.session.secure
    # What the client said before TLS is forgotten (RFC 2595, section 4).
    assert pair.cmd("PASS secret") == b"-ERR Send USER first\r\n"
    assert pair.login() == b"+OK alice's maildrop has 1 message (23 octets)\r\n"


def test_stls_twice_is_refused() -> None:
    pair = Pair(stls=True, secure=True)
    assert pair.cmd("STLS") == b"-ERR TLS is already active\r\n"
    assert not pair.start_tls


def test_stls_after_login_is_refused() -> None:
    pair = Pair(stls=True)
    pair.login()
    assert pair.cmd("STLS") == b"-ERR STLS is not allowed after login\r\n"


def test_require_tls_refuses_plaintext_logins_before_tls() -> None:
    pair = Pair(settings=Settings(require_tls=True), stls=True)
    assert "USER" not in capa(pair)
    needs_tls = (
        b"-ERR [AUTH] Plaintext authentication needs TLS: send STLS first, or use the TLS port\r\n"
    )
    assert pair.cmd("USER alice") == needs_tls
    assert pair.session.timestamp is not None
    digest = apop_digest(pair.session.timestamp, PASSWORD)
    assert pair.cmd(f"APOP alice {digest}") == needs_tls
    pair.cmd("STLS")
    pair.session.tls_started()
    assert "USER" in capa(pair)
    assert pair.login().startswith(b"+OK alice's maildrop")


# --- UTF8 and LANG (RFC 6856) --------------------------------------------------------------------

JOSE = "jos\u00e9"


def test_non_ascii_user_needs_utf8_first() -> None:
    store = MailStore({JOSE: "s\u00e9same"})
    pair = Pair(store=store)
    assert pair.cmd(f"USER {JOSE}") == (
        b"-ERR [UTF8] Non-ASCII user names need the UTF8 command first\r\n"
    )
    assert pair.cmd("UTF8") == b"+OK UTF8 enabled\r\n"
    assert pair.cmd(f"USER {JOSE}", "PASS s\u00e9same") == (
        f"+OK Send PASS\r\n+OK {JOSE}'s maildrop has 0 messages (0 octets)\r\n".encode()
    )


def test_non_ascii_password_needs_utf8_first() -> None:
    pair = Pair(store=MailStore({USER: "s\u00e9same"}))
    assert pair.cmd("USER alice", "PASS s\u00e9same") == (
        b"+OK Send PASS\r\n-ERR [UTF8] Non-ASCII passwords need the UTF8 command first\r\n"
    )
    assert pair.session.state is State.AUTHORIZATION


def test_non_ascii_apop_name_needs_utf8_first() -> None:
    pair = Pair(store=MailStore({JOSE: "pw"}))
    assert pair.session.timestamp is not None
    digest = apop_digest(pair.session.timestamp, "pw")
    assert pair.cmd(f"APOP {JOSE} {digest}") == (
        b"-ERR [UTF8] Non-ASCII user names need the UTF8 command first\r\n"
    )
    pair.cmd("UTF8")
    assert pair.cmd(f"APOP {JOSE} {digest}").startswith(f"+OK {JOSE}'s".encode())


def test_utf8_mode_echoes_text_unescaped() -> None:
    pair = Pair()
    assert pair.cmd("\u00fcber") == b"-ERR Unknown command: \\xfcber\r\n"
    pair.cmd("UTF8")
    assert pair.cmd("\u00fcber") == "-ERR Unknown command: \u00fcber\r\n".encode()


def test_utf8_can_be_switched_off() -> None:
    pair = Pair(settings=Settings(utf8=False))
    assert pair.cmd("UTF8") == b"-ERR Unknown command: UTF8\r\n"
    assert pair.cmd("LANG") == b"-ERR Unknown command: LANG\r\n"


LANGUAGES = (("en", "English"), ("de", "Deutsch"))


def test_lang_lists_the_languages() -> None:
    assert Pair().cmd("LANG") == b"+OK Language listing follows\r\nen English\r\n.\r\n"
    pair = logged_in(Settings(languages=LANGUAGES))
    assert pair.cmd("LANG") == b"+OK Language listing follows\r\nen English\r\nde Deutsch\r\n.\r\n"


def test_lang_changes_the_language() -> None:
    pair = Pair(settings=Settings(languages=LANGUAGES))
    assert pair.session.language == "en"
    assert pair.cmd("LANG DE") == b"+OK Language changed to de\r\n"
    assert pair.session.language == "de"
    assert pair.cmd("LANG *") == b"+OK Language is the default, en\r\n"
    assert pair.session.language == "en"
    pair.login()
    assert pair.cmd("LANG de") == b"+OK Language changed to de\r\n"


def test_lang_refuses_an_unknown_language() -> None:
    pair = Pair()
    assert pair.cmd("LANG fr") == b"-ERR Unsupported language: fr\r\n"
    assert pair.session.language == "en"


# --- LAST (RFC 1081) ------------------------------------------------------------------------------


def test_last_tracks_the_highest_message_accessed() -> None:
    pair = Pair(M1, M2, M1 + b"x\r\n", settings=Settings(last=True))
    assert pair.cmd("LAST") == b"-ERR LAST is not allowed before login\r\n"
    pair.login()
    assert pair.cmd("LAST") == b"+OK 0\r\n"
    pair.cmd("RETR 2")
    assert pair.cmd("LAST") == b"+OK 2\r\n"
    pair.cmd("RETR 1", "LIST 3", "UIDL 3")
    assert pair.cmd("LAST") == b"+OK 2\r\n"  # RETR 1 is lower; LIST and UIDL are no access
    pair.cmd("TOP 3 0")
    assert pair.cmd("LAST") == b"+OK 3\r\n"
    assert pair.cmd("RSET", "LAST") == (b"+OK maildrop has 3 messages (82 octets)\r\n+OK 0\r\n")
    pair.cmd("DELE 2")
    assert pair.cmd("LAST") == b"+OK 2\r\n"


def test_last_is_off_by_default() -> None:
    assert logged_in().cmd("LAST") == b"-ERR Unknown command: LAST\r\n"


# --- LOGIN-DELAY --------------------------------------------------------------------------------


def test_login_delay_is_enforced_with_the_injected_clock() -> None:
    store = MailStore({USER: PASSWORD})
    settings = Settings(login_delay=300)
    now = [1000.0]

    def session() -> Pair:
        return Pair(store=store, settings=settings, clock=lambda: now[0])

    first = session()
    assert first.login().startswith(b"+OK")
    first.cmd("QUIT")
    now[0] = 1100.0
    second = session()
    assert second.login() == b"-ERR [LOGIN-DELAY] Wait 200 seconds before logging in again\r\n"
    assert second.session.state is State.AUTHORIZATION
    assert not second.mailbox.locked
    now[0] = 1300.0
    assert session().login().startswith(b"+OK")


# --- the transcript -------------------------------------------------------------------------------


def test_transcript_masks_the_password() -> None:
    transcript = SessionTranscript(1)
    pair = Pair(M1, transcript=transcript)
    pair.login()
    masked = transcript.lines()
    assert masked[:4] == [
        f"S: +OK fakepop ready {pair.session.timestamp}",
        "C: USER alice",
        "S: +OK Send PASS",
        "C: PASS ****",
    ]
    assert not any(PASSWORD in line for line in masked)
    assert "C: PASS secret" in transcript.lines(mask=False)
    (entry,) = (e for e in transcript.entries if e.text == "PASS secret")
    assert entry.render(mask=True) == "PASS ****"
    assert entry.render(mask=False) == "PASS secret"
    assert PASSWORD not in transcript.text()
    assert "PASS secret" in transcript.text(mask=False)


def test_transcript_masks_the_apop_digest() -> None:
    transcript = SessionTranscript(1)
    pair = Pair(transcript=transcript)
    assert pair.session.timestamp is not None
    digest = apop_digest(pair.session.timestamp, PASSWORD)
    pair.cmd(f"APOP alice {digest}")
    (entry,) = (e for e in transcript.entries if e.direction == "C")
    assert entry.render(mask=True) == "APOP alice ****"
    assert entry.render(mask=False) == f"APOP alice {digest}"


def test_transcript_masks_the_apop_digest_after_a_trailing_space() -> None:
    # APOP strips the line before taking the digest, so the mask must too, whether the
    # trailing space is refused (the strict default) or not (Dovecot's syntax).
    for syntax, reply in (("strict", b"-ERR A space at the end"), ("dovecot", b"+OK alice's")):
        transcript = SessionTranscript(1)
        pair = Pair(transcript=transcript, settings=Settings(argument_syntax=syntax))
        assert pair.session.timestamp is not None
        digest = apop_digest(pair.session.timestamp, PASSWORD)
        assert pair.cmd(f"APOP alice {digest} ").startswith(reply)
        assert not any(digest in line for line in transcript.lines())


def test_transcript_masks_a_mistyped_pass_too() -> None:
    transcript = SessionTranscript(1)
    pair = Pair(transcript=transcript)
    pair.cmd("pass hunter2")  # refused: no USER yet
    assert "C: PASS ****" in transcript.lines()
    assert not any("hunter2" in line for line in transcript.lines())


def test_transcript_summarises_message_bodies() -> None:
    transcript = SessionTranscript(1)
    pair = Pair(M1, transcript=transcript)
    pair.login()
    pair.cmd("RETR 1")
    assert transcript.lines()[-2:] == ["S: +OK 23 octets", "S: <message 1: 23 octets>"]


def test_session_without_a_transcript_still_records() -> None:
    session = Session(MailStore())
    session.start()
    assert session.transcript.lines()[0].startswith("S: +OK fakepop ready")
