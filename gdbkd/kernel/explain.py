"""Explain a kernel fault in C terms: which expression was NULL (or poisoned), which member was read.

From the trap of ``kd analyze`` (gdbkd/kernel/crash.py): the exception's
``pt_regs``, ESR and FAR. The chain of evidence, every link of which is kept
in the result (``evidence``), and which stops with a reason (``unknown``)
where a link is missing — nothing is guessed:

1. ESR says a data abort (EC 0x24/0x25), and whether FAR is valid (FnV);
   a BRK (EC 0x3c) with the ``BUG_BRK_IMM`` immediate is a BUG/WARN: its
   ``struct bug_entry`` gives file:line.
2. The faulting instruction (read from memory at ``regs->pc``) is decoded
   with capstone: base and index registers, displacement
   (gdbkd/analysis/fault.py); the address it computes from the saved
   registers must be FAR.
3. The registers are named through DWARF at that pc: gdb's ``info scope``
   locations (``calib`` is in ``$x0`` between these two addresses). A base
   register holding no variable is traced to the instruction that set it,
   when straight-line code proves which one (``ldr x1, [x0, #8]`` with ``c``
   in x0: the base is ``c->table``).
4. The pointed-to C type (gdb) names the member at FAR's offset
   (``port->irq``, ``hub->chan[3].calib``), or the element (``buf[i]``).
5. A LIST_POISON base: the entry removed with ``list_del()`` (a register
   pointing at an object whose list_head holds both poison values), and the
   list heads in scope.

Valid on the kernels gdbkd supports (5.10–6.12): ESR_ELx layout, pt_regs,
``struct bug_entry`` with relative pointers (arm64 selects
GENERIC_BUG_RELATIVE_POINTERS since 4.11).
"""

import gdb

from ..analysis import fault as F
from ..analysis import args as A
from .memory import read_bytes
from .symbolize import lookup, describe

__all__ = ["explain", "fault_address"]

M64 = (1 << 64) - 1
BUG_BRK_IMM = 0x800
FAULT_FRAMES = (("die_kernel_fault", "addr"), ("__do_kernel_fault", "addr"),
                ("do_page_fault", "far"), ("do_translation_fault", "far"),
                ("do_mem_abort", "far"), ("do_alignment_fault", "far"))


class _Unknown(Exception):
    pass


def fault_address(trap):
    """(FAR, how it is known) of the trap, or (None, why not): the fault handlers' own
    ``far``/``addr`` argument (DWARF, in the frames of the trap's thread), else the live
    ``$FAR_EL1``."""
    try:
        f = gdb.newest_frame()
    except gdb.error:
        f = None
    depth = 0
    while f is not None and depth < 16:
        name = f.name()
        for fn, arg in FAULT_FRAMES:
            if name == fn:
                try:
                    v = f.read_var(arg)
                    if not v.is_optimized_out:
                        return int(v) & M64, f"{fn}()'s argument {arg} (DWARF)"
                except (ValueError, gdb.error):
                    pass
        try:
            f = f.older()
        except gdb.error:
            break
        depth += 1
    if trap.get("far") is not None:
        return trap["far"], trap.get("far_from", "$FAR_EL1")
    return None, "no fault handler frame has a readable far/addr argument and FAR_EL1 is not readable"


# -- DWARF ------------------------------------------------------------------------------------
_scopes = {}


def _scope(pc):
    key = pc
    if key not in _scopes:
        try:
            txt = gdb.execute(f"info scope *{pc:#x}", to_string=True)
        except gdb.error:
            txt = ""
        _scopes[key] = F.parse_scope(txt)
    return _scopes[key]


def _function_block(pc):
    try:
        b = gdb.block_for_pc(pc)
    except RuntimeError:
        return None
    fn = None
    while b is not None and not b.is_global and not b.is_static:
        if b.function is not None:
            fn = b
        b = b.superblock
    return fn


def _symbol_type(name, pc):
    try:
        b = gdb.block_for_pc(pc)
    except RuntimeError:
        return None
    while b is not None and not b.is_global:
        for s in b:
            if s.name == name and (s.is_variable or s.is_argument):
                return s.type
        b = b.superblock
    return None


