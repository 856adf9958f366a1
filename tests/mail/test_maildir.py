"""The Maildir store: delivery through tmp/, sizes, sessions, the commit journal, real sockets."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import poplib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from pop3 import ServerFactory

from fakepop import MaildirMailbox, POP3Server
from fakepop.mail.maildir import JOURNAL, LOCK, STAGING, WHOLE_READ, maildir_uid
from fakepop.mail.message import content_uid
from fakepop.mail.wire import to_crlf

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
USER, PASSWORD = "alice", "secret"
TIMEOUT = 10.0  # seconds for any socket operation; all of them take milliseconds
CHUNK = 65536  # the store reads message files in pieces of this size


def message(n: int, body: str = "body\n") -> bytes:
    return (
        f"From: Sender <sender@maildir.fakepop.test>\n"
        f"To: Alice <alice@maildir.fakepop.test>\n"
        f"Subject: message {n}\n"
        f"Date: Fri, 27 Nov 2026 09:{n % 60:02d}:00 +0000\n"
        f"Message-ID: <m{n}@maildir.fakepop.test>\n"
        f"\n{body}"
    ).encode()


def make_maildir(path: Path, files: dict[str, bytes]) -> Path:
    """A Maildir holding ``files``, given as "new/<name>" or "cur/<name>": content."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (path / name).write_bytes(content)
    return path


def deliver(maildir: Path, name: str, content: bytes) -> None:
    """Deliver as another program would: write in tmp/, then rename into new/."""
    (maildir / "tmp" / name).write_bytes(content)
    os.rename(maildir / "tmp" / name, maildir / "new" / name)


def files(maildir: Path) -> set[str]:
    """What is in new/ and cur/, as "new/<name>" and "cur/<name>"."""
    return {f"{sub}/{p.name}" for sub in ("new", "cur") for p in (maildir / sub).iterdir()}


Login = Callable[[POP3Server], poplib.POP3]


@pytest.fixture
def login() -> Iterator[Login]:
    """Log in with poplib; every client is closed at the end, whatever the test did."""
    opened: list[poplib.POP3] = []

    def connect(server: POP3Server) -> poplib.POP3:
        client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
        opened.append(client)
        client.user(USER)
        client.pass_(PASSWORD)
        return client

    yield connect
    for client in opened:
        client.close()


def maildir_of(server: POP3Server) -> Path:
    box = server.mailbox(USER)
    assert isinstance(box, MaildirMailbox)
    return box.path


def wait_unlocked(server: POP3Server) -> None:
    """Wait until the server has noticed a dropped session and released the maildrop."""
    deadline = time.monotonic() + TIMEOUT
    while server.mailbox(USER).locked:
        assert time.monotonic() < deadline, "the maildrop is still locked"
        time.sleep(0.005)


def unstuffed(lines: list[bytes]) -> bytes:
    """poplib undoes the byte-stuffing and drops the line ends; put the CRLFs back."""
    return b"".join(line + b"\r\n" for line in lines)


FIVE = {
    "cur/1795770000.M1P1.maildir.test:2,S": message(1),
    "new/1795770060.M2P1.maildir.test": message(2),
    "cur/1795770120.M3P1.maildir.test:2,RS": message(3),
    "new/1795770180.M4P1.maildir.test": message(4),
    "new/1795770240.M5P1.maildir.test": message(5),
}


@pytest.fixture
def server(tmp_path: Path, pop3_server_factory: ServerFactory) -> POP3Server:
    make_maildir(tmp_path / USER, FIVE)
    return pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)


# --- delivery -------------------------------------------------------------------------------


