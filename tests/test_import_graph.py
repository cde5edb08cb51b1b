"""The project's import graph: no circles, and the core (ilif_lava/) never imports a stage.

Every ``import`` and ``from ... import`` in the five packages counts, at module level or inside a function (a lazy
import hides a circle from Python, not from a reader). Strongly connected components of more than one module are
circles.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ilif_lava", "training", "export", "simulations", "pipeline")
STAGES = ("training", "export", "simulations", "pipeline")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> Dict[str, Set[str]]:
    """module -> the project modules it imports (the longest existing prefix of each imported name)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}

    def resolve(name: str) -> Optional[str]:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph: Dict[str, Set[str]] = {}
    for mod, path in files.items():
        deps: Set[str] = set()
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            deps.update(t for t in map(resolve, names) if t and t != mod)
        graph[mod] = deps
    return graph


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_core_imports_no_stage():
    bad = sorted((m, d) for m, deps in import_graph().items() if m.split(".")[0] == "ilif_lava"
                 for d in deps if d.split(".")[0] in STAGES)
    assert bad == []


def test_the_circle_finder_finds_circles():
    """So the tests above can fail: a planted three-module circle and a self-contained pair are found."""
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}}
    assert sorted(circles(g)) == [["a", "b", "c"], ["e", "f"]]
    graph = import_graph()      # and the real graph sees lazy imports inside functions
    assert "training.paper_models" in graph["training.models"] and "training.net_switches" in graph["training.models"]
