"""kd symbols: relocate vmlinux for KASLR, check it matches, load module symbols."""

from . import KdCommand, KdError, command
from ..kernel import symbols, modules
from ..kernel.banner import check_banner
from ..textutil import escape


@command
class Symbols(KdCommand):
    """Make symbols right: KASLR offset, vmlinux check, module symbols.

Live, the KASLR offset is found from $VBAR - &vectors; on dumps pass --offset
(VMCOREINFO KERNELOFFSET). The vmlinux is checked against linux_banner in
memory. Every loaded module whose .ko is found under the --modules-dir
directories (or $GDBKD_MODULES_PATH) gets its symbols; --watch also loads the
symbols of modules inserted later (breakpoint on do_init_module, live only)."""

    name = "symbols"
    json_addresses = frozenset(("kaslr_offset",))      # an address's displacement, "0x…"
    needs_kernel_view = False     # symbols may still be at the wrong address here

    def add_arguments(self, p):
        p.add_argument("--offset", type=lambda s: int(s, 0), metavar="OFF",
                       help="the KASLR offset (dumps: VMCOREINFO KERNELOFFSET; default: from $VBAR, live)")
        p.add_argument("--modules-dir", action="append", default=[], metavar="DIR",
                       help="look for modules' .ko files here too (repeatable)")
        p.add_argument("--watch", action="store_true",
                       help="also load the symbols of modules inserted later (live only)")
        p.add_argument("--no-check", action="store_true",
                       help="do not check the vmlinux against linux_banner in memory")
        p.add_argument("--no-modules", action="store_true", help="do not load module symbols")
        p.add_argument("--quiet", action="store_true", help="print nothing (errors still show)")

    def run(self, args):
        # relocating put-off symbols only moves their offset; the rest needs them
        if not (args.no_check and args.no_modules) or args.watch:
            symbols.load_deferred()
        for d in args.modules_dir:
            if d not in modules.search_dirs:
                modules.search_dirs.append(d)
        if args.offset is not None:
            off = args.offset
        else:
            delta = symbols.live_vbar_offset()
            if delta is None:
                raise KdError("cannot find the KASLR offset (no CPU is in the kernel: $VBAR shows "
                              "the KPTI trampoline); continue the guest briefly and retry, or pass --offset")
            off = symbols.current_offset() + delta
        relocated = symbols.relocate(off)
        out = {"kaslr_offset": off, "relocated": relocated}
        from ..kernel.access import kernel_view, KernelUnmapped
        try:
            with kernel_view():
                return self._after_relocation(args, out)
        except KernelUnmapped as e:
            raise KdError(f"vmlinux does not match the running kernel, or no CPU maps the kernel ({e})")

    def _after_relocation(self, args, out):
        if not args.no_check:
            ok, mem, fb = check_banner()
            out["banner"] = escape(mem.strip())
            if not ok:
                raise KdError(f"vmlinux does not match the running kernel: memory has "
                              f"'{escape(mem.strip()[:100])}', vmlinux has '{escape((fb or b'').strip()[:100])}'")
        if not args.no_modules:
            out["modules"] = modules.load_all_module_symbols()
        if args.watch:
            modules.watch_module_loads()
            out["watching"] = True
        return out

    def render(self, d, args):
        if args.quiet:
            return ""
        lines = [f"KASLR offset: {d['kaslr_offset']:#x}" + (" (symbols relocated)" if d["relocated"] else "")]
        if "banner" in d:
            lines.append(f"kernel: {d['banner']}")
        lines += [f"module {m}" for m in d.get("modules", [])]
        if d.get("watching"):
            lines.append("watching module loads (do_init_module)")
        return "\n".join(lines)
