"""A crash's title and signature, from the reports ``gdbkd core`` prints (no gdb here).

Input: the JSON of ``kd analyze``, ``kd deadlock`` and ``kd sys`` for one dump (any may be
None: ``kd analyze`` finds no trap on a hung machine). Output (:func:`classify`):

- ``kind``: ``oops``, ``list corruption``, ``BUG``, ``panic``, ``sysrq``, ``deadlock``,
  ``hung task`` or ``unknown``;
- ``title``, in syzbot's style: what happened, ``in`` the first meaningful function, its module
  in brackets — "Oops: NULL pointer dereference in lab1_attach_console [lab1_null]",
  "list corruption: LIST_POISON1 in lab2_coalesce [lab2_list]",
  "deadlock: mutex cycle of 2 tasks in lab5_fail_pending [lab5_abba]", "sysrq triggered crash",
  "hung task: 2 tasks blocked in foo_wait [foo]";
- ``frames``: the normalized frames the signature hashes, and ``signature``: 16 hex digits of
  SHA-256 over the kind's class and those frames.

Normalization (what keeps dumps of one crash together across boots, KASLR offsets and
rebuilds): function names only — no pc, no ``+0x..`` offset, no file:line; compiler clone
suffixes (``.constprop.0``, ``.isra.0``, ``.part.0``, ``.cold``) dropped; unnamed frames
(a bare address: a smashed stack) dropped; module names kept (``func [mod]``); the generic
trap path (panic, die, the fault handlers, the exception vectors, panic's delay loop,
``crash_kexec``) and the lock/schedule internals a blocked task sits in are skipped. An oops'
frames start in the context the exception interrupted (after the exception frame), a panic's
after ``panic``. Addresses in messages (the faulting address) never enter the signature: the
class does ("NULL pointer dereference", "paging request", "LIST_POISON1").

For deadlocks the signature is over the lock kinds of each cycle and the sorted functions its
tasks wait in (the cycle's starting task is the lowest pid, which a reboot may change);
victims and bystanders are left out: they are consequences.
"""

import hashlib
import re

from .fault import POISONS

__all__ = ["classify", "normalize_function", "meaningful_frames", "GENERIC_FRAMES", "TOP_FRAMES"]

#: how many frames the signature hashes (ABRT's duplicate hash uses 3 too)
TOP_FRAMES = 3

#: frames of the trap path itself, identical for every crash of a kind (arm64, 5.10–6.12)
GENERIC_FRAMES = frozenset("""
panic vpanic nmi_panic die __die die_kernel_fault __do_kernel_fault do_page_fault
do_translation_fault do_bad_area do_mem_abort do_sp_pc_abort do_alignment_fault do_el1_undef
do_el1_bti do_el1_fpac do_el1_brk64 do_debug_exception do_bad_mode bad_mode arm64_serror_panic
do_serror el1_abort el1_pc el1_undef el1_bti el1_dbg el1_fpac el1_interrupt el1h_64_sync_handler
el1h_64_sync el1h_64_irq_handler el1h_64_irq el1h_64_error_handler el1h_64_error
el1t_64_sync_handler el1t_64_sync call_el1_break_hook brk_handler bug_handler bug_brk_handler
report_bug __warn warn_slowpath_fmt __delay_cycles __delay __const_udelay __udelay __ndelay mdelay
crash_kexec __crash_kexec machine_kexec crash_setup_regs dump_backtrace show_stack dump_stack
dump_stack_lvl __list_del_entry_valid __list_add_valid __list_del_entry_valid_or_report
__list_add_valid_or_report __schedule schedule schedule_preempt_disabled schedule_timeout
io_schedule __mutex_lock __mutex_lock_slowpath mutex_lock mutex_lock_interruptible
mutex_lock_killable __mutex_lock_interruptible_slowpath __mutex_lock_killable_slowpath down
__down __down_common down_interruptible down_killable down_timeout __down_interruptible
__down_killable __down_timeout down_read down_write down_read_killable down_write_killable
__down_read_common __down_write_common rwsem_down_read_slowpath rwsem_down_write_slowpath
__rwsem_down_read_slowpath wait_for_completion __wait_for_common wait_for_common
do_wait_for_common wait_for_completion_interruptible wait_for_completion_killable
wait_for_completion_timeout
""".split())

