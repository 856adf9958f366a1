"""The one description of a server's behaviour: ``Settings``, and ``TLSOptions`` for its TLS.

Each field carries its type, default, a one-line help text, the section of the README (and of
``fakepop serve --help``) it belongs to, whether it may change while the server runs, and a
``Kind`` that reads it from text (a flag, a variable, an ini line) or data (TOML, JSON) and
writes it back as JSON. Every surface is derived from these fields: ``POP3Server``'s keyword
arguments, ``fakepop serve``'s flags, ``FAKEPOP_*`` variables and TOML keys, the pytest
marker's keys and options. Field names are unique across the two classes, so each surface
is one flat namespace.

This module imports nothing with I/O: the protocol core reads ``Settings``, and the pytest
plugin builds its options from it when it loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fakepop.personas import PERSONAS, PLANNED, expand

MAX_LINE_LENGTH = 4096  # RFC 2449 asks clients for 255 octets; long XOAUTH2 lines need more
MAX_SASL_LENGTH = 16384  # a base64 SASL line: OAuth tokens run to a few KiB
MAX_BAD_COMMANDS = 20  # as Dovecot: then the server says so and closes
MAX_BAD_COMMANDS_BEFORE_LOGIN = 3  # as Dovecot's login process
# How a command line's arguments are split: "strict" is RFC 1939, section 3 (one space between
# words, none at the line's end); "dovecot" is Dovecot 2.3's parser.
ARGUMENT_SYNTAXES = ("strict", "dovecot")
IDLE_TIMEOUT = 600.0  # RFC 1939, section 3: an autologout timer of at least 10 minutes
MAX_CONNECTIONS = 1024  # threads are cheap; a leaking client should still not take the host
# The SASL registry (fakepop.protocol.sasl) in CAPA's order; named here because importing the
# registry pulls in scramp and the mail store, which the plugin must not load for nothing.
SASL_MECHANISMS = (
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
    "XOAUTH2",
    "OAUTHBEARER",
)
# fakepop.tls.CertificateFault's values, for the same reason (it imports cryptography).
CERTIFICATE_FAULTS = ("expired", "not-yet-valid", "wrong-host", "untrusted-ca", "self-signed")
# ssl.TLSVersion by name, so that this module need not import ssl.
TLS_VERSIONS = {"TLSv1": "1.0", "TLSv1_1": "1.1", "TLSv1_2": "1.2", "TLSv1_3": "1.3"}

# The sections of the README, in its order: ``fakepop serve --help`` groups its flags by them.
MAIL = "Mail to serve"
TLS = "TLS"
AUTHENTICATION = "Authentication"
FAULTS = "Faults on command"
COMMAND_LINE = "On the command line"
CONTROL = "The control API"
SPEAKS = "What it speaks"
LIMITS = "Reliability and limits"
SECTIONS = (COMMAND_LINE, MAIL, TLS, AUTHENTICATION, FAULTS, CONTROL, SPEAKS, LIMITS)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


# --- kinds of value: text and data in, JSON out --------------------------------------------


class Kind:
    """How one field's value is read from text and data, and written as JSON.

    Attributes:
        expected: what a valid value is, for messages: "a whole number".
        metavar: what a flag's value is called in the help.
        repeat: a tuple of items: a flag may be given more than once, each time one item.
    """

    expected = "a value"
    metavar = "VALUE"
    repeat = False

    def from_text(self, text: str) -> Any:
        """The value a flag, variable or ini line gives; ValueError saying what to write."""
        raise NotImplementedError

    def from_data(self, value: object) -> Any:
        """The value a TOML or JSON document gives; ValueError saying what to write."""
        return self.from_text(self._scalar(value, str))

    def to_data(self, value: Any) -> Any:
        """The value as JSON."""
        return value

    def coerce(self, value: Any) -> Any:
        """The value as the field keeps it (a tuple for a list, say); given from Python."""
        return value

    def split(self, text: str) -> list[str]:
        """The items of a text that holds several (an environment variable): its words."""
        return text.split()

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of ``to_data``'s values (OpenAPI 3.1 takes it as it is)."""
        return {"type": "string"}

    def _fail(self, given: object) -> ValueError:
        return ValueError(f"expected {self.expected}, got {given!r}")

    def _scalar(self, value: object, *types: type) -> Any:
        """``value`` if it is one of ``types`` (TOML's and JSON's), else ValueError naming them."""
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(kind.__name__ for kind in types)
            raise ValueError(f"expected {names}, got {value!r}")
        return value


