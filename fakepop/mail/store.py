"""Accounts and their maildrops: the lock held for a session and the commit at QUIT."""

from __future__ import annotations

import contextlib
import copy
import functools
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass, field

from fakepop.mail.message import (
    LoadedMessage,
    Message,
    MessageSource,
    StoredMessage,
    as_bytes,
    check_uid,
)
from fakepop.mail.wire import numbered

WAIT_TIMEOUT = 5.0  # seconds a wait gives the client under test by default


class MaildropError(Exception):
    """A maildrop cannot be opened now; ``code`` is the RFC 2449 response code to send."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


class MessageGone(FileNotFoundError):
    """A message is no longer in its maildrop: another program deleted it."""


class Snapshot(tuple[StoredMessage, ...]):
    """The messages of a maildrop as sessions see them at login, with what is derived from them.

    Every session that logs in while the maildrop is unchanged shares one
    snapshot, so a large maildrop's sizes are summed and its LIST and UIDL
    listings formatted once rather than at every login.
    """

    @functools.cached_property
    def sizes(self) -> tuple[int, ...]:
        return tuple(m.size for m in self)

    @functools.cached_property
    def octets(self) -> int:
        return sum(self.sizes)

    @functools.cached_property
    def size_listing(self) -> bytes:
        """LIST's lines, "n size" CRLF for every message."""
        return numbered(self.sizes)

    @functools.cached_property
    def uid_listing(self) -> bytes:
        """UIDL's lines, "n uid" CRLF for every message."""
        return numbered([m.uid for m in self])


