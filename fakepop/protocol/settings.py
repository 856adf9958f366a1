"""What a server is configured to offer: read by the session to answer and to build CAPA."""

from __future__ import annotations

from dataclasses import dataclass

from fakepop.protocol.sasl import MECHANISMS

MAX_LINE_LENGTH = 4096  # RFC 2449 asks clients for 255 octets; long XOAUTH2 lines need more
MAX_SASL_LENGTH = 16384  # a base64 SASL line: OAuth tokens run to a few KiB
MAX_BAD_COMMANDS = 20  # as Dovecot: then the server says so and closes
IDLE_TIMEOUT = 600.0  # RFC 1939, section 3: an autologout timer of at least 10 minutes


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Protocol settings of one server; every field has the default a real server would use."""

    hostname: str = "localhost"  # in the APOP timestamp of the greeting
    max_line_length: int = MAX_LINE_LENGTH
    max_sasl_length: int = MAX_SASL_LENGTH  # an AUTH line or SASL response, in octets
    max_bad_commands: int = MAX_BAD_COMMANDS
    idle_timeout: float = IDLE_TIMEOUT
    expire: int | None = None  # days a retrieved message is kept; None advertises EXPIRE NEVER
    login_delay: int | None = None  # seconds between logins, advertised and enforced
    user_login: bool = True  # USER/PASS offered
    apop: bool = True  # APOP offered: the greeting then carries a timestamp
    utf8: bool = True  # RFC 6856 UTF8 offered
    languages: tuple[tuple[str, str], ...] = (("en", "English"),)  # RFC 6856 LANG: tag, name
    last: bool = False  # RFC 1081's LAST, for old clients
    require_tls: bool = False  # refuse plaintext logins before TLS, and do not offer them
    sasl: tuple[str, ...] = tuple(MECHANISMS)  # AUTH mechanisms offered, in CAPA's order
    domains: tuple[str, ...] = ()  # virtual domains: "user@domain" logs in as "user"
    recent_prefix: bool = False  # accept Gmail's "recent:user" login names
    auth_failure_delay: float = 0.0  # seconds before answering a failed login (Dovecot: 2)
    max_auth_failures: int | None = None  # failed logins before the server hangs up

    def __post_init__(self) -> None:
        if self.max_line_length < 255:
            raise ValueError("max_line_length must be at least 255, the length RFC 2449 allows")
        if self.max_sasl_length < 255:
            raise ValueError("max_sasl_length must be at least 255 octets")
        if self.max_bad_commands < 1:
            raise ValueError("max_bad_commands must be at least 1")
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be a positive number of seconds")
        if not self.languages:
            raise ValueError("languages needs at least one (tag, name) pair")
        unknown = [name for name in self.sasl if name not in MECHANISMS]
        if unknown:
            raise ValueError(
                f"unknown SASL mechanism {', '.join(unknown)}; known: {', '.join(MECHANISMS)}"
            )
        if self.auth_failure_delay < 0:
            raise ValueError("auth_failure_delay must not be negative")
        if self.max_auth_failures is not None and self.max_auth_failures < 1:
            raise ValueError("max_auth_failures must be at least 1, or None for no limit")
