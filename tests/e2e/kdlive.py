"""A small live-guest harness for the kd command tests: QEMU + serial shell + QMP + gdb batch.

Boots the Debian 6.1 guest (KASLR on unless asked otherwise) with a gdbstub on
127.0.0.1, talks to its shell over a unix-socket serial line, and runs lists of
gdb commands in `gdb-multiarch -batch` sessions that attach, relocate the
vmlinux by the KASLR offset (``$VBAR - &vectors``), source gdb_scripts/kd.py,
run the commands through a small Python driver (capturing output and errors
per command) and detach, leaving the guest running.
"""

import json
import os
import subprocess
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Guest", "boot_guest"]

_DRIVER = r"""
import gdb, json, os
spec = json.load(open(SPEC))
res = []
res.append({"cmd": "<source>", "out": gdb.execute(f"source {spec['kd_py']}", to_string=True), "err": None})
if spec["kaslr"]:
    # gdbkd's own KASLR finder (KPTI-safe: a CPU whose $VBAR - &vectors is 2 MiB aligned)
    off = json.loads(gdb.execute("kd symbols --no-modules --json", to_string=True))["kaslr_offset"]
    res.append({"cmd": "<kaslr>", "out": off, "err": None})
for c in spec["commands"]:
    if c.startswith("!touch "):
        open(c[7:], "w").close()
        continue
    try:
        out = gdb.execute(c, to_string=True)
        res.append({"cmd": c, "out": out, "err": None})
    except gdb.error as e:
        res.append({"cmd": c, "out": "", "err": str(e)})
    except Exception as e:
        res.append({"cmd": c, "out": "", "err": "PYTHON " + type(e).__name__ + ": " + str(e)})
json.dump(res, open(spec["out"], "w"))
"""




