"""Waiting in tests without sleeping blind: for a condition, or for a call that must not hang."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

TIMEOUT = 5.0  # seconds: far more than anything waited for should take


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Return once ``condition()`` holds; fail saying ``what`` did not happen in ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def raised_within(seconds: float, call: Callable[[], object]) -> BaseException:
    """What ``call`` raises, which must come within ``seconds``: a hang fails the test."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:  # handed to the test thread
            raised.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "it hangs"
    assert raised, "nothing was raised"
    return raised[0]
