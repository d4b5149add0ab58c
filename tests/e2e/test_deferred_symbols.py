"""`gdbkd core --batch` with only kd commands: gdb loads the vmlinux's symbols when a
command first needs them (gdbkd/kernel/symbols.py ``defer_load``), and every command
prints what it prints when they are loaded from the start.

The real 6.1 test dump (1 GiB, KASLR). The same kd commands run twice: once with
only kd -ex commands (symbols put off), once with a gdb command among them (gdbkd
core then loads the symbols before anything runs); their JSON must be equal. The
deferred run shows, through ``kd reader --json``, that `kd kmem` (-s, ADDR, -p, -i),
`kd ps` and `kd search` (naming hits in the kernel image) left the symbols unloaded and
that a command needing gdb's DWARF (`kd bt`) loaded them.
"""

import json

import pytest

from conftest import gdbkd
from tests.conftest import module_dumps

pytestmark = pytest.mark.e2e

TD = MDF = None
_dumps = module_dumps(globals())


def _json_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.startswith(("{", "["))]


def test_symbols_load_when_needed_and_change_nothing():
    first = gdbkd("core", str(TD.elf), TD.vmlinux, "-s", "--batch", "-ex", "kd kmem -s --json")
    assert first.returncode == 0, first.stderr[-2000:]
    caches = _json_lines(first.stdout)[0]["caches"]
    kc = next(c for c in caches if c["name"] == "kmem_cache")
    task_cache = next(c for c in caches if c["name"] == "task_struct")
    from gdbkd.target import open_dump
    with open_dump(str(TD.elf), TD.vmlinux) as d:
        value = f"{d.sym('init_task'):x}"         # a number: naming it is gdb's job
    cmds = ["kd kmem -s --json", "kd ps --json", f"kd kmem {task_cache['cache_addr']} --json",
            f"kd kmem -p {kc['cache_addr']} --json", "kd kmem -i --json", "kd reader --json",
            f"kd search {value} --json", "kd reader --json", "kd bt --json", "kd reader --json"]
    args = ["core", str(TD.elf), TD.vmlinux, "-s", "--batch"]
    for c in cmds:
        args += ["-ex", c]
    lazy = gdbkd(*args)
    eager = gdbkd(*args, "-ex", "echo")          # a gdb command: symbols loaded at once
    assert lazy.returncode == 0 and eager.returncode == 0, (lazy.stderr[-2000:], eager.stderr[-2000:])
    lj, ej = _json_lines(lazy.stdout), _json_lines(eager.stdout)
    assert len(lj) == len(ej) == len(cmds), (lazy.stdout[-3000:], lazy.stderr[-2000:])
    readers = [i for i, c in enumerate(cmds) if c.startswith("kd reader")]
    # kmem -s, ps, kmem ADDR, -p and -i read only the model (page flags and vm stat items
    # are enums of the offsets cache): still deferred
    assert lj[readers[0]]["gdb_symbols"] == "deferred", lj[readers[0]]
    # search names its hits in the kernel image from the vmlinux's own symbol table
    # (where it settles gdb's answer): still deferred; bt needs gdb's DWARF: loaded
    assert lj[readers[1]]["gdb_symbols"] == "deferred", lj[readers[1]]
    assert lj[readers[2]]["gdb_symbols"] == "loaded", lj[readers[2]]
    assert all(ej[i]["gdb_symbols"] == "loaded" for i in readers)
    for i, c in enumerate(cmds):
        if i in readers:
            continue
        assert lj[i] == ej[i], c
    # the output is about something: the slab object, the page's flags, memory, hits, frames
    assert lj[2]["cache"] == "kmem_cache" and lj[2]["allocated"] is True, lj[2]
    assert lj[3]["page"]["slab"] and "slab" in lj[3]["page"]["flag_names"], lj[3]
    assert lj[4], lj[4]
    assert len(lj[6]["hits"]) > 3 and any("symbol" in h for h in lj[6]["hits"])
    assert lj[8][0]["frames"][0]["function"], lj[8]


def test_which_starts_put_the_symbols_off():
    """Only a batch of kd commands starting with a symbol-free one puts gdb's symbols off
    (a first `kd bt` needs them: loaded at start, while gdb's Python walks the tasks)."""
    from gdbkd.postmortem import session
    assert session._symbol_free_start(["kd kmem -s", "kd bt"])
    assert session._symbol_free_start(["kd search -k 0x1234"])
    assert not session._symbol_free_start(["kd bt", "kd kmem -s"])
    assert not session._symbol_free_start(["kd"]) and not session._symbol_free_start([])
    assert not session._symbol_free_start(["kmem -s"])
