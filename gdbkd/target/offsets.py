"""Struct offsets and symbol addresses the dump server needs, asked of gdb once per vmlinux.

``gdb-multiarch -batch -nx VMLINUX`` evaluates a fixed list of expressions in
its embedded Python (0.4-0.8 s with a .gdb_index) and prints them as JSON; the
result is cached in ``~/.cache/gdbkd/offsets/<build-id>.json`` (temp name +
rename). Missing members are ``null``, so one list covers the kernel versions:

- ``task_struct.__state`` (v5.14+, commit 2f064a59a11f "sched: Change
  task_struct::state") or ``.state`` before;
- the task's CPU: ``thread_info.cpu`` (6.1 arm64, checked) or
  ``task_struct.cpu`` (THREAD_INFO_IN_TASK kernels that kept it in the task
  for a while) — both probed, the first found is used;
- ``task_struct.thread_node`` / ``signal_struct.thread_head`` (v3.14+) and
  ``task_struct.thread_group`` (removed in v6.7, commit 8e1f385104ac);
- ``task_struct.thread.cpu_context`` (arm64, all versions: x19-x28, fp, sp, pc).

Addresses are the vmlinux's link-time ones; add the KASLR offset at run time.
"""

import json
from pathlib import Path

from ..cache import cache_root, atomic_write
from ..errors import GdbkdError
from ..gdbpython import path_prelude
from ..paths import GDB_INIT

__all__ = ["kernel_offsets", "vmlinux_build_id", "OFFSETS_VERSION"]

OFFSETS_VERSION = 9


def _version():
    """OFFSETS_VERSION plus a digest of what is recorded: a change to the model's
    LAYOUTS (gdbkd/model/layout.py) makes every cached file stale by itself."""
    import hashlib
    from ..model.layout import LAYOUTS, SIZES, SYMBOLS, ENUMS
    h = hashlib.sha256(repr((_FIELDS, _SIZES, _SYMBOLS, LAYOUTS, SIZES, SYMBOLS, ENUMS)).encode())
    return f"{OFFSETS_VERSION}-{h.hexdigest()[:12]}"

_FIELDS = {
    "task.tasks": ("struct task_struct", "tasks"),
    "task.pid": ("struct task_struct", "pid"),
    "task.tgid": ("struct task_struct", "tgid"),
    "task.comm": ("struct task_struct", "comm"),
    "task.stack": ("struct task_struct", "stack"),
    "task.__state": ("struct task_struct", "__state"),
    "task.state": ("struct task_struct", "state"),
    "task.on_cpu": ("struct task_struct", "on_cpu"),
    "task.cpu": ("struct task_struct", "cpu"),
    "task.thread_info.cpu": ("struct task_struct", "thread_info.cpu"),
    "task.flags": ("struct task_struct", "flags"),
    "task.signal": ("struct task_struct", "signal"),
    "task.thread_node": ("struct task_struct", "thread_node"),
    "task.thread_group": ("struct task_struct", "thread_group"),
    "task.group_leader": ("struct task_struct", "group_leader"),
    "task.cpu_context": ("struct task_struct", "thread.cpu_context"),
    "task.mm": ("struct task_struct", "mm"),
    "signal.thread_head": ("struct signal_struct", "thread_head"),
    "rq.curr": ("struct rq", "curr"),
    # loaded modules, for gdbkd core's module symbols (gdbkd/kmods.py has the versions)
    "module.list": ("struct module", "list"),
    "module.name": ("struct module", "name"),
    "module.sect_attrs": ("struct module", "sect_attrs"),
    "module.core_layout.base": ("struct module", "core_layout.base"),
    "module.mem0.base": ("struct module", "mem[0].base"),
    "module_sect_attrs.nsections": ("struct module_sect_attrs", "nsections"),
    "module_sect_attrs.attrs": ("struct module_sect_attrs", "attrs"),
    "module_sect_attr.battr.attr.name": ("struct module_sect_attr", "battr.attr.name"),
    "module_sect_attr.name": ("struct module_sect_attr", "name"),
    "module_sect_attr.address": ("struct module_sect_attr", "address"),
    "rq.idle": ("struct rq", "idle"),
}
_SIZES = {
    "task_struct": "sizeof(struct task_struct)",
    "thread_size": "sizeof(init_stack)",
    "cpu_context": "sizeof(struct cpu_context)",
    "comm": "sizeof(((struct task_struct *)0)->comm)",
    "linux_banner": "sizeof(linux_banner)",
    "module_sect_attr": "sizeof(struct module_sect_attr)",
}
_SYMBOLS = ["init_task", "runqueues", "__per_cpu_offset", "panic_cpu", "irq_stack_ptr",
            "__cpu_online_mask", "__cpu_present_mask", "nr_cpu_ids", "linux_banner", "_text", "_stext", "_end",
            "vectors", "swapper_pg_dir", "crashing_cpu", "overflow_stack",
            # trap entry points: which CPU stopped in one when panic_cpu is not set yet
            "panic", "vpanic", "die", "crash_kexec", "__crash_kexec", "modules"]

