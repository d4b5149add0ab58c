"""kd dis: disassemble kernel memory with capstone (crash's dis)."""

import gdb

from ._util import KernelCommand
from . import KdError, command
from ..kernel.disasm import disassemble, capstone_available
from ..kernel.symbolize import lookup, describe, eval_address, is_text
from ..textutil import escape

__all__ = ["Dis"]


def _func_range(addr):
    """(start, end) of the function holding addr: DWARF block, else next ELF symbol."""
    try:
        blk = gdb.block_for_pc(addr)
    except (RuntimeError, gdb.error):
        blk = None
    while blk is not None and blk.function is None:
        blk = blk.superblock
    while blk is not None and blk.superblock is not None and blk.superblock.function is not None:
        blk = blk.superblock        # outermost function block (not an inlined one)
    s = lookup(addr, want_line=False)
    if blk is not None and blk.function is not None:
        start = blk.start
        if s.start is not None and blk.start - 16 <= s.start < blk.start:
            start = s.start          # include the patchable-entry NOPs before low_pc
        return start, blk.end
    if s.start is None:
        return None
    # asm routine without DWARF: walk forward until the symbol changes (max 1 KiB)
    end = s.start
    while end - s.start < 1024:
        end += 4
        n = lookup(end, want_line=False)
        if n.name != s.name:
            break
    return s.start, end


def _source_line(addr, s, texts):
    """The text of S's source line (S: lookup(ADDR)), from the file gdb finds for the
    symtab through its source path and substitute-path rules; None when it finds none."""
    symtabs = []
    try:
        symtabs.append(gdb.find_pc_line(addr).symtab)
        if s.name:    # the patchable-entry NOPs before low_pc: lookup named the declaration
            sym = gdb.lookup_global_symbol(s.name) or gdb.lookup_static_symbol(s.name)
            symtabs.append(sym.symtab if sym is not None else None)
    except (RuntimeError, gdb.error):
        pass
    path = next((st.fullname() for st in symtabs if st is not None and st.filename == s.file), None)
    if path not in texts:
        try:
            with open(path, errors="replace") as f:
                texts[path] = f.read().splitlines()
        except (OSError, TypeError):
            texts[path] = None
    body = texts[path]
    return body[s.line - 1] if body and 0 < s.line <= len(body) else None


@command
class Dis(KernelCommand):
    """Disassemble arm64 code from target memory (crash's dis).

FUNC alone disassembles the whole function; ADDR alone one instruction;
COUNT instructions otherwise. Bytes come from guest memory, so patched code
(alternatives, ftrace, breakpoints) shows as it runs. Branch and address
targets are annotated with symbols."""

    name = "dis"
    json_addresses = frozenset(("addr",))

    def add_arguments(self, p):
        p.add_argument("-l", dest="lines", action="store_true", help="interleave source file:line")
        p.add_argument("-s", dest="source", action="store_true",
                       help="the source text of each line too (the kernel's: gdbkd fetch --source)")
        p.add_argument("where", metavar="ADDR|FUNC",
                       help="address (hex, symbol or expression) or function name")
        p.add_argument("count", nargs="?", type=int, metavar="COUNT",
                       help="number of instructions (default: the whole FUNC, or one at ADDR)")

    def run(self, args):
        if not capstone_available():
            raise KdError("capstone is not importable in gdb's Python (run install.sh)")
        try:
            addr = eval_address(args.where)
        except gdb.error as e:
            raise KdError(f"cannot evaluate {escape(args.where)}: {e}")
        if args.count is not None and not 0 < args.count <= 100000:
            raise KdError("COUNT must be between 1 and 100000")
        is_func = not args.where.lower().startswith("0x") and not all(
            c in "0123456789abcdef" for c in args.where.lower())
        if args.count is None and is_func:
            rng = _func_range(addr)
            if rng is None:
                raise KdError(f"{escape(args.where)}: not inside a known function")
            addr = rng[0] if rng[0] <= addr < rng[1] else addr
            size = max(4, rng[1] - addr)
            insns = disassemble(addr, size=min(size, 65536))
        else:
            insns = disassemble(addr, count=args.count or 1)
        out = []
        prev_line = None
        args.lines = args.lines or args.source
        texts = {}
        for ins in insns:
            s = lookup(ins.addr, want_line=args.lines)
            d = {"addr": ins.addr, "symbol": s.label(), "bytes": ins.bytes.hex(),
                 "mnemonic": ins.mnemonic, "operands": ins.op_str}
            tgt = ins.branch_target()
            if tgt is not None and (is_text(tgt) or lookup(tgt, want_line=False).name):
                d["target"] = describe(tgt)
            if args.lines and s.file and (s.file, s.line) != prev_line:
                d["source"] = f"{s.file}: {s.line}"
                prev_line = (s.file, s.line)
                if args.source:
                    d["text"] = _source_line(ins.addr, s, texts)
            out.append(d)
        return out

    def render(self, data, args):
        lines = []
        width = max((len(d["symbol"]) for d in data), default=0)
        for d in data:
            if "source" in d:
                lines.append(d["source"])
            if d.get("text") is not None:
                lines.append("  " + "".join(c if c >= " " and c != "\x7f" else "?"      # a host file
                                            for c in d["text"].expandtabs(8)))
            ann = f"  <{d['target']}>" if "target" in d else ""
            lines.append(f"0x{d['addr']:016x} <{d['symbol']}>:{' ' * (width - len(d['symbol']))} "
                         f"{d['mnemonic']:<7} {d['operands']}{ann}")
        return "\n".join(lines)