class Text(Kind):
    metavar = "TEXT"
    expected = "some text"

    def __init__(self, metavar: str = "TEXT") -> None:
        self.metavar = metavar

    def from_text(self, text: str) -> str:
        if not text:
            raise ValueError("expected a value, got nothing")
        return text


class Whole(Kind):
    """A whole number from ``low`` to ``high``."""

    def __init__(
        self, low: int | None = None, high: int | None = None, expected: str = "a whole number"
    ) -> None:
        self.low, self.high = low, high
        self.expected = expected
        self.metavar = "N"

    def from_text(self, text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            raise self._fail(text) from None
        return self._check(number, text)

    def from_data(self, value: object) -> int:
        return self._check(self._scalar(value, int), value)

    def _check(self, number: int, given: object) -> int:
        if (self.low is not None and number < self.low) or (
            self.high is not None and number > self.high
        ):
            raise self._fail(given)
        return number

    def schema(self) -> dict[str, Any]:
        bounds = {"minimum": self.low, "maximum": self.high}
        return {"type": "integer", **{k: v for k, v in bounds.items() if v is not None}}


class Port(Whole):
    def __init__(self) -> None:
        super().__init__(0, 65535, "a port from 0 to 65535 (0: any free port)")
        self.metavar = "PORT"


class Seconds(Kind):
    expected = "a number of seconds"
    metavar = "SECONDS"

    def from_text(self, text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise self._fail(text) from None
        return self._finite(number, text)

    def from_data(self, value: object) -> float:
        # TOML's inf and nan, and JSON's 1e999, are floats no answer could be written with.
        return self._finite(float(self._scalar(value, int, float)), value)

    def _finite(self, number: float, given: object) -> float:
        if not math.isfinite(number):
            raise self._fail(given)
        return number

    def schema(self) -> dict[str, Any]:
        return {"type": "number"}


class Switch(Kind):
    expected = f"one of {', '.join(_TRUE + _FALSE)}"
    metavar = "BOOL"

    def from_text(self, text: str) -> bool:
        word = text.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise self._fail(text)

    def from_data(self, value: object) -> bool:
        return bool(self._scalar(value, bool))

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


class Choice(Kind):
    def __init__(self, choices: Iterable[str], metavar: str) -> None:
        self.choices = tuple(choices)
        self.expected = f"one of {', '.join(self.choices)}"
        self.metavar = metavar

    def from_text(self, text: str) -> str:
        if text not in self.choices:
            raise self._fail(text)
        return text

    def coerce(self, value: Any) -> Any:
        value = getattr(value, "value", value)  # an enum of these, as fakepop.tls.CertificateFault
        if not isinstance(value, str):
            raise self._fail(value)
        return self.from_text(value)

    def schema(self) -> dict[str, Any]:
        return {"enum": list(self.choices)}


class PersonaName(Choice):
    """A persona of ``fakepop.personas``; one the issue named but not yet built says so."""

    def __init__(self) -> None:
        super().__init__(PERSONAS, "NAME")

    def from_text(self, text: str) -> str:
        if text in PLANNED:
            raise ValueError(
                f"the persona {text} is not built yet; the personas are {', '.join(self.choices)}"
            )
        return super().from_text(text)


class TLSVersion(Choice):
    """A TLS version as "1.2"; an ``ssl.TLSVersion`` is taken too, from Python."""

    def __init__(self) -> None:
        super().__init__(TLS_VERSIONS.values(), "VERSION")

    def coerce(self, value: Any) -> Any:
        name = getattr(value, "name", None)  # an ssl.TLSVersion
        if name is None:
            return super().coerce(value)
        if name == "MAXIMUM_SUPPORTED":
            return None  # no bound
        if name not in TLS_VERSIONS:
            raise ValueError(f"expected one of {', '.join(TLS_VERSIONS)}, got {name}")
        return TLS_VERSIONS[name]


class Mechanism(Choice):
    """A SASL mechanism, in any case."""

    def __init__(self) -> None:
        super().__init__(SASL_MECHANISMS, "MECHANISM")

    def from_text(self, text: str) -> str:
        if text.upper() not in self.choices:
            raise ValueError(
                f"unknown mechanism {text}; the mechanisms are {', '.join(self.choices)}"
            )
        return text.upper()

    def coerce(self, value: Any) -> Any:
        if not isinstance(value, str) or value.upper() not in self.choices:
            raise ValueError(f"unknown SASL mechanism {value}; known: {', '.join(self.choices)}")
        return value.upper()


class File(Kind):
    """A path; the configuration file makes a relative one relative to itself."""

    def __init__(self, metavar: str = "PATH") -> None:
        self.metavar = metavar
        self.expected = "a path"

    def from_text(self, text: str) -> Path:
        if not text:
            raise ValueError("expected a path, got nothing")
        return Path(text)

    def to_data(self, value: Path) -> str:
        return str(value)

    def coerce(self, value: Any) -> Any:
        return Path(value) if isinstance(value, str) else value


class Language(Kind):
    """An RFC 6856 language: its tag and its name, ``tag=name`` in text, ``[tag, name]`` in data."""

    expected = "TAG=NAME, e.g. de=Deutsch"
    metavar = "TAG=NAME"

    def from_text(self, text: str) -> tuple[str, str]:
        tag, sep, name = text.partition("=")
        if not (sep and tag and name):
            raise self._fail(text)
        return tag, name

    def from_data(self, value: object) -> tuple[str, str]:
        if isinstance(value, str):
            return self.from_text(value)
        if not (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(item, str) and item for item in value)
        ):
            raise ValueError(f'expected ["tag", "name"], got {value!r}')
        return value[0], value[1]

    def to_data(self, value: tuple[str, str]) -> list[str]:
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}

    def coerce(self, value: Any) -> Any:
        return tuple(value)


