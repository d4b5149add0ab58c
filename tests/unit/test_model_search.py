"""kd search's scan (gdbkd/model/search.py) over the real 6.1 test dump, against a plain
page-by-page scan of the same memory through the dump's own translation.

The model reads the linear map and the image in 1 MiB physical runs and each vmalloc
area as the runs its page tables map, and finds values through a shorter "probe"
where that skips faster; the reference reads every page of the same regions with
``Dump.read`` (a page-table walk per page, unmapped pages skipped) and finds every
aligned occurrence with a regex. Both must give the same hits.
"""

import re

import pytest

from tests.conftest import module_dumps
from gdbkd.model import search as searchm
from gdbkd.model.reader import DumpReader
from gdbkd.model.kernel import Kernel

TD = MDF = None
_dumps = module_dumps(globals())


@pytest.fixture(scope="module")
def dump():
    from gdbkd.target import open_dump
    d = open_dump(TD.elf, TD.vmlinux)
    yield d
    d.close()


@pytest.fixture(scope="module")
def kernel(dump):
    return Kernel(DumpReader(dump), dump.kernel.types, dump.sym)


def _regions(k):
    """The image, 64 MiB of the linear map, every vmalloc area (not all of RAM: the
    reference reads page by page)."""
    regs = searchm.kernel_regions(k)
    lin = [r for r in regs if r.kind == "linear map"]
    keep = [r for r in regs if r.kind != "linear map"]
    return keep + searchm.clip(lin, lin[-1].start, lin[-1].start + (64 << 20))


def _reference(dump, regions, pattern: bytes, align: int):
    hits = []
    rx = re.compile(b"(?=" + re.escape(pattern) + b")")
    ps = dump.page_size
    for r in regions:
        a = r.start
        prev = b""
        while a < r.end:
            try:
                data = dump.read(a, ps)
            except Exception:
                a += ps
                prev = b""
                continue
            buf = prev + data
            for m in rx.finditer(buf):
                h = a - len(prev) + m.start()
                if h % align == 0 and (m.start() + len(pattern) > len(prev)):
                    hits.append(h)
            prev = buf[-(len(pattern) - 1):] if len(pattern) > 1 else b""
            a += ps
    return sorted(hits)


def test_probe_choice():
    # a kernel pointer: 0xff bytes and 0x80 (≡ 0 mod 64) are left out of the probe
    lit = (0xffffc618fda28c80).to_bytes(8, "little")
    assert searchm._probe(lit) == (1, lit[1:6])
    assert searchm._probe((1).to_bytes(8, "little")) is None           # nothing to probe with
    assert searchm._probe(bytes.fromhex("1122334455667788")) is None   # all good: all of it
    m = searchm.value_pattern(0xffffc618fda28c80)
    buf = b"\x00" * 3 + lit[1:6] + b"\x00" * 5 + lit + lit[:7] + lit
    assert list(m.starts(buf)) == [13, 28]


@pytest.fixture(params=["parallel", "one reader thread", "bytes.find"])
def how(request, dump, monkeypatch):
    """The three ways a scan runs: WORKERS threads reading and matching (an ELF dump's
    reads keep no state), one read-ahead thread with the matching in the caller (any
    other dump), and bytes.find where libc has no memmem."""
    if request.param != "parallel":
        monkeypatch.setattr(dump, "concurrent_reads", False, raising=False)
    if request.param == "bytes.find":
        monkeypatch.setattr(searchm, "_memmem", False)
    else:
        assert searchm._libc_memmem(), "glibc's memmem through ctypes"
    return request.param


@pytest.mark.parametrize("what", ["init_task", "init_task.tasks", "string"])
def test_search_equals_page_by_page_scan(dump, kernel, what, how):
    k = kernel
    regions = _regions(k)
    assert any(r.kind == "vmalloc" for r in regions)
    if what == "string":
        pat, align = b"busybox-sleeper", 1
        matcher = searchm.string_pattern(pat)
        overlap = len(pat) - 1
    else:
        sym, _, member = what.partition(".")
        v = dump.sym(sym) + (dump.kernel.offset("struct task_struct", member) if member else 0)
        pat, align = v.to_bytes(8, "little"), 8
        matcher = searchm.value_pattern(v)
        assert matcher.probe is not None
        overlap = 0
    got = searchm.search(k, matcher, regions, align=align, overlap=overlap)
    want = _reference(dump, regions, pat, align)
    assert sorted(got["hits"]) == want and want
    assert got["skipped_pages"] == 0 and not got["truncated"]
    # the masked form (a regex, no probe) finds the same words
    if what != "string":
        masked = searchm.search(k, searchm.value_pattern(v, 0xF), regions)
        assert set(got["hits"]) <= set(masked["hits"])



def test_limit_stops_the_reading_thread(dump, kernel, how):
    """A search that reaches its limit returns the first hits in address order and leaves
    no reading thread behind (the dump is read a megabyte at a time by workers)."""
    import threading
    regions = _regions(kernel)
    m = searchm.value_pattern(dump.sym("init_task"))
    full = searchm.search(kernel, m, regions)
    assert len(full["hits"]) > 3
    cut = searchm.search(kernel, m, regions, limit=3)
    assert cut["truncated"] and cut["hits"] == full["hits"][:3]
    assert not any(t.name.startswith("kd-search") for t in threading.enumerate())


def test_workers_see_every_run_once(dump, kernel):
    """The parallel scan hands each run to one worker and gives the runs back in address
    order, with the pages it could not read counted as the sequential scan counts them."""
    regions = _regions(kernel)
    src = searchm._Source(kernel, physical=False)
    runs = list(searchm._parallel(src, regions, searchm.value_pattern(dump.sym("init_task")),
                                  8, src.page))
    want = [(a, n) for r in regions for a, n, _pa in src.runs(r)]
    assert [(a, n) for _r, a, n, _h, _s in runs] == want
    assert all(h == sorted(h) for *_x, h, _s in runs)
