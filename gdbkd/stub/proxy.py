"""gdbkd between gdb and QEMU's gdbstub: every task a gdb thread on a live guest.

QEMU's gdbstub shows one gdb thread per vCPU. This proxy speaks the remote
protocol to gdb on one side and to QEMU on the other and, while the guest is
stopped, shows every task as a thread — the same thread ids and names as the
dump server (a task's pid; CPU n's idle task IDLE_TID_BASE + n, gdbkd/model/tasks.py):

* a task running on a vCPU is that vCPU: its registers, run control and
  register writes go to QEMU for that vCPU;
* a sleeping task has the registers cpu_switch_to saved in
  ``task->thread.cpu_context``; it cannot be stepped or continued, and its
  registers cannot be written (a one-line ``E.`` reason);
* the task list comes from the gdb-free model (gdbkd/model/tasks.py, the same
  code as ``kd ps`` and the dump server) over a :class:`RspReader` with the
  per-stop block cache; it is rebuilt at every stop.

Which vCPU runs which task: a vCPU's ``TPIDR_EL1`` is its CPU's per-CPU offset
(``__per_cpu_offset[cpu]``); the task is ``SP_EL0`` (``current``) when the
vCPU is in EL1, else ``rq->curr`` of that CPU. Memory: kernel addresses are
read through a vCPU that maps the kernel (KPTI: a vCPU in user mode or the
entry trampoline has only the trampoline mapped; its ``VBAR_EL1 - vectors``
is not a multiple of 2 MiB); user addresses through the selected task's vCPU.
The KASLR offset is ``VBAR_EL1 - vectors`` of such a vCPU.

Before the kernel is up (or with a vmlinux the proxy cannot use) gdb gets
QEMU's vCPU threads unchanged.

The gdb side (framing, acks, the packets' dispatch, the thread list and document,
error replies, the serve loop) is :class:`~gdbkd.stub.rsp.RspTarget`'s, as for the
dump server; :class:`LiveProxy` supplies the threads, registers and memory of this
stop, run control (c/s/vCont translated to vCPUs, ^C forwarded while running, the
stop reply's vCPU turned into its task) and the forwarding of everything else to QEMU.

QEMU listens on 127.0.0.1 only (gdbkd's Machine); the proxy connects there and
serves gdb on a pipe or a unix socket.
"""

import os
import re
import select
import socket
import time

from ..errors import GdbkdError
from ..textutil import escape
from ..model.reader import Reader, MemoryFault
from ..model.tasks import ps_letter
from ..arm64.regs import (REG_SIZES, CPSR, kaslr_from_vbar,
                          regs_from_cpu_context)
from .rsp import (RspTarget, SessionEnded, MAX_PACKET, rsp_checksum, reg_hex,
                  regs_hex, threads_xml)

__all__ = ["QemuLink", "RspReader", "LiveProxy", "connect_qemu"]

M64 = (1 << 64) - 1
_CORE_SIZES = REG_SIZES[:CPSR + 1]     # x0-x30, sp, pc, cpsr: QEMU's `g` packet
#: the longest packet kept from QEMU
LINK_MAX_PACKET = 1 << 20


class LinkClosed(SessionEnded):
    """QEMU's gdbstub went away: the session with gdb ends."""


