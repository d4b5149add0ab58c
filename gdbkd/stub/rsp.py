"""The gdb side of gdbkd's remote-serial-protocol targets: one base for the dump server
(server.py :class:`StubServer`) and the live proxy (proxy.py :class:`LiveProxy`).

:class:`RspTarget` frames packets to and from gdb (checksums, acks until
``QStartNoAckMode``, a bounded input buffer), dispatches gdb's packets, answers
the ones both targets answer alike, and runs the serve loop:

* ``qSupported`` (``PacketSize``, the qXfer objects, no-ack mode, plus the
  subclass's :attr:`RspTarget.features`), ``QStartNoAckMode``;
* ``qXfer:features:read`` of the target description the subclass gives
  (:meth:`RspTarget.features_xml`) and ``qXfer:threads:read`` of the thread
  document built here from the subclass's threads (:meth:`RspTarget.thread_entries`):
  ``<thread id=TID name=NAME core=CPU>EXTRA</thread>``, escaped, in 8 KiB chunks;
* ``qfThreadInfo``/``qsThreadInfo`` in chunks, ``qThreadExtraInfo``, ``qC``,
  ``H`` (the threads for registers and run control: :attr:`cur_g`, :attr:`cur_c`),
  ``T`` (thread alive);
* ``g``/``p`` and ``m`` (parsed here, answered by the subclass), the write packets,
  the run packets (c, s, C, S, vCont), ``qRcmd`` (``monitor``), ``k``, ``D``;
* error replies: a :class:`~gdbkd.errors.GdbkdError` becomes ``E.text``, a malformed
  packet ``E.malformed packet (...)``, anything else ``E01`` and one line on stderr:
  a bad request never ends the session.

A subclass supplies where threads, registers and memory come from, what the
run packets and monitor commands do, and every packet this base does not
know (:meth:`RspTarget.other`). The shared helpers (checksum, binary escaping,
XML escaping, error replies) are public here.

Hostile input: the input buffer holds at most :data:`MAX_PACKET` bytes of one
packet (gdb sends at most the PacketSize announced here); a longer
unterminated packet is dropped with a warning, and junk between packets is
skipped with one ``find``, not byte by byte. Packets are handled as received:
binary data (``X``) keeps its escapes, so a target that forwards it (the proxy)
forwards it intact.
"""

import os
import sys

from ..errors import GdbkdError
from ..textutil import escape
from ..model.reader import MemoryFault

__all__ = ["RspTarget", "SessionEnded", "PACKET_SIZE", "MAX_PACKET", "rsp_checksum",
           "rsp_escape_binary", "xml_escape", "error_reply", "reg_hex",
           "regs_hex", "threads_xml"]

PACKET_SIZE = 0x4000
#: the longest packet kept while waiting for its '#' (escaped binary data doubles it)
MAX_PACKET = 4 * PACKET_SIZE


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


