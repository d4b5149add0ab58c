"""Live, 10,000 tasks: stop-to-prompt through gdbkd proxy, and the first `kd ps` of a stop.

The 6.1 guest (2 GiB) loads bench/manythreads (N sleeping kernel threads). gdb attaches
through `gdbkd proxy` (every task a gdb thread) and, five times: continues, is
interrupted like a user's Ctrl-C (SIGINT to gdb), and measures

- stop-to-prompt: from the SIGINT until `continue` returns with the stop reported and the
  new thread list (every task) in gdb — what a user waits for before the prompt;
- `kd ps`: the first `kd ps` after that stop (the per-stop cache is empty after a resume);
- the same `kd ps` again (served from the per-stop cache: a breakdown, not a headline).

The guest's RAM is shared with QEMU as gdbkd run does it (a memfd): the proxy and kd read
kernel memory from it. Also, for comparison, `kd ps` with gdb attached to QEMU's gdbstub
directly (no proxy, no shared RAM: every read a gdbstub round trip).
Timed inside gdb with time.monotonic() around each step (the guest keeps running between
the stops, so a whole-process timing would measure the boot). Prints medians; asserts
nothing.

    .venv/bin/python bench/bench_live.py [--threads 10000] [--stops 5]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

DRIVER = r"""
import gdb, json, os, signal, threading, time
gdb.execute("source " + KD_PY)
gdb.execute("kd symbols --no-modules", to_string=True)
if RAM:
    gdb.execute("kd reader --ram " + RAM, to_string=True)
res = {"stops": []}
for i in range(STOPS):
    t = {}
    def interrupt():
        time.sleep(1.0)
        t["sigint"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
    th = threading.Thread(target=interrupt); th.start()
    gdb.execute("continue", to_string=True)
    n = len(gdb.selected_inferior().threads())
    t["prompt"] = time.monotonic()
    th.join()
    a = time.monotonic(); out = gdb.execute("kd ps", to_string=True); b = time.monotonic()
    gdb.execute("kd ps", to_string=True); c = time.monotonic()
    res["stops"].append({"threads": n, "stop_to_prompt": t["prompt"] - t["sigint"],
                         "ps": b - a, "ps_cached": c - b, "ps_lines": out.count("\n")})
json.dump(res, open(OUT, "w"))
"""


def run_gdb(guest, proxied, stops):
    tmp = Path(tempfile.mkdtemp())
    out = tmp / "out.json"
    drv = tmp / "driver.py"
    ram = f"/proc/self/fd/{guest.m.ram_fd}" if proxied and guest.m.ram_fd is not None else ""
    drv.write_text(f"KD_PY = {str(ROOT / 'gdb_scripts/kd.py')!r}\nOUT = {str(out)!r}\n"
                   f"STOPS = {stops}\nRAM = {ram!r}\n" + DRIVER)
    vml = str(guest.kernel.vmlinux)
    proxy = None
    if proxied:           # as gdbkd run does: the proxy on a unix socket (a pipe is ~16x slower)
        sock = tmp / "proxy.sock"
        ram = guest.m.ram_fd
        proxy = subprocess.Popen([sys.executable, "-m", "gdbkd", "proxy", f"127.0.0.1:{guest.port}",
                                  vml, "--listen", str(sock)]
                                 + (["--ram", f"/proc/self/fd/{ram}"] if ram is not None else []),
                                 cwd=ROOT, pass_fds=(ram,) if ram is not None else ())
        while not sock.exists():
            time.sleep(0.05)
        target = str(sock)
    else:
        target = f"127.0.0.1:{guest.port}"
    argv = ["gdb-multiarch", "-nx", "-batch", "-iex", "set auto-load no", "-ex", "set pagination off",
            "-ex", f"file {vml}", "-ex", f"target remote {target}", "-ex", f"source {drv}"]
    env = dict(os.environ, GDBKD_SITE=sysconfig.get_paths()["purelib"], GDBKD_PATH=str(ROOT))
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, cwd=ROOT,
                       pass_fds=(guest.m.ram_fd,) if proxied and guest.m.ram_fd is not None else ())
    if proxy is not None:
        proxy.wait(30)
    if not out.exists():
        sys.exit(f"bench: gdb failed: {r.stderr[-1500:]}")
    return json.loads(out.read_text())["stops"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=10000)
    ap.add_argument("--stops", type=int, default=5)
    a = ap.parse_args()
    from kdlive import Guest
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.artifacts.modules import build_module_dir
    k = ensure_kernel(load_profile("debian-6.1"))
    d = Path(tempfile.mkdtemp(prefix="gdbkd-bench-live-"))
    ko = build_module_dir(ROOT / "bench/manythreads", k)[0]
    base = ensure_base_initramfs(k, load_profile("debian-6.1").guest["boot_modules"])
    initrd = write_overlay(base, {"lib/modules/gdbkd/manythreads.ko": ko}, d / "initrd.img", rc="")
    g = Guest(k, initrd, d, kaslr=True, memory="2G", shared_ram=True)
    try:
        g.start()
        g.sh(f"insmod /lib/modules/gdbkd/manythreads.ko nthreads={a.threads}", timeout=600)
        n = 0
        for _ in range(120):
            n = int(re.findall(r"\d+", g.sh("ls /proc | grep -c '^[0-9]'"))[0])
            if n >= a.threads:
                break
            time.sleep(2)
        print(f"guest: {n} processes in /proc; machine: {os.cpu_count()} CPUs, "
              f"{time.strftime('%Y-%m-%d')}, load {os.getloadavg()[0]:.1f}")
        proxied = run_gdb(g, True, a.stops)
        direct = run_gdb(g, False, a.stops)
    finally:
        g.stop()
    med = lambda rs, key: statistics.median(r[key] for r in rs)
    print(f"through gdbkd proxy: {proxied[0]['threads']} gdb threads; medians of {len(proxied)} stops")
    print(f"  stop-to-prompt (SIGINT -> stop reported, every task a thread)  {med(proxied, 'stop_to_prompt'):6.2f} s")
    print(f"  first kd ps of a stop ({proxied[0]['ps_lines'] - 1} tasks)                      {med(proxied, 'ps'):6.2f} s")
    print(f"  kd ps again (per-stop cache; breakdown)                        {med(proxied, 'ps_cached'):6.2f} s")
    print(f"direct to QEMU's gdbstub: {direct[0]['threads']} gdb threads")
    print(f"  stop-to-prompt                                                 {med(direct, 'stop_to_prompt'):6.2f} s")
    print(f"  first kd ps of a stop                                          {med(direct, 'ps'):6.2f} s")


if __name__ == "__main__":
    main()
