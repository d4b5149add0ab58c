"""The RSP server spoken to over a pipe, on a real dump (the gdb-driven checks are e2e)."""

import os
import threading
import xml.etree.ElementTree as ET

import pytest

from gdbkd.target import open_dump, IDLE_TID_BASE
from conftest import module_dumps
from gdbkd.stub.server import StubServer
from gdbkd.stub.rsp import rsp_checksum

pytestmark = pytest.mark.unit

TD = MDF = None          # the real dumps (made once when not cached)
_dumps = module_dumps(globals())


class Client:
    """A minimal RSP client: checksums, acks, binary unescaping."""

    def __init__(self, dump, err, **kw):
        c2s_r, self.c2s_w = os.pipe()
        self.s2c_r, s2c_w = os.pipe()
        self.server = StubServer(dump, infd=c2s_r, outfd=s2c_w, err=err, **kw)
        self.t = threading.Thread(target=self._run, args=(c2s_r, s2c_w), daemon=True)
        self.t.start()
        self.buf = b""
        self.ack = True

    def _run(self, r, w):
        try:
            self.server.serve()
        finally:
            os.close(r)
            os.close(w)

    def _recv(self):
        while True:
            while b"#" not in self.buf or len(self.buf) < self.buf.index(b"#") + 3:
                chunk = os.read(self.s2c_r, 65536)
                if not chunk:
                    raise EOFError
                self.buf += chunk
            self.buf = self.buf.lstrip(b"+")
            if not self.buf.startswith(b"$"):
                raise AssertionError(f"bad framing {self.buf[:20]!r}")
            end = self.buf.index(b"#")
            pkt, cs = self.buf[1:end], self.buf[end + 1:end + 3]
            self.buf = self.buf[end + 3:]
            assert int(cs, 16) == rsp_checksum(pkt)
            if self.ack:
                os.write(self.c2s_w, b"+")
            return pkt

    def cmd(self, s):
        data = s.encode() if isinstance(s, str) else s
        os.write(self.c2s_w, b"$" + data + b"#%02x" % rsp_checksum(data))
        return self._recv()

    def xfer(self, obj, annex):
        out, off = b"", 0
        while True:
            r = self.cmd(f"qXfer:{obj}:read:{annex}:{off:x},800")
            body = bytearray()
            i = 1
            while i < len(r):          # unescape
                if r[i] == 0x7d:
                    body.append(r[i + 1] ^ 0x20)
                    i += 2
                else:
                    body.append(r[i])
                    i += 1
            out += bytes(body)
            off += len(body)
            if r[:1] == b"l":
                return out

    def close(self):
        os.write(self.c2s_w, b"$k#6b")
        self.t.join(5)
        os.close(self.c2s_w)
        os.close(self.s2c_r)


@pytest.fixture(scope="module")
def dump():
    d = open_dump(TD.elf, TD.vmlinux)
    yield d
    d.close()


@pytest.fixture()
def client(dump, tmp_path):
    err = open(tmp_path / "stderr", "w+")
    c = Client(dump, err)
    yield c
    c.close()
    err.close()


def test_handshake_and_target_description(client):
    sup = client.cmd("qSupported:multiprocess+;swbreak+").decode()
    assert "qXfer:features:read+" in sup and "PacketSize=" in sup
    assert client.cmd("QStartNoAckMode") == b"OK"
    client.ack = False
    xml = ET.fromstring(client.xfer("features", "target.xml"))
    assert xml.find("architecture").text == "aarch64"
    names = [r.get("name") for r in xml.iter("reg")]
    assert names[:3] == ["x0", "x1", "x2"] and names[31:34] == ["sp", "pc", "cpsr"]
    assert "v31" in names and names[-2:] == ["fpsr", "fpcr"]
    assert client.cmd("vCont?") == b""
    assert client.cmd("qAttached") == b"1"


