"""The fixture loaders against the sample mailboxes in fixtures/: UIDs, order, quoting, errors."""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import json
import os
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest
from waiting import raised_within

import fakepop
from fakepop import load, load_eml, load_eml_dir, load_maildir, load_mbox
from fakepop.mail.loaders import MboxFlavor
from fakepop.mail.maildir import MaildirMailbox
from fakepop.mail.message import LoadedMessage
from fakepop.mail.store import Mailbox
from fakepop.mail.wire import to_crlf

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
EML = FIXTURES / "eml"
EML_NAMES = [
    "bare-lf.eml",
    "dot-lines.eml",
    "encoded-words.eml",
    "mime-attachment.eml",
    "not a uid.eml",
    "utf8-headers.eml",
]
MAILDIR_FILES = [  # in unique-name order, which interleaves new/ and cur/
    "cur/1795770000.M100P4242.fixtures.fakepop.test:2,S",
    "new/1795770060.M200P4242.fixtures.fakepop.test",
    "cur/1795770120.M300P4242.fixtures.fakepop.test:2,FS",
    "new/1795770180.M400P4242.fixtures.fakepop.test",
]
SUBPROCESS_TIMEOUT = 60.0


def digest(raw: bytes) -> str:
    """The content UID, computed here rather than by fakepop: SHA-1 of the CRLF form."""
    return hashlib.sha1(to_crlf(raw), usedforsecurity=False).hexdigest()


def every_fixture_message() -> list[tuple[str, LoadedMessage]]:
    sources = ["eml", "large.eml", "many.mbox", "mboxrd.mbox", "maildir"]
    found = [(f"{s}#{i}", m) for s in sources for i, m in enumerate(load(FIXTURES / s), 1)]
    found += [(f"mboxo.mbox#{i}", m) for i, m in enumerate(load(FIXTURES / "mboxo.mbox"), 1)]
    return found


# --- the fixtures are what fixtures/README.md says ---------------------------------------------


@pytest.mark.parametrize(("where", "message"), every_fixture_message())
def test_every_fixture_is_a_plausible_rfc5322_message(where: str, message: LoadedMessage) -> None:
    wire = to_crlf(message.raw)
    _, blank, body = wire.partition(b"\r\n\r\n")
    assert blank, f"{where}: no blank line after the header"
    assert body, f"{where}: no body"
    assert all(len(line) <= 998 for line in wire.split(b"\r\n")), f"{where}: a line over 998"
    parsed = email.message_from_bytes(message.raw, policy=email.policy.default)
    assert not parsed.defects, f"{where}: {parsed.defects}"
    for name in ("From", "To", "Subject", "Date", "Message-ID"):
        assert len(parsed.get_all(name) or []) == 1, f"{where}: {name} missing or repeated"
    assert email.utils.parsedate_to_datetime(str(parsed["Date"])).year == 2026
    assert str(parsed["Message-ID"]).endswith("@fixtures.fakepop.test>")


def test_the_fixtures_stay_small() -> None:
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 2_000_000
    assert 900_000 < (FIXTURES / "large.eml").stat().st_size < 1_100_000


def test_the_dot_lines_fixture_has_every_dot_case() -> None:
    wire = load_eml(EML / "dot-lines.eml").raw
    body = wire.partition(b"\r\n\r\n")[2]
    assert body.startswith(b".This first body line")
    lines = body.split(b"\r\n")
    assert {b".", b"..", b".x", b"..."} <= set(lines)
    assert body.endswith(b"\r\n.\r\n")


def test_the_bare_lf_fixture_has_no_cr() -> None:
    raw = load_eml(EML / "bare-lf.eml").raw
    assert b"\r" not in raw
    assert raw.count(b"\n") == 13
    assert len(to_crlf(raw)) == len(raw) + 13


