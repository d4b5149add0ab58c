"""Character and block device majors without gdb (crash's ``dev``, /proc/devices).

* Character devices: ``chrdevs[CHRDEV_MAJOR_HASH_SIZE]`` (fs/char_dev.c, 255
  buckets) of ``struct char_device_struct`` {``next``, ``major``,
  ``baseminor``, ``minorct``, ``name[64]``, ``cdev``}; the file operations are
  ``cdev->ops`` when a cdev is registered with the region (misc devices, ttys
  register theirs elsewhere and leave it NULL).
* Block devices: ``major_names[BLKDEV_MAJOR_HASH_SIZE]`` (block/genhd.c, 255)
  of ``struct blk_major_name`` {``next``, ``major``, ``name[16]``}.

The same in 5.10, 6.1 and 6.12 (``blk_major_name`` gained ``probe`` in 5.11,
commit a160c6159d4a, not read here). Both arrays are static: found by symbol.
"""

from .lists import Entries, list_entries, stop_problem
from .percpu import per_cpu_addr
from .reader import MemoryFault

__all__ = ["char_devices", "block_devices", "disks", "DISK_STAT_GROUPS"]


def _buckets(k, sym: str):
    a = k.need_sym(sym)
    n = (k.sizeof(sym) or 255 * 8) // 8
    raw = k.reader.read(a, 8 * n)
    return [int.from_bytes(raw[8 * i:8 * i + 8], "little") for i in range(n)]


def _chain(k, first, next_off, name, damage, limit=4096):
    """The entries of a NULL-terminated chain from FIRST (each once); a loop, an
    unreadable entry or the bound ends it, said in DAMAGE as a problem named NAME."""
    out, seen, cur, stop = [], set(), first, None
    while cur:
        if cur in seen:
            stop = f"loop: {cur:#x} reached twice"
            break
        if len(out) >= limit:
            stop = f"stopped after {limit} entries"
            break
        try:
            nxt = k.reader.u64(cur + next_off)
        except MemoryFault as e:
            stop = f"cannot read {cur:#x}: {e.reason}"
            break
        seen.add(cur)
        out.append(cur)
        cur = nxt
    if stop:
        damage.append(stop_problem(name, first, stop, len(out)))
    return out


def char_devices(k) -> list:
    """[{major, baseminor, minorct, name, cdev, ops}] sorted by major, then minor."""
    lay = k.layout("struct char_device_struct", ["next", "major", "baseminor", "minorct", "name",
                                                 "cdev"])
    ops_off = k.offset("struct cdev", "ops")
    out = Entries()
    for i, head in enumerate(_buckets(k, "chrdevs")):
        for cd in _chain(k, head, lay.offset("next"), f"chrdevs[{i}] chain", out.damage):
            f = lay.read(k.reader, cd)
            cdev = f["cdev"]
            ops = k.reader.u64(cdev + ops_off) if cdev else 0
            out.append({"char_device_struct": cd, "major": f["major"], "baseminor": f["baseminor"],
                        "minorct": f["minorct"], "name": f["name"].split(b"\0", 1)[0],
                        "cdev": cdev, "ops": ops})
    out.sort(key=lambda d: (d["major"], d["baseminor"]))
    return out


def block_devices(k) -> list:
    """[{major, name}] sorted by major."""
    lay = k.layout("struct blk_major_name", ["next", "major", "name"])
    if "major" not in lay:
        raise MemoryFault(0, "this kernel has no struct blk_major_name")
    out = Entries()
    for i, head in enumerate(_buckets(k, "major_names")):
        for b in _chain(k, head, lay.offset("next"), f"major_names[{i}] chain", out.damage):
            f = lay.read(k.reader, b)
            out.append({"blk_major_name": b, "major": f["major"],
                        "name": f["name"].split(b"\0", 1)[0]})
    out.sort(key=lambda d: d["major"])
    return out


# -- disks (crash's dev -d) -------------------------------------------------------------

DISK_STAT_GROUPS = ["read", "write", "discard", "flush"]


def _block_class_devices(k) -> list:
    """``struct device *`` of every device in ``block_class`` (disks and partitions).

    The class's ``struct subsys_private`` is found on the ``class_kset`` list by its
    ``class`` pointer, as drgn's ``class_to_subsys`` does (6.4, commit 2df418cf4b72,
    dropped ``class->p``; the kset list works on 5.10 too). Its ``klist_devices``
    links ``device_private.knode_class`` (5.1+) or ``device.knode_class`` before.
    """
    block_class = k.need_sym("block_class")
    kset = k.reader.u64(k.need_sym("class_kset"))
    sp = k.layout("struct subsys_private", ["subsys.kobj.entry", "class", "klist_devices.k_list"])
    entry = sp.offset("subsys.kobj.entry")
    subsys, _ = list_entries(k.reader, kset + k.offset("struct kset", "list"), entry, limit=4096,
                             name="class_kset list")
    priv = [s for s in subsys if k.reader.u64(s + sp.offset("class")) == block_class]
    if not priv:
        raise MemoryFault(block_class, "block_class is not registered on class_kset")
    head = priv[0] + sp.offset("klist_devices.k_list")
    node = k.offset("struct device_private", "knode_class.n_node")
    if node is not None:
        dp, _ = list_entries(k.reader, head, node, limit=1 << 16, name="block_class devices")
        dev_off = k.offset("struct device_private", "device")
        return Entries([k.reader.u64(p + dev_off) for p in dp], subsys.damage + dp.damage)
    devs, _ = list_entries(k.reader, head, k.offset("struct device", "knode_class.n_node"),
                           limit=1 << 16, name="block_class devices")
    return Entries(devs, subsys.damage + devs.damage)


