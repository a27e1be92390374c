"""No function in loop/, devices/ or stream/ is longer than 80 lines (issue #16): a long
function hides more than one job; split it where the jobs part."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 80


def test_no_function_is_longer_than_80_lines():
    long = []
    for top in ("loop", "devices", "stream"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n}")
    assert not long, "\n".join(long)
