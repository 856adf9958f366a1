"""Personas: what a client sees of each, how explicit options override them, every surface."""

from __future__ import annotations

import base64
import poplib
import re
from pathlib import Path

import pytest
from pop3 import LineClient, ServerFactory
from serving import run, serve

from fakepop import POP3Server
from fakepop.cli import main
from fakepop.config import resolve
from fakepop.personas import PERSONAS, PLANNED
from fakepop.protocol.quirks import Quirks

pytest_plugins = ["pytester"]

MAIL = b"Subject: hi\r\n\r\nHello\r\n"  # 22 octets in 3 lines


def logged_in(server: POP3Server) -> LineClient:
    client = LineClient(server, greeting=True)
    client.command("USER alice")
    assert client.command("PASS secret").startswith(b"+OK")
    return client


def make(factory: ServerFactory, persona: str, **options: object) -> POP3Server:
    options.setdefault("messages", [MAIL])
    return factory(users={"alice": "secret"}, tls=False, persona=persona, **options)


@pytest.mark.parametrize("name", PERSONAS)
def test_a_persona_is_whole(name: str) -> None:
    persona = PERSONAS[name]
    Quirks.parse(persona.quirks)  # every quirk it names exists and takes its value
    assert persona.about
    assert all(what and source for what, source in persona.sources)
    POP3Server(persona=name, tls=True)  # every setting it names is a field that takes its value


def test_the_docs_have_every_persona_line() -> None:
    text = (Path(__file__).parents[1] / "docs" / "personas.md").read_text("utf-8")
    for persona in PERSONAS.values():
        assert f"### {persona.name}\n\n{persona.about}." in text
        for what, source in persona.sources:
            row = f"| {what.replace('|', chr(92) + '|')} | {source.replace('|', chr(92) + '|')} |"
            assert row in text, f"docs/personas.md lacks or misstates {persona.name}: {what}"
        for line in persona.missing:
            assert f"- {line}" in text


def test_a_planned_persona_says_it_is_not_built_yet() -> None:
    with pytest.raises(ValueError, match=f"persona {PLANNED[0]} is not built yet; the personas"):
        POP3Server(persona=PLANNED[0])


# What recorded sessions show each persona's CAPA to be: its first line, then its lines, before
# login and, where the recording has it, after (see docs/personas.md for the recordings).
RECORDED_CAPA = {
    ("gmail", False): (
        b"+OK Capability list follows",
        [
            b"USER",
            b"RESP-CODES",
            b"EXPIRE 0",
            b"LOGIN-DELAY 300",
            b"TOP",
            b"UIDL",
            b"X-GOOGLE-RICO",
            b"SASL PLAIN XOAUTH2 OAUTHBEARER",
        ],
    ),
    ("gmail", True): (
        b"+OK Capability list follows",
        [
            b"USER",
            b"RESP-CODES",
            b"PIPELINING",
            b"EXPIRE 0",
            b"LOGIN-DELAY 300",
            b"TOP",
            b"UIDL",
            b"X-GOOGLE-RICO",
        ],
    ),
    ("exchange", False): (b"+OK", [b"TOP", b"UIDL", b"SASL PLAIN LOGIN", b"USER"]),
    ("outlook", False): (b"+OK", [b"TOP", b"UIDL", b"SASL PLAIN XOAUTH2", b"USER"]),
    ("courier", False): (
        b"+OK Here's what I can do:",
        [
            b"TOP",
            b"USER",
            b"LOGIN-DELAY 10",
            b"PIPELINING",
            b"UIDL",
            b"UTF8 USER",
            b"LANG",
            b"IMPLEMENTATION Courier Mail Server",
        ],
    ),
}


@pytest.mark.parametrize(("name", "after_login"), RECORDED_CAPA)
def test_capa_as_recorded(pop3_server_factory: ServerFactory, name: str, after_login: bool) -> None:
    first, lines = RECORDED_CAPA[name, after_login]
    server = make(pop3_server_factory, name)
    client = logged_in(server) if after_login else LineClient(server, greeting=True)
    with client:
        assert client.command("CAPA") == first + b"\r\n"
        got = []
        while (line := client.line()) != b".\r\n":
            got.append(line[:-2])
        assert got == lines


PLAIN = base64.b64encode(b"\0alice\0secret").decode()

