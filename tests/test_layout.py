r"""The repository's layout: every module of the package imports on its own, imports flow
downwards through the layers of DESIGN.md, no module takes part in an import cycle, the
package never imports the reproduction beside it, and the reproduction, the examples and the
benchmarks use only the package's public names."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tg_samplenet"

# Layers from the bottom up: a module may import its own layer and those below it.
LAYERS = {
    "ops": 0,
    "io": 1,  # atomic checkpoint files: SampleNet.save and load use it
    "nn": 1,
    "losses": 2,
    "temperature": 2,
    "transforms": 2,
    "training": 3,
    "models": 3,  # the task networks the command line trains
    "datasets": 3,
    "cli": 4,
}
# What the reproduction, the examples and the benchmarks may import from: the package's
# public modules (public names only).
PUBLIC_MODULES = {
    "tg_samplenet",
    "tg_samplenet.datasets",
    "tg_samplenet.io",
    "tg_samplenet.losses",
    "tg_samplenet.models",
    "tg_samplenet.nn",
    "tg_samplenet.ops",
    "tg_samplenet.ops.batch",
    "tg_samplenet.ops.checks",
    "tg_samplenet.temperature",
    "tg_samplenet.training",
    "tg_samplenet.training.distributed",
    "tg_samplenet.transforms",
}


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def imported_modules(name: str) -> set[str]:
    r"""The :obj:`tg_samplenet` modules that :obj:`name` imports anywhere in its source,
    at module level or inside functions."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    known = set(module_names())
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def layer(name: str) -> int:
    parts = name.split(".")
    if len(parts) == 1:
        return len(LAYERS)  # the top level sits above everything
    if parts[1] not in LAYERS:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS and to DESIGN's layout")
    return LAYERS[parts[1]]


def test_every_module_has_a_layer():
    for name in module_names():
        layer(name)


def test_imports_flow_downwards():
    upward = []
    for name in module_names():
        for target in imported_modules(name):
            if layer(target) > layer(name):
                upward.append(f"{name} -> {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    r"""Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def package_graph() -> dict[str, set[str]]:
    # A package's __init__ re-exports its children; importing the package from a child is
    # what makes a cycle, so edges into __init__ files from their own children count.
    return {name: imported_modules(name) for name in module_names()}


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_package():
    graph = package_graph()
    # Edges from a package's __init__ to its own children are re-exports, not cycles.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    assert find_cycles(graph) == []


CHILD = r"""
import os, sys, importlib
import torch, torch_geometric  # the heavy imports once, before the forks
failed = []
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException as error:
            print(f"{name}: {type(error).__name__}: {error}", flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name)
print("FAILED", " ".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_every_module_imports_on_its_own():
    # Each module in a child forked before any tg_samplenet import: a fresh interpreter as
    # far as the package is concerned, without paying torch's import for each module.
    names = [n for n in module_names() if n != "tg_samplenet.cli.__main__"]
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *names],
        capture_output=True,
        text=True,
        cwd=PACKAGE.parent,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_imports_another_modules_private_names():
    # What a module keeps private (a leading underscore) stays inside it.
    private = []
    for name in module_names():
        path = PACKAGE.parent.joinpath(*name.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tg_samplenet"):
                private += [
                    f"{name}: {node.module}.{a.name}" for a in node.names if a.name[0] == "_"
                ]
    assert not private, "\n".join(private)


def imports_of(path: Path) -> list[tuple[str, str]]:
    r"""Every :obj:`(module, name)` a file imports (:obj:`name` empty for :obj:`import x`),
    at module level or inside functions."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def test_scripts_and_reproduction_use_public_names_only():
    files = [
        path
        for folder in ("reproduction", "examples", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]
    assert len(files) > 20
    private = []
    for path in files:
        for module, name in imports_of(path):
            if module.split(".")[0] != "tg_samplenet":
                continue
            if module not in PUBLIC_MODULES or name.startswith("_"):
                private.append(f"{path.relative_to(ROOT)}: from {module} import {name}")
    assert not private, "private imports:\n" + "\n".join(private)


def test_public_name_check_finds_a_private_import(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("from tg_samplenet.ops.neighbors import _nearest_index\n")
    assert imports_of(script) == [("tg_samplenet.ops.neighbors", "_nearest_index")]
