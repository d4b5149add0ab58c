"""Memory forensics on a real use-after-free: kd kmem / search / vtop against drgn 0.3.0.

One 6.1 guest (KASLR on) loads tests/e2e/kdslab_mod: a private slab cache with a
constructor (so SLUB keeps it apart), 60 objects over several slabs, every third
one freed, and three globals still pointing at freed objects; the module logs
every address. The guest is stopped and dumped (QEMU ELF, both CPUs online, so
drgn's per-CPU freelist view is complete); the same commands then run on the
dump under `gdbkd core` and live against the guest. The references are the
module's own log (which objects it freed, where its globals are) and drgn run on
the same dump: ``slab_object_info``, ``slab_cache_for_each_allocated_object``,
``slab_cache_usage`` and ``follow_phys``.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import gdbkd
from kdlive import Guest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
CACHE = "kdslab_obj"


@pytest.fixture(scope="module")
def slab_guest(kernel61, tmp_path_factory):
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.artifacts.modules import build_module_dir
    from gdbkd.qemu.profiles import load_profile
    d = tmp_path_factory.mktemp("kdslab")
    ko = build_module_dir(HERE / "kdslab_mod", kernel61)[0]
    base = ensure_base_initramfs(kernel61, load_profile("debian-6.1").guest["boot_modules"])
    initrd = write_overlay(base, {"lib/modules/gdbkd/kdslab.ko": ko}, d / "initrd.img",
                           rc="insmod /lib/modules/gdbkd/kdslab.ko\n")
    g = Guest(kernel61, initrd, d, kaslr=True, memory="512M")
    try:
        g.start()
        log = g.sh("dmesg | grep 'kdslab:'")
        g.objects = {int(m.group(2), 16): m.group(3) == "allocated"
                     for m in re.finditer(r"kdslab: obj (\d+) ([0-9a-f]+) (allocated|freed)", log)}
        g.dangling = [(int(m.group(2), 16), int(m.group(3), 16)) for m in
                      re.finditer(r"kdslab: dangling (\d) global ([0-9a-f]+) value ([0-9a-f]+)", log)]
        m = re.search(r"kdslab: vmalloc ([0-9a-f]+) kmalloc ([0-9a-f]+)", log)
        g.vbuf, g.kbuf = int(m.group(1), 16), int(m.group(2), 16)
        assert len(g.objects) == 60 and len(g.dangling) == 3, log
        g.qmp("stop")
        g.dump = d / "vmcore.elf"
        g.qmp("dump-guest-memory", paging=False, protocol=f"file:{g.dump}", format="elf")
        yield g
    finally:
        g.stop()


def _probe_addresses(g):
    """Every object, an address inside each dangling object, the two buffers."""
    return sorted(g.objects) + [v + 0x10 for _, v in g.dangling] + [g.kbuf]


def _vtop_addresses(g):
    """A slab object (linear map), a module global (module area), a vmalloc buffer."""
    return [sorted(g.objects)[0], g.dangling[0][0], g.vbuf]


def _commands(g):
    cmds = [f"kd kmem --json {a:#x}" for a in _probe_addresses(g)]
    cmds += [f"kd kmem --json -S {CACHE}", f"kd kmem --json -s {CACHE}"]
    cmds += [f"kd vtop --json {a:#x}" for a in _vtop_addresses(g)]
    cmds += [f"kd kmem --json {g.vbuf:#x}"]
    return cmds


def _search_commands(g):
    return [f"kd search --json {v:#x}" for _, v in g.dangling]


ERROR_COMMANDS = ["kd kmem -S no_such_cache", "kd kmem -s no_such_cache", "kd kmem 0x10",
                  "kd kmem nosuchsymbol_xyz", "kd search", "kd search -m zz 1",
                  "kd vtop 0x10", "kd ptov 0x10", "kd ptov zz", "kd kmem -p 0x10"]


def _core(dump, vmlinux, commands):
    """{command: (stdout text of that command, error line or None)} from one gdbkd core run."""
    args = ["core", str(dump), str(vmlinux), "--batch", "-s"]
    for c in commands:
        args += ["-ex", "echo @@" + c.replace("\\", "\\\\") + "\\n", "-ex", c]
    args += ["-ex", "echo @@end\\n"]            # batch gdb's status is its last command's
    r = gdbkd(*args, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out, cur = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("@@"):
            cur = line[2:]
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    errs = [l for l in r.stderr.splitlines() if l.startswith("kd ")]
    return {c: "\n".join(v) for c, v in out.items()}, errs, r.stderr


def _json_of(text):
    return json.loads([l for l in text.splitlines() if l.startswith("{")][-1])


DRGN_REF = r"""
import json, sys, drgn
from drgn.helpers.linux.slab import (find_slab_cache, slab_object_info,
    slab_cache_for_each_allocated_object, slab_cache_usage)
