"""Faults in memory: what a Session returns when its fault plan fires, event by event.

The reply transforms of fakepop.protocol.fault_actions are checked alone first,
then through a Session with a plan, byte for byte. The server's part (sleeping,
throttling, resetting) is left to tests/test_faults_server.py; here it shows as
the actions the session hands over: Pause, Throttle, Stall, Close(reset=True).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from fakepop.mail import Mailbox, MailStore
from fakepop.mail.store import MaildropError
from fakepop.protocol import CLOSE, Action, Close, Reply, Session, Settings, State, fault_actions
from fakepop.protocol.actions import STALL, START_TLS, Pause, Stall, Throttle
from fakepop.protocol.fault_plan import FaultError, FaultPlan, Rule
from fakepop.protocol.transcript import SessionTranscript

from .pair import PASSWORD, USER, lines, read_multiline

M1 = b"Subject: one\r\n\r\nHello\r\n"  # 23 octets
M1_RETR = b"+OK 23 octets\r\n" + M1 + b".\r\n"
# Lines that start with "." are stuffed on the wire.
M2 = b".first\r\n\r\n.x\r\n..\r\n.\r\nend\r\n"  # 26 octets
M2_STUFFED = b"..first\r\n\r\n..x\r\n...\r\n..\r\nend\r\n"
M3 = b"Subject: three\r\n\r\n3\r\n"
ERROR = b"-ERR [SYS/TEMP] Temporary failure, try again later\r\n"
WELCOME = b"+OK alice's maildrop has 3 messages ("


def wire(events: Iterable[Action]) -> bytes:
    return b"".join(bytes(e) for e in events if isinstance(e, Reply))


def actions(events: Iterable[Action]) -> list[Action]:
    """What the session asks of the server besides sending: pauses, closes, stalls."""
    return [e for e in events if not isinstance(e, Reply)]


class Faulty:
    """A Session over a one-account store, with a fault plan, keeping every event it returns.

    tests/protocol/pair.py's Pair takes no plan and allows only CLOSE and
    START_TLS among the events, so faults get their own driver.
    """

    def __init__(
        self,
        *rules: Mapping[str, Any],
        messages: tuple[bytes, ...] = (M1, M2, M3),
        plan: FaultPlan | None = None,
        store: MailStore | None = None,
        session_id: int = 1,
        stls: bool = False,
        clock: Callable[[], float] = lambda: 1_000_000.0,
    ) -> None:
        self.plan = plan if plan is not None else FaultPlan(rules)
        self.store = store if store is not None else MailStore({USER: PASSWORD})
        if store is None:
            self.mailbox.extend(messages)
        self.uids = [m.uid for m in self.mailbox.messages]
        self.transcript = SessionTranscript(session_id)
        self.session = Session(
            self.store,
            # A greeting without a timestamp (exact bytes); a login refused [IN-USE] may be
            # tried again on the same connection.
            Settings(apop=False, in_use_closes=False),
            transcript=self.transcript,
            clock=clock,
            stls=stls,
            faults=self.plan,
        )
        self.start = self.session.start()

    @property
    def mailbox(self) -> Mailbox:
        return self.store[USER].mailbox

    def events(self, *commands: str) -> list[Action]:
        return self.session.receive_data(lines(*commands))

    def cmd(self, *commands: str) -> bytes:
        """The replies' bytes; the commands must not end in an action."""
        events = self.events(*commands)
        assert actions(events) == [], events
        return wire(events)

    def login(self) -> bytes:
        return self.cmd(f"USER {USER}", f"PASS {PASSWORD}")

    def notes(self) -> list[str]:
        """The transcript's notes on the connection: the faults that fired."""
        return [line for line in self.transcript.lines() if line.startswith("*: ")]


def logged_in(*rules: Mapping[str, Any]) -> Faulty:
    pair = Faulty(*rules)
    assert pair.login() == b"+OK Send PASS\r\n" + WELCOME + b"70 octets)\r\n"
    return pair


# --- the transforms alone -------------------------------------------------------------


