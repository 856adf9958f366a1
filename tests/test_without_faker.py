"""Without the extra fakepop[generate] (Faker), everything but making mail works, and making
mail says what to install.

Each test runs Python in a child process where Faker cannot be imported, as in an
environment that never installed it: a ``sitecustomize`` puts a finder first on
``sys.meta_path`` that answers ``import faker`` as Python does for a missing module.
"""

from __future__ import annotations

import os
import poplib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from serving import environment, serve

import fakepop

pytest_plugins = ["pytester"]

ROOT = Path(fakepop.__file__).resolve().parent.parent
HINT = "pip install 'fakepop[generate]'"
NO_FAKER = """\
import sys


class NoFaker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "faker":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoFaker())
"""


@pytest.fixture
def no_faker(tmp_path: Path) -> dict[str, str]:
    """An environment for child processes in which ``import faker`` fails."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_FAKER)
    return environment(PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))


def run(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_child_has_no_faker(no_faker: dict[str, str], tmp_path: Path) -> None:
    done = run(no_faker, "-c", "import faker", cwd=tmp_path)
    assert "ModuleNotFoundError" in done.stderr


def test_generate_messages_raises_faker_missing(no_faker: dict[str, str], tmp_path: Path) -> None:
    code = textwrap.dedent("""
        from fakepop import generate_messages
        from fakepop.mail.generate import FakerMissing
        try:
            generate_messages(3)
        except FakerMissing as e:
            assert isinstance(e, ImportError)
            print(e)
    """)
    done = run(no_faker, "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert HINT in done.stdout


def test_fakepop_generate_names_the_extra(no_faker: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "mail"
    done = run(no_faker, "-m", "fakepop", "generate", "--count", "3", "--out", str(out), cwd=ROOT)
    assert done.returncode == 1
    assert HINT in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


def test_fakepop_serve_generate_names_the_extra(no_faker: dict[str, str], tmp_path: Path) -> None:
    done = run(no_faker, "-m", "fakepop", "serve", "--generate", "5", cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.startswith("fakepop: --generate: generating mail needs Faker")
    assert HINT in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_serves_the_demo_without_faker(no_faker: dict[str, str], tmp_path: Path) -> None:
    env = {**no_faker, "FAKEPOP_CERT_DIR": str(tmp_path / "ca")}
    with serve("--port", "0", "--tls-port", "0", "--json", env=env, cwd=ROOT) as served:
        client = poplib.POP3("127.0.0.1", served.info["pop3"]["port"], timeout=10)
        client.user("user")
        client.pass_("password")
        count, _ = client.stat()
        client.quit()
    assert count > 0  # the demo maildrop is fixtures, not generated


def test_the_marker_generate_names_the_extra(
    no_faker: dict[str, str], pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in no_faker.items():
        monkeypatch.setenv(name, value)
    pytester.makepyfile(
        test_suite="""
        import pytest

        def test_plain(pop3_server, pop3_mailbox):
            pop3_mailbox.add(b"Subject: hi\\r\\n\\r\\nHello\\r\\n")
            assert len(pop3_mailbox) == 1

        @pytest.mark.fakepop(generate=3)
        def test_generated(pop3_mailbox):
            pass
        """
    )
    # Faker's own plugin is installed here: turn it off. The assertion rewriter would find
    # Faker's modules itself, ahead of the finder that hides them, since that plugin's
    # distribution marks them for rewriting: plain asserts keep Faker hidden.
    result = pytester.runpytest_subprocess(
        "-p", "no:faker", "-p", "no:cacheprovider", "--assert=plain"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fakepop(generate=...): generating mail needs Faker*"])
    assert HINT in result.stdout.str()
    result.stdout.no_fnmatch_line("*Traceback*")
