"""Open files, paths and mounts without gdb (crash's ``files`` and ``mount``).

Open files: ``task->files`` (``struct files_struct``) → ``fdt`` (``struct
fdtable``: ``max_fds``, ``fd`` — an array of ``struct file *`` — and the
``open_fds`` bitmap), as drgn's ``for_each_file`` reads them. Unchanged in
shape from 2.6.x through 6.12.

Paths (``d_path``): from a ``struct path`` {``mnt``, ``dentry``} up the
``dentry->d_parent`` chain; at a mount's root (``vfsmount.mnt_root``) cross to
``mount->mnt_mountpoint`` in ``mount->mnt_parent`` (``struct mount`` embeds
the ``struct vfsmount`` as ``mnt``, fs/mount.h, 3.3+), until a mount that is
its own parent. As drgn 0.3.0's ``d_path``: relative to the global root, not
the task's chroot; a dentry whose ``d_op->d_dname`` is set (pipes, sockets,
anon inodes) is named ``[<fs type>]`` — the kernel would print e.g.
``pipe:[1234]``, which :func:`file_info` gives as ``name`` too.

Mounts: the ``struct mount`` list ``mnt_namespace->list`` / ``mount->mnt_list``
up to 6.7; a red-black tree ``mnt_namespace->mounts`` / ``mount->mnt_node``
from 6.8 (commit 2eea9ce4310d, "mounts: keep list of mounts in an rbtree").
Cursor entries (``mnt.mnt_sb`` NULL, 5.8–6.7) are skipped. The file system
type is ``sb->s_type->name`` plus ``.`` ``sb->s_subtype`` when set.
Namespaces: the distinct ``task->nsproxy->mnt_ns`` of all tasks.

Members that moved between 5.10, 6.1 and 6.12 are probed: ``file->f_inode``
(3.9+), ``dentry->d_name.name``, ``inode->i_mode``/``i_ino`` are the same in
all three; ``struct file`` was reordered in 6.12 (commit 1bc4f8f0d8b3 family)
but only by offsets, which come from the layouts.
"""

from .kernel import per_stop
from .reader import MemoryFault
from .trees import rbtree_inorder
from .lists import Entries, list_entries, tree_problem

__all__ = ["FileInfo", "task_files", "file_info", "d_path", "dentry_info", "mount_list",
           "not_a_dentry", "task_root_cwd",
           "mount_info", "mount_namespaces", "dentry_path", "init_mnt_ns", "file_type", "S_IFMT_NAMES", "MNT_INTERNAL"]

S_IFMT = 0o170000
S_IFMT_NAMES = {0o140000: "SOCK", 0o120000: "LNK", 0o100000: "REG", 0o060000: "BLK",
                0o040000: "DIR", 0o020000: "CHR", 0o010000: "FIFO"}
MNT_INTERNAL = 0x4000          # include/linux/mount.h, 2.6.34+

_FILE = ["f_path.mnt", "f_path.dentry", "f_inode", "f_op", "f_mode", "f_flags", "f_pos",
         "private_data"]
_DENTRY = ["d_parent", "d_name.name", "d_name.len", "d_name.hash_len", "d_inode", "d_op",
           "d_sb", "d_flags"]
_INODE = ["i_mode", "i_ino", "i_sb", "i_size", "i_fop"]
_MOUNT = ["mnt_parent", "mnt_mountpoint", "mnt.mnt_root", "mnt.mnt_sb", "mnt.mnt_flags",
          "mnt_devname", "mnt_ns", "mnt_list", "mnt_node", "mnt_id"]


def file_type(mode: int) -> str:
    fmt = mode & S_IFMT
    return S_IFMT_NAMES.get(fmt, f"{fmt:06o}")


def _lay(k, t, paths):
    return k.layout(t, paths)


@per_stop
def _mount_offset(k) -> int:
    """Offset of the ``struct vfsmount`` inside ``struct mount``."""
    off = k.offset("struct mount", "mnt")
    if off is None:
        raise MemoryFault(0, "this kernel has no struct mount")
    return off


