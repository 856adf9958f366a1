"""fakepop: a fake POP3 server for tests, exact to the byte."""

from fakepop._version import __version__
from fakepop.control import ControlClient, ControlError
from fakepop.faults import FaultPlan, Rule
from fakepop.mail import Account, Mailbox, MailStore, Message
from fakepop.mail.generate import generate_messages, iter_messages
from fakepop.mail.loaders import load, load_eml, load_eml_dir, load_maildir, load_mbox
from fakepop.mail.maildir import MaildirMailbox
from fakepop.mail.message import LoadedMessage
from fakepop.protocol import Session, Settings, Transcript
from fakepop.server import POP3Server

__all__ = [
    "Account",
    "ControlClient",
    "ControlError",
    "FaultPlan",
    "LoadedMessage",
    "MailStore",
    "Mailbox",
    "MaildirMailbox",
    "Message",
    "POP3Server",
    "Rule",
    "Session",
    "Settings",
    "Transcript",
    "__version__",
    "generate_messages",
    "iter_messages",
    "load",
    "load_eml",
    "load_eml_dir",
    "load_maildir",
    "load_mbox",
]
