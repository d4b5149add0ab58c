"""Load gdbkd's `kd` commands into any gdb-multiarch from a checkout:

    (gdb) source /path/to/gdbkd/gdb_scripts/kd.py

The package is this checkout's (or $GDBKD_PATH's), the dependencies those of
$GDBKD_SITE or of the venv install.sh made (.venv/gdbkd-site-packages).
Installed with pip instead? `gdbkd gdbinit` prints the line for ~/.gdbinit.
The work is gdbkd/kd_bootstrap.py's; a failure is said in one line.
"""
import os
import sys

_repo = os.environ.get("GDBKD_PATH") or os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if _repo not in sys.path:
    sys.path.insert(0, _repo)
import gdbkd.kd_bootstrap  # noqa: E402  (needs the path above)
gdbkd.kd_bootstrap.load()
del _repo
