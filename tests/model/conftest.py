"""The model tier runs on recorded memory alone: no dump file, no vmlinux, no gdb, no QEMU,
and an empty artifact cache. For the tier's duration GDBKD_CACHE points at a new empty
directory (nothing may be written into it), PATH at an empty one (no gdb-multiarch or
qemu-system-aarch64 can be started), and ``import gdb`` fails."""

import os
import sys
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="package")
def _nothing_but_recorded_memory():
    saved = {k: os.environ.get(k) for k in ("GDBKD_CACHE", "PATH")}
    had_gdb = "gdb" in sys.modules
    gdb_mod = sys.modules.get("gdb")
    with tempfile.TemporaryDirectory(prefix="gdbkd-model-") as d:
        cache, path = os.path.join(d, "cache"), os.path.join(d, "bin")
        os.mkdir(cache)
        os.mkdir(path)
        os.environ.update(GDBKD_CACHE=cache, PATH=path)
        sys.modules["gdb"] = None            # `import gdb` raises ImportError
        try:
            yield
            assert os.listdir(cache) == [], f"the model tier wrote into the cache: {os.listdir(cache)}"
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if had_gdb:
                sys.modules["gdb"] = gdb_mod
            else:
                del sys.modules["gdb"]
