"""Every model module over recorded real memory, against drgn's answers on the same dump.

Each snapshot (tests/model/data/*.json.gz, made by ``python -m tests.model.record`` from a
real dump of a real kernel booted under QEMU) holds what the model read and drgn 0.3.0's
answer to each check of tests/model/checks.py. A test replays one check on one snapshot:
the model reads only the recorded memory, and its answer must equal drgn's.
"""

import json

import pytest

from tests.model.checks import CHECKS
from tests.model.snapshot import Snapshot, snapshots, NotRecorded

pytestmark = pytest.mark.model

_SNAPS = {p.name.removesuffix(".json.gz"): p for p in snapshots()}
_loaded = {}


def snap(name) -> Snapshot:
    if name not in _loaded:
        _loaded[name] = Snapshot(_SNAPS[name])
    return _loaded[name]


def _cases():
    for sname in sorted(_SNAPS):
        for cname in sorted(CHECKS):
            yield pytest.param(sname, cname, id=f"{sname}:{cname}")


def test_there_are_snapshots():
    assert _SNAPS, "no recorded snapshots in tests/model/data"
    for name in _SNAPS:
        s = snap(name)
        assert s.meta["release"] and s.oracle


@pytest.mark.parametrize("sname,cname", list(_cases()))
def test_model_equals_drgn(sname, cname):
    s = snap(sname)
    rec = s.oracle.get(cname)
    if rec is None:
        pytest.fail(f"{sname} has no answer for {cname}: record it again (python -m tests.model.record)")
    if "skip" in rec:
        pytest.skip(f"{s.meta['release']}: {rec['skip']}")
    assert "error" not in rec, rec["error"]
    try:
        got = json.loads(json.dumps(CHECKS[cname]["model"](s.kernel())))
    except NotRecorded as e:
        pytest.fail(f"the model now asks for {e}, which {sname} did not record: record it again")
    assert got == rec["value"]
