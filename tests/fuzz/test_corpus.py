"""The kept fuzz corpus replayed through its targets, and a short coverage-guided run of each.

The replay needs nothing but the targets; the short run needs atheris (the ``fuzz`` extra),
which CI installs: without it the run is skipped, or failed under FAKEPOP_REQUIRE_CLIENTS=1.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from protocol.test_fuzz import Segment, check_scenario
from required import unavailable

from . import targets

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz_atheris.py"
SHORT_RUNS = {"core": 4000, "wire": 10000, "stores": 600}  # each 5 to 15 s here
SHORT_TIMEOUT = 120  # seconds: far over a short run, so a hang fails instead of blocking CI

CASES = [
    pytest.param(target, path, id=f"{target}/{path.name}")
    for target in targets.TARGETS
    for path in sorted((targets.CORPUS / target).iterdir())
]


@pytest.mark.parametrize(("target", "path"), CASES)
def test_the_kept_corpus_passes(target: str, path: Path) -> None:
    run: Callable[[bytes], None] = getattr(targets, target)
    run(path.read_bytes())


def test_every_target_has_a_corpus() -> None:
    for target in targets.TARGETS:
        assert len(list((targets.CORPUS / target).iterdir())) >= 5, target


def test_the_core_corpus_reaches_every_state() -> None:
    """The corpus is worth keeping: it logs in every way, streams mail and crosses STLS."""
    seen: set[bytes] = set()
    for path in (targets.CORPUS / "core").iterdir():
        check_scenario(targets.read_scenario(path.read_bytes()), seen)
    wanted = [
        b"+OK alice's maildrop has N messages (N octets)\r\n",  # USER/PASS, APOP or SASL
        b"+OK top of message follows\r\n",
        b"+OK Begin TLS negotiation\r\n",
        b"+ <challenge>\r\n",
        b"+OK fakepop signing off (N deleted, N left)\r\n",
    ]
    missing = [kind for kind in wanted if kind not in seen]
    assert not missing, f"no input in the corpus draws out {missing}; seen {sorted(seen)}"


def test_the_stream_format() -> None:
    """Escapes cut, end segments, repeat and stand for themselves, as the module says."""
    stream = b"AB\xff/C\xffTD\xff*\x00\xff\xff\xffzE\xffD"
    scenario = targets.read_scenario(b"\0\0\0\0\0" + stream)
    assert scenario.segments == (
        Segment(b"ABC", (2,), "tls"),
        Segment(b"D" * 65 + b"\xff\xffzE", (), "drop"),
    )


@pytest.mark.parametrize("target", targets.TARGETS)
def test_a_short_coverage_guided_run_finds_nothing(target: str, tmp_path: Path) -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        unavailable("atheris is not installed: pip install -e '.[fuzz]' to run the short fuzz")
    command = [sys.executable, str(BENCH), target, "--runs", str(SHORT_RUNS[target])]
    result = subprocess.run(
        [*command, "--work", str(tmp_path), "--seed", "1"],
        env={**os.environ, "PYTHONHASHSEED": "0"},  # with --seed: the same run every time
        capture_output=True,
        text=True,
        errors="replace",
        timeout=SHORT_TIMEOUT,
        check=False,
    )
    crashes = sorted(tmp_path.glob("crash-*")) + sorted(tmp_path.glob("timeout-*"))
    found = "".join(f"\n{path}: {path.read_bytes()!r}" for path in crashes)
    assert result.returncode == 0, f"{result.stderr[-6000:]}{found}"
    assert re.search(r"Done \d+ runs", result.stderr), result.stderr[-2000:]


# --- what the fuzzer found in the product ---------------------------------------------------------


def test_an_auth_initial_response_that_is_not_ascii_is_refused() -> None:
    targets.core(b"\0\0\0\0\0AUTH PLAIN \xc3\xa9\r\n")  # found by the core target in 3 minutes


def test_a_cram_md5_response_that_is_not_ascii_is_refused() -> None:
    response = base64.b64encode("alice \u00e9".encode())  # found by the core target in 3,000 runs
    targets.core(b"\0\0\0\0\0AUTH CRAM-MD5\r\n" + response + b"\r\n")
