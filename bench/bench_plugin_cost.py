"""What installing fakepop adds to a pytest run that never uses it.

    python bench/bench_plugin_cost.py [--runs N] [--keep DIR]

Makes virtual environments with pip (pytest alone; pytest and fakepop; pytest and
fakepop[generate]), then times ``pytest --collect-only -q`` on an empty test file in
each, in a fresh process every run, taking turns: every installed pytest plugin is loaded, fakepop's
and its dependencies' alike. Prints the medians and the differences. Goal (not asserted
anywhere): fakepop adds at most 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_venv(path: Path, requirements: list[str]) -> Path:
    """A virtual environment at path with requirements installed; its python."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         *requirements],
        check=True,
    )  # fmt: skip
    return python


def collect_time(python: Path, workdir: Path) -> float:
    """Seconds for ``pytest --collect-only -q`` on the empty test file in workdir."""
    command = [str(python), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    begin = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, check=False)
    seconds = time.perf_counter() - begin
    if done.returncode != 5:  # 5: no tests collected, as expected of an empty file
        raise RuntimeError(f"pytest failed in {python}:\n{done.stdout.decode()}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per environment (9)")
    parser.add_argument("--keep", type=Path, help="make the environments here and keep them")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fakepop-bench-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        envs = {
            "pytest alone": ["pytest"],
            "pytest + fakepop": ["pytest", str(ROOT)],
            "pytest + fakepop[generate]": ["pytest", f"{ROOT}[generate]"],
        }
        pythons = {}
        for n, (name, requirements) in enumerate(envs.items()):
            venv = base / f"venv{n}"
            pythons[name] = venv / "bin" / "python"
            if not pythons[name].exists():
                print(f"making {name} in {venv}...", file=sys.stderr)
                make_venv(venv, requirements)
        work = base / "work"
        work.mkdir(exist_ok=True)
        (work / "test_empty.py").write_text("")
        times: dict[str, list[float]] = {name: [] for name in pythons}
        for run in range(args.runs + 1):  # the first round warms the disk cache
            # Round-robin, so that a busy spell on the machine falls on every environment.
            for name, python in pythons.items():
                seconds = collect_time(python, work)
                if run:
                    times[name].append(seconds)
        medians = {name: statistics.median(values) for name, values in times.items()}
    alone = medians["pytest alone"]
    print(f"pytest --collect-only -q, empty test file, median of {args.runs}:")
    for name, median in medians.items():
        added = "" if name == "pytest alone" else f"  ({(median - alone) * 1000:+.0f} ms)"
        print(f"  {name:28} {median * 1000:6.0f} ms{added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
