"""Kernel facts kept once, in the gdb-free model (issue 23): the timekeeper, the taint
letters, the modules, over the real 6.1 test dump with the per-vmlinux offsets registry's
layouts (what ``gdbkd core`` uses), against drgn 0.3.0 on the same dump."""

import pytest

from gdbkd.model.kernel import Kernel
from gdbkd.model.reader import DumpReader
from gdbkd.model import sysinfo, timekeeping

pytest.importorskip("drgn")


@pytest.fixture
def dump(td_dump):
    return td_dump


@pytest.fixture
def prog(td_drgn):
    return td_drgn


@pytest.fixture
def k(dump):
    return Kernel(DumpReader(dump), dump.kernel.types, dump.sym)


def test_timekeeper_equals_drgn(k, prog):
    from drgn.helpers.linux.timekeeping import ktime_get_coarse_ns
    tk = prog["tk_core"].timekeeper
    assert timekeeping.ktime_now(k) == ktime_get_coarse_ns(prog).value_()
    assert timekeeping.wall_clock_sec(k) == tk.xtime_sec.value_()
    from drgn.helpers.linux.timekeeping import uptime
    assert timekeeping.uptime_seconds(k) == uptime(prog)
    assert timekeeping.boot_wall_clock(k) == (tk.offs_real.value_() - tk.offs_boot.value_()) / 1e9
    assert timekeeping.uptime_seconds(k) > 0 and timekeeping.wall_clock_sec(k) > 0


def test_no_timekeeper_is_unknown(dump):
    k = Kernel(DumpReader(dump), dump.kernel.types, lambda n: None if n == "tk_core" else dump.sym(n))
    assert timekeeping.uptime_seconds(k) is None
    assert timekeeping.wall_clock_sec(k) is None and timekeeping.boot_wall_clock(k) is None


def _drgn_letters(prog, mask):
    return "".join(chr(t.c_true.value_()) for i, t in enumerate(prog["taint_flags"]) if mask >> i & 1)


def test_taint_equals_drgn(k, prog):
    mask = prog["tainted_mask"].value_()
    assert sysinfo.tainted(k) == (mask, _drgn_letters(prog, mask))
    every = (1 << len(prog["taint_flags"])) - 1
    letters = sysinfo.taint_letters(k, every)
    assert letters == _drgn_letters(prog, every) and len(letters) == len(prog["taint_flags"])
    assert sysinfo.taint_letters(k, 0) == ""


def test_taint_without_table_is_unknown(dump):
    k = Kernel(DumpReader(dump), dump.kernel.types,
               lambda n: None if n == "taint_flags" else dump.sym(n))
    assert sysinfo.taint_letters(k, 1) is None
    assert sysinfo.tainted(k)[1] is None


def test_modules_state_taints_bugs_equal_drgn(k, prog):
    from drgn.helpers.linux.module import for_each_module, module_taints
    from gdbkd.model.modules import module_list, module_state_name, module_bug_tables
    want = {m.value_(): m for m in for_each_module(prog)}
    mods = module_list(k)[0]
    assert [m.addr for m in mods] == list(want) and mods
    for m in mods:
        d = want[m.addr]
        state = prog.constant(f"MODULE_STATE_{module_state_name(k, m.state).upper()}")
        assert state.value_() == d.state.value_()
        assert sysinfo.taint_letters(k, m.taints) == module_taints(d)
    assert [(m.addr, t, n) for m, t, n in module_bug_tables(k)] == \
        [(a, d.bug_table.value_(), d.num_bugs.value_()) for a, d in want.items()]


def test_read_module_is_the_list_entry(k):
    from gdbkd.model.modules import module_list, read_module
    for m in module_list(k)[0]:
        assert read_module(k, m.addr) == m


