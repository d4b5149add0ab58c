"""One exception type for everything a user can get wrong or the host can lack.

Frontends catch :class:`GdbkdError` and print ``gdbkd: <message>`` on one line;
anything else is a bug and keeps its traceback.
"""

__all__ = ["GdbkdError", "KD_LOAD_FAILURE"]

#: the first words of every line kd_bootstrap prints when gdb's Python cannot load gdbkd
#: (gdbpython.check and GdbSession.source_kd look for them)
KD_LOAD_FAILURE = "kd: cannot load gdbkd"


class GdbkdError(Exception):
    """A failure the user can act on; ``str()`` is the one line shown."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
