"""kd reader: which memory reader kd uses, its cache, and reading a dump in-process."""

from . import KdError, KdCommand, command
from ..errors import GdbkdError
from ..textutil import escape

__all__ = ["ReaderCmd"]


@command
class ReaderCmd(KdCommand):
    """Show or choose the memory reader every kd command reads kernel memory through.

Without options: the backend (the dump in this process, or gdb's target), whether
the per-stop block cache is on, and how many backend reads it has made.
`gdbkd core` attaches its dump here itself, so a kd read costs a cache lookup
instead of a remote-protocol round trip; gdb's own bt/print/x still read
through the target.

Examples:
  kd reader
  kd reader --dump /var/crash/vmcore        (a plain gdb on `target remote | gdbkd stub …`)
  kd reader --cache off                     (every read straight to the backend)
  kd reader --gdb                           (read through gdb's target again)"""

    name = "reader"
    needs_kernel_view = False

    def add_arguments(self, p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("--dump", nargs="+", metavar="DUMP",
                       help="read kernel memory from this dump (or split parts) in-process")
        g.add_argument("--gdb", action="store_true", help="read through gdb's target")
        g.add_argument("--ram", metavar="FILE[@BASE]",
                       help="a live guest's RAM shared with QEMU (gdbkd run passes it): kernel "
                            "memory at memory speed, user memory through gdb")
        p.add_argument("--cache", choices=("on", "off"), help="the per-stop block cache")
        p.add_argument("--layouts", metavar="FILE",
                       help="struct layouts of this vmlinux recorded by gdbkd (offsets cache)")

    def run(self, args):
        from ..kernel import memory
        if args.layouts:           # first: the image range below takes its symbols from it
            try:
                memory.use_layouts(args.layouts)
            except (OSError, ValueError) as e:
                raise KdError(f"cannot read layouts {escape(args.layouts)}: {e}")
        if args.dump:
            try:
                d = memory.attach_dump(args.dump)
            except GdbkdError as e:
                raise KdError(str(e))
            _use_image_range(d)
        elif args.ram:
            try:
                memory.attach_ram(args.ram)
            except GdbkdError as e:
                raise KdError(str(e))
        elif args.gdb:
            memory.detach_dump()
            memory.detach_ram()
        if args.cache:
            memory.set_cache(args.cache == "on")
        return memory.reader_info()

    def render(self, data, args):
        src = (f"the dump {escape(data['dump'])} (in-process)" if data["dump"] else
               f"the guest's RAM {escape(data['ram'])} (kernel), gdb's target (user)"
               if data.get("ram") else "gdb's target")
        return (f"reader: {src}; block cache {'on' if data['cache'] else 'off'}; "
                f"{data['fetches']} backend reads ({data['fetched_bytes']} bytes), "
                f"{data['blocks']} blocks cached"
                + ("; gdb loads the vmlinux's symbols when a command needs them"
                   if data.get("gdb_symbols") == "deferred" else ""))


def _use_image_range(d):
    """The kernel image's run-time range (from the vmlinux gdb has) for the dump's
    translation fast path and pointer-auth stripping, without reading the vmlinux again."""
    from ..kernel.memory import symbol
    lo, hi = symbol("_text"), symbol("_end")
    if lo is not None and hi is not None:
        d.mmu.image_range = (lo, hi)
        d.mmu.verify_image_fastpath()
        from ..kernel import memory
        memory.set_cache(memory.cache_enabled())
