"""The ``gdbkd`` command's entry point.

For ``gdbkd core`` it starts gdb-multiarch first (gdbkd/postmortem/prestart.py), so
that gdb's own start-up runs while this process imports click and the CLI.
"""

import sys

__all__ = ["main"]


def main(argv=None):
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["core"]:
        from .postmortem.prestart import start
        start(args[1:])
    from .cli import main as cli_main
    return cli_main(argv)
