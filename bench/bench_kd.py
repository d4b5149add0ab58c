"""`kd ps` and `kd foreach bt` on a 10,000-task dump: gdbkd vs drgn 0.3.0, same dump, same run.

The dump is made once (cached in ~/.cache/gdbkd/bench): the 6.1 guest loads
bench/manythreads (10,000 sleeping kernel threads), crashes with sysrq-c and is
saved with QMP dump-guest-memory (ELF) by `gdbkd run --dump-on-crash`.

- gdbkd: `gdbkd core DUMP VMLINUX --batch -ex 'kd ps' -ex 'kd foreach bt'`, each command
  timed inside gdb (python time around gdb.execute) after the open;
- drgn: the task list (for_each_task: pid, ppid, state, comm — what `ps` prints) and a
  stack trace of every task, after `Program` setup.

Prints seconds and gdbkd/drgn ratios; asserts nothing.

    .venv/bin/python bench/bench_kd.py [--threads 10000] [--repeat 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DRGN = r"""
import sys, time, json
import drgn
from drgn.helpers.linux.pid import for_each_task
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
t0 = time.monotonic()
rows = [(t.pid.value_(), t.comm.string_()) for t in for_each_task(prog)]
t1 = time.monotonic()
n = 0
for t in for_each_task(prog):
    try:
        n += len(prog.stack_trace(t))
    except Exception:
        pass
t2 = time.monotonic()
print(json.dumps({"ps": t1 - t0, "bt": t2 - t1, "tasks": len(rows), "frames": n}))
"""

GDB_TIMER = r"""
import gdb, time, json
def timed(cmd):
    t = time.monotonic(); out = gdb.execute(cmd, to_string=True); return time.monotonic() - t, out
ps_t, ps_out = timed("kd ps")
bt_t, bt_out = timed("kd foreach bt")
print("BENCH " + json.dumps({"ps": ps_t, "bt": bt_t, "tasks": len(ps_out.splitlines()) - 1,
                            "frames": bt_out.count("\n #")}))
"""


def make_dump(threads):
    from gdbkd.cache import cache_root, key_of
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    k = ensure_kernel(load_profile("debian-6.1"))
    src = (ROOT / "bench/manythreads/manythreads.c").read_text()
    d = cache_root() / "bench" / f"manythreads-{k.release}-{key_of(src, threads)}"
    dump = d / "vmcore.elf"
    if not dump.exists():
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".vmcore.{os.getpid()}"
        r = subprocess.run([sys.executable, "-m", "gdbkd", "run", "--batch", "--memory", "2G",
                            "--module", str(ROOT / "bench/manythreads"),
                            "--exec", f"insmod /lib/modules/gdbkd/manythreads.ko nthreads={threads}",
                            "--exec", "sleep 20; echo c > /proc/sysrq-trigger", "--timeout", "600",
                            "--dump-on-crash", str(tmp)], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"bench: making the dump failed: {r.stderr.strip().splitlines()[-1:]}")
        os.replace(tmp, dump)
    return dump, k.vmlinux


def run_gdbkd(dump, vmlinux):
    timer = Path("/tmp") / f"gdbkd-bench-{os.getpid()}.py"
    timer.write_text(GDB_TIMER)
    try:
        r = subprocess.run([sys.executable, "-m", "gdbkd", "core", str(dump), vmlinux, "--batch",
                            "-ex", f"source {timer}"], cwd=ROOT, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=1800)
    finally:
        timer.unlink()
    line = next((l for l in r.stdout.splitlines() if l.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"bench: gdbkd failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return json.loads(line[6:])


def run_drgn(dump, vmlinux):
    r = subprocess.run([sys.executable, "-c", DRGN, str(dump), vmlinux], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    dump, vmlinux = make_dump(a.threads)
    g = [run_gdbkd(dump, vmlinux) for _ in range(a.repeat)]
    d = [x for x in (run_drgn(dump, vmlinux) for _ in range(a.repeat)) if x]
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    print(f"dump: {dump} ({g[0]['tasks']} tasks)")
    for k, what in (("ps", "kd ps / for_each_task"), ("bt", "kd foreach bt / stack_trace(every task)")):
        gd = med(g, k)
        if d:
            dd = med(d, k)
            print(f"{what:45} gdbkd {gd:7.2f} s  drgn {dd:7.2f} s  gdbkd/drgn {gd / dd:5.2f}")
        else:
            print(f"{what:45} gdbkd {gd:7.2f} s  drgn failed")


if __name__ == "__main__":
    main()
