"""The command line: ``fakepop serve`` runs a server until SIGINT or SIGTERM.

``fakepop ca`` writes a CA for ``serve --cert-dir`` to use; ``fakepop generate`` writes test mail.
The settings of ``serve`` and their environment variables are in ``fakepop.config``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from fakepop._version import __version__
from fakepop.config import (
    OPTION,
    OPTIONS,
    ConfigError,
    ServeConfig,
    output_from_environment,
    resolve,
    unknown_variables,
)
from fakepop.control import ControlServer
from fakepop.log import LOG_FORMATS, SessionLog
from fakepop.mail.fill import MailItem, add_mail
from fakepop.mail.generate import FakerMissing, iter_messages
from fakepop.mail.loaders import load_eml_dir, mboxrd_entry, sample
from fakepop.mail.maildir import MaildirMailbox
from fakepop.mail.manifest import ManifestError, load_manifest
from fakepop.personas import PERSONAS, PLANNED
from fakepop.protocol.fault_plan import FaultError
from fakepop.protocol.quirks import REGISTRY
from fakepop.server import POP3Server, PortInUse
from fakepop.settings import FIELDS, SECTIONS
from fakepop.tls import CA_CERT, CA_KEY, Authority, AuthorityError, default_authority

DEMO_USER = ("user", "password")
_WILDCARDS = ("0.0.0.0", "::", "")


class SetupError(Exception):
    """A file or setting that the server cannot be set up from; exit 2 with the message."""


def _parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="fakepop", description="A fake POP3 server for tests.")
    parser.add_argument("--version", action="version", version=f"fakepop {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve mail until interrupted (the demo maildrop unless told otherwise)",
        description="Serve POP3 (with STLS) and POP3S until SIGINT or SIGTERM. With no"
        " accounts given it serves the demo maildrop to user / password.",
        epilog="Every flag but -q can also be set by an environment"
        " variable, FAKEPOP_ and the flag (-v: FAKEPOP_VERBOSE=1, -vv: 2)"
        " in capitals (--tls-port: FAKEPOP_TLS_PORT; switches take 1 or 0), or as a key of the"
        " --config file (tls_port = 1995; the server's settings in its [server] table too). A"
        " flag beats its variable, which beats the file; --user, --mailbox and the repeatable"
        " settings (--tls-name, --sasl, ...) add up from all three. -v and --log-format have"
        " no key in the file.",
    )
    groups = {section: serve.add_argument_group(section) for section in SECTIONS}
    for option in OPTIONS:
        group = groups[option.section]
        names = [option.flag, *("--" + old.replace("_", "-") for old in option.aliases)]
        if option.switch:
            group.add_argument(
                *names,
                dest=option.key,
                # A field's switch may need turning off (--no-apop); serve's own may not.
                action=argparse.BooleanOptionalAction if option.field else "store_true",
                default=argparse.SUPPRESS,
                help=option.help,
            )
        else:
            group.add_argument(
                *names,
                dest=option.key,
                type=_checked(option.parse),
                action="append" if option.repeat else "store",
                metavar=option.metavar,
                default=argparse.SUPPRESS,
                help=option.help,
            )
    # Serve's own output, not the server's behaviour: flags only, like --json's ready line.
    output = groups[SECTIONS[0]]
    output.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=None,
        help="print a line per session to stderr as it ends; -vv also every line both ways"
        " (passwords masked)",
    )
    output.add_argument(
        "-q", "--quiet", action="store_true", help="print the ready line only, not the hints"
    )
    output.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="how -v writes: text, or one JSON object a line for log collectors (text)",
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
        help="a directory of .eml files, an mbox file (mboxrd) or a Maildir (eml); with"
        " --out -, the message itself for --count 1, else an mbox",
    )
    make.add_argument("--out", required=True, help="where to write them; - for standard output")
    ca = commands.add_parser(
        "ca",
        help="write a CA (ca.pem, ca.key) for serve --cert-dir; keep the one found there",
        description="Write the CA certificate and key that serve --cert-dir DIR uses, so that"
        " clients can be told to trust ca.pem before the server starts.",
    )
    ca.add_argument("--out", type=Path, required=True, metavar="DIR", help="the directory")
    personas = commands.add_parser(
        "personas",
        help="list the personas (real servers fakepop can behave like), or the quirks",
        description="List the personas --persona takes; with a NAME, what that persona sets,"
        " its quirks and the source of each thing it does; with --quirks, every quirk --quirks"
        " takes.",
    )
    personas.add_argument("name", nargs="?", metavar="NAME", help="the persona to describe")
    personas.add_argument(
        "--quirks", action="store_true", help="list the quirks: name, what it does, source"
    )
    for command in (serve, make, ca, personas):
        command.set_defaults(command_parser=command)  # for a mistyped flag's hint
    return parser, serve


def _checked(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag's parser as an argparse type: its ValueError becomes a usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of messages, got {text!r}")
    return count


def _fail(message: str, code: int = 1) -> int:
    print(f"fakepop: {message}", file=sys.stderr)
    return code


# --- fakepop generate ----------------------------------------------------------------------


def _generated(args: argparse.Namespace) -> Iterator[bytes] | int:
    """The messages ``generate`` asks for, or the exit code of a message saying what is wrong."""
    try:
        return iter_messages(args.count, seed=args.seed, locale=args.locale)
    except FakerMissing as e:
        return _fail(str(e))
    except ValueError as e:
        return _fail(str(e), 2)


def generate(args: argparse.Namespace) -> int:
    if args.out == "-":
        return _generate_to_stdout(args)
    out = Path(args.out)
    form = args.format or "eml"
    if form != "mbox" and out.exists():
        if not out.is_dir():
            return _fail(f"{out} is a file; --format {form} writes a directory")
        if any(out.iterdir()):
            return _fail(f"{out} is not empty; give a new or empty directory")
    if form == "mbox" and out.is_dir():
        return _fail(f"{out} is a directory; --format mbox writes a file")
    messages = _generated(args)
    if isinstance(messages, int):
        return messages
    try:
        if form == "eml":
            out.mkdir(parents=True, exist_ok=True)
            width = max(4, len(str(args.count)))
            for number, raw in enumerate(messages, 1):
                (out / f"{number:0{width}}.eml").write_bytes(raw)
        elif form == "mbox":
            with out.open("wb") as mbox:
                for raw in messages:
                    mbox.write(mboxrd_entry(raw))
        else:
            MaildirMailbox(out).extend(messages)
    except OSError as e:
        where = e.filename or out
        return _fail(f"cannot write {where}: {e.strerror or e}; give --out a place you can write")
    print(f"wrote {args.count} messages to {out} ({form})")
    return 0


def _generate_to_stdout(args: argparse.Namespace) -> int:
    """``--out -``: one message as it is, or an mbox; only the mail on stdout, for a pipe."""
    single = args.count == 1 and args.format != "mbox"
    if args.format == "maildir" or (args.format == "eml" and not single):
        return _fail(
            f"--out - writes one message (--count 1) or an mbox, not --format {args.format}:"
            " give --format mbox, or a directory to --out",
            2,
        )
    messages = _generated(args)
    if isinstance(messages, int):
        return messages
    out = sys.stdout.buffer
    try:
        for raw in messages:
            out.write(raw if single else mboxrd_entry(raw))
        out.flush()
    except BrokenPipeError:  # the reader had enough (| head): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second complaint
    return 0


# --- the CA --------------------------------------------------------------------------------


def ca_command(args: argparse.Namespace) -> int:
    made = not (args.out / CA_CERT).exists()
    try:
        cert = Authority.load_or_create(args.out).ca_pem
    except AuthorityError as e:
        return _fail(str(e), 2)
    state = "made" if made else "already there, kept"
    print(f"CA certificate {cert} ({state}); its key {cert.with_name(CA_KEY)}")
    print(f"serve with it: fakepop serve --cert-dir {shlex.quote(str(args.out))}")
    return 0


# --- fakepop serve -------------------------------------------------------------------------


def build_server(config: ServeConfig) -> tuple[POP3Server, Path | None]:
    """The server ``config`` describes, not yet started, and the path of its CA certificate."""
    authority: Authority | None = None
    ca_path: Path | None = None
    if config.tls is not None and config.tls.certificate is None:
        try:
            if config.cert_dir is not None:
                authority = Authority.load_or_create(config.cert_dir)
            else:
                authority = default_authority()
        except AuthorityError as e:
            raise SetupError(str(e)) from e
        ca_path = authority.ca_pem
    try:
        server = POP3Server(settings=config.settings, tls=config.tls or False, authority=authority)
    except (OSError, ValueError) as e:
        raise SetupError(str(e)) from e
    return server, ca_path


def populate(server: POP3Server, config: ServeConfig) -> None:
    """Give ``server`` the accounts, mail and faults that ``config`` asks for.

    With no account named anywhere, the account user / password gets the demo maildrop
    (or the mail given for it). Mail already in a ``--maildir`` maildrop is not added again,
    so a server restarted on the same directory does not serve it twice.

    Raises:
        SetupError: a file that cannot be read or used, saying which.
    """
    if config.manifest is not None:
        try:
            fixtures = load_manifest(config.manifest)
        except ManifestError as e:
            raise SetupError(f"--manifest: {e}") from e
        for name, fixture in fixtures.items():
            _add_account(server, name, fixture.password)
            _add_mail(server, name, fixture.messages, f"mail for {name!r}")
    for name, password in config.users.items():
        _add_account(server, name, password)
    demo = not server.users
    if demo:
        _add_account(server, *DEMO_USER)
    for name, path in config.mailboxes:
        if name not in server.users:
            raise SetupError(
                f"--mailbox {name}={path}: there is no account {name}; add --user {name}:PASSWORD"
            )
        _add_mail(server, name, [path], f"--mailbox {name}={path}")
    if demo and not config.mailboxes and not config.generate:
        _add_mail(server, DEMO_USER[0], load_eml_dir(sample("demo")), "the demo mail")
    if config.generate:
        try:
            made = list(iter_messages(config.generate, seed=config.seed, locale=config.locale))
        except (ValueError, FakerMissing) as e:
            raise SetupError(f"--generate: {e}") from e
        for name in list(server.users):
            _add_mail(server, name, made, f"mail for {name!r}")
    try:
        if config.fault_file is not None:
            server.faults.load(config.fault_file)
        if config.fault_rules:
            server.faults.extend(config.fault_rules, config.fault_source)
    except FaultError as e:
        raise SetupError(f"faults: {e}") from e


def _add_account(server: POP3Server, name: str, password: str) -> None:
    try:
        server.users[name] = password
    except OSError as e:  # its Maildir under --maildir cannot be made
        where = f" {e.filename}" if e.filename else ""
        raise SetupError(
            f"account {name!r}: cannot make its Maildir{where}: {e.strerror or e};"
            " give --maildir a directory you can write"
        ) from e
    except ValueError as e:
        raise SetupError(f"account {name!r}: {e}") from e


def _add_mail(server: POP3Server, name: str, items: Iterable[MailItem], where: str) -> None:
    try:
        add_mail(server.mailbox(name), items)
    except (OSError, ValueError) as e:
        raise SetupError(f"{where}: {e}") from e


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dial(host: str) -> str:
    """The address a client on this machine dials to reach a listener bound to ``host``."""
    if host in _WILDCARDS:
        return "::1" if host == "::" else "127.0.0.1"
    return host


def ready_info(
    server: POP3Server, control: ControlServer | None, ca_path: Path | None
) -> dict[str, Any]:
    """Where everything listens: the ``--json`` ready line's object."""

    def listener(port: int, url: str) -> dict[str, Any]:
        return {"host": server.host, "port": port, "url": url}

    return {
        "pop3": listener(server.port, server.url),
        "pop3s": None if server.tls_port is None else listener(server.tls_port, server.tls_url),
        "control": None
        if control is None
        else {"host": control.host, "port": control.port, "url": control.url},
        "ca": None if ca_path is None else str(ca_path),
    }