def test_threads_and_registers(client, dump):
    threads = dump.threads()
    stop = client.cmd("?").decode()
    crashed = dump.crashed_thread
    assert stop == f"T05thread:{crashed.tid:x};"
    assert client.cmd("qC").decode() == f"QC{crashed.tid:x}"
    tids = []
    r = client.cmd("qfThreadInfo").decode()
    while r != "l":
        assert r[0] == "m"
        tids += [int(x, 16) for x in r[1:].split(",")]
        r = client.cmd("qsThreadInfo").decode()
    assert tids == [t.tid for t in threads]
    assert {IDLE_TID_BASE + c for c in dump.online_cpus()} <= set(tids)
    info = bytes.fromhex(client.cmd(f"qThreadExtraInfo,{crashed.tid:x}").decode()).decode()
    assert info.startswith(f"pid {crashed.task.pid} {crashed.task.name} ") and "(crashed)" in info
    root = ET.fromstring(client.xfer("threads", ""))
    assert [(int(t.get("id"), 16), t.get("name")) for t in root] == \
        [(t.tid, t.task.name) for t in threads]
    # registers of a sleeping task: its cpu_context; x0 unknown
    sleeper = next(t for t in threads if t.task.pid == TD.meta["sleepers"]["busybox-sleeper"])
    assert client.cmd(f"Hg{sleeper.tid:x}") == b"OK"
    g = client.cmd("g").decode()
    assert g.startswith("xx" * 8)
    sp_hex = g[31 * 16:32 * 16]
    assert int.from_bytes(bytes.fromhex(sp_hex), "little") == sleeper.regs[31]
    pc = int.from_bytes(bytes.fromhex(client.cmd("p20").decode()), "little")
    assert pc == sleeper.regs[32]
    assert client.cmd("Hg7fffffff") == b"E01"
    assert client.cmd("T7fffffff") == b"E01"


def test_short_list_until_told(dump, tmp_path):
    """gdbkd core's connect: the crashed task alone (read without the task list, on a
    freshly opened QEMU dump), then every task once `monitor threads all` came."""
    fresh = open_dump(TD.elf, TD.vmlinux)
    err = open(tmp_path / "stderr", "w+")
    c = Client(fresh, err, short_list=True)
    try:
        crashed = dump.crashed_thread
        assert c.cmd("?").decode() == f"T05thread:{crashed.tid:x};"
        root = ET.fromstring(c.xfer("threads", ""))
        assert [int(t.get("id"), 16) for t in root] == [crashed.tid]
        assert fresh._threads is None                 # the task list was not walked for it
        assert c.cmd(f"Hg{crashed.tid:x}") == b"OK"
        g = c.cmd("g").decode()
        assert int.from_bytes(bytes.fromhex(g[32 * 16:33 * 16]), "little") == crashed.regs[32]
        sleeper = next(t for t in dump.threads() if t.task.pid == TD.meta["sleepers"]["busybox-sleeper"])
        assert c.cmd(f"T{sleeper.tid:x}") == b"E01"   # not listed yet: gdb cannot name it
        out = c.cmd("qRcmd," + b"threads all".hex()).decode()
        assert out.startswith("O") and b"every task" in bytes.fromhex(out[1:])
        assert c._recv() == b"OK"
        root = ET.fromstring(c.xfer("threads", ""))
        assert [int(t.get("id"), 16) for t in root] == [t.tid for t in dump.threads()]
        assert int(root[0].get("id"), 16) == crashed.tid
        assert c.cmd(f"T{sleeper.tid:x}") == b"OK"
    finally:
        c.close()
        err.close()
        fresh.close()


def test_memory_reads_and_refused_writes(client, dump):
    task = dump.crashed_thread.task
    r = client.cmd(f"m{task.addr:x},40").decode()
    assert bytes.fromhex(r) == dump.read(task.addr, 0x40)
    assert client.cmd(f"M{task.addr:x},1:00").startswith(b"E.")
    assert client.cmd("P0=0000000000000000").startswith(b"E.")
    assert client.cmd("m400000,8") == b"E14"        # user address: not in a kernel dump


def test_excluded_page_error_reply(tmp_path):
    d = open_dump(MDF["mdf-zlib-d31.kdump"], TD.vmlinux)
    pa = next(a for a in range(0x40000000, 0x80000000, 1 << 20) if d.phys.page_state(a) == "excluded")
    va = d.mmu.linear_va(pa)
    err = open(tmp_path / "stderr", "w+")
    c = Client(d, err)
    try:
        c.cmd("qSupported:error-message+")
        assert c.cmd(f"m{va:x},8") == b"E.page excluded from the dump (makedumpfile -d)"
        c.cmd("qSupported:multiprocess+")            # a gdb without error-message support
        assert c.cmd(f"m{va:x},8") == b"E14"
    finally:
        c.close()
        d.close()
    err.seek(0)
    assert f"{va:#x}: page excluded from the dump (makedumpfile -d)" in err.read()
