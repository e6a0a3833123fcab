"""The ethtool ioctl (SIOCETHTOOL): the one codec of its structs.

Every part of netmapy that asks a driver something goes through here: the
interface facts (``netmapy.host.iface``: the driver name), the netmap
backend's preflight (offload features, channels, descriptor counts) and the
middlebox's NIC control plane (``middlebox.nic``: channels, RSS, ntuple
rules, features).  The structs are packed with the layouts of
``include/uapi/linux/ethtool.h``; ``LAYOUT`` lists their sizes and offsets
(checked against a C compiler by tests/test_nic.py).

``Ethtool(ifname, sock)`` is one interface through one ``AF_INET`` socket
(the socket's network namespace is the interface's: make it inside
``netmapy.host.netns.netns(...)``).  Its methods raise ``OSError`` with the
driver's errno and nothing else: callers that know what the step means to
a user turn it into their own error (``middlebox.nic`` names the step, the
device and the software alternative).  ``call(ifname, payload)`` is the
one-shot form; ``driver(ifname)`` the driver name or ''.
"""

import ctypes
import errno
import fcntl
import socket
import struct

__all__ = ["Ethtool", "call", "driver", "LAYOUT", "FEATURE_ALIASES", "ETHTOOL_K_ALIASES",
           "ETHTOOL_K_GROUPS", "IFREQ_SIZE", "ifreq"]

# uapi constants (include/uapi/linux/ethtool.h, linux/sockios.h)
SIOCETHTOOL = 0x8946
SIOCGIFINDEX = 0x8933

ETHTOOL_GDRVINFO = 0x03
ETHTOOL_GRINGPARAM = 0x10
ETHTOOL_GSTRINGS = 0x1b
ETHTOOL_GRXRINGS = 0x2d
ETHTOOL_GRXCLSRLCNT = 0x2e
ETHTOOL_GRXCLSRULE = 0x2f
ETHTOOL_GRXCLSRLALL = 0x30
ETHTOOL_SRXCLSRLDEL = 0x31
ETHTOOL_SRXCLSRLINS = 0x32
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GRXFHINDIR = 0x38
ETHTOOL_SRXFHINDIR = 0x39
ETHTOOL_GFEATURES = 0x3a
ETHTOOL_SFEATURES = 0x3b
ETHTOOL_GCHANNELS = 0x3c
ETHTOOL_SCHANNELS = 0x3d
ETHTOOL_GRSSH = 0x46

ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32

ETHTOOL_F_UNSUPPORTED = 1 << 0
ETHTOOL_F_WISH = 1 << 1

RX_CLS_FLOW_DISC = 0xffffffffffffffff
RX_CLS_LOC_SPECIAL = 0x80000000
RX_CLS_LOC_ANY = 0xffffffff

# Struct layouts.  "=" is native byte order with no implicit alignment: every
# pad byte the C compiler inserts is written out ("x"), so calcsize() is the
# C sizeof().  Network-order fields are packed as raw bytes ("4s", "2s").
IFREQ_SIZE = 40                        # struct ifreq on LP64
CHANNELS = "=9I"                       # struct ethtool_channels
RINGPARAM = "=9I"                      # struct ethtool_ringparam
DRVINFO = "=I32s32s32s32s32s12s5I"     # struct ethtool_drvinfo
SSET_INFO = "=IIQ"                     # struct ethtool_sset_info (+ u32 data[])
GSTRINGS = "=III"                      # struct ethtool_gstrings (+ u8 data[])
FEATURES_HDR = "=II"                   # ethtool_[gs]features (+ blocks)
GET_FEATURES_BLOCK = "=4I"             # available, requested, active, never_changed
SET_FEATURES_BLOCK = "=2I"             # valid, requested
RXFH_INDIR = "=II"                     # struct ethtool_rxfh_indir (+ u32 ring_index[])
RXFH = "=IIIIB3xI"                     # struct ethtool_rxfh (+ u32 indir[], u8 key[])
FLOW_UNION_SIZE = 52                   # union ethtool_flow_union
FLOW_EXT_SIZE = 20                     # struct ethtool_flow_ext
FLOW_SPEC = "=I52s20s52s20s4xQI4x"     # struct ethtool_rx_flow_spec
RXNFC_HDR = "=IIQ"                     # cmd, flow_type, data
RXNFC = "=IIQ168sI4x"                  # struct ethtool_rxnfc (fs inline, rule_cnt)
RXNFC_RULE_LOCS = 188                  # offsetof(struct ethtool_rxnfc, rule_locs)
TCPIP4 = "=4s4s2s2sB3x"                # struct ethtool_tcpip4_spec
TCPIP6 = "=16s16s2s2sB3x"              # struct ethtool_tcpip6_spec
USRIP4 = "=4s4s4sBBBx"                 # struct ethtool_usrip4_spec

