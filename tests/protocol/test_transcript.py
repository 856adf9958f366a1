"""The transcript: what it records, and how much of it a bounded one keeps."""

from __future__ import annotations

import pytest

from fakepop.protocol.transcript import SESSION_LINES, SessionTranscript, Transcript


def test_unbounded_by_default_every_line_of_every_session() -> None:
    transcript = Transcript()
    for _ in range(3):
        session = transcript.new_session()
        for n in range(2 * SESSION_LINES):
            session.add("C", f"NOOP {n}")
    assert [s.session_id for s in transcript] == [1, 2, 3]
    assert all(len(s.entries) == 2 * SESSION_LINES for s in transcript)


def test_a_limit_keeps_the_latest_sessions() -> None:
    transcript = Transcript(limit=2)
    made = [transcript.new_session(f"peer {n}") for n in range(5)]
    assert [s.session_id for s in transcript] == [4, 5]
    assert transcript[0] is made[3]
    assert transcript.text(since=4).startswith("--- session 5 from peer 4")


def test_a_limit_of_zero_keeps_no_session() -> None:
    transcript = Transcript(limit=0)
    session = transcript.new_session()
    session.add("C", "CAPA")  # the session records while it lasts, and is not kept
    assert session.session_id == 1
    assert len(transcript) == 0
    assert transcript.new_session().session_id == 2


def test_a_negative_limit_says_what_to_give() -> None:
    with pytest.raises(ValueError, match=r"0 or more \(0 keeps none\), or None for all"):
        Transcript(limit=-1)


def test_a_long_session_keeps_its_start_and_its_latest_lines() -> None:
    session = Transcript(limit=1).new_session()
    total = 3 * SESSION_LINES
    for n in range(total):
        session.add("C", f"NOOP {n}")
    half = SESSION_LINES // 2
    left_out = total - SESSION_LINES
    lines = session.lines()
    assert len(lines) == SESSION_LINES + 1
    assert lines[:half] == [f"C: NOOP {n}" for n in range(half)]
    assert lines[half] == f"*: ... {left_out} lines left out"
    assert lines[half + 1 :] == [f"C: NOOP {n}" for n in range(half + left_out, total)]


def test_a_bounded_session_keeps_a_bounded_list_of_violations() -> None:
    session = SessionTranscript(1, max_lines=10)
    for n in range(100):
        session.violate(f"bare LF {n}")
    assert session.violations == [f"bare LF {n}" for n in range(10)]
    assert len(session.entries) == 11


def test_wait_for_without_threads_looks_once() -> None:
    transcript = Transcript()
    session = transcript.new_session()
    session.logged_in("alice", "USER")
    with pytest.raises(TimeoutError, match=r"ended: none; still open: \[1\]"):
        transcript.wait_for(user="alice")
    session.end()
    assert transcript.wait_for(user="alice") is session
    with pytest.raises(TimeoutError, match=r"a session of bob to end; ended: 1 \(alice, no QUIT\)"):
        transcript.wait_for(user="bob", timeout=0)
