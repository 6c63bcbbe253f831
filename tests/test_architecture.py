"""The code map holds: no import cycles, sections import only what ARCHITECTURE.md allows, real paths."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("monitor", "probes", "alerts")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for section in SECTIONS:
        for path in (ROOT / section).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every project module `module` imports, including those under TYPE_CHECKING and inside functions.

    `from pkg import mod` depends on the module `pkg.mod`; `from pkg import name` on the package `pkg`.
    """
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: None if is_package else -1]
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, *([node.module] if node.module else [])])
            else:
                origin = node.module or ""
            names = [
                f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in MODULES else origin
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name in MODULES and name != module)


GRAPH = {module: set(_imported(module, path)) for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(GRAPH):
        if root in index:
            continue
        work = [(root, iter(sorted(GRAPH[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(GRAPH[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _imports_of(prefix: str) -> set[tuple[str, str]]:
    return {
        (module, target)
        for module, targets in GRAPH.items()
        if module == prefix or module.startswith(prefix + ".")
        for target in targets
    }


def test_no_import_cycles() -> None:
    """No module reaches itself through imports, type-only imports included."""
    assert _cycles() == []


def test_probes_and_alerts_never_import_each_other() -> None:
    """probes/ and alerts/ meet only through monitor's event bus and store."""
    assert {edge for edge in _imports_of("probes") if edge[1].split(".")[0] == "alerts"} == set()
    assert {edge for edge in _imports_of("alerts") if edge[1].split(".")[0] == "probes"} == set()


def test_lower_layers_do_not_import_upper_ones() -> None:
    """The store, probes, alerts and the web API never import the daemon, the CLI or the whole config."""
    upper = ("monitor.daemon", "monitor.cli", "monitor.config")
    for section in ("monitor.store", "probes", "alerts", "monitor.web"):
        allowed = {"monitor.config"} if section in ("monitor.web", "alerts") else set()
        wrong = {
            edge
            for edge in _imports_of(section)
            if edge[1] not in allowed and any(edge[1] == u or edge[1].startswith(u + ".") for u in upper)
        }
        assert wrong == set(), section


def test_architecture_names_only_real_paths() -> None:
    """Every file or folder ARCHITECTURE.md names in backticks exists, so the map stays true."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`((?:monitor|probes|alerts|config|tests|bench)/[\w./-]*)`", text))
    assert named, "ARCHITECTURE.md names no paths"
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == []
