"""Realistic test mail made with Faker: the same bytes for the same arguments, in any process.

``generate_messages(200, seed=7)`` gives 200 raw RFC 5322 messages with CRLF
line ends, addressed to one maildrop owner, in this mix of kinds by default
(each kind gets its exact share of the count, in an order drawn from the seed):

=================  ======  ==========================================================
kind               weight  what it holds
=================  ======  ==========================================================
plain              35      text/plain, 7bit or 8bit; a quarter of the ASCII ones
                           carry no MIME header at all, as in RFC 822 days
html               15      multipart/alternative: wrapped text/plain, and
                           text/html in quoted-printable
attachments        10      multipart/mixed: a text part (or an alternative one), a
                           base64 PNG or application/octet-stream file and a CSV
encoded-headers    10      a non-ASCII sender name and subject in RFC 2047
                           encoded-words; a base64 or quoted-printable UTF-8 body
utf8-headers       5       a raw UTF-8 Subject and Organization (RFC 6532) and an
                           8bit body
long-lines         5       lines of 900 to 998 octets, one of exactly 998
quoted-printable   10      long unwrapped paragraphs in soft-broken lines, "=3D"
                           and UTF-8 escapes
dot-lines          10      body lines starting with "." and a lone "." line (the
                           first or last line of the body, now and then)
=================  ======  ==========================================================

Whatever its kind, a message may reply to one of the 64 before it ("Re: "
subject, In-Reply-To, References, quoted lines); Date goes up by 1 second to a
few hours from one message to the next, from a start in 2016-2023 drawn from
the seed; senders write from several time zones. One sender in ten has a
non-ASCII name (German, French, Polish, Russian, Greek or Japanese) whatever
the locale, so encoded-words turn up in other kinds too.

Sizes are those of the body, everything after the header's blank line. Bodies
come within 5% of targets from 2,000 octets up; smaller targets give a kind's
smallest body, which is a few hundred octets, about 1.1 kB for long-lines and
up to 1.5 kB for html and attachments (more when a reply quotes its parent).

Determinism: every choice comes from ``random.Random`` instances seeded with
``(seed, locale)`` strings and from Faker instances seeded with
``seed_instance``; MIME boundaries, Message-IDs and dates are made here, never
by the ``email`` package, which would take them from the global ``random``
module, the clock and the host name. The bytes can change with the Faker
version, whose word lists and name tables change between releases.

Faker is the extra ``fakepop[generate]``: without it, making mail raises
``FakerMissing``, which says what to install. Faker registers a pytest plugin
that imports it, so as a plain dependency it would slow every pytest run in the
environment, whether or not fakepop is used.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import html
import math
import random
import re
import threading
import urllib.parse
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faker import Faker

__all__ = [
    "DEFAULT_WEIGHTS",
    "KINDS",
    "MAX_LINE_LENGTH",
    "FakerMissing",
    "Size",
    "default_size",
    "generate_messages",
    "iter_messages",
]

KINDS: tuple[str, ...] = (
    "plain",
    "html",
    "attachments",
    "encoded-headers",
    "utf8-headers",
    "long-lines",
    "quoted-printable",
    "dot-lines",
)
"""Every kind of message, in the order used to break ties in the mix."""

DEFAULT_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "plain": 35,
        "html": 15,
        "attachments": 10,
        "encoded-headers": 10,
        "utf8-headers": 5,
        "long-lines": 5,
        "quoted-printable": 10,
        "dot-lines": 10,
    }
)
"""The default mix: a kind's share of the messages is its weight over the sum (100)."""

MAX_LINE_LENGTH = 998  # RFC 5322, section 2.1.1: octets in a line, not counting the CRLF

Size = int | tuple[int, int] | Callable[[random.Random], int]
"""A body size: octets, a ``(min, max)`` range, or a function of a ``random.Random``."""

# Faker locales for correspondents with non-ASCII names, whatever the main locale.
_INTERNATIONAL = ("de_DE", "fr_FR", "pl_PL", "ru_RU", "el_GR", "ja_JP")
_EMOJI = ("🎉", "👋", "📎", "☕", "✈️", "🙂")
_TIMEZONES = (-480, -420, -300, -240, -180, 0, 0, 60, 60, 120, 180, 330, 480, 540, 600)
_MAILERS = (
    "X-Mailer: Apple Mail (2.3774.300.61.1.2)",
    "User-Agent: Mozilla Thunderbird 115.6.0",
    "X-Mailer: Microsoft Outlook 16.0",
    "User-Agent: Mutt/2.2.12 (2023-09-09)",
    "User-Agent: Roundcube Webmail/1.6.5",
    "X-Mailer: K-9 Mail for Android",
)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_START = 1451606400  # 2016-01-01T00:00:00Z; a batch starts within eight years of it
_HEADER_WIDTH = 76  # RFC 2047, section 2: lines holding encoded-words stay within 76
_WRAP_WIDTH = 72
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LOCAL_PART = re.compile(r"[a-z0-9_+-]+(?:\.[a-z0-9_+-]+)*")
_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)+")
_PREAMBLE = b"This is a multi-part message in MIME format.\r\n"
_DOT_BLOCKS = (
    ("$ ls -a ~", ".", "..", ".bashrc", ".config", ".ssh"),
    ("...", "...and that is where it stands.", ".", "."),
    (".hidden", ". a dot and a space", "..two dots", "."),
)


