"""A maildrop kept on disk as a Maildir: read when sent, committed with a journal.

Messages stay in their files; only names and sizes are held in memory, so a
large Maildir is served with a small resident size. As the Maildir protocol
has it, a delivered file is never changed in place: edits are written anew
and renamed over, and only a rename or unlink is sure to be seen. Deliveries
follow the Maildir protocol (write in tmp/, rename into new/), so mail another
program delivers shows in the next session. Deletions at QUIT are written to a journal
first, then carried out; a journal left by a killed process is finished when
the Maildir is next opened, so a commit is all or nothing and no message is
ever lost, duplicated, or both deleted and present.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterator, Set
from pathlib import Path

from fakepop.mail.message import Message, StoredMessage, check_uid, content_uid
from fakepop.mail.store import Mailbox
from fakepop.mail.wire import crlf_chunks, dot_stuff, stuff_chunks, to_crlf, top_lines

READ_SIZE = 1 << 16
STAMP_MARGIN = 1_000_000_000  # ns: see _scan
TMP_AGE = 3600  # seconds a dead process's file waits in tmp/ before it is swept
WHOLE_READ = 1 << 20  # files up to this size are read and converted at once, larger ones streamed
NAME_MAX = 255  # bytes in a file name, on Linux, macOS and Windows file systems alike
JOURNAL = "fakepop-commit"  # in the Maildir's root: the files a commit is deleting
_WIRE_SIZE = re.compile(r",W=(\d+)")  # Maildir++: the size with CRLF line ends, as Dovecot writes
_deliveries = itertools.count()
_OWN_UID = re.compile(r"\.fakepop,U=(.+)")


def _read(path: str) -> Iterator[bytes]:
    """The file's bytes in pieces; opened at once, so a missing file fails here, not later."""
    file = open(path, "rb")  # noqa: SIM115 (the generator closes it)

    def pieces() -> Iterator[bytes]:
        with file:
            while chunk := file.read(READ_SIZE):
                yield chunk

    return pieces()


