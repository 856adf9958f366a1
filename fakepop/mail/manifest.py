"""The fixture manifest: a ``fakepop.toml`` that declares accounts and their mail.

::

    [accounts.alice]
    password = "secret"
    messages = [
        { path = "welcome.eml", uid = "welcome" },   # one file; its UID may be set
        { path = "dots/" },                          # a directory of .eml files
        { path = "archive.mbox", flavor = "mboxo" }, # an mbox (mboxrd unless told)
        { path = "maildir/" },                       # a Maildir
        { generate = 20, seed = 7, locale = "de_DE" },
    ]

Paths are relative to the manifest and may not leave its directory, nor may a
symbolic link inside a directory it names; only regular files are read.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fakepop.mail.generate import FakerMissing, generate_messages
from fakepop.mail.loaders import load, mail_path, read_file
from fakepop.mail.message import LoadedMessage, check_uid

MANIFEST = "fakepop.toml"
_SOURCE_KEYS = {"path": {"path", "uid", "flavor"}, "generate": {"generate", "seed", "locale"}}


class ManifestError(ValueError):
    """A manifest that cannot be used; the message says where and what to change."""


@dataclass
class AccountFixture:
    """An account as a manifest declares it."""

    password: str
    messages: list[LoadedMessage] = field(default_factory=list)


def load_manifest(path: str | os.PathLike[str]) -> dict[str, AccountFixture]:
    """Read a manifest (the file, or a directory holding ``fakepop.toml``) and its mail.

    ``"fakepop:fakepop.toml"`` is the manifest of the samples that ship with fakepop.
    """
    try:
        file = mail_path(path)
    except ValueError as e:
        raise ManifestError(str(e)) from None
    if file.is_dir():
        file = file / MANIFEST
    try:
        data = tomllib.loads(read_file(file).decode("utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {file}: write a {MANIFEST} there") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{file}: not valid TOML: {e}") from None
    except (OSError, ValueError) as e:
        raise ManifestError(f"{file}: {e}") from None
    _only(data, {"accounts"}, file.name)
    accounts = data.get("accounts", {})
    _expect(accounts, dict, f"{file.name}: accounts")
    return {name: _account(file, name, spec) for name, spec in accounts.items()}


def _account(file: Path, name: str, spec: Any) -> AccountFixture:
    where = f"{file.name}: accounts.{name}"
    _expect(spec, dict, where)
    _only(spec, {"password", "messages"}, where)
    password = spec.get("password")
    _expect(password, str, f"{where}.password")
    sources = spec.get("messages", [])
    _expect(sources, list, f"{where}.messages")
    fixture = AccountFixture(password)
    for index, source in enumerate(sources):
        fixture.messages += _source(file, source, f"{where}.messages[{index}]")
    return fixture


def _source(file: Path, source: Any, where: str) -> list[LoadedMessage]:
    _expect(source, dict, where)
    kind = next((k for k in _SOURCE_KEYS if k in source), None)
    if kind is None:
        raise ManifestError(f"{where}: give either path = ... or generate = N")
    _only(source, _SOURCE_KEYS[kind], where)
    if kind == "generate":
        count, seed, locale = (
            source["generate"],
            source.get("seed", 0),
            source.get("locale", "en_US"),
        )
        _expect(count, int, f"{where}.generate")
        _expect(seed, int, f"{where}.seed")
        _expect(locale, str, f"{where}.locale")
        try:
            made = generate_messages(count, seed=seed, locale=locale)
        except (ValueError, FakerMissing) as e:
            raise ManifestError(f"{where}: {e}") from None
        return [LoadedMessage(raw) for raw in made]
    relative = source["path"]
    _expect(relative, str, f"{where}.path")
    base = file.parent.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise ManifestError(f"{where}.path: {relative!r} leaves the manifest's directory {base}")
    flavor = source.get("flavor", "mboxrd")
    if flavor not in ("mboxrd", "mboxo"):
        raise ManifestError(f"{where}.flavor: {flavor!r} is not a flavor: use 'mboxrd' or 'mboxo'")
    try:
        messages = load(target, flavor, root=base)
    except (OSError, ValueError) as e:
        raise ManifestError(f"{where}.path: {e}") from None
    uid = source.get("uid")
    if uid is not None:
        if len(messages) != 1:
            raise ManifestError(f"{where}.uid: a UID can be set only for a single message")
        _expect(uid, str, f"{where}.uid")
        try:
            check_uid(uid)
        except ValueError as e:
            raise ManifestError(f"{where}.uid: {e}") from None
        messages = [LoadedMessage(messages[0].raw, uid)]
    return messages


def _expect(value: Any, kind: type, where: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ManifestError(f"{where}: expected {kind.__name__}, got {value!r}")


def _only(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ManifestError(
            f"{where}: unknown key {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )
