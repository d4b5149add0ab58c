"""System-state kd commands (files, vm, mount, ...) on a 6.1 guest with state the test made.

One guest (KASLR on) per module. The fixture loads tests/e2e/kdstate_mod (timers,
a wait queue, trees), mounts a tmpfs, starts tests/e2e/kdstate_prog (a file on
that tmpfs open and mapped shared, an anonymous mapping with three touched
pages, a pipe, TCP/UDP/unix sockets) and a writer blocked on the module's
wait queue; a virtio disk (/dev/vda, blk-mq) is read and written with O_DIRECT. Then, with the guest stopped by QMP, it runs every command live,
takes a QMP dump, runs the same commands under `gdbkd core` on the dump, and
asks drgn 0.3.0 about the dump: each test compares the three.
"""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import gdbkd, json_ints
from kdlive import Guest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent


def _build_prog(out: Path) -> Path:
    exe = out / "kdstate_prog"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-static", "-nostdlib", "-ffreestanding",
                    "-fno-stack-protector", "-o", str(exe), str(HERE / "kdstate_prog" / "kdstate_prog.c")],
                   check=True)
    return exe


def _commands(g):
    p, w = g.prog_pid, g.waiter_pid
    a = g.addrs
    return [f"kd files {p}", "kd files 1", f"kd files {w}", f"kd vm {p}", f"kd vm -p {p}",
            "kd mount", "kd mount -n", "kd net", f"kd net -s {p}", "kd irq", "kd irq -s",
            "kd timer", "kd timer -r", f"kd waitq {a['wq']:#x}",
            f"kd tree -t rbtree -o {g.rb_offset} {a['rbroot']:#x}", f"kd tree -t xarray {a['xa']:#x}",
            f"kd tree -t radix {a['xa']:#x}", f"kd tree -t maple {a['mt']:#x}", "kd dev", "kd dev -d"]


def _run_core(dump, vmlinux, cmds):
    ex = []
    for c in cmds:
        ex += ["-ex", "echo @@@\\n", "-ex", c]
    ex += ["-ex", "echo @@@\\n"]
    r = gdbkd("core", str(dump), str(vmlinux), "-s", "--batch", *ex)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Traceback" not in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout.split("@@@\n")[1:-1]


@pytest.fixture(scope="module")
def state(kernel61, tmp_path_factory):
    from gdbkd.artifacts.initramfs import ensure_base_initramfs, write_overlay
    from gdbkd.artifacts.modules import build_module_dir
    from gdbkd.kdump.guest import module_closure
    from gdbkd.qemu.profiles import load_profile
    d = tmp_path_factory.mktemp("kdstate")
    ko = build_module_dir(HERE / "kdstate_mod", kernel61)[0]
    exe = _build_prog(d)
    virtio = [m.stem for m in module_closure(kernel61.modules_dir, ["virtio_mmio", "virtio_blk"])]
    base = ensure_base_initramfs(kernel61, load_profile("debian-6.1").guest["boot_modules"] + virtio)
    initrd = write_overlay(base, {"lib/modules/gdbkd/kdstate.ko": ko, "bin/kdstate_prog": exe},
                           d / "initrd.img", rc="insmod /lib/modules/gdbkd/kdstate.ko\n")
    disk = d / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(8 << 20)
    g = Guest(kernel61, initrd, d, kaslr=True,
              extra_args=["-drive", f"if=none,file={disk},format=raw,id=kdstate-disk",
                          "-device", "virtio-blk-device,drive=kdstate-disk"])
    try:
        g.start()
        g.sh("ip link set lo up; mkdir -p /tmp/kds && mount -t tmpfs -o size=1m kdstmp /tmp/kds")
        out = g.sh("/bin/kdstate_prog & echo PROG=$!; sleep 1")
        g.prog_pid = int(re.search(r"PROG=(\d+)", out).group(1))
        m = re.search(r"KDSTATE-PROG file-map (0x[0-9a-f]+) anon-map (0x[0-9a-f]+)", out)
        assert m, out
        g.file_map, g.anon_map = int(m.group(1), 16), int(m.group(2), 16)
        out = g.sh("sh -c 'echo 1 > /sys/kernel/debug/kdstate/wait' & echo WAITER=$!")
        g.waiter_pid = int(re.search(r"WAITER=(\d+)", out).group(1))
        out = g.sh("dmesg | grep 'kdstate: timer'")
        g.addrs = {k: int(v, 16) for k, v in re.findall(r"(\w+(?:-\w+)?) ([0-9a-f]{16})", out)}
        g.rb_offset = int(re.search(r"rb-offset (\d+)", out).group(1))
        g.proc_devices = g.sh("cat /proc/devices")
        g.sh("dd if=/dev/vda of=/dev/null bs=4096 count=40 iflag=direct; "
             "dd if=/dev/zero of=/dev/vda bs=4096 count=3 oflag=direct")
        g.diskstats = g.sh("cat /proc/diskstats")
        time.sleep(0.5)              # the waiter reaches its sleep
        cmds = _commands(g)
        dump = d / "dump.elf"
        g.qmp("stop")
        try:
            g.qmp("dump-guest-memory", paging=False, protocol=f"file:{dump}", format="elf")
            live = [json_ints(x) for x in g.kd_json(*cmds)]
        finally:
            g.qmp("cont")
        post = [json_ints(json.loads(x)) for x in _run_core(dump, kernel61.vmlinux, [c + " --json" for c in cmds])]
        ref = subprocess.run([sys.executable, str(HERE / "drgn_state_ref.py"), str(dump),
                              str(kernel61.vmlinux), str(g.prog_pid), "1", str(g.waiter_pid), "disks",
                              *(f"{n}={g.addrs[n]:x}" for n in ("wq", "rbroot", "xa", "mt"))],
                             capture_output=True, text=True, timeout=600, cwd=HERE.parents[1])
        assert ref.returncode == 0, ref.stderr[-3000:]
        g.cmds, g.dump = cmds, dump
        g.live = dict(zip(cmds, live))
        g.post = dict(zip(cmds, post))
        g.drgn = json.loads(ref.stdout)
        yield g
    finally:
        g.stop()


def test_live_equals_dump(state):
    for c in state.cmds:
        assert state.live[c] == state.post[c], c


def test_files_match_drgn_and_the_program(state):
    for pid in (state.prog_pid, 1, state.waiter_pid):
        got = {f["fd"]: f["d_path"] for f in state.post[f"kd files {pid}"]["files"]}
        want = {int(fd): p for fd, p in state.drgn["files"][str(pid)].items()}
        assert got == want and got, pid
    prog = {f["fd"]: f for f in state.post[f"kd files {state.prog_pid}"]["files"]}
    assert prog[3]["path"] == "/tmp/kds/data" and prog[3]["type"] == "REG"
    assert prog[4]["type"] == prog[5]["type"] == "FIFO"
    assert prog[4]["path"] == f"pipe:[{prog[4]['ino']}]" and prog[4]["d_path"] == "[pipefs]"
    for fd in (6, 7, 8):
        assert prog[fd]["type"] == "SOCK" and prog[fd]["path"] == f"socket:[{prog[fd]['ino']}]"
    waiter = {f["fd"]: f for f in state.post[f"kd files {state.waiter_pid}"]["files"]}
    assert waiter[1]["path"] == "/sys/kernel/debug/kdstate/wait"


def test_vm_matches_drgn_and_the_program(state):
    vm = state.post[f"kd vm {state.prog_pid}"]
    assert vm["source"] == "mm->mm_mt (maple tree)" and vm["stop"] is None
    assert [v["start"] for v in vm["vmas"]] == state.drgn["vmas"][str(state.prog_pid)]
    by_start = {v["start"]: v for v in vm["vmas"]}
    fm = by_start[state.file_map]
    assert fm["name"] == "/tmp/kds/data" and fm["end"] - fm["start"] == 8192
    assert "SHARED" in fm["flag_names"] and "WRITE" in fm["flag_names"]
    am = by_start[state.anon_map]
    assert am["name"] == "[anon]" and am["end"] - am["start"] == 16 * 4096
    names = {v["name"] for v in vm["vmas"]}
    assert {"/bin/kdstate_prog", "[stack]", "[vdso]", "[vvar]"} <= names
    # -p: the physical page of every virtual page, as drgn's follow_phys
    pages = {p["va"]: p["pa"] for v in state.post[f"kd vm -p {state.prog_pid}"]["vmas"]
             for p in v["pages"] if p["pa"] is not None}
    want = {int(va): pa for va, pa in state.drgn["phys"][str(state.prog_pid)].items()}
    assert pages == want
    touched = [state.anon_map + i * 4096 for i in (0, 5, 9)]
    assert all(va in pages for va in touched)
    assert not any(state.anon_map + i * 4096 in pages for i in (1, 2, 3, 4, 6, 7, 8))


def test_mount_matches_drgn(state):
    m = state.post["kd mount"]
    got = [[r["mount"], r["dirname"], r["type"], r["devname"]] for r in m["mounts"]]
    assert got == state.drgn["mounts"]
    assert ["/tmp/kds", "tmpfs", "kdstmp"] in [g[1:] for g in got]
    ns = state.post["kd mount -n"]["namespaces"]
    init = [n for n in ns if n["ns"] == m["ns"]]
    assert init and 1 in init[0]["pids"] and state.prog_pid in init[0]["pids"]


def test_net_matches_drgn_and_the_program(state):
    ns = state.post["kd net"]["namespaces"]
    init = [n for n in ns if n["init"]][0]
    assert [[d["name"], [a.split("/")[0] for a in d["ipv4"]]] for d in init["devices"]] == \
        state.drgn["netdevs"]
    lo = init["devices"][0]
    assert lo["name"] == "lo" and "UP" in lo["flag_names"] and "LOOPBACK" in lo["flag_names"]
    assert lo["ipv4"] == ["127.0.0.1/8"] and lo["mtu"] == 65536
    socks = {s["fd"]: s for s in state.post[f"kd net -s {state.prog_pid}"]["sockets"]}
    assert sorted(socks) == [6, 7, 8]
    assert (socks[6]["family"], socks[6]["type"], socks[6]["state"], socks[6]["local"]) == \
        ("INET", "STREAM", "LISTEN", "127.0.0.1:4242")
    assert (socks[7]["family"], socks[7]["type"], socks[7]["local"]) == ("INET", "DGRAM", "127.0.0.1:5353")
    assert (socks[8]["family"], socks[8]["type"], socks[8]["state"]) == ("UNIX", "STREAM", "CLOSE")


def test_irq_matches_drgn(state):
    irqs = state.post["kd irq"]["irqs"]
    cpus = state.post["kd irq"]["cpus"]
    got = [[r["irq"], r["desc"], [a["name"] for a in r["actions"] if a["name"]],
            [r["counts"][str(c)] for c in cpus]] for r in irqs]
    assert got == state.drgn["irqs"] and got
    assert any(a["handler_name"] == "arch_timer_handler_virt" for r in irqs for a in r["actions"])
    summary = state.post["kd irq -s"]["irqs"]
    assert summary and all(r["actions"] for r in summary)


def test_timers_match_drgn_and_the_module(state):
    wheel = state.post["kd timer"]
    got = sorted([b["cpu"], t["timer"], t["expires"], t["function"]] for b in wheel["bases"]
                 for t in b["timers"])
    assert got == state.drgn["timers"] and wheel["jiffies"] == state.drgn["jiffies"]
    mine = [t for b in wheel["bases"] for t in b["timers"] if t["timer"] == state.addrs["timer"]]
    assert len(mine) == 1 and mine[0]["function_name"].startswith("kdstate_timer_fn")
    assert 3500 * 250 < mine[0]["delta"] <= 3600 * 250          # an hour ahead, HZ=250
    hr = state.post["kd timer -r"]
    got = sorted([b["cpu"], t["hrtimer"], t["expires"], t["function"]] for b in hr["clock_bases"]
                 for t in b["timers"])
    assert got == state.drgn["hrtimers"] and hr["now_ns"] == state.drgn["now_ns"]
    mine = [t for b in hr["clock_bases"] for t in b["timers"] if t["hrtimer"] == state.addrs["hrtimer"]]
    assert len(mine) == 1 and mine[0]["function_name"].startswith("kdstate_hrtimer_fn")
    assert 3500e9 < mine[0]["delta_ns"] <= 3600e9


def test_waitq_and_trees_match_drgn_and_the_module(state):
    ref = state.drgn["trees"]
    wq = state.post[f"kd waitq {state.addrs['wq']:#x}"]
    assert [[w["entry"], w["private"]] for w in wq["waiters"]] == ref["waitq"]
    assert [w["pid"] for w in wq["waiters"]] == [state.waiter_pid]
    assert wq["waiters"][0]["state"] == "IN" and wq["waiters"][0]["comm"] == "sh"
    rb = state.post[f"kd tree -t rbtree -o {state.rb_offset} {state.addrs['rbroot']:#x}"]
    assert [e["node"] for e in rb["entries"]] == ref["rbtree"]
    # keys 10..50 in order: the nodes of kdstate_nodes[0..4], in array order
    assert [e["entry"] for e in rb["entries"]] == sorted(e["entry"] for e in rb["entries"])
    items = state.addrs["items"]
    for kind in ("xarray", "radix"):
        xa = state.post[f"kd tree -t {kind} {state.addrs['xa']:#x}"]
        assert [[e["index"], e["entry"]] for e in xa["entries"]] == ref["xarray"]
        assert [e["index"] for e in xa["entries"]] == [1, 7, 300, 70000]
        assert [e["entry"] for e in xa["entries"]] == [items + 8 * i for i in range(4)]
    mt = state.post[f"kd tree -t maple {state.addrs['mt']:#x}"]
    assert [[e["first"], e["last"], e["entry"]] for e in mt["entries"]] == ref["maple"]
    assert [(e["first"], e["last"]) for e in mt["entries"]] == [(0x1000, 0x1fff), (0x5000, 0x8fff),
                                                               (0x100000, 0x100000)]


def test_dev_matches_proc_devices(state):
    want = {"char": [], "block": []}
    part = None
    for line in state.proc_devices.splitlines():
        if line.startswith("Character"):
            part = "char"
        elif line.startswith("Block"):
            part = "block"
        elif line.strip() and part:
            major, name = line.split(None, 1)
            want[part].append((int(major), name.strip()))
    dev = state.post["kd dev"]
    for part in ("char", "block"):
        assert sorted((d["major"], d["name"]) for d in dev[part]) == sorted(want[part]) and want[part]
    mem = [d for d in dev["char"] if d["name"] == "mem"][0]
    assert mem["major"] == 1 and mem["ops_name"] == "memory_fops"


def test_dev_disks_match_drgn_and_diskstats(state):
    disks = state.post["kd dev -d"]["disks"]
    want = [[d["gendisk"], d["name"], d["major"], d["first_minor"], d["queue"], d["stats"]["ios"]["read"],
             d["stats"]["ios"]["write"], d["stats"]["sectors"]["read"], d["stats"]["sectors"]["write"]]
            for d in disks]
    assert want == state.drgn["disks"]
    vda = [d for d in disks if d["name"] == "vda"]
    assert len(vda) == 1 and vda[0]["mq"] and vda[0]["in_flight"] is None
    # /proc/diskstats: major minor name, reads completed, merged, sectors read, ms,
    # writes completed, merged, sectors written
    f = [line.split() for line in state.diskstats.splitlines() if line.split()[2:3] == ["vda"]][0]
    st = vda[0]["stats"]
    assert [int(f[0]), int(f[1])] == [vda[0]["major"], vda[0]["first_minor"]]
    assert [st["ios"]["read"], st["merges"]["read"], st["sectors"]["read"]] == [int(x) for x in f[3:6]]
    assert [st["ios"]["write"], st["merges"]["write"], st["sectors"]["write"]] == [int(x) for x in f[7:10]]
    assert st["ios"]["read"] >= 40 and st["ios"]["write"] >= 3 and st["sectors"]["write"] >= 24
    text = _run_core(state.dump, state.kernel.vmlinux, ["kd dev -d"])[0]
    assert re.search(rf"^\s+{vda[0]['major']}:0\s+{vda[0]['gendisk']:016x} vda ", text, re.M)


def test_text_forms(state):
    p = state.prog_pid
    files, vm, mount = _run_core(state.dump, state.kernel.vmlinux,
                                 [f"kd files {p}", f"kd vm {p}", "kd mount"])
    assert "/tmp/kds/data" in files and re.search(r"^\s+3 [0-9a-f]{16} ", files, re.M)
    assert "[anon]" in vm and "/tmp/kds/data" in vm and "TOTAL_VM" in vm
    assert re.search(r"^[0-9a-f]{16} [0-9a-f]{16} tmpfs\s+kdstmp\s+/tmp/kds$", mount, re.M)


BAD = {
    "kd files 99999": "no task 99999",
    "kd vm 2": "has no mm: a kernel thread",
    "kd files -d init_task": "is not a struct dentry",
    "kd files -d 0": "NULL",
    "kd vm -R 0-1 1": "goes with -p",
    "kd mount 0xffff000012345678": "not the mount namespace of any task",
    "kd mount -t 99999": "no task 99999",
    "kd net -s 99999": "no task 99999",
    "kd irq 4000": "no irq descriptor for irq 4000",
    "kd timer -C 9": "no CPU 9",
    "kd dev -x": "unrecognized arguments",
    "kd waitq init_task": "is not a struct wait_queue_head",
    "kd tree -t rbtree init_task": "is not an rb_root",
    "kd tree -t maple init_task": "is not a maple tree",
    "kd tree -t xarray init_task": "is not an xarray",
    "kd tree -t bogus init_task": "invalid choice",
}


def test_bad_input_is_one_line(state):
    res = [r for r in state.gdb(list(BAD)) if not r["cmd"].startswith("<")]
    for r in res:
        err = r["err"] or ""
        assert err.startswith("kd ") and "\n" not in err.strip(), r
        assert "PYTHON" not in err and "Traceback" not in err, r
        assert BAD[r["cmd"]] in err, r
