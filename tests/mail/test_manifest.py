"""fakepop.toml manifests: the fixtures' one loaded both ways; every error names its place."""

from __future__ import annotations

import os
import poplib
import threading
from pathlib import Path

import pytest

from fakepop import POP3Server, load, load_eml, load_mbox
from fakepop.mail.generate import generate_messages
from fakepop.mail.manifest import AccountFixture, ManifestError, load_manifest
from fakepop.mail.message import LoadedMessage
from fakepop.mail.wire import to_crlf
from fakepop.pytest_plugin import pop3_server_fixture

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TIMEOUT = 10.0

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "carol": "carol-secret"}


def fixture_messages(account: str) -> list[LoadedMessage]:
    """What fixtures/fakepop.toml declares for ``account``, loaded here with the loaders."""
    if account == "alice":
        return [
            *load(FIXTURES / "eml"),
            LoadedMessage((FIXTURES / "large.eml").read_bytes(), "large-1mb"),
            *load_mbox(FIXTURES / "mboxrd.mbox"),
            *load_mbox(FIXTURES / "mboxo.mbox", "mboxo"),
        ]
    if account == "bob":
        return [*load(FIXTURES / "maildir"), *load(FIXTURES / "many.mbox")]
    return []


@pytest.fixture(scope="module")
def manifest() -> dict[str, AccountFixture]:
    return load_manifest(FIXTURES / "fakepop.toml")


def test_the_fixture_manifest_declares_three_accounts(
    manifest: dict[str, AccountFixture],
) -> None:
    assert list(manifest) == ["alice", "bob", "carol"]
    assert {name: a.password for name, a in manifest.items()} == PASSWORDS
    assert load_manifest(FIXTURES) == manifest  # the directory holding fakepop.toml


@pytest.mark.parametrize(("account", "count"), [("alice", 11), ("bob", 204), ("carol", 0)])
def test_each_account_gets_its_messages(
    manifest: dict[str, AccountFixture], account: str, count: int
) -> None:
    assert len(manifest[account].messages) == count
    assert manifest[account].messages == fixture_messages(account)


def test_the_uid_override_replaces_the_file_name(manifest: dict[str, AccountFixture]) -> None:
    large = manifest["alice"].messages[6]
    assert large == LoadedMessage((FIXTURES / "large.eml").read_bytes(), "large-1mb")
    assert load_eml(FIXTURES / "large.eml").uid == "large"


server = pop3_server_fixture(scope="module", fixtures=FIXTURES / "fakepop.toml", tls=False)


@pytest.mark.parametrize("account", PASSWORDS)
def test_the_server_serves_the_manifest(server: POP3Server, account: str) -> None:
    expected = fixture_messages(account)
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        client.user(account)
        client.pass_(PASSWORDS[account])
        assert client.stat() == (len(expected), sum(len(to_crlf(m.raw)) for m in expected))
        uids = [line.split()[1].decode() for line in client.uidl()[1]]
        assert [u for u, m in zip(uids, expected, strict=True) if m.uid] == [
            m.uid for m in expected if m.uid
        ]
        if account == "alice":
            assert client.uidl(7) == b"+OK 7 large-1mb"
        client.quit()
    finally:
        client.close()


def test_a_wrong_password_from_the_manifest_is_refused(server: POP3Server) -> None:
    client = poplib.POP3(server.host, server.port, timeout=TIMEOUT)
    try:
        client.user("alice")
        with pytest.raises(poplib.error_proto, match="AUTH"):
            client.pass_("bob-secret")
    finally:
        client.close()


def test_generate_entries_make_faker_mail(tmp_path: Path) -> None:
    (tmp_path / "fakepop.toml").write_text(
        '[accounts.dana]\npassword = "pw"\nmessages = [\n'
        "    { generate = 5, seed = 1 },\n"
        '    { generate = 2, seed = 3, locale = "de_DE" },\n'
        "]\n"
    )
    messages = load_manifest(tmp_path)["dana"].messages
    expected = [*generate_messages(5, seed=1), *generate_messages(2, seed=3, locale="de_DE")]
    assert messages == [LoadedMessage(raw) for raw in expected]


