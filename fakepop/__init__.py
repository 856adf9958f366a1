"""fakepop: a fake POP3 server for tests, exact to the byte.

The names below are imported when first used, so that loading the pytest plugin
(which every pytest run does wherever fakepop is installed) costs next to nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fakepop._version import __version__

if TYPE_CHECKING:
    from fakepop.control import ControlClient, ControlError
    from fakepop.mail import Account, Mailbox, MailStore, Message
    from fakepop.mail.generate import generate_messages, iter_messages
    from fakepop.mail.loaders import (
        load,
        load_eml,
        load_eml_dir,
        load_maildir,
        load_mbox,
        sample,
    )
    from fakepop.mail.maildir import MaildirMailbox
    from fakepop.mail.message import LoadedMessage
    from fakepop.protocol import Session, Transcript
    from fakepop.protocol.fault_plan import FaultPlan, Rule
    from fakepop.server import POP3Server, PortInUse
    from fakepop.settings import Settings, TLSOptions

_WHERE = {
    "Account": "fakepop.mail",
    "ControlClient": "fakepop.control",
    "ControlError": "fakepop.control",
    "FaultPlan": "fakepop.protocol.fault_plan",
    "LoadedMessage": "fakepop.mail.message",
    "MailStore": "fakepop.mail",
    "Mailbox": "fakepop.mail",
    "MaildirMailbox": "fakepop.mail.maildir",
    "Message": "fakepop.mail",
    "POP3Server": "fakepop.server",
    "PortInUse": "fakepop.server",
    "Rule": "fakepop.protocol.fault_plan",
    "Session": "fakepop.protocol",
    "Settings": "fakepop.settings",
    "TLSOptions": "fakepop.settings",
    "Transcript": "fakepop.protocol",
    "generate_messages": "fakepop.mail.generate",
    "iter_messages": "fakepop.mail.generate",
    "load": "fakepop.mail.loaders",
    "load_eml": "fakepop.mail.loaders",
    "load_eml_dir": "fakepop.mail.loaders",
    "load_maildir": "fakepop.mail.loaders",
    "load_mbox": "fakepop.mail.loaders",
    "sample": "fakepop.mail.loaders",
}

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
    "PortInUse",
    "Rule",
    "Session",
    "Settings",
    "TLSOptions",
    "Transcript",
    "__version__",
    "generate_messages",
    "iter_messages",
    "load",
    "load_eml",
    "load_eml_dir",
    "load_maildir",
    "load_mbox",
    "sample",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'fakepop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once found, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
