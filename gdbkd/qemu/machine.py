"""QEMU arm64 guest lifecycle: argv from a profile, start, serial console, stop.

The gdbstub listens on 127.0.0.1 only (a free port, or the one asked for) and
QMP and the serial console on unix sockets in a private 0700 directory: never
on other interfaces. The serial chardev waits for gdbkd to connect before the
guest starts, so no boot output is lost; everything is also logged to
``serial.log`` in the run directory.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from ..errors import GdbkdError
from ..procutil import die_with_parent

__all__ = ["Machine", "free_port", "check_port_free", "Console"]

QEMU = "qemu-system-aarch64"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check_port_free(port: int):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        raise GdbkdError(f"port {port} on 127.0.0.1 is in use: pick another with --gdb-port")
    finally:
        s.close()


class Console:
    """The guest serial console: a reader thread keeps all output; send() types."""

    def __init__(self, sock, echo=None):
        self.sock = sock
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.echo = echo          # callable(bytes) or None
        self.closed = False
        self.t = threading.Thread(target=self._reader, daemon=True)
        self.t.start()

    def _reader(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            with self.cond:
                if not data:
                    self.closed = True
                    self.cond.notify_all()
                    return
                self.buf += data
                self.cond.notify_all()
            if self.echo:
                try:
                    self.echo(data)
                except OSError:         # the terminal went away: keep reading the console
                    pass

    def text(self, start=0) -> str:
        with self.cond:
            return self.buf[start:].decode("utf-8", "replace")

    def mark(self) -> int:
        with self.cond:
            return len(self.buf)

    def wait_for(self, needle: str, timeout: float, start=0) -> bool:
        return self.wait_for_any([needle], timeout, start) is not None

    def wait_for_any(self, needles, timeout: float, start=0):
        """The first of ``needles`` (in their order) the console shows after ``start``,
        waiting up to ``timeout`` seconds; None if none does."""
        nbs = [n.encode() for n in needles]
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for n, nb in zip(needles, nbs):
                    if nb in self.buf[start:]:
                        return n
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(left)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        try:
            self.sock.sendall(data)
        except OSError:
            pass


def _size_bytes(s: str) -> int:
    """QEMU's -m size ("1G", "512M", "2048") in bytes."""
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s) << 20        # a bare number is MiB


class Machine:
    def __init__(self, profile, kernel, initrd=None, nokaslr=False, gdb_port=None,
                 append_extra="", cpu=None, memory=None, echo=None, extra_args=(), shared_ram=False,
                 smp=None, vmcoreinfo=True):
        self.profile = profile
        # QEMU's vmcoreinfo device: a guest with qemu_fw_cfg hands it its VMCOREINFO, which
        # dump-guest-memory then writes as a note (False: a dump with none, as a QEMU
        # started without it, or a kernel without the driver, gives)
        self.vmcoreinfo = vmcoreinfo
        self.shared_ram = shared_ram     # RAM as a memfd gdbkd's processes can read (guestram.py)
        self.ram_fd = None
        self.kernel = kernel
        self.initrd = initrd
        self.nokaslr = nokaslr
        self.gdb_port = gdb_port
        self.append_extra = append_extra
        self.cpu = cpu
        self.memory = memory
        self.smp = smp             # vCPUs (default from the profile)
        self.echo = echo
        self.extra_args = list(extra_args)   # more QEMU arguments (e.g. a dump disk)
        self.proc = None
        self.dir = None
        self.console = None
        self.keep_dir = False

    def argv(self):
        q = self.profile.qemu
        append = q.get("append", "console=ttyAMA0")
        if self.nokaslr:
            append += " nokaslr"
        if self.append_extra:
            append += " " + self.append_extra
        d = self.dir
        mem = str(self.memory or q.get("memory", "1G"))
        machine = q.get("machine", "virt")
        ram = []
        if self.ram_fd is not None:
            machine += ",memory-backend=gdbkd-ram"
            ram = ["-object", f"memory-backend-file,id=gdbkd-ram,size={mem},"
                              f"mem-path=/proc/self/fd/{self.ram_fd},share=on"]
        argv = [QEMU, "-M", machine, *ram, "-cpu", self.cpu or q.get("cpu", "cortex-a57"),
                "-smp", str(self.smp or q.get("smp", 2)), "-m", mem,
                "-nic", "none", "-display", "none", "-monitor", "none", "-no-reboot",
                "-kernel", self.kernel.image, "-append", append.strip(),
                *(["-device", "vmcoreinfo"] if self.vmcoreinfo else []),
                "-chardev", f"socket,id=ser0,path={d}/serial.sock,server=on,wait=on,logfile={d}/serial.log",
                "-serial", "chardev:ser0",
                "-gdb", f"tcp:127.0.0.1:{self.gdb_port}",
                "-qmp", f"unix:{d}/qmp.sock,server=on,wait=off"]
        if self.initrd:
            argv += ["-initrd", str(self.initrd)]
        argv += [self.profile.expand(a, "qemu.extra") for a in q.get("extra", [])]
        argv += self.extra_args
        return argv

    @property
    def qmp_path(self):
        return f"{self.dir}/qmp.sock"

    def start(self):
        if shutil.which(QEMU) is None:
            raise GdbkdError(f"{QEMU} not found: run ./install.sh (apt: qemu-system-arm)")
        self.dir = tempfile.mkdtemp(prefix="gdbkd-run-")
        os.chmod(self.dir, 0o700)
        if self.gdb_port:
            check_port_free(self.gdb_port)
        else:
            self.gdb_port = free_port()
        log = open(f"{self.dir}/qemu.log", "wb")
        if self.shared_ram and self.ram_fd is None and self.profile.qemu.get("machine", "virt").startswith("virt"):
            # an anonymous memfd: no file anywhere, freed with the last process holding it
            self.ram_fd = os.memfd_create("gdbkd-guest-ram")
            os.ftruncate(self.ram_fd, _size_bytes(str(self.memory or self.profile.qemu.get("memory", "1G"))))
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True, preexec_fn=die_with_parent,
                                     pass_fds=(self.ram_fd,) if self.ram_fd is not None else ())
        log.close()
        sock = None
        deadline = time.monotonic() + 15
        while sock is None:
            if self.proc.poll() is not None:
                raise GdbkdError(self._died_message())
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(f"{self.dir}/serial.sock")
                sock = s
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise GdbkdError("QEMU did not open its serial console within 15 s")
                time.sleep(0.02)
        self.console = Console(sock, echo=self.echo)
        return self

    def _died_message(self):
        try:
            txt = Path(f"{self.dir}/qemu.log").read_text(errors="replace").strip()
        except OSError:
            txt = ""
        if "Address already in use" in txt or "Failed to bind" in txt:
            return f"QEMU could not listen on 127.0.0.1:{self.gdb_port}: port in use"
        last = txt.splitlines()[-1] if txt else f"exit status {self.proc.returncode}"
        return f"QEMU exited: {last}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 15)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, 9)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        if self.console:
            try:
                self.console.sock.close()
            except OSError:
                pass
        if self.dir and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.ram_fd is not None:
            os.close(self.ram_fd)
            self.ram_fd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
