"""Arrows point down: no import cycle, ``dsp/`` imports nothing else of ours, and the
window talks to a session only through its client API.

Every ``import`` of every module is read from the source (function-local ones too;
only ``if TYPE_CHECKING:`` blocks, which never run, are left out).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("stream", "devices", "dsp", "gui", "loop")
#: What gui/ may import of loop/: the session's client API, nothing of its internals.
GUI_MAY_USE = {"stimloop.loop", "stimloop.loop.client"}  # the package, and its client


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return "stimloop." + ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The stimloop modules ``path`` imports (a package import counts as its
    ``__init__``; ``from pkg import mod`` counts as ``pkg.mod`` when that is a module)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
            for n in ast.walk(node)}  # fmt: skip
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules}
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for top in FOLDERS for p in (ROOT / top).rglob("*.py")}
    modules = set(files)
    return {m: _imports(p, modules) - {m} for m, p in files.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_between_files():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()) or [])


def test_no_import_cycle_between_top_level_folders():
    folders: dict[str, set[str]] = {}
    for m, deps in _graph().items():
        top = m.split(".")[1]
        folders.setdefault(top, set()).update(d.split(".")[1] for d in deps)
    folders = {k: v - {k} for k, v in folders.items()}
    assert _cycle(folders) is None, " -> ".join(_cycle(folders) or [])
    assert "gui" not in folders["loop"], "loop/ must start the window as a process"


def test_dsp_imports_nothing_else_of_ours():
    bad = {m: sorted(d for d in deps if not d.startswith("stimloop.dsp"))
           for m, deps in _graph().items() if m.startswith("stimloop.dsp")}  # fmt: skip
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_gui_uses_only_the_session_client_api_of_loop():
    bad = {m: sorted(d for d in deps if d.startswith("stimloop.loop") and d not in GUI_MAY_USE)
           for m, deps in _graph().items() if m.startswith("stimloop.gui")}  # fmt: skip
    assert not any(bad.values()), {k: v for k, v in bad.items() if v}


def test_the_checker_sees_a_cycle_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
