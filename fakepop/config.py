"""The settings of ``fakepop serve``: flags, ``FAKEPOP_*`` environment variables and a TOML file.

Every field of ``fakepop.Settings`` and ``fakepop.TLSOptions`` is a flag, an environment variable
and a key of the configuration file, named after it: ``tls_port`` is ``--tls-port``,
``FAKEPOP_TLS_PORT`` and ``tls_port`` (at the top of the file or in its ``[server]`` table); so
are the options of ``serve`` itself (``--user``, ``--control-port``, ...). A flag beats its
variable, which beats the file, which beats the default. The repeatable settings (``--user``,
``--mailbox``, and the fields that are lists: ``--tls-name``, ``--sasl``, ...) add up across all
three; in an environment variable their values are separated by whitespace. A configuration
file may say more than the flags can::

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

    [server]                     # fields of Settings and TLSOptions
    login_delay = 60
    sasl = ["PLAIN", "XOAUTH2"]

    [[faults]]                   # fault rules, as in a fault file
    on = "RETR"
    action = "drop"

Paths in the file are relative to the file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakepop.log import LOG_FORMATS, LogFormat
from fakepop.mail.loaders import SAMPLE_PREFIX, read_file
from fakepop.personas import expand
from fakepop.settings import (
    COMMAND_LINE,
    CONTROL,
    FAULTS,
    FIELDS,
    MAIL,
    TLS,
    Field,
    Settings,
    Switch,
    TLSOptions,
    check,
    unknown_names,
)

ENV_PREFIX = "FAKEPOP_"
# Sessions a long-running server remembers: a few MB of transcript, however long it runs.
TRANSCRIPT_LIMIT = 1000
# Where serve's defaults differ from a test's: the standard ports, plus 1000, and a bound memory.
SERVE_DEFAULTS: dict[str, Any] = {
    "port": 1110,
    "tls_port": 1995,
    "transcript_limit": TRANSCRIPT_LIMIT,
}
ALIASES = {"tls_name": "tls_names"}  # the name a field's flag, variable and key had before it


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


parse_bool = Switch().from_text


@dataclass(frozen=True)
class Option:
    """A setting of ``fakepop serve``: its flag, environment variable and configuration key.

    Attributes:
        flag: the command-line flag, e.g. ``--tls-port``.
        parse: turns a flag's or variable's text into the value (one item of a repeatable
            setting); raises ValueError saying why.
        help: the flag's help text.
        section: the section of the README, and of ``--help``, the flag is listed under.
        metavar: what the flag's value is called in the help; None for a switch.
        repeat: the flag may be given more than once; its values add up.
        toml: the type the configuration file must give (a list of these when ``repeat``).
        field: the field of ``Settings`` or ``TLSOptions`` it sets, if it sets one.
    """

    flag: str
    parse: Callable[[str], Any]
    help: str
    section: str
    metavar: str | None = None
    repeat: bool = False
    toml: type | tuple[type, ...] = str
    field: Field | None = None

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

    @property
    def aliases(self) -> list[str]:
        """The keys it had before: still read from flags, variables and files."""
        return [old for old, new in ALIASES.items() if new == self.key]

    def from_data(self, value: Any) -> Any:
        """The value a configuration file gives (a list when ``repeat``); ValueError if bad."""
        if self.field is not None:
            checked = check(self.field.name, self.field.kind.from_data(value))
            return list(checked) if self.repeat else checked
        if self.repeat and not isinstance(value, list):
            raise ValueError(f"expected a list, e.g. {self.key} = [...]")
        parsed = []
        for item in value if self.repeat else [value]:
            if not isinstance(item, self.toml) or (self.toml is int and isinstance(item, bool)):
                kind_name = self.toml.__name__ if isinstance(self.toml, type) else "number"
                raise ValueError(f"expected {kind_name}, got {item!r}")
            # Switches come typed from TOML; text and numbers go through the flag's checks.
            parsed.append(item if isinstance(item, bool) else self.parse(str(item)))
        return parsed if self.repeat else parsed[0]


def _field_option(item: Field) -> Option:
    """A field as an option of serve; its help shows serve's default, which may differ."""
    kind = item.kind
    default = SERVE_DEFAULTS.get(item.name, item.default)
    shown = kind.to_data(default)
    if isinstance(shown, list):
        shown = " ".join("=".join(x) if isinstance(x, list) else str(x) for x in shown)
    help = item.help + ("; repeatable" if kind.repeat else "")
    if shown is not None and shown != "" and not isinstance(shown, bool):
        help += f" ({shown})"

    def parse(text: str) -> Any:
        value = check(item.name, kind.from_text(text))
        if not kind.repeat:
            return value
        if len(value) != 1:  # a variable's words come one at a time
            raise ValueError(f"expected one {kind.metavar}, got {text!r}")
        return value[0]

    return Option(
        item.flag,
        parse,
        help,
        item.spec.section,
        metavar=None if isinstance(kind, Switch) else kind.metavar,
        repeat=kind.repeat,
        field=item,
    )


