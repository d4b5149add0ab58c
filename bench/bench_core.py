"""Time to the crashed task's first backtrace: gdbkd (gdb-multiarch + stub) vs drgn 0.3.0.

Both run on the same dumps in the same run, each in a fresh process, and the
median of --repeat runs is kept:

- gdbkd: open_dump (KASLR offset) + ``gdb-multiarch -batch`` with
  ``symbol-file -o``, ``target remote | python -m gdbkd.stub DUMP VMLINUX``, ``bt``;
- drgn: ``Program.set_core_dump`` + ``load_debug_info`` +
  ``crashed_thread().stack_trace()``.

Dumps: the 1 GiB and 4 GiB guests of gdbkd.postmortem.testdumps (made on first
use, ~10 s and ~30 s), in QEMU's ELF and kdump-zlib (flattened, 64K blocks)
formats, plus makedumpfile's ``-c -d 31`` output of the 1 GiB one when
ensure_makedumpfile_dumps made it (drgn cannot open QEMU's kdump-zlib).
Prints times and ratios; asserts nothing.

    .venv/bin/python bench/bench_core.py [--repeat 3] [--sizes 1G,4G]
"""

import argparse
import statistics
import subprocess
import sys
import time

DRGN = r"""
import sys, time
t = time.monotonic()
import drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
names = [f.name for f in prog.crashed_thread().stack_trace()]
print(f"{time.monotonic() - t:.4f} {len(names)}")
"""

GDBKD = r"""
import subprocess, sys, time
t = time.monotonic()
from gdbkd.postmortem import open_dump
with open_dump(sys.argv[1]) as d:
    off = d.kaslr_offset
r = subprocess.run(["gdb-multiarch", "-batch", "-nx", "-iex", "set auto-load no",
                    "-ex", f"symbol-file -o {off:#x} {sys.argv[2]}",
                    "-ex", f"target remote | {sys.executable} -m gdbkd.stub {sys.argv[1]} {sys.argv[2]}",
                    "-ex", "bt"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
frames = [l for l in r.stdout.splitlines() if l.startswith("#")]
print(f"{time.monotonic() - t:.4f} {len(frames)}")
"""


def _run(code, dump, vmlinux):
    r = subprocess.run([sys.executable, "-c", code, str(dump), str(vmlinux)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or not r.stdout.strip():
        err = (r.stderr.strip().splitlines() or ["failed"])[-1]
        return None, err[:100]
    secs, frames = r.stdout.split()[-2:]
    return float(secs), int(frames)


def measure(code, dump, vmlinux, repeat):
    times, info = [], None
    for _ in range(repeat):
        t, info = _run(code, dump, vmlinux)
        if t is None:
            return None, info
        times.append(t)
    return statistics.median(times), info


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1G,4G")
    args = ap.parse_args()
    from gdbkd.postmortem.testdumps import ensure_test_dumps
    results = {}
    for size in args.sizes.split(","):
        td = ensure_test_dumps(memory=size)
        formats = [("elf", td.elf), ("kdump-zlib", td.kdump_flat)]
        mdf = td.dir / "mdf-zlib-d31.kdump"     # makedumpfile -c -d 31, when made already
        if mdf.exists():
            formats.append(("mdf-d31", mdf))
        for fmt, path in formats:
            for tool, code in (("gdbkd", GDBKD), ("drgn", DRGN)):
                t0 = time.monotonic()
                secs, info = measure(code, path, td.vmlinux, args.repeat)
                results[(size, fmt, tool)] = secs
                shown = f"{secs:7.3f} s ({info} frames)" if secs is not None else f"failed: {info}"
                print(f"{size:>3} {fmt:<10} {tool:<6} first crashed-task bt: {shown}", flush=True)
    print()
    print("ratios (gdbkd / drgn, < 1 means gdbkd is faster):")
    for (size, fmt, tool), secs in results.items():
        if tool != "gdbkd":
            continue
        d = results.get((size, fmt, "drgn"))
        ratio = f"{secs / d:.2f}" if secs and d else "n/a (drgn cannot open this dump)" if secs else "n/a"
        print(f"  {size:>3} {fmt:<10} {ratio}")
    sizes = args.sizes.split(",")
    if len(sizes) >= 2:
        big, small = sizes[-1], sizes[0]
        print(f"scaling ({big} guest / {small} guest, open + first bt):")
        for fmt in ("elf", "kdump-zlib", "mdf-d31"):
            for tool in ("gdbkd", "drgn"):
                a, b = results.get((big, fmt, tool)), results.get((small, fmt, tool))
                print(f"  {fmt:<10} {tool:<6} " + (f"{a / b:.2f}" if a and b else "n/a"))


if __name__ == "__main__":
    main()
