"""The interactive path, driven as a person would through a terminal (tmux)."""

import os
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (install.sh installs it)")]


class Pane:
    def __init__(self, cmd, tmp_path):
        self.name = "gdbkd-" + uuid.uuid4().hex[:8]
        self.done = tmp_path / "exit"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "200", "-y", "50",
                        f"cd {ROOT} && {cmd}; echo $? > {self.done}"], check=True)

    def screen(self):
        return subprocess.run(["tmux", "capture-pane", "-p", "-S", "-200", "-t", self.name],
                              capture_output=True, text=True).stdout

    def _poll(self, ready, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = ready()
            if v is not None:
                return v
            time.sleep(0.2)
        raise AssertionError(f"{what}:\n{self.screen()[-2000:]}")

    def wait(self, text, timeout=120):
        return self._poll(lambda: (lambda s: s if text in s else None)(self.screen()), timeout,
                          f"{text!r} not on screen")

    def keys(self, *keys):
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def exit_code(self, timeout=60):
        def done():
            t = self.done.read_text().strip() if self.done.exists() else ""
            return int(t) if t else None
        return self._poll(done, timeout, "gdbkd did not exit")

    def close(self):
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def test_demo_hands_over_gdb_console(tmp_path, kernel61, no_leftover_qemu):
    p = Pane(".venv/bin/gdbkd demo", tmp_path)
    try:
        p.wait("sysrq_handle_crash")
        p.wait("you are in gdb on the stopped guest")
        p.keys("kd ps -S", "Enter")
        p.wait("RU:", 30)
        p.keys("info threads", "Enter")
        p.wait("on cpu 1", 30)        # every task a thread (gdbkd proxy): CPU 1's task
        p.keys("quit", "Enter")
        assert p.exit_code() == 0
    finally:
        p.close()


def test_serial_console_is_the_terminal_and_ctrl_bracket_breaks_in(tmp_path, kernel61, no_leftover_qemu):
    p = Pane(".venv/bin/gdbkd run", tmp_path)
    try:
        p.wait("gdb attached")
        time.sleep(1.0)
        p.keys("echo typed-into-the-guest-$((6*7))", "Enter")
        p.wait("typed-into-the-guest-42", 30)      # the guest's shell evaluated what we typed
        p.keys("C-]")
        p.wait("interrupted by the user (Ctrl-])", 30)
        p.wait("you are in gdb", 30)
        p.keys("kd sys", "Enter")
        p.wait("RELEASE", 30)
        p.keys("quit", "Enter")
        assert p.exit_code() == 0
    finally:
        p.close()


def _server_children(marker):
    """Live processes whose command line contains MARKER (the forked dump server keeps
    the frontend's `gdbkd core …` command line)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{d}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if b"python" in cmd.split(b"\0")[0] and marker.encode() in cmd and state != "Z":
                out.append(int(d))
    return out


def test_core_prompt_threads_ctrl_c_and_quit(tmp_path):
    """`gdbkd core` at a real terminal: the report, then gdb's prompt on the dump served
    by the forked server; Ctrl-C reaches gdb only; after quit no server is left and its
    socket directory is gone."""
    from testdumps import ensure_test_dumps
    td = ensure_test_dumps()
    link = tmp_path / f"dump-{uuid.uuid4().hex[:6]}.elf"      # a unique name to find the server by
    link.symlink_to(td.elf)
    before = set(os.listdir("/tmp"))
    p = Pane(f".venv/bin/gdbkd core {link} {td.vmlinux}", tmp_path)
    try:
        p.wait("BACKTRACE:", 120)
        p.wait("(gdb)", 60)
        servers = _server_children(link.name)
        assert len(servers) == 1, servers          # gdb exec'd in place of the frontend + the server
        # the frontend's pid names its temporary files (the server is the frontend or its
        # child): other gdbkd core sessions running meanwhile on this machine are not counted
        ppid = int(open(f"/proc/{servers[0]}/stat").read().rsplit(")", 1)[1].split()[1])
        mine = tuple(f"gdbkd-core-{kind}{pid}-" for pid in (servers[0], ppid) for kind in ("", "report-"))
        assert [d for d in set(os.listdir("/tmp")) - before if d.startswith(mine)]   # seen
        p.keys("info threads", "Enter")
        p.wait("busybox-sleeper", 30)
        p.keys("C-c")
        p.keys("kd bt 1", "Enter")
        p.wait("sysrq_handle_crash", 30)
        assert _server_children(link.name) == servers     # Ctrl-C did not kill the server
        p.keys("quit", "Enter")
        assert p.exit_code() == 0
        deadline = time.time() + 10
        while _server_children(link.name) and time.time() < deadline:
            time.sleep(0.1)
        assert _server_children(link.name) == []
        assert not [d for d in set(os.listdir("/tmp")) - before if d.startswith(mine)]
    finally:
        p.close()


def test_closing_the_terminal_at_the_gdb_prompt_stops_everything(tmp_path, kernel61, no_leftover_qemu):
    """The terminal goes away (SIGHUP) while the user is at gdb's prompt: gdbkd ends QEMU,
    gdb and the proxy instead of taking the hangup for a Ctrl-C."""
    p = Pane(".venv/bin/gdbkd demo", tmp_path)
    try:
        p.wait("you are in gdb on the stopped guest")
        pids = subprocess.run(["tmux", "list-panes", "-t", p.name, "-F", "#{pane_pid}"],
                              capture_output=True, text=True).stdout.split()
        shell = int(pids[0])
        kids = [int(x) for x in subprocess.run(["pgrep", "-P", str(shell)], capture_output=True,
                                               text=True).stdout.split()]
    finally:
        p.close()
    assert kids
    for _ in range(100):
        if not any(os.path.exists(f"/proc/{k}") and b"zombie" not in
                   open(f"/proc/{k}/status", "rb").read().lower() for k in kids):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"gdbkd {kids} still running after its terminal closed")


def test_core_prompt_then_every_thread(tmp_path, kernel61):
    """gdbkd core's prompt comes before gdb has every task as a thread (its event loop
    fetches them once the prompt is up: session._when_to_list), and the first commands
    a person types see them all: `thread N` of the last task, `info threads`."""
    from testdumps import ensure_test_dumps
    from gdbkd.target import open_dump
    td = ensure_test_dumps()
    with open_dump(td.elf, td.vmlinux) as d:
        n = len(d.threads())
        last_tid = d.threads()[-1].tid
    p = Pane(f".venv/bin/gdbkd core {td.elf} {kernel61.vmlinux} -s", tmp_path)
    try:
        p.wait("(gdb)")
        p.keys(f"thread {n}", "Enter")
        p.wait(f"[Switching to thread {n} (Thread {last_tid})", 30)
        p.keys("info threads", "Enter")
        p.wait(f'Thread {last_tid} "', 60)
        p.keys("quit", "Enter")
        assert p.exit_code() == 0
    finally:
        p.close()
