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
Memory is read lazily: nothing is decompressed before gdb asks for it, through the
model's :class:`~gdbkd.model.reader.DumpReader` (uncached: one page at a time, as gdb asks).

The protocol (framing, acks, the packets' dispatch, the thread list and document,
error replies, the serve loop) is :class:`~gdbkd.stub.rsp.RspTarget`'s; this module
supplies the dump's threads, registers, memory and monitor commands.

Hostile input (rsp.py): the input buffer is bounded, and a request that cannot be
answered gets an error reply and the server keeps serving. A dump page that
is corrupt or excluded is also said on stderr (once per page); addresses that
are merely unmapped are not, since gdb probes them routinely.
"""

from ..errors import GdbkdError
from ..textutil import escape
from ..dump import DumpError, PageExcluded, PageNotInDump
from ..model.reader import DumpReader, MemoryFault, M64
from ..model.tasks import ps_letter
from ..arm64.regs import NUM_REGS, REG_SIZES
from .rsp import RspTarget, threads_xml, reg_hex, regs_hex

__all__ = ["StubServer", "target_xml"]


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


class StubServer(RspTarget):
    """Serve DUMP (a ``gdbkd.target`` Dump) to gdb: every task a thread, read-only."""

    prog = "gdbkd stub"

    def __init__(self, dump, infd=0, outfd=1, log=None, err=None, short_list=False):
        super().__init__(infd, outfd, log, err)
        self.dump = dump
        #: gdb's memory reads: the model's dump reader, uncached (gdb caches what it reads)
        #: and without its pointer-auth stripping (done here: ``monitor pac`` toggles it)
        self.reader = DumpReader(dump, cache=False)
        self._threads = None
        self._by_tid = None
        self._xml = target_xml().encode()
        self._threads_xml = None      # the qXfer:threads document of every task
        self.short_list = short_list
        self._first = None
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

    def thread_ids(self):
        return [t.tid for t in self._listed()]

    def thread_entries(self):
        for th in self._listed():
            yield (th.tid, th.task.name, self._extra(th),
                   th.active_cpu if th.active_cpu >= 0 else th.task.cpu)

    def threads_doc(self) -> bytes:
        """The document of the listed threads; the one of every task is built once."""
        if self.short_list:
            return threads_xml(self.thread_entries())
        if self._threads_xml is None:
            self._threads_xml = threads_xml(self.thread_entries())
        return self._threads_xml

    def _extra(self, th) -> str:
        t = th.task
        s = f"pid {t.pid} {escape(t.name)} [{ps_letter(t.state)}]"
        if th.active_cpu >= 0:
            s += f" on cpu {th.active_cpu}"
            if th.active_cpu == self.dump.crashed_cpu:
                s += " (crashed)"
        return s

    def extra_info(self, tid):
        return self._extra(self.thread(tid))

    def current_tid(self):
        return self.thread(self.cur_g).tid

    def _stop_reply(self):
        th = self.thread(self.cur_g)
        self.cur_g = th.tid
        return f"T05thread:{th.tid:x};"

    def stop_query(self):
        try:
            return self._stop_reply()
        except (GdbkdError, ValueError, IndexError, KeyError) as e:
            # gdb 13 spins on an error reply to "?": stop anyway
            self._warn(("stop-reply",), f"gdbkd stub: cannot tell the crashed thread ({e})")
            return "S05"

    def resume(self, p):
        self._warn("run", "gdbkd stub: a dump cannot run; the threads stay where they stopped")
        return self._stop_reply()

    # -- registers ------------------------------------------------------------------
    def features_xml(self, annex):
        return self._xml if annex == "target.xml" else None

    def _regs(self, th):
        """The thread's registers, with x30 and pc unsigned when pointer auth is on."""
        regs = th.regs
        if self.pac.enabled:
            regs = list(regs)
            for i in (30, 32):                  # lr, pc
                if regs[i] is not None:
                    regs[i] = self.pac.strip(regs[i] & 0xFFFFFFFFFFFFFFFF)
        return regs

    def registers_reply(self):
        return regs_hex(self._regs(self.thread(self.cur_g)), REG_SIZES[:NUM_REGS])

    def register_reply(self, n):
        if n >= NUM_REGS:
            return "E00"
        return reg_hex(self._regs(self.thread(self.cur_g))[n], REG_SIZES[n])

    def write(self, p):
        return "E.the dump is read-only"

    # -- memory ---------------------------------------------------------------------
    def memory_reply(self, addr, length):
        """The bytes the dump has from ADDR on, up to the first page it cannot give (an
        error reply when that is the first). A corrupt or excluded page is also said on
        stderr, once per page."""
        try:
            data = self.reader.read(addr, length)
        except MemoryFault as f:
            e = f.cause if f.cause is not None else f
            a = addr + ((f.addr - addr) & M64)          # the page that failed
            ps = self.dump.page_size
            if isinstance(e, PageExcluded):
                msg = "page excluded from the dump (makedumpfile -d)"
                self._warn(("bad", a // ps), f"gdbkd stub: {a:#x}: {msg}")
            elif isinstance(e, DumpError) and not isinstance(e, PageNotInDump):
                msg = str(e)             # a corrupt page: news to the user, say it once
                self._warn(("bad", a // ps), f"gdbkd stub: {a:#x}: {msg}")
            else:
                msg = str(e)
            if a == addr:
                return self.memory_error(msg)
            data = self.reader.read(addr, a - addr)      # the pages before it
        if self.pac.enabled:
            data = self.pac.strip_bytes(addr, data)
        return data.hex()

    # -- the rest -------------------------------------------------------------------
    def other(self, p):
        if p == "qAttached":
            return "1"
        if p.startswith("qSymbol"):
            return "OK"
        return ""      # vCont? (no vCont), vMustReplyEmpty, anything not supported

    def monitor(self, cmd):
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
        self.console(text)
        return "OK"
