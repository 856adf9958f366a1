"""The fault plan, its event side: rules, and which one fires at an event.

An event is what happened: a command (its verb), a connect, the greeting, a TLS
handshake, a login. A ``FaultPlan`` belongs to one server. Each rule names an
event (``on``), which sessions it applies to, and an ``action`` with its
parameters; the session asks the plan at each event, and what a fired rule does
is decided in ``fakepop.protocol.fault_actions``. The same rules are written in
Python (``plan.add(on="PASS", action="error", code="SYS/TEMP")``) or as data: a
TOML file of ``[[faults]]`` tables or a JSON list, key for key.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakepop.mail.loaders import read_file
from fakepop.protocol.commands import VERBS

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

# Bounds on what a rule may ask for, so that every rule accepted can also be carried out.
MAX_LENGTH = 16 * 1024 * 1024  # garbage and overlong octets are made in memory at once
MAX_SECONDS = 86_400.0  # a delay or lock longer than a day is a mistake; stall waits for ever
MAX_COUNT = 2**63 - 1  # counts, offsets and seeds: a 64-bit integer, exact in any JSON client
MAX_CODE = 64  # a response code is a word or two (RFC 2449, section 8)
MAX_TEXT = 400  # the -ERR line's text: RFC 2449 allows a response line 512 octets in all
# Keys an action may leave unset (None): the rule then does without them.
_OPTIONAL = {("lock", "attempts"), ("lock", "seconds"), ("truncate", "after_bytes")}
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
            raise FaultError(f"{where}: expected a table of keys, got {_show(data)}")
        action = data.get("action")
        if not isinstance(action, str) or action not in ACTIONS:
            raise FaultError(
                f"{where}: action must be one of {', '.join(ACTIONS)}; got {_show(action)}"
            )
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
            on=on,
            action=action,
            params=params,
            user=data.get("user"),
            session=data.get("session"),
            nth=data.get("nth", 1),
            times=None if times == "always" else times,
            probability=data.get("probability", 1.0),
            seed=data.get("seed", 0),
        )
        rule._check(where)
        return rule

    def _check(self, where: str) -> None:
        """Check every key's type and range, raising ``FaultError`` naming the first bad one.

        Numbers are normalised (a whole float such as 2.0 becomes 2), so that what is
        kept, and what ``GET /faults`` answers, is what the server will do.
        """
        self.on = _event(self.on, where)
        if not isinstance(self.action, str) or self.action not in ACTIONS:
            raise FaultError(f"{where}: action must be one of {', '.join(ACTIONS)}")
        if not isinstance(self.params, dict) or set(self.params) != set(ACTIONS[self.action]):
            raise FaultError(
                f"{where}: the parameters of {self.action!r} are {', '.join(ACTIONS[self.action])}"
            )
        self.user = _optional(self.user, str, "user", where)
        if self.session is not None:
            self.session = _number(self.session, int, "session", where, 1, MAX_COUNT)
        self.nth = _number(self.nth, int, "nth", where, 1, MAX_COUNT)
        if self.times is not None:
            self.times = _number(self.times, int, "times", where, 1, MAX_COUNT)
        self.probability = float(_number(self.probability, float, "probability", where, 0, 1))
        self.seed = _number(self.seed, int, "seed", where, -MAX_COUNT, MAX_COUNT)
        self._random = random.Random(self.seed)
        for key, value in self.params.items():
            if value is None and (self.action, key) in _OPTIONAL:
                continue
            self.params[key] = _param(self.action, key, value, where)
        if self.action == "tls-abort" and self.on != "tls-handshake":
            raise FaultError(f'{where}: tls-abort happens only at on = "tls-handshake"')
        if self.action == "lock" and self.params["attempts"] is self.params["seconds"] is None:
            raise FaultError(f"{where}: a lock needs attempts = N or seconds = T")

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
    """A record of a rule that fired; ``time`` is the wall clock's, a stamp and no timer."""

    rule: Rule
    event: str
    session: int
    user: str | None
    time: float


