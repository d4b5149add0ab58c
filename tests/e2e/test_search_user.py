"""kd search -u PID: a task's user memory through its own page tables, on the shared
6.1 test dump (tests/testdumps.py), against drgn 0.3.0 reading every page of the same
VMAs with ``access_remote_vm``.

(test_kmem_other_kernels.py runs the same check on 5.10 and 6.12.) Two needles in
busybox-sleeper: its name (in its argv/environment on the stack and in
the binary's data) and a pointer into its own stack (many saved frame pointers), which
kd finds through its 5-byte probe. Bad input: a kernel thread, an unknown pid, -u with
-p, each one line.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_kd_state import _run_core

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent

DRGN_REF = r"""
import json, sys, drgn
from drgn import FaultError
from drgn.helpers.linux.pid import find_task
from drgn.helpers.linux.mm import access_remote_vm, for_each_vma
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
mm = find_task(prog, int(sys.argv[3])).mm
ps = prog["PAGE_SIZE"].value_() if "PAGE_SIZE" in prog else 4096
vmas = []
pages = {}
for v in for_each_vma(mm):
    vmas.append([v.vm_start.value_(), v.vm_end.value_()])
    for a in range(v.vm_start.value_(), v.vm_end.value_(), ps):
        try:
            pages[a] = access_remote_vm(mm, a, ps)
        except FaultError:
            pass
stack = next(v for v in vmas if v[0] <= mm.start_stack.value_() < v[1])
words = []
for a in range(stack[0], stack[1], ps):
    d = pages.get(a, b"")
    words += [int.from_bytes(d[i:i + 8], "little") for i in range(0, len(d), 8)]
value = next(w for w in words if stack[0] <= w < stack[1])
def find(pat, align):
    out = []
    for a in sorted(pages):
        buf = pages[a] + pages.get(a + ps, b"")[:len(pat) - 1]
        i = buf.find(pat)
        while 0 <= i < ps:
            if (a + i) % align == 0:
                out.append(a + i)
            i = buf.find(pat, i + 1)
    return out
print(json.dumps({"vmas": vmas, "value": value, "pages": len(pages), "ps": ps,
                  "string": find(b"busybox-sleeper", 1),
                  "word": find(value.to_bytes(8, "little"), 8)}))
"""


def test_user_search_equals_drgn():
    from testdumps import ensure_test_dumps
    check_user_search(ensure_test_dumps("debian-6.1", "1G"))


def check_user_search(td):
    """kd search -u (a string, a word) on the dump ``td`` equals drgn's page-by-page scan."""
    pid = td.meta["sleepers"]["busybox-sleeper"]
    r = subprocess.run([sys.executable, "-c", DRGN_REF, str(td.drgn_core()), str(td.vmlinux), str(pid)],
                       capture_output=True, text=True, timeout=600, cwd=HERE.parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    ref = json.loads(r.stdout.strip().splitlines()[-1])
    cmds = [f"kd search --json -u {pid} -c busybox-sleeper", f"kd search --json -u {pid} {ref['value']:#x}"]
    s, w = (json.loads(x) for x in _run_core(td.elf, td.vmlinux, cmds))
    for got, want in ((s, ref["string"]), (w, ref["word"])):
        assert [int(h["addr"], 16) for h in got["hits"]] == want and want
        assert got["scanned_bytes"] == ref["pages"] * ref["ps"]
        assert got["user"]["pid"] == pid and got["user"]["comm"] == "busybox-sleeper"
        for h in got["hits"]:
            v = h["vma"]
            assert [int(v["start"], 16), int(v["end"], 16)] in ref["vmas"]
            assert h["region"] == "user"
    names = {h["vma"]["name"] for h in s["hits"]}
    assert "[stack]" in names                            # argv[0] and the environment


def test_user_search_bad_input_is_one_line():
    from testdumps import ensure_test_dumps
    from conftest import gdbkd
    td = ensure_test_dumps("debian-6.1", "1G")
    bad = ["kd search -u 2 -c x", "kd search -u 99999 -c x", "kd search -u 1 -p 0x10"]
    args = ["core", str(td.elf), str(td.vmlinux), "-s", "--batch"]
    for c in bad:
        args += ["-ex", c]
    r = gdbkd(*args)
    errs = [l for l in r.stderr.splitlines() if l.startswith("kd search")]
    assert "Traceback" not in r.stderr
    assert len(errs) == 3, r.stderr[-2000:]
    assert "kernel thread" in errs[0] and "no task 99999" in errs[1] and "not allowed" in errs[2]
