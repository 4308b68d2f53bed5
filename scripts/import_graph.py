"""The import graph of bookjob's own packages: modules, edges, cycles and layer rules.

``python scripts/import_graph.py [-v] [ROOT]`` reads every module under ``steps/`` and ``pipeline/``
of ROOT (default: this checkout) with :mod:`ast`, counts an edge for every import of another
bookjob module (function-level imports included: a cycle through a lazy import is still a
cycle), and prints the modules, the edges, the cycles (strongly connected components of more
than one module, or a module importing itself) and the imports that break the layer rules
(``steps`` never imports ``pipeline``; ``pipeline`` imports only ``steps.protocol`` and
``steps.core``; ``steps.core`` imports only itself and ``steps.protocol``, a leaf). Exit code 1 if there is a
cycle or a broken rule, so a test can run it.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("steps", "pipeline")


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path) -> dict[str, set[str]]:
    """Module -> the bookjob modules it imports."""
    files = {module_name(root, p): p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from steps import runner` imports the module steps.runner
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                           else node.module for a in node.names]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name and target.split(".")[0] in PACKAGES:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def broken_rules(graph: dict[str, set[str]]) -> list[str]:
    broken = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            if source.startswith("steps") and target.startswith("pipeline"):
                broken.append(f"{source} -> {target} (steps never imports pipeline)")
            if (source.startswith("pipeline") and target.startswith("steps")
                    and not target.startswith(("steps.protocol", "steps.core"))):
                broken.append(f"{source} -> {target} (pipeline imports steps.protocol and "
                              "steps.core only)")
            if (source.startswith("steps.core")
                    and not target.startswith(("steps.core", "steps.protocol"))):
                broken.append(f"{source} -> {target} (steps.core imports only itself and "
                              "steps.protocol)")
    return broken


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    paths = [a for a in argv if a != "-v"]
    root = Path(paths[0]) if paths else Path(__file__).resolve().parents[1]
    graph = imports(root)
    edges = sum(len(t) for t in graph.values())
    found = cycles(graph)
    broken = broken_rules(graph)
    print(f"modules: {len(graph)}  edges: {edges}  cycles: {len(found)}  "
          f"layer-rule breaks: {len(broken)}")
    for component in found:
        print("cycle: " + " <-> ".join(component))
    for line in broken:
        print("rule: " + line)
    if verbose:
        for source, targets in sorted(graph.items()):
            print(f"{source} -> {', '.join(sorted(targets)) or '-'}")
    return 1 if found or broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