def test_add_writes_through_tmp_into_new(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["cur", "new", "tmp"]
    uid = box.add(message(1))
    (name,) = [p.name for p in (tmp_path / "m" / "new").iterdir()]
    assert maildir_uid(name) == uid
    assert (tmp_path / "m" / "new" / name).read_bytes() == message(1)
    assert list((tmp_path / "m" / "tmp").iterdir()) == []
    assert list((tmp_path / "m" / "cur").iterdir()) == []
    assert box.add(message(2), uid="given") == "given"
    assert [m.uid for m in box.messages] == [uid, "given"]
    with pytest.raises(ValueError, match="already in this mailbox"):
        box.add(message(3), uid="given")
    with pytest.raises(ValueError, match="a:b"):
        box.add(message(3), uid="a:b")  # ":" starts a Maildir file name's flags


def test_add_delivers_nothing_when_tmp_is_unusable(tmp_path: Path) -> None:
    # The file is written in tmp/ first: without a tmp/ directory nothing reaches new/.
    box = MaildirMailbox(tmp_path)
    (tmp_path / "tmp").rmdir()
    (tmp_path / "tmp").write_bytes(b"not a directory")
    with pytest.raises(NotADirectoryError):
        box.add(message(1))
    assert files(tmp_path) == set()


def test_the_server_keeps_each_account_in_its_own_maildir(tmp_path: Path) -> None:
    server = POP3Server(users={USER: PASSWORD, "bob": "pw"}, maildir=tmp_path)
    box = server.mailbox(USER)
    assert isinstance(box, MaildirMailbox)
    assert box.path == tmp_path / USER
    uid = box.add(message(1))
    (delivered,) = (tmp_path / USER / "new").iterdir()
    assert delivered.read_bytes() == message(1)
    assert maildir_uid(delivered.name) == uid
    assert files(tmp_path / "bob") == set()
    server.users["carol"] = "pw"  # a new account gets a new Maildir
    assert (tmp_path / "carol" / "tmp").is_dir()


def test_mail_is_kept_in_the_order_it_was_added(tmp_path: Path) -> None:
    box = MaildirMailbox(tmp_path)
    uids = [box.add(message(1), uid="zeta"), box.add(message(2), uid="alpha"), box.add(message(3))]
    assert [m.uid for m in box.messages] == uids


def test_mail_added_without_a_uid_gets_the_content_uid(tmp_path: Path) -> None:
    # Mailbox.add: "by default one derived from the content", as the in-memory store does.
    box = MaildirMailbox(tmp_path)
    assert box.add(message(1)) == content_uid(to_crlf(message(1)))


# --- reading from disk ----------------------------------------------------------------------

ODD = {
    "new/1795770000.M1P1.crlf": message(1).replace(b"\n", b"\r\n"),
    "new/1795770001.M1P1.lf": message(2, "bare\nLF\n.dot\n"),
    "new/1795770002.M1P1.no-final-newline": message(3, "first\nlast line, no newline"),
    "new/1795770003.M1P1.cr": message(4).replace(b"\n", b"\r"),
    "cur/1795770004.M1P1.mixed:2,S": message(5, "crlf\r\nlf\ncr\r.dot\r\n"),
    "new/1795770005.M1P1.ends-in-cr": message(6, "held back\r"),
}


def test_sizes_and_contents_are_the_wire_form(tmp_path: Path) -> None:
    box = MaildirMailbox(make_maildir(tmp_path, ODD))
    wires = [to_crlf(raw) for _, raw in sorted(ODD.items(), key=lambda item: item[0][4:])]
    assert [m.size for m in box.messages] == [len(w) for w in wires]
    assert [m.read() for m in box.messages] == wires
    assert box.messages[2].read().endswith(b"last line, no newline\r\n")


def test_poplib_gets_the_wire_form_and_size(
    tmp_path: Path, login: Login, pop3_server_factory: ServerFactory
) -> None:
    make_maildir(tmp_path / USER, ODD)
    wires = [to_crlf(raw) for _, raw in sorted(ODD.items(), key=lambda item: item[0][4:])]
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    client = login(server)
    assert client.stat() == (len(wires), sum(len(w) for w in wires))
    for n, wire in enumerate(wires, 1):
        response, lines, _ = client.retr(n)
        assert response == f"+OK {len(wire)} octets".encode()
        assert unstuffed(lines) == wire
    client.quit()


def test_a_wire_size_in_the_file_name_is_trusted(tmp_path: Path) -> None:
    # Maildir++ ",W=": the size with CRLF line ends, as Dovecot writes it; not re-read.
    box = MaildirMailbox(
        make_maildir(
            tmp_path,
            {
                "cur/1795770000.M1P1.host,S=140,W=4242:2,S": message(1),
                "new/1795770001.M1P1.host,S=140": message(2),
            },
        )
    )
    assert [m.size for m in box.messages] == [4242, len(to_crlf(message(2)))]
    assert [m.uid for m in box.messages] == [
        "1795770000.M1P1.host,S=140,W=4242",
        "1795770001.M1P1.host,S=140",
    ]


def test_dot_files_and_tmp_are_not_mail(tmp_path: Path) -> None:
    box = MaildirMailbox(make_maildir(tmp_path, {"new/.gitkeep": b"", "cur/.hidden:2,S": b"x"}))
    (tmp_path / "tmp" / "1795770000.M1P1.half-written").write_bytes(message(1))
    assert box.messages == []
    deliver(tmp_path, "1795770001.M1P1.host", message(2))
    assert [m.uid for m in box.messages] == ["1795770001.M1P1.host"]


def test_mail_delivered_during_a_session_shows_in_the_next(
    server: POP3Server, login: Login
) -> None:
    maildir = maildir_of(server)
    client = login(server)
    before = client.stat()
    uids_before = client.uidl()[1]
    deliver(maildir, "1795770300.M6P2.other-writer", message(6))
    assert client.stat() == before
    assert client.uidl()[1] == uids_before
    with pytest.raises(poplib.error_proto, match="No such message"):
        client.retr(6)
    client.quit()

    client = login(server)
    assert client.stat() == (6, before[1] + len(to_crlf(message(6))))
    assert client.uidl(6) == b"+OK 6 1795770300.M6P2.other-writer"
    assert unstuffed(client.retr(6)[1]) == to_crlf(message(6))
    client.quit()


def test_another_program_moving_or_rewriting_mail_is_seen(server: POP3Server, login: Login) -> None:
    # The store remembers what it read of each file between sessions; a file another
    # program moved to cur/ or replaced must be served as it now is.
    maildir = maildir_of(server)
    client = login(server)
    uids = client.uidl()[1]
    client.quit()
    os.rename(
        maildir / "new/1795770060.M2P1.maildir.test",
        maildir / "cur/1795770060.M2P1.maildir.test:2,S",
    )
    rewritten = message(4, body="a longer body, edited by another program\n")
    (maildir / "tmp/edit").write_bytes(rewritten)
    os.rename(maildir / "tmp/edit", maildir / "new/1795770180.M4P1.maildir.test")

    client = login(server)
    assert client.uidl()[1] == uids
    assert unstuffed(client.retr(2)[1]) == to_crlf(message(2))
    assert cast(bytes, client.list(4)) == f"+OK 4 {len(to_crlf(rewritten))}".encode()
    assert unstuffed(client.retr(4)[1]) == to_crlf(rewritten)
    client.dele(2)
    client.quit()
    assert not (maildir / "cur/1795770060.M2P1.maildir.test:2,S").exists()
    assert len(files(maildir)) == 4


def test_a_file_replaced_under_a_snapshot_is_sent_whole(tmp_path: Path) -> None:
    # A session's snapshot knows the file's old size; what is sent is the file as it is.
    box = MaildirMailbox(make_maildir(tmp_path, {"new/1795770000.M1P1.host": message(1)}))
    (listed,) = box.messages
    longer = message(1, body="body\n" * 1000)
    (tmp_path / "tmp" / "edit").write_bytes(longer)
    os.rename(tmp_path / "tmp" / "edit", tmp_path / "new/1795770000.M1P1.host")
    assert b"".join(listed.chunks()) == to_crlf(longer)


def set_mtimes(maildir: Path, stamps: tuple[int, int]) -> None:
    for sub, stamp in zip(("new", "cur"), stamps, strict=True):
        os.utime(maildir / sub, ns=(stamp, stamp))


def mtimes(maildir: Path) -> tuple[int, int]:
    return ((maildir / "new").stat().st_mtime_ns, (maildir / "cur").stat().st_mtime_ns)


def test_a_delivery_in_the_same_clock_tick_as_a_scan_is_seen(tmp_path: Path) -> None:
    # A coarse file system clock can leave a directory's mtime unchanged by a delivery
    # just after a scan; the store must not take the unchanged mtime's word for it.
    box = MaildirMailbox(make_maildir(tmp_path, FIVE))
    before = mtimes(tmp_path)
    assert len(box.messages) == 5
    deliver(tmp_path, "1795770300.M6P2.same-tick", message(6))
    set_mtimes(tmp_path, before)
    assert len(box.messages) == 6


def test_a_maildir_unchanged_for_a_while_is_not_listed_again(tmp_path: Path) -> None:
    box = MaildirMailbox(make_maildir(tmp_path, FIVE))
    set_mtimes(tmp_path, (time.time_ns() - 10**10,) * 2)  # ten seconds ago
    holder = object()
    first = box.acquire(holder)
    box.release(holder)
    assert box.acquire(holder) is first
    box.release(holder)
    deliver(tmp_path, "1795770300.M6P2.later", message(6))
    assert len(box.acquire(holder)) == 6
    box.release(holder)


# --- deletion, and what the mailbox records -------------------------------------------------


def test_dele_and_quit_remove_exactly_those_files(server: POP3Server, login: Login) -> None:
    maildir = maildir_of(server)
    client = login(server)
    client.dele(2)
    client.dele(3)
    assert client.quit() == b"+OK fakepop signing off (2 deleted, 3 left)"
    assert files(maildir) == set(FIVE) - {
        "new/1795770060.M2P1.maildir.test",
        "cur/1795770120.M3P1.maildir.test:2,RS",
    }
    assert not (maildir / JOURNAL).exists()
    assert list((maildir / "tmp").iterdir()) == []
    assert server.mailbox(USER).deleted == [
        "1795770060.M2P1.maildir.test",
        "1795770120.M3P1.maildir.test",
    ]
    client = login(server)
    client.dele(1)
    client.quit()
    assert server.mailbox(USER).deleted[-1] == "1795770000.M1P1.maildir.test"
    assert len(server.mailbox(USER).deleted) == 3


def test_a_dropped_session_deletes_nothing(server: POP3Server, login: Login) -> None:
    maildir = maildir_of(server)
    client = login(server)
    client.dele(1)
    client.dele(4)
    client.close()  # no QUIT
    wait_unlocked(server)
    assert files(maildir) == set(FIVE)
    assert server.mailbox(USER).deleted == []
    assert login(server).stat()[0] == 5


def test_rset_undoes_dele(server: POP3Server, login: Login) -> None:
    maildir = maildir_of(server)
    client = login(server)
    client.dele(5)
    client.rset()
    client.quit()
    assert files(maildir) == set(FIVE)
    assert server.mailbox(USER).deleted == []


def test_retrieved_records_retr_and_top_per_session(server: POP3Server, login: Login) -> None:
    uids = [m.uid for m in server.mailbox(USER).messages]
    client = login(server)
    client.retr(1)
    client.top(4, 0)
    client.list()
    client.uidl()
    client.quit()
    client = login(server)
    client.retr(2)
    client.retr(2)
    client.quit()
    assert server.mailbox(USER).retrieved == {1: [uids[0], uids[3]], 2: [uids[1], uids[1]]}


# --- the commit journal ----------------------------------------------------------------------


def leave_commit(maildir: Path, where: str, names: list[str]) -> None:
    """As a process killed in a commit leaves it: ``names`` ("new/..." or "cur/...") moved
    from the Maildir into ``where`` (STAGING before the commit point, JOURNAL after it)."""
    for sub in ("new", "cur"):
        (maildir / where / sub).mkdir(parents=True)
    for name in names:
        os.rename(maildir / name, maildir / where / name)


def test_a_leftover_journal_is_finished_when_the_maildir_is_opened(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / USER, FIVE)
    # Killed past the commit point, with one of the files deleted already.
    leave_commit(maildir, JOURNAL, ["cur/1795770120.M3P1.maildir.test:2,RS"])
    (maildir / "new" / "1795770060.M2P1.maildir.test").unlink()
    box = MaildirMailbox(maildir, create=False)
    assert not (maildir / JOURNAL).exists()
    assert files(maildir) == set(FIVE) - {
        "new/1795770060.M2P1.maildir.test",
        "cur/1795770120.M3P1.maildir.test:2,RS",
    }
    assert len(box.messages) == 3


def test_a_commit_killed_before_its_commit_point_is_undone(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / USER, FIVE)
    leave_commit(
        maildir,
        STAGING,
        ["new/1795770060.M2P1.maildir.test", "cur/1795770000.M1P1.maildir.test:2,S"],
    )
    assert len(files(maildir)) == 3
    box = MaildirMailbox(maildir, create=False)
    assert not (maildir / STAGING).exists()
    assert files(maildir) == set(FIVE)
    assert len(box.messages) == 5


def test_the_server_finishes_a_leftover_journal_before_serving(
    tmp_path: Path,
    login: Login,
    pop3_server_factory: ServerFactory,
) -> None:
    maildir = make_maildir(tmp_path / USER, FIVE)
    leave_commit(maildir, JOURNAL, ["cur/1795770000.M1P1.maildir.test:2,S"])
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    assert not (maildir / JOURNAL).exists()
    client = login(server)
    assert client.stat()[0] == 4
    assert client.uidl(1) == b"+OK 1 1795770060.M2P1.maildir.test"
    client.quit()


def test_what_a_killed_process_left_in_tmp_is_swept(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    live = str(os.getpid())
    left = {
        f"1795770000.P{dead}Q0.fakepop,U=half-delivered": False,
        f"1795770001.P{live}Q7.fakepop,U=being-delivered": True,  # a process still at it
        "1795770002.M1P1.other-program": True,  # not ours to delete
    }
    maildir = make_maildir(tmp_path, {})
    for name in left:
        (maildir / "tmp" / name).write_bytes(message(1))
    MaildirMailbox(maildir)
    assert {p.name for p in (maildir / "tmp").iterdir()} == set(left)  # all too recent
    an_hour_ago = time.time() - 3601
    for name in left:
        os.utime(maildir / "tmp" / name, (an_hour_ago, an_hour_ago))
    MaildirMailbox(maildir)
    assert {p.name for p in (maildir / "tmp").iterdir()} == {n for n, kept in left.items() if kept}


def test_finishing_a_journal_deletes_links_not_what_they_point_to(tmp_path: Path) -> None:
    outside = tmp_path / "victim"
    outside.write_bytes(b"not mail")
    maildir = make_maildir(tmp_path / "box", FIVE)
    leave_commit(maildir, JOURNAL, ["new/1795770060.M2P1.maildir.test"])
    (maildir / JOURNAL / "cur" / "link").symlink_to(outside)
    MaildirMailbox(maildir, create=False)
    assert outside.read_bytes() == b"not mail"
    assert files(maildir) == set(FIVE) - {"new/1795770060.M2P1.maildir.test"}
    assert not (maildir / JOURNAL).exists()


@pytest.mark.parametrize("name", ["../x", ".hidden", "a/b", "..", ".", "a\\b"])
def test_account_names_that_would_leave_the_root_are_refused(tmp_path: Path, name: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    server = POP3Server(maildir=root)
    with pytest.raises(ValueError, match="cannot be a Maildir"):
        server.users[name] = "pw"
    with pytest.raises(ValueError, match="cannot be a Maildir"):
        POP3Server(users={name: "pw"}, maildir=root)
    assert list(tmp_path.iterdir()) == [root]
    assert list(root.iterdir()) == []


# --- byte-exact over the wire, across the store's read chunks --------------------------------


def dot_stuffed(wire: bytes) -> bytes:
    """RFC 1939 byte-stuffing, written here independently of fakepop.mail.wire."""
    return re.sub(rb"(?m)^\.", b"..", wire)


def with_dot_lines_at_chunk_edges(size: int, eol: bytes, subject: str) -> bytes:
    """A message of about ``size`` octets whose lines starting with "." begin within two
    octets of each multiple of CHUNK in the file, so every split of EOL and "." is read."""
    text = bytearray(message(0).replace(b"\n", eol).replace(b"message 0", subject.encode()))
    del text[-len(b"body") - len(eol) :]
    k, n = 1, 0
    while len(text) < size:
        target = k * CHUNK + (k % 5) - 2  # -2 .. +2 around the boundary
        gap = target - len(text)
        if gap <= 0:
            dot = [b".", b"..", b".x", b"...", b". space"][k % 5]
            text += dot + eol
            k += 1
        elif gap < 60 + 2 * len(eol):
            text += b"p" * (gap - len(eol)) + eol  # pad so the dot line lands on target
        else:
            n += 1
            text += b"line %06d of filler text, long enough to be ordinary mail." % n + eol
    return bytes(text + b"." + eol)  # and a last line of "."


@pytest.fixture(scope="module")
def big_maildir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("big")
    make_maildir(
        root / USER,
        {
            "new/1795770000.M1P1.dots": (FIXTURES / "eml" / "dot-lines.eml").read_bytes(),
            "new/1795770001.M1P1.big-crlf": with_dot_lines_at_chunk_edges(
                5 * 1024 * 1024, b"\r\n", "5 MB, CRLF"
            ),
            "new/1795770002.M1P1.big-lf": with_dot_lines_at_chunk_edges(
                1024 * 1024, b"\n", "1 MB, bare LF"
            ),
            # Read whole rather than streamed: the largest file read at once.
            "new/1795770003.M1P1.whole-read": with_dot_lines_at_chunk_edges(
                WHOLE_READ - 200, b"\n", "just under WHOLE_READ, bare LF"
            )[: WHOLE_READ - 2]
            + b".\n",
        },
    )
    return root


def raws(root: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((root / USER / "new").iterdir())]


def test_the_big_messages_put_dot_lines_on_every_chunk_edge(big_maildir: Path) -> None:
    for raw in raws(big_maildir)[1:]:
        starts = {m.start() + 1 for m in re.finditer(rb"\n\.", raw)}
        for k in range(1, len(raw) // CHUNK):
            assert k * CHUNK + (k % 5) - 2 in starts, k
    assert len(raws(big_maildir)[1]) > 5 * 1024 * 1024


def test_poplib_retr_is_byte_exact(
    big_maildir: Path, login: Login, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=big_maildir, tls=False)
    client = login(server)
    for n, raw in enumerate(raws(big_maildir), 1):
        wire = to_crlf(raw)
        assert cast(bytes, client.list(n)) == f"+OK {n} {len(wire)}".encode()
        _, lines, octets = client.retr(n)
        assert unstuffed(lines) == wire, n
        assert octets == len(wire)  # poplib counts the octets after un-stuffing
    client.quit()


def top_of(wire: bytes, lines: int) -> bytes:
    head, _, body = wire.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n" + b"".join(body.splitlines(keepends=True)[:lines])


def test_poplib_top_is_byte_exact(
    big_maildir: Path, login: Login, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=big_maildir, tls=False)
    client = login(server)
    for n, raw in enumerate(raws(big_maildir), 1):
        wire = to_crlf(raw)
        body = wire.partition(b"\r\n\r\n")[2].split(b"\r\n")[:-1]
        # Cut just before and just after each of the first dot lines (the first chunk
        # edges, in the big messages), and past the end: the whole message.
        dots = [i for i, line in enumerate(body) if line.startswith(b".")]
        cuts = {0, 1, len(body) + 10} | {d + e for d in dots[:4] for e in (0, 1)}
        for lines in sorted(cuts):
            assert unstuffed(client.top(n, lines)[1]) == top_of(wire, lines), (n, lines)
    client.quit()


def test_retr_on_the_wire_is_the_stuffed_message_and_terminator(
    big_maildir: Path, pop3_server_factory: ServerFactory
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=big_maildir, tls=False)
    with (
        socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock,
        sock.makefile("rb") as reader,
    ):
        assert reader.readline().startswith(b"+OK")
        sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        assert reader.readline().startswith(b"+OK")
        assert reader.readline().startswith(b"+OK")
        for n, raw in enumerate(raws(big_maildir), 1):
            wire = to_crlf(raw)
            expected = dot_stuffed(wire) + b".\r\n"
            sock.sendall(f"RETR {n}\r\n".encode())
            assert reader.readline() == f"+OK {len(wire)} octets\r\n".encode()
            assert reader.read(len(expected)) == expected, n
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"+OK")
        assert reader.read() == b""  # and the server closes


# --- odd names, twin names, and mail moved by another program during a commit ---------------

# What splitlines() splits on besides "\n": each once made a commit delete the wrong file.
SEPARATORS = [
    "\n",
    "\r",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
]


def test_any_file_name_round_trips_through_a_commit(
    tmp_path: Path, login: Login, pop3_server_factory: ServerFactory
) -> None:
    maildir = make_maildir(tmp_path / USER, {})
    odd, innocent = set(), set()
    for n, separator in enumerate(SEPARATORS):
        # Each odd name holds, before its separator, the name of an innocent message.
        stem = f"17957700{n:02d}.M{n}P1.host"
        sub = "new" if n % 2 else "cur"
        (maildir / sub / stem).write_bytes(message(n))
        (maildir / sub / f"{stem}{separator}x").write_bytes(message(100 + n))
        innocent.add(f"{sub}/{stem}")
        odd.add(f"{sub}/{stem}{separator}x")
    not_utf8 = os.fsdecode(b"1795770099.M99P1.\xff\xfe")  # bytes no encoding gives a name
    (maildir / "new" / not_utf8).write_bytes(message(99))
    odd.add(f"new/{not_utf8}")
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    client = login(server)
    by_uid = {maildir_uid(name.partition("/")[2]): name for name in odd | innocent}
    listed = [line.split() for line in client.uidl()[1]]
    assert len(listed) == len(by_uid)
    for number, uid in listed:
        if by_uid[uid.decode()] in odd:
            client.dele(int(number))
    left = f"{len(odd)} deleted, {len(innocent)} left"
    assert client.quit() == f"+OK fakepop signing off ({left})".encode()
    assert files(maildir) == innocent


def twins(maildir: Path) -> dict[str, bytes]:
    """Two pairs of files claiming one UID each: a copy in new/ and cur/, and two ",U=" alike."""
    pairs = {
        "new/1795770000.M1P1.twin": message(1),
        "cur/1795770000.M1P1.twin:2,S": message(2),
        "new/1795770001.P9Q1.fakepop,U=same": message(3),
        "new/1795770002.P9Q2.fakepop,U=same": message(4),
    }
    make_maildir(maildir, pairs)
    return pairs


def test_files_claiming_one_uid_get_unique_uids_that_last(
    tmp_path: Path, login: Login, pop3_server_factory: ServerFactory
) -> None:
    twins(tmp_path / USER)
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    client = login(server)
    uids = client.uidl()[1]
    assert len({line.split()[1] for line in uids}) == 4
    client.quit()
    assert login(server).uidl()[1] == uids  # the same in the next session (RFC 1939, 7)


def test_a_copy_appearing_later_leaves_the_first_its_uid(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path, {"cur/1795770000.M1P1.twin:2,S": message(1)})
    box = MaildirMailbox(maildir)
    (first,) = box.messages
    (maildir / "new" / "1795770000.M1P1.twin").write_bytes(message(2))  # sorts first
    assert [m.uid for m in box.messages] == [
        f"{first.uid}.{os.stat(maildir / 'new' / '1795770000.M1P1.twin').st_ino}",
        first.uid,
    ]


@pytest.mark.parametrize("number", [1, 2, 3, 4])
def test_dele_of_one_twin_removes_exactly_that_file(
    tmp_path: Path,
    login: Login,
    number: int,
    pop3_server_factory: ServerFactory,
) -> None:
    pairs = twins(tmp_path / USER)
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    client = login(server)
    content = unstuffed(client.retr(number)[1])
    client.dele(number)
    assert client.quit() == b"+OK fakepop signing off (1 deleted, 3 left)"
    left = {name: (tmp_path / USER / name).read_bytes() for name in files(tmp_path / USER)}
    assert sorted(map(to_crlf, left.values())) == sorted(
        to_crlf(raw) for raw in pairs.values() if to_crlf(raw) != content
    )


def test_a_message_that_cannot_be_told_from_its_twins_is_not_deleted(
    tmp_path: Path,
    login: Login,
    pop3_server_factory: ServerFactory,
) -> None:
    pairs = twins(tmp_path / USER)
    maildir = tmp_path / USER
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    client = login(server)
    client.dele(1)  # new/1795770000.M1P1.twin
    # Another program rewrites it into cur/: now two files of its name, neither it.
    (maildir / "tmp" / "edit").write_bytes(message(1, "edited\n"))
    os.rename(maildir / "tmp" / "edit", maildir / "cur" / "1795770000.M1P1.twin:2,RS")
    (maildir / "new" / "1795770000.M1P1.twin").unlink()
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\].*no message was deleted"):
        client.quit()
    with pytest.raises(FileExistsError):
        server.stop()
    assert len(files(maildir)) == len(pairs)


def test_a_file_with_two_names_is_one_message_and_its_deletion_removes_both(
    server: POP3Server, login: Login
) -> None:
    # Another program moving mail by link() and unlink(), caught between the two.
    maildir = maildir_of(server)
    os.link(
        maildir / "new/1795770060.M2P1.maildir.test",
        maildir / "cur/1795770060.M2P1.maildir.test:2,S",
    )
    client = login(server)
    assert client.stat()[0] == 5
    client.dele(2)
    assert client.quit() == b"+OK fakepop signing off (1 deleted, 4 left)"
    assert files(maildir) == set(FIVE) - {"new/1795770060.M2P1.maildir.test"}


MOVES = 50  # trials of a commit racing another program's renames
MOVED = 40  # messages in each


def test_mail_another_program_moves_during_quit_is_still_deleted(
    tmp_path: Path,
    login: Login,
    pop3_server_factory: ServerFactory,
) -> None:
    # A second reader marks mail seen (new/X -> cur/X:2,S), and flags it again
    # (cur/X:2,S -> cur/X:2,RS), while the commit runs.
    lost, kept = 0, 0
    server = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    maildir = tmp_path / USER
    for trial in range(MOVES):
        make_maildir(
            maildir,
            {f"new/17957{trial:03d}{n:02d}.M{n}P1.host": message(n) for n in range(MOVED)},
        )
        client = login(server)
        for number in range(1, MOVED + 1, 2):
            client.dele(number)
        doomed = {f"17957{trial:03d}{n:02d}.M{n}P1.host" for n in range(0, MOVED, 2)}

        def move() -> None:
            names = sorted(os.listdir(maildir / "new"))
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(maildir / "new" / name, maildir / "cur" / f"{name}:2,S")
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(maildir / "cur" / f"{name}:2,S", maildir / "cur" / f"{name}:2,RS")

        mover = threading.Thread(target=move)
        mover.start()
        assert client.quit().startswith(b"+OK")
        mover.join(TIMEOUT)
        left = {name.partition(":")[0] for name in os.listdir(maildir / "cur")}
        left |= set(os.listdir(maildir / "new"))
        kept += len(doomed & left)
        lost += MOVED - len(doomed) - len(left - doomed)
        for sub in ("new", "cur"):
            for name in os.listdir(maildir / sub):
                os.unlink(maildir / sub / name)
    assert (kept, lost) == (0, 0)


def test_mail_deleted_by_another_program_before_quit_counts_as_deleted(
    server: POP3Server, login: Login
) -> None:
    maildir = maildir_of(server)
    client = login(server)
    client.dele(2)
    client.dele(4)
    (maildir / "new/1795770060.M2P1.maildir.test").unlink()  # message 2, by someone else
    assert client.quit() == b"+OK fakepop signing off (2 deleted, 3 left)"
    assert len(files(maildir)) == 3
    assert server.mailbox(USER).deleted == [
        "1795770060.M2P1.maildir.test",
        "1795770180.M4P1.maildir.test",
    ]


def test_a_commit_that_cannot_be_carried_out_whole_deletes_nothing(
    server: POP3Server, login: Login
) -> None:
    maildir = maildir_of(server)
    client = login(server)
    for number in (1, 2, 3):
        client.dele(number)
    # The third file cannot be moved aside (a directory is where it would go), after the
    # first two were: they must go back, and QUIT must say so.
    blocker = maildir / STAGING / "cur" / "1795770120.M3P1.maildir.test:2,RS"
    (blocker / "inside").mkdir(parents=True)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\] .*no message was deleted"):
        client.quit()
    assert files(maildir) == set(FIVE)
    assert server.mailbox(USER).deleted == []
    with pytest.raises(IsADirectoryError):
        server.stop()  # which waits for the session's thread to record the error
    assert server.violations == []  # not the client's doing
    shutil.rmtree(blocker)
    server.start()
    client = login(server)
    assert client.stat()[0] == 5
    client.quit()


def test_a_commit_past_its_commit_point_is_acknowledged_though_its_cleanup_fails(
    server: POP3Server, login: Login
) -> None:
    maildir = maildir_of(server)
    client = login(server)
    client.dele(1)
    (maildir / STAGING / "cur" / "not-a-file" / "inside").mkdir(parents=True)  # cannot unlink
    assert client.quit() == b"+OK fakepop signing off (1 deleted, 4 left)"
    assert files(maildir) == set(FIVE) - {"cur/1795770000.M1P1.maildir.test:2,S"}
    assert server.mailbox(USER).deleted == ["1795770000.M1P1.maildir.test"]
    shutil.rmtree(maildir / JOURNAL / "cur" / "not-a-file")
    assert login(server).stat()[0] == 4  # and the next lock finishes the commit
    assert not (maildir / JOURNAL).exists()


def test_retr_finds_a_message_another_program_moved(server: POP3Server, login: Login) -> None:
    maildir = maildir_of(server)
    client = login(server)
    os.rename(
        maildir / "new/1795770060.M2P1.maildir.test",
        maildir / "cur/1795770060.M2P1.maildir.test:2,S",
    )
    assert unstuffed(client.retr(2)[1]) == to_crlf(message(2))
    assert unstuffed(client.top(2, 0)[1]).startswith(b"From: ")
    (maildir / "cur/1795770060.M2P1.maildir.test:2,S").unlink()
    with pytest.raises(poplib.error_proto, match="Message 2 was deleted by another program"):
        client.retr(2)
    assert client.stat()[0] == 5  # the session goes on
    client.quit()


# --- the lock on disk -----------------------------------------------------------------------


def refused(server: POP3Server) -> bytes:
    """The reply to a login that must fail."""
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        client.user(USER)
        with pytest.raises(poplib.error_proto) as refusal:
            client.pass_(PASSWORD)
        return cast(bytes, refusal.value.args[0])
    finally:
        client.close()


IN_USE = rb"^-ERR \[IN-USE\]"


def test_two_servers_on_one_maildir_never_hold_it_at_once(
    server: POP3Server, login: Login, tmp_path: Path, pop3_server_factory: ServerFactory
) -> None:
    other = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    client = login(server)
    assert re.match(IN_USE, refused(other))
    client.dele(1)
    client.quit()
    client = login(other)
    assert client.stat()[0] == 4
    assert re.match(IN_USE, refused(server))
    client.quit()


def test_hold_lock_holds_the_maildrop_for_every_server(
    server: POP3Server, login: Login, tmp_path: Path, pop3_server_factory: ServerFactory
) -> None:
    other = pop3_server_factory(users={USER: PASSWORD}, maildir=tmp_path, tls=False)
    with other.mailbox(USER).hold_lock():
        assert re.match(IN_USE, refused(server))
    login(server).quit()


HOLDER = """
import sys
from fakepop import MaildirMailbox
with MaildirMailbox(sys.argv[1]).hold_lock():
    print("held", flush=True)
    sys.stdin.read()
"""


def test_another_process_holds_the_lock_until_it_dies(
    server: POP3Server, login: Login, tmp_path: Path
) -> None:
    # A second process, as a delivery agent or another fakepop would be: killed, it
    # leaves a lock file that locks nothing (stale-lock recovery is the kernel's).
    source = str(Path(cast(str, sys.modules["fakepop"].__file__)).resolve().parents[1])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / USER)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=source),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        assert re.match(IN_USE, refused(server))
    finally:
        holder.kill()
        holder.wait(TIMEOUT)
        for stream in (holder.stdin, holder.stdout):
            assert stream is not None
            stream.close()
    assert (tmp_path / USER / LOCK).exists()
    client = login(server)
    assert client.stat()[0] == 5
    client.quit()