def retr_reply(body: bytes = M1) -> Reply:
    # As RETR makes it: a status and a body produced in pieces, ending in the terminator.
    return Reply(b"+OK %d octets\r\n" % len(body), iter([body[:5], body[5:], b".\r\n"]))


def test_cut_counts_status_and_body_together() -> None:
    replies = [Reply(b"+OK\r\n"), retr_reply()]
    assert bytes(fault_actions.cut(replies, 12)) == b"+OK\r\n+OK 23 "
    assert bytes(fault_actions.cut([retr_reply()], 0)) == b""
    assert bytes(fault_actions.cut([retr_reply()], 10_000)) == M1_RETR


@pytest.mark.parametrize("after_bytes", [None, 0, 1, 4, 5, 6, 22, 23, 24, 100])
def test_unterminated(after_bytes: int | None) -> None:
    reply = fault_actions.unterminated(retr_reply(), after_bytes)
    assert reply.status == b"+OK 23 octets\r\n"
    body = b"".join(reply.body)
    assert body == (M1 if after_bytes is None else M1[:after_bytes])


def test_unterminated_single_line_reply_is_the_status_alone() -> None:
    assert bytes(fault_actions.unterminated(Reply(b"+OK 2 46\r\n"), None)) == b"+OK 2 46\r\n"


@pytest.mark.parametrize(
    ("status", "delta", "changed"),
    [
        (b"+OK 23 octets\r\n", 1, b"+OK 24 octets\r\n"),
        (b"+OK 23 octets\r\n", -3, b"+OK 20 octets\r\n"),
        (b"+OK 2 46\r\n", 1, b"+OK 2 47\r\n"),  # STAT: the last number
        (b"+OK 1 23\r\n", 10, b"+OK 1 33\r\n"),  # LIST n
        (b"+OK 3 messages (70 octets)\r\n", 2, b"+OK 3 messages (72 octets)\r\n"),
        (b"+OK Send PASS\r\n", 1, b"+OK Send PASS\r\n"),  # no number: unchanged
    ],
)
def test_wrong_size(status: bytes, delta: int, changed: bytes) -> None:
    reply = fault_actions.wrong_size(Reply(status, (b"x\r\n.\r\n",), "summary"), delta)
    assert reply.status == changed
    assert b"".join(reply.body) == b"x\r\n.\r\n"
    assert reply.summary == "summary"


def test_unstuffed_undoes_the_stuffing_but_keeps_the_terminator() -> None:
    reply = fault_actions.unstuffed(
        Reply(b"+OK 26 octets\r\n", (M2_STUFFED[:7], M2_STUFFED[7:], b".\r\n"))
    )
    assert bytes(reply) == b"+OK 26 octets\r\n" + M2 + b".\r\n"


def test_bare_lf() -> None:
    assert bytes(fault_actions.bare_lf(retr_reply())) == M1_RETR.replace(b"\r\n", b"\n")


@pytest.mark.parametrize("length", [40, 100, 4096])
def test_overlong_pads_the_status_line_to_the_length(length: int) -> None:
    reply = fault_actions.overlong(Reply(b"+OK 23 octets\r\n", (b".\r\n",)), length)
    assert reply.status == b"+OK 23 octets " + b"x" * (length - 16) + b"\r\n"
    assert len(reply.status) == length
    assert b"".join(reply.body) == b".\r\n"


def test_garbage_is_the_seeds_bytes() -> None:
    assert bytes(fault_actions.garbage(random.Random(9), 33)) == random.Random(9).randbytes(33)


# --- error ----------------------------------------------------------------------------


def test_error_at_pass_refuses_the_login_once() -> None:
    pair = Faulty({"on": "PASS", "action": "error"})
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + ERROR
    assert pair.session.state is State.AUTHORIZATION
    assert not pair.mailbox.locked
    assert pair.notes() == [
        "*: fault: on=PASS action=error code=SYS/TEMP text=Temporary failure, try again later"
    ]
    assert pair.cmd("PASS secret") == WELCOME + b"70 octets)\r\n"  # times=1: spent
    assert pair.mailbox.locked


