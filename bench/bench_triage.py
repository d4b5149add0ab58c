"""Fleet triage throughput: dumps per minute for 20 real dumps, --jobs 1, --jobs 2, Dask (2 workers).

The 20 dumps (tests/triage_dumps.py; made on first use, ~10-15 s a QEMU boot): sysrq-c
three times (two boots dumped at gdb's panic breakpoint, the test dump taken while panic()
spins), labs 1-8 twice each in separate boots and lab 1 a third time: distinct kdump-zlib
files of ~15 MB, one 6.1 vmlinux (picked by --vmlinux-dir).

Each run is one whole ``gdbkd triage DUMP... --vmlinux-dir DIR --json`` process, timed from
outside (its wall clock, interpreter start to exit). The Dask cluster (``dask scheduler`` +
2 ``dask worker``, one thread each, on 127.0.0.1) is started before and stopped after its
runs; its start-up is reported apart. The runs' JSON must be equal (checked, printed).
Asserts nothing about time.

    .venv/bin/python bench/bench_triage.py [--repeat 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # triage_dumps, testdumps


def _run(argv):
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gdbkd", "triage", *argv], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    dt = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"gdbkd triage failed ({r.returncode}): {r.stderr[-1000:]}")
    return dt, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    from triage_dumps import FLEET, MORE_BOOTS, fleet_dir, vmlinux_dir, dask_cluster
    names = list(FLEET) + ["sysrq-loop"] + MORE_BOOTS
    with tempfile.TemporaryDirectory(prefix="gdbkd-bench-triage-") as td:
        td = Path(td)
        paths = fleet_dir(td, names, junk=False)
        assert len(paths) == 20
        base = [*map(str, paths.values()), "--vmlinux-dir", str(vmlinux_dir(td)), "--json"]
        modes = {"--jobs 1": base + ["-j", "1"], "--jobs 2": base + ["-j", "2"]}
        times, outs = {}, {}
        for label, argv in modes.items():
            runs = [_run(argv) for _ in range(args.repeat)]
            times[label], outs[label] = [t for t, _ in runs], runs[0][1]
        t = time.monotonic()
        with dask_cluster(td, 2) as addr:
            up = time.monotonic() - t
            runs = [_run(base + ["--dask", addr]) for _ in range(args.repeat)]
            times["dask, 2 workers"], outs["dask, 2 workers"] = [t for t, _ in runs], runs[0][1]
    res = {k: json.loads(v) for k, v in outs.items()}
    first = next(iter(res.values()))
    print(f"{len(paths)} dumps, {len(first['buckets'])} buckets; median of {args.repeat} run(s), "
          f"whole `gdbkd triage` processes")
    print(f"{'mode':18} {'seconds':>8} {'dumps/min':>10}")
    for label, ts in times.items():
        s = statistics.median(ts)
        print(f"{label:18} {s:8.1f} {len(paths) * 60 / s:10.1f}")
    print(f"(Dask cluster start-up, not counted above: {up:.1f} s)")
    print("results equal across modes:", all(v == first for v in res.values()))


if __name__ == "__main__":
    main()