class Many(Kind):
    """A tuple of ``item``: a repeatable flag; whitespace between items in a variable."""

    repeat = True

    def __init__(self, item: Kind) -> None:
        self.item = item
        self.metavar = item.metavar
        self.expected = f"a list of {item.expected}"

    def from_text(self, text: str) -> tuple[Any, ...]:
        return tuple(self.item.from_text(word) for word in text.split())

    def from_data(self, value: object) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(self.item.from_data(item) for item in value)

    def to_data(self, value: tuple[Any, ...]) -> list[Any]:
        return [self.item.to_data(item) for item in value]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema()}

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str):  # one name is not a list of its letters
            raise ValueError(f"expected a list of {self.item.expected}, got {value!r}")
        return tuple(self.item.coerce(item) for item in value)


class QuirkList(Kind):
    """Quirk specs, each a name or name=value, checked against ``fakepop.protocol.quirks``.

    A text may hold several, separated by ";", so that a quirk's text may hold spaces.
    The registry is imported only when there is a quirk to check: the pytest plugin
    loads this module in every run, and the registry's package loads the protocol core.
    """

    repeat = True
    metavar = "QUIRK"
    expected = 'quirks, each NAME or NAME=VALUE, separated by ";"'

    def split(self, text: str) -> list[str]:
        from fakepop.protocol import quirks

        return quirks.split(text)

    def from_text(self, text: str) -> tuple[str, ...]:
        return self.coerce(self.split(text))

    def from_data(self, value: object) -> tuple[str, ...]:
        if isinstance(value, str):
            return self.from_text(value)
        if not (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
            raise ValueError(f'expected a list of quirks, e.g. ["no-capa"], got {value!r}')
        return self.coerce(value)

    def to_data(self, value: tuple[str, ...]) -> list[str]:
        return list(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}}

    def coerce(self, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):  # one quirk is not a list of its letters
            raise ValueError(f'expected a list of quirks, e.g. ["{value}"], got {value!r}')
        specs = tuple(value)
        if not specs:
            return specs
        from fakepop.protocol import quirks

        return tuple(quirks.canonical(spec) for spec in specs)


