"""The slow tier's fuzz run: every parser and the server's packet handling with 100,000
inputs each (the default tier runs the same properties with a small budget)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_fuzz_100k_inputs_per_property():
    r = subprocess.run([sys.executable, "-m", "pytest", "-m", "fuzz", "-q", "-p", "no:cacheprovider",
                        str(HERE)], capture_output=True, text=True, timeout=3 * 3600,
                       env=dict(os.environ, GDBKD_FUZZ_EXAMPLES="100000"), cwd=HERE.parents[1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
