"""Personas: a real server's behaviour as a bundle of settings and quirks.

``POP3Server(persona="qmail")`` takes the persona's settings wherever the caller
gave none of its own (``POP3Server(persona="gmail", apop=True)`` offers APOP), and
its sessions apply the persona's quirks and the ``quirks`` given besides.
``expand`` does that resolution for every surface: POP3Server's keywords, and
``fakepop serve``'s flags, variables and file.

This module imports no other of fakepop's, and little of the standard library:
``fakepop.settings``, which the pytest plugin loads in every run, takes the persona names
from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Where each persona's behaviour is shown, named once for the lines that cite it.
MAILKIT = "MailKit's Gmail session, recorded in 2014 (UnitTests/Net/Pop3/Resources/gmail)"
QMAIL = "qmail 1.03 (https://github.com/notqmail/notqmail)"


@dataclass(frozen=True)
class Persona:
    """One server as fakepop plays it.

    Attributes:
        name: the persona's name, as ``persona=`` takes it.
        about: one line on the server.
        settings: field values of ``Settings`` and ``TLSOptions``, under any given explicitly.
        quirks: quirk specs its sessions apply.
        sources: for each thing it does, (what, the source showing the real server does it).
        missing: what the real server does that the persona does not (yet).
    """

    name: str
    about: str
    settings: Mapping[str, Any]
    quirks: tuple[str, ...]
    sources: tuple[tuple[str, str], ...]
    missing: tuple[str, ...] = ()


GMAIL = Persona(
    "gmail",
    "Gmail's POP3 (pop.gmail.com): Gpop, CAPA by state, XOAUTH2, no APOP",
    settings={
        "apop": False,
        "sasl": ("PLAIN", "XOAUTH2", "OAUTHBEARER"),
        "utf8": False,
        "expire": 0,
        "recent_prefix": True,
        "stls": False,
    },
    quirks=(
        "greeting=Gpop ready for requests from 127.0.0.1 fakepop",
        "capa-lines=USER,RESP-CODES,PIPELINING,EXPIRE,LOGIN-DELAY 300,TOP,UIDL,X-GOOGLE-RICO,SASL",
        "capa-by-state",
        "popped-on-retr",
        "oldest=250",
        "recent-days=30",
        "login-text=Welcome.",
        "quit-text=Farewell.",
        "login-failure-text=[AUTH] Username and password not accepted.",
        "list-text=message sizes follow",
        "uidl-text=UIDs follow",
        "retr-text=message follows",
        "top-text=message follows",
        "dele-text=",
        "noop-text=",
        "rset-text=",
    ),
    sources=(
        ('greets "+OK Gpop ready for requests from ADDRESS ID"', MAILKIT + ", greeting.txt"),
        (
            "CAPA before login lists SASL and no PIPELINING; after login PIPELINING and no SASL",
            MAILKIT + ", capa1.txt and capa2.txt",
        ),
        (
            "CAPA lists USER, RESP-CODES, EXPIRE 0, LOGIN-DELAY 300, TOP, UIDL, X-GOOGLE-RICO"
            " and SASL, in this order",
            MAILKIT + ", capa1.txt and capa2.txt; a capture of 2025 (Horde's pull request 36)",
        ),
        (
            "SASL PLAIN, XOAUTH2 and OAUTHBEARER; no APOP, no UTF8 or LANG",
            "a capture of 2025 in Horde's pull request adding XOAUTH2 to POP3"
            " (https://github.com/horde/Imap_Client/pull/36); " + MAILKIT + ", capa1.txt, has"
            " no OAUTHBEARER yet",
        ),
        ('"+OK Welcome." to a login, "+OK Farewell." to QUIT', MAILKIT + ", auth.txt and quit.txt"),
        (
            '"+OK message sizes follow" to LIST, "+OK UIDs follow" to UIDL, "+OK message'
            ' follows" to RETR and TOP, a bare "+OK" to DELE, NOOP and RSET',
            MAILKIT + ", list.txt, uidl.txt, retr1.txt, top.txt, dele.txt, noop.txt, rset.txt",
        ),
        (
            '"-ERR [AUTH] Username and password not accepted." to a wrong password',
            "quoted in Jakarta Mail's AuthenticationFailedException and KMail users' reports"
            " against pop.gmail.com",
        ),
        (
            "recent:user logs in to the last 30 days of mail, popped or not",
            "Limilabs' notes on Gmail's POP3 (http://www.limilabs.com/blog/gmail-pop3-behavior),"
            " after Gmail Help on recent mode (see the quirk recent-days)",
        ),
        ("POP3 on port 995 only, with implicit TLS: no STLS", "Gmail Help, POP settings"),
        (
            "mail RETR sent in a session that QUIT is popped: gone from later sessions without"
            " DELE, except in recent mode",
            "OpenPop.NET's developer, and Limilabs' notes on Gmail's POP3 (see the quirk"
            " popped-on-retr)",
        ),
        (
            "a session lists the oldest 250 or so not yet popped",
            'Gmail Help, "Why about 250 messages?" (see the quirk oldest)',
        ),
    ),
    missing=(
        "LOGIN-DELAY 300 is advertised, not enforced: whether Gmail enforces it is not"
        " documented (login_delay=300 would enforce it)",
        "recent: counts 30 days from when Gmail received the mail; here from its Date header",
        "the oldest 250 are conversations, not messages: here they are messages",
        "the greeting names the client's address and a session ID; here they are fixed",
    ),
)

QMAIL_PERSONA = Persona(
    "qmail",
    "qmail-popup and qmail-pop3d: no CAPA, terse replies, LF sizes, a blank line before the dot",
    settings={
        "sasl": (),
        "utf8": False,
        "last": True,
        "idle_timeout": 1200.0,
        "stls": False,
        "implicit_tls": False,
    },
    quirks=(
        "no-capa",
        "greeting=",
        "user-text=",
        "login-text=",
        "quit-text=",
        "login-failure-text=authorization failed",
        "list-text=",
        "uidl-text=",
        "retr-text=",
        "top-text=",
        "dele-text=",
        "noop-text=",
        "rset-text=",
        "drop-after-login-failure",
        "sizes-lf",
        "blank-before-dot",
    ),
    sources=(
        (
            "no CAPA: -ERR",
            QMAIL + ": neither qmail-popup.c's nor qmail-pop3d.c's command table has it",
        ),
        (
            'greets with the APOP timestamp alone: "+OK <pid.time@host>"',
            QMAIL + ": qmail-popup.c, pop3_greet()",
        ),
        (
            'USER, a login, QUIT, LIST, UIDL, RETR, TOP, DELE, NOOP and RSET answer "+OK "'
            " and nothing more",
            QMAIL + ": okay() in qmail-popup.c and qmail-pop3d.c",
        ),
        (
            '"-ERR authorization failed" to a refused login, then the connection ends',
            QMAIL + ": qmail-popup.c, doanddie()",
        ),
        (
            "STAT, LIST and RETR sizes are the Maildir file's, with LF line ends",
            QMAIL + ": qmail-pop3d.c, getlist() takes st_size",
        ),
        (
            "a blank line before the terminating dot of RETR and TOP",
            QMAIL + ": qmail-pop3d.c, blast(); qmail-pop3d(8) says it works around client bugs",
        ),
        (
            "LAST, and no SASL, STLS, UTF8 or implicit TLS",
            QMAIL + ": the command tables (STLS and SASL came only with patches)",
        ),
        (
            "a 20-minute idle timeout",
            QMAIL + ": qmail-pop3d.c, timeoutread(1200, ...); qmail-pop3d(8)",
        ),
    ),
    missing=(
        "no maildrop lock: two sessions at once both get the mail (fakepop locks)",
        'qmail\'s "+OK " ends in a space; an empty text here sends a bare "+OK"',
        "STAT counts deleted messages in its first number (fakepop counts the live ones)",
        'unknown commands get "-ERR authorization first" before login and "-ERR'
        ' unimplemented" after',
    ),
)

EXCHANGE_MAILKIT = (
    "MailKit's Exchange session, recorded in 2014 (UnitTests/Net/Pop3/Resources/exchange)"
)
EXCHANGE_2010 = (
    "an Exchange 2010 session in Microsoft's Remote Connectivity Analyzer's output, quoted in"
    " a troubleshooting article"
)

EXCHANGE = Persona(
    "exchange",
    "Microsoft Exchange Server's POP3 service, on premises: bare CAPA, a bare + to AUTH, no APOP",
    settings={"apop": False, "sasl": ("PLAIN", "LOGIN"), "utf8": False},
    quirks=(
        "greeting=The Microsoft Exchange POP3 service is ready.",
        "capa-bare-ok",
        "capa-lines=TOP,UIDL,SASL,USER",
        "sasl-bare-plus",
        "uidl-text=",
        "login-text=User successfully logged on.",
        "quit-text=Good-bye.",
        "login-failure-text=Logon failure: unknown user name or bad password.",
    ),
    sources=(
        (
            'greets "+OK The Microsoft Exchange POP3 service is ready." (a name may precede'
            ' "Microsoft")',
            EXCHANGE_MAILKIT + ", greeting.txt",
        ),
        (
            'a bare "+OK" begins the CAPA answer, which lists TOP, UIDL, SASL and USER alone',
            EXCHANGE_MAILKIT + ", capa.txt",
        ),
        (
            "SASL PLAIN and LOGIN (NTLM and GSSAPI too, which fakepop does not speak), no APOP",
            EXCHANGE_MAILKIT + ", capa.txt; " + EXCHANGE_2010 + " lists SASL PLAIN alone",
        ),
        ('a bare "+" as the empty SASL challenge', EXCHANGE_MAILKIT + ", plus.txt"),
        ('a bare "+OK" begins the UIDL listing', EXCHANGE_MAILKIT + ", uidl.txt"),
        (
            '"+OK User successfully logged on." to a login, "+OK Good-bye." to QUIT',
            EXCHANGE_MAILKIT + ', auth.txt and quit.txt; other captures show "+OK Microsoft'
            ' Exchange Server POP3 server signing off." (versions differ)',
        ),
        (
            '"-ERR Logon failure: unknown user name or bad password." to a wrong password',
            EXCHANGE_2010 + "; quoted in many client projects' code",
        ),
    ),
    missing=(
        "LIST sizes that differ from the octets RETR sends (reported by client projects; the"
        " amount is not documented)",
        'USER answers a bare "+OK"',
    ),
)

O365_CAPTURES = (
    "sessions with outlook.office365.com logged in vmime's issue 267 (2021,"
    " https://github.com/kisli/vmime/issues/267) and email-oauth2-proxy's issue 62 (2022,"
    " https://github.com/simonrob/email-oauth2-proxy/issues/62)"
)

OUTLOOK = Persona(
    "outlook",
    "Office 365 and Outlook.com (outlook.office365.com): Exchange Online, XOAUTH2 in two steps",
    settings={"apop": False, "sasl": ("PLAIN", "XOAUTH2"), "utf8": False},
    quirks=(
        # The bracket holds the serving machine's name, UTF-16 and base64: here a made-up one.
        "greeting=The Microsoft Exchange POP3 service is ready."
        " [RgBBAEsARQBQAE8AUAAwADEALgBwAHIAbwBkAC4AbwB1AHQAbABvAG8AawAuAGMAbwBtAA==]",
        "capa-bare-ok",
        "capa-lines=TOP,UIDL,SASL,USER",
        "xoauth2-two-step",
        "login-failure-text=Logon failure: unknown user name or bad password.",
        "login-limit=1000",
    ),
    sources=(
        (
            'greets "+OK The Microsoft Exchange POP3 service is ready. [NAME]", the name of'
            " the machine in UTF-16 and base64",
            O365_CAPTURES,
        ),
        (
            'a bare "+OK" begins the CAPA answer: TOP, UIDL, SASL PLAIN XOAUTH2, USER; no APOP',
            O365_CAPTURES,
        ),
        (
            "XOAUTH2 only in two steps: AUTH XOAUTH2, then the token after the +",
            "mpop's issue 11 (https://github.com/marlam/mpop/issues/11), Jakarta Mail's"
            " issue 461 (https://github.com/jakartaee/mail-api/issues/461), Microsoft's OAuth"
            " guide for POP",
        ),
        (
            '"-ERR Logon failure: unknown user name or bad password." to a refused login',
            "fdm's issue 123 (2023, https://github.com/nicm/fdm/issues/123), against Exchange"
            " Online",
        ),
        (
            "after about a thousand logins, the same refusal, for a while",
            "node-poplib's issue 34 (2020, https://github.com/ditesh/node-poplib/issues/34)",
        ),
    ),
    missing=(
        "on port 110 CAPA offers TOP, UIDL and STLS alone, USER and SASL only under TLS"
        " (Indy's issue 192): set require_tls=True, with tls",
        "throttling lifts after a while; here it lasts as long as the server (login-limit)",
        "basic authentication (USER, PASS, PLAIN) refused for most tenants since 2022-2023",
        "LIST sizes that differ from the octets RETR sends",
    ),
)

COURIER_SOURCE = "Courier's sources (https://github.com/svarshavchik/courier-libs)"

COURIER = Persona(
    "courier",
    "Courier Mail Server's pop3d: chatty texts, a 5-second wait after a wrong password",
    settings={"apop": False, "sasl": (), "auth_failure_delay": 5.0},
    quirks=(
        "greeting=Hello there.",
        "capa-text=Here's what I can do:",
        "capa-lines=SASL,STLS,TOP,USER,LOGIN-DELAY 10,PIPELINING,UIDL,UTF8,LANG,"
        "IMPLEMENTATION Courier Mail Server",
        "user-text=Password required.",
        "login-text=logged in.",
        "login-failure-text=Login failed.",
        "quit-text=Bye-bye.",
        "list-text=POP3 clients that break here, they violate STD53.",
        "uidl-text=",
        "retr-text={octets} octets follow.",
        "top-text=headers follow.",
        "dele-text=Deleted.",
        "noop-text=Yup.",
        "rset-text=Resurrected.",
    ),
    sources=(
        (
            'greets "+OK Hello there.", with no APOP timestamp; "+OK Password required." to'
            ' USER; "-ERR Login failed." five seconds after a wrong password',
            COURIER_SOURCE + ", imap/pop3login.C",
        ),
        (
            'CAPA begins "+OK Here\'s what I can do:", then SASL (only where POP3AUTH is set,'
            " which the default configuration leaves empty), STLS, TOP, USER, LOGIN-DELAY 10,"
            " PIPELINING, UIDL, UTF8 USER, LANG, IMPLEMENTATION Courier Mail Server",
            COURIER_SOURCE + ", imap/pop3dcapa.C and imap/pop3d.dist.in.git",
        ),
        (
            '"+OK logged in.", "+OK Bye-bye.", "+OK Deleted.", "+OK Yup." (NOOP), "+OK'
            ' Resurrected." (RSET), "+OK N octets follow." (RETR), "+OK headers follow." (TOP),'
            ' a bare "+OK" to UIDL and, to LIST, "+OK POP3 clients that break here, they'
            ' violate STD53."',
            COURIER_SOURCE + ", imap/pop3dserver.C",
        ),
    ),
    missing=(
        'QUIT before login answers "+OK Better luck next time."; here "+OK Bye-bye." as after',
        'a failed AUTH answers "-ERR Authentication failed."; here "-ERR Login failed." as PASS',
        "LOGIN-DELAY 10 is advertised, not enforced (login_delay=10 would enforce it)",
        'unknown commands answer "-ERR Invalid command."',
    ),
)

PERSONAS: dict[str, Persona] = {
    persona.name: persona for persona in (COURIER, EXCHANGE, GMAIL, OUTLOOK, QMAIL_PERSONA)
}
# Named by the issue that asked for personas, built later: a clear message until then.
PLANNED = ("zimbra", "dovecot", "yahoo")


def expand(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (field values given explicitly) over their persona's settings.

    Without a persona in ``values`` they are returned as they are. The persona's
    quirks are not merged into ``quirks``: a session applies both.
    """
    name = values.get("persona")
    if name is None or name not in PERSONAS:  # an unknown name is refused by the field
        return dict(values)
    return {**PERSONAS[name].settings, **values}