_CLONE = re.compile(r"(\.(constprop|isra|part|cold|clone|llvm|lto_priv)(\.\d+)?)+$")
_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+(/0x[0-9a-fA-F]+)?$")
_WHERE = re.compile(r"^(?P<fn>[^\s\[]+)(?:\s+\[(?P<mod>[^\]]+)\])?")
_HEXISH = re.compile(r"\b(0x)?[0-9a-fA-F]{8,}\b")


def normalize_function(name: str):
    """``lab1_attach_console+0x1c`` → ``lab1_attach_console``; ``el0_svc_common.constprop.0``
    → ``el0_svc_common``; a bare address or ``??`` → None."""
    if not name:
        return None
    name = _OFFSET.sub("", name.strip())
    name = _CLONE.sub("", name)
    if not name or name.startswith(("0x", "?", "<")) or re.fullmatch(r"[0-9a-fA-F]+", name):
        return None
    return name


def _frame_text(fn, mod):
    return f"{fn} [{mod}]" if mod else fn


def meaningful_frames(frames, start=0, limit=TOP_FRAMES):
    """Up to LIMIT ``func [mod]`` strings from FRAMES[START:] (``kd analyze`` backtrace
    entries), generic and unnamed frames skipped."""
    out = []
    for f in frames[start:]:
        if f.get("exception"):
            continue
        fn = normalize_function(f.get("function"))
        if fn is None or fn in GENERIC_FRAMES:
            continue
        out.append(_frame_text(fn, f.get("module")))
        if len(out) == limit:
            break
    return out


def _interrupted_start(bt, trap):
    """Index of the first frame of the context a trap reports on: after the exception
    frame below ``die`` for an oops; after ``panic`` for a panic; 0 when the backtrace
    starts at the fault (a kdump taken after the oops: ``from_log``)."""
    if not trap or trap.get("from_log"):
        return 0
    # by name: the trap's gdb frame level and the backtrace's levels can differ (gdb counts
    # inlined frames the frame-record unwinder does not)
    idx = next((i for i, f in enumerate(bt) if normalize_function(f.get("function")) == trap.get("trap")), None)
    if idx is None:
        return 0
    if trap.get("trap") == "die" or trap.get("fault_function"):
        for i in range(idx, len(bt)):
            if bt[i].get("exception"):
                return i + 1
    return idx + 1


def _no_addresses(msg: str) -> str:
    return _HEXISH.sub("X", msg).strip()


def _oops_class(message: str, far=None):
    """(kind, class) of an arm64 oops message, e.g. ("oops", "NULL pointer dereference");
    FAR: kd analyze's "0x…" fault address, or None."""
    m = message or ""
    addr = re.search(r"at virtual address ([0-9a-fA-F]+)", m)
    va = int(addr.group(1), 16) if addr else int(far, 16) if far is not None else None
    if va is not None and va in POISONS:
        return "list corruption", POISONS[va]
    if "NULL pointer dereference" in m:
        return "oops", "NULL pointer dereference"
    if "paging request" in m:
        return "oops", "paging request"
    if "kernel BUG" in m or "BUG:" in m:
        return "BUG", "kernel BUG"
    if re.search(r"list_(del|add) corruption", m):
        return "list corruption", "list_del/list_add check"
    if m.startswith("Internal error:"):
        what = m.split(":", 1)[1].split(":")[0].strip() or "Oops"
        return "oops", _no_addresses(what)
    return "oops", _no_addresses(m) or "oops"


def _in(frames):
    return f" in {frames[0]}" if frames else ""


def _hash(kind_class: str, parts) -> str:
    h = hashlib.sha256("\n".join([kind_class, *parts]).encode())
    return h.hexdigest()[:16]


def _where(task):
    m = _WHERE.match((task or {}).get("where") or "")
    if not m:
        return None
    fn = normalize_function(m.group("fn"))
    return _frame_text(fn, m.group("mod")) if fn and fn not in GENERIC_FRAMES else None


_LOCK_ORDER = {"mutex": 0, "rwsem": 1, "semaphore": 2, "spinlock": 3}


