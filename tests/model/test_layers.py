"""The package's layers, read from the source (so a lazy import inside a function counts too):
no import cycle anywhere in gdbkd, the gdb-free layers (model/, dump/, arm64/, target/,
postmortem/) reach no ``gdb`` import, the lowest ones import nothing above them, the target
layer (target/: opening dumps, the offsets registry, preload) reaches nothing above it, and
the gdb layer (kernel/, commands/, gdbext/) never reaches the ``gdbkd core`` frontend
(postmortem/)."""

import ast
import functools
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

PKG = Path(__file__).resolve().parents[2] / "gdbkd"
GDB_FREE = ("model", "dump", "arm64", "target", "postmortem")


def _module_name(path, pkg=PKG):
    """``gdbkd.kernel.tasks`` for gdbkd/kernel/tasks.py, ``gdbkd.stub`` for its __init__.py."""
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(pkg=PKG):
    """{module name: path} of every module of the package PKG."""
    return {_module_name(p, pkg): p for p in sorted(pkg.rglob("*.py"))}


def _imported_names(path, name):
    """(line, dotted name) of every module name an import statement anywhere in PATH (module
    NAME) may load: ``import a.b`` gives a.b, ``from a.b import c`` gives a.b and a.b.c (c
    may be a submodule), relative imports resolved against NAME's package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            yield node.lineno, mod
            for a in node.names:
                yield node.lineno, f"{mod}.{a.name}"


def import_graph(pkg=PKG):
    """{module: {imported module: [lines]}} within the package PKG. Importing ``a.b.c`` runs the
    ``__init__`` of ``a`` and ``a.b`` too, so it is an edge to each of them; except to the
    importer's own enclosing packages, which Python has initialised (or is initialising)
    before the importer runs, so its import cannot start them."""
    mods = _modules(pkg)
    graph = {}
    for name, path in mods.items():
        out = graph[name] = {}
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        for line, dotted in _imported_names(path, name):
            parts = dotted.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in mods and target != name and target not in own:
                    out.setdefault(target, []).append(line)
    return graph


@functools.cache
def _package_graph():
    return import_graph()


def strongly_connected(graph):
    """The strongly connected components of GRAPH ({node: successors}), each sorted: the
    product's own Tarjan (kd deadlock's cycles, gdbkd/analysis/waitgraph.py; gdb-free)."""
    from gdbkd.analysis.waitgraph import _scc
    return [sorted(c) for c in _scc(list(graph), graph)]


def test_package_has_no_import_cycle():
    """No two modules of gdbkd import each other, directly or around a loop, counting lazy
    imports and the package __init__s an import runs: a lower module both can import is
    where shared code goes."""
    graph = _package_graph()
    assert "gdbkd.kernel.tasks" in graph
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    report = []
    for comp in cycles:
        inside = set(comp)
        report.append("cycle:\n" + "\n".join(
            f"  {m} -> {t} (line {', '.join(map(str, sorted(set(lines))))})"
            for m in comp for t, lines in sorted(graph[m].items()) if t in inside))
    assert not cycles, "\n".join(report)


def test_import_graph_sees_lazy_relative_and_package_imports(tmp_path):
    """The graph and the cycle finder on a small package: a lazy relative import in a
    function, the edge to the __init__ that importing a submodule runs (a.x -> a.b), and no
    edge from a module to its own package (a.b.d's ``from . import z`` is not a.b.d -> a.b,
    which a.b's ``from . import c, d`` would make a cycle; a.b.d -> a.b.z is)."""
    files = {"a/__init__.py": "",
             "a/x.py": "import a.b.c\n",
             "a/b/__init__.py": "from . import c, d\n",
             "a/b/c.py": "def f():\n    from ..x import y\n",
             "a/b/d.py": "from . import z\n",
             "a/b/z.py": "",
             "a/e.py": "import os\nfrom .b.d import c\n"}
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = import_graph(tmp_path / "a")
    assert {m: sorted(t) for m, t in graph.items()} == {
        "a": [], "a.x": ["a.b", "a.b.c"], "a.b": ["a.b.c", "a.b.d"], "a.b.c": ["a.x"],
        "a.b.d": ["a.b.z"], "a.b.z": [], "a.e": ["a.b", "a.b.d"]}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["a.b", "a.b.c", "a.x"]]


def _reached(name):
    """{module: the module that imports it, None for NAME} of every gdbkd module importing
    NAME may run, directly or through other gdbkd modules (lazy imports included)."""
    graph = _package_graph()
    seen, todo = {name: None}, [name]
    while todo:
        m = todo.pop()
        for t in graph[m]:
            if t not in seen:
                seen[t] = m
                todo.append(t)
    return seen


def _chain(seen, m):
    """NAME -> ... -> M, the import path by which ``_reached(NAME)`` found M."""
    chain = [m]
    while seen[chain[-1]] is not None:
        chain.append(seen[chain[-1]])
    return " -> ".join(reversed(chain))