def ready_line(info: dict[str, Any]) -> str:
    words = ["fakepop ready", f"pop3={_netloc(info['pop3']['host'], info['pop3']['port'])}"]
    if info["pop3s"]:
        words.append(f"pop3s={_netloc(info['pop3s']['host'], info['pop3s']['port'])}")
    if info["control"]:
        words.append(f"control={info['control']['url']}")
    if info["ca"]:
        words.append(f"ca={info['ca']}")
    return " ".join(words)


def how_to_connect(server: POP3Server, info: dict[str, Any], config: ServeConfig) -> list[str]:
    """Lines a person can paste to try the server."""
    name = next(iter(server.users), None)
    if name is None:
        return ["  no accounts yet: add one with --user NAME:PASSWORD"]
    password = server.users[name]
    host = _dial(server.host)
    credentials = shlex.quote(f"{name}:{password}")
    count = len(server.mailbox(name))
    others = len(server.users) - 1
    lines = [
        f"  account   {name} / {password}: {count} messages"
        + (f" (and {others} more account{'s' if others > 1 else ''})" if others else "")
    ]
    ca = info["ca"]
    plain = f"pop3://{_netloc(host, server.port)}/1"
    if config.require_tls and ca:
        lines.append(
            f"  curl      curl --cacert {shlex.quote(ca)} --ssl-reqd -u {credentials} {plain}"
        )
    else:
        lines.append(f"  curl      curl -u {credentials} {plain}")
    if server.tls_port is not None and ca:
        secure = f"pop3s://{_netloc(host, server.tls_port)}/1"
        lines.append(f"  curl TLS  curl --cacert {shlex.quote(ca)} -u {credentials} {secure}")
        lines.append(
            f"  poplib    import poplib, ssl; p = poplib.POP3_SSL({host!r}, {server.tls_port},"
            f" context=ssl.create_default_context(cafile={ca!r})); p.user({name!r});"
            f" p.pass_({password!r}); print(p.stat()); p.quit()"
        )
    else:
        lines.append(
            f"  poplib    import poplib; p = poplib.POP3({host!r}, {server.port});"
            f" p.user({name!r}); p.pass_({password!r}); print(p.stat()); p.quit()"
        )
    if ca:
        lines.append(f"  CA        {ca} (clients trust this to check the certificate)")
    if info["control"]:
        lines.append(f"  control   curl {info['control']['url']}/health")
    lines.append("  stop with Ctrl-C")
    return lines


