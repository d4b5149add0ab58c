"""Record the model tier's snapshots from real dumps (run by hand; the output is committed).

    .venv/bin/python -m tests.model.record [NAME ...]

Each snapshot: a real dump made by the project's own scripts (tests/testdumps.py), every
check of tests/model/checks.py answered by the model over a recording reader (what it
read is kept) and by drgn 0.3.0 (the oracle). A check where the two disagree at record
time is recorded all the same: the test over the snapshot then fails, as it should.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from tests.model.checks import CHECKS, Skip                   # noqa: E402
from tests.model.snapshot import (DATA, RecordingReader, RecordingTypes,   # noqa: E402
                                  write_snapshot)


def _drgn_types(prog):
    """DrgnTypes (tests/unit/test_model_state.py) with enums: layouts from drgn's reading of
    the vmlinux's DWARF, proven equal to gdb's there."""
    import drgn
    from tests.unit.test_model_state import DrgnTypes

    class Types(DrgnTypes):
        def member(self, typename, path):
            try:
                return super().member(typename, path)
            except TypeError:
                # a flexible array member (drgn has no size for it), or a path through
                # an array that is not a struct (no such member, as gdb says)
                try:
                    return drgn.offsetof(prog.type(typename), path), 0, "b"
                except (TypeError, LookupError, ValueError):
                    return None

        def enum(self, name):
            try:
                t = prog.type(name)
            except LookupError:
                return None
            return {e.name: e.value for e in (t.enumerators or ())}
    return Types(prog)


def _json(v):
    import json
    return json.loads(json.dumps(v))


def record(name, dump_path, vmlinux, meta_extra=None, drgn_path=None):
    """The model reads DUMP_PATH as gdbkd opens it; drgn reads DRGN_PATH (default: the
    same file; a dump without a VMCOREINFO note: gdbkd convert's core of it)."""
    import drgn
    from gdbkd.target import open_dump
    from gdbkd.model.kernel import Kernel
    from gdbkd.model.reader import DumpReader
    prog = drgn.Program()
    prog.set_core_dump(str(drgn_path or dump_path))
    prog.load_debug_info([str(vmlinux)])
    d = open_dump(str(dump_path), str(vmlinux))
    symbols = {}

    def symbol(n):
        if n not in symbols:
            try:
                symbols[n] = prog.symbol(n).address
            except LookupError:
                symbols[n] = None
        return symbols[n]

    reader = RecordingReader(DumpReader(d))
    types = RecordingTypes(_drgn_types(prog))
    oracle, bad = {}, []
    for cname, pair in sorted(CHECKS.items()):
        try:
            want = _json(pair["oracle"](prog))
        except Skip as e:
            oracle[cname] = {"skip": str(e)}
            continue
        except Exception as e:                  # the recorder's boundary: report, go on
            print(f"  {cname}: drgn raised {type(e).__name__}: {e}")
            oracle[cname] = {"error": f"drgn raised {type(e).__name__}: {e}"}
            bad.append(cname)
            continue
        k = Kernel(reader, types, symbol)       # a fresh per-stop store for each check
        oracle[cname] = {"value": want}
        try:
            got = _json(pair["model"](k))
        except Exception as e:                  # the recorder's boundary: report, go on
            print(f"  {cname}: the model raised {type(e).__name__}: {e}")
            bad.append(cname)
            continue
        if got != want:
            print(f"  {cname}: model {str(got)[:300]}\n  {' ' * len(cname)}  drgn  {str(want)[:300]}")
            bad.append(cname)
    meta = {"release": d.osrelease, "build_id": d.build_id, "format": d.format,
            "source": Path(dump_path).name, **(meta_extra or {})}
    d.close()
    DATA.mkdir(parents=True, exist_ok=True)
    out = DATA / f"{name}.json.gz"
    write_snapshot(out, meta, reader, types, symbols, oracle)
    print(f"{out.relative_to(ROOT)}: {out.stat().st_size} bytes, {len(oracle)} checks"
          + (f"; the model disagrees with drgn on: {', '.join(bad)}" if bad else ""))
    return bad


def main(names):
    from testdumps import ensure_test_dumps
    todo = {}
    # rlk-5.0: the course's 5.0 (legacy log_buf, pre-5.4 layouts); its kernel has no
    # qemu_fw_cfg, so the QEMU ELF dump has no VMCOREINFO note: gdbkd finds VMCOREINFO in
    # RAM, drgn opens gdbkd convert's core of the same dump (TestDumps.drgn_core)
    for profile, series in (("rlk-5.0", "5.0"), ("debian-5.10", "5.10"), ("debian-6.1", "6.1"),
                            ("debian-6.12", "6.12")):
        if names and f"linux-{series}-qemu-elf" not in names:
            continue
        td = ensure_test_dumps(profile)
        drgn_path = td.drgn_core()
        made_by = f"tests/testdumps.py ensure_test_dumps({profile!r}): QEMU ELF dump"
        if drgn_path != td.elf:
            made_by += f"; drgn read gdbkd convert's core of it ({drgn_path.name})"
        todo[f"linux-{series}-qemu-elf"] = (td.elf, td.vmlinux, {"made_by": made_by}, drgn_path)
    unknown = sorted(set(names) - set(todo))
    if unknown:
        print(f"no such snapshot: {', '.join(unknown)}")
        return 2
    bad = []
    for name, (dump, vml, meta, drgn_path) in todo.items():
        bad += record(name, dump, vml, meta, drgn_path)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