# Recorded sessions as facts: each command a persona gets, and the status line its recording
# shows for it (a pattern where values differ from session to session).
RECORDINGS = {
    "gmail": [  # MailKit's Gmail session
        ("AUTH PLAIN", rb"\+ "),
        (PLAIN, rb"\+OK Welcome\."),
        ("STAT", rb"\+OK \d+ \d+"),
        ("LIST", rb"\+OK message sizes follow"),
        ("LIST 1", rb"\+OK 1 \d+"),
        ("UIDL", rb"\+OK UIDs follow"),
        ("UIDL 1", rb"\+OK 1 \S+"),
        ("RETR 1", rb"\+OK message follows"),
        ("TOP 1 0", rb"\+OK message follows"),
        ("DELE 1", rb"\+OK"),
        ("NOOP", rb"\+OK"),
        ("RSET", rb"\+OK"),
        ("QUIT", rb"\+OK Farewell\."),
    ],
    "exchange": [  # MailKit's Exchange session
        ("AUTH PLAIN", rb"\+"),
        (PLAIN, rb"\+OK User successfully logged on\."),
        ("STAT", rb"\+OK \d+ \d+"),
        ("UIDL", rb"\+OK"),
        ("QUIT", rb"\+OK Good-bye\."),
    ],
}


@pytest.mark.parametrize("name", RECORDINGS)
def test_a_recorded_session_replayed(pop3_server_factory: ServerFactory, name: str) -> None:
    server = make(pop3_server_factory, name)
    with LineClient(server, greeting=True) as client:
        for command, expected in RECORDINGS[name]:
            line = client.command(command)
            assert re.fullmatch(expected + rb"\r\n", line), (command, line)
            if command in ("LIST", "UIDL") or command.startswith(("RETR", "TOP")):
                while client.line() != b".\r\n":  # the body, whose form the recording shares
                    pass


# --- Gmail -------------------------------------------------------------------------------


def test_gmail(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "gmail")
    with LineClient(server, greeting=True) as client:
        # MailKit's recording: "+OK Gpop ready for requests from ADDRESS ID", and no APOP.
        assert re.fullmatch(rb"\+OK Gpop ready for requests from \S+ \S+\r\n", client.greeting)
        client.command("USER alice")
        assert client.command("PASS nope") == (
            b"-ERR [AUTH] Username and password not accepted.\r\n"
        )
    with logged_in(server) as client:
        assert client.command("LIST") == b"+OK message sizes follow\r\n"
        assert client.read(len(b"1 22\r\n.\r\n")) == b"1 22\r\n.\r\n"
        assert client.command("RETR 1") == b"+OK message follows\r\n"
        assert client.read(len(MAIL) + 3) == MAIL + b".\r\n"
        assert client.command("NOOP") == b"+OK\r\n"
        client.command("QUIT")  # RETR and QUIT: Gmail pops the message
    pop = poplib.POP3(server.host, server.port, timeout=5)
    before = pop.capa()
    assert before["SASL"] == ["PLAIN", "XOAUTH2", "OAUTHBEARER"]
    assert before["EXPIRE"] == ["0"]
    assert "PIPELINING" not in before
    assert b"<" not in pop.getwelcome()  # no APOP timestamp
    pop.user("alice")
    assert pop.pass_("secret") == b"+OK Welcome."
    after = pop.capa()
    assert "PIPELINING" in after
    assert "SASL" not in after
    assert pop.quit() == b"+OK Farewell."


def test_gmail_takes_recent_logins(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "gmail")
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user("recent:alice")
    assert pop.pass_("secret") == b"+OK Welcome."
    pop.quit()


# --- qmail -------------------------------------------------------------------------------


def test_qmail(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "qmail")
    with LineClient(server, greeting=True) as client:
        assert re.fullmatch(rb"\+OK <\d+\.\d+@localhost>\r\n", client.greeting)
        assert client.command("CAPA").startswith(b"-ERR")
        assert client.command("USER alice") == b"+OK\r\n"
        assert client.command("PASS secret") == b"+OK\r\n"
        assert client.command("STAT") == b"+OK 1 19\r\n"  # the file's size, with LF line ends
        assert client.command("LIST 1") == b"+OK 1 19\r\n"
        assert client.command("RETR 1") == b"+OK\r\n"
        assert client.read(len(MAIL) + 5) == MAIL + b"\r\n.\r\n"  # a blank line before the dot
        assert client.command("LAST") == b"+OK 1\r\n"
        assert client.command("DELE 1") == b"+OK\r\n"
        assert client.command("RSET") == b"+OK\r\n"
        assert client.command("QUIT") == b"+OK\r\n"
    with LineClient(server, greeting=True) as client:
        client.command("USER alice")
        assert client.command("PASS wrong") == b"-ERR authorization failed\r\n"
        assert client.closed_by_server()


