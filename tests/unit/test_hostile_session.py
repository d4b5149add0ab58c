"""One bad page must not sink a session (issue 14): real dumps with the page of one
task_struct made unreadable, served through the real RSP server; and the server's
own hostile input (unterminated packets, junk, out-of-order thread queries)."""

import os

import pytest

from gdbkd.target import open_dump
from gdbkd.target.dump import UNREADABLE_TID_BASE
from conftest import module_dumps
from hostile import unreadable_task_copy
from test_stub_protocol import Client

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())


def _with_bad_task_page(tmp_path, pick):
    bad = tmp_path / "bad.kdump"
    return bad, unreadable_task_copy(MDF["mdf-zlib-d31.kdump"], bad, TD.vmlinux, pick)


def test_unreadable_task_is_left_out_with_a_warning(tmp_path):
    sleeper = TD.meta["sleepers"]["busybox-sleeper"]
    bad, addr = _with_bad_task_page(tmp_path, lambda d: next(
        t.task for t in d.threads() if t.task.pid == sleeper))
    with open_dump(MDF["mdf-zlib-d31.kdump"], TD.vmlinux) as good:
        before = {t.tid for t in good.threads()}
    d = open_dump(bad, TD.vmlinux)
    err = open(tmp_path / "stderr", "w+")
    c = Client(d, err)
    try:
        threads = d.threads()
        tids = {t.tid for t in threads}
        assert sleeper not in tids
        # only the tasks sharing the bad page are gone; the crashed task leads
        assert len(before - tids) <= 3 and tids <= before
        assert threads[0].tid == d.crashed_thread.tid and threads[0].task.name != "<unreadable>"
        assert any(f"task {addr:#x} unreadable" in p for p in d.thread_problems), d.thread_problems
        c.cmd("qSupported:error-message+")
        assert c.cmd("qfThreadInfo").startswith(b"m")
        r = c.cmd(f"m{addr:x},40").decode()
        assert r.startswith("E.corrupt page descriptor for pfn"), r
        assert c.cmd(f"m{threads[0].task.addr:x},8") != b"E14"      # the rest still reads
    finally:
        c.close()
        d.close()
    err.seek(0)
    text = err.read()
    assert f"gdbkd stub: {addr:#x}: corrupt page descriptor for pfn" in text
    assert f"gdbkd stub: warning: task {addr:#x} unreadable" in text


def test_unreadable_crashed_task_keeps_its_cpu_thread(tmp_path):
    """The crashed CPU's running task unreadable: a thread with the CPU's registers
    from the notes still leads the list, so gdb's bt of the crash works."""
    bad, addr = _with_bad_task_page(tmp_path, lambda d: d.crashed_thread.task)
    with open_dump(MDF["mdf-zlib-d31.kdump"], TD.vmlinux) as good:
        regs = good.crashed_thread.regs
        cpu = good.crashed_cpu
    with open_dump(bad, TD.vmlinux) as d:
        first = d.threads()[0]
        assert first.tid == UNREADABLE_TID_BASE + cpu and first.active_cpu == cpu
        assert first.regs[:33] == regs[:33] and first.task.name == "<unreadable>"
        assert any(f"CPU {cpu}'s running task {addr:#x} could not be read" in p
                   for p in d.thread_problems)


# -- the server's own input -------------------------------------------------------------
@pytest.fixture(scope="module")
def dump():
    d = open_dump(TD.elf, TD.vmlinux)
    yield d
    d.close()


def test_server_bounded_input(dump, tmp_path):
    """An unterminated 1 MiB packet and 1 MiB of junk are dropped; the next packet is served."""
    err = open(tmp_path / "stderr", "w+")
    c = Client(dump, err)
    try:
        os.write(c.c2s_w, b"$" + b"A" * (1 << 20))
        os.write(c.c2s_w, bytes(range(1, 35)).replace(b"$", b"") * 30000)
        assert c.cmd("qAttached") == b"1"
        assert len(c.server.buf) == 0
    finally:
        c.close()
    err.seek(0)
    assert "dropped a packet longer than" in err.read()


def test_server_odd_requests(dump, tmp_path):
    err = open(tmp_path / "stderr", "w+")
    c = Client(dump, err)
    try:
        assert c.cmd("qsThreadInfo") == b"l"          # before qfThreadInfo
        assert c.cmd("mffffffffffffffffffff,8") == b"E.malformed packet (ValueError)"
        assert c.cmd("m0,-1") == b"E.malformed packet (ValueError)"
        assert c.cmd("pzz").startswith(b"E.malformed")
        assert c.cmd("qThreadExtraInfo,").startswith(b"E.malformed")
        assert c.cmd("qXfer:threads:read::zz,10").startswith(b"E.malformed")
        assert c.cmd("qRcmd,6") .startswith(b"E.malformed")
        assert c.cmd("qAttached") == b"1"
    finally:
        c.close()


def test_server_long_packet_then_real_one(dump, tmp_path):
    """Found by the fuzz tier: an unterminated packet just over MAX_PACKET whose tail
    arrives with the next real packet was taken as one packet with the real one's end
    (a checksum error), and the real packet was lost: the session hung."""
    from gdbkd.stub.rsp import MAX_PACKET
    err = open(tmp_path / "stderr", "w+")
    c = Client(dump, err)
    try:
        os.write(c.c2s_w, b"$" + b"x" * (MAX_PACKET + 2))
        assert c.cmd("qAttached") == b"1"
    finally:
        c.close()
