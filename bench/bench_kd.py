"""Walks over every task on a 10,000-task dump: gdbkd vs drgn 0.3.0, whole processes, cold.

The dump is made once (cached in ~/.cache/gdbkd/bench): the 6.1 guest loads
bench/manythreads (10,000 sleeping kernel threads), crashes with sysrq-c and is
saved with QMP dump-guest-memory (ELF) by `gdbkd run --dump-on-crash`.

Each measurement is one fresh process timed from outside, as a user meets it:

- open:  ``gdbkd core D V -s --batch``                      (open to exit, nothing else)
- prompt: ``gdbkd core D V -s``, interactive: until gdb's first prompt is printed
         (every task becomes a gdb thread right after, see docs/postmortem.md)
- ps:    ``gdbkd core D V -s --batch -ex 'kd ps'``           vs a drgn script printing pid,
         comm and state of every task (for_each_task + the idle tasks, what ps lists)
- bt:    ``gdbkd core D V -s --batch -ex 'kd foreach bt'``   vs drgn printing
         ``stack_trace()`` of every task

gdbkd and drgn alternate within each round; medians over ``--repeat`` rounds. Peak
RSS is the largest process of each run (gdb for gdbkd). Task and frame counts of
both are printed so the work is seen to be the same. Asserts nothing.

    .venv/bin/python bench/bench_kd.py [--threads 10000] [--repeat 5] [--only ps,bt,open]
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

DRGN_PS = r"""
import sys, drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import idle_task, task_state_to_char
from drgn.helpers.linux.cpumask import for_each_possible_cpu
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
tasks = [idle_task(prog, c) for c in for_each_possible_cpu(prog)] + list(for_each_task(prog))
out = [f"{t.pid.value_():>7} {task_state_to_char(t)} {t.comm.string_().decode(errors='replace')}"
       for t in tasks]
print("\n".join(out))
print(f"TASKS {len(out)}")
"""

DRGN_BT = r"""
import sys, drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.sched import idle_task
from drgn.helpers.linux.cpumask import for_each_possible_cpu
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
tasks = [idle_task(prog, c) for c in for_each_possible_cpu(prog)] + list(for_each_task(prog))
n = 0
for t in tasks:
    try:
        tr = prog.stack_trace(t)
    except Exception as e:
        print(f"PID {t.pid.value_()}: {e}")
        continue
    print(f"PID: {t.pid.value_()}")
    print(str(tr))
    n += len(tr)
print(f"TASKS {len(tasks)} FRAMES {n}")
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


#: The timed processes' environment: Python bytecode cached as an installed package has it
#: (pip compiles at install; drgn's site-packages have their .pyc). This machine's
#: environment sets PYTHONDONTWRITEBYTECODE, which would make gdbkd (an editable checkout)
#: compile ~250 modules in every process; the benches remove it for both tools, and
#: warm() runs each command once, untimed, so the .pyc exist.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warm(argv):
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, env=ENV)


def timed(argv, stdin_text=None):
    """(seconds, peak RSS MiB of the largest process, stdout) of one fresh process
    (STDIN_TEXT: what its standard input holds, else nothing)."""
    t = time.monotonic()
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL if stdin_text is None else subprocess.PIPE,
                         text=True, env=ENV)
    if stdin_text is not None:
        p.stdin.write(stdin_text)
        p.stdin.close()
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.monotonic() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, argv[:6]))}… exited {p.returncode}")
    return dt, ru.ru_maxrss / 1024, out


def to_prompt(argv):
    """(seconds until gdb's first "(gdb) " prompt, peak RSS MiB, output) of an interactive
    gdbkd core; the process is then ended by a command typed at that prompt."""
    t = time.monotonic()
    p = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.PIPE, env=ENV)
    out = b""
    while b"(gdb) " not in out:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            sys.exit("bench: gdbkd core ended before its prompt")
        out += chunk
    dt = time.monotonic() - t
    p.stdin.write(b"python import os; os._exit(0)\n")
    p.stdin.close()
    p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    return dt, ru.ru_maxrss / 1024, out.decode("utf-8", "replace")


def gdbkd_argv(dump, vmlinux, *cmds):
    argv = [str(ROOT / ".venv/bin/gdbkd"), "core", str(dump), str(vmlinux), "-s", "--batch"]
    for c in cmds:
        argv += ["-ex", c]
    return argv


def drgn_argv(script, dump, vmlinux):
    return [str(ROOT / ".venv/bin/python"), "-c", script, str(dump), str(vmlinux)]


def counts_gdbkd_ps(out):
    return len([l for l in out.splitlines() if re.match(r"^[ >]\s*\d+\s+\d+\s+\d+\s+[0-9a-f]{16}", l)])


def counts_gdbkd_bt(out):
    return (len(re.findall(r"^PID: ", out, re.M)), len(re.findall(r"^\s*#\d+ ", out, re.M)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="open,prompt,ps,bt")
    ap.add_argument("--dump", help="use this dump (with --vmlinux) instead of making one")
    ap.add_argument("--vmlinux")
    a = ap.parse_args()
    dump, vmlinux = (a.dump, a.vmlinux) if a.dump else make_dump(a.threads)
    only = a.only.split(",")
    print(f"dump: {dump}")
    print(f"machine: {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; medians of {a.repeat}, "
          f"whole processes, cold, alternating")
    rows = {}
    warm(gdbkd_argv(dump, vmlinux, "kd ps"))
    for _ in range(a.repeat):
        if "open" in only:
            rows.setdefault("open", []).append((timed(gdbkd_argv(dump, vmlinux)), None))
        if "prompt" in only:
            argv = [a for a in gdbkd_argv(dump, vmlinux) if a != "--batch"]
            rows.setdefault("prompt", []).append((to_prompt(argv), None))
        if "ps" in only:
            g = timed(gdbkd_argv(dump, vmlinux, "kd ps"))
            d = timed(drgn_argv(DRGN_PS, dump, vmlinux))
            rows.setdefault("ps", []).append((g, d))
        if "bt" in only:
            g = timed(gdbkd_argv(dump, vmlinux, "kd foreach bt"))
            d = timed(drgn_argv(DRGN_BT, dump, vmlinux))
            rows.setdefault("bt", []).append((g, d))
    for k, runs in rows.items():
        gt = statistics.median(r[0][0] for r in runs)
        grss = max(r[0][1] for r in runs)
        if k in ("open", "prompt"):
            name = "open (gdbkd core -s --batch)" if k == "open" else "open to the prompt (gdbkd core -s)"
            print(f"{name:38} gdbkd {gt:6.2f} s  {grss:5.0f} MiB")
            continue
        dt = statistics.median(r[1][0] for r in runs)
        drss = max(r[1][1] for r in runs)
        gout, dout = runs[-1][0][2], runs[-1][1][2]
        if k == "ps":
            work = f"tasks gdbkd {counts_gdbkd_ps(gout)} drgn {dout.split('TASKS ')[-1].strip()}"
            name = "kd ps / drgn task list"
        else:
            gtasks, gframes = counts_gdbkd_bt(gout)
            m = re.search(r"TASKS (\d+) FRAMES (\d+)", dout)
            work = f"tasks/frames gdbkd {gtasks}/{gframes} drgn {m.group(1)}/{m.group(2)}"
            name = "kd foreach bt / drgn stack_trace all"
        print(f"{name:38} gdbkd {gt:6.2f} s  drgn {dt:6.2f} s  ratio {gt / dt:5.2f}   "
              f"peak RSS gdbkd {grss:5.0f} MiB drgn {drss:5.0f} MiB   {work}")


if __name__ == "__main__":
    main()