@dataclass(frozen=True, slots=True)
class _Person:
    name: str
    address: str
    company: str
    tz: int  # minutes east of UTC
    lang: int  # index into _Pools.langs: 0 is the main locale


@dataclass(frozen=True, slots=True)
class _Para:
    """A paragraph, rendered once in each form a body may need."""

    text: str  # one line, as typed
    wrapped: bytes  # wrapped at 72 columns, CRLF after each line
    qp: bytes  # quoted-printable, soft line breaks, CRLF after the last line
    html_qp: bytes  # "<p>...</p>", quoted-printable


@dataclass(frozen=True, slots=True)
class _Lang:
    people: list[_Person]
    subjects: list[str]
    paras: list[_Para]
    words: list[str]


@dataclass(frozen=True, slots=True)
class _Pools:
    langs: list[_Lang]
    owner: _Person
    international: list[_Person]  # people with non-ASCII names


@dataclass(frozen=True, slots=True)
class _Sent:
    """What a later reply needs to know of a message."""

    message_id: str
    references: tuple[str, ...]
    subject: str  # without "Re: "
    sender: _Person
    date: str
    excerpt: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Body:
    headers: list[str]  # the Content-* header lines, MIME-Version excepted
    body: bytes
    excerpt: tuple[str, ...]


def generate_messages(
    count: int,
    *,
    seed: int = 0,
    locale: str = "en_US",
    kinds: Iterable[str] | Mapping[str, float] | None = None,
    size: Size | None = None,
    replies: float = 0.2,
    recipient: str | None = None,
) -> list[bytes]:
    """Make ``count`` raw messages, the same bytes for the same arguments.

    Args:
        count: how many messages; 0 gives an empty list.
        seed: different seeds give different mail.
        locale: a Faker locale (``"en_US"``, ``"de_DE"``, ``"ja_JP"``...) for the
            names and text of most messages.
        kinds: which kinds to make (see ``KINDS``): ``None`` for ``DEFAULT_WEIGHTS``,
            names for equal shares, or a mapping of names to weights. Each kind
            gets its exact share of ``count`` (largest remainder), in seeded order.
        size: the body's size in octets (everything after the header's blank
            line): an int, a ``(min, max)`` range drawn uniformly, or a function
            taking a ``random.Random`` and returning octets; ``None`` for
            ``default_size``. A kind's own minimum wins over smaller targets.
        replies: the chance that a message (after the first) replies to one of
            the 64 before it, with "Re: ", In-Reply-To and References.
        recipient: the maildrop's owner, ``"Name <address>"`` or an address, on
            the To line of every message; by default a Faker person.

    Raises:
        FakerMissing: Faker is not installed.
        ValueError: an argument is out of range, or a kind or locale is unknown.
    """
    return list(
        iter_messages(
            count,
            seed=seed,
            locale=locale,
            kinds=kinds,
            size=size,
            replies=replies,
            recipient=recipient,
        )
    )


def iter_messages(
    count: int,
    *,
    seed: int = 0,
    locale: str = "en_US",
    kinds: Iterable[str] | Mapping[str, float] | None = None,
    size: Size | None = None,
    replies: float = 0.2,
    recipient: str | None = None,
) -> Iterator[bytes]:
    """Yield the messages of ``generate_messages`` one at a time, holding only a few.

    The arguments are checked before the first message is asked for.
    """
    _require_faker()
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a whole number of messages, 0 or more, not {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, not {seed!r}")
    locale = _check_locale(locale)
    weights = _check_kinds(kinds)
    sizer = _check_size(size)
    if isinstance(replies, bool) or not isinstance(replies, int | float) or not 0 <= replies <= 1:
        raise ValueError(f"replies must be a chance from 0 to 1, not {replies!r}")
    owner = _check_recipient(recipient)
    return _Generator(count, seed, locale, weights, sizer, replies, owner).messages()


def default_size(rng: random.Random) -> int:
    """The default body size in octets: mostly small messages, a few large ones.

    85% around 1.5 kB (log-normal, most between 500 octets and 5 kB), 13% around
    12 kB (most between 3 and 50 kB) and 2% around 200 kB (most between 50 kB
    and 1 MB); never over 4 MB. The mean is near 9 kB.
    """
    draw = rng.random()
    if draw < 0.85:
        octets = rng.lognormvariate(math.log(1500), 0.6)
    elif draw < 0.98:
        octets = rng.lognormvariate(math.log(12_000), 0.7)
    else:
        octets = rng.lognormvariate(math.log(200_000), 0.8)
    return min(int(octets), 4_000_000)


# --- argument checks ---------------------------------------------------------------------------


class FakerMissing(ImportError):
    """Making mail needs Faker, which is the extra ``fakepop[generate]``."""


def _require_faker() -> None:
    try:
        import faker  # noqa: F401
    except ModuleNotFoundError as e:
        if e.name != "faker":  # Faker is there but broken: its own error says more
            raise
        raise FakerMissing(
            "generating mail needs Faker, which is not installed: "
            "pip install 'fakepop[generate]' (or pip install faker)",
            name="faker",
        ) from None


def _check_locale(locale: str) -> str:
    from faker.config import AVAILABLE_LOCALES  # Faker is imported only when mail is made

    name = locale.replace("-", "_") if isinstance(locale, str) else locale
    if name not in AVAILABLE_LOCALES:
        raise ValueError(
            f"unknown locale {locale!r}: use a Faker locale such as 'en_US', 'de_DE' or "
            "'ja_JP' (faker.config.AVAILABLE_LOCALES lists them all)"
        )
    return name


def _check_kinds(kinds: Iterable[str] | Mapping[str, float] | None) -> list[float]:
    """Weights in ``KINDS`` order, whatever order (or set) the caller gave them in."""
    if kinds is None:
        given: Mapping[str, float] = DEFAULT_WEIGHTS
    elif isinstance(kinds, Mapping):
        given = kinds
    elif isinstance(kinds, str):
        given = {kinds: 1}
    else:
        given = dict.fromkeys(kinds, 1)
    unknown = sorted(str(k) for k in given if k not in KINDS)
    if unknown:
        raise ValueError(f"unknown kind(s) {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    weights = [given.get(k, 0) for k in KINDS]
    if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights):
        raise ValueError(f"kind weights must be numbers, 0 or more: {dict(given)!r}")
    if not any(weights):
        raise ValueError(f"give at least one kind a weight above 0; the kinds are {KINDS}")
    return [float(w) for w in weights]


def _check_size(size: Size | None) -> Callable[[random.Random], int]:
    if size is None:
        return default_size
    if isinstance(size, bool):
        raise ValueError(f"size must be octets, a (min, max) pair or a function, not {size!r}")
    if isinstance(size, int):
        if size < 0:
            raise ValueError(f"size must be 0 octets or more, not {size}")
        fixed = size
        return lambda rng: fixed
    if isinstance(size, tuple):
        if (
            len(size) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in size)
            or not 0 <= size[0] <= size[1]
        ):
            raise ValueError(f"a size range must be (min, max) with 0 <= min <= max, not {size!r}")
        low, high = size
        return lambda rng: rng.randint(low, high)
    if callable(size):
        return size
    raise ValueError(f"size must be octets, a (min, max) pair or a function, not {size!r}")