OPTIONS: tuple[Option, ...] = (
    Option("--no-tls", parse_bool, "plain POP3 only: no STLS, no POP3S, no CA", TLS, toml=bool),
    Option(
        "--cert-dir",
        parse_text,
        "keep the CA here: reuse ca.pem and ca.key found there, else write new ones",
        TLS,
        "DIR",
    ),
    Option(
        "--user",
        parse_account,
        "an account; repeatable (default: user:password, with the demo maildrop)",
        MAIL,
        "NAME:PASSWORD",
        repeat=True,
    ),
    Option(
        "--mailbox",
        parse_mailbox,
        "mail for an account: an .eml directory, an .eml file, an mbox, a Maildir, or a"
        " sample (fakepop:many.mbox); repeatable",
        MAIL,
        "NAME=PATH",
        repeat=True,
    ),
    Option(
        "--generate",
        parse_count,
        "N generated messages in every account's maildrop",
        MAIL,
        "N",
        toml=int,
    ),
    Option(
        "--seed", parse_int, "the seed of --generate: same seed, same mail (0)", MAIL, "S", toml=int
    ),
    Option("--locale", parse_text, "the Faker locale of --generate (en_US)", MAIL, "LOCALE"),
    Option(
        "--manifest",
        parse_text,
        "accounts and mail from a fakepop.toml manifest (the samples': fakepop:fakepop.toml)",
        MAIL,
        "PATH",
    ),
    Option("--faults", parse_text, "fault rules from a TOML or JSON fault file", FAULTS, "FILE"),
    Option(
        "--control-port",
        parse_port,
        "serve the HTTP control API (/api/v1) on this port; 0 for any (off by default)",
        CONTROL,
        "PORT",
        toml=int,
    ),
    Option(
        "--control-host",
        parse_text,
        "address the control API binds (127.0.0.1)",
        CONTROL,
        "ADDRESS",
    ),
    Option(
        "--control-token",
        parse_text,
        "require 'Authorization: Bearer TOKEN' on the control API",
        CONTROL,
        "TOKEN",
    ),
    Option(
        "--control-insecure",
        parse_bool,
        "allow the control API on a non-loopback address without a token",
        CONTROL,
        toml=bool,
    ),
    Option(
        "--json", parse_bool, "print the ready line as one JSON object", COMMAND_LINE, toml=bool
    ),
    Option("--config", parse_text, "read settings from this TOML file", COMMAND_LINE, "FILE"),
    *(_field_option(item) for item in FIELDS.values()),
)
OPTION = {option.key: option for option in OPTIONS}
_TABLES = ("users", "mailboxes", "server")


@dataclass
class ServeConfig:
    """Everything ``fakepop serve`` was told, from all sources, checked."""

    settings: Settings = field(default_factory=lambda: Settings(**_of(Settings, SERVE_DEFAULTS)))
    tls: TLSOptions | None = field(
        default_factory=lambda: TLSOptions(**_of(TLSOptions, SERVE_DEFAULTS))
    )
    cert_dir: Path | None = None
    users: dict[str, str] = field(default_factory=dict)
    mailboxes: list[tuple[str, Path]] = field(default_factory=list)
    generate: int = 0
    seed: int = 0
    locale: str = "en_US"
    manifest: Path | None = None
    fault_file: Path | None = None
    fault_rules: list[Any] = field(default_factory=list)  # [[faults]] tables of the config file
    fault_source: str = "faults"  # where fault_rules came from, for messages
    control_port: int | None = None
    control_host: str = "127.0.0.1"
    control_token: str | None = None
    control_insecure: bool = False
    json: bool = False
    config_file: Path | None = None

    # What the rest of serve asks most often, said once here.
    @property
    def host(self) -> str:
        return self.settings.host

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def tls_port(self) -> int:
        return 0 if self.tls is None else self.tls.tls_port

    @property
    def require_tls(self) -> bool:
        return self.settings.require_tls

    @property
    def maildir(self) -> Path | None:
        return self.settings.maildir


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
    sources = (flags, from_env, from_file)

    def pick(key: str, default: Any) -> Any:
        for source in sources:
            if key in source:
                return source[key]
        return default

    def gather(key: str) -> list[Any]:
        return [*from_file.get(key, []), *from_env.get(key, []), *flags.get(key, [])]

    values: dict[str, Any] = {}
    for name in FIELDS:
        if any(name in source for source in sources):
            values[name] = tuple(gather(name)) if OPTION[name].repeat else pick(name, None)
        elif name in SERVE_DEFAULTS:
            values[name] = SERVE_DEFAULTS[name]
    values = expand(values)  # a persona's settings, under those given
    tls = not pick("no_tls", False)
    if values.get("require_tls") and not tls:
        raise ConfigError("--require-tls needs TLS, and --no-tls turns it off: drop one of them")
    try:
        settings = Settings(**_of(Settings, values))
        tls_options = TLSOptions(**_of(TLSOptions, values)) if tls else None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return ServeConfig(
        settings=settings,
        tls=tls_options,
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
        fault_file=_path(pick("faults", None)),
        fault_rules=extras.get("faults", []),
        fault_source=config_file.name if config_file else "faults",
        control_port=pick("control_port", None),
        control_host=pick("control_host", "127.0.0.1"),
        control_token=pick("control_token", None),
        control_insecure=pick("control_insecure", False),
        json=pick("json", False),
        config_file=config_file,
    )


