"""Kernel source in the session: `gdbkd fetch --source` fetches Debian's linux-source-6.1
of the 6.1 kernel (~140 MB, into the cache once per machine: the whole fetch and unpack
took 27 s here, so this is the default tier, not `slow`), and every gdb gdbkd starts then
shows source text: `gdbkd core` (`list`, `frame`, `kd dis -s`), `gdbkd run` (`frame`), and
the lab and test modules' own files. The oracle is the fetched file itself, line by line,
and the DWARF line of each function (a source of another version would not match)."""

import json
import os
import re
from pathlib import Path

import pytest

from conftest import gdbkd, ROOT
from testdumps import ensure_test_dumps

pytestmark = pytest.mark.e2e

#: "N<TAB>text", gdb's source line format
SRC_LINE = re.compile(r"^(\d+)\t(.*)$", re.M)


@pytest.fixture(scope="module")
def source61(kernel61):
    r = gdbkd("fetch", "--source", "--json", timeout=1800)
    assert r.returncode == 0, r.stderr[-2000:]
    tree = Path(json.loads(r.stdout)["source"])
    assert (tree / "kernel/panic.c").is_file() and (tree / "arch/arm64/kernel/entry.S").is_file()
    return tree


def _lines(path):
    return Path(path).read_text(errors="replace").splitlines()


def _check_listing(out, path, at_least=5):
    """Every "N<TAB>text" line in OUT is line N of PATH; returns the line numbers."""
    body = _lines(path)
    got = [(int(n), t) for n, t in SRC_LINE.findall(out)]
    assert len(got) >= at_least, out[-3000:]
    for n, t in got:
        assert body[n - 1] == t, (n, t, body[n - 1])
    return [n for n, _ in got]


def _check_frames(out, tree_or_none, min_frames=1):
    """Each `frame` header "… at FILE:N" is followed by line N of FILE (FILE relative to
    the kernel tree, or an absolute module source path)."""
    hits = re.findall(r"^#\d+\s.* at (\S+):(\d+)\n(\d+)\t(.*)$", out, re.M)
    assert len(hits) >= min_frames, out[-3000:]
    for f, n, n2, text in hits:
        path = Path(f) if f.startswith("/") and Path(f).is_file() else tree_or_none / f
        assert n == n2 and _lines(path)[int(n) - 1] == text, (f, n, text)
    return hits


def test_fetch_source_is_cached_and_says_where(source61, kernel61):
    r = gdbkd("fetch", "--source")
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"source     {source61}" in r.stdout
    assert "downloading" not in r.stderr and "unpacking linux-source" not in r.stderr, r.stderr
    rec = [json.loads(p.read_text()) for p in
           (Path(os.environ.get("GDBKD_CACHE") or Path.home() / ".cache/gdbkd") / "sources/by-build-id").glob("*.json")]
    mine = [x for x in rec if x["tree"] == str(source61)]
    assert mine, rec
    # the package version is the one the vmlinux was built from (its banner says "Debian V")
    banner = re.search(rb"Linux version [ -~]+", Path(kernel61.vmlinux).read_bytes()).group(0).decode()
    assert f"Debian {mine[0]['version']} " in banner, (banner, mine)
    # the C units' relative compilation directory and the assembler units' absolute root
    assert "debian/build/build_arm64_none_cloud-arm64" in mine[0]["rules"], mine
    assert any(r.startswith("/") and not r.endswith("cloud-arm64") for r in mine[0]["rules"]), mine


def test_core_lists_kernel_source(source61, kernel61):
    td = ensure_test_dumps()
    r = gdbkd("core", str(td.elf), str(td.vmlinux), "-s", "--batch", "-ex", "echo @@@\\n",
              "-ex", "list panic", "-ex", "info line panic", "-ex", "frame 1")
    assert r.returncode == 0, r.stderr[-2000:]
    _check_frames(r.stdout, source61)            # the stop gdb printed, then frame 1
    out = r.stdout.split("@@@\n", 1)[1]
    listing = out[:out.index("Line ")]
    nums = _check_listing(listing, source61 / "kernel/panic.c", at_least=10)
    # `info line panic`: the DWARF line of panic() in this tree is its definition
    decl = int(re.search(r'Line (\d+) of "kernel/panic\.c"', out).group(1))
    assert decl in nums or decl - 1 in nums, (decl, nums)
    body = _lines(source61 / "kernel/panic.c")
    assert any(body[i].startswith("void panic(const char *fmt") for i in range(decl - 3, decl)), decl
    assert "in kernel/panic.c" not in out


def test_core_dis_s_shows_kernel_and_assembler_source(source61, kernel61):
    td = ensure_test_dumps()
    r = gdbkd("core", str(td.elf), str(td.vmlinux), "-s", "--batch",
              "-ex", "kd dis -s sysrq_handle_crash", "-ex", "kd dis -s --json el1h_64_sync 2")
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout
    sysrq = _lines(source61 / "drivers/tty/sysrq.c")
    # "FILE: N" then two spaces and line N (tabs expanded) of that file
    pairs = re.findall(r"^(drivers/tty/sysrq\.c): (\d+)\n  (.*)$", out, re.M)
    assert pairs, out[-3000:]
    for _, n, text in pairs:
        assert sysrq[int(n) - 1].expandtabs(8) == text
    texts = [t.strip() for _, _, t in pairs]
    assert "static void sysrq_handle_crash(int key)" in texts      # the entry NOPs: its declaration
    assert any(t.startswith('panic("sysrq triggered crash') for t in texts), texts
    js = json.loads(next(l for l in out.splitlines() if l.startswith("[")))
    first = js[0]
    f, n = first["source"].rsplit(": ", 1)
    assert f.endswith("arch/arm64/kernel/entry.S"), first
    assert first["text"] == _lines(source61 / "arch/arm64/kernel/entry.S")[int(n) - 1], first


