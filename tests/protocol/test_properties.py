"""Properties of the core over generated input: chunking, totals, robustness, wire round trips."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from fakepop.mail.message import Message
from fakepop.mail.wire import dot_stuff, to_crlf
from fakepop.protocol import CLOSE, Reply, Settings
from fakepop.protocol.transcript import SessionTranscript

from .pair import Pair, listing, read_multiline, split

FAST = settings(deadline=None, max_examples=100)
SLOW = settings(deadline=None, max_examples=50)

MESSAGES = (b"Subject: a\r\n\r\nA\r\n", b".dot\n\n..\n.\nend", b"")
LIMITS = Settings(max_line_length=255, max_bad_commands=12, last=True)

COMMANDS = [
    "USER alice",
    "PASS secret",
    "PASS wrong",
    "STAT",
    "LIST",
    "LIST 2",
    "RETR 2",
    "RETR 3",
    "TOP 2 1",
    "TOP 1 -1",
    "DELE 1",
    "RETR 9",
    "RSET",
    "NOOP",
    "UIDL",
    "UIDL 3",
    "CAPA",
    "LANG",
    "UTF8",
    "LAST",
    "QUIT",
]

no_lf = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))
overlong = st.binary(min_size=250, max_size=400).map(lambda b: b.replace(b"\n", b"x"))
line = st.one_of(
    st.sampled_from([c.encode() for c in COMMANDS]),
    st.sampled_from([c.lower().encode() for c in COMMANDS]),
    no_lf,
    overlong,
)
streams = st.builds(
    lambda lines, tail: b"".join(lines) + tail,
    st.lists(st.tuples(line, st.sampled_from([b"\r\n", b"\n"])).map(b"".join), max_size=25),
    no_lf,
)


def run(chunks: list[bytes]) -> tuple[bytes, bool, list[str], list[str], list[str]]:
    """Feed ``chunks`` to a fresh session: replies, whether it closed, transcript, mail left."""
    transcript = SessionTranscript(1)
    pair = Pair(*MESSAGES, settings=LIMITS, transcript=transcript)
    out = b"".join(pair.send(chunk) for chunk in chunks)
    pair.session.connection_lost()
    # The greeting holds a fresh timestamp each time; the rest must match.
    masked, clear = transcript.lines()[1:], transcript.lines(mask=False)[1:]
    return out, pair.closed, masked, clear, [m.uid for m in pair.mailbox]


@SLOW
@given(streams, st.data())
def test_any_chunking_gives_the_same_replies(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert run(chunks) == run([stream])


@SLOW
@given(stream=streams)
def test_byte_at_a_time_gives_the_same_replies(stream: bytes) -> None:
    assert run([stream[i : i + 1] for i in range(len(stream))]) == run([stream])


@SLOW
@given(
    messages=st.lists(st.binary(max_size=200), max_size=8),
    deleted=st.sets(st.integers(1, 9), max_size=9),
)
def test_stat_is_the_count_and_sum_of_list(messages: list[bytes], deleted: set[int]) -> None:
    pair = Pair(*messages)
    pair.login()
    pair.cmd(*(f"DELE {n}" for n in sorted(deleted)))
    stat = re.fullmatch(rb"\+OK (\d+) (\d+)\r\n", pair.cmd("STAT"))
    assert stat is not None
    entries = (entry.split() for entry in listing(pair.cmd("LIST")))
    sizes = {int(n): int(size) for n, size in entries}
    assert (int(stat[1]), int(stat[2])) == (len(sizes), sum(sizes.values()))
    live = [n for n in range(1, len(messages) + 1) if n not in deleted]
    assert sizes == {n: len(to_crlf(messages[n - 1])) for n in live}


@SLOW
@given(raw=st.binary(max_size=300), n=st.integers(0, 12))
def test_retr_and_top_round_trip(raw: bytes, n: int) -> None:
    wire = to_crlf(raw)
    pair = Pair(raw)
    pair.login()
    assert pair.cmd("LIST 1") == b"+OK 1 %d\r\n" % len(wire)
    status, body, rest = read_multiline(pair.cmd("RETR 1"))
    assert (status, body, rest) == (b"+OK %d octets\r\n" % len(wire), wire, b"")
    status, top, rest = read_multiline(pair.cmd(f"TOP 1 {n}"))
    assert (status, rest) == (b"+OK top of message follows\r\n", b"")
    assert wire.startswith(top)
    assert Message(raw).top(n) == dot_stuff(top)


STATUS = re.compile(rb"(\+OK|-ERR)( [^\r\n]*)?\r\n")


@SLOW
@given(chunks=st.lists(st.binary(max_size=600), max_size=8), logged_in=st.booleans())
def test_no_exception_escapes_for_arbitrary_bytes(chunks: list[bytes], logged_in: bool) -> None:
    pair = Pair(*MESSAGES, settings=LIMITS)
    if logged_in:
        pair.login()
    for chunk in chunks:
        events = pair.session.receive_data(chunk)
        split(events)  # CLOSE, if any, comes last
        for event in events:
            if isinstance(event, Reply):
                assert STATUS.fullmatch(event.status), event.status
                assert len(event.status) <= 512  # RFC 2449, section 4
        if CLOSE in events:
            assert pair.session.receive_data(b"NOOP\r\n") == []
    pair.session.timed_out()
    assert not pair.mailbox.locked
    assert len(pair.mailbox) == len(MESSAGES)


@FAST
@given(raw=st.binary(max_size=200))
def test_to_crlf_leaves_no_bare_cr_or_lf(raw: bytes) -> None:
    wire = to_crlf(raw)
    assert re.search(rb"\r(?!\n)|(?<!\r)\n", wire) is None
    assert wire == b"" or wire.endswith(b"\r\n")
    assert to_crlf(wire) == wire
    # Only line ends change: the text between them is kept.
    lines = re.split(rb"\r\n|\r|\n", raw)
    if lines[-1] == b"":
        lines.pop()
    assert wire == b"".join(part + b"\r\n" for part in lines)


@FAST
@given(raw=st.binary(max_size=200))
def test_dot_stuffing_is_undone_by_a_client(raw: bytes) -> None:
    wire = to_crlf(raw)
    stuffed = dot_stuff(wire)
    assert re.search(rb"(^|\r\n)\.\r\n", stuffed) is None  # no line reads as the terminator
    assert read_multiline(b"+OK\r\n" + stuffed + b".\r\n") == (b"+OK\r\n", wire, b"")
