"""The settings schema: every field reaches every surface, and only the run-time ones change."""

from __future__ import annotations

import argparse
import dataclasses
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest

from fakepop import POP3Server, Settings, TLSOptions
from fakepop.cli import _parser
from fakepop.config import ConfigError, resolve
from fakepop.control import ControlClient, ControlError, ControlServer
from fakepop.protocol.sasl import MECHANISMS
from fakepop.settings import (
    CERTIFICATE_FAULTS,
    FIELDS,
    RUNTIME,
    SECTIONS,
    Choice,
    Field,
    File,
    FixedSettingError,
    Kind,
    Language,
    Many,
    Maybe,
    Mechanism,
    Pair,
    Port,
    QuirkList,
    Seconds,
    Switch,
    Text,
    TLSVersion,
    Whole,
    check,
    from_json,
    json_schema,
    to_json,
)
from fakepop.tls import Authority, CertificateFault

pytest_plugins = ["pytester"]

README = Path(__file__).parent.parent / "README.md"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sample(item: Field, kind: Kind, tmp: Path) -> str:
    """A value for ``item`` other than its default, as text (one item for a list)."""
    default = item.default
    if isinstance(kind, Maybe | Many):
        return sample(item, kind.item, tmp)
    if isinstance(kind, Switch):
        return str(not default).lower()
    if isinstance(kind, Port):
        return str(free_port())
    if isinstance(kind, Whole):
        return str((default or kind.low or 0) + 301)
    if isinstance(kind, Seconds):
        return str(default + 1.5)
    if isinstance(kind, TLSVersion):
        return "1.3"
    if isinstance(kind, Mechanism):
        return "XOAUTH2"
    if isinstance(kind, Choice):
        return next(choice for choice in kind.choices if choice != default)
    if isinstance(kind, Language):
        return "de=Deutsch"
    if isinstance(kind, File):
        return str(tmp / item.name)
    if isinstance(kind, Pair):
        leaf = Authority().certificate()
        (tmp / "chain.pem").write_bytes(leaf.chain_pem)
        (tmp / "key.pem").write_bytes(leaf.key_pem)
        return f"{tmp / 'chain.pem'},{tmp / 'key.pem'}"
    if isinstance(kind, QuirkList):  # a text with a space: it must survive every surface
        return "greeting=Hello there"
    if isinstance(kind, Text):
        return "localhost" if default != "localhost" else "pop.example.test"
    raise AssertionError(f"no sample for {item.name}'s kind {kind!r}: teach sample() about it")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Any]]:
    """Each field's sample: its text, and the value the field keeps for it."""
    tmp = tmp_path_factory.mktemp("samples")
    found = {}
    for name, item in FIELDS.items():
        text = sample(item, item.kind, tmp)
        value = check(name, item.kind.from_text(text))
        assert value != item.default, name
        found[name] = (text, value)
    return found


def kept(settings: Settings, tls: TLSOptions | None, name: str) -> Any:
    return getattr(settings if FIELDS[name].owner is Settings else tls, name)


NAMES = list(FIELDS)


def test_every_field_says_what_every_surface_needs() -> None:
    for name, item in FIELDS.items():
        assert item.help, name
        assert item.spec.section in SECTIONS, name
        assert item.kind.to_data(item.default) == to_json(Settings(), TLSOptions())[name]
    # One flat namespace: a field's name says which class it is in.
    settings = {f.name for f in dataclasses.fields(Settings)}
    assert not settings & {f.name for f in dataclasses.fields(TLSOptions)}


def test_the_readme_has_each_section_of_the_help() -> None:
    text = README.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f"\n## {section}\n" in text, section


@pytest.mark.parametrize("name", NAMES)
def test_a_field_reaches_python(name: str, samples: dict[str, tuple[str, Any]]) -> None:
    _, value = samples[name]
    owner = FIELDS[name].owner
    by_keyword = POP3Server(tls=True, **{name: value})
    assert kept(by_keyword.settings, by_keyword.tls, name) == value
    whole = owner(**{name: value})
    by_object = POP3Server(
        settings=whole if isinstance(whole, Settings) else None,
        tls=whole if isinstance(whole, TLSOptions) else True,
    )
    assert kept(by_object.settings, by_object.tls, name) == value
    assert from_json(json.loads(json.dumps(to_json(by_object.settings, by_object.tls))))[
        name
    ] == kept(by_object.settings, by_object.tls, name)


