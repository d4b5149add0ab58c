"""52-bit kernel VA (LPA2), 16K pages and pointer auth, on real dumps.

Debian's 6.12 arm64 kernels are built with VA_BITS=52 and LPA2; on QEMU's
``-cpu max`` (which has LPA2 and PAC) they run with a 52-bit linear map at
0xfff0... and sign return addresses. Three guests: the cloud kernel (4K pages,
5 levels of tables) and trixie's arm64-16k kernel (16K pages, 4 levels) on
``-cpu max``, and the 16K kernel on cortex-a76 (no LPA2: 47-bit VA, 3 levels), each
crashed with sysrq-c and dumped by QEMU as ELF and as kdump-zlib (whose 64K
blocks differ from both page sizes). Each dump is opened with ``gdbkd core``
and checked against drgn 0.3.0 on the same ELF file: every task, the crashed
task's and a sleeping task's backtraces (kd's frame-record unwinder, which
strips PACs; gdb 13's own unwinder cannot), and the report's trap.
"""

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

DRGN = r"""
import json, sys, drgn
from drgn.helpers.linux.pid import for_each_task
p = drgn.Program()
p.set_core_dump(sys.argv[1])
p.load_debug_info([sys.argv[2]])
tasks = sorted((t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(p))
sleeper = int(sys.argv[3])
t = next(t for t in for_each_task(p) if t.pid.value_() == sleeper)
print(json.dumps({"tasks": tasks,
                  "crashed": [f.name for f in p.crashed_thread().stack_trace()],
                  "sleeper": [f.name for f in p.stack_trace(t)]}))
"""


GUESTS = {"4k-lpa2": ("debian-6.12", "max"),      # the profile's cortex-a57 has no LPA2/PAC
          "16k-lpa2": ("debian-6.12-16k", None),   # the profile runs -cpu max itself
          "16k-47": ("debian-6.12-16k", "cortex-a76")}   # no LPA2: the kernel falls back to 47-bit VA


@pytest.fixture(scope="module", params=sorted(GUESTS))
def dump(request):
    from testdumps import ensure_test_dumps
    profile, cpu = GUESTS[request.param]
    return ensure_test_dumps(profile, "1G", cpu=cpu)


def _core(td, *ex, fmt="elf"):
    path = td.elf if fmt == "elf" else td.kdump_flat
    cmd = [sys.executable, "-m", "gdbkd", "core", str(path), str(td.vmlinux), "--batch"]
    for e in ex:
        cmd += ["-ex", e]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def _json_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith(("{", "[{", "[]"))]


@pytest.mark.parametrize("fmt", ["elf", "kdump-zlib"])
def test_tasks_and_backtraces_equal_drgn(dump, fmt):
    sleeper = dump.meta["sleepers"]["busybox-sleeper"]
    r = subprocess.run([sys.executable, "-c", DRGN, str(dump.elf), str(dump.vmlinux), str(sleeper)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])

    r = _core(dump, "kd ps --json", "kd bt --json", f"kd bt {sleeper} --json", fmt=fmt)
    assert r.returncode == 0, r.stderr[-1000:]
    ps, bt, sbt = _json_lines(r.stdout)[-3:]
    rows = ps["tasks"]
    # drgn's for_each_task leaves out the idle tasks (pid 0), crash's ps shows them
    got = sorted((t["pid"], t["comm"]) for t in rows if t["pid"])
    assert got == sorted(tuple(t) for t in ref["tasks"])
    assert sum(1 for t in rows if not t["pid"]) == 2          # swapper/0 and swapper/1

    def names(b):
        return [f["function"].split(".")[0] for f in b[0]["frames"]]
    # the crashed task_struct is in the linear map: [PAGE_OFFSET, +2^(VA-1)), PAGE_OFFSET = -2^VA
    va = 52 if "52-bit Virtual Addressing (LPA2)" in (dump.dir / "serial.log").read_text() else 47
    page_offset = (1 << 64) - (1 << va)
    assert page_offset <= int(bt[0]["task"], 16) < page_offset + (1 << (va - 1))
    assert names(bt) == ref["crashed"]
    assert names(sbt) == ref["sleeper"]


_BT_RE = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(")


def test_gdb_own_backtraces_equal_drgn(dump):
    """gdb's own unwinder (DWARF CFI) on every guest, pointer auth or not: the stub serves
    return addresses with their PAC stripped (VMCOREINFO KERNELPACMASK)."""
    sleeper = dump.meta["sleepers"]["busybox-sleeper"]
    r = subprocess.run([sys.executable, "-c", DRGN, str(dump.elf), str(dump.vmlinux), str(sleeper)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    switch = ("python [t.switch() for t in gdb.selected_inferior().threads() "
              f"if t.ptid[1] == {sleeper}]")
    r = _core(dump, "bt", "echo ==SLEEPER==\\n", switch, "bt", "monitor info")
    assert r.returncode == 0, r.stderr[-1000:]
    crashed, _, rest = r.stdout.partition("==SLEEPER==")
    names = lambda text: [m.group(1) for m in map(_BT_RE.match, text.splitlines()) if m]
    assert names(crashed.split("BACKTRACE:")[-1]) == ref["crashed"]
    assert names(rest) == ref["sleeper"]
    # the guests on -cpu max sign return addresses (and say so at boot); cortex-a76 has no PAC
    signs = "detected: Address authentication" in (dump.dir / "serial.log").read_text()
    assert ("pointer auth: kernel PAC mask" in r.stdout + r.stderr) == signs


def test_page_size_from_the_dump(dump):
    r = _core(dump, "monitor info", "kd sys")
    assert r.returncode == 0, r.stderr[-1000:]
    want = 16384 if "16k" in dump.meta["release"] else 4096
    lpa2 = "52-bit Virtual Addressing (LPA2)" in (dump.dir / "serial.log").read_text()
    out = r.stdout + r.stderr                 # gdb shows the stub's monitor text on stderr
    assert f"page size {want}\n" in out
    if lpa2:
        assert "va bits 52\n" in out
        assert ("page table levels 4 (LPA2)" if want == 16384 else "page table levels 5 (LPA2)") in out
    else:                                     # 16K pages, 47-bit VA: 3 levels of 11 bits + 14
        assert want == 16384 and "va bits 47\n" in out and "page table levels 3\n" in out


def test_report_names_the_panic(dump):
    r = _core(dump)
    assert r.returncode == 0, r.stderr[-1000:]
    assert "TRAP: panic" in r.stdout
    # from panic()'s fmt argument (gdb's unwinder) or, under pointer auth, from the log
    msg = next(l for l in r.stdout.splitlines() if l.startswith("MESSAGE: "))
    assert msg in ("MESSAGE: sysrq triggered crash",
                   "MESSAGE: Kernel panic - not syncing: sysrq triggered crash")
    assert " #0  " in r.stdout and "sysrq_handle_crash" in r.stdout
