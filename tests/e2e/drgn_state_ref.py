"""drgn 0.3.0's view of a dump, for tests/e2e/test_kd_state.py (run as a script:
``python drgn_state_ref.py DUMP VMLINUX PID...``; prints JSON)."""

import json
import sys

import drgn
from drgn.helpers.linux.fs import d_path, for_each_file, for_each_mount, mount_dst, mount_fstype, mount_src
from drgn.helpers.linux.mm import for_each_vma, follow_phys
from drgn.helpers.linux.pid import find_task


def main():
    prog = drgn.Program()
    prog.set_core_dump(sys.argv[1])
    prog.load_debug_info([sys.argv[2]])
    out = {"files": {}, "vmas": {}, "phys": {}}
    for pid in map(int, sys.argv[3:]):
        t = find_task(prog, pid)
        files = {}
        for fd, f in for_each_file(t):
            if f:
                files[fd] = d_path(f.f_path).decode("utf-8", "backslashreplace")
        out["files"][pid] = files
        if t.mm:
            out["vmas"][pid] = [v.vm_start.value_() for v in for_each_vma(t.mm)]
            phys = {}
            for v in for_each_vma(t.mm):
                for va in range(v.vm_start.value_(), v.vm_end.value_(), 4096):
                    try:
                        phys[va] = follow_phys(t.mm, va).value_()
                    except drgn.FaultError:
                        pass
            out["phys"][pid] = phys
    out["mounts"] = [[m.value_(), mount_dst(m).decode(), mount_fstype(m).decode(),
                      mount_src(m).decode()] for m in for_each_mount(prog)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
