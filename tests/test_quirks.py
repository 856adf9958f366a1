"""Each quirk, through a real socket: what a client sees, with the raw line client or poplib."""

from __future__ import annotations

import base64
import poplib
import re
from pathlib import Path

import pytest
from pop3 import LineClient, ServerFactory

from fakepop import POP3Server
from fakepop.config import resolve
from fakepop.protocol.quirks import REGISTRY, Quirks
from fakepop.protocol.session import quirks_of

SHORT = b"Subject: a\r\n\r\nbody\r\n"  # 20 octets in 3 lines
DOTTED = b"Subject: b\r\n\r\n.hidden\r\nline two\r\nline three\r\n"


def make(factory: ServerFactory, *quirks: str, **options: object) -> POP3Server:
    options.setdefault("messages", [SHORT, DOTTED])
    return factory(users={"alice": "secret"}, tls=False, quirks=list(quirks), **options)


def logged_in(server: POP3Server) -> LineClient:
    client = LineClient(server, greeting=True)
    assert client.command("USER alice").startswith(b"+OK")
    assert client.command("PASS secret").startswith(b"+OK")
    return client


def body(client: LineClient) -> bytes:
    """A multi-line reply's lines after its status, up to and with the terminating dot."""
    lines = []
    while (line := client.line()) != b".\r\n":
        lines.append(line)
    return b"".join([*lines, line])


def multiline(client: LineClient, command: str) -> tuple[bytes, bytes]:
    status = client.command(command)
    assert status.startswith(b"+OK"), status
    return status, body(client)


def uidl(server: POP3Server) -> list[bytes]:
    with logged_in(server) as client:
        _, listing = multiline(client, "UIDL")
        client.command("QUIT")
    return [line.split(b" ", 1)[1][:-2] for line in listing.splitlines(keepends=True)[:-1]]


# --- the registry ------------------------------------------------------------------------


def test_every_quirk_has_a_help_a_source_and_a_test_here() -> None:
    files = sorted(Path(__file__).parent.glob("test_quirks*.py"))
    text = "".join(file.read_text("utf-8") for file in files)
    for name, info in REGISTRY.items():
        assert info.help, name
        assert info.source, name
        assert f'"{name}' in text, f"quirk {name} has no test in {[f.name for f in files]}"


def test_the_docs_describe_every_quirk() -> None:
    text = (Path(__file__).parents[1] / "docs" / "personas.md").read_text("utf-8")
    for info in REGISTRY.values():
        cells = [f"`{info.usage}`", info.help, info.source]
        row = "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
        assert row in text, f"docs/personas.md lacks or misstates {info.name}"


def test_an_unknown_quirk_names_the_nearest(pop3_server_factory: ServerFactory) -> None:
    with pytest.raises(ValueError, match="did you mean 'no-capa'"):
        make(pop3_server_factory, "no-cap")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-capa=1", "takes no value"),
        ("top-bytes", "needs a value: write top-bytes=N"),
        ("top-bytes=many", "needs a whole number"),
        ("greeting", "needs a value: write greeting=TEXT"),
    ],
)
def test_a_bad_value_says_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Quirks.parse([spec])


def test_a_quirk_given_twice_takes_the_later_value() -> None:
    assert quirks_of("gmail", ("login-text=Hi",)).login_text == "Hi"
    assert quirks_of(None, ("top-bytes=10", "top-bytes=20")).top_bytes == 20


def test_quirks_in_a_variable_are_separated_by_semicolons() -> None:
    config = resolve({}, {"FAKEPOP_QUIRKS": "no-capa; greeting=Hello there ;sizes-lf"})
    assert config.settings.quirks == ("no-capa", "greeting=Hello there", "sizes-lf")


# --- CAPA --------------------------------------------------------------------------------


def test_no_capa(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "no-capa")
    client = poplib.POP3(server.host, server.port, timeout=5)
    with pytest.raises(poplib.error_proto, match="-ERR"):
        client.capa()
    client.user("alice")
    client.pass_("secret")
    with pytest.raises(poplib.error_proto, match="-ERR"):
        client.capa()
    client.quit()


