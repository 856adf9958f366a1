"""The pytest plugin, run by pytest itself: each test writes a suite and runs it with pytester."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

pytest_plugins = ["pytester"]  # allowed in a test module; a non-root conftest may not say it

DOCS = Path(__file__).parent.parent / "README.md"

# Helpers for the suites written below, as the module pophelp.
HELPERS = '''
import poplib
import socket


def login(server, user="user", password="password"):
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user(user)
    client.pass_(password)
    return client


def subjects(server, user="user", password="password"):
    """The Subject of each message in the maildrop, by TOP n 0; the session QUITs."""
    client = login(server, user, password)
    count, _ = client.stat()
    found = []
    for number in range(1, count + 1):
        _, lines, _ = client.top(number, 0)
        found += [line[9:].decode() for line in lines if line.startswith(b"Subject: ")]
    client.quit()
    return found


class Raw:
    """A client that sends exactly the bytes it is given, to break the rules on purpose."""

    def __init__(self, server, port=None):
        self.sock = socket.create_connection((server.host, port or server.port), timeout=5)
        self.file = self.sock.makefile("rb")
        assert self.file.readline().startswith(b"+OK")

    def send(self, data):
        self.sock.sendall(data)
        return self.file.readline()

    def multiline(self, data):
        lines = [self.send(data)]
        if lines[0].startswith(b"+OK"):
            while lines[-1] != b".\\r\\n":
                lines.append(self.file.readline())
        return lines

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        self.sock.close()
'''


@pytest.fixture(autouse=True)
def inner_runs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings for the runs inside: after pytester's own, which clears PYTEST_ADDOPTS."""
    monkeypatch.setenv("COLUMNS", "200")  # summary lines in full, not cut at 80 columns
    # Hypothesis's plugin would import Hypothesis anew in every in-process run, a second each;
    # pytest-benchmark, where installed, warns whenever xdist is loaded, and warnings are errors.
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:benchmark")


def suite(pytester: pytest.Pytester, source: str, name: str = "test_suite") -> None:
    """Write the test module ``name`` and the helpers it may import."""
    pytester.makepyfile(pophelp=HELPERS)
    pytester.makepyfile(**{name: source})


# --- registration --------------------------------------------------------------------------


