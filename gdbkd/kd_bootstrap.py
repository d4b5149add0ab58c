"""The gdb side of loading gdbkd's `kd` commands into gdb's embedded Python.

gdb-multiarch embeds its own Python (Debian 12: 3.11), which knows nothing of the
venv, pipx or ``--user`` site that gdbkd was installed into. Every gdb that gdbkd
starts, and a plain gdb given ``gdbkd gdbinit``'s line, runs one command made by
gdbkd.gdbpython.boot_command()::

    python import sys; sys.path.insert(0, PKG_PARENT); import gdbkd.kd_bootstrap as _b; _b.load([DEPS…], "3.11", [PROBE…])

``load`` puts the dependency directories on gdb's sys.path, imports the
dependencies that have compiled parts (PROBE, e.g. capstone, zstandard) and
registers the commands. When gdb's Python cannot import them (typically: gdbkd
installed for another Python version), it prints one line naming both versions
and the fix, and registers nothing.

This file is also sourceable as it is (``source …/gdbkd/kd_bootstrap.py``): it then
finds the package beside itself and the dependencies in ``$GDBKD_SITE`` or in
the checkout's ``.venv/gdbkd-site-packages`` (written by install.sh).
Only the standard library is imported before ``load`` has set the path.
"""

import importlib
import os
import sys

__all__ = ["load", "failure_message"]


def _py(v=None):
    return "%d.%d" % (v or sys.version_info)[:2]


def failure_message(err, installed_for=None) -> str:
    """The one line said when gdb's Python cannot import gdbkd's dependencies (it starts
    with errors.KD_LOAD_FAILURE; gdbkd's package is on sys.path by now, its dependencies
    need not be)."""
    from gdbkd.errors import KD_LOAD_FAILURE as FAIL
    mine = _py()
    if installed_for and installed_for != mine:
        return (f"{FAIL}: gdb's Python is {mine} but gdbkd's packages are installed for Python "
                f"{installed_for} ({err}); install gdbkd with Python {mine}: "
                f"python{mine} -m venv VENV && VENV/bin/pip install gdbkd, and run VENV/bin/gdbkd")
    return (f"{FAIL} in gdb's Python {mine} ({err}); reinstall gdbkd "
            f"(pip install gdbkd) and put `gdbkd gdbinit`'s line in ~/.gdbinit again")


def _default_deps(pkg_parent):
    site = os.environ.get("GDBKD_SITE")
    if site:
        return site.split(os.pathsep)
    pf = os.path.join(pkg_parent, ".venv", "gdbkd-site-packages")
    if os.path.exists(pf):
        with open(pf) as f:
            return [f.read().strip()]
    return []


def load(deps=None, installed_for=None, probe=("capstone",)) -> bool:
    """Put DEPS (directories) on sys.path after gdbkd's own, import PROBE and register
    `kd`, the arm64 exception-frame unwinder and the module-symbol loader.
    INSTALLED_FOR is the "X.Y" of the Python gdbkd runs on. Returns False (after one
    printed line) when something cannot be imported."""
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if deps is None:
        deps = _default_deps(pkg_parent)
    deps = [p for p in deps if p and p != pkg_parent]
    sys.path[:] = [p for p in sys.path if p not in deps]     # gdbkd's order, not gdb's
    at = sys.path.index(pkg_parent) + 1 if pkg_parent in sys.path else 0
    sys.path[at:at] = deps
    try:
        for mod in probe:
            importlib.import_module(mod)
        import gdbkd.gdbext
        gdbkd.gdbext.register()
    except (ImportError, OSError) as e:     # OSError: a shared library that does not load
        print(failure_message(e, installed_for))
        return False
    return True


if __name__ == "__main__":          # sourced by gdb as a file
    _parent = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    if _parent not in sys.path:
        sys.path.insert(0, _parent)
    import gdbkd.kd_bootstrap
    gdbkd.kd_bootstrap.load(_default_deps(_parent))
    del _parent