def test_capa_lines(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "capa-lines=TOP, X-FOO 1,STLS,SASL", sasl=("PLAIN",))
    with LineClient(server, greeting=True) as client:
        # STLS is fakepop's but not offered without TLS: left out; X-FOO 1 is sent as given.
        assert multiline(client, "CAPA")[1] == b"TOP\r\nX-FOO 1\r\nSASL PLAIN\r\n.\r\n"


def test_capa_bare_ok(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "capa-bare-ok")
    with LineClient(server, greeting=True) as client:
        assert client.command("CAPA") == b"+OK\r\n"
        assert b"UIDL\r\n" in body(client)
    pop = poplib.POP3(server.host, server.port, timeout=5)
    assert "UIDL" in pop.capa()
    pop.quit()


def test_capa_by_state(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "capa-by-state", sasl=("PLAIN",))
    client = poplib.POP3(server.host, server.port, timeout=5)
    before = client.capa()
    assert "SASL" in before
    assert "PIPELINING" not in before
    client.user("alice")
    client.pass_("secret")
    after = client.capa()
    assert "PIPELINING" in after
    assert "SASL" not in after
    assert "USER" in after  # as Gmail's
    client.quit()


def test_sasl_bare_plus(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "sasl-bare-plus", sasl=("PLAIN",))
    with LineClient(server, greeting=True) as client:
        assert client.command("AUTH PLAIN") == b"+\r\n"
        assert client.command(base64.b64encode(b"\0alice\0secret")).startswith(b"+OK")


def test_without_sasl_bare_plus_the_continuation_has_its_space(
    pop3_server_factory: ServerFactory,
) -> None:
    server = make(pop3_server_factory, sasl=("PLAIN",))
    with LineClient(server, greeting=True) as client:
        assert client.command("AUTH PLAIN") == b"+ \r\n"


def test_xoauth2_two_step(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "xoauth2-two-step", sasl=("XOAUTH2",))
    server.add_token("alice", "alice-token")
    token = base64.b64encode(b"user=alice\x01auth=Bearer alice-token\x01\x01")
    with LineClient(server, greeting=True) as client:
        assert client.command(b"AUTH XOAUTH2 " + token).startswith(b"-ERR [AUTH]")
        assert client.command("AUTH XOAUTH2") == b"+ \r\n"
        assert client.command(token).startswith(b"+OK")


# --- texts -------------------------------------------------------------------------------


def test_greeting_with_and_without_apop(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "greeting=Hello there")
    with LineClient(server, greeting=True) as client:
        assert re.fullmatch(rb"\+OK Hello there <[^>]+@localhost>\r\n", client.greeting)
    server = make(pop3_server_factory, "greeting=Hello there", apop=False)
    with LineClient(server, greeting=True) as client:
        assert client.greeting == b"+OK Hello there\r\n"


def test_an_empty_greeting_leaves_the_timestamp_alone(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "greeting=")
    with LineClient(server, greeting=True) as client:
        assert re.fullmatch(rb"\+OK <\d+\.\d+@localhost>\r\n", client.greeting)
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.apop("alice", "secret")  # poplib finds the timestamp
    pop.quit()


def test_user_login_and_quit_texts(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "user-text=", "login-text=Welcome.", "quit-text=Farewell.")
    with LineClient(server, greeting=True) as client:
        assert client.command("USER alice") == b"+OK\r\n"
        assert client.command("PASS secret") == b"+OK Welcome.\r\n"
        assert client.command("QUIT") == b"+OK Farewell.\r\n"
    with LineClient(server, greeting=True) as client:
        assert client.command("QUIT") == b"+OK Farewell.\r\n"  # before login too


