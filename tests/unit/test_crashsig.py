"""Crash titles and signatures (gdbkd/analysis/crashsig.py) on kd reports recorded in this run.

The inputs are not written by hand: a module fixture records ``kd analyze/deadlock/sys --json``
with ``gdbkd core`` from real dumps of the 6.1 guest (tests/triage_dumps.py, cached; made by a
QEMU boot each when missing): lab 1's NULL dereference, lab 5's ABBA deadlock and the test
dump's sysrq panic. The tests then classify those reports and copies of them changed the way
another boot, another KASLR offset or another build would change them.
"""

import copy
import json
import re

import pytest

from gdbkd.analysis.crashsig import classify, normalize_function

SHIFT = 0x1234_5000_0000        # another KASLR offset / another linear map


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    from triage_dumps import ensure_triage_dumps
    from gdbkd.triage.collect import kd_reports, identify, pick_vmlinux
    from gdbkd.qemu.profiles import load_profile
    from gdbkd.artifacts.kernel import ensure_kernel
    import os
    kdir = os.path.dirname(ensure_kernel(load_profile("debian-6.1")).vmlinux)
    out, d = {}, tmp_path_factory.mktemp("recorded")
    for name, path in ensure_triage_dumps(["lab1", "lab5", "sysrq-loop"]).items():
        rep = kd_reports(path, pick_vmlinux(identify(path), kdir))
        (d / f"{name}.json").write_text(json.dumps(rep))       # what the tests read
        out[name] = json.loads((d / f"{name}.json").read_text())
    return out


def sig(rep):
    return classify(rep["analyze"], rep["deadlock"], rep["sys"])


def _reoffset(s):
    """``func+0x1c`` → ``func+0x3c`` (another build's code layout)."""
    return re.sub(r"\+0x[0-9a-f]+", "+0x3c", s) if isinstance(s, str) else s


def _rehex(obj):
    """Every "0x…" address (kd's JSON gives every address so) moved by SHIFT."""
    f = lambda s: f"{int(s, 16) + SHIFT:#x}" if isinstance(s, str) and re.fullmatch(r"0x[0-9a-f]{9,}", s) else s
    if isinstance(obj, dict):
        return {f(k): _rehex(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rehex(v) for v in obj]
    return f(obj)


def test_titles_of_real_reports(rec):
    from gdbkd.labs import get_lab
    lab1 = get_lab(1)
    assert sig(rec["lab1"])["title"] == f"Oops: NULL pointer dereference in {lab1.fault_function} [{lab1.module}]"
    assert sig(rec["lab1"])["kind"] == "oops"
    t5 = sig(rec["lab5"])
    assert t5["kind"] == "deadlock"
    assert re.fullmatch(r"deadlock: mutex cycle of 2 tasks in lab5_\w+ \[lab5_abba\]", t5["title"]), t5
    assert sig(rec["sysrq-loop"])["title"] == "sysrq triggered crash"
    # the sysrq dump was taken while panic() spun in its delay loop: those frames are skipped
    assert sig(rec["sysrq-loop"])["frames"][0] == "sysrq_handle_crash"
    # signatures: 16 hex digits, one per crash
    sigs = {n: sig(r)["signature"] for n, r in rec.items()}
    assert all(re.fullmatch(r"[0-9a-f]{16}", s) for s in sigs.values())
    assert len(set(sigs.values())) == 3, sigs


@pytest.mark.parametrize("name", ["lab1", "lab5", "sysrq-loop"])
def test_signature_ignores_addresses_offsets_and_pids(rec, name):
    rep = copy.deepcopy(rec[name])
    moved = _rehex(rep)
    if moved["analyze"] and moved["analyze"].get("trap"):
        t = moved["analyze"]["trap"]
        t["fault_function"] = _reoffset(t.get("fault_function"))
        t.pop("registers", None)
    for t in (moved["deadlock"] or {}).get("tasks", {}).values():
        t["where"], t["pid"] = _reoffset(t["where"]), t["pid"] + 1000
    if moved["sys"] and moved["sys"].get("panic"):                  # another faulting address
        moved["sys"]["panic"]["message"] = re.sub(r"[0-9a-f]{16}", "0000000000000018",
                                                  moved["sys"]["panic"]["message"])
    assert moved != rec[name]
    assert sig(moved) == sig(rec[name])


def test_generic_unnamed_and_clone_frames_do_not_count(rec):
    rep = copy.deepcopy(rec["lab1"])
    bt = rep["analyze"]["backtrace"]
    top = next(i for i, f in enumerate(bt) if f.get("module"))         # lab1's faulting frame
    noise = [dict(bt[top], function=n, module=None) for n in ("dump_backtrace", "0xffff800008123456", "??")]
    bt[top:top] = noise
    for f in bt:
        if f["function"] == "lab1_init":
            f["function"] = "lab1_init.constprop.0"
    assert sig(rep) == sig(rec["lab1"])
    # but a different meaningful frame, or the same function in another module, is another crash
    other = copy.deepcopy(rec["lab1"])
    other["analyze"]["backtrace"][top]["module"] = "other_mod"
    assert sig(other)["signature"] != sig(rec["lab1"])["signature"]
    assert sig(other)["title"].endswith("[other_mod]")


def test_deadlock_cycle_order_does_not_count(rec):
    rep = copy.deepcopy(rec["lab5"])
    c = rep["deadlock"]["cycles"][0]
    c["tasks"].reverse()
    c["steps"].reverse()
    rep["deadlock"]["tasks"] = dict(reversed(list(rep["deadlock"]["tasks"].items())))
    assert sig(rep) == sig(rec["lab5"])


def test_blocked_without_a_cycle_is_a_hung_task(rec):
    rep = copy.deepcopy(rec["lab5"])
    dl = rep["deadlock"]
    dl["cycles"] = []
    dl["blocked_behind"] = [{"task": t, "chain": [t], "end": None, "end_kind": "unknown owner"} for t in dl["waits"]]
    s = sig(rep)
    assert s["kind"] == "hung task"
    assert re.fullmatch(r"hung task: 2 tasks blocked in lab5_\w+ \[lab5_abba\]", s["title"]), s
    assert s["signature"] != sig(rec["lab5"])["signature"]


def test_list_poison_and_panic_messages_are_classified_without_their_addresses(rec):
    rep = copy.deepcopy(rec["lab1"])
    rep["sys"]["panic"]["message"] = "Unable to handle kernel paging request at virtual address dead000000000100"
    s = sig(rep)
    assert s["kind"] == "list corruption" and s["title"].startswith("list corruption: LIST_POISON1 in lab1_")
    rep = copy.deepcopy(rec["sysrq-loop"])
    rep["sys"]["panic"]["message"] = "Kernel panic - not syncing: corrupted stack end detected at ffff000012345678"
    a = sig(rep)
    rep["sys"]["panic"]["message"] = "Kernel panic - not syncing: corrupted stack end detected at ffff000087654321"
    assert sig(rep) == a and a["kind"] == "panic" and "ffff" not in a["title"]


def test_normalize_function():
    assert normalize_function("lab1_attach_console+0x1c") == "lab1_attach_console"
    assert normalize_function("el0_svc_common.constprop.0") == "el0_svc_common"
    assert normalize_function("foo.isra.0.cold") == "foo"
    assert normalize_function("0x4c4c4c4c4c4c4c4c") is None
    assert normalize_function("") is None
