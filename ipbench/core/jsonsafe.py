"""JSON from files a user or an attacker may have written: a nesting limit checked before
Python's recursive parser sees the text (a stage.json nested 200,000 deep was a RecursionError;
issue 34). ``json`` parses; only the depth scan is written here, since the standard parser has
no limit of its own."""

from __future__ import annotations

import json
from typing import Any

from ipbench.core.errors import IpbenchError

MAX_DEPTH = 32  # records ipbench writes nest 6 deep at most


def loads_limited(text: str, where: str) -> Any:
    """JSON with a nesting limit checked before Python's recursive parser sees it."""
    depth = level = 0
    in_string = escaped = False
    for ch in text:  # brackets outside strings only
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            depth = max(depth, level)
            if depth > MAX_DEPTH:
                raise IpbenchError(f"{where}: JSON nested deeper than {MAX_DEPTH} levels")
        elif ch in "]}":
            level -= 1
    try:
        return json.loads(text)
    except ValueError as exc:
        raise IpbenchError(f"{where}: not valid JSON ({exc})") from None
