"""ntuple flow steering rules (``ethtool -N``): the codec of ``struct
ethtool_rx_flow_spec`` between the rule a user writes (flow type, prefixes,
ports, queue) and the bytes the ETHTOOL_SRXCLSRLINS ioctl takes
(``netmapy.host.ethtool.Ethtool.ins_rule``), and back.

Errors are ``FlowSpecError`` unless the caller names its own class
(``exc=``: ``middlebox.nic`` passes ``NicError``).
"""

import ipaddress
import struct

from ..errors import NetmapyError
from .ethtool import FLOW_SPEC, RX_CLS_FLOW_DISC, TCPIP4, TCPIP6, USRIP4

__all__ = ["FlowSpecError", "FLOW_TYPES", "encode_flow_spec", "decode_flow_spec",
           "rule_text", "rule_identity"]


class FlowSpecError(NetmapyError, ValueError):
    """A flow rule that cannot be encoded (bad flow type, address, port or
    queue); the message says which and what is allowed."""


FLOW_EXT = 0x80000000
FLOW_MAC_EXT = 0x40000000
FLOW_RSS = 0x20000000

TCP_V4_FLOW, UDP_V4_FLOW, SCTP_V4_FLOW = 0x01, 0x02, 0x03
TCP_V6_FLOW, UDP_V6_FLOW, SCTP_V6_FLOW = 0x05, 0x06, 0x07
IPV4_USER_FLOW = 0x0d
ETH_RX_NFC_IP4 = 1

FLOW_TYPES = {"tcp4": TCP_V4_FLOW, "udp4": UDP_V4_FLOW, "sctp4": SCTP_V4_FLOW,
              "tcp6": TCP_V6_FLOW, "udp6": UDP_V6_FLOW, "sctp6": SCTP_V6_FLOW,
              "ip4": IPV4_USER_FLOW}
_FLOW_NAMES = {v: k for k, v in FLOW_TYPES.items()}


def _addr(text, v6, exc):
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise exc("bad %s address %r" % ("IPv6" if v6 else "IPv4", text)) from None
    if (net.version == 6) != v6:
        raise exc("address %r is IPv%d, the flow type wants IPv%d"
                       % (text, net.version, 6 if v6 else 4))
    return net


def _port(p, what, exc):
    if p is None:
        return None
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
        raise exc("bad %s %r: a port is 0..65535" % (what, p))
    return p


def encode_flow_spec(flow_type, src=None, dst=None, sport=None, dport=None, queue=0,
                     exc=FlowSpecError):
    """(struct ethtool_rx_flow_spec bytes, ethtool -N arguments)."""
    if flow_type not in FLOW_TYPES:
        raise exc("unknown flow type %r (one of: %s)"
                       % (flow_type, " ".join(FLOW_TYPES)))
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < -1:
        raise exc("bad queue %r: a queue number, or -1 to drop" % (queue,))
    ft = FLOW_TYPES[flow_type]
    v6 = flow_type.endswith("6")
    sport, dport = _port(sport, "source port", exc), _port(dport, "destination port", exc)
    args = ["flow-type", flow_type]
    alen = 16 if v6 else 4
    h = {"src": bytes(alen), "dst": bytes(alen)}
    m = {"src": bytes(alen), "dst": bytes(alen)}
    for key, val, opt in (("src", src, "src-ip"), ("dst", dst, "dst-ip")):
        if val is None:
            continue
        net = _addr(val, v6, exc)
        h[key] = net.network_address.packed
        m[key] = net.netmask.packed
        args += [opt, str(net.network_address)]
        if net.prefixlen != net.max_prefixlen:
            args += ["m", str(ipaddress.ip_address(bytes(~b & 0xff for b in net.netmask.packed)))]
    hp = {"s": struct.pack("!H", sport or 0), "d": struct.pack("!H", dport or 0)}
    mp = {"s": b"\xff\xff" if sport is not None else b"\0\0",
          "d": b"\xff\xff" if dport is not None else b"\0\0"}
    if sport is not None:
        args += ["src-port", str(sport)]
    if dport is not None:
        args += ["dst-port", str(dport)]
    if ft == IPV4_USER_FLOW:
        if sport is not None or dport is not None:
            raise exc("flow type ip4 matches addresses only: use tcp4/udp4/sctp4 "
                           "for ports")
        hu = struct.pack(USRIP4, h["src"], h["dst"], b"", 0, ETH_RX_NFC_IP4, 0)
        mu = struct.pack(USRIP4, m["src"], m["dst"], b"", 0, 0, 0)
    else:
        fmt = TCPIP6 if v6 else TCPIP4
        hu = struct.pack(fmt, h["src"], h["dst"], hp["s"], hp["d"], 0)
        mu = struct.pack(fmt, m["src"], m["dst"], mp["s"], mp["d"], 0)
    cookie = RX_CLS_FLOW_DISC if queue == -1 else queue
    args += ["action", str(queue)]
    fs = struct.pack(FLOW_SPEC, ft, hu, b"", mu, b"", cookie, 0)
    return fs, args