@pytest.mark.parametrize("name", NAMES)
def test_a_field_reaches_serve(
    name: str, samples: dict[str, tuple[str, Any]], tmp_path: Path
) -> None:
    text, value = samples[name]
    item = FIELDS[name]
    parser, serve = _parser()
    assert item.flag in serve.format_help()
    if isinstance(item.kind, Switch):
        argv = [item.flag if value else "--no-" + item.flag[2:]]
    else:
        argv = [item.flag, text]
    args = parser.parse_args(["serve", *argv])
    flags = {key: v for key, v in vars(args).items() if key in FIELDS}
    from_flag = resolve(flags, {})
    assert kept(from_flag.settings, from_flag.tls, name) == value
    from_env = resolve({}, {item.env: text})
    assert kept(from_env.settings, from_env.tls, name) == value
    literal = json.dumps(item.kind.to_data(value))  # JSON's scalars and arrays are TOML too
    for toml in (f"{name} = {literal}\n", f"[server]\n{name} = {literal}\n"):
        config = tmp_path / "serve.toml"
        config.write_text(toml, encoding="utf-8")
        from_file = resolve({"config": str(config)}, {})
        assert kept(from_file.settings, from_file.tls, name) == value, toml


def test_every_field_reaches_the_pytest_plugin(
    pytester: pytest.Pytester, samples: dict[str, tuple[str, Any]]
) -> None:
    expected = {name: FIELDS[name].kind.to_data(value) for name, (_, value) in samples.items()}
    pytester.makefile(".json", expected=json.dumps(expected))
    pytester.makepyfile(
        test_fields="""
        import json
        from pathlib import Path
        import pytest
        from fakepop.settings import to_json

        EXPECTED = json.loads(Path("expected.json").read_text())

        def test_options(pop3_server):
            assert to_json(pop3_server.settings, pop3_server.tls) == EXPECTED
        """
    )
    ini = ["[pytest]"]
    argv = []
    for name, (text, value) in samples.items():
        item = FIELDS[name]
        ini.append(f"fakepop_{name} = {text}")
        if isinstance(item.kind, Switch):
            argv.append(f"--{'' if value else 'no-'}fakepop-{name.replace('_', '-')}")
        else:
            argv.append(f"--fakepop-{name.replace('_', '-')}={text}")
    pytester.makeini("\n".join(ini) + "\n")
    pytester.runpytest().assert_outcomes(passed=1)
    pytester.makeini("[pytest]\n")
    pytester.runpytest(*argv).assert_outcomes(passed=1)
    marker = ", ".join(f"{name}=fields[{name!r}]" for name in samples)
    pytester.makepyfile(
        test_fields=f"""
        import json
        from pathlib import Path
        import pytest
        from fakepop.settings import FIELDS, to_json

        EXPECTED = json.loads(Path("expected.json").read_text())
        fields = {{n: FIELDS[n].kind.from_data(v) for n, v in EXPECTED.items()}}

        @pytest.mark.fakepop({marker})
        def test_marker(pop3_server):
            assert to_json(pop3_server.settings, pop3_server.tls) == EXPECTED
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.fakepop(tls=True)
def test_a_field_reaches_the_control_api(
    name: str, samples: dict[str, tuple[str, Any]], pop3_server: POP3Server
) -> None:
    _, value = samples[name]
    item = FIELDS[name]
    with ControlServer(pop3_server) as control:
        client = ControlClient(control.url)
        before = client.settings()
        assert before == to_json(pop3_server.settings, pop3_server.tls)
        assert set(before) == set(FIELDS)
        change = {name: item.kind.to_data(value)}
        if item.runtime:
            assert client.change_settings(**change) == {**before, **change}
            assert kept(pop3_server.settings, pop3_server.tls, name) == value
        else:
            with pytest.raises(ControlError) as fixed:
                client.change_settings(**change)
            assert fixed.value.status == 409
            assert f"{name} cannot change while the server runs" in fixed.value.message
            assert "fixed once the server starts" in fixed.value.message
            assert client.settings() == before


@pytest.mark.fakepop(tls=True)
def test_the_live_settings_name_the_ports_bound(pop3_server: POP3Server) -> None:
    with ControlServer(pop3_server) as control:
        live = ControlClient(control.url).settings()
        assert pop3_server.port != 0
        assert pop3_server.tls_port not in (0, None)
        assert (live["port"], live["tls_port"]) == (pop3_server.port, pop3_server.tls_port)


@pytest.mark.fakepop(users={"alice": "s"}, tls=False)
def test_a_session_started_after_a_patch_sees_it(pop3_server: POP3Server) -> None:
    with (
        ControlServer(pop3_server) as control,
        socket.create_connection((pop3_server.host, pop3_server.port), timeout=5) as earlier,
        earlier.makefile("rb") as earlier_replies,
    ):
        earlier_replies.readline()  # the greeting: this session began with the old settings
        ControlClient(control.url).change_settings(
            max_bad_commands_before_login=2, idle_timeout=0.2
        )
        with (
            socket.create_connection((pop3_server.host, pop3_server.port), timeout=5) as sock,
            sock.makefile("rb") as replies,
        ):
            replies.readline()
            sock.sendall(b"BOGUS\r\nBOGUS\r\n")
            assert replies.readline().startswith(b"-ERR")
            assert replies.readline().startswith(b"-ERR")
            assert replies.readline() == b""  # closed after the second
        with (
            socket.create_connection((pop3_server.host, pop3_server.port), timeout=5) as sock,
            sock.makefile("rb") as replies,
        ):
            started = time.monotonic()
            replies.readline()
            assert replies.readline() == b"-ERR Autologout: idle for too long\r\n"
            assert replies.readline() == b""
            assert time.monotonic() - started < 3  # 0.2 s, not the 600 it started with
        earlier.sendall(b"BOGUS\r\nBOGUS\r\nQUIT\r\n")
        assert [earlier_replies.readline()[:3] for _ in range(3)] == [b"-ER", b"-ER", b"+OK"]


def test_a_marker_settings_object_replaces_the_options(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfakepop_idle_timeout = 5\nfakepop_utf8 = false\n")
    pytester.makepyfile(
        """
        import pytest
        from fakepop import Settings

        def test_options(pop3_server):
            assert pop3_server.settings.idle_timeout == 5

        @pytest.mark.fakepop(settings=Settings(apop=False), utf8=True)
        def test_object(pop3_server):
            assert pop3_server.settings.idle_timeout == 600
            assert (pop3_server.settings.apop, pop3_server.settings.utf8) == (False, True)
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


# --- the values ------------------------------------------------------------------------------


def test_an_unknown_keyword_names_the_nearest() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'idle_timout'") as info:
        POP3Server(idle_timout=5)
    assert "did you mean 'idle_timeout'?" in str(info.value)
    assert "tls_minimum" in str(info.value)  # the valid names are listed, TLS's too


def test_python_values_are_kept_in_one_form() -> None:
    server = POP3Server(
        tls=True,
        sasl=["plain", "xoauth2"],
        languages=[["de", "Deutsch"], ["en", "English"]],
        tls_minimum=ssl.TLSVersion.TLSv1,
        tls_maximum=ssl.TLSVersion.MAXIMUM_SUPPORTED,
        tls_names=["pop.example.test"],
    )
    assert server.settings.sasl == ("PLAIN", "XOAUTH2")
    assert server.settings.languages == (("de", "Deutsch"), ("en", "English"))
    assert server.tls is not None
    assert (server.tls.tls_minimum, server.tls.tls_maximum) == ("1.0", None)
    with pytest.raises(ValueError, match="sasl: expected a list"):
        Settings(sasl="PLAIN")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_type: expected one of ecdsa, rsa"):
        TLSOptions(key_type="dsa")  # type: ignore[arg-type]


def test_tls_options_apply_only_with_tls() -> None:
    assert POP3Server(tls_port=1995).tls is None
    server = POP3Server(tls=TLSOptions(stls=False), tls_port=0)
    assert not server.stls
    assert server.tls_port == 0


@pytest.mark.fakepop(
    users={"alice": "s"}, tls=False, languages=[("de", "Deutsch"), ("en", "English")]
)
def test_languages_are_reachable_and_offered(pop3_server: POP3Server) -> None:
    with (
        socket.create_connection((pop3_server.host, pop3_server.port), timeout=5) as sock,
        sock.makefile("rb") as replies,
    ):
        replies.readline()  # the greeting
        sock.sendall(b"LANG\r\n")
        assert replies.readline().startswith(b"+OK")
        assert [replies.readline() for _ in range(3)] == [
            b"de Deutsch\r\n",
            b"en English\r\n",
            b".\r\n",
        ]


def test_the_lists_this_module_names_are_the_registries() -> None:
    assert Settings().sasl == tuple(MECHANISMS)
    assert tuple(fault.value for fault in CertificateFault) == CERTIFICATE_FAULTS


@pytest.mark.fakepop(users={"alice": "s"}, tls=True)
def test_only_run_time_fields_change_while_running(pop3_server: POP3Server) -> None:
    changed = pop3_server.change_settings(max_connections=5, apop=False, login_delay=3)
    assert pop3_server.settings is changed
    assert (changed.max_connections, changed.apop, changed.login_delay) == (5, False, 3)
    with pytest.raises(FixedSettingError, match="port, tls_port cannot change") as info:
        pop3_server.change_settings(port=1, tls_port=2, apop=True)
    assert info.value.names == ("port", "tls_port")
    assert pop3_server.settings.apop is False  # nothing changed
    with pytest.raises(TypeError, match="unknown setting 'apopp'"):
        pop3_server.change_settings(apopp=True)
    with pytest.raises(ValueError, match="max_line_length must be at least 255"):
        pop3_server.change_settings(max_line_length=10)
    with pytest.raises(ValueError, match="require_tls needs TLS"):
        POP3Server().change_settings(require_tls=True)
    assert set(RUNTIME) == {name for name, item in FIELDS.items() if item.runtime}
    assert "port" not in RUNTIME
    assert "idle_timeout" in RUNTIME


def test_json_in_and_out() -> None:
    data = to_json(Settings(languages=(("de", "Deutsch"),)), None)
    assert data["languages"] == [["de", "Deutsch"]]
    assert data["maildir"] is None
    assert "tls_port" not in data  # no TLS, no TLS fields
    assert from_json({"languages": [["fr", "Français"]], "expire": None}) == {
        "languages": (("fr", "Français"),),
        "expire": None,
    }
    with pytest.raises(ValueError, match="idle_timeout: expected int or float, got 'soon'"):
        from_json({"idle_timeout": "soon"})
    with pytest.raises(TypeError, match="did you mean 'idle_timeout'"):
        from_json({"idle_timout": 1})


def test_seconds_are_finite_from_data_too() -> None:
    # TOML writes inf and nan; JSON's 1e999 is inf: GET /settings could not answer them.
    for value in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="idle_timeout: expected a number of seconds"):
            from_json({"idle_timeout": value})


