"""The pytest plugin: a POP3 server for a test, configured by a marker and options.

Installing fakepop registers it (the ``pytest11`` entry point). Fixtures:
``pop3_server``, ``pop3_mailbox``, ``pop3_ssl_context``, ``pop3_server_factory``
and ``pop3_authority``; ``pop3_server_fixture`` makes one of a server shared by a
module or a session. A failing test's report gets a "POP3 transcript" section;
in strict mode a client that breaks the RFCs fails its test at teardown.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import pytest

from fakepop.settings import FIELDS, Field, Settings, Switch, TLSOptions, check, unknown_names

# The server, TLS and mail modules are imported by the fixtures that use them: the plugin
# is loaded by every pytest run wherever fakepop is installed, and should cost it nothing.
if TYPE_CHECKING:
    import ssl

    from fakepop.mail.store import Mailbox
    from fakepop.server import POP3Server
    from fakepop.tls import Authority

DEFAULT_USER = "user"
DEFAULT_PASSWORD = "password"  # as smtpdfix and GreenMail users expect

# Marker and factory arguments that are the plugin's own; the rest go to POP3Server.
_OWN = {"messages", "fixtures", "generate", "seed", "locale", "strict", "transcript"}

SERVERS = pytest.StashKey[list["POP3Server"]]()  # the servers a test made, for its report
SHOW_TRANSCRIPT = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fakepop", "fakepop POP3 test server")
    parser.addini(
        "fakepop_tls", "servers have TLS ready (STLS and implicit TLS)", type="bool", default=True
    )
    parser.addini(
        "fakepop_strict", "fail tests whose client breaks the POP3 RFCs", type="bool", default=False
    )
    parser.addini(
        "fakepop_transcript",
        "add the POP3 transcript to failing tests' reports",
        type="bool",
        default=True,
    )
    # Every field of Settings and TLSOptions: an ini line and a command-line option; whether
    # servers have TLS comes after where they listen.
    for item in FIELDS.values():
        kind = item.kind
        flag = "--fakepop-" + item.name.replace("_", "-")
        parser.addini(f"fakepop_{item.name}", item.help, default="")
        if isinstance(kind, Switch):
            group.addoption(
                flag, action=argparse.BooleanOptionalAction, default=None, help=item.help
            )
        else:
            repeat = "; repeatable" if kind.repeat else ""
            group.addoption(
                flag,
                action="append" if kind.repeat else "store",
                metavar=kind.metavar,
                help=item.help + repeat,
            )
        if item.name == "port":
            group.addoption(
                "--fakepop-tls",
                action=argparse.BooleanOptionalAction,
                default=None,
                help="servers have TLS ready (--no-fakepop-tls: plain only)",
            )
    group.addoption(
        "--fakepop-strict",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fail tests whose POP3 client breaks the RFCs",
    )
    group.addoption(
        "--fakepop-transcript",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the POP3 transcript of failing tests (--no-fakepop-transcript: don't)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "fakepop(**options): configure pop3_server for this test: POP3Server's options"
        " (users=, tls=, faults=, settings=, and any field of fakepop.Settings or"
        " fakepop.TLSOptions: idle_timeout=, ...), and messages= (bytes, text, email"
        " messages, or paths to load), fixtures= (a directory with fakepop.toml; paths are"
        " read from the test file's directory, fakepop:NAME is a sample), generate=N"
        " with seed= and locale=, strict=, transcript=",
    )
    _defaults(config)  # a bad option stops the run here, not in every test that uses a server


def _setting(config: pytest.Config, name: str) -> Any:
    value = config.getoption(f"fakepop_{name}")
    return config.getini(f"fakepop_{name}") if value is None else value


def _field(config: pytest.Config, item: Field) -> tuple[bool, Any]:
    """(whether the command line or the ini file gives the field, the value it gives)."""
    given = config.getoption(f"fakepop_{item.name}")
    if given is None:
        given = config.getini(f"fakepop_{item.name}").strip()
        if not given:
            return False, None
    if isinstance(given, bool):
        return True, given
    texts = given if isinstance(given, list) else [given]
    kind = item.kind
    label = item.name.replace("_", " ")
    try:
        parsed = [kind.from_text(text) for text in texts]
    except ValueError:
        bad = " ".join(texts)
        raise pytest.UsageError(f"fakepop {label} must be {kind.expected}, got {bad!r}") from None
    value = tuple(x for words in parsed for x in words) if kind.repeat else parsed[-1]
    try:
        return True, check(item.name, value)
    except ValueError as e:
        raise pytest.UsageError(f"fakepop {label}: {e}") from None


def _defaults(config: pytest.Config) -> dict[str, Any]:
    defaults = {name: _setting(config, name) for name in ("tls", "strict", "transcript")}
    for item in FIELDS.values():
        given, value = _field(config, item)
        if given:
            defaults[item.name] = value
    return defaults


@pytest.fixture(scope="session")
def pop3_authority(pytestconfig: pytest.Config) -> Authority:
    """The test session's CA, kept in pytest's cache (``.pytest_cache/d/fakepop/ca.pem``)."""
    from fakepop.tls import Authority

    cache = getattr(pytestconfig, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return Authority()
    # The cache is fakepop's own: files there that are no CA (cut short, or from an older
    # fakepop) are replaced, not refused.
    return Authority.load_or_create(cache.mkdir("fakepop"), replace=True)


@pytest.fixture
def pop3_server_factory(
    request: pytest.FixtureRequest, pop3_authority: Authority
) -> Iterator[Callable[..., POP3Server]]:
    """Make started servers with any options; each is stopped and checked at teardown.

    Takes POP3Server's keyword arguments and the marker's own: ``messages``,
    ``fixtures``, ``generate`` (with ``seed``, ``locale``), ``strict``. Relative
    paths in ``messages`` and ``fixtures`` are read from the test file's directory.
    """
    defaults = _defaults(request.config)
    servers: list[POP3Server] = []
    request.node.stash[SERVERS] = servers
    request.node.stash.setdefault(SHOW_TRANSCRIPT, defaults["transcript"])
    strict: list[POP3Server] = []

    def make(**options: Any) -> POP3Server:
        server, own = _start(defaults, pop3_authority, options, request.path.parent)
        servers.append(server)
        if own.get("strict"):
            strict.append(server)
        if "transcript" in options:
            request.node.stash[SHOW_TRANSCRIPT] = options["transcript"]
        return server

    yield make

    errors: list[Exception] = []
    for server in servers:
        try:
            server.stop()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else ExceptionGroup("fakepop server errors", errors)
    found = [f"session {n}: {text}" for server in strict for n, text in server.violations]
    if found:
        pytest.fail(
            "the POP3 client broke the RFCs (fakepop strict mode):\n  " + "\n  ".join(found),
            pytrace=False,
        )


def _start(
    defaults: dict[str, Any], authority: Authority, options: dict[str, Any], base: Path
) -> tuple[POP3Server, dict[str, Any]]:
    """A started server made from the run's defaults and ``options``, and the plugin's own
    options among them (``strict``, ``transcript``, ...); relative paths are read from
    ``base``."""
    from fakepop.server import POP3Server

    unknown = _unknown(options)
    if unknown:
        raise TypeError(unknown)

    # A whole Settings (or TLSOptions) given replaces the options' values of its fields.
    given = [
        owner
        for owner, key in ((Settings, "settings"), (TLSOptions, "tls"))
        if isinstance(options.get(key), owner)
    ]
    kept = {k: v for k, v in defaults.items() if k not in FIELDS or FIELDS[k].owner not in given}
    settings = {**kept, **options}
    own = {key: settings.pop(key) for key in _OWN if key in settings}
    if settings.get("tls"):
        settings.setdefault("authority", authority)
    server = POP3Server(**settings)
    if not server.users and "users" not in options and "fixtures" not in own:
        server.users[DEFAULT_USER] = DEFAULT_PASSWORD
    _fill(server, own, base)
    server.start()
    return server, own


def _unknown(options: dict[str, Any]) -> str | None:
    """What is wrong with ``options``' names, with the nearest valid one; None if nothing."""
    from fakepop.server import KEYWORDS

    valid = [*FIELDS, *KEYWORDS, *_OWN]
    names = [name for name in options if name not in valid]
    return unknown_names(names, valid, "unknown option") if names else None