def decode_flow_spec(fs):
    """struct ethtool_rx_flow_spec bytes -> dict."""
    ft, hu, hext, mu, mext, cookie, loc = struct.unpack(FLOW_SPEC, fs)
    base = ft & ~(FLOW_EXT | FLOW_MAC_EXT | FLOW_RSS)
    d = {"flow_type": _FLOW_NAMES.get(base, "0x%x" % base), "src": None, "dst": None,
         "sport": None, "dport": None,
         "queue": -1 if cookie == RX_CLS_FLOW_DISC else cookie & 0xffffffff,
         "loc": loc}
    if base in (TCP_V4_FLOW, UDP_V4_FLOW, SCTP_V4_FLOW, TCP_V6_FLOW, UDP_V6_FLOW,
                SCTP_V6_FLOW, IPV4_USER_FLOW):
        v6 = base in (TCP_V6_FLOW, UDP_V6_FLOW, SCTP_V6_FLOW)
        if base == IPV4_USER_FLOW:
            hs, hd, _, _, _, _ = struct.unpack_from(USRIP4, hu)
            ms, md, _, _, _, _ = struct.unpack_from(USRIP4, mu)
            hps = hpd = mps = mpd = b"\0\0"
        else:
            fmt = TCPIP6 if v6 else TCPIP4
            hs, hd, hps, hpd, _ = struct.unpack_from(fmt, hu)
            ms, md, mps, mpd, _ = struct.unpack_from(fmt, mu)
        for key, a, msk in (("src", hs, ms), ("dst", hd, md)):
            if any(msk):
                plen = bin(int.from_bytes(msk, "big")).count("1")
                ip = ipaddress.ip_address(a)
                d[key] = str(ip) if plen == len(a) * 8 else "%s/%d" % (ip, plen)
        if any(mps):
            d["sport"] = struct.unpack("!H", hps)[0]
        if any(mpd):
            d["dport"] = struct.unpack("!H", hpd)[0]
    return d


def rule_text(d):
    """ethtool -N arguments describing a decoded rule."""
    a = ["flow-type", d["flow_type"]]
    for key, opt in (("src", "src-ip"), ("dst", "dst-ip")):
        if d.get(key):
            net = ipaddress.ip_network(d[key], strict=False)
            a += [opt, str(net.network_address)]
            if net.prefixlen != net.max_prefixlen:
                a += ["m", str(ipaddress.ip_address(
                    bytes(~b & 0xff for b in net.netmask.packed)))]
    if d.get("sport") is not None:
        a += ["src-port", str(d["sport"])]
    if d.get("dport") is not None:
        a += ["dst-port", str(d["dport"])]
    a += ["action", str(d["queue"])]
    if d.get("loc") is not None:
        a += ["loc", str(d["loc"])]
    return " ".join(a)


def rule_identity(fs):
    """What a rule matches and where it sends (location excluded)."""
    d = decode_flow_spec(fs)
    d.pop("loc", None)
    return tuple(sorted(d.items()))