class Guest:
    """A 6.1 guest for driving batch gdb sessions by hand: gdbkd's own Machine (loopback
    gdbstub, serial and QMP on unix sockets) plus shell and gdb helpers."""

    def __init__(self, kernel, initrd, workdir, kaslr=True, memory="1G", smp=2, shared_ram=False,
                 extra_args=()):
        self.kernel = kernel
        self.extra_args = list(extra_args)   # more QEMU arguments (e.g. a disk)
        self.shared_ram = shared_ram       # QEMU's RAM as a memfd (gdbkd/dump/guestram.py)
        self.initrd = Path(initrd)
        self.dir = Path(workdir)
        self.kaslr = kaslr
        self.memory = memory
        self.smp = smp
        self.m = None

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout=180):
        from gdbkd.qemu.machine import Machine
        from gdbkd.qemu.profiles import load_profile
        profile = load_profile("debian-6.1")
        profile.qemu = dict(profile.qemu, smp=self.smp)
        self.m = Machine(profile, self.kernel, self.initrd, nokaslr=not self.kaslr, memory=self.memory,
                         shared_ram=self.shared_ram, extra_args=self.extra_args)
        self.m.start()
        self.port = self.m.gdb_port
        self.qmp_path = self.m.qmp_path
        self.sock = self.m.console.sock
        self.wait_for(b"GDBKD-READY", timeout=timeout)
        self.wait_for(b"# ", timeout=60)

    def stop(self):
        if self.m is not None:
            self.m.stop()

    # -- serial shell ------------------------------------------------------
    def wait_for(self, pattern: bytes, timeout=120, start=0):
        """Offset of ``pattern`` in the console output after ``start``."""
        con = self.m.console
        con.wait_for(pattern.decode(), timeout, start)
        with con.cond:
            i = con.buf.find(pattern, start)
            if i < 0:
                raise TimeoutError(f"{pattern!r} not seen on the serial console; "
                                   f"tail: {bytes(con.buf[-800:])!r}")
            return i

    def sh(self, cmd: str, timeout=120) -> str:
        """Run a shell command on the guest console; return its output (between markers)."""
        tag = f"{time.time_ns() % 10**9:09d}"
        start = self.m.console.mark()
        # markers are split with '' so that the echoed command line never matches them
        line = f"echo KD-B''EGIN-{tag}; {cmd}; echo KD-E''ND-{tag}\n"
        self.sock.sendall(line.encode())
        end = self.wait_for(f"KD-END-{tag}".encode(), timeout, start)
        begin = self.wait_for(f"KD-BEGIN-{tag}".encode(), 1, start)
        with self.m.console.cond:
            text = bytes(self.m.console.buf[begin:end]).decode("utf-8", "replace")
        return text[text.find("\n") + 1:].replace("\r", "")

    # -- QMP -----------------------------------------------------------------
    def qmp(self, command, **arguments):
        from gdbkd.qemu.qmp import Qmp
        q = Qmp(self.qmp_path)
        try:
            return q.execute(command, **arguments)
        finally:
            q.close()

    # -- gdb -----------------------------------------------------------------
    def gdb(self, commands, timeout=180, background=False):
        """Run gdb commands in one batch session; returns [{"cmd","out","err"}] (or the
        Popen and a collector function when ``background``)."""
        tmp = Path(tempfile.mkdtemp(dir=self.dir))
        spec = {"kaslr": self.kaslr, "vmlinux": str(self.kernel.vmlinux),
                "kd_py": str(ROOT / "gdb_scripts" / "kd.py"), "commands": list(commands),
                "out": str(tmp / "out.json")}
        (tmp / "spec.json").write_text(json.dumps(spec))
        (tmp / "driver.py").write_text(f"SPEC = {str(tmp / 'spec.json')!r}\n" + _DRIVER)
        argv = ["gdb-multiarch", "-nx", "-batch", "-iex", "set auto-load no",
                "-iex", "set debuginfod enabled off", "-ex", "set pagination off",
                "-ex", f"file {self.kernel.vmlinux}",
                "-ex", f"target remote 127.0.0.1:{self.port}",
                "-ex", f"source {tmp / 'driver.py'}"]
        env = dict(os.environ, GDBKD_SITE=sysconfig.get_paths()["purelib"], GDBKD_PATH=str(ROOT))
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, env=env)

        def collect():
            out, err = proc.communicate(timeout=timeout)
            path = Path(spec["out"])
            if not path.exists():
                raise RuntimeError(f"gdb driver produced no result (rc {proc.returncode}):\n"
                                   f"{err[-3000:]}\n{out[-2000:]}")
            return json.loads(path.read_text())
        if background:
            return proc, collect
        return collect()

    def kd(self, *commands, **kw):
        """Run kd commands; returns their outputs, raising if any command errored."""
        res = [r for r in self.gdb(commands, **kw) if not r["cmd"].startswith("<")]
        for r in res:
            if r["err"]:
                raise AssertionError(f"{r['cmd']!r} failed: {r['err']}")
        return [r["out"] for r in res]

    def kd_json(self, *commands, **kw):
        return [json.loads(o) for o in self.kd(*[c + " --json" for c in commands], **kw)]


def boot_guest(kernel, workdir, files=None, rc="", **kw) -> Guest:
    """A started 6.1 test guest with FILES ({guest path: host path}) in its initramfs and
    RC run by /init, plus a known sleeping process: ``guest.sleeper`` is its pid."""
    import re
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.qemu.profiles import load_profile
    base = ensure_base_initramfs(kernel, load_profile("debian-6.1").guest["boot_modules"])
    initrd = write_overlay(base, dict(files or {}), Path(workdir) / "initrd.img", rc=rc)
    g = Guest(kernel, initrd, workdir, **kw)
    try:
        g.start()
        out = g.sh("sh -c 'exec sleep 999' & echo SLEEPER=$!")
        g.sleeper = int(re.search(r"SLEEPER=(\d+)", out).group(1))
    except BaseException:
        g.stop()
        raise
    return g
