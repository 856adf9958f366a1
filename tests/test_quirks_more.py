"""More quirks, through a real socket: the glued dot, the session time limit, Gmail's recent
mode and oldest-N listing, and throttling answered with the persona's own text."""

from __future__ import annotations

import email.utils
import poplib
import time
from pathlib import Path

import pytest
from pop3 import LineClient, ServerFactory

from fakepop import POP3Server
from fakepop.mail.message import Message
from fakepop.mail.store import MailStore
from fakepop.protocol.actions import Close, Reply
from fakepop.protocol.session import Session
from fakepop.settings import Settings

UNENDED = b"Subject: a\r\n\r\nfirst line\r\nlast line"  # stored without a final line end
ENDED = b"Subject: b\r\n\r\nbody\r\n"


def make(factory: ServerFactory, *quirks: str, **options: object) -> POP3Server:
    options.setdefault("messages", [UNENDED, ENDED])
    return factory(users={"alice": "secret"}, tls=False, quirks=list(quirks), **options)


def logged_in(server: POP3Server, user: str = "alice") -> LineClient:
    client = LineClient(server, greeting=True)
    assert client.command(f"USER {user}").startswith(b"+OK")
    assert client.command("PASS secret").startswith(b"+OK")
    return client


def login(server: POP3Server, user: str = "alice") -> poplib.POP3:
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user(user)
    pop.pass_("secret")
    return pop


# --- glued-dot ---------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["memory", "maildir"])
def test_glued_dot(pop3_server_factory: ServerFactory, tmp_path: Path, store: str) -> None:
    options = {"maildir": tmp_path} if store == "maildir" else {}
    # A Message keeps the fact that its mail lacked a final line end, in memory or on disk.
    messages = [Message(UNENDED), ENDED]
    server = make(pop3_server_factory, "glued-dot", messages=messages, **options)
    with logged_in(server) as client:
        # Sizes count what is sent before ".\r\n": no CRLF for the message stored without one.
        assert client.command("LIST 1") == f"+OK 1 {len(UNENDED)}\r\n".encode()
        assert client.command("STAT") == f"+OK 2 {len(UNENDED) + len(ENDED)}\r\n".encode()
        assert client.command("RETR 1") == f"+OK {len(UNENDED)} octets\r\n".encode()
        assert client.read(len(UNENDED) + 3) == UNENDED + b".\r\n"  # "last line.", no dot line
        assert client.command("NOOP") == b"+OK\r\n"  # nothing else came before it
        assert client.command("RETR 2").startswith(b"+OK")  # a message that ends its line
        assert client.read(len(ENDED) + 3) == ENDED + b".\r\n"
        assert client.command("NOOP") == b"+OK\r\n"


def test_glued_dot_in_a_large_maildir_message(
    pop3_server_factory: ServerFactory, tmp_path: Path
) -> None:
    large = b"Subject: big\n\n" + b"x" * 1000 + b"\n" * 1200 + b"end"  # streamed: over 1 MiB
    large = large.replace(b"\n", b"\n" + b"y" * 1000)
    server = make(pop3_server_factory, "glued-dot", "sizes-lf", maildir=tmp_path, messages=[large])
    with logged_in(server) as client:
        assert client.command("LIST 1") == f"+OK 1 {len(large)}\r\n".encode()  # the file's size
        assert client.command("RETR 1").startswith(b"+OK")
        wire = large.replace(b"\n", b"\r\n")
        assert client.read(len(wire) + 3) == wire + b".\r\n"
        assert client.command("NOOP") == b"+OK\r\n"


def test_glued_dot_leaves_poplib_waiting_for_the_end(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "glued-dot")
    pop = poplib.POP3(server.host, server.port, timeout=0.5)
    pop.user("alice")
    pop.pass_("secret")
    assert pop.retr(2)[1] == [b"Subject: b", b"", b"body"]
    with pytest.raises(TimeoutError):  # "last line." is a line of the message: no end comes
        pop.retr(1)
    pop.close()


def test_without_glued_dot_the_line_is_ended(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory)
    with logged_in(server) as client:
        assert client.command("LIST 1") == f"+OK 1 {len(UNENDED) + 2}\r\n".encode()
        assert client.command("RETR 1").startswith(b"+OK")
        assert client.read(len(UNENDED) + 5) == UNENDED + b"\r\n.\r\n"