def test_error_at_dele_deletes_nothing() -> None:
    pair = logged_in({"on": "DELE", "action": "error", "code": "SYS/PERM", "text": "Read-only"})
    assert pair.cmd("DELE 1") == b"-ERR [SYS/PERM] Read-only\r\n"
    events = pair.events("QUIT")
    assert wire(events) == b"+OK fakepop signing off (0 deleted, 3 left)\r\n"
    assert actions(events) == [CLOSE]
    assert len(pair.mailbox) == 3


def test_error_at_connect_is_an_error_greeting_then_close() -> None:
    pair = Faulty({"on": "connect", "action": "error"})
    assert wire(pair.start) == ERROR
    assert actions(pair.start) == [Close(reset=False)]
    assert pair.session.closed
    assert pair.events("USER alice") == []


def test_error_at_greeting() -> None:
    pair = Faulty({"on": "greeting", "action": "error", "code": "IN-USE", "text": "Busy"})
    assert pair.start == [Reply(b"-ERR [IN-USE] Busy\r\n"), Close(reset=False)]
    assert pair.plan.fired[0].event == "greeting"


def test_bad_commands_are_not_events() -> None:
    # Refused before they run, they neither fire nor count towards nth.
    pair = Faulty({"on": "RETR", "action": "error", "text": "fault"})
    assert pair.cmd("RETR 1") == b"-ERR RETR is not allowed before login\r\n"
    pair.login()
    assert pair.cmd("RETR") == b"-ERR Usage: RETR msg\r\n"
    assert pair.plan.fired == []
    assert pair.cmd("RETR 1") == b"-ERR [SYS/TEMP] fault\r\n"


# --- drop -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_instead(mode: str) -> None:
    pair = logged_in({"on": "RETR", "action": "drop", "mode": mode})
    events = pair.events("RETR 1")
    assert events == [Close(reset=mode == "reset")]
    assert pair.session.closed
    assert not pair.mailbox.locked  # released at once, nothing committed
    assert pair.mailbox.retrieved == {}


def test_drop_after_sends_the_reply_first() -> None:
    pair = logged_in({"on": "NOOP", "action": "drop", "at": "after"})
    assert pair.events("NOOP") == [Reply(b"+OK\r\n"), Close(reset=False)]


@pytest.mark.parametrize("after_bytes", [0, 1, 14, 15, 16, 30, 40, 41, 42])
def test_drop_during_cuts_the_reply_after_n_bytes(after_bytes: int) -> None:
    pair = logged_in({"on": "RETR", "action": "drop", "at": "during", "after_bytes": after_bytes})
    events = pair.events("RETR 1")
    assert wire(events) == M1_RETR[:after_bytes]
    assert actions(events) == [Close(reset=False)]


def test_drop_after_dele_deletes_nothing() -> None:
    pair = logged_in(
        {"on": "RETR", "action": "drop", "at": "during", "after_bytes": 20, "mode": "reset"}
    )
    assert pair.cmd("DELE 1", "DELE 3") == b"+OK Message 1 deleted\r\n+OK Message 3 deleted\r\n"
    assert actions(pair.events("RETR 2")) == [Close(reset=True)]
    assert [m.uid for m in pair.mailbox.messages] == pair.uids
    assert pair.mailbox.deleted == []
    # The next session sees every message.
    again = Faulty(store=pair.store, plan=pair.plan, session_id=2)
    assert again.cmd("USER alice", "PASS secret").endswith(WELCOME + b"70 octets)\r\n")


def test_drop_at_connect_sends_nothing() -> None:
    pair = Faulty({"on": "connect", "action": "drop"})
    assert pair.start == [Close(reset=False)]


def test_drop_after_greeting() -> None:
    pair = Faulty({"on": "greeting", "action": "drop", "at": "after", "mode": "reset"})
    assert wire(pair.start) == b"+OK fakepop ready\r\n"
    assert actions(pair.start) == [Close(reset=True)]


# --- delay, bandwidth, stall ------------------------------------------------------------


def test_delay_pauses_before_the_reply() -> None:
    pair = logged_in({"on": "STAT", "action": "delay", "seconds": 0.2})
    assert pair.events("STAT") == [Pause(0.2), Reply(b"+OK 3 70\r\n")]


