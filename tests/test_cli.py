"""``fakepop serve`` as a process, as users start it: flags, variables, files, signals."""

from __future__ import annotations

import contextlib
import io
import json
import os
import poplib
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import program
from serving import environment, run, serve
from waiting import wait_until

from fakepop import POP3Server, generate_messages
from fakepop.cli import main
from fakepop.log import SessionLog
from fakepop.mail.loaders import fixtures_dir, load, load_eml_dir
from fakepop.mail.maildir import JOURNAL
from fakepop.mail.message import LoadedMessage
from fakepop.mail.wire import to_crlf
from fakepop.tls import CA_CERT, CA_KEY, Authority

DEMO = [to_crlf(m.raw) for m in load_eml_dir(fixtures_dir() / "demo")]
ANY_PORTS = ("--port", "0", "--tls-port", "0")
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def body(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


@contextlib.contextmanager
def login(
    host: str, port: int, user: str = "user", password: str = "password"
) -> Iterator[poplib.POP3]:
    """A logged-in client, closed afterwards (without QUIT, so nothing is deleted)."""
    with contextlib.closing(poplib.POP3(host, port, timeout=5)) as client:
        client.user(user)
        client.pass_(password)
        yield client


@contextlib.contextmanager
def login_tls(
    port: int, cafile: str, user: str = "user", password: str = "password"
) -> Iterator[poplib.POP3_SSL]:
    context = ssl.create_default_context(cafile=cafile)
    with contextlib.closing(
        poplib.POP3_SSL("localhost", port, context=context, timeout=5)
    ) as client:
        client.user(user)
        client.pass_(password)
        yield client


def test_ready_line_names_every_listener_and_the_ca() -> None:
    with serve(*ANY_PORTS, "--control-port", "0") as served:
        match = re.fullmatch(
            r"fakepop ready pop3=127\.0\.0\.1:(\d+) pop3s=127\.0\.0\.1:(\d+)"
            r" control=(http://127\.0\.0\.1:\d+/api/v1) ca=(\S+)",
            served.ready,
        )
        assert match, served.ready
        port, tls_port, control, ca = int(match[1]), int(match[2]), match[3], match[4]
        with login("127.0.0.1", port) as client:
            assert client.stat()[0] == len(DEMO)
        with NO_PROXY.open(f"{control}/health", timeout=5) as answer:
            assert json.load(answer)["status"] == "ok"
        with login_tls(tls_port, ca) as secure:
            assert body(secure.retr(1)[1]) == DEMO[0]
            # Ctrl-C with a session open: it is closed, and the exit is clean.
            assert served.stop(signal.SIGINT) == (0, "", "")
            with pytest.raises((poplib.error_proto, OSError)):
                secure.stat()


def test_json_ready_line_is_one_object() -> None:
    with serve(*ANY_PORTS, "--control-port", "0", "--json") as served:
        info = served.info
        assert set(info) == {"pop3", "pop3s", "control", "ca"}
        assert info["pop3"]["url"] == f"pop://127.0.0.1:{info['pop3']['port']}"
        assert info["pop3s"]["url"] == f"pop3s://127.0.0.1:{info['pop3s']['port']}"
        assert info["control"]["url"] == f"http://127.0.0.1:{info['control']['port']}/api/v1"
        with login_tls(info["pop3s"]["port"], info["ca"]) as client:
            assert client.stat()[0] == len(DEMO)
        code, out, err = served.stop()
    assert (code, out, err) == (0, "", "")  # nothing after the one line: it is all a script reads


def test_quiet_prints_the_ready_line_and_no_hints() -> None:
    with serve(*ANY_PORTS, "-q") as served:
        assert served.ready.startswith("fakepop ready pop3=")
        assert served.stop() == (0, "", "")


def _session_line(line: str) -> dict[str, str]:
    """The fields of a ``-v`` text line: time, event, then key=value."""
    words = shlex.split(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", words[0]), line
    assert words[1] == "session", line
    return dict(word.split("=", 1) for word in words[2:] if not word.startswith("fault="))


def test_verbose_prints_one_line_per_session_as_it_ends(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text('[[faults]]\non = "STAT"\naction = "drop"\n')
    with serve("--no-tls", "--port", "0", "-v", "--faults", str(faults)) as served:
        port = int(served.ready.rsplit(":", 1)[1])
        with contextlib.closing(poplib.POP3("127.0.0.1", port, timeout=5)) as client:
            client.user("user")
            client.pass_("password")
            local = client.sock.getsockname()
            with pytest.raises((poplib.error_proto, OSError)):
                client.stat()  # the fault drops the connection instead of answering
        with login("127.0.0.1", port):  # still open when the server stops
            code, out, err = served.stop()
    assert (code, out) == (0, "")
    fields, second = sorted(map(_session_line, err.splitlines()), key=lambda f: f["session"])
    assert second["ended"] == "server stopped"
    assert fields == {
        "session": "1",
        "peer": f"{local[0]}:{local[1]}",
        "port": str(port),
        "user": "user",
        "login": "USER",
        "commands": "3",
        "bytes_sent": fields["bytes_sent"],
        "ended": "closed by the server",
        "seconds": fields["seconds"],
        "faults": "1",
    }
    assert int(fields["bytes_sent"]) > 0
    assert 'fault="on=STAT action=drop' in err


def test_vv_json_prints_every_line_masked_then_the_session() -> None:
    with serve("--no-tls", "--port", "0", "-vv", "--log-format", "json") as served:
        port = int(served.ready.rsplit(":", 1)[1])
        with login("127.0.0.1", port) as client:
            client.stat()
            client.quit()
        code, out, err = served.stop()
    assert (code, out) == (0, "")
    records = [json.loads(line) for line in err.splitlines()]
    lines = [(r["direction"], r["text"]) for r in records if r["event"] == "line"]
    assert lines[1:4] == [("C", "USER user"), ("S", "+OK Send PASS"), ("C", "PASS ****")]
    assert "password" not in err
    *said, ended = records
    assert [r["event"] for r in said] == ["line"] * 9
    assert (ended["event"], ended["ended"]) == ("session", "quit")
    assert ended["bytes_sent"] == sum(len(t) + 2 for d, t in lines if d == "S")
    assert set(ended) == {
        "time", "event", "session", "peer", "port", "user", "login", "commands",
        "bytes_sent", "ended", "seconds", "faults",
    }  # fmt: skip
    assert (ended["user"], ended["login"], ended["commands"], ended["faults"]) == (
        "user",
        "USER",
        4,
        [],
    )


def test_session_log_is_told_until_it_unsubscribes() -> None:
    out = io.StringIO()
    log = SessionLog(out, lines=True, log_format="json")
    with POP3Server({"alice": "secret"}) as server:
        server.transcript.subscribe(log)
        with login(server.host, server.port, "alice", "secret") as client:
            client.quit()
        wait_until(lambda: '"event": "session"' in out.getvalue(), "no session line")
        server.transcript.unsubscribe(log)
        with login(server.host, server.port, "alice", "secret") as client:
            client.quit()
        wait_until(lambda: server.transcript[1].how == "quit", "the second session goes on")
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["line"] * 7 + ["session"]
    assert records[3]["text"] == "PASS ****"
    assert {r["session"] for r in records} == {1}


def test_no_arguments_serve_the_demo_and_say_how_to_connect() -> None:
    # Only the ports come from the environment, so that nothing else on the machine is hit.
    env = environment(FAKEPOP_PORT="0", FAKEPOP_TLS_PORT="0", FAKEPOP_CONTROL_PORT="0")
    with serve(env=env) as served:
        info = re.fullmatch(
            r"fakepop ready pop3=(\S+):(\d+) pop3s=\S+ control=(\S+) ca=(\S+)", served.ready
        )
        assert info, served.ready
        with login(info[1], int(info[2])) as client:
            assert client.stat() == (len(DEMO), sum(map(len, DEMO)))
            assert [body(client.retr(n + 1)[1]) for n in range(len(DEMO))] == DEMO
        # Each line: two spaces, a label in ten columns, then what to paste.
        how_to = {line[2:12].strip(): line[12:] for line in served.how_to}
        assert how_to["CA"].startswith(info[4])
        printed = subprocess.run(
            [sys.executable, "-c", how_to["poplib"]],
            capture_output=True,
            check=True,
            text=True,
            timeout=10,
        ).stdout
        assert printed.strip() == str((len(DEMO), sum(map(len, DEMO))))
        assert how_to["control"] == f"curl {info[3]}/health"
        with NO_PROXY.open(f"{info[3]}/health", timeout=5) as answer:
            assert answer.status == 200


@pytest.mark.interop  # runs curl
def test_the_curl_line_printed_fetches_the_demo() -> None:
    with serve(env=environment(FAKEPOP_PORT="0", FAKEPOP_TLS_PORT="0")) as served:
        how_to = {line[2:12].strip(): line[12:] for line in served.how_to}
        curl = shlex.split(how_to["curl TLS"])
        curl[0] = program(curl[0])
        fetched = subprocess.run(curl, capture_output=True, check=True, timeout=10).stdout
        assert fetched == DEMO[0]


def test_flags_choose_accounts_mail_and_plain_pop3() -> None:
    mbox = fixtures_dir() / "mboxrd.mbox"
    with serve(
        "--port", "0", "--no-tls", "--user", "alice:s3cret", "--user", "bob:pw:with:colons",
        "--mailbox", f"alice={mbox}", "--generate", "2", "--seed", "5",
    ) as served:  # fmt: skip
        assert re.fullmatch(r"fakepop ready pop3=127\.0\.0\.1:\d+", served.ready)
        port = int(served.ready.rsplit(":", 1)[1])
        generated = [to_crlf(raw) for raw in generate_messages(2, seed=5)]
        expected = [to_crlf(m.raw) for m in load(mbox)] + generated
        with login("127.0.0.1", port, "alice", "s3cret") as alice:
            assert [body(alice.retr(n + 1)[1]) for n in range(len(expected))] == expected
            assert "STLS" not in alice.capa()
        with login("127.0.0.1", port, "bob", "pw:with:colons") as bob:
            assert [body(bob.retr(n + 1)[1]) for n in range(2)] == generated
        with pytest.raises(poplib.error_proto), login("127.0.0.1", port):
            pass  # accounts were given: there is no demo account


def test_require_tls_cert_dir_and_tls_name(tmp_path: Path) -> None:
    Authority.load_or_create(tmp_path)  # what ``fakepop ca --out`` does
    pem = (tmp_path / CA_CERT).read_bytes()
    assert (tmp_path / CA_KEY).stat().st_mode & 0o077 == 0
    with serve(
        *ANY_PORTS, "--json", "--require-tls", "--cert-dir", str(tmp_path),
        "--tls-name", "pop.fakepop.test",
    ) as served:  # fmt: skip
        info = served.info
        assert info["ca"] == str(tmp_path / CA_CERT)
        assert (tmp_path / CA_CERT).read_bytes() == pem  # kept, not replaced
        with contextlib.closing(poplib.POP3("127.0.0.1", info["pop3"]["port"], timeout=5)) as plain:
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
                plain.user("user")
            plain.stls(ssl.create_default_context(cafile=info["ca"]))
            plain.user("user")
            plain.pass_("password")
        with login_tls(info["pop3s"]["port"], info["ca"]) as secure:
            assert isinstance(secure.sock, ssl.SSLSocket)
            names = dict(secure.sock.getpeercert() or {}).get("subjectAltName", ())
            assert ("DNS", "pop.fakepop.test") in names


def test_environment_variables_set_what_flags_set() -> None:
    env = environment(
        FAKEPOP_HOST="no-such-host.invalid",  # the flag below wins
        FAKEPOP_PORT="0",
        FAKEPOP_NO_TLS="1",
        FAKEPOP_USER="alice:secret bob:hunter2",
        FAKEPOP_MAILBOX=f"alice={fixtures_dir() / 'eml'}",
        FAKEPOP_JSON="true",
        FAKEPOP_CONTROL_PORT="0",
        FAKEPOP_CONTROL_TOKEN="t0ken",
    )
    with serve("--host", "127.0.0.1", env=env) as served:
        info = served.info
        assert info["pop3s"] is None
        assert info["ca"] is None
        with login("127.0.0.1", info["pop3"]["port"], "alice", "secret") as client:
            assert client.stat()[0] == len(load(fixtures_dir() / "eml"))
        with login("127.0.0.1", info["pop3"]["port"], "bob", "hunter2") as client:
            assert client.stat() == (0, 0)
        request = urllib.request.Request(
            f"{info['control']['url']}/accounts", headers={"Authorization": "Bearer t0ken"}
        )
        with NO_PROXY.open(request, timeout=5) as answer:
            assert {a["name"] for a in json.load(answer)["accounts"]} == {"alice", "bob"}


def test_verbose_and_log_format_from_the_environment() -> None:
    # A container is set up by its environment alone: -vv --log-format json as variables.
    env = environment(FAKEPOP_VERBOSE="2", FAKEPOP_LOG_FORMAT="json")
    with serve("--no-tls", "--port", "0", env=env) as served:
        port = int(served.ready.rsplit(":", 1)[1])
        with login("127.0.0.1", port) as client:
            client.quit()
        code, out, err = served.stop()
    assert (code, out) == (0, "")
    records = [json.loads(line) for line in err.splitlines()]
    assert {r["event"] for r in records} == {"line", "session"}  # -vv: the lines too
    # A flag beats its variable.
    with serve("--no-tls", "--port", "0", "--log-format", "text", env=env) as served:
        port = int(served.ready.rsplit(":", 1)[1])
        with login("127.0.0.1", port) as client:
            client.quit()
        code, out, err = served.stop()
    assert err.splitlines()[-1].split()[1] == "session"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("FAKEPOP_VERBOSE", "3", "FAKEPOP_VERBOSE: expected 0, 1 (as -v) or 2 (as -vv), got '3'"),
        ("FAKEPOP_LOG_FORMAT", "xml", "FAKEPOP_LOG_FORMAT: expected text or json, got 'xml'"),
    ],
)
def test_output_variables_that_cannot_be_used_exit_2(variable: str, value: str, says: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "fakepop", "serve", "--port", "0", "--no-tls"],
        env=environment(**{variable: value}),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert process.returncode == 2
    assert says in process.stderr
    assert "ignoring" not in process.stderr


def test_serve_takes_the_samples_by_name(tmp_path: Path) -> None:
    config = tmp_path / "fakepop.toml"
    config.write_text('mailbox = ["bob=fakepop:demo"]\n')
    args = ("--manifest", "fakepop:fakepop.toml", "--config", str(config), "--json")
    with serve(*ANY_PORTS, "--no-tls", *args) as served:
        port = served.info["pop3"]["port"]
        with login("127.0.0.1", port, "alice", "alice-secret") as client:
            assert client.stat()[0] == 11
        with login("127.0.0.1", port, "bob", "bob-secret") as client:
            assert client.stat()[0] == 4 + 200 + len(DEMO)
    [result] = run(["serve", "--port", "0", "--mailbox", "user=fakepop:dmeo"])
    assert result.returncode == 2
    assert "no sample mailbox 'dmeo'; the samples: demo, eml," in result.stderr


def test_a_config_file_says_all_that_and_more(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "one.eml").write_bytes(b"Subject: one\r\n\r\nOne\r\n")
    (tmp_path / "two.eml").write_bytes(b"Subject: two\r\n\r\nTwo\r\n")
    config = tmp_path / "fakepop-serve.toml"
    config.write_text(
        """
        port = 0
        tls_port = 0
        json = true
        user = ["carol:c"]

        [users]
        alice = "secret"

        [mailboxes]
        alice = ["mail/", "two.eml"]

        [server]
        login_delay = 60
        apop = false

        [[faults]]
        on = "RETR"
        action = "error"
        user = "carol"
        """
    )
    env = environment(FAKEPOP_CONFIG=str(config), FAKEPOP_NO_TLS="1")  # the variable beats the file
    with serve("--user", "dave:d", env=env) as served:
        info = served.info
        assert info["pop3s"] is None
        port = info["pop3"]["port"]
        with login("127.0.0.1", port, "alice", "secret") as alice:
            assert alice.stat()[0] == 1 + 1  # the directory's message, then the file
            assert alice.capa()["LOGIN-DELAY"] == ["60"]
            assert b"<" not in alice.getwelcome()  # no APOP timestamp
        with (
            login("127.0.0.1", port, "carol", "c") as carol,
            pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"),
        ):
            carol.retr(1)
        with login("127.0.0.1", port, "dave", "d") as dave:
            assert dave.stat() == (0, 0)


def test_sigterm_stops_it_with_sessions_closed_and_the_disk_consistent(tmp_path: Path) -> None:
    args = ("--port", "0", "--no-tls", "--json", "--maildir", str(tmp_path))
    with serve(*args) as served, login("127.0.0.1", served.info["pop3"]["port"]) as client:
        client.dele(1)  # and no QUIT: the deletion must not happen
        assert served.stop(signal.SIGTERM) == (0, "", "")
        with pytest.raises((poplib.error_proto, OSError)):
            client.stat()  # the server closed the session
    maildrop = tmp_path / "user"
    assert not (maildrop / JOURNAL).exists()
    assert list((maildrop / "tmp").iterdir()) == []
    assert len(list((maildrop / "new").iterdir())) == len(DEMO)
    # Restarted on the same directory, it does not add the demo mail twice.
    with serve(*args) as again, login("127.0.0.1", again.info["pop3"]["port"]) as client:
        assert client.stat()[0] == len(DEMO)


def test_sigterm_does_not_wait_for_stalled_tls_handshakes() -> None:
    with serve(*ANY_PORTS, "--json") as served:
        info = served.info
        silent = socket.create_connection(("127.0.0.1", info["pop3s"]["port"]), timeout=5)
        stalled = socket.create_connection(("127.0.0.1", info["pop3"]["port"]), timeout=5)
        assert stalled.recv(4096).startswith(b"+OK fakepop ready")
        stalled.sendall(b"STLS\r\n")
        assert stalled.recv(4096) == b"+OK Begin TLS negotiation\r\n"
        began = time.monotonic()
        # Within 2 s; the bound is generous for a loaded machine, the idle timeout is 600 s.
        code, _, _ = served.stop(signal.SIGTERM, timeout=5)
        assert code == 0
        assert time.monotonic() - began < 5
        silent.close()
        stalled.close()


def transcript_sessions(control: str) -> list[int]:
    with NO_PROXY.open(f"{control}/transcript", timeout=5) as answer:
        return [s["session"] for s in json.load(answer)["sessions"]]


def capa_sessions(port: int, count: int) -> None:
    for _ in range(count):
        with contextlib.closing(poplib.POP3("127.0.0.1", port, timeout=5)) as client:
            client.capa()
            client.quit()


@pytest.mark.parametrize(
    ("flags", "env", "kept"),
    [
        ([], {}, [1, 2, 3, 4, 5]),  # 1000 by default
        (["--transcript-limit", "2"], {}, [4, 5]),
        ([], {"FAKEPOP_TRANSCRIPT_LIMIT": "0"}, []),
    ],
)
def test_the_transcript_keeps_the_latest_sessions(
    flags: list[str], env: dict[str, str], kept: list[int]
) -> None:
    args = ("--port", "0", "--no-tls", "--json", "--control-port", "0", *flags)
    with serve(*args, env=environment(**env)) as served:
        capa_sessions(served.info["pop3"]["port"], 5)
        control = served.info["control"]["url"]
        deadline = time.monotonic() + 5
        while transcript_sessions(control)[-1:] != kept[-1:]:  # the last session has ended
            assert time.monotonic() < deadline, transcript_sessions(control)
            time.sleep(0.01)
        assert transcript_sessions(control) == kept


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_server_ended_any_way_leaves_no_ca_directory(tmp_path: Path, signum: int) -> None:
    # Without --cert-dir the CA is written to a temporary directory: removed at exit, and
    # by a watcher process when SIGKILL leaves no exit to run.
    private = tmp_path / "tmp"
    private.mkdir()
    with serve(*ANY_PORTS, "--json", env=environment(TMPDIR=str(private))) as served:
        ca = Path(served.info["ca"])
        assert ca.is_file()
        assert ca.is_relative_to(private)
        assert [p.name.startswith("fakepop-ca-") for p in private.iterdir()] == [True]
        served.process.send_signal(signum)
        served.process.wait(10)
    wait_until(lambda: not any(private.iterdir()), f"{private} emptied after {signum!r}")


def test_bad_flag_exits_2_with_usage() -> None:
    [result] = run(["serve", "--user", "nopassword"])
    assert result.returncode == 2
    assert "usage: fakepop serve" in result.stderr
    assert "expected NAME:PASSWORD" in result.stderr


def test_a_mistyped_flag_names_the_nearest_before_the_usage() -> None:
    typo, typo_with_value, unlike = run(
        ["serve", "--idle-timout", "3"],
        ["--tls-prot=1995"],
        ["serve", "--zzzzzz"],
    )
    assert typo.returncode == typo_with_value.returncode == unlike.returncode == 2
    assert typo.stderr.startswith("fakepop: did you mean --idle-timeout?\nusage: fakepop serve")
    assert "unrecognized arguments: --idle-timout 3" in typo.stderr
    assert typo_with_value.stderr.startswith("fakepop: did you mean --tls-port?\n")
    assert unlike.stderr.startswith("usage: fakepop serve")


def test_port_in_use_exits_1_saying_which() -> None:
    flags = ("--port", "--tls-port", "--control-port")
    with POP3Server() as server:
        results = run(
            *(
                ["serve", *(w for f in flags for w in (f, str(server.port) if f == flag else "0"))]
                for flag in flags
            )
        )
    for flag, result in zip(flags, results, strict=True):
        assert result.returncode == 1, result.stderr
        assert f"port {server.port} on 127.0.0.1 is already in use ({flag})" in result.stderr
        assert "Traceback" not in result.stderr


# --- mistakes, in-process: each says what to do, exits 2, and shows no traceback ----------------


@pytest.fixture
def signals() -> Iterator[None]:
    """Put back the signal handlers that main() installs."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.usefixtures("signals")
@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--port", "70000"], {}, "expected a port from 0 to 65535"),
        ([], {"FAKEPOP_PORT": "abc"}, "FAKEPOP_PORT: expected a port"),
        ([], {"FAKEPOP_NO_TLS": "maybe"}, "FAKEPOP_NO_TLS: expected one of 1, true"),
        (["--config", "/no/such.toml"], {}, "--config: no file at /no/such.toml"),
        (["--config", "/dev/zero"], {}, "/dev/zero is not a regular file"),
        (["--no-tls", "--require-tls"], {}, "--require-tls needs TLS"),
        (["--mailbox", "user=/no/such/mail"], {}, "--mailbox user=/no/such/mail: no mail at"),
        (["--mailbox", "eve=/tmp"], {}, "there is no account eve; add --user eve:PASSWORD"),
        (["--faults", "/no/faults.toml"], {}, "no fault file at /no/faults.toml"),
        (["--manifest", "/no/fixtures"], {}, "--manifest: no manifest at"),
        (["--maildir", "/proc/fakepop"], {}, "cannot make its Maildir /proc/fakepop"),
        (["--control-port", "0", "--control-host", "0.0.0.0"], {}, "set a token (--control-token)"),
        (["--generate", "-1"], {}, "expected a whole number, 0 or more"),
        (["--transcript-limit", "all"], {}, "--transcript-limit: expected a whole number, 0 or"),
        ([], {"FAKEPOP_TRANSCRIPT_LIMIT": "-1"}, "FAKEPOP_TRANSCRIPT_LIMIT: expected a whole"),
        ([], {"FAKEPOP_PROT": "1", "FAKEPOP_USER": "x"}, "ignoring FAKEPOP_PROT: no such setting"),
    ],
)
def test_mistakes_exit_2_saying_what_to_do(
    argv: list[str],
    env: dict[str, str],
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.startswith("FAKEPOP_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, err = _main(["serve", "--port", "0", "--no-tls", *argv], capsys)
    assert code == 2
    assert says in err
    assert "Traceback" not in err


@pytest.mark.usefixtures("signals")
@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ("port = [", "not valid TOML"),
        ("prot = 1", "prot: unknown key; the keys are"),
        ('port = "x"', "port: expected int"),
        ("user = 'alice:x'", "user: expected a list"),
        ("[server]\nsasl = ['NOPE']", "unknown mechanism NOPE"),
        ("[server]\ncolour = 1", "server.colour: unknown option"),
        ("[[faults]]\naction = 'explode'", "action must be one of"),
    ],
)
def test_config_file_mistakes_name_the_key(
    toml: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(toml + "\n")
    code, err = _main(["serve", "--port", "0", "--no-tls", "--config", str(config)], capsys)
    assert code == 2
    assert says in err
    assert "Traceback" not in err


def test_ca_command_says_where_it_wrote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ca", "--out", str(tmp_path)]) == 0
    assert f"{tmp_path / CA_CERT} (made)" in capsys.readouterr().out
    assert main(["ca", "--out", str(tmp_path)]) == 0
    assert "already there, kept" in capsys.readouterr().out


# --- fakepop generate ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["eml", "mbox", "maildir"])
def test_generate_writes_what_generate_messages_makes(tmp_path: Path, form: str) -> None:
    out = tmp_path / ("mail.mbox" if form == "mbox" else "mail")
    (result,) = run(
        ["generate", "--count", "7", "--seed", "3", "--format", form, "--out", str(out)]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote 7 messages to {out} ({form})\n"
    assert [to_crlf(m.raw) for m in load(out)] == [to_crlf(r) for r in generate_messages(7, seed=3)]


def test_generate_to_standard_output() -> None:
    def generate(*args: str) -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "fakepop", "generate", "--seed", "5", "--out", "-"]
        return subprocess.run([*command, *args], env=environment(), capture_output=True, timeout=60)

    one, mbox, eml, maildir = (
        generate("--count", "1"),
        generate("--count", "3"),
        generate("--count", "3", "--format", "eml"),
        generate("--count", "1", "--format", "maildir"),
    )
    assert (one.returncode, one.stderr) == (0, b"")
    assert one.stdout == generate_messages(1, seed=5)[0]  # the message alone, as an .eml
    assert (mbox.returncode, mbox.stderr) == (0, b"")
    assert mbox.stdout.startswith(b"From ")
    assert [to_crlf(m.raw) for m in load_mbox_bytes(mbox.stdout)] == [
        to_crlf(raw) for raw in generate_messages(3, seed=5)
    ]
    for refused in (eml, maildir):
        assert (refused.returncode, refused.stdout) == (2, b"")
        assert b"--out - writes one message (--count 1) or an mbox" in refused.stderr


def test_generate_to_a_pipe_closed_early_ends_quietly() -> None:
    command = [sys.executable, "-m", "fakepop", "generate", "--count", "3000", "--out", "-"]
    process = subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.readline().startswith(b"From ")
    process.stdout.close()  # as `| head -1` does
    err = process.stderr.read()
    process.stderr.close()
    assert (process.wait(60), err) == (0, b"")


def load_mbox_bytes(data: bytes) -> list[LoadedMessage]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "out.mbox"
        path.write_bytes(data)
        return load(path)


@pytest.mark.parametrize(
    ("form", "out", "says"),
    [
        ("eml", "full", "is not empty; give a new or empty directory"),
        ("maildir", "file", "is a file; --format maildir writes a directory"),
        ("mbox", "full", "is a directory; --format mbox writes a file"),
        ("eml", "unwritable", "cannot write"),
        ("mbox", "missing/x.mbox", "cannot write"),
    ],
)
def test_generate_says_what_is_wrong_with_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], form: str, out: str, says: str
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mail.eml").write_bytes(b"x")
    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "unwritable").mkdir(mode=0o500)
    target = tmp_path / out / ("sub" if out == "unwritable" else "")
    if os.geteuid() == 0 and out == "unwritable":
        target = Path("/proc/fakepop-generate")  # root writes anywhere but in /proc
    code, err = _main(["generate", "--count", "1", "--format", form, "--out", str(target)], capsys)
    assert code == 1
    assert says in err
    assert "Traceback" not in err


def test_a_ca_directory_that_cannot_be_used_exits_2_saying_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / CA_KEY).write_bytes(b"not a key")
    assert main(["ca", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} holds ca.key but not ca.pem" in err
    assert "Traceback" not in err
    [result] = run(["serve", "--port", "0", "--tls-port", "0", "--cert-dir", "/proc/fakepop"])
    assert result.returncode == 2
    assert "cannot keep a CA in /proc/fakepop" in result.stderr
    assert "Traceback" not in result.stderr