def _check_recipient(recipient: str | None) -> tuple[str, str] | None:
    if recipient is None:
        return None
    name, address = email.utils.parseaddr(recipient)
    local, at, domain = address.rpartition("@")
    if not (at and _LOCAL_PART.fullmatch(local.lower()) and _DOMAIN.fullmatch(domain.lower())):
        raise ValueError(
            f"recipient must be an ASCII address, alone or as 'Name <address>': {recipient!r}"
        )
    return name, address


# --- Faker pools ---------------------------------------------------------------------------------

# Faker instances take ~20 ms to make; they are kept, and reseeded under the lock for each
# batch, so that two threads never draw from one instance at the same time.
_FAKERS: dict[str, Faker] = {}
_FAKER_LOCK = threading.Lock()


def _faker(locale: str, seed: int | str) -> Faker:
    fake = _FAKERS.get(locale)
    if fake is None:
        from faker import Faker  # ~70 ms to import: not paid by servers that make no mail

        fake = _FAKERS[locale] = Faker(locale)
    fake.seed_instance(seed)
    return fake


def _pools(seed: int, locale: str, owner: tuple[str, str] | None) -> _Pools:
    with _FAKER_LOCK:
        main = _draw_lang(_faker(locale, seed), 0, people=40, subjects=120, paras=80, words=30)
        owner_person = _draw_person(_faker(locale, f"{seed}/owner"), 0, 0)
        langs = [main]
        for n, name in enumerate(_INTERNATIONAL, 1):
            fake = _faker(name, f"{seed}/{name}")
            langs.append(_draw_lang(fake, n, people=6, subjects=12, paras=8, words=6, foreign=True))
    if owner is not None:
        owner_person = _Person(owner[0], owner[1], "", 0, 0)
    international = [p for lang in langs[1:] for p in lang.people if not p.name.isascii()]
    return _Pools(langs, owner_person, international)


def _draw_lang(
    fake: Faker,
    lang: int,
    *,
    people: int,
    subjects: int,
    paras: int,
    words: int,
    foreign: bool = False,
) -> _Lang:
    """Names, subjects and text from one Faker locale.

    ``foreign`` keeps only non-ASCII names (drawing up to six times as many)
    and subjects, as the encoded-word and raw UTF-8 header kinds need them.
    """
    tries = 6 if foreign else 1
    found: list[_Person] = []
    for n in range(people * tries):
        person = _draw_person(fake, lang, n)
        if not foreign or not person.name.isascii():
            found.append(person)
        if len(found) == people:
            break
    titles: list[str] = []
    for _ in range(subjects):
        title = fake.sentence(nb_words=fake.random_int(3, 8)).rstrip(".。")
        # Foreign subjects must be non-ASCII: an ASCII one (French and German
        # have many) gets an emoji, as some do anyway.
        if foreign and (title.isascii() or fake.random_int(0, 3) == 0):
            title += " " + fake.random_element(_EMOJI)
        titles.append(title)
    texts = [_para(fake.paragraph(nb_sentences=fake.random_int(2, 7))) for _ in range(paras)]
    return _Lang(found, titles, texts, [fake.word() for _ in range(words)])


