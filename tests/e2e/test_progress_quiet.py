"""No progress bar under --batch/--json even on a terminal: gdbkd run --batch --json on a
pty writes its dump (QEMU's detached dump-guest-memory, polled with query-dump for the
bar) and prints the JSON report with no bar drawn."""

import json

import pytest

from conftest import GDBKD, on_pty

pytestmark = pytest.mark.e2e


def test_batch_json_on_a_terminal_draws_no_bar(tmp_path, kernel61, no_leftover_qemu):
    dump = tmp_path / "vmcore"
    rc, text = on_pty([*GDBKD, "run", "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
                       "--dump-on-crash", str(dump)])
    assert rc == 0, text[-3000:]
    assert "[#" not in text and "[-" not in text and "%" not in text.split("{", 1)[0], text[:3000]
    report = json.loads(next(l for l in text.splitlines() if l.startswith("{")))
    assert report["dump"] == str(dump) and dump.stat().st_size > 1 << 20
    assert "sysrq_handle_crash" in json.dumps(report["report"])