def test_a_checkpoint_keeps_the_missing_line_end(
    pop3_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = make(pop3_server_factory, "glued-dot", maildir=tmp_path)
    server.checkpoint()
    with logged_in(server) as client:
        client.command("DELE 1")
        client.command("QUIT")
    server.restore()
    with logged_in(server) as client:
        assert client.command("LIST 1") == f"+OK 1 {len(UNENDED)}\r\n".encode()


# --- session-limit -----------------------------------------------------------------------


def test_session_limit_is_not_reset_by_commands(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "session-limit=1", idle_timeout=60)
    with logged_in(server) as client:
        replies = []
        for _ in range(100):  # 10 s at most, far past the limit: NOOPs do not extend it
            replies.append(client.command("NOOP"))
            if replies[-1].startswith(b"-ERR"):
                break
            time.sleep(0.1)
        assert replies[-1] == b"-ERR Session time limit reached\r\n"
        assert set(replies[:-1]) == {b"+OK\r\n"}
        assert client.closed_by_server()
    assert len(server.mailbox("alice")) == 2  # nothing committed


def test_session_limit_ends_a_silent_session(pop3_server_factory: ServerFactory) -> None:
    server = make(pop3_server_factory, "session-limit=1", idle_timeout=60)
    with logged_in(server) as client:
        assert client.rest() == b"-ERR Session time limit reached\r\n"


def test_session_limit_counts_on_the_session_clock() -> None:
    now = [1000.0]
    store = MailStore()
    store.add_account("alice", "secret")
    session = Session(store, Settings(quirks=("session-limit=30",)), clock=lambda: now[0])
    session.start()
    assert session.time_left() == 30
    now[0] += 29
    reply = session.receive_data(b"USER alice\r\n")[0]  # a second before the limit
    assert isinstance(reply, Reply)
    assert reply.status.startswith(b"+OK")
    now[0] += 1
    events = session.receive_data(b"USER alice\r\n")
    assert events[0] == Reply(b"-ERR Session time limit reached\r\n")
    assert isinstance(events[-1], Close)
    assert session.closed


# --- recent-days and oldest (Gmail) --------------------------------------------------------


def dated(subject: str, days_ago: float | None) -> bytes:
    date = b""
    if days_ago is not None:
        stamp = email.utils.formatdate(time.time() - days_ago * 86400)
        date = f"Date: {stamp}\r\n".encode()
    return date + f"Subject: {subject}\r\n\r\n{subject}\r\n".encode()


MAIL = [dated("old", 40), dated("undated", None), dated("new", 1)]


def test_recent_days_shows_the_last_days_popped_or_not(pop3_server_factory: ServerFactory) -> None:
    server = make(
        pop3_server_factory, "popped-on-retr", "recent-days=30", recent_prefix=True, messages=MAIL
    )
    pop = login(server)
    assert pop.stat()[0] == 3  # a plain login sees all that is not popped
    for number in (1, 2, 3):
        pop.retr(number)
    pop.quit()
    pop = login(server)
    assert pop.stat()[0] == 0  # all popped
    pop.quit()
    pop = login(server, "recent:alice")
    bodies = [pop.retr(n)[1][-1] for n in range(1, pop.stat()[0] + 1)]
    assert bodies == [b"undated", b"new"]  # 40 days old is not recent
    pop.quit()


def test_gmail_recent_mode_shows_30_days(pop3_server_factory: ServerFactory) -> None:
    server = pop3_server_factory(
        users={"alice": "secret"}, persona="gmail", tls=False, messages=MAIL
    )
    pop = login(server, "recent:alice")
    assert pop.stat()[0] == 2
    pop.quit()


def test_oldest_lists_the_next_after_deletion(pop3_server_factory: ServerFactory) -> None:
    messages = [f"Subject: {n}\r\n\r\nmessage {n}\r\n".encode() for n in range(1, 6)]
    server = make(pop3_server_factory, "oldest=2", messages=messages)
    for first in (1, 3, 5):
        pop = login(server)
        count = pop.stat()[0]
        assert count == min(2, 6 - first)
        for number in range(1, count + 1):
            assert pop.retr(number)[1][-1] == f"message {first + number - 1}".encode()
            pop.dele(number)
        pop.quit()
    assert len(server.mailbox("alice")) == 0


# --- login-limit with the persona's text -----------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "text"),
    [
        ("outlook", b"-ERR Logon failure: unknown user name or bad password."),
        ("gmail", b"-ERR [AUTH] Username and password not accepted."),
    ],
)
def test_throttling_answers_in_the_personas_words(
    pop3_server_factory: ServerFactory, persona: str, text: bytes
) -> None:
    server = pop3_server_factory(
        users={"alice": "secret"}, persona=persona, quirks=["login-limit=2"], tls=False
    )
    for _ in range(2):
        login(server).quit()
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user("alice")
    with pytest.raises(poplib.error_proto) as throttled:
        pop.pass_("secret")
    pop.close()
    pop = poplib.POP3(server.host, server.port, timeout=5)
    pop.user("alice")
    with pytest.raises(poplib.error_proto) as wrong:
        pop.pass_("wrong")
    pop.close()
    assert throttled.value.args[0] == wrong.value.args[0] == text  # they look the same