def test_texts_of_the_other_replies(pop3_server_factory: ServerFactory) -> None:
    server = make(
        pop3_server_factory,
        "capa-text=Here it is:",
        "list-text=sizes",
        "uidl-text=",
        "retr-text={octets} octets follow.",
        "top-text=headers follow.",
        "dele-text=Deleted.",
        "noop-text=Yup.",
        "rset-text=Resurrected.",
        messages=[SHORT],
    )
    with logged_in(server) as client:
        assert multiline(client, "CAPA")[0] == b"+OK Here it is:\r\n"
        assert multiline(client, "LIST") == (b"+OK sizes\r\n", b"1 20\r\n.\r\n")
        assert multiline(client, "UIDL")[0] == b"+OK\r\n"
        assert multiline(client, "RETR 1") == (b"+OK 20 octets follow.\r\n", SHORT + b".\r\n")
        assert multiline(client, "TOP 1 0")[0] == b"+OK headers follow.\r\n"
        assert client.command("NOOP") == b"+OK Yup.\r\n"
        assert client.command("DELE 1") == b"+OK Deleted.\r\n"
        assert client.command("RSET") == b"+OK Resurrected.\r\n"
        client.command("QUIT")
    pop = poplib.POP3(server.host, server.port, timeout=5)  # poplib reads them all
    pop.user("alice")
    pop.pass_("secret")
    assert pop.list()[1] == [b"1 20"]
    assert pop.retr(1)[1] == [b"Subject: a", b"", b"body"]
    pop.quit()


def test_login_failure_text(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "login-failure-text=[AUTH] Username and password no good.")
    with LineClient(server, greeting=True) as client:
        client.command("USER alice")
        assert client.command("PASS wrong") == b"-ERR [AUTH] Username and password no good.\r\n"
        client.command("USER alice")  # the session goes on
        assert client.command("PASS secret").startswith(b"+OK")


def test_busy_text(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "busy-text=Unable to lock maildrop")
    with server.mailbox("alice").hold_lock(), LineClient(server, greeting=True) as client:
        client.command("USER alice")
        assert client.command("PASS secret") == b"-ERR Unable to lock maildrop\r\n"


def test_login_limit(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "login-limit=2", "login-failure-text=Logon failure.")
    for _ in range(2):
        with logged_in(server) as client:
            client.command("QUIT")
    with LineClient(server, greeting=True) as client:
        client.command("USER alice")
        assert client.command("PASS secret") == b"-ERR Logon failure.\r\n"
    assert server.mailbox("alice").logins == 2


def test_drop_after_login_failure(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "drop-after-login-failure")
    with LineClient(server, greeting=True) as client:
        client.command("USER alice")
        assert client.command("PASS wrong").startswith(b"-ERR [AUTH]")
        assert client.closed_by_server()
    with logged_in(server) as client:  # a right password still gets in
        assert client.command("QUIT").startswith(b"+OK")


# --- sizes and framing -------------------------------------------------------------------


def test_sizes_lf(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "sizes-lf", messages=[SHORT])
    with logged_in(server) as client:
        assert client.command("STAT") == b"+OK 1 17\r\n"  # 20 octets less 3 CRs
        assert client.command("LIST 1") == b"+OK 1 17\r\n"
        assert multiline(client, "LIST")[1] == b"1 17\r\n.\r\n"
        status, message = multiline(client, "RETR 1")
        assert status == b"+OK 17 octets\r\n"
        assert message == SHORT + b".\r\n"  # what is sent is still CRLF
        client.command("DELE 1")
        assert client.command("STAT") == b"+OK 0 0\r\n"


def test_sizes_kib(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "sizes-kib", messages=[SHORT, SHORT * 60])
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user("alice")
    client.pass_("secret")
    assert client.stat() == (2, 1024 + 2048)
    assert client.list()[1] == [b"1 1024", b"2 2048"]
    client.quit()


def test_blank_before_dot(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "blank-before-dot", messages=[SHORT])
    with logged_in(server) as client:
        assert multiline(client, "RETR 1")[1] == SHORT + b"\r\n.\r\n"
        assert multiline(client, "TOP 1 0")[1] == b"Subject: a\r\n\r\n\r\n.\r\n"
        client.command("QUIT")
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user("alice")
    pop.pass_("secret")
    assert pop.retr(1)[1] == [b"Subject: a", b"", b"body", b""]
    pop.quit()


