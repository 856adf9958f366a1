"""The settings of ``fakepop serve``: flags, ``FAKEPOP_*`` environment variables and a TOML file.

Every flag has an environment variable and a key in the configuration file, named after it:
``--tls-port`` is ``FAKEPOP_TLS_PORT`` and ``tls_port``. A flag beats its variable, which beats
the file, which beats the default. The repeatable settings (``--user``, ``--mailbox``,
``--tls-name``) add up across all three; in an environment variable their values are separated
by whitespace. A configuration file may say more than the flags can::

    host = "0.0.0.0"
    port = 1110
    control_port = 8110
    control_token = "s3cret"
    generate = 5
    seed = 7

    [users]                      # besides user = ["alice:secret", ...]
    alice = "secret"

    [mailboxes]                  # besides mailbox = ["alice=mail/alice.mbox", ...]
    alice = ["mail/alice.mbox", "mail/more/"]

    [server]                     # any other POP3Server option
    login_delay = 60
    sasl = ["PLAIN", "XOAUTH2"]

    [[faults]]                   # fault rules, as in a fault file
    on = "RETR"
    action = "drop"

Paths in the file are relative to the file.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakepop.mail.loaders import read_file
from fakepop.protocol.sasl import MECHANISMS
from fakepop.tls import CertificateFault

ENV_PREFIX = "FAKEPOP_"
# Sessions a long-running server remembers: a few MB of transcript, however long it runs.
TRANSCRIPT_LIMIT = 1000
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting that cannot be used; the message says where it came from and what to write."""


# --- values from text (a flag or an environment variable) ---------------------------------


def parse_port(text: str) -> int:
    """A TCP port, 0 for any free one."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"expected a port from 0 to 65535 (0: any free port), got {text!r}")
    return port


def parse_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"expected a whole number, 0 or more, got {text!r}")
    return count


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None


def parse_text(text: str) -> str:
    if not text:
        raise ValueError("expected a value, got nothing")
    return text


def parse_account(text: str) -> tuple[str, str]:
    """``NAME:PASSWORD``; the password may itself hold colons."""
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise ValueError(f"expected NAME:PASSWORD, got {text!r}")
    return name, password


def parse_mailbox(text: str) -> tuple[str, str]:
    """``NAME=PATH``: the mail at PATH goes to the account NAME."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ValueError(
            f"expected NAME=PATH (an .eml directory, an mbox or a Maildir), got {text!r}"
        )
    return name, path


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}, got {text!r}")


