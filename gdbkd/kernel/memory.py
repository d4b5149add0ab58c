"""The model's context inside gdb: which reader kd reads through, gdb's types, symbols.

:func:`kernel` returns the one :class:`gdbkd.model.kernel.Kernel` kd uses:

* its reader is the dump itself, opened in this process, when ``gdbkd core``
  (or the user: ``kd reader --dump DUMP…``) attached one — a read is a cache
  lookup or a page translation, not a remote-protocol round trip; otherwise
  :class:`GdbReader` over gdb's inferior (a live QEMU gdbstub, a plain
  ``target remote``, a core file) with large block reads;
* its types are gdb's (:class:`GdbTypes`), its symbols the vmlinux's
  ``.symtab`` plus the KASLR offset (gdbkd/kernel/symbols.py).

The reader's cache and the per-stop store are emptied on every resume, stop,
memory or register write and symbol-file change (gdb events, below), so the
cache never serves memory from before the target moved. ``kd reader --cache
off`` reads through gdb without any cache (the reference the tests compare to).
"""

import gdb

from ..model.kernel import Kernel
from ..model.layout import TypeSource
from ..model.reader import Reader, MemoryFault
from .symbols import current_offset, deferred, gdb_symbols, vmlinux_symbol_address
from .types import lookup_type, member, member_kind

__all__ = ["kernel", "GdbReader", "GdbTypes", "attach_dump", "attach_ram", "set_cache",
           "reader_info", "symbol", "read_bytes", "read_ulong", "read_u32", "read_cstring"]


class GdbReader(Reader):
    """Memory through gdb's selected inferior. Blocks of 4 KiB with 3 blocks of
    read-ahead: one ``read_memory`` of 16 KiB is a handful of packets to the dump server
    or QEMU, where 16 reads of a task_struct's worth were 16+ round trips. User-half
    addresses are not cached: live, each vCPU translates them with its own TTBR0."""

    readahead = 3
    cache_user = False

    def _fetch(self, addr, n):
        try:
            return gdb.selected_inferior().read_memory(addr, n).tobytes()
        except gdb.MemoryError as e:
            raise MemoryFault(addr, str(e)) from None
        except gdb.error as e:           # no inferior / no process
            raise MemoryFault(addr, str(e)) from None


class GdbTypes(TypeSource):
    """Layouts from gdb's types (cached gdb.Type walks, gdbkd/kernel/types.py)."""

    def member(self, typename, path):
        try:
            off, t = member(typename, path)
        except gdb.error:
            return None
        return off, t.sizeof, member_kind(t)

    def sizeof(self, name):
        try:
            if name.startswith(("struct ", "union ")):
                return lookup_type(name).sizeof
            gdb_symbols()
            return int(gdb.parse_and_eval(f"sizeof({name})"))
        except gdb.error:
            return None

    def enum(self, name):
        try:
            return {f.name: f.enumval for f in lookup_type(name).fields()}
        except gdb.error:
            return None


class RecordedThenGdb(TypeSource):
    """The per-vmlinux offsets cache for the members the model reads (LAYOUTS, SIZES:
    no gdb type lookup, which costs 0.1–0.7 s the first time: gdb sorts its index and
    expands the compilation unit), gdb's types for anything else."""

    def __init__(self, recorded, fallback):
        self.recorded = recorded
        self.fallback = fallback

    def member(self, typename, path):
        if self.recorded.covers(typename, path):
            return self.recorded.member(typename, path)
        return self.fallback.member(typename, path)

    def sizeof(self, name):
        if name in self.recorded.sizes:
            return self.recorded.sizes[name]
        if name in self.recorded.layouts:
            return self.recorded.layouts[name].get("size")
        return self.fallback.sizeof(name)

    def enum(self, name):
        if name in self.recorded.enums:
            return self.recorded.enums[name]
        return self.fallback.enum(name)


