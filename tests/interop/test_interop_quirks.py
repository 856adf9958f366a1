"""Real clients against quirks and personas: they behave as against the real servers.

fetchmail 6.4 deletes with ``TOP n 99999999``; the Maillennium POP3 server cuts TOP short,
so fetchmail switches to RETR when the greeting names it (fetchmail's pop3.c). Against each
persona fetchmail fetches all the mail; qmail's blank line before the dot reaches the mail, and
Gmail hides what a session retrieved from the next.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from clients import PASSWORD, USER, Fetchmail, client_commands, printed
from pop3 import ServerFactory

from fakepop import POP3Server
from fakepop.personas import PERSONAS

pytestmark = pytest.mark.interop

# Long enough for the cut to fall inside the body.
MAIL = [f"Subject: {n}\r\n\r\n".encode() + b"a line of the body\r\n" * 40 for n in range(3)]
MAILLENNIUM = "greeting=Maillennium POP3/PROXY server #7"


def server_with(factory: ServerFactory, *quirks: str) -> POP3Server:
    return factory(users={USER: PASSWORD}, tls=False, quirks=list(quirks), messages=MAIL)


def test_fetchmail_takes_retr_from_a_maillennium_server(
    pop3_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_with(pop3_server_factory, MAILLENNIUM, "top-bytes=300")
    fetchmail = Fetchmail(tmp_path)
    result = fetchmail(server, keep=False)
    assert result.returncode == 0, f"{printed(result)}\n{server.transcript}"
    assert b'"Maillennium POP3" found, using RETR' in result.stdout + result.stderr
    assert fetchmail.delivered() == MAIL
    (commands,) = client_commands(server)
    assert commands.count("RETR") == len(MAIL)
    assert "TOP" not in commands


def test_fetchmail_trusts_a_cut_top_elsewhere(
    pop3_server_factory: ServerFactory, tmp_path: Path
) -> None:
    server = server_with(pop3_server_factory, "top-bytes=300")
    fetchmail = Fetchmail(tmp_path)
    result = fetchmail(server, keep=False)
    assert result.returncode == 0, f"{printed(result)}\n{server.transcript}"
    delivered = fetchmail.delivered()
    assert len(delivered) == len(MAIL)
    assert all(len(got) <= 302 < len(sent) for got, sent in zip(delivered, MAIL, strict=True))
    (commands,) = client_commands(server)
    assert commands.count("TOP") == len(MAIL)


@pytest.mark.parametrize("persona", PERSONAS)
def test_fetchmail_against_each_persona(
    pop3_server_factory: ServerFactory, tmp_path: Path, persona: str
) -> None:
    server = pop3_server_factory(users={USER: PASSWORD}, tls=False, persona=persona, messages=MAIL)
    fetchmail = Fetchmail(tmp_path)
    result = fetchmail(server, keep=True)
    assert result.returncode == 0, f"{printed(result)}\n{server.transcript}"
    # qmail's blank line before the dot reaches the mail: a client cannot tell it from the body.
    blank = b"\r\n" if persona == "qmail" else b""
    assert fetchmail.delivered() == [message + blank for message in MAIL]
    again = fetchmail(server, keep=True)
    if persona == "gmail":  # retrieved and QUIT: popped, so the next poll finds nothing
        assert again.returncode == 1, printed(again)
        assert fetchmail.delivered() == []
