"""kd deadlock on real hangs: labs 5 and 7 (live and on a dump), and a sleeping owner."""

import json
import random

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e


def _lab(n):
    from gdbkd.labs import get_lab
    return get_lab(n)


def _json_after(text, marker='"cycles"'):
    return next(json.loads(l) for l in text.splitlines() if l.startswith("{") and marker in l)


def _comms(r, addrs):
    return {r["tasks"][a]["comm"] for a in addrs}


def _check_lab(r, lab):
    assert len(r["cycles"]) == 1, r["cycles"]
    assert _comms(r, r["cycles"][0]["tasks"]) == set(lab.hang_comms)
    assert _comms(r, [v["task"] for v in r["victims"]]) == set(lab.victim_comms)
    # every lock in the cycle has a definite (not probable) owner
    assert not r["cycles"][0]["probable"]


@pytest.mark.parametrize("n", [5, 7])
def test_lab_deadlock_live_and_on_its_dump(n, tmp_path, kernel61, no_leftover_qemu):
    lab = _lab(n)
    dump = tmp_path / "vmcore.elf"
    svg = tmp_path / "graph.svg"
    r = gdbkd("lab", "run", str(n), "--batch", "--json", "--dump", str(dump), "--timeout", "150",
              "-ex", "kd deadlock --json", "-ex", f"kd deadlock --render {svg}", timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    live = json.loads(rep["ex"][0]["output"])
    _check_lab(live, lab)
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    # the same analysis on the dump of the same guest
    from gdbkd.labs import build_lab
    kodir = str(next(p for p in build_lab(lab, kernel61).values() if str(p).endswith(".ko")).parent)
    r = gdbkd("core", str(dump), kernel61.vmlinux, "--batch", "--modules-dir", kodir,
              "-ex", "kd deadlock --json")
    assert r.returncode == 0, r.stderr[-2000:]
    post = _json_after(r.stdout)
    _check_lab(post, lab)
    assert post["cycles"] == live["cycles"] and post["victims"] == live["victims"]


def test_sleeping_owner_is_no_deadlock(tmp_path, kernel61, no_leftover_qemu):
    tag = f"{random.randrange(1 << 24):06x}"
    (tmp_path / f"so{tag}.c").write_text(f"""#include <linux/module.h>
#include <linux/kthread.h>
#include <linux/delay.h>
#include <linux/mutex.h>
static DEFINE_MUTEX(so_{tag}_lock);
static int so_owner(void *p) {{ mutex_lock(&so_{tag}_lock); msleep_interruptible(600000); mutex_unlock(&so_{tag}_lock); return 0; }}
static int so_waiter(void *p) {{ msleep(200); mutex_lock(&so_{tag}_lock); mutex_unlock(&so_{tag}_lock); return 0; }}
static int __init so_init(void) {{
\tkthread_run(so_owner, NULL, "so{tag}_owner");
\tkthread_run(so_waiter, NULL, "so{tag}_wait");
\treturn 0;
}}
module_init(so_init);
MODULE_LICENSE("GPL");
""")
    (tmp_path / "Kbuild").write_text(f"obj-m := so{tag}.o\n")
    r = gdbkd("run", "--batch", "--json", "--module", str(tmp_path),
              "--boot-exec", "echo 3 > /proc/sys/kernel/hung_task_timeout_secs",
              "--exec", f"insmod /lib/modules/gdbkd/so{tag}.ko",
              "--stop-on", rf"task so{tag}_wait:\d+ blocked for more than", "--timeout", "90",
              "-ex", "kd deadlock --json", "-ex", "kd deadlock")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    d = json.loads(rep["ex"][0]["output"])
    assert d["cycles"] == []
    waiter = [a for a, t in d["tasks"].items() if t["comm"] == f"so{tag}_wait"]
    assert [b["task"] for b in d["blocked_behind"]] == waiter
    end = d["blocked_behind"][0]["end"]
    assert d["tasks"][end]["comm"] == f"so{tag}_owner" and d["tasks"][end]["state"] == "IN"
    assert "no deadlock cycle" in rep["ex"][1]["output"]
