"""Where gdbkd's own files are, in a checkout and in an installed wheel."""

from pathlib import Path

__all__ = ["kd_py"]


def kd_py() -> Path:
    """The gdb bootstrap script: the checkout's gdb_scripts/kd.py, else the copy in the package."""
    here = Path(__file__).resolve().parent
    repo = here.parent / "gdb_scripts" / "kd.py"
    return repo if repo.exists() else here / "kd_bootstrap.py"
