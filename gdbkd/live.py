"""The live path: boot (or attach to) a guest, catch the crash in gdb, report.

``run_session`` is shared by ``gdbkd run``, ``gdbkd attach`` and ``gdbkd lab run``:
it owns every process it starts (QEMU, gdb-multiarch) and stops them on every
exit path (normal end, timeout, Ctrl-C/SIGTERM, gdb or QEMU dying).
"""

import json
import os
import re
import select
import signal
import sys
import termios
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

from .artifacts.kernel import ensure_kernel
from .artifacts.modules import build_module_dir
from .cache import progress
from .progress import Bar
from .errors import GdbkdError
from .gdbmi.session import GdbSession, GdbDied
from .qemu.machine import Machine
from .qemu.profiles import load_profile
from .qemu.qmp import Qmp

__all__ = ["LiveOptions", "run_session", "attach_session", "TRAP_BREAKPOINTS"]

TRAP_BREAKPOINTS = ("panic", "die", "crash_kexec")
DETACH_KEY = b"\x1d"    # Ctrl-]


@dataclass
class LiveOptions:
    profile: str = "debian-6.1"
    modules: list = field(default_factory=list)      # dirs or .ko to build/put into the guest
    execs: list = field(default_factory=list)        # guest shell commands
    rc: str = ""                                     # shell run by /init before the shell
    extra_files: dict = field(default_factory=dict)  # guest path -> host path
    batch: bool = False
    json: bool = False
    ex: list = field(default_factory=list)           # gdb commands after the stop
    dump_on_crash: str = ""
    dump_format: str = "elf"
    timeout: float = 120.0
    nokaslr: bool = False
    gdb_port: int = 0
    modules_dir: list = field(default_factory=list)
    append: str = ""
    cpu: str = ""
    memory: str = ""
    smp: int = 0                   # vCPUs; 0: the profile's
    stop_on: list = field(default_factory=list)   # console regexes: interrupt the guest once all appear (hangs)
    boot_timeout: float = 90.0
    keep: bool = False
    task_threads: bool = True      # gdb ⇄ gdbkd proxy ⇄ QEMU: every task a gdb thread


