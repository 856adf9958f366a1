"""Reading fixture mail from disk: .eml files, mbox and Maildir, with stable UIDs.

Parsing is the stdlib ``mailbox`` module's; what is added here is undoing mbox
``>From`` quoting and choosing each message's UID so that it is the same on
every run: the Maildir unique name, the .eml file name, or a content digest.

Only regular files are read: a FIFO would hang the load and a device such as
``/dev/zero`` never ends. With ``root``, a file (a symbolic link followed) must
also lie inside that directory, as a manifest's paths must.
"""

from __future__ import annotations

import mailbox
import os
import re
import stat
from pathlib import Path
from typing import Literal

from fakepop.mail.maildir import maildir_uid
from fakepop.mail.message import LoadedMessage, check_uid

MboxFlavor = Literal["mboxrd", "mboxo"]

# mboxrd quotes every "From " line with one more ">"; mboxo quotes only "From " itself.
_QUOTE_MBOXRD = re.compile(rb"^(>*From )", re.M)
_QUOTED = {"mboxrd": re.compile(rb"^>(>*From )", re.M), "mboxo": re.compile(rb"^>(From )", re.M)}


def _valid_uid(text: str) -> str | None:
    try:
        return check_uid(text)
    except ValueError:
        return None


def read_file(path: str | os.PathLike[str], root: Path | None = None, size: int = -1) -> bytes:
    """The bytes of a regular file, refusing anything else with a ValueError naming the path.

    Args:
        path: the file; a symbolic link is followed.
        root: when given, the file's real path must be inside this (resolved) directory.
        size: read at most this many bytes; all of them when negative.
    """
    file = Path(path)
    if root is not None and not file.resolve().is_relative_to(root):
        raise ValueError(f"{file} leads to {file.resolve()}, outside {root}: copy the file in")
    # Non-blocking, so that opening a FIFO with no writer returns instead of waiting.
    descriptor = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            raise ValueError(f"{file} is a directory, not a message file")
        raise ValueError(f"{file} is not a regular file (a FIFO, a device?): give a file")
    with open(descriptor, "rb") as stream:
        return stream.read(size)


def load_eml(path: str | os.PathLike[str], *, root: Path | None = None) -> LoadedMessage:
    """One .eml file; its UID is the file name without ``.eml`` where RFC 1939 allows it."""
    file = Path(path)
    return LoadedMessage(read_file(file, root), _valid_uid(file.stem))


def load_eml_dir(path: str | os.PathLike[str], *, root: Path | None = None) -> list[LoadedMessage]:
    """The ``.eml`` files of a directory, in name order."""
    directory = Path(path)
    if not directory.is_dir():
        raise FileNotFoundError(f"no directory of .eml files at {directory}")
    return [load_eml(p, root=root) for p in sorted(directory.glob("*.eml"))]