def _draw_person(fake: Faker, lang: int, n: int) -> _Person:
    name = fake.name()
    local = fake.user_name().lower()
    if not _LOCAL_PART.fullmatch(local):
        local = f"user{n}"
    domain = (fake.free_email_domain() if n % 2 else fake.domain_name()).lower()
    if not _DOMAIN.fullmatch(domain):
        domain = "example.com"
    tz = _TIMEZONES[fake.random_int(0, len(_TIMEZONES) - 1)]
    return _Person(name, f"{local}@{domain}", fake.company(), tz, lang)


def _para(text: str) -> _Para:
    return _Para(
        text,
        _wrapped(text),
        _qp(text),
        _qp(f"<p>{html.escape(text, quote=False)}</p>"),
    )


# --- encodings -----------------------------------------------------------------------------------


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: East Asian scripts take two."""
    return sum(2 if ord(c) >= 0x1100 else 1 for c in text)


def _wrap(text: str, width: int = _WRAP_WIDTH) -> list[str]:
    """Wrap at spaces; text without spaces (Japanese) is cut at ``width`` columns."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        while _width(word) > width:  # no space to break at
            room = width - _width(line) - (1 if line else 0)
            if room < 4:
                lines.append(line)
                line, room = "", width
            cut = 0
            while cut < len(word) and _width(word[: cut + 1]) <= room:
                cut += 1
            line = f"{line} {word[:cut]}" if line else word[:cut]
            lines.append(line)
            line, word = "", word[cut:]
        if line and _width(line) + 1 + _width(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def _wrapped(text: str) -> bytes:
    return "".join(f"{line}\r\n" for line in _wrap(text)).encode()


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends; soft line breaks keep lines within 76."""
    encoded = binascii.b2a_qp((text + "\n").encode(), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _cut(text: str, chars: int) -> str:
    """The first ``chars`` characters of ``text``, ending at a space if there is one."""
    if chars >= len(text):
        return text
    head = text[: max(chars, 1)]
    before, space, _ = head.rpartition(" ")
    return before if space and before else head


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 encoded-words for ``text``: Q for mostly Latin text, B for the rest.

    Each word is at most 60 characters, so one fits on a line after any header
    name used here; the spaces of ``text`` go inside the words, as whitespace
    between adjacent encoded-words is dropped when they are decoded.
    """
    latin = sum(not c.isascii() for c in text) * 4 < len(text)
    words: list[str] = []
    chunk = ""
    size = 0
    for c in text:
        raw = c.encode()
        if latin:
            cost = sum(1 if (chr(b).isalnum() and b < 128) or b == 32 else 3 for b in raw)
            full = size + cost > 48
        else:
            cost = len(raw)
            full = size + cost > 36  # 36 octets are 48 base64 characters
        if full:
            words.append(_encoded_word(chunk, latin))
            chunk, size = "", 0
        chunk += c
        size += cost
    if chunk:
        words.append(_encoded_word(chunk, latin))
    return words


def _encoded_word(text: str, q: bool) -> str:
    if not q:
        return f"=?UTF-8?B?{base64.b64encode(text.encode()).decode()}?="
    out = []
    for b in text.encode():
        if b == 32:
            out.append("_")
        elif b < 128 and chr(b).isalnum():
            out.append(chr(b))
        else:
            out.append(f"={b:02X}")
    return f"=?UTF-8?Q?{''.join(out)}?="


def _fold(name: str, chunks: Iterable[str]) -> str:
    """A header line folded before chunks that would pass 76 columns."""
    lines = [f"{name}:"]
    for chunk in chunks:
        if len(lines[-1]) + 1 + len(chunk) > _HEADER_WIDTH and lines[-1] != f"{name}:":
            lines.append(f" {chunk}")
        else:
            lines[-1] += f" {chunk}"
    return "\r\n".join(lines)


def _text_chunks(text: str, utf8: bool) -> list[str]:
    """Chunks of an unstructured header (Subject): ASCII and raw UTF-8 as words, else encoded."""
    if text.isascii() or utf8:
        return text.split()
    prefix = ""
    if text.startswith("Re: "):  # keep "Re:" readable, as mail programs do
        prefix, text = "Re:", text[4:]
    return ([prefix] if prefix else []) + _encoded_words(text)


def _address_chunks(person: _Person) -> list[str]:
    name = person.name
    if not name:
        return [person.address]
    if not name.isascii():
        phrase = _encoded_words(name)
    elif _ATOM.fullmatch(name):
        phrase = name.split()
    else:  # "Dr. Jane Smith" and "Smith, Jane" hold specials and need quotes
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        phrase = [f'"{quoted}"']
    return [*phrase, f"<{person.address}>"]


def _address_list(name: str, people: Sequence[_Person]) -> str:
    chunks: list[str] = []
    for n, person in enumerate(people):
        part = _address_chunks(person)
        if n < len(people) - 1:
            part[-1] += ","
        chunks.extend(part)
    return _fold(name, chunks)


def _date(epoch: int, tz: int) -> str:
    """An RFC 5322 date; names are spelled here, as strftime follows the C locale."""
    local = epoch + tz * 60
    days, seconds = divmod(local, 86400)
    year, month, day = _civil(days)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    sign = "+" if tz >= 0 else "-"
    hours, minutes = divmod(abs(tz), 60)
    return (
        f"{_DAYS[weekday]}, {day} {_MONTHS[month - 1]} {year} "
        f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d} "
        f"{sign}{hours:02d}{minutes:02d}"
    )