def test_delay_at_connect_delays_the_greeting() -> None:
    pair = Faulty({"on": "connect", "action": "delay", "seconds": 0.25})
    assert pair.start == [Pause(0.25), Reply(b"+OK fakepop ready\r\n")]


def test_bandwidth_throttles_the_reply() -> None:
    pair = logged_in({"on": "RETR", "action": "bandwidth", "bytes_per_second": 100})
    events = pair.events("RETR 1")
    assert actions(events) == [Throttle(100)]
    assert isinstance(events[0], Throttle)
    assert wire(events) == M1_RETR


def test_stall_answers_nothing_more() -> None:
    pair = logged_in({"on": "RETR", "action": "stall"})
    assert pair.events("RETR 1") == [STALL]
    assert isinstance(STALL, Stall)
    assert pair.session.closed
    assert pair.events("NOOP") == []


def test_stall_at_greeting() -> None:
    assert Faulty({"on": "greeting", "action": "stall"}).start == [STALL]


# --- truncate ---------------------------------------------------------------------------


def test_truncate_leaves_out_the_terminator_then_closes() -> None:
    pair = logged_in({"on": "RETR", "action": "truncate"})
    events = pair.events("RETR 1")
    assert wire(events) == b"+OK 23 octets\r\n" + M1
    assert actions(events) == [Close(reset=False)]
    assert pair.session.closed
    assert not pair.mailbox.locked


def test_truncate_after_bytes_of_body_then_stall() -> None:
    pair = logged_in({"on": "RETR", "action": "truncate", "after_bytes": 10, "then": "stall"})
    events = pair.events("RETR 1")
    assert wire(events) == b"+OK 23 octets\r\n" + M1[:10]
    assert actions(events) == [STALL]


def test_truncate_a_listing() -> None:
    pair = logged_in({"on": "UIDL", "action": "truncate"})
    body = "".join(f"{n} {uid}\r\n" for n, uid in enumerate(pair.uids, 1)).encode()
    assert wire(pair.events("UIDL")) == b"+OK unique-id listing follows\r\n" + body


# --- replies gone wrong -------------------------------------------------------------------


def test_wrong_size_at_retr() -> None:
    pair = logged_in({"on": "RETR", "action": "wrong-size", "delta": 5})
    assert pair.cmd("RETR 1") == b"+OK 28 octets\r\n" + M1 + b".\r\n"
    assert pair.notes()[-1] == "*: sent instead: b'+OK 28 octets\\r\\n'"
    assert pair.cmd("RETR 1") == M1_RETR  # spent


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("STAT", b"+OK 3 69\r\n"),
        ("LIST 2", b"+OK 2 25\r\n"),
    ],
)
def test_wrong_size_of_single_line_replies(command: str, reply: bytes) -> None:
    pair = logged_in({"on": command.split()[0], "action": "wrong-size", "delta": -1})
    assert pair.cmd(command) == reply


def test_unstuffed_sends_dot_lines_as_they_are() -> None:
    pair = logged_in({"on": "RETR", "action": "unstuffed"})
    assert pair.cmd("RETR 2") == b"+OK 26 octets\r\n" + M2 + b".\r\n"
    # The stuffed form, for comparison, once the rule is spent.
    status, body, rest = read_multiline(pair.cmd("RETR 2"))
    assert (status, body, rest) == (b"+OK 26 octets\r\n", M2, b"")


def test_garbage_replaces_the_reply_and_the_session_goes_on() -> None:
    pair = logged_in({"on": "NOOP", "action": "garbage", "length": 20, "seed": 4})
    assert pair.cmd("NOOP") == random.Random(4).randbytes(20)
    assert pair.cmd("NOOP") == b"+OK\r\n"


def test_bare_lf_at_retr() -> None:
    pair = logged_in({"on": "RETR", "action": "bare-lf"})
    assert pair.cmd("RETR 1") == M1_RETR.replace(b"\r\n", b"\n")


def test_overlong() -> None:
    pair = logged_in({"on": "STAT", "action": "overlong", "length": 3000})
    got = pair.cmd("STAT")
    assert got == b"+OK 3 70 " + b"x" * (3000 - 11) + b"\r\n"
    assert len(got) == 3000


