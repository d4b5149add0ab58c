"""kd files: a task's open files (crash's files)."""

from . import KdError, command
from ._util import KernelCommand
from ._sysstate import (kernel, pick_task, task_header, render_header, guest_str, address_arg,
                        symbol_name)
from ..model import fs

__all__ = ["Files"]


@command
class Files(KernelCommand):
    """Open files of a task: fd, struct file, dentry, inode, type, path (crash's files).

The path is the full path from the global root (as drgn's d_path); pipes,
sockets and anonymous inodes show the name /proc/PID/fd gives them
(pipe:[INO], socket:[INO], anon_inode:NAME). ROOT and CWD are the task's
fs->root and fs->pwd."""

    name = "files"
    json_addresses = frozenset(("task", "dentry", "inode", "sb", "file", "f_op", "files_struct"))

    def add_arguments(self, p):
        p.add_argument("-d", dest="dentry", metavar="DENTRY",
                       help="show one struct dentry (address or expression) instead")
        p.add_argument("task", nargs="?", metavar="PID|TASK|COMM",
                       help="the task (default: the task of the selected thread)")

    def run(self, args):
        k = kernel()
        if args.dentry:
            if args.task:
                raise KdError("-d DENTRY takes no task")
            addr = address_arg(args.dentry, "a struct dentry")
            why = fs.not_a_dentry(k, addr)
            if why:
                raise KdError(f"{addr:#x} is not a struct dentry: {why}")
            info = fs.dentry_info(k, addr)
            return {"dentry": addr, "inode": info["inode"], "sb": info["sb"],
                    "type": info["type"], "ino": info["ino"], "fstype": guest_str(info["fstype"]),
                    "name": guest_str(info["name"]), "path": guest_str(fs.dentry_path(k, addr))}
        t = pick_task(args.task)
        out = {**task_header(t), "root": None, "cwd": None, "files": []}
        root, cwd = fs.task_root_cwd(k, t.addr)
        out["root"] = guest_str(root) if root is not None else None
        out["cwd"] = guest_str(cwd) if cwd is not None else None
        files, fdt, fds = fs.task_files(k, t.addr)
        out["files_struct"] = files
        for fd, f in fds:
            i = fs.file_info(k, f, fd)
            out["files"].append({
                "fd": fd, "file": f, "dentry": i["dentry"], "inode": i["inode"], "type": i["type"],
                "path": guest_str(i.get("name", i["path"])), "d_path": guest_str(i["path"]),
                "ino": i["ino"], "f_flags": i["f_flags"], "pos": i["pos"], "f_op": i["f_op"],
                "f_op_name": symbol_name(i["f_op"])})
        return out

    def render(self, d, args):
        if "files" not in d:
            return ("    DENTRY           INODE           SUPERBLK     TYPE  PATH\n"
                    f"{d['dentry']:016x} {d['inode']:016x} {d['sb']:016x} {d['type'] or '-':<5} "
                    f"{d['path']}")
        lines = [render_header(d)]
        lines.append(f"ROOT: {d['root'] or '-'}    CWD: {d['cwd'] or '-'}")
        if not d["files_struct"]:
            lines.append("(no files_struct)")
            return "\n".join(lines)
        lines.append(" FD       FILE            DENTRY           INODE       TYPE PATH")
        for f in d["files"]:
            lines.append(f"{f['fd']:>3} {f['file']:016x} {f['dentry']:016x} {f['inode']:016x} "
                         f"{f['type'] or '-':<4} {f['path']}")
        return "\n".join(lines)

