"""The HTTP control API of a running server, and a client for it.

``api`` holds the routes and ``ControlServer``, ``http`` the HTTP plumbing they are served
with, ``client`` the Python client and the shapes of its answers. All of it uses only the
standard library. ``openapi.json``, beside this file, describes every route.
"""

from fakepop.control.api import ROUTES, ControlServer, rule_data
from fakepop.control.client import (
    PREFIX,
    AccountSummary,
    ApiIndex,
    ControlClient,
    ControlError,
    Endpoint,
    FaultReport,
    Fired,
    Health,
    MaildropReport,
    MessageSummary,
    RuleData,
    SettingsData,
    TranscriptLine,
    TranscriptReport,
    TranscriptSession,
)
from fakepop.control.http import ApiError, Request, Response, Route, is_loopback

__all__ = [
    "PREFIX",
    "ROUTES",
    "AccountSummary",
    "ApiError",
    "ApiIndex",
    "ControlClient",
    "ControlError",
    "ControlServer",
    "Endpoint",
    "FaultReport",
    "Fired",
    "Health",
    "MaildropReport",
    "MessageSummary",
    "Request",
    "Response",
    "Route",
    "RuleData",
    "SettingsData",
    "TranscriptLine",
    "TranscriptReport",
    "TranscriptSession",
    "is_loopback",
    "rule_data",
]
