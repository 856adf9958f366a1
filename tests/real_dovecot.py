"""A real Dovecot 2.3 to compare fakepop with: bench/dovecot.py's server, configured for tests.

bench/dovecot.py writes a throwaway configuration and runs Dovecot from it on loopback; it
is imported from bench/ (with bench/servers.py, which it imports by name), so the
benchmark and the tests run one Dovecot set-up. Run as root, Dovecot's services run as its
own users (dovecot, dovenull) and mail is read as nobody, so everything it reads lives in
a directory of its own that they may enter, not in pytest's private tmp_path.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from required import missing

from fakepop.tls import Authority

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # after tests/: bench's modules shadow none of the tests'

from dovecot import Dovecot, DovecotUnavailable, locate  # noqa: E402

PASSWORD = "secret"


class ComparedDovecot(Dovecot):
    """bench/dovecot.py's Dovecot, told to behave as fakepop's settings can follow.

    ``auth_failure_delay = 0``: a refused login is answered at once (fakepop's
    ``auth_failure_delay`` is 0 too). ``pop3_lock_session = yes``: one session at a time
    per maildrop, so a second login waits for the lock and gets [IN-USE], as fakepop's
    (Dovecot's default lets sessions share a maildrop).
    """

    def configuration(self) -> str:
        return (
            super().configuration()
            + "auth_failure_delay = 0\nprotocol pop3 {\n  pop3_lock_session = yes\n}\n"
        )


def write_maildir(root: Path, messages: Sequence[bytes]) -> None:
    """A Maildir holding ``messages`` in this order, as Dovecot lists them (by file name)."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for number, message in enumerate(messages, 1):
        (root / "cur" / f"{1000 + number}.M{number}P1.fakepop:2,").write_bytes(message)


@contextmanager
def running_dovecot(maildrops: Mapping[str, Sequence[bytes]]) -> Iterator[ComparedDovecot]:
    """Dovecot serving each account of ``maildrops`` (password ``PASSWORD``) on loopback.

    Skipped, or failed under FAKEPOP_REQUIRE_CLIENTS=1, when Dovecot 2.3 is not installed.
    """
    try:
        binary, _ = locate()
    except DovecotUnavailable as e:
        missing("Dovecot", "Dovecot 2.3 is not installed", str(e))
    root = Path(tempfile.mkdtemp(prefix="fakepop-dovecot-"))
    try:
        root.chmod(0o755)  # Dovecot's service users read the configuration and passwd-file
        mail = root / "mail"
        for account, messages in maildrops.items():
            write_maildir(mail / account, messages)
        certificate = Authority().certificate(("localhost",), "ecdsa")
        chain, key = root / "chain.pem", root / "key.pem"
        chain.write_bytes(certificate.chain_pem)
        key.write_bytes(certificate.key_pem)
        key.chmod(0o600)
        server = ComparedDovecot(
            binary,
            root / "dovecot",
            mail,
            dict.fromkeys(maildrops, PASSWORD),
            (chain, key),
            login_processes=1,
        )
        server.identity.own(mail)
        with server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)
