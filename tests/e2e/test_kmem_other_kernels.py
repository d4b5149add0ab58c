"""kd kmem ADDR / -S / -s and kd vtop on Debian 5.10 and 6.12 dumps against drgn 0.3.0
(slow tier: the other kernels' shared test dumps, tests/testdumps.py).

Four dumps of crashed guests (sysrq-c, 1 GiB, KASLR): 5.10 (struct page carries the
slab, ``kmem_cache_cpu.page``, ``vmap_area_list``), 6.12 with 48-bit VA on
cortex-a57, and 6.12 really running 52-bit VA with LPA2 on ``-cpu max`` with 4K pages
(5 levels) and 16K pages (4 levels); 6.12 has no ``vmap_area_list`` (v6.9: per-node
busy trees). For two busy caches, every object of every slab drgn finds is asked of
drgn's ``slab_object_info`` and of ``kd kmem -S``; a sample is asked of ``kd kmem
ADDR`` (at the object and inside it); ``kd kmem -s`` is compared with
``slab_cache_usage``; a sleeping task's stack address must be named as that task's
stack in the vmalloc area starting at ``task->stack``; ``kd vtop`` must equal
``follow_phys`` for a slab object, a stack (vmalloc) address and ``init_task``;
``kd search -u`` must find what drgn's ``access_remote_vm`` reads.

One known difference, asserted as such: the dumps are taken after panic(), so the
other CPU is offline. drgn asks only online CPUs for their per-CPU freelists; kd
asks every possible CPU (their per-CPU slabs still hold free objects), so an object
on an offline CPU's freelist is free to kd and allocated to drgn — exactly those.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_kd_state import _run_core
from test_search_user import check_user_search

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
CACHES = ["task_struct", "filp"]

GUESTS = {"5.0": ("rlk-5.0", None), "5.0-kdump": ("rlk-5.0-kdump", None),
          "5.10": ("debian-5.10", None), "6.12": ("debian-6.12", None),
          "6.12-4k-lpa2": ("debian-6.12", "max"), "6.12-16k-lpa2": ("debian-6.12-16k", None)}

DRGN_REF = r"""
import json, sys, drgn
from drgn import cast
from drgn.helpers.linux.slab import find_slab_cache, slab_object_info, slab_cache_usage, \
    for_each_slab_cache
from drgn.helpers.linux.mm import for_each_page, page_to_virt, follow_phys, PageSlab
from drgn.helpers.linux.pid import find_task
from drgn.helpers.linux.cpumask import for_each_online_cpu
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
pid, names = int(sys.argv[3]), sys.argv[4].split(",")
caches = {find_slab_cache(prog, n).value_(): n for n in names}
# the slab's members: struct slab since v5.17, struct page before
slab_type = prog.type("struct page *" if prog.type("struct page").has_member("slab_cache")
                      else "struct slab *")
objects = {n: {} for n in names}
for page in for_each_page(prog):
    try:
        if not PageSlab(page):
            continue
        slab = cast(slab_type, page)
        c = slab.slab_cache.value_()
        if c not in caches:
            continue
    except drgn.FaultError:
        continue
    cache = slab.slab_cache
    first = page_to_virt(page).value_() + cache.red_left_pad.value_()
    for i in range(slab.objects.value_()):
        a = first + i * cache.size.value_()
        info = slab_object_info(prog, a)
        objects[caches[c]][str(a)] = info.allocated
usage = {}
for s in for_each_slab_cache(prog):
    u = slab_cache_usage(s)
    usage[str(s.value_())] = [u.num_slabs, u.num_objs, u.num_objs - u.free_objs]
t = find_task(prog, pid)
stack = t.stack.value_()
init_mm = prog["init_mm"].address_of_()
some = min(int(a) for a in objects[names[0]])
vtop = [stack + 0x100, some, prog["init_task"].address_]
print(json.dumps({"objects": objects, "usage": usage, "online": list(for_each_online_cpu(prog)),
                  "task": t.value_(), "stack": stack,
                  "phys": {str(a): follow_phys(init_mm, a).value_() for a in vtop}}))
