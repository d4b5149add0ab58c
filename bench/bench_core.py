"""Time to the crashed task's first backtrace: gdbkd vs drgn 0.3.0.

All run on the same dumps in the same run, each in a fresh process, and the
median of --repeat runs is kept; every time is the wall clock of that process
from its start (Python interpreter included, for drgn too) to its exit:

- gdbkd bt: ``gdbkd core DUMP VMLINUX -s --batch -ex bt`` (the product's path:
  open the dump, fork the dump server, gdb-multiarch with the vmlinux at the
  KASLR offset, kd loaded, module symbols, gdb's own ``bt``);
- gdbkd report: ``gdbkd core DUMP VMLINUX --batch`` (the crash report: trap,
  task, backtrace with file:line, log tail);
- drgn: ``Program.set_core_dump`` + ``load_debug_info`` +
  ``crashed_thread().stack_trace()`` (names only).

Dumps: the 1 GiB and 4 GiB guests of tests/testdumps.py (made on first
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # testdumps

DRGN = r"""
import sys
import drgn
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
print(len([f.name for f in prog.crashed_thread().stack_trace()]))
"""


def _drgn(dump, vmlinux):
    return [sys.executable, "-c", DRGN, str(dump), str(vmlinux)], lambda out: int(out.split()[-1])


def _gdbkd_bt(dump, vmlinux):
    return ([sys.executable, "-m", "gdbkd", "core", str(dump), str(vmlinux), "-s", "--batch", "-ex", "bt"],
            lambda out: sum(1 for line in out.splitlines() if line.startswith("#")))


def _gdbkd_report(dump, vmlinux):
    return ([sys.executable, "-m", "gdbkd", "core", str(dump), str(vmlinux), "--batch"],
            lambda out: sum(1 for line in out.splitlines() if line.startswith(" #")))


TOOLS = (("gdbkd-bt", _gdbkd_bt), ("gdbkd-rep", _gdbkd_report), ("drgn", _drgn))


def _run(tool, dump, vmlinux):
    """Wall time of one fresh process, from its start (interpreter included) to its exit
    (the environment of bench_kd.ENV: bytecode cached, as installed packages have it)."""
    from bench_kd import ENV
    argv, count = tool(dump, vmlinux)
    t = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL,
                       env=ENV)
    secs = time.monotonic() - t
    frames = count(r.stdout) if r.returncode == 0 and r.stdout.strip() else 0
    if not frames:
        err = (r.stderr.strip().splitlines() or ["no backtrace"])[-1]
        return None, err[:100]
    return secs, frames


def measure_all(dump, vmlinux, repeat):
    """{tool: (median seconds or None, frames or error)}: the tools alternate in each round."""
    from bench_kd import warm
    for _, fn in TOOLS:
        warm(fn(dump, vmlinux)[0])
    times = {tool: [] for tool, _ in TOOLS}
    info = {}
    for _ in range(repeat):
        for tool, fn in TOOLS:
            if times[tool] is None:
                continue
            t, info[tool] = _run(fn, dump, vmlinux)
            if t is None:
                times[tool] = None
            else:
                times[tool].append(t)
    return {tool: (statistics.median(ts) if ts else None, info.get(tool)) for tool, ts in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sizes", default="1G,4G")
    args = ap.parse_args()
    from testdumps import ensure_test_dumps
    results = {}
    for size in args.sizes.split(","):
        td = ensure_test_dumps(memory=size)
        formats = [("elf", td.elf), ("kdump-zlib", td.kdump_flat)]
        mdf = td.dir / "mdf-zlib-d31.kdump"     # makedumpfile -c -d 31, when made already
        if mdf.exists():
            formats.append(("mdf-d31", mdf))
        for fmt, path in formats:
            for tool, (secs, info) in measure_all(path, td.vmlinux, args.repeat).items():
                results[(size, fmt, tool)] = secs
                shown = f"{secs:7.3f} s ({info} frames)" if secs is not None else f"failed: {info}"
                print(f"{size:>3} {fmt:<10} {tool:<9} first crashed-task bt: {shown}", flush=True)
    print()
    print("ratios (gdbkd / drgn, < 1 means gdbkd is faster):")
    for (size, fmt, tool), secs in results.items():
        if tool == "drgn":
            continue
        d = results.get((size, fmt, "drgn"))
        ratio = f"{secs / d:.2f}" if secs and d else "n/a (drgn cannot open this dump)" if secs else "n/a"
        print(f"  {size:>3} {fmt:<10} {tool:<9} {ratio}")
    sizes = args.sizes.split(",")
    if len(sizes) >= 2:
        big, small = sizes[-1], sizes[0]
        print(f"scaling ({big} guest / {small} guest, open + first bt):")
        for fmt in ("elf", "kdump-zlib", "mdf-d31"):
            for tool, _ in TOOLS:
                a, b = results.get((big, fmt, tool)), results.get((small, fmt, tool))
                print(f"  {fmt:<10} {tool:<9} " + (f"{a / b:.2f}" if a and b else "n/a"))


if __name__ == "__main__":
    main()
