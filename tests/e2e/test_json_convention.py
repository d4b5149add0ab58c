"""Every kd command's --json follows docs/commands.md "JSON convention", checked structurally
on the 6.1 test dump (tests/testdumps.py) in one ``gdbkd core`` session: every registered
command (read from gdb's ``help kd``) is run, those that take an argument with one taken
from the dump (its sleepers' pids, its symbols, the start of its RAM).

The rules checked, over every value of every document: no JSON integer of 2^48 or more
(an address must be a string), every "0x…" string lowercase, every ``task`` a "0x…"
string (or null with pid and comm null: a wait-queue entry that is no task) with ``pid``
and ``comm`` in the same object, and addresses seen (so the test cannot pass on empty
documents).
"""

import json
import re

import pytest

from conftest import module_dumps
from test_reader import _run_core

pytestmark = pytest.mark.e2e

TD = MDF = None
_dumps = module_dumps(globals())

_HEX = re.compile(r"0x[0-9a-f]+")
_HEXISH = re.compile(r"0[xX][0-9a-fA-F]+")


def _ram_start(elf) -> int:
    """The lowest physical address of the dump's RAM (its PT_LOAD segments)."""
    from elftools.elf.elffile import ELFFile
    with open(elf, "rb") as f:
        return min(s["p_paddr"] for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD")


def _invocations(td, user_va) -> dict:
    """{command name: [its invocations]}: each command with and without its options
    (USER_VA: an address mapped in the sleeper's user space)."""
    s = td.meta["sleepers"]["busybox-sleeper"]
    r = td.meta["sleepers"]["busybox-reader"]
    return {
        "ps": ["kd ps", "kd ps -S", f"kd ps {s}"],
        "bt": ["kd bt", "kd bt -a", f"kd bt -f -e -t --args {s}", f"kd bt -l {r}"],
        "args": [f"kd args 0 {s}"],
        "unwind": [f"kd unwind --explain {s}"],
        "foreach": ["kd foreach bt", "kd foreach IN bt --args", "kd foreach task", "kd foreach ps"],
        "task": ["kd task", f"kd task -R pid {s} {r}"],
        "log": ["kd log"],
        "mod": ["kd mod"],
        "sym": ["kd sym panic", "kd sym init_task"],
        "dis": ["kd dis -l panic 4"],
        "rd": ["kd rd -64 init_task 8", "kd rd -s init_task 4", "kd rd -32 -d init_task 4",
               "kd rd -a init_uts_ns.name.release"],
        "list": ["kd list -H init_task.tasks -o task_struct.tasks"],
        "check": ["kd check"],
        "runq": ["kd runq"],
        "sys": ["kd sys"],
        "analyze": ["kd analyze"],
        "deadlock": ["kd deadlock"],
        "reader": ["kd reader"],
        "kmem": ["kd kmem -s", "kd kmem -i", "kd kmem -S task_struct", "kd kmem init_task",
                 "kd kmem $sp", "kd kmem init_task.tasks.next", "kd kmem -p init_task.tasks.next"],
        "search": ["kd search -k init_task"],
        "vtop": ["kd vtop init_task", "kd vtop init_task.tasks.next", f"kd vtop -c {s} {user_va:#x}"],
        "ptov": [f"kd ptov {_ram_start(td.elf):#x}"],
        "struct": ["kd struct task_struct.pid,comm,stack init_task", "kd struct -o list_head init_task.tasks"],
        "union": ["kd union -o rcu_special"],
        "whatis": ["kd whatis init_task"],
        "files": ["kd files", f"kd files {r}", "kd files -d init_task.fs.root.dentry"],
        "vm": [f"kd vm -f {s}", f"kd vm -p {r}"],
        "mount": ["kd mount", "kd mount -n"],
        "net": ["kd net", "kd net -s 1"],
        "irq": ["kd irq", "kd irq -s"],
        "timer": ["kd timer", "kd timer -r"],
        "dev": ["kd dev", "kd dev -d"],
        "waitq": ["kd waitq oom_reaper_wait"],
        "tree": ["kd tree -t rbtree vmap_area_root", "kd tree -t maple &init_mm.mm_mt",
                 "kd tree -t radix &irq_desc_tree"],
        # last: it relocates the symbols (to where they are: the offset the dump was made with)
        "symbols": [f"kd symbols --offset {td.meta['kernel_offset_log']} --no-check --no-modules"],
    }


def _violations(doc, path="$"):
    """(rule broken, where, value) for every place DOC breaks the convention; and the
    number of "0x…" strings seen."""
    bad, seen = [], 0
    if isinstance(doc, dict):
        if "task" in doc:
            t = doc["task"]
            if not (isinstance(t, str) and _HEX.fullmatch(t)
                    or t is None and doc.get("pid") is None and doc.get("comm") is None):
                bad.append(("task is not a \"0x…\" string", path, t))
            if "pid" not in doc or "comm" not in doc:
                bad.append(("task without pid and comm beside it", path, sorted(doc)))
        items = [(f"{path}.{k}", v) for k, v in doc.items()]
    elif isinstance(doc, list):
        items = [(f"{path}[{i}]", v) for i, v in enumerate(doc)]
    else:
        items = []
        if isinstance(doc, int) and not isinstance(doc, bool) and abs(doc) >= 1 << 48:
            bad.append(("an int of 2^48 or more (an address as a number?)", path, doc))
        if isinstance(doc, str) and _HEXISH.fullmatch(doc):
            seen += 1
            if not _HEX.fullmatch(doc):
                bad.append(("not a lowercase \"0x…\"", path, doc))
    for p, v in items:
        b, n = _violations(v, p)
        bad += b
        seen += n
    return bad, seen


def test_violations_are_found():
    """The checker itself: each rule it enforces is caught."""
    assert not _violations({"task": "0xffff000012345678", "pid": 1, "comm": "sh",
                            "waiter": {"task": None, "pid": None, "comm": None}})[0]
    assert _violations({"addr": 0xffff000012345678})[0]
    assert _violations({"task": "0xffff000012345678", "pid": 1})[0]
    assert _violations({"task": {"task": "0x1", "pid": 1, "comm": "x"}, "pid": 1, "comm": "x"})[0]
    assert _violations({"task": 0x12345678, "pid": 1, "comm": "x"})[0]
    assert _violations(["0xFFFF000012345678"])[0]
    assert _violations([{"x": {"y": [-(1 << 63)]}}])[0]


def test_every_command_follows_the_json_convention():
    s = TD.meta["sleepers"]["busybox-sleeper"]
    (help_kd, vm), _ = _run_core(TD.elf, TD.vmlinux, ["help kd", f"kd vm --json {s}"])
    todo = _invocations(TD, int(json.loads(vm)["vmas"][0]["start"], 16))
    registered = set(re.findall(r"^kd (\w+) -- ", help_kd, re.M))
    assert len(registered) > 30, help_kd[:2000]
    assert registered <= set(todo), f"kd commands this test does not run: {registered - set(todo)}"
    cmds = [c + " --json" for name in todo for c in todo[name]]
    outs, r = _run_core(TD.elf, TD.vmlinux, cmds)
    assert "Error occurred in Python" not in r.stderr, r.stderr[-3000:]
    total, failures = 0, []
    for c, out in zip(cmds, outs):
        assert out.strip().startswith(("{", "[")), (c, out[:300], r.stderr[-2000:])
        bad, seen = _violations(json.loads(out))
        total += seen
        failures += [(c, *b) for b in bad[:5]]
    assert not failures, "\n".join(map(str, failures[:40]))
    assert total > 1000, total
    # the documents that name tasks do name them: the convention is exercised, not skipped
    by_cmd = dict(zip(cmds, outs))
    for c in ("kd ps --json", "kd bt -a --json", "kd foreach task --json", "kd files --json",
              "kd waitq oom_reaper_wait --json", "kd analyze --json", f"kd vtop -c {s} "):
        out = next(o for k, o in by_cmd.items() if k.startswith(c))
        assert '"task": "0x' in out, (c, out[:500])