def _deadlock(dl):
    tasks, locks = dl.get("tasks", {}), dl.get("locks", {})
    cyc_sigs, wheres, kinds_all, n = [], [], [], 0
    for c in dl["cycles"]:
        kinds = sorted({locks.get(s["waits_for"], {}).get("kind", "lock") for s in c["steps"]})
        ws = sorted(w for w in (_where(tasks.get(t)) for t in c["tasks"]) if w)
        cyc_sigs.append("/".join(kinds) + ": " + ", ".join(ws))
        wheres += ws
        kinds_all += kinds
        n += len(c["tasks"])
    kinds = "/".join(sorted(set(kinds_all), key=lambda k: (_LOCK_ORDER.get(k, 9), k)))
    what = f"{kinds} cycle of {n} tasks" if len(dl["cycles"]) == 1 else \
        f"{len(dl['cycles'])} {kinds} cycles of {n} tasks"
    frames = sorted(set(wheres))
    return {"kind": "deadlock", "title": f"deadlock: {what}{_in(frames)}", "frames": sorted(cyc_sigs),
            "signature": _hash("deadlock", sorted(cyc_sigs))}


def _hung(dl):
    tasks = dl.get("tasks", {})
    blocked = list(dl.get("waits", {}))
    ws = sorted({w for w in (_where(tasks.get(t)) for t in blocked) if w})
    n = len(blocked)
    return {"kind": "hung task", "title": f"hung task: {n} task{'s' if n != 1 else ''} blocked{_in(ws)}",
            "frames": ws[:TOP_FRAMES], "signature": _hash("hung task", ws[:TOP_FRAMES])}


def _damaged(problems, frames) -> dict:
    """No trap, but damaged kernel lists (``kd analyze``'s ``damaged_lists``): a title of
    their own, signed by which lists and how (never addresses, which differ per boot)."""
    first = problems[0]
    more = f" and {len(problems) - 1} more" if len(problems) > 1 else ""
    title = f"damaged kernel list: {_no_addresses(first['list'])} ({first['kind']}){more}"
    return {"kind": "damaged list", "title": title, "frames": frames,
            "signature": _hash("damaged list", sorted(f"{_no_addresses(p['list'])}: {p['kind']}"
                                                      for p in problems))}


def classify(analyze=None, deadlock=None, sysinfo=None) -> dict:
    """{kind, title, frames, signature} of one dump from its ``kd analyze``, ``kd deadlock``
    and ``kd sys`` JSON (each may be None)."""
    analyze, deadlock, sysinfo = analyze or {}, deadlock or {}, sysinfo or {}
    trap = analyze.get("trap") or None
    bt = analyze.get("backtrace") or []
    panic = sysinfo.get("panic") or {}
    message = panic.get("message") or (trap or {}).get("message") or ""
    if deadlock.get("cycles"):
        return _deadlock(deadlock)
    if trap is None and not panic and deadlock.get("waits"):
        return _hung(deadlock)
    if trap is None and not panic and analyze.get("damaged_lists"):
        return _damaged(analyze["damaged_lists"], meaningful_frames(bt))
    if trap is None and not panic:
        frames = meaningful_frames(bt)
        return {"kind": "unknown", "title": f"no crash found{_in(frames)}", "frames": frames,
                "signature": _hash("unknown", frames)}
    frames = meaningful_frames(bt, _interrupted_start(bt, trap))
    is_oops = panic.get("kind") == "oops" or (trap or {}).get("trap") == "die"
    if is_oops:
        kind, cls = _oops_class(message, (trap or {}).get("far"))
        if kind == "list corruption":
            title = f"list corruption: {cls}{_in(frames)}"
        elif kind == "BUG":
            title = f"kernel BUG{_in(frames)}"
        else:
            title = f"Oops: {cls}{_in(frames)}"
        return {"kind": kind, "title": title, "frames": frames, "signature": _hash(f"{kind}: {cls}", frames)}
    text = re.sub(r"^Kernel panic - not syncing:\s*", "", message).strip()
    if "sysrq triggered crash" in text:
        return {"kind": "sysrq", "title": "sysrq triggered crash", "frames": frames,
                "signature": _hash("sysrq", frames)}
    if "hung_task" in text and deadlock.get("waits"):
        return _hung(deadlock)
    text = _no_addresses(text) or "unknown reason"
    return {"kind": "panic", "title": f"kernel panic: {text}{_in(frames)}", "frames": frames,
            "signature": _hash(f"panic: {text}", frames)}