def test_poplib_reads_qmail(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "qmail")
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.apop("alice", "secret")
    assert pop.retr(1)[1] == [b"Subject: hi", b"", b"Hello", b""]
    pop.quit()


# --- Courier -----------------------------------------------------------------------------


def test_courier(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "courier", auth_failure_delay=0)  # not Courier's 5 s here
    with LineClient(server, greeting=True) as client:
        assert client.greeting == b"+OK Hello there.\r\n"
        assert client.command("CAPA") == b"+OK Here's what I can do:\r\n"
        while client.line() != b".\r\n":
            pass
        assert client.command("USER alice") == b"+OK Password required.\r\n"
        assert client.command("PASS nope") == b"-ERR Login failed.\r\n"
        client.command("USER alice")
        assert client.command("PASS secret") == b"+OK logged in.\r\n"
        status = client.command("LIST")
        assert status == b"+OK POP3 clients that break here, they violate STD53.\r\n"
        assert client.read(len(b"1 22\r\n.\r\n")) == b"1 22\r\n.\r\n"
        assert client.command("UIDL 1").startswith(b"+OK 1 ")
        assert client.command("RETR 1") == b"+OK 22 octets follow.\r\n"
        assert client.read(len(MAIL) + 3) == MAIL + b".\r\n"
        assert client.command("TOP 1 0") == b"+OK headers follow.\r\n"
        assert client.read(len(b"Subject: hi\r\n\r\n.\r\n")) == b"Subject: hi\r\n\r\n.\r\n"
        assert client.command("NOOP") == b"+OK Yup.\r\n"
        assert client.command("DELE 1") == b"+OK Deleted.\r\n"
        assert client.command("RSET") == b"+OK Resurrected.\r\n"
        assert client.command("QUIT") == b"+OK Bye-bye.\r\n"
    assert POP3Server(persona="courier").settings.auth_failure_delay == 5.0


# --- Exchange ----------------------------------------------------------------------------


def test_exchange(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "exchange")
    with LineClient(server, greeting=True) as client:
        assert client.greeting == b"+OK The Microsoft Exchange POP3 service is ready.\r\n"
        assert client.command("CAPA") == b"+OK\r\n"
        while client.line() != b".\r\n":
            pass
        client.command("USER alice")
        assert client.command("PASS nope") == (
            b"-ERR Logon failure: unknown user name or bad password.\r\n"
        )
        assert client.command("AUTH PLAIN") == b"+\r\n"
        assert client.command(base64.b64encode(b"\0alice\0secret")) == (
            b"+OK User successfully logged on.\r\n"
        )
        assert client.command("QUIT") == b"+OK Good-bye.\r\n"
    pop = poplib.POP3(server.host, server.port, timeout=5)
    assert pop.capa()["SASL"] == ["PLAIN", "LOGIN"]
    pop.user("alice")
    pop.pass_("secret")
    assert pop.retr(1)[1] == [b"Subject: hi", b"", b"Hello"]
    pop.quit()


# --- Outlook -----------------------------------------------------------------------------


def test_outlook(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "outlook")
    server.add_token("alice", "alice-token")
    token = base64.b64encode(b"user=alice\x01auth=Bearer alice-token\x01\x01")
    with LineClient(server, greeting=True) as client:
        assert re.fullmatch(
            rb"\+OK The Microsoft Exchange POP3 service is ready\. \[[A-Za-z0-9+/=]+\]\r\n",
            client.greeting,
        )
        assert client.command("CAPA") == b"+OK\r\n"
        capabilities = []
        while (line := client.line()) != b".\r\n":
            capabilities.append(line)
        assert b"SASL PLAIN XOAUTH2\r\n" in capabilities
        assert client.command(b"AUTH XOAUTH2 " + token) == (
            b"-ERR Logon failure: unknown user name or bad password.\r\n"
        )
        assert client.command("AUTH XOAUTH2") == b"+ \r\n"
        assert client.command(token).startswith(b"+OK")


# --- explicit options over the persona ---------------------------------------------------


