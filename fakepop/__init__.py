"""fakepop: a fake POP3 server for tests, exact to the byte."""

from fakepop._version import __version__
from fakepop.mail import Account, Mailbox, MailStore, Message
from fakepop.protocol import Session, Settings, Transcript
from fakepop.server import POP3Server

__all__ = [
    "Account",
    "MailStore",
    "Mailbox",
    "Message",
    "POP3Server",
    "Session",
    "Settings",
    "Transcript",
    "__version__",
]
