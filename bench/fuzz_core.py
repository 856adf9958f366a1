"""Fuzz the protocol core for a long time: the target of tests/protocol/test_fuzz.py, unbounded.

    python bench/fuzz_core.py --minutes 30
    python bench/fuzz_core.py --examples 200000 --seed 7

Hypothesis generates scenarios (random settings, a maildrop, a stream of commands, junk and
overlong lines cut at random byte boundaries, STLS handshakes, timeouts and drops) in batches,
each with its own seed, steering towards scenarios that draw out more kinds of reply. A failing
scenario is shrunk to a minimal one and printed; the run goes on looking for others. It prints
how many inputs it tried, how many kinds of status line it drew out, and what it found, and
exits 1 if it found anything.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings, target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from protocol.test_fuzz import Scenario, check_scenario, scenarios

BATCH = 2000  # inputs a batch: a batch is one Hypothesis run, with its own seed


@dataclass
class Finding:
    where: str  # the exception and the line that raised it: one finding however often met
    report: str  # the traceback with Hypothesis's minimal falsifying example
    batch_seed: int


@dataclass
class Tally:
    inputs: int = 0
    replies: set[bytes] = field(default_factory=set)
    findings: dict[str, Finding] = field(default_factory=dict)


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    last = frames[-1] if frames else None
    place = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
    return f"{type(error).__name__}{place}"


def run_batch(batch_seed: int, examples: int, tally: Tally) -> None:
    """One Hypothesis run of ``examples`` inputs; a failure is shrunk and kept in ``tally``."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=(Phase.generate, Phase.target, Phase.shrink),
        report_multiple_bugs=False,
        print_blob=True,
    )
    @seed(batch_seed)
    @given(scenarios)
    def batch(scenario: Scenario) -> None:
        tally.inputs += 1
        seen: set[bytes] = set()
        check_scenario(scenario, seen)
        tally.replies |= seen
        target(float(len(seen)), label="kinds of reply")

    try:
        batch()
    except Exception as error:
        where = _where(error)
        if where not in tally.findings:
            report = "".join(traceback.format_exception(error))
            tally.findings[where] = Finding(where, report, batch_seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="run this long (default: 10)")
    budget.add_argument("--examples", type=int, help="run this many inputs, however long")
    parser.add_argument("--seed", type=int, default=0, help="the first batch's seed (0)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"inputs a batch ({BATCH})")
    parser.add_argument("--out", type=Path, help="also write the findings to this file")
    args = parser.parse_args(argv)
    minutes = 10.0 if args.minutes is None and args.examples is None else args.minutes
    deadline = None if minutes is None else time.monotonic() + minutes * 60

    tally = Tally()
    start = time.monotonic()
    batch_seed = args.seed
    try:
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                break
            size = args.batch
            if args.examples is not None:
                size = min(size, args.examples - tally.inputs)
                if size <= 0:
                    break
            run_batch(batch_seed, size, tally)
            batch_seed += 1
            elapsed = time.monotonic() - start
            print(
                f"[{elapsed:7.0f} s] {tally.inputs} inputs ({tally.inputs / elapsed:.0f}/s),"
                f" {len(tally.replies)} kinds of reply, {len(tally.findings)} findings",
                flush=True,
            )
    except KeyboardInterrupt:
        print("interrupted", flush=True)

    elapsed = time.monotonic() - start
    rate = tally.inputs / max(elapsed, 1e-9)
    lines = [
        f"fuzz_core: {tally.inputs} inputs in {elapsed:.0f} s ({rate:.0f}/s),"
        f" seeds {args.seed}..{batch_seed - 1}, {len(tally.replies)} kinds of reply",
        f"findings: {len(tally.findings) or 'none'}",
    ]
    for finding in tally.findings.values():
        lines += [f"--- {finding.where} (batch seed {finding.batch_seed})", finding.report]
    text = "\n".join(lines)
    print(text, flush=True)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
