"""Quirks: how real servers always depart from the RFCs, one field each.

A quirk is a standing behaviour (qmail's blank line before the dot, Exchange's
bare "+OK" to CAPA), not a scripted event: faults are those. Each is a field of
``Quirks``, whose metadata say its kebab-case name, what it does and the source
that shows a real server doing it; ``REGISTRY`` is made from them. A quirk is
given as its name (a switch), or ``name=value`` (a whole number or a text).

This module imports only the standard library: ``fakepop.settings`` checks
quirk specs with it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Parameter = Literal["none", "number", "text"]
SEPARATOR = ";"  # between quirks in one text (a variable, an ini line): a text may hold spaces


@dataclass(frozen=True)
class QuirkInfo:
    """One quirk as the registry describes it."""

    name: str
    parameter: Parameter
    help: str
    source: str

    @property
    def usage(self) -> str:
        """How it is written: ``no-capa``, ``top-bytes=N``, ``greeting=TEXT``."""
        return {"none": self.name, "number": f"{self.name}=N", "text": f"{self.name}=TEXT"}[
            self.parameter
        ]


def quirk(default: Any, help: str, source: str) -> Any:
    """A field of ``Quirks``: its help and the source showing a real server does it."""
    return field(default=default, metadata={"help": help, "source": source})


MAILKIT = "https://github.com/jstedfast/MailKit/blob/master/UnitTests/Net/Pop3/Resources"
QMAIL = "https://github.com/notqmail/notqmail/blob/master"


@dataclass(frozen=True)
class Quirks:
    """The quirks a session applies, one attribute each; all off by default.

    Build it with ``Quirks.parse(["no-capa", "top-bytes=512"])``.
    """

    # CAPA
    no_capa: bool = quirk(
        False,
        "CAPA is an unknown command: -ERR, and clients fall back to guessing",
        f"qmail-pop3d and qmail-popup have no CAPA ({QMAIL}/qmail-pop3d.c, commands table)",
    )
    capa_lines: str | None = quirk(
        None,
        "CAPA lists these lines, separated by commas, in this order: a bare tag fakepop"
        " offers (SASL, USER, UTF8, ...) is written as fakepop would write it, one it does"
        " not offer now is left out, any other line is sent as given (LOGIN-DELAY 300,"
        " X-GOOGLE-RICO): advertised, not enforced",
        f"Gmail's ({MAILKIT}/gmail/capa1.txt), Exchange's ({MAILKIT}/exchange/capa.txt) and"
        " Courier's (courier-libs, imap/pop3dcapa.C) CAPA answers, each its own list",
    )
    capa_bare_ok: bool = quirk(
        False,
        'the first line of the CAPA answer is a bare "+OK", with no text',
        f"Exchange's recorded CAPA answer ({MAILKIT}/exchange/capa.txt)",
    )
    capa_by_state: bool = quirk(
        False,
        "CAPA differs before and after login: PIPELINING only after, SASL only before",
        f"Gmail's recorded CAPA answers ({MAILKIT}/gmail/capa1.txt and capa2.txt)",
    )
    sasl_bare_plus: bool = quirk(
        False,
        'an empty SASL challenge is "+" with no space after it (RFC 5034 wants "+ ")',
        f"Exchange's recorded continuation ({MAILKIT}/exchange/plus.txt); Gmail sends"
        f' "+ " ({MAILKIT}/gmail/plus.txt)',
    )
    xoauth2_two_step: bool = quirk(
        False,
        "AUTH XOAUTH2 with the token on the same line is a failed login: the token must follow"
        ' the server\'s "+"',
        "Office 365 and Outlook.com, as client projects found: mpop"
        " (https://github.com/marlam/mpop/issues/11), Jakarta Mail"
        " (https://github.com/jakartaee/mail-api/issues/461); Microsoft's OAuth guide for"
        " POP shows the two steps",
    )
    # texts: everything after "+OK " or "-ERR ", response codes included; "" is a bare +OK
    greeting: str | None = quirk(
        None,
        'the greeting\'s text, after "+OK " (the APOP timestamp follows it when APOP is on)',
        f'qmail-popup greets with the timestamp alone ({QMAIL}/qmail-popup.c); Gmail "Gpop'
        f' ready for requests from ..." ({MAILKIT}/gmail/greeting.txt)',
    )
    user_text: str | None = quirk(
        None,
        "the text of USER's +OK",
        f'qmail-popup answers "+OK " with nothing after it ({QMAIL}/qmail-popup.c, okay())',
    )
    login_text: str | None = quirk(
        None,
        "the text of the +OK to a login (PASS, APOP or AUTH)",
        f'Gmail "Welcome." ({MAILKIT}/gmail/auth.txt), Exchange "User successfully logged'
        f' on." ({MAILKIT}/exchange/auth.txt)',
    )
    quit_text: str | None = quirk(
        None,
        "the text of QUIT's +OK",
        f'Gmail "Farewell." ({MAILKIT}/gmail/quit.txt), qmail "+OK " ({QMAIL}/qmail-pop3d.c)',
    )
    capa_text: str | None = quirk(
        None,
        "the text of CAPA's +OK",
        'Courier "Here\'s what I can do:" (https://github.com/svarshavchik/courier-libs,'
        " imap/pop3dcapa.C)",
    )
    list_text: str | None = quirk(
        None,
        "the text of the +OK that begins LIST's listing",
        f'Gmail "message sizes follow" ({MAILKIT}/gmail/list.txt); Courier "POP3 clients that'
        ' break here, they violate STD53." (courier-libs, imap/pop3dserver.C)',
    )
    uidl_text: str | None = quirk(
        None,
        "the text of the +OK that begins UIDL's listing",
        f'Gmail "UIDs follow" ({MAILKIT}/gmail/uidl.txt); Exchange and Courier a bare "+OK"'
        f" ({MAILKIT}/exchange/uidl.txt; courier-libs, imap/pop3dserver.C)",
    )
    retr_text: str | None = quirk(
        None,
        "the text of RETR's +OK; {octets} in it is the message's size",
        f'Gmail "message follows" ({MAILKIT}/gmail/retr1.txt); Courier "{{octets}} octets'
        ' follow." (courier-libs, imap/pop3dserver.C)',
    )
    top_text: str | None = quirk(
        None,
        "the text of TOP's +OK",
        f'Gmail "message follows" ({MAILKIT}/gmail/top.txt); Courier "headers follow."'
        " (courier-libs, imap/pop3dserver.C)",
    )
    dele_text: str | None = quirk(
        None,
        "the text of DELE's +OK",
        f'Gmail a bare "+OK" ({MAILKIT}/gmail/dele.txt); Courier "Deleted." (courier-libs,'
        " imap/pop3dserver.C)",
    )
    noop_text: str | None = quirk(
        None,
        "the text of NOOP's +OK",
        f'Gmail a bare "+OK" ({MAILKIT}/gmail/noop.txt); Courier "Yup." (courier-libs,'
        " imap/pop3dserver.C)",
    )
    rset_text: str | None = quirk(
        None,
        "the text of RSET's +OK",
        f'Gmail a bare "+OK" ({MAILKIT}/gmail/rset.txt); Courier "Resurrected." (courier-libs,'
        " imap/pop3dserver.C)",
    )
    login_failure_text: str | None = quirk(
        None,
        'the whole text of a refused login, after "-ERR " (write a response code in it,'
        " or leave it out)",
        f'qmail-popup "-ERR authorization failed" ({QMAIL}/qmail-popup.c); Gmail "-ERR [AUTH]'
        ' Username and password not accepted." (countless client reports)',
    )
    busy_text: str | None = quirk(
        None,
        "the whole text of a login refused because the maildrop is locked or the login too"
        ' soon, after "-ERR ": free text instead of [IN-USE] or [LOGIN-DELAY]',
        "RFC 2449, section 8.1: response codes are optional; servers before it (and many"
        " since) say it in words, which a client cannot tell from a wrong password",
    )
    login_limit: int | None = quirk(
        None,
        "after N logins to an account, each further one is refused as a wrong password is"
        " (with login-failure-text's text): a throttled account looks like a bad password",
        'Office 365, after about a thousand logins: "-ERR Logon failure: unknown user name or'
        ' bad password." until some time has passed (https://github.com/ditesh/node-poplib/issues/34)',
    )
    drop_after_login_failure: bool = quirk(
        False,
        "a refused login ends the connection: the client must connect again to retry",
        f"qmail-popup exits after checkpassword refuses ({QMAIL}/qmail-popup.c, doanddie())",
    )
    session_limit: int | None = quirk(
        None,
        "a connection ends N seconds after it began, busy or not: commands do not reset the"
        ' timer as they reset idle_timeout ("-ERR Session time limit reached", then close)',
        "WildDuck's POP3 server: its 60-second socket timeout is not reset by commands, so a"
        " client that keeps sending them is cut off (https://github.com/zone-eu/wildduck/issues/709,"
        " open); no big provider's cap is documented: the source is thin",
    )
    # sizes and framing
    sizes_lf: bool = quirk(
        False,
        "STAT, LIST and RETR count sizes with LF line ends: less than the octets RETR sends",
        f"qmail-pop3d reports the Maildir file's size, stored with LF ({QMAIL}/qmail-pop3d.c,"
        " getlist())",
    )
    sizes_kib: bool = quirk(
        False,
        "STAT, LIST and RETR round each size up to a whole KiB (1024 octets)",
        f"MailKit's recorded Comcast (Zimbra) LIST: every size a multiple of 1024"
        f" ({MAILKIT}/comcast/list.txt); the recording may be edited by hand: unconfirmed",
    )
    blank_before_dot: bool = quirk(
        False,
        "RETR and TOP add a blank line before the terminating dot",
        "qmail-pop3d(8): it appends an extra blank line to every message"
        f" ({QMAIL}/qmail-pop3d.c, blast())",
    )
    top_bytes: int | None = quirk(
        None,
        "TOP sends at most the first N octets of the message, whatever its line count",
        "fetchmail's pop3.c: the Maillennium POP3 server (Comcast, AT&T) truncates TOP after"
        ' 64 or 80 kB, so fetchmail uses RETR when the greeting says "Maillennium POP3"',
    )
    top_ignores_lines: bool = quirk(
        False,
        "TOP sends the whole message, whatever its line count",
        "Jakarta Mail's mail.pop3.disabletop, for servers that do not implement TOP properly"
        " (the com.sun.mail.pop3 package documentation)",
    )
    glued_dot: bool = quirk(
        False,
        'RETR sends a message stored without a final line end as it is, then ".\\r\\n":'
        " the dot ends its last line and no terminating line comes; sizes leave out the"
        " CRLF fakepop would add",
        "thin: no recording or report of a named server found; it is what a server that"
        ' writes the stored bytes and then ".\\r\\n" sends, where RFC 1939, section 3 wants'
        " the last line ended first",
    )
    # what a session sees of the maildrop
    popped_on_retr: bool = quirk(
        False,
        "a message RETR sent in a session that ends with QUIT is left out of later sessions,"
        " without DELE; a recent:user login (with recent_prefix) still sees it",
        "Gmail: RETR, not TOP, marks mail popped, and only when the session QUITs; recent"
        " mode shows the last 30 days all the same (OpenPop.NET's developer at"
        " https://w3toppers.com/what-non-standard-behaviour-features-does-gmail-exhibit-when-it-is-programmatically-used-as-a-pop3-server/;"
        " http://www.limilabs.com/blog/gmail-pop3-behavior)",
    )
    oldest: int | None = quirk(
        None,
        "a session sees only the oldest N messages (of those not popped); the rest wait for"
        " a later session",
        "Gmail lists the oldest 250 or so conversations not yet popped, per session (Gmail"
        ' Help, "Why about 250 messages?", quoted at'
        " https://stackguides.com/questions/4075109/sending-pop3-commands-to-gmail-returns-old-messages)",
    )
    recent_days: int | None = quirk(
        None,
        "a recent:user login (with recent_prefix) sees only the mail of the last N days, by"
        " its Date header (mail without one is shown), popped or not",
        "Gmail's recent mode shows the last 30 days of mail, whether popped or not (Gmail Help,"
        ' "recent mode"; http://www.limilabs.com/blog/gmail-pop3-behavior)',
    )
    # UIDL
    no_uidl: bool = quirk(
        False,
        "UIDL is an unknown command: -ERR, and it is not in CAPA (RFC 1939 makes it optional)",
        "RFC 1939, section 7: UIDL is optional, and clients keep a way to work without it"
        " (fetchmail's LAST and message-id fallbacks)",
    )
    uidl_blank: bool = quirk(
        False,
        'UIDL lines have no unique-id: "1 " and nothing after it',
        'getmail\'s troubleshooting page, "failed to identify message in UIDL output", and its'
        " BrokenUIDLPOP3Retriever (https://getmail6.org/troubleshooting.html)",
    )
    uidl_duplicate: bool = quirk(
        False,
        "each even-numbered message has the unique-id of the message before it",
        "getmail's troubleshooting page: a server's UIDL \"does not uniquely identify"
        ' messages" (https://getmail6.org/troubleshooting.html)',
    )
    uidl_long: bool = quirk(
        False,
        "unique-ids of more than 70 characters, which RFC 1939, section 7 forbids",
        "RFC 1939, section 7 limits unique-ids to 70 characters; clients size buffers by it"
        " (fetchmail's IDLEN is 128)",
    )
    uidl_per_session: bool = quirk(
        False,
        "unique-ids change in every session, so a client refetches everything",
        "getmail's BrokenUIDLPOP3Retriever, for servers whose unique-ids do not last from one"
        " session to the next (https://getmail6.org/configuration.html)",
    )

    @classmethod
    def parse(cls, specs: Iterable[str]) -> Quirks:
        """The quirks ``specs`` name ("no-capa", "top-bytes=512", "greeting=Hi there").

        Raises:
            ValueError: an unknown name (with the nearest), or a value the quirk cannot take.
        """
        values: dict[str, Any] = {}
        for spec in specs:
            info, value = check(spec)
            values[info.name.replace("-", "_")] = value
        return cls(**values)


def _registry() -> dict[str, QuirkInfo]:
    kinds: dict[Any, Parameter] = {"bool": "none", "int | None": "number", "str | None": "text"}
    infos = {}
    for item in dataclasses.fields(Quirks):
        name = item.name.replace("_", "-")
        infos[name] = QuirkInfo(
            name, kinds[item.type], item.metadata["help"], item.metadata["source"]
        )
    return infos


REGISTRY: dict[str, QuirkInfo] = _registry()


def check(spec: str) -> tuple[QuirkInfo, Any]:
    """The quirk ``spec`` names and its value (True for a switch).

    Raises:
        ValueError: saying what to write instead.
    """
    name, sep, value = spec.partition("=")
    name = name.strip()
    info = REGISTRY.get(name)
    if info is None:
        near = difflib.get_close_matches(name, REGISTRY, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ValueError(
            f"unknown quirk {name!r}{hint} The quirks: {', '.join(REGISTRY)}"
            " (fakepop personas --quirks says what each does)"
        )
    if info.parameter == "none":
        if sep:
            raise ValueError(f"quirk {name} takes no value: write {name}")
        return info, True
    if not sep:
        raise ValueError(f"quirk {name} needs a value: write {info.usage}")
    if info.parameter == "number":
        if not (value.isascii() and value.isdigit() and int(value) > 0):
            raise ValueError(f"quirk {name} needs a whole number over 0: {name}=N, not {value!r}")
        return info, int(value)
    if "\r" in value or "\n" in value:
        raise ValueError(f"quirk {name}'s text must be on one line")
    return info, value


def canonical(spec: str) -> str:
    """``spec`` checked and written one way: "top-bytes=0512" is "top-bytes=512"."""
    info, value = check(spec)
    return info.name if info.parameter == "none" else f"{info.name}={value}"


def split(text: str) -> list[str]:
    """The quirk specs of one text (a variable, an ini line), separated by ``SEPARATOR``."""
    return [item.strip() for item in text.split(SEPARATOR) if item.strip()]
