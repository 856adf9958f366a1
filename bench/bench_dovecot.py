"""fakepop beside Dovecot: sessions, RETR throughput, large maildrops, start-up and memory.

    python bench/bench_dovecot.py [--runs N] [--only PARTS] [--quick] [--maildir-mb MB]

It sets Dovecot 2.3 up itself, on loopback, under a temporary directory, and stops it at
the end (also on Ctrl-C). Install Dovecot first: on Debian or Ubuntu, as root,
``apt-get update && apt-get install -y dovecot-pop3d``; ``--no-dovecot`` measures fakepop
alone. Run as root (Dovecot's services then run as its own users, mail as nobody) or as
any user (everything runs as that user).

Parts (``--only startup,sessions,...``): startup, sessions, retr, maildrop, held, memory.
``--py-spy DIR`` records where each fakepop server process spends its time.
Every figure is the median of ``--runs`` runs. Goals, checked here and never in tests:
start+stop <= 1 ms plain and <= 3 ms TLS; sessions >= 3x Dovecot's rate plain and >= 1x
over TLS; RETR >= Dovecot's throughput and >= 50% of the loopback limit; STAT <= 1 ms on
100,000 messages; LIST and UIDL no slower per message than Dovecot.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import itertools
import multiprocessing
import os
import platform
import queue
import selectors
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import dovecot
import trustme
from pop3client import Client, Endpoint, ProtocolError, timed_sessions
from servers import ServerProcess, wait_until

from fakepop import POP3Server, __version__, generate_messages
from fakepop.mail.maildir import maildir_uid
from fakepop.mail.wire import dot_stuff, to_crlf
from fakepop.tls import DEFAULT_NAMES, Authority

PARTS = ("startup", "sessions", "retr", "maildrop", "held", "memory")
PASSWORD = "password"
CLIENTS = 8  # the concurrent clients of the sessions part
CLIENT_TIMEOUT = 600.0  # seconds a concurrent client may take for its share of a run
BIG_REPEAT = 3  # RETRs of the large message per run
KIB, MIB = 1024, 1024 * 1024
T0 = 1_700_000_000  # the delivery time at the start of the Maildir names
T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    sessions: int = 1000  # per run
    big: int = 10 * MIB
    many: int = 1000
    small: int = 10 * KIB
    maildrop: int = 100_000
    held: int = 500
    startups: int = 200  # start+stop samples per run
    maildir_mb: int = 2048


FULL = Sizes()
QUICK = Sizes(sessions=100, big=MIB, many=100, maildrop=2000, held=50, startups=20, maildir_mb=64)


# --- mail on disk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    name: str
    count: int
    octets: int  # the wire size of all its messages, CRLF line ends
    first: bytes  # the wire form of its first message


class Corpus:
    """Maildirs for each server, hard links to a few generated messages.

    Files have LF line ends, as a delivery agent writes them, and Dovecot's names:
    ``<time>.M<n>P<pid>Q<n>.bench,S=<file size>,W=<size with CRLF>:2,`` so that neither
    server has to read a file to learn its size. Each server gets its own tree
    (Dovecot renames files as it sets flags); the in-memory fakepop loads fakepop's.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.originals = root / "originals"
        self.originals.mkdir(parents=True)
        self.fakepop = root / "mail-fakepop"
        self.dovecot = root / "mail-dovecot"
        self.accounts: dict[str, Account] = {}
        self._files = itertools.count()

    def add(
        self, name: str, messages: Sequence[bytes], count: int, dovecot_too: bool = True
    ) -> Account:
        """An account of ``count`` messages, cycling through ``messages``."""
        files = []
        for raw in messages:
            lf = raw.replace(b"\r\n", b"\n")
            path = self.originals / f"{next(self._files)}.eml"
            path.write_bytes(lf)
            files.append((path, len(lf), len(to_crlf(lf))))
        trees = [self.fakepop, self.dovecot] if dovecot_too else [self.fakepop]
        for tree in trees:
            for sub in ("cur", "new", "tmp"):
                (tree / name / sub).mkdir(parents=True)
        octets = 0
        pid = os.getpid()
        for i in range(count):
            path, size, wire_size = files[i % len(files)]
            file = f"{T0 + i}.M{i}P{pid}Q{i}.bench,S={size},W={wire_size}:2,"
            for tree in trees:
                os.link(path, tree / name / "cur" / file)
            octets += wire_size
        first = to_crlf(files[0][0].read_bytes())
        account = self.accounts[name] = Account(name, count, octets, first)
        return account


def load_account(server: POP3Server, root: Path, name: str) -> None:
    """Give an in-process server's account the messages of a Maildir, with their UIDs."""
    server.users[name] = PASSWORD
    mailbox = server.mailbox(name)
    for file in sorted(os.listdir(root / name / "cur")):
        mailbox.add((root / name / "cur" / file).read_bytes(), uid=maildir_uid(file))


# --- measuring ---------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(action: Callable[[], object], times: int) -> list[float]:
    samples = []
    for _ in range(times):
        begin = time.perf_counter()
        action()
        samples.append(time.perf_counter() - begin)
    return samples


