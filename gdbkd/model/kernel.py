"""The explicit context every model function takes (drgn's ``prog``): memory, layouts, symbols.

``Kernel(reader, types, symbol)``:

* ``reader`` — a :class:`gdbkd.model.reader.Reader` (the dump in-process, or gdb);
* ``types`` — a :class:`gdbkd.model.layout.TypeSource` (gdb's types, or the
  per-vmlinux offsets cache);
* ``symbol(name)`` — the run-time (KASLR-relocated) address of a kernel symbol,
  or None when this kernel has none by that name.

Results that stay true while the target is stopped (the task list, the CPU
masks, the module list) are kept with :func:`per_stop`: one decorator, one
store per Kernel, emptied whenever the reader's cache is (resume, memory or
register write, new symbols).
"""

import functools

from .layout import StructLayout, decoded_paths

__all__ = ["Kernel", "per_stop"]

M64 = (1 << 64) - 1


class Kernel:
    def __init__(self, reader, types, symbol):
        self.reader = reader
        self.types = types
        self._symbol = symbol
        self._layouts = {}
        self._stop = {}
        self._stop_gen = reader.generation

    # -- symbols and types --------------------------------------------------------------
    def sym(self, name: str):
        """Run-time address of ``name``, or None."""
        a = self._symbol(name)
        return None if a is None else a & M64

    def need_sym(self, name: str) -> int:
        a = self.sym(name)
        if a is None:
            from .reader import MemoryFault
            raise MemoryFault(0, f"this kernel has no symbol {name}")
        return a

    def sym_u64(self, name: str):
        """The u64 at kernel symbol ``name``, or None: no such symbol, or unreadable."""
        a = self.sym(name)
        if a is None:
            return None
        from .reader import MemoryFault
        try:
            return self.reader.u64(a)
        except MemoryFault:
            return None

    def layout(self, typename: str, paths=None) -> StructLayout:
        """Layout of ``typename`` with ``paths`` (default: every member the model decodes,
        :func:`gdbkd.model.layout.decoded_paths`)."""
        key = (typename, tuple(paths) if paths is not None else None)
        lay = self._layouts.get(key)
        if lay is None:
            lay = self._layouts[key] = StructLayout.from_source(
                self.types, typename, paths if paths is not None else decoded_paths(typename))
        return lay

    def offset(self, typename: str, path: str):
        """Byte offset of a member, or None when this kernel's struct has no such member."""
        m = self.types.member(typename, path)
        return None if m is None else m[0]

    def sizeof(self, name: str):
        return self.types.sizeof(name)

    def enum(self, name: str):
        """``{enumerator: value}`` of ``enum NAME`` (declaration order), or None."""
        return self.types.enum(name)

    def forget_types(self):
        """Symbol files changed: layouts may differ."""
        self._layouts.clear()
        self.invalidate()

    # -- per-stop store -------------------------------------------------------------------
    def invalidate(self):
        self.reader.invalidate()
        self._stop.clear()
        self._stop_gen = self.reader.generation

    def stop_store(self) -> dict:
        if self._stop_gen != self.reader.generation:
            self._stop.clear()
            self._stop_gen = self.reader.generation
        return self._stop


def per_stop(fn):
    """Cache ``fn(kernel, *args)`` in the kernel's per-stop store (args must be hashable)."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(kernel, *args):
        store = kernel.stop_store()
        key = (name, args)
        try:
            return store[key]
        except KeyError:
            v = store[key] = fn(kernel, *args)
            return v
    return wrapper
