"""A gdb-multiarch process driven over MI.

pygdbmi parses the MI records; a reader thread queues them so that result
records (matched by token) and async ``*stopped`` notifications can be waited
for independently while the guest runs (``mi-async on``).
"""

import itertools
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from pygdbmi.gdbmiparser import parse_response

from ..errors import GdbkdError
from ..procutil import die_with_parent

__all__ = ["GdbSession", "GdbDied", "KD_PY", "GDB"]

GDB = "gdb-multiarch"
from ..paths import kd_py, GDB_INIT

KD_PY = kd_py()


class GdbDied(GdbkdError):
    pass


def _mi_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class GdbSession:
    def __init__(self, vmlinux=None, env=None, log_path=None, pass_fds=()):
        if shutil.which(GDB) is None:
            raise GdbkdError(f"{GDB} not found: run ./install.sh (apt: gdb-multiarch)")
        e = dict(os.environ)
        e.update(env or {})
        self.log = open(log_path, "w") if log_path else None
        self.proc = subprocess.Popen(
            [GDB, "--nx", "--quiet", "--interpreter=mi3", *GDB_INIT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=e, start_new_session=True, bufsize=0, preexec_fn=die_with_parent,
            pass_fds=tuple(pass_fds))
        self.tokens = itertools.count(100)
        self.results = {}
        self.cond = threading.Condition()
        self.events = queue.Queue()
        self.stream = []           # console/log stream text of the command in flight
        self.dead = False
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()
        self.cli("set pagination off")
        self.cli("set confirm off")
        self.cli("set print pretty on")
        self.mi("-gdb-set mi-async on")
        if vmlinux:
            self.load_vmlinux(vmlinux)

    # --- plumbing -------------------------------------------------------
    def _reader(self):
        f = self.proc.stdout
        for raw in iter(f.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if self.log:
                self.log.write(line + "\n")
                self.log.flush()
            if not line or line == "(gdb) ":
                continue
            try:
                rec = parse_response(line)
            except (ValueError, KeyError, IndexError, TypeError):   # a line pygdbmi cannot parse
                continue
            typ = rec.get("type")
            with self.cond:
                if typ == "result" and rec.get("token") is not None:
                    self.results[rec["token"]] = (rec, self.stream)
                    self.stream = []
                    self.cond.notify_all()
                elif typ in ("console", "log", "output", "target"):
                    if isinstance(rec.get("payload"), str):
                        self.stream.append((typ, rec["payload"]))
                elif typ == "notify":
                    self.events.put(rec)
        with self.cond:
            self.dead = True
            self.cond.notify_all()
        self.events.put({"type": "gdb-exited"})

    def alive(self):
        return self.proc.poll() is None and not self.dead

    def mi(self, command: str, timeout=60.0):
        """Run one MI command; return (payload, stream). Raises GdbkdError on ^error."""
        tok = next(self.tokens)
        with self.cond:
            self.stream = []     # async output before this command is not its output
        try:
            self.proc.stdin.write(f"{tok}{command}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise GdbDied("gdb-multiarch exited unexpectedly")
        deadline = time.monotonic() + timeout
        with self.cond:
            while tok not in self.results:
                left = deadline - time.monotonic()
                if self.dead:
                    raise GdbDied("gdb-multiarch exited unexpectedly")
                if left <= 0:
                    raise GdbkdError(f"gdb did not answer '{command[:60]}' within {timeout:.0f} s")
                self.cond.wait(left)
            rec, stream = self.results.pop(tok)
        if rec.get("message") == "error":
            msg = (rec.get("payload") or {}).get("msg", "error")
            raise GdbkdError(msg.strip().splitlines()[-1] if msg.strip() else "gdb error")
        return rec.get("payload"), stream

    def cli(self, command: str, timeout=60.0) -> str:
        """Run a CLI command through MI; return its console output."""
        _, stream = self.mi(f"-interpreter-exec console {_mi_quote(command)}", timeout)
        return "".join(p for t, p in stream if t in ("console", "target"))

    def eval(self, expr: str) -> str:
        payload, _ = self.mi(f"-data-evaluate-expression {_mi_quote(expr)}")
        return payload["value"]

    def eval_int(self, expr: str) -> int:
        v = self.eval(f"(unsigned long)({expr})")
        return int(v.split()[0], 0)

    # --- high level -----------------------------------------------------
    def load_vmlinux(self, path, offset=0):
        if not Path(path).is_file():
            raise GdbkdError(f"vmlinux {path} does not exist")
        self.cli("set architecture aarch64")
        opt = f"-o {offset:#x} " if offset else ""
        self.cli(f"symbol-file {opt}{path}", timeout=300)
        self.vmlinux = str(path)
        from ..artifacts.source import gdb_source_commands
        for c in gdb_source_commands(path):      # the kernel source, when it was fetched
            self.cli(c)

    def source_kd(self):
        from ..gdbpython import boot_command
        from ..errors import KD_LOAD_FAILURE as FAIL
        out = self.cli(boot_command())
        if FAIL in out:
            raise GdbkdError(out.strip().splitlines()[-1])
        return out

    def connect(self, target: str, timeout=30):
        self.mi(f"-target-select remote {target}", timeout=timeout)

    def wait_event(self, timeout):
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def wait_stopped(self, timeout):
        """Wait for a *stopped record; returns it, None on timeout; GdbDied if gdb exits."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ev = self.wait_event(min(left, 0.5))
            if ev is None:
                continue
            if ev.get("type") == "gdb-exited":
                raise GdbDied("gdb-multiarch exited unexpectedly")
            if ev.get("message") == "stopped":
                return ev.get("payload") or {}

    def drain_events(self):
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def cont(self):
        self.drain_events()
        self.mi("-exec-continue")

    def interrupt(self):
        self.mi("-exec-interrupt")

    def close(self, detach=False):
        """End gdb. detach=True leaves a remote target running (attach mode)."""
        if detach and self.proc.poll() is None:
            try:
                self.mi("-exec-interrupt", timeout=3)
                self.wait_stopped(3)
            except GdbkdError:
                pass
            try:
                self.mi("-target-detach", timeout=5)
            except GdbkdError:
                pass
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(b"-gdb-exit\n")
                self.proc.stdin.flush()
                self.proc.wait(1 if not detach else 3)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)
        if self.log:
            self.log.close()
            self.log = None
