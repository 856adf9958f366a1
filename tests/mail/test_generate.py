"""Generated test mail: deterministic, well-formed, and covering every kind."""

from __future__ import annotations

import email
import email.message
import email.policy
import email.utils
import hashlib
import itertools
import os
import random
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from faker import Faker

import fakepop
from fakepop.mail.generate import (
    DEFAULT_WEIGHTS,
    KINDS,
    MAX_LINE_LENGTH,
    default_size,
    generate_messages,
    iter_messages,
)
from fakepop.mail.message import Message

BATCH_SIZE = 200
# The children import the fakepop this process imported, wherever it lies.
SOURCE = str(Path(fakepop.__file__).resolve().parents[1])
ENCODED_WORD = re.compile(rb"=\?UTF-8\?[QB]\?[^?]*\?=")


def parse(raw: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def header_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0]


def digest(messages: list[bytes]) -> str:
    return hashlib.sha256(b"\0".join(messages)).hexdigest()


@pytest.fixture(scope="module")
def batch() -> list[bytes]:
    return generate_messages(BATCH_SIZE, seed=7)


# --- determinism ---------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes_in_other_processes() -> None:
    script = (
        "import hashlib; from fakepop.mail.generate import generate_messages; "
        "print(hashlib.sha256(b'\\0'.join(generate_messages(60, seed=3))).hexdigest())"
    )
    # Different hash seeds, so that nothing may hang on set or dict-of-str ordering.
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "TZ": zone, "PYTHONPATH": SOURCE},
        )
        for hash_seed, zone in (("1", "UTC"), ("2", "Asia/Tokyo"))
    ]
    outputs = [run.communicate(timeout=60)[0].strip() for run in runs]
    assert all(run.returncode == 0 for run in runs)
    assert outputs[0] == outputs[1] == digest(generate_messages(60, seed=3))


def test_same_arguments_give_the_same_bytes_again_after_other_calls() -> None:
    first = generate_messages(30, seed=5, locale="de_DE")
    generate_messages(10, seed=6, locale="de_DE")
    random.seed(1)  # neither the global random module
    Faker.seed(2)  # nor Faker's shared seed plays a part
    assert generate_messages(30, seed=5, locale="de_DE") == first


def test_different_seeds_give_different_mail() -> None:
    a, b = generate_messages(20, seed=1), generate_messages(20, seed=2)
    assert not set(a) & set(b)


def test_different_locales_give_different_mail() -> None:
    english = generate_messages(20, locale="en_US")
    german = generate_messages(20, locale="de_DE")
    assert not set(english) & set(german)
    assert any(b'charset="utf-8"' in m and b"\xc3" in m for m in german)


def test_iter_messages_yields_what_generate_messages_returns() -> None:
    lazy = iter_messages(40, seed=9, size=(100, 3000))
    assert next(lazy) == generate_messages(40, seed=9, size=(100, 3000))[0]
    assert [next(lazy), *lazy] == generate_messages(40, seed=9, size=(100, 3000))[1:]


def test_count_zero_gives_no_messages() -> None:
    assert generate_messages(0) == []
    assert list(iter_messages(0, seed=4)) == []


# --- well-formed mail ----------------------------------------------------------------------------


def test_every_message_is_well_formed(batch: list[bytes]) -> None:
    assert len(batch) == BATCH_SIZE
    for raw in batch:
        assert b"\r" not in raw.replace(b"\r\n", b"")
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert raw.endswith(b"\r\n")
        assert max(len(line) for line in raw.split(b"\r\n")) <= MAX_LINE_LENGTH
        assert Message(raw).wire == raw  # the server stores it as it is

        message = parse(raw)
        for name in ("From", "To", "Subject", "Date", "Message-ID"):
            assert message[name], f"no {name} in\n{raw[:500]!r}"
        if message["Content-Type"] is not None:
            assert message["MIME-Version"] == "1.0"
        for part in message.walk():
            assert not part.defects, (part.defects, raw[:500])
            for name, value in part.items():
                assert not getattr(value, "defects", ()), (name, value, value.defects)
            if not part.is_multipart():
                part.get_content()  # decodes: charset and transfer encoding are right


def test_message_ids_are_unique(batch: list[bytes]) -> None:
    ids = [parse(raw)["Message-ID"] for raw in batch]
    assert len(set(ids)) == len(ids)


def test_dates_strictly_increase(batch: list[bytes]) -> None:
    dates = [email.utils.parsedate_to_datetime(parse(raw)["Date"]) for raw in batch]
    assert all(a < b for a, b in itertools.pairwise(dates))
    assert len({d.utcoffset() for d in dates}) > 3  # senders write from several time zones
    starts = {
        email.utils.parsedate_to_datetime(parse(generate_messages(1, seed=s)[0])["Date"])
        for s in range(3)
    }
    assert len(starts) == 3  # the start follows the seed
    assert all(datetime(2016, 1, 1).astimezone() < d for d in starts)


