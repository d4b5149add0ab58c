"""Why did this instruction fault? The pure half of ``kd analyze``'s fault explanation.

No gdb here; the in-gdb half (DWARF locations, C types, memory) is
gdbkd/kernel/explain.py. Pieces:

* :func:`decode_access` — the faulting arm64 load/store, decoded with capstone
  (detail mode): its base and index registers, extend/shift, displacement,
  pre/post-indexing, access size, and the address it computes from the
  registers of the exception's ``pt_regs``.
* :func:`parse_scope` — the variables of a block with their DWARF locations
  per pc range, as gdb renders them (``info scope *PC``: gdb is the DWARF
  engine; its Python API has no location expressions). Only locations whose
  meaning is certain are classified: a register, a constant, a register plus
  an offset as a value, an entry value of a register; everything else is
  kept as text and never used to name a register.

The instruction that last set a register before a pc (how ``c->table`` in
``c->table[idx]`` is recognised when the base register holds no variable) is
gdbkd/analysis/args.py's :func:`~gdbkd.analysis.args.last_write`, the walk
``kd bt --args`` uses too.
"""

import re
from dataclasses import dataclass, field

__all__ = ["Access", "decode_access", "decode", "reg_norm", "parse_scope", "ScopeVar",
           "vars_in_register", "Insn", "poison_of", "POISONS"]

M64 = (1 << 64) - 1
POISON_POINTER_DELTA = 0xdead000000000000
#: include/linux/poison.h values (with CONFIG_ILLEGAL_POINTER_VALUE = 0xdead000000000000)
POISONS = {0x100 + POISON_POINTER_DELTA: "LIST_POISON1", 0x122 + POISON_POINTER_DELTA: "LIST_POISON2"}

def _engine():
    from ..arm64.insn import engine
    return engine(detail=True)


def reg_norm(name: str):
    """capstone's register name as an x register ("w3" → "x3", "fp" → "x29");
    None for zero registers."""
    if not name:
        return None
    name = name.lower()
    if name in ("fp",):
        return "x29"
    if name in ("lr",):
        return "x30"
    if name in ("xzr", "wzr"):
        return None
    if name in ("sp", "wsp"):
        return "sp"
    if name[0] in "wx" and name[1:].isdigit():
        return "x" + name[1:]
    return name


@dataclass
class Insn:
    addr: int
    mnemonic: str
    op_str: str
    reads: list
    writes: list
    ops: object = None           # capstone operands
    raw: object = None
    #: every register it may write (gdbkd/analysis/args.py ``writes``), once asked
    may_write: frozenset = field(default=None, repr=False, compare=False)

    @property
    def text(self):
        return f"{self.mnemonic} {self.op_str}".strip()


def decode(code: bytes, addr: int) -> list:
    """[Insn] of ``code`` at ``addr`` (capstone detail: registers read and written)."""
    from capstone import CsError
    out = []
    for i in _engine().disasm(code, addr):
        try:
            r, w = i.regs_access()
        except CsError:          # capstone has no register details for some instructions
            r, w = [], []
        out.append(Insn(i.address, i.mnemonic, i.op_str, [reg_norm(i.reg_name(x)) for x in r],
                        [reg_norm(i.reg_name(x)) for x in w], i.operands, i))
    return out


_SIZES = {"b": 1, "h": 2, "s": 4, "d": 8, "q": 16}


@dataclass
class Access:
    """One memory access of a load/store instruction."""
    insn: str
    kind: str                    # "load" or "store"
    base: str                    # x register (or "sp")
    index: str = None
    scale: int = 0               # index << scale
    extend: str = None           # "sxtw", "uxtw", ... of the index
    disp: int = 0
    post_index: bool = False
    size: int = 0                # bytes transferred in all
    regs: list = field(default_factory=list)  # data registers

    def address(self, regs: dict):
        """The address accessed with REGS (x0..x30, sp), or None if a register is missing."""
        b = regs.get(self.base)
        if b is None:
            return None
        a = b if self.post_index else b + self.disp
        if self.index:
            v = regs.get(self.index)
            if v is None:
                return None
            if self.extend in ("sxtw",):
                v = v & 0xFFFFFFFF
                v = v - (1 << 32) if v >> 31 else v
            elif self.extend in ("uxtw",):
                v &= 0xFFFFFFFF
            a += v << self.scale
        return a & M64

    def index_value(self, regs: dict):
        v = regs.get(self.index)
        if v is None:
            return None
        if self.extend == "sxtw":
            v &= 0xFFFFFFFF
            return v - (1 << 32) if v >> 31 else v
        if self.extend == "uxtw":
            return v & 0xFFFFFFFF
        return v - (1 << 64) if v >> 63 else v


def _reg_size(name: str) -> int:
    n = name.lower()
    if n[0] == "x" or n in ("fp", "lr", "xzr"):
        return 8
    if n[0] == "w":
        return 4
    return _SIZES.get(n[0], 8)


_LOAD = re.compile(r"^(ld|prfm|cas|swp)")
_STORE = re.compile(r"^st")


