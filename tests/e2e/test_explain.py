"""kd analyze explains the fault in C, and module frames are named right without a .ko.

Real guests (QEMU + gdb, Debian 6.1): the truth fixture tests/e2e/kdexplain_mod, loaded
with argument values drawn for this run, faults on ``c->table[i]`` with ``c->table``
NULL; labs 1-4 fault as their C sources say. The explanation is checked against what
the C source line at the faulting pc dereferences, and against the values drawn here.
Module names are checked against drgn's reading of the module's kallsyms, on the dump
opened with no .ko available at all (a private gdbkd cache holding only the kernel).
"""

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GDBKD, ROOT, gdbkd

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parent / "kdexplain_mod"


def _report(r):
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def kdx(kernel61, tmp_path_factory):
    """(values drawn, live report, dump path) of the kdexplain fixture's crash."""
    rnd = random.Random()
    vals = {"a": rnd.randrange(1, 1 << 40), "b": rnd.randrange(1, 1 << 62), "idx": rnd.randrange(1, 5000)}
    dump = tmp_path_factory.mktemp("kdx") / "kdx.elf"
    r = gdbkd("run", "--module", str(FIXTURE), "--exec",
              f"insmod /lib/modules/gdbkd/kdexplain.ko a={vals['a']} b={vals['b']} idx={vals['idx']}",
              "--batch", "--json", "--timeout", "150", "--dump-on-crash", str(dump), timeout=600)
    rep = _report(r)
    yield vals, rep, dump
    dump.unlink(missing_ok=True)


def _source_line(frame):
    return Path(frame["file"]).read_text().splitlines()[frame["line"] - 1]


def test_fixture_null_member_array_live(kdx):
    vals, rep, _ = kdx
    ex = rep["report"]["explanation"]
    assert ex["summary"] == (f"`c->table` is NULL; reading `c->table[i]`, i = {vals['idx']}, "
                             f"at offset {vals['idx'] * 4:#x}"), ex
    assert int(ex["far"], 16) == vals["idx"] * 4          # addresses and registers: "0x…"
    assert ex["base"]["expression"] == "c->table" and int(ex["base"]["value"], 16) == 0
    assert ex["index"]["expression"] == "i" and int(ex["index"]["value"], 16) == vals["idx"]
    leaf = next(f for f in rep["report"]["backtrace"] if f["function"] == "kdx_leaf")
    assert "c->table[i]" in _source_line(leaf)


def _core(dump, vmlinux, *ex, env=None):
    args = [*GDBKD, "core", str(dump), str(vmlinux), "--batch"]
    for e in ex:
        args += ["-ex", e]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=ROOT,
                          stdin=subprocess.DEVNULL, env=env)


def test_fixture_explained_on_the_dump_with_the_ko_found_by_build_id(kdx, kernel61):
    """gdbkd core finds the .ko gdbkd built (by build-id, no --modules-dir), says so, and
    the report explains the same fault as live."""
    vals, rep, dump = kdx
    r = _core(dump, kernel61.vmlinux, "kd analyze --json")
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"module kdexplain: symbols loaded from (\S+/kdexplain\.ko) at 0x[0-9a-f]+ "
                  r"\(build-id [0-9a-f]+ found in gdbkd's module cache\)", r.stdout)
    assert m, r.stdout[:2000]
    assert "/.cache/gdbkd/modules/" in m.group(1) or os.environ.get("GDBKD_CACHE", "") in m.group(1)
    data = json.loads([line for line in r.stdout.splitlines() if line.startswith("{")][-1])
    assert data["explanation"]["summary"] == rep["report"]["explanation"]["summary"]


DRGN_KALLSYMS = r"""
import json, sys, drgn
from drgn.helpers.linux.module import for_each_module
from drgn.helpers.linux.kallsyms import module_kallsyms
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]], default=False, main=True)
out = {}
for m in for_each_module(prog):
    name = m.name.string_().decode()
    init = (m.init_layout.base.value_(), m.init_layout.size.value_())
    out[name] = {"init": init, "syms": [(s.name, s.address, s.size) for s in module_kallsyms(m)]}
print(json.dumps(out))
"""


def _no_ko_env(tmp_path, kernel61):
    """A gdbkd cache with the kernel (and its offsets) but no module builds: no .ko for
    the test module anywhere."""
    from gdbkd.cache import cache_root
    c = tmp_path / "cache"
    c.mkdir()
    for sub in ("kernels", "offsets"):
        if (cache_root() / sub).exists():
            (c / sub).symlink_to(cache_root() / sub)
    return dict(os.environ, GDBKD_CACHE=str(c))


