"""The gdb-free kernel model (gdbkd/model) over the memory of a real dump, in seconds.

The dump is the 6.1 test guest's QEMU ELF dump (made and cached by the fixture
when missing); drgn 0.3.0 on the same dump is the reference. Fault injection
wraps the real reader: one chosen block of real memory becomes unreadable.
"""

import random

import pytest

from tests.conftest import module_dumps
from gdbkd.model.reader import DumpReader, MemoryFault, BytesReader
from gdbkd.model.kernel import Kernel
from gdbkd.model import tasks as mtasks
from gdbkd.model.modules import module_list
from gdbkd.model.lists import walk_list

TD = MDF = None
_dumps = module_dumps(globals())


@pytest.fixture(scope="module")
def dump():
    from gdbkd.target import open_dump
    d = open_dump(TD.elf, TD.vmlinux)
    yield d
    d.close()


def fresh_kernel(d, reader=None):
    return Kernel(reader or DumpReader(d), d.kernel.types, d.sym)


@pytest.fixture(scope="module")
def drgn_prog():
    drgn = pytest.importorskip("drgn")
    prog = drgn.Program()
    prog.set_core_dump(str(TD.elf))
    prog.load_debug_info([str(TD.vmlinux)])
    return prog


def test_task_list_equals_drgn(dump, drgn_prog):
    from drgn.helpers.linux.pid import for_each_task
    from drgn.helpers.linux.sched import idle_task
    from drgn.helpers.linux.cpumask import for_each_possible_cpu
    want = {(int(t.pid), t.comm.string_(), t.value_()) for t in for_each_task(drgn_prog)}
    for cpu in for_each_possible_cpu(drgn_prog):
        t = idle_task(drgn_prog, cpu)
        want.add((int(t.pid), t.comm.string_(), t.value_()))
    got = mtasks.task_list(fresh_kernel(dump))
    assert {(t.pid, t.comm_bytes, t.addr) for t in got} == want
    assert got.problems == []
    sleepers = TD.meta["sleepers"]
    by_pid = {t.pid: t for t in got}
    for name, pid in sleepers.items():
        assert by_pid[pid].name == name and by_pid[pid].st == "IN"


def test_modules_equal_drgn(dump, drgn_prog):
    from drgn.helpers.linux.module import for_each_module
    want = {(m.name.string_().decode(), int(m.mem[0].base) if hasattr(m, "mem") else int(m.core_layout.base))
            for m in for_each_module(drgn_prog)}
    mods, stop = module_list(fresh_kernel(dump))
    assert stop is None
    assert {(m.name, m.base) for m in mods} == want and want


def test_cache_on_and_off_read_the_same_bytes(dump):
    cached, plain = DumpReader(dump), DumpReader(dump, cache=False)
    k = fresh_kernel(dump)
    tasks = mtasks.task_list(k)
    rnd = random.Random(7)
    probes = []
    for t in tasks:
        probes += [(t.addr + rnd.randrange(0, 6000), rnd.randrange(1, 9000)),
                   (t.stack + rnd.randrange(0, 16384), rnd.randrange(1, 300))]
    probes += [(0xffff000000000000 + rnd.randrange(1 << 40), 64) for _ in range(50)]   # mostly unmapped
    for a, n in probes:
        try:
            want = plain.read(a, n)
        except MemoryFault:
            want = None
        try:
            got = cached.read(a, n)
        except MemoryFault:
            got = None
        assert got == want, f"{a:#x}+{n}"
    before = cached.fetches
    for a, n in probes:                 # a second pass is served from the cache alone
        cached.try_read(a, n)
    assert cached.fetches == before


def test_invalidate_forgets_blocks_and_per_stop_results(dump):
    k = fresh_kernel(dump)
    first = mtasks.task_list(k)
    assert mtasks.task_list(k) is first            # kept while "stopped"
    k.reader.invalidate()
    assert mtasks.task_list(k) is not first        # the target moved: read again
    assert k.reader.stats()["blocks"] > 0


class FaultyReader(DumpReader):
    """The dump's real memory with some blocks made unreadable (a corrupt page)."""

    def __init__(self, d, bad_blocks):
        super().__init__(d)
        self.bad = set(bad_blocks)
        self._direct = None        # every read through _fetch, where the fault is injected

    def _fetch(self, addr, n):
        for b in range(addr // self.block, (addr + n - 1) // self.block + 1):
            if b in self.bad:
                raise MemoryFault(b * self.block, "corrupt page (injected)")
        return super()._fetch(addr, n)


def test_one_bad_task_page_does_not_sink_the_list(dump):
    good = mtasks.task_list(fresh_kernel(dump))

    def blocks(t):
        return set(range(t.addr // 4096, (t.addr + 5000) // 4096 + 1))
    # a kernel thread of no importance whose first page (with its `tasks` list_head) holds
    # no other task_struct (which tasks share pages depends on the dump)
    victim = next(t for t in reversed(good) if t.pid > 2 and t.is_kthread and t.pid == t.tgid
                  and not any(t.addr // 4096 in blocks(o) for o in good if o is not t))
    bad = {victim.addr // 4096}
    r = FaultyReader(dump, bad)
    got = mtasks.task_list(fresh_kernel(dump, r))
    # every other task is still there: the list is walked back from the head past the hole
    assert {t.addr for t in good if not blocks(t) & bad} <= {t.addr for t in got}
    assert victim.addr not in {t.addr for t in got}
    assert got.problems and any("unreadable" in p or "cannot read" in p for p in got.problems)


def test_walk_list_reports_loops_and_poison():
    # three list_heads at 0x1000, 0x1010, 0x1020 in recorded memory
    def mem(words):
        b = b"".join(w.to_bytes(8, "little") for w in words)
        return BytesReader({0x1000: b + bytes(4096 - len(b))})
    ok = walk_list(mem([0x1010, 0, 0x1020, 0, 0x1000, 0]), 0x1000)
    assert ok.nodes == [0x1010, 0x1020] and ok.stop is None
    loop = walk_list(mem([0x1010, 0, 0x1020, 0, 0x1010, 0]), 0x1000)
    assert loop.stop.startswith("cycle") and loop.nodes == [0x1010, 0x1020]
    poison = walk_list(mem([0x1010, 0, 0xdead000000000100, 0]), 0x1000)
    assert "LIST_POISON1" in poison.stop
    hole = walk_list(mem([0x1010, 0, 0x9000, 0]), 0x1000)
    assert hole.stop.startswith("cannot read") and hole.nodes == [0x1010, 0x9000]


def test_server_threads_come_from_the_model(dump):
    threads = dump.threads()
    tasks = mtasks.task_list(dump.kernel)
    assert sorted(th.tid for th in threads) == sorted(t.tid for t in tasks)
    assert all(th.task is t for th, t in zip(sorted(threads, key=lambda x: x.tid),
                                            sorted(tasks, key=lambda x: x.tid)))


def test_printk_records_equal_drgn(dump, drgn_prog):
    from drgn.helpers.linux.printk import get_printk_records
    from gdbkd.model.printk import prb_records
    want = [(r.timestamp, r.text) for r in get_printk_records(drgn_prog)]
    got = [(r.ts_nsec, r.text) for r in prb_records(fresh_kernel(dump))]
    assert got == want and len(got) > 100