def test_core_without_fetched_source_shows_no_text(tmp_path, kernel61):
    """The same session in a cache holding everything but the source: gdb's own
    "N in FILE" (nothing is downloaded behind the user's back)."""
    real = Path(os.environ.get("GDBKD_CACHE") or Path.home() / ".cache/gdbkd")
    for p in real.iterdir():
        if p.name != "sources":
            (tmp_path / p.name).symlink_to(p)
    td = ensure_test_dumps()
    r = gdbkd_env({"GDBKD_CACHE": str(tmp_path)}, "core", str(td.elf), str(td.vmlinux), "-s",
                  "--batch", "-ex", "list panic", "-ex", "frame 1", "-ex", "kd dis -s --json panic 4")
    assert r.returncode == 0, r.stderr[-2000:]
    both = r.stdout + r.stderr
    dis = json.loads(next(l for l in r.stdout.splitlines() if l.startswith("[")))
    assert all(d.get("text") is None for d in dis) and any("source" in d for d in dis), dis
    assert re.search(r"^\d+\tkernel/panic\.c: No such file or directory\.$", both, re.M), both
    assert all("No such file" in t for _, t in SRC_LINE.findall(both)), both
    assert not (tmp_path / "sources").exists()


def gdbkd_env(env, *args, timeout=300):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "gdbkd", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL,
                          env={**os.environ, **env})


def test_run_frame_shows_kernel_and_test_module_source(source61, kernel61, no_leftover_qemu):
    """sysrq-c caught live: the frames print their source lines; the test module inserted
    at boot lists from its own file (tests/e2e/kdtest_mod). Frame 0 is the `panic`
    breakpoint's ELF-symbol location, in the patchable-entry NOPs before the line table
    starts: gdb has no line for it (with or without the source), so it shows none."""
    mod = ROOT / "tests/e2e/kdtest_mod"
    r = gdbkd("run", "--batch", "--json", "--module", str(mod),
              "--boot-exec", "insmod /lib/modules/gdbkd/kdtest.ko",
              "--exec", "echo c > /proc/sysrq-trigger",
              "-ex", "frame 0", "-ex", "frame 1", "-ex", "frame 2", "-ex", "list kdtest_block",
              "-ex", "list panic")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    outs = [e["output"] for e in rep["ex"]]
    assert re.match(r"#0\s.* in panic \(", outs[0]), outs[0]
    hits = _check_frames(outs[1] + outs[2], source61, min_frames=2)
    assert hits[0][0] == "drivers/tty/sysrq.c" and 'panic("sysrq triggered crash' in hits[0][3], hits
    assert hits[1][0] == "drivers/tty/sysrq.c", hits
    nums = _check_listing(outs[4], source61 / "kernel/panic.c")
    assert any(_lines(source61 / "kernel/panic.c")[n - 1].startswith("void panic(") for n in nums)
    nums = _check_listing(outs[3], mod / "kdtest.c")
    decl = next(i for i, t in enumerate(_lines(mod / "kdtest.c"), 1) if "void kdtest_block(void)" in t)
    assert decl in nums, (decl, nums)


def test_lab_run_shows_the_lab_source(source61, kernel61, no_leftover_qemu):
    """Lab 1 oopses in lab1_attach_console: its frame shows the line of the lab's own
    file, and the kernel frames below the exception show the kernel's."""
    lab = ROOT / "gdbkd/labs/lab1_null_deref/lab1_null.c"
    r = gdbkd("lab", "run", "1", "--batch", "--json", "-ex", "frame function lab1_attach_console",
              "-ex", "frame function do_one_initcall")
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    outs = [e["output"] for e in rep["ex"]]
    hits = _check_frames(outs[0], None)
    assert Path(hits[0][0]).resolve() == lab.resolve(), hits
    hits = _check_frames(outs[1], source61)
    assert hits[0][0] == "init/main.c", hits


def test_fetch_source_bad_profile_is_one_line(tmp_path):
    """A local kernel (no Debian source package) and an unknown profile: one line each."""
    bad = tmp_path / "mine.toml"
    bad.write_text('[kernel]\nsource = "local"\nimage = "/bin/true"\nvmlinux = "/bin/true"\n'
                   '[guest]\ninitramfs = false\n')
    for args in (["fetch", "--source", str(bad)], ["fetch", "--source", "no-such-profile"]):
        r = gdbkd(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_profile_fetch_source_option(tmp_path, source61):
    """`[kernel] fetch_source = true` in a profile: `gdbkd fetch` (and `gdbkd run`) fetch
    the source without --source. The profile here is debian-6.1 with that one line added,
    found first through $GDBKD_PROFILES."""
    from gdbkd.qemu.profiles import load_profile
    text = load_profile("debian-6.1").path.read_text()
    assert "\n[kernel]\n" in text
    (tmp_path / "debian-6.1.toml").write_text(text.replace("\n[kernel]\n", "\n[kernel]\nfetch_source = true\n"))
    r = gdbkd_env({"GDBKD_PROFILES": str(tmp_path)}, "fetch", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["source"] == str(source61)
    r = gdbkd("fetch", "--json")            # the shipped profile does not ask for it
    assert r.returncode == 0 and "source" not in json.loads(r.stdout), r.stdout
