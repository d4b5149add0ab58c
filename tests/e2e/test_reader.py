"""kd's memory reader: the in-process dump reader with its block cache gives exactly what
reading every byte through gdb's target without a cache gives; live, the cache never
serves memory from before the guest moved; the dump server's threads are kd ps's tasks."""

import json
import re

import pytest

from conftest import gdbkd, module_dumps

pytestmark = pytest.mark.e2e

TD = MDF = None
_dumps = module_dumps(globals())

# every kd command with --json, over the test dump (pids from the dump's metadata)
COMMANDS = [
    "kd ps --json", "kd ps -S --json", "kd bt --json", "kd bt -a --json", "kd bt -f --json",
    "kd log --json", "kd mod --json", "kd sys --json", "kd runq --json", "kd analyze --json",
    "kd deadlock --json", "kd task --json", "kd foreach bt --json", "kd foreach task --json",
    "kd sym panic --json", "kd dis -l panic 4 --json", "kd rd -64 init_task 8 --json",
    "kd list -H init_task.tasks -o task_struct.tasks --json",
]


def _run_core(dump, vmlinux, cmds, *pre):
    ex = []
    for c in (*pre, *cmds):
        ex += ["-ex", "echo @@@\\n", "-ex", c]
    ex += ["-ex", "echo @@@\\n"]
    r = gdbkd("core", *map(str, dump if isinstance(dump, list) else [dump]), str(vmlinux),
              "-s", "--batch", *ex)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
    parts = r.stdout.split("@@@\n")[1:-1]
    return parts[len(pre):], r


@pytest.mark.parametrize("variant", ["elf", "mdf-zlib-d31.kdump"])
def test_json_identical_with_cache_on_and_off(variant):
    dump = TD.elf if variant == "elf" else MDF[variant]
    sleeper = TD.meta["sleepers"]["busybox-sleeper"]
    cmds = COMMANDS + [f"kd bt {sleeper} --json", f"kd task {sleeper} --json",
                       f"kd ps {sleeper} --json"]
    fast, r1 = _run_core(dump, TD.vmlinux, cmds + ["kd reader --json"])
    slow, r2 = _run_core(dump, TD.vmlinux, cmds + ["kd reader --json"], "kd reader --gdb --cache off")
    info_fast, info_slow = (json.loads(x) for x in (fast[-1], slow[-1]))
    assert info_fast["backend"] == "DumpReader" and info_fast["cache"]
    assert info_slow["backend"] == "GdbReader" and not info_slow["cache"]
    for c, a, b in zip(cmds, fast, slow):
        assert a == b, f"{c} differs:\n{a[:1500]}\n----\n{b[:1500]}"
        assert a.strip().startswith(("{", "[")), f"{c}: {a[:500]}"


def test_server_threads_are_kd_ps_tasks():
    out, r = _run_core(TD.elf, TD.vmlinux, ["info threads", "kd ps --json"])
    tids = {int(m.group(1)) for m in re.finditer(r"Thread (\d+)", out[0])}
    ps = json.loads(out[1])["tasks"]
    want = {t["pid"] if t["pid"] else 4194304 + t["cpu"] for t in ps}
    assert len(ps) > 50 and tids == want


def test_kd_alone_finds_threads_listed_late():
    """With only kd commands, gdb connects knowing the crashed task alone (the dump
    server lists the rest when gdb next asks: StubServer._listed); kd bt of a sleeping
    task and kd foreach bt still find every thread, and print what a session that
    listed every task at the start prints."""
    sleeper = TD.meta["sleepers"]["busybox-sleeper"]
    cmds = [f"kd bt {sleeper} --json", "kd foreach bt --json", "kd ps --json"]
    r = gdbkd("core", str(TD.elf), str(TD.vmlinux), "-s", "--batch",
              *[a for c in cmds for a in ("-ex", c)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[New Thread" not in r.stdout and "Traceback" not in r.stdout + r.stderr
    dec, text, docs = json.JSONDecoder(), r.stdout, []
    i = min(text.index(c) for c in "{[" if c in text)
    while len(docs) < len(cmds):
        doc, end = dec.raw_decode(text, i)
        docs.append(doc)
        i = min((text.index(c, end) for c in "{[" if c in text[end:]), default=len(text))
    eager, _ = _run_core(TD.elf, TD.vmlinux, cmds)       # its echo commands list every thread
    assert docs == [json.loads(x) for x in eager]
    frames = docs[0] if isinstance(docs[0], list) else docs[0].get("frames", docs[0])
    assert frames and "__switch_to" in json.dumps(docs[0])