def _symbol(name):
    """Run-time address of a kernel symbol: the offsets cache's link address (when kd was
    given it: no .symtab scan) plus the load offset, else the vmlinux's .symtab / gdb."""
    if _recorded_syms is not None:
        link = _recorded_syms.get(name)
        if link is not None:
            return (link + current_offset()) & 0xFFFFFFFFFFFFFFFF
    return vmlinux_symbol_address(name)


_kernel = None
_dump = None           # (paths, Dump) opened in this process
_ram = None            # (path, GuestRam): a live guest's RAM shared with QEMU
_cache_on = True
_recorded = None       # RecordedTypes from the offsets cache of the loaded vmlinux
_recorded_syms = None  # and its link-time symbol addresses
_preloaded = None      # (Dump, DumpReader, Kernel or None) from gdbkd/target/preload.py


class LiveRamReader(Reader):
    """A live guest: kernel addresses from its RAM shared with QEMU (gdbkd/dump/guestram.py,
    translated by the kernel's page tables), user addresses and anything that is not RAM
    (device memory) through gdb's target (each vCPU has its own TTBR0, so user-half
    addresses are not cached, as with GdbReader)."""

    cache_user = False

    def __init__(self, ram, cache=True):
        super().__init__(cache)
        from ..model.reader import RamReader
        self.gdb = GdbReader(cache=False)
        self.ram = RamReader(ram, self._vmcoreinfo, cache=False)

    @staticmethod
    def _vmcoreinfo():
        from ..model.sysinfo import vmcoreinfo_text
        return vmcoreinfo_text(GdbReader(cache=False), vmlinux_symbol_address)

    def _fetch(self, addr, n):
        if addr >> 63:
            try:
                return self.ram._fetch(addr, n)
            except MemoryFault:
                pass
        return self.gdb._fetch(addr, n)

    def invalidate(self):
        super().invalidate()
        self.ram.invalidate()


def _make_reader():
    if _ram is not None and _dump is None:
        return LiveRamReader(_ram[1], cache=_cache_on)
    if _preloaded is not None and _cache_on and _dump is not None and _preloaded[0] is _dump[1]:
        return _preloaded[1]
    if _dump is not None:
        from ..model.reader import DumpReader
        from ..arm64.pac import PacStripper
        d = _dump[1]
        return DumpReader(d, PacStripper.for_dump(d), cache=_cache_on)
    return GdbReader(cache=_cache_on)


def kernel() -> Kernel:
    """The model context kd reads through (see the module docstring)."""
    global _kernel, _preloaded
    if _kernel is None:
        types = GdbTypes() if _recorded is None else RecordedThenGdb(_recorded, GdbTypes())
        reader = _make_reader()
        _kernel = Kernel(reader, types, _symbol)
        if _preloaded is not None and _preloaded[1] is reader:
            pre = _preloaded[2]
            if pre is not None and _recorded is not None:
                # the preload thread's results (the task list), computed from the same
                # recorded layouts and symbols over this very reader; dropped with the
                # rest at the next invalidation (the reader's generation moves)
                _kernel.stop_store().update(pre.stop_store())
            _preloaded = None
    return _kernel


def read_bytes(addr: int, n: int) -> bytes:
    """N bytes at ADDR through kd's reader (the dump in-process or gdb's inferior, cached
    per stop); raises gdb.MemoryError."""
    try:
        return kernel().reader.read(addr, n)
    except MemoryFault as e:
        raise gdb.MemoryError(str(e)) from None


def read_ulong(addr: int) -> int:
    return int.from_bytes(read_bytes(addr, 8), "little")


def read_u32(addr: int) -> int:
    return int.from_bytes(read_bytes(addr, 4), "little")


def read_cstring(addr: int, maxlen: int = 256) -> bytes:
    data = read_bytes(addr, maxlen)
    return data.split(b"\0", 1)[0]