def _string(k, addr, maxlen=256) -> bytes:
    if not addr:
        return b""
    return k.reader.cstring(addr, maxlen)


def dentry_name(k, dentry: int) -> bytes:
    d = _lay(k, "struct dentry", _DENTRY).read(k.reader, dentry)
    return _string(k, d["d_name.name"], 256)


def _has_dname(k, d_op: int) -> bool:
    if not d_op:
        return False
    off = k.offset("struct dentry_operations", "d_dname")
    return off is not None and k.reader.u64(d_op + off) != 0


def _fstype(k, sb: int) -> bytes:
    if not sb:
        return b""
    lay = _lay(k, "struct super_block", ["s_type", "s_subtype"])
    s = lay.read(k.reader, sb)
    name_off = k.offset("struct file_system_type", "name")
    name = _string(k, k.reader.u64(s["s_type"] + name_off), 64) if s["s_type"] else b""
    sub = s.get("s_subtype", 0)
    if sub:
        subname = _string(k, sub, 64)
        if subname:
            name += b"." + subname
    return name


def d_path(k, vfsmnt: int, dentry: int, limit: int = 4096) -> bytes:
    """The full path of ``dentry`` seen through the mount whose ``struct vfsmount`` is
    at ``vfsmnt`` (drgn 0.3.0's ``d_path``: relative to the global root)."""
    dl = _lay(k, "struct dentry", _DENTRY)
    ml = _lay(k, "struct mount", _MOUNT)
    mnt = vfsmnt - _mount_offset(k)
    d = dl.read(k.reader, dentry)
    if _has_dname(k, d["d_op"]):
        sb = d["d_sb"]
        if d["d_inode"]:
            sb_off = k.offset("struct inode", "i_sb")
            sb = k.reader.u64(d["d_inode"] + sb_off)
        return b"[" + _fstype(k, sb) + b"]"
    parts = []
    m = ml.read(k.reader, mnt)
    for _ in range(limit):
        if dentry == m["mnt.mnt_root"]:
            parent = m["mnt_parent"]
            if parent == mnt or not parent:
                break
            dentry = m["mnt_mountpoint"]
            mnt = parent
            m = ml.read(k.reader, mnt)
            d = dl.read(k.reader, dentry)
            continue
        if d["d_parent"] == dentry or not d["d_parent"]:
            break
        parts.append(_string(k, d["d_name.name"], 256))
        dentry = d["d_parent"]
        d = dl.read(k.reader, dentry)
    else:
        raise MemoryFault(dentry, f"path of dentry {dentry:#x} is deeper than {limit} components "
                                  f"(a d_parent loop?)")
    if not parts:
        return b"/"
    return b"".join(b"/" + p for p in reversed(parts))


def dentry_path(k, dentry: int, limit: int = 4096) -> bytes:
    """Path of a dentry from the root of its own file system (the kernel's dentry_path())."""
    dl = _lay(k, "struct dentry", _DENTRY)
    parts = []
    for _ in range(limit):
        d = dl.read(k.reader, dentry)
        if not d["d_parent"] or d["d_parent"] == dentry:
            break
        parts.append(_string(k, d["d_name.name"], 256))
        dentry = d["d_parent"]
    return b"/" + b"/".join(reversed(parts))


def inode_info(k, inode: int) -> dict:
    if not inode:
        return {"inode": 0, "mode": 0, "type": "", "ino": 0, "size": 0, "sb": 0}
    i = _lay(k, "struct inode", _INODE).read(k.reader, inode)
    return {"inode": inode, "mode": i["i_mode"], "type": file_type(i["i_mode"]),
            "ino": i["i_ino"], "size": i.get("i_size", 0), "sb": i["i_sb"]}


def dentry_info(k, dentry: int) -> dict:
    """One dentry: its name, parent, inode (with mode/type), superblock and fs type."""
    d = _lay(k, "struct dentry", _DENTRY).read(k.reader, dentry)
    info = {"dentry": dentry, "name": _string(k, d["d_name.name"], 256), "parent": d["d_parent"],
            "sb": d["d_sb"], "fstype": _fstype(k, d["d_sb"])}
    info.update({key: v for key, v in inode_info(k, d["d_inode"]).items() if key != "sb"})
    return info


