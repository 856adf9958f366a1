"""What the interop tests share: the corpus, a server holding it with TLS ready, and one line
in the skip summary per missing client.

A test file that wants other mail defines its own ``messages``; this ``server`` serves it.
"""

from __future__ import annotations

import pytest
from clients import PASSWORD, USER
from corpus import corpus
from pop3 import ServerFactory
from required import pytest_runtest_makereport  # noqa: F401  # the hook, for this folder

from fakepop import POP3Server


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return corpus()


@pytest.fixture
def server(pop3_server_factory: ServerFactory, messages: list[bytes]) -> POP3Server:
    """alice's maildrop holding ``messages``; STLS on ``port``, implicit TLS on ``tls_port``."""
    return pop3_server_factory(users={USER: PASSWORD}, tls=True, messages=messages)