_SCRIPT = r"""
import gdb, json
out = {"fields": {}, "sizes": {}, "symbols": {}}
for k, (t, f) in FIELDS.items():
    try:
        out["fields"][k] = int(gdb.parse_and_eval("(unsigned long)&((%s *)0)->%s" % (t, f)))
    except gdb.error:
        out["fields"][k] = None
for k, e in SIZES.items():
    try:
        out["sizes"][k] = int(gdb.parse_and_eval(e))
    except gdb.error:
        out["sizes"][k] = None
for s in SYMBOLS:
    try:
        out["symbols"][s] = int(gdb.parse_and_eval("(unsigned long)&%s" % s))
    except gdb.error:
        out["symbols"][s] = None

# the model's layouts (gdbkd/model/layout.py), through the same gdb type walk kd uses
from gdbkd.kernel.memory import GdbTypes
from gdbkd.model.layout import LAYOUTS, SIZES, ENUMS
_gt = GdbTypes()
out["layouts"] = {}
for t, paths in LAYOUTS.items():
    mem = {}
    for p in paths:
        m = _gt.member(t, p)
        if m is not None:
            mem[p] = list(m)
    out["layouts"][t] = {"size": _gt.sizeof(t), "members": mem}
out["model_sizes"] = {n: _gt.sizeof(n) for n in SIZES}
out["enums"] = {e: _gt.enum(e) for e in ENUMS}
print("GDBKD-OFFSETS " + json.dumps(out))
"""


def vmlinux_build_id(vmlinux) -> str:
    """Hex GNU build-id of a vmlinux (its .note.gnu.build-id), or raise GdbkdError.
    Read with struct (gdbkd/elfsyms.py's section table): pyelftools' import alone is
    40 ms of every gdbkd core."""
    import struct
    from ..elfsyms import sections, build_id, ElfFormatError
    try:
        with open(vmlinux, "rb") as f:
            secs = sections(f, vmlinux)
            f.seek(16)
            e_type = struct.unpack("<H", f.read(2))[0]
            if e_type not in (2, 3):                       # ET_EXEC, ET_DYN
                raise GdbkdError(f"{vmlinux} is not a vmlinux (ELF type {e_type})")
            return build_id(f, vmlinux, secs) or ""
    except ElfFormatError as e:
        raise GdbkdError(f"{vmlinux} is not a readable ELF vmlinux ({e})") from None
    except OSError as e:
        raise GdbkdError(f"cannot read vmlinux {vmlinux}: {e.strerror}")


def kernel_offsets(vmlinux, build_id=None) -> dict:
    """Offsets, sizes and link-time symbol addresses for ``vmlinux`` (cached by build-id)."""
    vmlinux = str(Path(vmlinux).resolve())
    build_id = build_id if build_id is not None else vmlinux_build_id(vmlinux)
    st = Path(vmlinux).stat()
    key = build_id or f"nobuildid-{st.st_size}-{int(st.st_mtime)}"
    # the digest of what is recorded is part of the name: two gdbkd versions (a test run
    # and an edited checkout, two installs) keep their own files instead of rewriting one
    cache = cache_root() / "offsets" / f"{key}-{_version()}.json"
    if cache.exists():
        try:
            data = json.loads(cache.read_text())
            if data.get("version") == _version():
                data["path"] = str(cache)
                return data
        except ValueError:
            pass
    from ..model.layout import SYMBOLS as model_symbols
    symbols = _SYMBOLS + [s for s in model_symbols if s not in _SYMBOLS]
    script = (f"FIELDS = {_FIELDS!r}\nSIZES = {_SIZES!r}\nSYMBOLS = {symbols!r}\n"
              + path_prelude() + "\n" + _SCRIPT)
    import subprocess            # here: gdb's Python reads the cache file, never runs this
    try:
        r = subprocess.run(["gdb-multiarch", "-batch", "-nx", *GDB_INIT, vmlinux,
                            "-ex", "python\n" + script + "\nend"],
                           capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise GdbkdError("gdb-multiarch is not installed (run install.sh)")
    except subprocess.TimeoutExpired:
        raise GdbkdError(f"gdb-multiarch took too long to read {vmlinux}")
    line = next((l for l in r.stdout.splitlines() if l.startswith("GDBKD-OFFSETS ")), None)
    if line is None:
        err = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise GdbkdError(f"gdb-multiarch could not read types from {vmlinux}: {err[:200]}")
    data = json.loads(line[len("GDBKD-OFFSETS "):])
    missing = [n for n, v in data["symbols"].items() if v is None]
    if missing:      # file-static variables gdb will not name without a scope (printk.c's
        from ..elfsyms import SymbolTable            # prb): the .symtab, when unique
        try:
            st = SymbolTable(vmlinux)
            for n in missing:
                data["symbols"][n] = st.value(n, unique=True)
        except GdbkdError:
            pass
    f = data["fields"]
    for need in ("task.tasks", "task.pid", "task.comm", "task.cpu_context", "task.stack"):
        if f.get(need) is None:
            raise GdbkdError(f"{vmlinux} has no debug info for struct task_struct "
                             f"({need.split('.', 1)[1]} missing): use the -dbg vmlinux")
    if data["symbols"].get("init_task") is None:
        raise GdbkdError(f"{vmlinux} has no init_task symbol")
    data["version"] = _version()
    data["build_id"] = build_id
    with atomic_write(cache, "w") as fh:
        json.dump(data, fh, indent=1)
    data["path"] = str(cache)
    return data
