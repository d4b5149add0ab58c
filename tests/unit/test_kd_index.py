"""kd's commands registered from the cached index (gdbkd/commands/__init__.py
``register_all``), in a real gdb-multiarch.

The first start in an empty cache imports every command module and writes the index;
the next registers each command from the index and imports its module when the
command first runs. Both starts must offer the same commands with the same help, and
a command run from the index must behave as the real one (here: its usage error)."""

import json
import os
import subprocess

from gdbkd import gdbpython

PROBE = ("python import sys, json; print('MODS ' + json.dumps(sorted(m for m in sys.modules "
         "if m.startswith('gdbkd.commands.'))))")


def _gdb(cache, *ex):
    env = dict(os.environ, GDBKD_CACHE=str(cache))
    argv = ["gdb-multiarch", "-nx", "-batch", "-iex", "set auto-load no",
            "-ex", gdbpython.boot_command(probe=False)]
    for e in ex:
        argv += ["-ex", e]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                       stdin=subprocess.DEVNULL)
    return r.stdout, r.stderr


def _mods(out):
    return json.loads(next(l for l in out.splitlines() if l.startswith("MODS "))[5:])


def test_index_gives_the_same_commands_and_help(tmp_path):
    helps = ["help kd"] + [f"help kd {c}" for c in ("kmem", "bt", "search", "union", "ptov")]
    first, err1 = _gdb(tmp_path, *helps, PROBE, "kd kmem --no-such-flag")
    assert list((tmp_path / "kd-commands").glob("*.json")), err1      # the index is written
    assert "gdbkd.commands.kmem" in _mods(first)                        # by a full import
    second, err2 = _gdb(tmp_path, *helps, PROBE, "kd kmem --no-such-flag", PROBE)
    assert second.split("MODS ")[0] == first.split("MODS ")[0]          # the same help text
    assert "kd kmem --" in first and "kd union --" in first
    before, after = [_mods(b) for b in ("MODS " + p for p in second.split("MODS ")[1:])]
    assert "gdbkd.commands.kmem" not in before and "gdbkd.commands.bt" not in before
    assert "gdbkd.commands.kmem" in after and "gdbkd.commands.bt" not in after
    # the real command's own error (no vmlinux here), through the stand-in
    assert err2.strip() == err1.strip() and err2.strip(), (err1, err2)
    index = json.loads(next((tmp_path / "kd-commands").glob("*.json")).read_text())
    assert {"kmem", "bt", "search", "vtop", "ptov", "struct", "union", "whatis"} <= \
        {name for name, _module, _doc in index}
