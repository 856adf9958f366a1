"""Start-up cost and session rate of the in-process server.

    python bench/bench_server.py [--runs N] [--sessions N]

Prints medians over several runs. Goals (not asserted anywhere): start+stop at most 1 ms.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time

from fakepop import POP3Server

SESSION = b"USER user\r\nPASS password\r\nSTAT\r\nQUIT\r\n"


def start_stop(runs: int) -> list[float]:
    """Seconds for one start() and stop() of a plain server, per run."""
    times = []
    for _ in range(runs):
        server = POP3Server(users={"user": "password"})
        begin = time.perf_counter()
        server.start()
        server.stop()
        times.append(time.perf_counter() - begin)
    return times


def one_session(host: str, port: int) -> None:
    """Connect, log in, STAT, QUIT: the replies are read until the server closes."""
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        received = b""
        sent = False
        while True:
            data = sock.recv(4096)
            if not data:
                break
            received += data
            if not sent:  # the greeting came: send the whole session, pipelined
                sock.sendall(SESSION)
                sent = True
        if received.count(b"+OK") != 5:
            raise RuntimeError(f"unexpected replies: {received!r}")


def sessions_per_second(server: POP3Server, sessions: int, clients: int) -> float:
    per_client = sessions // clients

    def run() -> None:
        for _ in range(per_client):
            one_session(server.host, server.port)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    begin = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return per_client * clients / (time.perf_counter() - begin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each measure (5)")
    parser.add_argument("--sessions", type=int, default=2000, help="sessions per run (2000)")
    args = parser.parse_args(argv)

    times = start_stop(200 * args.runs)
    median_ms = statistics.median(times) * 1000
    print(f"start+stop (plain)          median {median_ms:.3f} ms   (goal <= 1 ms)")

    with POP3Server(users={"user": "password"}) as server:
        server.mailbox("user").add(b"Subject: x\r\n\r\nx\r\n")
        for clients in (1, 8):
            rates = [sessions_per_second(server, args.sessions, clients) for _ in range(args.runs)]
            label = f"sessions/s, {clients} client{'s' if clients > 1 else ''}"
            print(f"{label:<28}median {statistics.median(rates):,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
