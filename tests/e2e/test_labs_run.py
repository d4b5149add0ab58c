"""Every lab on the Debian 6.1 kernel reaches its expected end state (real QEMU + gdb)."""

import json
import re

import pytest

from conftest import gdbkd

pytestmark = pytest.mark.e2e


def _labs():
    from gdbkd.labs import list_labs
    return list_labs()


@pytest.mark.parametrize("lab", _labs(), ids=lambda l: f"lab{l.number}-{l.slug}")
def test_lab_reaches_expected_end_state(lab, kernel61, no_leftover_qemu):
    _run_and_check(lab, "6.1")


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["5.10", "6.12"])
@pytest.mark.parametrize("lab", _labs(), ids=lambda l: f"lab{l.number}-{l.slug}")
def test_lab_on_other_kernels(lab, kernel, no_leftover_qemu):
    _run_and_check(lab, kernel)


def _run_and_check(lab, kernel):
    r = gdbkd("lab", "run", str(lab.number), "--kernel", kernel, "--batch", "--json", "--timeout", "150",
              timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    trap = rep["report"]["trap"]
    if lab.expect == "oops":
        assert trap and trap["trap"] == "die", rep["stopped"]
        # the faulting instruction is in the lab's function
        assert trap["fault_function"].split("+")[0] == lab.fault_function
        assert lab.fault_function in [f["function"] for f in rep["report"]["backtrace"]]
        if lab.fault_address:
            want = int(lab.fault_address, 0)
            # the oops message prints FAR with the top (TBI tag) byte cleared; FAR_EL1 keeps it
            assert trap["far"] == want or (want >> 56 == 0 and trap["far"] & ((1 << 56) - 1) == want)
    else:
        assert "interrupted after the console showed" in rep["stopped"]
        blocked = set(re.findall(r"task (\S+):\d+ blocked for more than", rep["console"]))
        assert blocked == set(lab.hang_comms) | set(lab.victim_comms)
