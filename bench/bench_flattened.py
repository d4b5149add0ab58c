"""Opening a flattened (makedumpfile -F / QEMU kdump-*) dump of many records.

The real 1 GiB guest's ``makedumpfile -c -d 31`` dump (16 MB, plain kdump) is
rewritten as a flattened stream of about --records records (default 1M) in
random order, as makedumpfile -F and QEMU write them out of order; then a
second time with every record also overwritten by a later one (the
overlapping path of the index). Each file is opened with gdbkd's reader (all
headers, both bitmaps, the record index) in a fresh process and a few pages
are compared with the plain file. Prints seconds and peak RSS; asserts
nothing. Files go to a temp directory and are removed.

    .venv/bin/python bench/bench_flattened.py [--records 1000000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

OPEN = r"""
import resource, sys, time
t0 = time.monotonic()
from gdbkd.dump import open_physical
p = open_physical(sys.argv[1])
t1 = time.monotonic()
with open_physical(sys.argv[2]) as ref:
    n = 0
    for pfn in range(0, p.max_mapnr, max(1, p.max_mapnr // 500)):
        if p.is_dumped(pfn):
            a = pfn * p.block_size
            assert p.read_phys(a, p.block_size) == ref.read_phys(a, p.block_size)
            n += 1
print(f"{t1 - t0:.2f} {p._flat.records} {n} "
      f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}")
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    from testdumps import ensure_test_dumps, ensure_makedumpfile_dumps
    from hostile import flatten
    src = ensure_makedumpfile_dumps(ensure_test_dumps())["mdf-zlib-d31.kdump"]
    with tempfile.TemporaryDirectory() as d:
        for overlap in (False, True):
            dst = os.path.join(d, "flat")
            n = flatten(src, dst, records=args.records, seed=3, overlap=overlap)
            r = subprocess.run([sys.executable, "-c", OPEN, dst, str(src)], capture_output=True,
                               text=True, cwd=ROOT)
            if r.returncode:
                print(r.stderr)
                continue
            secs, recs, pages, rss = r.stdout.split()
            print(f"{'overlapping' if overlap else 'disjoint, shuffled':20} {n:>9} records "
                  f"({os.path.getsize(dst) >> 20} MiB): open {secs} s, peak RSS {rss} MiB, "
                  f"{pages} pages checked")


if __name__ == "__main__":
    main()