def _disk_parts(k, device):
    """(gendisk, per-CPU disk_stats pointer) of a block_class device that is a whole
    disk, None for a partition.

    5.11+ (commit 0d02129e76ed merged hd_struct into block_device): the device is
    ``block_device.bd_device``, the partition number ``bd_partno`` (up to 6.9) or
    the low byte of ``__bd_flags`` (6.10+, commit 1116b9fa15c0), the disk
    ``bd_disk``, the statistics ``bd_stats``. 5.10: ``hd_struct.__dev``,
    ``partno``, ``dkstats``, and the disk embeds its ``hd_struct part0``.
    """
    bd = k.layout("struct block_device", ["bd_device", "bd_partno", "__bd_flags", "bd_disk",
                                          "bd_stats"])
    if "bd_device" in bd:
        f = bd.read(k.reader, device - bd.offset("bd_device"))
        partno = f["bd_partno"] if "bd_partno" in bd else f["__bd_flags"] & 0xff
        return None if partno else (f["bd_disk"], f["bd_stats"])
    hd = k.layout("struct hd_struct", ["__dev", "partno", "dkstats"])
    if "__dev" not in hd:
        raise MemoryFault(device, "this kernel has neither block_device.bd_device nor hd_struct")
    f = hd.read(k.reader, device - hd.offset("__dev"))
    if f["partno"]:
        return None
    return device - hd.offset("__dev") - k.offset("struct gendisk", "part0"), f["dkstats"]


def disks(k, cpus) -> list:
    """[{gendisk, major, first_minor, name, queue, mq, stats, in_flight}] of every disk
    (drgn's ``for_each_disk`` order: the block class's device list).

    ``stats``: ``struct disk_stats`` (include/linux/part_stat.h, 5.10–6.12:
    ``nsecs``, ``sectors``, ``ios``, ``merges`` — per stat group read, write,
    discard, flush — then ``io_ticks`` and ``local_t in_flight[2]``) summed over
    ``cpus``, as the kernel's ``part_stat_read`` does. ``in_flight`` [reads,
    writes] is that per-CPU counter, which only bio-based drivers keep (5.0+,
    ``part_in_flight``); for a blk-mq queue (``request_queue.mq_ops`` set) the
    kernel counts busy tags instead (``blk_mq_in_flight``), not read here: None.
    """
    gd = k.layout("struct gendisk", ["major", "first_minor", "minors", "disk_name", "queue"])
    ds = k.layout("struct disk_stats", ["ios", "sectors", "merges", "nsecs", "io_ticks", "in_flight"])
    mq_off = k.offset("struct request_queue", "mq_ops")
    size = k.sizeof("struct disk_stats")
    devices = _block_class_devices(k)
    out = Entries(damage=devices.damage)
    for device in devices:
        parts = _disk_parts(k, device)
        if parts is None:
            continue
        disk, stats = parts
        g = gd.read(k.reader, disk)
        q = g["queue"]
        mq = bool(q and k.reader.u64(q + mq_off))
        tot = {m: [0] * (ds.members[m].size // 8) for m in ("ios", "sectors", "merges", "nsecs",
                                                              "in_flight") if m in ds}
        ticks = 0
        for c in cpus:
            raw = k.reader.read(per_cpu_addr(k, stats, c), size)
            for m, acc in tot.items():
                off = ds.offset(m)
                for i in range(len(acc)):
                    acc[i] += int.from_bytes(raw[off + 8 * i:off + 8 * i + 8], "little",
                                             signed=(m == "in_flight"))
            ticks += ds.members["io_ticks"].decode(raw)
        flight = tot.pop("in_flight", None)
        out.append({"gendisk": disk, "major": g["major"], "first_minor": g["first_minor"],
                    "minors": g["minors"], "name": g["disk_name"].split(b"\0", 1)[0], "queue": q,
                    "mq": mq, "disk_stats": stats,
                    "stats": {m: dict(zip(DISK_STAT_GROUPS, v)) for m, v in tot.items()},
                    "io_ticks": ticks, "in_flight": None if mq or flight is None else flight})
    return out