LAYOUT = {
    "sizeof": {
        "ethtool_channels": struct.calcsize(CHANNELS),
        "ethtool_ringparam": struct.calcsize(RINGPARAM),
        "ethtool_drvinfo": struct.calcsize(DRVINFO),
        "ethtool_sset_info": struct.calcsize(SSET_INFO),
        "ethtool_gstrings": struct.calcsize(GSTRINGS),
        "ethtool_gfeatures": struct.calcsize(FEATURES_HDR),
        "ethtool_sfeatures": struct.calcsize(FEATURES_HDR),
        "ethtool_get_features_block": struct.calcsize(GET_FEATURES_BLOCK),
        "ethtool_set_features_block": struct.calcsize(SET_FEATURES_BLOCK),
        "ethtool_rxfh_indir": struct.calcsize(RXFH_INDIR),
        "ethtool_rxfh": struct.calcsize(RXFH),
        "ethtool_rx_flow_spec": struct.calcsize(FLOW_SPEC),
        "ethtool_rxnfc": struct.calcsize(RXNFC),
        "ethtool_flow_ext": FLOW_EXT_SIZE,
        "ethtool_tcpip4_spec": struct.calcsize(TCPIP4),
        "ethtool_tcpip6_spec": struct.calcsize(TCPIP6),
        "ethtool_usrip4_spec": struct.calcsize(USRIP4),
        "ethtool_flow_union": FLOW_UNION_SIZE,
    },
    "offsetof": {
        "ethtool_rxnfc.data": struct.calcsize("=II"),
        "ethtool_rxnfc.fs": struct.calcsize(RXNFC_HDR),
        "ethtool_rxnfc.rule_cnt": struct.calcsize(RXNFC_HDR + "168s"),
        "ethtool_rxnfc.rule_locs": RXNFC_RULE_LOCS,
        "ethtool_rx_flow_spec.h_u": 4,
        "ethtool_rx_flow_spec.h_ext": struct.calcsize("=I52s"),
        "ethtool_rx_flow_spec.m_u": struct.calcsize("=I52s20s"),
        "ethtool_rx_flow_spec.m_ext": struct.calcsize("=I52s20s52s"),
        "ethtool_rx_flow_spec.ring_cookie": struct.calcsize("=I52s20s52s20s4x"),
        "ethtool_rx_flow_spec.location": struct.calcsize("=I52s20s52s20s4xQ"),
        "ethtool_rxfh.hfunc": struct.calcsize("=IIII"),
        "ethtool_rxfh.rss_config": struct.calcsize(RXFH),
        "ethtool_drvinfo.bus_info": struct.calcsize("=I32s32s32s"),
        "ethtool_sset_info.data": struct.calcsize(SSET_INFO),
        "ethtool_tcpip6_spec.psrc": struct.calcsize("=16s16s"),
        "ethtool_tcpip6_spec.tclass": struct.calcsize("=16s16s2s2s"),
        "ethtool_usrip4_spec.proto": struct.calcsize("=4s4s4sBB"),
    },
}
assert LAYOUT["offsetof"]["ethtool_rxnfc.rule_cnt"] == 184
FS_LOCATION = LAYOUT["offsetof"]["ethtool_rx_flow_spec.location"]