def decode_access(code: bytes, addr: int):
    """The memory access of the instruction in ``code`` at ``addr``: an :class:`Access`,
    or None when it is not a load or store (then the fault is not a data access)."""
    ins = decode(code[:4], addr)
    if not ins:
        return None
    i = ins[0]
    import capstone
    A = getattr(capstone, "aarch64", None) or __import__("capstone.arm64", fromlist=["x"])
    OP_MEM = getattr(A, "ARM64_OP_MEM", None) or getattr(A, "AARCH64_OP_MEM")
    OP_REG = getattr(A, "ARM64_OP_REG", None) or getattr(A, "AARCH64_OP_REG")
    m = i.mnemonic
    kind = "load" if _LOAD.match(m) else "store" if _STORE.match(m) else None
    if kind is None:
        return None
    mem = None
    data = []
    post = False
    for k, op in enumerate(i.ops):
        if op.type == OP_MEM:
            mem = op
            post = i.raw.writeback and k + 1 < len(i.ops)
            break
        if op.type == OP_REG:
            data.append(i.raw.reg_name(op.reg))
    if mem is None:
        return None
    each = {"b": 1, "h": 2}.get(m[-1], 0) if m.startswith(("ldr", "str", "ldur", "stur", "ldar",
                                                             "stlr", "ldxr", "stxr", "ldaxr",
                                                             "stlxr", "ldrs", "ldurs")) else 0
    if m in ("ldrsw", "ldursw"):
        each = 4
    if m.startswith("prfm"):
        size = 1
    else:
        regs = [r for r in data if r.lower()[0] in "wxbhsdq" or r.lower() in ("fp", "lr")]
        if m.startswith(("stxr", "stlxr", "stxp", "stlxp")):
            regs = regs[1:]                      # the status register
        size = sum(each or _reg_size(r) for r in regs) if regs else 1
    shift = mem.shift.value if mem.shift.type else 0
    ext = None
    if mem.mem.index:
        ext = {1: "uxtb", 2: "uxth", 3: "uxtw", 4: "uxtx", 5: "sxtb", 6: "sxth", 7: "sxtw",
               8: "sxtx"}.get(getattr(mem, "ext", 0))
    return Access(i.text, kind, reg_norm(i.raw.reg_name(mem.mem.base)),
                  reg_norm(i.raw.reg_name(mem.mem.index)) if mem.mem.index else None,
                  shift, ext, mem.mem.disp, post, size, [reg_norm(r) for r in data])


# -- DWARF locations as gdb renders them (info scope) -----------------------------------------
@dataclass
class ScopeVar:
    name: str
    length: int
    locs: list                  # [(lo, hi or None, kind, detail)]; lo None: everywhere

    def at(self, pc: int):
        """(kind, detail) of this variable's location at pc, or None."""
        for lo, hi, kind, detail in self.locs:
            if lo is None or lo <= pc < hi:
                return kind, detail
        return None


_RANGE = re.compile(r"Range (0x[0-9a-f]+)-(0x[0-9a-f]+): ")


def _classify(desc: str):
    d = desc.strip().rstrip(",").strip()
    m = re.match(r"an? (?:variable|local variable|argument) in (?:register )?\$(\w+)$", d)
    if m:
        return "reg", reg_norm(m.group(1))
    m = re.match(r"(?:the )?constant (-?(?:0x[0-9a-f]+|\d+))$", d)
    if m:
        return "const", int(m.group(1), 0)
    if d.startswith("optimized out"):
        return "optimized out", None
    m = re.match(r"static storage at address (0x[0-9a-f]+)", d)
    if m:
        return "static", int(m.group(1), 16)
    if d.startswith("a complex DWARF expression:"):
        ops = re.findall(r"^\s*\d+: (DW_OP_\w+)(.*)$", d, re.M)
        names = [o for o, _ in ops]
        if len(names) == 3 and names[0] == "DW_OP_entry_value" and \
                names[1].startswith("DW_OP_reg") and names[2] == "DW_OP_stack_value":
            return "entry_value", "x" + names[1][len("DW_OP_reg"):]
        if len(ops) == 2 and names[0].startswith("DW_OP_breg") and names[1] == "DW_OP_stack_value":
            off = int(ops[0][1].split()[0])
            return "reg_plus", ("x" + names[0][len("DW_OP_breg"):], off)
        if len(ops) == 2 and names[0] == "DW_OP_addr" and names[1] == "DW_OP_stack_value":
            return "const", int(ops[0][1].split()[0], 16)
        return "complex", d
    return "other", d


def parse_scope(text: str) -> list:
    """[ScopeVar] from gdb's ``info scope`` output."""
    out = []
    for chunk in re.split(r"^Symbol ", text, flags=re.M)[1:]:
        m = re.match(r"(\S+) is (.*)", chunk, re.S)
        if not m:
            continue
        name, body = m.group(1), m.group(2)
        lm = re.search(r", length (\d+)\.\s*$", body)
        length = int(lm.group(1)) if lm else 0
        body = body[:lm.start()] if lm else body.rstrip().rstrip(".")
        locs = []
        if body.startswith("multi-location:"):
            parts = _RANGE.split(body)
            # [prefix, lo, hi, desc, lo, hi, desc, ...]
            for k in range(1, len(parts) - 2, 3):
                lo, hi, desc = int(parts[k], 16), int(parts[k + 1], 16), parts[k + 2]
                desc = re.sub(r"\s*Base address 0x[0-9a-f]+\s*$", "", desc)
                kind, detail = _classify(desc)
                locs.append((lo, hi, kind, detail))
        else:
            kind, detail = _classify(body)
            locs.append((None, None, kind, detail))
        out.append(ScopeVar(name, length, locs))
    return out


def vars_in_register(scope: list, pc: int, reg: str) -> list:
    """Names of the variables whose DWARF location at pc is register REG."""
    out = []
    for v in scope:
        loc = v.at(pc)
        if loc and loc[0] == "reg" and loc[1] == reg:
            out.append(v.name)
    return out


def poison_of(v: int):
    """(name, delta) when v is a list poison value plus/minus a small offset, else None."""
    for p, name in POISONS.items():
        d = (v - p) & M64
        if d < 0x1000:
            return name, d
        if (p - v) & M64 < 0x1000:
            return name, -((p - v) & M64)
    return None