def interleaved(subjects: dict[str, Callable[[], T]], runs: int) -> dict[str, list[T]]:
    """``runs`` results of each subject, taking turns run by run, after one warm-up each.

    Taking turns spreads whatever else the machine does over every subject alike.
    """
    for measure in subjects.values():
        measure()
    results: dict[str, list[T]] = {name: [] for name in subjects}
    for _ in range(runs):
        for name, measure in subjects.items():
            results[name].append(measure())
    return results


def _session_worker(
    endpoint: Endpoint,
    user: str,
    count: int,
    start_at: float,
    results: Queue[tuple[bool, float | str]],
) -> None:
    """One of the concurrent clients, in a process of its own: sessions from ``start_at``."""
    try:
        time.sleep(max(0.0, start_at - time.monotonic()))
        timed_sessions(endpoint, user, PASSWORD, 1, count)
        results.put((True, time.monotonic()))
    except KeyboardInterrupt:
        pass  # Ctrl-C reaches the whole process group: the parent reports it, once
    except Exception as e:
        results.put((False, f"{type(e).__name__}: {e}"))


def concurrent_rate(endpoint: Endpoint, clients: int, sessions: int) -> float:
    """Sessions a second with ``clients`` client processes, each with its own account."""
    context = multiprocessing.get_context("fork")
    results: Queue[tuple[bool, float | str]] = context.Queue()
    per_client = sessions // clients
    start_at = time.monotonic() + 0.2 + 0.02 * clients  # every process forked and waiting
    processes = [
        context.Process(
            target=_session_worker,
            args=(endpoint, f"user{i + 1}", per_client, start_at, results),
            daemon=True,
        )
        for i in range(clients)
    ]
    for process in processes:
        process.start()
    try:
        outcomes = [results.get(timeout=CLIENT_TIMEOUT) for _ in processes]
    except BaseException as e:
        for process in processes:
            process.kill()  # interrupted or stuck: the clients' work is of no use now
        if isinstance(e, queue.Empty):
            raise ProtocolError("a concurrent client neither finished nor failed") from None
        raise
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    failures = [str(value) for ok, value in outcomes if not ok]
    if failures:
        raise ProtocolError(f"a concurrent client failed: {failures[0]}")
    end = max(float(value) for _, value in outcomes)
    return per_client * clients / (end - start_at)


@dataclass(frozen=True)
class Transfer:
    octets: int
    seconds: float

    @property
    def mib_per_second(self) -> float:
        return self.octets / MIB / self.seconds


def retr_run(
    endpoint: Endpoint, account: Account | None, shape: str, count: int, buffer: bytearray
) -> Transfer:
    """One run of a RETR shape; ``account`` None for the trivial sender (no greeting, no login).

    Only the RETRs are timed; each size is checked (outside the timed span except when
    pipelined, where the next reply would overwrite the body).
    """
    client = Client.open(endpoint, buffer, greeting=account is not None)
    octets = 0
    seconds = 0.0
    try:
        if account is not None:
            client.login(account.name, PASSWORD)
        if shape == "pipelined":
            commands = b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1))
            begin = time.perf_counter()
            client.send(commands)
            for _ in range(count):
                octets += client.check_retr(client.multiline(sized=True))
            seconds = time.perf_counter() - begin
        else:
            numbers = [1] * BIG_REPEAT if shape == "big" else range(1, count + 1)
            for number in numbers:
                begin = time.perf_counter()
                client.send(b"RETR %d\r\n" % number)
                body = client.multiline(sized=True)
                seconds += time.perf_counter() - begin
                octets += client.check_retr(body)
        if account is not None:
            client.quit()
    finally:
        client.close()
    return Transfer(octets, seconds)


@dataclass(frozen=True)
class Listing:
    login: float
    stat: float
    list: float
    uidl: float
    stat_again: float
    list_octets: int
    uidl_octets: int


def maildrop_session(
    endpoint: Endpoint, account: Account, renew: ServerProcess | None = None
) -> Listing:
    """Log in, then STAT, LIST, UIDL and STAT again, each timed and checked.

    With ``renew``, that fakepop server first changes the maildrop (ServerProcess.renew).
    """
    if renew is not None:
        renew.renew(account.name)

    def stat() -> float:
        begin = time.perf_counter()
        count, octets = client.stat()
        seconds = time.perf_counter() - begin
        if (count, octets) != (account.count, account.octets):
            raise ProtocolError(f"STAT said {count} {octets}, not {account.count} {account.octets}")
        return seconds

    def listing(verb: bytes) -> tuple[float, int]:
        begin = time.perf_counter()
        client.send(verb + b"\r\n")
        body = client.multiline()
        seconds = time.perf_counter() - begin
        if client.lines(body) != account.count:
            raise ProtocolError(f"{verb.decode()} listed {client.lines(body)} messages")
        return seconds, body.end - body.start

    with Client.open(endpoint) as client:
        begin = time.perf_counter()
        client.login(account.name, PASSWORD)
        login = time.perf_counter() - begin
        first = stat()
        list_time, list_octets = listing(b"LIST")
        uidl_time, uidl_octets = listing(b"UIDL")
        again = stat()
        client.quit()
    return Listing(login, first, list_time, uidl_time, again, list_octets, uidl_octets)