def test_text_forms() -> None:
    assert FIELDS["expire"].kind.from_text("none") is None
    assert FIELDS["sasl"].kind.from_text("plain LOGIN") == ("PLAIN", "LOGIN")
    assert FIELDS["certificate"].kind.from_text("a.pem,b.pem") == (Path("a.pem"), Path("b.pem"))
    with pytest.raises(ValueError, match="expected a number of seconds, got 'soon'"):
        FIELDS["idle_timeout"].kind.from_text("soon")
    with pytest.raises(ValueError, match="expected TAG=NAME"):
        FIELDS["languages"].kind.from_text("de")


def test_serve_help_groups_flags_as_the_readme(capsys: pytest.CaptureFixture[str]) -> None:
    _, serve = _parser()
    text = serve.format_help()
    titles = [group.title for group in serve._action_groups]
    assert [t for t in titles if t in SECTIONS] == list(SECTIONS)
    assert text.index("\n  --idle-timeout") > text.index(f"\n{SECTIONS[-1]}:")
    assert isinstance(serve, argparse.ArgumentParser)


def test_a_bad_value_from_serve_names_its_source(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FAKEPOP_MAX_LINE_LENGTH: max_line_length must be"):
        resolve({}, {"FAKEPOP_MAX_LINE_LENGTH": "10"})


def test_the_readme_lists_every_field() -> None:
    text = README.read_text(encoding="utf-8")
    for name, item in FIELDS.items():
        row = f"| `{name}` | `{item.default!r}` | {'yes' if item.runtime else ''} | {item.help} |"
        assert row in text, f"README.md's Settings table lacks or misstates {name}: {row}"


def conforms(value: Any, schema: dict[str, Any]) -> bool:
    """Whether ``value`` fits ``schema``, for the few JSON Schema words the kinds use."""
    if "anyOf" in schema:
        return any(conforms(value, option) for option in schema["anyOf"])
    if "enum" in schema:
        return value in schema["enum"]
    types = {"string": str, "integer": int, "number": int | float, "boolean": bool}
    kind = schema["type"]
    if kind == "null":
        return value is None
    if kind == "array":
        return (
            isinstance(value, list)
            and schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value))
            and all(conforms(item, schema["items"]) for item in value)
        )
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, types[kind]) and schema.get("minimum", value) <= value <= schema.get(
        "maximum", value
    )


def test_the_json_schema_describes_the_json(samples: dict[str, tuple[str, Any]]) -> None:
    schema = json_schema()
    assert set(schema["properties"]) == set(FIELDS)
    assert set(json_schema(runtime=True)["properties"]) == set(RUNTIME)
    for name, (_, value) in samples.items():
        item = FIELDS[name]
        field_schema = schema["properties"][name]
        assert field_schema["description"] == item.help
        assert field_schema.get("readOnly", False) is not item.runtime
        assert conforms(item.kind.to_data(value), field_schema), name
        assert conforms(item.kind.to_data(item.default), field_schema), name
    assert not conforms(-1, schema["properties"]["port"])
    assert not conforms("TLSv1", schema["properties"]["tls_minimum"])
