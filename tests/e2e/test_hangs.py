"""kd deadlock on spin-lock hangs: AA and ABBA spin locks taken by kthreads pinned to CPUs
(tests/e2e/kdspin_mod), the soft-lockup detector panicking the guest. Checked live at the
panic and on the dump taken there: the spinners with their CPUs, the lock each spins on by
its symbol, the holder proven from the holder's code, the cycle, and nothing else called
a cycle; the crash report's backtrace of the panicking CPU is the frame walk's, each
function once, and the report leads with what hung (HANG)."""

import json
import re
from pathlib import Path

import pytest

from conftest import gdbkd, ROOT

pytestmark = pytest.mark.e2e

#: the default tier runs 6.1; the slow tier the others, the course's 5.0 where its build is
PROFILES = [pytest.param("debian-6.1", id="6.1"),
            pytest.param("debian-5.10", id="5.10", marks=pytest.mark.slow),
            pytest.param("debian-6.12", id="6.12", marks=pytest.mark.slow),
            pytest.param("rlk-5.0", id="5.0", marks=[
                pytest.mark.slow,
                pytest.mark.skipif(not (ROOT.parent / "shared/kernels/rlk-5.0/SHA256SUMS").is_file(),
                                   reason="the course's 5.0 build is not beside the repo")])]


@pytest.fixture
def kern(profile):
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    return ensure_kernel(load_profile(profile))

HERE = Path(__file__).parent
MOD = HERE / "kdspin_mod"

#: (mode) -> {spinner comm: (lock it spins on, comm of its holder)}
EXPECT = {
    "aa": {"kdspin_aa": ("kdspin_aa_lock", "kdspin_aa")},
    "abba": {"kdspin_ab": ("kdspin_lock_b", "kdspin_ba"), "kdspin_ba": ("kdspin_lock_a", "kdspin_ab")},
    "rwlock": {"kdspin_wr": ("kdspin_lock_b", "kdspin_rd"), "kdspin_rd": ("kdspin_rwlock", "kdspin_wr")},
}
CPUS = {"kdspin_aa": 1, "kdspin_ab": 0, "kdspin_ba": 1, "kdspin_wr": 0, "kdspin_rd": 1}


def _kind(lock):
    return "rwlock" if "rwlock" in lock else "spinlock"


def _live(profile, mod, mode, dump, *opts, ex=("kd deadlock --json", "kd deadlock")):
    """Boot PROFILE with module MOD loaded in MODE after gdb attached, stop at the
    detector's panic, run EX there and save the dump: the run's JSON result."""
    args = ["run", profile, "--batch", "--json", "--module", str(mod), *opts,
            "--exec", f"insmod /lib/modules/gdbkd/{mod.name.split('_')[0]}.ko mode={mode}",
            "--dump-on-crash", str(dump), "--timeout", "150"]
    for e in ex:
        args += ["-ex", e]
    r = gdbkd(*args, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])

SOFTLOCKUP = ("--append", "softlockup_panic=1 watchdog_thresh=2")


def _postmortem(dump, mod, kern):
    """kd analyze --json, kd deadlock --json and its text on the dump: (deadlock, text,
    analyze)."""
    from gdbkd.artifacts.modules import build_module_dir
    kodir = str(build_module_dir(mod, kern)[0].parent)
    r = gdbkd("core", str(dump), kern.vmlinux, "--batch", "--modules-dir", kodir,
              "-ex", "kd analyze --json", "-ex", "kd deadlock --json", "-ex", "kd deadlock")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    return (next(json.loads(l) for l in lines if '"cycles"' in l), r.stdout.split(lines[-1], 1)[1],
            next(json.loads(l) for l in lines if '"backtrace"' in l))


#: kernels without VMAP_STACK: task stacks in the linear map, below the per-CPU IRQ stacks
IRQ_STACK_ABOVE_TASKS = ("rlk-5.0",)

#: kernels whose soft-lockup stamp is the watchdog's alone (v5.14+: model/lockup.py)
WATCHDOG_STAMP = ("debian-6.1", "debian-6.12")


