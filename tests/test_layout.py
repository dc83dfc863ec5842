"""Rules of the code base that a reviewer would otherwise check by hand: generic code never names
a scheme, modules stay small, plugin helpers are private."""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

from ipbench.core.registry import schemes

ROOT = Path(__file__).resolve().parents[1] / "ipbench"
MAX_LINES = 400


def _code_tokens(path: Path) -> list[tuple[int, str, str]]:
    """(line, kind, text) of a module's names, string literals and comments, docstrings left
    out (a docstring may cite a paper; code may not branch on a scheme)."""
    source = path.read_text()
    docstrings = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(body[0].lineno)
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NAME:
            out.append((tok.start[0], "name", tok.string))
        elif tok.type == tokenize.STRING and tok.start[0] not in docstrings:
            out.append((tok.start[0], "string", tok.string))
        elif tok.type == tokenize.COMMENT:
            out.append((tok.start[0], "comment", tok.string))
    return out


def test_no_scheme_name_in_generic_code():
    """``ipbench/`` outside the scheme plugins (the attacks included) knows schemes by capability:
    no scheme name in its code or comments, no import of a scheme module. "passport" is also
    the mechanism's name (``PassportLayers``, the ``passport-retrain`` attack), so for it only
    the bare name counts."""
    names = set(schemes.names()) - {"none"}  # "none" is also an ordinary word
    mechanism = {"passport"}
    words = re.compile(r"\b(" + "|".join(sorted(names - mechanism)) + r")\b", re.IGNORECASE)
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "schemes":
            continue
        for line, _kind, text in _code_tokens(path):
            bare = text.strip("'\"").lower()
            if bare in names or words.search(text):
                found.append(f"ipbench/{rel}:{line}: {text}")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "ipbench.schemes"
            ):
                found.append(f"ipbench/{rel}:{node.lineno}: imports {node.module}")
    assert not found, "scheme names in generic code:\n" + "\n".join(found)


def test_modules_stay_under_400_lines():
    long = {
        str(p.relative_to(ROOT.parent)): n
        for p in ROOT.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_plugin_helpers_are_private_and_reference_data_is_package_data():
    for folder in ("schemes", "attacks"):
        for sub in (ROOT / folder).iterdir():
            if sub.is_dir() and sub.name != "__pycache__":
                assert sub.name.startswith("_"), f"{sub}: a helper package must start with _"
    assert (ROOT / "report" / "leaderboard" / "reference.csv").is_file()
