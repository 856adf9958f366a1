"""The one switch for what the tests need beyond the test extra: the real POP3 clients of
tests/interop and the fuzzer of tests/fuzz.

Without one, its tests are skipped, saying what to install, so a contributor's first run is
green; with ``FAKEPOP_REQUIRE_CLIENTS=1`` (which ``.ci/run`` sets) they fail instead, so CI
runs everything and a missing install step fails it.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import NoReturn

import pytest
from _pytest.outcomes import Skipped  # pytest.skip.Exception, which mypy cannot subclass

REQUIRE = "FAKEPOP_REQUIRE_CLIENTS"


class Unavailable(Skipped):
    """A skip for want of a tool, reported by ``pytest_runtest_makereport``."""


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
    raise Unavailable(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report a skip for a missing tool where it is raised, here, and by its reason alone:
    pytest folds skips by place and reason, so the summary has one line per tool, not one per
    test. The conftest.py of each folder that uses ``unavailable`` imports this hook."""
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, Unavailable):
        raised = call.excinfo.traceback[-1]
        report.longrepr = (str(raised.path), raised.lineno + 1, str(call.excinfo.value.msg))
    return report
