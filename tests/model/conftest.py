"""The model tier runs on recorded memory alone: no dump file, no vmlinux, no gdb, no QEMU,
and an empty artifact cache (GDBKD_CACHE points at a new empty directory for the session,
and nothing may be written into it)."""

import os
import tempfile

import pytest


@pytest.fixture(autouse=True, scope="session")
def _empty_cache():
    old = os.environ.get("GDBKD_CACHE")
    with tempfile.TemporaryDirectory(prefix="gdbkd-model-cache-") as d:
        os.environ["GDBKD_CACHE"] = d
        try:
            yield d
            assert os.listdir(d) == [], f"the model tier wrote into the cache: {os.listdir(d)}"
        finally:
            if old is None:
                os.environ.pop("GDBKD_CACHE", None)
            else:
                os.environ["GDBKD_CACHE"] = old