def _failing(key: str, call: Callable[[], object]) -> None:
    """``call()``; a path that cannot be read fails the test with the message alone."""
    try:
        call()
    except (OSError, ValueError) as e:  # ManifestError is one
        error = f"@pytest.mark.fakepop({key}=...): {e}"
    else:
        return
    pytest.fail(error, pytrace=False)


def _fill(server: POP3Server, own: dict[str, Any], base: Path) -> None:
    """Give the server the mail the marker asks for; relative paths are read from ``base``."""
    from fakepop.mail.fill import add_mail
    from fakepop.mail.loaders import mail_path

    def located(item: Any) -> Any:
        if isinstance(item, os.PathLike) or (isinstance(item, str) and "\n" not in item):
            return mail_path(item, base)
        return item  # a message

    # A path the test got wrong fails it with the full path tried, not fakepop's traceback.
    if "fixtures" in own:
        _failing("fixtures", lambda: server.load_manifest(located(own["fixtures"])))
    if not server.users:
        return
    mailbox = server.mailbox(next(iter(server.users)))
    messages = own.get("messages", ())
    _failing("messages", lambda: add_mail(mailbox, [located(item) for item in messages]))
    if own.get("generate"):
        from fakepop.mail.generate import FakerMissing, generate_messages

        seed, locale = own.get("seed", 0), own.get("locale", "en_US")
        try:
            made = generate_messages(own["generate"], seed=seed, locale=locale)
        except FakerMissing as e:
            pytest.fail(f"@pytest.mark.fakepop(generate=...): {e}", pytrace=False)
        add_mail(mailbox, made)