def test_a_child_forked_while_the_lock_was_held_does_not_keep_it(tmp_path: Path) -> None:
    # multiprocessing's fork start method: the child shares the lock file's descriptor.
    box = MaildirMailbox(make_maildir(tmp_path, FIVE))
    holder = object()
    box.acquire(holder)
    context = multiprocessing.get_context("fork")
    done = context.Event()
    child = context.Process(target=done.wait, args=(TIMEOUT,))
    child.start()
    try:
        box.release(holder)
        other = MaildirMailbox(tmp_path)
        assert len(other.acquire(holder)) == 5
        other.release(holder)
    finally:
        done.set()
        child.join(TIMEOUT)


@pytest.mark.parametrize("how", ["account", "reset"])
def test_an_account_made_again_does_not_share_a_held_maildrop(
    server: POP3Server, login: Login, how: str
) -> None:
    # As DELETE and POST of the account, or POST /reset and POST, do through the control API.
    client = login(server)
    client.dele(1)
    if how == "account":
        del server.users[USER]
    else:
        server.reset()
    server.users[USER] = PASSWORD
    assert re.match(IN_USE, refused(server))
    client.quit()
    client = login(server)
    assert client.stat()[0] == (4 if how == "account" else 0)
    client.quit()


# --- errors of the store --------------------------------------------------------------------