def _port_in_use(error: PortInUse, flag: str) -> str:
    return (
        f"port {error.port} on {error.host} is already in use ({flag}); pick another,"
        f" or {flag} 0 for any free port"
    )


def serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    for name in unknown_variables(os.environ):
        print(
            f"fakepop: ignoring {name}: no such setting (see fakepop serve --help)", file=sys.stderr
        )
    flags = {key: value for key, value in vars(args).items() if key in OPTION}
    try:
        config = resolve(flags)
        verbose, log_format = output_from_environment(os.environ)
    except ConfigError as e:
        parser.error(str(e))
    # A flag beats its variable, as for every setting.
    verbose = args.verbose if args.verbose is not None else verbose or 0
    log_format = args.log_format or log_format or "text"

    # Handlers first: a SIGTERM while mail is loading still ends the process cleanly.
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        server, ca_path = build_server(config)
        populate(server, config)
        server.checkpoint()  # what POST /reset puts back
        control = None
        if config.control_port is not None:
            control = ControlServer(
                server,
                config.control_host,
                config.control_port,
                token=config.control_token,
                insecure=config.control_insecure,
                reset=server.restore,
            )
    except SetupError as e:
        return _fail(str(e), 2)
    except ValueError as e:  # the control API refused a non-loopback address
        return _fail(str(e), 2)

    try:
        server.start()
    except PortInUse as e:
        return _fail(_port_in_use(e, "--tls-port" if e.port == config.tls_port else "--port"))
    except OSError as e:
        return _fail(f"cannot listen on {config.host}: {e.strerror or e}")
    if control is not None:
        try:
            control.start()
        except PortInUse as e:
            server.stop()
            return _fail(_port_in_use(e, "--control-port"))
        except OSError as e:
            server.stop()
            return _fail(f"cannot listen on {config.control_host}: {e.strerror or e}")

    if verbose:
        server.transcript.subscribe(
            SessionLog(sys.stderr, lines=verbose > 1, log_format=log_format)
        )
    info = ready_info(server, control, ca_path)
    if config.json:
        print(json.dumps(info), flush=True)
    else:
        print(ready_line(info), flush=True)
        if not args.quiet:
            print("\n".join(how_to_connect(server, info, config)), flush=True)

    failed = False
    while not stop.wait(1.0):
        failed = _report(server) or failed
    if control is not None:
        control.stop()
    try:
        server.stop()
    except Exception:
        failed = True
        print("fakepop: internal error in a session:", file=sys.stderr)
        traceback.print_exc()
    return 1 if failed else 0