def test_installing_the_package_registers_the_plugin_by_entry_point(
    pytester: pytest.Pytester,
) -> None:
    points = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in points if p.name == "fakepop"] == ["fakepop.pytest_plugin"]
    suite(
        pytester,
        """
        def test_fixtures_are_there(
            pop3_server, pop3_mailbox, pop3_ssl_context, pop3_server_factory, pop3_authority
        ):
            assert pop3_server.running
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)

    result = pytester.runpytest("-p", "no:fakepop")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'pop3_server' not found*"])


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "fakepop POP3 test server:",
            "*--fakepop-host=HOST*",
            "*--fakepop-tls, --no-fakepop-tls*",
            "*--fakepop-idle-timeout=SECONDS*",
            "*--fakepop-strict, --no-fakepop-strict*",
            "*--fakepop-transcript, --no-fakepop-transcript*",
        ]
    )
    for name in ("host", "tls", "idle_timeout", "strict", "transcript"):
        assert f"fakepop_{name} " in result.stdout.str()
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.fakepop(**options): configure pop3_server*"])


# --- the fixtures --------------------------------------------------------------------------


def test_fixtures(pytester: pytest.Pytester) -> None:
    suite(
        pytester,
        """
        import poplib
        import socket
        import ssl

        import pytest

        from fakepop.tls import Authority
        from pophelp import login

        SEEN = {}


        def test_pop3_server_is_started_with_one_account_and_no_mail(pop3_server):
            assert pop3_server.running
            assert dict(pop3_server.users) == {"user": "password"}
            assert pop3_server.host == "127.0.0.1"
            assert pop3_server.settings.idle_timeout == 600
            client = login(pop3_server)
            assert client.stat() == (0, 0)
            client.quit()


        def test_pop3_server_has_implicit_tls_and_stls(pop3_server, pop3_ssl_context):
            assert pop3_server.tls_port is not None
            client = poplib.POP3_SSL(
                pop3_server.host, pop3_server.tls_port, context=pop3_ssl_context, timeout=5
            )
            client.user("user")
            client.pass_("password")
            assert client.stat() == (0, 0)
            client.quit()
            client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            client.stls(pop3_ssl_context)
            client.user("user")
            client.pass_("password")
            client.quit()
            assert pop3_server.transcript.text().count("TLS established") == 2


        def test_pop3_mailbox_is_the_accounts_maildrop(pop3_server, pop3_mailbox):
            assert pop3_mailbox is pop3_server.mailbox("user")
            assert len(pop3_mailbox) == 0
            uid = pop3_mailbox.add(b"Subject: hi\\r\\n\\r\\nHello\\r\\n")
            client = login(pop3_server)
            assert client.uidl(1) == f"+OK 1 {uid}".encode()
            client.quit()


        def test_pop3_ssl_context_checks_host_names(pop3_server, pop3_ssl_context):
            assert pop3_ssl_context.check_hostname
            assert pop3_ssl_context.verify_mode == ssl.CERT_REQUIRED
            address = (pop3_server.host, pop3_server.tls_port)
            with socket.create_connection(address, timeout=5) as sock:
                with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
                    pop3_ssl_context.wrap_socket(sock, server_hostname="mail.example.org")


        def test_factory_makes_more_servers(pop3_server_factory, pop3_server):
            plain = pop3_server_factory(users={"alice": "secret"}, tls=False, apop=False)
            other = pop3_server_factory(messages=[b"Subject: x\\r\\n\\r\\ny\\r\\n"])
            SEEN["servers"] = [plain, other, pop3_server]
            assert all(server.running for server in SEEN["servers"])
            assert len({plain.port, other.port, pop3_server.port}) == 3
            assert dict(plain.users) == {"alice": "secret"}
            assert plain.tls_port is None
            assert not plain.settings.apop
            assert dict(other.users) == {"user": "password"}
            assert len(other.mailbox("user")) == 1
            assert other.tls_port is not None
            client = login(plain, "alice", "secret")
            client.quit()


        def test_factory_stopped_its_servers_at_teardown():
            assert [server.running for server in SEEN["servers"]] == [False, False, False]


        def test_pop3_authority_issues_the_servers_certificates(pop3_server, pop3_authority):
            assert isinstance(pop3_authority, Authority)
            assert pop3_server.authority is pop3_authority
            SEEN["authority"] = pop3_authority


        def test_pop3_authority_lasts_the_session(pop3_server_factory, pop3_authority):
            assert pop3_authority is SEEN["authority"]
            assert pop3_server_factory().authority is pop3_authority
        """,
    )
    pytester.runpytest().assert_outcomes(passed=8)


def test_an_error_in_a_server_thread_fails_the_test_that_caused_it(
    pytester: pytest.Pytester,
) -> None:
    suite(
        pytester,
        """
        import poplib

        import pytest

        import fakepop
        from pophelp import login


        class Broken(fakepop.Message):
            def stuffed(self):
                raise RuntimeError("cannot stuff this message")


        def retr_fails(server, user="user", password="password"):
            client = login(server, user, password)
            with pytest.raises(poplib.error_proto, match="SYS/TEMP"):
                client.retr(1)
            client.close()


        def test_retr_of_a_broken_message(pop3_server, pop3_mailbox):
            pop3_mailbox.add(Broken(b"Subject: x\\r\\n\\r\\nbody\\r\\n"))
            retr_fails(pop3_server)


        def test_unaffected(pop3_server, pop3_mailbox):
            pop3_mailbox.add(b"Subject: fine\\r\\n\\r\\nbody\\r\\n")
            client = login(pop3_server)
            client.retr(1)
            client.quit()


        def test_broken_message_on_a_factory_server(pop3_server_factory):
            server = pop3_server_factory(users={"bob": "pw"})
            server.mailbox("bob").add(Broken(b"Subject: y\\r\\n\\r\\nbody\\r\\n"))
            retr_fails(server, "bob", "pw")


        def test_also_unaffected(pop3_server_factory):
            login(pop3_server_factory()).quit()
        """,
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_retr_of_a_broken_message*",
            "E       RuntimeError: cannot stuff this message",
            "*ERROR at teardown of test_broken_message_on_a_factory_server*",
            "E       RuntimeError: cannot stuff this message",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "ERROR test_suite.py::test_retr_of_a_broken_message"
            " - RuntimeError: cannot stuff this message",
            "ERROR test_suite.py::test_broken_message_on_a_factory_server"
            " - RuntimeError: cannot stuff this message",
        ]
    )
    assert "ERROR test_suite.py::test_unaffected" not in result.stdout.str()
    assert "ERROR test_suite.py::test_also_unaffected" not in result.stdout.str()


# --- the CA, kept in pytest's cache ----------------------------------------------------------

CA_SUITE = """
    import poplib
    from pathlib import Path


    def test_tls_with_the_session_ca(pop3_server, pop3_ssl_context, pop3_authority):
        with Path("seen.pem").open("ab") as file:
            file.write(pop3_authority.ca.cert_pem.bytes())
        client = poplib.POP3_SSL(
            pop3_server.host, pop3_server.tls_port, context=pop3_ssl_context, timeout=5
        )
        client.user("user")
        client.pass_("password")
        client.quit()
    """


def seen_pems(pytester: pytest.Pytester) -> list[bytes]:
    """The CA certificates the runs so far used, in order."""
    marker = b"-----BEGIN CERTIFICATE-----"
    blob = (pytester.path / "seen.pem").read_bytes()
    return [marker + part for part in blob.split(marker)[1:]]


def test_the_ca_is_cached_across_runs(pytester: pytest.Pytester) -> None:
    suite(pytester, CA_SUITE)
    cache = pytester.path / ".pytest_cache" / "d" / "fakepop"
    pytester.runpytest().assert_outcomes(passed=1)
    cached = (cache / "ca.pem").read_bytes()
    assert stat.S_IMODE((cache / "ca.key").stat().st_mode) == 0o600  # the CA's key

    pytester.runpytest().assert_outcomes(passed=1)
    first, second = seen_pems(pytester)
    assert first == second
    assert cached.startswith(first)
    assert (cache / "ca.pem").read_bytes() == cached


def test_without_the_cache_provider_a_fresh_ca_serves(pytester: pytest.Pytester) -> None:
    suite(pytester, CA_SUITE)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not (pytester.path / ".pytest_cache").exists()
    first, second = seen_pems(pytester)
    assert first != second


def test_a_damaged_ca_cache_is_replaced(pytester: pytest.Pytester) -> None:
    # A cache file without its key (cut short, or edited) must not break every later run.
    cache = pytester.mkdir(".pytest_cache") / "d" / "fakepop"
    cache.mkdir(parents=True)
    (cache / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    suite(pytester, CA_SUITE)
    pytester.runpytest().assert_outcomes(passed=1)
    assert b"PRIVATE KEY" in (cache / "ca.key").read_bytes()


# --- the marker ----------------------------------------------------------------------------


def test_the_marker(pytester: pytest.Pytester) -> None:
    pytester.makefile(".eml", one=b"Subject: eml\r\n\r\nfrom a file\r\n".decode())
    pytester.makefile(
        ".mbox",
        box="From a@example.com Mon Jan  1 00:00:00 2024\nSubject: mbox 1\n\none\n\n"
        "From b@example.com Mon Jan  1 00:00:00 2024\nSubject: mbox 2\n\ntwo\n",
    )
    emls = pytester.mkdir("emls")
    (emls / "a.eml").write_bytes(b"Subject: dir a\r\n\r\na\r\n")
    (emls / "b.eml").write_bytes(b"Subject: dir b\r\n\r\nb\r\n")
    mail = pytester.mkdir("mail")
    (mail / "welcome.eml").write_bytes(b"Subject: manifest\r\n\r\nhello\r\n")
    (mail / "fakepop.toml").write_text(
        '[accounts.alice]\npassword = "from-manifest"\n'
        'messages = [{ path = "welcome.eml", uid = "welcome" }]\n'
    )
    suite(
        pytester,
        """
        import email.message
        import poplib
        import socket
        from pathlib import Path

        import pytest

        from pophelp import login, subjects

        OBJECT = email.message.EmailMessage()
        OBJECT["Subject"] = "object"
        OBJECT.set_content("From an EmailMessage")


        @pytest.mark.fakepop(
            messages=[
                b"Subject: bytes\\r\\n\\r\\nraw\\r\\n",
                "Subject: text\\n\\nMessage text\\n",
                OBJECT,
                "one.eml",
                Path("box.mbox"),
                Path("emls"),
            ]
        )
        def test_messages(pop3_server):
            assert subjects(pop3_server) == [
                "bytes", "text", "object", "eml", "mbox 1", "mbox 2", "dir a", "dir b"
            ]


        @pytest.mark.fakepop(
            users={"alice": "wonderland", "bob": "builder"},
            messages=[b"Subject: to alice\\r\\n\\r\\nx\\r\\n"],
        )
        def test_users(pop3_server, pop3_mailbox):
            assert dict(pop3_server.users) == {"alice": "wonderland", "bob": "builder"}
            assert pop3_mailbox is pop3_server.mailbox("alice")
            assert subjects(pop3_server, "alice", "wonderland") == ["to alice"]
            assert subjects(pop3_server, "bob", "builder") == []


        @pytest.mark.fakepop(fixtures=Path("mail"))
        def test_fixtures(pop3_server):
            client = login(pop3_server, "alice", "from-manifest")
            assert client.uidl(1) == b"+OK 1 welcome"
            client.quit()
            assert subjects(pop3_server, "alice", "from-manifest") == ["manifest"]


        @pytest.mark.fakepop(generate=5, seed=11)
        def test_generate(pop3_server):
            client = login(pop3_server)
            uids = [line.split()[1].decode() for line in client.uidl()[1]]
            client.quit()
            assert len(uids) == 5
            with Path("uids-11.txt").open("a") as file:
                file.write(" ".join(uids) + "\\n")


        @pytest.mark.fakepop(generate=5, seed=12)
        def test_generate_another_seed(pop3_server):
            client = login(pop3_server)
            uids = [line.split()[1].decode() for line in client.uidl()[1]]
            client.quit()
            with Path("uids-12.txt").open("a") as file:
                file.write(" ".join(uids) + "\\n")


        @pytest.mark.fakepop(faults=[{"on": "PASS", "action": "error", "code": "SYS/TEMP"}])
        def test_faults(pop3_server):
            client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            client.user("user")
            with pytest.raises(poplib.error_proto, match=r"\\[SYS/TEMP\\]"):
                client.pass_("password")
            client.quit()
            login(pop3_server).quit()  # the rule fires once
            assert [fired.event for fired in pop3_server.faults.fired] == ["PASS"]


        @pytest.mark.fakepop(tls=False)
        def test_tls_off(pop3_server):
            assert pop3_server.tls_port is None
            client = login(pop3_server)
            assert "STLS" not in client.capa()
            client.quit()


        @pytest.mark.fakepop(idle_timeout=0.2)
        def test_idle_timeout(pop3_server):
            assert pop3_server.settings.idle_timeout == 0.2
            address = (pop3_server.host, pop3_server.port)
            with socket.create_connection(address, timeout=5) as sock:
                with sock.makefile("rb") as file:
                    assert file.readline().startswith(b"+OK")
                    assert file.readline().startswith(b"-ERR Autologout")  # within 5 s
                    assert file.readline() == b""


        @pytest.mark.fakepop(users={"carol": "c"}, tls=False, idle_timeout=30)
        class TestTheClosestMarkerWins:
            @pytest.mark.fakepop(tls=True)
            def test_key_by_key(self, pop3_server):
                assert dict(pop3_server.users) == {"carol": "c"}
                assert pop3_server.tls_port is not None
                assert pop3_server.settings.idle_timeout == 30


        @pytest.mark.fakepop({"alice": "secret"})
        def test_positional_arguments(pop3_server):
            pass


        @pytest.mark.fakepop(tsl=False)
        def test_unknown_option(pop3_server):
            pass
        """,
    )
    for _ in range(2):
        result = pytester.runpytest("-rA")
        result.assert_outcomes(passed=9, errors=2)
        result.stdout.fnmatch_lines(
            [
                "ERROR test_suite.py::test_positional_arguments - *UsageError:"
                " @pytest.mark.fakepop takes keyword arguments only",
                "ERROR test_suite.py::test_unknown_option - Failed: @pytest.mark.fakepop:"
                " unknown option 'tsl'",
            ]
        )
    first, second = (pytester.path / "uids-11.txt").read_text().splitlines()
    assert first == second
    assert (pytester.path / "uids-12.txt").read_text().splitlines()[0] != first


def test_marker_fixtures_accounts_replace_the_default_one(pytester: pytest.Pytester) -> None:
    # The manifest says which accounts there are, as users= does: pop3_mailbox should be
    # the manifest's first account, and no user/password account should appear beside it.
    mail = pytester.mkdir("mail")
    (mail / "welcome.eml").write_bytes(b"Subject: manifest\r\n\r\nhello\r\n")
    (mail / "fakepop.toml").write_text(
        '[accounts.alice]\npassword = "from-manifest"\n'
        'messages = [{ path = "welcome.eml", uid = "welcome" }]\n'
    )
    suite(
        pytester,
        """
        from pathlib import Path

        import pytest


        @pytest.mark.fakepop(fixtures=Path("mail"))
        def test_fixtures_accounts(pop3_server, pop3_mailbox):
            assert dict(pop3_server.users) == {"alice": "from-manifest"}
            assert [message.uid for message in pop3_mailbox] == ["welcome"]
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_marker_relative_paths_are_read_from_the_test_files_directory(
    pytester: pytest.Pytester,
) -> None:
    # pytest runs from the project's root, the test file lies deeper: a path beside the
    # test file should be found from there, whatever the current directory.
    here = pytester.mkdir("tests")
    mail = here / "mail"
    mail.mkdir()
    (mail / "one.eml").write_bytes(b"Subject: beside the test\r\n\r\nx\r\n")
    (mail / "fakepop.toml").write_text(
        '[accounts.alice]\npassword = "a"\nmessages = [{ path = "one.eml" }]\n'
    )
    absolute = pytester.path / "elsewhere.eml"
    absolute.write_bytes(b"Subject: absolute\r\n\r\nx\r\n")
    (here / "test_paths.py").write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path

            import pytest


            @pytest.mark.fakepop(messages=["mail/one.eml", Path({str(absolute)!r})])
            def test_messages(pop3_mailbox):
                assert len(pop3_mailbox) == 2


            @pytest.mark.fakepop(fixtures="mail")
            def test_fixtures(pop3_server):
                assert len(pop3_server.mailbox("alice")) == 1


            @pytest.mark.fakepop(messages=["mail/missing.eml"])
            def test_missing_messages(pop3_server):
                pass


            @pytest.mark.fakepop(fixtures=Path("no-such-dir"))
            def test_missing_fixtures(pop3_server):
                pass
            """
        )
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_missing_messages*",
            f"@pytest.mark.fakepop(messages=...): no mail at {mail / 'missing.eml'}: *",
            "*ERROR at setup of test_missing_fixtures*",
            f"@pytest.mark.fakepop(fixtures=...): no manifest at {here / 'no-such-dir'}: *",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")


def test_marker_takes_the_samples_by_name(pytester: pytest.Pytester) -> None:
    # "fakepop:NAME" names a sample mailbox shipped in the package, so a README snippet
    # works outside a checkout; an unknown name lists the samples there are.
    suite(
        pytester,
        """
        import pytest

        import fakepop


        @pytest.mark.fakepop(messages=["fakepop:demo", "fakepop:many.mbox"])
        def test_messages(pop3_mailbox):
            assert len(pop3_mailbox) == 3 + 200


        @pytest.mark.fakepop(fixtures="fakepop:fakepop.toml")
        def test_fixtures(pop3_server):
            assert sorted(pop3_server.users) == ["alice", "bob", "carol"]


        def test_function():
            assert fakepop.sample("demo").is_dir()
            assert fakepop.load(fakepop.sample("eml/dot-lines.eml"))


        @pytest.mark.fakepop(messages=["fakepop:dmeo"])
        def test_unknown(pop3_server):
            pass
        """,
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.fakepop(messages=...): no sample mailbox 'dmeo';"
            " the samples: demo, eml, *, many.mbox, *"
        ]
    )


def test_a_mistyped_marker_key_names_the_nearest(pytester: pytest.Pytester) -> None:
    # The marker's own keys are candidates as much as POP3Server's; the test errors with
    # the message alone, not a traceback through fakepop.
    suite(
        pytester,
        """
        import pytest


        @pytest.mark.fakepop(idle_timout=1)
        def test_setting(pop3_server):
            pass


        @pytest.mark.fakepop(messags=["fakepop:demo"])
        def test_own(pop3_server):
            pass


        def test_factory(pop3_server_factory):
            with pytest.raises(TypeError, match="did you mean 'generate'"):
                pop3_server_factory(generat=3)
        """,
    )
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*@pytest.mark.fakepop: unknown option 'idle_timout'",
            "did you mean 'idle_timeout'? The valid names: *",
            "*@pytest.mark.fakepop: unknown option 'messags'",
            "did you mean 'messages'? The valid names: *",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*pytest_plugin.py*")


def test_assertion_helpers_fail_at_the_tests_line(pytester: pytest.Pytester) -> None:
    # __tracebackhide__: the report points at the line of the test that asked, and shows
    # none of fakepop's own frames.
    suite(
        pytester,
        """
        from pophelp import login


        def test_sent(pop3_server):
            login(pop3_server).quit()
            pop3_server.transcript.assert_sent("RETR")  # line 6


        def test_login(pop3_server):
            login(pop3_server).quit()
            pop3_server.transcript.assert_login("APOP")  # line 11


        def test_quit(pop3_server):
            login(pop3_server).close()
            pop3_server.transcript.wait_for(quit=False)
            pop3_server.transcript.assert_quit()  # line 17


        def test_deleted(pop3_server, pop3_mailbox):
            pop3_mailbox.add(b"Subject: x\\r\\n\\r\\nx\\r\\n", uid="kept")
            pop3_mailbox.assert_deleted("kept")  # line 22
        """,
    )
    result = pytester.runpytest("--no-fakepop-transcript")
    result.assert_outcomes(failed=4)
    failures = [line for line in result.outlines if re.match(r"\S+\.py:\d+: \w+Error", line)]
    assert failures == [
        "test_suite.py:6: AssertionError",
        "test_suite.py:11: AssertionError",
        "test_suite.py:17: AssertionError",
        "test_suite.py:22: AssertionError",
    ]
    result.stdout.no_fnmatch_line("*fakepop/*")


# --- options: ini and command line -----------------------------------------------------------

OPTIONS_SUITE = """
    import poplib
    import socket

    from pophelp import Raw, login


    def test_settings(pop3_server):
        assert pop3_server.host == {host!r}
        assert (pop3_server.tls_port is not None) is {tls}
        assert pop3_server.settings.idle_timeout == {idle_timeout}
        login(pop3_server).quit()


    def test_bare_lf(pop3_server):
        with Raw(pop3_server) as raw:
            assert raw.send(b"QUIT\\n").startswith(b"+OK")


    def test_fails_after_a_session(pop3_server):
        client = login(pop3_server)
        client.stat()
        client.quit()
        assert False, "the test fails"
    """


@dataclass(frozen=True)
class Options:
    ini: str
    args: tuple[str, ...]
    host: str
    tls: bool
    idle_timeout: float
    strict: bool
    transcript: bool


INI = """
    [pytest]
    fakepop_host = localhost
    fakepop_tls = false
    fakepop_idle_timeout = 5
    fakepop_strict = true
    fakepop_transcript = false
    """


@pytest.mark.parametrize(
    "options",
    [
        Options("", (), "127.0.0.1", True, 600, strict=False, transcript=True),
        Options(INI, (), "localhost", False, 5, strict=True, transcript=False),
        Options(
            INI,
            (
                "--fakepop-host=127.0.0.1",
                "--fakepop-tls",
                "--fakepop-idle-timeout=7.5",
                "--no-fakepop-strict",
                "--fakepop-transcript",
            ),
            "127.0.0.1",
            True,
            7.5,
            strict=False,
            transcript=True,
        ),
        Options(
            "",
            (
                "--fakepop-host=localhost",
                "--no-fakepop-tls",
                "--fakepop-idle-timeout=9",
                "--fakepop-strict",
                "--no-fakepop-transcript",
            ),
            "localhost",
            False,
            9,
            strict=True,
            transcript=False,
        ),
    ],
    ids=["defaults", "ini", "command-line-over-ini", "command-line"],
)
def test_options(pytester: pytest.Pytester, options: Options) -> None:
    if options.ini:
        pytester.makeini(options.ini)
    suite(
        pytester,
        OPTIONS_SUITE.format(
            host=options.host, tls=options.tls, idle_timeout=float(options.idle_timeout)
        ),
    )
    result = pytester.runpytest(*options.args)
    if options.strict:
        result.assert_outcomes(passed=2, failed=1, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*ERROR at teardown of test_bare_lf*",
                "the POP3 client broke the RFCs (fakepop strict mode):",
                "  session 1: a command line ended in a bare LF, not CRLF",
            ]
        )
    else:
        result.assert_outcomes(passed=2, failed=1)
        assert "broke the RFCs" not in result.stdout.str()
    assert ("POP3 transcript" in result.stdout.str()) is options.transcript


@pytest.mark.parametrize(
    ("ini", "args"),
    [("", ("--fakepop-idle-timeout=soon",)), ("[pytest]\nfakepop_idle_timeout = soon\n", ())],
    ids=["command-line", "ini"],
)
def test_a_bad_idle_timeout_is_a_usage_error(
    pytester: pytest.Pytester, ini: str, args: tuple[str, ...]
) -> None:
    # A usage error stops the run before any test, as pytest's own options do; it does
    # not turn into an error in each test that happens to use a server.
    if ini:
        pytester.makeini(ini)
    suite(pytester, "def test_uses_a_server(pop3_server):\n    pass\n")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: fakepop idle timeout must be a number of seconds, got 'soon'"]
    )


# --- the transcript in reports ---------------------------------------------------------------

TRANSCRIPT_SUITE = """
    import pytest

    from pophelp import login


    def test_fails_after_a_session(pop3_server):
        client = login(pop3_server)
        client.stat()
        client.quit()
        assert False, "the test fails"


    @pytest.mark.fakepop(users={"happy": "pw"})
    def test_passes_after_a_session(pop3_server):
        login(pop3_server, "happy", "pw").quit()


    @pytest.mark.fakepop(users={"quiet": "pw"}, transcript=False)
    def test_fails_without_a_transcript(pop3_server):
        login(pop3_server, "quiet", "pw").quit()
        assert False


    def test_fails_with_two_servers(pop3_server_factory):
        login(pop3_server_factory(users={"first": "pw"}), "first", "pw").quit()
        login(pop3_server_factory(users={"second": "pw"}), "second", "pw").quit()
        assert False


    def test_fails_without_a_session(pop3_server):
        assert False
    """


def test_a_failing_tests_report_has_the_transcript(pytester: pytest.Pytester) -> None:
    suite(pytester, TRANSCRIPT_SUITE)
    result = pytester.runpytest("-rA")
    result.assert_outcomes(passed=1, failed=4)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*_ test_fails_after_a_session _*",
            "*- POP3 transcript -*",
            "--- session 1 from 127.0.0.1:*",
            "*:*:*.* S: +OK fakepop ready *",
            "*:*:*.* C: USER user",
            "*:*:*.* S: +OK Send PASS",
            "*:*:*.* C: PASS [*][*][*][*]",
            "*:*:*.* S: +OK user's maildrop has 0 messages (0 octets)",
            "*:*:*.* C: STAT",
            "*:*:*.* S: +OK 0 0",
            "*:*:*.* C: QUIT",
        ]
    )
    assert "PASS password" not in out
    assert "USER happy" not in out  # passed
    assert "USER quiet" not in out  # transcript=False
    assert "USER first" in out
    assert "USER second" in out
    # One section each for the first and the two-server test; none for a server never used.
    assert out.count("- POP3 transcript -") == 2


def test_no_fakepop_transcript_leaves_reports_alone(pytester: pytest.Pytester) -> None:
    suite(pytester, TRANSCRIPT_SUITE)
    result = pytester.runpytest("--no-fakepop-transcript")
    result.assert_outcomes(passed=1, failed=4)
    assert "POP3 transcript" not in result.stdout.str()
    assert "C: USER" not in result.stdout.str()


def test_transcript_false_holds_when_the_test_makes_more_servers(
    pytester: pytest.Pytester,
) -> None:
    # The marker's transcript=False is for the test; a factory call that does not
    # say transcript= must not turn the report's transcript back on.
    suite(
        pytester,
        """
        import pytest

        from pophelp import login


        @pytest.mark.fakepop(transcript=False)
        def test_fails(pop3_server, pop3_server_factory):
            login(pop3_server).quit()
            login(pop3_server_factory()).quit()
            assert False
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    assert "POP3 transcript" not in result.stdout.str()


# --- strict mode ---------------------------------------------------------------------------

VIOLATIONS = {
    "test_pass_without_user": "PASS without USER",
    "test_bare_lf": "a command line ended in a bare LF, not CRLF",
    "test_wrong_state": "STAT sent before login, in the wrong state",
    "test_long_line": "USER line of 307 octets, over RFC 2449's 255",
    "test_command_capa_did_not_offer": "USER used, but the CAPA answer did not offer USER",
    "test_plaintext_login_after_stls_offered": (
        "PASS: a plaintext login on a connection that offered STLS"
    ),
    "test_deleted_message_used": "message 1 used after it was marked deleted",
    "test_deletions_lost_without_quit": (
        "the session ended without QUIT after marking 1 message(s) deleted:"
        " the deletions were not applied"
    ),
}

STRICT_SUITE = """
    import pytest

    from pophelp import Raw

    MAIL = [b"Subject: x\\r\\n\\r\\nbody\\r\\n"]


    def test_pass_without_user(pop3_server):
        with Raw(pop3_server) as raw:
            assert raw.send(b"PASS password\\r\\n").startswith(b"-ERR")
            raw.send(b"QUIT\\r\\n")


    def test_bare_lf(pop3_server):
        with Raw(pop3_server) as raw:
            raw.send(b"QUIT\\n")


    def test_wrong_state(pop3_server):
        with Raw(pop3_server) as raw:
            assert raw.send(b"STAT\\r\\n").startswith(b"-ERR")
            raw.send(b"QUIT\\r\\n")


    def test_long_line(pop3_server):
        with Raw(pop3_server) as raw:
            raw.send(b"USER " + b"u" * 300 + b"\\r\\n")
            raw.send(b"QUIT\\r\\n")


    @pytest.mark.fakepop(require_tls=True)
    def test_command_capa_did_not_offer(pop3_server):
        with Raw(pop3_server) as raw:
            assert b"USER\\r\\n" not in raw.multiline(b"CAPA\\r\\n")
            assert raw.send(b"USER user\\r\\n").startswith(b"-ERR [AUTH]")
            raw.send(b"QUIT\\r\\n")


    def test_plaintext_login_after_stls_offered(pop3_server):
        with Raw(pop3_server) as raw:
            assert b"STLS\\r\\n" in raw.multiline(b"CAPA\\r\\n")
            raw.send(b"USER user\\r\\n")
            assert raw.send(b"PASS password\\r\\n").startswith(b"+OK")
            raw.send(b"QUIT\\r\\n")


    @pytest.mark.fakepop(messages=MAIL)
    def test_deleted_message_used(pop3_server):
        with Raw(pop3_server) as raw:
            raw.send(b"USER user\\r\\n")
            raw.send(b"PASS password\\r\\n")
            raw.send(b"DELE 1\\r\\n")
            assert raw.send(b"RETR 1\\r\\n").startswith(b"-ERR")
            raw.send(b"QUIT\\r\\n")


    @pytest.mark.fakepop(messages=MAIL)
    def test_deletions_lost_without_quit(pop3_server):
        with Raw(pop3_server) as raw:
            raw.send(b"USER user\\r\\n")
            raw.send(b"PASS password\\r\\n")
            raw.send(b"DELE 1\\r\\n")
    """


def outcomes(recorder: pytest.HookRecorder) -> dict[str, str]:
    """Each test's outcome: "passed", or the first phase that did not pass and how."""
    found: dict[str, str] = {}
    for report in recorder.getreports("pytest_runtest_logreport"):
        name = report.nodeid.split("::")[-1]
        if report.passed and report.when == "call":
            found.setdefault(name, "passed")
        elif not report.passed:
            found[name] = f"{report.when} {report.outcome}"
    return found


def test_strict_mode_fails_each_rule_breaking_client_at_teardown(
    pytester: pytest.Pytester,
) -> None:
    suite(pytester, STRICT_SUITE)
    recorder = pytester.inline_run("--fakepop-strict")
    assert outcomes(recorder) == dict.fromkeys(VIOLATIONS, "teardown failed")
    for name, violation in VIOLATIONS.items():
        report = recorder.matchreport(name, when="teardown")
        assert str(report.longrepr) == (
            f"the POP3 client broke the RFCs (fakepop strict mode):\n  session 1: {violation}"
        )


def test_without_strict_mode_the_same_clients_pass(pytester: pytest.Pytester) -> None:
    suite(pytester, STRICT_SUITE)
    result = pytester.runpytest()
    result.assert_outcomes(passed=len(VIOLATIONS))
    assert "broke the RFCs" not in result.stdout.str()


def test_strict_on_the_marker_and_well_behaved_clients(pytester: pytest.Pytester) -> None:
    suite(
        pytester,
        """
        import poplib

        import pytest

        from pophelp import Raw, login

        MAIL = [b"Subject: one\\r\\n\\r\\n.dot\\r\\n", b"Subject: two\\r\\n\\r\\nbody\\r\\n"]


        @pytest.mark.fakepop(strict=True)
        def test_strict_marker(pop3_server):
            with Raw(pop3_server) as raw:
                raw.send(b"QUIT\\n")


        def test_strict_factory(pop3_server_factory):
            with Raw(pop3_server_factory(strict=True)) as raw:
                raw.send(b"QUIT\\n")


        @pytest.mark.fakepop(strict=False)
        def test_strict_false_wins_over_the_option(pop3_server):
            with Raw(pop3_server) as raw:
                raw.send(b"QUIT\\n")


        @pytest.mark.fakepop(strict=True, messages=MAIL)
        def test_poplib_with_stls(pop3_server, pop3_mailbox, pop3_ssl_context):
            client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            client.stls(pop3_ssl_context)  # CAPA, then STLS
            assert "TOP" in client.capa()
            client.user("user")
            client.pass_("password")
            assert client.stat()[0] == 2
            client.uidl()
            client.top(1, 0)
            for number in (1, 2):
                client.retr(number)
                client.dele(number)
            client.quit()
            assert len(pop3_mailbox) == 0


        @pytest.mark.fakepop(strict=True, messages=MAIL)
        def test_poplib_over_implicit_tls(pop3_server, pop3_ssl_context):
            client = poplib.POP3_SSL(
                pop3_server.host, pop3_server.tls_port, context=pop3_ssl_context, timeout=5
            )
            client.capa()
            client.user("user")
            client.pass_("password")
            client.list()
            client.rset()
            client.noop()
            client.quit()


        @pytest.mark.fakepop(strict=True, tls=False, messages=MAIL)
        def test_poplib_plain_without_tls(pop3_server):
            client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            client.capa()
            client.user("user")
            client.pass_("password")
            client.retr(2)
            client.quit()


        @pytest.mark.fakepop(strict=True)
        def test_poplib_apop(pop3_server):
            client = poplib.POP3(pop3_server.host, pop3_server.port, timeout=5)
            client.apop("user", "password")
            client.quit()
        """,
    )
    recorder = pytester.inline_run("--fakepop-strict")
    assert outcomes(recorder) == {
        "test_strict_marker": "teardown failed",
        "test_strict_factory": "teardown failed",
        "test_strict_false_wins_over_the_option": "passed",
        "test_poplib_with_stls": "passed",
        "test_poplib_over_implicit_tls": "passed",
        "test_poplib_plain_without_tls": "passed",
        "test_poplib_apop": "passed",
    }


# --- assertion helpers ---------------------------------------------------------------------


def test_assertion_helpers_pass_and_fail_with_clear_messages(pytester: pytest.Pytester) -> None:
    suite(
        pytester,
        """
        import pytest

        from pophelp import login


        def test_all_pass(pop3_server, pop3_mailbox):
            one = pop3_mailbox.add(b"Subject: one\\r\\n\\r\\n1\\r\\n")
            pop3_mailbox.add(b"Subject: two\\r\\n\\r\\n2\\r\\n")
            client = login(pop3_server)
            client.retr(1)
            client.top(2, 0)
            client.dele(1)
            client.quit()
            transcript = pop3_server.transcript
            transcript.assert_sent("RETR")
            transcript.assert_sent("RETR 1")
            transcript.assert_sent("top 2")
            transcript.assert_login("USER")
            transcript.assert_login("USER", user="user")
            transcript.assert_quit()
            pop3_mailbox.assert_deleted(one)
            with pytest.raises(AssertionError):
                transcript.assert_sent("RET")  # a command, not a prefix of one


        def test_assert_sent_fails(pop3_server):
            client = login(pop3_server)
            client.stat()
            client.quit()
            pop3_server.transcript.assert_sent("RETR")


        def test_assert_login_fails(pop3_server):
            login(pop3_server).quit()
            pop3_server.transcript.assert_login("APOP")


        def test_assert_login_as_fails(pop3_server):
            login(pop3_server).quit()
            pop3_server.transcript.assert_login("USER", user="root")


        def test_assert_quit_fails(pop3_server):
            login(pop3_server).quit()
            login(pop3_server).close()
            pop3_server.transcript.assert_quit()


        def test_assert_deleted_fails(pop3_server, pop3_mailbox):
            pop3_mailbox.add(b"Subject: one\\r\\n\\r\\n1\\r\\n", uid="m1")
            client = login(pop3_server)
            client.dele(1)
            client.close()  # no QUIT: nothing deleted
            pop3_mailbox.assert_deleted("m1")
        """,
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=5)
    out = result.stdout.str()
    for message in (
        "AssertionError: no client sent 'RETR'; they sent: ['USER user', 'PASS ****', 'STAT',"
        " 'QUIT']",
        "AssertionError: no session logged in with APOP; logins: [('USER', 'user')]",
        "AssertionError: no session logged in with USER as root; logins: [('USER', 'user')]",
        "AssertionError: sessions [2] ended without a completed QUIT",
        "AssertionError: deleted [], expected ['m1']",
    ):
        assert message in out


# --- xdist and asyncio ---------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_under_xdist_each_worker_runs_its_own_servers(pytester: pytest.Pytester) -> None:
    suite(
        pytester,
        """
        import os
        import poplib
        from pathlib import Path

        import pytest


        @pytest.mark.parametrize("n", range(8))
        def test_fetch(pop3_server, pop3_mailbox, pop3_ssl_context, n):
            pop3_mailbox.add(f"Subject: {n}\\r\\n\\r\\nbody\\r\\n")
            client = poplib.POP3_SSL(
                pop3_server.host, pop3_server.tls_port, context=pop3_ssl_context, timeout=5
            )
            client.user("user")
            client.pass_("password")
            assert client.stat()[0] == 1
            client.quit()
            with Path("workers.txt").open("a") as file:
                file.write(os.environ["PYTEST_XDIST_WORKER"] + "\\n")
        """,
    )
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(passed=8)
    workers = (pytester.path / "workers.txt").read_text().split()
    assert len(workers) == 8
    assert set(workers) == {"gw0", "gw1"}


def test_asyncio_clients_in_threads(pytester: pytest.Pytester) -> None:
    suite(
        pytester,
        """
        import asyncio
        import poplib

        import pytest


        def count(host, port, user, password):
            client = poplib.POP3(host, port, timeout=5)
            client.user(user)
            client.pass_(password)
            messages, _ = client.stat()
            client.quit()
            return messages


        @pytest.mark.fakepop(users={"ann": "a", "ben": "b"})
        def test_async(pop3_server):
            pop3_server.mailbox("ann").add(b"Subject: 1\\r\\n\\r\\nx\\r\\n")
            pop3_server.mailbox("ben").add(b"Subject: 2\\r\\n\\r\\ny\\r\\n")
            pop3_server.mailbox("ben").add(b"Subject: 3\\r\\n\\r\\nz\\r\\n")

            async def main():
                host, port = pop3_server.host, pop3_server.port
                return await asyncio.gather(
                    asyncio.to_thread(count, host, port, "ann", "a"),
                    asyncio.to_thread(count, host, port, "ben", "b"),
                )

            assert asyncio.run(main()) == [1, 2]
            pop3_server.transcript.assert_login("USER", user="ann")
            pop3_server.transcript.assert_login("USER", user="ben")
        """,
    )
    pytester.runpytest().assert_outcomes(passed=1)


# --- the README's example ------------------------------------------------------------------


def python_files(markdown: str) -> dict[str, str]:
    """The python blocks of ``markdown`` that name their file on their first line."""
    files = {}
    for block in re.findall(r"^```python\n(.*?)^```$", markdown, re.MULTILINE | re.DOTALL):
        name = re.fullmatch(r"# (\w+\.py)", block.partition("\n")[0])
        if name:
            files[name[1]] = block
    return files


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    files = python_files(DOCS.read_text(encoding="utf-8"))
    assert sorted(files) == ["mailfetch.py", "test_mailfetch.py"]
    for name, source in files.items():
        (pytester.path / name).write_text(source, encoding="utf-8")
    tests = len(re.findall(r"^def test_", files["test_mailfetch.py"], re.MULTILINE))
    assert tests >= 5
    # Strict too: the example's client keeps to the RFCs.
    pytester.runpytest("--fakepop-strict").assert_outcomes(passed=tests)


def test_loading_the_plugin_imports_nothing_heavy() -> None:
    # Every pytest run loads the plugin wherever fakepop is installed: the server, TLS and
    # mail modules (and cryptography, Faker, http.server) wait until a fixture needs them.
    code = (
        "import sys, fakepop.pytest_plugin\n"
        "heavy = ('fakepop.server', 'fakepop.tls', 'fakepop.control', 'fakepop.mail',"
        " 'trustme', 'cryptography', 'scramp', 'faker', 'http.server')\n"
        "print(' '.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "\n"


def test_the_public_names_are_there_when_asked_for() -> None:
    code = "import fakepop; print(all(getattr(fakepop, n) for n in fakepop.__all__))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout == "True\n", result.stderr
