"""Does the dump agree with itself and with the vmlinux? (``gdbkd core --check``, and
the warnings of every ``gdbkd core`` open).

A dump carries the same facts more than once — in VMCOREINFO, in the notes, in
the header, in the kernel's own memory and page tables — and the vmlinux
carries them again. When they disagree gdbkd still opens what it can, but
says so: a wrong KERNELOFFSET or PHYS_OFFSET otherwise shows up much later as
nonsense (every symbol read at the wrong place) or as a slow open (the
linear-map fast path refused). Each check compares facts from two independent
sources:

==============  =================================================================
OSRELEASE       VMCOREINFO ``OSRELEASE`` vs the vmlinux's ``linux_banner``, the
                kdump header's utsname and ``init_uts_ns`` in the dump's memory
BUILD-ID        VMCOREINFO ``BUILD-ID`` (v5.9+) vs the vmlinux's .note.gnu.build-id
KERNELOFFSET    the vmlinux's ``linux_banner`` + ``KERNELOFFSET`` must hold the
                vmlinux's banner in the dump; ``SYMBOL(_stext)`` and
                ``SYMBOL(swapper_pg_dir)`` (runtime addresses) minus the vmlinux's
                must be ``KERNELOFFSET``; ``_text`` + KERNELOFFSET - kimage_voffset
                must be RAM of the dump
VA_BITS         ``NUMBER(VA_BITS)`` vs ``TCR_EL1_T1SZ`` (the width the tables use,
                v5.12+) and vs a walk of swapper_pg_dir to the image's ``_stext``
PHYS_OFFSET     the linear map ``PAGE_OFFSET + (pa - PHYS_OFFSET)`` of the dump's
                RAM vs the page tables; ``SYMBOL(mem_section)`` (a linear-map
                address) walked gives the value the tables imply
PRSTATUS        each CPU note's pc: kernel text, a loaded module's text, or user
                mode (pstate EL0); an all-zero note
notes           CPU notes that could not be matched to CPUs (``Dump.cpu_notes``)
DWARF           the vmlinux has .debug_info (or a .gnu_debuglink)
==============  =================================================================

A check that lacks one of its sources (no BUILD-ID before v5.9, no utsname in
an ELF dump) is "skip", not a warning. Nothing here imports gdb; every memory
read goes through the Dump's page-table walk and is a few pages.
"""

from dataclasses import dataclass

from ..errors import GdbkdError
from ..arm64.mmu import Arm64Mmu, AddressNotMapped, M64
from ..dump.base import DumpError
from ..dump.vmcoreinfo import vmci_number, vmci_symbol, vmci_int

__all__ = ["Finding", "check_dump", "open_warnings", "debug_info_problem", "render", "run_check"]

OK, WARN, SKIP = "ok", "warn", "skip"
#: vmlinux symbols the checks use (link-time addresses)
_SYMS = ("_text", "_stext", "_etext", "_sinittext", "_einittext", "_end", "linux_banner",
         "swapper_pg_dir")


@dataclass
class Finding:
    check: str       # VMCOREINFO (its source), OSRELEASE, BUILD-ID, KERNELOFFSET, VA_BITS, PHYS_OFFSET, PRSTATUS, notes, DWARF, vmlinux
    status: str      # "ok", "warn" (the sources disagree), "skip" (a source is missing)
    text: str        # one line

    def json(self):
        return {"check": self.check, "status": self.status, "text": self.text}


def debug_info_problem(vmlinux):
    """None when VMLINUX has DWARF (.debug_info) or names a separate debug file
    (.gnu_debuglink); else the one-line reason kd cannot use it."""
    from ..elfsyms import sections, ElfFormatError
    try:
        with open(vmlinux, "rb") as f:
            names = {sec.name for sec in sections(f, vmlinux)}
    except (OSError, ElfFormatError) as e:
        return f"cannot read the sections of {vmlinux}: {getattr(e, 'strerror', None) or e}"
    if not names & {".debug_info", ".zdebug_info", ".gnu_debuglink"}:
        return (f"{vmlinux} has no debug info (no .debug_info section): kd needs the "
                f"vmlinux with DWARF (Debian: linux-image-…-dbg)")
    return None


