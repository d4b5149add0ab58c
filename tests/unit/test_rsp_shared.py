"""The remote-protocol base (gdbkd/stub/rsp.py RspTarget) is one for both targets: the dump
server and the live proxy, given the same threads, target description and memory, put the
same bytes on the wire for what the base answers (framing, acks, no-ack mode, qXfer of the
target description and of the thread document, the thread list, extra info, H/T/qC, the
stop reply's shape, memory reads, malformed packets). The proxy's QEMU is a stand-in here
that serves the dump's memory and the server's target description."""

import os
import threading

import pytest

from gdbkd.target import open_dump
from gdbkd.stub.rsp import rsp_checksum, RspTarget
from gdbkd.stub.server import StubServer, target_xml
from gdbkd.stub.proxy import LiveProxy
from conftest import module_dumps

pytestmark = pytest.mark.unit

TD = MDF = None
_dumps = module_dumps(globals())


class FakeQemu:
    """What LiveProxy asks of QemuLink: one vCPU (thread 1), the server's target.xml, the
    dump's memory."""

    packet_size = 0x1000
    log = None

    def __init__(self, dump):
        self.dump = dump
        self.xml = target_xml().encode()
        self.hg = None
        self.sent = []

    def request(self, data, on_output=None):
        self.sent.append(data)
        if data.startswith("qXfer:features:read:target.xml:"):
            off, _, n = data.rpartition(":")[2].partition(",")
            off, n = int(off, 16), int(n, 16)
            chunk = self.xml[off:off + n]
            return ("m" if off + len(chunk) < len(self.xml) else "l") + chunk.decode()
        if data == "qfThreadInfo":
            return "m1"
        if data == "qsThreadInfo":
            return "l"
        if data == "?":
            return "T05thread:01;"
        if data.startswith("m"):
            a, _, n = data[1:].partition(",")
            try:
                return self.dump.read(int(a, 16), int(n, 16)).hex()
            except Exception:
                return "E14"
        return ""

    def select_thread(self, vcpu):
        self.hg = vcpu

    def send(self, data):
        self.sent.append(data)


def _frame(data: bytes) -> bytes:
    return b"$" + data + b"#%02x" % rsp_checksum(data)


def _converse(target, wire: bytes) -> bytes:
    """Everything TARGET writes while serving WIRE (then EOF)."""
    c2s_r, c2s_w = os.pipe()
    s2c_r, s2c_w = os.pipe()
    target.infd, target.outfd = c2s_r, s2c_w
    out = []
    reader = threading.Thread(target=lambda: out.append(b"".join(iter(lambda: os.read(s2c_r, 65536), b""))))
    reader.start()
    os.write(c2s_w, wire)
    os.close(c2s_w)
    target.serve()
    os.close(s2c_w)
    reader.join(10)
    os.close(c2s_r)
    os.close(s2c_r)
    return out[0]


def _split(stream: bytes):
    """The stream as acks and packet frames, in order."""
    out, i = [], 0
    while i < len(stream):
        if stream[i:i + 1] in (b"+", b"-"):
            out.append(stream[i:i + 1])
            i += 1
            continue
        assert stream[i:i + 1] == b"$", stream[i:i + 20]
        end = stream.index(b"#", i)
        out.append(stream[i:end + 3])
        i = end + 3
    return out


@pytest.fixture(scope="module")
def dump():
    d = open_dump(TD.elf, TD.vmlinux)
    yield d
    d.close()


def _targets(dump, tmp_path):
    err = open(tmp_path / "stderr", "w+")
    server = StubServer(dump, err=err)
    proxy = LiveProxy(FakeQemu(dump), err=err)
    entries = list(server.thread_entries())
    threads = dump.threads()
    v = proxy.view()                   # the stop's view: the dump's tasks, the first on vCPU 1
    v.update(tasks=[t.task for t in threads], by_tid={t.tid: t.task for t in threads},
             threads=entries, vcpu_of_tid={threads[0].tid: 1}, tid_of_vcpu={1: threads[0].tid})
    return server, proxy, entries


def test_both_targets_share_the_dispatch(dump, tmp_path):
    assert StubServer.__mro__[1] is RspTarget
    assert LiveProxy.__mro__[1] is RspTarget
    server, proxy, entries = _targets(dump, tmp_path)
    tids = [e[0] for e in entries]
    assert len(tids) < proxy.threads_per_chunk      # one qfThreadInfo chunk on both
    sleeper = next(t.tid for t in dump.threads()
                   if t.task.pid == TD.meta["sleepers"]["busybox-sleeper"])
    task = dump.threads()[0].task.addr
    acked = [b"qSupported:multiprocess+;error-message+", b"?", b"qC"]
    acked += [f"qXfer:features:read:target.xml:{off:x},7ff".encode()
              for off in range(0, len(target_xml()) + 0x7ff, 0x7ff)]
    plain = [b"qXfer:features:read:nothere.xml:0,10", b"qfThreadInfo", b"qsThreadInfo"]
    plain += [f"qXfer:threads:read::{off:x},ffb".encode()
              for off in range(0, 0xffb * 8, 0xffb)]
    plain += [f"qThreadExtraInfo,{t:x}".encode() for t in tids[:30]]
    plain += [f"T{sleeper:x}".encode(), b"T7fffffff", f"Hg{sleeper:x}".encode(), b"qC",
              b"Hg7fffffff", b"Hc0", b"Hg0", b"qC", f"Hc{sleeper:x}".encode(),
              f"m{task:x},40".encode(), f"m{task + 0xff8:x},10".encode(),
              f"m{task:x},2000".encode(), b"mzz,8", b"m0,-1", b"pzz", b"qThreadExtraInfo,",
              b"qXfer:threads:read::zz,10", b"qRcmd,6", b"H", b"Hg-2"]
    wire = b"+" + _frame(b"qC")[:-2] + b"00"         # a bad checksum: '-', nothing served
    wire += b"".join(_frame(p) + b"+" for p in acked)
    wire += _frame(b"QStartNoAckMode") + b"+junk\x03"
    wire += b"".join(_frame(p) for p in plain)
    s_out, p_out = _split(_converse(server, wire)), _split(_converse(proxy, wire))
    assert len(s_out) == len(p_out) == 1 + 2 * (len(acked) + 1) + len(plain)
    # qSupported: the same up to what each target adds
    assert s_out[2].startswith(b"$PacketSize=4000;qXfer:features:read+;qXfer:threads:read+;"
                               b"QStartNoAckMode+;vContSupported")
    assert p_out[2].split(b";")[:4] == s_out[2].split(b";")[:4]
    assert s_out[:2] + s_out[3:] == p_out[:2] + p_out[3:]
    assert s_out[0] == b"-" and s_out[1] == b"+"
    replies = [f[1:-3] for f in s_out[3:] if f[:1] == b"$"]
    assert replies[0] == f"T05thread:{tids[0]:x};".encode()
    assert replies[len(acked) + 1] == b"m" + ",".join(f"{t:x}" for t in tids).encode()
    assert b"E.malformed packet (ValueError)" in replies
