"""kd kmem -s and a kernel-wide kd search on the 1 GiB test dump: gdbkd vs drgn 0.3.0.

The dump is the shared 6.1 test dump (tests/testdumps.py ``ensure_test_dumps``,
cached in ~/.cache/gdbkd/dumps: 1 GiB guest, KASLR, crashed with sysrq-c, QEMU ELF).

Each measurement is one fresh process timed from outside, cold, as a user meets it:

- kmem -s: ``gdbkd core D V -s --batch -ex 'kd kmem -s'`` vs a drgn script printing
  every cache of ``for_each_slab_cache`` with ``slab_cache_usage`` (objects in use,
  total, slabs);
- search:  ``gdbkd core D V -s --batch -ex 'kd search VALUE'`` vs a drgn script
  scanning the same ranges (the image ``_text``.._end, the linear map of
  ``memblock.memory`` minus the image, every ``vmap_area_list`` area but the image's
  and ioremap areas) with ``prog.read`` in 1 MiB blocks, page by page where a block
  faults, ``bytes.find`` for the 8-byte little-endian value at 8-byte aligned
  addresses. drgn has no search command: that is what a drgn user writes. VALUE is
  ``&init_task`` (the parent of pids 1 and 2, its own group_leader, ...).
- open:   ``gdbkd core D V -s --batch -ex 'kd reader'`` (gdb, the kd extension, the
  dump opened in gdb's process, nothing walked; gdb's symbols of the vmlinux put off, as
  for the two commands above): the floor under every kd command.

gdbkd and drgn alternate within each round; medians over ``--repeat`` rounds. Peak
RSS is the largest process of each run (gdb for gdbkd). Cache counts and hit sets of
both are printed so the work is seen to be the same. Asserts nothing.

    .venv/bin/python bench/bench_kmem.py [--repeat 5] [--only kmem,search,open]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_kd import timed, gdbkd_argv, drgn_argv  # noqa: E402  (same timing, same argv)

DRGN_KMEM_S = r"""
import sys, drgn
from drgn.helpers.linux.slab import for_each_slab_cache, slab_cache_usage
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
n = 0
for s in for_each_slab_cache(prog):
    u = slab_cache_usage(s)
    print(f"{s.value_():016x} {s.object_size.value_():8} {u.active_objs:10} {u.num_objs:8} "
          f"{u.num_slabs:6} {s.name.string_().decode()}")
    n += 1
print(f"CACHES {n}")
"""

DRGN_SEARCH = r"""
import sys, drgn
from drgn import FaultError
from drgn.helpers.linux.list import list_for_each_entry
from drgn.helpers.linux.mm import phys_to_virt
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
needle = int(sys.argv[3], 16).to_bytes(8, "little")
CHUNK, PS = 1 << 20, 4096
text, end = prog.symbol("_text").address, prog.symbol("_end").address
if end < text:            # drgn 0.3.0 leaves the absolute symbol _end unrelocated under KASLR
    from drgn.helpers.linux.boot import kaslr_offset
    end += kaslr_offset(prog)
img_pa = (text - prog["kimage_voffset"].value_()) & (2**64 - 1)
regions = [(text, end)]
mb = prog["memblock"].memory
for i in range(mb.cnt.value_()):
    r = mb.regions[i]
    s, e = r.base.value_(), r.base.value_() + r.size.value_()
    for a, b in ((s, min(e, img_pa)), (max(s, img_pa + (end - text)), e)):
        if a < b:
            v = phys_to_virt(prog, a).value_()
            regions.append((v, v + (b - a)))
for va in list_for_each_entry("struct vmap_area", prog["vmap_area_list"].address_of_(), "list"):
    s, e = va.va_start.value_(), va.va_end.value_()
    if e <= s or (s < end and e > text):
        continue
    if va.vm and va.vm.flags.value_() & 1:          # VM_IOREMAP: device memory
        continue
    regions.append((s, e))
hits, scanned = [], 0
for s, e in regions:
    a = s
    while a < e:
        n = min(CHUNK - a % CHUNK, e - a)
        try:
            blocks = [(a, prog.read(a, n))]
        except FaultError:
            blocks = []
            for p in range(a, a + n, PS):
                try:
                    blocks.append((p, prog.read(p, PS)))
                except FaultError:
                    pass
        for base, buf in blocks:
            scanned += len(buf)
            i = buf.find(needle)
            while i >= 0:
                if (base + i) % 8 == 0:
                    hits.append(base + i)
                i = buf.find(needle, i + 1)
        a += n
