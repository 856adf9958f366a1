"""Coverage-guided fuzzing with atheris (libFuzzer): the protocol core, the wire form, the stores.

    python bench/fuzz_atheris.py core --runs 1000000
    python bench/fuzz_atheris.py wire --minutes 10
    python bench/fuzz_atheris.py stores --runs 200000 --work /tmp/stores

The targets and their input formats are in tests/fuzz/targets.py: ``core`` (bytes in,
session events out, in every state, with STLS, SASL, pipelining and partial lines),
``wire`` (CRLF normalisation and byte-stuffing, whole and streamed in any chunks) and
``stores`` (the Maildir store and the memory store answer the same sessions byte for byte).
A run starts from the kept corpus, tests/fuzz/corpus/TARGET/, with the dictionary
tests/fuzz/pop3.dict. It writes the inputs that reach new code to WORK/new/ (WORK is --work,
by default a temporary directory, left for you to copy the worth-keeping into the corpus)
and a failing input to WORK/crash-*, prints the traceback and exits 1: a run stops at its
first finding. Replay one
with ``python bench/fuzz_atheris.py TARGET path/to/crash-...``. libFuzzer's -merge and
-fork do not work here: they re-run the program as an executable, which a script is not.
libFuzzer's status lines show the executions per second; its own flags go after ``--``.
Needs ``pip install -e '.[fuzz]'``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
sys.path[:0] = [str(ROOT), str(TESTS)]  # this checkout's fakepop, whatever is installed
DICTIONARY = TESTS / "fuzz" / "pop3.dict"
INPUT_TIMEOUT = 10  # seconds: an input that takes longer is a hang, and a finding


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["core", "wire", "stores"])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--runs", type=int, help="stop after this many executions")
    budget.add_argument("--minutes", type=float, help="stop after this long (default: 10)")
    parser.add_argument("--work", type=Path, help="where new inputs and crashes go (temporary)")
    parser.add_argument("--seed", type=int, default=0, help="libFuzzer's seed (0: random)")
    parser.add_argument("inputs", nargs="*", type=Path, help="replay these inputs, then stop")
    args, libfuzzer = parser.parse_known_args(argv)
    libfuzzer = [flag for flag in libfuzzer if flag != "--"]

    corpus = TESTS / "fuzz" / "corpus" / args.target
    work = args.work or Path(tempfile.mkdtemp(prefix=f"fakepop-fuzz-{args.target}-"))
    work.mkdir(parents=True, exist_ok=True)
    flags = [f"-artifact_prefix={work}/", f"-timeout={INPUT_TIMEOUT}", "-print_final_stats=1"]
    if args.target != "wire":
        flags.append(f"-dict={DICTIONARY}")
    if args.seed:
        flags.append(f"-seed={args.seed}")
    if args.inputs:
        places = [str(path) for path in args.inputs]
    else:
        if args.runs is not None:
            flags.append(f"-runs={args.runs}")
        else:
            minutes = 10.0 if args.minutes is None else args.minutes
            flags.append(f"-max_total_time={max(1, round(minutes * 60))}")
        places = [str(work / "new"), str(corpus)]  # libFuzzer writes to the first
        (work / "new").mkdir(exist_ok=True)

    if args.target == "stores" and Path("/dev/shm").is_dir():
        tempfile.tempdir = "/dev/shm"  # the Maildirs: fsync is free in memory, and disk is slow
    # Only fakepop is instrumented: coverage of the harness and of Hypothesis would be noise.
    with atheris.instrument_imports(include=["fakepop"]):
        from fuzz import targets

    target: Callable[[bytes], None] = getattr(targets, args.target)
    print(f"fuzz_atheris: {args.target}: new inputs and crashes go to {work}", flush=True)
    atheris.Setup([sys.argv[0], *flags, *libfuzzer, *places], target)
    atheris.Fuzz()  # exits the process when done


if __name__ == "__main__":
    main()
