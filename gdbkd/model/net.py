"""Network devices and sockets without gdb (crash's ``net``).

Namespaces: ``net_namespace_list`` through ``net->list``; devices of one
namespace: ``net->dev_base_head`` through ``net_device->dev_list`` (as drgn's
``for_each_netdev``). ``net_device`` {``name[16]``, ``ifindex``, ``flags``,
``mtu``, ``dev_addr`` (a pointer; const since 5.17), ``addr_len``,
``ip_ptr``, ``ip6_ptr``} has these members in 5.10, 6.1 and 6.12 (6.12
groups them differently, offsets come from the layouts). IPv4 addresses:
``in_device->ifa_list`` → ``in_ifaddr`` {``ifa_next``, ``ifa_address``,
``ifa_prefixlen``}; IPv6: ``inet6_dev->addr_list`` of ``inet6_ifaddr``
(``if_list``, ``addr``, ``prefix_len``).

Sockets of a task: its open files whose ``f_op`` is ``socket_file_ops``;
``file->private_data`` is the ``struct socket`` {``state``, ``type``, ``sk``};
``struct sock`` begins with ``struct sock_common`` {``skc_daddr``,
``skc_rcv_saddr``, ``skc_dport`` (network order), ``skc_num`` (host order),
``skc_family``, ``skc_state``, ``skc_v6_daddr``, ``skc_v6_rcv_saddr``};
``sk_type`` and ``sk_protocol`` are plain ``u16`` since 5.6 (commit
bf9765145b85; bitfields before, not read here). INET, INET6 and UNIX sockets keep
TCP_* states in ``skc_state`` (af_unix uses TCP_LISTEN, TCP_ESTABLISHED, TCP_CLOSE).
"""

import ipaddress

from .lists import list_entries
from .fs import task_files
from ..textutil import escape

__all__ = ["net_namespaces", "netdevs", "netdev_info", "task_sockets", "IFF_FLAGS",
           "TCP_STATES", "SOCK_TYPES", "FAMILIES"]

IFF_FLAGS = [(0x1, "UP"), (0x2, "BROADCAST"), (0x4, "DEBUG"), (0x8, "LOOPBACK"),
             (0x10, "POINTOPOINT"), (0x20, "NOTRAILERS"), (0x40, "RUNNING"), (0x80, "NOARP"),
             (0x100, "PROMISC"), (0x200, "ALLMULTI"), (0x400, "MASTER"), (0x800, "SLAVE"),
             (0x1000, "MULTICAST"), (0x2000, "PORTSEL"), (0x4000, "AUTOMEDIA"),
             (0x8000, "DYNAMIC"), (0x10000, "LOWER_UP"), (0x20000, "DORMANT"),
             (0x40000, "ECHO")]
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
              6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
              11: "CLOSING", 12: "NEW_SYN_RECV"}
SS_STATES = {0: "FREE", 1: "UNCONNECTED", 2: "CONNECTING", 3: "CONNECTED", 4: "DISCONNECTING"}
SOCK_TYPES = {1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 6: "DCCP",
              10: "PACKET"}
FAMILIES = {1: "UNIX", 2: "INET", 10: "INET6", 16: "NETLINK", 17: "PACKET", 40: "VSOCK"}

_DEV = ["name", "ifindex", "flags", "mtu", "dev_addr", "addr_len", "ip_ptr", "ip6_ptr",
        "dev_list"]
_SOCK = ["__sk_common.skc_daddr", "__sk_common.skc_rcv_saddr", "__sk_common.skc_dport",
         "__sk_common.skc_num", "__sk_common.skc_family", "__sk_common.skc_state",
         "__sk_common.skc_v6_daddr", "__sk_common.skc_v6_rcv_saddr", "sk_type", "sk_protocol"]


def net_namespaces(k):
    """(``struct net`` addresses, stop reason) on ``net_namespace_list``."""
    return list_entries(k.reader, k.need_sym("net_namespace_list"),
                        k.offset("struct net", "list"), name="network namespace list (net_namespace_list)")


def netdevs(k, net: int):
    """(``struct net_device`` addresses of namespace ``net``, stop reason)."""
    name_off = k.offset("struct net_device", "name")

    def describe(dev):
        return f"device {escape(k.reader.cstring(dev + name_off, 16))}"
    return list_entries(k.reader, net + k.offset("struct net", "dev_base_head"),
                        k.offset("struct net_device", "dev_list"),
                        name=f"net device list of namespace {net:#x} (net.dev_base_head)",
                        describe=describe)