def test_the_header_fixtures_decode_to_the_same_text() -> None:
    raw_utf8 = load_eml(EML / "utf8-headers.eml").raw
    assert not raw_utf8.partition(b"\r\n\r\n")[0].isascii()  # raw 8-bit header octets
    # The email package reads 8-bit header octets from text only (from bytes they are escaped).
    utf8 = email.message_from_string(raw_utf8.decode("utf-8"), policy=email.policy.default)
    assert utf8["Subject"] == "Grüße aus Köln — 日本語のテスト ✉"
    assert utf8["From"].addresses[0].display_name == "Jürgen Müller"

    raw_words = load_eml(EML / "encoded-words.eml").raw
    assert raw_words.isascii()  # 7-bit throughout: the header text is in encoded-words
    words = email.message_from_bytes(raw_words, policy=email.policy.default)
    assert words["Subject"] == "Grüße aus Köln — café"
    assert words["From"].addresses[0].display_name == "André Pirard"
    assert words["To"].addresses[0].display_name == "Zoë Ångström"
    assert words.get_content() == (
        "The header fields are 7-bit: RFC 2047 encoded-words, B and Q, in two\r\n"
        "charsets, and a Subject folded between two encoded-words.\r\n"
        "Grüße, ça va?\r\n"
    )


def test_the_mime_fixture_carries_two_base64_attachments() -> None:
    raw = load_eml(EML / "mime-attachment.eml").raw
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/mixed"
    attachments = {str(part.get_filename()): part for part in parsed.iter_attachments()}
    assert sorted(attachments) == ["gradient.png", "octets.bin"]
    octets = attachments["octets.bin"]
    assert octets["Content-Transfer-Encoding"] == "base64"
    assert octets.get_content() == bytes(range(256)) * 4
    png = attachments["gradient.png"].get_content()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # IHDR says 32x32 RGB; IDAT inflates to 32 rows of a filter byte and 32 pixels.
    assert png[16:24] == (32).to_bytes(4, "big") * 2
    idat = png.index(b"IDAT")
    length = int.from_bytes(png[idat - 4 : idat], "big")
    assert len(zlib.decompress(png[idat + 4 : idat + 4 + length])) == 32 * (1 + 32 * 3)