def _read_whole(path: str, size: int) -> bytes:
    """A small file's bytes, with no file object in between: this is on every RETR's path."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        data = os.read(descriptor, size + 1)
        if len(data) <= size:  # all of it: no second read to see the end
            return data
        parts = [data]  # the file grew since it was listed
        while part := os.read(descriptor, READ_SIZE):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)


def _wire_size(name: str, path: str) -> int:
    match = _WIRE_SIZE.search(name)
    if match:
        return int(match[1])
    return sum(len(chunk) for chunk in crlf_chunks(_read(path)))


def maildir_uid(name: str) -> str:
    """The UID of a Maildir file: the UID fakepop gave it, its unique name, or a digest of that.

    A message fakepop delivers carries its UID at the end of its name
    (``<time>.P<pid>Q<n>.fakepop,U=<uid>``), so the UID is the one ``add`` returned,
    while the name still starts with the delivery time and sorts in arrival order.
    """
    key = name.split(":", 1)[0]
    own = _OWN_UID.search(key)
    if own:
        key = own[1]
    try:
        return check_uid(key)
    except ValueError:
        return hashlib.sha1(
            key.encode("utf-8", "surrogateescape"), usedforsecurity=False
        ).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class MaildirMessage:
    """A message in a Maildir file, read each time it is sent."""

    path: str
    uid: str
    size: int
    file_size: int  # on disk, before CRLF normalisation

    def read(self) -> bytes:
        return b"".join(crlf_chunks(_read(self.path)))

    def chunks(self) -> Iterator[bytes]:
        if self.file_size <= WHOLE_READ:  # most mail: one read, converted in C
            wire = dot_stuff(to_crlf(_read_whole(self.path, self.file_size)))
            return iter((wire,) if wire else ())
        return stuff_chunks(crlf_chunks(_read(self.path)))

    def top_chunks(self, lines: int) -> Iterator[bytes]:
        return stuff_chunks(top_lines(crlf_chunks(_read(self.path)), lines))


class MaildirMailbox(Mailbox):
    """A maildrop in a Maildir directory (``cur/``, ``new/``, ``tmp/``), served from disk.

    Args:
        path: the Maildir; created if it does not exist and ``create`` is true.
        create: make the directory and its three subdirectories when missing.
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        missing = [d for d in ("cur", "new", "tmp") if not (self.path / d).is_dir()]
        if missing and not create:
            raise FileNotFoundError(f"{self.path} is not a Maildir: it lacks {', '.join(missing)}/")
        for sub in missing:
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self._seen: dict[tuple[int, str], MaildirMessage] = {}  # by (inode, unique name)
        self._listed: list[MaildirMessage] = []  # the last scan, valid while stamps match
        self._stamps: tuple[int, int] | None = None  # new/ and cur/ mtimes of that scan
        self._known: set[str] | None = None  # the UIDs there, for adds to check against
        self._finish_commit()
        self._sweep_tmp()

    def __repr__(self) -> str:
        return f"<MaildirMailbox {self.path}>"

    # --- storage ---------------------------------------------------------------------------

    def _snapshot(self) -> list[StoredMessage]:
        return list(self._scan())

    def _scan(self) -> list[MaildirMessage]:
        self._finish_commit()
        # Every delivery, rename or unlink moves a directory's mtime: while neither moved,
        # the last scan is still right, and a large maildrop is not listed at every login.
        stamps = (os.stat(self.path / "new").st_mtime_ns, os.stat(self.path / "cur").st_mtime_ns)
        if stamps == self._stamps:
            return self._listed
        started = time.time_ns()
        found: list[os.DirEntry[str]] = []
        for sub in ("new", "cur"):
            with os.scandir(self.path / sub) as entries:
                found += [e for e in entries if not e.name.startswith(".") and e.is_file()]
        found.sort(key=lambda entry: entry.name)  # unique names start with the delivery time
        messages = []
        seen: dict[tuple[int, str], MaildirMessage] = {}
        for entry in found:
            name = entry.name
            # The inode comes with the directory listing, free; a file's unique name (without
            # its flags) never names other mail. Together they find a file seen before, even
            # moved from new/ to cur/, without a stat; a file replaced by a rename is new.
            key = (entry.inode(), name.split(":", 1)[0])
            message = self._seen.get(key)
            if message is None:
                try:
                    file_size = entry.stat().st_size
                    size = _wire_size(name, entry.path)
                except FileNotFoundError:
                    continue  # deleted by someone else since the listing
                message = MaildirMessage(entry.path, maildir_uid(name), size, file_size)
            elif message.path != entry.path:  # moved between new/ and cur/, or flagged
                message = dataclasses.replace(message, path=entry.path)
            seen[key] = message
            messages.append(message)
        self._seen = seen
        self._known = {m.uid for m in messages}
        self._listed = messages
        # File system clocks tick coarsely: a change in the same tick as the mtimes just read
        # would not move them. Only mtimes older than a second can vouch for a later scan.
        self._stamps = stamps if max(stamps) < started - STAMP_MARGIN else None
        return messages

    def _append(self, item: bytes | Message, uid: str | None) -> str:
        raw = item.wire if isinstance(item, Message) else item
        if uid is not None and ("/" in uid or ":" in uid):
            raise ValueError(f"a Maildir UID is part of a file name: {uid!r} cannot hold / or :")
        taken = self._uids_now()
        if uid is not None and uid in taken:
            raise ValueError(f"UID {uid!r} is already in this mailbox; UIDs must be unique")
        if uid is None:  # as Mailbox does: from the content, numbered if it is there already
            base = uid = content_uid(to_crlf(raw))
            for n in itertools.count(2):
                if uid not in taken:
                    break
                uid = f"{base}-{n}"
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(_deliveries)}.fakepop,U={uid}"
        temporary = self.path / "tmp" / name
        with temporary.open("xb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, self.path / "new" / name)
        taken.add(uid)
        return uid

    def _uids_now(self) -> set[str]:
        """The UIDs in the Maildir, as of the last scan plus this process's deliveries.

        Kept between adds, so that loading many messages does not list the
        directories once a message.
        """
        if self._known is None:
            self._known = {m.uid for m in self._scan()}
        return self._known

    def _remove(self, uids: Set[str]) -> None:
        doomed = [m.path for m in self._scan() if m.uid in uids]
        if not doomed:
            return
        journal = self.path / JOURNAL
        temporary = self.path / "tmp" / f"{JOURNAL}.{os.getpid()}.{next(_deliveries)}"
        with temporary.open("w", encoding="utf-8", errors="surrogateescape") as file:
            file.write("".join(f"{os.path.relpath(p, self.path)}\n" for p in doomed))
            file.flush()
            os.fsync(file.fileno())
        os.rename(temporary, journal)  # the commit point: from here on the deletion happens
        _sync_directory(self.path)
        self._finish_commit()
        self._known = None

    def _clear(self) -> None:
        self._remove({m.uid for m in self._scan()})

    def _sweep_tmp(self) -> None:
        """Delete what a killed fakepop process left half-written in tmp/.

        A delivery or a journal still in tmp/ never took effect. Only fakepop's
        files are touched, never another program's, and only those of a process
        that is gone and untouched for TMP_AGE (a process in another PID
        namespace sharing the Maildir may look gone).
        """
        old = time.time() - TMP_AGE
        with os.scandir(self.path / "tmp") as entries:
            for entry in entries:
                owner = _TMP_OWNER.match(entry.name)
                if owner and not _alive(int(owner[1] or owner[2])):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < old:
                            os.unlink(entry.path)

    def _finish_commit(self) -> None:
        """Carry out a journal's deletions, whether written just now or by a killed process."""
        journal = self.path / JOURNAL
        try:
            names = journal.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        except FileNotFoundError:
            return
        for name in names:
            sub, _, file = name.partition("/")
            if sub in ("new", "cur") and file and "/" not in file and file not in (".", ".."):
                (self.path / sub / file).unlink(missing_ok=True)
        for sub in ("new", "cur"):
            _sync_directory(self.path / sub)
        journal.unlink()
        _sync_directory(self.path)


# Our deliveries (<time>.P<pid>Q<n>.fakepop,U=<uid>) and journals (fakepop-commit.<pid>.<n>).
_TMP_OWNER = re.compile(rf"\d+\.P(\d+)Q\d+\.fakepop,U=|{re.escape(JOURNAL)}\.(\d+)\.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def _sync_directory(path: Path) -> None:
    """Make renames and unlinks in a directory durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def maildir_per_account(root: str | os.PathLike[str]) -> Callable[[str], MaildirMailbox]:
    """Maildrops as Maildirs named after their accounts under ``root``."""
    base = Path(root)

    def new_mailbox(name: str) -> MaildirMailbox:
        # The name becomes a directory: it must not climb out of the root or hide.
        if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
            raise ValueError(
                f"account {name!r} cannot be a Maildir under {base}: no /, \\ or leading dot"
            )
        if len(os.fsencode(name)) > NAME_MAX:
            raise ValueError(f"account name too long for a Maildir: at most {NAME_MAX} bytes")
        return MaildirMailbox(base / name)

    return new_mailbox
