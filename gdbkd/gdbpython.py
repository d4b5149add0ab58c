"""Giving gdb's embedded Python this gdbkd and its dependencies, whatever the install.

gdbkd runs on some Python (a venv's, editable or not, pipx's, the system one with
``--user``); gdb-multiarch embeds its own (Debian 12: 3.11) with its own sys.path.
The gdbkd process knows where its package and its dependencies are: the directory
holding the ``gdbkd`` package (the checkout for an editable install) and its own
interpreter's sys.path without the standard library. ``boot_command()`` is the one
gdb command that hands them to gdb's Python and loads `kd` (gdbkd/kd_bootstrap.py):
every gdb that gdbkd starts runs it, and ``gdbkd gdbinit`` prints it for
~/.gdbinit. ``check()`` runs it once in a throwaway gdb, so that a gdbkd
installed for a Python whose compiled packages gdb's cannot load stops with one
line before it boots or opens anything (a success is remembered in the cache).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from .errors import GdbkdError

__all__ = ["package_parent", "dependency_path", "boot_command", "path_prelude", "check", "ensure",
           "python_version"]

#: dependencies with compiled (or ctypes-loaded) parts that code inside gdb imports:
#: gdb's Python must load them, which a build for another Python version fails to do
PROBE = ("capstone", "zstandard", "cramjam", "lzo")


def python_version() -> str:
    return "%d.%d" % sys.version_info[:2]


def package_parent() -> str:
    """The directory that holds the ``gdbkd`` package: site-packages, or the checkout."""
    return str(Path(__file__).resolve().parents[1])


def dependency_path() -> list:
    """This interpreter's import directories without its standard library, the
    script's own directory and gdbkd's package parent, in sys.path order."""
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    dynload = sysconfig.get_config_var("DESTSHARED") or os.path.join(stdlib, "lib-dynload")
    skip = {package_parent(), stdlib, os.path.realpath(dynload)}
    out = []
    # sys.path[0] is the script's directory or the current one (python -m, -c), not an install
    for p in sys.path[0 if sys.flags.safe_path else 1:]:
        if not p or not os.path.isdir(p):
            continue
        rp = os.path.realpath(p)
        if rp in skip or rp in out:
            continue
        out.append(rp)
    return out


def _probe_modules() -> list:
    return [m for m in PROBE if importlib.util.find_spec(m) is not None]


def path_prelude() -> str:
    """Python (one line) that puts gdbkd's package and dependencies first on gdb's sys.path,
    for gdb scripts that import gdbkd modules without loading `kd`. Entries already on the
    path move to the front: another gdbkd there (an editable install of another checkout,
    PYTHONPATH) must not shadow this one."""
    paths = [package_parent(), *dependency_path()]
    return f"import sys; sys.path[:] = {paths!r} + [_p for _p in sys.path if _p not in {paths!r}]"


def boot_command(installed_for=None, deps=None, probe=True) -> str:
    """The gdb command (one line) that loads this gdbkd's `kd` into gdb's Python.
    INSTALLED_FOR and DEPS default to this interpreter's version and dependency path.
    PROBE: import the compiled dependencies at once, to fail in one line if gdb's
    Python cannot load them; a gdb started after :func:`ensure` passed may leave it
    out (capstone's import alone is 0.05 s of gdbkd core's start)."""
    deps = dependency_path() if deps is None else list(deps)
    return (f"python import sys; sys.path.insert(0, {package_parent()!r}); "
            f"import gdbkd.kd_bootstrap as _kd; "
            f"_kd.load({deps!r}, {installed_for or python_version()!r}, "
            f"{_probe_modules() if probe else []!r}); del _kd")


def check(use_cache=True, command=None):
    """None when a plain gdb-multiarch loads `kd` with boot_command(), else the one
    line that says why not. Also None when there is no gdb-multiarch (others say so)."""
    from .cache import cache_root, key_of, atomic_write
    from .errors import KD_LOAD_FAILURE as FAIL
    gdb = shutil.which("gdb-multiarch")
    if gdb is None:
        return None
    command = command or boot_command()
    dirs = [package_parent(), *dependency_path()]
    stamp = cache_root() / "gdbpython" / key_of(
        os.path.realpath(gdb), os.stat(gdb).st_mtime_ns, command,
        *(os.stat(d).st_mtime_ns for d in dirs if os.path.isdir(d)))
    if use_cache and stamp.exists():
        return None
    try:
        r = subprocess.run([gdb, "-nx", "-batch", "-iex", "set auto-load no", "-ex", command,
                            "-ex", "help kd"], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "gdb-multiarch did not start its Python in 120 s"
    out = r.stdout + r.stderr
    fail = next((ln for ln in out.splitlines() if ln.startswith(FAIL)), None)
    if fail:
        return fail
    if r.returncode != 0 or 'Undefined command: "kd"' in out:
        last = (r.stderr.strip() or out.strip() or "no output").splitlines()[-1]
        return f"gdb-multiarch cannot load gdbkd's kd commands: {last}"
    with atomic_write(stamp, "w") as f:
        f.write(command + "\n")
    return None


def ensure():
    """Raise GdbkdError with check()'s line when gdb's Python cannot load gdbkd."""
    err = check()
    if err:
        raise GdbkdError(err)