@pytest.fixture
def pop3_server(
    request: pytest.FixtureRequest, pop3_server_factory: Callable[..., POP3Server]
) -> POP3Server:
    """A started server for this test: account ``user`` / ``password``, TLS ready.

    ``@pytest.mark.fakepop(...)`` configures it; see the marker's help.
    """
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("fakepop"))):
        if marker.args:
            raise pytest.UsageError("@pytest.mark.fakepop takes keyword arguments only")
        options.update(marker.kwargs)
    unknown = _unknown(options)
    if unknown:  # the test's own mistake: its message, not fakepop's traceback
        pytest.fail(f"@pytest.mark.fakepop: {unknown}", pytrace=False)
    return pop3_server_factory(**options)


Scope = Literal["class", "module", "package", "session"]
SCOPES: tuple[Scope, ...] = get_args(Scope)


def pop3_server_fixture(*, scope: Scope = "module", **options: Any) -> Any:
    """Make a fixture: one server for a whole module (or class, package, session), put
    back as it started after every test that uses it.

    For a maildrop too large to make for every test::

        big = pop3_server_fixture(scope="module", generate=5000, seed=1)

        def test_fetch(big):
            client = poplib.POP3(big.host, big.port)

    The fixture takes the name it is assigned to, in a test module or a ``conftest.py``.
    ``options`` are the marker's (``users=``, ``messages=``, ``generate=``, ``faults=``,
    ``strict=``, any setting...); the server is made, filled and started once. After
    each test that used it, ``POP3Server.restore()`` puts back the accounts, passwords,
    tokens, messages (same UIDs, same bytes; nothing retrieved or deleted), fault rules
    and settings, closes any session still open and empties the transcript: each test's
    report shows its own sessions, and strict mode checks each test's own. With
    ``maildir=`` the files a test took away are written again, under their own names. Relative
    paths in ``messages`` and ``fixtures`` are read from the directory of the file that
    calls this.

    A scope that is not one of ``SCOPES`` fails the collection of the module, with the
    message alone.
    """
    # Relative paths are read from the directory of the file that makes the fixture.
    where = sys._getframe(1).f_globals.get("__file__")
    home = Path(where).parent if where else None
    if scope not in SCOPES:
        pytest.fail(
            f"pop3_server_fixture(scope={scope!r}): the scope must be one of"
            f" {', '.join(SCOPES)}; for one test, use pop3_server and @pytest.mark.fakepop",
            pytrace=False,
        )

    @pytest.fixture(scope=scope)
    def shared_server(
        request: pytest.FixtureRequest, pop3_authority: Authority
    ) -> Iterator[POP3Server]:
        defaults = _defaults(request.config)
        base = home or request.path.parent
        server, own = _start(defaults, pop3_authority, dict(options), base)
        shared = request.config.stash.setdefault(SHARED, {})
        shared[id(server)] = _Shared(server, bool(own.get("strict")), own.get("transcript", True))
        try:
            server.checkpoint()
            yield server
        finally:
            del shared[id(server)]
            server.stop()

    return shared_server