def test_module_names_without_ko_agree_with_drgn(kdx, kernel61, tmp_path):
    vals, rep, dump = kdx
    env = _no_ko_env(tmp_path, kernel61)
    r = _core(dump, kernel61.vmlinux, "kd bt --json", "kd analyze --json", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "module kdexplain: no .ko found (give --modules-dir); its names come from the " \
           "module's kallsyms, without DWARF" in r.stdout
    jsons = [json.loads(line) for line in r.stdout.splitlines() if line.startswith(("{", "[{"))]
    bt, an = jsons[0][0], jsons[1]
    ref = json.loads(subprocess.run([sys.executable, "-c", DRGN_KALLSYMS, str(dump), str(kernel61.vmlinux)],
                                    capture_output=True, text=True, check=True, timeout=300).stdout)
    mod = ref["kdexplain"]
    init_lo, init_size = mod["init"]
    frames = [f for f in bt["frames"] if f["module"] == "kdexplain"]
    names = [f["function"] for f in frames]
    assert names == ["kdx_leaf", "kdx_mid", "kdx_top", "kdexplain_init"], names
    for f in frames:
        pc = int(f["pc"], 16)
        at = pc if f["kind"] == "exact" else pc - 4
        drgn_names = {n for n, a, s in mod["syms"] if a <= at < a + s}
        assert f["function"] in drgn_names, (f, drgn_names)
        assert f["debuginfo"].startswith("no DWARF")
        if f["function"] == "init_module" or "init_module" in drgn_names:
            assert init_lo <= at < init_lo + init_size
    # the report: same names, and the explanation says why it cannot go further
    rnames = [f["function"] for f in an["backtrace"] if f.get("module") == "kdexplain"]
    assert rnames == names
    assert all(f["function"] != "init_module" for f in an["backtrace"])
    assert an["explanation"]["summary"] is None
    assert "no DWARF" in an["explanation"]["unknown"]
    # kd sym by address and by name, from kallsyms
    leaf = next(a for n, a, s in mod["syms"] if n == "kdx_leaf")
    r = _core(dump, kernel61.vmlinux, f"kd sym --json {leaf + 8:#x} kdx_mid", env=env)
    syms = json.loads([line for line in r.stdout.splitlines() if line.startswith("[{")][-1])
    assert (syms[0]["name"], syms[0]["offset"], syms[0]["module"]) == ("kdx_leaf", 8, "kdexplain")
    assert int(syms[1]["addr"], 16) == next(a for n, a, s in mod["syms"] if n == "kdx_mid")


def _labs():
    from gdbkd.labs import list_labs
    return [lab for lab in list_labs() if lab.number in (1, 2, 3, 4)]


@pytest.mark.parametrize("lab", _labs(), ids=lambda lab: f"lab{lab.number}")
def test_lab_fault_explained(lab, kernel61, tmp_path, no_leftover_qemu):
    """The explanation names what the lab's C source dereferences at the faulting line."""
    dump = tmp_path / "lab.elf"
    rep = _report(gdbkd("lab", "run", str(lab.number), "--batch", "--json", "--timeout", "150",
                        "--dump", str(dump), timeout=900))
    ex = rep["report"]["explanation"]
    assert ex["summary"], ex
    frame = next(f for f in rep["report"]["backtrace"] if f["function"] == lab.fault_function)
    line = _source_line(frame)
    assert int(ex["far"], 16) == int(lab.fault_address, 0)
    if lab.number == 2:
        # list_for_each_entry_safe(pos, n, head, node) steps with n = list_next_entry(n, node):
        # it reads n->node.next, and at the fault pos == n (DWARF puts both in one register)
        assert "list_for_each_entry_safe(pos, n, head, node)" in line, line
        assert {ex["base"]["expression"], *ex["base"]["also"]} == {"pos", "n"}
    else:
        assert ex["expression"] in line, (ex["expression"], line)
    want = {1: ("port", "port->irq", 0x10), 3: ("calib", "calib->offset", 0),
            4: ("buf", "buf[i]", 0)}
    if lab.number in want:
        base, expr, off = want[lab.number]
        assert ex["base"]["expression"] == base and int(ex["base"]["value"], 16) == 0
        assert ex["expression"] == expr and ex["offset"] == off
        assert ex["summary"].startswith(f"`{base}` is NULL; reading `{expr}`")
    else:
        # lab 2: LIST_POISON; the entry removed by list_del() is checked in memory by drgn
        lp = ex["list_poison"]
        assert lp["poison"] == "LIST_POISON1" and lp["list_member"] == "node"
        assert ex["expression"].endswith("->node.next")
        assert [h["symbol"].split()[0] for h in lp["heads"]] == ["lab2_sessions"]
        assert lp["removed_entries"]
        check = r"""
import sys, drgn
prog = drgn.Program(); prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]], default=False, main=True)
for a in sys.argv[3:]:
    a = int(a, 0)
    # struct lab2_session: node at 0x8, state at 0x20 (LAB2_DEAD = 2)
    print(hex(prog.read_u64(a + 8)), hex(prog.read_u64(a + 16)), prog.read_u32(a + 32))
"""
        out = subprocess.run([sys.executable, "-c", check, str(dump), str(kernel61.vmlinux),
                              *[d["address"] for d in lp["removed_entries"]]],
                             capture_output=True, text=True, check=True, timeout=300).stdout.split("\n")
        for row in filter(None, out):
            assert row.split() == ["0xdead000000000100", "0xdead000000000122", "2"], row
        assert all(h["contains_removed"] == [] for h in lp["heads"])