class Mailbox:
    """The messages of one account, kept in memory, in the order they arrived.

    Sessions see a snapshot taken when they log in, so message numbers never
    shift under a client; mail added meanwhile shows in the next session.
    Subclasses keep the messages elsewhere (``MaildirMailbox``) by overriding
    ``_snapshot``, ``_append``, ``_remove`` and ``_clear``, and lock them where other
    processes see it with ``_lock_storage`` and ``_unlock_storage``; the lock, the
    commit and the record of what happened stay here.

    Attributes:
        name: the name of the account whose maildrop it is, once a store gives it one.
        deleted: UIDs whose deletion a session committed at QUIT, oldest first.
        retrieved: per session number, the UIDs it was sent by RETR or TOP.
        record_limit: when set, ``retrieved`` keeps the latest this many sessions and
            the first this many UIDs of each, and ``deleted`` the latest this many UIDs,
            so a long-running server's record stays bounded; None keeps all.
        keep_bare_cr: mail added from now on (and, in a Maildir, all of it) keeps a CR
            not followed by LF as a byte of its line (``Settings.keep_bare_cr``).
    """

    keep_bare_cr = False

    def __init__(self) -> None:
        self._messages: list[StoredMessage] = []
        self._uids: set[str] = set()
        self._shared = Snapshot()  # the last snapshot handed out, while still current
        self._mutex = threading.Lock()  # guards the messages against concurrent add/commit
        self._holder: object | None = None
        self._held = Snapshot()  # what the holder was handed: its deletions are among these
        self._refusal: _Refusal | None = None  # logins refused as if another session held it
        self.name: str | None = None
        self.deleted: list[str] = []
        self.retrieved: dict[int, list[str]] = {}
        self.record_limit: int | None = None
        # UIDs sessions retrieved and QUIT with the popped-on-retr quirk: hidden from later ones.
        self.popped: set[str] = set()
        self.logins = 0  # counted by sessions with the login-limit quirk
        # Notified where retrievals and deletions are recorded, for the waits.
        self._recorded = threading.Condition()

    def add(
        self, message: MessageSource | Message | LoadedMessage, *, uid: str | None = None
    ) -> str:
        """Append a message and return its UID.

        Args:
            message: raw bytes, text, an ``email.message.Message``, a ``Message``, or a
                ``LoadedMessage`` from ``fakepop.load`` (which brings its UID).
            uid: the UIDL id to give it; by default one derived from the content
                (with a ``-2``, ``-3`` ... suffix when the same content is added again).
        """
        item: bytes | Message
        if isinstance(message, LoadedMessage):
            item, uid = message.raw, uid or message.uid
        else:
            item = message if isinstance(message, Message) else as_bytes(message)
        if uid is not None:
            check_uid(uid)
        with self._mutex:
            return self._append(item, uid)

    def extend(self, messages: Iterable[MessageSource | Message | LoadedMessage]) -> list[str]:
        return [self.add(m) for m in messages]

    def clear(self) -> None:
        """Take every message out now, as ``remove`` does one."""
        with self._mutex:
            self._clear()
            self._shared = Snapshot()  # so removed mail is not kept alive by it
            self.popped.clear()

    def remove(self, uid: str) -> None:
        """Take one message out now, as an administrator would; not a session's deletion.

        Raises:
            KeyError: no message has that UID.
            MaildropError: ``[IN-USE]``: another process holds the maildrop (a Maildir).
        """
        with self._mutex:
            doomed = [m for m in self._snapshot() if m.uid == uid]
            if not doomed:
                raise KeyError(f"no message with UID {uid!r} in this maildrop")
            self._remove(doomed)
            self._shared = Snapshot()

    def checkpoint(self) -> Snapshot:
        """The messages there now, for ``restore`` to put back.

        In memory these are the message objects themselves, which never change; a
        maildrop kept elsewhere (a Maildir) keeps what it needs to write them again.
        """
        with self._mutex:
            return self._keep()

    def restore(self, saved: Snapshot) -> None:
        """Make the messages those of ``saved`` (from ``checkpoint``): same UIDs, same bytes.

        What sessions retrieved and deleted is forgotten, and logins refused by
        ``refuse_logins`` are let in again. In memory this costs next to nothing
        whatever the size; a Maildir writes again only the files that went.
        """
        with self._mutex:
            self._put_back(saved)
            self._refusal = None
        with self._recorded:
            self.deleted.clear()
            self.retrieved.clear()

    @property
    def messages(self) -> list[StoredMessage]:
        """The messages there now."""
        with self._mutex:
            return self._snapshot()

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter(self.messages)

    @property
    def locked(self) -> bool:
        """True while a session holds the maildrop."""
        return self._holder is not None

    @contextlib.contextmanager
    def hold_lock(self) -> Iterator[None]:
        """Hold the maildrop's lock, as a delivery agent would: logins get ``[IN-USE]`` meanwhile.

        Raises:
            MaildropError: a session, or another process on the same Maildir, holds it already.
        """
        holder = object()
        self.acquire(holder)
        try:
            yield
        finally:
            self.release(holder)

    def refuse_logins(self, attempts: int | None = None, *, until: float | None = None) -> None:
        """Refuse the next ``attempts`` logins, or all logins until ``until``, with ``[IN-USE]``.

        As if another session held the maildrop, though none does (a fault's lock).
        ``until`` is in seconds on the clock of whoever logs in (``acquire``'s
        ``now``). Both together: whichever ends first.
        """
        with self._mutex:
            self._refusal = _Refusal(attempts, until)

    def acquire(self, holder: object, now: float | None = None) -> Snapshot:
        """Lock the maildrop for ``holder`` and return the snapshot it works on.

        Args:
            holder: who takes the lock; ``release`` wants the same object.
            now: the time by the taker's clock, for ``refuse_logins``'s ``until``;
                by default the wall clock's.

        Raises:
            MaildropError: ``[IN-USE]``: a session, a delivery agent or another process
                holds the maildrop, or logins are refused.
            OSError: the store cannot be read.
        """
        with self._mutex:
            refusal = self._refusal
            if refusal is not None and not refusal.refuses(time.time() if now is None else now):
                self._refusal = refusal = None
            if self._holder is not None or refusal is not None:
                raise MaildropError("IN-USE", "Mailbox is locked by another session")
            self._lock_storage()
            try:
                messages = self._snapshot()
            except BaseException:
                self._unlock_storage()
                raise
            self._holder = holder
            shared = self._shared
            # Unchanged means the very same message objects: a Maildir's scan reuses
            # the objects of files it has seen.
            if len(shared) != len(messages) or not all(map(operator.is_, shared, messages)):
                shared = self._shared = Snapshot(messages)
            self._held = shared
            return shared

    def release(self, holder: object, delete: Set[str] = frozenset()) -> None:
        """Remove the messages of the holder's snapshot whose UIDs are in ``delete``, then unlock.

        Only a QUIT from the transaction state passes ``delete``; a dropped or
        timed-out session releases with nothing, so it deletes nothing. A
        deletion is all or nothing: when it cannot be carried out whole, the
        error is raised and no message is removed.
        """
        with self._mutex:
            if self._holder is not holder:
                return
            try:
                if delete:
                    self._remove([m for m in self._held if m.uid in delete])
                    self._shared = Snapshot()
                    with self._recorded:
                        self.deleted.extend(sorted(delete))
                        if self.record_limit is not None:
                            del self.deleted[: len(self.deleted) - self.record_limit]
                        self._recorded.notify_all()
            finally:
                self._holder = None
                self._held = Snapshot()
                self._unlock_storage()

    def __repr__(self) -> str:
        messages = self.messages
        retrieved = {uid for uids in self.retrieved.values() for uid in uids}
        return (
            f"<{type(self).__name__} {self.name!r}: {len(messages)} messages,"
            f" {sum(m.size for m in messages)} octets, {len(retrieved)} retrieved,"
            f" {len(self.deleted)} deleted>"
        )

    def assert_deleted(self, *uids: str) -> None:
        """Fail unless exactly these UIDs were deleted by a committed QUIT."""
        __tracebackhide__ = True  # a failure points at the test's line, not this one
        if sorted(self.deleted) != sorted(uids):
            raise AssertionError(f"deleted {sorted(self.deleted)}, expected {sorted(uids)}")

    def record_retrieval(self, session: int, uid: str) -> None:
        limit = self.record_limit
        if limit == 0:
            return
        with self._recorded:
            uids = self.retrieved.setdefault(session, [])
            if limit is None or len(uids) < limit:
                uids.append(uid)
            if limit is not None and len(self.retrieved) > limit:
                del self.retrieved[next(iter(self.retrieved))]  # the oldest session
            self._recorded.notify_all()

    def wait_for_retrieval(self, *uids: str, timeout: float = WAIT_TIMEOUT) -> None:
        """Return as soon as a session has been sent every one of ``uids`` by RETR or TOP.

        For a client that runs in the background (a fetch daemon, a worker): the
        test waits for it rather than sleeping. Retrievals recorded before the call
        count. With no UIDs, any one retrieval will do.

        Raises:
            TimeoutError: ``timeout`` seconds passed first; the message says what
                was retrieved so far.
        """
        __tracebackhide__ = True

        def got() -> list[str]:
            return [uid for session in self.retrieved.values() for uid in session]

        self._wait(got, uids, timeout, "retrieved", "retrieval")

    def wait_for_deletion(self, *uids: str, timeout: float = WAIT_TIMEOUT) -> None:
        """Return as soon as a committed QUIT has deleted every one of ``uids``.

        As ``wait_for_retrieval``; with no UIDs, any one deletion will do.

        Raises:
            TimeoutError: ``timeout`` seconds passed first; the message says what
                was deleted so far.
        """
        __tracebackhide__ = True
        self._wait(lambda: list(self.deleted), uids, timeout, "deleted", "deletion")

    def _wait(
        self,
        got: Callable[[], list[str]],
        uids: Sequence[str],
        timeout: float,
        done: str,
        event: str,
    ) -> None:
        __tracebackhide__ = True
        if timeout < 0:
            raise ValueError(f"timeout must be 0 or more seconds, not {timeout}")

        def met() -> bool:
            seen = got()
            return bool(seen) and set(uids) <= set(seen)

        with self._recorded:
            if self._recorded.wait_for(met, timeout):
                return
            seen = got()
        wanted = f"the {event} of UIDs {sorted(set(uids) - set(seen))}" if uids else f"a {event}"
        raise TimeoutError(f"waited {timeout:g} s for {wanted}; {done} so far: {seen or 'nothing'}")

    # --- storage: in memory here ----------------------------------------------------------

    def _snapshot(self) -> list[StoredMessage]:
        return list(self._messages)

    def _append(self, item: bytes | Message, uid: str | None) -> str:
        # A Message passed in may sit in another mailbox, or here already: give this one its own.
        if isinstance(item, Message):
            message = copy.copy(item)
        else:
            message = Message(item, keep_bare_cr=self.keep_bare_cr)
        if uid is not None:
            message.uid = uid
        if uid is not None and uid in self._uids:
            raise ValueError(f"UID {uid!r} is already in this mailbox; UIDs must be unique")
        if uid is None and message.uid in self._uids:
            base, n = message.uid, 2
            while f"{base}-{n}" in self._uids:
                n += 1
            message.uid = f"{base}-{n}"
        self._messages.append(message)
        self._uids.add(message.uid)
        return message.uid

    def _remove(self, messages: Sequence[StoredMessage]) -> None:
        """Remove exactly these messages (the very objects), all or none."""
        doomed = {id(m) for m in messages}
        self._messages = [m for m in self._messages if id(m) not in doomed]
        self._uids -= {m.uid for m in messages}

    def _lock_storage(self) -> None:
        """Lock the maildrop where other processes see it; in memory, nobody else can."""

    def _unlock_storage(self) -> None:
        """Undo ``_lock_storage``."""

    def _clear(self) -> None:
        self._messages.clear()
        self._uids.clear()

    def _keep(self) -> Snapshot:
        """What ``checkpoint`` returns; the mutex is held."""
        return Snapshot(self._snapshot())

    def _put_back(self, saved: Snapshot) -> None:
        """Make the stored messages those ``_keep`` returned; the mutex is held."""
        self._messages = list(saved)
        self._uids = {m.uid for m in saved}
        self._shared = saved  # its sizes and listings are kept: nothing to recount


