"""Damage planted in the kernel lists of a real dump (issue 26), for the unit and e2e tests.

A kind of damage is a few words written over real memory: the victim entry's
``next`` made to point at itself, back to an earlier entry, at NULL, at
LIST_POISON1 or at an address the dump does not hold, or the following entry's
``prev`` made to disagree with the walk. :func:`plant` gives the words to write
(virtual address → bytes) and what a walk must then find, derived from the
intact walk of the same list in the same dump: no count, offset or ABI is
written down here.

:class:`PatchedReader` serves the dump's real memory with those words in place
(real memory with a planted corruption, read through the real reader);
:func:`patched_dump_copy` writes them into a copy of an ELF dump at their
physical file offsets, for whole ``gdbkd core`` runs.
"""

import struct

import pytest

from gdbkd.model.kernel import Kernel
from gdbkd.model.layout import TypeSource
from gdbkd.model.lists import LIST_POISON1
from gdbkd.model.reader import DumpReader

__all__ = ["KINDS", "KERNELS", "kernel_dumps", "WILD", "PatchedReader", "plant", "patched_dump_copy", "RecordedThenDrgn",
           "model_kernels", "list_heads"]

#: the kinds of damage, each planted on its own
KINDS = ("self-loop", "loop-back", "null", "poison", "wild", "prev")

#: the kernels the tests run on: the default tier's 6.1, the other kernels in the slow tier
KERNELS = [pytest.param("debian-6.1", id="6.1"),
           pytest.param("debian-5.10", id="5.10", marks=pytest.mark.slow),
           pytest.param("debian-6.12", id="6.12", marks=pytest.mark.slow)]


def kernel_dumps(profile: str, td61):
    """The TestDumps of PROFILE (a KERNELS value): TD61 for 6.1 (the caller's real_dumps()),
    the other kernels' shared test dumps otherwise (made when not cached)."""
    if profile == "debian-6.1":
        return td61
    from testdumps import ensure_test_dumps
    return ensure_test_dumps(profile, "1G")


#: a kernel-half address no dump of a 1 GiB arm64 guest maps (checked by the tests)
WILD = 0xffff7bad0dead000

_KIND_SAID = {"self-loop": "loop", "loop-back": "loop", "null": "null", "poison": "poison",
              "wild": "unreadable", "prev": "prev"}


def _q(v: int) -> bytes:
    return struct.pack("<Q", v)


class PatchedReader(DumpReader):
    """The dump's real memory with ``patches`` ({virtual address: bytes}) written over it."""

    def __init__(self, dump, patches: dict):
        super().__init__(dump)
        self.patches = dict(patches)
        self._direct = None         # every read through _fetch, where the patches apply

    def _fetch(self, addr, n):
        data = bytearray(super()._fetch(addr, n))
        for a, b in self.patches.items():
            lo, hi = max(a, addr), min(a + len(b), addr + n)
            if lo < hi:
                data[lo - addr:hi - addr] = b[lo - a:hi - a]
        return bytes(data)


def plant(kind: str, head: int, nodes: list, victim: int = None):
    """(patches, expected) for damage KIND in the intact list at HEAD whose list_heads,
    in walk order, are NODES. VICTIM (an index into NODES, default the middle) is the
    entry whose ``next`` is damaged; for "prev", the ``prev`` of the entry after it (or
    the head's) is made stale. ``expected``: ``kind`` (ListProblem.kind), ``node`` (the
    list_head whose link is wrong), ``value`` (what it holds), ``recovered`` (entries the
    walk back from the head must find), ``restore`` (the intact words, to write back)."""
    n = len(nodes)
    v = n // 2 if victim is None else victim
    at = nodes[v]
    if kind == "prev":
        target = nodes[v + 1] if v + 1 < n else head
        stale = nodes[v - 1] if v >= 1 else head
        return {target + 8: _q(stale)}, {"kind": "prev", "node": target, "value": stale,
                                         "recovered": 0, "restore": {target + 8: _q(at)}}
    value = {"self-loop": at, "loop-back": nodes[0] if v else at, "null": 0,
             "poison": LIST_POISON1, "wild": WILD}[kind]
    if kind == "loop-back" and not v:
        raise ValueError("a loop back to an earlier entry needs a victim after the first")
    return {at: _q(value)}, {"kind": _KIND_SAID[kind], "node": at, "value": value,
                             "recovered": n - 1 - v,
                             "restore": {at: _q(nodes[v + 1] if v + 1 < n else head)}}