class _Term:
    """Raw terminal while the guest console is the user's terminal."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stdin.isatty()
        self.saved = None

    def __enter__(self):
        if self.enabled:
            self.saved = termios.tcgetattr(0)
            tty.setraw(0)
        return self

    def restore(self):
        if self.saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
            self.saved = None

    def __exit__(self, *a):
        self.restore()


def _out(s=""):
    sys.stdout.write(s + ("\n" if not s.endswith("\n") else ""))
    sys.stdout.flush()


def _console_tail(m, n=8):
    if not m or not m.console:
        return ""
    lines = [l for l in m.console.text().splitlines() if l.strip()]
    return "\n".join("    " + l for l in lines[-n:])


class _Stopper:
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so teardown runs."""

    def __enter__(self):
        self.old = {}
        for s in (signal.SIGTERM, signal.SIGHUP):
            self.old[s] = signal.signal(s, self._h)
        return self

    def _h(self, signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def __exit__(self, *a):
        for s, h in self.old.items():
            signal.signal(s, h)


class _Proxy:
    """``gdbkd proxy TARGET VMLINUX --listen SOCK`` as a child process (gdbkd/stub/proxy.py):
    gdb connects to SOCK and sees every task as a thread. Stopped with the session."""

    def __init__(self, target, vmlinux, ram_fd=None):
        import subprocess
        import tempfile
        from .procutil import die_with_parent
        self.dir = tempfile.mkdtemp(prefix="gdbkd-proxy-")      # 0700
        self.sock = os.path.join(self.dir, "proxy.sock")
        ram = ["--ram", f"/proc/self/fd/{ram_fd}"] if ram_fd is not None else []
        self.proc = subprocess.Popen([sys.executable, "-m", "gdbkd", "proxy", target, str(vmlinux),
                                      "--listen", self.sock, *ram], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     preexec_fn=die_with_parent,
                                     pass_fds=(ram_fd,) if ram_fd is not None else ())
        deadline = time.monotonic() + 120      # the first run asks gdb for the layouts
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
                self.close()
                raise GdbkdError(f"gdbkd proxy: {err[-1] if err else 'exited'}")
            if time.monotonic() > deadline:
                self.close()
                raise GdbkdError("gdbkd proxy did not start")
            time.sleep(0.02)

    def close(self):
        import shutil
        import subprocess
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _setup_gdb(vmlinux, target, modules_dirs, log_path, watch=True, task_threads=True, ram_fd=None):
    env = {"GDBKD_MODULES_PATH": os.pathsep.join(str(d) for d in modules_dirs)}
    proxy = _Proxy(target, vmlinux, ram_fd) if task_threads else None
    try:
        g = GdbSession(vmlinux, env=env, log_path=log_path,
                       pass_fds=(ram_fd,) if ram_fd is not None else ())
    except BaseException:
        if proxy:
            proxy.close()
        raise
    g.proxy = proxy
    try:
        g.connect(proxy.sock if proxy else target)
        g.source_kd()
        for attempt in range(40):
            try:
                out = g.cli("kd symbols" + (" --watch" if watch else ""), timeout=300)
                break
            except GdbkdError as e:
                # every CPU in user mode (KPTI trampoline VBAR): let the guest run a moment
                if "no CPU is in the kernel" not in str(e) or attempt == 39:
                    raise
                g.cont()
                time.sleep(0.05)
                g.interrupt()
                g.wait_stopped(10)
        if ram_fd is not None:
            # kd reads kernel memory from the RAM QEMU shares with us (memory speed)
            g.cli(f"kd reader --ram /proc/self/fd/{ram_fd}")
        for b in TRAP_BREAKPOINTS:
            g.mi(f"-break-insert {b}")
    except BaseException:
        _close(g)
        raise
    return g, out


def _close(g, detach=False):
    """End gdb, then the proxy between it and QEMU (if any)."""
    try:
        g.close(detach=detach)
    finally:
        if getattr(g, "proxy", None):
            g.proxy.close()


def _report(g, opts, stop_reason):
    """Print the report (+ -ex outputs); return the JSON-able result."""
    res = {"stopped": stop_reason}
    if opts.json:
        res["report"] = json.loads(g.cli("kd analyze --json"))
    else:
        _out("")
        _out("=" * 72)
        _out(f"gdbkd: guest stopped ({stop_reason})")
        _out("=" * 72)
        _out(g.cli("kd analyze"))
    outs = []
    for cmd in opts.ex:
        try:
            o = g.cli(cmd, timeout=300)
        except GdbkdError as e:
            o = f"error: {e}\n"
        outs.append({"command": cmd, "output": o})
        if not opts.json:
            _out(f"(gdb) {cmd}")
            _out(o.rstrip("\n"))
    if outs:
        res["ex"] = outs
    return res


def _handover(g, term):
    """Give the user gdb's own CLI (readline history, completion) on this terminal."""
    term.restore()
    ttyname = os.ttyname(0)
    _out("gdbkd: you are in gdb on the stopped guest (kd commands loaded; `help kd`). `quit` ends the session.")
    g.cli(f"new-ui console {ttyname}")
    while g.alive():
        try:
            ev = g.wait_event(0.5)
            if ev and ev.get("type") == "gdb-exited":
                break
        except KeyboardInterrupt as e:
            if e.args:          # SIGTERM/SIGHUP (_Stopper), e.g. the terminal closed: end it all
                raise
            try:
                g.interrupt()
            except GdbkdError:
                pass


def _wait_for_stop(g, m, opts, term, interactive):
    """Wait for a trap breakpoint (or --stop-on / Ctrl-]); return the reason string."""
    deadline = time.monotonic() + opts.timeout if opts.batch else None
    pats = [re.compile(p) for p in opts.stop_on]
    mark = m.console.mark() if m else 0
    while True:
        ev = None
        if interactive:
            r, _, _ = select.select([0], [], [], 0.1)
            if r:
                data = os.read(0, 1024)
                if DETACH_KEY in data:
                    g.interrupt()
                    g.wait_stopped(10)
                    return "interrupted by the user (Ctrl-])"
                if m:
                    m.console.send(data)
            ev = g.wait_event(0)
        else:
            ev = g.wait_event(0.2)
        if ev is not None:
            if ev.get("type") == "gdb-exited":
                raise GdbDied("gdb-multiarch exited unexpectedly")
            if ev.get("message") == "stopped":
                p = ev.get("payload") or {}
                fn = (p.get("frame") or {}).get("func", "?")
                if p.get("reason") == "breakpoint-hit":
                    return f"breakpoint in {fn}"
                if p.get("reason") in ("exited", "exited-normally", "exited-signalled"):
                    raise GdbkdError("the guest exited (QEMU ended the session)")
                return f"stopped in {fn} ({p.get('reason', 'signal')})"
        if m and not m.alive():
            raise GdbkdError("QEMU exited before a crash was caught; console:\n" + _console_tail(m))
        if pats and m:
            txt = m.console.text(mark)
            if all(p.search(txt) for p in pats):
                g.interrupt()
                if g.wait_stopped(15) is None:
                    raise GdbkdError("the guest did not stop after the interrupt")
                return "interrupted after the console showed " + ", ".join(repr(p) for p in opts.stop_on)
        if deadline and time.monotonic() > deadline:
            tail = _console_tail(m)
            raise GdbkdError(f"no crash within {opts.timeout:.0f} s (raise --timeout)"
                             + (f"; last console lines:\n{tail}" if tail else ""), 1)


def _prepare_guest(opts, run_dir: Path):
    profile = load_profile(opts.profile)
    kernel = ensure_kernel(profile)
    if profile.kernel.get("fetch_source"):       # the profile asks for the kernel source in gdb
        from .artifacts.source import ensure_source
        ensure_source(profile, kernel)
    files = dict(opts.extra_files)
    mod_dirs = list(opts.modules_dir) + list(profile.guest.get("modules_dirs", []))
    kos = []
    for src in opts.modules:
        for ko in build_module_dir(src, kernel):
            files[f"lib/modules/gdbkd/{ko.name}"] = ko
            kos.append(ko)
            mod_dirs.append(str(ko.parent))
    from .artifacts.rootfs import guest_boot
    initrd, disk, ready = guest_boot(profile, kernel, files, opts.rc, run_dir)
    if kernel.modules_dir:
        mod_dirs.append(kernel.modules_dir)
    return profile, kernel, initrd, disk, ready, mod_dirs, kos


def run_session(opts: LiveOptions) -> int:
    """gdbkd run: returns the process exit code."""
    import tempfile
    m = g = None
    interactive = not opts.batch and sys.stdin.isatty()
    run_dir = Path(tempfile.mkdtemp(prefix="gdbkd-prep-"))
    os.chmod(run_dir, 0o700)
    result = {"profile": opts.profile}
    try:
        with _Stopper():
            profile, kernel, initrd, disk, ready, mod_dirs, kos = _prepare_guest(opts, run_dir)
            echo = (lambda b: (os.write(1, b))) if not opts.batch else None
            m = Machine(profile, kernel, initrd, nokaslr=opts.nokaslr, gdb_port=opts.gdb_port,
                        append_extra=opts.append, cpu=opts.cpu or None, memory=opts.memory or None,
                        echo=echo, shared_ram=opts.task_threads, extra_args=disk, smp=opts.smp or None)
            m.keep_dir = opts.keep
            if not opts.json:
                progress(f"booting {profile.name} ({kernel.release})")
            m.start()
            result["gdb_port"] = m.gdb_port
            if not m.console.wait_for(ready, opts.boot_timeout):
                raise GdbkdError("the guest did not reach its shell; console:\n" + _console_tail(m))
            try:
                g, sym_out = _setup_gdb(kernel.vmlinux, f"127.0.0.1:{m.gdb_port}", mod_dirs,
                                        os.path.join(m.dir, "gdb.log"),
                                        task_threads=opts.task_threads, ram_fd=m.ram_fd)
            except GdbkdError:
                if not m.alive():
                    raise GdbkdError("QEMU exited while gdb was attaching; console:\n" + _console_tail(m))
                raise
            if not opts.json:
                progress("gdb attached: " + " | ".join(l for l in sym_out.splitlines() if "KASLR" in l))
            g.cont()
            time.sleep(0.2)
            for cmd in opts.execs:
                m.console.send(cmd + "\n")
                time.sleep(0.3)
            with _Term(interactive) as term:
                reason = _wait_for_stop(g, m, opts, term, interactive)
                term.restore()
                result.update(_report(g, opts, reason))
                if opts.dump_on_crash:
                    out = os.path.abspath(opts.dump_on_crash)
                    q = Qmp(m.qmp_path)
                    try:
                        with Bar(f"writing {os.path.basename(out)}", 0, say=False) as bar:
                            q.dump(out, opts.dump_format, progress=bar.moveto)
                    finally:
                        q.close()
                    result["dump"] = out
                    if not opts.json:
                        progress(f"dump written to {out} ({opts.dump_format})")
                result["console"] = m.console.text()[-65536:] if opts.json else None
                if opts.json:
                    _out(json.dumps(result))
                if interactive:
                    _handover(g, term)
            return 0
    except KeyboardInterrupt as e:
        sys.stderr.write(f"\ngdbkd: interrupted ({e or 'Ctrl-C'}); QEMU and gdb stopped\n")
        return 130
    except GdbDied as e:
        raise GdbkdError(f"{e}; QEMU stopped, session ended") from None
    finally:
        if g:
            _close(g)
        if m:
            m.stop()
        import shutil
        shutil.rmtree(run_dir, ignore_errors=True)


def _already_crashed(g):
    """When the guest panicked before gdbkd attached (``panic_cpu``, v4.5+, is -1 until a
    CPU enters panic()): select that CPU's thread and return the stop reason; else None
    (then gdbkd continues the guest and waits for a crash)."""
    try:
        cpu = g.eval_int("panic_cpu.counter")
    except GdbkdError:
        return None
    if cpu >> 31:                   # -1 (as unsigned long): no CPU has panicked
        return None
    g.cli("python import gdbkd.kernel.tasks as _p; _t = _p.threads_by_cpu().get(%d); "
          "_t.switch() if _t else None" % cpu)
    return f"the guest had already panicked on CPU {cpu} when gdbkd attached"


def attach_session(target: str, vmlinux: str, opts: LiveOptions) -> int:
    """gdbkd attach HOST:PORT: the same, on a guest someone else started."""
    interactive = not opts.batch and sys.stdin.isatty()
    g = None
    try:
        with _Stopper():
            g, sym_out = _setup_gdb(vmlinux, target, opts.modules_dir, None,
                                    task_threads=opts.task_threads)
            if not opts.json:
                progress("gdb attached: " + " | ".join(l for l in sym_out.splitlines() if "KASLR" in l))
            crashed = _already_crashed(g)
            if crashed is None:
                g.cont()
            with _Term(False) as term:
                if interactive and crashed is None:
                    progress("waiting for a crash (Ctrl-C breaks into gdb)")
                try:
                    reason = crashed or _wait_for_stop(g, None, opts, term, False)
                except KeyboardInterrupt:
                    g.interrupt()
                    g.wait_stopped(10)
                    reason = "interrupted by the user"
                res = _report(g, opts, reason)
                if opts.json:
                    _out(json.dumps(res))
                if interactive:
                    _handover(g, term)
            return 0
    except KeyboardInterrupt:
        sys.stderr.write("\ngdbkd: interrupted; gdb stopped\n")
        return 130
    except GdbDied as e:
        raise GdbkdError(f"{e}; session ended") from None
    finally:
        if g:
            _close(g, detach=True)