def _civil(days: int) -> tuple[int, int, int]:
    """Year, month and day of a count of days since 1970-01-01 (Howard Hinnant's algorithm)."""
    days += 719468
    era = days // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


def _png(rng: random.Random, octets: int) -> bytes:
    """A real PNG of random RGB pixels, about ``octets`` long (stored, not compressed)."""
    pixels = max(octets - 80, 3) // 3
    width = max(1, math.isqrt(pixels))
    height = max(1, pixels // width)
    row = 3 * width
    noise = rng.randbytes(row * height)
    raw = b"".join(b"\x00" + noise[y * row : (y + 1) * row] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return len(data).to_bytes(4, "big") + kind + data + crc.to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


def _disposition(filename: str) -> str:
    if filename.isascii():
        return f'Content-Disposition: attachment; filename="{filename}"'
    # RFC 2231: a non-ASCII parameter value is percent-encoded UTF-8.
    return f"Content-Disposition: attachment;\r\n filename*=utf-8''{urllib.parse.quote(filename)}"


def _text_headers(body: bytes, subtype: str = "plain") -> list[str]:
    if body.isascii():
        return [
            f'Content-Type: text/{subtype}; charset="us-ascii"',
            "Content-Transfer-Encoding: 7bit",
        ]
    return [f'Content-Type: text/{subtype}; charset="utf-8"', "Content-Transfer-Encoding: 8bit"]


def _part(headers: list[str], body: bytes) -> bytes:
    return "".join(f"{h}\r\n" for h in headers).encode() + b"\r\n" + body


def _multipart(boundary: str, parts: list[bytes]) -> bytes:
    """A multipart body; each part ends with CRLF before the CRLF of the next delimiter."""
    delimiter = f"\r\n--{boundary}\r\n".encode()
    return (
        _PREAMBLE
        + b"".join(delimiter + part for part in parts)
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _multipart_overhead(boundary: str, part_headers: list[list[str]]) -> int:
    return len(_multipart(boundary, [_part(h, b"") for h in part_headers]))


# --- the generator -------------------------------------------------------------------------------


def _fill(
    rng: random.Random,
    paras: Sequence[_Para],
    room: int,
    whole: Callable[[_Para], bytes],
    part: Callable[[str], bytes],
    sep: bytes = b"",
) -> tuple[bytes, str]:
    """Paragraphs up to ``room`` octets, the last one cut to fit; and the first one's text.

    There is always at least a few words, however small ``room`` is.
    """
    out: list[bytes] = []
    used = 0
    first = ""
    while True:
        para = rng.choice(paras)
        piece = whole(para)
        gap = len(sep) if out else 0
        if used + gap + len(piece) <= room:
            out.append(piece)
            used += gap + len(piece)
            first = first or para.text
            continue
        left = room - used - gap
        if left > 24 or not out:
            chars = max(len(para.text) * left // len(piece), 12)
            for _ in range(4):
                text = _cut(para.text, chars)
                piece = part(text)
                if len(piece) <= left or chars <= 12:
                    break
                chars = max(chars * left // len(piece) - 1, 12)
            if len(piece) <= left or not out:
                out.append(piece)
                first = first or text
        return sep.join(out), first


class _Generator:
    """One batch: the plan (kinds, dates, threads, sizes) and the messages it calls for."""

    pools: _Pools  # drawn at the first message, so that iter_messages() itself is quick

    def __init__(
        self,
        count: int,
        seed: int,
        locale: str,
        weights: list[float],
        sizer: Callable[[random.Random], int],
        replies: float,
        owner: tuple[str, str] | None,
    ) -> None:
        self.count = count
        self.seed = seed
        self.locale = locale
        self.weights = weights
        self.sizer = sizer
        self.replies = replies
        self.owner = owner

    def messages(self) -> Iterator[bytes]:
        if self.count == 0:
            return
        tag = f"fakepop/{self.locale}/{self.seed}"
        # Separate streams, so that a size function drawing more or fewer numbers
        # changes only the bodies, never the kinds, dates or threads.
        plan = random.Random(f"{tag}/plan")
        sizes = random.Random(f"{tag}/size")
        self.pools = _pools(self.seed, self.locale, self.owner)
        schedule = self._schedule(plan)
        epoch = _START + plan.randrange(8 * 365 * 86400)
        window: deque[_Sent] = deque(maxlen=64)
        for i, kind in enumerate(schedule):
            if i:  # strictly later than the one before, by 1.5 hours on average
                epoch += 1 + int(plan.expovariate(1 / 5400))
            parent = self._parent(plan, window, kind) if plan.random() < self.replies else None
            target = self.sizer(sizes)
            if isinstance(target, bool) or not isinstance(target, int) or target < 0:
                raise ValueError(f"the size function must return octets, 0 or more, not {target!r}")
            rng = random.Random(f"{tag}/{i}")
            raw, sent = self._message(rng, i, kind, epoch, parent, target)
            window.append(sent)
            yield raw

    def _schedule(self, plan: random.Random) -> list[str]:
        """Each kind's exact share of the count, largest remainders first, then shuffled."""
        total = sum(self.weights)
        quotas = [self.count * w / total for w in self.weights]
        counts = [int(q) for q in quotas]
        order = sorted(range(len(KINDS)), key=lambda k: (counts[k] - quotas[k], k))
        for k in order[: self.count - sum(counts)]:
            counts[k] += 1
        schedule = [kind for kind, n in zip(KINDS, counts, strict=True) for _ in range(n)]
        plan.shuffle(schedule)
        return schedule

    def _parent(self, plan: random.Random, window: deque[_Sent], kind: str) -> _Sent | None:
        """A recent message to reply to; the header kinds need one with a non-ASCII subject."""
        candidates = list(window)
        if kind in ("encoded-headers", "utf8-headers"):
            candidates = [s for s in candidates if not s.subject.isascii()]
        if not candidates:
            return None
        back = min(int(plan.expovariate(1 / 8)), len(candidates) - 1)  # mostly recent ones
        return candidates[-1 - back]

    def _message(
        self,
        rng: random.Random,
        i: int,
        kind: str,
        epoch: int,
        parent: _Sent | None,
        target: int,
    ) -> tuple[bytes, _Sent]:
        pools = self.pools
        header_kind = kind in ("encoded-headers", "utf8-headers")
        if parent is not None and rng.random() < 0.5 and (parent.sender.lang or not header_kind):
            sender = parent.sender
        elif header_kind or rng.random() < 0.1:
            sender = rng.choice(pools.international)
        else:
            sender = rng.choice(pools.langs[0].people)
        lang = pools.langs[sender.lang]
        subject = parent.subject if parent is not None else rng.choice(lang.subjects)
        date = _date(epoch, sender.tz)
        domain = sender.address.rpartition("@")[2]
        message_id = f"<{epoch:x}.{i}.{rng.getrandbits(40):010x}@{domain}>"

        tail = ""
        if parent is not None:
            quoted = "".join(f"> {line}\n" for line in parent.excerpt)
            tail = f"On {parent.date}, {parent.sender.name} wrote:\n{quoted}"
        content = self._body(rng, kind, lang, target, sender, tail)

        to = [pools.owner]
        if rng.random() < 0.15:
            to += rng.sample(pools.langs[0].people, rng.randint(1, 3))
        utf8 = kind == "utf8-headers"
        lines = [
            f"Return-Path: <{sender.address}>",
            f"Received: from smtp.{domain}\r\n\t(smtp.{domain} [{self._ip(rng)}])\r\n"
            f"\tby mx.{pools.owner.address.rpartition('@')[2]} with ESMTPS id "
            f"{rng.getrandbits(48):012X}\r\n"
            f"\tfor <{pools.owner.address}>; {_date(epoch + rng.randint(2, 90), 0)}",
            _address_list("From", [sender]),
            _address_list("To", to),
        ]
        if rng.random() < 0.1:
            lines.append(_address_list("Cc", rng.sample(pools.langs[0].people, 2)))
        lines += [
            _fold("Subject", _text_chunks(f"Re: {subject}" if parent else subject, utf8)),
            f"Date: {date}",
            f"Message-ID: {message_id}",
        ]
        references: tuple[str, ...] = ()
        if parent is not None:
            # RFC 5322, 3.6.4: the parent's References and its Message-ID; long
            # chains keep the first and the latest, as mail programs trim them.
            references = (*parent.references, parent.message_id)
            if len(references) > 10:
                references = (references[0], *references[-9:])
            lines.append(f"In-Reply-To: {parent.message_id}")
            lines.append(_fold("References", references))
        if sender.company and (utf8 or rng.random() < 0.3):
            lines.append(_fold("Organization", _text_chunks(sender.company, utf8)))
        if rng.random() < 0.5:
            lines.append(rng.choice(_MAILERS))
        if content.headers:
            lines.append("MIME-Version: 1.0")
            lines += content.headers
        head = "".join(f"{line}\r\n" for line in lines).encode()
        sent = _Sent(message_id, references, subject, sender, date, content.excerpt)
        return head + b"\r\n" + content.body, sent

    @staticmethod
    def _ip(rng: random.Random) -> str:
        net = rng.choice(("192.0.2", "198.51.100", "203.0.113"))  # RFC 5737 documentation nets
        return f"{net}.{rng.randint(1, 254)}"

    @staticmethod
    def _boundary(rng: random.Random) -> str:
        # "=_" cannot occur in quoted-printable or base64 text (RFC 2045, 6.7; RFC 2046, 5.1.1).
        return f"=_{rng.getrandbits(96):024x}"

    def _body(
        self, rng: random.Random, kind: str, lang: _Lang, target: int, sender: _Person, tail: str
    ) -> _Body:
        signature = ""
        if rng.random() < 0.4:
            signature = f"-- \n{sender.name}\n{sender.company}\n" if sender.company else ""
        if kind in ("plain", "utf8-headers"):
            return self._plain(rng, lang, target, signature, tail, mime=kind == "utf8-headers")
        if kind == "encoded-headers":
            return self._encoded(rng, lang, target, signature, tail)
        if kind == "html":
            return self._html(rng, lang, target, signature, tail)
        if kind == "attachments":
            return self._attachments(rng, lang, target, signature, tail)
        if kind == "long-lines":
            return self._long_lines(rng, lang, target, tail)
        if kind == "quoted-printable":
            return self._quoted_printable(rng, lang, target, tail)
        return self._dot_lines(rng, lang, target, tail)

    @staticmethod
    def _extras(signature: str, tail: str) -> bytes:
        extra = ""
        if signature:
            extra += "\n" + signature
        if tail:
            extra += "\n" + tail
        return extra.replace("\n", "\r\n").encode()

    def _text(
        self, rng: random.Random, lang: _Lang, room: int, signature: str, tail: str
    ) -> tuple[bytes, str]:
        """Wrapped paragraphs, then the signature and the quoted parent, in ``room`` octets."""
        extra = self._extras(signature, tail)
        text, first = _fill(
            rng, lang.paras, room - len(extra), lambda p: p.wrapped, _wrapped, b"\r\n"
        )
        return text + extra, first

    @staticmethod
    def _excerpt(first: str) -> tuple[str, ...]:
        return tuple(_wrap(first, 60)[:3])

    def _plain(
        self, rng: random.Random, lang: _Lang, target: int, signature: str, tail: str, mime: bool
    ) -> _Body:
        body, first = self._text(rng, lang, target, signature, tail)
        # Some plain ASCII mail carries no MIME header at all, as in RFC 822 days.
        if body.isascii() and not mime and rng.random() < 0.25:
            return _Body([], body, self._excerpt(first))
        return _Body(_text_headers(body), body, self._excerpt(first))

    def _encoded(
        self, rng: random.Random, lang: _Lang, target: int, signature: str, tail: str
    ) -> _Body:
        """A non-ASCII body the way mail without SMTPUTF8 sends it: base64 or quoted-printable."""
        if rng.random() < 0.5:
            # base64 turns 57 octets into a line of 76 characters and a CRLF.
            text, first = self._text(rng, lang, target * 57 // 78, signature, tail)
            return _Body(
                ['Content-Type: text/plain; charset="utf-8"', "Content-Transfer-Encoding: base64"],
                _b64(text),
                self._excerpt(first),
            )
        body, first = self._qp_text(rng, lang, target, signature, tail)
        return _Body(
            [
                'Content-Type: text/plain; charset="utf-8"',
                "Content-Transfer-Encoding: quoted-printable",
            ],
            body,
            self._excerpt(first),
        )

    def _qp_text(
        self, rng: random.Random, lang: _Lang, room: int, signature: str, tail: str
    ) -> tuple[bytes, str]:
        """Unwrapped paragraphs, quoted-printable: long lines become soft-broken ones."""
        extra = ""
        if signature:
            extra += "\n" + signature.rstrip("\n")
        if tail:
            extra += "\n" + tail.rstrip("\n")
        extra_qp = _qp(extra) if extra else b""
        text, first = _fill(
            rng, lang.paras, room - len(extra_qp), lambda p: p.qp + b"\r\n", _qp, b""
        )
        return text + extra_qp, first

    def _html(
        self, rng: random.Random, lang: _Lang, target: int, signature: str, tail: str
    ) -> _Body:
        boundary = self._boundary(rng)
        qp_html = [
            'Content-Type: text/html; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
        ]
        overhead = _multipart_overhead(boundary, [_text_headers(b""), qp_html])
        room = max(target - overhead, 0)
        text, first = self._text(rng, lang, room * 2 // 5, signature, tail)
        markup = self._markup(rng, lang, room - len(text), first, signature, tail)
        body = _multipart(boundary, [_part(_text_headers(text), text), _part(qp_html, markup)])
        headers = [f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"']
        return _Body(headers, body, self._excerpt(first))

    def _markup(
        self, rng: random.Random, lang: _Lang, room: int, first: str, signature: str, tail: str
    ) -> bytes:
        """The HTML twin of a text part, quoted-printable, about ``room`` octets."""
        head = _qp(
            '<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>'
            f"<p>{html.escape(first, quote=False)}</p>"
        )
        end = ""
        if signature:
            end += f'<div class="signature">{html.escape(signature).replace(chr(10), "<br>")}</div>'
        if tail:
            end += f"<blockquote>{html.escape(tail).replace(chr(10), '<br>')}</blockquote>"
        foot = _qp(end + "</body></html>")
        middle, _ = _fill(
            rng,
            lang.paras,
            room - len(head) - len(foot),
            lambda p: p.html_qp,
            lambda text: _qp(f"<p>{html.escape(text, quote=False)}</p>"),
        )
        return head + middle + foot

    def _attachments(
        self, rng: random.Random, lang: _Lang, target: int, signature: str, tail: str
    ) -> _Body:
        """multipart/mixed: a text (or text and HTML) part, an image or binary file, a CSV."""
        outer = self._boundary(rng)
        inner = self._boundary(rng) if rng.random() < 0.4 else ""
        word = rng.choice(lang.words)
        if rng.random() < 0.7:
            binary_name = rng.choice((f"IMG_{rng.randint(1000, 9999)}.png", f"{word}.png"))
            binary_type = "image/png"
        else:
            binary_name, binary_type = f"{word}.bin", "application/octet-stream"
        if binary_name.isascii():
            binary_type += f'; name="{binary_name}"'
        binary_headers = [
            f"Content-Type: {binary_type}",
            "Content-Transfer-Encoding: base64",
            _disposition(binary_name),
        ]
        csv_name = f"{rng.choice(lang.words)}-{rng.randint(2016, 2025)}.csv"
        csv_headers = [*_text_headers(b"", "csv"), _disposition(csv_name)]
        qp_html = [
            'Content-Type: text/html; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
        ]
        alternative_headers = [f'Content-Type: multipart/alternative;\r\n boundary="{inner}"']

        text_headers = alternative_headers if inner else _text_headers(b"")
        overhead = _multipart_overhead(outer, [text_headers, binary_headers, csv_headers])
        room = max(target - overhead, 0)

        if inner:
            text_room = room // 4 - _multipart_overhead(inner, [_text_headers(b""), qp_html])
            text, first = self._text(rng, lang, text_room * 2 // 5, signature, tail)
            markup = self._markup(rng, lang, text_room - len(text), first, signature, tail)
            parts = [_part(_text_headers(text), text), _part(qp_html, markup)]
            text_part = _part(alternative_headers, _multipart(inner, parts))
        else:
            text, first = self._text(rng, lang, room // 4, signature, tail)
            text_part = _part(_text_headers(text), text)
        csv_part = self._csv(rng, room // 5, csv_name)

        # The file takes what the other parts left; base64 turns 57 octets into a
        # line of 76 characters and a CRLF.
        binary_room = room - (len(text_part) - len(_part(text_headers, b""))) - len(csv_part)
        binary_room += len(_part(csv_headers, b""))
        raw_octets = max(binary_room * 57 // 78, 16)
        is_png = binary_type.startswith("image/png")
        binary = _png(rng, raw_octets) if is_png else rng.randbytes(raw_octets)
        parts = [text_part, _part(binary_headers, _b64(binary)), csv_part]
        headers = [f'Content-Type: multipart/mixed;\r\n boundary="{outer}"']
        return _Body(headers, _multipart(outer, parts), self._excerpt(first))

    def _csv(self, rng: random.Random, room: int, name: str) -> bytes:
        """A CSV attachment of about ``room`` octets: 7bit if ASCII, else base64."""
        people = self.pools.langs[0].people
        rows = [b"name,email,amount\r\n"]
        used = len(rows[0])
        while used < room or len(rows) < 2:
            person = rng.choice(people)
            amount = rng.randint(1, 99999) / 100
            rows.append(f'"{person.name}",{person.address},{amount:.2f}\r\n'.encode())
            used += len(rows[-1])
        csv = b"".join(rows)
        if csv.isascii():
            return _part([*_text_headers(csv, "csv"), _disposition(name)], csv)
        while len(rows) > 2 and used > room * 57 // 78:
            used -= len(rows.pop())
        headers = [
            'Content-Type: text/csv; charset="utf-8"',
            "Content-Transfer-Encoding: base64",
            _disposition(name),
        ]
        return _part(headers, _b64(b"".join(rows)))

    def _long_lines(self, rng: random.Random, lang: _Lang, target: int, tail: str) -> _Body:
        """Lines of 900 to 998 octets, one exactly 998, between wrapped paragraphs."""
        extra = self._extras("", tail)
        pieces: list[bytes] = []
        used = len(extra)
        lengths = [MAX_LINE_LENGTH]
        first = ""
        while True:
            length = lengths.pop() if lengths else rng.randint(900, MAX_LINE_LENGTH - 1)
            line = self._long_line(rng, lang, length)
            para = rng.choice(lang.paras)
            first = first or para.text
            piece = para.wrapped + b"\r\n" + line + b"\r\n\r\n"
            if pieces and used + len(piece) > target:
                break
            pieces.append(piece)
            used += len(piece)
        rest, _ = _fill(rng, lang.paras, target - used, lambda p: p.wrapped, _wrapped, b"\r\n")
        body = b"".join(pieces) + rest + extra
        return _Body(_text_headers(body), body, self._excerpt(first))

    @staticmethod
    def _long_line(rng: random.Random, lang: _Lang, length: int) -> bytes:
        """One line of exactly ``length`` octets of running text."""
        text = b""
        while len(text) < length:
            text += rng.choice(lang.paras).text.encode() + b" "
        # Cut at a character boundary, then pad with ASCII to the exact length.
        line = text[:length].decode("utf-8", "ignore").rstrip().encode()
        return line + b"x" * (length - len(line))

    def _quoted_printable(self, rng: random.Random, lang: _Lang, target: int, tail: str) -> _Body:
        """Long unwrapped paragraphs, "=" signs and a foreign sentence, quoted-printable."""
        foreign = rng.choice(self.pools.langs[1:])
        extra = f"{rng.choice(foreign.subjects)}\n\nx = {rng.randint(2, 99)} * y; 100% = done\n"
        extra_qp = _qp(extra)
        body, first = self._qp_text(rng, lang, target - len(extra_qp), "", tail)
        headers = [
            'Content-Type: text/plain; charset="utf-8"',
            "Content-Transfer-Encoding: quoted-printable",
        ]
        return _Body(headers, extra_qp + body, self._excerpt(first))

    def _dot_lines(self, rng: random.Random, lang: _Lang, target: int, tail: str) -> _Body:
        """Lines starting with "." (a lone one among them), which POP3 must byte-stuff."""
        block = "".join(f"{line}\r\n" for line in rng.choice(_DOT_BLOCKS)).encode()
        lead = b".\r\n" if rng.random() < 0.3 else b""
        end = b".\r\n" if rng.random() < 0.3 and not tail else b""
        extra = self._extras("", tail)
        room = target - len(lead) - len(block) - len(end) - len(extra) - 2
        text, first = _fill(rng, lang.paras, room, lambda p: p.wrapped, _wrapped, b"\r\n")
        body = lead + text + b"\r\n" + block + extra + end
        return _Body(_text_headers(body), body, self._excerpt(first))