def patched_dump_copy(dump, src, dst, patches: dict):
    """Copy the ELF dump SRC (opened as DUMP) to DST with PATCHES ({virtual address:
    bytes}) written at the file offsets of their physical addresses (DUMP's page tables
    and program headers)."""
    from hostile import patched_copy
    file_patches = []
    for va, b in patches.items():
        pa = dump.mmu.translate(va)
        seg = dump.phys._seg(pa)
        if seg is None or pa - seg.paddr + len(b) > seg.filesz:
            raise ValueError(f"{va:#x} (pa {pa:#x}) is not stored in {src}")
        file_patches.append((seg.offset + pa - seg.paddr, b))
    return patched_copy(src, dst, file_patches)


class RecordedThenDrgn(TypeSource):
    """The offsets cache's layouts, then drgn's reading of the vmlinux's DWARF for members
    it does not record (what kd gets from gdb inside gdb)."""

    def __init__(self, recorded, prog):
        from tests.unit.test_model_state import DrgnTypes
        self.recorded, self.drgn = recorded, DrgnTypes(prog)

    def member(self, typename, path):
        m = self.recorded.member(typename, path)
        if m is not None or self.recorded.covers(typename, path):
            return m
        return self.drgn.member(typename, path)

    def sizeof(self, name):
        v = self.recorded.sizeof(name)
        return v if v is not None else self.drgn.sizeof(name)

    def enum(self, name):
        return self.recorded.enum(name)


def model_kernels(dump, dump_path, vmlinux):
    """A function giving a fresh model Kernel over the opened DUMP, with every symbol and
    type (drgn reads DUMP_PATH and VMLINUX for those the offsets cache lacks); given
    patches, it reads through a :class:`PatchedReader`."""
    import drgn
    prog = drgn.Program()
    prog.set_core_dump(str(dump_path))
    prog.load_debug_info([str(vmlinux)])
    types = RecordedThenDrgn(dump.kernel.types, prog)

    def sym(name):
        try:
            return prog.symbol(name).address
        except LookupError:
            return None

    def kernel(patches=None):
        r = DumpReader(dump) if patches is None else PatchedReader(dump, patches)
        return Kernel(r, types, sym)
    return kernel


def list_heads(k) -> dict:
    """{list: (head address, offset of the link in an entry)} of the kernel's main lists
    in the model Kernel K (the names the tests use). The mounts are a list up to 6.7
    only (6.8 made them an rbtree, commit 2eea9ce4310d): left out where absent."""
    from gdbkd.model import fs, net
    out = {
        "tasks": (k.sym("init_task") + k.offset("struct task_struct", "tasks"),
                  k.offset("struct task_struct", "tasks")),
        "modules": (k.sym("modules"), k.offset("struct module", "list")),
        "slab caches": (k.sym("slab_caches"), k.offset("struct kmem_cache", "list")),
        "mounts": (fs.init_mnt_ns(k) + (k.offset("struct mnt_namespace", "list") or 0),
                   k.offset("struct mount", "mnt_list")),
        "net devices": (net.net_namespaces(k)[0][0] + k.offset("struct net", "dev_base_head"),
                        k.offset("struct net_device", "dev_list")),
    }
    wq = k.sym("oom_reaper_wait")      # mm/oom_kill.c (4.6+): the oom_reaper kthread waits there
    if wq is not None:
        out["wait queue"] = (wq + k.offset("struct wait_queue_head", "head"),
                             k.offset("struct wait_queue_entry", "entry"))
    if out["mounts"][1] is None or k.offset("struct mnt_namespace", "list") is None:
        del out["mounts"]
    return out
