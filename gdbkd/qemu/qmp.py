"""A minimal QMP client over QEMU's unix socket (JSON lines)."""

import json
import socket
import time

from ..errors import GdbkdError

__all__ = ["Qmp"]


class Qmp:
    def __init__(self, path, timeout=10.0):
        self.path = str(path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(self.path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise GdbkdError(f"cannot connect to QMP at {self.path}")
                time.sleep(0.05)
        self.sock.settimeout(None)
        self.f = self.sock.makefile("rwb")
        self._read()                       # greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise GdbkdError("QMP connection closed by QEMU")
            msg = json.loads(line)
            if "event" in msg:
                continue
            return msg

    def execute(self, cmd, **arguments):
        req = {"execute": cmd}
        if arguments:
            req["arguments"] = arguments
        self.f.write(json.dumps(req).encode() + b"\n")
        self.f.flush()
        msg = self._read()
        if "error" in msg:
            raise GdbkdError(f"QMP {cmd}: {msg['error'].get('desc', msg['error'])}")
        return msg.get("return")

    def dump(self, out, fmt="elf", progress=None):
        """dump-guest-memory to ``out`` (absolute path). fmt: elf | kdump-zlib.
        PROGRESS(done, total) is called while QEMU writes (a detached dump polled
        with query-dump)."""
        if progress is None:
            return self.execute("dump-guest-memory", paging=False, protocol=f"file:{out}", format=fmt)
        self.execute("dump-guest-memory", paging=False, protocol=f"file:{out}", format=fmt, detach=True)
        while True:
            st = self.execute("query-dump")
            progress(st.get("completed", 0), st.get("total", 0))
            if st.get("status") == "completed":
                return None
            if st.get("status") != "active":
                raise GdbkdError(f"QMP dump-guest-memory to {out}: {st.get('status', 'failed')}")
            time.sleep(0.2)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
