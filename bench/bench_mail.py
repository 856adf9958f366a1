"""Mail on disk and made up: Maildir load time, generation rate, memory serving a large Maildir.

    python bench/bench_mail.py [--runs N] [--maildir-mb MB]

Prints medians. The server for the memory figure runs in its own process, so the
figure is its resident size alone, read from /proc while a client retrieves
every message.
"""

from __future__ import annotations

import argparse
import poplib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fakepop import MaildirMailbox, generate_messages, load_maildir

SERVER = """
import sys
from fakepop import POP3Server
server = POP3Server(maildir=sys.argv[1])
server.users["bench"] = "bench"
server.start()
print(server.port, flush=True)
sys.stdin.read()
server.stop()
"""


def timed(action: object, runs: int) -> float:
    assert callable(action)
    times = []
    for _ in range(runs):
        begin = time.perf_counter()
        action()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def fill(maildir: Path, megabytes: int) -> tuple[int, int]:
    """Deliver copies of 50 large generated messages until the Maildir holds ``megabytes``."""
    samples = generate_messages(50, seed=1, size=(200_000, 2_000_000))
    box = MaildirMailbox(maildir)
    count = octets = 0
    while octets < megabytes * 1024 * 1024:
        raw = samples[count % len(samples)]
        box.add(raw)
        count += 1
        octets += len(raw)
    return count, octets


def serve_and_retrieve(root: Path) -> tuple[int, int, float]:
    """Start a server on the Maildir, RETR everything; return (VmRSS, VmHWM, seconds)."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdin is not None
    port = int(process.stdout.readline())
    begin = time.perf_counter()
    client = poplib.POP3("127.0.0.1", port, timeout=60)
    client.user("bench")
    client.pass_("bench")
    count, _ = client.stat()
    for number in range(1, count + 1):
        client.retr(number)
    elapsed = time.perf_counter() - begin
    rss, peak = memory_kib(process.pid, "VmRSS"), memory_kib(process.pid, "VmHWM")
    client.quit()
    process.stdin.close()
    process.wait(timeout=30)
    return rss, peak, elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of the timings (5)")
    parser.add_argument(
        "--maildir-mb", type=int, default=512, help="size of the large Maildir in MiB (512)"
    )
    args = parser.parse_args(argv)

    generate_messages(10)  # Faker's first instances cost ~0.2 s once a process
    seconds = timed(lambda: generate_messages(1000, seed=2), args.runs)
    print(
        f"generate 1,000 messages (default sizes)  median {seconds:.3f} s"
        f"  = {1000 / seconds:,.0f} messages/s"
    )

    with tempfile.TemporaryDirectory(prefix="fakepop-bench-") as tmp:
        small = Path(tmp) / "small"
        MaildirMailbox(small).extend(generate_messages(10_000, seed=3, size=(500, 5_000)))
        seconds = timed(lambda: load_maildir(small), args.runs)
        print(f"load_maildir, 10,000 messages           median {seconds:.3f} s")
        seconds = timed(lambda: MaildirMailbox(small).messages, args.runs)
        print(f"MaildirMailbox scan, 10,000 messages    median {seconds:.3f} s (first, sizes read)")
        box = MaildirMailbox(small)
        assert len(box.messages) == 10_000  # reads every size once
        seconds = timed(lambda: box.messages, args.runs)
        print(
            f"MaildirMailbox scan, 10,000 messages    median {seconds:.3f} s (again, sizes cached)"
        )
        shutil.rmtree(small)

        root = Path(tmp) / "root"
        count, octets = fill(root / "bench", args.maildir_mb)
        rss, peak, elapsed = serve_and_retrieve(root)
        print(
            f"serve a {octets / 2**20:,.0f} MiB Maildir ({count:,} messages), RETR all:"
            f" resident {rss / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB,"
            f" {octets / 2**20 / elapsed:,.0f} MiB/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
