"""The import graph: layers import strictly downward and no module cycle exists.

serving/ (container code) imports nothing of the project outside serving/, and its shared
modules (the wire contract, the archive helpers) nothing outside the standard library and
numpy; deploy/ and explain/ import serving/ but never each other; only the top layer,
clearsight/, imports both. Read with ast: nothing is imported.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("serving", "deploy", "explain", "clearsight")
# which project packages each package may import (itself always)
ALLOWED = {
    "serving": set(),
    "deploy": {"serving"},
    "explain": {"serving"},
    "clearsight": {"serving", "deploy", "explain"},
}
SHARED = ("serving.contract", "serving.archive")  # imported by deploy, explain and the container
SHARED_MAY_IMPORT = {"numpy", "serving.errors"}


def module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def imports_of(name: str, top_level_only: bool = False) -> set[str]:
    """The modules ``name`` imports: project modules resolved to a module, others by their top name."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in MODULES and target.split(".")[0] in PACKAGES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target if target.split(".")[0] in PACKAGES else target.split(".")[0])
    return found


@pytest.mark.parametrize("name", sorted(MODULES))
def test_packages_import_only_the_layers_below(name):
    package = name.split(".")[0]
    imported = {target.split(".")[0] for target in imports_of(name)} & set(PACKAGES)
    upward = imported - ALLOWED[package] - {package}
    assert not upward, f"{name} imports {sorted(upward)}; {package}/ may import only {sorted(ALLOWED[package])}"


@pytest.mark.parametrize("name", SHARED)
def test_shared_modules_need_only_the_standard_library_and_numpy(name):
    third_party = {target for target in imports_of(name, top_level_only=True)
                   if target.split(".")[0] not in sys.stdlib_module_names}
    assert third_party <= SHARED_MAY_IMPORT, f"{name} imports {sorted(third_party - SHARED_MAY_IMPORT)}"


def test_no_import_cycle_between_modules():
    graph = {name: {target for target in imports_of(name) if target in MODULES} for name in MODULES}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for neighbour in graph[node]:
            if neighbour not in index:
                visit(neighbour)
                low[node] = min(low[node], low[neighbour])
            elif neighbour in on_stack:
                low[node] = min(low[node], index[neighbour])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_the_top_layer_is_the_only_one_importing_deploy_and_explain_together():
    both = [name for name in MODULES
            if {"deploy", "explain"} <= {target.split(".")[0] for target in imports_of(name)}]
    assert both and all(name.startswith("clearsight") for name in both)
