"""What the interop tests share: the corpus, and a server holding it with TLS ready.

A test file that wants other mail defines its own ``messages``; this ``server`` serves it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clients import PASSWORD, USER
from corpus import corpus

from fakepop import POP3Server


@pytest.fixture(scope="module")
def messages() -> list[bytes]:
    return corpus()


@pytest.fixture
def server(messages: list[bytes]) -> Iterator[POP3Server]:
    """alice's maildrop holding ``messages``; STLS on ``port``, implicit TLS on ``tls_port``."""
    with POP3Server(users={USER: PASSWORD}, tls=True) as server:
        server.mailbox(USER).extend(messages)
        yield server
