"""kd search: find every location in kernel (or physical) memory holding a value (crash's search)."""

import sys

from . import KdError, command
from ._mem import address_arg, kernel, MEMORY_ADDRESSES
from ._util import KernelCommand
from ..kernel.symbolize import lookup
from .vtop import _task_pgd
from ..model import search as searchm
from ..model.memmap import memory_map
from ..model.reader import MemoryFault
from ..textutil import escape

__all__ = ["Search"]

#: hits annotated with symbol / slab object / stack (the rest are listed bare)
ANNOTATE_MAX = 2000


def _number(text, what):
    try:
        return int(text, 16) & 0xFFFFFFFFFFFFFFFF
    except ValueError:
        raise KdError(f"{what} must be a hex number, not {escape(text)}")


@command
class Search(KernelCommand):
    """Search memory for a 64-bit value or a string (crash's search).

Kernel memory by default: the kernel image, the linear map of all RAM, and every
vmalloc area (vmalloc buffers, task stacks, modules; not ioremapped device memory).
With -u, a task's user memory: the pages present in its VMAs. Values are 64-bit words at
8-byte aligned addresses. Each hit is annotated: kernel symbol, slab object
(cache + offset, allocated or free), task stack, vmalloc area."""

    name = "search"
    json_addresses = MEMORY_ADDRESSES

    def add_arguments(self, p):
        g = p.add_mutually_exclusive_group()
        g.add_argument("-k", dest="kernel", action="store_true",
                       help="kernel virtual memory: image, linear map, vmalloc (the default)")
        g.add_argument("-p", dest="physical", action="store_true",
                       help="physical memory (RAM); hits are physical addresses")
        g.add_argument("-u", dest="user", metavar="PID|TASK",
                       help="this task's user memory: every VMA of its mm, through its page "
                            "tables (pages not present are not searched)")
        p.add_argument("-m", dest="mask", metavar="MASK",
                       help="hex mask of bits to ignore when comparing")
        p.add_argument("-s", dest="start", metavar="START",
                       help="start address (hex, symbol or expression)")
        p.add_argument("-e", dest="end", metavar="END",
                       help="end address, exclusive (hex, symbol or expression)")
        p.add_argument("-c", dest="string", metavar="STRING",
                       help="search for a string instead of a value (any alignment)")
        p.add_argument("--limit", type=int, default=10000,
                       help="stop after this many hits (default 10000)")
        p.add_argument("value", nargs="?", metavar="VALUE",
                       help="the value: hex number, symbol or expression")

    def run(self, args):
        k = kernel()
        if args.string is not None:
            if args.value is not None:
                raise KdError("give either VALUE or -c STRING, not both")
            if not args.string:
                raise KdError("-c needs a non-empty string")
            pattern = searchm.string_pattern(args.string.encode())
            align, overlap, value = 1, len(args.string.encode()) - 1, None
        else:
            if args.value is None:
                raise KdError("give a VALUE to search for (or -c STRING)")
            value = address_arg(args.value)
            mask = _number(args.mask, "-m MASK") if args.mask else 0
            pattern = searchm.value_pattern(value, mask)
            align, overlap = 8, 0
        if args.limit < 1:
            raise KdError("--limit must be at least 1")
        start = address_arg(args.start) if args.start else None
        end = address_arg(args.end) if args.end else None
        if start is not None and end is not None and end <= start:
            raise KdError(f"END {end:#x} is not above START {start:#x}")
        task = None
        try:
            if args.user is not None:
                task, _pgd = _task_pgd(k, args.user)       # kd vtop -c's selection
                regions = searchm.user_regions(k, task.mm)
            elif args.physical:
                regions = searchm.physical_regions(k)
            else:
                regions = searchm.kernel_regions(k)
            regions = searchm.clip(regions, start, end)
            if not regions:
                raise KdError("nothing to search in that range")
            res = searchm.search(k, pattern, regions, align=align, overlap=overlap,
                                 limit=args.limit, progress=_progress())
            hits = res["hits"]
            mm = memory_map(k)
            virt = [mm.phys_to_virt(h) for h in hits] if args.physical else hits
            if task is not None:
                notes = _user_notes(regions, hits)
            else:
                notes = searchm.annotate(k, virt[:ANNOTATE_MAX])
        except MemoryFault as e:
            raise KdError(str(e))
        finally:
            _progress_done()
        rows = []
        for i, h in enumerate(hits):
            r = {"addr": h}
            if i < len(notes):
                r.update(notes[i])
                if args.physical:
                    r["virt"] = virt[i]
                v = virt[i]
                if "slab" not in r and "stack" not in r and v >> 63 and \
                        r["region"] in ("kernel image", "modules", "vmalloc"):
                    s = lookup(v, want_line=False)
                    if s.name:
                        r["symbol"] = s.label()
                if "slab" in r:
                    r["slab"]["cache"] = escape(r["slab"]["cache"])
                if "module" in r:
                    r["module"]["name"] = escape(r["module"]["name"])
                if "vmalloc" in r:
                    c = r["vmalloc"]["caller"]
                    r["vmalloc"]["caller_name"] = lookup(c, want_line=False).label() if c else None
            rows.append(r)
        d = {"value": value, "string": escape(args.string) if args.string is not None else None,
             "physical": bool(args.physical), "hits": rows, "truncated": res["truncated"],
             "skipped_pages": res["skipped_pages"], "scanned_bytes": res["scanned"]}
        if task is not None:
            d["user"] = {"pid": task.pid, "comm": escape(task.comm), "task": task.addr}
        return d

    def render(self, d, args):
        lines = []
        for r in d["hits"]:
            note = _note(r)
            lines.append(f"{r['addr']:016x}" + (f":  {note}" if note else ""))
        if d["truncated"]:
            lines.append(f"(stopped after {len(d['hits'])} hits: --limit)")
        if d["skipped_pages"]:
            lines.append(f"({d['skipped_pages']} unreadable pages skipped)")
        if not d["hits"]:
            lines.append("no hits")
        return "\n".join(lines)