from drgn.helpers.linux.mm import follow_phys
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
spec = json.loads(sys.argv[3])
info = {}
for a in spec["probe"]:
    i = slab_object_info(prog, a)
    info[str(a)] = None if i is None else {
        "cache": i.slab_cache.name.string_().decode(), "object": i.address,
        "allocated": i.allocated}
cache = find_slab_cache(prog, spec["cache"])
allocated = sorted(o.value_() for o in slab_cache_for_each_allocated_object(cache, "void"))
u = slab_cache_usage(cache)
init_mm = prog["init_mm"].address_of_()          # its pgd is swapper_pg_dir
phys = {str(a): follow_phys(init_mm, a).value_() for a in spec["vtop"]}
print(json.dumps({"info": info, "allocated": allocated, "phys": phys,
                  "usage": [u.num_slabs, u.num_objs, u.free_objs]}))
"""


@pytest.fixture(scope="module")
def drgn_ref(slab_guest):
    g = slab_guest
    spec = {"probe": _probe_addresses(g), "cache": CACHE, "vtop": _vtop_addresses(g)}
    r = subprocess.run([sys.executable, "-c", DRGN_REF, str(g.dump), str(g.kernel.vmlinux),
                        json.dumps(spec)], capture_output=True, text=True, timeout=600,
                       cwd=HERE.parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def on_dump(slab_guest):
    g = slab_guest
    res, errs, stderr = _core(g.dump, g.kernel.vmlinux,
                              _commands(g) + _search_commands(g) + ERROR_COMMANDS)
    return res, errs, stderr


@pytest.fixture(scope="module")
def live(slab_guest, on_dump):
    """The same commands against the running guest, through QEMU's gdbstub (after the
    dump: the module's cache is private and nothing touches it afterwards)."""
    g = slab_guest
    res = g.gdb(_commands(g), timeout=900)
    out = {}
    for r in res:
        if r["cmd"].startswith("<"):
            continue
        assert r["err"] is None, r
        out[r["cmd"]] = r["out"]
    return out


def _check_kmem_against_drgn(g, ref, get):
    for a in _probe_addresses(g):
        ours = get(f"kd kmem --json {a:#x}")
        theirs = ref["info"][str(a)]
        assert theirs is not None, a
        assert ours["cache"] == theirs["cache"], (hex(a), ours, theirs)
        assert int(ours["object"], 16) == theirs["object"], (hex(a), ours, theirs)
        assert ours["allocated"] is theirs["allocated"], (hex(a), ours, theirs)
        assert int(ours["object"], 16) + ours["offset"] == a
    # and against the module's own record of what it freed
    for a, alive in g.objects.items():
        ours = get(f"kd kmem --json {a:#x}")
        assert ours["cache"] == CACHE and ours["allocated"] is alive, (hex(a), ours)
        assert ours["offset"] == 0
    for _, v in g.dangling:
        ours = get(f"kd kmem --json {v + 0x10:#x}")
        assert ours["allocated"] is False and ours["offset"] == 0x10
        assert ours["free_list"] in ("slab freelist",) or ours["free_list"].startswith("cpu ")
    # -S: every object of the cache, the allocated ones exactly drgn's
    s = get(f"kd kmem --json -S {CACHE}")
    objs = [o for sl in s["slabs"] for o in sl["objects"]]
    assert sorted(int(o["object"], 16) for o in objs if o["allocated"]) == ref["allocated"]
    assert {int(o["object"], 16) for o in objs} >= set(g.objects)
    assert all(sl["error"] is None for sl in s["slabs"])
    # -s: SLUB's counters agree with drgn's usage and with the object walk
    row = get(f"kd kmem --json -s {CACHE}")["caches"][0]
    slabs, total, free = ref["usage"]
    assert (row["slabs"], row["total"], row["allocated"]) == (slabs, total, total - free)
    assert row["allocated"] == s["allocated"] and row["total"] == len(objs)
    assert row["name"] == CACHE and not row["merged"] and int(row["ctor"], 16)
    # the kmalloc'd buffer is a kmalloc-128 object (100 bytes)
    kb = get(f"kd kmem --json {g.kbuf:#x}")
    assert kb["cache"] == ref["info"][str(g.kbuf)]["cache"] and kb["allocated"] is True
    # vtop agrees with drgn's follow_phys for a linear, a module and a vmalloc address
    for a in _vtop_addresses(g):
        v = get(f"kd vtop --json {a:#x}")
        assert int(v["pa"], 16) == ref["phys"][str(a)], (hex(a), v)
        assert v["levels"][-1]["type"] in ("page", "block") and v["levels"][-1]["AF"]
        assert all(lv["type"] == "table" for lv in v["levels"][:-1])
    # the vmalloc'd buffer: its area and the module function that allocated it
    vb = get(f"kd kmem --json {g.vbuf:#x}")
    assert vb["region"] == "vmalloc" and int(vb["vmalloc"]["start"], 16) == g.vbuf, vb
    # vmalloc(3 pages) reserves 3 pages and a guard page; its caller (in the module's
    # init text, freed since) is recorded
    assert int(vb["vmalloc"]["end"], 16) - g.vbuf == 4 * 4096, vb
    assert int(vb["vmalloc"]["caller"], 16) >> 63, vb