class FaultPlan:
    """The faults of one server, checked in the order they were added.

    The sessions of a server share its plan, each in a thread of its own, so it
    counts under ``lock``: a ``threading.Lock()``, which the core, importing no
    thread API, cannot make itself. ``POP3Server`` gives its plan one; a plan used
    in one thread needs none.
    """

    def __init__(
        self,
        rules: Iterable[Rule | Mapping[str, Any]] = (),
        *,
        lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        self._rules: list[Rule] = []
        self.lock: AbstractContextManager[Any] = lock if lock is not None else nullcontext()
        self.fired: list[Fired] = []
        self.fired_limit: int | None = None  # records kept in fired, the oldest dropped first
        for rule in rules:
            self.add(rule)

    def add(self, rule: Rule | Mapping[str, Any] | None = None, /, **keys: Any) -> Rule:
        """Add a rule, as a ``Rule``, a mapping of its data keys, or those keys as arguments.

        ``plan.add(on="RETR", action="drop", at="during", after_bytes=100)``
        """
        where = f"fault {len(self._rules) + 1}"
        if rule is None:
            rule = Rule.from_dict(keys, where)
        elif isinstance(rule, Rule):
            rule._check(where)  # made directly, it has not been checked yet
        else:
            rule = Rule.from_dict(rule, where)
        with self.lock:
            self._rules.append(rule)
        return rule

    def load(self, path: str | os.PathLike[str]) -> list[Rule]:
        """Add the rules of a TOML file (``[[faults]]`` tables) or a JSON file (a list)."""
        file = Path(path)
        try:
            text = read_file(file).decode("utf-8")
        except FileNotFoundError:
            raise FaultError(f"no fault file at {file}") from None
        except (OSError, ValueError) as e:  # a FIFO or a device, say: never read
            raise FaultError(f"{file}: {e}") from None
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
        with self.lock:
            self._rules.clear()
            self.fired.clear()

    @property
    def rules(self) -> list[Rule]:
        with self.lock:
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
        with self.lock:
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
        raise FaultError(f"{where}: on must name an event, got {_show(on)}")
    if on.lower() in SPECIAL_EVENTS:
        return on.lower()
    if on.upper() in VERBS:
        return on.upper()
    raise FaultError(
        f"{where}: unknown event {_show(on)}; use a command verb ({', '.join(VERBS)})"
        f" or one of {', '.join(SPECIAL_EVENTS)}"
    )


def _optional(value: Any, kind: type, key: str, where: str) -> Any:
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise FaultError(f"{where}: {key} must be {_KIND_NAMES[kind]}, got {_show(value)}")
    return value


def _number(value: Any, kind: type, key: str, where: str, minimum: float, maximum: float) -> Any:
    """``value`` as a number of ``kind`` between ``minimum`` and ``maximum``, else FaultError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultError(f"{where}: {key} must be {_KIND_NAMES[kind]}, got {_show(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise FaultError(f"{where}: {key} must be a finite number, got {value!r}")
    if kind is int and isinstance(value, float):
        if not value.is_integer():
            raise FaultError(f"{where}: {key} must be a whole number, got {value!r}")
        value = int(value)
    if not minimum <= value <= maximum:
        raise FaultError(f"{where}: {key} must be {_range(minimum, maximum)}, got {_short(value)}")
    return value


def _range(minimum: float, maximum: float) -> str:
    if maximum == MAX_COUNT:
        return "a 64-bit integer" if minimum == -MAX_COUNT else f"at least {_figure(minimum)}"
    return f"between {_figure(minimum)} and {_figure(maximum)}"


def _figure(bound: float) -> str:
    return f"{int(bound):,}" if float(bound).is_integer() else repr(bound)


def _short(value: float) -> str:
    # str() of an integer of over 4,300 digits raises; no one needs to see its digits anyway.
    return repr(value) if isinstance(value, float) or abs(value) < 10**30 else "a larger number"


def _show(value: Any) -> str:
    """A bad value as a message quotes it: short, whatever its size."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _short(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _param(action: str, key: str, value: Any, where: str) -> Any:
    """An action's parameter checked for its type and range; see ``ACTIONS``."""
    choices = _CHOICES.get((action, key))
    if choices is not None:
        if value not in choices:
            raise FaultError(f"{where}: {key} must be one of {', '.join(choices)}")
        return value
    if key == "seconds":
        return _number(value, float, key, where, 0, MAX_SECONDS)
    if key == "bytes_per_second":
        # Less than a byte a second is no rate but a stall: the stall action does that.
        return _number(value, float, key, where, 1, MAX_COUNT)
    if key in ("after_bytes", "attempts"):
        return _number(value, int, key, where, 0 if key == "after_bytes" else 1, MAX_COUNT)
    if key == "length":
        return _number(value, int, key, where, 0, MAX_LENGTH)
    if key == "delta":
        return _number(value, int, key, where, -MAX_COUNT, MAX_COUNT)
    if key == "code":
        if not isinstance(value, str) or len(value) > MAX_CODE or not _CODE.fullmatch(value):
            raise FaultError(f"{where}: code is a response code such as SYS/TEMP or IN-USE")
        return value
    if key == "text":
        if not isinstance(value, str):
            raise FaultError(f"{where}: text must be text, got {_show(value)}")
        if len(value) > MAX_TEXT or not value.isprintable():
            raise FaultError(
                f"{where}: text is one line of at most {MAX_TEXT} printable characters"
            )
        return value
    assert (action, key) == ("commit-fail", "remove"), (action, key)
    if value in ("none", "some"):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT:
        return value
    raise FaultError(f"{where}: remove is 'none', 'some' or a number of messages")
