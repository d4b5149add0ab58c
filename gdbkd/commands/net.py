"""kd net: network devices, and a task's sockets (crash's net)."""

from . import KdError, command
from ._util import KernelCommand, problem_lines
from ._sysstate import kernel, pick_task, task_header, render_header, guest_str
from ..model import net as mnet

__all__ = ["Net"]


@command
class Net(KernelCommand):
    """Network devices of every network namespace: name, flags, MTU, MAC, addresses
(crash's net). -s shows a task's sockets instead: fd, family, type, state, local
and remote address."""

    name = "net"
    json_addresses = frozenset(("task", "net", "dev", "file", "socket", "sock"))

    def add_arguments(self, p):
        p.add_argument("-s", dest="sockets", metavar="PID|TASK|COMM",
                       help="the sockets of this task")

    def run(self, args):
        k = kernel()
        if args.sockets:
            t = pick_task(args.sockets)
            return {**task_header(t), "sockets": mnet.task_sockets(k, t.addr)}
        nets, stop = mnet.net_namespaces(k)
        if not nets:
            raise KdError(f"no network namespaces ({stop or 'net_namespace_list is empty'})")
        out = []
        for net in nets:
            devs, dstop = mnet.netdevs(k, net)
            rows = []
            for dev in devs:
                i = mnet.netdev_info(k, dev)
                i["name"] = guest_str(i["name"])
                rows.append(i)
            out.append({"net": net, "init": net == k.sym("init_net"), "devices": rows,
                        "_damage": devs.damage,
                        "stop": dstop})
        problems = nets.damage + [p for ns in out for p in ns.pop("_damage")]
        return {"namespaces": out, "stop": stop, "problems": [p.to_json() for p in problems]}

    def render(self, d, args):
        if "sockets" in d:
            lines = [render_header(d),
                     " FD      SOCKET           SOCK         FAMILY:TYPE      STATE        "
                     "LOCAL                  REMOTE"]
            for s in d["sockets"]:
                ft = f"{s.get('family', '?')}:{s.get('type', '?')}"
                lines.append(f"{s['fd']:>3} {s['socket']:016x} {s.get('sock', 0):016x} {ft:<16} "
                             f"{s.get('state', s['socket_state']):<12} {s.get('local') or '-':<22} "
                             f"{s.get('remote') or '-'}")
            if not d["sockets"]:
                lines.append("(no sockets)")
            return "\n".join(lines)
        lines = []
        for ns in d["namespaces"]:
            lines.append(f"NET: {ns['net']:016x}" + (" (init_net)" if ns["init"] else ""))
            lines.append("   NET_DEVICE     NAME     MTU   MAC                FLAGS / ADDRESSES")
            for v in ns["devices"]:
                lines.append(f"{v['dev']:016x} {v['name']:<8} {v['mtu']:>5}  {v['mac'] or '-':<18} "
                             f"{'|'.join(v['flag_names']) or '0'}")
                for a in v["ipv4"] + v["ipv6"]:
                    lines.append(f"{'':>51}{a}")
        return "\n".join(lines + problem_lines(self.name, d["problems"]))
