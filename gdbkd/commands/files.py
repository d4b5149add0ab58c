"""kd files: a task's open files (crash's files)."""

from . import KdError, command
from ._util import KernelCommand
from ._sysstate import (kernel, pick_task, task_header, render_header, guest_str, address_arg,
                        symbol_name)
from ..model import fs
from ..model.reader import MemoryFault

__all__ = ["Files"]


def _looks_like_dentry(k, addr: int) -> str:
    """Why the memory at ``addr`` is not a struct dentry, or "" when it looks like one: its
    superblock's type has a name, its parent is a dentry of the same superblock, its
    inode (if any) belongs to that superblock."""
    try:
        info = fs.dentry_info(k, addr)
        if not info["sb"] or not info["fstype"] or not info["fstype"].isascii():
            return "d_sb does not lead to a file system type"
        psb = fs.dentry_info(k, info["parent"])["sb"] if info["parent"] else 0
        if psb != info["sb"]:
            return "its d_parent is not on the same superblock"
        if info["inode"]:
            isb = k.reader.u64(info["inode"] + k.offset("struct inode", "i_sb"))
            if isb != info["sb"]:
                return "its d_inode is not on its superblock"
    except MemoryFault as e:
        return str(e)
    return ""


def _path_of(k, path_addr: int) -> str:
    mnt, dentry = k.reader.u64(path_addr), k.reader.u64(path_addr + 8)
    return guest_str(fs.d_path(k, mnt, dentry)) if mnt and dentry else None


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
            why = _looks_like_dentry(k, addr)
            if why:
                raise KdError(f"{addr:#x} is not a struct dentry: {why}")
            info = fs.dentry_info(k, addr)
            return {"dentry": addr, "inode": info["inode"], "sb": info["sb"],
                    "type": info["type"], "ino": info["ino"], "fstype": guest_str(info["fstype"]),
                    "name": guest_str(info["name"]), "path": guest_str(fs.dentry_path(k, addr))}
        t = pick_task(args.task)
        out = {**task_header(t), "root": None, "cwd": None, "files": []}
        fs_off = k.offset("struct task_struct", "fs")
        fsp = k.reader.u64(t.addr + fs_off)
        if fsp:
            lay = k.layout("struct fs_struct", ["root", "pwd"])
            out["root"] = _path_of(k, fsp + lay.offset("root"))
            out["cwd"] = _path_of(k, fsp + lay.offset("pwd"))
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