class Pair(Kind):
    """Two paths: a certificate chain and its key."""

    expected = 'a chain and its key, as CHAIN,KEY (in TOML ["chain.pem", "key.pem"])'
    metavar = "CHAIN,KEY"

    def from_text(self, text: str) -> tuple[Path, Path]:
        parts = text.split(",")
        if len(parts) != 2 or not all(parts):
            raise self._fail(text)
        return Path(parts[0]), Path(parts[1])

    def from_data(self, value: object) -> tuple[Path, Path]:
        if not (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(item, str) and item for item in value)
        ):
            raise ValueError(f'expected ["chain.pem", "key.pem"], got {value!r}')
        return Path(value[0]), Path(value[1])

    def to_data(self, value: tuple[Path, Path]) -> list[str]:
        return [str(path) for path in value]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}

    def coerce(self, value: Any) -> Any:
        if isinstance(value, str) or len(value) != 2:
            raise ValueError(f"expected (chain, key), two paths, got {value!r}")
        return Path(value[0]), Path(value[1])


class Maybe(Kind):
    """``item`` or None: ``none`` in text, null in JSON (TOML leaves the key out)."""

    def __init__(self, item: Kind) -> None:
        self.item = item
        self.metavar = item.metavar
        self.expected = f"{item.expected}, or none"
        self.repeat = item.repeat

    def from_text(self, text: str) -> Any:
        return None if text.lower() == "none" else self.item.from_text(text)

    def from_data(self, value: object) -> Any:
        return None if value is None else self.item.from_data(value)

    def to_data(self, value: Any) -> Any:
        return None if value is None else self.item.to_data(value)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.item.schema(), {"type": "null"}]}

    def coerce(self, value: Any) -> Any:
        return None if value is None else self.item.coerce(value)


# --- fields ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What a field says besides its type and default."""

    help: str
    kind: Kind
    section: str
    runtime: bool  # may change while the server runs (new sessions see it)


def setting(default: Any, help: str, kind: Kind, section: str, *, runtime: bool = False) -> Any:
    """A field of ``Settings`` or ``TLSOptions``, with what every surface needs to know."""
    return field(default=default, metadata={"spec": Spec(help, kind, section, runtime)})


class _Described:
    """Shared by the two classes: values kept in canonical form and checked when made."""

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            try:
                kept = spec(item).kind.coerce(value)
            except (TypeError, ValueError) as e:
                raise ValueError(f"{item.name}: {e}") from None
            if kept is not value:
                object.__setattr__(self, item.name, kept)
        self._check()

    def _check(self) -> None:
        """Checks of more than one field's kind."""