def test_kmem_and_vtop_on_dump_agree_with_drgn(slab_guest, drgn_ref, on_dump):
    res, errs, stderr = on_dump
    _check_kmem_against_drgn(slab_guest, drgn_ref, lambda c: _json_of(res[c]))


def test_kmem_and_vtop_live_agree_with_drgn(slab_guest, drgn_ref, live):
    _check_kmem_against_drgn(slab_guest, drgn_ref, lambda c: _json_of(live[c]))


def test_search_finds_dangling_pointers(slab_guest, on_dump):
    res, errs, stderr = on_dump
    for glob, value in slab_guest.dangling:
        d = _json_of(res[f"kd search --json {value:#x}"])
        hits = {int(h["addr"], 16): h for h in d["hits"]}
        assert glob in hits, (hex(glob), list(map(hex, hits)))
        assert hits[glob]["region"] == "modules"
        assert hits[glob]["module"]["name"] == "kdslab", hits[glob]
        if "symbol" in hits[glob]:        # named when gdb has the module's symbols
            assert hits[glob]["symbol"].startswith("kdslab_dangling"), hits[glob]
        assert not d["truncated"]
        # every hit really holds the value (read back through kd rd on the same dump)
    some = slab_guest.dangling[0]
    r, _, _ = _core(slab_guest.dump, slab_guest.kernel.vmlinux,
                    [f"kd rd --json {some[0]:#x}", "kd search --json -c kdslab-vmalloc-marker",
                     f"kd search --json -p {some[1]:#x}"])
    assert _json_of(r[f"kd rd --json {some[0]:#x}"])["values"] == [f"{some[1]:#x}"]
    s = _json_of(r["kd search --json -c kdslab-vmalloc-marker"])
    assert slab_guest.vbuf in [int(h["addr"], 16) for h in s["hits"]]
    p = _json_of(r[f"kd search --json -p {some[1]:#x}"])
    assert p["physical"] and p["hits"]
    assert all(int(h["addr"], 16) < 1 << 48 for h in p["hits"])


def test_bad_input_is_one_line(on_dump):
    res, errs, stderr = on_dump
    assert "Traceback" not in stderr
    for c in ERROR_COMMANDS:
        mine = [e for e in errs if e.startswith(f"kd {c.split()[1]}:")]
        assert mine, (c, stderr[-2000:])
    assert len(errs) == len(ERROR_COMMANDS), errs
    assert any("no slab cache named no_such_cache" in e for e in errs)
    assert any("user address" in e for e in errs)


def test_struct_reads_the_module_cache(slab_guest, on_dump):
    """kd struct over the cache kd kmem -s found: its sizes are the module's struct size
    (200 bytes, logged by the module) and its name is the cache's."""
    res, _, _ = on_dump
    row = _json_of(res[f"kd kmem --json -s {CACHE}"])["caches"][0]
    addr = row["cache_addr"]
    cmds = [f"kd struct --json kmem_cache.object_size,name,cpu_slab {addr}",
            f"kd struct -o kmem_cache.object_size {addr}", "kd whatis --json jiffies",
            "kd struct --json -o list_head"]
    r, errs, stderr = _core(slab_guest.dump, slab_guest.kernel.vmlinux, cmds)
    assert not errs, errs
    s = _json_of(r[cmds[0]])
    vals = {m["name"]: m["value"] for m in s["objects"][0]["members"]}
    assert int(vals["object_size"]) == 200 == row["objsize"]
    assert f'"{CACHE}"' in vals["name"]
    assert s["objects"][0]["members"][0]["addr"] == hex(int(addr, 16) + s["members"][0]["offset"])
    assert re.search(r"\[[0-9a-f]{16}\] \[0x[0-9a-f]+\] object_size = 200", r[cmds[1]])
    w = _json_of(r[cmds[2]])
    assert w["kind"] == "symbol" and "unsigned long" in w["type"]
    lh = _json_of(r[cmds[3]])
    assert [(m["name"], m["offset"]) for m in lh["members"]] == [("next", 0), ("prev", 8)]
