"""Shared fixtures: tiny synthetic data, and the rule for tests that need a system package."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnistcore import load_dataset
from tests.postgres import find_bin_dir, postgres_server

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(present: bool, package: str, what: str) -> None:
    """Skip (locally) or fail (when CI=true) a test whose Debian package is missing."""
    if present:
        return
    message = f"{what} missing: install the Debian package {package} (make test does, as root)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_command(command: str, package: str) -> str:
    path = shutil.which(command)
    require(path is not None, package, f"command {command!r}")
    return str(path)


def require_path(path: Path, package: str) -> Path:
    require(path.exists(), package, str(path))
    return path


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never reach for the network: datasets come from disk, packages or code.
    monkeypatch.setenv("MNISTCORE_NO_DOWNLOAD", "1")


@pytest.fixture(scope="session")
def synthetic():
    """2,000 synthetic digits: 1,800 train / 200 val / 400 test."""
    return load_dataset("synthetic", synthetic_size=2000)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """The URL of a throw-away PostgreSQL server (tests/postgres.py), one per test module."""
    bin_dir = find_bin_dir()
    require(bin_dir is not None, "postgresql", "PostgreSQL server binaries (initdb, pg_ctl)")
    assert bin_dir is not None
    with postgres_server(bin_dir) as server:
        yield server.url
