"""Child-process hygiene: every process gdbkd starts must end with gdbkd.

Normal exits, Ctrl-C and SIGTERM are handled by each owner's teardown. A
SIGKILL of gdbkd itself runs no teardown, so children are also started with
``PR_SET_PDEATHSIG`` = SIGKILL: the kernel ends them when gdbkd dies.
"""

import ctypes
import signal

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig=signal.SIGKILL):
    """preexec_fn for subprocess: send SIG (SIGKILL) to this child when its parent dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except OSError:
        pass
