"""The fault plan alone: rules, their data form (Python, TOML, JSON), matching and counting.

No sockets and no sessions here: a plan is asked about events the way a
session and a server ask it, and what it answers and records is checked.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from waiting import raised_within

from fakepop.protocol import COMMANDS
from fakepop.protocol.commands import VERBS
from fakepop.protocol.fault_plan import (
    ACTIONS,
    DEFAULT_EVENT,
    SPECIAL_EVENTS,
    FaultError,
    FaultPlan,
    Fired,
    Rule,
)

ERROR_TEXT = "Temporary failure, try again later"
# The keys every rule may carry, whatever its action.
WHEN_KEYS = ["action", "nth", "on", "probability", "seed", "session", "times", "user"]


def fires(plan: FaultPlan, event: str, count: int, **where: Any) -> list[bool]:
    """Whether a rule fires at each of ``count`` occurrences of ``event``."""
    where.setdefault("session", 1)
    return [plan.check(event, **where) is not None for _ in range(count)]


# --- building rules -------------------------------------------------------------------


def test_add_fills_in_the_defaults_of_the_action() -> None:
    plan = FaultPlan()
    rule = plan.add(on="PASS", action="error")
    assert rule == Rule(
        on="PASS",
        action="error",
        params={"code": "SYS/TEMP", "text": ERROR_TEXT},
    )
    assert (rule.user, rule.session, rule.nth, rule.times, rule.probability, rule.seed) == (
        None,
        None,
        1,
        1,
        1.0,
        0,
    )
    assert plan.rules == [rule]


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_takes_its_documented_parameters(action: str) -> None:
    data: dict[str, Any] = {"on": DEFAULT_EVENT.get(action, "RETR"), "action": action}
    if action == "lock":
        data["attempts"] = 1  # a lock needs attempts or seconds
    rule = FaultPlan().add(data)
    assert set(rule.params) == set(ACTIONS[action])
    assert rule.params == {**ACTIONS[action], **{k: data[k] for k in data if k in ACTIONS[action]}}


def test_parameters_given_override_the_defaults() -> None:
    rule = FaultPlan().add(on="RETR", action="drop", at="during", after_bytes=100, mode="reset")
    assert rule.params == {"at": "during", "after_bytes": 100, "mode": "reset"}


@pytest.mark.parametrize(("action", "event"), DEFAULT_EVENT.items())
def test_some_actions_have_a_default_event(action: str, event: str) -> None:
    data: dict[str, Any] = {"action": action}
    if action == "lock":
        data["seconds"] = 1
    assert FaultPlan().add(data).on == event


def test_default_events_are_the_documented_ones() -> None:
    assert DEFAULT_EVENT == {
        "lock": "login",
        "tls-abort": "tls-handshake",
        "no-handshake": "STLS",
        "commit-fail": "QUIT",
    }


@pytest.mark.parametrize("action", sorted(set(ACTIONS) - set(DEFAULT_EVENT)))
def test_an_action_without_a_default_event_needs_on(action: str) -> None:
    with pytest.raises(FaultError, match=r"^fault 1: say when with on = <command verb"):
        FaultPlan().add(action=action)


@pytest.mark.parametrize(
    ("given", "event"),
    [
        ("retr", "RETR"),
        ("Pass", "PASS"),
        ("STLS", "STLS"),
        ("Connect", "connect"),
        ("GREETING", "greeting"),
        ("TLS-Handshake", "tls-handshake"),
        ("LOGIN", "login"),
        ("*", "*"),
    ],
)
def test_event_names_are_case_insensitive(given: str, event: str) -> None:
    assert FaultPlan().add(on=given, action="delay").on == event


@pytest.mark.parametrize("verb", COMMANDS)
def test_every_command_verb_is_an_event(verb: str) -> None:
    assert FaultPlan().add(on=verb.lower(), action="stall").on == verb


def test_special_events_are_the_documented_ones() -> None:
    assert set(SPECIAL_EVENTS) == {"connect", "greeting", "tls-handshake", "login", "*"}


def test_times_always_means_no_limit() -> None:
    assert FaultPlan().add(on="NOOP", action="error", times="always").times is None


def test_a_plan_takes_rules_mappings_and_rule_objects() -> None:
    rule = Rule.from_dict({"on": "STAT", "action": "garbage"})
    plan = FaultPlan([{"on": "RETR", "action": "stall"}, rule])
    assert [(r.on, r.action) for r in plan] == [("RETR", "stall"), ("STAT", "garbage")]
    assert plan.rules[1] is rule
    assert len(plan) == 2


def test_an_empty_plan_is_still_true_and_fires_nothing() -> None:
    plan = FaultPlan()
    assert plan
    assert len(plan) == 0
    assert plan.check("connect", session=1) is None
    assert plan.fired == []


def test_rules_is_a_copy() -> None:
    plan = FaultPlan([{"on": "RETR", "action": "stall"}])
    plan.rules.clear()
    assert len(plan) == 1


def test_clear_forgets_rules_and_what_fired() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error"}])
    assert plan.check("NOOP", session=1) is not None
    plan.clear()
    assert (plan.rules, plan.fired, len(plan)) == ([], [], 0)
    assert plan.check("NOOP", session=1) is None


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (
            {"on": "PASS", "action": "error"},
            f"on=PASS action=error code=SYS/TEMP text={ERROR_TEXT}",
        ),
        ({"action": "lock", "attempts": 2}, "on=login action=lock attempts=2"),
        (
            {"on": "retr", "action": "drop", "at": "during", "after_bytes": 9, "user": "bob"},
            "on=RETR action=drop at=during after_bytes=9 mode=close user=bob",
        ),
        ({"on": "*", "action": "stall", "session": 3}, "on=* action=stall session=3"),
        ({"on": "RETR", "action": "truncate"}, "on=RETR action=truncate then=close"),
    ],
)
def test_describe(data: dict[str, Any], line: str) -> None:
    assert FaultPlan().add(data).describe() == line


def test_a_rule_makes_up_the_same_bytes_for_the_same_seed() -> None:
    def garbage(seed: int) -> bytes:
        return (
            Rule.from_dict({"on": "RETR", "action": "garbage", "seed": seed}).random().randbytes(32)
        )

    assert garbage(5) == garbage(5)
    assert garbage(5) != garbage(6)


# --- matching -------------------------------------------------------------------------


def test_a_rule_fires_once_by_default_at_its_event_only() -> None:
    plan = FaultPlan([{"on": "RETR", "action": "error"}])
    assert plan.check("DELE", session=1) is None
    assert plan.check("connect", session=1) is None
    assert fires(plan, "RETR", 3) == [True, False, False]


def test_times() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error", "times": 2}])
    assert fires(plan, "NOOP", 4) == [True, True, False, False]


def test_times_always() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error", "times": "always"}])
    assert fires(plan, "NOOP", 50) == [True] * 50


def test_nth_skips_the_first_matches() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error", "nth": 3}])
    assert fires(plan, "NOOP", 5) == [False, False, True, False, False]


def test_nth_with_times() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error", "nth": 2, "times": 2}])
    assert fires(plan, "NOOP", 5) == [False, True, True, False, False]


def test_nth_counts_only_matching_events() -> None:
    plan = FaultPlan([{"on": "RETR", "action": "error", "nth": 2, "user": "alice"}])
    assert plan.check("RETR", session=1, user="bob") is None
    assert plan.check("DELE", session=1, user="alice") is None
    assert plan.check("RETR", session=1, user="alice") is None
    assert plan.check("RETR", session=1, user="alice") is not None


def test_user_filter() -> None:
    plan = FaultPlan([{"on": "login", "action": "error", "user": "bob", "times": "always"}])
    assert plan.check("login", session=1, user="alice") is None
    assert plan.check("login", session=1, user=None) is None
    assert plan.check("login", session=1, user="bob") is not None


def test_session_filter() -> None:
    plan = FaultPlan([{"on": "RETR", "action": "error", "session": 2, "times": "always"}])
    assert fires(plan, "RETR", 2, session=1) == [False, False]
    assert fires(plan, "RETR", 2, session=2) == [True, True]
    assert fires(plan, "RETR", 1, session=3) == [False]


def test_star_matches_every_event() -> None:
    plan = FaultPlan([{"on": "*", "action": "delay", "times": "always"}])
    events = ["connect", "greeting", "tls-handshake", "USER", "PASS", "login", "RETR", "QUIT"]
    assert [plan.check(e, session=1) is not None for e in events] == [True] * len(events)
    assert [f.event for f in plan.fired] == events


def test_the_first_rule_that_matches_wins_and_the_next_takes_over_when_it_is_spent() -> None:
    plan = FaultPlan(
        [
            {"on": "NOOP", "action": "error", "code": "FIRST"},
            {"on": "NOOP", "action": "error", "code": "SECOND", "times": 2},
        ]
    )
    codes = [
        rule.params["code"] if (rule := plan.check("NOOP", session=1)) else None for _ in range(4)
    ]
    assert codes == ["FIRST", "SECOND", "SECOND", None]


def test_counts_on_the_rule() -> None:
    rule = FaultPlan().add(on="NOOP", action="error", nth=2, times=2)
    plan = FaultPlan([rule])
    fires(plan, "NOOP", 5)
    assert (rule.matched, rule.fired) == (3, 2)  # a spent rule stops counting matches


def test_fired_records_rule_event_session_user_and_time() -> None:
    plan = FaultPlan([{"on": "*", "action": "delay", "times": 2}])
    before = time.time()
    plan.check("PASS", session=4, user="alice")
    plan.check("login", session=4, user="alice")
    plan.check("STAT", session=4, user="alice")  # spent
    after = time.time()
    (rule,) = plan.rules
    assert [(f.rule, f.event, f.session, f.user) for f in plan.fired] == [
        (rule, "PASS", 4, "alice"),
        (rule, "login", 4, "alice"),
    ]
    assert all(isinstance(f, Fired) and before <= f.time <= after for f in plan.fired)


# --- probability ----------------------------------------------------------------------


def pattern(seed: int, probability: float = 0.5, count: int = 64) -> list[bool]:
    rule = {"on": "NOOP", "action": "error", "times": "always", "probability": probability}
    return fires(FaultPlan([{**rule, "seed": seed}]), "NOOP", count)


def test_probability_with_a_seed_is_reproducible() -> None:
    assert pattern(7) == pattern(7)
    assert pattern(7) != pattern(8)
    assert 10 < sum(pattern(7)) < 54  # about half of 64


def test_probability_zero_never_fires_and_one_always_does() -> None:
    assert pattern(1, probability=0.0) == [False] * 64
    assert pattern(1, probability=1.0) == [True] * 64


def test_probability_counts_towards_times() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error", "times": 3, "probability": 0.5, "seed": 3}])
    assert sum(fires(plan, "NOOP", 64)) == 3


def test_concurrent_checks_fire_exactly_times() -> None:
    plan = FaultPlan([{"on": "NOOP", "action": "error", "times": 100}], lock=threading.Lock())
    hits: list[bool] = []

    def worker(session: int) -> None:
        hits.extend(fires(plan, "NOOP", 50, session=session))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sum(hits) == 100
    assert len(plan.fired) == 100


# --- refusals -------------------------------------------------------------------------


def refusal(**data: Any) -> str:
    with pytest.raises(FaultError) as info:
        FaultPlan().add(**data)
    return str(info.value)


def test_fault_error_is_a_value_error() -> None:
    assert issubclass(FaultError, ValueError)


def test_unknown_action() -> None:
    assert refusal(on="RETR", action="explode") == (
        "fault 1: action must be one of " + ", ".join(ACTIONS) + "; got 'explode'"
    )
    assert refusal(on="RETR").endswith("; got None")


def test_unknown_key_names_the_allowed_ones() -> None:
    assert refusal(on="PASS", action="error", seconds=1, colour="red") == (
        "fault 1: unknown key colour, seconds for action 'error'; allowed: "
        + ", ".join(sorted([*WHEN_KEYS, "code", "text"]))
    )
    assert refusal(on="RETR", action="drop", after=3) == (
        "fault 1: unknown key after for action 'drop'; allowed: "
        + ", ".join(sorted([*WHEN_KEYS, "at", "after_bytes", "mode"]))
    )


@pytest.mark.parametrize("on", ["FETCH", "hello", "tls", " RETR"])
def test_unknown_event(on: str) -> None:
    assert refusal(on=on, action="delay") == (
        f"fault 1: unknown event {on!r}; use a command verb ({', '.join(COMMANDS)})"
        " or one of connect, greeting, tls-handshake, login, *"
    )


@pytest.mark.parametrize("on", ["", 5, None])
def test_event_must_be_a_name(on: Any) -> None:
    message = refusal(on=on, action="error", code="X")
    if on is None:
        assert message.startswith("fault 1: say when with on = ")
    else:
        assert message == f"fault 1: on must name an event, got {on!r}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"probability": 2}, "probability must be between 0 and 1, got 2"),
        ({"probability": -0.1}, "probability must be between 0 and 1, got -0.1"),
        ({"probability": "often"}, "probability must be a number, got 'often'"),
        ({"times": 0}, "times must be at least 1, got 0"),
        ({"times": "never"}, "times must be a whole number, got 'never'"),
        ({"times": True}, "times must be a whole number, got True"),
        ({"nth": 0}, "nth must be at least 1, got 0"),
        ({"nth": 1.5}, "nth must be a whole number, got 1.5"),
        ({"seed": "x"}, "seed must be a whole number, got 'x'"),
        ({"user": 5}, "user must be text, got 5"),
        ({"session": "2"}, "session must be a whole number, got '2'"),
        ({"session": True}, "session must be a whole number, got True"),
        ({"code": "sys/temp"}, "code is a response code such as SYS/TEMP or IN-USE"),
        ({"code": "SYS TEMP"}, "code is a response code such as SYS/TEMP or IN-USE"),
        ({"code": "[SYS/TEMP]"}, "code is a response code such as SYS/TEMP or IN-USE"),
    ],
)
def test_bad_values_of_an_error_rule(data: dict[str, Any], message: str) -> None:
    assert refusal(on="PASS", action="error", **data) == f"fault 1: {message}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "delay", "seconds": -1}, "seconds must be between 0 and 86,400, got -1"),
        ({"action": "delay", "seconds": "1"}, "seconds must be a number, got '1'"),
        ({"action": "lock", "seconds": -0.5}, "seconds must be between 0 and 86,400"),
        ({"action": "lock", "attempts": -1}, "attempts must be at least 1, got -1"),
        ({"action": "lock"}, "a lock needs attempts = N or seconds = T"),
        ({"action": "drop", "at": "before"}, "at must be one of instead, after, during"),
        ({"action": "drop", "mode": "explode"}, "mode must be one of close, reset"),
        ({"action": "drop", "after_bytes": -1}, "after_bytes must be at least 0"),
        ({"action": "truncate", "then": "retry"}, "then must be one of close, stall"),
        ({"action": "truncate", "after_bytes": -3}, "after_bytes must be at least 0"),
        ({"action": "tls-abort", "mode": "stall"}, "mode must be one of close, reset, garbage"),
        ({"action": "garbage", "length": -1}, "length must be between 0 and 16,777,216"),
        ({"action": "overlong", "length": "long"}, "length must be a whole number, got 'long'"),
        ({"action": "wrong-size", "delta": 0.5}, "delta must be a whole number, got 0.5"),
        ({"action": "bandwidth", "bytes_per_second": -5}, "bytes_per_second must be at least 1"),
        (
            {"action": "commit-fail", "remove": "all"},
            "remove is 'none', 'some' or a number of messages",
        ),
        ({"action": "commit-fail", "code": "temp"}, "code is a response code such as"),
    ],
)
def test_bad_values(data: dict[str, Any], message: str) -> None:
    data.setdefault("on", DEFAULT_EVENT.get(data["action"], "RETR"))
    assert refusal(**data).startswith(f"fault 1: {message}")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "delay", "seconds": math.inf}, "seconds must be a finite number, got inf"),
        ({"action": "delay", "seconds": math.nan}, "seconds must be a finite number, got nan"),
        (
            {"action": "delay", "seconds": 1e10},
            "seconds must be between 0 and 86,400, got 10000000000.0",
        ),
        ({"action": "lock", "seconds": math.inf}, "seconds must be a finite number, got inf"),
        (
            {"action": "bandwidth", "bytes_per_second": 1e-300},
            "bytes_per_second must be at least 1",
        ),
        (
            {"action": "bandwidth", "bytes_per_second": math.inf},
            "bytes_per_second must be a finite number",
        ),
        ({"action": "drop", "after_bytes": 1.5}, "after_bytes must be a whole number, got 1.5"),
        ({"action": "drop", "after_bytes": math.inf}, "after_bytes must be a finite number"),
        ({"action": "truncate", "after_bytes": "10"}, "after_bytes must be a whole number"),
        ({"action": "garbage", "length": 2.5}, "length must be a whole number, got 2.5"),
        ({"action": "garbage", "length": 268_435_456}, "length must be between 0 and 16,777,216"),
        ({"action": "overlong", "length": math.nan}, "length must be a finite number"),
        ({"action": "error", "text": 42}, "text must be text, got 42"),
        ({"action": "error", "text": "two\r\n+OK lines"}, "text is one line of at most 400"),
        ({"action": "error", "text": "x" * 401}, "text is one line of at most 400"),
        ({"action": "error", "code": 5}, "code is a response code"),
        ({"action": "error", "probability": math.nan}, "probability must be a finite number"),
        ({"action": "error", "seed": 10**5000}, "seed must be a 64-bit integer, got a larger"),
        ({"action": "wrong-size", "delta": -(10**5000)}, "delta must be a 64-bit integer"),
        ({"action": "error", "times": 2**64}, "times must be at least 1, got 18446744073709551616"),
        ({"action": "error", "session": 0}, "session must be at least 1, got 0"),
        ({"action": "commit-fail", "remove": -1}, "remove is 'none', 'some' or a number"),
        ({"action": ["drop"], "on": "RETR"}, "action must be one of"),
    ],
)
def test_every_key_is_checked_for_type_and_range_when_the_rule_is_made(
    data: dict[str, Any], message: str
) -> None:
    # Each of these was once accepted, then crashed the session when it fired.
    if "on" not in data:
        data["on"] = DEFAULT_EVENT.get(data["action"], "RETR")
    assert refusal(**data).startswith(f"fault 1: {message}")


def test_a_huge_bad_value_is_not_quoted_whole() -> None:
    assert len(refusal(on="RETR", action="error", text=["x" * 10**6])) < 200


def test_whole_floats_are_kept_as_integers() -> None:
    rule = FaultPlan().add(on="RETR", action="drop", at="during", after_bytes=10.0, nth=2.0)
    assert (rule.params["after_bytes"], rule.nth) == (10, 2)
    assert type(rule.params["after_bytes"]) is int


def test_a_rule_made_directly_is_checked_when_added() -> None:
    rule = Rule(on="RETR", action="delay", params={"seconds": math.inf})
    with pytest.raises(FaultError, match=r"^fault 1: seconds must be a finite number, got inf$"):
        FaultPlan().add(rule)


def test_a_bad_key_in_a_file_names_the_file_the_index_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(
        '[[faults]]\non = "RETR"\naction = "stall"\n\n'
        '[[faults]]\non = "RETR"\naction = "delay"\nseconds = inf\n'
    )
    with pytest.raises(FaultError, match=r"^faults.toml\[1\]: seconds must be a finite number"):
        FaultPlan().load(path)
    path = tmp_path / "faults.json"
    path.write_text('[{"on": "RETR", "action": "garbage", "length": 1.5}]')
    with pytest.raises(FaultError, match=r"^faults.json\[0\]: length must be a whole number"):
        FaultPlan().load(path)


def test_zero_bandwidth_is_refused() -> None:
    # A rate of 0 would make the server divide by zero while sending.
    with pytest.raises(FaultError, match=r"^fault 1: bytes_per_second must be"):
        FaultPlan().add(on="RETR", action="bandwidth", bytes_per_second=0)


def test_the_message_names_the_rule_by_position() -> None:
    plan = FaultPlan()
    plan.add(on="RETR", action="stall")
    with pytest.raises(FaultError, match=r"^fault 2: probability"):
        plan.add(on="RETR", action="stall", probability=3)
    with pytest.raises(FaultError, match=r"^fault 2: expected a table of keys, got 'stall'"):
        plan.add("stall")  # type: ignore[arg-type]
    assert len(plan) == 1


def test_extend_needs_a_list_of_tables() -> None:
    with pytest.raises(FaultError, match=r"^faults: expected a list of fault tables$"):
        FaultPlan().extend({"on": "RETR", "action": "stall"})
    with pytest.raises(FaultError, match=r"^faults\[1\]: expected a table of keys, got 3$"):
        FaultPlan().extend([{"on": "RETR", "action": "stall"}, 3])


# --- files ----------------------------------------------------------------------------

TOML = """
# Two faults: the first login fails, the second RETR is cut short.
[[faults]]
on = "PASS"
action = "error"
code = "SYS/TEMP"
text = "Try later"