def not_a_dentry(k, addr: int) -> str:
    """Why the memory at ADDR is not a struct dentry, or "" when it looks like one: its
    superblock's type has a name, its parent is a dentry of the same superblock, its
    inode (if any) belongs to that superblock."""
    try:
        info = dentry_info(k, addr)
        if not info["sb"] or not info["fstype"] or not info["fstype"].isascii():
            return "d_sb does not lead to a file system type"
        psb = dentry_info(k, info["parent"])["sb"] if info["parent"] else 0
        if psb != info["sb"]:
            return "its d_parent is not on the same superblock"
        if info["inode"] and inode_info(k, info["inode"])["sb"] != info["sb"]:
            return "its d_inode is not on its superblock"
    except MemoryFault as e:
        return str(e)
    return ""


def task_root_cwd(k, task: int):
    """(root, cwd) of a task: the d_path of its ``fs->root`` and ``fs->pwd`` (each None
    when unset); (None, None) for a task without ``fs`` (an exited task)."""
    fsp = k.reader.u64(task + k.offset("struct task_struct", "fs"))
    if not fsp:
        return None, None
    lay = _lay(k, "struct fs_struct", ["root", "pwd"])
    out = []
    for m in ("root", "pwd"):
        path = fsp + lay.offset(m)          # struct path {vfsmount *mnt; dentry *dentry;}
        mnt, dentry = k.reader.u64(path), k.reader.u64(path + 8)
        out.append(d_path(k, mnt, dentry) if mnt and dentry else None)
    return tuple(out)


def _dname(k, fs: bytes, dentry: int, ino: int) -> bytes:
    """What the kernel's ``d_dname()`` shows for a pseudo-fs dentry (/proc/PID/fd):
    pipefs ``pipe:[ino]``, sockfs ``socket:[ino]``, anon_inodefs ``anon_inode:NAME``."""
    if fs == b"pipefs":
        return b"pipe:[%d]" % ino
    if fs == b"sockfs":
        return b"socket:[%d]" % ino
    name = dentry_name(k, dentry)
    return b"anon_inode:" + name if fs == b"anon_inodefs" else name


class FileInfo(dict):
    """One open file as plain data: fd, file, dentry, inode, type, path, fstype."""


def file_info(k, file: int, fd=None) -> FileInfo:
    f = _lay(k, "struct file", _FILE).read(k.reader, file)
    dentry = f["f_path.dentry"]
    inode = f.get("f_inode") or 0
    if not inode and dentry:
        inode = k.reader.u64(dentry + k.offset("struct dentry", "d_inode"))
    ii = inode_info(k, inode)
    path = d_path(k, f["f_path.mnt"], dentry) if dentry and f["f_path.mnt"] else b""
    out = FileInfo(fd=fd, file=file, dentry=dentry, inode=inode, type=ii["type"],
                   mode=ii["mode"], ino=ii["ino"], path=path, f_op=f["f_op"],
                   f_flags=f["f_flags"], f_mode=f["f_mode"], pos=f["f_pos"],
                   private_data=f["private_data"], mnt=f["f_path.mnt"])
    if path.startswith(b"[") and path.endswith(b"]"):
        out["name"] = _dname(k, path[1:-1], dentry, ii["ino"])
    return out


