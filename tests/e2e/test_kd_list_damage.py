"""Damaged kernel lists through whole `gdbkd core` runs (issue 26): real gdb-multiarch, the
real dump server, a copy of the real 6.1 makedumpfile ELF dump with the damage written
at the physical file offsets of the words (tests/listdamage.py). One copy per kind of
damage, planted at once in the task, module, slab-cache, mount and net-device lists
and the oom_reaper's wait queue.

The 5.10 and 6.12 test dumps (QEMU ELF, 1 GiB copies) run the same in the slow tier.
What is expected comes from the same dump: the intact copy's `kd ps`, `kd mod` and
`kd kmem -s` (every entry of the damaged run's output equals them, each once), and
the recovered counts from the intact walks."""

import json

import pytest

from conftest import gdbkd
from tests.conftest import module_dumps
from listdamage import KERNELS, KINDS, kernel_dumps, list_heads, model_kernels, patched_dump_copy, plant
from gdbkd.model.lists import walk_list

pytestmark = pytest.mark.e2e

TD = MDF = None
_dumps = module_dumps(globals())

CMDS = ["kd ps --json", "kd mod --json", "kd kmem -s --json", "kd check --json", "kd check",
        "kd ps", "kd mod", "kd kmem -s", "kd mount", "kd net", "kd analyze --json", "kd analyze",
        "kd waitq oom_reaper_wait --json", "kd waitq oom_reaper_wait"]
#: the list kd check's row names, the command whose output shows the list, its entries' key
SHOWN = {"tasks": ("task list (init_task.tasks) and thread lists", "ps", "tasks", "task"),
         "modules": ("module list (modules)", "mod", "modules", "module"),
         "slab caches": ("slab cache list (slab_caches)", "kmem", "caches", "cache_addr")}
#: the commands whose text output the lines hold
TEXT = ("ps", "mod", "kmem", "mount", "net", "waitq")
#: kd check's row and the command that shows the list, for the others
ROWS = {"mounts": ("mounts of init's namespace", "mount"),
        "net devices": ("net device lists (net.dev_base_head)", "net"),
        "wait queue": (None, "waitq")}         # not one of kd check's lists: kd waitq's JSON


def _run(path, vmlinux):
    args = ["core", str(path), str(vmlinux), "-s", "--batch"]
    for c in CMDS:
        args += ["-ex", c]
    p = gdbkd(*args)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "Traceback" not in p.stdout + p.stderr, (p.stdout[-3000:], p.stderr[-3000:])
    js = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    assert len(js) == 6, p.stdout[-3000:]
    return js, p.stdout


@pytest.fixture(scope="module", params=KERNELS)
def intact(request):
    from gdbkd.target import open_dump
    td = kernel_dumps(request.param, TD)
    # 6.1: the makedumpfile ELF (71 MB, cheap to copy); the others: the QEMU ELF (1 GiB)
    src, vmlinux = MDF["mdf-elf-d31.elf"] if td is TD else td.elf, td.vmlinux
    d = open_dump(src, vmlinux)
    kernel = model_kernels(d, src, vmlinux)
    k = kernel()
    walks = {name: (head, off, walk_list(k.reader, head, entry_offset=off))
             for name, (head, off) in list_heads(k).items()}
    js, _ = _run(src, vmlinux)
    yield d, src, vmlinux, walks, js
    d.close()


def assert_said(expected, got, clean, check, lines):
    """EXPECTED ({list: plant()'s expectation plus "entry"}) is what kd said: GOT and CLEAN
    are the damaged and intact JSON by command ("ps", "mod", "kmem", "waitq"), CHECK kd check's JSON, LINES
    the text output of kd check and of the commands showing each list."""
    assert check["ok"] is False
    rows = {r["list"]: r for r in check["lists"]}
    for name, exp in expected.items():
        row = SHOWN[name][0] if name in SHOWN else ROWS[name][0]
        probs = rows[row]["problems"] if row is not None else got[ROWS[name][1]]["problems"]
        assert len(probs) == 1, (name, probs)
        p = probs[0]
        assert p["kind"] == exp["kind"] and p["recovered"] == exp["recovered"], (name, p)
        assert p["node"] == f"{exp['node']:#x}" and _key(p["value"]) == exp["value"], (name, p)
        assert p["entry"] == (f"{exp['entry']:#x}" if exp["entry"] is not None else None)
        if row is not None:
            assert f"kd check: {p['line']}" in lines, name    # one text line each
        if name in SHOWN:
            _, cmd, key, field = SHOWN[name]
            now = [_key(e[field]) for e in got[cmd][key]]
            want = [_key(e[field]) for e in clean[cmd][key]]
            assert len(now) == len(set(now)), f"{name}: an entry shown twice"
            assert set(now) == set(want), name
            # the command's own JSON and text say the same problem
            assert [q["line"] for q in got[cmd]["problems"]] == [p["line"]], name
        else:
            cmd = ROWS[name][1]
        if cmd in TEXT:
            assert f"kd {cmd}: {p['line']}" in lines, name
    assert len(check["problems"]) == len([n for n in expected if n not in ROWS or ROWS[n][0]])


def _key(v):
    return int(v, 16) if isinstance(v, str) else v


@pytest.mark.parametrize("kind", KINDS)
def test_damage_said_by_every_command(intact, kind, tmp_path):
    d, src, vmlinux, walks, clean = intact
    assert clean[3]["ok"] and clean[3]["problems"] == [] and clean[4]["damaged_lists"] == []
    patches, expected = {}, {}
    for name, (head, off, w) in walks.items():
        assert w.stop is None and w.nodes
        if kind == "loop-back" and len(w.nodes) < 2:
            continue                  # one entry: no earlier one to loop back to
        p, exp = plant(kind, head, w.nodes)
        patches.update(p)
        exp["entry"] = None if exp["node"] == head else exp["node"] - off
        expected[name] = exp
    assert "tasks" in expected and "slab caches" in expected
    js, text = _run(patched_dump_copy(d, src, tmp_path / "damaged.elf", patches), vmlinux)
    names = ("ps", "mod", "kmem", "check", "analyze", "waitq")
    assert_said(expected, dict(zip(names, js)), dict(zip(names, clean)), js[3], text.splitlines())
    check = js[3]
    # the crash report carries the same evidence, as JSON and one line each under its heading
    assert js[4]["damaged_lists"] == check["problems"]
    lines = text.splitlines()
    at = lines.index("DAMAGED LISTS (kd check):")
    assert lines[at + 1:at + 1 + len(check["problems"])] == [f"    {p['line']}" for p in check["problems"]]



def test_triage_shows_the_damage(intact, tmp_path):
    """gdbkd triage of a dump with a damaged task list: the row carries the lines and the
    text report shows them under the dump (its title stays the crash's: a sysrq panic)."""
    d, src, vmlinux, walks, clean = intact
    head, off, w = walks["tasks"]
    patches, exp = plant("null", head, w.nodes)
    bad = patched_dump_copy(d, src, tmp_path / "damaged.elf", patches)
    r = gdbkd("triage", str(bad), "--vmlinux", str(vmlinux), "-j", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    row, = json.loads(r.stdout)["dumps"]
    assert row["ok"] and row["kind"] == "sysrq", row.get("error")
    line, = row["damaged_lists"]
    assert line.startswith("task list (init_task.tasks) damaged at ") and "->next is NULL" in line
    text = gdbkd("triage", str(bad), "--vmlinux", str(vmlinux), "-j", "1")
    assert f"damaged: {line}" in [x.strip() for x in text.stdout.splitlines()]
