"""Plugin code identity: a hash of the source a scheme or attack runs, for its stage keys.

A cached stage is reused only when everything that determines it is unchanged, and a plugin's
own code is part of that: edit a scheme and re-run, and its stages are recomputed, not served
from the cache. The identity covers the module that defines the plugin and every module of the
same family it uses (its private helpers, e.g. ``ipbench.schemes._poisoning``; for a
third-party package, the modules of that package), read through their syntax tree, so
comments, docstrings and formatting do not count and a moved line of code does.

Import statements do not count either: the identity is made of the plugin's definitions.
Where a name comes from (``from ipbench.plugin import Scheme`` or, before the layout moved,
``from ipbench.plugin.contract import Scheme``) is the harness's layout, not the plugin's code, and a
refactor that moves harness modules must keep every stored key. The imports are still read to
find which helper modules of the family the plugin runs; those modules' own code is hashed.

The source is read once per process, when the plugin registers (for a module its code imports
later, when the identity is first asked for), and kept: a file edited while a long run goes on
must not give the stages that the process, still running the code it loaded, stores from then
on the key of code it never ran. A new process reads the files again.

A plugin's ``preset_defaults`` (its values for a preset, e.g. a smaller smoke budget) do not
count either: they only ever become fields of the plugin's config (``ipbench.core.config.override``
refuses any other key), and the resolved config is itself part of every stage key. So tuning the
``smoke`` budget re-keys the smoke runs, whose config changed, and keeps every ``quick`` stage.

Declared valid ranges (``Annotated[T, ...]`` field types and the imports that bring them,
see ``ipbench.core.validation``) do not count either: they refuse bad settings before a run and
never change what an accepted setting computes, so adding or tightening one keeps every
cached stage.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

# Built-in plugins and their private helpers live here; anything else is a third-party package
# whose family is its top-level package.
BUILTIN_FAMILIES = ("ipbench.schemes", "ipbench.attacks")


def family(module_name: str) -> str:
    """The package whose modules count as one plugin's code."""
    for fam in BUILTIN_FAMILIES:
        if module_name == fam or module_name.startswith(fam + "."):
            return fam
    return module_name.split(".", 1)[0]


PRESET_DEFAULTS = "preset_defaults"


def _assigns(stmt: ast.stmt, name: str) -> bool:
    """Whether ``stmt`` is ``name = ...`` or ``name: T = ...`` (one plain target)."""
    if isinstance(stmt, ast.Assign):
        return (
            len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == name
        )
    return (
        isinstance(stmt, ast.AnnAssign)
        and isinstance(stmt.target, ast.Name)
        and stmt.target.id == name
    )


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                body[0] = ast.Pass()
    return tree


class _Definitions(ast.NodeTransformer):
    """The code without what does not decide a result: ``Annotated[T, c...]`` -> ``T``, every
    import statement (module level or inside a function) and every class-level
    ``preset_defaults`` assignment dropped (their values are keyed as the resolved config)."""

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self.generic_visit(node)
        node.body = [s for s in node.body if not _assigns(s, PRESET_DEFAULTS)] or [ast.Pass()]
        return node

    def visit_Subscript(self, node: ast.Subscript) -> ast.AST:
        self.generic_visit(node)
        name = node.value
        is_annotated = (isinstance(name, ast.Name) and name.id == "Annotated") or (
            isinstance(name, ast.Attribute) and name.attr == "Annotated"
        )
        if is_annotated and isinstance(node.slice, ast.Tuple) and node.slice.elts:
            return node.slice.elts[0]
        return node

    def visit_Import(self, node: ast.Import) -> None:
        return None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return None


def _source_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


@cache
def _loaded_source(name: str) -> str | None:
    """Module ``name``'s source as this process first read it (None: no source file)."""
    path = _source_file(name)
    return path.read_text() if path is not None else None


def forget_loaded_sources() -> None:
    """Read every module's source again on next use, as a new process would (tests)."""
    _loaded_source.cache_clear()


@cache
def _parsed(text: str) -> tuple[str, tuple[tuple[str, tuple[str, ...], int], ...]]:
    """(digest of the code, imports as (module, names, level)) of one module's source text."""
    tree = ast.parse(text)
    imports: list[tuple[str, tuple[str, ...], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports += [(a.name, (), 0) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.module or "", tuple(a.name for a in node.names), node.level))
    bare = _Definitions().visit(_strip_docstrings(ast.parse(text)))
    digest = hashlib.sha256(ast.dump(bare).encode()).hexdigest()
    return digest, tuple(imports)


def _resolve(name: str, is_package: bool, target: str, level: int) -> str:
    """The absolute name of ``from <level dots><target>`` inside module ``name``."""
    if level == 0:
        return target
    parts = name.split(".") if is_package else name.split(".")[:-1]
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, target] if target else base)


def code_modules(obj: object) -> list[str]:
    """The modules whose code plugin ``obj`` runs: its own and those of its family it imports
    (at any depth, function-level imports included), sorted."""
    start = getattr(obj, "__module__", None) or type(obj).__module__
    fam = family(start)
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        text = None if name in seen else _loaded_source(name)
        if text is None:
            continue
        seen.add(name)
        _, imports = _parsed(text)
        path = _source_file(name)
        is_package = path is not None and path.name == "__init__.py"
        for target, names, level in imports:
            mod = _resolve(name, is_package, target, level)
            candidates = [mod, *(f"{mod}.{n}" for n in names)]
            todo += [c for c in candidates if family(c) == fam and c not in seen]
    if isinstance(obj, type):  # a base class of the family (e.g. a shared scheme base)
        seen |= {b.__module__ for b in obj.__mro__ if family(b.__module__) == fam}
    return sorted(seen)


def module_digest(name: str) -> str:
    """The hash of one module's code (its syntax tree without docstrings)."""
    text = _loaded_source(name)
    if text is None:  # no source (compiled, built in, or gone): its name stands for it
        return hashlib.sha256(name.encode()).hexdigest()
    return _parsed(text)[0]


def code_identity(obj: object) -> str:
    """A short hash of the code of plugin ``obj`` (a class or an instance): changes when the
    code of the plugin or of a helper module of its family changes."""
    digest = hashlib.sha256()
    for name in code_modules(obj):
        digest.update(f"{name}:{module_digest(name)}\n".encode())
    return digest.hexdigest()[:16]
