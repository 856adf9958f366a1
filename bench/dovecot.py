"""A Dovecot 2.3 POP3 server run for a benchmark, on loopback, from a configuration written here.

Everything it uses lives in one directory: the configuration, base_dir and state_dir, the
log, a passwd-file and the Maildirs. Run as root, Dovecot's own service users (dovecot,
dovenull, made by the Debian package) run its services and mail is read as ``nobody``,
since Dovecot refuses mail access as root; run as another user, everything runs as that
user. Stopping it ends the master and, after it, anything left in its process group.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from servers import DIE_WITH_PARENT

INSTALL = "apt-get update && apt-get install -y dovecot-pop3d"
LOGIN_ERRORS = re.compile(r": (Error|Fatal|Panic):")


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed, or not a version this configuration is written for."""


def locate(binary: str | None = None) -> tuple[str, str]:
    """The Dovecot binary and its version; DovecotUnavailable, saying how to install, if none."""
    if binary is not None and not os.access(binary, os.X_OK):
        raise DovecotUnavailable(f"{binary} is not an executable file")
    path = binary or shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/sbin")
    if path is None:
        raise DovecotUnavailable(
            f"Dovecot is not installed. On Debian or Ubuntu, as root: {INSTALL}"
            " (or pass --no-dovecot to measure fakepop alone)"
        )
    result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    version = result.stdout.strip() or result.stderr.strip()
    if not version.startswith("2.3."):
        raise DovecotUnavailable(
            f"{path} is Dovecot {version!r}; this benchmark writes a Dovecot 2.3 configuration"
            f" (Debian 12's dovecot-pop3d: {INSTALL})"
        )
    return path, version


@dataclass(frozen=True)
class Identity:
    """Who Dovecot's services run as and whom the mail belongs to."""

    mail_uid: int
    mail_gid: int
    rootless: bool
    user: str = ""  # the running user, when rootless
    group: str = ""

    @classmethod
    def current(cls) -> Identity:
        if os.geteuid() == 0:
            for service_user in ("dovecot", "dovenull"):
                try:
                    pwd.getpwnam(service_user)
                except KeyError:
                    raise DovecotUnavailable(
                        f"there is no {service_user!r} user for Dovecot's services;"
                        f" the Debian package makes it: {INSTALL}"
                    ) from None
            nobody = pwd.getpwnam("nobody")
            return cls(nobody.pw_uid, nobody.pw_gid, rootless=False)
        me = pwd.getpwuid(os.geteuid())
        return cls(
            me.pw_uid,
            os.getegid(),
            rootless=True,
            user=me.pw_name,
            group=grp.getgrgid(os.getegid()).gr_name,
        )

    def own(self, root: Path) -> None:
        """Give the mail user everything under ``root``, which Dovecot reads and writes."""
        if self.rootless:
            return
        os.chown(root, self.mail_uid, self.mail_gid)
        for directory, subdirectories, files in os.walk(root):
            for name in (*subdirectories, *files):
                os.lchown(os.path.join(directory, name), self.mail_uid, self.mail_gid)


def _group_alive(group: int, timeout: float) -> bool:
    """Whether any process of ``group`` is still there after waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Dovecot:
    """Dovecot serving POP3 on 127.0.0.1, plain and implicit TLS, in the high-performance
    login mode: login processes that each serve many connections (``service_count = 0``),
    one per core kept ready (``process_min_avail``).

    Args:
        binary: the dovecot executable.
        directory: where the configuration, runtime state, log and passwd-file go.
        mail: the directory of Maildirs, one per account, ``mail/<name>``.
        accounts: names and passwords.
        certificate: the PEM files (chain, key) for TLS.
        login_processes: how many pop3-login processes to keep ready.
    """

    def __init__(
        self,
        binary: str,
        directory: Path,
        mail: Path,
        accounts: Mapping[str, str],
        certificate: tuple[Path, Path],
        login_processes: int,
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.mail = mail
        self.accounts = dict(accounts)
        self.certificate = certificate
        self.login_processes = login_processes
        self.identity = Identity.current()
        self.port = 0
        self.tls_port = 0
        self.log = directory / "dovecot.log"
        self.config = directory / "dovecot.conf"
        self._process: subprocess.Popen[bytes] | None = None

    def configuration(self) -> str:
        d, ident = self.directory, self.identity
        chain, key = self.certificate
        rootless = ""
        login_chroot = ""
        if ident.rootless:
            rootless = (
                f"default_internal_user = {ident.user}\n"
                f"default_internal_group = {ident.group}\n"
                f"default_login_user = {ident.user}\n"
                "service anvil {\n  chroot =\n}\n"
            )
            login_chroot = "  chroot =\n"
        return f"""\
# For one benchmark run: everything lives under {d}.
base_dir = {d}/run
state_dir = {d}/state
instance_name = fakepop-bench-{os.getpid()}
protocols = pop3
listen = 127.0.0.1
log_path = {self.log}
ssl = yes
ssl_cert = <{chain}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{self.mail}/%u
first_valid_uid = {min(500, ident.mail_uid) or 1}
{rootless}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={ident.mail_uid} gid={ident.mail_gid} home={d}/home/%u
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = {self.login_processes}
{login_chroot}}}
"""

    def start(self, timeout: float = 30.0) -> Dovecot:
        d = self.directory
        for sub in ("run", "state", "home"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        for name in self.accounts:
            (d / "home" / name).mkdir(exist_ok=True)
        self.identity.own(d / "home")
        passwd = d / "passwd"
        passwd.write_text("".join(f"{n}:{{PLAIN}}{p}::::::\n" for n, p in self.accounts.items()))
        passwd.chmod(0o644)
        self.port, self.tls_port = free_port(), free_port()
        self.config.write_text(self.configuration())
        with (d / "dovecot.out").open("wb") as out:
            self._process = subprocess.Popen(
                [self.binary, "-F", "-c", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the benchmark, which stops Dovecot
                preexec_fn=DIE_WITH_PARENT,
            )
        deadline = time.monotonic() + timeout
        for port in (self.port, self.tls_port):
            while not self._listening(port):
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"Dovecot did not start:\n{self.log_tail()}")
                time.sleep(0.02)
        return self

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the master (it stops its children), then end whatever of its group is left."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not _group_alive(process.pid, 5.0):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # a child that outlived its master
        _group_alive(process.pid, 5.0)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def forget_index(self, account: str) -> None:
        """Delete the account's index and uidlist, so that its next session builds them anew."""
        for path in (self.mail / account).glob("dovecot*"):
            path.unlink()

    def log_tail(self, lines: int = 20) -> str:
        text = ""
        for path in (self.directory / "dovecot.out", self.log):
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def errors(self) -> list[str]:
        """The error lines Dovecot logged."""
        if not self.log.exists():
            return []
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if LOGIN_ERRORS.search(line)
        ]