@dataclass(frozen=True, kw_only=True)
class Settings(_Described):
    """How a server behaves: what it offers, its limits, where it listens and keeps mail.

    Every field has the default a real server would use; ``fakepop.settings.FIELDS`` says
    each one's help text and whether it may change while the server runs.
    """

    host: str = setting("127.0.0.1", "address the POP3 listeners bind", Text("HOST"), COMMAND_LINE)
    port: int = setting(0, "POP3 port, with STLS; 0 for any free port", Port(), COMMAND_LINE)
    hostname: str = setting(
        "localhost", "the name in the greeting's APOP timestamp", Text("NAME"), AUTHENTICATION,
        runtime=True,
    )  # fmt: skip
    maildir: Path | None = setting(  # noqa: RUF009 (setting() is a field specifier)
        None,
        "keep each maildrop on disk as the Maildir DIR/<account> instead of in memory",
        Maybe(File("DIR")),
        MAIL,
    )
    user_login: bool = setting(True, "offer USER and PASS", Switch(), AUTHENTICATION, runtime=True)
    apop: bool = setting(
        True, "offer APOP (the greeting then carries a timestamp)", Switch(), AUTHENTICATION,
        runtime=True,
    )  # fmt: skip
    sasl: tuple[str, ...] = setting(
        SASL_MECHANISMS,
        "the AUTH mechanisms offered, in CAPA's order",
        Many(Mechanism()),
        AUTHENTICATION,
        runtime=True,
    )
    domains: tuple[str, ...] = setting(
        (),
        "virtual domains: user@domain logs in to the account user",
        Many(Text("DOMAIN")),
        AUTHENTICATION,
        runtime=True,
    )
    recent_prefix: bool = setting(
        False, "accept Gmail's recent:user login names", Switch(), AUTHENTICATION, runtime=True
    )
    any_login: bool = setting(
        False,
        "any name and password log in; an account is made on first login",
        Switch(),
        AUTHENTICATION,
        runtime=True,
    )
    auth_failure_delay: float = setting(
        0.0,
        "seconds to wait before refusing a login; Dovecot waits 2",
        Seconds(),
        AUTHENTICATION,
        runtime=True,
    )
    max_auth_failures: int | None = setting(
        None,
        "failed logins on a connection before the server hangs up (none: no limit)",
        Maybe(Whole(1, expected="a whole number, 1 or more")),
        AUTHENTICATION,
        runtime=True,
    )
    require_tls: bool = setting(
        False, "refuse USER, PASS and APOP until under TLS", Switch(), TLS, runtime=True
    )
    expire: int | None = setting(
        None,
        "days advertised in CAPA's EXPIRE (none: NEVER)",
        Maybe(Whole(0, expected="a whole number of days")),
        SPEAKS,
        runtime=True,
    )
    login_delay: int | None = setting(
        None,
        "seconds advertised in CAPA's LOGIN-DELAY and enforced between logins",
        Maybe(Whole(0, expected="a whole number of seconds")),
        SPEAKS,
        runtime=True,
    )
    utf8: bool = setting(True, "offer RFC 6856's UTF8 and LANG", Switch(), SPEAKS, runtime=True)
    languages: tuple[tuple[str, str], ...] = setting(
        (("en", "English"),),
        "the languages LANG offers, the first in use at the start",
        Many(Language()),
        SPEAKS,
        runtime=True,
    )
    last: bool = setting(False, "accept RFC 1081's LAST command", Switch(), SPEAKS, runtime=True)
    argument_syntax: str = setting(
        "strict",
        "strict: -ERR to a space at a line's end, two in a row, or arguments to a command that"
        " takes none (RFC 1939, section 3); dovecot: as Dovecot 2.3, names taken as written,"
        " spaces before a number skipped, arguments to such commands ignored",
        Choice(ARGUMENT_SYNTAXES, "SYNTAX"),
        SPEAKS,
        runtime=True,
    )
    keep_bare_cr: bool = setting(
        False,
        "send a CR not followed by LF in stored mail as it is, as Dovecot does (off: as a line"
        " end, CRLF, as RFC 1939 and RFC 5322 have every line end)",
        Switch(),
        SPEAKS,
    )
    in_use_closes: bool = setting(
        True,
        "close the connection after -ERR [IN-USE], as Dovecot does",
        Switch(),
        SPEAKS,
        runtime=True,
    )
    lock_wait: float = setting(
        0.0,
        "seconds a login waits for a maildrop another session holds before -ERR [IN-USE];"
        " Dovecot waits 10",
        Seconds(),
        SPEAKS,
        runtime=True,
    )
    persona: str | None = setting(
        None,
        "behave like this real server: its settings (under any given explicitly) and quirks",
        Maybe(PersonaName()),
        SPEAKS,
    )
    quirks: tuple[str, ...] = setting(
        (),
        "how a real server departs from the RFCs, each NAME or NAME=VALUE (no-capa,"
        " top-bytes=512, greeting=Hello there), added to the persona's; in one text, separated"
        " by semicolons",
        QuirkList(),
        SPEAKS,
        runtime=True,
    )
    max_connections: int = setting(
        MAX_CONNECTIONS,
        "connections served at once; one more is told -ERR [SYS/TEMP] and closed",
        Whole(1, expected="a whole number, 1 or more"),
        LIMITS,
        runtime=True,
    )
    max_line_length: int = setting(
        MAX_LINE_LENGTH, "the longest command line accepted, in octets", Whole(), LIMITS,
        runtime=True,
    )  # fmt: skip
    max_sasl_length: int = setting(
        MAX_SASL_LENGTH,
        "the longest AUTH line or SASL response accepted, in octets",
        Whole(),
        LIMITS,
        runtime=True,
    )
    long_line_closes: bool = setting(
        True,
        "close the connection after refusing a line over max_line_length, as Dovecot does"
        " (off: the session goes on at the next line)",
        Switch(),
        LIMITS,
        runtime=True,
    )
    max_bad_commands: int = setting(
        MAX_BAD_COMMANDS,
        "bad commands in a row after login; the last of them closes the session",
        Whole(),
        LIMITS,
        runtime=True,
    )
    max_bad_commands_before_login: int = setting(
        MAX_BAD_COMMANDS_BEFORE_LOGIN,
        "bad commands in a row before login; the last of them closes the session",
        Whole(),
        LIMITS,
        runtime=True,
    )
    idle_timeout: float = setting(
        IDLE_TIMEOUT,
        "seconds of client silence before autologout (RFC 1939: 10 minutes at least)",
        Seconds(),
        LIMITS,
        runtime=True,
    )
    transcript_limit: int | None = setting(
        None,
        "sessions remembered in the transcript (each of 500 lines at most), in each maildrop's"
        " retrieved and deleted, and records of the faults fired; 0 keeps none"
        " (none: all, as a test wants)",
        Maybe(Whole(0, expected="a whole number, 0 or more")),
        LIMITS,
    )

    def _check(self) -> None:
        if self.max_line_length < 255:
            raise ValueError("max_line_length must be at least 255, the length RFC 2449 allows")
        if self.max_sasl_length < 255:
            raise ValueError("max_sasl_length must be at least 255 octets")
        if self.max_bad_commands < 1:
            raise ValueError("max_bad_commands must be at least 1")
        if self.max_bad_commands_before_login < 1:
            raise ValueError("max_bad_commands_before_login must be at least 1")
        if self.lock_wait < 0:
            raise ValueError("lock_wait must not be negative")
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be a positive number of seconds")
        if not self.languages:
            raise ValueError("languages needs at least one (tag, name) pair")
        if self.auth_failure_delay < 0:
            raise ValueError("auth_failure_delay must not be negative")
        if self.max_auth_failures is not None and self.max_auth_failures < 1:
            raise ValueError("max_auth_failures must be at least 1, or None for no limit")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