def test_a_transform_at_quit_keeps_the_close() -> None:
    pair = logged_in({"on": "QUIT", "action": "bare-lf"})
    events = pair.events("QUIT")
    assert wire(events) == b"+OK fakepop signing off (0 deleted, 3 left)\n"
    assert actions(events) == [CLOSE]


# --- commit-fail ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remove", "removed"),
    [("none", 0), ("some", 1), (0, 0), (1, 1), (3, 3)],
)
def test_commit_fail(remove: str | int, removed: int) -> None:
    pair = logged_in({"action": "commit-fail", "remove": remove})
    pair.cmd("DELE 1", "DELE 2", "DELE 3")
    events = pair.events("QUIT")
    assert wire(events) == (
        b"-ERR [SYS/TEMP] Some deleted messages not removed (%d of 3 removed)\r\n" % removed
    )
    assert actions(events) == [CLOSE]
    assert [m.uid for m in pair.mailbox.messages] == pair.uids[removed:]
    assert pair.mailbox.deleted == sorted(pair.uids[:removed])
    assert not pair.mailbox.locked


def test_commit_fail_with_its_own_code() -> None:
    pair = logged_in({"action": "commit-fail", "code": "SYS/PERM"})
    pair.cmd("DELE 2")
    assert wire(pair.events("QUIT")) == (
        b"-ERR [SYS/PERM] Some deleted messages not removed (0 of 1 removed)\r\n"
    )
    assert len(pair.mailbox) == 3


# --- lock -------------------------------------------------------------------------------

IN_USE = b"-ERR [IN-USE] Mailbox is locked by another session\r\n"


def test_lock_refuses_logins_for_its_attempts() -> None:
    # As documented: on "login" by default, the maildrop of whoever logs in.
    pair = Faulty({"action": "lock", "attempts": 2})
    assert pair.cmd("USER alice", "PASS secret", "USER alice", "PASS secret") == (
        b"+OK Send PASS\r\n" + IN_USE + b"+OK Send PASS\r\n" + IN_USE
    )
    assert pair.cmd("USER alice", "PASS secret").endswith(WELCOME + b"70 octets)\r\n")


def test_lock_for_a_named_user() -> None:
    pair = Faulty({"action": "lock", "attempts": 2, "user": USER})
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + IN_USE
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + IN_USE
    assert pair.cmd("USER alice", "PASS secret").endswith(WELCOME + b"70 octets)\r\n")
    assert pair.notes() == ["*: fault: on=login action=lock attempts=2 user=alice"]


def test_lock_at_pass() -> None:
    pair = Faulty({"on": "PASS", "action": "lock", "attempts": 1})
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + IN_USE
    assert pair.cmd("PASS secret") == b"-ERR Send USER first\r\n"
    assert pair.cmd("USER alice", "PASS secret").endswith(WELCOME + b"70 octets)\r\n")


def test_lock_for_seconds_counts_them_on_the_sessions_clock() -> None:
    now = 1_000_000.0
    pair = Faulty({"action": "lock", "seconds": 60}, clock=lambda: now)
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + IN_USE
    now += 59.5
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + IN_USE
    now += 0.5
    assert pair.cmd("USER alice", "PASS secret").endswith(WELCOME + b"70 octets)\r\n")


def test_hold_lock_refuses_logins_until_released() -> None:
    pair = Faulty()
    with pair.mailbox.hold_lock():
        assert pair.mailbox.locked
        assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + IN_USE
    assert not pair.mailbox.locked
    assert pair.cmd("USER alice", "PASS secret").endswith(WELCOME + b"70 octets)\r\n")


def test_hold_lock_while_a_session_holds_the_maildrop() -> None:
    pair = logged_in()
    with pytest.raises(MaildropError, match="locked by another session"), pair.mailbox.hold_lock():
        pass
    assert pair.mailbox.locked  # still the session's
    pair.cmd("NOOP")


# --- the login event and the filters ------------------------------------------------------


