"""``fakepop serve`` as a process, as users start it."""

from __future__ import annotations

import poplib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fakepop import POP3Server
from fakepop.mail.loaders import fixtures_dir, load_eml_dir
from fakepop.mail.wire import to_crlf


@pytest.fixture
def serve() -> Iterator[tuple[subprocess.Popen[str], str, int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fakepop", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    match = re.fullmatch(r"fakepop ready pop3=(\S+):(\d+)\n", ready)
    assert match, f"no ready line, got {ready!r}"
    yield process, match[1], int(match[2])
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_serve_serves_the_demo_maildrop(serve: tuple[subprocess.Popen[str], str, int]) -> None:
    _, host, port = serve
    demo = [m.raw for m in load_eml_dir(fixtures_dir() / "demo")]
    client = poplib.POP3(host, port, timeout=5)
    client.user("user")
    client.pass_("password")
    assert client.stat() == (len(demo), sum(len(to_crlf(m)) for m in demo))
    _, lines, _ = client.retr(2)
    assert b"".join(line + b"\r\n" for line in lines) == to_crlf(demo[1])
    client.quit()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signals(
    serve: tuple[subprocess.Popen[str], str, int], signum: signal.Signals
) -> None:
    process, _, _ = serve
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0
    assert stderr == ""


def test_bad_flag_exits_2_with_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fakepop", "serve", "--user", "nopassword"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "usage: fakepop serve" in result.stderr
    assert "expected NAME:PASSWORD" in result.stderr


def test_port_in_use_exits_1_saying_which() -> None:
    with POP3Server() as server:
        result = subprocess.run(
            [sys.executable, "-m", "fakepop", "serve", "--port", str(server.port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"port {server.port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr
