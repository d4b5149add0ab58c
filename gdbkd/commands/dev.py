"""kd dev: character and block device majors (crash's dev, /proc/devices)."""

from . import command
from ._util import KernelCommand
from ._sysstate import kernel, guest_str, symbol_name
from ..model import dev as mdev

__all__ = ["Dev"]


@command
class Dev(KernelCommand):
    """Character and block devices: major, name and, for character devices, the minor
range, the struct cdev and its file operations (crash's dev). Disk I/O statistics
(crash's dev -d) are not implemented."""

    name = "dev"

    def run(self, args):
        k = kernel()
        chars = mdev.char_devices(k)
        for c in chars:
            c["name"] = guest_str(c["name"])
            c["ops_name"] = symbol_name(c["ops"])
        blocks = mdev.block_devices(k)
        for b in blocks:
            b["name"] = guest_str(b["name"])
        return {"char": chars, "block": blocks}

    def render(self, d, args):
        lines = ["CHRDEV  MINORS      NAME             CDEV           OPERATIONS"]
        for c in d["char"]:
            minors = f"{c['baseminor']}-{c['baseminor'] + c['minorct'] - 1}"
            cdev = f"{c['cdev']:016x}" if c["cdev"] else "-".ljust(16)
            lines.append(f"  {c['major']:>4}  {minors:<11} {c['name']:<16} {cdev} "
                         f"{c['ops_name'] or (hex(c['ops']) if c['ops'] else '-')}")
        lines.append("")
        lines.append("BLKDEV  NAME             BLK_MAJOR_NAME")
        for b in d["block"]:
            lines.append(f"  {b['major']:>4}  {b['name']:<16} {b['blk_major_name']:016x}")
        return "\n".join(lines)