def test_login_event_fires_only_for_good_credentials() -> None:
    pair = Faulty({"on": "login", "action": "error", "text": "no"})
    assert pair.cmd("USER alice", "PASS wrong") == (
        b"+OK Send PASS\r\n-ERR [AUTH] Invalid user name or password\r\n"
    )
    assert pair.plan.fired == []
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n-ERR [SYS/TEMP] no\r\n"
    assert [(f.event, f.user, f.session) for f in pair.plan.fired] == [("login", USER, 1)]
    assert not pair.mailbox.locked


def test_login_event_with_sasl() -> None:
    pair = Faulty({"on": "login", "action": "error", "text": "no"})
    assert pair.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==") == b"-ERR [SYS/TEMP] no\r\n"
    assert pair.plan.fired[0].user == USER


def test_user_filter_on_a_command() -> None:
    store = MailStore({USER: PASSWORD, "bob": "pw"})
    store["bob"].mailbox.add(M1)
    store[USER].mailbox.add(M1)
    plan = FaultPlan([{"on": "RETR", "action": "error", "user": "bob", "times": "always"}])
    alice = Faulty(plan=plan, store=store)
    alice.cmd("USER alice", "PASS secret")
    assert alice.cmd("RETR 1") == M1_RETR
    bob = Faulty(plan=plan, store=store, session_id=2)
    bob.cmd("USER bob", "PASS pw")
    assert bob.cmd("RETR 1") == ERROR
    assert [(f.user, f.session) for f in plan.fired] == [("bob", 2)]


def test_session_filter() -> None:
    plan = FaultPlan([{"on": "greeting", "action": "error", "session": 2}])
    store = MailStore({USER: PASSWORD})
    assert wire(Faulty(plan=plan, store=store, session_id=1).start) == b"+OK fakepop ready\r\n"
    assert wire(Faulty(plan=plan, store=store, session_id=2).start) == ERROR
    assert wire(Faulty(plan=plan, store=store, session_id=3).start) == b"+OK fakepop ready\r\n"


def test_nth_and_times_always() -> None:
    pair = logged_in({"on": "NOOP", "action": "error", "nth": 2, "times": "always"})
    assert pair.cmd("NOOP", "NOOP", "NOOP") == b"+OK\r\n" + ERROR + ERROR


def test_star_counts_every_event() -> None:
    # connect, greeting, USER, PASS, login: the fifth event is the login.
    pair = Faulty({"on": "*", "action": "error", "nth": 5})
    assert pair.cmd("USER alice", "PASS secret") == b"+OK Send PASS\r\n" + ERROR
    assert [f.event for f in pair.plan.fired] == ["login"]


# --- TLS --------------------------------------------------------------------------------


def test_no_handshake_answers_stls_then_stalls() -> None:
    pair = Faulty({"action": "no-handshake"}, stls=True)
    assert pair.events("STLS") == [Reply(b"+OK Begin TLS negotiation\r\n"), STALL]
    assert pair.session.closed


def test_stls_without_a_fault_asks_for_the_handshake() -> None:
    # tls-abort happens in the server's handshake: the session only asks for one.
    pair = Faulty({"action": "tls-abort"}, stls=True)
    assert pair.events("STLS") == [Reply(b"+OK Begin TLS negotiation\r\n"), START_TLS]
    assert pair.plan.fired == []


def test_tls_abort_at_a_command_does_not_crash_the_session() -> None:
    plan = FaultPlan()
    try:
        plan.add(on="RETR", action="tls-abort", mode="reset")
    except FaultError:
        return  # refusing the rule up front is fine too
    pair = logged_in()
    pair.session.faults = plan
    events = pair.events("RETR 1")  # must not raise
    assert actions(events) in ([Close(reset=True)], [])


def test_rule_objects_are_shared_state() -> None:
    rule = Rule.from_dict({"on": "NOOP", "action": "error", "times": 2})
    pair = logged_in()
    pair.session.faults = FaultPlan([rule])
    pair.cmd("NOOP", "NOOP", "NOOP")
    assert (rule.matched, rule.fired) == (2, 2)


