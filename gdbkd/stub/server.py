"""A read-only GDB remote-serial-protocol server for a kernel dump, over a pipe.

gdb runs it with ``target remote | python -m gdbkd.stub DUMP VMLINUX``: the
packets come on stdin and go out on stdout; stderr reaches the user's terminal,
so the reason a read failed (an excluded page, an unmapped address) is printed
there besides the ``E.`` error reply gdb turns into "Cannot access memory".

Served: qSupported, QStartNoAckMode, qXfer:features:read (an aarch64 target
description: core x0-x30, sp, pc, cpsr; fpu v0-v31, fpsr, fpcr), ``?``, g, p,
m, H, T, qC, qfThreadInfo/qsThreadInfo, qThreadExtraInfo, qXfer:threads:read,
qAttached, vCont? (empty: no vCont), qRcmd (``monitor info``), k, D.
M, X, G, P are refused: the dump is read-only (opened O_RDONLY). c/s/vCont
answer with the same stop: a dump cannot run.
Memory is read lazily: nothing is decompressed before gdb asks for it.

Hostile input: the input buffer holds at most :data:`MAX_PACKET` bytes of one
packet (gdb sends at most the PacketSize announced here); a longer
unterminated packet is dropped with a warning, and junk between packets is
skipped with one ``find``, not byte by byte. A request that cannot be
answered gets an error reply and the server keeps serving. A dump page that
is corrupt or excluded is also said on stderr (once per page); addresses that
are merely unmapped are not, since gdb probes them routinely.
"""

import os
import sys

from ..errors import GdbkdError
from ..textutil import escape
from ..dump import DumpError, PageExcluded, PageNotInDump
from ..target.regs import NUM_REGS, REG_SIZES

__all__ = ["StubServer", "target_xml", "rsp_checksum", "rsp_escape_binary"]

PACKET_SIZE = 0x4000
#: the longest packet kept while waiting for its '#' (escaped binary data doubles it)
MAX_PACKET = 4 * PACKET_SIZE


def target_xml() -> str:
    core = "".join(f'<reg name="x{i}" bitsize="64" type="int" regnum="{i}"/>' for i in range(31))
    core += ('<reg name="sp" bitsize="64" type="data_ptr" regnum="31"/>'
             '<reg name="pc" bitsize="64" type="code_ptr" regnum="32"/>'
             '<reg name="cpsr" bitsize="32" type="int" regnum="33"/>')
    fpu = "".join(f'<reg name="v{i}" bitsize="128" type="uint128" regnum="{34 + i}"/>'
                  for i in range(32))
    fpu += ('<reg name="fpsr" bitsize="32" type="int" regnum="66"/>'
            '<reg name="fpcr" bitsize="32" type="int" regnum="67"/>')
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
            '<target version="1.0"><architecture>aarch64</architecture>'
            f'<feature name="org.gnu.gdb.aarch64.core">{core}</feature>'
            f'<feature name="org.gnu.gdb.aarch64.fpu">{fpu}</feature></target>')


def rsp_checksum(data: bytes) -> int:
    return sum(data) & 0xff


def rsp_escape_binary(data: bytes) -> bytes:
    """Binary data escaped for a packet: ``}`` first, then ``#``, ``$`` and ``*`` become
    ``}`` + (byte ^ 0x20). Four C-level replaces: the thread list of a 10,000-task dump is
    ~0.8 MB of XML, a per-byte Python loop over it cost ~0.2 s of gdbkd core's start."""
    if not any(c in data for c in (b"}", b"#", b"$", b"*")):
        return bytes(data)
    return (bytes(data).replace(b"}", b"}\x5d").replace(b"#", b"}\x03")
            .replace(b"$", b"}\x04").replace(b"*", b"}\x0a"))


def _xml_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _error_reply(text: str) -> str:
    """An ``E.`` reply: the text on one line, without the protocol's framing characters."""
    text = " ".join(text.split())
    return "E." + text.replace("$", "").replace("#", "").replace("}", "").replace("*", "")[:200]


def _state_letter(state: int) -> str:
    # TASK_* bits (include/linux/sched.h): 0 running, 1 S, 2 D, 4 T, 8 t, 0x10 X/Z...
    if state == 0:
        return "R"
    for bit, ch in ((0x2, "D"), (0x1, "S"), (0x4, "T"), (0x8, "t"), (0x20, "Z"), (0x10, "X"),
                    (0x402, "I")):
        if state & bit:
            return "I" if state & 0x402 == 0x402 else ch
    return "?"


