"""The short fuzz runs report a missing atheris as the interop tests report a missing client."""

from required import pytest_runtest_makereport  # noqa: F401  # the hook, for this folder