@dataclass(frozen=True, kw_only=True)
class TLSOptions(_Described):
    """How a server serves TLS: its listeners, versions and certificate.

    ``POP3Server(tls=True)`` is ``tls=TLSOptions()``. None of these change while the server
    runs: its TLS context is made when the server is.
    """

    stls: bool = setting(True, "offer STLS on the plain port (RFC 2595)", Switch(), TLS)
    implicit_tls: bool = setting(
        True, "listen for implicit TLS on tls_port too (RFC 8314)", Switch(), TLS
    )
    tls_port: int = setting(0, "POP3S (implicit TLS) port; 0 for any free port", Port(), TLS)
    tls_minimum: str = setting("1.2", "the oldest TLS version accepted", TLSVersion(), TLS)
    tls_maximum: str | None = setting(
        None, "the newest TLS version offered (none: the newest there is)", Maybe(TLSVersion()), TLS
    )
    tls_names: tuple[str, ...] = setting(
        (),
        "another host name or address for the certificate, besides localhost, 127.0.0.1 and ::1",
        Many(Text("NAME")),
        TLS,
    )
    key_type: Literal["ecdsa", "rsa"] = setting(
        "ecdsa", "the certificate's key", Choice(("ecdsa", "rsa"), "TYPE"), TLS
    )
    certificate_fault: str | None = setting(
        None,
        "make the certificate wrong in one way, to test that a client refuses it",
        Maybe(Choice(CERTIFICATE_FAULTS, "FAULT")),
        TLS,
    )
    certificate: tuple[Path, Path] | None = setting(
        None,
        "your own certificate chain and key, as PEM files, instead of one from the CA",
        Maybe(Pair()),
        TLS,
    )

    def _check(self) -> None:
        if self.tls_minimum is None:
            raise ValueError("tls_minimum must be a version, e.g. 1.2")


# --- the schema as a whole -------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One field of the schema, wherever it lives."""

    name: str
    owner: type[Settings] | type[TLSOptions]
    default: Any
    spec: Spec

    @property
    def help(self) -> str:
        return self.spec.help

    @property
    def kind(self) -> Kind:
        return self.spec.kind

    @property
    def runtime(self) -> bool:
        return self.spec.runtime

    @property
    def flag(self) -> str:
        """The ``fakepop serve`` flag: ``--tls-port``."""
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        """The environment variable: ``FAKEPOP_TLS_PORT``."""
        return "FAKEPOP_" + self.name.upper()


def spec(item: dataclasses.Field[Any]) -> Spec:
    found: Spec = item.metadata["spec"]
    return found