"""


@pytest.fixture(scope="module", params=sorted(GUESTS))
def kernel_dump(request):
    from testdumps import dumps_by_name
    profile, cpu = GUESTS[request.param]
    td = dumps_by_name(profile, "1G", cpu=cpu)
    td.guest = request.param
    return td


def _offline_cpu_free(o, online):
    """kd puts the object on the per-CPU freelist of a CPU drgn does not ask."""
    w = o.get("free_list") or ""
    return w.startswith("cpu ") and int(w.split()[1]) not in online


def test_kmem_and_vtop_agree_with_drgn(kernel_dump):
    td = kernel_dump
    pid = td.meta["sleepers"]["busybox-sleeper"]
    r = subprocess.run([sys.executable, "-c", DRGN_REF, str(td.drgn_core()), str(td.vmlinux), str(pid),
                        ",".join(CACHES)], capture_output=True, text=True, timeout=1800,
                       cwd=HERE.parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    online = set(ref["online"])
    sample = []
    for name in CACHES:
        objs = sorted(ref["objects"][name].items(), key=lambda kv: int(kv[0]))
        assert objs, name
        free = [int(a) for a, al in objs if not al][:5]
        alloc = [int(a) for a, al in objs if al][:5]
        sample += [(name, a, 0) for a in free + alloc] + [(name, a + 0x10, 0x10) for a in free[:2] + alloc[:2]]
    stack_probe = ref["stack"] + 0x100
    cmds = [f"kd kmem -S {n}" for n in CACHES] + ["kd kmem -s"]
    cmds += [f"kd kmem {a:#x}" for _, a, _ in sample] + [f"kd kmem {stack_probe:#x}"]
    cmds += [f"kd vtop {int(a):#x}" for a in ref["phys"]]
    out = dict(zip(cmds, (json.loads(x) for x in _run_core(td.elf, td.vmlinux, [c + " --json" for c in cmds]))))

    # -S: the same objects, allocated/free as drgn says (but the offline CPUs' freelists)
    for name in CACHES:
        s = out[f"kd kmem -S {name}"]
        assert all(sl["error"] is None for sl in s["slabs"]), name
        ours = {int(o["object"], 16): o for sl in s["slabs"] for o in sl["objects"]}
        theirs = {int(a): al for a, al in ref["objects"][name].items()}
        assert set(ours) == set(theirs), name
        differ = [a for a in ours if ours[a]["allocated"] is not theirs[a]]
        assert all(_offline_cpu_free(ours[a], online) and theirs[a] for a in differ), \
            [(hex(a), ours[a], theirs[a]) for a in differ][:5]
    # -s: SLUB's counters: slabs and objects equal for every cache, in use as above
    rows = {int(c["cache_addr"], 16): c for c in out["kd kmem -s"]["caches"]}
    assert set(rows) == {int(a) for a in ref["usage"]}
    for a, (slabs, total, inuse) in ref["usage"].items():
        row = rows[int(a)]
        assert (row["slabs"], row["total"]) == (slabs, total), row
        assert row["allocated"] <= inuse, row
    # kmem ADDR: cache, object, offset, allocated
    for name, a, off in sample:
        d = out[f"kd kmem {a:#x}"]
        obj = a - off
        assert d["cache"] == name and int(d["object"], 16) == obj and d["offset"] == off, d
        drgn_alloc = ref["objects"][name][str(obj)]
        assert d["allocated"] is drgn_alloc or (_offline_cpu_free(d, online) and drgn_alloc), d
    # a sleeping task's stack: the task, in the vmalloc area starting at task->stack
    # (the course's 5.0 is built without CONFIG_VMAP_STACK: its stacks are pages of the linear map)
    st = out[f"kd kmem {stack_probe:#x}"]
    vmap_stack = not td.guest.startswith("5.0")
    assert st["region"] == ("vmalloc" if vmap_stack else "linear map"), st
    assert int(st["stack"]["task"], 16) == ref["task"] and st["stack"]["pid"] == pid, st
    assert int(st["stack"]["base"], 16) == ref["stack"] and st["stack"]["offset"] == 0x100
    if vmap_stack:
        assert int(st["vmalloc"]["start"], 16) == ref["stack"], st
        assert st["vmalloc"]["caller_name"], st
    else:
        assert "vmalloc" not in st and st["page"]["slab"] is False, st
    # vtop: drgn's follow_phys through init_mm (swapper_pg_dir)
    for a, pa in ref["phys"].items():
        v = out[f"kd vtop {int(a):#x}"]
        assert int(v["pa"], 16) == pa, (hex(int(a)), v)
        assert v["levels"][-1]["type"] in ("page", "block"), v


def test_user_search_equals_drgn(kernel_dump):
    """kd search -u through the task's own page tables (5.0/5.10: the mmap list; 6.12: the
    maple tree; 52-bit VA with 5 levels and 16K pages) against drgn's access_remote_vm."""
    if kernel_dump.guest.endswith("-kdump"):
        pytest.skip("makedumpfile -d 31 leaves user pages out of the dump: nothing to search")
    check_user_search(kernel_dump)
