"""Damaged kernel lists on a live guest (issue 26): real gdb-multiarch attached to the real
6.1 guest's gdbstub, the damage written with gdb's Python (`Inferior.write_memory`) into
the task, module, slab-cache, mount and net-device lists and a wait queue while the
guest is stopped, one kind at a time.

The same on 5.10 and 6.12 through `gdbkd run` in the slow tier. This is also the live
cache's test: every kd command before a write has filled kd's
per-stop caches (the task list, the module list, the caches); gdb's `memory_changed`
event must drop them, so the command right after the write shows the damage, and the
one after the intact words are written back shows a whole list again.

Everything runs in one gdb stop (tests/listdamage.py planted from kd's own walk of the
lists as they are then); what is expected is derived from that walk."""

import json

import pytest

from kdlive import ROOT
from listdamage import KINDS
from test_kd_list_damage import assert_said
from test_reader_live import guest    # noqa: F401  (a plain 6.1 guest, one per module)

pytestmark = pytest.mark.e2e

_SCRIPT = r"""
import gdb, json, sys
sys.path.insert(0, TESTS)
from listdamage import KINDS, plant
from gdbkd.kernel.memory import kernel
from gdbkd.model.lists import walk_list

M64 = (1 << 64) - 1
def addr(expr):
    return int(gdb.parse_and_eval(expr)) & M64
LISTS = {"tasks": (addr("&init_task.tasks"), addr("&((struct task_struct *)0)->tasks")),
         "modules": (addr("&modules"), addr("&((struct module *)0)->list")),
         "slab caches": (addr("&slab_caches"), addr("&((struct kmem_cache *)0)->list")),
         "net devices": (addr("&init_net.dev_base_head"),
                         addr("&((struct net_device *)0)->dev_list")),
         "wait queue": (addr("&oom_reaper_wait.head"),
                        addr("&((struct wait_queue_entry *)0)->entry"))}
try:                     # a list up to 6.7; 6.8 made the mounts an rbtree
    LISTS["mounts"] = (addr("&init_task.nsproxy->mnt_ns->list"),
                       addr("&((struct mount *)0)->mnt_list"))
except gdb.error:
    pass
CMDS = {"ps": "kd ps", "mod": "kd mod", "kmem": "kd kmem -s", "mount": "kd mount",
        "net": "kd net", "waitq": "kd waitq oom_reaper_wait"}
inf = gdb.selected_inferior()

def kd(c):
    return gdb.execute(c, to_string=True)

def all_json():
    return {n: json.loads(kd(c + " --json")) for n, c in CMDS.items()}

out = {"clean": all_json(), "clean_check": json.loads(kd("kd check --json")), "runs": {}}
walks = {n: walk_list(kernel().reader, h, entry_offset=o) for n, (h, o) in LISTS.items()}
out["walks"] = {n: [w.stop, len(w.nodes)] for n, w in walks.items()}
for kind in KINDS:
    patches, restore, expected = {}, {}, {}
    for n, (head, off) in LISTS.items():
        nodes = walks[n].nodes
        if kind == "loop-back" and len(nodes) < 2:
            continue
        p, exp = plant(kind, head, nodes)
        for a, b in p.items():
            assert bytes(inf.read_memory(a, len(b))) == exp["restore"][a], (n, kind)
        patches.update(p)
        restore.update(exp.pop("restore"))
        exp["entry"] = None if exp["node"] == head else exp["node"] - off
        expected[n] = exp
    for a, b in patches.items():
        inf.write_memory(a, b)
    got = all_json()
    check = json.loads(kd("kd check --json"))
    text = kd("kd check") + "".join(kd(c) for c in CMDS.values())
    for a, b in restore.items():
        inf.write_memory(a, b)
    out["runs"][kind] = {"expected": expected, "got": got, "check": check, "text": text,
                         "after": all_json(), "after_check": json.loads(kd("kd check --json"))}
json.dump(out, open(OUT, "w"))
"""


def _script(tmp_path):
    """(the planting script to `source` in gdb, where it writes its results)."""
    out = tmp_path / "out.json"
    script = tmp_path / "plant.py"
    script.write_text(f"TESTS = {str(ROOT / 'tests')!r}\nOUT = {str(out)!r}\n" + _SCRIPT)
    return script, out


def _check(r, mount_list=True):
    """R is the planting script's results; MOUNT_LIST: the kernel keeps its mounts in a
    list (up to 6.7)."""
    assert all(stop is None and n for stop, n in r["walks"].values()), r["walks"]
    assert r["clean_check"]["ok"], r["clean_check"]["problems"]
    assert ("mounts" in r["walks"]) == mount_list, r["walks"]
    assert set(r["runs"]) == set(KINDS)
    for kind, run in r["runs"].items():
        expected = {n: dict(e) for n, e in run["expected"].items()}
        assert {"tasks", "slab caches"} <= set(expected)
        if kind != "loop-back":          # (a list of one entry has no earlier one)
            assert {"modules", "net devices", "wait queue"} <= set(expected)
        # the cache was full before the write: what kd says is the memory after it
        assert_said(expected, run["got"], r["clean"], run["check"], run["text"].splitlines())
        # and after the intact words are back, the lists are whole again
        assert run["after_check"]["ok"], (kind, run["after_check"]["problems"])
        assert run["after"] == r["clean"], kind


def test_damage_written_by_gdb_is_said_at_once(guest, tmp_path):  # noqa: F811
    script, out = _script(tmp_path)
    res = guest.gdb([f"source {script}"])
    errs = [r for r in res if r["err"]]
    assert not errs, errs
    _check(json.loads(out.read_text()))


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["debian-5.10", "debian-6.12"])
def test_damage_written_by_gdb_on_other_kernels(profile, tmp_path, no_leftover_qemu):
    """The same through `gdbkd run PROFILE --batch` at the stop of a sysrq crash: gdbkd's
    proxy between gdb and QEMU, kd reading the guest's RAM shared with QEMU."""
    from conftest import gdbkd
    script, out = _script(tmp_path)
    r = gdbkd("run", profile, "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
              "-ex", f"source {script}", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert out.exists(), (r.stdout[-3000:], r.stderr[-2000:])
    _check(json.loads(out.read_text()), mount_list=profile != "debian-6.12")
