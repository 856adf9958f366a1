"""POP3Server.checkpoint() and restore(): a server put back as it was, over real sockets."""

from __future__ import annotations

import contextlib
import poplib
import threading
from pathlib import Path

import pytest
from serving import serve

from fakepop import ControlClient, MaildirMailbox, POP3Server

MAIL = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n", b".\r\n\r\n.x\r\n"]


def login(server: POP3Server, password: str = "secret") -> poplib.POP3:
    client = poplib.POP3(server.host, server.port, timeout=10)
    client.user("alice")
    client.pass_(password)
    return client


def served(server: POP3Server) -> list[tuple[str, bytes]]:
    return [(m.uid, m.read()) for m in server.mailbox("alice")]


def test_restore_puts_back_accounts_mail_tokens_faults_settings_and_transcript() -> None:
    with POP3Server({"alice": "secret"}) as server:
        server.mailbox("alice").extend(MAIL)
        token = server.add_token("alice")
        server.faults.add(on="STAT", action="error", text="scripted")
        server.checkpoint()
        before = served(server)

        client = login(server)
        with pytest.raises(poplib.error_proto, match="scripted"):
            client.stat()  # the rule fires once, and is spent
        client.retr(1)
        client.dele(1)
        client.dele(3)
        client.quit()
        server.mailbox("alice").add(b"Subject: added\r\n\r\nlater\r\n")
        server.users["alice"] = "changed"
        server.users["bob"] = "pw"
        del server.store["alice"].tokens[token]
        server.faults.add(on="LIST", action="drop")
        server.change_settings(idle_timeout=7)
        assert server.mailbox("alice").deleted
        assert server.mailbox("alice").retrieved

        server.restore()

        assert served(server) == before
        assert sorted(server.users) == ["alice"]
        assert server.users["alice"] == "secret"
        assert token in server.store["alice"].tokens
        [rule] = server.faults
        assert rule.describe() == "on=STAT action=error code=SYS/TEMP text=scripted"
        assert server.settings.idle_timeout != 7
        assert len(server.transcript) == 0
        assert server.mailbox("alice").deleted == []
        assert server.mailbox("alice").retrieved == {}
        client = login(server)
        with pytest.raises(poplib.error_proto, match="scripted"):
            client.stat()  # fires again: the rule's count is put back too
        assert client.stat() == (3, sum(len(raw) for _, raw in before))
        client.quit()
        assert [s.session_id for s in server.transcript] == [1]


def test_restore_closes_a_session_left_open_and_commits_nothing() -> None:
    with POP3Server({"alice": "secret"}) as server:
        server.mailbox("alice").extend(MAIL)
        server.checkpoint()
        client = login(server)
        client.dele(1)
        server.restore()
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            client.quit()  # the connection is gone
        client.close()
        assert len(server.mailbox("alice")) == 3
        assert not server.mailbox("alice").locked
        login(server).quit()  # the maildrop is free for the next test


def test_restore_cuts_short_a_session_paused_by_a_fault() -> None:
    with POP3Server({"alice": "secret"}) as server:
        server.mailbox("alice").extend(MAIL)
        server.checkpoint()
        server.faults.add(on="RETR", action="delay", seconds=3600)
        client = login(server)
        client.sock.settimeout(3600)
        answered = threading.Event()

        def retrieve() -> None:
            with contextlib.suppress(poplib.error_proto, OSError, EOFError):
                client.retr(1)
            answered.set()

        thread = threading.Thread(target=retrieve, daemon=True)
        thread.start()
        while not server.faults.fired:  # the pause has begun
            threading.Event().wait(0.001)
        server.restore()  # returns: it does not wait out the hour
        thread.join()
        client.close()
        assert answered.is_set()


def test_restore_puts_a_maildir_back_on_disk(tmp_path: Path) -> None:
    with POP3Server({"alice": "secret"}, maildir=tmp_path) as server:
        server.mailbox("alice").extend(MAIL)
        server.checkpoint()
        before = served(server)
        files = sorted(p.name for p in (tmp_path / "alice").glob("*/*"))
        inodes = {p.name: p.stat().st_ino for p in (tmp_path / "alice").glob("*/*")}
        client = login(server)
        client.dele(2)
        client.quit()
        server.users["bob"] = "pw"
        server.mailbox("bob").add(MAIL[0])
        assert len(served(server)) == 2

        server.restore()

        assert served(server) == before  # same UIDs, same bytes, same order
        after = {p.name: p.stat().st_ino for p in (tmp_path / "alice").glob("*/*")}
        assert sorted(after) == files  # the same file names, so the same order and UIDs
        second = files[1]
        assert {n: i for n, i in after.items() if n != second} == {
            n: i for n, i in inodes.items() if n != second
        }  # only the deleted file was written again
        assert list((tmp_path / "bob").glob("*/*")) == []  # bob's mail is gone from disk
        client = login(server)
        assert client.stat()[0] == 3
        client.quit()


def test_restore_without_a_checkpoint_says_what_to_do() -> None:
    server = POP3Server({"alice": "secret"})
    with pytest.raises(RuntimeError, match=r"call server\.checkpoint\(\) first"):
        server.restore()


def test_serve_reset_puts_back_the_maildir_it_started_with_and_closes_sessions(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    before = MaildirMailbox(store / "alice")
    before.extend(MAIL)  # there before fakepop serve started, not named by its flags
    with serve(
        "--json", "--port", "0", "--no-tls", "--control-port", "0",
        "--user", "alice:secret", "--maildir", str(store),
    ) as running:  # fmt: skip
        control = ControlClient(running.info["control"]["url"])
        started = control.messages("alice")
        port = running.info["pop3"]["port"]
        client = poplib.POP3("127.0.0.1", port, timeout=10)
        client.user("alice")
        client.pass_("secret")
        for n in (1, 2, 3):
            client.dele(n)
        client.quit()
        left_open = poplib.POP3("127.0.0.1", port, timeout=10)
        left_open.user("alice")
        left_open.pass_("secret")
        assert control.messages("alice") == []

        control.reset()

        assert control.messages("alice") == started
        with pytest.raises((poplib.error_proto, OSError, EOFError)):
            left_open.stat()  # closed by the reset
        left_open.close()
        client = poplib.POP3("127.0.0.1", port, timeout=10)
        client.user("alice")
        client.pass_("secret")  # the maildrop is not held by the closed session
        assert client.stat()[0] == 3
        client.quit()
        assert running.stop()[0] == 0