# --- errors: each a ManifestError that names the place --------------------------------------


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A directory with a few messages for manifests to name."""
    (tmp_path / "one.eml").write_bytes((FIXTURES / "eml" / "dot-lines.eml").read_bytes())
    (tmp_path / "two.mbox").write_bytes((FIXTURES / "mboxrd.mbox").read_bytes())
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.eml").write_bytes((FIXTURES / "eml" / "bare-lf.eml").read_bytes())
    return tmp_path


def manifest_error(directory: Path, text: str) -> str:
    (directory / "fakepop.toml").write_text(text)
    with pytest.raises(ManifestError) as raised:
        load_manifest(directory / "fakepop.toml")
    assert isinstance(raised.value, ValueError)
    return str(raised.value)


def test_a_valid_manifest_loads(place: Path) -> None:
    (place / "fakepop.toml").write_text(
        '[accounts.alice]\npassword = "pw"\nmessages = [\n'
        '    { path = "one.eml" }, { path = "dir" }, { path = "two.mbox", flavor = "mboxrd" },\n'
        "]\n"
    )
    assert [m.uid for m in load_manifest(place)["alice"].messages] == ["one", "a", None, None]


def test_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no manifest at .*nope\.toml: write a fakepop\.toml"):
        load_manifest(tmp_path / "nope.toml")
    with pytest.raises(ManifestError, match=r"no manifest at .*fakepop\.toml"):
        load_manifest(tmp_path)  # a directory without one


def test_invalid_toml(place: Path) -> None:
    message = manifest_error(place, '[accounts.alice]\npassword = "unterminated\n')
    assert "fakepop.toml: not valid TOML" in message
    assert "line 2" in message


def account(messages: str) -> str:
    return f'[accounts.alice]\npassword = "p"\nmessages = [{messages}]\n'


# (what the manifest says, what the error must say), by what is wrong.
ERRORS = {
    "unknown top-level key": (
        '[acounts.alice]\npassword = "p"\n',
        "fakepop.toml: unknown key acounts; allowed: accounts",
    ),
    "unknown account key": (
        '[accounts.alice]\npasword = "p"\n',
        "fakepop.toml: accounts.alice: unknown key pasword; allowed: messages, password",
    ),
    "unknown source key": (
        account('{ path = "one.eml" }, { path = "two.mbox", flavour = "mboxo" }'),
        "fakepop.toml: accounts.alice.messages[1]: unknown key flavour",
    ),
    "a generate key on a path": (
        account('{ path = "one.eml", seed = 1 }'),
        "fakepop.toml: accounts.alice.messages[0]: unknown key seed",
    ),
    "neither path nor generate": (
        account('{ uid = "x" }'),
        "fakepop.toml: accounts.alice.messages[0]: give either path = ... or generate = N",
    ),
    "accounts not a table": ("accounts = 5\n", "fakepop.toml: accounts: expected dict"),
    "account not a table": ("accounts.alice = 5\n", "fakepop.toml: accounts.alice: expected dict"),
    "password not a string": (
        "[accounts.alice]\npassword = 5\n",
        "fakepop.toml: accounts.alice.password: expected str, got 5",
    ),
    "no password": (
        "[accounts.alice]\nmessages = []\n",
        "fakepop.toml: accounts.alice.password: expected str, got None",
    ),
    "messages not a list": (
        '[accounts.alice]\npassword = "p"\nmessages = "x"\n',
        "accounts.alice.messages: expected list",
    ),
    "source not a table": (account('"one.eml"'), "accounts.alice.messages[0]: expected dict"),
    "path not a string": (account("{ path = 5 }"), "accounts.alice.messages[0].path: expected str"),
    "uid not a string": (
        account('{ path = "one.eml", uid = 5 }'),
        "accounts.alice.messages[0].uid: expected str",
    ),
    "generate not an int": (
        account('{ generate = "5" }'),
        "accounts.alice.messages[0].generate: expected int",
    ),
    "generate a bool": (
        account("{ generate = true }"),
        "accounts.alice.messages[0].generate: expected int, got True",
    ),
    "seed not an int": (
        account("{ generate = 5, seed = 1.5 }"),
        "accounts.alice.messages[0].seed: expected int",
    ),
    "flavor not a string": (
        account('{ path = "two.mbox", flavor = ["mboxo"] }'),
        "accounts.alice.messages[0]",
    ),
    "locale not a string": (
        account("{ generate = 5, locale = 5 }"),
        "accounts.alice.messages[0].locale: expected str",
    ),
    "missing path": (
        account('{ path = "missing.eml" }'),
        "accounts.alice.messages[0].path: no mail at",
    ),
    "unknown flavor": (
        account('{ path = "two.mbox", flavor = "mboxcl" }'),
        "accounts.alice.messages[0]",
    ),
    "uid on a multi-message source": (
        account(
            '{ path = "one.eml" }, { path = "one.eml", uid = "again" },'
            ' { path = "two.mbox", uid = "x" }'
        ),
        "accounts.alice.messages[2].uid: a UID can be set only for a single message",
    ),
    "uid with a space": (  # RFC 1939, section 7: printable ASCII without spaces
        account('{ path = "one.eml", uid = "two words" }'),
        "accounts.alice.messages[0]",
    ),
    "empty uid": (  # 1 to 70 characters
        account('{ path = "one.eml", uid = "" }'),
        "accounts.alice.messages[0]",
    ),
    "negative generate": (
        account("{ generate = -1 }"),
        "accounts.alice.messages[0]: count must be a whole number",
    ),
    "unknown locale": (
        account('{ generate = 5, locale = "xx_YY" }'),
        "accounts.alice.messages[0]: unknown locale 'xx_YY'",
    ),
}


@pytest.mark.parametrize("wrong", ERRORS)
def test_errors_name_the_place(place: Path, wrong: str) -> None:
    text, says = ERRORS[wrong]
    assert says in manifest_error(place, text)


@pytest.mark.parametrize(
    "path", ["../outside.eml", "dir/../../outside.eml", "{root}/outside.eml", "link.eml"]
)
def test_a_path_may_not_leave_the_manifest_directory(place: Path, path: str) -> None:
    inside = place / "inside"
    inside.mkdir()
    (place / "outside.eml").write_bytes(b"Subject: out\r\n\r\nout\r\n")
    (inside / "dir").mkdir()
    (inside / "link.eml").symlink_to(place / "outside.eml")  # resolved, then refused
    path = path.format(root=place)
    message = manifest_error(
        inside, f'[accounts.alice]\npassword = "p"\nmessages = [{{ path = "{path}" }}]\n'
    )
    assert "accounts.alice.messages[0].path:" in message
    assert "leaves the manifest's directory" in message


def test_a_bad_manifest_leaves_the_server_unchanged(place: Path) -> None:
    (place / "fakepop.toml").write_text(
        '[accounts.alice]\npassword = "p"\nmessages = [{ x = 1 }]\n'
    )
    server = POP3Server()
    with pytest.raises(ManifestError, match=r"accounts\.alice\.messages\[0\]"):
        server.load_manifest(place)
    assert dict(server.users) == {}


def load_within(seconds: float, directory: Path) -> str:
    """The ManifestError of loading ``directory``'s manifest, which must come, not hang."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            load_manifest(directory)
        except BaseException as e:  # handed to the test thread
            result.append(e)
        else:
            result.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert result, "loading the manifest hangs"
    assert isinstance(result[0], ManifestError), result[0]
    return str(result[0])