class _Vmlinux:
    """What the checks need of the vmlinux file: build-id, a few symbols, the banner."""

    def __init__(self, path, known=None):
        """``known``: link-time addresses already at hand (the offsets cache's symbols, made
        from this vmlinux): each symbol not among them costs a scan of the .symtab."""
        from ..elfsyms import SymbolTable, file_bytes_at
        from ..target.offsets import vmlinux_build_id
        self.path = str(path)
        self.build_id = (vmlinux_build_id(self.path) or "").lower()
        known = known or {}
        missing = [n for n in _SYMS if known.get(n) is None]
        st = SymbolTable(self.path) if missing else None
        self.sym = {n: known[n] if known.get(n) is not None else st.value(n) for n in _SYMS}
        self.banner = None
        if self.sym["linux_banner"] is not None:
            raw = file_bytes_at(self.path, self.sym["linux_banner"], 256)
            if raw:
                self.banner = raw.split(b"\0")[0]


def _printable(b: bytes, n=60) -> str:
    """B as text when it is printable ASCII, else its first bytes in hex."""
    b = b[:n]
    if b and all(32 <= c < 127 for c in b):
        return repr(b.decode("ascii").strip())
    return f"bytes {b[:16].hex()}"


def _banner_release(b: bytes) -> str:
    """'Linux version 6.1.0-56-cloud-arm64' of a banner (its first three words)."""
    return _printable(b" ".join(b.split()[:3]))


def _read(d, va, n):
    """Bytes of kernel memory, or the one-line reason they cannot be read."""
    try:
        return d.read(va, n), None
    except GdbkdError as e:
        return None, str(e)


# -- the checks ---------------------------------------------------------------------------
def _osrelease(d, vm):
    rel = d.osrelease
    if not rel:
        return Finding("OSRELEASE", SKIP, "VMCOREINFO has no OSRELEASE")
    others, bad = [], []
    if vm is not None and vm.banner:
        others.append("the vmlinux's banner")
        if not vm.banner.startswith(f"Linux version {rel} ".encode()):
            bad.append(f"the vmlinux's banner says {_banner_release(vm.banner)}")
    hdr = (getattr(d.phys, "utsname", None) or {}).get("release", "")
    if hdr and d.producer == "kernel":          # QEMU's kdump header has no real utsname
        others.append("the dump header")
        if hdr != rel:
            bad.append(f"the dump header's utsname says {hdr!r}")
    uts = vmci_symbol(d.vmcoreinfo, "init_uts_ns")
    if uts is not None:
        raw, err = _read(d, uts, 512)
        if raw is not None:
            # struct new_utsname (6 x 65 chars) at offset 0 (v5.11+) or after a kref (before)
            o = next((o for o in (0, 4, 8) if raw[o:o + 6] == b"Linux\0"), None)
            if o is not None:
                mem = raw[o + 130:o + 195].split(b"\0")[0].decode("ascii", "replace")
                others.append("init_uts_ns")
                if mem != rel:
                    bad.append(f"init_uts_ns in the dump says {mem!r}")
    if bad:
        return Finding("OSRELEASE", WARN, f"VMCOREINFO says {rel!r} but " + "; ".join(bad))
    if not others:
        return Finding("OSRELEASE", SKIP, f"{rel}: nothing to compare it with")
    return Finding("OSRELEASE", OK, f"{rel}: " + ", ".join(others) + " agree")


def _build_id(d, vm):
    if vm is None:
        return Finding("BUILD-ID", SKIP, "no vmlinux")
    if not d.build_id:
        return Finding("BUILD-ID", SKIP, "VMCOREINFO has no BUILD-ID (kernels before 5.9)")
    if not vm.build_id:
        return Finding("BUILD-ID", SKIP, f"the vmlinux has no build-id note; the dump's is "
                                         f"{d.build_id}")
    if vm.build_id != d.build_id:
        return Finding("BUILD-ID", WARN, f"VMCOREINFO says {d.build_id}, the vmlinux is "
                                         f"{vm.build_id}: not the kernel that crashed")
    return Finding("BUILD-ID", OK, f"{d.build_id}: the vmlinux's")


def _banner_at(d, vm, off):
    """None when the vmlinux's banner is at linux_banner + OFF in the dump, else why not."""
    va = (vm.sym["linux_banner"] + off) & M64
    raw, err = _read(d, va, len(vm.banner) + 1)
    if raw is None:
        return f"linux_banner + KERNELOFFSET = {va:#x} cannot be read ({err})"
    if raw[:len(vm.banner)] != vm.banner:
        there = _printable(raw[:40].split(b"\0")[0], 40)
        return (f"the dump has {there} at linux_banner + "
                f"KERNELOFFSET = {va:#x}, not the vmlinux's banner")
    return None


