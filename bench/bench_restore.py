"""Putting a shared server back between tests, against making it afresh for each test.

    python bench/bench_restore.py [--messages N] [--runs N]

What ``pop3_server_fixture`` does after each test: ``POP3Server.restore()`` after a
session that retrieved and deleted 10 of N generated messages, with the maildrop in
memory and in a Maildir; beside it, what a function-scoped server costs instead:
generating the N messages and starting a server with them. Prints medians.
"""

from __future__ import annotations

import argparse
import poplib
import statistics
import tempfile
import time
from collections.abc import Callable

from fakepop import POP3Server, generate_messages


def consume(server: POP3Server) -> None:
    """What a test does: retrieve and delete ten messages, QUIT."""
    client = poplib.POP3(server.host, server.port, timeout=30)
    client.user("user")
    client.pass_("password")
    for n in range(1, 11):
        client.retr(n)
        client.dele(n)
    client.quit()


def median_restore(server: POP3Server, runs: int) -> float:
    times = []
    for _ in range(runs):
        consume(server)
        begin = time.perf_counter()
        server.restore()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def median(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        action()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def fresh(count: int) -> None:
    with POP3Server({"user": "password"}) as server:
        server.mailbox("user").extend(generate_messages(count, seed=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    count, runs = args.messages, args.runs
    messages = generate_messages(count, seed=1)

    with POP3Server({"user": "password"}) as server:
        server.mailbox("user").extend(messages)
        server.checkpoint()
        memory = median_restore(server, runs)
    with (
        tempfile.TemporaryDirectory() as root,
        POP3Server({"user": "password"}, maildir=root) as server,
    ):
        server.mailbox("user").extend(messages)
        server.checkpoint()
        maildir = median_restore(server, max(1, runs // 3))
    made = median(lambda: fresh(count), max(1, runs // 3))

    print(f"{count} messages, medians")
    print(f"restore(), in memory:            {memory * 1000:9.2f} ms")
    print(f"restore(), Maildir:              {maildir * 1000:9.2f} ms")
    print(f"a new server, mail generated:    {made * 1000:9.2f} ms")


if __name__ == "__main__":
    main()
