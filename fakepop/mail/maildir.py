"""A maildrop kept on disk as a Maildir: read when sent, locked on disk, committed all or nothing.

Messages stay in their files; only names and sizes are held in memory, so a
large Maildir is served with a small resident size. As the Maildir protocol
has it, a delivered file is never changed in place: edits are written anew
and renamed over, and only a rename or unlink is sure to be seen. Deliveries
follow the Maildir protocol (write in tmp/, rename into new/), so mail another
program delivers shows in the next session; a message another program moves
(new/ to cur/, or a change of flags) is found by its unique name wherever it went.

The maildrop is locked by an flock on a file in the Maildir, so every fakepop
on the machine sees the lock, and the kernel drops it when its process dies.
Deletions at QUIT first move the files aside into a staging directory (undone
if any of them cannot be moved), then the rename of that directory is the
commit point, then its files are deleted. What a killed process left is
finished, or undone, by the next process to lock the maildrop: a commit is
all or nothing and no message is ever lost, duplicated, or both deleted and present.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import itertools
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from fakepop.mail.message import Message, StoredMessage, check_uid, content_uid, subject_of
from fakepop.mail.store import Mailbox, MaildropError, MessageGone, Snapshot
from fakepop.mail.wire import crlf_chunks, dot_stuff, stuff_chunks, to_crlf, top_lines, unended

READ_SIZE = 1 << 16
STAMP_MARGIN = 1_000_000_000  # ns: see _scan
TMP_AGE = 3600  # seconds a dead process's file waits in tmp/ before it is swept
WHOLE_READ = 1 << 20  # files up to this size are read and converted at once, larger ones streamed
NAME_MAX = 255  # bytes in a file name, on Linux, macOS and Windows file systems alike
# In the Maildir's root, beside cur/, new/ and tmp/ (Maildir readers look only in those):
LOCK = "fakepop-lock"  # flock()ed by whoever holds the maildrop
STAGING = "fakepop-staging"  # a commit's files, moved aside from new/ and cur/ until it commits
JOURNAL = "fakepop-commit"  # STAGING renamed: the commit point; what is in it is being deleted
SUBDIRS = ("new", "cur")  # where mail is; in this order, as mail moves from new/ to cur/
LOCATE_ATTEMPTS = 10  # a message that moves again each time it is found: give up, delete nothing
_WIRE_SIZE = re.compile(r",W=(\d+)")  # Maildir++: the size with CRLF line ends, as Dovecot writes
_deliveries = itertools.count()
_OWN_UID = re.compile(r"\.fakepop,U=(.+)")


def unique_name(name: str) -> str:
    """A Maildir file name without its flags (":2,S"): what stays when mail is moved or flagged."""
    return name.split(":", 1)[0]


def _named(root: str, key: str) -> list[os.DirEntry[str]]:
    """The files in new/ and cur/ whose unique name is ``key``."""
    found = []
    for sub in SUBDIRS:  # new/ first: a file moving to cur/ meanwhile is found there
        with os.scandir(os.path.join(root, sub)) as entries:
            found += [e for e in entries if unique_name(e.name) == key]
    return found


def _locate(root: str, key: str, inode: int) -> str | None:
    """The path a message now has, found by its unique name in new/ and cur/; None if gone.

    The file with the same inode is the message moved; without one, a single
    file of that unique name is the message rewritten (and moved).

    Raises:
        OSError: two files of that name, neither the same inode: neither can be
            told to be the message.
    """
    candidates = _named(root, key)
    same = [e.path for e in candidates if e.inode() == inode]
    if same:
        return same[0]
    if len(candidates) > 1:
        raise OSError(errno.EEXIST, "files of this message's name were replaced", key)
    return candidates[0].path if candidates else None


def _open_message(path: str, inode: int) -> int:
    """A descriptor on a message's file, wherever another program moved it.

    Raises:
        MessageGone: it is nowhere in the Maildir.
    """
    for _ in range(LOCATE_ATTEMPTS):
        try:
            return os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            moved = _locate(
                os.path.dirname(os.path.dirname(path)), unique_name(os.path.basename(path)), inode
            )
            if moved is None:
                raise MessageGone(
                    errno.ENOENT, "the message was deleted by another program", path
                ) from None
            path = moved
    raise OSError(errno.EAGAIN, "the message keeps being moved by another program", path)


def _read(path: str, inode: int | None = None) -> Iterator[bytes]:
    """The file's bytes in pieces; opened at once, so a missing file fails here, not later.

    With ``inode``, the file is a message, found wherever it was moved.
    """
    descriptor = os.open(path, os.O_RDONLY) if inode is None else _open_message(path, inode)
    file = open(descriptor, "rb")  # noqa: SIM115 (the generator closes it)

    def pieces() -> Iterator[bytes]:
        with file:
            while chunk := file.read(READ_SIZE):
                yield chunk

    return pieces()


def _read_whole(path: str, inode: int, size: int) -> bytes:
    """A small message's bytes, with no file object in between: this is on every RETR's path."""
    descriptor = _open_message(path, inode)
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


def _wire_size(name: str, path: str, keep_bare_cr: bool) -> int:
    """The size with CRLF line ends: Maildir++'s ",W=" where the name has one, else counted."""
    key = unique_name(name)
    own = _OWN_UID.search(key)
    if own:  # a UID given to add() may hold ",W=3": it says nothing of the size
        key = key[: own.start()]
    match = _WIRE_SIZE.search(key)
    if match:
        return int(match[1])
    return sum(len(chunk) for chunk in crlf_chunks(_read(path), keep_bare_cr))


