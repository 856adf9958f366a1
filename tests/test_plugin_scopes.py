"""pop3_server_fixture: one server for a module or a session, put back after every test.

Each test writes a suite and runs it with pytester, as tests/test_pytest_plugin.py does.
"""

from __future__ import annotations

import importlib.util

import pytest

# Loaded here, before pytester's in-process runs, which would otherwise import cryptography's
# bindings afresh in each run and mix its classes across runs.
import fakepop.tls  # noqa: F401

pytest_plugins = ["pytester"]

HELPERS = """
import poplib


def login(server, user="user", password="password"):
    client = poplib.POP3(server.host, server.port, timeout=5)
    client.user(user)
    client.pass_(password)
    return client
"""


@pytest.fixture(autouse=True)
def inner_runs(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest -p no:benchmark")
    pytester.makepyfile(pophelp=HELPERS)


def test_a_module_server_is_made_once_and_put_back_after_each_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_suite="""
        import poplib

        import pytest

        from fakepop.pytest_plugin import pop3_server_fixture
        from pophelp import login

        big = pop3_server_fixture(scope="module", generate=50, seed=1)
        SEEN = []
        OPEN = []


        @pytest.mark.parametrize("run", [1, 2, 3])
        def test_consume_everything(big, run):
            SEEN.append(big)
            mailbox = big.mailbox("user")
            if run == 1:
                SEEN.append([(m.uid, m.read()) for m in mailbox])
            assert [(m.uid, m.read()) for m in mailbox] == SEEN[1]  # same UIDs, same bytes
            assert mailbox.deleted == [] and mailbox.retrieved == {}
            assert big.users["user"] == "password"
            assert sorted(big.users) == ["user"]
            assert big.faults.rules == []
            assert big.settings.idle_timeout == 600
            assert len(big.transcript) == 0
            assert not big.store["user"].tokens
            # Everything a test may change:
            client = login(big)
            assert client.stat()[0] == 50
            client.retr(1)
            for n in range(1, 51):
                client.dele(n)
            client.quit()
            assert len(mailbox) == 0
            big.users["user"] = "changed"
            big.users["other"] = "pw"
            big.add_token("user")
            big.faults.add(on="STAT", action="error")
            big.change_settings(idle_timeout=5)
            OPEN.append(login(big, password="changed"))  # left open: the put-back closes it


        def test_one_server_for_the_module():
            assert all(server is SEEN[0] for server in SEEN[::2])
            assert SEEN[0].running
            for client in OPEN:
                client.close()
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=4)


def test_a_session_server_from_conftest_is_shared_by_modules(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from fakepop.pytest_plugin import pop3_server_fixture

        shared_pop3 = pop3_server_fixture(
            scope="session", users={"alice": "secret"}, messages=[b"Subject: a\\r\\n\\r\\nb\\r\\n"]
        )
        """
    )
    test = """
        from pophelp import login

        def test_{n}(shared_pop3):
            with open("ports.txt", "a") as file:
                file.write(f"{{shared_pop3.port}}\\n")
            client = login(shared_pop3, "alice", "secret")
            assert client.stat()[0] == 1
            client.dele(1)
            client.quit()
            assert len(shared_pop3.mailbox("alice")) == 0
        """
    pytester.makepyfile(test_one=test.format(n=1), test_two=test.format(n=2))
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)
    ports = (pytester.path / "ports.txt").read_text().split()
    assert len(ports) == 2
    assert len(set(ports)) == 1