@dataclass(frozen=True)
class Option:
    """A setting of ``fakepop serve``: its flag, environment variable and configuration key.

    Attributes:
        flag: the command-line flag, e.g. ``--tls-port``.
        parse: turns a flag's or variable's text into the value; raises ValueError saying why.
        help: the flag's help text.
        metavar: what the flag's value is called in the help; None for a switch.
        repeat: the flag may be given more than once; its values add up.
        toml: the type the configuration file must give (a list of these when ``repeat``).
    """

    flag: str
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None
    repeat: bool = False
    toml: type | tuple[type, ...] = str

    @property
    def key(self) -> str:
        """The key in the configuration file and the attribute name: ``tls_port``."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        """The environment variable: ``FAKEPOP_TLS_PORT``."""
        return ENV_PREFIX + self.key.upper()

    @property
    def switch(self) -> bool:
        return self.metavar is None


OPTIONS: tuple[Option, ...] = (
    Option("--host", parse_text, "address the POP3 listeners bind (127.0.0.1)", "ADDRESS"),
    Option(
        "--port", parse_port, "POP3 port, with STLS; 0 for any free port (1110)", "PORT", toml=int
    ),
    Option(
        "--tls-port", parse_port, "POP3S (implicit TLS) port; 0 for any (1995)", "PORT", toml=int
    ),
    Option("--no-tls", parse_bool, "plain POP3 only: no STLS, no POP3S, no CA", toml=bool),
    Option("--require-tls", parse_bool, "refuse USER, PASS and APOP until under TLS", toml=bool),
    Option(
        "--tls-name",
        parse_text,
        "another host name or address for the certificate, besides localhost, 127.0.0.1 and"
        " ::1; repeatable",
        "NAME",
        repeat=True,
    ),
    Option(
        "--cert-dir",
        parse_text,
        "keep the CA here: reuse ca.pem and ca.key found there, else write new ones",
        "DIR",
    ),
    Option(
        "--user",
        parse_account,
        "an account; repeatable (default: user:password, with the demo maildrop)",
        "NAME:PASSWORD",
        repeat=True,
    ),
    Option(
        "--mailbox",
        parse_mailbox,
        "mail for an account: an .eml directory, an .eml file, an mbox or a Maildir; repeatable",
        "NAME=PATH",
        repeat=True,
    ),
    Option(
        "--generate", parse_count, "N generated messages in every account's maildrop", "N", toml=int
    ),
    Option("--seed", parse_int, "the seed of --generate: same seed, same mail (0)", "S", toml=int),
    Option("--locale", parse_text, "the Faker locale of --generate (en_US)", "LOCALE"),
    Option("--manifest", parse_text, "accounts and mail from a fakepop.toml manifest", "PATH"),
    Option(
        "--maildir",
        parse_text,
        "keep each maildrop on disk as the Maildir DIR/<account> instead of in memory",
        "DIR",
    ),
    Option("--faults", parse_text, "fault rules from a TOML or JSON fault file", "FILE"),
    Option(
        "--control-port",
        parse_port,
        "serve the HTTP control API (/api/v1) on this port; 0 for any (off by default)",
        "PORT",
        toml=int,
    ),
    Option("--control-host", parse_text, "address the control API binds (127.0.0.1)", "ADDRESS"),
    Option(
        "--control-token",
        parse_text,
        "require 'Authorization: Bearer TOKEN' on the control API",
        "TOKEN",
    ),
    Option(
        "--control-insecure",
        parse_bool,
        "allow the control API on a non-loopback address without a token",
        toml=bool,
    ),
    Option(
        "--transcript-limit",
        parse_count,
        "sessions remembered in the transcript (GET /transcript), each maildrop's retrieved"
        " and the faults fired; 0 keeps none (1000)",
        "N",
        toml=int,
    ),
    Option("--json", parse_bool, "print the ready line as one JSON object", toml=bool),
    Option("--config", parse_text, "read settings from this TOML file", "FILE"),
)
OPTION = {option.key: option for option in OPTIONS}

# POP3Server options a configuration file may set in its [server] table, with their types.
SERVER_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "hostname": str,
    "idle_timeout": (int, float),
    "max_line_length": int,
    "max_bad_commands": int,
    "max_sasl_length": int,
    "max_connections": int,
    "expire": int,
    "login_delay": int,
    "user_login": bool,
    "apop": bool,
    "utf8": bool,
    "last": bool,
    "sasl": list,
    "domains": list,
    "recent_prefix": bool,
    "auth_failure_delay": (int, float),
    "max_auth_failures": int,
    "stls": bool,
    "implicit_tls": bool,
    "tls_minimum": str,
    "tls_maximum": str,
    "key_type": str,
    "certificate_fault": str,
    "certificate": list,
}
_TLS_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


@dataclass
class ServeConfig:
    """Everything ``fakepop serve`` was told, from all sources, checked."""

    host: str = "127.0.0.1"
    port: int = 1110
    tls_port: int = 1995
    tls: bool = True
    require_tls: bool = False
    tls_names: list[str] = field(default_factory=list)
    cert_dir: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    mailboxes: list[tuple[str, Path]] = field(default_factory=list)
    generate: int = 0
    seed: int = 0
    locale: str = "en_US"
    manifest: Path | None = None
    maildir: Path | None = None
    fault_file: Path | None = None
    fault_rules: list[Any] = field(default_factory=list)  # [[faults]] tables of the config file
    fault_source: str = "faults"  # where fault_rules came from, for messages
    control_port: int | None = None
    control_host: str = "127.0.0.1"
    control_token: str | None = None
    control_insecure: bool = False
    json: bool = False
    transcript_limit: int = TRANSCRIPT_LIMIT
    server_options: dict[str, Any] = field(default_factory=dict)
    config_file: Path | None = None


def resolve(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ServeConfig:
    """Merge the flags given, the ``FAKEPOP_*`` variables and the configuration file.

    Args:
        flags: the values of the flags given on the command line, by key, already parsed
            (lists for the repeatable ones); flags not given are absent.
        environ: the environment; ``os.environ`` by default.

    Raises:
        ConfigError: a value that cannot be used, saying where it came from.
    """
    environ = os.environ if environ is None else environ
    from_env = _from_environment(environ)
    config_path = flags.get("config", from_env.get("config"))
    from_file: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    config_file = None
    if config_path is not None:
        config_file = Path(config_path)
        from_file, extras = _from_file(config_file)

    def pick(key: str, default: Any) -> Any:
        for source in (flags, from_env, from_file):
            if key in source:
                return source[key]
        return default

    def gather(key: str) -> list[Any]:
        return [*from_file.get(key, []), *from_env.get(key, []), *flags.get(key, [])]

    config = ServeConfig(
        host=pick("host", "127.0.0.1"),
        port=pick("port", 1110),
        tls_port=pick("tls_port", 1995),
        tls=not pick("no_tls", False),
        require_tls=pick("require_tls", False),
        tls_names=[str(name) for name in gather("tls_name")],
        cert_dir=_path(pick("cert_dir", None)),
        users={**extras.get("users", {}), **dict(gather("user"))},
        mailboxes=[
            *extras.get("mailboxes", []),
            *((name, Path(path)) for name, path in gather("mailbox")),
        ],
        generate=pick("generate", 0),
        seed=pick("seed", 0),
        locale=pick("locale", "en_US"),
        manifest=_path(pick("manifest", None)),
        maildir=_path(pick("maildir", None)),
        fault_file=_path(pick("faults", None)),
        fault_rules=extras.get("faults", []),
        fault_source=config_file.name if config_file else "faults",
        control_port=pick("control_port", None),
        control_host=pick("control_host", "127.0.0.1"),
        control_token=pick("control_token", None),
        control_insecure=pick("control_insecure", False),
        json=pick("json", False),
        transcript_limit=pick("transcript_limit", TRANSCRIPT_LIMIT),
        server_options=extras.get("server", {}),
        config_file=config_file,
    )
    if config.require_tls and not config.tls:
        raise ConfigError("--require-tls needs TLS, and --no-tls turns it off: drop one of them")
    return config


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        text = environ.get(option.env, "")
        if not text.strip():
            continue  # an empty variable is unset: compose files often pass "" for "not given"
        try:
            if option.repeat:
                values[option.key] = [option.parse(word) for word in text.split()]
            else:
                values[option.key] = option.parse(text)
        except ValueError as e:
            raise ConfigError(f"{option.env}: {e}") from None
    return values


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``FAKEPOP_*`` variables that name no setting: most likely misspelt."""
    known = {option.env for option in OPTIONS}
    return sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)