def _ipv4_addrs(k, in_dev: int) -> list:
    out = []
    if not in_dev:
        return out
    lay = k.layout("struct in_ifaddr", ["ifa_next", "ifa_address", "ifa_prefixlen"])
    ifa = k.reader.u64(in_dev + k.offset("struct in_device", "ifa_list"))
    seen = set()
    while ifa and ifa not in seen and len(out) < 256:
        seen.add(ifa)
        f = lay.read(k.reader, ifa)
        addr = k.reader.read(ifa + lay.offset("ifa_address"), 4)
        out.append(f"{ipaddress.IPv4Address(addr)}/{f['ifa_prefixlen']}")
        ifa = f["ifa_next"]
    return out


def _ipv6_addrs(k, in6: int) -> list:
    out = []
    if not in6:
        return out
    lay = k.layout("struct inet6_ifaddr", ["if_list", "addr", "prefix_len"])
    ents, _ = list_entries(k.reader, in6 + k.offset("struct inet6_dev", "addr_list"),
                           lay.offset("if_list"), limit=256)
    for a in ents:
        f = lay.read(k.reader, a)
        out.append(f"{ipaddress.IPv6Address(bytes(f['addr']))}/{f['prefix_len']}")
    return out


def netdev_info(k, dev: int) -> dict:
    f = k.layout("struct net_device", _DEV).read(k.reader, dev)
    n = min(f["addr_len"], 32)
    mac = k.reader.read(f["dev_addr"], n) if f["dev_addr"] and n else b""
    return {"dev": dev, "name": f["name"].split(b"\0", 1)[0], "ifindex": f["ifindex"],
            "flags": f["flags"], "flag_names": [nm for bit, nm in IFF_FLAGS if f["flags"] & bit],
            "mtu": f["mtu"], "mac": ":".join(f"{b:02x}" for b in mac),
            "ipv4": _ipv4_addrs(k, f["ip_ptr"]), "ipv6": _ipv6_addrs(k, f.get("ip6_ptr", 0))}


def _endpoint(family, addr: bytes, port: int) -> str:
    if family == 2:
        return f"{ipaddress.IPv4Address(addr[:4])}:{port}"
    if family == 10:
        return f"[{ipaddress.IPv6Address(addr[:16])}]:{port}"
    return ""


def sock_info(k, sk: int) -> dict:
    lay = k.layout("struct sock", _SOCK)
    f = lay.read(k.reader, sk)
    fam = f["__sk_common.skc_family"]
    if fam == 10:
        laddr = bytes(f["__sk_common.skc_v6_rcv_saddr"])
        raddr = bytes(f["__sk_common.skc_v6_daddr"])
    else:
        laddr = f["__sk_common.skc_rcv_saddr"].to_bytes(4, "little")
        raddr = f["__sk_common.skc_daddr"].to_bytes(4, "little")
    dport = int.from_bytes(f["__sk_common.skc_dport"].to_bytes(2, "little"), "big")
    st = f["__sk_common.skc_state"]
    return {"sock": sk, "family": FAMILIES.get(fam, str(fam)), "family_num": fam,
            "type": SOCK_TYPES.get(f.get("sk_type"), str(f.get("sk_type"))),
            "protocol": f.get("sk_protocol"),
            "state": TCP_STATES.get(st, str(st)) if fam in (1, 2, 10) else str(st),
            "local": _endpoint(fam, laddr, f["__sk_common.skc_num"]),
            "remote": _endpoint(fam, raddr, dport)}


def task_sockets(k, task: int) -> list:
    """[{fd, file, socket, sock, family, type, state, local, remote}] of a task's sockets."""
    ops = k.need_sym("socket_file_ops")
    file_lay = k.layout("struct file", ["f_op", "private_data"])
    sl = k.layout("struct socket", ["state", "type", "sk"])
    out = []
    for fd, file in task_files(k, task)[2]:
        f = file_lay.read(k.reader, file)
        if f["f_op"] != ops or not f["private_data"]:
            continue
        s = sl.read(k.reader, f["private_data"])
        row = {"fd": fd, "file": file, "socket": f["private_data"],
               "socket_state": SS_STATES.get(s["state"], str(s["state"]))}
        if s["sk"]:
            row.update(sock_info(k, s["sk"]))
        out.append(row)
    return out