@dataclass
class _Refusal:
    """Logins refused though no session holds the lock, for a number of attempts or until a time."""

    attempts: int | None
    until: float | None

    def refuses(self, now: float) -> bool:
        """Whether a login attempt at ``now`` is refused; counts it."""
        if self.until is not None and now >= self.until:
            return False
        if self.attempts is not None:
            if self.attempts <= 0:
                return False
            self.attempts -= 1
        return True


@dataclass
class Account:
    """A login name, its password and its maildrop."""

    name: str
    password: str
    mailbox: Mailbox = field(default_factory=Mailbox)
    expire: int | None = None  # per-user EXPIRE days, overriding the server's policy
    login_delay: int | None = None  # per-user LOGIN-DELAY seconds, overriding the server's
    tokens: dict[str, float | None] = field(default_factory=dict)  # OAuth token -> expiry
    may_act_as: set[str] = field(default_factory=set)  # SASL authorization identities allowed
    last_login: float | None = None


@dataclass(frozen=True)
class SavedAccount:
    """An account as ``MailStore.checkpoint`` found it."""

    account: Account
    password: str
    expire: int | None
    login_delay: int | None
    tokens: dict[str, float | None]
    may_act_as: frozenset[str]
    last_login: float | None
    messages: Snapshot


class MailStore:
    """All accounts of one server.

    Args:
        users: account names and passwords to start with.
        new_mailbox: makes the maildrop of a new account from its name; by
            default an empty one in memory.
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        new_mailbox: Callable[[str], Mailbox] | None = None,
    ) -> None:
        self._accounts: dict[str, Account] = {}
        self._new_mailbox = new_mailbox or (lambda name: Mailbox())
        self._making = threading.Lock()  # two first logins at once make one account
        for name, password in (users or {}).items():
            self.add_account(name, password)

    def add_account(self, name: str, password: str) -> Account:
        """Create an account, or change the password of an existing one."""
        if not name or any(c in name for c in "\r\n\0"):
            raise ValueError(f"an account name must be non-empty, on one line: {name!r}")
        account = self._accounts.get(name)
        if account is None:
            account = Account(name, password, self._new_mailbox(name))
            account.mailbox.name = name
            self._accounts[name] = account
        else:
            account.password = password
        return account

    def first_login(self, name: str, password: str) -> Account:
        """The account ``name``, made with ``password`` if there is none: for ``any_login``.

        Raises:
            ValueError: the name cannot be an account's (or, on disk, a Maildir's).
        """
        with self._making:
            account = self._accounts.get(name)
            return account if account is not None else self.add_account(name, password)

    def remove_account(self, name: str) -> None:
        del self._accounts[name]

    def checkpoint(self) -> tuple[SavedAccount, ...]:
        """Every account as it is now, its mail included, for ``restore`` to put back."""
        return tuple(
            SavedAccount(
                account,
                account.password,
                account.expire,
                account.login_delay,
                dict(account.tokens),
                frozenset(account.may_act_as),
                account.last_login,
                account.mailbox.checkpoint(),
            )
            for account in self
        )

    def restore(self, saved: Iterable[SavedAccount]) -> None:
        """Put back the accounts of ``checkpoint``, and only those, as they were then.

        An account made since (or made again) is dropped, its maildrop emptied first,
        so a Maildir on disk is put back too.
        """
        with self._making:
            kept = {s.account.name: s for s in saved}
            for account in self._accounts.values():
                was = kept.get(account.name)
                if was is None or was.account is not account:
                    account.mailbox.clear()
            accounts = {}
            for name, s in kept.items():
                account = s.account
                account.password, account.expire = s.password, s.expire
                account.login_delay, account.last_login = s.login_delay, s.last_login
                account.tokens = dict(s.tokens)
                account.may_act_as = set(s.may_act_as)
                account.mailbox.restore(s.messages)
                accounts[name] = account
            self._accounts = accounts  # at once: a login meanwhile sees the old or the new

    def get(self, name: str) -> Account | None:
        return self._accounts.get(name)

    def __getitem__(self, name: str) -> Account:
        try:
            return self._accounts[name]
        except KeyError:
            raise KeyError(
                f"no account {name!r}; create it with server.users[{name!r}] = password"
            ) from None

    def __iter__(self) -> Iterator[Account]:
        return iter(list(self._accounts.values()))

    def resolve(
        self, login: str, domains: Iterable[str] = (), recent_prefix: bool = False
    ) -> Account | None:
        """The account a login name names.

        Besides the exact name: ``user+host`` for the account ``user@host`` (the
        SDPS style, for clients that cannot send "@"), ``user@domain`` for
        ``user`` when ``domain`` is one of the server's virtual ``domains``, and,
        with ``recent_prefix``, Gmail's ``recent:user``.
        """
        if recent_prefix and login.startswith("recent:"):
            login = login.removeprefix("recent:")
        accounts = self._accounts
        if login in accounts:
            return accounts[login]
        local, at, domain = login.rpartition("@")
        if at and domain in domains and local in accounts:
            return accounts[local]
        user, plus, host = login.rpartition("+")
        if plus and not at:
            return self.resolve(f"{user}@{host}", domains)
        return None

    def token_owner(self, token: str) -> Account | None:
        """The account that holds an OAuth token."""
        return next((a for a in self._accounts.values() if token in a.tokens), None)

    def __len__(self) -> int:
        return len(self._accounts)

    def open(
        self, account: Account, holder: object, now: float, login_delay: int | None
    ) -> Snapshot:
        """Log ``holder`` in to ``account``: enforce LOGIN-DELAY, take the lock, snapshot."""
        delay = account.login_delay if account.login_delay is not None else login_delay
        if delay and account.last_login is not None and now - account.last_login < delay:
            wait = delay - (now - account.last_login)
            raise MaildropError("LOGIN-DELAY", f"Wait {wait:.0f} seconds before logging in again")
        messages = account.mailbox.acquire(holder, now)
        account.last_login = now
        return messages