def test_cpu_of_percpu_offset_and_current_task_equal_drgn(k, prog):
    from drgn.helpers.linux.cpumask import for_each_present_cpu, for_each_possible_cpu
    from drgn.helpers.linux.sched import cpu_curr, idle_task
    from gdbkd.model.percpu import cpu_offsets, cpu_of_percpu_offset
    from gdbkd.model.tasks import current_task, tasks_by_addr, IDLE_TID_BASE
    offs = cpu_offsets(k)
    for cpu, off in enumerate(offs):
        assert cpu_of_percpu_offset(k, off) == (cpu if offs.count(off) == 1 else None)
    assert cpu_of_percpu_offset(k, None) is None
    assert cpu_of_percpu_offset(k, max(offs) + 8) is None
    for cpu in for_each_present_cpu(prog):
        curr = cpu_curr(prog, cpu).value_()
        assert current_task(k, {}, cpu).addr == curr and current_task(k, {}, cpu).run_cpu == cpu
        # in EL1, SP_EL0 (current) names the task; in EL0 it is a user pointer: rq->curr
        other = next(a for a in tasks_by_addr(k) if a != curr)
        assert current_task(k, {"cpsr": 0x5, "SP_EL0": other}, cpu).addr == other
        assert current_task(k, {"cpsr": 0x0, "SP_EL0": other}, cpu).addr == curr
    assert current_task(k, {"cpsr": 0x5, "SP_EL0": 8}) is None
    by_addr = tasks_by_addr(k)
    for t in by_addr.values():
        assert t.run_cpu == (t.active_cpu if t.active_cpu is not None else t.cpu)
    for cpu in for_each_possible_cpu(prog):
        assert by_addr[idle_task(prog, cpu).value_()].tid == IDLE_TID_BASE + cpu


def test_utsname_load_memory_equal_drgn(k, prog, dump):
    name = prog["init_uts_ns"].name
    assert sysinfo.utsname(k) == {f: getattr(name, f).string_() for f in sysinfo.UTS_FIELDS}
    assert sysinfo.utsname(k)["release"].decode() == dump.osrelease
    av = [v.value_() for v in prog["avenrun"]]
    assert sysinfo.load_average(k) == [round((v >> 11) + ((v & 2047) * 100 >> 11) / 100, 2)
                                       for v in av]
    total = prog["memblock"].memory.total_size.value_()
    assert total and sysinfo.memory_bytes(k) == total


def test_memory_without_memblock_is_total_ram(dump, prog):
    k = Kernel(DumpReader(dump), dump.kernel.types, lambda n: None if n == "memblock" else dump.sym(n))
    pages = prog["_totalram_pages"].counter.value_()
    assert sysinfo.memory_bytes(k) == pages * sysinfo.page_size(k)


def _drgn_bug(prog, entry):
    """(brk address, file, line, flags) of one struct bug_entry, read by drgn."""
    base = entry.address_
    at = base + drgn_offsetof(entry, "bug_addr_disp")
    fo = base + drgn_offsetof(entry, "file_disp")
    file_ = prog.read(fo + entry.file_disp.value_(), 200).split(b"\0")[0].decode()
    return ((at + entry.bug_addr_disp.value_()) & (1 << 64) - 1, file_, entry.line.value_(),
            entry.flags.value_())


def drgn_offsetof(obj, member):
    import drgn
    return drgn.offsetof(obj.type_, member)


def test_bug_entries_equal_drgn(k, prog):
    """The vmlinux's BUG()/WARN() table as the model reads it (kd analyze's BUG explanation)."""
    from gdbkd.model.bug import bug_entry
    import drgn
    start = prog.symbol("__start___bug_table").address
    stop = prog.symbol("__stop___bug_table").address
    t = prog.type("struct bug_entry")
    n = (stop - start) // drgn.sizeof(t)
    assert n > 10
    for i in (0, 1, n // 2, n - 1):
        e = drgn.Object(prog, t, address=start + i * drgn.sizeof(t))
        pc, file_, line, flags = _drgn_bug(prog, e)
        b = bug_entry(k, pc)
        assert b is not None, hex(pc)
        assert (b["entry"], b["file"], b["line"], b["flags"]) == (e.address_, file_, line, flags)
        assert b["warning"] == bool(flags & 1) and b["table"] == "vmlinux __bug_table"
    # an address no entry names
    assert bug_entry(k, start) is None
