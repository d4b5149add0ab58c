"""The `kd` command set: one gdb command per file in this package.

A command module defines a :class:`KdCommand` subclass decorated with
:func:`command`. ``run(args)`` returns plain data (dicts/lists, JSON-ready);
``render(data, args)`` turns it into crash-like text. ``--json`` prints the
data instead. Errors are raised as :class:`KdError` and shown as one line.
"""

import argparse
import importlib
import json
import os

import gdb

from ..model.reader import MemoryFault

__all__ = ["KdCommand", "KdError", "command", "register_all", "COMMANDS"]

COMMANDS = {}


class KdError(Exception):
    """A user-facing error of a kd command (one line, no traceback)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise KdError(message)

    def exit(self, status=0, message=None):
        if message:
            raise KdError(message.strip())
        raise KdError("")


def command(cls):
    COMMANDS[cls.name] = cls
    return cls


class KdCommand(gdb.Command):
    name = ""
    completer = gdb.COMPLETE_SYMBOL
    #: run with a thread selected whose CPU maps kernel memory (live KPTI: see kernel.access)
    needs_kernel_view = True
    #: needs gdb's own symbols, types, blocks or lines (loaded first when ``gdbkd core``
    #: put them off: kernel/symbols.py ``defer_load``). False only for commands whose
    #: every gdb symbol or type use goes through kernel/types.py ``gdb_symbols`` /
    #: ``lookup_type`` (which load them on first use)
    gdb_symbols = True

    def __init__(self):
        super().__init__("kd " + self.name, gdb.COMMAND_USER, self.completer)
        self.parser = _Parser(prog="kd " + self.name, description=(self.__doc__ or "").strip(),
                              add_help=False)
        self.parser.add_argument("--json", action="store_true", help="print JSON")
        self.add_arguments(self.parser)

    def add_arguments(self, p):
        pass

    def run(self, args):
        raise NotImplementedError

    def render(self, data, args) -> str:
        return json.dumps(data, indent=1)

    def invoke(self, arg, from_tty):
        if self.gdb_symbols:
            from ..kernel.types import gdb_symbols
            gdb_symbols()
        if not self.needs_kernel_view:
            return self._invoke(arg, from_tty)
        from ..kernel.access import kernel_view, KernelUnmapped
        try:
            with kernel_view():
                self._invoke(arg, from_tty)
        except KernelUnmapped as e:
            raise gdb.GdbError(f"kd {self.name}: {e}")

    def _invoke(self, arg, from_tty):
        try:
            args = self.parser.parse_args(gdb.string_to_argv(arg))
            data = self.run(args)
            out = json.dumps(data) if args.json else self.render(data, args)
        except KdError as e:
            raise gdb.GdbError(f"kd {self.name}: {e}" if str(e) else f"kd {self.name}: usage: {self.parser.format_usage().strip()}")
        except gdb.MemoryError as e:
            raise gdb.GdbError(f"kd {self.name}: {e}")
        except MemoryFault as e:
            raise gdb.GdbError(f"kd {self.name}: {e}")
        if out:
            gdb.write(out if out.endswith("\n") else out + "\n")


class _KdPrefix(gdb.Command):
    """gdbkd kernel crash commands (crash's vocabulary). `help kd CMD` for one.

Live (gdbkd run/attach or plain gdb + target remote) and postmortem (gdbkd core)
alike. Every command takes --json."""

    def __init__(self):
        super().__init__("kd", gdb.COMMAND_USER, gdb.COMPLETE_COMMAND, True)


def register_all():
    _KdPrefix()
    # the package's .py files (not pkgutil: its import of typing is 3 ms of every start)
    names = sorted(f[:-3] for d in __path__ for f in os.listdir(d)
                   if f.endswith(".py") and not f.startswith("_"))
    for name in names:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except Exception as e:  # one broken command must not take the others down
            gdb.write(f"kd: command module {name} failed to load: {e}\n")
    for cls in COMMANDS.values():
        cls()