# ethtool -K short (and legacy long) names -> kernel feature name patterns,
# as ethtool's off_flag_def table maps them.
FEATURE_ALIASES = {
    "rx": ("rx-checksum",),
    "tx": ("tx-checksum-*",),
    "sg": ("tx-scatter-gather*",),
    "tso": ("tx-tcp*-segmentation",),
    "ufo": ("tx-udp-fragmentation",),
    "gso": ("tx-generic-segmentation",),
    "gro": ("rx-gro",),
    "lro": ("rx-lro",),
    "rxvlan": ("rx-vlan-hw-parse",),
    "txvlan": ("tx-vlan-hw-insert",),
    "ntuple": ("rx-ntuple-filter",),
    "rxhash": ("rx-hashing",),
}
LEGACY_LONG = {
    "rx-checksumming": "rx", "tx-checksumming": "tx", "scatter-gather": "sg",
    "tcp-segmentation-offload": "tso", "udp-fragmentation-offload": "ufo",
    "generic-segmentation-offload": "gso", "generic-receive-offload": "gro",
    "large-receive-offload": "lro", "rx-vlan-offload": "rxvlan",
    "tx-vlan-offload": "txvlan", "ntuple-filters": "ntuple",
    "receive-hashing": "rxhash",
}
# ``ethtool -k`` prints some features under their old names (-> kernel name),
# and some groups that are no feature of their own
ETHTOOL_K_ALIASES = {
    "rx-checksumming": "rx-checksum",
    "generic-receive-offload": "rx-gro",
    "large-receive-offload": "rx-lro",
    "rx-vlan-offload": "rx-vlan-hw-parse",
    "tx-vlan-offload": "tx-vlan-hw-insert",
    "generic-segmentation-offload": "tx-generic-segmentation",
    "ntuple-filters": "rx-ntuple-filter",
    "receive-hashing": "rx-hashing",
}
ETHTOOL_K_GROUPS = {"tx-checksumming", "scatter-gather",
                    "tcp-segmentation-offload", "udp-fragmentation-offload"}


def _pad(b, n):
    return bytes(b) + bytes(n - len(b))


def ifreq(ifname, tail=b""):
    """A ``struct ifreq`` (40 bytes) for ifname, with ``tail`` in its union."""
    return bytearray(_pad(struct.pack("16s", ifname.encode()) + tail, IFREQ_SIZE))


def _cstr(b):
    return b.split(b"\0", 1)[0].decode(errors="replace")


