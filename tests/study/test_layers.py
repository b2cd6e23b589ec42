"""Imports point down: the study package's modules import only those below them, and no import
cycle passes through the study loop's modules (read with ``ast``, function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# automl/study/__init__.py lists its modules in this order: each may import only those before it.
STUDY_ORDER = ["_samplers", "_budget_sampler", "_trial_pruners", "_deadline", "storage", "_settings", "_reaper",
               "_run", "_best", "_front", "_loop", "_worker", "_jobs", "_search", "_command", "trials", "dashboard"]
MINE = ("automl.study", "automl.search.objective", "automl.train", "automl.device", "automl.exceptions",
        "automl.study.trials", "automl.study.dashboard")


def import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (anywhere in the file)."""
    files = [*REPO.glob("automl/**/*.py"), *REPO.glob("compress/**/*.py"), REPO / "cli.py"]
    mods: dict[str, Path] = {}
    for f in files:
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for mod, f in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                deps |= {d for a in node.names if (d := known(a.name))}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {d for a in node.names if (d := known(f"{node.module}.{a.name}"))}
        # A module's own package is imported with it by Python; that is no arrow up.
        graph[mod] = {d for d in deps if d != mod and not mod.startswith(d + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_cycle_through_the_study_loop() -> None:
    mine = [c for c in cycles(import_graph()) if any(m == p or m.startswith(p + ".") for m in c for p in MINE)]
    assert mine == []


def test_study_modules_import_only_downwards() -> None:
    graph = import_graph()
    assert sorted(m for m in graph if m.startswith("automl.study.")) == sorted(f"automl.study.{n}" for n in STUDY_ORDER)
    for i, name in enumerate(STUDY_ORDER):
        inside = {d.rpartition(".")[2] for d in graph[f"automl.study.{name}"] if d.startswith("automl.study.")}
        assert inside <= set(STUDY_ORDER[:i]), (name, inside - set(STUDY_ORDER[:i]))
    assert not any(d.startswith("compress") for m in graph if m.startswith("automl.study") for d in graph[m])
