"""The kd command set inside real gdb-multiarch against a real Debian 6.1 arm64 guest.

One guest (KASLR on) per module. The fixture loads a small test module
(tests/e2e/kdtest_mod: a 3-entry list, a debugfs file that blocks its writer
in D state, one that WARNs) and starts tasks whose pids it records. Every test
checks facts the test or fixture established in the guest (pids, comm,
states, a /dev/kmsg line, module addresses from /proc/modules, list
corruption it wrote itself), and `kd ps` / `kd bt` are compared with drgn run
on a QEMU dump of the same stopped guest.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdlive import Guest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
LIST_POISON1 = 0xdead000000000100


@pytest.fixture(scope="module")
def guest(kernel61, tmp_path_factory):
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.artifacts.modules import build_module_dir
    from gdbkd.qemu.profiles import load_profile
    d = tmp_path_factory.mktemp("kdguest")
    ko = build_module_dir(HERE / "kdtest_mod", kernel61)[0]
    base = ensure_base_initramfs(kernel61, load_profile("debian-6.1").guest["boot_modules"])
    initrd = write_overlay(base, {"lib/modules/gdbkd/kdtest.ko": ko}, d / "initrd.img",
                           rc="insmod /lib/modules/gdbkd/kdtest.ko\n")
    g = Guest(kernel61, initrd, d, kaslr=True)
    g.ko = ko
    try:
        g.start()
        out = g.sh("sh -c 'printf \"\\033[31mevil\" > /proc/self/comm; sleep 999; true' & "
                   "echo EVIL=$!")
        g.evil_pid = int(re.search(r"EVIL=(\d+)", out).group(1))
        out = g.sh("sh -c 'echo 1 > /sys/kernel/debug/kdtest/dsleep' & echo DSLEEP=$!")
        g.dsleep_pid = int(re.search(r"DSLEEP=(\d+)", out).group(1))
        out = g.sh("dmesg | grep 'kdtest: list head'")
        m = re.search(r"list head ([0-9a-f]+) entry-offset (\d+) items ([0-9a-f]+)", out)
        g.list_head, g.list_off, g.items = int(m.group(1), 16), int(m.group(2)), int(m.group(3), 16)
        g.uname = g.sh("uname -r").strip()
        time.sleep(0.5)          # let the writer reach its uninterruptible sleep
        yield g
    finally:
        g.stop()


def _by_pid(ps):
    out = {}
    for r in ps["tasks"]:
        out.setdefault(r["pid"], r)
    return out


def _kd_results(guest, commands, **kw):
    """gdb results of the commands themselves (without the harness's own steps)."""
    return [r for r in guest.gdb(commands, **kw) if not r["cmd"].startswith("<")]


def _norm(name):
    return name.split(".")[0] if name else name


def test_ps_shows_tasks_the_test_started(guest):
    ps, summary, un = guest.kd_json("kd ps", "kd ps -S", "kd ps UN")
    text, = guest.kd("kd ps")
    tasks = _by_pid(ps)
    evil = tasks[guest.evil_pid]
    assert evil["comm"] == "\\e[31mevil"          # escaped, not raw ESC
    assert evil["state"] == "IN" and not evil["kthread"]
    assert "\x1b" not in text and "\\e[31mevil" in text
    ds = tasks[guest.dsleep_pid]
    assert ds["state"] == "UN" and ds["comm"] == "sh"
    assert [r["pid"] for r in un["tasks"]] == [guest.dsleep_pid]
    assert summary["summary"]["UN"] == 1
    assert summary["total"] == len(ps["tasks"])
    # one active task per CPU, marked '>' in the text
    active = [r for r in ps["tasks"] if r["active"]]
    assert sorted(r["cpu"] for r in active) == [0, 1]
    assert sum(1 for l in text.splitlines() if l.startswith(">")) == 2
    # user tasks have memory numbers, kernel threads none
    assert evil["vsz_kib"] > 0 and evil["rss_kib"] > 0
    assert all(r["vsz_kib"] == 0 for r in ps["tasks"] if r["kthread"])


def test_bt_of_sleeping_task(guest):
    bt, = guest.kd_json(f"kd bt -l {guest.dsleep_pid}")
    d = bt[0]
    names = [f["function"] for f in d["frames"]]
    assert d["source"] == "thread.cpu_context"
    assert names[0] == "__switch_to"
    for want in ("__schedule", "schedule", "kdtest_block", "dsleep_write", "vfs_write",
                 "el0t_64_sync"):
        assert want in names, names
    assert names.index("kdtest_block") < names.index("dsleep_write") < names.index("vfs_write")
    mod_frames = [f for f in d["frames"] if f["function"] == "dsleep_write"]
    assert mod_frames[0]["module"] == "kdtest"
    last = d["frames"][-1]
    assert last["function"] == "el0t_64_sync"
    assert int(last["exception"]["pstate"], 16) & 0xF == 0          # user-mode registers
    assert int(last["exception"]["syscallno"]) == 64                 # write(2) on arm64
    assert any(f["file"] and f["file"].endswith("fs/read_write.c") for f in d["frames"])


def test_ps_and_bt_match_drgn_on_a_dump(guest, tmp_path):
    dump = tmp_path / "dump.elf"
    guest.qmp("stop")
    try:
        guest.qmp("dump-guest-memory", paging=False, protocol=f"file:{dump}", format="elf")
        ps, bt = guest.kd_json("kd ps", f"kd bt {guest.dsleep_pid}")
    finally:
        guest.qmp("cont")
    ref = subprocess.run([sys.executable, "-c", DRGN_REF, str(dump), str(guest.kernel.vmlinux),
                          str(guest.dsleep_pid)], capture_output=True, text=True, timeout=300,
                         cwd=HERE.parents[1])
    dump.unlink()
    assert ref.returncode == 0, ref.stderr[-2000:]
    drgn = json.loads(ref.stdout)
    ours = {(r["pid"], r["comm"], int(r["task"], 16)) for r in ps["tasks"] if r["pid"] != 0}
    theirs = {(t["pid"], t["comm"], t["task"]) for t in drgn["tasks"]}
    assert ours == theirs
    # same call chain: drgn names inline frames too; module frames are unnamed there
    kd_names = [_norm(f["function"]) for f in bt[0]["frames"]]
    drgn_names = [_norm(n) for n in drgn["frames"]]
    assert len(kd_names) == len(drgn_names), (kd_names, drgn_names)
    for a, b in zip(kd_names, drgn_names):
        assert a == b or b.startswith("0x"), (kd_names, drgn_names)


DRGN_REF = r"""
import json, sys, drgn
from drgn.helpers.linux.pid import for_each_task
from gdbkd.textutil import escape
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
tasks = [{"pid": t.pid.value_(), "comm": escape(t.comm.string_()), "task": t.value_()}
         for t in for_each_task(prog)]
want = int(sys.argv[3])
frames = []
for t in for_each_task(prog):
    if t.pid.value_() == want:
        frames = [f.name or hex(f.pc) for f in prog.stack_trace(t)]
print(json.dumps({"tasks": tasks, "frames": frames}))
"""



def _break_then_trigger(guest, tmp_path, location, commands, trigger: bytes):
    """Arm a breakpoint at ``location`` in a background gdb, type ``trigger`` into the
    guest shell, and return the results of ``commands`` run at the stop (all must succeed)."""
    flag = tmp_path / "armed"
    proc, collect = guest.gdb([f"break {location}", f"!touch {flag}", "continue", *commands],
                              background=True)
    deadline = time.time() + 60
    while not flag.exists():
        assert time.time() < deadline and proc.poll() is None, "gdb never armed the breakpoint"
        time.sleep(0.1)
    time.sleep(0.5)
    guest.sock.sendall(trigger)
    res = {r["cmd"]: r for r in collect()}
    for r in res.values():
        assert r["err"] is None, r
    return res

def test_bt_through_el1_exception_frame(guest, tmp_path):
    """Stop in __warn (a WARN_ON's brk exception) and unwind back into the module."""
    res = _break_then_trigger(guest, tmp_path, "__warn", ["kd bt --json", "kd bt -e --json", "delete"],
                              b"echo 1 > /sys/kernel/debug/kdtest/warn\n")
    d = json.loads(res["kd bt --json"]["out"])[0]
    names = [f["function"] for f in d["frames"]]
    assert names[0] == "__warn"
    exc = [f for f in d["frames"] if "exception" in f]
    el1 = [f for f in exc if int(f["exception"]["pstate"], 16) & 0xF == 5]
    assert el1 and el1[0]["function"] == "el1h_64_sync", names
    i = names.index("el1h_64_sync")
    # the interrupted function (a leaf: its caller is found through lr) and its caller
    assert names[i + 1].startswith("kdtest_warn_here"), names
    assert names[i + 2] == "warn_write", names
    assert "vfs_write" in names[i + 2:] and names[-1] == "el0t_64_sync"
    e = json.loads(res["kd bt -e --json"]["out"])[0]["exception_frames"]
    assert {r["addr"] for r in e} >= {f["exception"]["addr"] for f in exc}
    guest.sh("true")             # the shell came back: the guest runs again


def test_log_has_line_written_to_kmsg(guest):
    marker = f"kd-log-test-{time.time_ns()}"
    guest.sh(f"echo '{marker}' > /dev/kmsg")
    log, = guest.kd_json("kd log -T")
    text, = guest.kd("kd log")
    recs = [r for r in log["records"] if marker in r["lines"][0]]
    assert len(recs) == 1
    assert abs(recs[0]["wall"] - time.time()) < 600      # guest RTC follows the host clock
    seqs = [r["seq"] for r in log["records"]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    line = [l for l in text.splitlines() if marker in l][0]
    assert re.match(r"\[\s*\d+\.\d{6}\] " + marker + "$", line)
    assert "Linux version " + guest.uname in text


def test_list_walk_and_corruption(guest):
    h, off, items = guest.list_head, guest.list_off, guest.items
    clean, = guest.kd_json(f"kd list -o {off} -H {h:#x}")
    assert clean["stop"] is None and clean["count"] == 3
    entries = [int(e, 16) for e in clean["entries"]]
    assert entries[0] == items
    stride = entries[1] - entries[0]
    assert entries[2] - entries[1] == stride > 0
    second_next = items + stride + off       # &items[1].node.next
    orig = items + 2 * stride + off          # its correct value: &items[2].node
    res = _kd_results(guest, [
        f"set {{unsigned long}}{second_next:#x} = {LIST_POISON1:#x}",
        f"kd list --json -o {off} -H {h:#x}",
        f"kd list -o {off} -H {h:#x}",
        f"set {{unsigned long}}{second_next:#x} = {items + off:#x}",
        f"kd list --json -o {off} -H {h:#x}",
        f"set {{unsigned long}}{second_next:#x} = 0",
        f"kd list --json -o {off} -H {h:#x}",
        f"set {{unsigned long}}{second_next:#x} = {orig:#x}",
        f"kd list --json -o {off} -H {h:#x}",
    ])
    outs = [r for r in res if r["cmd"].startswith("kd list")]
    assert all(r["err"] is None for r in outs), outs
    poisoned = json.loads(outs[0]["out"])
    assert poisoned["count"] == 2 and "LIST_POISON1" in poisoned["stop"]
    assert f"{LIST_POISON1:#x}" in poisoned["stop"]
    assert "LIST_POISON1" in outs[1]["out"].splitlines()[-1]
    cycle = json.loads(outs[2]["out"])
    assert cycle["count"] == 2 and cycle["stop"].startswith("cycle")
    null = json.loads(outs[3]["out"])
    assert null["count"] == 2 and "NULL" in null["stop"]
    restored = json.loads(outs[4]["out"])
    assert restored["stop"] is None and restored["entries"] == clean["entries"]


def test_mod_matches_proc_modules(guest):
    line = [l for l in guest.sh("cat /proc/modules").splitlines() if l.startswith("kdtest ")][0]
    size, base = int(line.split()[1]), int(re.search(r"0x([0-9a-f]+)", line).group(1), 16)
    mods, = guest.kd_json("kd mod")
    m = [x for x in mods["modules"] if x["name"] == "kdtest"][0]
    assert int(m["base"], 16) == base
    assert m["size"] <= size
    assert "O" in m["taints"] and m["state"] == "live"
    # load its symbols from the .ko: the module's source lines then appear in bt -l
    res = _kd_results(guest, [f"kd mod -s kdtest {guest.ko}", "kd mod --json",
                              f"kd bt -l --json {guest.dsleep_pid}"])
    assert all(r["err"] is None for r in res), res
    assert "symbols loaded" in res[0]["out"]
    assert [x for x in json.loads(res[1]["out"])["modules"] if x["name"] == "kdtest"][0]["symbols"]
    frames = json.loads(res[2]["out"])[0]["frames"]
    f = [x for x in frames if x["function"] == "dsleep_write"][0]
    assert f["file"].endswith("kdtest.c") and f["line"] > 0


def test_sys_sym_dis_rd_task(guest):
    sysd, sym, dis, rd, task, ps = guest.kd_json(
        "kd sys", "kd sym schedule", "kd dis schedule", "kd rd -a init_uts_ns.name.release",
        f"kd task {guest.dsleep_pid}", "kd ps")
    assert sysd["release"] == guest.uname and sysd["cpus"] == 2
    assert sysd["tasks"] == len(ps["tasks"]) and sysd["memory_bytes"] == 1 << 30
    assert "O" in sysd["tainted"]["flags"] and sysd["panic"] is None
    s = sym[0]
    assert s["name"] == "schedule" and s["offset"] == 0 and s["type"] == "T"
    assert s["file"].endswith("kernel/sched/core.c")
    assert dis[0]["addr"] == s["addr"]
    assert any(i["mnemonic"] == "bl" and i.get("target") == "__schedule" for i in dis)
    assert any(i["mnemonic"] == "ret" for i in dis)
    assert rd["string"] == guest.uname
    t = task[0]
    assert t["pid"] == guest.dsleep_pid and t["state"] == "UN"
    assert t["real_parent"]["pid"] == 1
    # sym of an address back to the same name, with offset
    back, = guest.kd_json(f"kd sym {int(s['addr'], 16) + 8:#x}")
    assert back[0]["name"] == "schedule" and back[0]["offset"] == 8


def test_runq_shows_busy_tasks(guest):
    pids = []
    try:
        # three CPU hogs pinned to CPU 1: two of them wait in its CFS tree. CPU 0 stays
        # idle in the kernel: under KPTI (KASLR on) a CPU in user mode maps no kernel memory
        for _ in range(3):
            out = guest.sh("taskset 2 sh -c 'while :; do :; done' & echo BUSY=$!")
            pids.append(int(re.search(r"BUSY=(\d+)", out).group(1)))
        time.sleep(1)
        rq, ps = guest.kd_json("kd runq", "kd ps")
    finally:
        if pids:
            guest.sh("kill " + " ".join(map(str, pids)) + " 2>/dev/null; true")
    states = _by_pid(ps)
    assert all(states[p]["state"] == "RU" for p in pids)
    current, queued = set(), set()

    def walk(items):
        for it in items:
            if "tasks" in it:
                walk(it["tasks"])
            else:
                queued.add(it["pid"])
    for cpu in rq:
        current.add(cpu["current"]["pid"])
        walk(cpu["cfs"])
        queued.update(t["pid"] for t in cpu["rt"])
    assert set(pids) <= current | queued, (pids, current, queued)
    cpu1 = [c for c in rq if c["cpu"] == 1][0]
    assert cpu1["current"]["pid"] in pids
    assert len(set(pids) & queued) == 2                # the other two wait on CPU 1
    assert cpu1["nr_running"] >= 3


def test_foreach_un_bt_and_errors(guest):
    res = _kd_results(guest, ["kd foreach UN bt --json", "kd foreach -u IN ps --json",
                     "kd bt 999999", "kd rd nosuchsymbol", "kd ps --bogus", "kd foreach UN",
                     "kd list 0", "kd dis schedule 0", "kd mod -s nosuchmod",
                     "kd task 999999", "help kd", "help kd bt"])
    r = {x["cmd"]: x for x in res}
    fe = json.loads(r["kd foreach UN bt --json"]["out"])
    assert [x["pid"] for x in fe["results"]] == [guest.dsleep_pid]
    assert "kdtest_block" in [f["function"] for f in fe["results"][0]["frames"]]
    fe2 = json.loads(r["kd foreach -u IN ps --json"]["out"])
    assert guest.evil_pid in [x["pid"] for x in fe2["results"]]
    for cmd in ("kd bt 999999", "kd rd nosuchsymbol", "kd ps --bogus", "kd foreach UN",
                "kd dis schedule 0", "kd mod -s nosuchmod", "kd task 999999"):
        err = r[cmd]["err"]
        assert err and err.startswith("kd ") and "\n" not in err.strip(), (cmd, err)
        assert "Traceback" not in err and "PYTHON" not in err
    assert "cannot read" in (r["kd list 0"]["out"] + (r["kd list 0"]["err"] or ""))
    helptext = r["help kd"]["out"]
    for c in ("bt", "ps", "log", "mod", "sym", "dis", "rd", "task", "list", "runq", "sys",
              "foreach"):
        assert f"kd {c} -- " in helptext, c
    assert "usage: kd bt" in r["help kd bt"]["out"]


def test_zz_panic_caught_at_breakpoint(guest, tmp_path):
    """Last: crash the guest with sysrq-c while stopped on panic(); the fixture's guest dies."""
    res = _break_then_trigger(guest, tmp_path, "panic", ["kd sys --json", "kd bt --json", "kd ps -A --json"],
                              b"echo c > /proc/sysrq-trigger\n")
    sysd = json.loads(res["kd sys --json"]["out"])
    assert sysd["panic"]["message"] == "Kernel panic - not syncing: sysrq triggered crash"
    bt = json.loads(res["kd bt --json"]["out"])[0]
    names = [f["function"] for f in bt["frames"]]
    assert names[0] == "panic" and names[1] == "sysrq_handle_crash", names
    assert "write_sysrq_trigger" in names and names[-1] == "el0t_64_sync"
    active = json.loads(res["kd ps -A --json"]["out"])["tasks"]
    assert bt["pid"] in [t["pid"] for t in active]