def _of(owner: type, values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if FIELDS[name].owner is owner}


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for option in OPTIONS:
        for key in (*option.aliases, option.key):
            env = ENV_PREFIX + key.upper()
            text = environ.get(env, "")
            if not text.strip():
                continue  # an empty variable is unset: compose files often pass "" for "not given"
            try:
                if option.repeat:
                    items = option.field.kind.split(text) if option.field else text.split()
                    words = [option.parse(word) for word in items]
                    values[option.key] = [*values.get(option.key, []), *words]
                else:
                    values[option.key] = option.parse(text)
            except ValueError as e:
                raise ConfigError(f"{env}: {e}") from None
    return values


# Serve's output (-v, --log-format) rather than the server's behaviour: no key of the file, but
# a variable, for a container set up by its environment alone.
VERBOSE = ENV_PREFIX + "VERBOSE"
LOG_FORMAT = ENV_PREFIX + "LOG_FORMAT"


def output_from_environment(environ: Mapping[str, str]) -> tuple[int | None, LogFormat | None]:
    """``FAKEPOP_VERBOSE`` (0, 1 or 2, as -v and -vv) and ``FAKEPOP_LOG_FORMAT``; None if unset.

    Raises:
        ConfigError: a value that is none of those allowed.
    """
    verbose = environ.get(VERBOSE, "").strip() or None
    if verbose is not None and verbose not in ("0", "1", "2"):
        raise ConfigError(f"{VERBOSE}: expected 0, 1 (as -v) or 2 (as -vv), got {verbose!r}")
    log_format = environ.get(LOG_FORMAT, "").strip() or None
    if log_format is not None and log_format not in LOG_FORMATS:
        raise ConfigError(f"{LOG_FORMAT}: expected {' or '.join(LOG_FORMATS)}, got {log_format!r}")
    return None if verbose is None else int(verbose), log_format


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``FAKEPOP_*`` variables that name no setting: most likely misspelt."""
    known = {ENV_PREFIX + key.upper() for key in (*OPTION, *ALIASES)} | {VERBOSE, LOG_FORMAT}
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
        if key in _TABLES:
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: expected a table, [{key}]")
            if key == "server":
                for field_name, item in value.items():
                    _file_value(values, field_name, item, base, f"{where}.{field_name}", True)
            else:
                extras[key] = _table(key, value, base, where)
            continue
        _file_value(values, key, value, base, where, False)
    return values, extras


def _file_value(
    values: dict[str, Any], key: str, value: Any, base: Path, where: str, server: bool
) -> None:
    """Read ``key`` of the file (of its [server] table if ``server``) into ``values``."""
    key = ALIASES.get(key, key)
    option = OPTION.get(key)
    if server and (option is None or option.field is None):
        valid = [name for name in OPTION if OPTION[name].field is not None]
        raise ConfigError(f"{where}: " + unknown_names([key], valid, "unknown option"))
    if option is None or key == "config":
        allowed = sorted({*OPTION, *_TABLES, "faults"} - {"config"})
        raise ConfigError(f"{where}: unknown key; the keys are {', '.join(allowed)}")
    if key in values:
        raise ConfigError(
            f"{where}: given twice in the file (at its top and in [server]): keep one"
        )
    try:
        parsed = option.from_data(value)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if key == "mailbox":
        parsed = [(account, _beside(base, path)) for account, path in parsed]
    elif key == "manifest":
        parsed = _beside(base, parsed)
    elif key == "cert_dir":
        parsed = str(base / parsed)
    values[key] = _rebase(parsed, base)


def _beside(base: Path, path: str) -> str:
    """A mail path of the file: relative to the file, unless it names a sample (fakepop:...)."""
    return path if path.startswith(SAMPLE_PREFIX) else str(base / path)


def _rebase(value: Any, base: Path) -> Any:
    """Paths in the file are relative to the file."""
    if isinstance(value, Path):
        return base / value
    if isinstance(value, tuple) and all(isinstance(item, Path) for item in value) and value:
        return tuple(base / item for item in value)
    return value


def _table(key: str, value: dict[str, Any], base: Path, where: str) -> Any:
    if key == "users":
        for name, password in value.items():
            if not isinstance(password, str):
                raise ConfigError(f"{where}.{name}: the password must be a string")
        return dict(value)
    result: list[tuple[str, Path]] = []
    for name, paths in value.items():
        for path in paths if isinstance(paths, list) else [paths]:
            if not isinstance(path, str):
                raise ConfigError(f"{where}.{name}: expected a path or a list of paths")
            result.append((name, Path(_beside(base, path))))
    return result