class QemuLink:
    """A remote-protocol client to QEMU's gdbstub (no-ack mode, plain thread ids)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.ack = True
        self.hg = None           # the vCPU QEMU's g/p/m/M refer to
        self.packet_size = 0x1000
        r = self.request("qSupported:swbreak+;hwbreak+;vContSupported+")
        m = re.search(r"PacketSize=([0-9a-fA-F]+)", r)
        if m:
            self.packet_size = int(m.group(1), 16)
        self.supported = r
        if "QStartNoAckMode+" in r and self.request("QStartNoAckMode") == "OK":
            self.ack = False

    def fileno(self):
        return self.sock.fileno()

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise LinkClosed("QEMU's gdbstub closed the connection")
        self.buf += data
        if len(self.buf) > LINK_MAX_PACKET:
            raise LinkClosed("QEMU sent an oversized packet")

    log = None

    def send(self, data: str):
        raw = data.encode("latin-1")
        if self.log:
            self.log.write(b"  Q-> " + raw[:100] + b"\n")
            self.log.flush()
        self.sock.sendall(b"$" + raw + b"#%02x" % rsp_checksum(raw))
        if self.ack:
            while True:
                while not self.buf:
                    self._recv()
                c, self.buf = self.buf[:1], self.buf[1:]
                if c == b"+":
                    break
                if c == b"-":
                    self.sock.sendall(b"$" + raw + b"#%02x" % rsp_checksum(raw))

    def packet_ready(self) -> bool:
        b = self.buf.lstrip(b"+")
        i = b.find(b"#")
        return b.startswith(b"$") and i >= 0 and len(b) >= i + 3

    def read_packet(self) -> str:
        while True:
            self.buf = self.buf.lstrip(b"+")
            if self.buf[:1] not in (b"", b"$"):
                self.buf = self.buf[1:]
                continue
            end = self.buf.find(b"#")
            if self.buf.startswith(b"$") and end >= 0 and len(self.buf) >= end + 3:
                pkt = self.buf[1:end]
                self.buf = self.buf[end + 3:]
                if self.ack:
                    self.sock.sendall(b"+")
                if self.log:
                    self.log.write(b"  Q<- " + pkt[:100] + b"\n")
                    self.log.flush()
                return _unescape(pkt).decode("latin-1")
            self._recv()

    def request(self, data: str, on_output=None) -> str:
        """Send a packet and return the reply (console ``O`` packets go to on_output)."""
        self.send(data)
        while True:
            r = self.read_packet()
            if r.startswith("O") and r != "OK" and _is_hex(r[1:]):
                if on_output is not None:
                    on_output(r)
                continue
            return r

    def select_thread(self, vcpu: int):
        if self.hg != vcpu:
            if self.request(f"Hg{vcpu:x}") != "OK":
                raise MemoryFault(0, f"QEMU refused to select vCPU thread {vcpu}")
            self.hg = vcpu

    def interrupt(self):
        self.sock.sendall(b"\x03")


def _is_hex(s):
    if not s or len(s) % 2:
        return False
    try:
        bytes.fromhex(s)
    except ValueError:
        return False
    return True


def _unescape(pkt: bytes) -> bytes:
    if b"}" not in pkt and b"*" not in pkt:
        return pkt
    out = bytearray()
    i = 0
    while i < len(pkt):
        c = pkt[i]
        if c == 0x7d and i + 1 < len(pkt):
            out.append(pkt[i + 1] ^ 0x20)
            i += 2
        elif c == 0x2a and out and i + 1 < len(pkt):        # run-length encoding
            out += bytes([out[-1]]) * (pkt[i + 1] - 29)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


class RspReader(Reader):
    """Guest memory through QEMU's gdbstub, cached per stop. Kernel addresses are read
    through a vCPU that maps the kernel; user addresses through ``user_vcpu``."""

    readahead = 3
    cache_user = False

    def __init__(self, link: QemuLink, proxy):
        super().__init__(cache=True)
        self.link = link
        self.proxy = proxy

    def _fetch(self, addr, n):
        vcpu = self.proxy.kernel_vcpu() if addr >> 63 else self.proxy.user_vcpu()
        if vcpu is None:
            raise MemoryFault(addr, "no stopped vCPU maps this address")
        self.link.select_thread(vcpu)
        out = []
        chunk = max(64, (self.link.packet_size - 8) // 2)
        a = addr
        while a < addr + n:
            k = min(chunk, addr + n - a)
            r = self.link.request(f"m{a:x},{k:x}")
            try:
                data = bytes.fromhex(r) if r and r[0] != "E" else None
            except ValueError:
                data = None
            if data is None:
                raise MemoryFault(a, "Cannot access memory (QEMU: "
                                     f"{r[:20] or 'empty reply'})")
            out.append(data)
            a += len(data)
            if not data:
                raise MemoryFault(a, "QEMU returned no bytes")
        return b"".join(out)


class _Regs:
    """QEMU's register numbering, names and sizes, from its target description."""

    def __init__(self, link: QemuLink):
        self.by_name = {}
        self.size = {}
        self.xml = {}                       # annex -> bytes (served to gdb unchanged)
        self._num = 0
        self._load("target.xml", link)

    def _load(self, annex, link):
        data = b""
        while True:
            r = link.request(f"qXfer:features:read:{annex}:{len(data):x},ffb")
            if not r or r[0] not in "ml":
                break
            data += r[1:].encode("latin-1")
            if r[0] == "l":
                break
        self.xml[annex] = data
        text = data.decode("latin-1")
        for m in re.finditer(r'<xi:include href="([^"]+)"|<reg ([^>]*)>', text):
            if m.group(1):
                self._load(m.group(1), link)
                continue
            attrs = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if "regnum" in attrs:
                self._num = int(attrs["regnum"])
            self.by_name[attrs.get("name", "")] = self._num
            self.size[self._num] = int(attrs.get("bitsize", "64")) // 8
            self._num += 1


