"""The shape of the code: no import circle, modules of a readable size, few reach-ins into other objects' privates,
one helper for an error's notes. (The layers themselves are import-linter's contracts in pyproject.toml.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import grimp
import pytest

from lrwidget.core.errors import add_note

PACKAGE = Path(__file__).resolve().parent.parent / "lrwidget"
MAX_LINES = 400
MAX_REACH_INS = 12


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_imports_itself_round_a_circle():
    graph = grimp.build_graph("lrwidget")
    circles = []
    for a in sorted(graph.modules):
        for b in graph.find_modules_directly_imported_by(a):
            chain = graph.find_shortest_chain(importer=b, imported=a)
            if chain is not None:
                circles.append(" -> ".join((a, *chain)))
    assert not circles, "\n".join(circles)


def test_no_module_is_over_about_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def reach_ins() -> list[str]:
    """Reads or writes of another object's private attribute (`x._name` where x is not self, cls or type(self))."""
    found = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")):
                continue
            base = ast.unparse(node.value)
            if base in ("self", "cls", "type(self)") or base.startswith("super()"):
                continue
            found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_at_most_a_dozen_reach_ins_into_other_objects_privates_each_said_why():
    found = reach_ins()
    assert len(found) <= MAX_REACH_INS, "\n".join(found)
    for hit in found:  # each where a library leaves no public way, said in a comment at most three lines above
        path, line = hit.split(":")[:2]
        lines = (PACKAGE / path).read_text().splitlines()[max(int(line) - 4, 0) : int(line)]
        assert any("#" in ln for ln in lines), f"{hit}: say why in a comment"


def test_notes_are_added_by_the_one_helper():
    direct = []
    for path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_note":
                if path.name != "errors.py":
                    direct.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not direct, f"call lrwidget.core.errors.add_note instead (it also works on Python 3.10): {direct}"


class Py310Error(Exception):
    """An exception as Python 3.10 makes it: no add_note method."""

    def __getattribute__(self, name):
        if name == "add_note":
            raise AttributeError(name)
        return super().__getattribute__(name)


@pytest.mark.parametrize("cls", [ValueError, Py310Error], ids=["3.11+", "3.10"])
def test_add_note_keeps_the_note_on_every_python_once(cls):
    e = cls("the user's message")
    assert not hasattr(e, "add_note") or sys.version_info >= (3, 11)
    add_note(e, "raised in worker rank 1 of 2")
    add_note(e, "raised in worker rank 1 of 2")
    add_note(e, "a second note")
    assert e.__notes__ == ["raised in worker rank 1 of 2", "a second note"] and str(e) == "the user's message"