def listen_overflows() -> int:
    """The kernel's count of connections dropped for a full accept queue, machine-wide."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        names, values = next(
            (a.split(), b.split()) for a, b in itertools.pairwise(lines) if a.startswith("TcpExt:")
        )
        return int(values[names.index("ListenOverflows")])
    return 0


def tls_description(endpoint: Endpoint, greeting: bool = True) -> str:
    with Client.open(endpoint, greeting=greeting) as client:
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        cipher = sock.cipher()
        return f"{sock.version()} {cipher[0] if cipher else '?'}"


# --- printing ----------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.3f} ms"


def microseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:,.2f} us"


def per_second(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def mib_s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def heading(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def machine() -> str:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        memory = f", {kib / MIB:.1f} GiB memory"
    return (
        f"{model}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}"
        f" {platform.machine()}; Python {platform.python_version()}; {ssl.OPENSSL_VERSION}"
    )


# --- the benchmark -----------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, tmp: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.runs: int = args.runs
        self.parts: list[str] = args.parts
        self.tmp = tmp
        self.stack = contextlib.ExitStack()
        self.goals: list[tuple[str, bool | None]] = []
        self.failures: list[str] = []
        self.dovecot_binary: str | None = None
        self.dovecot_version = ""
        self.dovecot: dovecot.Dovecot | None = None
        self._tls_described = False
        self._spec_files = itertools.count()
        self.scratch = bytearray(1) * (sizes.big + 2 * MIB)  # touched once, reused by RETRs

    def goal(self, what: str, met: bool | None) -> str:
        self.goals.append((what, met))
        return "n/a" if met is None else "met" if met else "MISSED"

    # --- set-up ----------------------------------------------------------------------------

    def setup(self) -> None:
        if not self.args.no_dovecot and {"sessions", "retr", "maildrop"} & set(self.parts):
            self.dovecot_binary, self.dovecot_version = dovecot.locate(self.args.dovecot)
        tls = self.tmp / "tls"
        tls.mkdir()
        authority = Authority()  # fakepop's trustme CA; one ECDSA P-256 leaf for both servers
        leaf = authority.certificate(DEFAULT_NAMES, "ecdsa")
        self.chain, self.key, self.ca = tls / "chain.pem", tls / "key.pem", tls / "ca.pem"
        self.chain.write_bytes(leaf.chain_pem)
        self.key.write_bytes(leaf.key_pem)
        self.key.chmod(0o600)
        authority.ca.cert_pem.write_to_path(str(self.ca))
        self.corpus = Corpus(self.tmp)
        self.make_mail()

    def make_mail(self) -> None:
        s, parts = self.sizes, set(self.parts)
        begin = time.perf_counter()
        if parts & {"sessions", "held"}:
            small = generate_messages(1, seed=11, size=1500)
            for name in ("user", *(f"user{i + 1}" for i in range(CLIENTS))):
                self.corpus.add(name, small, 1)
        if "retr" in parts:
            self.corpus.add("big", generate_messages(1, seed=12, size=s.big - 2 * KIB), 1)
            tens = generate_messages(s.many, seed=13, size=s.small - 1100)
            self.corpus.add("many", tens, s.many)
        if "maildrop" in parts:
            distinct = generate_messages(200, seed=14, size=(500, 5000))
            self.corpus.add("huge", distinct, s.maildrop)
        if self.dovecot_binary is not None:
            dovecot.Identity.current().own(self.corpus.dovecot)
        accounts = self.corpus.accounts
        print(
            "mail: "
            + ", ".join(
                f"{a.name} {a.count:,} x {a.octets / a.count / KIB:,.1f} KiB"
                for a in accounts.values()
                if not a.name.startswith("user")
            )
            + f" (made in {time.perf_counter() - begin:.1f} s)",
            flush=True,
        )

    @contextlib.contextmanager
    def serving(self, name: str, spec: dict[str, Any]) -> Iterator[ServerProcess]:
        """A fakepop (or trivial sender) process for the block; py-spy on it if asked.

        Each part starts fakepop afresh, as a test would: a server that served the
        earlier parts would carry their transcripts, and the garbage collector would
        walk them.
        """
        kind = "sender" if name == "sender" else "fakepop"
        spec_path = self.tmp / f"spec-{next(self._spec_files)}.json"
        server = ServerProcess(kind, spec, spec_path)
        spy: subprocess.Popen[bytes] | None = None
        try:
            if self.args.py_spy and kind == "fakepop":
                out = Path(self.args.py_spy) / f"{name}.txt"
                spy = subprocess.Popen(
                    [
                        *("py-spy", "record", "--pid", str(server.pid), "--gil", "--rate", "250"),
                        *("--nonblocking", "--format", "raw", "--output", str(out)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            yield server
        finally:
            if server.stop() != 0:
                self.failures.append(f"the {name} server exited with {server.process.returncode}")
            if spy is not None:
                try:
                    spy.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()

    def fakepop_spec(
        self, store: str, accounts: Sequence[str], tls: bool = True, root: Path | None = None
    ) -> dict[str, Any]:
        return {
            "store": store,
            "root": str(root or self.corpus.fakepop),
            "accounts": dict.fromkeys(accounts, PASSWORD),
            "certificate": [str(self.chain), str(self.key)] if tls else None,
        }

    def endpoints(self, port: int, tls_port: int) -> tuple[Endpoint, Endpoint]:
        return Endpoint("127.0.0.1", port), Endpoint("127.0.0.1", tls_port, str(self.ca))

    @contextlib.contextmanager
    def fakepop(self, store: str, accounts: Sequence[str]) -> Iterator[tuple[Endpoint, Endpoint]]:
        """A fresh fakepop process serving ``accounts`` from memory or from their Maildirs."""
        with self.fakepop_process(store, accounts) as s:
            yield self.endpoints(s.ports["port"], s.ports["tls_port"])

    def fakepop_process(
        self, store: str, accounts: Sequence[str], root: Path | None = None
    ) -> contextlib.AbstractContextManager[ServerProcess]:
        spec = self.fakepop_spec(store, accounts, root=root)
        return self.serving(f"fakepop-{store}-{accounts[0]}", spec)

    def start_dovecot(self) -> None:
        if self.dovecot_binary is None or not {"sessions", "retr", "maildrop"} & set(self.parts):
            return
        self.dovecot = dovecot.Dovecot(
            self.dovecot_binary,
            self.tmp / "dovecot",
            self.corpus.dovecot,
            dict.fromkeys(self.corpus.accounts, PASSWORD),
            (self.chain, self.key),
            login_processes=os.cpu_count() or 1,
        )
        self.stack.callback(self.dovecot.stop)
        self.dovecot.start()
        self.dovecot_endpoints = self.endpoints(self.dovecot.port, self.dovecot.tls_port)
        print(
            f"\nDovecot: pop3-login in high-performance mode (service_count = 0,"
            f" process_min_avail = {self.dovecot.login_processes}); pop3 as by default"
            "\n(a process per session); passwd-file, Maildir, mail read as"
            f" {'the running user' if self.dovecot.identity.rootless else 'nobody'}."
        )

    def describe_tls(self, fakepop: Endpoint) -> None:
        """Once: what TLS the two servers negotiate with this client."""
        if self._tls_described:
            return
        self._tls_described = True
        line = "TLS: one ECDSA P-256 leaf from fakepop's CA; negotiated: fakepop "
        line += tls_description(fakepop)
        if self.dovecot is not None:
            line += f", Dovecot {tls_description(self.dovecot_endpoints[1])}"
        print(line, flush=True)

    def describe_machine(self) -> None:
        print(f"fakepop {__version__} beside ", end="")
        print(f"Dovecot {self.dovecot_version}" if self.dovecot_version else "no Dovecot", end="")
        print(f", {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
        print(f"machine: {machine()}")
        print(
            "fakepop's server runs in a process of its own (bench/servers.py starts a POP3Server),"
            "\nso the client's CPU does not compete with it inside one GIL; rows marked"
            ' "in-process"\nrun the client and the server in one process.'
        )
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"Every figure: the median of {self.runs} runs. Load average at the start: {load}.")

    # --- the parts -------------------------------------------------------------------------

    def part_startup(self) -> None:
        heading("fakepop alone: start+stop in process, CA and leaf generation")
        reps = self.sizes.startups * self.runs
        authority = Authority()
        authority.certificate()  # the default leaf, cached from here on

        def plain() -> None:
            POP3Server(users={"user": PASSWORD}).start().stop()

        def tls_cached() -> None:
            POP3Server(users={"user": PASSWORD}, tls=True, authority=authority).start().stop()

        def tls_new_leaf() -> None:
            fresh = Authority(authority.ca)  # the CA cached, its leaves not
            POP3Server(users={"user": PASSWORD}, tls=True, authority=fresh).start().stop()

        few = max(3, self.runs)
        rows: list[tuple[str, list[float], float | None]] = [
            ("server made, started, stopped: plain", timed(plain, reps), 0.001),
            ("  TLS, CA and leaf cached", timed(tls_cached, reps), 0.003),
            ("  TLS, CA cached, new ECDSA leaf", timed(tls_new_leaf, reps // 10), 0.003),
            ("CA, ECDSA P-256 (trustme)", timed(trustme.CA, few * 4), None),
            ("CA, RSA 2048", timed(lambda: trustme.CA(key_type=trustme.KeyType.RSA), few), None),
            ("leaf, ECDSA", timed(lambda: Authority(authority.ca).certificate(), few * 4), None),
            (
                "leaf, RSA 2048",
                timed(lambda: Authority(authority.ca).certificate(key_type="rsa"), few),
                None,
            ),
        ]
        print(f"{'':44}{'median':>12}  goal")
        for label, samples, limit in rows:
            value = median(samples)
            verdict = ""
            if limit is not None:
                met = self.goal(
                    f"start+stop {label.strip()} <= {limit * 1000:.0f} ms", value <= limit
                )
                verdict = f"<= {limit * 1000:.0f} ms: {met}"
            print(f"{label:<44}{milliseconds(value):>12}  {verdict}   ({len(samples)} samples)")

    def part_sessions(self) -> None:
        n = self.sizes.sessions
        users = ["user", *(f"user{i + 1}" for i in range(CLIENTS))]
        heading(f"Sessions per second: connect, USER/PASS, STAT, QUIT ({n:,} sessions a run)")
        with self.fakepop("memory", users) as fakepop:
            self.describe_tls(fakepop[1])
            print(
                f"{CLIENTS} clients: {CLIENTS} processes, each with its own account"
                " (a maildrop is locked for a session)"
            )
            print(f"{'':36}{'fakepop':>10}{'Dovecot':>10}{'fakepop/Dovecot':>17}  goal")
            for tls in (False, True):
                for clients in (1, CLIENTS):
                    self.sessions_row(fakepop[tls], tls, clients)
        # The client processes above are forked: no server threads may run in this one then.
        with self.in_process_server() as (plain, secure):
            for tls, endpoint in ((False, plain), (True, secure)):
                self.session_rate(endpoint, 1)
                rate = median([self.session_rate(endpoint, 1) for _ in range(self.runs)])
                label = f"1 client, {'TLS' if tls else 'plain'}, in-process"
                print(f"{label:<36}{per_second(rate):>10}", flush=True)

    def sessions_row(self, fakepop: Endpoint, tls: bool, clients: int) -> None:
        subjects = {"fakepop": fakepop}
        if self.dovecot is not None:
            subjects["Dovecot"] = self.dovecot_endpoints[tls]
        runs = interleaved(
            {
                name: functools.partial(self.session_rate, endpoint, clients)
                for name, endpoint in subjects.items()
            },
            self.runs,
        )
        rates = {name: median(values) for name, values in runs.items()}
        factor = 1.0 if tls else 3.0
        fp, dv = rates["fakepop"], rates.get("Dovecot")
        label = f"{clients} client{'s' if clients > 1 else ''}, {'TLS' if tls else 'plain'}"
        met = None if dv is None else fp >= factor * dv
        verdict = self.goal(f"sessions/s, {label} >= {factor:g}x Dovecot", met)
        print(
            f"{label:<36}{per_second(fp):>10}{per_second(dv):>10}{ratio(fp, dv):>17}"
            f"  >= {factor:g}x: {verdict}",
            flush=True,
        )

    def session_rate(self, endpoint: Endpoint, clients: int) -> float:
        n = self.sizes.sessions
        if clients == 1:
            return n / timed_sessions(endpoint, "user", PASSWORD, 1, n)
        return concurrent_rate(endpoint, clients, n)

    @contextlib.contextmanager
    def in_process_server(self) -> Iterator[tuple[Endpoint, Endpoint]]:
        """A POP3Server in this process with the accounts of the parts that use one."""
        server = POP3Server(tls=True, certificate=(self.chain, self.key))
        for name in ("user", "big", "many"):
            if name in self.corpus.accounts:
                load_account(server, self.corpus.fakepop, name)
        with server:
            assert server.tls_port is not None
            yield self.endpoints(server.port, server.tls_port)

    @contextlib.contextmanager
    def trivial_sender(self) -> Iterator[dict[tuple[str, bool], Endpoint]]:
        """The trivial sender, canned with the first message of "big" and of "many"."""
        replies = {}
        for name in ("big", "many"):
            first = self.corpus.accounts[name].first
            path = self.tmp / f"reply-{name}"
            path.write_bytes(b"+OK %d octets\r\n" % len(first) + dot_stuff(first) + b".\r\n")
            replies[name] = str(path)
        spec = {"replies": replies, "certificate": [str(self.chain), str(self.key)]}
        with self.serving("sender", spec) as sender:
            yield {
                (name, tls): Endpoint(
                    "127.0.0.1",
                    sender.ports[f"{name}-tls" if tls else name],
                    str(self.ca) if tls else None,
                )
                for name in ("big", "many")
                for tls in (False, True)
            }

    def part_retr(self) -> None:
        s = self.sizes
        big, many = self.corpus.accounts["big"], self.corpus.accounts["many"]
        heading("RETR throughput, MiB/s of message octets (sizes checked)")
        shapes = [
            ("big", f"1 x {big.octets / MIB:.1f} MiB, RETR {BIG_REPEAT} times", big),
            ("lockstep", f"{s.many:,} x {many.octets / s.many / KIB:.1f} KiB, one at a time", many),
            ("pipelined", f"{s.many:,} x {many.octets / s.many / KIB:.1f} KiB, pipelined", many),
        ]
        with contextlib.ExitStack() as servers:
            sender = servers.enter_context(self.trivial_sender())
            memory = servers.enter_context(self.fakepop("memory", ["big", "many"]))
            maildir = servers.enter_context(self.fakepop("maildir", ["big", "many"]))
            in_process = servers.enter_context(self.in_process_server())
            self.describe_tls(memory[1])
            print(
                f"{'':52}{'MiB/s':>8}{'/Dovecot':>10}{'/limit':>8}  goal (>= Dovecot, >= 0.5 limit)"
            )
            for shape, title, account in shapes:
                for tls in (False, True):
                    print(f"{title}, {'TLS' if tls else 'plain'}", flush=True)
                    subjects: list[tuple[str, Endpoint, Account | None]] = [
                        (
                            "loopback limit: trivial sender" + (" (Python ssl)" if tls else ""),
                            sender[("big" if shape == "big" else "many", tls)],
                            None,
                        ),
                    ]
                    if self.dovecot is not None:
                        subjects.append(("Dovecot", self.dovecot_endpoints[tls], account))
                    subjects += [
                        ("fakepop, memory", memory[tls], account),
                        ("fakepop, Maildir", maildir[tls], account),
                        ("fakepop, memory, in-process", in_process[tls], account),
                    ]
                    self.retr_rows(shape, account, tls, subjects)

    def retr_rows(
        self,
        shape: str,
        account: Account,
        tls: bool,
        subjects: list[tuple[str, Endpoint, Account | None]],
    ) -> None:
        """Rows for one shape and transport; the first subject is the limit."""
        runs = interleaved(
            {
                label: functools.partial(
                    retr_run, endpoint, who, shape, account.count, self.scratch
                )
                for label, endpoint, who in subjects
            },
            self.runs,
        )
        results = {label: median([r.mib_per_second for r in runs[label]]) for label in runs}
        limit, dv = results[subjects[0][0]], results.get("Dovecot")
        for label, _, who in subjects:
            expected = account.octets if who else len(account.first) * account.count
            expected *= BIG_REPEAT if shape == "big" else 1
            if any(run.octets != expected for run in runs[label]):
                raise ProtocolError(f"{label}: received other than {expected} octets")
            value = results[label]
            verdict = ""
            if label in ("fakepop, memory", "fakepop, Maildir"):
                met_dv = None if dv is None else value >= dv
                what = f"RETR {shape} {'TLS' if tls else 'plain'}, {label}"
                verdict = (
                    f"{self.goal(what + ' >= Dovecot', met_dv)},"
                    f" {self.goal(what + ' >= 0.5 limit', value >= 0.5 * limit)}"
                )
            per = "" if who is None or label == "Dovecot" else ratio(value, dv)
            print(
                f"  {label:<50}{mib_s(value):>8}{per:>10}{ratio(value, limit):>8}  {verdict}",
                flush=True,
            )

    def part_maildrop(self) -> None:
        account = self.corpus.accounts["huge"]
        n = account.count
        heading(f"STAT, LIST, UIDL on a {n:,}-message maildrop (a fresh session each run)")
        # The renewed Maildir is a copy (hard links), so that moving its files leaves the
        # unchanged one's directories alone.
        renewed_root = self.tmp / "maildir-renewed"
        if not renewed_root.exists():
            shutil.copytree(
                self.corpus.fakepop / "huge", renewed_root / "huge", copy_function=os.link
            )
        with (
            self.fakepop_process("memory", ["huge"]) as memory,
            self.fakepop_process("maildir", ["huge"]) as maildir,
            self.fakepop_process("memory", ["huge"]) as memory_renewed,
            self.fakepop_process("maildir", ["huge"], root=renewed_root) as maildir_renewed,
        ):
            subjects: dict[str, Callable[[], Listing]] = {}
            for label, server, renewed in (
                ("fakepop memory", memory, False),
                ("fakepop Maildir", maildir, False),
                ("memory, changed", memory_renewed, True),
                ("Maildir, changed", maildir_renewed, True),
            ):
                endpoint = self.endpoints(server.ports["port"], server.ports["tls_port"])[0]
                subjects[label] = functools.partial(
                    maildrop_session, endpoint, account, server if renewed else None
                )
            self.maildrop_table(account, subjects)

    def maildrop_table(self, account: Account, fakepop: dict[str, Callable[[], Listing]]) -> None:
        n = account.count
        subjects: dict[str, Callable[[], Listing]] = {}
        if self.dovecot is not None:
            server, plain = self.dovecot, self.dovecot_endpoints[0]

            def cold() -> Listing:
                server.forget_index(account.name)
                return maildrop_session(plain, account)

            # Taking turns, each warm session follows a cold one, which has built the index.
            subjects["Dovecot cold"] = cold
            subjects["Dovecot warm"] = functools.partial(maildrop_session, plain, account)
        subjects.update(fakepop)
        columns = interleaved(subjects, self.runs)
        order = [*fakepop, *(c for c in ("Dovecot warm", "Dovecot cold") if c in columns)]
        width = 22
        print(f"{'':20}" + "".join(f"{c:>{width}}" for c in order) + "  goal")

        def row(
            label: str,
            pick: Callable[[Listing], float],
            show: Callable[[float], str],
            goal: tuple[str, str, Callable[[float, float | None], bool | None]] | None = None,
        ) -> None:
            """A row; ``goal`` is (what, the bar, a test of fakepop's value and Dovecot's)."""
            values: dict[str, float] = {c: median([pick(x) for x in columns[c]]) for c in order}
            dv = values.get("Dovecot warm")
            verdict = ""
            if goal is not None:
                what, bar, test = goal
                verdict = f"  {bar}: " + ", ".join(
                    self.goal(f"{what} {bar}, {c}", test(values[c], dv)) for c in fakepop
                )
            shown = {c: show(values[c]) for c in order}
            for c in fakepop:
                shown[c] += f" ({ratio(values[c], dv)})"
            cells = "".join(f"{shown[c]:>{width}}" for c in order)
            print(f"{label:<20}{cells}{verdict}", flush=True)

        def within_1_ms(value: float, dovecot: float | None) -> bool:
            return value <= 0.001

        def no_slower(value: float, dovecot: float | None) -> bool | None:
            return None if dovecot is None else value <= dovecot

        on = f"on {n:,} messages"
        row("login (USER+PASS)", lambda x: x.login, milliseconds)
        row("STAT", lambda x: x.stat, milliseconds, (f"STAT {on}", "<= 1 ms", within_1_ms))
        row("  again, after UIDL", lambda x: x.stat_again, milliseconds)
        row("LIST", lambda x: x.list, milliseconds)
        row(
            "  per message",
            lambda x: x.list / n,
            microseconds,
            (f"LIST per message {on}", "<= Dovecot", no_slower),
        )
        row("UIDL", lambda x: x.uidl, milliseconds)
        row(
            "  per message",
            lambda x: x.uidl / n,
            microseconds,
            (f"UIDL per message {on}", "<= Dovecot", no_slower),
        )
        sizes = {c: (columns[c][0].list_octets, columns[c][0].uidl_octets) for c in order}
        print(
            "reply octets (LIST, UIDL): "
            + "; ".join(f"{c} {a:,}, {b:,}" for c, (a, b) in sizes.items())
        )
        print(
            "In brackets: the ratio of fakepop's figure to Dovecot warm's. fakepop memory and"
            " Maildir:\nthe maildrop unchanged since the last session, whose snapshot is"
            " shared. changed: a message\ntaken out and put back (memory) or moved between"
            " cur/ and new/ (Maildir) before each\nsession, so it takes a new snapshot: sizes"
            " summed, listings formatted, the Maildir listed."
        )
        if "Dovecot cold" in columns:
            print(
                "Dovecot cold: its index and uidlist deleted before each session;"
                " it builds them at login."
            )

    def part_held(self) -> None:
        n = self.sizes.held
        heading(f"fakepop alone: {n:,} sessions held open at once (plain)")
        spec = self.fakepop_spec("memory", ["user"], tls=False)
        overflows = listen_overflows()
        with self.serving("fakepop-held", spec) as server:
            idle = server.status()
            rows = [self.hold(server, n, idle) for _ in range(self.runs)]
        overflows = listen_overflows() - overflows
        print(f"server idle: {idle['Threads']} threads, resident {idle['VmRSS'] / KIB:,.1f} MiB")
        for key, label, show in (
            ("connected", "all connected in", milliseconds),
            ("greeted_at", "all greeted in (from the first connect)", milliseconds),
            ("greeted", "greeted (fewest in a run)", lambda v: f"{v:,.0f} of {n:,}"),
            ("quit_ok", "answered QUIT with +OK (fewest)", lambda v: f"{v:,.0f} of {n:,}"),
            ("threads", "server threads with all open", lambda v: f"{v:,.0f}"),
            ("rss", "server resident with all open", lambda v: f"{v / KIB:,.1f} MiB"),
            ("per", "  per connection", lambda v: f"{v:,.0f} KiB"),
            ("released", "threads back to idle after QUIT in", milliseconds),
        ):
            values = [r[key] for r in rows]
            value = min(values) if key in ("greeted", "quit_ok") else median(values)
            print(f"{label:<44}{show(value):>16}", flush=True)
        print(
            f"the kernel's listen-queue overflows meanwhile (all {self.runs} runs, whole machine):"
            f" {overflows:,}"
        )

    def hold(self, server: ServerProcess, n: int, idle: dict[str, int]) -> dict[str, float]:
        port = server.ports["port"]
        socks: list[socket.socket] = []
        try:
            begin = time.perf_counter()
            for _ in range(n):
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=30))
            connected = time.perf_counter() - begin
            greeted, greeted_at = self.await_replies(socks, begin)
            status = server.status()
            for sock in socks:
                sock.sendall(b"QUIT\r\n")
            quit_ok, _ = self.await_replies(socks, time.perf_counter())
        finally:
            for sock in socks:
                sock.close()
        closed = time.perf_counter()
        wait_until(lambda: server.status()["Threads"] <= idle["Threads"], 30)
        return {
            "connected": connected,
            "greeted": greeted,
            "greeted_at": greeted_at,
            "quit_ok": quit_ok,
            "threads": status["Threads"],
            "rss": status["VmRSS"],
            "per": (status["VmRSS"] - idle["VmRSS"]) / n,
            "released": time.perf_counter() - closed,
        }

    @staticmethod
    def await_replies(
        socks: list[socket.socket], begin: float, timeout: float = 30
    ) -> tuple[int, float]:
        """How many sockets got a +OK line within ``timeout``, and when the last one did."""
        waiting = {sock.fileno(): (sock, bytearray()) for sock in socks}
        ok = 0
        last = 0.0
        with selectors.DefaultSelector() as selector:
            for sock, _ in waiting.values():
                selector.register(sock, selectors.EVENT_READ)
            deadline = time.monotonic() + timeout
            while waiting and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    sock, data = waiting[key.fd]
                    try:
                        chunk = sock.recv(4096)
                    except OSError:
                        chunk = b""
                    data += chunk
                    if b"\r\n" in data or not chunk:
                        ok += data.startswith(b"+OK") and b"\r\n" in data
                        last = time.perf_counter() - begin
                        selector.unregister(sock)
                        del waiting[key.fd]
        return ok, last

    def part_memory(self) -> None:
        mb = self.sizes.maildir_mb
        heading(f"fakepop alone: resident memory serving a {mb:,} MiB Maildir")
        begin = time.perf_counter()
        large = generate_messages(16, seed=15, size=(1_000_000, 4_000_000))
        mean = sum(len(m) for m in large) / len(large)
        count = max(1, round(mb * MIB / mean))
        account = self.corpus.add("bulk", large, count, dovecot_too=False)
        print(
            f"{account.count:,} messages, {account.octets / MIB:,.0f} MiB: hard links to 16"
            f" generated messages of 1-4 MB (made in {time.perf_counter() - begin:.1f} s)"
        )
        spec = self.fakepop_spec("maildir", ["bulk"], tls=False)
        with self.serving("fakepop-bulk", spec) as server:
            idle = server.status()
            endpoint = Endpoint("127.0.0.1", server.ports["port"])
            rates, resident, threads = [], [], []
            for _ in range(self.runs):
                with Client.open(endpoint, self.scratch) as client:
                    client.login("bulk", PASSWORD)
                    if client.stat() != (account.count, account.octets):
                        raise ProtocolError("STAT on the large Maildir is wrong")
                    start = time.perf_counter()
                    octets = sum(client.retr(n) for n in range(1, account.count + 1))
                    rates.append(octets / MIB / (time.perf_counter() - start))
                    status = server.status()
                    resident.append(status["VmRSS"])
                    threads.append(status["Threads"])
                    client.quit()
            peak = server.status()["VmHWM"]
        print(f"{'server resident, idle after start':<44}{idle['VmRSS'] / KIB:>12,.1f} MiB")
        print(f"{'  after RETR of every message':<44}{median(resident) / KIB:>12,.1f} MiB")
        print(f"{'  peak (VmHWM) over all runs':<44}{peak / KIB:>12,.1f} MiB")
        print(f"{'  threads during the session':<44}{median(threads):>12,.0f}")
        print(
            f"{'RETR of every message, one at a time':<44}{median(rates):>12,.0f} MiB/s", flush=True
        )

    # --- running ---------------------------------------------------------------------------

    def run(self) -> None:
        with self.stack:
            self.setup()
            self.describe_machine()
            if "startup" in self.parts:
                self.part_startup()  # before any server process is there to compete for the CPU
            self.start_dovecot()
            for part in PARTS:
                if part != "startup" and part in self.parts:
                    getattr(self, f"part_{part}")()
            if self.dovecot is not None:
                errors = self.dovecot.errors()
                if errors:
                    self.failures.append(f"Dovecot logged {len(errors)} errors, first: {errors[0]}")
        self.summary()

    def summary(self) -> None:
        heading("Goals")
        for what, met in self.goals:
            print(f"{'n/a   ' if met is None else 'met   ' if met else 'MISSED'}  {what}")
        verdicts = [met for _, met in self.goals]
        print(
            f"{verdicts.count(True)} met, {verdicts.count(False)} missed,"
            f" {verdicts.count(None)} without Dovecot to compare with"
        )
        print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for failure in self.failures:
            print(f"warning: {failure}")


class Terminated(BaseException):
    """SIGTERM arrived."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, help="runs of each measure; the median is shown (5)")
    parser.add_argument("--only", help=f"comma-separated parts: {','.join(PARTS)} (all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--maildir-mb", type=int, help="MiB of the Maildir of the memory part (2048; quick: 64)"
    )
    parser.add_argument("--sessions", type=int, help="sessions per run (1000; quick: 100)")
    parser.add_argument("--no-dovecot", action="store_true", help="measure fakepop alone")
    parser.add_argument("--dovecot", help="the dovecot binary (found on PATH or in /usr/sbin)")
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        help="profile each fakepop server process with py-spy (samples that hold the GIL,"
        " collapsed stacks) into DIR/<server>.txt",
    )
    args = parser.parse_args(argv)
    args.parts = (
        PARTS if args.only is None else [p.strip() for p in args.only.split(",") if p.strip()]
    )
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; the parts are {', '.join(PARTS)}")
    if args.runs is None:
        args.runs = 3 if args.quick else 5
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    if args.py_spy and shutil.which("py-spy") is None:
        parser.error("--py-spy needs py-spy: pip install py-spy")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    sizes = QUICK if args.quick else FULL
    if args.maildir_mb is not None:
        sizes = replace(sizes, maildir_mb=args.maildir_mb)
    if args.sessions is not None:
        sizes = replace(sizes, sessions=args.sessions)
    if args.py_spy:
        Path(args.py_spy).mkdir(parents=True, exist_ok=True)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Terminated  # unwinds through the clean-up, as Ctrl-C does

    signal.signal(signal.SIGTERM, terminate)
    tmp = Path(tempfile.mkdtemp(prefix="fakepop-bench-"))
    tmp.chmod(0o755)  # Dovecot's service users must reach their files inside
    try:
        Bench(args, sizes, tmp).run()
    except dovecot.DovecotUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
    except Terminated:
        print("\nterminated: servers stopped", file=sys.stderr)
        return 143
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
