"""The POP3 protocol without I/O: a session takes bytes and gives back replies and actions.

Nothing in this package imports socket, ssl or threading.
"""

from fakepop.protocol.actions import CLOSE, Action, Close, Reply
from fakepop.protocol.commands import Command, State
from fakepop.protocol.session import COMMANDS, Session, apop_digest
from fakepop.protocol.transcript import SessionTranscript, Transcript
from fakepop.settings import Settings

__all__ = [
    "CLOSE",
    "COMMANDS",
    "Action",
    "Close",
    "Command",
    "Reply",
    "Session",
    "SessionTranscript",
    "Settings",
    "State",
    "Transcript",
    "apop_digest",
]
