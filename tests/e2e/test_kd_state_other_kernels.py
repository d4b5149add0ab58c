"""kd files/vm/mount/net/irq/timer/dev on Debian 5.10 and 6.12 dumps and on the course's 5.0
(its QEMU dump and its in-guest kdump) against drgn 0.3.0 (slow tier: another kernel
download and a crashed guest's dump per kernel). drgn opens the dump itself, or for the
5.0 dumps (no VMCOREINFO note; a flattened kdump) ``gdbkd convert``'s core of it.

5.0 and 5.10 keep VMAs on the mm->mmap/vm_next list (no maple tree), irq descriptors in
the irq_desc_tree radix tree; 6.12 has the maple tree for both, three timer
bases (6.9+) and struct tk_data. The dumps are the
shared test dumps (tests/testdumps.py: busybox sleepers, a reader blocked
opening a FIFO, crashed with sysrq-c).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import json_ints
from test_kd_state import _run_core

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent


def _run_core_json(dump, vmlinux, cmds):
    return [json_ints(json.loads(x)) for x in _run_core(dump, vmlinux, cmds)]


#: the dumps (tests/testdumps.dumps_by_name) and whether their kernel predates the maple tree
#: (6.1: mm_mt and sparse_irqs) and 6.8's mounts rbtree
DUMPS = {"debian-5.10": True, "debian-6.12": False, "rlk-5.0": True, "rlk-5.0-kdump": True}


@pytest.mark.parametrize("profile", sorted(DUMPS))
def test_state_commands_match_drgn(profile):
    from testdumps import dumps_by_name
    td = dumps_by_name(profile)
    legacy = DUMPS[profile]
    sleeper = td.meta["sleepers"]["busybox-sleeper"]
    reader = td.meta["sleepers"]["busybox-reader"]
    cmds = [f"kd files {reader}", "kd files 1", f"kd vm {sleeper}", "kd vm -p 1", "kd mount",
            "kd net", "kd irq", "kd timer", "kd timer -r", "kd dev"]
    out = dict(zip(cmds, _run_core_json(td.elf, td.vmlinux, [c + " --json" for c in cmds])))
    ref = subprocess.run([sys.executable, str(HERE / "drgn_state_ref.py"), str(td.drgn_core()),
                          str(td.vmlinux), str(reader), "1", str(sleeper)], capture_output=True, text=True,
                         timeout=900, cwd=HERE.parents[1])
    assert ref.returncode == 0, ref.stderr[-3000:]
    drgn = json.loads(ref.stdout)
    for pid in (reader, 1):
        got = {f["fd"]: f["d_path"] for f in out[f"kd files {pid}"]["files"]}
        assert got == {int(fd): p for fd, p in drgn["files"][str(pid)].items()} and got
    vm = out[f"kd vm {sleeper}"]
    assert [v["start"] for v in vm["vmas"]] == drgn["vmas"][str(sleeper)] and vm["stop"] is None
    assert vm["source"] == ("mm->mmap (vm_next list)" if legacy else "mm->mm_mt (maple tree)")
    assert {"/bin/busybox-sleeper", "[heap]", "[stack]", "[vdso]"} <= {v["name"] for v in vm["vmas"]}
    pages = {p["va"]: p["pa"] for v in out["kd vm -p 1"]["vmas"] for p in v["pages"]
             if p["pa"] is not None}
    assert pages == {int(va): pa for va, pa in drgn["phys"]["1"].items()} and pages
    got = [[r["mount"], r["dirname"], r["type"], r["devname"]] for r in out["kd mount"]["mounts"]]
    assert got == drgn["mounts"]
    init = [n for n in out["kd net"]["namespaces"] if n["init"]][0]
    assert [[d["name"], [a.split("/")[0] for a in d["ipv4"]]] for d in init["devices"]] == drgn["netdevs"]
    irq = out["kd irq"]
    got = [[r["irq"], r["desc"], [a["name"] for a in r["actions"] if a["name"]],
            [r["counts"][str(c)] for c in irq["cpus"]]] for r in irq["irqs"]]
    assert got == drgn["irqs"] and got
    assert irq["source"].startswith("irq_desc_tree" if legacy else "sparse_irqs")
    got = sorted([b["cpu"], t["timer"], t["expires"], t["function"]] for b in out["kd timer"]["bases"]
                 for t in b["timers"])
    assert got == drgn["timers"] and got
    hr = out["kd timer -r"]
    got = sorted([b["cpu"], t["hrtimer"], t["expires"], t["function"]] for b in hr["clock_bases"]
                 for t in b["timers"])
    assert got == drgn["hrtimers"] and hr["now_ns"] == drgn["now_ns"]
    assert any(d["name"] == "mem" and d["major"] == 1 for d in out["kd dev"]["char"])


@pytest.mark.parametrize("profile", sorted(DUMPS))
def test_waitq_and_tree_match_drgn(profile):
    """kd waitq and kd tree on the kernel's own wait queues and trees (the test
    module of test_kd_state is built for 6.1 only): kthreads asleep on their wait
    queues; irq descriptors in a radix tree (5.10) or the sparse_irqs maple tree
    (6.12); vmap_area_root (5.10) or the 6.8+ mounts rbtree (6.12) as rbtrees."""
    from testdumps import dumps_by_name
    td = dumps_by_name(profile)
    legacy = DUMPS[profile]
    # kauditd_wait: CONFIG_AUDIT, which the course's debian_defconfig leaves off
    wqs = ["khugepaged_wait", "oom_reaper_wait"] + ([] if profile.startswith("rlk") else ["kauditd_wait"])
    cmds = [f"kd waitq {w}" for w in wqs]
    if legacy:
        cmds += ["kd tree -t radix irq_desc_tree", "kd tree -t xarray irq_desc_tree",
                 "kd tree -t rbtree vmap_area_root"]
    else:
        cmds += ["kd tree -t maple sparse_irqs",
                 "kd tree -t rbtree -o mount.mnt_node &init_task.nsproxy->mnt_ns->mounts"]
    out = dict(zip(cmds, _run_core_json(td.elf, td.vmlinux, [c + " --json" for c in cmds])))
    ref = subprocess.run([sys.executable, str(HERE / "drgn_state_ref.py"), str(td.drgn_core()),
                          str(td.vmlinux), "kernel-trees"], capture_output=True, text=True, timeout=900, cwd=HERE.parents[1])
    assert ref.returncode == 0, ref.stderr[-3000:]
    drgn = json.loads(ref.stdout)["kernel_trees"]
    assert sorted(drgn["waitq"]) == sorted(wqs)
    for w in wqs:
        got = out[f"kd waitq {w}"]
        assert [[e["entry"], e["private"]] for e in got["waiters"]] == drgn["waitq"][w] and got["stop"] is None
    assert [e["comm"] for e in out["kd waitq khugepaged_wait"]["waiters"]] == ["khugepaged"]
    if legacy:
        for kind in ("radix", "xarray"):
            got = out[f"kd tree -t {kind} irq_desc_tree"]
            assert [[e["index"], e["entry"]] for e in got["entries"]] == drgn["xarray"] and drgn["xarray"]
        got = out["kd tree -t rbtree vmap_area_root"]
        assert [e["node"] for e in got["entries"]] == drgn["rbtree"] and len(drgn["rbtree"]) > 10
    else:
        got = out["kd tree -t maple sparse_irqs"]
        assert [[e["first"], e["last"], e["entry"]] for e in got["entries"]] == drgn["maple"] and drgn["maple"]
        got = out["kd tree -t rbtree -o mount.mnt_node &init_task.nsproxy->mnt_ns->mounts"]
        assert [e["entry"] for e in got["entries"]] == drgn["mounts_rbtree"] and drgn["mounts_rbtree"]
