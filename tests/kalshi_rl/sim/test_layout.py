"""The sim's modules import each other without a cycle (TYPE_CHECKING imports included)
and take the wire vocabulary from kalshi.protocol instead of spelling it again."""

from __future__ import annotations

import ast
from pathlib import Path

import kalshi_rl.sim

SIM = Path(kalshi_rl.sim.__file__).parent


def _sim_imports(path: Path) -> set[str]:
    """Sim module names (``server``, ``wire`` ...) that ``path`` imports anywhere."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "kalshi_rl.sim":
                out.update(a.name for a in node.names if (SIM / f"{a.name}.py").exists())
            elif node.module.startswith("kalshi_rl.sim."):
                out.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            out.update(
                a.name.split(".")[2] for a in node.names if a.name.startswith("kalshi_rl.sim.")
            )
    return out


def test_sim_modules_form_a_dag() -> None:
    graph = {p.stem: _sim_imports(p) for p in SIM.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(mod: str, path: tuple[str, ...]) -> None:
        assert mod not in path, f"import cycle in kalshi_rl.sim: {' -> '.join((*path, mod))}"
        if mod in done:
            return
        for dep in graph.get(mod, ()):
            visit(dep, (*path, mod))
        done.add(mod)

    for mod in graph:
        visit(mod, ())
    assert "server" not in set().union(*graph.values()), "nothing in the sim imports server"


def test_sim_spells_no_error_codes_or_channel_names_of_its_own() -> None:
    for p in SIM.glob("*.py"):
        tree = ast.parse(p.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name):
                        assert not t.id.startswith(("ERR_", "CHANNEL_")), (
                            f"{p.name} defines {t.id}: take it from kalshi_rl.kalshi.protocol"
                        )
