"""The command line: ``fakepop serve`` runs a server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from fakepop._version import __version__
from fakepop.mail.generate import iter_messages
from fakepop.mail.loaders import fixtures_dir, load_eml_dir, mboxrd_entry
from fakepop.mail.maildir import MaildirMailbox
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
    make = commands.add_parser(
        "generate", help="write realistic test mail, the same for the same seed"
    )
    make.add_argument("--count", type=_count, required=True, help="how many messages")
    make.add_argument("--seed", type=int, default=0, help="the seed (0)")
    make.add_argument("--locale", default="en_US", help="the Faker locale (en_US)")
    make.add_argument(
        "--format",
        choices=("eml", "mbox", "maildir"),
        default="eml",
        help="a directory of .eml files, an mbox file (mboxrd) or a Maildir (eml)",
    )
    make.add_argument("--out", type=Path, required=True, help="where to write them")
    return parser


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of messages, got {text!r}")
    return count


def generate(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.format != "mbox" and out.exists() and any(out.iterdir()):
        print(f"fakepop: {out} is not empty; give a new or empty directory", file=sys.stderr)
        return 1
    try:
        messages = iter_messages(args.count, seed=args.seed, locale=args.locale)
    except ValueError as e:
        print(f"fakepop: {e}", file=sys.stderr)
        return 2
    if args.format == "eml":
        out.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(args.count)))
        for number, raw in enumerate(messages, 1):
            (out / f"{number:0{width}}.eml").write_bytes(raw)
    elif args.format == "mbox":
        with out.open("wb") as mbox:
            for raw in messages:
                mbox.write(mboxrd_entry(raw))
    else:
        MaildirMailbox(out).extend(messages)
    print(f"wrote {args.count} messages to {out} ({args.format})")
    return 0


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
    if args.command == "generate":
        return generate(args)
    return serve(args)
