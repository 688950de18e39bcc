"""Package structure: no import circles (module-level or lazy, function-level imports alike), the shared
datatypes upstream of everything, each defined once, and every metrics / splat module importable alone."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "jwmsim"
ACYCLIC = ("jwmsim.metrics", "jwmsim.splat", "jwmsim.sim", "jwmsim.log", "jwmsim.env", "jwmsim.worldrec")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """Every jwmsim module ``path`` imports, anywhere in the file (a lazy import inside a function closes a
    circle just the same; it only hides it from the import system)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PKG.rglob("*.py")}
    return {m: {d for d in _imports(p) if d in files and d != m} for m, p in files.items()}


def _cycles(graph: dict[str, set[str]], package: str) -> list[list[str]]:
    sub = {m: {d for d in deps if d.startswith(package + ".")} for m, deps in graph.items()
           if m.startswith(package + ".")}
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(u: str, stack: list[str]) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(sub.get(u, ())):
            if state.get(v) == 1:
                found.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v, stack)
        stack.pop()
        state[u] = 2

    for m in sorted(sub):
        if m not in state:
            visit(m, [])
    return found


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_circle_inside_the_package(package):
    assert _cycles(_graph(), package) == []


def test_the_cycle_finder_finds_a_lazy_circle():
    graph = {"jwmsim.metrics.a": {"jwmsim.metrics.b"}, "jwmsim.metrics.b": {"jwmsim.metrics.a"}}
    assert _cycles(graph, "jwmsim.metrics") == [["jwmsim.metrics.a", "jwmsim.metrics.b", "jwmsim.metrics.a"]]


def test_datatypes_are_upstream_and_defined_once():
    assert not {d for d in _imports(PKG / "datatypes.py") if d.startswith("jwmsim")}  # numpy only
    defs: dict[str, list[str]] = {}
    for p in PKG.rglob("*.py"):
        for node in ast.parse(p.read_text()).body:
            names = ([node.name] if isinstance(node, (ast.ClassDef, ast.FunctionDef)) else
                     [t.id for t in getattr(node, "targets", [getattr(node, "target", None)]) if isinstance(t, ast.Name)])
            for name in names:
                defs.setdefault(name, []).append(_module(p))
    for name in ("EgoParams", "AgentType", "AGENT_TYPES", "agent_type_index", "as_agent_types", "CollisionType",
                 "VRU_TYPES", "VEHICLE_TYPES", "MOVING_AGENT_TYPES"):
        assert defs.get(name) == ["jwmsim.datatypes"], (name, defs.get(name))
    # one name, one meaning: no class or function name defined twice among these
    for name in ("EgoTrajectory", "EgoTrack", "suite_score", "resample_polyline", "synthetic_log",
                 "synthetic_road_log"):
        assert len(defs.get(name, [])) <= 1, (name, defs.get(name))


@pytest.mark.slow
def test_every_metrics_and_splat_module_imports_alone():
    mods = sorted(m for m in _graph() if m.startswith(("jwmsim.metrics", "jwmsim.splat", "jwmsim.datatypes")))
    procs = [(m, subprocess.Popen([sys.executable, "-c", f"import {m}"], cwd=ROOT, stderr=subprocess.PIPE,
                                  text=True)) for m in mods]
    failed = {m: p.communicate()[1].strip().splitlines()[-1:] for m, p in procs if p.wait() != 0}
    assert failed == {}