# --- the TLS handshake: decided here, carried out by the server ---------------------------


@pytest.mark.parametrize(
    ("rule", "instead"),
    [
        ({"action": "delay", "seconds": 0.2}, [Pause(0.2)]),
        ({"action": "stall"}, [STALL]),
        ({"action": "tls-abort"}, [CLOSE]),
        ({"action": "tls-abort", "mode": "reset"}, [Close(reset=True)]),
        ({"action": "tls-abort", "mode": "garbage", "seed": 4}, [b"garbage", CLOSE]),
        ({"action": "drop", "mode": "reset"}, [Close(reset=True)]),
        ({"action": "error"}, [CLOSE]),
    ],
)
def test_what_takes_the_place_of_a_tls_handshake(
    rule: dict[str, Any], instead: list[Action | bytes]
) -> None:
    pair = Faulty({"on": "tls-handshake", **rule}, stls=True)
    assert pair.cmd("CAPA").startswith(b"+OK")
    assert pair.events("STLS") == [Reply(b"+OK Begin TLS negotiation\r\n"), START_TLS]
    got = pair.session.tls_handshake()
    expected = [
        Reply(random.Random(4).randbytes(64)) if item == b"garbage" else item for item in instead
    ]
    assert [bytes(a) if isinstance(a, Reply) else a for a in got] == [
        bytes(a) if isinstance(a, Reply) else a for a in expected
    ]
    assert pair.session.closed == (rule["action"] != "delay")
    assert pair.notes()[-1].startswith("*: fault: on=tls-handshake")


def test_no_rule_no_change_to_the_handshake() -> None:
    pair = Faulty({"on": "STLS", "action": "delay"}, stls=True)
    assert pair.session.tls_handshake() == []
    assert not pair.session.closed


@pytest.mark.parametrize(
    ("rule", "kind"),
    [
        ({"on": "PASS", "action": "error"}, fault_actions.Refuse),
        ({"action": "lock", "attempts": 1}, fault_actions.RefuseLogins),
        ({"action": "commit-fail"}, fault_actions.FailCommit),
        ({"action": "no-handshake"}, fault_actions.SkipHandshake),
        ({"on": "RETR", "action": "drop"}, fault_actions.Drop),
        ({"on": "RETR", "action": "truncate"}, fault_actions.Truncate),
        ({"on": "RETR", "action": "delay"}, Pause),
        ({"on": "RETR", "action": "bandwidth"}, Throttle),
        ({"on": "RETR", "action": "stall"}, Stall),
        ({"on": "RETR", "action": "wrong-size"}, fault_actions.Rewrite),
        ({"on": "RETR", "action": "unstuffed"}, fault_actions.Rewrite),
        ({"on": "RETR", "action": "garbage"}, fault_actions.Rewrite),
        ({"on": "RETR", "action": "bare-lf"}, fault_actions.Rewrite),
        ({"on": "RETR", "action": "overlong"}, fault_actions.Rewrite),
    ],
)
def test_every_action_of_a_command_rule_is_typed(rule: dict[str, Any], kind: type) -> None:
    assert isinstance(fault_actions.decide(Rule.from_dict(rule)), kind)


def test_typed_actions_carry_the_rules_parameters() -> None:
    decide = fault_actions.decide
    drop = {"on": "RETR", "action": "drop", "at": "during", "after_bytes": 9, "mode": "reset"}
    assert decide(Rule.from_dict(drop)) == fault_actions.Drop("during", 9, reset=True)
    lock = {"action": "lock", "user": "bob", "seconds": 2}
    assert decide(Rule.from_dict(lock)) == fault_actions.RefuseLogins("bob", None, 2.0)
    commit = {"action": "commit-fail", "remove": 3, "code": "SYS/PERM"}
    assert decide(Rule.from_dict(commit)) == fault_actions.FailCommit(3, "SYS/PERM")
    wrong = decide(Rule.from_dict({"on": "STAT", "action": "wrong-size", "delta": -2}))
    assert isinstance(wrong, fault_actions.Rewrite)
    assert wrong.change(Reply(b"+OK 3 120\r\n")).status == b"+OK 3 118\r\n"