def load_mbox(path: str | os.PathLike[str], flavor: MboxFlavor = "mboxrd") -> list[LoadedMessage]:
    """The messages of an mbox file, in order, with ``>From`` quoting undone.

    Args:
        path: the mbox file.
        flavor: "mboxrd" (unquote every ``>...>From `` line by one ``>``) or "mboxo"
            (unquote only ``>From ``, the one quoting mboxo writers apply).
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no mbox file at {file}")
    if flavor not in _QUOTED:
        raise ValueError(f"unknown mbox flavor {flavor!r}: use 'mboxrd' or 'mboxo'")
    box = mailbox.mbox(file, create=False)
    try:
        return [
            LoadedMessage(_QUOTED[flavor].sub(rb"\1", box.get_bytes(key))) for key in box.iterkeys()
        ]
    finally:
        box.close()


def mboxrd_entry(raw: bytes, sender: str = "MAILER-DAEMON") -> bytes:
    """One message as an mboxrd entry: a From_ line, ``>From`` quoting added, LF line ends."""
    body = raw.replace(b"\r\n", b"\n")
    body = _QUOTE_MBOXRD.sub(rb">\1", body)
    if not body.endswith(b"\n"):
        body += b"\n"
    return b"From " + sender.encode("ascii") + b" Thu Jan  1 00:00:00 1970\n" + body + b"\n"


def load_maildir(path: str | os.PathLike[str], *, root: Path | None = None) -> list[LoadedMessage]:
    """The messages of a Maildir (new/ and cur/), in unique-name order, UIDs from those names."""
    directory = Path(path)
    if not (directory / "cur").is_dir() or not (directory / "new").is_dir():
        raise FileNotFoundError(f"no Maildir at {directory}: it needs cur/ and new/")
    # As the mailbox module lists a Maildir: files keyed by their unique name (before the
    # ":" of the flags), directories skipped. Dot-files are not mail: a .gitkeep keeps an
    # empty Maildir's directories in git.
    files = {
        entry.name.split(":", 1)[0]: entry.path
        for sub in ("new", "cur")
        for entry in os.scandir(directory / sub)
        if not entry.name.startswith(".") and not entry.is_dir()
    }
    return [LoadedMessage(read_file(files[key], root), maildir_uid(key)) for key in sorted(files)]


def load(
    path: str | os.PathLike[str], flavor: MboxFlavor = "mboxrd", *, root: Path | None = None
) -> list[LoadedMessage]:
    """Whatever is at ``path``: a Maildir, a directory of .eml files, an .eml file or an mbox.

    ``path`` may name a sample that ships with fakepop: ``"fakepop:many.mbox"`` (see
    ``sample``). With ``root``, every file read must lie inside that resolved directory.
    """
    target = mail_path(path)
    if target.is_dir():
        if (target / "cur").is_dir() and (target / "new").is_dir():
            return load_maildir(target, root=root)
        return load_eml_dir(target, root=root)
    if not target.exists():
        raise FileNotFoundError(f"no mail at {target}: give an .eml file, a directory, an mbox")
    if target.suffix.lower() != ".eml" and read_file(target, root, 5) == b"From ":
        return load_mbox(target, flavor)
    return [load_eml(target, root=root)]  # .eml, or a lone message saved under another name


def fixtures_dir() -> Path:
    """The sample mailboxes: inside the installed package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "fixtures", package.parent / "fixtures"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sample mailboxes (fixtures/) are missing from this installation")


SAMPLE_PREFIX = "fakepop:"  # "fakepop:demo" names a sample wherever a mail path is taken


def samples() -> list[str]:
    """The names of the sample mailboxes that ship with fakepop (see fixtures/README.md)."""
    return sorted(
        entry.name
        for entry in fixtures_dir().iterdir()
        if entry.name[0] not in "._" and entry.name != "README.md"
    )


def sample(name: str) -> Path:
    """The path of a sample mailbox that ships with fakepop, such as ``"demo"`` or ``"many.mbox"``.

    ``"fakepop.toml"`` is the manifest of the samples (accounts alice, bob and carol); a
    file inside a sample directory may be named too (``"eml/dot-lines.eml"``). The same
    names, written ``"fakepop:demo"``, work as paths in ``load``, the pytest marker and
    ``fakepop serve``.

    Raises:
        ValueError: there is no such sample; the message lists those there are.
    """
    root = fixtures_dir()
    name = name.removeprefix(SAMPLE_PREFIX)
    path = (root / name).resolve()
    if not name or not path.is_relative_to(root) or not path.exists():
        raise ValueError(f"no sample mailbox {name!r}; the samples: {', '.join(samples())}")
    return path


def mail_path(path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """Where a path given for mail leads: a sample for ``fakepop:NAME``, else ``path``.

    Args:
        path: a path, or ``fakepop:`` and the name of a sample.
        base: the directory a relative path is read from; the current one when None.

    Raises:
        ValueError: ``fakepop:`` and a name that is no sample's.
    """
    text = os.fspath(path)
    if text.startswith(SAMPLE_PREFIX):
        return sample(text)
    return Path(text) if base is None else base / text
