"""Maildrops, their locks and LOGIN-DELAY; the store of accounts."""

from __future__ import annotations

import errno
import tracemalloc
from collections.abc import Iterator

import pytest
from pop3 import LineClient

from fakepop import POP3Server
from fakepop.mail import Account, Mailbox, MaildropError, MailStore, Message

A = b"Subject: a\r\n\r\nA\r\n"
B = b"Subject: b\r\n\r\nB\r\n"
C = b"Subject: c\r\n\r\nC\r\n"


def uids(mailbox: Mailbox) -> list[str]:
    return [m.uid for m in mailbox]


def test_add_returns_the_content_uid() -> None:
    box = Mailbox()
    assert box.add(A) == Message(A).uid
    assert box.add("Subject: b\n\nB\n") == Message(B).uid
    assert uids(box) == [Message(A).uid, Message(B).uid]
    assert len(box) == 2


def test_same_content_gets_numbered_suffixes() -> None:
    box = Mailbox()
    base = Message(A).uid
    assert box.extend([A, A, A]) == [base, f"{base}-2", f"{base}-3"]


def test_the_same_message_object_added_twice_gets_two_uids() -> None:
    box = Mailbox()
    message = Message(A)
    first = box.add(message)
    second = box.add(message)
    assert first != second
    # UIDL must list distinct ids (RFC 1939, section 7).
    assert uids(box) == [first, second]


def test_adding_a_message_to_another_mailbox_leaves_the_first_alone() -> None:
    first, second = Mailbox(), Mailbox()
    message = Message(A)
    uid = first.add(message)
    second.add(message, uid="elsewhere")
    assert uids(first) == [uid]
    assert uids(second) == ["elsewhere"]


def test_explicit_uid_is_validated() -> None:
    box = Mailbox()
    with pytest.raises(ValueError, match="UID"):
        box.add(A, uid="has space")
    with pytest.raises(ValueError, match="UID"):
        box.add(A, uid="")
    assert len(box) == 0


def test_explicit_uid_must_be_unique() -> None:
    box = Mailbox()
    auto = box.add(A)
    assert box.add(B, uid="mine") == "mine"
    with pytest.raises(ValueError, match="already in this mailbox"):
        box.add(C, uid="mine")
    with pytest.raises(ValueError, match="already in this mailbox"):
        box.add(C, uid=auto)
    assert uids(box) == [auto, "mine"]


def test_suffixes_skip_uids_taken_explicitly() -> None:
    box = Mailbox()
    base = box.add(A)
    box.add(B, uid=f"{base}-2")
    assert box.add(A) == f"{base}-3"


def test_messages_is_a_copy_and_clear_empties() -> None:
    box = Mailbox()
    box.add(A)
    box.messages.clear()
    assert len(box) == 1
    box.clear()
    assert len(box) == 0
    assert box.add(A) == Message(A).uid  # the uid is free again


def test_acquire_locks_and_a_second_holder_gets_in_use() -> None:
    box = Mailbox()
    box.add(A)
    first, second = object(), object()
    assert not box.locked
    assert [m.read() for m in box.acquire(first)] == [A]
    assert box.locked
    with pytest.raises(MaildropError) as info:
        box.acquire(second)
    assert info.value.code == "IN-USE"
    box.release(first)
    assert not box.locked
    box.acquire(second)
    assert box.locked


def test_release_removes_exactly_the_deleted() -> None:
    box = Mailbox()
    a, b, c = box.extend([A, B, C])
    holder = object()
    box.acquire(holder)
    box.release(holder, delete={a, c})
    assert uids(box) == [b]
    assert not box.locked
    assert box.add(A) == a  # a removed uid may be used again


def test_release_without_deletions_keeps_everything() -> None:
    box = Mailbox()
    box.extend([A, B])
    holder = object()
    box.acquire(holder)
    box.release(holder)
    assert len(box) == 2


