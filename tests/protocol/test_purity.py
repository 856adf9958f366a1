"""The protocol core does no I/O: no module of fakepop/protocol imports a network or thread API."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fakepop.protocol

# The I/O and concurrency APIs, and the modules of fakepop that wrap them.
FORBIDDEN = {"socket", "ssl", "threading", "selectors", "asyncio", "fakepop.server", "fakepop.cli"}

PACKAGE = Path(fakepop.protocol.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def imported(source: str, package: str) -> set[str]:
    """Every module ``source`` imports, relative imports resolved against ``package``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            names.add(base)
            # "from fakepop import server" imports the module fakepop.server.
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            arg = node.args[0]
            if name in {"__import__", "import_module"} and isinstance(arg, ast.Constant):
                names.add(str(arg.value))
    return names


def forbidden(names: set[str]) -> set[str]:
    return {
        name
        for name in names
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }


def test_the_package_has_modules() -> None:
    assert {p.name for p in MODULES} >= {"session.py", "buffer.py", "commands.py", "actions.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_io_imports(path: Path) -> None:
    package = ".".join(("fakepop", "protocol", *path.relative_to(PACKAGE).parent.parts))
    assert forbidden(imported(path.read_text("utf-8"), package)) == set()


@pytest.mark.parametrize(
    "source",
    [
        "import socket",
        "import ssl as tls",
        "from threading import Lock",
        "import asyncio.events",
        "from selectors import DefaultSelector",
        "from fakepop import server",
        "from .. import cli",
        "from ..server import POP3Server",
        "importlib.import_module('socket')",
        "__import__('ssl')",
    ],
)
def test_the_check_catches(source: str) -> None:
    assert forbidden(imported(source, "fakepop.protocol")) != set()


def test_the_check_lets_pure_imports_pass() -> None:
    source = "import hashlib\nfrom fakepop.mail.wire import CRLF\nfrom .actions import CLOSE"
    assert forbidden(imported(source, "fakepop.protocol")) == set()
