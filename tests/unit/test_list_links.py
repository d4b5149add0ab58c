"""walk_list's back-link check (check_prev: drgn's validate_list, lx-list-check) over
recorded memory: small lists written word by word, and the real task list of the
6.1 test dump recorded list_head by list_head, then one link edited in the copy."""

import pytest

from tests.conftest import module_dumps
from gdbkd.model.reader import BytesReader, DumpReader
from gdbkd.model.lists import walk_list

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())


def _mem(words, base=0x1000):
    b = b"".join(w.to_bytes(8, "little") for w in words)
    return BytesReader({base: b + bytes(4096 - len(b))})


# head 0x1000, entries 0x1010, 0x1020: a consistent ring is (next, prev) per list_head
RING = [0x1010, 0x1020, 0x1020, 0x1000, 0x1000, 0x1010]


def test_consistent_ring_both_directions():
    for direction in ("next", "prev"):
        w = walk_list(_mem(RING), 0x1000, direction=direction, check_prev=True)
        assert w.stop is None and w.link_error is None and w.bad_link is None
        assert w.nodes == ([0x1010, 0x1020] if direction == "next" else [0x1020, 0x1010])
    # an entry as the start (crash's list ADDR): the same ring, checked the same way
    w = walk_list(_mem(RING), 0x1010, include_head=True, check_prev=True)
    assert w.nodes == [0x1010, 0x1020, 0x1000] and w.link_error is None


def test_racy_prev_is_reported_and_walk_goes_on():
    bad = list(RING)
    bad[5] = 0x1000            # entry 0x1020: prev should be 0x1010 (a half-done list_add)
    w = walk_list(_mem(bad), 0x1000, entry_offset=0x10, check_prev=True)
    assert w.nodes == [0x1010, 0x1020] and w.stop is None       # next chain still complete
    assert w.bad_link == {"node": 0x1020, "field": "prev", "value": 0x1000, "expected": 0x1010}
    assert "entry 0x1010 (list_head 0x1020): ->prev is 0x1000" in w.link_error
    assert "reached it from 0x1010" in w.link_error and "\n" not in w.link_error
    # without the check nothing is said (the other walkers keep their cost)
    assert walk_list(_mem(bad), 0x1000).link_error is None


def test_head_prev_checked_when_walk_returns():
    bad = list(RING)
    bad[1] = 0x1010            # head->prev should be the last entry 0x1020
    w = walk_list(_mem(bad), 0x1000, check_prev=True)
    assert w.stop is None and w.bad_link["node"] == 0x1000
    assert w.bad_link["expected"] == 0x1020 and w.bad_link["value"] == 0x1010


def test_backward_walk_checks_next():
    bad = list(RING)
    bad[2] = 0x1000            # 0x1010->next should be 0x1020
    w = walk_list(_mem(bad), 0x1000, direction="prev", check_prev=True)
    assert w.bad_link == {"node": 0x1010, "field": "next", "value": 0x1000, "expected": 0x1020}


def test_first_disagreement_only_and_stop_reasons_kept():
    bad = list(RING)
    bad[2] = 0xdead000000000100          # 0x1010->next poisoned: the walk stops there
    w = walk_list(_mem(bad), 0x1000, check_prev=True)
    assert "LIST_POISON1" in w.stop
    assert w.link_error is None          # 0x1010's prev is right; the head is never returned to
    # four list_heads: 0x1020->prev and the head's prev both wrong; the walk meets 0x1020 first
    bad = [0x1010, 0x1020, 0x1020, 0x1000, 0x1030, 0x1000, 0x1000, 0x1020]
    w = walk_list(_mem(bad), 0x1000, check_prev=True)
    assert w.nodes == [0x1010, 0x1020, 0x1030]
    assert w.bad_link["node"] == 0x1020 and w.bad_link["expected"] == 0x1010


def test_unreadable_entry_still_stops_with_reason():
    w = walk_list(_mem([0x1010, 0x1010, 0x9000, 0x1000]), 0x1000, check_prev=True)
    assert w.stop.startswith("cannot read the list_head at 0x9000") and w.nodes == [0x1010, 0x9000]


@pytest.fixture(scope="module")
def recorded_tasks():
    """The real dump's init_task.tasks ring, each list_head recorded from the dump
    (16 bytes each: read uncached, as the reader's blocks would need whole pages)."""
    from gdbkd.target import open_dump
    with open_dump(MDF["mdf-zlib-d31.kdump"], TD.vmlinux) as d:
        off = d.kernel.offset("struct task_struct", "tasks")
        head = d.sym("init_task") + off
        real = walk_list(DumpReader(d), head, entry_offset=off)
        assert real.stop is None and len(real.nodes) > 20
        regions = {n: DumpReader(d).read(n, 16) for n in [head, *real.nodes]}
    return head, off, real.nodes, regions


def test_real_task_list_is_consistent(recorded_tasks):
    head, off, nodes, regions = recorded_tasks
    w = walk_list(BytesReader(regions, cache=False), head, entry_offset=off, check_prev=True)
    assert w.nodes == nodes and w.stop is None and w.link_error is None
    back = walk_list(BytesReader(regions, cache=False), head, direction="prev", entry_offset=off, check_prev=True)
    assert back.nodes == nodes[::-1] and back.link_error is None


def test_real_task_list_with_a_racy_prev(recorded_tasks):
    """list_add's window: new->next and prev->next written, next->prev not yet."""
    head, off, nodes, regions = recorded_tasks
    k = len(nodes) // 2
    victim, stale = nodes[k], nodes[k - 2]
    regions = dict(regions)
    regions[victim] = regions[victim][:8] + stale.to_bytes(8, "little")
    w = walk_list(BytesReader(regions, cache=False), head, entry_offset=off, check_prev=True)
    assert w.nodes == nodes and w.stop is None
    assert w.bad_link == {"node": victim, "field": "prev", "value": stale, "expected": nodes[k - 1]}
    assert f"entry {victim - off:#x} (list_head {victim:#x})" in w.link_error
