"""``config.resolve()``: flags, ``FAKEPOP_*`` variables and a TOML file merged, in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakepop.config import TRANSCRIPT_LIMIT, ConfigError, resolve, unknown_variables


def write(tmp_path: Path, text: str) -> str:
    config = tmp_path / "serve.toml"
    config.write_text(text, encoding="utf-8")
    return str(config)


def test_the_defaults_are_serves() -> None:
    config = resolve({}, {})
    assert (config.host, config.port, config.tls_port) == ("127.0.0.1", 1110, 1995)
    assert config.settings.transcript_limit == TRANSCRIPT_LIMIT
    assert config.tls is not None
    assert config.users == {}
    assert config.control_port is None


def test_a_flag_beats_its_variable_which_beats_the_file(tmp_path: Path) -> None:
    file = write(tmp_path, "port = 1\nidle_timeout = 1\nlogin_delay = 1\n[server]\napop = false\n")
    environ = {"FAKEPOP_PORT": "2", "FAKEPOP_IDLE_TIMEOUT": "2", "FAKEPOP_APOP": "true"}
    config = resolve({"config": file, "port": 3}, environ)
    assert config.port == 3
    assert config.settings.idle_timeout == 2
    assert config.settings.login_delay == 1
    assert config.settings.apop is True


def test_the_config_file_may_come_from_its_variable(tmp_path: Path) -> None:
    config = resolve({}, {"FAKEPOP_CONFIG": write(tmp_path, "hostname = 'pop.test'\n")})
    assert config.settings.hostname == "pop.test"
    assert config.config_file == tmp_path / "serve.toml"


def test_repeatable_settings_add_up_across_sources(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "user = ['a:1']\ntls_name = ['one.test']\n[users]\nb = '2'\n[server]\nsasl = ['plain']\n",
    )
    environ = {
        "FAKEPOP_USER": "c:3 d:4",
        "FAKEPOP_TLS_NAMES": "two.test",
        "FAKEPOP_TLS_NAME": "three.test",  # the name it had before
        "FAKEPOP_SASL": "XOAUTH2",
    }
    config = resolve({"config": file, "user": [("e", "5")], "tls_names": ["four.test"]}, environ)
    assert config.users == {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}
    assert config.tls is not None
    assert config.tls.tls_names == ("one.test", "three.test", "two.test", "four.test")
    assert config.settings.sasl == ("PLAIN", "XOAUTH2")


def test_an_empty_list_in_the_file_is_kept(tmp_path: Path) -> None:
    config = resolve({"config": write(tmp_path, "[server]\nsasl = []\n")}, {})
    assert config.settings.sasl == ()


def test_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "maildir = 'mail'\ncert_dir = 'ca'\nmanifest = 'fixtures'\nfaults = 'faults.toml'\n"
        "mailbox = ['alice=a.mbox']\n[mailboxes]\nbob = 'b/'\n"
        "[server]\ncertificate = ['chain.pem', 'key.pem']\n",
    )
    config = resolve({"config": file}, {})
    assert config.maildir == tmp_path / "mail"
    assert config.cert_dir == tmp_path / "ca"
    assert config.manifest == tmp_path / "fixtures"
    assert config.fault_file == tmp_path / "faults.toml"
    assert config.mailboxes == [("bob", tmp_path / "b"), ("alice", tmp_path / "a.mbox")]
    assert config.tls is not None
    assert config.tls.certificate == (tmp_path / "chain.pem", tmp_path / "key.pem")


def test_no_tls_means_no_tls_options(tmp_path: Path) -> None:
    config = resolve({"no_tls": True, "tls_port": 0}, {})
    assert config.tls is None
    with pytest.raises(ConfigError, match="--require-tls needs TLS"):
        resolve({"require_tls": True}, {"FAKEPOP_NO_TLS": "1"})


def test_fault_tables_are_kept_with_their_source(tmp_path: Path) -> None:
    config = resolve({"config": write(tmp_path, "[[faults]]\non = 'RETR'\naction = 'drop'\n")}, {})
    assert config.fault_rules == [{"on": "RETR", "action": "drop"}]
    assert config.fault_source == "serve.toml"


def test_an_empty_variable_is_unset() -> None:
    assert resolve({}, {"FAKEPOP_PORT": " ", "FAKEPOP_USER": ""}).port == 1110


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"FAKEPOP_PORT": "x"}, "FAKEPOP_PORT: expected a port from 0 to 65535"),
        ({"FAKEPOP_APOP": "maybe"}, "FAKEPOP_APOP: expected one of 1, true"),
        ({"FAKEPOP_SASL": "PLAIN NOPE"}, "FAKEPOP_SASL: unknown mechanism NOPE"),
        ({"FAKEPOP_IDLE_TIMEOUT": "0"}, "FAKEPOP_IDLE_TIMEOUT: idle_timeout must be a positive"),
        ({"FAKEPOP_TLS_MINIMUM": "1.4"}, "FAKEPOP_TLS_MINIMUM: expected one of 1.0, 1.1"),
        ({"FAKEPOP_LANGUAGES": "de"}, "FAKEPOP_LANGUAGES: expected TAG=NAME"),
    ],
)
def test_a_bad_variable_is_named(environ: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        resolve({}, environ)


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("prot = 1", "serve.toml: prot: unknown key; the keys are"),
        ("[server]\nidle_timout = 1", "server.idle_timout: unknown option 'idle_timout'\n"),
        ("[server]\nuser = ['a:b']", "server.user: unknown option"),  # serve's own, not a field
        ("port = 1\n[server]\nport = 2", "server.port: given twice"),
        ("[server]\nmax_line_length = 10", "server.max_line_length: max_line_length must be"),
        ("[server]\nidle_timeout = 'soon'", "server.idle_timeout: expected int or float"),
        ("[server]\ncertificate = ['one.pem']", 'certificate: expected ["chain.pem", "key.pem"]'),
        ("server = 1", "server: expected a table, [server]"),
        ("[users]\nalice = 1", "users.alice: the password must be a string"),
    ],
)
def test_a_bad_key_in_the_file_is_named(tmp_path: Path, toml: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve({"config": write(tmp_path, toml + "\n")}, {})
    assert says in str(info.value)


def test_a_misspelt_key_gets_the_nearest(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'idle_timeout'"):
        resolve({"config": write(tmp_path, "[server]\nidle_timout = 1\n")}, {})


def test_unknown_variables_are_listed() -> None:
    environ = {"FAKEPOP_PROT": "1", "FAKEPOP_PORT": "1", "FAKEPOP_TLS_NAME": "x", "HOME": "/"}
    assert unknown_variables(environ) == ["FAKEPOP_PROT"]