def test_replies_reference_earlier_messages_of_the_batch(batch: list[bytes]) -> None:
    seen: dict[str, str] = {}
    replies = 0
    for raw in batch:
        message = parse(raw)
        parent = message["In-Reply-To"]
        if parent is not None:
            replies += 1
            assert parent in seen
            references = str(message["References"]).split()
            assert references[-1] == parent
            assert all(ref in seen for ref in references)
            assert message["Subject"] == "Re: " + seen[parent].removeprefix("Re: ")
        seen[message["Message-ID"]] = str(message["Subject"])
    assert BATCH_SIZE // 10 < replies < BATCH_SIZE // 3  # about 20% by default


def test_no_replies_when_asked_for_none() -> None:
    assert not any(b"In-Reply-To:" in m for m in generate_messages(50, replies=0))


# --- kinds ---------------------------------------------------------------------------------------


def features(raw: bytes) -> set[str]:
    """The kinds whose traits a message shows (several for some messages)."""
    found: set[str] = set()
    head, body = header_of(raw), body_of(raw)
    message = parse(raw)
    content_type = message.get_content_type()
    if content_type == "text/plain" and message["Content-Transfer-Encoding"] in (
        None,
        "7bit",
        "8bit",
    ):
        found.add("plain")
    if content_type == "multipart/alternative":
        alternatives = [p.get_content_type() for p in message.iter_parts()]
        if alternatives == ["text/plain", "text/html"]:
            found.add("html")
    if content_type == "multipart/mixed":
        attachments = list(message.iter_attachments())
        types = {a.get_content_type() for a in attachments}
        if types & {"image/png", "application/octet-stream"} and "text/csv" in types:
            found.add("attachments")
    subject = re.search(rb"^Subject:(.*(?:\r\n[ \t].*)*)", head, re.MULTILINE)
    assert subject is not None
    if ENCODED_WORD.search(subject.group(1)) and ENCODED_WORD.search(head):
        found.add("encoded-headers")
    if not subject.group(1).isascii():
        found.add("utf8-headers")
    if any(len(line) == MAX_LINE_LENGTH for line in body.split(b"\r\n")):
        found.add("long-lines")
    transfer = message["Content-Transfer-Encoding"]
    if content_type == "text/plain" and transfer == "quoted-printable" and b"=\r\n" in body:
        found.add("quoted-printable")
    lines = body.split(b"\r\n")
    if b"." in lines and any(line.startswith(b".") and len(line) > 1 for line in lines):
        found.add("dot-lines")
    return found


def test_a_default_batch_holds_every_kind(batch: list[bytes]) -> None:
    seen: dict[str, int] = dict.fromkeys(KINDS, 0)
    for raw in batch:
        for kind in features(raw):
            seen[kind] += 1
    for kind, weight in DEFAULT_WEIGHTS.items():
        share = BATCH_SIZE * weight // sum(DEFAULT_WEIGHTS.values())
        assert seen[kind] >= share * 0.8, (kind, seen)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_alone_shows_its_trait(kind: str) -> None:
    messages = generate_messages(12, kinds=[kind], seed=2)
    assert all(kind in features(raw) for raw in messages), kind


def test_weights_set_the_exact_mix() -> None:
    messages = generate_messages(40, kinds={"html": 3, "dot-lines": 1}, seed=4)
    counts = {k: sum(k in features(m) for m in messages) for k in ("html", "dot-lines")}
    assert counts == {"html": 30, "dot-lines": 10}


def test_kinds_given_as_a_set_do_not_depend_on_its_order() -> None:
    a = generate_messages(10, kinds={"plain", "html", "dot-lines"})
    b = generate_messages(10, kinds=["dot-lines", "html", "plain"])
    assert a == b


def test_encoded_words_and_raw_utf8_headers_both_appear(batch: list[bytes]) -> None:
    heads = [header_of(raw) for raw in batch]
    assert sum(bool(ENCODED_WORD.search(h)) for h in heads) >= 15
    raw_utf8 = [h for h in heads if not h.isascii()]
    assert len(raw_utf8) >= 8
    for head in raw_utf8:
        head.decode("utf-8")  # RFC 6532: raw header bytes are UTF-8
    decoded = [parse(raw)["Subject"] for raw in batch if ENCODED_WORD.search(header_of(raw))]
    assert any(not str(s).isascii() for s in decoded)


def test_lines_starting_with_a_dot_appear(batch: list[bytes]) -> None:
    bodies = [body_of(raw).split(b"\r\n") for raw in batch]
    assert sum(b"." in lines for lines in bodies) >= 10
    stuffed = [Message(raw).stuffed() for raw in batch]
    assert any(b"\r\n..\r\n" in s for s in stuffed)