@pytest.mark.parametrize("kind", ["eml-dir", "maildir-new", "maildir-cur"])
def test_a_link_in_a_directory_may_not_leave_the_manifest_directory(place: Path, kind: str) -> None:
    inside = place / "inside"
    (place / "secret.txt").write_bytes(b"root:x:0:0\n")
    if kind == "eml-dir":
        (inside / "mail").mkdir(parents=True)
        link = inside / "mail" / "leak.eml"
    else:
        for sub in ("cur", "new", "tmp"):
            (inside / "mail" / sub).mkdir(parents=True)
        link = inside / "mail" / kind.split("-")[1] / "1700000000.leak.host:2,S"
    link.symlink_to(place / "secret.txt")
    (inside / "fakepop.toml").write_text(account('{ path = "mail" }'))
    message = load_within(5, inside)
    assert message.startswith("fakepop.toml: accounts.alice.messages[0].path: ")
    assert f"{link} leads to {place / 'secret.txt'}, outside {inside}" in message


def test_a_link_that_stays_inside_is_followed(place: Path) -> None:
    (place / "mail").mkdir()
    (place / "mail" / "a.eml").symlink_to(place / "one.eml")
    (place / "fakepop.toml").write_text(account('{ path = "mail" }'))
    assert load_manifest(place)["alice"].messages == [
        LoadedMessage((place / "one.eml").read_bytes(), "a")
    ]


@pytest.mark.parametrize("where", ["alone", "eml-dir", "maildir"])
def test_a_fifo_is_refused_not_waited_on(place: Path, where: str) -> None:
    if where == "alone":
        fifo = place / "pipe.eml"
    elif where == "eml-dir":
        fifo = place / "dir" / "pipe.eml"
    else:
        for sub in ("cur", "new", "tmp"):
            (place / "box" / sub).mkdir(parents=True)
        fifo = place / "box" / "new" / "1700000000.pipe.host"
    os.mkfifo(fifo)
    path = {"alone": "pipe.eml", "eml-dir": "dir", "maildir": "box"}[where]
    (place / "fakepop.toml").write_text(account(f'{{ path = "{path}" }}'))
    assert f"{fifo} is not a regular file" in load_within(5, place)


def test_a_device_is_refused_not_read_for_ever(place: Path) -> None:
    (place / "dir" / "zero.eml").symlink_to("/dev/zero")
    (place / "fakepop.toml").write_text(account('{ path = "dir" }'))
    message = load_within(5, place)
    assert "zero.eml leads to /dev/zero, outside" in message
    (place / "fakepop.toml").unlink()
    (place / "fakepop.toml").symlink_to("/dev/zero")  # the manifest itself may be anywhere
    assert "fakepop.toml is not a regular file" in load_within(5, place)


def test_the_manifest_may_not_be_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fakepop.toml")
    assert "is not a regular file" in load_within(5, tmp_path)


def test_a_directory_named_like_a_message_is_refused(place: Path) -> None:
    (place / "dir" / "sub.eml").mkdir()
    (place / "fakepop.toml").write_text(account('{ path = "dir" }'))
    assert "sub.eml is a directory, not a message file" in manifest_error(
        place, account('{ path = "dir" }')
    )
