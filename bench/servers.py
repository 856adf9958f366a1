"""The servers a benchmark measures, each in a process of its own.

    python bench/servers.py fakepop SPEC.json   # a POP3Server on the spec's mail
    python bench/servers.py sender SPEC.json    # a trivial sender: the loopback limit

Each prints one JSON line with its ports, serves until its standard input closes, then
stops and exits. A fakepop process also takes "renew ACCOUNT" lines: it changes that
maildrop so that its next session works from a new snapshot, and answers "renewed".
Running the server apart from the client keeps the two from competing for one GIL.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
PR_SET_PDEATHSIG = 1


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A preexec_fn that has the child killed when the benchmark dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


DIE_WITH_PARENT = _die_with_parent_hook()


def process_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM (KiB) and Threads of a process, from /proc."""
    wanted = {"VmRSS", "VmHWM", "Threads"}
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in wanted:
            fields[name] = int(value.split()[0])
    return fields


class ServerProcess:
    """A server started with ``python bench/servers.py KIND SPEC``; stopped by closing stdin."""

    def __init__(
        self, kind: str, spec: dict[str, Any], spec_path: Path, wrap: Sequence[str] = ()
    ) -> None:
        spec_path.write_text(json.dumps(spec))
        self.kind = kind
        self.process = subprocess.Popen(
            [*wrap, sys.executable, str(HERE / "servers.py"), kind, str(spec_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the benchmark only; it stops us in order
            preexec_fn=DIE_WITH_PARENT,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            raise RuntimeError(f"the {kind} server did not start (exit {self.process.returncode})")
        self.ports: dict[str, int] = json.loads(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def status(self) -> dict[str, int]:
        return process_status(self.pid)

    def renew(self, account: str) -> None:
        """Have the next session of ``account`` find its maildrop changed (see serve_fakepop)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"renew {account}\n")
        self.process.stdin.flush()
        if self.process.stdout.readline() != "renewed\n":
            raise RuntimeError(f"the {self.kind} server did not renew {account}")

    def stop(self) -> int:
        """Close stdin, wait for the server to stop; kill it if it takes too long."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


# --- in the server process ------------------------------------------------------------------


def _announce(ports: dict[str, int], out: TextIO) -> None:
    out.write(json.dumps(ports) + "\n")
    out.flush()


def serve_fakepop(spec: dict[str, Any]) -> int:
    """A POP3Server: in-memory maildrops loaded from Maildirs, or the Maildirs themselves."""
    from fakepop import POP3Server  # here: the sender and the parent need not import it
    from fakepop.mail.maildir import maildir_uid

    root = Path(spec["root"])
    certificate = (spec["certificate"][0], spec["certificate"][1]) if spec["certificate"] else None
    tls = certificate is not None
    if spec["store"] == "maildir":
        server = POP3Server(maildir=root, tls=tls, certificate=certificate)
        for name, password in spec["accounts"].items():
            server.users[name] = password
            len(server.mailbox(name))  # the first scan reads every size once
    else:
        server = POP3Server(tls=tls, certificate=certificate)
        for name, password in spec["accounts"].items():
            server.users[name] = password
            mailbox = server.mailbox(name)
            with os.scandir(root / name / "cur") as entries:
                names = sorted(e.name for e in entries if not e.name.startswith("."))
            for file in names:
                mailbox.add((root / name / "cur" / file).read_bytes(), uid=maildir_uid(file))
    server.start()
    ports = {"port": server.port}
    if server.tls_port is not None:
        ports["tls_port"] = server.tls_port
    _announce(ports, sys.stdout)
    for line in sys.stdin:
        _renew(server, line.split()[1], maildir=spec["store"] == "maildir")
        print("renewed", flush=True)
    server.stop()  # re-raises what went wrong in the server's threads
    return 0


def _renew(server: Any, account: str, maildir: bool) -> None:
    """Change the maildrop without changing what a client sees, so that the next session
    takes a new snapshot, with sizes summed and listings formatted again (cold).

    The last message is taken out and put back: in memory, as a new message object; in a
    Maildir, by moving its file between cur/ and new/.
    """
    mailbox = server.mailbox(account)
    last = mailbox.messages[-1]
    if maildir:
        path = Path(last.path)
        other = "new" if path.parent.name == "cur" else "cur"
        os.rename(path, path.parent.parent / other / path.name)
    else:
        mailbox.remove(last.uid)
        mailbox.add(last.read(), uid=last.uid)


def serve_sender(spec: dict[str, Any]) -> int:
    """A trivial sender: for every line it receives, send one canned reply as fast as it can.

    One listener per reply (and per transport); no parsing, no state: what the client
    measures against it is the loopback link and the client itself.
    """
    context: ssl.SSLContext | None = None
    if spec.get("certificate"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*spec["certificate"])
    listeners: list[tuple[socket.socket, bytes, bool]] = []
    ports: dict[str, int] = {}
    for name, path in spec["replies"].items():
        reply = Path(path).read_bytes()
        for tls in (False, True) if context else (False,):
            sock = socket.create_server(("127.0.0.1", 0))
            listeners.append((sock, reply, tls))
            ports[f"{name}-tls" if tls else name] = sock.getsockname()[1]

    def answer(conn: socket.socket, reply: bytes, tls: bool) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls:
                assert context is not None
                conn = context.wrap_socket(conn, server_side=True)
            while data := conn.recv(65536):
                for _ in range(data.count(b"\n")):
                    conn.sendall(reply)
        except OSError:
            pass
        finally:
            conn.close()

    def accept(sock: socket.socket, reply: bytes, tls: bool) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn, reply, tls), daemon=True).start()

    for sock, reply, tls in listeners:
        threading.Thread(target=accept, args=(sock, reply, tls), daemon=True).start()
    _announce(ports, sys.stdout)
    sys.stdin.read()
    for sock, _, _ in listeners:
        sock.close()
    return 0


def main(argv: list[str]) -> int:
    kind, spec_path = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark decides when we stop
    spec = json.loads(Path(spec_path).read_text())
    if kind == "fakepop":
        return serve_fakepop(spec)
    if kind == "sender":
        return serve_sender(spec)
    raise SystemExit(f"unknown server kind {kind!r}")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