def test_top_bytes(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "top-bytes=15", messages=[DOTTED])
    with logged_in(server) as client:
        # The first 15 octets, ended as a line; the "." that starts a line is still stuffed.
        assert multiline(client, "TOP 1 10")[1] == b"Subject: b\r\n\r\n..\r\n.\r\n"
        assert multiline(client, "TOP 1 0")[1] == b"Subject: b\r\n\r\n.\r\n"  # under N: as it is
        assert multiline(client, "RETR 1")[1] == DOTTED.replace(b"\n.", b"\n..") + b".\r\n"


def test_top_ignores_lines(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "top-ignores-lines", messages=[DOTTED])
    with logged_in(server) as client:
        whole = DOTTED.replace(b"\n.", b"\n..") + b".\r\n"
        assert multiline(client, "TOP 1 0")[1] == whole
        assert multiline(client, "TOP 1 1")[1] == whole


# --- what a session sees ----------------------------------------------------------------


def test_popped_on_retr(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "popped-on-retr", recent_prefix=True)
    with logged_in(server) as client:
        multiline(client, "RETR 1")
        client.close()  # no QUIT: nothing is popped
    with logged_in(server) as client:
        multiline(client, "RETR 1")
        multiline(client, "TOP 2 0")  # TOP pops nothing
        assert client.command("QUIT").startswith(b"+OK")
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user("alice")
    pop.pass_("secret")
    assert pop.stat() == (1, len(DOTTED))  # the message popped is gone from the listing
    pop.quit()
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user("recent:alice")
    pop.pass_("secret")
    assert pop.stat()[0] == 2  # recent mode sees it still
    pop.quit()
    assert len(server.mailbox("alice")) == 2  # nothing was deleted


def test_oldest(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "oldest=1")
    with logged_in(server) as client:
        assert client.command("STAT") == f"+OK 1 {len(SHORT)}\r\n".encode()
        client.command("DELE 1")
        client.command("QUIT")
    with logged_in(server) as client:
        assert client.command("STAT") == f"+OK 1 {len(DOTTED)}\r\n".encode()  # the next one


# --- UIDL --------------------------------------------------------------------------------


def test_no_uidl(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "no-uidl")
    with logged_in(server) as client:
        assert client.command("UIDL").startswith(b"-ERR")
        assert client.command("UIDL 1").startswith(b"-ERR")
        assert b"UIDL" not in multiline(client, "CAPA")[1]


def test_uidl_blank(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "uidl-blank")
    with logged_in(server) as client:
        assert client.command("UIDL 2") == b"+OK 2 \r\n"
        assert multiline(client, "UIDL")[1] == b"1 \r\n2 \r\n.\r\n"


def test_uidl_duplicate(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "uidl-duplicate", messages=[SHORT, DOTTED, SHORT + b"3"])
    first, second, third = uidl(server)
    assert first == second
    assert third != first
    with logged_in(server) as client:
        assert client.command("UIDL 2") == b"+OK 2 " + first + b"\r\n"


def test_uidl_long(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "uidl-long")
    uids = uidl(server)
    assert all(len(uid) > 70 for uid in uids)
    assert len(set(uids)) == 2


def test_uidl_per_session(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "uidl-per-session")
    with logged_in(server) as client:
        _, listing = multiline(client, "UIDL")
        assert multiline(client, "UIDL")[1] == listing  # the same within a session
        client.command("QUIT")
    assert uidl(server) != uidl(server)
    assert uidl(make(pop3_server_factory)) == uidl(make(pop3_server_factory))  # unlike the default


def test_quirks_change_at_run_time(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory)
    server.change_settings(quirks=["no-uidl"])
    with logged_in(server) as client:
        assert client.command("UIDL").startswith(b"-ERR")
