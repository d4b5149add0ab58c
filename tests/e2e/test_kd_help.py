"""Help from the parser (issue 23, item 9): `kd CMD -h` and `help kd CMD` print argparse's
own help, the same text, every option with its help and no hand-written Usage block, for
every kd command gdb lists under `help kd` (run in gdb on the cached test dump)."""

import re

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e

MARK = "@@KDHELP@@"

# Inside gdb: every kd command's parser, every action but -h/--help with a help text and
# every positional with a metavar (crash's words, not the dest). One line per fault.
_CHECK = f'''
import argparse, importlib
import gdbkd.commands as kc
for n in kc._module_names():
    importlib.import_module("gdbkd.commands." + n)
for name, cls in sorted(kc.COMMANDS.items()):
    p = cls(register=False).parser
    for a in p._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        what = "/".join(a.option_strings) or a.dest
        if not (a.help or "").strip():
            print("{MARK}FAULT kd %s: %s has no help" % (name, what))
        if not a.option_strings and a.metavar is None:
            print("{MARK}FAULT kd %s: positional %s has no metavar" % (name, what))
print("{MARK}CHECKED %d" % len(kc.COMMANDS))
'''


@pytest.fixture(scope="module")
def dump():
    from testdumps import ensure_test_dumps
    return ensure_test_dumps()


def _core(td, *ex):
    args = ["core", str(td.elf), str(td.vmlinux), "--batch", "-s"]
    for e in ex:
        args += ["-ex", e]
    r = gdbkd(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def _commands(td):
    r = _core(td, "help kd")
    names = re.findall(r"^kd (\S+) -- ", r.stdout, re.M)
    assert len(names) >= 30, r.stdout
    return names


def test_help_is_the_parsers_for_every_command(dump):
    names = _commands(dump)
    ex = []
    for n in names:
        ex += [f"echo {MARK}H {n}\\n", f"kd {n} -h", f"echo {MARK}G {n}\\n", f"help kd {n}"]
    r = _core(dump, *ex)
    parts = re.split(rf"^{MARK}([HG]) (\S+)\n", r.stdout, flags=re.M)
    got = {(parts[i], parts[i + 1]): parts[i + 2].rstrip() for i in range(1, len(parts), 3)}
    faults = []
    for n in names:
        h, g = got.get(("H", n), ""), got.get(("G", n), "")
        if not h.startswith(f"usage: kd {n} "):
            faults.append(f"kd {n} -h: not argparse's usage: {h[:80]!r}")
        elif h != g:
            faults.append(f"kd {n}: `help kd {n}` differs from `kd {n} -h`")
        if re.search(r"^\s*Usage:", h, re.M):
            faults.append(f"kd {n}: a hand-written Usage: line")
        if "options:" not in h and "optional arguments:" not in h:
            faults.append(f"kd {n} -h: no option list")
    assert not faults, "\n".join(faults) + "\n" + r.stderr[-1000:]


def test_every_option_has_help(dump, tmp_path):
    script = tmp_path / "check_help.py"
    script.write_text(_CHECK)
    r = _core(dump, f"source {script}")
    lines = [l[len(MARK):] for l in r.stdout.splitlines() if l.startswith(MARK)]
    assert any(l.startswith("CHECKED ") for l in lines), r.stdout[-2000:] + r.stderr[-2000:]
    faults = [l[len("FAULT "):] for l in lines if l.startswith("FAULT ")]
    assert not faults, "\n".join(faults)
