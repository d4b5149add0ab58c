"""The `kd` command set: one gdb command per file in this package.

A command module defines a :class:`KdCommand` subclass decorated with
:func:`command`. ``run(args)`` returns plain data (dicts/lists, JSON-ready);
``render(data, args)`` turns it into crash-like text. ``--json`` prints the
data instead, through :func:`json_data` (docs/commands.md "JSON convention": every
address a "0x…" string). Errors are raised as :class:`KdError` and shown as one line.
"""

import argparse
import importlib
import json
import os

import gdb

from ..model.reader import MemoryFault
from ..kdnames import SYMBOL_FREE_COMMANDS

__all__ = ["KdCommand", "KdError", "command", "register_all", "COMMANDS", "json_data"]

COMMANDS = {}


class KdError(Exception):
    """A user-facing error of a kd command (one line, no traceback)."""


class _HelpShown(Exception):
    """-h/--help: argparse's own help text, printed instead of running the command."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise KdError(message)

    def print_help(self, file=None):
        raise _HelpShown(self.format_help())

    def exit(self, status=0, message=None):
        if message:
            raise KdError(message.strip())
        raise KdError("")


#: taken before the command modules load: list.py makes ``list`` the name of a module here
_SEQUENCES = (list, tuple)


def json_data(data, addresses, key=None):
    """``data`` as ``--json`` prints it: the ints under the keys ADDRESSES (at any depth,
    and the items of a list under such a key) as lowercase "0x…" strings, the rest as it
    is (docs/commands.md "JSON convention": a kernel address does not survive JSON
    readers that make every number a double). ``run()`` keeps ints for ``render()``."""
    if isinstance(data, dict):
        return {k: json_data(v, addresses, k) for k, v in data.items()}
    if isinstance(data, _SEQUENCES):
        return [json_data(v, addresses, key) for v in data]
    if key in addresses and isinstance(data, int) and not isinstance(data, bool):
        return f"{data & 0xFFFFFFFFFFFFFFFF:#x}"      # a negative word: its 64-bit pattern
    return data


def command(cls):
    COMMANDS[cls.name] = cls
    return cls


class KdCommand(gdb.Command):
    name = ""
    completer = gdb.COMPLETE_SYMBOL
    #: run with a thread selected whose CPU maps kernel memory (live KPTI: see kernel.access)
    needs_kernel_view = True
    #: the keys whose int values in run()'s data are addresses (pointers, raw 64-bit words):
    #: "0x…" strings in --json (json_data); each command names its own, as a key can be an
    #: address in one command and a count in another
    json_addresses = frozenset()

    def __init__(self, register=True):
        """REGISTER: make it a gdb command (False: a :class:`_Deferred` stand-in is
        registered under its name already and hands it its invocations)."""
        self.parser = _Parser(prog="kd " + self.name, description=(type(self).__doc__ or "").strip(),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
        self.parser.add_argument("--json", action="store_true",
                                 help="print the result as JSON (docs/commands.md)")
        self.add_arguments(self.parser)
        # `help kd CMD` shows what `kd CMD -h` shows: argparse's own text, every option's help
        self.__doc__ = self.parser.format_help()
        if register:
            super().__init__("kd " + self.name, gdb.COMMAND_USER, self.completer)

    def add_arguments(self, p):
        pass

    def run(self, args):
        raise NotImplementedError

    def render(self, data, args) -> str:
        return json.dumps(data, indent=1)

    def invoke(self, arg, from_tty):
        if self.name not in SYMBOL_FREE_COMMANDS:
            # gdb's own symbols, types, blocks or lines, loaded first when gdbkd core put
            # them off (kernel/symbols.py defer_load)
            from ..kernel.symbols import gdb_symbols
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
            try:
                args = self.parser.parse_args(gdb.string_to_argv(arg))
            except _HelpShown as h:
                gdb.write(h.text)
                return
            data = self.run(args)
            if args.json:
                out = json.dumps(json_data(data, self.json_addresses) if self.json_addresses
                                 else data)
            else:
                out = self.render(data, args)
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


def _module_names():
    """The command modules: the package's .py files (not pkgutil: its import of typing
    is 3 ms of every start)."""
    return sorted(f[:-3] for d in __path__ for f in os.listdir(d)
                  if f.endswith(".py") and not f.startswith("_"))


def _index_path(names):
    """Where the index of these command modules' commands is cached: keyed by the
    modules' own bytes (gdbkd/cache.py, written to a temp name and renamed)."""
    import hashlib
    from ..cache import cache_root
    h = hashlib.sha256()
    for n in names:
        with open(os.path.join(__path__[0], n + ".py"), "rb") as f:
            h.update(n.encode() + b"\0" + f.read() + b"\0")
    return cache_root() / "kd-commands" / f"{h.hexdigest()[:16]}.json"


class _Deferred(gdb.Command):
    """A kd command registered from the index without importing its module: the first
    invocation imports it and hands every invocation to the real command (made without
    registering it again). Its help is the real command's docstring, from the index."""

    def __init__(self, name, module, doc):
        self.__doc__ = doc              # the parser's help text (register_all's index)
        super().__init__("kd " + name, gdb.COMMAND_USER, KdCommand.completer)
        self._name, self._module, self._real = name, module, None

    def invoke(self, arg, from_tty):
        if self._real is None:
            try:
                importlib.import_module(self._module)
                cls = COMMANDS[self._name]
            except ImportError as e:
                raise gdb.GdbError(f"kd {self._name}: its command module failed to load: {e}")
            self._real = cls(register=False)
        return self._real.invoke(arg, from_tty)


def register_all():
    """Register every kd command (help text: each parser's format_help). Importing all 35 command modules and what they use
    was ~24 ms of every kd start (gdbkd core's included); with the cached index of their
    names, modules and docstrings (written by one start that imported them all) each
    module is imported when its first command runs."""
    _KdPrefix()
    names = _module_names()
    try:
        index_path = _index_path(names)
    except OSError:
        index_path = None
    try:
        index = json.loads(index_path.read_text()) if index_path is not None else None
    except (OSError, ValueError):
        index = None
    if isinstance(index, list):
        for name, module, doc in index:
            _Deferred(name, module, doc)
        return
    failed = False
    for name in names:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except Exception as e:  # boundary: one broken command must not take the others down
            gdb.write(f"kd: command module {name} failed to load: {e}\n")
            failed = True
    made = [cls() for cls in COMMANDS.values()]
    if index_path is not None and not failed:
        from ..cache import atomic_write
        rows = [[c.name, type(c).__module__, c.__doc__] for c in made]
        try:
            with atomic_write(index_path, "w") as f:
                json.dump(rows, f)
        except OSError:
            pass                    # a read-only cache: the next start imports them all again