def test_a_record_limit_keeps_the_latest_deletions_and_retrievals() -> None:
    box = Mailbox()
    box.record_limit = 2
    for session in range(1, 4):
        uid = box.add(f"Subject: {session}\r\n\r\n{session}\r\n")
        holder = object()
        box.acquire(holder)
        for _ in range(3):
            box.record_retrieval(session, uid)
        box.release(holder, delete={uid})
    assert len(box.deleted) == 2
    assert list(box.retrieved) == [2, 3]
    assert all(len(uids) == 2 for uids in box.retrieved.values())


def test_release_by_a_non_holder_does_nothing() -> None:
    box = Mailbox()
    a, _ = box.extend([A, B])
    holder = object()
    box.acquire(holder)
    box.release(object(), delete={a})
    assert box.locked
    assert len(box) == 2
    box.release(holder)
    assert not box.locked


def test_a_snapshot_does_not_see_later_mail() -> None:
    box = Mailbox()
    box.add(A)
    holder = object()
    snapshot = box.acquire(holder)
    box.add(B)
    assert [m.read() for m in snapshot] == [A]
    box.release(holder)
    assert [m.read() for m in box.acquire(holder)] == [A, B]


def test_sessions_share_a_snapshot_until_the_maildrop_changes() -> None:
    box = Mailbox()
    a = box.add(A)
    holder = object()
    first = box.acquire(holder)
    box.release(holder)
    assert box.acquire(holder) is first  # its sizes and listings are not made again
    box.release(holder)
    b = box.add(B)
    second = box.acquire(holder)
    assert second is not first
    assert second.size_listing == b"1 %d\r\n2 %d\r\n" % (len(A), len(B))
    assert second.uid_listing == f"1 {a}\r\n2 {b}\r\n".encode()
    assert (second.sizes, second.octets) == ((len(A), len(B)), len(A) + len(B))
    box.release(holder, delete={a})
    third = box.acquire(holder)
    assert third.uid_listing == f"1 {b}\r\n".encode()
    assert first.uid_listing == f"1 {a}\r\n".encode()  # a snapshot never changes


@pytest.mark.parametrize("how", ["remove", "clear", "commit"])
def test_mail_taken_out_is_not_kept_alive_by_a_shared_snapshot(how: str) -> None:
    box = Mailbox()
    tracemalloc.start()
    try:
        uid = box.add(b"Subject: big\r\n\r\n" + b"x" * 8_000_000 + b"\r\n")
        holder = object()
        box.acquire(holder)  # the snapshot sessions share, not held by this test
        if how == "commit":
            box.release(holder, delete={uid})
        elif how == "remove":
            box.release(holder)
            box.remove(uid)
        else:
            box.release(holder)
            box.clear()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 1_000_000


def test_a_commit_keeps_mail_that_arrived_during_the_session() -> None:
    box = Mailbox()
    a = box.add(A)
    holder = object()
    box.acquire(holder)
    b = box.add(B)
    box.release(holder, delete={a})
    assert uids(box) == [b]


def test_store_creates_accounts_from_users() -> None:
    store = MailStore({"alice": "secret", "bob": "hunter2"})
    assert len(store) == 2
    assert [a.name for a in store] == ["alice", "bob"]
    assert store["alice"].password == "secret"
    assert store.get("carol") is None


def test_add_account_changes_the_password_and_keeps_the_mail() -> None:
    store = MailStore({"alice": "secret"})
    store["alice"].mailbox.add(A)
    account = store.add_account("alice", "new")
    assert account is store["alice"]
    assert account.password == "new"
    assert len(account.mailbox) == 1


@pytest.mark.parametrize("name", ["", "a\r", "a\nb", "a\0"])
def test_add_account_rejects_names_that_are_not_one_line(name: str) -> None:
    with pytest.raises(ValueError, match="account name"):
        MailStore().add_account(name, "pw")


def test_unknown_account_says_how_to_create_it() -> None:
    with pytest.raises(KeyError, match=r"server.users\['bob'\] = password"):
        MailStore()["bob"]


def test_remove_account() -> None:
    store = MailStore({"alice": "secret"})
    store.remove_account("alice")
    assert store.get("alice") is None


