"""gdbkd core's preload thread (gdbkd/target/preload.py) on the real test dump: what it
hands kd equals what kd computes itself, and anything it cannot vouch for is left out."""

import json

import pytest

from tests.conftest import module_dumps
from gdbkd.model import tasks as mtasks
from gdbkd.model.kernel import Kernel
from gdbkd.model.reader import DumpReader
from gdbkd.target import preload

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())


@pytest.fixture(scope="module")
def dump(td_dump):
    return td_dump


def _rows(tl):
    return [(t.addr, t.pid, t.ppid, t.comm, t.state, t.active_cpu, t.idle_cpu) for t in tl]


def test_preloaded_task_list_is_the_model_s(dump):
    paths = [str(TD.elf)]
    preload.start(paths, dump.offsets["path"], dump.kaslr_offset or 0)
    assert preload.take([str(TD.elf) + "-other"]) is None       # only for exactly its paths
    got = preload.take(paths)
    assert got is not None and preload.take(paths) is None      # handed over once
    d, reader, k = got
    try:
        assert k is not None and k.reader is reader and reader.dump is d
        pre = mtasks.task_list(k)
        assert k.stop_store()                                    # computed in the thread
        want = mtasks.task_list(Kernel(DumpReader(dump), dump.kernel.types, dump.sym))
        assert len(want) > 50 and _rows(pre) == _rows(want)
    finally:
        d.close()


def test_open_only(dump):
    """walk=False (gdbkd core put gdb's symbols off and its first command lists no tasks):
    the dump and reader are handed over, nothing computed yet."""
    paths = [str(TD.elf)]
    preload.start(paths, dump.offsets["path"], dump.kaslr_offset or 0, walk=False)
    d, reader, k = preload.take(paths)
    try:
        assert k is not None and k.reader is reader and not k.stop_store()
        assert len(mtasks.task_list(k)) > 50
    finally:
        d.close()


def test_a_symbol_the_cache_lacks_drops_the_results(dump, tmp_path):
    data = json.loads(open(dump.offsets["path"]).read())
    del data["symbols"]["runqueues"]                  # kd would have asked gdb for it
    lay = tmp_path / "layouts.json"
    lay.write_text(json.dumps(data))
    preload.start([str(TD.elf)], str(lay), dump.kaslr_offset or 0)
    d, reader, k = preload.take([str(TD.elf)])
    try:
        assert k is None and reader is not None          # the dump is still handed over
    finally:
        d.close()


def test_a_bad_dump_is_left_to_kd(tmp_path):
    bad = tmp_path / "junk"
    bad.write_bytes(b"not a dump")
    preload.start([str(bad)], str(tmp_path / "none.json"), 0)
    assert preload.take([str(bad)]) is None
