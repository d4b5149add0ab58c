"""kd dev: character and block device majors (crash's dev, /proc/devices); -d disk I/O
statistics (crash's dev -d, /proc/diskstats)."""

from . import command
from ._util import KernelCommand, problem_lines
from ._sysstate import kernel, guest_str, symbol_name
from ..model import dev as mdev
from ..model.percpu import possible_cpus

__all__ = ["Dev"]


@command
class Dev(KernelCommand):
    """Character and block devices: major, name and, for character devices, the minor
range, the struct cdev and its file operations (crash's dev). With -d, every disk
(gendisk) with its request queue and I/O statistics summed over the possible CPUs,
as /proc/diskstats counts them, and the requests in flight where the kernel keeps a
counter for them (bio-based drivers; blk-mq queues count busy tags, shown as -)."""

    name = "dev"
    json_addresses = frozenset(("char_device_struct", "cdev", "ops", "blk_major_name", "gendisk",
                                "queue", "disk_stats"))

    def add_arguments(self, p):
        p.add_argument("-d", dest="disks", action="store_true",
                       help="disk I/O statistics (crash's dev -d)")

    def run(self, args):
        k = kernel()
        if args.disks:
            disks = mdev.disks(k, possible_cpus(k))
            for d in disks:
                d["name"] = guest_str(d["name"])
            return {"disks": disks, "problems": [p.to_json() for p in disks.damage]}
        chars = mdev.char_devices(k)
        for c in chars:
            c["name"] = guest_str(c["name"])
            c["ops_name"] = symbol_name(c["ops"])
        blocks = mdev.block_devices(k)
        for b in blocks:
            b["name"] = guest_str(b["name"])
        return {"char": chars, "block": blocks,
                "problems": [p.to_json() for p in chars.damage + blocks.damage]}

    def render(self, d, args):
        if "disks" in d:
            return "\n".join([self._render_disks(d["disks"])]
                             + problem_lines(self.name, d["problems"]))
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
        return "\n".join(lines + problem_lines(self.name, d["problems"]))

    @staticmethod
    def _render_disks(disks):
        if not disks:
            return "(no disks)"
        lines = ["MAJOR:MIN     GENDISK      NAME       REQUEST_QUEUE    MQ  IN_FLIGHT(R/W) "
                 "   READS   WRITES  RD_SECTORS  WR_SECTORS"]
        for x in disks:
            ios, sec = x["stats"]["ios"], x["stats"]["sectors"]
            fl = "-" if x["in_flight"] is None else f"{x['in_flight'][0]}/{x['in_flight'][1]}"
            lines.append(f"{x['major']:>5}:{x['first_minor']:<3} {x['gendisk']:016x} "
                         f"{x['name']:<10} {x['queue']:016x} {'y' if x['mq'] else 'n':>3}  {fl:>14} "
                         f"{ios['read']:>8} {ios['write']:>8} {sec['read']:>11} {sec['write']:>11}")
        return "\n".join(lines)
