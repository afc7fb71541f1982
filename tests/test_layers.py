"""The package's shape (docs/architecture.md): imports run one way, down the layers, with no
cycles; no function is longer than 80 lines; the command line starts without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import asrkit

PACKAGE = Path(asrkit.__file__).resolve().parent

# A module may import from its own unit and from units of a lower rank, nothing else.
RANKS = {
    "errors": 0, "progress": 0, "digest": 0,
    "config": 1, "tokenizer": 1,
    "checkpoint": 2,
    "data": 3, "model": 3,
    "corpora": 4, "search": 4, "scoring": 4, "plot": 4,
    "training": 5, "recognize": 5,
    "serve": 6,
    "cli": 7,
    "__main__": 8,
}
# Functions allowed past 80 lines, and why.
LONG_FUNCTIONS: dict[str, str] = {}


def module_names() -> dict[str, Path]:
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("asrkit",) + path.relative_to(PACKAGE).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every asrkit module that ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "asrkit")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "asrkit":
            for alias in node.names:  # ``from asrkit.data import audio`` imports a module
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
    return found


def graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(path, set(names)) - {name} for name, path in names.items()}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_belongs_to_a_layer():
    unknown = sorted({unit(m) for m in graph()} - set(RANKS) - {""})
    assert not unknown, f"modules outside every layer (add them to RANKS and docs/architecture.md): {unknown}"


def test_imports_run_down_the_layers():
    upward = []
    for module, imported in graph().items():
        if unit(module) == "":  # asrkit/__init__.py: the public API, imported lazily by name
            continue
        for target in imported:
            if unit(target) == "":  # asrkit itself: the version, and public names imported lazily
                continue
            if unit(target) != unit(module) and RANKS[unit(target)] >= RANKS[unit(module)]:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that do not run down the layers:\n" + "\n".join(sorted(upward))


def test_no_module_imports_its_own_package_init():
    """Inside a subpackage, modules import each other by module, never through the package's
    __init__ (which would tie them into a cycle as soon as the __init__ imports them)."""
    bad = [f"{m} -> {t}" for m, imported in graph().items() for t in imported
           if "." in m and m.startswith(t + ".") and t != "asrkit"]
    assert not bad, bad


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_function_is_longer_than_80_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                name = f"{path.relative_to(PACKAGE.parent)}:{node.name}"
                if lines > 80 and name not in LONG_FUNCTIONS:
                    long.append(f"{name} ({lines} lines)")
    assert not long, long


def test_the_command_line_and_the_public_api_load_without_torch():
    """``asrkit --help`` and a bad option answer at once: torch is imported only by the commands
    that run a model, and ``import asrkit`` imports its public names on first use."""
    code = ("import sys, asrkit, asrkit.cli; from asrkit import SearchOptions, AsrkitError; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print(asrkit.__all__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Recognizer" in done.stdout and "prefix_beam_search" in done.stdout


def test_every_public_name_resolves():
    for name in asrkit.__all__:
        assert getattr(asrkit, name) is not None, name
    assert asrkit.score({"u": "a b c"}, {"u": "a c"}).wer == 1 / 3