def _kerneloffset(d, vm):
    info = d.vmcoreinfo
    off = d.kaslr_offset
    if vm is None or vm.sym["linux_banner"] is None or not vm.banner:
        return Finding("KERNELOFFSET", SKIP, "the vmlinux has no linux_banner to look for")
    bad = []
    implied = {}
    for name in ("_stext", "swapper_pg_dir"):
        rt = vmci_symbol(info, name)
        if rt is not None and vm.sym[name] is not None:
            implied[name] = (rt - vm.sym[name]) & M64
            if implied[name] != off:
                bad.append(f"SYMBOL({name}) - the vmlinux's {name} = {implied[name]:#x}")
    why = _banner_at(d, vm, off)
    if why:
        bad.insert(0, why)
        # where the image really is, if another source says so
        for name, cand in implied.items():
            if cand != off and _banner_at(d, vm, cand) is None:
                bad.append(f"the banner is at offset {cand:#x} (from SYMBOL({name}))")
                break
    kv = vmci_number(info, "kimage_voffset")
    if kv is not None and vm.sym["_text"] is not None:
        pa = (vm.sym["_text"] + off - kv) & M64
        if not any(s <= pa < e for s, e in d.phys.ranges):
            bad.append(f"_text + KERNELOFFSET - kimage_voffset = physical {pa:#x}, outside the "
                       f"dump's memory")
    if bad:
        return Finding("KERNELOFFSET", WARN, f"{off:#x} disagrees: " + "; ".join(bad))
    return Finding("KERNELOFFSET", OK, f"{off:#x}: the vmlinux's banner is at linux_banner + "
                                       f"KERNELOFFSET" + (", SYMBOL(_stext) agrees" if implied else ""))


def _mmu_like(d, va_bits):
    m = d.mmu
    lpa2 = m.page_size != 65536 and va_bits == 52
    return Arm64Mmu(d.phys, page_size=m.page_size, va_bits=va_bits, pgd_pa=m.pgd_pa,
                    kimage_voffset=m.kimage_voffset, phys_offset=m.phys_offset,
                    flipped=m.flipped, lpa2=lpa2)


def _walks_to_image(mmu, va, want_pa):
    try:
        pa, _ = mmu.walk(va)
    except (AddressNotMapped, DumpError):
        return False
    return pa == want_pa


def _va_bits(d, vm):
    info = d.vmcoreinfo
    cfg = vmci_number(info, "VA_BITS")
    t1sz = vmci_number(info, "TCR_EL1_T1SZ")
    actual = 64 - t1sz if t1sz else None
    used = d.mmu.va_bits
    bad = []
    if actual is not None and cfg != actual and not (cfg == 52 and actual == 48):
        bad.append(f"TCR_EL1_T1SZ {t1sz:#x} means the kernel ran with {actual}-bit VAs "
                   f"(only a 52-bit kernel may run with fewer: 48)")
    kv = vmci_number(info, "kimage_voffset")
    stext = vm.sym["_stext"] if vm is not None else None
    if stext is None:
        stext = vmci_symbol(info, "_stext")
    else:
        stext = (stext + d.kaslr_offset) & M64
    if stext is None or kv is None:
        if bad:
            return Finding("VA_BITS", WARN, f"{cfg} disagrees: " + "; ".join(bad))
        return Finding("VA_BITS", SKIP, "no _stext to walk the page tables to")
    want = (stext - kv) & M64
    walked = {}
    for vb in sorted({used, cfg, *(x for x in (36, 39, 42, 47, 48, 52)
                                  if x > d.mmu.page_shift)}, key=lambda x: (x != used, x != cfg, -x)):
        try:
            walked[vb] = _walks_to_image(_mmu_like(d, vb) if vb != used else d.mmu, stext, want)
        except DumpError:
            walked[vb] = False
        if walked[vb] and vb not in (used, cfg):
            break
    if not walked.get(used):
        good = [vb for vb, ok in walked.items() if ok]
        bad.append(f"swapper_pg_dir walked as {used}-bit does not map _stext {stext:#x} to "
                   f"{want:#x}" + (f"; walked as {good[0]}-bit it does" if good else
                                   " at any VA width (or kimage_voffset is wrong)"))
    elif cfg != used and not walked.get(cfg) and not (cfg == 52 and used == 48):
        bad.append(f"walked as {cfg}-bit the tables do not map _stext; as {used}-bit "
                   f"(TCR_EL1_T1SZ) they do")
    if bad:
        return Finding("VA_BITS", WARN, f"{cfg} disagrees: " + "; ".join(bad))
    return Finding("VA_BITS", OK, f"{cfg}" + (f" (tables walked as {used}-bit, TCR_EL1_T1SZ)"
                                              if used != cfg else "")
                   + f": swapper_pg_dir maps _stext {stext:#x} to {want:#x}")


