"""What installing fakepop adds to a pytest run that never uses it.

    python bench/bench_plugin_cost.py [--runs N] [--keep DIR]

Makes virtual environments with pip (pytest alone; pytest and fakepop; pytest and
fakepop[generate]), then times ``pytest --collect-only -q`` on an empty test file in
each, in a fresh process every run, taking turns: every installed pytest plugin is
loaded, fakepop's and its dependencies' alike. Prints the medians of wall and CPU time,
and what each environment adds to pytest alone. Goal (not asserted anywhere): fakepop
adds at most 50 ms.
"""

from __future__ import annotations

import argparse
import resource
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


def collect_time(python: Path, workdir: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``pytest --collect-only -q`` on the empty test file in workdir.

    CPU time (user and system, of pytest's process) moves far less than wall time when other
    work shares the machine.
    """
    command = [str(python), "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begin = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, capture_output=True, check=False)
    wall = time.perf_counter() - begin
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 5:  # 5: no tests collected, as expected of an empty file
        raise RuntimeError(f"pytest failed in {python}:\n{done.stdout.decode()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
        walls: dict[str, list[float]] = {name: [] for name in pythons}
        cpus: dict[str, list[float]] = {name: [] for name in pythons}
        for run in range(args.runs + 1):  # the first round warms the disk cache
            # Round-robin, so that a busy spell on the machine falls on every environment.
            for name, python in pythons.items():
                wall, cpu = collect_time(python, work)
                if run:
                    walls[name].append(wall)
                    cpus[name].append(cpu)
    print(f"pytest --collect-only -q, empty test file, median of {args.runs}:")
    print(f"  {'':28} {'wall':>16} {'CPU':>16}")
    for name in pythons:
        cells = []
        for times in (walls, cpus):
            median = statistics.median(times[name])
            alone = statistics.median(times["pytest alone"])
            added = "" if name == "pytest alone" else f"{(median - alone) * 1000:+.0f}"
            cells.append(f"{median * 1000:6.0f} ms {added:>6}")
        print(f"  {name:28} {cells[0]:>16} {cells[1]:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
