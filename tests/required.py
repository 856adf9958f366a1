"""The one switch for what the tests need beyond the test extra: the real POP3 clients of
tests/interop and the fuzzer of tests/fuzz.

Without one, its tests are skipped, saying what to install, so a contributor's first run is
green; with ``FAKEPOP_REQUIRE_CLIENTS=1`` (which ``.ci/run`` sets) they fail instead, so CI
runs everything and a missing install step fails it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator
from typing import NoReturn

import pytest

REQUIRE = "FAKEPOP_REQUIRE_CLIENTS"


def required() -> bool:
    """Whether a missing tool fails its tests rather than skipping them."""
    return os.environ.get(REQUIRE, "") not in ("", "0")


def unavailable(reason: str, detail: str = "") -> NoReturn:
    """Skip the test for ``reason``, or fail it when tools are required.

    Keep ``reason`` the same for every test of one tool, so ``-ra`` folds them into one line;
    ``detail`` (what a probe printed) goes into a failure only.
    """
    if required():
        message = f"{reason}; {REQUIRE}=1 requires it"
        pytest.fail(f"{message}\n{detail}" if detail else message, pytrace=False)
    pytest.skip(reason)


# The Debian packages each client needs, by the name its tests give it.
CLIENTS = {
    "curl": "curl",
    "fetchmail": "fetchmail",
    "openssl": "openssl",
    "mpop": "mpop",
    "getmail": "getmail6",
    "setpriv": "util-linux",  # getmail runs as nobody through it when the tests run as root
    "Perl's Net::POP3": "perl libio-socket-ssl-perl libauthen-sasl-perl libdigest-hmac-perl",
    "Ruby's Net::POP3": "ruby",
    "Jakarta Mail": "default-jdk-headless libjakarta-mail-java",
    "PHP's imap": "php-cli php-imap",
    "s-nail": "s-nail",
    "Emacs's pop3.el": "emacs-nox",
    "NeoMutt": "neomutt",
    "movemail": "mailutils",
    # Not a client: the real server tests/interop/test_dovecot_compare.py compares fakepop with.
    "Dovecot": "dovecot-pop3d",
}


def missing(client: str, what: str, detail: str = "") -> NoReturn:
    """Skip the test (fail it under FAKEPOP_REQUIRE_CLIENTS=1) because ``client`` cannot run.

    The reason depends on ``client`` and ``what`` alone, so ``-ra`` folds a client's skips into
    one line; ``detail``, what a probe printed, only goes into a failure.
    """
    unavailable(f"{client} cannot run: {what} (Debian: apt-get install {CLIENTS[client]})", detail)


def program(name: str, client: str | None = None) -> str:
    """Where ``name`` is; when it is missing, ``client`` (``name`` by default) is missing."""
    path = shutil.which(name)
    if path is None:
        missing(client or name, f"{name} is not on PATH")
    return path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report a skip by ``unavailable`` where a skip in a test's body is reported, at its line
    here, rather than at the test (as pytest does for a skip in a fixture): pytest folds skips
    by place and reason, so the summary has one line per tool, not one per test. The
    conftest.py of each folder whose fixtures call ``unavailable`` imports this hook."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(pytest.skip.Exception):
        here = [entry for entry in call.excinfo.traceback if str(entry.path) == __file__]
        if here:
            # As pytest words a skip in a test's body ("Skipped: ..."), so both fold together.
            report.longrepr = (__file__, here[-1].lineno + 1, call.excinfo.exconly(tryshort=True))
    return report
