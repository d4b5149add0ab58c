"""The model is gdb-free: no module under gdbkd/model imports gdb (read from the source, so
a lazy import inside a function counts too)."""

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

PKG = Path(__file__).resolve().parents[2] / "gdbkd"


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


@pytest.mark.parametrize("path", sorted((PKG / "model").glob("*.py")), ids=lambda p: p.name)
def test_model_module_imports_no_gdb(path):
    bad = [m for m in _imports(path) if m == "gdb" or m.startswith("gdb.")]
    assert not bad, f"{path.name} imports {bad}"


def test_model_imports_nothing_above_it():
    """model/ imports only itself, the arm64/dump helpers and the leaf modules (errors,
    textutil): never the gdb layer (kernel/), commands, postmortem or the frontends."""
    above = ("gdbkd.kernel", "gdbkd.commands", "gdbkd.postmortem", "gdbkd.stub", "gdbkd.cli",
             "gdbkd.live", "gdbkd.gdbext", "gdbkd.gdbmi", "gdbkd.triage")
    for path in sorted((PKG / "model").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                mod = "gdbkd." + (node.module or "")
                assert not mod.startswith(above), f"{path.name} imports {mod}"
