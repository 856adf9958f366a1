"""What the interop tests share: the corpus, a server holding it with TLS ready, and one line
in the skip summary per missing client.

A test file that wants other mail defines its own ``messages``; this ``server`` serves it.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest
import required
from clients import PASSWORD, USER
from corpus import corpus
from pop3 import ServerFactory

from fakepop import POP3Server


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return corpus()


@pytest.fixture
def server(pop3_server_factory: ServerFactory, messages: list[bytes]) -> POP3Server:
    """alice's maildrop holding ``messages``; STLS on ``port``, implicit TLS on ``tls_port``."""
    return pop3_server_factory(users={USER: PASSWORD}, tls=True, messages=messages)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report a skip for a missing client where it is raised, in tests/required.py, not at the
    test: pytest folds skips by place and reason, so the summary has one line per client."""
    report = yield
    if call.excinfo is not None and isinstance(call.excinfo.value, required.Unavailable):
        raised = call.excinfo.traceback[-1]
        report.longrepr = (str(raised.path), raised.lineno + 1, str(call.excinfo.value.msg))
    return report
