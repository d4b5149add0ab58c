"""`gdbkd core`'s gdb, started before the CLI has imported anything heavy.

gdb-multiarch takes ~0.07 s to start; the gdbkd process ~0.05 s to import click and
its command modules and parse its command line. `gdbkd core` therefore starts gdb
first of all (gdbkd/entry.py ``main`` calls :func:`start`), told only to wait for its
start-up script on a FIFO in a fresh 0700 directory. The one thing gdb's command
line depends on is ``--batch`` (the user's -ex commands reach gdb through that
script, postmortem/session.py ``_script``): it is guessed here from the arguments,
and :func:`take` gives the gdb to ``run_core`` only when click's parse agrees. A
wrong guess, ``--help``, ``--check`` or a command line click rejects: this gdb is
killed (it has printed nothing) and its directory removed.
"""

import atexit
import os
import subprocess
import tempfile

from ..paths import GDB_INIT
from ..procutil import die_with_parent

__all__ = ["gdb_argv", "spawn", "start", "take"]

_started = None          # (Popen, directory, batch)


def gdb_argv(fifo, batch):
    """gdb's command line: no -ex of the user's (they come with the start-up script)."""
    # no "[New Thread N]" per task when gdb first lists them (a dump's tasks are not new)
    argv = ["gdb-multiarch", "-nx", "-q", *GDB_INIT, "-iex", "set pagination off",
            "-iex", "set confirm off", "-iex", "set print thread-events off",
            "-ex", f"python exec(open({fifo!r}).read())"]
    if batch:
        argv.insert(1, "-batch")
    return argv


def spawn(batch):
    """(gdb Popen, directory) with the FIFO ``init.gdb`` in a new 0700 directory.
    FileNotFoundError when there is no gdb-multiarch (the directory is removed)."""
    d = tempfile.mkdtemp(prefix=f"gdbkd-core-{os.getpid()}-")     # whose: the pid says
    try:
        fifo = os.path.join(d, "init.gdb")
        os.mkfifo(fifo, 0o600)
        gdb = subprocess.Popen(gdb_argv(fifo, batch),
                               stdin=subprocess.DEVNULL if batch else None,
                               preexec_fn=die_with_parent)
    except BaseException:
        import shutil
        shutil.rmtree(d, ignore_errors=True)
        raise
    return gdb, d


def start(args):
    """Start gdb for ``gdbkd core ARGS`` now, if ARGS can be guessed right."""
    global _started
    if _started is not None or any(a in ("-h", "--help", "--check") for a in args):
        return
    batch = "--batch" in args
    try:
        gdb, d = spawn(batch)
    except OSError:
        return                 # run_core starts it and says what is wrong
    _started = (gdb, d, batch)
    atexit.register(_drop)


def _kill(gdb, d):
    if gdb.poll() is None:
        gdb.kill()
        gdb.wait()
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def take(batch):
    """(gdb, directory) started for this BATCH mode and still waiting, or None (the
    guessed one, if any, is gone)."""
    global _started
    if _started is None:
        return None
    gdb, d, guess = _started
    _started = None
    if guess == batch and gdb.poll() is None:
        return gdb, d
    _kill(gdb, d)
    return None


def _drop():
    global _started
    if _started is not None:
        gdb, d, _ = _started
        _started = None
        _kill(gdb, d)