class Expr:
    """A C expression a register holds at a pc: text, C type (gdb.Type or None), how known."""

    def __init__(self, text, typ, how):
        self.text = text
        self.type = typ
        self.how = how
        self.also = []         # other variables DWARF puts in the same register


def _name_register(reg, pc, insns, targets, depth=0):
    """Expr for the value of REG at PC (before the instruction at PC executes), or raise
    _Unknown with the reason (INSNS: the function's code, TARGETS: its branch targets)."""
    names = F.vars_in_register(_scope(pc), pc, reg)
    if names:
        typ = _symbol_type(names[0], pc)
        how = f"DWARF: {' and '.join(names)} in {reg} at {pc:#x}"
        e = Expr(names[0], typ, how)
        e.also = names[1:]
        return e, names
    if depth >= 3:
        raise _Unknown(f"{reg} holds no variable at {pc:#x} (DWARF), and tracing it stops here")
    kind, d = A.last_write(insns, pc, reg, targets=targets)
    if kind != "def":
        why = d if kind == "unknown" else f"no instruction before {pc:#x} in this function sets {reg}"
        raise _Unknown(f"{reg} holds no variable at {pc:#x} (DWARF); {why}")
    m = d.mnemonic
    if m == "mov" and len(d.reads) == 1 and d.reads[0]:
        inner, _ = _name_register(d.reads[0], d.addr, insns, targets, depth + 1)
        return Expr(inner.text, inner.type, f"{d.text} at {d.addr:#x}; {inner.how}"), []
    acc = F.decode_access(d.raw.bytes, d.addr) if m.startswith("ldr") else None
    if acc is not None and not acc.index and not acc.post_index and acc.base != "sp":
        inner, _ = _name_register(acc.base, d.addr, insns, targets, depth + 1)
        path, mtype = _member_at(inner, acc.disp, exact=True)
        return Expr(f"{inner.text}{path}", mtype,
                    f"{d.text} at {d.addr:#x} loads {inner.text}{path}; {inner.how}"), []
    if m == "add" and len(d.ops) == 3 and d.ops[2].type == 2 and d.reads and d.reads[0]:
        inner, _ = _name_register(d.reads[0], d.addr, insns, targets, depth + 1)
        path, mtype = _member_at(inner, d.ops[2].imm, exact=True)
        return Expr(f"&{inner.text}{path}", mtype.pointer() if mtype is not None else None,
                    f"{d.text} at {d.addr:#x}; {inner.how}"), []
    raise _Unknown(f"{reg} holds no variable at {pc:#x} (DWARF); it was last set by "
                   f"{d.text} at {d.addr:#x}, which kd does not trace")


def _strip(t):
    return t.strip_typedefs() if t is not None else None


def _member_path(t, off):
    """(".a.b[2]" path, member type, offset left inside it) of the member of struct/union
    type T holding byte OFF."""
    t = _strip(t)
    path = ""
    while t is not None and t.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION, gdb.TYPE_CODE_ARRAY):
        if t.code == gdb.TYPE_CODE_ARRAY:
            el = t.target()
            size = el.sizeof or 1
            if off >= t.sizeof:
                break
            path += f"[{off // size}]"
            off %= size
            t = _strip(el)
            continue
        hit = None
        for f in t.fields():
            if not hasattr(f, "bitpos") or f.type is None:
                continue
            start = f.bitpos // 8
            if start <= off < start + max(f.type.sizeof, 1):
                hit = f
                break
        if hit is None:
            break
        off -= hit.bitpos // 8
        if hit.name:
            path += f".{hit.name}"
        t = _strip(hit.type)
        if t.code not in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION, gdb.TYPE_CODE_ARRAY):
            break
    return path, t, off


def _member_at(expr, off, exact=False):
    """("->m" / "[k]" path, member type) of *expr at byte OFF."""
    t = _strip(expr.type)
    if t is None or t.code != gdb.TYPE_CODE_PTR:
        raise _Unknown(f"`{expr.text}` has no known pointer type")
    target = _strip(t.target())
    if target.code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        path, mt, left = _member_path(target, off)
        if not path:
            raise _Unknown(f"offset {off:#x} is past {target} ({target.sizeof} bytes)")
        if exact and left:
            raise _Unknown(f"offset {off:#x} of {target} is inside {path[1:]}, not at its start")
        return "->" + path[1:], mt
    size = target.sizeof or 1
    if off % size == 0:
        return f"[{off // size}]", target
    raise _Unknown(f"offset {off:#x} is not a multiple of sizeof({target}) = {size}")


