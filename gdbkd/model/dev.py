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

from .reader import MemoryFault

__all__ = ["char_devices", "block_devices"]


def _buckets(k, sym: str):
    a = k.need_sym(sym)
    n = (k.sizeof(sym) or 255 * 8) // 8
    raw = k.reader.read(a, 8 * n)
    return [int.from_bytes(raw[8 * i:8 * i + 8], "little") for i in range(n)]


def _chain(k, first, next_off, limit=4096):
    out, seen, cur = [], set(), first
    while cur and cur not in seen and len(out) < limit:
        seen.add(cur)
        out.append(cur)
        cur = k.reader.u64(cur + next_off)
    return out


def char_devices(k) -> list:
    """[{major, baseminor, minorct, name, cdev, ops}] sorted by major, then minor."""
    lay = k.layout("struct char_device_struct", ["next", "major", "baseminor", "minorct", "name",
                                                 "cdev"])
    ops_off = k.offset("struct cdev", "ops")
    out = []
    for head in _buckets(k, "chrdevs"):
        for cd in _chain(k, head, lay.offset("next")):
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
    out = []
    for head in _buckets(k, "major_names"):
        for b in _chain(k, head, lay.offset("next")):
            f = lay.read(k.reader, b)
            out.append({"blk_major_name": b, "major": f["major"],
                        "name": f["name"].split(b"\0", 1)[0]})
    out.sort(key=lambda d: d["major"])
    return out
