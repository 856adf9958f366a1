"""Reading fixture mail from disk."""

from __future__ import annotations

from pathlib import Path


def load_eml_dir(path: Path) -> list[bytes]:
    """The ``.eml`` files of a directory, in name order, as raw bytes."""
    if not path.is_dir():
        raise FileNotFoundError(f"no directory of .eml files at {path}")
    return [p.read_bytes() for p in sorted(path.glob("*.eml"))]


def fixtures_dir() -> Path:
    """The sample mailboxes: inside the installed package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "fixtures", package.parent / "fixtures"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the sample mailboxes (fixtures/) are missing from this installation")
