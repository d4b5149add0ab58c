"""The lab spine end to end: real Debian 6.1 arm64 kernel in QEMU, real gdb-multiarch."""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import GDBKD, ROOT, gdbkd

pytestmark = pytest.mark.e2e


def _report(r):
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _funcs(rep):
    return [f["function"] for f in rep["report"]["backtrace"]]


def test_sysrq_crash_caught_kaslr(kernel61, no_leftover_qemu):
    r = gdbkd("run", "--batch", "--json", "--exec", "echo c > /proc/sysrq-trigger",
              "-ex", "kd symbols --json --no-modules")
    rep = _report(r)
    assert rep["report"]["trap"]["trap"] == "panic"
    assert "sysrq triggered crash" in rep["report"]["trap"]["message"]
    assert "sysrq_handle_crash" in _funcs(rep)
    sym = json.loads(rep["ex"][0]["output"])
    assert int(sym["kaslr_offset"], 16) != 0          # KASLR on: the offset was found and applied
    assert "Kernel Offset" not in r.stderr


def _write_module(d: Path):
    """A module whose init calls a uniquely named function that dereferences NULL."""
    tag = f"{random.randrange(1 << 32):08x}"
    fn = f"gdbkd_t_{tag}_deref"
    src = f"""#include <linux/module.h>
#include <linux/init.h>
struct gdbkd_t_obj {{ int pad; int value; }};
static struct gdbkd_t_obj *gdbkd_t_ptr;
int gdbkd_t_{tag}_marker = 0x5eed;
noinline int {fn}(struct gdbkd_t_obj *o);
noinline int {fn}(struct gdbkd_t_obj *o)
{{
\treturn o->value + 1;
}}
static int __init gdbkd_t_init(void)
{{
\tpr_info("gdbkd test module %d\\n", {fn}(gdbkd_t_ptr));
\treturn 0;
}}
module_init(gdbkd_t_init);
MODULE_LICENSE("GPL");
"""
    (d / f"t{tag}.c").write_text(src)
    (d / "Kbuild").write_text(f"obj-m := t{tag}.o\n")
    line = src.splitlines().index("\treturn o->value + 1;") + 1
    return tag, fn, line


@pytest.mark.parametrize("kaslr", [True, False], ids=["kaslr", "nokaslr"])
def test_module_null_deref_caught_with_source_line(tmp_path, kernel61, no_leftover_qemu, kaslr):
    tag, fn, line = _write_module(tmp_path)
    args = ["run", "--batch", "--json", "--module", str(tmp_path),
            "--exec", f"insmod /lib/modules/gdbkd/t{tag}.ko",
            "-ex", f"p/x gdbkd_t_{tag}_marker", "-ex", "kd symbols --json --no-modules"]
    if not kaslr:
        args.append("--nokaslr")
    rep = _report(gdbkd(*args))
    t = rep["report"]["trap"]
    assert t["trap"] == "die"
    assert t["fault_function"].startswith(fn + "+")
    bt = rep["report"]["backtrace"]
    hit = [f for f in bt if f["function"] == fn]
    assert hit, _funcs(rep)
    assert hit[0]["line"] == line and hit[0]["file"].endswith(f"t{tag}.c")
    # the frames below the exception entry come from the unwinder through pt_regs
    ex = [i for i, f in enumerate(bt) if f["exception"]]
    assert ex and ex[0] < bt.index(hit[0])
    # the module (inserted after attach) got symbols: its global reads its value
    assert "0x5eed" in rep["ex"][0]["output"]
    off = int(json.loads(rep["ex"][1]["output"])["kaslr_offset"], 16)
    assert (off != 0) == kaslr


def test_module_loaded_before_attach_gets_symbols(tmp_path, kernel61, no_leftover_qemu):
    tag, fn, line = _write_module(tmp_path)
    # a module that does not crash: its init only runs when we call it... so load the
    # crashing one after attach and a harmless marker module before attach
    m2 = tmp_path / "early"
    m2.mkdir()
    (m2 / "early.c").write_text(f"""#include <linux/module.h>
int gdbkd_early_{tag} = 0x1234;
static int __init e_init(void) {{ return 0; }}
module_init(e_init);
MODULE_LICENSE("GPL");
""")
    (m2 / "Kbuild").write_text("obj-m := early.o\n")
    rep = _report(gdbkd("run", "--batch", "--json", "--module", str(m2),
                        "--boot-exec", "insmod /lib/modules/gdbkd/early.ko",
                        "--exec", "echo c > /proc/sysrq-trigger",
                        "-ex", f"p/x gdbkd_early_{tag}"))
    assert "0x1234" in rep["ex"][0]["output"]


def test_bad_input_one_line_errors(tmp_path, kernel61):
    r = gdbkd("run", "no-such-profile", "--batch")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "unknown profile 'no-such-profile'" in r.stderr
    (tmp_path / "broken.c").write_text("int this is not C;\n")
    (tmp_path / "Kbuild").write_text("obj-m := broken.o\n")
    r = gdbkd("run", "--batch", "--module", str(tmp_path))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "does not build" in r.stderr and "broken.c" in r.stderr and "error" in r.stderr
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = gdbkd("run", "--batch", "--gdb-port", str(port))
    finally:
        s.close()
    assert r.returncode != 0 and "Traceback" not in r.stderr and f"port {port}" in r.stderr


