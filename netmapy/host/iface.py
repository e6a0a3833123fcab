"""Facts about network interfaces, read through sockets of the calling
thread's network namespace (so they stay right after ``netmapy.host.netns``
moved the thread: /sys would still show the namespace it was mounted in).

``info(ifname)`` returns an ``IfInfo``; the errors are the ones a user can
cause (missing interface, interface down) with their fix in the message.
"""

import errno
import fcntl
import socket
import struct
from dataclasses import dataclass

from ..errors import InterfaceNotFound, InterfaceDown, QueueOutOfRange
from .ethtool import driver

SIOCGIFFLAGS = 0x8913
SIOCGIFINDEX = 0x8933
SIOCGIFMTU = 0x8921
SIOCGIFHWADDR = 0x8927
SIOCGIFNETMASK = 0x891b
IFF_UP = 0x1
IFF_RUNNING = 0x40
IFF_PROMISC = 0x100
IFF_LOOPBACK = 0x8

RTM_GETLINK = 18
NLM_F_REQUEST = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_XDP = 43
IFLA_PROMISCUITY = 30
IFLA_NUM_TX_QUEUES = 31
IFLA_NUM_RX_QUEUES = 32
IFLA_XDP_ATTACHED = 2
IFLA_XDP_PROG_ID = 4
NLMSG_ERROR = 2


@dataclass(frozen=True)
class IfInfo:
    name: str
    index: int
    flags: int
    mtu: int
    mac: bytes
    num_rx_queues: int
    num_tx_queues: int
    driver: str
    xdp_prog_id: int      # 0: no XDP program attached
    xdp_mode: int         # IFLA_XDP_ATTACHED value (0 none, 1 drv, 2 skb, 3 hw)
    promiscuity: int = 0  # the kernel's count (sockets and `ip link ... promisc on`)

    @property
    def up(self):
        return bool(self.flags & IFF_UP)

    @property
    def promisc(self):
        """In promiscuous mode for any reason (SIOCGIFFLAGS shows only the
        administrative flag; the kernel's count includes socket requests)."""
        return bool(self.flags & IFF_PROMISC) or self.promiscuity > 0

    @property
    def loopback(self):
        return bool(self.flags & IFF_LOOPBACK)


def _ifreq(sock, req, ifname, fmt="16sH14s"):
    buf = struct.pack("16s16x", ifname.encode())
    try:
        return fcntl.ioctl(sock.fileno(), req, buf)
    except OSError as e:
        if e.errno == errno.ENODEV:
            raise InterfaceNotFound(ifname) from None
        raise


def _check_name(ifname):
    if not ifname or len(ifname.encode()) > 15 or "/" in ifname or any(c.isspace() for c in ifname):
        raise InterfaceNotFound(ifname)


def index(ifname):
    _check_name(ifname)
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise InterfaceNotFound(ifname) from None


def _rtnl_link(ifidx):
    """Attributes of RTM_GETLINK for one interface: {type: bytes}."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        s.bind((0, 0))
        ifi = struct.pack("BxHiII", socket.AF_UNSPEC, 0, ifidx, 0, 0)
        hdr = struct.pack("IHHII", 16 + len(ifi), RTM_GETLINK, NLM_F_REQUEST, 1, 0)
        s.send(hdr + ifi)
        data = s.recv(65536)
    finally:
        s.close()
    ln, typ = struct.unpack_from("IH", data, 0)
    if typ == NLMSG_ERROR:
        err = -struct.unpack_from("i", data, 16)[0]
        raise OSError(err, "RTM_GETLINK: " + errno.errorcode.get(err, str(err)))
    return _nested(data[16 + 16: ln])


def _nested(blob):
    out = {}
    off = 0
    while off + 4 <= len(blob):
        alen, atyp = struct.unpack_from("HH", blob, off)
        if alen < 4:
            break
        out[atyp & 0x3fff] = blob[off + 4: off + alen]
        off += (alen + 3) & ~3
    return out


def info(ifname):
    """An IfInfo for ifname in the calling thread's network namespace."""
    idx = index(ifname)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        flags = struct.unpack_from("H", _ifreq(s, SIOCGIFFLAGS, ifname), 16)[0]
        mac = _ifreq(s, SIOCGIFHWADDR, ifname)[18:24]
    finally:
        s.close()
    attrs = _rtnl_link(idx)
    u32 = lambda k, d=0: struct.unpack("I", attrs[k][:4])[0] if k in attrs else d
    xdp = _nested(attrs.get(IFLA_XDP, b""))
    prog = struct.unpack("I", xdp[IFLA_XDP_PROG_ID][:4])[0] if IFLA_XDP_PROG_ID in xdp else 0
    mode = xdp[IFLA_XDP_ATTACHED][0] if IFLA_XDP_ATTACHED in xdp else 0
    return IfInfo(ifname, idx, flags, u32(IFLA_MTU, 1500), bytes(mac),
                  u32(IFLA_NUM_RX_QUEUES, 1), u32(IFLA_NUM_TX_QUEUES, 1),
                  driver(ifname), prog, mode, u32(IFLA_PROMISCUITY, 0))


def ipv4_netmask(ifname):
    """The netmask of ifname's (primary) IPv4 address as "a.b.c.d", or None
    when it has no IPv4 address; read from the kernel (SIOCGIFNETMASK, as
    libpcap's pcap_lookupnet does) in the calling thread's namespace."""
    _check_name(ifname)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        r = _ifreq(s, SIOCGIFNETMASK, ifname)
    except OSError as e:
        if e.errno == errno.EADDRNOTAVAIL:
            return None
        raise
    finally:
        s.close()
    return socket.inet_ntoa(r[20:24])


def require(ifname, up=True, rx_queue=None, tx_queue=None):
    """info(ifname), raising the error a user can act on when the interface
    is missing, down (if up), or lacks the queue asked for."""
    i = info(ifname)
    if up and not i.up:
        raise InterfaceDown(ifname)
    if rx_queue is not None and rx_queue >= i.num_rx_queues:
        raise QueueOutOfRange(ifname, rx_queue, i.num_rx_queues, "RX")
    if tx_queue is not None and tx_queue >= i.num_tx_queues:
        raise QueueOutOfRange(ifname, tx_queue, i.num_tx_queues, "TX")
    return i
