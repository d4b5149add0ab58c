"""The per-vmlinux offsets registry: what the gdb-free model reads, asked of gdb once per vmlinux.

``gdb-multiarch -batch -nx VMLINUX`` runs the same gdb type walk kd uses (``GdbTypes``)
over model/layout.py's registry — every member of :data:`LAYOUTS`, the :data:`SIZES`, the
:data:`ENUMS` and the link-time addresses of the :data:`SYMBOLS` — and prints them as JSON
(0.4-0.8 s with a .gdb_index); the result is cached in
``~/.cache/gdbkd/offsets/<build-id>-<version>.json`` (temp name + rename). Members a kernel
does not have are absent, so one registry covers the kernel versions (the model's modules
say which versions have which member). A new struct layout is a line in
model/layout.py: nothing here names a struct.

The entry holds ``layouts`` ({"struct T": {"size", "members": {path: [off, size,
kind]}}}), ``model_sizes``, ``enums`` (read back by :class:`RecordedTypes.from_offsets
<gdbkd.model.layout.RecordedTypes>`) and ``symbols``. Addresses are the vmlinux's
link-time ones; add the KASLR offset at run time.
"""

import json
from pathlib import Path

from ..cache import cache_root, atomic_write
from ..errors import GdbkdError
from ..gdbpython import path_prelude
from ..paths import GDB_INIT

__all__ = ["kernel_offsets", "vmlinux_build_id", "OFFSETS_VERSION"]

OFFSETS_VERSION = 10


def _version():
    """OFFSETS_VERSION plus a digest of what is recorded: a change to the model's
    registry (gdbkd/model/layout.py) makes every cached file stale by itself."""
    import hashlib
    from ..model.layout import LAYOUTS, SIZES, SYMBOLS, ENUMS
    h = hashlib.sha256(repr((LAYOUTS, SIZES, SYMBOLS, ENUMS)).encode())
    return f"{OFFSETS_VERSION}-{h.hexdigest()[:12]}"


_SCRIPT = r"""
import gdb, json
from gdbkd.kernel.memory import GdbTypes
from gdbkd.model.layout import LAYOUTS, SIZES, ENUMS, SYMBOLS
out = {"symbols": {}}
for s in SYMBOLS:
    try:
        out["symbols"][s] = int(gdb.parse_and_eval("(unsigned long)&%s" % s))
    except gdb.error:
        out["symbols"][s] = None
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
    script = path_prelude() + "\n" + _SCRIPT
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
    task = data["layouts"].get("struct task_struct", {}).get("members", {})
    for need in ("tasks", "pid", "comm", "thread.cpu_context", "stack"):
        if need not in task:
            raise GdbkdError(f"{vmlinux} has no debug info for struct task_struct "
                             f"({need} missing): use the -dbg vmlinux")
    if data["symbols"].get("init_task") is None:
        raise GdbkdError(f"{vmlinux} has no init_task symbol")
    data["version"] = _version()
    data["build_id"] = build_id
    with atomic_write(cache, "w") as fh:
        json.dump(data, fh, indent=1)
    data["path"] = str(cache)
    return data