def test_long_lines_reach_the_limit_and_quoted_printable_wraps() -> None:
    messages = generate_messages(10, kinds=["long-lines", "quoted-printable"], size=5000)
    lengths = [len(line) for raw in messages for line in raw.split(b"\r\n")]
    assert max(lengths) == MAX_LINE_LENGTH
    assert sum(900 <= n <= MAX_LINE_LENGTH for n in lengths) >= 10
    qp = [parse(raw) for raw in messages if b"quoted-printable" in header_of(raw)]
    assert qp
    for message in qp:
        text = message.get_content()
        assert max(len(line) for line in text.splitlines()) > 76  # unwrapped by decoding


def test_attachments_decode() -> None:
    for raw in generate_messages(10, kinds=["attachments"], size=8000, seed=1):
        for attachment in parse(raw).iter_attachments():
            data = attachment.get_content()
            if attachment.get_content_type() == "image/png":
                assert isinstance(data, bytes)
                assert data.startswith(b"\x89PNG\r\n\x1a\n")
                assert data.endswith(b"IEND\xaeB`\x82")
            elif attachment.get_content_type() == "text/csv":
                assert isinstance(data, str)
                assert data.splitlines()[0] == "name,email,amount"


# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [2000, 6000, 50_000])
def test_an_int_size_sets_the_body_size(target: int) -> None:
    for raw in generate_messages(len(KINDS) * 2, kinds=KINDS, size=target, seed=target):
        assert abs(len(body_of(raw)) - target) <= target * 0.05, features(raw)


def test_a_range_draws_sizes_inside_it() -> None:
    sizes = [len(body_of(raw)) for raw in generate_messages(40, size=(3000, 9000), seed=1)]
    assert all(3000 * 0.95 <= n <= 9000 for n in sizes)
    assert max(sizes) - min(sizes) > 3000


def test_a_function_chooses_each_size() -> None:
    calls: list[random.Random] = []

    def size(rng: random.Random) -> int:
        calls.append(rng)
        return 2000 + 2000 * (len(calls) % 2)

    sizes = [len(body_of(raw)) for raw in generate_messages(10, kinds=["plain"], size=size)]
    assert len(calls) == 10
    assert all(isinstance(rng, random.Random) for rng in calls)
    assert all(abs(n - (4000 if i % 2 == 0 else 2000)) <= 100 for i, n in enumerate(sizes))


def test_default_sizes_are_mostly_small_with_a_few_large() -> None:
    rng = random.Random(0)
    sizes = sorted(default_size(rng) for _ in range(5000))
    median = sizes[len(sizes) // 2]
    assert 1000 < median < 3000
    assert sizes[-len(sizes) // 100] > 50_000  # the largest 1% are large
    assert sizes[-1] <= 4_000_000


def test_size_does_not_change_kinds_dates_or_threads() -> None:
    def plan(raw: bytes) -> tuple[object, ...]:
        message = parse(raw)
        return (message["Date"], message["In-Reply-To"], message.get_content_type())

    small = generate_messages(30, seed=8, size=500)
    large = generate_messages(30, seed=8, size=20_000)
    assert [plan(m) for m in small] == [plan(m) for m in large]


# --- the owner and bad arguments -----------------------------------------------------------------


def test_recipient_is_on_every_to_line() -> None:
    for raw in generate_messages(20, recipient="Alice Liddell <alice@fakepop.test>"):
        assert parse(raw)["To"].addresses[0].addr_spec == "alice@fakepop.test"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"count": -1}, "count must be a whole number"),
        ({"count": 2.5}, "count must be a whole number"),
        ({"kinds": ["plain", "spam"]}, "unknown kind.*spam.*choose from plain, html"),
        ({"kinds": {"plain": -1}}, "weights must be numbers, 0 or more"),
        ({"kinds": {"plain": 0}}, "at least one kind a weight above 0"),
        ({"locale": "xx_XX"}, "unknown locale 'xx_XX': use a Faker locale such as 'en_US'"),
        ({"size": -5}, "size must be 0 octets or more"),
        ({"size": (10, 5)}, r"\(min, max\) with 0 <= min <= max"),
        ({"size": "big"}, "size must be octets, a .min, max. pair or a function"),
        ({"replies": 1.5}, "replies must be a chance from 0 to 1"),
        ({"recipient": "alice"}, "recipient must be an ASCII address"),
    ],
)
def test_bad_arguments_say_what_to_do(arguments: dict[str, object], message: str) -> None:
    count = arguments.pop("count", 3)
    with pytest.raises(ValueError, match=message):
        iter_messages(count, **arguments)  # type: ignore[arg-type]


def test_a_size_function_returning_nonsense_is_reported() -> None:
    with pytest.raises(ValueError, match="size function must return octets"):
        generate_messages(2, size=lambda rng: -1)