def _check(mode, r, text, profile="debian-6.1"):
    exp = EXPECT[mode]
    comm = lambda a: r["tasks"][a]["comm"]
    assert len(r["cycles"]) == 1, text
    cyc = r["cycles"][0]
    assert {comm(t) for t in cyc["tasks"]} == set(exp), text
    assert not cyc["probable"]
    for step in cyc["steps"]:
        c = comm(step["task"])
        lock = r["locks"][step["waits_for"]]
        assert lock["kind"] == _kind(exp[c][0])
        assert lock["name"].split("+")[0].split(" ")[0] == exp[c][0], lock
        assert [comm(o) for o in step["held_by"]] == [exp[c][1]]
        assert r["tasks"][step["task"]]["cpu"] == CPUS[c]
        assert r["tasks"][step["task"]]["state"] == "RU"
        # on its CPU since before the soft-lockup detector's 2 * watchdog_thresh (4 s)
        assert r["tasks"][step["task"]]["since_last_arrival_s"] >= 3.0, r["tasks"]
        # the soft-lockup watchdog's own "stuck for Ns" (its per-CPU touch timestamp)
        assert r["tasks"][step["task"]].get("watchdog_stuck_s", 3) >= 3, r["tasks"]
        # the holder was proven from its code: where it took the lock is said
        assert step["held_by"][0] in lock["taken_at"]
        assert lock["detail"].startswith("val=" if lock["kind"] == "spinlock" else "cnts=")
        assert "locked" in lock["detail"]
    if profile in WATCHDOG_STAMP:
        assert any("watchdog_stuck_s" in r["tasks"][t] for t in cyc["tasks"]), r["tasks"]
    else:
        assert not any("watchdog_stuck_s" in r["tasks"][t] for t in cyc["tasks"]), r["tasks"]
    assert r["hard_lockup"].startswith("not read: arm64") and "HARD LOCKUPS: not read" in text
    # a lock whose word says nobody holds it has no owner (5.0: logbuf_lock, released by the
    # panicking CPU, once looked held by a CPU queued on it from a release the code analysis
    # missed); a spinner's inner slow path on such a lock (5.0: the reader's CPU, in the
    # soft-lockup interrupt taken while it spun on kdspin_rwlock, still printing its report)
    # is said, and is not its wait: that stays the outer spin, checked above
    assert not any(l.get("free") and l["owners"] for l in r["locks"].values()), text
    for t in r["tasks"].values():
        for x in t.get("inner_spins", []):
            assert "which nobody holds (val=" in x and "unlocked" in x, x
            assert f"{t['comm']} (pid {t['pid']}) on {x}" in text, text
    # nothing else is a cycle, a victim, or waits on a spin lock
    assert not r["victims"]
    spinners = {comm(t) for t, l in r["waits"].items() if r["locks"][l]["kind"] in ("spinlock", "rwlock")}
    assert spinners == set(exp), text
    for c in exp:
        assert re.search(rf"{c} \(pid \d+\) \[RU, CPU {CPUS[c]}, on it for \d+\.\ds(, watchdog stuck for \d+s)?\] waits for "
                         rf"{_kind(exp[c][0])} {exp[c][0]}", text), text
    if mode == "aa":
        assert "held by kdspin_aa" in text


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("mode", ["aa", "abba", "rwlock"])
def test_spinlock_deadlock_live_and_on_its_dump(mode, tmp_path, profile, kern, no_leftover_qemu):
    dump = tmp_path / "vmcore.elf"
    rep = _live(profile, MOD, mode, dump, *SOFTLOCKUP, ex=("kd deadlock --json", "kd deadlock", "bt"))
    # the detector's panic (6.12 flushes the console's warning only after it)
    assert "panic" in rep["stopped"] and "softlockup" in rep["report"]["trap"]["message"], rep["report"]
    live = json.loads(rep["ex"][0]["output"])
    _check(mode, live, rep["ex"][1]["output"], profile)

    post, text, an = _postmortem(dump, MOD, kern)
    _check(mode, post, text, profile)
    assert post["cycles"] == live["cycles"]
    # the panicking CPU's backtrace: the frame walk through the interrupt, each frame once
    fns = [f["function"] for f in an["backtrace"]]
    assert {"queued_spin_lock_slowpath", "queued_read_lock_slowpath"} & set(fns), fns
    outer = [(f["pc"], f["function"]) for f in an["backtrace"]]
    assert len(outer) == len(set(outer)), fns
    assert fns[-1] == "ret_from_fork", fns
    # gdb's own bt, with no kd command before it: through the IRQ stack and the exception
    # into the module's frame once (its inlined spin_lock chain once), to ret_from_fork
    from gdbkd.artifacts.modules import build_module_dir
    r = gdbkd("core", str(dump), kern.vmlinux, "--batch", "-s", "--modules-dir",
              str(build_module_dir(MOD, kern)[0].parent), "-ex", "bt", "-ex", "kd bt --json")
    assert r.returncode == 0, r.stderr[-2000:]
    gfns = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", r.stdout, re.M)
    # one frame walk: gdb's own bt (from the first command), kd bt of the selected
    # task (no argument: the crashed one) and kd analyze's backtrace name the same frames
    kbt = next(json.loads(l) for l in r.stdout.splitlines() if l.startswith("[{"))
    kfns = [f["function"] for f in kbt[0]["frames"]]
    assert kbt[0]["pid"] == an["pid"]
    assert _names(kfns) == _names(fns), (kfns, fns)
    if profile in IRQ_STACK_ABOVE_TASKS and gfns[-1] != "ret_from_fork":
        # gdb 13 ends a backtrace where a frame's stack lies below its callee's ("previous
        # frame inner to this frame") unless an inlined frame sits between: on 5.0, whose
        # per-CPU IRQ stacks lie above the task stacks, it stops at the interrupted frame
        assert _names(gfns) == _names(kfns)[:len(gfns)], (gfns, kfns)
        assert gfns[-1] in ("queued_spin_lock_slowpath", "queued_read_lock_slowpath",
                            "queued_write_lock_slowpath"), gfns
    else:
        # 6.x's call_on_irq_stack and 5.10's el1_irq (its irq_stack_entry keeps the task's
        # sp, the pt_regs, in x19) are both walked through
        assert gfns[-1] == "ret_from_fork", r.stdout[-3000:]
        assert sum(1 for f in gfns if f.startswith("kdspin_")) == 1, r.stdout[-3000:]
        assert _names(gfns) == _names(kfns), (gfns, kfns)
    # and live, at the panic, gdb's own bt named the same frames
    lfns = re.findall(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(", rep["ex"][2]["output"], re.M)
    assert _names(lfns) == _names(gfns), (lfns, gfns)
    # the report leads with what hung, not the detector's "softlockup: hung tasks"
    hang = an["hang"][0]
    # besides the cycle, only a stalled RCU grace period (a spinning CPU reports no
    # quiescent state: on a slow boot the dump comes after the RCU stall timeout)
    assert all(h.startswith("RCU stall: ") for h in an["hang"][1:]), an["hang"]
    if mode == "aa":
        assert re.fullmatch(r"spinlock AA: CPU 1 kdspin_aa \(pid \d+\) spins on kdspin_aa_lock \[kdspin\], "
                            r"which it holds itself", hang), hang
    elif mode == "rwlock":
        assert hang.startswith("rwlock/spinlock ABBA: CPU "), hang
        assert "holds kdspin_rwlock [kdspin], spins on kdspin_lock_b" in hang
        assert "holds kdspin_lock_b [kdspin], spins on kdspin_rwlock" in hang
    else:
        assert re.fullmatch(r"spinlock ABBA: CPU (\d) kdspin_(ab|ba) \(pid \d+\) holds kdspin_lock_[ab] \[kdspin\], "
                            r"spins on kdspin_lock_[ab] \[kdspin\]; CPU (?!\1)\d kdspin_(?!\2)(ab|ba) .*", hang), hang
        for c, (lock, holder) in EXPECT[mode].items():
            assert f"{c} (pid" in hang and f"spins on {lock} [kdspin]" in hang


def _names(fns):
    """Function names as the three walks spell them: kd marks an inlined frame
    "NAME (inlined)", gdb names it; GCC's clones (.isra, .constprop) as the source."""
    return [f.split(" ")[0].split(".")[0] for f in fns]


#: kdhang's modes: what kdhang_holder sleeps on, as kd deadlock names it
WAITS = {"completion": ("completion", "kdhang_done [kdhang]"), "wq": ("wait queue", "kdhang_wq [kdhang]")}


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("wait", ["completion", "wq"])
def test_completion_never_completed_behind_a_mutex(tmp_path, wait, profile, kern, no_leftover_qemu):
    """kdhang_holder holds kdhang_mutex and waits for kdhang_done, which nothing completes
    (or, mode=wq, sleeps in wait_event on kdhang_wq, which nothing wakes); kdhang_waiter
    blocks on the mutex; the hung-task detector panics. The completion or wait queue is
    named by its symbol (not the waiter's stack entry), the mutex's owner is the same in
    the chain as in LOCKS, no cycle is claimed, and the report says what hung."""
    kind, name = WAITS[wait]
    mod = HERE / "kdhang_mod"
    dump = tmp_path / "vmcore.elf"
    rep = _live(profile, mod, wait, dump, "--append", "hung_task_panic=1",
                "--boot-exec", "echo 3 > /proc/sys/kernel/hung_task_timeout_secs")
    assert "panic" in rep["stopped"]

    def check(d, text):
        comm = {a: t["comm"] for a, t in d["tasks"].items()}
        by = {comm[t]: d["locks"][l] for t, l in d["waits"].items()}
        assert not d["cycles"] and not d["victims"], text
        assert by["kdhang_holder"]["kind"] == kind
        assert by["kdhang_holder"]["name"] == name
        assert by["kdhang_waiter"]["kind"] == "mutex" and by["kdhang_waiter"]["name"] == "kdhang_mutex [kdhang]"
        assert [comm[o] for o in by["kdhang_waiter"]["owners"]] == ["kdhang_holder"]
        assert re.search(r"kdhang_waiter \(pid \d+\) waits for mutex kdhang_mutex \[kdhang\] held by "
                         r"kdhang_holder \(pid \d+\) \[UN, last ran \d+\.\ds ago\], which waits for "
                         + re.escape(f"{kind} {name}"), text), text
        # both blocked for longer than hung_task_timeout_secs (3 s) when the detector fired
        assert all(t["since_last_arrival_s"] >= 2.0 for t in d["tasks"].values()), d["tasks"]
        assert "unknown owner" not in text
    check(json.loads(rep["ex"][0]["output"]), rep["ex"][1]["output"])

    post, text, an = _postmortem(dump, mod, kern)
    check(post, text)
    hang = an["hang"][0]
    assert all(h.startswith("RCU stall: ") for h in an["hang"][1:]), an["hang"]
    assert hang.startswith("kdhang_waiter (pid") and f"which waits for {kind} {name}" in hang, hang


@pytest.mark.parametrize("profile", PROFILES)
def test_spinlock_behind_a_mutex(tmp_path, profile, kern, no_leftover_qemu):
    """kdspin_hold (CPU 0) holds kdspin_lock_a and loops; kdspin_mx (CPU 1) holds
    kdspin_mutex and spins on kdspin_lock_a; kdspin_mw blocks on the mutex. No cycle: one
    chain from the mutex's waiter through the spinner to the running holder, the holder
    proven from its code, and the report's HANG line says so."""
    dump = tmp_path / "vmcore.elf"
    rep = _live(profile, MOD, "mutex", dump, *SOFTLOCKUP,
                ex=("kd deadlock --json", "kd deadlock", "kd analyze --json"))
    d, text = json.loads(rep["ex"][0]["output"]), rep["ex"][1]["output"]
    comm = {a: t["comm"] for a, t in d["tasks"].items()}
    assert not d["cycles"] and not d["victims"], text
    by = {comm[t]: d["locks"][l] for t, l in d["waits"].items()}
    assert by["kdspin_mw"]["name"] == "kdspin_mutex [kdspin]"
    assert [comm[o] for o in by["kdspin_mw"]["owners"]] == ["kdspin_mx"]
    assert by["kdspin_mx"]["kind"] == "spinlock" and by["kdspin_mx"]["name"] == "kdspin_lock_a [kdspin]"
    assert [comm[o] for o in by["kdspin_mx"]["owners"]] == ["kdspin_hold"]
    assert "kdspin_hold" not in by            # it spins on nothing: it loops holding the lock
    chain = (r"kdspin_mw \(pid \d+\) waits for mutex kdspin_mutex \[kdspin\] held by kdspin_mx \(pid \d+\) "
             r"\[RU, CPU 1, on it for \d+\.\ds(, watchdog stuck for \d+s)?\], which spins on spinlock kdspin_lock_a \[kdspin\] held by "
             r"kdspin_hold \(pid \d+\) \[RU, CPU 0, on it for \d+\.\ds(, watchdog stuck for \d+s)?\]")
    assert re.search(chain, text), text
    hang = json.loads(rep["ex"][2]["output"])["hang"]
    assert re.fullmatch(chain, hang[0]), hang           # the longest chain leads


@pytest.mark.parametrize("profile", PROFILES)
def test_rcu_reader_that_never_leaves(tmp_path, profile, kern, no_leftover_qemu):
    """kdspin_rcu (CPU 1) enters rcu_read_lock() and loops: the grace period cannot end, the
    stall detector panics (panic_on_rcu_stall, a 3 s timeout). The stall is shown with the
    grace period's number as the kernel printed it (g=), its age, and the CPU and task
    holding it up; no lock cycle is claimed."""
    dump = tmp_path / "vmcore.elf"
    rep = _live(profile, MOD, "rcu", dump, "--append", "rcupdate.rcu_cpu_stall_timeout=3",
                "--boot-exec", "echo 1 > /proc/sys/kernel/panic_on_rcu_stall")
    g = re.findall(r"rcu: INFO: .*detected stalls?[\s\S]*?\(t=(\d+) jiffies g=(-?\d+)", rep["console"])
    assert g, rep["console"][-3000:]

    def check(d, text):
        gp = d["rcu"]
        assert gp and gp["stalled"], d
        assert gp["gp_seq"] == int(g[-1][1])          # the kernel's own g=
        assert gp["age_jiffies"] >= int(g[-1][0])     # at least its t= when it reported
        assert gp["age_s"] >= 3.0 and gp["stall_timeout_s"] == 3
        (cpu, task), = gp["cpus"]
        assert cpu == 1 and d["tasks"][task]["comm"] == "kdspin_rcu"
        assert not d["cycles"] and task not in d["waits"]     # a reader holds no lock
        assert re.search(r"RCU STALL: grace period -?\d+ running for \d+\.\ds, held up by CPU 1 "
                         r"\(kdspin_rcu \(pid \d+\) \[RU, CPU 1, on it for \d+\.\ds(, watchdog stuck for \d+s)?\]\)", text), text
    check(json.loads(rep["ex"][0]["output"]), rep["ex"][1]["output"])

    post, text, an = _postmortem(dump, MOD, kern)
    check(post, text)
    hang, = [h for h in an["hang"] if h.startswith("RCU stall: ")]
    assert hang.startswith("RCU stall: grace period") and "held up by CPU 1 (kdspin_rcu" in hang, hang


@pytest.mark.parametrize("profile", PROFILES)
def test_spinlock_queue(tmp_path, profile, kern, no_leftover_qemu):
    """Three CPUs: kdspin_qh (CPU 0) holds kdspin_lock_a and loops, kdspin_q1 (CPU 1) waits
    on the lock word (pending), kdspin_q2 (CPU 2) in its MCS node. The word decodes as
    locked + pending with the tail at CPU 2 node 0, the MCS queue read through the per-CPU
    nodes is CPU 2, both waiters are spinners on the lock held by kdspin_qh; no cycle."""
    dump = tmp_path / "vmcore.elf"
    rep = _live(profile, MOD, "queue", dump, "--smp", "3", *SOFTLOCKUP)

    def check(d, text):
        comm = {a: t["comm"] for a, t in d["tasks"].items()}
        by = {comm[t]: d["locks"][l] for t, l in d["waits"].items()}
        assert not d["cycles"], text
        lock = by["kdspin_q2"]
        assert lock["name"] == "kdspin_lock_a [kdspin]" and lock["kind"] == "spinlock"
        # kdspin_q1 spins on it too, unless the stop found it inside an interrupt spinning on
        # another lock (5.10: two CPUs queued on logbuf_lock printing their soft-lockup
        # warnings): then that is what it spins on now
        assert by["kdspin_q1"] == lock or by["kdspin_q1"]["name"] != lock["name"], text
        assert [comm[o] for o in lock["owners"]] == ["kdspin_qh"]
        assert re.fullmatch(r"val=0x\w+: locked, pending, queue tail CPU 2 \(node 0\), MCS queue CPU 2",
                            lock["detail"]), lock["detail"]
        assert {d["tasks"][t]["cpu"] for t in d["waits"] if comm[t] in ("kdspin_q1", "kdspin_q2")} == {1, 2}
        assert "kdspin_qh" not in by or by["kdspin_qh"]["name"] != lock["name"], text
    check(json.loads(rep["ex"][0]["output"]), rep["ex"][1]["output"])
    post, text, _ = _postmortem(dump, MOD, kern)
    check(post, text)
