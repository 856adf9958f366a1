"""The image from the Dockerfile, built and run as a service container, as CI would use it.

It needs rootful podman and ``../shared/container/build_and_run.sh`` beside the checkout,
which builds a stand-in for the base image where no registry can be reached; without them it
is skipped. The first run builds that base image, a minute or two; later runs reuse it.
``-m "not container"`` leaves the test out.
"""

from __future__ import annotations

import contextlib
import os
import poplib
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakepop.control import ControlClient
from fakepop.mail.loaders import fixtures_dir, load_eml_dir
from fakepop.mail.wire import to_crlf

ROOT = Path(__file__).resolve().parent.parent
# The podman recipe for machines without a Docker engine: named by FAKEPOP_CONTAINER_SCRIPT, or
# found in the shared folder beside the checkout or at its usual place.
SCRIPT = next(
    (
        path
        for path in (
            Path(os.environ.get("FAKEPOP_CONTAINER_SCRIPT", "/nonexistent")),
            ROOT.parent / "shared" / "container" / "build_and_run.sh",
            Path("/work/shared/container/build_and_run.sh"),
        )
        if path.is_file()
    ),
    ROOT.parent / "shared" / "container" / "build_and_run.sh",
)
IMAGE = "localhost/fakepop:test"
NAME = "svc-fakepop-test"
STOP_TIMEOUT = 5  # podman kills after this; stopping sooner shows that SIGTERM was handled
DEMO = [to_crlf(m.raw) for m in load_eml_dir(fixtures_dir() / "demo")]

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed"),
    pytest.mark.skipif(not SCRIPT.is_file(), reason=f"no container script at {SCRIPT}"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the container script needs rootful podman"),
]


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now, to publish the container's on."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the container script to its end; what it printed is in ``stdout`` and ``stderr``."""
    # Files, not pipes: the container's monitor inherits the script's output and lives on,
    # so a pipe would never reach its end.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        result = subprocess.run(
            ["bash", str(SCRIPT), *args],  # CI's copy of the script may lack its exec bit
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=900,
            check=False,
        )
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(result.args, result.returncode, out.read(), err.read())


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[int, int, int]]:
    """The image built and running, published on (pop3, pop3s, control) ports of 127.0.0.1."""
    pop3, pop3s, control = free_ports(3)
    started = time.monotonic()
    result = script(
        str(ROOT),
        IMAGE,
        str(control),
        env={
            "CTR_NAME": NAME,
            "CTR_NETWORK": "bridge",
            "CTR_CONTAINER_PORT": "8110",
            "CTR_HEALTH_PATH": "/api/v1/health",
            "CTR_KEEP_RUNNING": "1",
            "CTR_STOP_TIMEOUT": str(STOP_TIMEOUT),
            "CTR_RUN_ARGS": f"-p 127.0.0.1:{pop3}:1110 -p 127.0.0.1:{pop3s}:1995"
            " -e FAKEPOP_TLS_NAME=pop.fakepop.test",
        },
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "HEALTHCHECK: healthy" in result.stderr
    print(f"built and healthy in {time.monotonic() - started:.1f} s")
    try:
        yield pop3, pop3s, control
    finally:
        stopping = time.monotonic()
        stopped = script("stop", NAME, env={"CTR_STOP_TIMEOUT": str(STOP_TIMEOUT)})
        took = time.monotonic() - stopping
        assert stopped.returncode == 0, stopped.stderr
        print(f"stopped and removed in {took:.1f} s")
        assert took < STOP_TIMEOUT, "SIGTERM was not handled: podman had to kill it"


def test_the_container_serves_mail_over_tls_with_the_ca_from_the_api(
    service: tuple[int, int, int],
) -> None:
    _, pop3s, control = service
    client = ControlClient(f"http://127.0.0.1:{control}")
    assert client.health()["status"] == "ok"
    context = ssl.create_default_context(cadata=client.ca_pem().decode("ascii"))
    with contextlib.closing(
        poplib.POP3_SSL("localhost", pop3s, context=context, timeout=10)
    ) as tls:
        tls.user("user")
        tls.pass_("password")
        assert tls.stat() == (len(DEMO), sum(map(len, DEMO)))
        _, lines, _ = tls.retr(1)
        assert b"".join(line + b"\r\n" for line in lines) == DEMO[0]
        assert isinstance(tls.sock, ssl.SSLSocket)
        names = dict(tls.sock.getpeercert() or {}).get("subjectAltName", ())
        assert ("DNS", "pop.fakepop.test") in names  # FAKEPOP_TLS_NAME
        assert ("IP Address", "127.0.0.1") in names
        tls.quit()


def test_mail_added_through_the_api_is_fetched_over_stls(service: tuple[int, int, int]) -> None:
    pop3, _, control = service
    client = ControlClient(f"http://127.0.0.1:{control}")
    client.add_account("ci", "s3cret")
    uid = client.add_message("ci", b"Subject: from the test\r\n\r\nHello from CI\r\n")
    with contextlib.closing(poplib.POP3("127.0.0.1", pop3, timeout=10)) as plain:
        plain.stls(client.ssl_context())
        plain.user("ci")
        plain.pass_("s3cret")
        assert plain.uidl(1) == f"+OK 1 {uid}".encode()
        plain.quit()
    client.reset()
    assert [a["name"] for a in client.accounts()] == ["user"]