def _from_file(file: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of a configuration file: (values by option key, the tables beyond them)."""
    try:
        data = tomllib.loads(read_file(file).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config: no file at {file}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML: {e}") from None
    except (OSError, ValueError) as e:  # not a regular file, or not UTF-8
        raise ConfigError(f"--config: cannot read {file}: {e}") from None
    base = file.parent
    name = file.name
    values: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    tables = {"users", "mailboxes", "server"}
    for key, value in data.items():
        where = f"{name}: {key}"
        if key == "faults":
            if isinstance(value, str):
                values["faults"] = str(base / value)
            elif isinstance(value, list):
                extras["faults"] = value
            else:
                raise ConfigError(f"{where}: give a fault file's path or [[faults]] tables")
            continue
        if key in tables:
            extras[key] = _table(key, value, base, where)
            continue
        option = OPTION.get(key)
        if option is None or key == "config":
            allowed = sorted({*OPTION, *tables, "faults"} - {"config"})
            raise ConfigError(f"{where}: unknown key; the keys are {', '.join(allowed)}")
        values[key] = _file_value(option, value, base, where)
    return values, extras


def _file_value(option: Option, value: Any, base: Path, where: str) -> Any:
    items = value if option.repeat else [value]
    if option.repeat and not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, e.g. {option.key} = [...]")
    parsed: list[Any] = []
    for item in items:
        if not isinstance(item, option.toml) or (option.toml is int and isinstance(item, bool)):
            kind = option.toml.__name__ if isinstance(option.toml, type) else "number"
            raise ConfigError(f"{where}: expected {kind}, got {item!r}")
        # Switches come typed from TOML; text and numbers go through the flag's checks.
        try:
            result: Any = item if isinstance(item, bool) else option.parse(str(item))
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
        if option.key == "mailbox":
            account, path = result
            result = (account, str(base / path))
        parsed.append(result)
    if option.key in ("cert_dir", "manifest", "maildir"):
        return str(base / parsed[0])
    return parsed if option.repeat else parsed[0]


def _table(key: str, value: Any, base: Path, where: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, [{key}]")
    if key == "users":
        for name, password in value.items():
            if not isinstance(password, str):
                raise ConfigError(f"{where}.{name}: the password must be a string")
        return dict(value)
    if key == "mailboxes":
        result: list[tuple[str, Path]] = []
        for name, paths in value.items():
            for path in paths if isinstance(paths, list) else [paths]:
                if not isinstance(path, str):
                    raise ConfigError(f"{where}.{name}: expected a path or a list of paths")
                result.append((name, base / path))
        return result
    return _server_options(value, base, where)


def _server_options(table: dict[str, Any], base: Path, where: str) -> dict[str, Any]:
    """POP3Server keyword arguments from a [server] table, checked and converted."""
    options: dict[str, Any] = {}
    for key, value in table.items():
        kind = SERVER_OPTIONS.get(key)
        if kind is None:
            raise ConfigError(
                f"{where}.{key}: unknown option; the options are {', '.join(SERVER_OPTIONS)}"
            )
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _types(kind)):
            names = "/".join(t.__name__ for t in _types(kind))
            raise ConfigError(f"{where}.{key}: expected {names}, got {value!r}")
        options[key] = _server_option(key, value, base, f"{where}.{key}")
    return options


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _server_option(key: str, value: Any, base: Path, where: str) -> Any:
    if key in ("sasl", "domains"):
        if not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{where}: expected a list of strings")
        if key == "sasl":
            unknown = [m for m in value if m.upper() not in MECHANISMS]
            if unknown:
                raise ConfigError(
                    f"{where}: unknown mechanism {', '.join(unknown)};"
                    f" the mechanisms are {', '.join(MECHANISMS)}"
                )
        return tuple(value)
    if key in ("tls_minimum", "tls_maximum"):
        if value not in _TLS_VERSIONS:
            raise ConfigError(f"{where}: expected one of {', '.join(_TLS_VERSIONS)}")
        return _TLS_VERSIONS[value]
    if key == "key_type" and value not in ("ecdsa", "rsa"):
        raise ConfigError(f"{where}: expected 'ecdsa' or 'rsa'")
    if key == "certificate_fault":
        choices = [fault.value for fault in CertificateFault]
        if value not in choices:
            raise ConfigError(f"{where}: expected one of {', '.join(choices)}")
    if key == "certificate":
        if len(value) != 2 or not all(isinstance(item, str) for item in value):
            raise ConfigError(f'{where}: expected ["chain.pem", "key.pem"]')
        return (base / value[0], base / value[1])
    return value
