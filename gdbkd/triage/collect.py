"""One dump's triage row: identity, vmlinux, the kd reports, title and signature.

:func:`triage_dump` is the unit of work of ``gdbkd triage``: a module-level function of
plain arguments returning a plain dict, so local processes and Dask workers run the very
same code. It runs ``gdbkd core DUMP VMLINUX -s --batch`` with the ``kd`` commands below in
a child process (gdb is a child of that one: a crash in it ends one row, not the batch) and
never raises for a bad dump: the row then has ``ok: false`` and a one-line ``error``.

The row holds no timing and no host name, so the same dump gives the same row wherever it
runs. The crash time is the kernel's own wall clock (``kd sys``'s ``wall_clock_s``: the
timekeeper's ``xtime_sec``, the last timekeeping tick before the dump, gdbkd/model/timekeeping.py),
else the dump file's mtime.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import GdbkdError

__all__ = ["triage_dump", "kd_reports", "error_row", "pick_vmlinux", "find_vmlinux_for", "identify", "readable", "KD_COMMANDS",
           "TIMEOUT"]

#: seconds one dump may take in gdb before its row says so
TIMEOUT = 600

#: section name -> gdb command; each section's output starts after a marker line
KD_COMMANDS = {
    "analyze": "kd analyze --json --log 0",
    "deadlock": "kd deadlock --json --dot {dot}",
    "sys": "kd sys --json",
    "mod": "kd mod --json",
}
_MARK = "@@gdbkd-triage "



def readable(path) -> bool:
    """Whether this process can read PATH (a Dask worker is asked this for each dump)."""
    return os.path.isfile(path) and os.access(path, os.R_OK)


def identify(path) -> dict:
    """{release, build_id, format} from the dump's VMCOREINFO (no vmlinux needed)."""
    from ..target import open_dump
    d = open_dump(str(path))
    try:
        if not d.osrelease:
            raise GdbkdError(f"{path}: the dump has no VMCOREINFO (no OSRELEASE): "
                             "cannot tell which kernel it is")
        return {"release": d.osrelease, "build_id": d.build_id or None, "format": d.format}
    finally:
        d.close()


def pick_vmlinux(ident: dict, vmlinux_dir=None, download=True) -> str:
    """The vmlinux of a dump (identify()'s row): by build-id, else by release, in
    VMLINUX_DIR, gdbkd's cache, Debian's debug paths, then Debian's archive
    (artifacts/debuginfo.py). Raises GdbkdError (one line) naming where it looked."""
    return find_vmlinux_for(ident, vmlinux_dir, download).path


def find_vmlinux_for(ident: dict, vmlinux_dir=None, download=True):
    """debuginfo.Found (path, why) for identify()'s row."""
    from ..artifacts.debuginfo import find_vmlinux
    return find_vmlinux(ident["release"], ident.get("build_id"),
                        [vmlinux_dir] if vmlinux_dir else [], download)


def _run_core(dump, vmlinux, dot_path, modules_dirs=()):
    argv = [sys.executable, "-m", "gdbkd", "core", str(dump), str(vmlinux), "-s", "--batch"]
    for m in modules_dirs:
        argv += ["--modules-dir", str(m)]
    for name, cmd in KD_COMMANDS.items():
        argv += ["-ex", f"echo \\n{_MARK}{name}\\n", "-ex", cmd.format(dot=dot_path)]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL, errors="replace")
    except subprocess.TimeoutExpired:
        raise GdbkdError(f"gdbkd core took more than {TIMEOUT} s")
    return r


def _sections(stdout: str) -> dict:
    """{section: [lines]} of the marked gdb output."""
    out, cur = {}, None
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            cur = line[len(_MARK):].strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def _json_of(lines):
    for line in lines:
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def _gdb_errors(stderr: str) -> list:
    errs = [l.strip() for l in stderr.splitlines()
            if l.startswith(("Error occurred in Python", "gdbkd", "kd:")) or "rror" in l[:30]]
    return list(dict.fromkeys(errs))[:5]


