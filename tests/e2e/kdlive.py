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
import socket
import subprocess
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["Guest", "free_port"]

_DRIVER = r"""
import gdb, json, os
spec = json.load(open(SPEC))
res = []
if spec["kaslr"]:
    # VBAR_EL1 is `vectors` only on a CPU inside the kernel: under KPTI a CPU in user
    # mode (or in the trampoline) has the trampoline alias there. KASLR offsets are
    # multiples of 2 MiB (the image alignment), which the alias is not.
    vectors = int(gdb.parse_and_eval("(unsigned long)&vectors"))
    sel = gdb.selected_thread()
    off = None
    for th in gdb.selected_inferior().threads():
        th.switch()
        cand = (int(gdb.parse_and_eval("$VBAR")) - vectors) & ((1 << 64) - 1)
        if cand % (2 << 20) == 0:
            off = cand
            break
    sel.switch()
    if off is None:
        raise gdb.GdbError("no CPU is in the kernel: cannot find the KASLR offset")
    if off:
        gdb.execute(f"symbol-file -o {off:#x} {spec['vmlinux']}", to_string=True)
    res.append({"cmd": "<kaslr>", "out": hex(off), "err": None})
res.append({"cmd": "<source>", "out": gdb.execute(f"source {spec['kd_py']}", to_string=True), "err": None})
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


from gdbkd.qemu.machine import free_port  # noqa: E402  (one implementation)


class Guest:
    def __init__(self, kernel, initrd, workdir, kaslr=True, memory="1G", smp=2):
        self.kernel = kernel
        self.initrd = Path(initrd)
        self.dir = Path(workdir)
        self.kaslr = kaslr
        self.memory = memory
        self.smp = smp
        self.port = free_port()
        self.proc = None
        self.sock = None
        self.buf = b""
        self._lock = threading.Lock()
        self._reader = None
        self._stop = False

    # -- lifecycle ---------------------------------------------------------
    def start(self, timeout=60):
        serial = self.dir / "serial.sock"
        self.qmp_path = self.dir / "qmp.sock"
        append = "console=ttyAMA0" + ("" if self.kaslr else " nokaslr")
        argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-smp", str(self.smp),
                "-m", self.memory, "-nic", "none", "-display", "none", "-monitor", "none",
                "-kernel", str(self.kernel.image), "-initrd", str(self.initrd),
                "-append", append, "-no-reboot", "-device", "vmcoreinfo",
                "-chardev", f"socket,id=s0,path={serial},server=on,wait=off",
                "-serial", "chardev:s0",
                "-gdb", f"tcp:127.0.0.1:{self.port}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "qemu.err", "wb"))
        deadline = time.time() + timeout
        while not serial.exists():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("QEMU did not start: " + (self.dir / "qemu.err").read_text()[-500:])
            time.sleep(0.05)
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(serial))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(b"GDBKD-READY", timeout=timeout)
        self.wait_for(b"# ", timeout=10)

    def stop(self):
        self._stop = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.sock is not None:
            self.sock.close()

    def _read(self):
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.buf += data

    # -- serial shell ------------------------------------------------------
    def wait_for(self, pattern: bytes, timeout=30, start=0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._lock:
                i = self.buf.find(pattern, start)
            if i >= 0:
                return i
            time.sleep(0.05)
        raise TimeoutError(f"{pattern!r} not seen on the serial console; tail: {self.buf[-800:]!r}")

    def sh(self, cmd: str, timeout=30) -> str:
        """Run a shell command on the guest console; return its output (between markers)."""
        tag = f"{time.time_ns() % 10**9:09d}"
        with self._lock:
            start = len(self.buf)
        # markers are split with '' so that the echoed command line never matches them
        line = f"echo KD-B''EGIN-{tag}; {cmd}; echo KD-E''ND-{tag}\n"
        self.sock.sendall(line.encode())
        end = self.wait_for(f"KD-END-{tag}".encode(), timeout, start)
        begin = self.wait_for(f"KD-BEGIN-{tag}".encode(), 1, start)
        with self._lock:
            text = self.buf[begin:end].decode("utf-8", "replace")
        return text[text.find("\n") + 1:].replace("\r", "")

    # -- QMP -----------------------------------------------------------------
    def qmp(self, command, **arguments):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(self.qmp_path))
        f = s.makefile("rw")
        f.readline()

        def call(c, a=None):
            f.write(json.dumps({"execute": c, **({"arguments": a} if a else {})}) + "\n")
            f.flush()
            while True:
                r = json.loads(f.readline())
                if "return" in r or "error" in r:
                    return r
        call("qmp_capabilities")
        r = call(command, arguments or None)
        s.close()
        if "error" in r:
            raise RuntimeError(f"QMP {command}: {r['error']}")
        return r["return"]

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