def xml_escape(s: str) -> str:
    return (s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def error_reply(text: str) -> str:
    """An ``E.`` reply: the text on one line, without the protocol's framing characters."""
    text = " ".join(text.split())
    return "E." + text.replace("$", "").replace("#", "").replace("}", "").replace("*", "")[:200]


def reg_hex(value, size: int) -> str:
    """A register's value in a ``g``/``p`` reply: SIZE bytes little-endian, ``xx`` each when
    the value is unknown (None)."""
    if value is None:
        return "xx" * size
    return (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little").hex()


def regs_hex(regs, sizes) -> str:
    """A ``g`` reply: every register of REGS, of the SIZES given, in order."""
    return "".join(reg_hex(regs[i], s) for i, s in enumerate(sizes))


def threads_xml(entries) -> bytes:
    """The qXfer:threads document of ENTRIES, (tid, name, extra info, core) each; the
    name is a task's comm as read (control characters are escaped here)."""
    items = "".join(f'<thread id="{tid:x}" name="{xml_escape(escape(name))}" core="{core}">'
                    f'{xml_escape(extra)}</thread>' for tid, name, extra, core in entries)
    return ('<?xml version="1.0"?><threads>' + items + '</threads>').encode()


class SessionEnded(GdbkdError):
    """The session cannot go on (the proxy's QEMU closed its end): :meth:`RspTarget.serve`
    returns; never turned into an error reply."""


class RspTarget:
    """A remote-protocol target served to one gdb on ``infd``/``outfd`` (a pipe's two
    ends or one socket). See the module docstring for what a subclass supplies."""

    #: the prefix of the lines said on stderr
    prog = "gdbkd"
    #: what qSupported announces besides PacketSize, the qXfer objects and no-ack mode
    features = "vContSupported-"
    #: thread ids per qfThreadInfo/qsThreadInfo reply
    threads_per_chunk = max(1, (PACKET_SIZE - 16) // 9)
    #: how a reply given as text goes on the wire
    encoding = "utf-8"

    def __init__(self, infd=0, outfd=1, log=None, err=None):
        self.infd, self.outfd = infd, outfd
        self.log = log
        self.err = err or sys.stderr
        self.ack = True
        self.buf = bytearray()
        self.cur_g = None          # the thread gdb picked for registers and memory (Hg)
        self.cur_c = None          # the thread gdb picked for c/s (Hc); None: any
        self.error_text = False    # gdb understands "E.text" replies (qSupported)
        self._tinfo = []
        self._xfer_threads = None  # the qXfer:threads document being transferred
        self._warned = set()

    # -- what a subclass supplies ---------------------------------------------------------
    def features_xml(self, annex: str):
        """The target description document ANNEX (bytes), or None."""
        return None

    def thread_ids(self):
        """The thread ids gdb is given, in order (the first is gdb's thread 1)."""
        raise NotImplementedError

    def thread_entries(self):
        """(tid, name, extra info, core) of each thread in :meth:`thread_ids` order."""
        raise NotImplementedError

    def threads_doc(self) -> bytes:
        """The qXfer:threads document; read again when gdb starts reading it at offset 0."""
        return threads_xml(self.thread_entries())

    def extra_info(self, tid: int) -> str:
        """qThreadExtraInfo: one line about thread TID."""
        return ""

    def known(self, tid: int) -> bool:
        """Whether TID is a thread gdb may name (H, T)."""
        raise NotImplementedError

    def current_tid(self) -> int:
        """qC: the thread of :attr:`cur_g`, or the one that stands for it."""
        raise NotImplementedError

    def stop_query(self):
        """The reply to ``?``: why and in which thread the target stopped."""
        raise NotImplementedError

    def registers_reply(self):
        """``g``: the registers of the selected thread."""
        raise NotImplementedError

    def register_reply(self, n: int):
        """``pN``: register N of the selected thread."""
        raise NotImplementedError

    def memory_reply(self, addr: int, length: int):
        """``m``: LENGTH bytes at ADDR (at most half a packet) in hex, or an error reply."""
        raise NotImplementedError

    def write(self, p: str):
        """M, X, G, P, vFlash*: a write to memory or registers."""
        return "E.the target is read-only"

    def resume(self, p: str):
        """c, s, C, S, vCont;: the stop reply once the target stopped again."""
        raise NotImplementedError

    def monitor(self, cmd: str):
        """``monitor CMD`` (qRcmd): output through :meth:`console`, then the reply."""
        self.console(f"unknown monitor command '{escape(cmd)}'\n")
        return "OK"

    def kill(self):
        """``k``: the session ends (no reply)."""

    def detach(self):
        """``D``: the session ends after an OK."""

    def other(self, p: str):
        """Any other packet: the empty reply says it is not supported."""
        return ""

    def fault_reply(self, e: MemoryFault):
        """The reply to a request that failed on memory that cannot be read."""
        return error_reply(str(e))

    # -- helpers for subclasses -------------------------------------------------------
    def memory_error(self, text: str):
        """An ``m`` request's error reply: the text when gdb reads "E.text" (gdb 14+
        announces error-message+); gdb 13 cannot parse it in an m reply and gets E14
        (the text is for stderr then)."""
        return error_reply(text) if self.error_text else "E14"

    def console(self, text: str):
        """Output for gdb's console (an ``O`` packet) while a request is being answered."""
        self.send("O" + text.encode().hex())

    def _warn(self, key, msg):
        """MSG on stderr, once per KEY (and at most ~1000 different lines a session)."""
        if key in self._warned or len(self._warned) > 1000:
            return
        self._warned.add(key)
        print(msg, file=self.err, flush=True)

    # -- transport ----------------------------------------------------------------------
    def _read(self):
        data = os.read(self.infd, 65536)
        if not data:
            raise EOFError
        self.buf += data

    def _next_packet(self) -> bytes:
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
                self._warn(("long",), f"{self.prog}: dropped a packet longer than "
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
        """One packet to gdb (str or bytes; bytes go as they are)."""
        if isinstance(data, str):
            data = data.encode(self.encoding, "backslashreplace")
        if self.log:
            self.log.write(b"<- " + data[:200] + b"\n")
            self.log.flush()
        self._write(b"$" + data + b"#%02x" % rsp_checksum(data))

    def serve(self):
        """Answer gdb's packets until it kills or detaches, or either end goes away."""
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
        except (EOFError, ConnectionError, SessionEnded):
            return

    # -- packets --------------------------------------------------------------------------
    def handle(self, pkt):
        """The reply to one packet (bytes or text as received), None when the session ends."""
        p = pkt.decode("latin-1") if isinstance(pkt, (bytes, bytearray)) else pkt
        try:
            return self.dispatch(p)
        except (SessionEnded, EOFError, ConnectionError):
            raise                  # gdb or what is behind the target went away: serve() ends
        except MemoryFault as e:
            return self.fault_reply(e)
        except GdbkdError as e:
            return error_reply(str(e))
        except (ValueError, IndexError, OverflowError) as e:      # a malformed packet
            return f"E.malformed packet ({type(e).__name__})"
        except Exception as e:     # boundary: corrupt target data of any kind: answer, keep serving
            self._warn(("internal", type(e).__name__), f"{self.prog}: internal error on "
                       f"{pkt[:40]!r}: {type(e).__name__}: {e}")
            return "E01"

    def dispatch(self, p: str):
        if p.startswith("qSupported"):
            # gdb 14+ announces error-message+ and then shows "E." texts; gdb 13
            # cannot parse "E." in an m reply, so it gets E14 and the text on stderr.
            self.error_text = "error-message+" in p
            return (f"PacketSize={PACKET_SIZE:x};qXfer:features:read+;qXfer:threads:read+;"
                    f"QStartNoAckMode+;{self.features}")
        if p == "QStartNoAckMode":
            return "OK"     # serve() stops acking once this reply is out
        if p == "?":
            return self.stop_query()
        if p.startswith("qXfer:features:read:"):
            annex, _, rng = p[len("qXfer:features:read:"):].partition(":")
            data = self.features_xml(annex)
            if data is None:
                return "E00"
            return self._xfer(data, rng)
        if p.startswith("qXfer:threads:read::"):
            rng = p[len("qXfer:threads:read::"):]
            if rng.startswith("0,") or self._xfer_threads is None:
                self._xfer_threads = self.threads_doc()
            return self._xfer(self._xfer_threads, rng)
        if p == "qfThreadInfo":
            self._tinfo = list(self.thread_ids())
            return self._thread_chunk()
        if p == "qsThreadInfo":
            return self._thread_chunk()
        if p.startswith("qThreadExtraInfo,"):
            return self.extra_info(int(p.split(",")[1], 16)).encode().hex()
        if p == "qC":
            return f"QC{self.current_tid():x}"
        if p.startswith("H"):
            t = p[2:]
            tid = int(t, 16) if t not in ("", "-1") else -1
            if tid > 0 and not self.known(tid):
                return "E01"
            if p[1:2] == "g":
                if tid > 0:
                    self.cur_g = tid
            elif p[1:2] == "c":
                self.cur_c = tid if tid > 0 else None
            return "OK"
        if p.startswith("T"):
            return "OK" if self.known(int(p[1:], 16)) else "E01"
        if p == "g":
            return self.registers_reply()
        if p.startswith("p"):
            return self.register_reply(int(p[1:], 16))
        if p.startswith("m"):
            a, _, n = p[1:].partition(",")
            a, n = int(a, 16), int(n, 16)
            if not (0 <= a < 1 << 64 and n >= 0):
                raise ValueError("address or length out of range")
            return self.memory_reply(a, min(n, PACKET_SIZE // 2))
        if p[:1] in ("M", "X", "G", "P") or p.startswith("vFlash"):
            return self.write(p)
        if p in ("c", "s") or p.startswith(("vCont;", "C", "S")):
            return self.resume(p)
        if p.startswith("qRcmd,"):
            return self.monitor(bytes.fromhex(p[6:]).decode("latin-1"))
        if p == "k":
            self.kill()
            return None
        if p.startswith("D"):
            self.detach()
            self.send("OK")
            return None
        return self.other(p)

    def _xfer(self, data: bytes, rng: str):
        off, _, ln = rng.partition(",")
        off, ln = int(off, 16), int(ln, 16)
        chunk = data[off:off + min(ln, PACKET_SIZE // 2)]
        more = off + len(chunk) < len(data)
        return (b"m" if more else b"l") + rsp_escape_binary(chunk)

    def _thread_chunk(self):
        if not self._tinfo:
            return "l"
        n = self.threads_per_chunk
        part, self._tinfo = self._tinfo[:n], self._tinfo[n:]
        return "m" + ",".join(f"{t:x}" for t in part)