def task_files(k, task: int):
    """(files_struct address, fdtable address, [(fd, struct file *)]) of a task; files
    is 0 for a task without files (an exited task, some kernel threads)."""
    files = k.reader.u64(task + k.offset("struct task_struct", "files"))
    if not files:
        return 0, 0, []
    fdt = k.reader.u64(files + k.offset("struct files_struct", "fdt"))
    lay = _lay(k, "struct fdtable", ["max_fds", "fd", "open_fds"])
    t = lay.read(k.reader, fdt)
    max_fds, fdarr, bits = t["max_fds"], t["fd"], t["open_fds"]
    if max_fds > 1 << 20:
        raise MemoryFault(fdt, f"fdtable {fdt:#x} says max_fds = {max_fds}: not an fdtable")
    words = k.reader.read(bits, ((max_fds + 63) // 64) * 8) if max_fds else b""
    ptrs = k.reader.read(fdarr, 8 * max_fds) if max_fds else b""
    out = []
    for w in range(len(words) // 8):
        word = int.from_bytes(words[8 * w:8 * w + 8], "little")
        while word:
            b = (word & -word).bit_length() - 1
            word &= word - 1
            fd = 64 * w + b
            if fd < max_fds:
                f = int.from_bytes(ptrs[8 * fd:8 * fd + 8], "little")
                if f:
                    out.append((fd, f))
    return files, fdt, out


# -- mounts ------------------------------------------------------------------------------
def mount_list(k, ns: int):
    """(``struct mount`` addresses of namespace ``ns`` in the kernel's order, stop reason);
    the addresses are an :class:`gdbkd.model.lists.Entries` whose ``damage`` says what is
    wrong with the list (or, from 6.8, the tree)."""
    nl = _lay(k, "struct mnt_namespace", ["list", "mounts", "root"])
    ml = _lay(k, "struct mount", _MOUNT)
    if "list" in nl and "mnt_list" in ml:                              # <= 6.7: a list
        mounts, stop = list_entries(k.reader, ns + nl.offset("list"), ml.offset("mnt_list"),
                                    name=f"mount list of namespace {ns:#x} (mnt_namespace.list)")
    elif "mounts" in nl and "mnt_node" in ml:                         # 6.8+: an rbtree
        w = rbtree_inorder(k, ns + nl.offset("mounts"))
        damage = [tree_problem(f"mount tree of namespace {ns:#x} (mnt_namespace.mounts)",
                               ns + nl.offset("mounts"), w)] if w.stop else []
        mounts, stop = Entries([n - ml.offset("mnt_node") for n in w.entries], damage), w.stop
    else:
        raise MemoryFault(ns, "cannot find the mounts of a struct mnt_namespace in this kernel")
    sb_off = ml.offset("mnt.mnt_sb")
    return Entries([m for m in mounts if k.reader.u64(m + sb_off)], mounts.damage), stop


def mount_info(k, mnt: int) -> dict:
    """One ``struct mount``: source, destination (full path), type, superblock, flags."""
    ml = _lay(k, "struct mount", _MOUNT)
    m = ml.read(k.reader, mnt)
    parent = m["mnt_parent"]
    if parent and parent != mnt:
        dst = d_path(k, parent + _mount_offset(k), m["mnt_mountpoint"])
    else:
        dst = d_path(k, mnt + _mount_offset(k), m["mnt.mnt_root"])
    return {"mount": mnt, "sb": m["mnt.mnt_sb"], "fstype": _fstype(k, m["mnt.mnt_sb"]),
            "devname": _string(k, m["mnt_devname"], 256), "dirname": dst,
            "flags": m["mnt.mnt_flags"], "parent": parent, "ns": m.get("mnt_ns", 0),
            "id": m.get("mnt_id")}


def mount_namespaces(k, tasks) -> dict:
    """{mnt_namespace address: [pids using it]} over ``tasks`` (model Task objects)."""
    ns_off = k.offset("struct task_struct", "nsproxy")
    mnt_off = k.offset("struct nsproxy", "mnt_ns")
    out = {}
    for t in tasks:
        try:
            nsp = k.reader.u64(t.addr + ns_off)
            if not nsp:
                continue
            ns = k.reader.u64(nsp + mnt_off)
        except MemoryFault:
            continue
        if ns:
            out.setdefault(ns, []).append(t.pid)
    return out


def init_mnt_ns(k) -> int:
    """``init_task.nsproxy->mnt_ns`` (drgn's default namespace)."""
    nsp = k.reader.u64(k.need_sym("init_task") + k.offset("struct task_struct", "nsproxy"))
    return k.reader.u64(nsp + k.offset("struct nsproxy", "mnt_ns"))
