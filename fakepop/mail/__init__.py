"""Messages, maildrops and the accounts that own them."""

from fakepop.mail.message import Message
from fakepop.mail.store import Account, Mailbox, MaildropError, MailStore

__all__ = ["Account", "MailStore", "Mailbox", "MaildropError", "Message"]