# -- values ----------------------------------------------------------------------------------
def _describe_value(v):
    p = F.poison_of(v)
    if v == 0:
        return "NULL"
    if p:
        name, d = p
        return f"{name}{d:+#x}" if d else name
    if v < 0x10000:
        return f"{v:#x} (not a valid pointer: the first 64 KiB are never mapped)"
    return f"{v:#x}"


def _regs_map(regs):
    out = {f"x{i}": regs[f"x{i}"] for i in range(31)}
    out["sp"] = regs["sp"]
    return out


def explain(trap) -> dict:
    """The explanation of the trap's fault: ``{"summary", "evidence": [...], ...}``, or
    ``{"summary": None, "unknown": why, "evidence": [...]}``."""
    ev = []
    res = {"summary": None, "evidence": ev}
    try:
        _explain(trap, res, ev)
    except _Unknown as e:
        res["unknown"] = str(e)
    finally:
        _scopes.clear()
    return res


def _explain(trap, res, ev):
    regs = trap.get("registers")
    if not regs:
        raise _Unknown("the trap has no exception registers (pt_regs)")
    pc = regs["pc"]
    esr = trap.get("esr")
    ec = (esr >> 26) & 0x3F if esr is not None else None
    if ec is not None:
        ev.append(f"ESR {esr:#x}: EC {ec:#x}")
    try:
        code = read_bytes(pc, 4)
    except gdb.MemoryError as e:
        raise _Unknown(f"the faulting instruction at {pc:#x} is unreadable ({e})")
    insn = F.decode(code, pc)
    res["instruction"] = {"pc": pc, "text": insn[0].text if insn else None,
                          "function": describe(pc)}
    if ec == 0x3C or (insn and insn[0].mnemonic == "brk"):
        return _explain_bug(pc, insn, res, ev)
    if ec is not None and ec not in (0x24, 0x25):
        raise _Unknown(f"not a data abort (ESR EC {ec:#x}): no memory operand to explain")
    acc = F.decode_access(code, pc)
    if acc is None:
        raise _Unknown(f"{res['instruction']['text']} is not a load or store")
    res["access"] = {"kind": acc.kind, "base": acc.base, "index": acc.index, "disp": acc.disp,
                     "scale": acc.scale, "size": acc.size}
    R = _regs_map(regs)
    ea = acc.address(R)
    far, far_how = fault_address(trap)
    if esr is not None and ec in (0x24, 0x25) and (esr >> 10) & 1:
        far, far_how = None, "ESR.FnV is set: FAR is not valid"
    if far is None:
        ev.append(f"FAR unknown: {far_how}")
        res["far"] = None
    else:
        res["far"] = far
        ev.append(f"FAR {far:#x} from {far_how}")
        if ea is not None and not (ea <= far < ea + max(acc.size, 1)) and \
                not (ea & ((1 << 56) - 1)) <= (far & ((1 << 56) - 1)) < (ea & ((1 << 56) - 1)) + acc.size:
            raise _Unknown(f"{acc.insn} accesses {ea:#x}..+{acc.size}, but FAR is {far:#x}: "
                           f"the saved registers do not explain the fault")
        ev.append(f"{acc.insn} at {pc:#x} accesses {ea:#x} ({acc.size} bytes) from the saved "
                  f"registers: FAR is in it")
    fn = _function_block(pc)
    if fn is None:
        s = lookup(pc, want_line=False)
        why = s.debuginfo if s.module and s.debuginfo != "dwarf" else "no DWARF at this pc"
        raise _Unknown(f"cannot name {acc.base}: {why}")
    try:
        insns = F.decode(read_bytes(fn.start, fn.end - fn.start), fn.start)
    except gdb.MemoryError as e:
        raise _Unknown(f"the code of {fn.function.name} is unreadable ({e})")
    base_val = R[acc.base]
    targets = A.branch_targets(insns)
    base, _names = _name_register(acc.base, pc, insns, targets)
    ev.append(base.how)
    res["base"] = {"register": acc.base, "value": base_val, "expression": base.text,
                   "type": str(base.type) if base.type is not None else None}
    verb = "reading" if acc.kind == "load" else "writing"
    idx_txt = ""
    elem_base = base_val
    expr = base.text
    if acc.index:
        iv = acc.index_value(R)
        try:
            ie, _ = _name_register(acc.index, pc, insns, targets)
            iname = ie.text
            ev.append(ie.how)
        except _Unknown as e:
            iname = None
            ev.append(f"index register {acc.index}: {e}")
        res["index"] = {"register": acc.index, "value": iv, "expression": iname}
        t = _strip(base.type)
        if iname is None or t is None or t.code != gdb.TYPE_CODE_PTR:
            raise _Unknown(f"`{base.text}` is {_describe_value(base_val)}; {verb} through "
                           f"index register {acc.index} = {iv}, which kd cannot name in C")
        el = _strip(t.target())
        if (el.sizeof or 1) != 1 << acc.scale or acc.disp:
            raise _Unknown(f"`{base.text}` is {_describe_value(base_val)}; the index is scaled "
                           f"by {1 << acc.scale}, not by sizeof({el}) = {el.sizeof}")
        expr = f"{base.text}[{iname}]"
        idx_txt = f", {iname} = {iv}"
        elem_base = (base_val + (iv << acc.scale)) & M64
        elem = Expr(f"&{expr}", t, "")
    else:
        elem = base
    off = ((far if far is not None else (ea if ea is not None else elem_base + acc.disp)) - elem_base) & M64
    if off >> 63:
        off -= 1 << 64
    member = ""
    mt = None
    if not acc.index or _strip(elem.type.target()).code in (gdb.TYPE_CODE_STRUCT, gdb.TYPE_CODE_UNION):
        try:
            if 0 <= off < 1 << 20:
                member, mt = _member_at(elem, off)
                if acc.index:
                    member = "." + member[2:] if member.startswith("->") else member
        except _Unknown as e:
            ev.append(str(e))
    access_expr = (expr + member) if acc.index else (f"{base.text}{member}" if member else f"*{base.text}")
    res["expression"] = access_expr
    if acc.index and far is not None:
        off = (far - base_val) & M64          # from the pointer that was bad, not the element
        if off >> 63:
            off -= 1 << 64
    res["offset"] = off
    if mt is not None:
        res["member_type"] = str(mt)
    t = _strip(base.type)
    if t is not None and t.code == gdb.TYPE_CODE_PTR:
        res["struct"] = str(t.target())
    state = "is NULL" if base_val == 0 else f"is {_describe_value(base_val)}"
    where = f", at offset {off:#x}" if off or member else ""
    also = "".join(f" (= `{n}`)" for n in base.also)
    res["base"]["also"] = list(base.also)
    res["summary"] = f"`{base.text}`{also} {state}; {verb} `{access_expr}`{idx_txt}{where}"
    p = F.poison_of(base_val) or (F.poison_of(far) if far is not None else None)
    if p:
        res["list_poison"] = _explain_poison(p, base, base_val, member, R, pc, ev)
        res["summary"] += "; " + res["list_poison"]["summary"]