def _report(server: POP3Server) -> bool:
    """Print what went wrong in the server's threads since the last look; True if anything."""
    try:
        server.check()
    except Exception:
        print("fakepop: internal error in a session (the server goes on):", file=sys.stderr)
        traceback.print_exc()
        return True
    return False


def _unrecognized(parser: argparse.ArgumentParser, words: list[str]) -> None:
    """Exit 2 as argparse does, after naming the flag meant by the first mistyped one."""
    flags = [flag for flag in parser._option_string_actions if flag.startswith("--")]
    for word in words:
        if word.startswith("--"):
            near = difflib.get_close_matches(word.partition("=")[0], flags, n=1)
            if near:
                print(f"fakepop: did you mean {near[0]}?", file=sys.stderr)
            break
    parser.error(f"unrecognized arguments: {' '.join(words)}")


def personas_command(args: argparse.Namespace) -> int:
    """``fakepop personas [NAME] [--quirks]``: what the personas and quirks are."""
    if args.quirks:
        for info in REGISTRY.values():
            print(f"{info.usage}\n    {info.help}\n    source: {info.source}")
        return 0
    if args.name is None:
        width = max(map(len, PERSONAS))
        for each in PERSONAS.values():
            print(f"{each.name:<{width}}  {each.about}")
        print(f"not built yet: {', '.join(PLANNED)}")
        return 0
    persona = PERSONAS.get(args.name)
    if persona is None:
        known = ", ".join(PERSONAS)
        if args.name in PLANNED:
            return _fail(f"the persona {args.name} is not built yet; the personas are {known}", 2)
        return _fail(f"no persona {args.name!r}; the personas are {known}", 2)
    print(f"{persona.name}: {persona.about}\nsettings (an option given explicitly wins):")
    for name, value in persona.settings.items():
        print(f"    {name} = {json.dumps(FIELDS[name].kind.to_data(value))}")
    print("quirks (--quirks adds to them):")
    for spec in persona.quirks:
        print(f"    {spec}")
    print("what it does, and the source:")
    for what, source in persona.sources:
        print(f"    {what}\n        {source}")
    if persona.missing:
        print("what the real server does that the persona does not:")
        for what in persona.missing:
            print(f"    {what}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "serve")  # serving is what a bare ``fakepop`` does
    parser, serve_parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _unrecognized(args.command_parser, unknown)
    if args.command == "generate":
        return generate(args)
    if args.command == "ca":
        return ca_command(args)
    if args.command == "personas":
        return personas_command(args)
    return serve(args, serve_parser)