def _in(module, packages):
    """MODULE is one of PACKAGES (dotted names) or inside one."""
    return any(module == p or module.startswith(p + ".") for p in packages)


def _gdb_free_files():
    return sorted(p for d in GDB_FREE for p in (PKG / d).rglob("*.py"))


def _imports_gdb(path, name):
    return sorted({line for line, dotted in _imported_names(path, name)
                   if dotted == "gdb" or dotted.startswith("gdb.")})


@pytest.mark.parametrize("path", _gdb_free_files(), ids=lambda p: str(p.relative_to(PKG)))
def test_gdb_free_module_imports_no_gdb(path):
    """model/, dump/, arm64/, target/ and postmortem/ run without gdb (the dump server,
    gdbkd core's frontend, the tests): no ``import gdb`` in them, nor in any gdbkd module
    they import. (target/offsets.py's gdb script is a string run by a separate gdb.)"""
    name = _module_name(path)
    lines = _imports_gdb(path, name)
    assert not lines, f"{name} imports gdb (line {', '.join(map(str, lines))})"
    mods = _modules()
    seen = _reached(name)
    for m in sorted(seen):
        if m != name and _imports_gdb(mods[m], m):
            pytest.fail(f"{name} reaches gdb through {_chain(seen, m)}")


@pytest.mark.parametrize("layer", ["model", "dump", "arm64"])
def test_lowest_layers_import_nothing_above_them(layer):
    """model/, dump/ and arm64/ import only each other and the leaf modules (errors,
    textutil, cache, elfsyms): never the target layer, the gdb layer (kernel/), commands,
    postmortem, the dump server or the frontends."""
    above = ("gdbkd.target", "gdbkd.kernel", "gdbkd.commands", "gdbkd.postmortem", "gdbkd.stub",
             "gdbkd.cli",
             "gdbkd.live", "gdbkd.gdbext", "gdbkd.gdbmi", "gdbkd.triage")
    for m, targets in _package_graph().items():
        if m == f"gdbkd.{layer}" or m.startswith(f"gdbkd.{layer}."):
            bad = sorted(t for t in targets if t.startswith(above))
            assert not bad, f"{m} imports {bad}"


#: what the target layer sits below: the gdb layer, the frontends and what drives them
ABOVE_TARGET = ("gdbkd.kernel", "gdbkd.commands", "gdbkd.gdbext", "gdbkd.gdbmi",
                "gdbkd.postmortem", "gdbkd.stub", "gdbkd.cli", "gdbkd.entry", "gdbkd.live",
                "gdbkd.triage", "gdbkd.labs", "gdbkd.qemu", "gdbkd.artifacts", "gdbkd.kmods")


def test_target_layer_holds_the_target_pieces():
    """Opening dumps, the offsets registry and preload live in target/, once: postmortem/
    keeps no copy or forwarding module of them. The register sets are arm64 facts, in
    arm64/regs.py alone."""
    mods = set(_package_graph())
    for m in ("dump", "offsets", "preload"):
        assert f"gdbkd.target.{m}" in mods
        assert f"gdbkd.postmortem.{m}" not in mods
    assert "gdbkd.arm64.regs" in mods
    assert not {f"gdbkd.{p}.regs" for p in ("target", "postmortem", "model")} & mods


@pytest.mark.parametrize("path", sorted((PKG / "target").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PKG)))
def test_target_layer_imports_nothing_above_it(path):
    """target/ (open_dump and the Dump, the offsets registry, preload) is
    below the gdb layer and the frontends: it reaches, directly or through the gdbkd
    modules it imports, only the readers and the model (model/, dump/, arm64/) and the
    leaf modules; never kernel/, commands/, postmortem/, the dump server, the CLI or
    live/."""
    name = _module_name(path)
    seen = _reached(name)
    bad = sorted(m for m in seen if _in(m, ABOVE_TARGET))
    assert not bad, "\n".join(f"{name} reaches {m}: {_chain(seen, m)}" for m in bad)


@pytest.mark.parametrize("layer", ["kernel", "commands", "gdbext"])
def test_gdb_layer_never_imports_postmortem(layer):
    """The gdb layer (kernel/, commands/, gdbext/) opens dumps through the target layer and
    never imports the ``gdbkd core`` frontend (gdbkd.postmortem), directly or through any
    gdbkd module it imports."""
    mods = [m for m in _package_graph() if _in(m, (f"gdbkd.{layer}",))]
    assert mods
    for name in mods:
        seen = _reached(name)
        bad = sorted(m for m in seen if _in(m, ("gdbkd.postmortem",)))
        assert not bad, f"{name} reaches {bad[0]}: {_chain(seen, bad[0])}"
    if layer == "kernel":    # the graph sees kd's in-process dump opening (a lazy import)
        assert "gdbkd.target.preload" in _reached("gdbkd.kernel.memory")