def test_the_large_fixture_has_dot_lines_at_every_64k_boundary() -> None:
    raw = (FIXTURES / "large.eml").read_bytes()
    for k in range(1, len(raw) // 65536 + 1):
        near = raw[k * 65536 - 30 : k * 65536 + 30]
        assert b"\r\n.dot line at offset" in near, k


# --- .eml files ----------------------------------------------------------------------------


def test_load_eml_takes_the_uid_from_the_file_stem() -> None:
    path = EML / "dot-lines.eml"
    assert load_eml(path) == LoadedMessage(path.read_bytes(), "dot-lines")
    assert load_eml(FIXTURES / "large.eml").uid == "large"


def test_an_invalid_file_name_falls_back_to_the_content_digest() -> None:
    path = EML / "not a uid.eml"
    loaded = load_eml(path)
    assert loaded == LoadedMessage(path.read_bytes(), None)
    assert Mailbox().add(loaded) == digest(path.read_bytes())


@pytest.mark.parametrize(
    ("stem", "valid"),
    [
        ("x" * 70, True),  # the longest UID RFC 1939 allows
        ("a!~#", True),
        ("x" * 71, False),
        ("two words", False),
        ("grüße", False),
        ("tab\there", False),
    ],
)
def test_which_file_names_are_uids(tmp_path: Path, stem: str, valid: bool) -> None:
    raw = b"From: a@fixtures.fakepop.test\r\nSubject: s\r\n\r\nbody\r\n"
    path = tmp_path / f"{stem}.eml"
    path.write_bytes(raw)
    assert load_eml(path).uid == (stem if valid else None)
    assert Mailbox().add(load_eml(path)) == (stem if valid else digest(raw))


def test_load_eml_dir_reads_the_eml_files_in_name_order() -> None:
    loaded = load_eml_dir(EML)
    assert loaded == [
        LoadedMessage((EML / name).read_bytes(), None if " " in name else name[:-4])
        for name in EML_NAMES
    ]


def test_load_eml_dir_sorts_by_name_not_by_creation_and_skips_other_files(
    tmp_path: Path,
) -> None:
    for name in ["3.eml", "10.eml", "1.eml", "notes.txt", "2.EML"]:  # created in this order
        (tmp_path / name).write_bytes(f"Subject: {name}\r\n\r\n{name}\r\n".encode())
    assert [m.uid for m in load_eml_dir(tmp_path)] == ["1", "10", "3"]


# --- mbox ----------------------------------------------------------------------------------

MBOXRD_1 = (
    b"From: Alice <alice@fixtures.fakepop.test>\n"
    b"To: Bob <bob@fixtures.fakepop.test>\n"
    b"Subject: From lines, quoted the mboxrd way\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\n"
    b"Message-ID: <mboxrd-1@fixtures.fakepop.test>\n"
    b"\n"
    b'mboxrd adds one ">" to every line that starts with ">"s and "From ":\n'
    b'From here on, this line began with "From ".\n'
    b'>From this line began with ">From ".\n'
    b'>>From and this one with ">>From ".\n'
    b'>Fromage has no space after "From", so it was not quoted.\n'
    b" From with a space in front is not a From_ line either.\n"
)
MBOXRD_2 = (
    b"From: Bob <bob@fixtures.fakepop.test>\n"
    b"To: Alice <alice@fixtures.fakepop.test>\n"
    b"Subject: Re: From lines, quoted the mboxrd way\n"
    b"Date: Fri, 27 Nov 2026 10:05:00 +0000\n"
    b"Message-ID: <mboxrd-2@fixtures.fakepop.test>\n"
    b"In-Reply-To: <mboxrd-1@fixtures.fakepop.test>\n"
    b"\n"
    b'>From the quoted reply: this line began with ">From ".\n'
    b"From the top, unquoted.\n"
)
MBOXO_1 = (
    b"From: Carol <carol@fixtures.fakepop.test>\n"
    b"To: Alice <alice@fixtures.fakepop.test>\n"
    b"Subject: From lines, quoted the mboxo way\n"
    b"Date: Fri, 27 Nov 2026 11:00:00 +0000\n"
    b"Message-ID: <mboxo-1@fixtures.fakepop.test>\n"
    b"\n"
    b'mboxo quotes only lines that start with "From ":\n'
    b'From here on, this line began with "From ".\n'
    b">>From this line is left as it was written.\n"
)
MBOXO_2 = (
    b"From: Dave <dave@fixtures.fakepop.test>\n"
    b"To: Alice <alice@fixtures.fakepop.test>\n"
    b"Subject: A second message in the mboxo file\n"
    b"Date: Fri, 27 Nov 2026 11:30:00 +0000\n"
    b"Message-ID: <mboxo-2@fixtures.fakepop.test>\n"
    b"\n"
    b"From the second message.\n"
)


def test_load_mbox_undoes_mboxrd_quoting_exactly() -> None:
    assert load_mbox(FIXTURES / "mboxrd.mbox") == [LoadedMessage(MBOXRD_1), LoadedMessage(MBOXRD_2)]
    assert load_mbox(FIXTURES / "mboxrd.mbox", "mboxrd") == load_mbox(FIXTURES / "mboxrd.mbox")


def test_load_mbox_undoes_mboxo_quoting_exactly() -> None:
    assert load_mbox(FIXTURES / "mboxo.mbox", "mboxo") == [
        LoadedMessage(MBOXO_1),
        LoadedMessage(MBOXO_2),
    ]


def test_the_flavor_decides_how_much_quoting_is_undone() -> None:
    # Read as mboxo, only the single ">" of mboxrd's first quoting level goes.
    as_mboxo = load_mbox(FIXTURES / "mboxrd.mbox", "mboxo")[0].raw
    assert b'\n>>From this line began with ">From ".\n' in as_mboxo
    assert b'\n>>>From and this one with ">>From ".\n' in as_mboxo
    assert b'\nFrom here on, this line began with "From ".\n' in as_mboxo
    # Read as mboxrd, mboxo's ">>From " loses a ">" it should have kept.
    as_mboxrd = load_mbox(FIXTURES / "mboxo.mbox", "mboxrd")[0].raw
    assert b"\n>From this line is left as it was written.\n" in as_mboxrd


def test_many_mbox_holds_200_messages_in_order() -> None:
    loaded = load_mbox(FIXTURES / "many.mbox")
    assert len(loaded) == 200
    subjects = [email.message_from_bytes(m.raw)["Subject"] for m in loaded]
    assert subjects == [f"Small message {i:03d} of 200" for i in range(1, 201)]
    assert all(m.uid is None for m in loaded)
    assert len({digest(m.raw) for m in loaded}) == 200


# --- Maildir -------------------------------------------------------------------------------


def test_load_maildir_reads_new_and_cur_in_unique_name_order() -> None:
    directory = FIXTURES / "maildir"
    assert load_maildir(directory) == [
        LoadedMessage((directory / name).read_bytes(), name[4:].split(":")[0])
        for name in MAILDIR_FILES
    ]
    assert load_maildir(directory)[0].uid == "1795770000.M100P4242.fixtures.fakepop.test"


def test_load_maildir_skips_dot_files_in_an_empty_maildir() -> None:
    # fixtures/empty-maildir holds only .gitkeep files, which git needs to keep the directories.
    assert load_maildir(FIXTURES / "empty-maildir") == []


def test_the_maildir_store_skips_dot_files_in_an_empty_maildir() -> None:
    box = MaildirMailbox(FIXTURES / "empty-maildir", create=False)
    assert box.messages == []
    assert MaildirMailbox(FIXTURES / "maildir", create=False).messages[0].uid == (
        "1795770000.M100P4242.fixtures.fakepop.test"
    )


def test_a_maildir_name_that_is_not_a_uid_gets_a_digest_of_the_name(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "a name with spaces").write_bytes(b"Subject: s\n\nbody\n")
    (tmp_path / "cur" / "fine:2,S").write_bytes(b"Subject: t\n\nbody\n")
    loaded = load_maildir(tmp_path)
    name_digest = hashlib.sha1(b"a name with spaces", usedforsecurity=False).hexdigest()
    assert [m.uid for m in loaded] == [name_digest, "fine"]


# --- load(): what is at the path ----------------------------------------------------------


LOADERS: dict[str, Callable[[Path], list[LoadedMessage]]] = {
    "eml": load_eml_dir,
    "maildir": load_maildir,
    "empty-maildir": load_maildir,
    "large.eml": lambda p: [load_eml(p)],
    "eml/not a uid.eml": lambda p: [load_eml(p)],
    "many.mbox": load_mbox,
    "mboxrd.mbox": load_mbox,
}


@pytest.mark.parametrize("name", LOADERS)
def test_load_detects_what_a_path_holds(name: str) -> None:
    assert load(FIXTURES / name) == LOADERS[name](FIXTURES / name)


def test_load_passes_the_flavor_on() -> None:
    mboxo = FIXTURES / "mboxo.mbox"
    assert load(mboxo, "mboxo") == load_mbox(mboxo, "mboxo") != load(mboxo)


def test_load_tells_an_mbox_from_a_message_by_its_first_line(tmp_path: Path) -> None:
    mbox = tmp_path / "archive"  # no suffix: the "From " line says mbox
    mbox.write_bytes((FIXTURES / "mboxrd.mbox").read_bytes())
    assert load(mbox) == [LoadedMessage(MBOXRD_1), LoadedMessage(MBOXRD_2)]
    message = tmp_path / "saved.txt"  # a message saved under another name
    message.write_bytes(MBOXO_2)
    assert load(message) == [LoadedMessage(MBOXO_2, "saved")]
    # The .eml suffix wins even over a first line that looks like an mbox.
    eml = tmp_path / "odd.eml"
    eml.write_bytes(b"From nobody Fri Nov 27 10:00:00 2026\n" + MBOXO_2)
    assert load(eml) == [load_eml(eml)]


@pytest.mark.parametrize(
    ("loader", "says"),
    [
        (load, "give an .eml file, a directory, an mbox"),
        (load_eml_dir, "no directory of .eml files"),
        (load_mbox, "no mbox file"),
        (load_maildir, "it needs cur/ and new/"),
        (load_eml, "No such file"),
    ],
)
def test_a_missing_path_is_a_file_not_found_error_saying_what_to_give(
    tmp_path: Path, loader: Callable[[Path], Any], says: str
) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as raised:
        loader(missing)
    assert says in str(raised.value)
    assert str(missing) in str(raised.value)


def test_a_directory_without_cur_and_new_is_not_a_maildir() -> None:
    with pytest.raises(FileNotFoundError, match="it needs cur/ and new/"):
        load_maildir(EML)
    with pytest.raises(FileNotFoundError, match="no mbox file"):
        load_mbox(EML)


@pytest.mark.parametrize("flavor", ["mboxcl", "MBOXRD", ""])
def test_an_unknown_flavor_is_a_value_error(flavor: str) -> None:
    with pytest.raises(ValueError, match="use 'mboxrd' or 'mboxo'"):
        load_mbox(FIXTURES / "mboxrd.mbox", cast(MboxFlavor, flavor))
    with pytest.raises(ValueError, match="use 'mboxrd' or 'mboxo'"):
        load(FIXTURES / "mboxrd.mbox", cast(MboxFlavor, flavor))


# --- the same UIDs in every process ---------------------------------------------------------

# Loads every sample into one account of a server, then prints the UIDs the server gives.
PRINT_UIDS = """
import json, sys
from fakepop import POP3Server, load
fixtures, maildir = sys.argv[1], sys.argv[2] or None
server = POP3Server({"alice": "secret"}, maildir=maildir)
for name in ["eml", "large.eml", "mboxrd.mbox", "many.mbox", "maildir"]:
    server.mailbox("alice").extend(load(f"{fixtures}/{name}"))
server.mailbox("alice").extend(load(f"{fixtures}/mboxo.mbox", "mboxo"))
print(json.dumps([m.uid for m in server.mailbox("alice").messages]))
"""


def expected_uids() -> list[str]:
    uids = [n[:-4] if " " not in n else digest((EML / n).read_bytes()) for n in EML_NAMES]
    uids.append("large")
    uids += [digest(MBOXRD_1), digest(MBOXRD_2)]
    uids += [digest(m.raw) for m in load_mbox(FIXTURES / "many.mbox")]
    uids += [name[4:].split(":")[0] for name in MAILDIR_FILES]
    uids += [digest(MBOXO_1), digest(MBOXO_2)]
    return uids


def uids_in_a_new_process(maildir: Path | None, hash_seed: str) -> list[str]:
    # The fakepop under test, not another installed copy; hash seeds differ on purpose.
    source = str(Path(fakepop.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=source, PYTHONHASHSEED=hash_seed)
    arguments = [str(FIXTURES), str(maildir or "")]
    result = subprocess.run(
        [sys.executable, "-c", PRINT_UIDS, *arguments],
        capture_output=True,
        env=env,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return cast(list[str], json.loads(result.stdout))


def test_uids_are_the_same_in_two_processes() -> None:
    first = uids_in_a_new_process(None, "1")
    second = uids_in_a_new_process(None, "2")
    assert first == second == expected_uids()
    assert len(set(first)) == len(first) == 6 + 1 + 2 + 200 + 4 + 2


def test_uids_are_the_same_in_two_processes_with_a_maildir_store(tmp_path: Path) -> None:
    # Mailbox.add documents a UID derived from the content when none is given; a Maildir
    # store must keep that promise, or every run of a test sees different UIDs.
    first = uids_in_a_new_process(tmp_path / "first", "1")
    second = uids_in_a_new_process(tmp_path / "second", "2")
    assert first == second == expected_uids()


@pytest.mark.parametrize("loader", [load, load_eml])
def test_a_device_is_refused_not_read_for_ever(tmp_path: Path, loader: Callable[..., Any]) -> None:
    (tmp_path / "zero.eml").symlink_to("/dev/zero")
    with pytest.raises(ValueError, match=r"zero\.eml is not a regular file \(a FIFO, a device\?\)"):
        loader(tmp_path / "zero.eml")


def test_a_fifo_in_a_maildir_is_refused_not_waited_on(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cur" / "1.a.host:2,S").write_bytes(b"Subject: a\n\nA\n")
    os.mkfifo(tmp_path / "new" / "2.b.host")  # opened without O_NONBLOCK, this would block
    error = raised_within(5, lambda: load_maildir(tmp_path))
    assert isinstance(error, ValueError)
    assert "2.b.host is not a regular file" in str(error)


def test_with_a_root_a_link_out_of_it_is_refused(tmp_path: Path) -> None:
    (tmp_path / "box").mkdir()
    (tmp_path / "out.eml").write_bytes(b"Subject: out\n\nout\n")
    (tmp_path / "box" / "in.eml").symlink_to(tmp_path / "out.eml")
    assert [m.uid for m in load(tmp_path / "box")] == ["in"]  # no root: followed
    with pytest.raises(ValueError, match=r"in\.eml leads to .*out\.eml, outside .*box: copy"):
        load(tmp_path / "box", root=(tmp_path / "box").resolve())