def test_an_explicit_setting_beats_the_persona(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "gmail", apop=True)
    assert server.settings.apop
    assert server.settings.sasl == ("PLAIN", "XOAUTH2", "OAUTHBEARER")  # the rest is Gmail's
    with LineClient(server, greeting=True) as client:
        assert re.fullmatch(rb"\+OK Gpop ready .* <[^>]+@localhost>\r\n", client.greeting)


def test_explicit_quirks_add_to_the_persona_s(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "gmail", quirks=["uidl-blank", "login-text=Hi."])
    assert server.settings.quirks == ("uidl-blank", "login-text=Hi.")
    with LineClient(server, greeting=True) as client:
        assert client.greeting.startswith(b"+OK Gpop ready")
        client.command("USER alice")
        assert client.command("PASS secret") == b"+OK Hi.\r\n"
        assert client.command("UIDL 1") == b"+OK 1 \r\n"


def test_a_whole_settings_object_keeps_its_own_values() -> None:
    server = POP3Server(settings=POP3Server(persona="qmail").settings, apop=False)
    assert server.settings.last  # qmail's, carried in the settings given
    assert not server.settings.apop


# --- every surface -----------------------------------------------------------------------


def test_serve_resolves_the_persona_under_flags_and_variables() -> None:
    config = resolve({"idle_timeout": 30.0}, {"FAKEPOP_PERSONA": "qmail", "FAKEPOP_LAST": "0"})
    assert config.settings.persona == "qmail"
    assert config.settings.idle_timeout == 30.0  # the flag's
    assert not config.settings.last  # the variable's
    assert config.settings.sasl == ()  # qmail's
    assert config.tls is not None
    assert not config.tls.stls


def test_fakepop_serve_persona() -> None:
    with serve("--no-tls", "--port", "0", "--json", "--persona", "qmail") as served:
        port = served.info["pop3"]["port"]
        with LineClient("127.0.0.1", port, greeting=True) as client:
            assert client.command("CAPA").startswith(b"-ERR")
            assert client.command("USER user") == b"+OK\r\n"
        served.stop()


def test_a_persona_from_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import poplib
        import pytest

        @pytest.mark.fakepop(persona="gmail")
        def test_it(pop3_server):
            pop = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            assert pop.getwelcome().startswith(b"+OK Gpop ready")
            pop.user("user")
            assert pop.pass_("password") == b"+OK Welcome."
            pop.quit()
        """
    )
    pytester.runpytest("-p", "no:hypothesispytest", "-p", "no:benchmark").assert_outcomes(passed=1)


def test_one_test_runs_once_per_persona(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import poplib
        import pytest
        from fakepop.personas import PERSONAS

        @pytest.mark.parametrize("persona", PERSONAS)
        def test_client_survives(pop3_server_factory, persona):
            mail = b"Subject: x\\r\\n\\r\\nhi\\r\\n"
            server = pop3_server_factory(persona=persona, tls=False, messages=[mail])
            pop = poplib.POP3(server.host, server.port, timeout=5)
            pop.user("user")
            pop.pass_("password")
            assert pop.retr(1)[1][:3] == [b"Subject: x", b"", b"hi"]
            pop.quit()
        """
    )
    result = pytester.runpytest("-v", "-p", "no:hypothesispytest", "-p", "no:benchmark")
    result.assert_outcomes(passed=len(PERSONAS))
    result.stdout.fnmatch_lines([f"*test_client_survives?{name}? PASSED*" for name in PERSONAS])


def test_fakepop_personas_lists_and_describes() -> None:
    listed, described, quirks, planned = run(
        ["personas"], ["personas", "qmail"], ["personas", "--quirks"], ["personas", PLANNED[0]]
    )
    assert listed.returncode == 0
    assert [line.split()[0] for line in listed.stdout.splitlines()[:-1]] == list(PERSONAS)
    assert "no-capa" in described.stdout
    assert "qmail-pop3d.c, blast()" in described.stdout
    assert "top-bytes=N" in quirks.stdout
    assert planned.returncode == 2
    assert "not built yet" in planned.stderr
    assert "Traceback" not in planned.stderr


def test_fakepop_personas_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["personas", "gmail"]) == 0
    assert 'sasl = ["PLAIN", "XOAUTH2", "OAUTHBEARER"]' in capsys.readouterr().out
    assert main(["personas", "gmai"]) == 2
    assert "no persona 'gmai'" in capsys.readouterr().err