class StubServer:
    def __init__(self, dump, infd=0, outfd=1, log=None, err=None, short_list=False):
        self.dump = dump
        self.infd, self.outfd = infd, outfd
        self.log = log
        self.err = err or sys.stderr
        self.ack = True
        self.buf = bytearray()
        self._tinfo = []
        self.cur_g = None      # thread for g/p/m
        self._threads = None
        self._by_tid = None
        self._xml = target_xml().encode()
        self._threads_xml = None      # the qXfer:threads document of every task
        self._xfer_threads = None     # the document being transferred
        self.short_list = short_list
        self._first = None
        self._warned = set()
        self.error_text = False
        from ..arm64.pac import PacStripper
        self.pac = PacStripper.for_dump(dump)

    # -- threads --------------------------------------------------------------------
    def threads(self):
        if self._threads is None:
            self._threads = self.dump.threads()
            self._by_tid = {t.tid: t for t in self._threads}
            for p in getattr(self.dump, "thread_problems", ())[:20]:
                self._warn(("threads", p), f"gdbkd stub: warning: {p}")
        return self._threads

    def first(self):
        """The first thread (the crashed task), read without the whole list while the
        list is short (Dump.first_thread)."""
        if self._threads is not None:
            return self._threads[0]
        if self._first is None:
            self._first = self.dump.first_thread()
        return self._first

    def known(self, tid) -> bool:
        """Whether TID is a thread gdb may name (the first alone, while the list is short)."""
        if self.short_list and self._threads is None:
            return tid == self.first().tid
        self.threads()
        return tid in self._by_tid

    def thread(self, tid=None):
        if tid is None or tid <= 0:
            tid = self.cur_g
        if self._threads is None and (tid is None or tid == self.first().tid):
            return self.first()
        self.threads()
        t = self._by_tid.get(tid) if tid is not None else None
        return t or self._threads[0]

    def _listed(self):
        """The threads a thread-list request gets: all of them, or only the first (the
        crashed task) while :attr:`short_list` holds. ``gdbkd core`` connects with the
        short list (gdb reads the list twice while connecting, ~0.1 s each on 10,000
        tasks, and registers every thread) and lifts it with ``monitor threads all``
        once connected: gdb's next update (info threads, thread apply, Python's
        Inferior.threads(), which every kd command that picks a thread goes through)
        gets every task. The numbering is the same either way: the first is thread 1."""
        return [self.first()] if self.short_list else self.threads()

    def _threads_doc(self) -> bytes:
        """The qXfer:threads document of the listed threads (names escaped, extra info per
        thread); the one of every task is built once."""
        if self.short_list:
            return self._threads_xml_of(self._listed())
        if self._threads_xml is None:
            self._threads_xml = self._threads_xml_of(self.threads())
        return self._threads_xml

    def _threads_xml_of(self, threads) -> bytes:
        items = []
        for th in threads:
            core = f' core="{th.active_cpu if th.active_cpu >= 0 else th.task.cpu}"'
            items.append(f'<thread id="{th.tid:x}" name="{_xml_escape(escape(th.task.name))}"'
                         f'{core}>{_xml_escape(self.extra_info(th))}</thread>')
        return ("<?xml version=\"1.0\"?><threads>" + "".join(items) + "</threads>").encode()

    def extra_info(self, th) -> str:
        t = th.task
        s = f"pid {t.pid} {escape(t.name)} [{_state_letter(t.state)}]"
        if th.active_cpu >= 0:
            s += f" on cpu {th.active_cpu}"
            if th.active_cpu == self.dump.crashed_cpu:
                s += " (crashed)"
        return s

    # -- transport ------------------------------------------------------------------
    def _read(self):
        data = os.read(self.infd, 65536)
        if not data:
            raise EOFError
        self.buf += data

    def _next_packet(self):
        buf = self.buf
        while True:
            start = buf.find(b"$")
            if start < 0:              # acks, ^C and junk: nothing to keep
                buf.clear()
                self._read()
                continue
            if start:
                del buf[:start]
            end = buf.find(b"#", 0, MAX_PACKET + 1)
            if end < 0 and len(buf) > MAX_PACKET:
                nxt = buf.find(b"$", 1)
                self._warn(("long",), f"gdbkd stub: dropped a packet longer than "
                                      f"{MAX_PACKET} bytes with no end")
                del buf[:nxt if nxt > 0 else len(buf)]
                continue
            if end < 0 or len(buf) < end + 3:
                self._read()
                continue
            pkt = bytes(buf[1:end])
            cs = bytes(buf[end + 1:end + 3])
            del buf[:end + 3]
            if self.ack:
                ok = cs.lower() == b"%02x" % rsp_checksum(pkt)
                self._write(b"+" if ok else b"-")
                if not ok:
                    continue
            return pkt

    def _write(self, data):
        while data:
            data = data[os.write(self.outfd, data):]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.log:
            self.log.write(b"<- " + data[:200] + b"\n")
            self.log.flush()
        self._write(b"$" + data + b"#%02x" % rsp_checksum(data))

    def serve(self):
        try:
            while True:
                pkt = self._next_packet()
                if self.log:
                    self.log.write(b"-> " + pkt[:200] + b"\n")
                    self.log.flush()
                reply = self.handle(pkt)
                if reply is None:
                    return
                self.send(reply)
                if pkt == b"QStartNoAckMode":
                    self.ack = False
        except (EOFError, BrokenPipeError):
            return

    # -- packets --------------------------------------------------------------------
    def handle(self, pkt: bytes):
        try:
            return self._handle(pkt)
        except GdbkdError as e:
            return _error_reply(str(e))
        except (ValueError, IndexError, OverflowError) as e:      # a malformed packet
            return f"E.malformed packet ({type(e).__name__})"
        except Exception as e:     # boundary: corrupt dump data of any kind: answer, keep serving
            self._warn(("internal", type(e).__name__), f"gdbkd stub: internal error on "
                       f"{pkt[:40]!r}: {type(e).__name__}: {e}")
            return "E01"

    def _stop_reply(self):
        th = self.thread(self.cur_g)
        self.cur_g = th.tid
        return f"T05thread:{th.tid:x};"

    def _handle(self, pkt: bytes):
        p = pkt.decode("latin-1")
        if p.startswith("qSupported"):
            # gdb 14+ announces error-message+ and then shows "E." texts; gdb 13
            # cannot parse "E." in an m reply, so it gets E14 and the text on stderr.
            self.error_text = "error-message+" in p
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;qXfer:threads:read+;"
                    f"QStartNoAckMode+;vContSupported-")
        if p == "QStartNoAckMode":
            return "OK"     # serve() stops acking once this reply is out
        if p == "?":
            try:
                return self._stop_reply()
            except (GdbkdError, ValueError, IndexError, KeyError) as e:
                # gdb 13 spins on an error reply to "?": stop anyway
                self._warn(("stop-reply",), f"gdbkd stub: cannot tell the crashed thread ({e})")
                return "S05"
        if p.startswith("qXfer:features:read:"):
            annex, _, rng = p[len("qXfer:features:read:"):].partition(":")
            if annex != "target.xml":
                return "E00"
            return self._xfer(self._xml, rng)
        if p.startswith("qXfer:threads:read::"):
            rng = p[len("qXfer:threads:read::"):]
            if rng.startswith("0,") or self._xfer_threads is None:
                self._xfer_threads = self._threads_doc()
            return self._xfer(self._xfer_threads, rng)
        if p == "qfThreadInfo":
            self._tinfo = [t.tid for t in self._listed()]
            return self._thread_chunk()
        if p == "qsThreadInfo":
            return self._thread_chunk()
        if p.startswith("qThreadExtraInfo,"):
            th = self.thread(int(p.split(",")[1], 16))
            return self.extra_info(th).encode().hex()
        if p == "qC":
            return f"QC{self.thread(self.cur_g).tid:x}"
        if p == "qAttached":
            return "1"
        if p.startswith("H"):
            tid = int(p[2:], 16) if p[2:] not in ("", "-1") else -1
            if tid > 0:
                if not self.known(tid):
                    return "E01"
                if p[1] == "g":
                    self.cur_g = tid
            return "OK"
        if p.startswith("T"):
            return "OK" if self.known(int(p[1:], 16)) else "E01"
        if p == "g":
            regs = self._regs(self.thread(self.cur_g))
            return "".join(self._reg_hex(regs, i) for i in range(NUM_REGS))
        if p.startswith("p"):
            n = int(p[1:], 16)
            if n >= NUM_REGS:
                return "E00"
            return self._reg_hex(self._regs(self.thread(self.cur_g)), n)
        if p.startswith("m"):
            a, _, n = p[1:].partition(",")
            a, n = int(a, 16), int(n, 16)
            if not (0 <= a < 1 << 64 and n >= 0):
                raise ValueError("address or length out of range")
            return self._read_mem(a, n)
        if p[:1] in ("M", "X", "G", "P") or p.startswith("vFlash"):
            return "E.the dump is read-only"
        if p.startswith("vCont?") or p.startswith("vMustReplyEmpty"):
            return ""
        if p in ("c", "s") or p.startswith(("vCont;", "C", "S")):
            self._warn("run", "gdbkd stub: a dump cannot run; the threads stay where they stopped")
            return self._stop_reply()
        if p.startswith("qRcmd,"):
            return self._monitor(bytes.fromhex(p[6:]).decode("latin-1"))
        if p == "k":
            return None
        if p.startswith("D"):
            self.send("OK")
            return None
        if p.startswith("qSymbol"):
            return "OK"
        return ""

    def _xfer(self, data: bytes, rng: str):
        off, _, ln = rng.partition(",")
        off, ln = int(off, 16), int(ln, 16)
        chunk = data[off:off + min(ln, PACKET_SIZE // 2)]
        more = off + len(chunk) < len(data)
        return (b"m" if more else b"l") + rsp_escape_binary(chunk)

    def _thread_chunk(self):
        if not self._tinfo:
            return "l"
        n = max(1, (PACKET_SIZE - 16) // 9)
        part, self._tinfo = self._tinfo[:n], self._tinfo[n:]
        return "m" + ",".join(f"{t:x}" for t in part)

    def _regs(self, th):
        """The thread's registers, with x30 and pc unsigned when pointer auth is on."""
        regs = th.regs
        if self.pac.enabled:
            regs = list(regs)
            for i in (30, 32):                  # lr, pc
                if regs[i] is not None:
                    regs[i] = self.pac.strip(regs[i] & 0xFFFFFFFFFFFFFFFF)
        return regs

    @staticmethod
    def _reg_hex(regs, i):
        v = regs[i]
        size = REG_SIZES[i]
        if v is None:
            return "xx" * size
        return (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex()

    def _warn(self, key, msg):
        if key in self._warned or len(self._warned) > 1000:
            return
        self._warned.add(key)
        print(msg, file=self.err, flush=True)

    def _read_mem(self, addr, length):
        length = min(length, PACKET_SIZE // 2)
        out = []
        ps = self.dump.page_size
        a, left = addr, length
        while left > 0:
            n = min(left, ps - (a & (ps - 1)))
            try:
                out.append(self.dump.read(a, n))
            except GdbkdError as e:
                if isinstance(e, PageExcluded):
                    msg = "page excluded from the dump (makedumpfile -d)"
                    self._warn(("bad", a // ps), f"gdbkd stub: {a:#x}: {msg}")
                elif isinstance(e, DumpError) and not isinstance(e, PageNotInDump):
                    msg = str(e)             # a corrupt page: news to the user, say it once
                    self._warn(("bad", a // ps), f"gdbkd stub: {a:#x}: {msg}")
                else:
                    msg = str(e)
                if out:
                    break
                return _error_reply(msg) if self.error_text else "E14"
            a += n
            left -= n
        data = b"".join(out)
        if self.pac.enabled:
            data = self.pac.strip_bytes(addr, data)
        return data.hex()

    def _monitor(self, cmd):
        d = self.dump
        cmd = cmd.strip()
        if cmd in ("", "help"):
            text = ("monitor info: the dump's format, kernel, KASLR offset, crashed CPU, page size, VA bits\n"
                    "monitor pac raw|strip: serve signed return addresses as stored, or stripped "
                    "(the default when VMCOREINFO has a KERNELPACMASK)\n"
                    "monitor threads all: list every task at gdb's next thread-list update\n")
        elif cmd == "info":
            text = (f"dump {d.path}\nformat {d.format} (written by {d.producer})\n"
                    f"kernel {d.osrelease}\nKASLR offset {d.kaslr_offset:#x}\n"
                    f"crashed cpu {d.crashed_cpu}\ncrashed pid {d.crashed_pid}\n"
                    f"tasks {len(self.threads())}\n")
            m = getattr(d, "mmu", None)
            if m is not None:
                text += (f"page size {m.page_size}\nva bits {m.va_bits}\n"
                         f"page table levels {m.levels}{' (LPA2)' if m.lpa2 else ''}\n")
            if self.pac.mask:
                text += (f"pointer auth: kernel PAC mask {self.pac.mask:#x}, code pointers served "
                         f"{'stripped' if self.pac.enabled else 'raw'}\n")
        elif cmd == "threads all":
            self.short_list = False
            text = "every task is listed from gdb's next thread-list update on\n"
        elif cmd in ("pac raw", "pac strip"):
            if not self.pac.mask:
                text = "this dump has no KERNELPACMASK: nothing to strip\n"
            else:
                self.pac.enabled = cmd == "pac strip"
                text = f"code pointers now served {'stripped' if self.pac.enabled else 'raw'}\n"
        else:
            text = f"unknown monitor command '{escape(cmd)}' (try: monitor help)\n"
        self.send("O" + text.encode().hex())
        return "OK"