[[faults]]
on = "retr"
action = "drop"
at = "during"
after_bytes = 100
mode = "reset"
nth = 2
times = "always"
user = "alice"
session = 1
probability = 0.5
seed = 42
"""

RULES_AS_DATA: list[dict[str, Any]] = [
    {"on": "PASS", "action": "error", "code": "SYS/TEMP", "text": "Try later"},
    {
        "on": "retr",
        "action": "drop",
        "at": "during",
        "after_bytes": 100,
        "mode": "reset",
        "nth": 2,
        "times": "always",
        "user": "alice",
        "session": 1,
        "probability": 0.5,
        "seed": 42,
    },
]


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(TOML)
    plan = FaultPlan()
    rules = plan.load(path)
    assert plan.rules == rules == [Rule.from_dict(d) for d in RULES_AS_DATA]
    second = rules[1]
    assert (second.on, second.params, second.times, second.nth) == (
        "RETR",
        {"at": "during", "after_bytes": 100, "mode": "reset"},
        None,
        2,
    )
    assert (second.user, second.session, second.probability, second.seed) == ("alice", 1, 0.5, 42)


@pytest.mark.parametrize("name", ["faults.json", "FAULTS.JSON"])
def test_load_json(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(json.dumps(RULES_AS_DATA))
    plan = FaultPlan()
    assert plan.load(str(path)) == [Rule.from_dict(d) for d in RULES_AS_DATA]
    assert len(plan) == 2


def test_load_adds_to_the_rules_already_there(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(TOML)
    plan = FaultPlan([{"on": "NOOP", "action": "stall"}])
    plan.load(path)
    assert [r.on for r in plan] == ["NOOP", "PASS", "RETR"]


def test_toml_and_json_give_the_same_rules(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(TOML)
    (tmp_path / "a.json").write_text(json.dumps(RULES_AS_DATA))
    from_toml, from_json = FaultPlan(), FaultPlan()
    assert from_toml.load(tmp_path / "a.toml") == from_json.load(tmp_path / "a.json")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(FaultError, match=f"^no fault file at {re.escape(str(path))}$"):
        FaultPlan().load(path)


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[faults]]\non = PASS\n")
    with pytest.raises(FaultError, match=f"^{re.escape(str(path))}: Invalid value") as info:
        FaultPlan().load(path)
    assert "line 2" in str(info.value)


def test_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"on": "PASS",}]')
    with pytest.raises(FaultError, match=f"^{re.escape(str(path))}: Expecting property name"):
        FaultPlan().load(path)


def test_json_must_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"faults": RULES_AS_DATA}))
    with pytest.raises(FaultError, match=r"^faults.json: expected a list of fault tables$"):
        FaultPlan().load(path)


def test_toml_faults_must_be_tables(tmp_path: Path) -> None:
    path = tmp_path / "faults.toml"
    path.write_text('faults = "PASS"\n')
    with pytest.raises(FaultError, match=r"^faults.toml: expected a list of fault tables$"):
        FaultPlan().load(path)


def test_a_bad_rule_in_a_file_is_named_by_file_and_index_and_adds_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "faults.toml"
    path.write_text(TOML + '\n[[faults]]\non = "RETR"\naction = "truncate"\nthen = "hang"\n')
    plan = FaultPlan()
    with pytest.raises(FaultError, match=r"^faults.toml\[2\]: then must be one of close, stall$"):
        plan.load(path)
    assert len(plan) == 0  # the good rules before it are not half loaded


def test_a_toml_file_without_faults_has_no_rules(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("# nothing yet\n")
    assert FaultPlan().load(path) == []


def test_a_fault_file_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "faults.toml")
    error = raised_within(5, lambda: FaultPlan().load(tmp_path / "faults.toml"))
    assert isinstance(error, FaultError)
    assert "faults.toml is not a regular file" in str(error)


def test_the_verbs_rules_may_name_are_the_command_table() -> None:
    assert tuple(COMMANDS) == VERBS


def test_a_rule_names_a_command_in_a_process_that_imported_nothing_else() -> None:
    code = (
        "from fakepop.protocol.fault_plan import FaultPlan\n"
        "print(FaultPlan().add(on='retr', action='error').on)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "RETR\n"
