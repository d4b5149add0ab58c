"""kd analyze on a BUG(): the explanation names the file:line of the module's bug table entry,
which must be the line of tests/e2e/kdbug_mod/kdbug.c marked KDBUG-HERE."""

import json
from pathlib import Path

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parent / "kdbug_mod"


def test_bug_explained_with_its_bug_table_file_line(kernel61, no_leftover_qemu):
    want = next(i for i, l in enumerate((FIXTURE / "kdbug.c").read_text().splitlines(), 1)
                if "BUG_ON(" in l and "KDBUG-HERE" in l)
    r = gdbkd("run", "--module", str(FIXTURE), "--exec", "insmod /lib/modules/gdbkd/kdbug.ko",
              "--exec", "echo 1 > /sys/kernel/debug/kdbug/bug", "--batch", "--json",
              "--timeout", "150", timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    ex = json.loads(r.stdout.strip().splitlines()[-1])["report"]["explanation"]
    assert ex["instruction"]["text"] == "brk #0x800"
    bug = ex["bug"]
    assert Path(bug["file"]).name == "kdbug.c" and bug["line"] == want and not bug["warning"]
    assert bug["table"] == "kdbug bug_table"
    assert ex["summary"].startswith("BUG() at ") and ex["summary"].endswith(f"kdbug.c:{want}")
