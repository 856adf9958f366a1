"""Faults on command: rules that say when a server misbehaves and how.

A ``FaultPlan`` belongs to one server. Each rule names an event (``on``), which
sessions it applies to, and an ``action`` with its parameters; the session and
the server ask the plan at each event and carry out what fires. The same rules
are written in Python (``plan.add(on="PASS", action="error", code="SYS/TEMP")``)
or as data: a TOML file of ``[[faults]]`` tables or a JSON list, key for key.

Nothing here does I/O: the plan decides, the session changes its replies, the
server carries out what needs a socket (delays, stalls, resets).
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakepop.protocol.commands import COMMANDS

# Events that are not command verbs; a verb (any case) names the command's event.
SPECIAL_EVENTS = {
    "connect": "a client connected, before the greeting",
    "greeting": "the greeting is about to be sent",
    "tls-handshake": "a TLS handshake is about to start (implicit TLS or after STLS)",
    "login": "a session with good credentials is about to take its maildrop",
    "*": "any of the above and any command",
}

# Each action with its parameters and their defaults.
ACTIONS: dict[str, dict[str, Any]] = {
    "error": {"code": "SYS/TEMP", "text": "Temporary failure, try again later"},
    "drop": {"at": "instead", "after_bytes": 0, "mode": "close"},
    "lock": {"attempts": None, "seconds": None},
    "delay": {"seconds": 1.0},
    "bandwidth": {"bytes_per_second": 1024},
    "stall": {},
    "truncate": {"after_bytes": None, "then": "close"},
    "wrong-size": {"delta": 1},
    "unstuffed": {},
    "garbage": {"length": 64},
    "bare-lf": {},
    "overlong": {"length": 4096},
    "tls-abort": {"mode": "close"},
    "no-handshake": {},
    "commit-fail": {"remove": "none", "code": "SYS/TEMP"},
}

# Where an action is meant to happen when the rule does not say.
DEFAULT_EVENT = {
    "lock": "login",
    "tls-abort": "tls-handshake",
    "no-handshake": "STLS",
    "commit-fail": "QUIT",
}

_CHOICES = {
    ("drop", "at"): ("instead", "after", "during"),
    ("drop", "mode"): ("close", "reset"),
    ("truncate", "then"): ("close", "stall"),
    ("tls-abort", "mode"): ("close", "reset", "garbage"),
}
_WHEN_KEYS = {"on", "action", "user", "session", "nth", "times", "probability", "seed"}
_CODE = re.compile(r"[A-Z0-9-]+(/[A-Z0-9-]+)*")


_KIND_NAMES = {str: "text", int: "a whole number", float: "a number"}


class FaultError(ValueError):
    """A rule that cannot be used; the message says which key and what to write."""


@dataclass
class Rule:
    """One fault: when it fires and what it does.

    Attributes:
        on: the event: a command verb ("RETR"), "connect", "greeting",
            "tls-handshake", "login" or "*".
        action: what happens; see ``ACTIONS`` for each one's parameters.
        params: the action's parameters, defaults filled in.
        user: only for this account.
        session: only in this session (numbered from 1 in the server's transcript).
        nth: fire first at the nth matching event.
        times: how many times it fires; None for always.
        probability: the chance that a matching event fires it, drawn from a
            generator seeded with ``seed``, so a run is reproducible.
    """

    on: str
    action: str
    params: dict[str, Any]
    user: str | None = None
    session: int | None = None
    nth: int = 1
    times: int | None = 1
    probability: float = 1.0
    seed: int = 0
    matched: int = field(default=0, compare=False)
    fired: int = field(default=0, compare=False)
    _random: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "fault") -> Rule:
        """A rule from its data form: the keys of a ``[[faults]]`` table."""
        if not isinstance(data, Mapping):
            raise FaultError(f"{where}: expected a table of keys, got {data!r}")
        action = data.get("action")
        if action not in ACTIONS:
            raise FaultError(f"{where}: action must be one of {', '.join(ACTIONS)}; got {action!r}")
        unknown = sorted(set(data) - _WHEN_KEYS - set(ACTIONS[action]))
        if unknown:
            allowed = sorted(_WHEN_KEYS | set(ACTIONS[action]))
            raise FaultError(
                f"{where}: unknown key {', '.join(unknown)} for action {action!r};"
                f" allowed: {', '.join(allowed)}"
            )
        on = data.get("on", DEFAULT_EVENT.get(action))
        if on is None:
            raise FaultError(f"{where}: say when with on = <command verb, 'connect', ...>")
        params = {key: data.get(key, default) for key, default in ACTIONS[action].items()}
        times = data.get("times", 1)
        rule = cls(
            on=_event(on, where),
            action=action,
            params=params,
            user=_optional(data, "user", str, where),
            session=_optional(data, "session", int, where),
            nth=_number(data.get("nth", 1), int, "nth", where, minimum=1),
            times=None if times == "always" else _number(times, int, "times", where, minimum=1),
            probability=_number(data.get("probability", 1.0), float, "probability", where),
            seed=_number(data.get("seed", 0), int, "seed", where),
        )
        rule._check(where)
        return rule

    def _check(self, where: str) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise FaultError(f"{where}: probability must be between 0 and 1")
        for (action, key), choices in _CHOICES.items():
            if action == self.action and self.params[key] not in choices:
                raise FaultError(f"{where}: {key} must be one of {', '.join(choices)}")
        for key in ("seconds", "bytes_per_second", "after_bytes", "length", "attempts"):
            if self.params.get(key) is not None:
                _number(self.params[key], float, key, where, minimum=0)
        if "delta" in self.params:
            _number(self.params["delta"], int, "delta", where)
        if "code" in self.params and not _CODE.fullmatch(str(self.params["code"])):
            raise FaultError(f"{where}: code is a response code such as SYS/TEMP or IN-USE")
        if self.action == "bandwidth" and not self.params["bytes_per_second"] > 0:
            raise FaultError(f"{where}: bytes_per_second must be more than 0")
        if self.action == "tls-abort" and self.on != "tls-handshake":
            raise FaultError(f'{where}: tls-abort happens only at on = "tls-handshake"')
        if self.action == "lock" and self.params["attempts"] is not None:
            _number(self.params["attempts"], int, "attempts", where, minimum=1)
        if self.action == "lock" and self.params["attempts"] is self.params["seconds"] is None:
            raise FaultError(f"{where}: a lock needs attempts = N or seconds = T")
        if self.action == "commit-fail":
            remove = self.params["remove"]
            if remove not in ("none", "some") and (
                isinstance(remove, bool) or not isinstance(remove, int) or remove < 0
            ):
                raise FaultError(f"{where}: remove is 'none', 'some' or a number of messages")

    def matches(self, event: str, user: str | None, session: int) -> bool:
        return (
            self.on in ("*", event)
            and (self.user is None or self.user == user)
            and (self.session is None or self.session == session)
        )

    def describe(self) -> str:
        """The rule as a short line for transcripts and reports."""
        keys = [f"on={self.on}", f"action={self.action}"]
        keys += [f"{k}={v}" for k, v in self.params.items() if v is not None]
        if self.user is not None:
            keys.append(f"user={self.user}")
        if self.session is not None:
            keys.append(f"session={self.session}")
        return " ".join(keys)

    def random(self) -> random.Random:
        """The rule's own generator, for what it makes up (garbage bytes)."""
        return self._random


@dataclass(frozen=True)
class Fired:
    """A record of a rule that fired."""

    rule: Rule
    event: str
    session: int
    user: str | None
    time: float


class FaultPlan:
    """The faults of one server, checked in the order they were added."""

    def __init__(self, rules: Iterable[Rule | Mapping[str, Any]] = ()) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self.fired: list[Fired] = []
        self.fired_limit: int | None = None  # records kept in fired, the oldest dropped first
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule | Mapping[str, Any] | None = None, /, **keys: Any) -> Rule:
        """Add a rule, as a ``Rule``, a mapping of its data keys, or those keys as arguments.

        ``plan.add(on="RETR", action="drop", at="during", after_bytes=100)``
        """
        if rule is None:
            rule = Rule.from_dict(keys, f"fault {len(self._rules) + 1}")
        elif not isinstance(rule, Rule):
            rule = Rule.from_dict(rule, f"fault {len(self._rules) + 1}")
        with self._lock:
            self._rules.append(rule)
        return rule

    def load(self, path: str | os.PathLike[str]) -> list[Rule]:
        """Add the rules of a TOML file (``[[faults]]`` tables) or a JSON file (a list)."""
        file = Path(path)
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FaultError(f"no fault file at {file}") from None
        try:
            if file.suffix.lower() == ".json":
                data: Any = json.loads(text)
            else:
                table = tomllib.loads(text)
                if set(table) - {"faults"}:
                    raise FaultError(
                        f"{file}: unknown {', '.join(sorted(set(table) - {'faults'}))}:"
                        " write each rule as a [[faults]] table"
                    )
                data = table.get("faults", [])
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
            raise FaultError(f"{file}: {e}") from None
        return self.extend(data, str(file.name))

    def extend(self, data: Any, source: str = "faults") -> list[Rule]:
        """Add rules from their data form: a list of tables."""
        if not isinstance(data, list):
            raise FaultError(f"{source}: expected a list of fault tables")
        rules = [Rule.from_dict(item, f"{source}[{i}]") for i, item in enumerate(data)]
        for rule in rules:
            self.add(rule)
        return rules

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.fired.clear()

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __bool__(self) -> bool:
        return True  # an empty plan is still the plan to add to

    def check(self, event: str, *, session: int, user: str | None = None) -> Rule | None:
        """The rule that fires at this event, if one does; it is counted and recorded."""
        if not self._rules:
            return None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(event, user, session):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                rule.matched += 1
                if rule.matched < rule.nth:
                    continue
                if rule.probability < 1.0 and rule.random().random() >= rule.probability:
                    continue
                rule.fired += 1
                self.fired.append(Fired(rule, event, session, user, time.time()))
                if self.fired_limit is not None:
                    del self.fired[: len(self.fired) - self.fired_limit]
                return rule
        return None


def _event(on: Any, where: str) -> str:
    if not isinstance(on, str) or not on:
        raise FaultError(f"{where}: on must name an event, got {on!r}")
    if on.lower() in SPECIAL_EVENTS:
        return on.lower()
    if on.upper() in COMMANDS:
        return on.upper()
    raise FaultError(
        f"{where}: unknown event {on!r}; use a command verb ({', '.join(COMMANDS)})"
        f" or one of {', '.join(SPECIAL_EVENTS)}"
    )


def _optional(data: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise FaultError(f"{where}: {key} must be {_KIND_NAMES[kind]}, got {value!r}")
    return value


def _number(value: Any, kind: type, key: str, where: str, minimum: float | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{where}: {key} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise FaultError(f"{where}: {key} must be a whole number, got {value!r}")
    if minimum is not None and value < minimum:
        raise FaultError(f"{where}: {key} must be at least {minimum:g}")
    return kind(value)