def kd_reports(dump, vmlinux, modules_dirs=()) -> dict:
    """The kd JSON reports of one dump, by ``gdbkd core --batch``: {"analyze", "deadlock",
    "sys", "mod": JSON or None, "xtime": int or None, "dot": the wait-for graph's DOT,
    "notes": [why a report is missing]}. Raises GdbkdError when gdbkd core fails."""
    with tempfile.TemporaryDirectory(prefix="gdbkd-triage-") as td:
        dot_path = os.path.join(td, "waitfor.dot")
        r = _run_core(dump, vmlinux, dot_path, modules_dirs)
        dot = Path(dot_path).read_text() if os.path.isfile(dot_path) else None
    secs = _sections(r.stdout)
    if r.returncode not in (0, 3) or not secs:
        err = _gdb_errors(r.stderr) or r.stderr.strip().splitlines()[-1:] or [f"exit {r.returncode}"]
        raise GdbkdError(f"gdbkd core failed: {err[0][:300]}")
    rep = {n: _json_of(secs.get(n, [])) for n in ("analyze", "deadlock", "sys", "mod")}
    notes = [f"kd {n} gave no report" for n, v in rep.items() if v is None]
    if notes:
        notes += _gdb_errors(r.stderr)
    rep.update(xtime=(rep["sys"] or {}).get("wall_clock_s"), dot=dot, notes=notes)
    return rep


def triage_dump(dump, vmlinux=None, vmlinux_dir=None, modules_dirs=()) -> dict:
    """The triage row of one dump (see the module docstring); never raises for bad input.
    MODULES_DIRS go to ``gdbkd core --modules-dir`` (module .ko files with DWARF)."""
    from ..analysis.crashsig import classify
    row = {"dump": str(dump), "name": os.path.basename(str(dump))}
    try:
        if not readable(dump):
            raise GdbkdError(f"{dump}: no such readable file")
        ident = identify(dump)
        row.update(release=ident["release"], build_id=ident["build_id"])
        if vmlinux is None:
            found = find_vmlinux_for(ident, vmlinux_dir)
            vmlinux = found.path
            row["vmlinux_source"] = found.why
        else:
            from ..target.offsets import vmlinux_build_id
            vb = vmlinux_build_id(vmlinux)
            if ident["build_id"] and vb and vb != ident["build_id"]:
                raise GdbkdError(f"{vmlinux} is not this dump's kernel (build-id {vb[:12]}…, "
                                 f"the dump's {ident['build_id'][:12]}…)")
        row["vmlinux"] = str(vmlinux)
        rep = kd_reports(dump, vmlinux, modules_dirs)
        analyze, deadlock, sysinfo, mods = rep["analyze"], rep["deadlock"], rep["sys"], rep["mod"]
        if rep["xtime"] is not None:
            row.update(time=rep["xtime"], time_source="kernel clock")
        else:
            row.update(time=int(os.stat(dump).st_mtime), time_source="file mtime")
        row.update(classify(analyze, deadlock, sysinfo))
        a = analyze or {}
        row["panic_task"] = ({k: a.get(k) for k in ("task", "pid", "comm")} if a.get("task")
                             else None)
        row["taint"] = ((sysinfo or {}).get("tainted") or {}).get("flags")
        row["panic"] = (sysinfo or {}).get("panic")
        row["modules"] = sorted(m["name"] for m in (mods or {}).get("modules", []))
        row["analyze"] = analyze
        # damaged kernel lists are evidence whatever the crash (kd analyze's kd check)
        row["damaged_lists"] = [p["line"] for p in (analyze or {}).get("damaged_lists") or []]
        if deadlock and deadlock.get("waits"):
            row["deadlock"] = deadlock
            row["deadlock_dot"] = rep["dot"]
        row["notes"] = rep["notes"]
        row["ok"] = True
    except GdbkdError as e:
        row.update(ok=False, error=str(e).splitlines()[0] if str(e) else type(e).__name__)
    except OSError as e:
        row.update(ok=False, error=f"{e.strerror or e}: {e.filename or dump}")
    return row


def error_row(dump, message) -> dict:
    """A row for a dump that never reached triage_dump (e.g. no worker can read it)."""
    return {"dump": str(dump), "name": os.path.basename(str(dump)), "ok": False, "error": message}

