"""kd mount: mounted file systems and mount namespaces (crash's mount)."""

from . import KdError, command
from ._util import KernelCommand, problem_lines
from ._sysstate import kernel, pick_task, guest_str
from ..model import fs
from ..model.tasks import task_list
from ..model.reader import MemoryFault

__all__ = ["Mount"]


@command
class Mount(KernelCommand):
    """Mounts of a mount namespace: mount, superblock, type, device, mount point (crash's mount).

The default namespace is init_task's (as drgn's for_each_mount); -n lists the
namespaces in use (mnt_namespace address and the pids in it), -t PID shows
the namespace of that task. DIRNAME is the full path from the global root."""

    name = "mount"
    json_addresses = frozenset(("ns", "mount", "sb", "parent"))

    def add_arguments(self, p):
        p.add_argument("-n", dest="namespaces", action="store_true",
                       help="list the mount namespaces in use and their tasks")
        p.add_argument("-t", dest="task", metavar="PID|TASK|COMM",
                       help="mounts of this task's mount namespace")
        p.add_argument("ns", nargs="?", metavar="MNT_NAMESPACE",
                       help="address of a struct mnt_namespace (default: init_task's)")

    def run(self, args):
        k = kernel()
        if args.namespaces:
            if args.task or args.ns:
                raise KdError("-n takes no other argument")
            nss = fs.mount_namespaces(k, task_list(k))
            rows = []
            for ns, pids in nss.items():
                mounts, _ = fs.mount_list(k, ns)
                rows.append({"ns": ns, "mounts": len(mounts), "pids": sorted(set(pids))})
            return {"namespaces": rows}
        if args.task and args.ns:
            raise KdError("give -t PID or a namespace address, not both")
        if args.task:
            t = pick_task(args.task)
            ns = fs.mount_namespaces(k, [t])
            if not ns:
                raise KdError(f"PID {t.pid} has no mount namespace (an exited task?)")
            ns = next(iter(ns))
        elif args.ns:
            from ._sysstate import address_arg
            ns = address_arg(args.ns, "a struct mnt_namespace")
            known = fs.mount_namespaces(k, task_list(k))
            if ns not in known:
                raise KdError(f"{ns:#x} is not the mount namespace of any task "
                              f"(kd mount -n lists them)")
        else:
            ns = fs.init_mnt_ns(k)
        mounts, stop = fs.mount_list(k, ns)
        rows = []
        for m in mounts:
            try:
                i = fs.mount_info(k, m)
            except MemoryFault as e:
                rows.append({"mount": m, "error": str(e)})
                continue
            rows.append({"mount": m, "sb": i["sb"], "type": guest_str(i["fstype"]),
                         "devname": guest_str(i["devname"]), "dirname": guest_str(i["dirname"]),
                         "flags": i["flags"], "id": i["id"]})
        return {"ns": ns, "mounts": rows, "stop": stop,
                "problems": [p.to_json() for p in mounts.damage]}

    def render(self, d, args):
        if "namespaces" in d:
            lines = ["  MNT_NAMESPACE    MOUNTS  PIDS"]
            for r in d["namespaces"]:
                pids = " ".join(map(str, r["pids"][:12])) + (" …" if len(r["pids"]) > 12 else "")
                lines.append(f"{r['ns']:016x} {r['mounts']:>7}  {pids}")
            return "\n".join(lines)
        lines = [f"MNT_NAMESPACE: {d['ns']:016x}",
                 "     MOUNT           SUPERBLK     TYPE       DEVNAME         DIRNAME"]
        for r in d["mounts"]:
            if "error" in r:
                lines.append(f"{r['mount']:016x} ({r['error']})")
                continue
            lines.append(f"{r['mount']:016x} {r['sb']:016x} {r['type']:<10} {r['devname']:<15} "
                         f"{r['dirname']}")
        lines += problem_lines(self.name, d["problems"])
        return "\n".join(lines)