class Ethtool:
    """SIOCETHTOOL on one interface through one socket (``sock``: an
    AF_INET datagram socket made in the interface's namespace; one is made
    in the calling thread's namespace when not given, closed by close())."""

    def __init__(self, ifname, sock=None):
        self.ifname = ifname
        self._own = sock is None
        self.sock = sock if sock is not None else socket.socket(socket.AF_INET,
                                                                socket.SOCK_DGRAM)
        self._feature_names = None

    def close(self):
        if self._own and self.sock is not None:
            self.sock.close()
        self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the ioctl -----------------------------------------------------
    def call(self, payload):
        """SIOCETHTOOL with ``payload`` (an ethtool struct); returns (the
        ioctl's return value, the struct as the kernel left it).  OSError
        with the driver's errno on failure."""
        buf = ctypes.create_string_buffer(bytes(payload), len(payload))
        ifr = ifreq(self.ifname, struct.pack("P", ctypes.addressof(buf)))
        rc = fcntl.ioctl(self.sock.fileno(), SIOCETHTOOL, ifr, True)
        return rc, buf.raw

    def ifindex(self):
        ifr = ifreq(self.ifname)
        fcntl.ioctl(self.sock.fileno(), SIOCGIFINDEX, ifr, True)
        return struct.unpack_from("i", ifr, 16)[0]

    # -- driver --------------------------------------------------------
    def drvinfo(self):
        """{'driver', 'version', 'bus_info'} (ETHTOOL_GDRVINFO)."""
        _, out = self.call(struct.pack(DRVINFO, ETHTOOL_GDRVINFO, *([b""] * 6), 0, 0, 0, 0, 0))
        f = struct.unpack(DRVINFO, out)
        return {"driver": _cstr(f[1]), "version": _cstr(f[2]), "bus_info": _cstr(f[4])}

    # -- channels and rings ----------------------------------------------
    def channels(self):
        """{'max': {rx, tx, other, combined}, 'current': {...}} (ethtool -l)."""
        _, out = self.call(struct.pack(CHANNELS, ETHTOOL_GCHANNELS, *([0] * 8)))
        v = struct.unpack(CHANNELS, out)[1:]
        keys = ("rx", "tx", "other", "combined")
        return {"max": dict(zip(keys, v[:4])), "current": dict(zip(keys, v[4:]))}

    def set_channels(self, mx, cur):
        """ETHTOOL_SCHANNELS: ``mx`` and ``cur`` as channels() gives them."""
        self.call(struct.pack(CHANNELS, ETHTOOL_SCHANNELS, mx["rx"], mx["tx"], mx["other"],
                              mx["combined"], cur["rx"], cur["tx"], cur["other"],
                              cur["combined"]))

    def ringparam(self):
        """{'max': {rx, rx_mini, rx_jumbo, tx}, 'current': {...}} (ethtool -g)."""
        _, out = self.call(struct.pack(RINGPARAM, ETHTOOL_GRINGPARAM, *([0] * 8)))
        v = struct.unpack(RINGPARAM, out)[1:]
        keys = ("rx", "rx_mini", "rx_jumbo", "tx")
        return {"max": dict(zip(keys, v[:4])), "current": dict(zip(keys, v[4:]))}

    # -- features ------------------------------------------------------
    def feature_names(self):
        """The kernel's feature names, by bit (ETHTOOL_GSTRINGS); OSError
        EOPNOTSUPP when the device has none."""
        if self._feature_names is None:
            _, out = self.call(struct.pack(SSET_INFO, ETHTOOL_GSSET_INFO, 0,
                                           1 << ETH_SS_FEATURES) + bytes(4))
            mask = struct.unpack_from(SSET_INFO, out)[2]
            if not mask & (1 << ETH_SS_FEATURES):
                raise OSError(errno.EOPNOTSUPP, "%s: no feature strings" % self.ifname)
            n = struct.unpack_from("=I", out, struct.calcsize(SSET_INFO))[0]
            _, out = self.call(struct.pack(GSTRINGS, ETHTOOL_GSTRINGS, ETH_SS_FEATURES, n)
                               + bytes(ETH_GSTRING_LEN * n))
            n = struct.unpack_from(GSTRINGS, out)[2]
            base = struct.calcsize(GSTRINGS)
            self._feature_names = [
                _cstr(out[base + i * ETH_GSTRING_LEN: base + (i + 1) * ETH_GSTRING_LEN])
                for i in range(n)]
        return self._feature_names

    def features(self):
        """{kernel feature name: {'available', 'requested', 'active',
        'fixed'}} (ethtool -k; available: the device can change it)."""
        names = self.feature_names()
        words = (len(names) + 31) // 32
        _, out = self.call(struct.pack(FEATURES_HDR, ETHTOOL_GFEATURES, words)
                           + bytes(16 * words))
        base = struct.calcsize(FEATURES_HDR)
        blocks = [struct.unpack_from(GET_FEATURES_BLOCK, out, base + 16 * i)
                  for i in range(words)]
        feats = {}
        for i, name in enumerate(names):
            if not name:
                continue
            avail, req, act, never = blocks[i // 32]
            bit = 1 << (i % 32)
            feats[name] = {"available": bool(avail & bit), "requested": bool(req & bit),
                           "active": bool(act & bit),
                           "fixed": not (avail & bit) or bool(never & bit)}
        return feats

    def set_features(self, wanted):
        """Set kernel features {name: bool} (ETHTOOL_SFEATURES); returns the
        ioctl's value (ETHTOOL_F_WISH: some were not applied as asked)."""
        names = self.feature_names()
        words = (len(names) + 31) // 32
        valid, req = [0] * words, [0] * words
        for name, on in wanted.items():
            i = names.index(name)
            valid[i // 32] |= 1 << (i % 32)
            if on:
                req[i // 32] |= 1 << (i % 32)
        rc, _ = self.call(struct.pack(FEATURES_HDR, ETHTOOL_SFEATURES, words) + b"".join(
            struct.pack(SET_FEATURES_BLOCK, v, r) for v, r in zip(valid, req)))
        return rc

    # -- RSS -----------------------------------------------------------
    def rx_rings(self):
        """Number of RX rings RSS spreads over (ETHTOOL_GRXRINGS)."""
        _, out = self.call(struct.pack(RXNFC, ETHTOOL_GRXRINGS, 0, 0, b"", 0))
        return struct.unpack(RXNFC, out)[2]

    def rss_indir(self):
        """The RSS indirection table (queue per entry; [] when the device
        has none)."""
        _, out = self.call(struct.pack(RXFH_INDIR, ETHTOOL_GRXFHINDIR, 0))
        size = struct.unpack(RXFH_INDIR, out)[1]
        if size == 0:
            return []
        _, out = self.call(struct.pack(RXFH_INDIR, ETHTOOL_GRXFHINDIR, size) + bytes(4 * size))
        return list(struct.unpack_from("=%dI" % size, out, 8))

    def set_rss_indir(self, table):
        self.call(struct.pack(RXFH_INDIR, ETHTOOL_SRXFHINDIR, len(table))
                  + struct.pack("=%dI" % len(table), *table))

    def rss_key(self):
        """(hash key as 'aa:bb:...' or None, hash function bits) (ETHTOOL_GRSSH)."""
        _, out = self.call(struct.pack(RXFH, ETHTOOL_GRSSH, 0, 0, 0, 0, 0))
        _, _, isz, ksz, hfunc, _ = struct.unpack(RXFH, out)
        if ksz == 0:
            return None, hfunc
        _, out = self.call(struct.pack(RXFH, ETHTOOL_GRSSH, 0, isz, ksz, 0, 0)
                           + bytes(4 * isz + ksz))
        hdr = struct.calcsize(RXFH)
        key = out[hdr + 4 * isz: hdr + 4 * isz + ksz]
        return ":".join("%02x" % b for b in key), out[16]

    # -- ntuple rules (struct ethtool_rxnfc) ------------------------------
    def rxnfc(self, cmd, fs=b"", loc=0, data=0, rule_cnt=0, extra=b""):
        """One ETHTOOL_*RXCLS* request; returns the struct the kernel left."""
        if fs:
            fs = bytearray(fs)
            struct.pack_into("=I", fs, FS_LOCATION, loc)
        else:
            fs = struct.pack(FLOW_SPEC, 0, b"", b"", b"", b"", 0, loc)
        return self.call(struct.pack(RXNFC, cmd, 0, data, bytes(fs), rule_cnt) + extra)[1]

    def rule_table(self):
        """(table size, the driver picks locations itself, [locations])."""
        out = self.rxnfc(ETHTOOL_GRXCLSRLCNT)
        _, _, data, _, cnt = struct.unpack(RXNFC, out[:192])
        special = bool(data & RX_CLS_LOC_SPECIAL)
        size = data & ~RX_CLS_LOC_SPECIAL & 0xffffffff
        locs = []
        if cnt:
            out = self.rxnfc(ETHTOOL_GRXCLSRLALL, rule_cnt=cnt, extra=bytes(4 * cnt))
            _, _, size2, _, cnt2 = struct.unpack(RXNFC, out[:192])
            size = size2 or size
            locs = list(struct.unpack_from("=%dI" % cnt2, out, RXNFC_RULE_LOCS))
        return size, special, locs

    def get_rule(self, loc):
        """The struct ethtool_rx_flow_spec at location loc."""
        return struct.unpack(RXNFC, self.rxnfc(ETHTOOL_GRXCLSRULE, loc=loc)[:192])[3]

    def del_rule(self, loc):
        self.rxnfc(ETHTOOL_SRXCLSRLDEL, loc=loc)

    def ins_rule(self, fs, loc=None):
        """Insert a flow spec (at ``loc``, or the one it carries); returns
        the location the driver used."""
        if loc is None:
            loc = struct.unpack_from("=I", fs, FS_LOCATION)[0]
        out = self.rxnfc(ETHTOOL_SRXCLSRLINS, fs=fs, loc=loc)
        return struct.unpack_from("=I", out, 16 + FS_LOCATION)[0]


def call(ifname, payload):
    """One SIOCETHTOOL on ifname in the calling thread's namespace; returns
    the struct as the kernel left it (OSError on failure)."""
    with Ethtool(ifname) as et:
        return et.call(payload)[1]


def driver(ifname):
    """The driver name ethtool reports ('veth', 'mlx5_core', ...), or ''."""
    try:
        with Ethtool(ifname) as et:
            return et.drvinfo()["driver"]
    except OSError:
        return ""
