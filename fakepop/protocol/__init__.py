"""The POP3 protocol without I/O: a session takes bytes and gives back replies and actions.

Nothing in this package imports socket, ssl or threading.
"""

from fakepop.protocol.commands import COMMANDS, Command, State
from fakepop.protocol.events import CLOSE, Close, Event, Reply
from fakepop.protocol.session import Session, apop_digest
from fakepop.protocol.transcript import SessionTranscript, Transcript
from fakepop.settings import Settings

__all__ = [
    "CLOSE",
    "COMMANDS",
    "Close",
    "Command",
    "Event",
    "Reply",
    "Session",
    "SessionTranscript",
    "Settings",
    "State",
    "Transcript",
    "apop_digest",
]