def _fields() -> Iterator[Field]:
    for owner in (Settings, TLSOptions):
        for item in dataclasses.fields(owner):
            yield Field(item.name, owner, item.default, spec(item))


FIELDS: dict[str, Field] = {item.name: item for item in _fields()}


class FixedSettingError(Exception):
    """Settings that cannot change while the server runs were asked to.

    Attributes:
        names: the fields that cannot change.
    """

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        which = ", ".join(self.names)
        super().__init__(
            f"{which} cannot change while the server runs; the ones that can are"
            f" {', '.join(RUNTIME)}"
        )


RUNTIME = tuple(name for name, item in FIELDS.items() if item.runtime)


def unknown_names(names: Iterable[str], valid: Iterable[str], what: str) -> str:
    """``what`` and ``names`` on a line; on the next, the nearest valid names, then all of them."""
    names, valid = list(names), sorted(valid)
    plural = "s" if len(names) > 1 else ""
    hints = []
    for name in names:
        near = difflib.get_close_matches(name, valid, n=1)
        if near:
            hints.append(f"did you mean {near[0]!r}" + (f" for {name!r}?" if plural else "?"))
    listed = ", ".join(repr(name) for name in names)
    return f"{what}{plural} {listed}\n" + " ".join(
        [*hints, f"The valid names: {', '.join(valid)}."]
    )


def apply(
    settings: Settings, tls: TLSOptions | None, overrides: Mapping[str, Any], extra: Iterable[str]
) -> tuple[Settings, TLSOptions | None]:
    """``settings`` and ``tls`` with the fields ``overrides`` names replaced.

    A ``persona`` among them brings its settings, under the others ``overrides``
    names (``fakepop.personas.expand``); a ``settings`` given whole is not changed by
    its own persona. An override of a ``TLSOptions`` field does nothing when ``tls`` is
    None (no TLS).

    Raises:
        TypeError: a name that is no field (the first, as Python names one), with the nearest
            valid name; ``extra`` are the caller's own keywords, listed too.
        ValueError: a value the field cannot take.
    """
    unknown = [name for name in overrides if name not in FIELDS]
    if unknown:
        raise TypeError(
            unknown_names(unknown[:1], [*FIELDS, *extra], "got an unexpected keyword argument")
        )
    overrides = expand(overrides)  # a persona's settings, under those given
    mine = {k: v for k, v in overrides.items() if FIELDS[k].owner is Settings}
    if mine:
        settings = dataclasses.replace(settings, **mine)
    theirs = {k: v for k, v in overrides.items() if FIELDS[k].owner is TLSOptions}
    if theirs and tls is not None:
        tls = dataclasses.replace(tls, **theirs)
    return settings, tls


def to_json(settings: Settings, tls: TLSOptions | None) -> dict[str, Any]:
    """Every field's value as JSON, keyed by field name; TLS fields only with TLS."""
    values: dict[str, Any] = {}
    for value in (settings, tls):
        if value is not None:
            for item in dataclasses.fields(value):
                values[item.name] = spec(item).kind.to_data(getattr(value, item.name))
    return values


def from_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """Field values from JSON (as ``to_json`` writes them), for ``POP3Server.change_settings``.

    Raises:
        TypeError: a key that is no field, with the nearest.
        ValueError: a value the field cannot take, naming the field.
    """
    unknown = [name for name in data if name not in FIELDS]
    if unknown:
        raise TypeError(unknown_names(unknown, FIELDS, "unknown setting"))
    values = {}
    for name, value in data.items():
        try:
            values[name] = FIELDS[name].kind.from_data(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return values


def check(name: str, value: Any) -> Any:
    """``value`` as field ``name`` keeps it, checked alone; ValueError saying why not."""
    made = FIELDS[name].owner(**{name: value})
    return getattr(made, name)


def json_schema(*, runtime: bool = False) -> dict[str, Any]:
    """The JSON Schema of ``to_json``'s object; with ``runtime``, of the fields that may change.

    Each property's description is the field's help; ``readOnly`` marks the fields that
    cannot change while the server runs.
    """
    properties = {}
    for name, item in FIELDS.items():
        if runtime and not item.runtime:
            continue
        properties[name] = {**item.kind.schema(), "description": item.help}
        if not item.runtime:
            properties[name]["readOnly"] = True
    return {"type": "object", "properties": properties, "additionalProperties": False}