SYS_TEMP = r"^b'-ERR \[SYS/TEMP\] The maildrop cannot be used now \(No such file or directory\)"


def test_a_maildir_gone_at_login_is_a_temporary_error_raised_by_check(
    server: POP3Server, login: Login
) -> None:
    shutil.rmtree(maildir_of(server) / "new")
    with pytest.raises(poplib.error_proto, match=SYS_TEMP):
        login(server)
    with pytest.raises(FileNotFoundError):
        server.stop()  # which waits for the session's thread to record the error
    assert server.violations == []


def test_a_maildir_gone_during_a_session_ends_it_and_is_raised_by_check(
    server: POP3Server, login: Login
) -> None:
    client = login(server)
    client.dele(1)
    shutil.rmtree(maildir_of(server))
    assert client.stat()[0] == 4  # from the snapshot taken at login
    with pytest.raises(poplib.error_proto, match=SYS_TEMP):
        client.retr(2)
    with pytest.raises(poplib.error_proto, match="EOF"):  # and the session is over
        client.stat()
    with pytest.raises(FileNotFoundError):
        server.stop()
    # Strict mode does not blame the client for the QUIT it could not send.
    assert server.violations == []
    (transcript,) = server.transcript
    assert not transcript.quit


def test_quit_on_a_maildir_gone_deletes_nothing_and_is_raised_by_check(
    server: POP3Server, login: Login
) -> None:
    maildir = maildir_of(server)
    client = login(server)
    client.dele(1)
    os.rename(maildir, maildir.with_name("moved-away"))
    with pytest.raises(poplib.error_proto, match=SYS_TEMP + ".*no message was deleted"):
        client.quit()
    with pytest.raises(FileNotFoundError):
        server.stop()
    assert files(maildir.with_name("moved-away")) == set(FIVE)
    assert server.mailbox(USER).deleted == []