print("\n".join(f"{h:016x}" for h in hits))
print(f"HITS {len(hits)} SCANNED {scanned}")
"""

DRGN_ADDR = r"""
import sys, drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
print(hex(prog["init_task"].address_))
"""


def test_dump():
    from testdumps import ensure_test_dumps
    td = ensure_test_dumps("debian-6.1", "1G")
    return td.elf, td.vmlinux


def kmem_rows_gdbkd(out):
    return {int(m.group(1), 16): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^([0-9a-f]{16})\s+\d+\s+(\d+)\s+(\d+)\s+\d+\s+\S+\s+\S+", out, re.M)}


def kmem_rows_drgn(out):
    return {int(m.group(1), 16): (int(m.group(2)), int(m.group(3)))
            for m in re.finditer(r"^([0-9a-f]{16})\s+\d+\s+(\d+)\s+(\d+)\s+\d+\s+\S+$", out, re.M)}


def hits_gdbkd(out):
    return {int(m.group(1), 16) for m in re.finditer(r"^([0-9a-f]{16})(?::|$)", out, re.M)}


def hits_drgn(out):
    return {int(l, 16) for l in out.splitlines() if re.fullmatch(r"[0-9a-f]{16}", l)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="open,kmem,search")
    ap.add_argument("--dump", help="use this dump (with --vmlinux) instead of the test dump")
    ap.add_argument("--vmlinux")
    ap.add_argument("--value", help="hex value to search for (default: &init_task)")
    a = ap.parse_args()
    dump, vmlinux = (a.dump, a.vmlinux) if a.dump else test_dump()
    only = a.only.split(",")
    value = a.value or subprocess.run(drgn_argv(DRGN_ADDR, dump, vmlinux), capture_output=True,
                                      text=True, check=True).stdout.strip()
    print(f"dump: {dump}")
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d')}; medians of {a.repeat}, whole processes, cold, "
          f"alternating; search value {value}")
    rows = {}
    for _ in range(a.repeat):
        if "open" in only:
            rows.setdefault("open", []).append((timed(gdbkd_argv(dump, vmlinux, "kd reader")), None))
        if "kmem" in only:
            g = timed(gdbkd_argv(dump, vmlinux, "kd kmem -s"))
            d = timed(drgn_argv(DRGN_KMEM_S, dump, vmlinux))
            rows.setdefault("kmem", []).append((g, d))
        if "search" in only:
            g = timed(gdbkd_argv(dump, vmlinux, f"kd search {value}"))
            d = timed(drgn_argv(DRGN_SEARCH, dump, vmlinux) + [value])
            rows.setdefault("search", []).append((g, d))
    for k, runs in rows.items():
        gt = statistics.median(r[0][0] for r in runs)
        grss = max(r[0][1] for r in runs)
        if k == "open":
            print(f"{'open (gdbkd core … -ex kd reader)':34} gdbkd {gt:6.2f} s  {grss:5.0f} MiB")
            continue
        dt = statistics.median(r[1][0] for r in runs)
        drss = max(r[1][1] for r in runs)
        gout, dout = runs[-1][0][2], runs[-1][1][2]
        if k == "kmem":
            gr, dr = kmem_rows_gdbkd(gout), kmem_rows_drgn(dout)
            same = sum(1 for c in dr if gr.get(c) == dr[c])
            work = f"caches gdbkd {len(gr)} drgn {len(dr)}, {same} with equal in-use/total"
            name = "kd kmem -s / drgn slab_cache_usage"
        else:
            gh, dh = hits_gdbkd(gout), hits_drgn(dout)
            work = f"hits gdbkd {len(gh)} drgn {len(dh)}, equal sets: {gh == dh}"
            name = "kd search / drgn prog.read scan"
        print(f"{name:34} gdbkd {gt:6.2f} s  drgn {dt:6.2f} s  ratio {gt / dt:5.2f}   "
              f"peak RSS gdbkd {grss:5.0f} MiB drgn {drss:5.0f} MiB   {work}")


if __name__ == "__main__":
    main()
