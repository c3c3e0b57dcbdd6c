"""ARCHITECTURE.md's import rules, checked on the source: arrows point down, no cycles."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Top-level module names (with the project's subpackage) a file imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_core_imports_only_numpy_numba_and_the_stdlib() -> None:
    allowed = {"numpy", "numba", "core", "__future__"} | set(sys.stdlib_module_names)
    bad = {
        f"{p.relative_to(ROOT)}: {mod}"
        for p in _files("core")
        for mod in _imports(p)
        if mod.split(".")[0] not in allowed
    }
    assert not bad, f"core/ must import numpy, numba and the stdlib only: {sorted(bad)}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("kalshi_rl/env", ("kalshi_rl.kalshi", "kalshi_rl.trade", "kalshi_rl.web",
                           "kalshi_rl.store", "kalshi_rl.train", "kalshi_rl.sim")),
        ("kalshi_rl/train", ("kalshi_rl.kalshi", "kalshi_rl.trade", "kalshi_rl.web",
                             "kalshi_rl.sim")),
        ("kalshi_rl/store", ("kalshi_rl.kalshi", "kalshi_rl.env", "kalshi_rl.train",
                             "kalshi_rl.sim", "kalshi_rl.commands")),
        ("kalshi_rl/kalshi", ("kalshi_rl.env", "kalshi_rl.train", "kalshi_rl.store",
                              "kalshi_rl.sim", "kalshi_rl.commands")),
    ],
)  # fmt: skip
def test_arrows_point_down(package: str, forbidden: tuple[str, ...]) -> None:
    bad = {
        f"{p.relative_to(ROOT)}: {mod}"
        for p in _files(package)
        for mod in _imports(p)
        if mod.startswith(forbidden)
    }
    assert not bad, f"{package} imports what ARCHITECTURE.md forbids: {sorted(bad)}"
