"""The layers of ``ipbench/`` are its folders, and the imports respect them.

A module imports only modules of its own layer and of the layers below it, and no module
imports itself back through others (no cycles). Imports inside functions count as well as those
at the top of a module: a function-level import is still a dependency, the one that made
opening a store load every attack plugin. Imports under ``if TYPE_CHECKING:`` do not count
(they never run). The order is drawn in docs/design.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ipbench"

# bottom to top; the plugin folders sit above the contract they implement and below the
# engine that loads them (by name, through the registry, never by a static import)
LAYERS = (
    "core", "ml", "metrics", "store", "plugin", "plugins", "engine", "report", "api", "cli", "face",
)  # fmt: skip
FOLDER_LAYER = {"schemes": "plugins", "attacks": "plugins"}
FACES = {"__init__", "__main__", "api", "testing"}  # the package's faces, above everything


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[1:] == ["api"]:  # the Python API: below the command line, which prints its Results
        return "api"
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in FACES):
        return "face"
    return FOLDER_LAYER.get(parts[1], parts[1])


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines |= {n.lineno for n in ast.walk(sub) if hasattr(n, "lineno")}
    return lines


def imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``ipbench`` that module ``path`` imports (``from pkg import mod`` counts
    as importing ``pkg.mod``)."""
    name = module_name(path)
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names}
    return {m for m in out if m in known and m != name}


def graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in ROOT.rglob("*.py")}
    known = set(paths)
    return {name: imports(path, known) for name, path in paths.items()}


def test_every_module_belongs_to_a_layer():
    unknown = sorted(m for m in graph() if layer_of(m) not in LAYERS)
    assert not unknown, f"modules outside the layers {LAYERS}: {unknown}"


def test_no_module_imports_from_a_higher_layer():
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, targets in sorted(graph().items())
        for b in sorted(targets)
        if rank[layer_of(b)] > rank[layer_of(a)]
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as the modules around it), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def _without_packages(edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's ``__init__`` re-exporting its modules is not a cycle with them: edges into a
    package that is an ancestor of the importer are dropped (Python runs the ``__init__``
    first, and the module only reads names the ``__init__`` already bound or its own layer's)."""
    return {a: {b for b in bs if not a.startswith(b + ".")} for a, bs in edges.items()}


def test_no_import_cycles():
    cycle = find_cycle(_without_packages(graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_top_level_shows_the_layers():
    entries = sorted(
        p.stem if p.suffix == ".py" else p.name
        for p in ROOT.iterdir()
        if p.name != "__pycache__" and (p.is_dir() or p.suffix == ".py")
    )
    beyond_faces = [e for e in entries if e not in FACES]
    assert len(beyond_faces) <= 12, f"top-level entries beyond the faces: {beyond_faces}"
    assert all((ROOT / e).is_dir() for e in beyond_faces), f"loose modules: {beyond_faces}"


def test_opening_a_store_loads_no_plugin_code(tmp_path):
    """Reading results must not import (and so run) scheme or attack code: a fresh process
    opens a store with a finished-looking run, reads it, and has no plugin module loaded."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ipbench.store.results import Store\n"
        f"s = Store({str(tmp_path)!r})\n"
        "s.start_run('r1', {'scheme': 'mlock', 'dataset': 'synthetic', 'model': 'm', "
        "'preset': 'smoke', 'seed': 0, 'reduced': True, 'config': {}, 'provenance': {}})\n"
        "s.list_runs(); s.metrics('r1'); s.stages('r1'); s.close()\n"
        "from ipbench.store.results import Store as S\n"
        "S(" + repr(str(tmp_path)) + ", create=False).close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ipbench.schemes', "
        "'ipbench.attacks', 'ipbench.engine', 'ipbench.plugin'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