def _phys_offset(d):
    info = d.vmcoreinfo
    po = vmci_number(info, "PHYS_OFFSET")
    if po is None:
        return Finding("PHYS_OFFSET", SKIP, "VMCOREINFO has no NUMBER(PHYS_OFFSET)")
    po &= M64
    mmu = d.mmu
    if not mmu.flipped:
        return Finding("PHYS_OFFSET", SKIP, "kernel before 5.4: linear map not checked")
    ranges = d.phys.ranges
    if not ranges:
        return Finding("PHYS_OFFSET", SKIP, "the dump describes no memory")
    cfg = vmci_number(info, "VA_BITS")
    cands = []
    for vb in (cfg, mmu.va_bits):
        if vb and vb not in cands:
            cands.append(vb)
    lo = min(s for s, _ in ranges)
    probes = []
    for s, e in ranges:
        for pa in (s + (1 << 20), (s + e) // 2, e - (2 << 20)):
            if s <= pa < e:
                probes.append(pa & ~(mmu.page_size - 1))
    agree = None
    for vb in cands:
        page_offset = (-(1 << vb)) & M64
        ok = bad = 0
        first_bad = None
        for pa in probes:
            va = (pa - po + page_offset) & M64
            try:
                got, _ = mmu.walk(va)
            except (AddressNotMapped, DumpError):
                continue
            if got == pa:
                ok += 1
            else:
                bad += 1
                first_bad = first_bad or (pa, va, got)
        if ok and not bad:
            agree = vb
            break
    if agree is not None:
        return Finding("PHYS_OFFSET", OK, f"{po:#x}: the linear map of the dump's RAM "
                                          f"({lo:#x}…) agrees with the page tables")
    # what the page tables say: a linear-map address VMCOREINFO names, walked
    implied = None
    ms = vmci_symbol(info, "mem_section")
    if ms is not None:
        page_offset = (-(1 << cands[0])) & M64
        try:
            pa, _ = mmu.walk(ms)
            if ms >= page_offset:
                implied = (pa - (ms - page_offset)) & M64
        except (AddressNotMapped, DumpError):
            pass
    msg = (f"{po:#x} disagrees with the page tables: the linear-map address it "
           f"gives for the dump's RAM ({lo:#x}…) is not mapped there")
    if implied is not None and implied != po:
        msg += f"; the tables imply PHYS_OFFSET {implied:#x} (SYMBOL(mem_section) walked)"
    return Finding("PHYS_OFFSET", WARN, msg + " (reads use page-table walks: slower, still right)")


def _text_ranges(d, vm):
    """[(name, lo, hi)] runtime kernel text, plus the loaded modules when they can be read."""
    off = d.kaslr_offset
    out = []
    s = vm.sym
    if s["_stext"] is not None and s["_etext"] is not None:
        out.append(("kernel text", (s["_stext"] + off) & M64, (s["_etext"] + off) & M64))
    if s["_sinittext"] is not None and s["_einittext"] is not None:
        out.append(("init text", (s["_sinittext"] + off) & M64, (s["_einittext"] + off) & M64))
    if d.offsets is not None:
        from ..model.modules import module_list
        from ..model.reader import MemoryFault
        try:
            for m in module_list(d.kernel)[0]:
                out.append((f"module {m.name}", m.base, m.base + m.size))
        except (MemoryFault, GdbkdError):
            pass
    return out


def _prstatus(d, vm):
    from ..dump import NT_PRSTATUS
    from ..arm64.regs import parse_prstatus, exception_level, from_user
    notes = [n for n in d.phys.notes if n.name == "CORE" and n.type == NT_PRSTATUS]
    if not notes:
        return [Finding("PRSTATUS", WARN, "the dump has no NT_PRSTATUS note: no CPU's registers "
                                          "(gdb starts in a sleeping task's saved context)")]
    if vm is None or vm.sym["_stext"] is None:
        return [Finding("PRSTATUS", SKIP, "no vmlinux text range to check the pcs against")]
    text = _text_ranges(d, vm)
    out = []
    for i, n in enumerate(notes):
        try:
            st = parse_prstatus(n.desc)
        except GdbkdError as e:
            out.append(Finding("PRSTATUS", WARN, f"CPU note {i}: {e}"))
            continue
        pstate = st.regs[33] or 0
        label = f"CPU note {i} (pr_pid {st.pid})"
        if not any(st.regs[:34]):
            out.append(Finding("PRSTATUS", WARN, f"{label} is all zeros: that CPU's registers "
                                                 f"were not saved"))
            continue
        el = exception_level(pstate)
        if from_user(pstate):
            out.append(Finding("PRSTATUS", OK, f"{label}: user mode, pc {st.pc:#x}"))
            continue
        where = next((name for name, lo, hi in text if lo <= st.pc < hi), None)
        if where is None:
            out.append(Finding("PRSTATUS", WARN, f"{label}: pc {st.pc:#x} (EL{el}) is not in "
                                                 f"kernel or module text: the CPU's registers "
                                                 f"are not where the kernel stopped (or "
                                                 f"KERNELOFFSET is wrong)"))
        else:
            out.append(Finding("PRSTATUS", OK, f"{label}: pc {st.pc:#x} in {where}"))
    return out


def _page_size(d):
    ps = vmci_int(d.vmcoreinfo, "PAGESIZE", None)
    if ps is not None and ps != d.page_size:
        return Finding("PAGESIZE", WARN, f"VMCOREINFO PAGESIZE {ps} vs {d.page_size}")
    return None


# -- entry points ---------------------------------------------------------------------------
def check_dump(d, vmlinux=None, full=True) -> list:
    """The findings for the open Dump D (a vmlinux attached or not) and VMLINUX (a path,
    or None). ``full``: also the checks that need the task list (the CPU notes' matching)
    and the vmlinux's sections (DWARF)."""
    vm = None
    out = []
    if vmlinux is not None:
        try:
            known = d.offsets["symbols"] if getattr(d, "offsets", None) else None
            vm = _Vmlinux(vmlinux, known)
        except GdbkdError as e:
            out.append(Finding("vmlinux", WARN, str(e)))
    # where the text every other check reads came from (a note, or the RAM: ramvmcoreinfo.py)
    out.append(Finding("VMCOREINFO", OK, f"from {getattr(d, 'vmcoreinfo_source', 'the note')}"))
    out += [_osrelease(d, vm), _build_id(d, vm), _kerneloffset(d, vm), _va_bits(d, vm),
            _phys_offset(d)]
    out += _prstatus(d, vm)
    if full:
        if d.offsets is not None:
            try:
                d.cpu_notes()
            except GdbkdError as e:
                out.append(Finding("notes", WARN, f"the CPU notes could not be matched to CPUs: {e}"))
            for p in d.thread_problems:
                if p.startswith("CPU note"):
                    out.append(Finding("notes", WARN, p))
        if vmlinux is not None:
            why = debug_info_problem(vmlinux)
            out.append(Finding("DWARF", WARN, why) if why else
                       Finding("DWARF", OK, "the vmlinux has debug info"))
    return out


def open_warnings(d, vmlinux) -> list:
    """One line per disagreement, for ``gdbkd core`` to print as it opens D (cheap: a few
    page reads and walks; the DWARF and note-matching checks are made elsewhere)."""
    return [f"{f.check}: {f.text}" for f in check_dump(d, vmlinux, full=False) if f.status == WARN]


def render(path, vmlinux, findings) -> str:
    lines = [f"gdbkd core --check: {path} with {vmlinux}"]
    for f in findings:
        lines.append(f"  {f.status.upper():<5} {f.check:<13} {f.text}")
    n = sum(f.status == WARN for f in findings)
    lines.append("consistent" if not n else f"{n} disagreement{'s' if n != 1 else ''}")
    return "\n".join(lines)


def run_check(dump, vmlinux) -> tuple:
    """(report text, findings) for ``gdbkd core --check``: the dump is opened without
    the vmlinux first, so a vmlinux that does not match (build-id, banner) is a finding,
    not the end of the report. Raises GdbkdError only for a dump that cannot be opened."""
    from ..target.dump import Dump
    from ..dump import DumpError as _DE
    d = Dump(dump)
    try:
        attach_error = None
        try:
            d.attach_vmlinux(vmlinux)
        except GdbkdError as e:
            attach_error = str(e)
            d.offsets = None
        findings = check_dump(d, vmlinux)
        if attach_error:
            findings.insert(0, Finding("vmlinux", WARN, f"gdbkd core would refuse it: "
                                                        f"{attach_error}"))
        p = _page_size(d)
        if p:
            findings.append(p)
    except _DE as e:
        raise GdbkdError(f"{d.path}: {e}") from None
    finally:
        d.close()
    return render(d.path, vmlinux, findings), findings