def maildir_uid(name: str) -> str:
    """The UID of a Maildir file: the UID fakepop gave it, its unique name, or a digest of that.

    A message fakepop delivers carries its UID at the end of its name
    (``<time>.P<pid>Q<n>.fakepop,U=<uid>``), so the UID is the one ``add`` returned,
    while the name still starts with the delivery time and sorts in arrival order.
    """
    key = unique_name(name)
    own = _OWN_UID.search(key)
    if own:
        key = own[1]
    try:
        return check_uid(key)
    except ValueError:
        return _digest(key)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()


def _another_uid(uid: str, inode: int, taken: set[str]) -> str:
    """A UID for a second file claiming ``uid`` (a copy in new/ and cur/, two ",U=" alike).

    Made from the file's inode, which a move keeps, so it stays the same
    from session to session (RFC 1939, section 7).
    """
    other = f"{uid}.{inode}"
    while other in taken or len(other) > 70:  # RFC 1939: 1 to 70 characters
        other = _digest(f"{other}\0{inode}")
    return other


@dataclasses.dataclass(frozen=True, slots=True, repr=False)
class MaildirMessage:
    """A message in a Maildir file, read each time it is sent."""

    path: str
    uid: str
    size: int
    file_size: int  # on disk, before CRLF normalisation
    inode: int  # which file it is, wherever another program moves it
    keep_bare_cr: bool = False  # a CR not followed by LF is sent as it is

    @property
    def unended(self) -> bool:
        """The file lacks a final line end: its last byte is read only when a quirk asks."""
        if not self.file_size:
            return False
        descriptor = _open_message(self.path, self.inode)
        try:
            return unended(os.pread(descriptor, 1, self.file_size - 1), self.keep_bare_cr)
        finally:
            os.close(descriptor)

    def read(self) -> bytes:
        return b"".join(self._wire())

    def chunks(self) -> Iterator[bytes]:
        if self.file_size <= WHOLE_READ:  # most mail: one read, converted in C
            raw = _read_whole(self.path, self.inode, self.file_size)
            wire = dot_stuff(to_crlf(raw, self.keep_bare_cr))
            return iter((wire,) if wire else ())
        return stuff_chunks(self._wire())

    def top_chunks(self, lines: int) -> Iterator[bytes]:
        return stuff_chunks(top_lines(self._wire(), lines))

    def _wire(self) -> Iterator[bytes]:
        return crlf_chunks(_read(self.path, self.inode), self.keep_bare_cr)

    def __repr__(self) -> str:
        try:  # the header is in the first piece but for freak mail
            subject = subject_of(to_crlf(next(_read(self.path, self.inode), b"")))
        except OSError:  # gone since it was listed
            subject = None
        return f"<MaildirMessage uid={self.uid!r} size={self.size} subject={subject!r}>"


