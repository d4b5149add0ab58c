"""kd list checks every back link against its walk (drgn's validate_list, lx-list-check),
in real gdb-multiarch on the real 6.1 guest of test_kd_commands.py (its kdtest module's
3-entry list): the test writes the half-done states of a racy list_add and list_del
itself and kd list must name the entry whose link disagrees."""

import json

import pytest

from test_kd_commands import guest, _kd_results    # noqa: F401  (the module's guest fixture)

pytestmark = pytest.mark.e2e


def test_list_prev_checked_against_walk(guest):  # noqa: F811
    h, off = guest.list_head, guest.list_off
    clean, = guest.kd_json(f"kd list -o {off} -H {h:#x}")
    assert clean["stop"] is None and clean["count"] == 3 and clean["link_error"] is None
    e = [int(x, 16) for x in clean["entries"]]
    n0, n1, n2 = (x + off for x in e)                  # the three list_heads
    res = _kd_results(guest, [
        # list_add(new=n1) between n0 and n2, stopped before next->prev = new
        f"set {{unsigned long}}{n2 + 8:#x} = {n0:#x}",
        f"kd list --json -o {off} -H {h:#x}",
        f"kd list -o {off} -H {h:#x}",
        f"kd list --json -r -o {off} -H {h:#x}",
        f"set {{unsigned long}}{n2 + 8:#x} = {n1:#x}",
        # list_del(n1) stopped after prev->next = next, before next->prev = prev
        f"set {{unsigned long}}{n0:#x} = {n2:#x}",
        f"kd list --json -o {off} -H {h:#x}",
        f"set {{unsigned long}}{n0:#x} = {n1:#x}",
        # the head's own prev stale (list_add_tail's window)
        f"set {{unsigned long}}{h + 8:#x} = {n1:#x}",
        f"kd list --json -o {off} -H {h:#x}",
        f"set {{unsigned long}}{h + 8:#x} = {n2:#x}",
        f"kd list --json -o {off} -H {h:#x}",
    ])
    outs = [r for r in res if r["cmd"].startswith("kd list")]
    assert all(r["err"] is None for r in outs), outs
    add = json.loads(outs[0]["out"])
    assert add["count"] == 3 and add["stop"] is None             # the next chain is whole
    assert add["bad_link"] == {"entry": f"{e[2]:#x}", "list_head": f"{n2:#x}", "field": "prev",
                               "value": f"{n0:#x}", "expected": f"{n1:#x}"}
    last = outs[1]["out"].splitlines()[-1]
    assert last.startswith("kd list: entry ") and f"->prev is {n0:#x}" in last, outs[1]["out"]
    # backwards the stale prev is followed (head <- n2 <- n0): n0->next is then the
    # link that disagrees
    back = json.loads(outs[2]["out"])
    assert back["entries"] == [f"{e[2]:#x}", f"{e[0]:#x}"] and back["stop"] is None
    assert back["bad_link"] == {"entry": f"{e[0]:#x}", "list_head": f"{n0:#x}", "field": "next",
                                "value": f"{n1:#x}", "expected": f"{n2:#x}"}
    dele = json.loads(outs[3]["out"])
    assert dele["entries"] == [f"{e[0]:#x}", f"{e[2]:#x}"]
    assert dele["bad_link"]["entry"] == f"{e[2]:#x}" and dele["bad_link"]["value"] == f"{n1:#x}"
    assert dele["bad_link"]["expected"] == f"{n0:#x}"
    tail = json.loads(outs[4]["out"])
    assert tail["count"] == 3 and tail["bad_link"]["list_head"] == f"{h:#x}"
    assert tail["bad_link"]["expected"] == f"{n2:#x}" and tail["bad_link"]["value"] == f"{n1:#x}"
    restored = json.loads(outs[5]["out"])
    assert restored["link_error"] is None and restored["entries"] == clean["entries"]