def test_the_report_shows_only_the_failing_tests_sessions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite="""
        from fakepop.pytest_plugin import pop3_server_fixture
        from pophelp import login

        shared = pop3_server_fixture(scope="module")


        def test_first_passes(shared):
            client = login(shared)
            client.noop()
            client.quit()


        def test_second_fails(shared):
            client = login(shared)
            client.list()
            client.quit()
            assert False, "second"
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert out.count("- POP3 transcript -") == 1
    report = out[out.index("- POP3 transcript -") :]
    assert "--- session 1" in report
    assert "--- session 2" not in report  # test 1's session is not shown, nor numbered
    assert "LIST" in report
    assert "NOOP" not in report


def test_strict_mode_checks_each_tests_own_sessions(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite="""
        import socket

        from fakepop.pytest_plugin import pop3_server_fixture
        from pophelp import login

        strict = pop3_server_fixture(scope="module", strict=True)


        def test_breaks_the_rules(strict):
            with socket.create_connection((strict.host, strict.port), timeout=5) as sock:
                file = sock.makefile("rb")
                file.readline()
                sock.sendall(b"PASS password\\r\\n")
                file.readline()
                sock.sendall(b"QUIT\\r\\n")
                file.readline()


        def test_behaves(strict):
            login(strict).quit()
        """
    )
    result = pytester.runpytest("-p", "no:randomly", "-rE")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_breaks_the_rules*",
            "*the POP3 client broke the RFCs (fakepop strict mode):*",
            "*session 1: PASS without USER*",
            "*- POP3 transcript -*",
        ]
    )
    assert "ERROR at teardown of test_behaves" not in result.stdout.str()


def test_a_session_paused_by_a_fault_does_not_hold_up_the_next_test(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_suite="""
        import contextlib
        import poplib
        import threading

        from fakepop.pytest_plugin import pop3_server_fixture
        from pophelp import login

        shared = pop3_server_fixture(scope="module", messages=[b"Subject: a\\r\\n\\r\\nb\\r\\n"])


        def test_leaves_a_client_waiting(shared):
            shared.faults.add(on="RETR", action="delay", seconds=3600)
            client = login(shared)
            client.sock.settimeout(3600)
            def retrieve():
                with contextlib.suppress(poplib.error_proto, OSError):
                    client.retr(1)  # cut off when the test ends
                client.close()

            threading.Thread(target=retrieve, daemon=True).start()
            while not shared.faults.fired:
                threading.Event().wait(0.001)


        def test_next(shared):
            assert shared.faults.rules == []
            client = login(shared)
            assert client.retr(1)[0].startswith(b"+OK")
            client.quit()
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_maildir_is_put_back_on_disk(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite="""
        import pytest

        from fakepop.pytest_plugin import pop3_server_fixture
        from pophelp import login

        on_disk = pop3_server_fixture(
            scope="module", maildir="store", messages=[b"Subject: a\\r\\n\\r\\nb\\r\\n"] * 3
        )


        @pytest.mark.parametrize("run", [1, 2])
        def test_delete_all(on_disk, run, tmp_path_factory):
            files = list(on_disk.settings.maildir.glob("user/*/*"))
            assert len(files) == 3
            client = login(on_disk)
            for n in (1, 2, 3):
                client.dele(n)
            client.quit()
            assert list(on_disk.settings.maildir.glob("user/*/*")) == []
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2)


def test_a_scope_that_is_no_scope_says_which_there_are(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite="""
        from fakepop.pytest_plugin import pop3_server_fixture

        shared = pop3_server_fixture(scope="function")


        def test_it(shared):
            pass
        """
    )
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        [
            "*pop3_server_fixture(scope='function'): the scope must be one of class, module,"
            " package, session; for one test, use pop3_server and @pytest.mark.fakepop*"
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*raise *")


@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="needs pytest-xdist")
def test_under_xdist_each_worker_has_its_own_shared_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_suite="""
        import os

        import pytest

        from fakepop.pytest_plugin import pop3_server_fixture
        from pophelp import login

        shared = pop3_server_fixture(scope="session", generate=20, seed=3)


        @pytest.mark.parametrize("n", range(8))
        def test_fetch_and_delete(shared, n):
            client = login(shared)
            assert client.stat()[0] == 20
            client.dele(1)
            client.quit()
            with open("workers.txt", "a") as file:
                file.write(f"{os.environ['PYTEST_XDIST_WORKER']} {shared.port}\\n")
        """
    )
    result = pytester.runpytest("-n", "2")
    result.assert_outcomes(passed=8)
    lines = (pytester.path / "workers.txt").read_text().splitlines()
    assert len(lines) == 8
    pairs = {tuple(line.split()) for line in set(lines)}
    assert {worker for worker, _ in pairs} == {"gw0", "gw1"}
    assert len({port for _, port in pairs}) == 2  # one server a worker, the same for its tests


def test_relative_paths_are_read_from_the_directory_of_the_conftest_that_makes_it(
    pytester: pytest.Pytester,
) -> None:
    sub = pytester.mkdir("sub")
    (sub / "mail").mkdir()
    (sub / "mail" / "hello.eml").write_bytes(b"Subject: hello\r\n\r\nfrom beside the module\r\n")
    (sub / "conftest.py").write_text(
        "from fakepop.pytest_plugin import pop3_server_fixture\n"
        "\n"
        'shared = pop3_server_fixture(scope="session", messages=["mail/hello.eml"])\n'
    )
    (sub / "test_beside.py").write_text(
        "def test_it(shared):\n"
        '    [message] = shared.mailbox("user")\n'
        '    assert message.read().endswith(b"from beside the module\\r\\n")\n'
    )
    # Run from the parent directory: the path is not the working directory's.
    pytester.runpytest("-p", "no:cacheprovider", "sub").assert_outcomes(passed=1)