def _explain_poison(p, base, base_val, member, R, pc, ev):
    """LIST_POISON: which entry was removed with list_del() and which list heads are in scope."""
    from .memory import kernel
    from ..model.lists import walk_list, LIST_POISON1, LIST_POISON2
    name, delta = p
    out = {"poison": name, "delta": delta}
    r = kernel().reader
    # the list_head inside the entry type: the member read, or the one the poison's delta hits
    t = _strip(base.type)
    list_off = None
    if t is not None and t.code == gdb.TYPE_CODE_PTR:
        target = _strip(t.target())
        if target.code == gdb.TYPE_CODE_STRUCT:
            poisoned = (LIST_POISON1 if name == "LIST_POISON1" else LIST_POISON2)
            off = (poisoned - base_val) & M64
            path, mt, left = _member_path(target, off)
            if mt is not None and str(mt) == "struct list_head" and left == 0:
                list_off = off
                out["entry_type"] = str(target)
                out["list_member"] = path[1:]
                ev.append(f"`{base.text}` = container_of({name}, {target}, {path[1:]}): the "
                          f"entry pointer was made from a poisoned ->next")
            elif mt is not None and path.endswith((".next", ".prev")):
                list_off = off - (8 if path.endswith(".prev") else 0)
                out["entry_type"] = str(target)
                out["list_member"] = path[1:].rsplit(".", 1)[0]
    dead = []
    if list_off is not None:
        for reg, v in sorted(R.items(), key=lambda kv: int(kv[0][1:]) if kv[0][1:].isdigit() else 99):
            if v >> 48 != 0xFFFF or F.poison_of(v):
                continue
            raw = r.try_read(v + list_off, 16)
            if raw and int.from_bytes(raw[:8], "little") == LIST_POISON1 and \
                    int.from_bytes(raw[8:], "little") == LIST_POISON2:
                names = F.vars_in_register(_scope(pc), pc, reg)
                dead.append({"address": v, "register": reg, "variables": names})
        for d in dead:
            ev.append(f"{d['register']} = {d['address']:#x}"
                      + (f" (`{'`, `'.join(d['variables'])}`)" if d["variables"] else "")
                      + f": its {out['list_member']}.next = LIST_POISON1 and .prev = LIST_POISON2, "
                      f"so list_del() removed it")
    out["removed_entries"] = dead
    heads = []
    for v in _scope(pc):
        st = _symbol_type(v.name, pc)
        s = _strip(st)
        if s is None or s.code != gdb.TYPE_CODE_PTR or str(_strip(s.target())) != "struct list_head":
            continue
        loc = v.at(pc)
        val = None
        if loc and loc[0] == "const":
            val = loc[1]
        elif loc and loc[0] == "reg":
            val = R.get(loc[1])
        if val is None:
            continue
        h = {"variable": v.name, "address": val, "symbol": describe(val)}
        w = walk_list(r, val, limit=100000)
        h["entries"] = len(w.nodes)
        h["walk_stop"] = w.stop
        if list_off is not None:
            h["contains_removed"] = [d["address"] for d in dead if d["address"] + list_off in w.nodes]
        heads.append(h)
    out["heads"] = heads
    parts = []
    if dead:
        parts.append("entry " + ", ".join(f"{d['address']:#x}" for d in dead)
                     + " was removed with list_del() and then followed")
    else:
        parts.append(f"a pointer made from {name} was followed (an entry used after list_del())")
    for h in heads:
        on = ""
        if list_off is not None and dead:
            on = "; it is no longer on that list" if not h["contains_removed"] else "; it is still on that list"
        parts.append(f"list head `{h['variable']}` = {h['symbol']} ({h['entries']} entries{on})")
    out["summary"] = "; ".join(parts)
    return out


# -- BUG/WARN ----------------------------------------------------------------------------------
def _explain_bug(pc, insn, res, ev):
    i = insn[0] if insn else None
    if i is None or i.mnemonic != "brk":
        raise _Unknown("ESR says BRK but the instruction at pc is not a brk")
    imm = i.ops[0].imm if i.ops else None
    ev.append(f"{i.text} at {pc:#x}")
    if imm != BUG_BRK_IMM:
        raise _Unknown(f"brk #{imm:#x} is not BUG_BRK_IMM (#0x800): not a BUG/WARN")
    from .memory import kernel
    from ..model.bug import bug_entry
    b = bug_entry(kernel(), pc)
    if b is None:
        raise _Unknown(f"no struct bug_entry for {pc:#x} in the kernel's or a module's bug table")
    res["bug"] = b
    kind = "WARN" if b["warning"] else "BUG"
    where = f"{b['file']}:{b['line']}" if b.get("file") else "(file not recorded: CONFIG_DEBUG_BUGVERBOSE off)"
    res["summary"] = f"{kind}() at {where}"
    ev.append(f"struct bug_entry at {b['entry']:#x} ({b['table']}): {where}, flags {b['flags']:#x}")


