"""The content-keyed artifact cache (``$GDBKD_CACHE`` or ``~/.cache/gdbkd``).

Every file lands under a temporary name in the destination directory and is
renamed into place, so an interrupted run never leaves a half-written artifact
that a later run would trust.
"""

import contextlib
import os
from pathlib import Path

# hashlib, shutil and tempfile are imported where used: gdb's Python imports this
# module (the offsets cache) on every `gdbkd core`, which needs none of them

__all__ = ["cache_root", "atomic_write", "atomic_dir", "key_of", "progress"]


def cache_root() -> Path:
    root = Path(os.environ.get("GDBKD_CACHE") or Path.home() / ".cache" / "gdbkd")
    root.mkdir(parents=True, exist_ok=True)
    return root


def key_of(*parts) -> str:
    import hashlib
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temp file beside ``path``; rename it over ``path`` on success."""
    import tempfile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temp directory beside ``path``; rename it to ``path`` on success."""
    import shutil
    import tempfile
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def progress(msg: str):
    """Progress lines go to stderr so --json stdout stays parseable."""
    import sys
    print(f"gdbkd: {msg}", file=sys.stderr, flush=True)