def use_layouts(path):
    """Take the model's layouts from the offsets cache file PATH (written by
    gdbkd/target/offsets.py for the vmlinux gdb has loaded)."""
    global _recorded, _recorded_syms
    import json
    from ..model.layout import RecordedTypes
    data = json.loads(open(path).read())
    _recorded = RecordedTypes.from_offsets(data)
    _recorded_syms = {k: v for k, v in data.get("symbols", {}).items() if v is not None}
    _rebuild()


def _rebuild():
    global _kernel
    _kernel = None


def attach_dump(paths, vmlinux=None):
    """Read kernel memory from the dump at PATHS in this process from now on (opened
    by gdbkd core's preload thread while gdb loaded the vmlinux, when it did)."""
    global _dump, _preloaded
    from ..target import preload
    pre = preload.take(paths) if vmlinux is None else None
    if pre is not None:
        d = pre[0]
    else:
        from ..target import open_dump
        d = open_dump(list(paths) if len(paths) > 1 else paths[0], vmlinux)
    if _dump is not None:
        _dump[1].close()
    _dump = (list(paths), d)
    _preloaded = pre
    _rebuild()
    return d


def attach_ram(path):
    """Read a live guest's kernel memory from its RAM shared with QEMU (PATH[@BASE])."""
    global _ram
    from ..dump.guestram import GuestRam, parse_ram_spec
    ram = GuestRam(*parse_ram_spec(path))
    if _ram is not None:
        _ram[1].close()
    _ram = (path, ram)
    _rebuild()
    return ram


def detach_ram():
    global _ram
    if _ram is not None:
        _ram[1].close()
    _ram = None
    _rebuild()


def detach_dump():
    global _dump
    if _dump is not None:
        _dump[1].close()
    _dump = None
    _rebuild()


def attached_dump():
    """The Dump read in this process (attach_dump), or None (live, or a plain core file)."""
    return _dump[1] if _dump is not None else None


def set_cache(on: bool):
    global _cache_on
    _cache_on = bool(on)
    _rebuild()


def cache_enabled() -> bool:
    return _cache_on


def symbol(name):
    """Run-time address of NAME as the model sees it (see _symbol)."""
    return _symbol(name)


def reading_dump() -> bool:
    """Whether kd reads a dump it opened in this process (``kd reader --dump``: gdbkd core)."""
    return _dump is not None


def reader_info() -> dict:
    k = kernel()
    info = k.reader.stats()
    info["dump"] = " ".join(_dump[0]) if _dump is not None else None
    info["ram"] = _ram[0] if _ram is not None and _dump is None else None
    info["gdb_symbols"] = "deferred" if deferred() else "loaded"
    return info


def target_readable(addr: int, n: int = 8) -> bool:
    """Whether the target, through the selected thread, reads ``addr`` (no cache: live,
    each vCPU maps kernel memory only while it runs in the kernel, KPTI). A dump
    read in-process maps everything it holds, whichever thread is selected."""
    if _dump is not None:
        return True
    try:
        gdb.selected_inferior().read_memory(addr, n)
        return True
    except (gdb.MemoryError, gdb.error):
        return False



def invalidate(_event=None):
    if _kernel is not None:
        _kernel.invalidate()


def _types_changed(_event=None):
    if _kernel is not None:
        _kernel.forget_types()


def _symbols_cleared(_event=None):
    global _recorded, _recorded_syms
    _recorded = _recorded_syms = None   # another vmlinux may come: its layouts are not these
    _rebuild()



for _name in ("cont", "stop", "memory_changed", "register_changed", "inferior_call", "exited",
              "new_inferior"):
    _ev = getattr(gdb.events, _name, None)
    if _ev is not None:
        _ev.connect(invalidate)
gdb.events.new_objfile.connect(_types_changed)
if getattr(gdb.events, "clear_objfiles", None) is not None:
    gdb.events.clear_objfiles.connect(_symbols_cleared)
