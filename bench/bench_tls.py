"""What TLS costs: making a CA, issuing a leaf, starting a TLS server.

    python bench/bench_tls.py [--runs N]

Prints medians. Goal (not asserted anywhere): a TLS server starts and stops in at most 3 ms once
the process has its CA.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import trustme

from fakepop import POP3Server
from fakepop.tls import Authority, ServerCertificate


def timed(action: Callable[[], object], runs: int) -> float:
    """Median seconds of ``action`` over ``runs`` calls."""
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        action()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="repetitions of each measure (20)")
    args = parser.parse_args(argv)
    runs = args.runs

    def rows() -> list[tuple[str, float]]:
        authority = Authority()
        names = iter(range(10**9))  # a new name each time defeats the leaf cache

        def fresh_leaf() -> ServerCertificate:
            return Authority(authority.ca).certificate((f"host{next(names)}.test",))

        authority.certificate()  # the default leaf, cached from here on

        def start_stop() -> None:
            POP3Server(tls=True, authority=authority).start().stop()

        def start_stop_new_leaf() -> None:
            fresh = Authority(authority.ca)
            POP3Server(tls=True, authority=fresh).start().stop()

        return [
            ("CA, ECDSA", timed(lambda: trustme.CA(), runs)),
            ("CA, RSA 2048", timed(lambda: trustme.CA(key_type=trustme.KeyType.RSA), 3)),
            ("leaf, ECDSA", timed(fresh_leaf, runs)),
            ("TLS server start+stop, new leaf", timed(start_stop_new_leaf, runs)),
            ("TLS server start+stop, cached leaf", timed(start_stop, runs * 10)),
            ("plain server start+stop", timed(lambda: POP3Server().start().stop(), runs * 10)),
        ]

    for label, seconds in rows():
        print(f"{label:<40} median {seconds * 1000:8.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