def _start_qemu(kernel, port, tmp_path):
    from gdbkd.artifacts.initramfs import ensure_base_initramfs
    base = ensure_base_initramfs(kernel, ["qemu_fw_cfg"])
    log = open(tmp_path / "serial.log", "wb")
    p = subprocess.Popen(["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57", "-smp", "2", "-m", "1G",
                          "-nic", "none", "-display", "none", "-monitor", "none", "-no-reboot",
                          "-kernel", kernel.image, "-initrd", str(base), "-append", "console=ttyAMA0",
                          "-serial", "stdio", "-gdb", f"tcp:127.0.0.1:{port}"],
                         stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(300):
        if b"GDBKD-READY" in (tmp_path / "serial.log").read_bytes():
            break
        time.sleep(0.1)
    return p


def test_attach_detects_wrong_vmlinux_and_works_with_right_one(tmp_path, kernel61):
    from gdbkd.qemu.machine import free_port
    port = free_port()
    q = _start_qemu(kernel61, port, tmp_path)
    try:
        # a vmlinux whose banner differs from the running kernel's
        bad = tmp_path / "vmlinux-other"
        shutil.copyfile(kernel61.vmlinux, bad)
        from elftools.elf.elffile import ELFFile
        with open(kernel61.vmlinux, "rb") as f:
            elf = ELFFile(f)
            addr = elf.get_section_by_name(".symtab").get_symbol_by_name("linux_banner")[0]["st_value"]
            sec = next(s for s in elf.iter_sections()
                       if s["sh_addr"] <= addr < s["sh_addr"] + s["sh_size"] and s["sh_type"] != "SHT_NOBITS")
            i = sec["sh_offset"] + addr - sec["sh_addr"]
        with open(bad, "r+b") as f:
            f.seek(i)
            assert f.read(14) == b"Linux version "
            f.write(b"9.9")
        r = gdbkd("attach", f"127.0.0.1:{port}", "--vmlinux", str(bad), "--batch", "--timeout", "5")
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert "does not match the running kernel" in r.stderr
        # the right vmlinux: attach, crash the guest, get the report
        proc = subprocess.Popen([*GDBKD, "attach", f"127.0.0.1:{port}", "--vmlinux", kernel61.vmlinux,
                                 "--batch", "--json", "--timeout", "60"], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(6)
        q.stdin.write(b"echo c > /proc/sysrq-trigger\n")
        q.stdin.flush()
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        rep = json.loads(out.strip().splitlines()[-1])
        assert "sysrq_handle_crash" in [f["function"] for f in rep["report"]["backtrace"]]
    finally:
        q.kill()
        q.wait()


def _listening_sockets(pid):
    """(tcp (addr, port) list, unix paths) that process pid listens on."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            t = os.readlink(fd)
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", t)
        if m:
            inodes.add(m.group(1))
    tcp = []
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(f).read_text().splitlines()[1:]:
            p = line.split()
            if p[3] == "0A" and p[9] in inodes:
                addr, port = p[1].split(":")
                tcp.append((addr, int(port, 16)))
    unix = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        p = line.split()
        if len(p) >= 8 and p[6] in inodes and p[3] == "00010000":
            unix.append(p[7])
    return tcp, unix


def _wait_child(pattern, parent, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent and cmd.startswith(pattern):
                return int(d.name)
        time.sleep(0.1)
    raise AssertionError(f"no child {pattern!r} of {parent}")


def test_loopback_only_and_gdb_death_stops_qemu(no_leftover_qemu):
    proc = subprocess.Popen([*GDBKD, "run", "--batch", "--timeout", "120"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        qpid = _wait_child(b"qemu-system-aarch64", proc.pid)
        gpid = _wait_child(b"gdb-multiarch", proc.pid)
        time.sleep(1.0)
        tcp, unix = _listening_sockets(qpid)
        assert tcp, "the gdbstub should listen on TCP"
        for addr, port in tcp:
            assert addr in ("0100007F", "00000000000000000000000001000000"), (addr, port)
        assert unix and all(os.stat(os.path.dirname(u)).st_mode & 0o077 == 0 for u in unix)
        os.kill(gpid, signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "gdb-multiarch exited unexpectedly" in err and "QEMU stopped" in err
    assert "Traceback" not in err
    time.sleep(0.5)
    # this run's QEMU is gone (other gdbkd runs on the machine may start QEMUs meanwhile)
    assert not Path(f"/proc/{qpid}").exists() or b"zombie" in Path(f"/proc/{qpid}/status").read_bytes().lower()


def test_ctrl_c_stops_everything(no_leftover_qemu):
    proc = subprocess.Popen([*GDBKD, "run", "--batch", "--timeout", "120"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_child(b"gdb-multiarch", proc.pid)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err


def test_crash_not_caught_times_out(no_leftover_qemu):
    r = gdbkd("run", "--batch", "--timeout", "3", "--exec", "echo no crash here")
    assert r.returncode == 1 and "no crash within 3 s" in r.stderr and "Traceback" not in r.stderr


def test_pointer_auth_return_addresses_are_stripped(kernel61, no_leftover_qemu):
    """-cpu max with pauth: gdb 13 on QEMU 7.2 cannot strip PAC signatures (its own bt shows
    garbage after the first caller); the report and kd bt must not."""
    r = gdbkd("run", "--batch", "--json", "--cpu", "max,pauth-impdef=on",
              "--exec", "echo c > /proc/sysrq-trigger", "-ex", "kd bt --json")
    rep = _report(r)
    report_funcs = _funcs(rep)
    bt = json.loads(rep["ex"][0]["output"])
    bt = bt[0] if isinstance(bt, list) else bt
    kd_funcs = [f["function"] for f in bt["frames"]]
    for funcs in (report_funcs, kd_funcs):
        i = funcs.index("sysrq_handle_crash")
        assert funcs[i + 1] == "__handle_sysrq" and "ksys_write" in funcs, funcs
    assert all(int(f["pc"], 16) >> 48 == 0xFFFF for f in bt["frames"] if f.get("stack") == "task")


def test_qemu_death_ends_session_cleanly(no_leftover_qemu):
    proc = subprocess.Popen([*GDBKD, "run", "--batch", "--timeout", "120"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        qpid = _wait_child(b"qemu-system-aarch64", proc.pid)
        gpid = _wait_child(b"gdb-multiarch", proc.pid)
        seen = ""
        while "gdb attached" not in seen:          # the guest runs under gdb now
            line = proc.stderr.readline()
            assert line, seen
            seen += line
        time.sleep(0.5)
        os.kill(qpid, signal.SIGKILL)
        out, err = proc.communicate(timeout=180)
        err = seen + err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "Traceback" not in err
    assert "QEMU exited" in err or "the guest exited" in err, err
    time.sleep(0.5)
    assert not Path(f"/proc/{gpid}").exists() or b"zombie" in Path(f"/proc/{gpid}/status").read_bytes().lower()