class LiveProxy(RspTarget):
    """Serve gdb (``infd``/``outfd``) with tasks as threads over QEMU's gdbstub."""

    prog = "gdbkd proxy"
    features = "vContSupported+;swbreak+;hwbreak+"
    threads_per_chunk = 1500
    #: most replies are QEMU's, read as latin-1: they go back to gdb byte for byte
    encoding = "latin-1"

    def __init__(self, link: QemuLink, vmlinux=None, infd=0, outfd=1, err=None, ram=None):
        path = os.environ.get("GDBKD_PROXY_LOG")
        super().__init__(infd, outfd, open(path, "ab") if path else None, err)
        self.link = link
        link.log = self.log
        self.regs = _Regs(link)
        self.offsets = None
        self.vmlinux = vmlinux
        if vmlinux:
            try:
                from ..target.offsets import kernel_offsets
                self.offsets = kernel_offsets(vmlinux)
            except GdbkdError as e:
                self._warn("offsets", f"gdbkd proxy: {e}; showing vCPU threads only")
        self.reader = RspReader(link, self)
        self.ram = None              # the guest's RAM shared with QEMU (gdbkd run): memory speed
        if ram:
            from ..dump.guestram import GuestRam, parse_ram_spec
            try:
                self.ram = GuestRam(*parse_ram_spec(ram))
            except GdbkdError as e:
                self._warn("ram", f"gdbkd proxy: {e}; reading memory through QEMU's gdbstub")
        self.kernel = None
        self._view = None            # the thread view of this stop

    # -- the view of one stop --------------------------------------------------------------
    def invalidate(self):
        self.reader.invalidate()
        if self.kernel is not None and self.kernel.reader is not self.reader:
            self.kernel.reader.invalidate()
        self._view = None

    def _vmcoreinfo_text(self, kaslr):
        """The running kernel's VMCOREINFO, read through QEMU's gdbstub (a few packets)."""
        from ..model.sysinfo import vmcoreinfo_text
        syms = self.offsets["symbols"]
        return vmcoreinfo_text(self.reader, lambda name: None if syms.get(name) is None
                               else (syms[name] + kaslr) & M64)

    def read_memory(self, addr, n):
        """gdb's and the model's reads: kernel addresses from the shared RAM when there is
        one (falling back to QEMU for what is not RAM: device memory), else through QEMU."""
        k = self.kernel
        if addr >> 63 and k is not None and k.reader is not self.reader:
            try:
                return k.reader.read(addr, n)
            except MemoryFault:
                pass
        return self.reader.read(addr, n)

    def _vcpus(self):
        out = []
        r = self.link.request("qfThreadInfo")
        while r.startswith("m"):
            out += [int(x, 16) for x in r[1:].split(",") if x]
            r = self.link.request("qsThreadInfo")
        return sorted(out)

    def _reg(self, vcpu, name):
        n = self.regs.by_name.get(name)
        if n is None:
            return None
        self.link.select_thread(vcpu)
        r = self.link.request(f"p{n:x}")
        if not _is_hex(r) or "x" in r:
            return None
        return int.from_bytes(bytes.fromhex(r), "little")

    def wait_for_kernel(self, timeout: float = 60.0) -> bool:
        """Before gdb connects: until the guest's task list can be read and a vCPU runs one
        of its tasks (attached while the firmware or the kernel's early boot runs: no vCPU
        shows the kernel's vectors yet, or none runs a listed task), let it run 0.2 s at a
        time. gdb then meets every task as a thread from its first
        stop: the threads it saw never change from vCPUs into tasks under it (gdb 13 fails
        an assertion, switch_to_thread, when its current thread vanishes that way). False
        when the kernel is not up within ``timeout`` (gdb then sees vCPU threads)."""
        deadline = time.monotonic() + timeout
        while True:
            self.invalidate()
            v = self.view()
            if v["tasks"] is not None and v["tid_of_vcpu"]:    # and a CPU runs a known task
                return True
            if time.monotonic() > deadline:
                return False
            self.link.hg = None
            self.link.send("c")
            time.sleep(0.2)
            self.link.interrupt()
            r = self.link.read_packet()
            while r.startswith("O") and r != "OK" and _is_hex(r[1:]):
                r = self.link.read_packet()
            if r[:1] in ("W", "X"):
                raise LinkClosed(f"the guest ended while booting ({r})")

    def view(self):
        """{"vcpus": [...], "kmap": vcpu, "tasks": [...] or None, ...} for this stop."""
        if self._view is None:
            self._view = self._build_view()
        return self._view

    def _build_view(self):
        vcpus = self._vcpus()
        v = {"vcpus": vcpus, "kmap": vcpus[0] if vcpus else None, "tasks": None,
             "by_tid": {}, "vcpu_of_tid": {}, "tid_of_vcpu": {}, "cpu_of_vcpu": {}}
        if self.offsets is None or not vcpus:
            return v
        vectors = self.offsets["symbols"].get("vectors")
        kaslr = None
        for c in vcpus:
            kaslr = kaslr_from_vbar(self._reg(c, "VBAR"), vectors)
            if kaslr is not None:
                v["kmap"] = c
                break
        if kaslr is None:
            self._warn("kaslr", "gdbkd proxy: no vCPU shows the kernel's vectors yet; "
                                "showing vCPU threads")
            return v
        self._view = v                     # the reader asks for kernel_vcpu() while we build
        try:
            tasks = self._tasks(kaslr)
        except (MemoryFault, GdbkdError, KeyError, IndexError, ValueError) as e:
            self._warn(("tasks", str(e)[:60]), f"gdbkd proxy: cannot read the task list ({e}); "
                                              f"showing vCPU threads")
            return v
        from ..model.percpu import cpu_offsets, cpu_of_percpu_offset
        from ..model.tasks import current_task, kernel_mode
        ncpus = len(cpu_offsets(self.kernel))
        for c in vcpus:
            cpu = cpu_of_percpu_offset(self.kernel, self._reg(c, "TPIDR_EL1"))
            if cpu is None and ncpus == len(vcpus):
                cpu = vcpus.index(c)
            if cpu is None:
                continue
            v["cpu_of_vcpu"][c] = cpu
            cpsr = self._reg(c, "cpsr")
            sp_el0 = self._reg(c, "SP_EL0") if kernel_mode(cpsr) else None
            t = current_task(self.kernel, {"cpsr": cpsr, "SP_EL0": sp_el0}, cpu)
            if t is None:
                continue
            t.active_cpu = cpu
            v["vcpu_of_tid"][t.tid] = c
            v["tid_of_vcpu"][c] = t.tid
        v["tasks"] = tasks
        v["by_tid"] = {t.tid: t for t in tasks}
        return v

    def _tasks(self, kaslr):
        from ..model.kernel import Kernel
        from ..model.layout import RecordedTypes
        from ..model.tasks import task_list
        syms = self.offsets["symbols"]
        if self.kernel is None or self.kernel._kaslr != kaslr:
            reader = self.reader
            if self.ram is not None:
                from ..model.reader import RamReader
                reader = RamReader(self.ram, lambda k=kaslr: self._vmcoreinfo_text(k))
            self.kernel = Kernel(reader, RecordedTypes.from_offsets(self.offsets),
                                 lambda n, s=syms, k=kaslr: None if s.get(n) is None
                                 else (s[n] + k) & M64)
            self.kernel._kaslr = kaslr
        return task_list(self.kernel)

    def kernel_vcpu(self):
        v = self._view
        return v["kmap"] if v is not None else (self._vcpus() or [None])[0]

    def user_vcpu(self):
        v = self.view()
        if v["tasks"] is None:
            return self.cur_g if self.cur_g in v["vcpus"] else (v["vcpus"] or [None])[0]
        return v["vcpu_of_tid"].get(self.cur_g)

    # -- thread ids ------------------------------------------------------------------------
    def _threads(self):
        """[(tid, name, extra, core)] gdb sees now (built once per stop)."""
        v = self.view()
        if "threads" in v:
            return v["threads"]
        v["threads"] = self._make_threads(v)
        return v["threads"]

    def _make_threads(self, v):
        if v["tasks"] is None:
            return [(c, f"CPU#{c - 1}", f"vCPU {c - 1}", c - 1) for c in v["vcpus"]]
        out = []
        for t in v["tasks"]:
            extra = f"pid {t.pid} {escape(t.name)} [{ps_letter(t.state)}]"
            if t.active_cpu is not None and t.tid in v["vcpu_of_tid"]:
                extra += f" on cpu {t.active_cpu}"
            out.append((t.tid, t.name, extra, t.run_cpu))
        order = {tid: i for i, tid in enumerate(v["vcpu_of_tid"])}
        out.sort(key=lambda x: (0, order[x[0]]) if x[0] in order else (1, 0))
        return out

    def _vcpu_for(self, tid):
        """The vCPU behind gdb thread TID, or None for a sleeping task (or unknown tid)."""
        v = self.view()
        if v["tasks"] is None:
            return tid if tid in v["vcpus"] else None
        return v["vcpu_of_tid"].get(tid)

    def _tid_for_vcpu(self, vcpu):
        """The thread a stop on ``vcpu`` is reported on: its task; for a vCPU that runs none
        (a secondary CPU still in the firmware early in boot, an offline one) a thread that
        is in the list all the same (another vCPU's task), never an id gdb does not know
        (gdb 13 fails an assertion, switch_to_thread, on a stop in an unknown thread)."""
        v = self.view()
        if v["tasks"] is None:
            return vcpu
        tid = v["tid_of_vcpu"].get(vcpu)
        if tid is None:
            tid = next(iter(v["tid_of_vcpu"].values()), None)
        if tid is None:
            tid = v["tasks"][0].tid if v["tasks"] else vcpu
        return tid

    def known(self, tid):
        v = self.view()
        return tid in (v["by_tid"] if v["tasks"] is not None else v["vcpus"])

    def _selected(self, tid=None):
        tid = self.cur_g if tid is None else tid
        if tid is None or tid <= 0 or not self.known(tid):
            v = self.view()
            tid = next(iter(v["tid_of_vcpu"].values()), None) if v["tasks"] is not None \
                else (v["vcpus"] or [None])[0]
        return tid

    def thread_ids(self):
        return [t[0] for t in self._threads()]

    def thread_entries(self):
        return self._threads()

    def threads_doc(self):
        v = self.view()
        if "xml" not in v:          # once per stop
            v["xml"] = threads_xml(self._threads())
        return v["xml"]

    def extra_info(self, tid):
        v = self.view()
        if "extra" not in v:
            v["extra"] = {t[0]: t[2] for t in self._threads()}
        return v["extra"].get(tid, "")

    def current_tid(self):
        return self._selected()

    def features_xml(self, annex):
        return self.regs.xml.get(annex)

    # -- registers --------------------------------------------------------------------------
    def _sleeping_regs(self, tid):
        t = self.view()["by_tid"][tid]
        return regs_from_cpu_context(t.fields.get("thread.cpu_context", b""))

    def registers_reply(self):
        tid = self._selected()
        vcpu = self._vcpu_for(tid)
        if vcpu is not None:
            self.link.select_thread(vcpu)
            return self.link.request("g")
        return regs_hex(self._sleeping_regs(tid), _CORE_SIZES)

    def register_reply(self, n):
        tid = self._selected()
        vcpu = self._vcpu_for(tid)
        if vcpu is not None:
            self.link.select_thread(vcpu)
            return self.link.request(f"p{n:x}")
        size = self.regs.size.get(n)
        if size is None:
            return "E00"
        return reg_hex(self._sleeping_regs(tid)[n] if n < len(_CORE_SIZES) else None, size)

    def write(self, p):
        """G/P: to the vCPU of a running task (a sleeping task's saved registers are not
        written back); M/X: through a vCPU that maps the address; vFlash: QEMU's."""
        if p.startswith(("P", "G")):
            vcpu = self._vcpu_for(self._selected())
            if vcpu is None:
                return "E.a sleeping task's saved registers cannot be written"
            self.link.select_thread(vcpu)
            self.invalidate()
            return self.link.request(p)
        if p.startswith(("M", "X")):
            a = int(p[1:].split(",", 1)[0], 16)
            vcpu = self.kernel_vcpu() if a >> 63 else self.user_vcpu()
            if vcpu is None:
                return "E.no stopped vCPU maps this address"
            self.link.select_thread(vcpu)
            self.invalidate()
            return self.link.request(p)
        return self.link.request(p)

    def memory_reply(self, addr, n):
        return self.read_memory(addr, n).hex()

    def fault_reply(self, e):
        return self.memory_error(str(e))

    # -- run control -------------------------------------------------------------------------
    def _resume(self, pkt):
        """Translate a c/s/C/S/vCont packet to vCPU ids; None + reason if refused."""
        v = self.view()
        if pkt.startswith("vCont;"):
            parts = []
            for act in pkt[6:].split(";"):
                a, _, t = act.partition(":")
                if t and t not in ("-1", "0"):
                    tid = int(t, 16)
                    vcpu = self._vcpu_for(tid)
                    if vcpu is None:
                        return None, self._refusal(tid, a)
                    parts.append(f"{a}:{vcpu:x}")
                else:
                    parts.append(a)
            return "vCont;" + ";".join(parts), None
        if pkt[:1] in ("s", "S", "c", "C"):
            tid = self.cur_c if self.cur_c not in (None, 0, -1) else self.cur_g
            if tid not in (None, 0, -1) and v["tasks"] is not None:
                vcpu = self._vcpu_for(tid)
                if vcpu is None:
                    if pkt[:1] in ("s", "S"):
                        return None, self._refusal(tid, pkt[:1])
                else:
                    self.link.request(f"Hc{vcpu:x}")
            return pkt, None
        return pkt, None

    def _refusal(self, tid, action):
        what = "stepped" if action.lower().startswith("s") else "resumed"
        t = self.view()["by_tid"].get(tid)
        name = f"pid {t.pid} ({escape(t.name)})" if t is not None else f"thread {tid}"
        return (f"E.{name} is not running on a CPU: a sleeping task cannot be {what}; "
                f"select a task that runs on a vCPU (kd ps -A)")

    def _translate_stop(self, r):
        """QEMU's stop reply with its vCPU thread id replaced by that vCPU's task."""
        m = re.search(r"thread:([0-9a-fA-F.p-]+);", r)
        if not m:
            return r
        vcpu = int(m.group(1).split(".")[-1].lstrip("p"), 16)
        tid = self._tid_for_vcpu(vcpu)
        self.cur_g = tid
        return r[:m.start(1)] + f"{tid:x}" + r[m.end(1):]

    def _run(self, pkt):
        self.invalidate()
        self.link.hg = None
        self.link.send(pkt)
        while True:
            if self.link.packet_ready():
                r = self.link.read_packet()
                if r.startswith("O") and _is_hex(r[1:]):
                    self.send(r)
                    continue
                self.invalidate()
                if r[:1] in ("W", "X"):
                    return r
                return self._translate_stop(r)
            rl, _, _ = select.select([self.link, self.infd], [], [])
            if self.infd in rl:
                try:
                    self._read()
                except EOFError:
                    self.link.interrupt()
                    raise
                if len(self.buf) > MAX_PACKET:
                    del self.buf[:-MAX_PACKET]
                while self.buf[:1] == b"\x03":
                    del self.buf[:1]
                    self.link.interrupt()
            if self.link in rl:
                self.link._recv()

    def stop_query(self):
        return self._translate_stop(self.link.request("?"))

    def resume(self, p):
        pkt, why = self._resume(p)
        if pkt is None:
            return why
        return self._run(pkt)

    # -- the rest: QEMU's -------------------------------------------------------------------
    def monitor(self, cmd):
        return self.link.request("qRcmd," + cmd.encode("latin-1").hex(), on_output=self.send)

    def kill(self):
        try:
            self.link.send("k")
        except OSError:
            pass

    def detach(self):
        try:
            self.link.request("D")
        except (OSError, LinkClosed):
            pass

    def other(self, p):
        if p.startswith("vCont?"):
            return self.link.request("vCont?")
        if p.startswith(("Z", "z")):
            self.invalidate()
        return self.link.request(p)      # qAttached, qSymbol, qOffsets, breakpoints, ...


