"""A run without the real clients (or atheris) is green and lists what it skipped, one line per
client; with FAKEPOP_REQUIRE_CLIENTS=1 the same run fails, naming them. Each case runs pytest
on a few files in a process of its own, with an empty PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# curl in all three (skipped in fixtures and in a test's body), fetchmail in the second: one
# summary line each.
FILES = [
    "tests/interop/test_interop_curl.py",
    "tests/interop/test_interop_faults.py",
    "tests/test_control.py::test_with_a_token_any_host_name_is_answered",
]
CURL = "curl cannot run: curl is not on PATH (Debian: apt-get install curl)"
FETCHMAIL = "fetchmail cannot run: fetchmail is not on PATH (Debian: apt-get install fetchmail)"
ATHERIS = "atheris is not installed: pip install -e '.[fuzz]' to run the short fuzz"


def pytest_run(
    *args: str, require: bool, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest from the repository's root, with no program on PATH and none of this run's
    pytest or xdist settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FAKEPOP_"))}
    env["PATH"] = ""
    if require:
        env["FAKEPOP_REQUIRE_CLIENTS"] = "1"
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def skip_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("SKIPPED [")]


def test_a_missing_client_skips_its_tests_in_one_summary_line() -> None:
    result = pytest_run(*FILES, require=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = skip_lines(result.stdout)
    assert len(lines) == 2, result.stdout
    assert sum(line.endswith(f": {CURL}") for line in lines) == 1, lines
    assert sum(line.endswith(f": {FETCHMAIL}") for line in lines) == 1, lines
    assert re.search(r"^\d+ skipped in ", result.stdout, re.MULTILINE), result.stdout


def test_required_clients_fail_naming_what_to_install() -> None:
    result = pytest_run(*FILES, require=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{CURL}; FAKEPOP_REQUIRE_CLIENTS=1 requires it" in result.stdout, result.stdout
    assert f"{FETCHMAIL}; FAKEPOP_REQUIRE_CLIENTS=1 requires it" in result.stdout
    assert not skip_lines(result.stdout), result.stdout


@pytest.mark.parametrize("require", [False, True], ids=["skips", "fails when required"])
def test_the_short_fuzz_follows_the_same_switch(require: bool, tmp_path: Path) -> None:
    # An atheris module that cannot be imported stands in for one that is not installed.
    (tmp_path / "atheris.py").write_text("raise ImportError('atheris is hidden by this test')\n")
    target = "tests/fuzz/test_corpus.py::test_a_short_coverage_guided_run_finds_nothing"
    result = pytest_run(f"{target}[core]", require=require, pythonpath=tmp_path)
    if require:
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{ATHERIS}; FAKEPOP_REQUIRE_CLIENTS=1 requires it" in result.stdout
    else:
        assert result.returncode == 0, result.stdout + result.stderr
        assert [line.split(": ", 1)[1] for line in skip_lines(result.stdout)] == [ATHERIS]
