"""The command line: ``fakepop serve`` runs a server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from fakepop._version import __version__
from fakepop.mail.loaders import fixtures_dir, load_eml_dir
from fakepop.server import POP3Server

DEFAULT_PORT = 1110  # 110 needs root; 1110 is the usual unprivileged stand-in


def _account(text: str) -> tuple[str, str]:
    name, sep, password = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {text!r}")
    return name, password


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fakepop", description="A fake POP3 server for tests.")
    parser.add_argument("--version", action="version", version=f"fakepop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve the demo maildrop until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"POP3 port, 0 for any ({DEFAULT_PORT})"
    )
    serve.add_argument(
        "--user",
        type=_account,
        action="append",
        metavar="NAME:PASSWORD",
        help="an account, repeatable (default user:password, with the demo maildrop)",
    )
    return parser


def serve(args: argparse.Namespace) -> int:
    users = dict(args.user or [("user", "password")])
    server = POP3Server(users, host=args.host, port=args.port)
    demo = load_eml_dir(fixtures_dir() / "demo")
    for name in users:
        server.mailbox(name).extend(demo)
    try:
        server.start()
    except OSError as e:
        print(f"fakepop: {e.strerror or e}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    name, password = next(iter(users.items()))
    print(f"fakepop ready pop3={server.host}:{server.port}", flush=True)
    print(
        f"  curl:   curl -u {name}:{password} pop3://{server.host}:{server.port}/1\n"
        f"  poplib: p = poplib.POP3({server.host!r}, {server.port}); "
        f"p.user({name!r}); p.pass_({password!r}); p.list()",
        flush=True,
    )
    while not stop.wait(0.5):
        pass
    server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")  # serving is what a bare ``fakepop`` does
    args = _parser().parse_args(argv)
    return serve(args)