#: how long a refused connection is retried (QEMU creates its gdbstub socket ~0.5 s after it starts)
_REFUSED_WAIT = 3.0


def connect_qemu(target: str) -> QemuLink:
    """A link to QEMU's gdbstub at HOST:PORT (loopback only) or a unix socket path."""
    if ":" in target and not target.startswith("/"):
        host, _, port = target.rpartition(":")
        host = host or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise GdbkdError(f"gdbkd proxy connects to a gdbstub on this machine only "
                             f"(127.0.0.1), not {host}")
        s = None
        deadline = time.monotonic() + _REFUSED_WAIT
        while s is None:
            try:
                s = socket.create_connection((host, int(port)), timeout=10)
            except ConnectionRefusedError as e:
                # a QEMU started a moment ago listens a few hundred ms later: wait for it
                if time.monotonic() > deadline:
                    raise GdbkdError(f"cannot connect to the gdbstub at {target}: {e}")
                time.sleep(0.1)
            except (OSError, ValueError) as e:
                raise GdbkdError(f"cannot connect to the gdbstub at {target}: {e}")
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(target)
        except OSError as e:
            raise GdbkdError(f"cannot connect to the gdbstub at {target}: {e}")
    s.settimeout(None)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) if s.family != socket.AF_UNIX else None
    return QemuLink(s)