def _user_notes(regions, hits) -> list:
    """{"region": "user", "vma": {start, end, name}} of each user hit."""
    out = []
    for h in hits:
        r = next((r for r in regions if r.start <= h < r.end), None)
        d = {"region": "user"}
        if r is not None:
            d["vma"] = {"start": r.start, "end": r.end, "name": escape(r.name or "")}
        out.append(d)
    return out


def _note(r) -> str:
    if "vma" in r:
        v = r["vma"]
        return f"{v['name']} {v['start']:x}-{v['end']:x} +{r['addr'] - v['start']:#x}"
    if "slab" in r:
        s = r["slab"]
        state = {True: "allocated", False: "FREE", None: "state unknown"}[s["allocated"]]
        return f"{s['cache']} object {s['object']:016x}+{s['offset']:#x} ({state})"
    if "stack" in r:
        s = r["stack"]
        return f"stack of PID {s['pid']} ({s['comm']}) +{s['offset']:#x}"
    if "symbol" in r:
        return r["symbol"]
    if "module" in r:
        m = r["module"]
        return f"module {m['name']}+{m['offset']:#x}"
    if "vmalloc" in r:
        v = r["vmalloc"]
        return f"vmalloc {v['start']:016x} ({v['caller_name'] or '-'})"
    return ""


_tty_progress = [False]


def _progress():
    """A progress callback writing to the terminal (only when stderr is a tty)."""
    if not sys.stderr.isatty():
        return None
    state = {"last": -1}

    def cb(done, total):
        pct = 100 * done // total if total else 100
        if pct != state["last"] and pct % 5 == 0:
            state["last"] = pct
            _tty_progress[0] = True
            sys.stderr.write(f"\rkd search: {pct}% of {total >> 20} MiB")
            sys.stderr.flush()
    return cb


def _progress_done():
    if _tty_progress[0]:
        sys.stderr.write("\r" + " " * 40 + "\r")
        sys.stderr.flush()
        _tty_progress[0] = False