@dataclass(frozen=True)
class _Shared:
    """A server of ``pop3_server_fixture``, and what the marker said of its tests' reports."""

    server: POP3Server
    strict: bool
    transcript: bool


SHARED = pytest.StashKey[dict[int, _Shared]]()  # by id(server), while its fixture lives
KEPT = pytest.StashKey[list[str]]()  # a test's transcripts of shared servers, now put back


def _shared_in(item: pytest.Item) -> list[_Shared]:
    """The shared servers ``item`` uses, through any of its fixtures."""
    shared = item.config.stash.get(SHARED, {})
    if not shared:
        return []
    values = getattr(item, "funcargs", {}).values()
    found = {id(v): shared[id(v)] for v in values if id(v) in shared and shared[id(v)].server is v}
    return list(found.values())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    yield
    shared = _shared_in(item)
    if shared:
        item.stash.setdefault(SERVERS, []).extend(s.server for s in shared)
        item.stash.setdefault(SHOW_TRANSCRIPT, all(s.transcript for s in shared))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    shared = _shared_in(item)
    try:
        yield
    finally:
        if shared:
            _put_back(item, shared)


def _put_back(item: pytest.Item, shared: list[_Shared]) -> None:
    """After a test: check the shared servers it used as pop3_server's teardown does, then
    put them back for the next test."""
    __tracebackhide__ = True
    found: list[str] = []
    errors: list[Exception] = []
    kept = item.stash.setdefault(KEPT, [])
    for one in shared:
        server = one.server
        if one.strict:
            found += [f"session {n}: {text}" for n, text in server.violations]
        try:
            if server.running:  # else its fixture ended with the test: nothing to put back
                if len(server.transcript):
                    kept.append(server.transcript.text())  # for the teardown's report
                server.restore()
            server.check()
        except Exception as e:
            errors.append(e)
    if errors:
        raise errors[0] if len(errors) == 1 else ExceptionGroup("fakepop server errors", errors)
    if found:
        pytest.fail(
            "the POP3 client broke the RFCs (fakepop strict mode):\n  " + "\n  ".join(found),
            pytrace=False,
        )


@pytest.fixture
def pop3_mailbox(pop3_server: POP3Server) -> Mailbox:
    """The maildrop of ``pop3_server``'s first account (``user`` unless the marker says)."""
    return pop3_server.mailbox(next(iter(pop3_server.users)))


@pytest.fixture
def pop3_ssl_context(pop3_server: POP3Server) -> ssl.SSLContext:
    """A client context that trusts ``pop3_server``'s CA and checks host names."""
    return pop3_server.client_ssl_context()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    servers = item.stash.get(SERVERS, [])
    if report.failed and servers and item.stash.get(SHOW_TRANSCRIPT, True):
        texts = [server.transcript.text() for server in servers if len(server.transcript)]
        # A shared server is put back before its test's teardown is reported: its text was kept.
        text = "\n".join(texts + item.stash.get(KEPT, []))
        if text:
            report.sections.append(("POP3 transcript", text))
    return report