class _KeptFile(Message):
    """A Maildir message as ``checkpoint`` keeps it: its bytes and where its file was."""

    __slots__ = ("place",)

    def __init__(self, message: MaildirMessage, root: Path) -> None:
        super().__init__(message.read(), message.uid)
        self.unended = message.unended  # read() added the final CRLF the file lacks
        self.place = os.path.relpath(message.path, root)  # "new/<name>" or "cur/<name>"


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
        self._lock_file: int | None = None  # a descriptor holding the flock, while locked
        self._tidy()
        self._sweep_tmp()

    def __repr__(self) -> str:
        return super().__repr__().removesuffix(">") + f" in {self.path}>"

    # --- the lock on disk ------------------------------------------------------------------

    def _lock_storage(self) -> None:
        """Take the flock on the Maildir's lock file, then settle what a killed process left.

        flock, not a file holding a pid: the kernel drops it when the process
        dies, however it dies, so a stale lock never outlives its holder, and
        no pid is guessed at across PID namespaces. Each open of the file is
        a lock of its own, so two mailboxes on one Maildir in one process
        exclude each other too (fcntl's POSIX locks would not).

        Raises:
            MaildropError: ``[IN-USE]``: another mailbox or process holds it.
        """
        descriptor = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException as e:
            os.close(descriptor)
            if isinstance(e, BlockingIOError):
                raise MaildropError("IN-USE", "Mailbox is locked by another process") from None
            raise
        self._lock_file = descriptor
        try:
            self._settle()
        except BaseException:
            self._unlock_storage()
            raise

    def _unlock_storage(self) -> None:
        descriptor, self._lock_file = self._lock_file, None
        if descriptor is not None:
            # Unlocked before it is closed: a child forked meanwhile shares the descriptor,
            # and closing ours alone would leave the maildrop locked until the child exits.
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            os.close(descriptor)

    def _tidy(self) -> None:
        """Settle a killed process's commit, if there is one and nobody holds the maildrop."""
        if not any(os.path.lexists(self.path / d) for d in (JOURNAL, STAGING)):
            return
        if self._lock_file is not None:
            self._settle()
            return
        with contextlib.suppress(MaildropError):  # the holder settles it
            self._lock_storage()
            self._unlock_storage()

    def _settle(self) -> None:
        """Under the lock: finish a commit past its commit point, undo one before it."""
        journal = self.path / JOURNAL
        if journal.is_dir():
            for sub in SUBDIRS:
                with contextlib.suppress(FileNotFoundError), os.scandir(journal / sub) as entries:
                    for entry in entries:
                        os.unlink(entry.path)
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(journal / sub)
            os.rmdir(journal)
            _sync_directory(self.path)
        staging = self.path / STAGING
        if staging.is_dir():
            for sub in SUBDIRS:
                with contextlib.suppress(FileNotFoundError), os.scandir(staging / sub) as entries:
                    for entry in entries:
                        os.rename(entry.path, self.path / sub / entry.name)
                with contextlib.suppress(FileNotFoundError):
                    os.rmdir(staging / sub)
            os.rmdir(staging)
            for directory in (self.path, *(self.path / sub for sub in SUBDIRS)):
                _sync_directory(directory)

    # --- storage ---------------------------------------------------------------------------

    def _snapshot(self) -> list[StoredMessage]:
        return list(self._scan())

    def _scan(self) -> list[MaildirMessage]:
        self._tidy()
        # Every delivery, rename or unlink moves a directory's mtime: while neither moved,
        # the last scan is still right, and a large maildrop is not listed at every login.
        stamps = (os.stat(self.path / "new").st_mtime_ns, os.stat(self.path / "cur").st_mtime_ns)
        if stamps == self._stamps:
            return self._listed
        started = time.time_ns()
        found: list[os.DirEntry[str]] = []
        for sub in SUBDIRS:
            with os.scandir(self.path / sub) as entries:
                found += [e for e in entries if not e.name.startswith(".") and e.is_file()]
        found.sort(key=lambda entry: entry.name)  # unique names start with the delivery time
        # The inode comes with the directory listing, free; a file's unique name (without
        # its flags) never names other mail. Together they find a file seen before, even
        # moved from new/ to cur/, without a stat; a file replaced by a rename is new.
        keyed = [(entry, (entry.inode(), unique_name(entry.name))) for entry in found]
        # Files seen before keep their UIDs; a new file claiming one of them gets another.
        taken = {self._seen[key].uid for _, key in keyed if key in self._seen}
        messages = []
        seen: dict[tuple[int, str], MaildirMessage] = {}
        for entry, key in keyed:
            if key in seen:  # the same file again: two links, or listed in new/ and cur/
                continue
            message = self._seen.get(key)
            if message is None:
                try:
                    file_size = entry.stat().st_size
                    size = _wire_size(entry.name, entry.path, self.keep_bare_cr)
                except FileNotFoundError:
                    continue  # deleted by someone else since the listing
                uid = maildir_uid(entry.name)
                if uid in taken:
                    uid = _another_uid(uid, key[0], taken)
                taken.add(uid)
                message = MaildirMessage(
                    entry.path, uid, size, file_size, key[0], self.keep_bare_cr
                )
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
        if isinstance(item, Message) and item.unended:  # without the final CRLF it added
            raw = raw[:-2]
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

    def _remove(self, messages: Sequence[StoredMessage]) -> None:
        """Delete these messages' files, wherever they moved, all or none.

        Each is moved aside into STAGING; if one cannot be (other than because
        it is gone: deleted by someone else, its deletion is done), those moved
        go back and the error is raised. Renaming STAGING to JOURNAL commits;
        deleting what is in it can then only be finished, never undone.
        """
        doomed = [m for m in messages if isinstance(m, MaildirMessage)]
        if not doomed:
            return
        locked = self._lock_file is not None
        if not locked:  # an administrator's removal, with no session holding the maildrop
            self._lock_storage()
        try:
            staging = self.path / STAGING
            for directory in (staging, *(staging / sub for sub in SUBDIRS)):
                directory.mkdir(exist_ok=True)  # not parents: never make a Maildir gone again
            moved: list[tuple[str, str]] = []
            try:
                for message in doomed:
                    moved += self._stage(message, staging)
                for directory in (
                    *(staging / s for s in SUBDIRS),
                    *(self.path / s for s in SUBDIRS),
                ):
                    _sync_directory(directory)
                os.rename(staging, self.path / JOURNAL)  # the commit point
            except BaseException:
                for original, aside in reversed(moved):
                    # One that cannot go back now stays aside, for the next lock to put back.
                    with contextlib.suppress(OSError):
                        os.rename(aside, original)
                raise
            # Committed: the deletion stands, and what fails of it now the next lock finishes.
            with contextlib.suppress(OSError):
                _sync_directory(self.path)
                self._settle()
        finally:
            self._known = None
            if not locked:
                self._unlock_storage()

    def _stage(self, message: MaildirMessage, staging: Path) -> list[tuple[str, str]]:
        """Move a message's file into ``staging``, found wherever it went: [(from, to)].

        Empty if it is gone: deleted by someone else, its deletion is done.
        """
        path = message.path
        for _ in range(LOCATE_ATTEMPTS):
            name = os.path.basename(path)
            try:
                moved = [(path, self._aside(path, staging))]
                break
            except FileNotFoundError:
                found = _locate(str(self.path), unique_name(name), message.inode)
                if found is None:
                    return []
                path = found
        else:
            raise OSError(errno.EAGAIN, "a message keeps being moved by another program", path)
        if os.stat(moved[0][1]).st_nlink > 1:
            # Another name for the file: a move by link() and unlink() is under way.
            for entry in _named(str(self.path), unique_name(name)):
                if entry.inode() == message.inode:
                    with contextlib.suppress(FileNotFoundError):  # its mover unlinked it
                        moved.append((entry.path, self._aside(entry.path, staging)))
        return moved

    @staticmethod
    def _aside(path: str, staging: Path) -> str:
        """Rename a file of new/ or cur/ into the same subdirectory of ``staging``."""
        aside = str(staging / os.path.basename(os.path.dirname(path)) / os.path.basename(path))
        os.rename(path, aside)
        return aside

    def _clear(self) -> None:
        self._remove(self._scan())

    def _keep(self) -> Snapshot:
        return Snapshot(_KeptFile(m, self.path) for m in self._scan())

    def _put_back(self, saved: Snapshot) -> None:
        """Delete the files that came since, and write again, under their own names (so the
        order and UIDs are the same), those that went: a test that deleted a few messages
        costs a few writes."""
        now = {unique_name(os.path.basename(m.path)): m for m in self._scan()}
        kept = {
            unique_name(os.path.basename(k.place)): k for k in saved if isinstance(k, _KeptFile)
        }
        extra = [m for key, m in now.items() if key not in kept]
        if extra:
            self._remove(extra)
        for key, file in kept.items():
            if key not in now:
                temporary = self.path / "tmp" / os.path.basename(file.place)
                # Without the final CRLF read() added, the glued-dot quirk sees it as before.
                temporary.write_bytes(file.wire[:-2] if file.unended else file.wire)
                os.rename(temporary, self.path / file.place)
        self._known = None  # the UIDs there: listed again at the next add
        self._shared = Snapshot()

    def _sweep_tmp(self) -> None:
        """Delete what a killed fakepop process left half-written in tmp/.

        A delivery still in tmp/ never took effect. Only fakepop's files are
        touched, never another program's, and only those of a process that is
        gone and untouched for TMP_AGE (a process in another PID namespace
        sharing the Maildir may look gone).
        """
        old = time.time() - TMP_AGE
        with os.scandir(self.path / "tmp") as entries:
            for entry in entries:
                owner = _TMP_OWNER.match(entry.name)
                if owner and not _alive(int(owner[1])):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < old:
                            os.unlink(entry.path)


# Our deliveries: <time>.P<pid>Q<n>.fakepop,U=<uid>
_TMP_OWNER = re.compile(r"\d+\.P(\d+)Q\d+\.fakepop,U=")


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
