"""The rooms and who may import whom (DESIGN.md): mnistcore <- studies <- search, bench, reports.

Read from the source with ``ast``, so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mnistcore", "studies", "search", "bench", "reports")
# package -> what it must never import (ours and third-party)
FORBIDDEN = {
    "mnistcore": {"studies", "search", "bench", "reports", "optuna", "plotly", "pandas"},
    "studies": {"search", "bench", "reports", "torch", "plotly"},
    "reports": {"search", "bench", "torch"},
    "search": {"bench"},
    "bench": {"search", "reports"},
}
MAX_LINES = 400  # per module of studies/, search/, reports/, bench/


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names imported from it) for every import statement in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).glob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_what_is_above_it(package) -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in modules(package)
        for module, _ in imports(path)
        if module.split(".")[0] in FORBIDDEN[package]
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_imports_another_packages_private_names(package) -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: from {module} import {', '.join(names)}"
        for path in modules(package)
        for module, names in imports(path)
        if module.split(".")[0] in PACKAGES
        and module.split(".")[0] != package
        and (any(n.startswith("_") for n in names) or "._" in module)
    ]
    assert not wrong, wrong


@pytest.mark.parametrize("package", ["studies", "search", "reports", "bench"])
def test_every_module_stays_readable(package) -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules(package)
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"over {MAX_LINES} lines: {long}"