def test_open_takes_the_lock_and_records_the_login() -> None:
    store = MailStore({"alice": "secret"})
    account = store["alice"]
    account.mailbox.add(A)
    holder = object()
    assert [m.read() for m in store.open(account, holder, 100.0, None)] == [A]
    assert account.last_login == 100.0
    with pytest.raises(MaildropError) as info:
        store.open(account, object(), 200.0, None)
    assert info.value.code == "IN-USE"
    assert account.last_login == 100.0  # a refused login is no login


def test_open_enforces_login_delay() -> None:
    store = MailStore({"alice": "secret"})
    account = store["alice"]
    holder = object()
    store.open(account, holder, 1000.0, 300)
    account.mailbox.release(holder)
    with pytest.raises(MaildropError) as info:
        store.open(account, holder, 1100.0, 300)
    assert info.value.code == "LOGIN-DELAY"
    assert info.value.text == "Wait 200 seconds before logging in again"
    assert not account.mailbox.locked
    assert account.last_login == 1000.0
    store.open(account, holder, 1300.0, 300)
    assert account.last_login == 1300.0


def test_the_first_login_is_never_delayed() -> None:
    store = MailStore({"alice": "secret"})
    store.open(store["alice"], object(), 0.0, 300)


def test_a_per_account_login_delay_overrides_the_servers() -> None:
    store = MailStore({"alice": "secret", "bob": "pw"})
    alice, bob = store["alice"], store["bob"]
    alice.login_delay = 0  # exempt
    bob.login_delay = 60
    for account in (alice, bob):
        holder = object()
        store.open(account, holder, 1000.0, 3600)
        account.mailbox.release(holder)
    store.open(alice, object(), 1001.0, 3600)
    with pytest.raises(MaildropError, match="Wait 30 seconds"):
        store.open(bob, object(), 1030.0, 3600)
    store.open(bob, object(), 1060.0, 3600)


def test_account_defaults() -> None:
    account = Account("alice", "secret")
    assert (account.expire, account.login_delay, account.last_login) == (None, None, None)
    assert len(account.mailbox) == 0


def test_a_commit_removes_the_message_the_session_saw_not_a_later_one_of_its_uid() -> None:
    # Taken out by an administrator during the session, then added again: a new message
    # with the same content UID, which the session never saw and must not delete.
    box = Mailbox()
    a = box.add(A)
    holder = object()
    box.acquire(holder)
    box.remove(a)
    assert box.add(A) == a
    box.release(holder, delete={a})
    assert uids(box) == [a]
    assert box.deleted == [a]  # the session's deletion is done: its message is gone


class FailingMidway(Message):
    """A message whose store fails after its first piece is sent, as a disk read error would."""

    def chunks(self) -> Iterator[bytes]:  # type: ignore[override]  # lazy: it fails midway
        yield b"Subject: half\r\n"
        raise OSError(errno.EIO, "Input/output error")


def test_a_store_error_while_a_message_is_sent_ends_the_session_and_is_raised_by_check() -> None:
    with POP3Server(users={"alice": "secret"}) as server:
        server.mailbox("alice").add(FailingMidway(b"Subject: half\r\n\r\nbody\r\n"))
        client = LineClient(server)
        try:
            for command in (b"USER alice", b"PASS secret", b"DELE 1", b"RSET"):
                client.sock.sendall(command + b"\r\n")
                assert client.line().startswith(b"+OK")
            client.sock.sendall(b"RETR 1\r\n")
            rest = client.pending
            while data := client.sock.recv(4096):
                rest += data
            # Closed under way: never the terminator, never an -ERR inside the body.
            assert not rest.endswith(b"\r\n.\r\n")
            assert b"-ERR" not in rest
        finally:
            client.close()
        with pytest.raises(OSError, match="Input/output error"):
            server.stop()  # which waits for the session's thread to record the error
        assert server.violations == []


def test_waits_see_what_was_recorded_before_the_call() -> None:
    box = Mailbox()
    box.record_retrieval(1, "a")
    box.wait_for_retrieval("a", timeout=0)
    box.wait_for_retrieval(timeout=0)  # any retrieval
    with pytest.raises(TimeoutError, match=r"for a deletion; deleted so far: nothing"):
        box.wait_for_deletion(timeout=0)
    with pytest.raises(ValueError, match="timeout"):
        box.wait_for_deletion("a", timeout=-1)
