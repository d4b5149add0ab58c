"""Bootstrap gdbkd's `kd` commands inside any gdb-multiarch:

    (gdb) source /path/to/gdbkd/gdb_scripts/kd.py

Finds the gdbkd package (this checkout, or $GDBKD_PATH) and its venv's
site-packages ($GDBKD_SITE, else the path file written by install.sh), then
registers the `kd` prefix command, the arm64 exception-frame unwinder and the
module-symbol loader. Fails with one line if something is missing.
"""
import os
import sys


def _gdbkd_bootstrap():
    here = os.path.dirname(os.path.realpath(globals().get("__file__") or "gdb_scripts/kd.py"))
    repo = os.environ.get("GDBKD_PATH") or os.path.dirname(here)
    site = os.environ.get("GDBKD_SITE")
    if not site:
        pf = os.path.join(repo, ".venv", "gdbkd-site-packages")
        if os.path.exists(pf):
            site = open(pf).read().strip()
    for p in (site, repo):
        if p and p not in sys.path:
            sys.path.insert(0, p)
    try:
        import gdbkd.gdbext
    except ImportError as e:
        print(f"kd: cannot load gdbkd ({e}); run install.sh in {repo} or set GDBKD_PATH/GDBKD_SITE")
        return
    gdbkd.gdbext.register()


_gdbkd_bootstrap()
del _gdbkd_bootstrap
