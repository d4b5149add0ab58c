"""kd rd: read and display memory (crash's rd)."""

import gdb

from ._util import KernelCommand
from . import KdError, command
from ..kernel.memory import read_bytes, read_cstring
from ..kernel.symbolize import eval_address, lookup
from ..textutil import escape

__all__ = ["Rd"]

MAX_BYTES = 1 << 20


def _sym_of(v):
    if v >> 48 != 0xFFFF:
        return None
    s = lookup(v, want_line=False)
    return s.label() if s.name and s.offset < 1 << 20 else None


@command
class Rd(KernelCommand):
    """Display memory contents (crash's rd).

ADDR is a hex address (0x optional), a symbol (its address: `kd rd jiffies`)
or a gdb expression (`kd rd $sp 8`). COUNT units are shown (default 1)."""

    name = "rd"
    json_addresses = frozenset(("addr", "values"))        # where, and the words read

    def add_arguments(self, p):
        g = p.add_mutually_exclusive_group()
        for bits in (8, 16, 32, 64):
            g.add_argument(f"-{bits}", dest="bits", action="store_const", const=bits,
                           help=f"{bits}-bit units" + (" (the default)" if bits == 64 else ""))
        p.add_argument("-s", dest="symbolic", action="store_true",
                       help="symbolic: 64-bit values that are kernel symbols print as name+offset")
        p.add_argument("-x", dest="no_ascii", action="store_true", help="no ASCII column")
        p.add_argument("-d", dest="decimal", action="store_true", help="signed decimal")
        p.add_argument("-a", dest="ascii", action="store_true",
                       help="a NUL-terminated ASCII string (shown escaped)")
        p.add_argument("addr", metavar="ADDR",
                       help="hex address (0x optional), symbol or gdb expression")
        p.add_argument("count", nargs="?", type=int, default=1, metavar="COUNT",
                       help="number of units to show (default 1)")

    def run(self, args):
        try:
            addr = eval_address(args.addr)
        except gdb.error as e:
            raise KdError(f"cannot evaluate {escape(args.addr)}: {e}")
        if args.ascii:
            try:
                s = read_cstring(addr, min(max(args.count, 256), 4096))
            except gdb.MemoryError:
                raise KdError(f"cannot read memory at {addr:#x}")
            return {"addr": addr, "string": escape(s)}
        bits = args.bits or 64
        if args.symbolic:
            bits = 64
        size = bits // 8
        if args.count < 1 or args.count * size > MAX_BYTES:
            raise KdError(f"COUNT must be between 1 and {MAX_BYTES // size}")
        try:
            raw = read_bytes(addr, args.count * size)
        except gdb.MemoryError:
            raise KdError(f"cannot read {args.count * size} bytes at {addr:#x}")
        # the units as they are in memory ("0x…" in --json); -d signs them in the text only
        vals = [int.from_bytes(raw[i:i + size], "little") for i in range(0, len(raw), size)]
        d = {"addr": addr, "bits": bits, "values": vals, "bytes": raw.hex()}
        if args.symbolic:
            d["symbols"] = [_sym_of(v) for v in vals]
        return d

    def render(self, d, args):
        addr = d["addr"]
        if "string" in d:
            return f"{addr:016x}:  {d['string']}"
        bits = d["bits"]
        size = bits // 8
        raw = bytes.fromhex(d["bytes"])
        per_line = 16 // size if not args.symbolic else 2
        lines = []
        for i in range(0, len(d["values"]), per_line):
            chunk = d["values"][i:i + per_line]
            if args.symbolic:
                cells = [(d["symbols"][i + j] or f"{v:016x}") for j, v in enumerate(chunk)]
                cells = [c.ljust(24) for c in cells]
            elif args.decimal:
                cells = [str(v - (v >> (bits - 1) << bits)).rjust(len(str(2 ** bits)) + 1)
                         for v in chunk]
            else:
                cells = [f"{v:0{size * 2}x}" for v in chunk]
            line = f"{addr + i * size:016x}:  " + " ".join(cells)
            if not args.no_ascii and not args.symbolic and not args.decimal:
                b = raw[i * size:(i + len(chunk)) * size]
                pad = (per_line - len(chunk)) * (size * 2 + 1)
                line += " " * (pad + 3) + "".join(chr(c) if 0x20 <= c < 0x7f else "." for c in b)
            lines.append(line.rstrip())
        return "\n".join(lines)
