"""Port name -> netmap kernel request, in pure Python.

``translate(name)`` turns a ``netmap:`` or ``valeX:`` port name (a string or
a parsed ``PortName``) into the ``NETMAP_REQ_REGISTER`` request the netmap
kernel module receives through ``NIOCCTRL`` (API 14): the port name the
kernel sees (``nr_name``), the ring selection (``nr_mode``, ``nr_ringid``),
the flag bits (``nr_flags``), the memory region (``nr_mem_id``), ring and
slot counts from ``@conf``, host rings, and the option chain (``@extmem``,
``@offset``).  ``@share`` needs the kernel to resolve (the memory id of
another port) and is carried as ``RegisterRequest.share``.

``RegisterRequest.legacy()`` gives the older ``NIOCREGIF`` encoding
(``struct nmreq``, API 11) for modules that predate ``NIOCCTRL``.

Everything here is data: no system call is made, so every name form can be
checked on a machine without the netmap module (see tests/test_netmap.py).
The byte layouts (``pack_*``) follow docs/netmap-abi.md sections 2-3; the
extension ``netmapy.backends.netmap`` fills its C structs from the same
``RegisterRequest`` and the tests compare the bytes of both.

The mapping (libnetmap's ``nmport_parse`` semantics, plus netmapy's ``~N``):

=================  ===============  ========  ===============================
name               nr_mode          ringid    nr_name / nr_flags
=================  ===============  ========  ===============================
``netmap:eth0``    ALL_NIC (1)      0         ``eth0``
``netmap:eth0-2``  ONE_NIC (4)      2
``netmap:eth0~4``  ONE_NIC (4)      4         + NR_RX_RINGS_ONLY (as ``-4/R``)
``netmap:eth0^``   SW (2)           0         all host rings
``netmap:eth0^1``  ONE_SW (8)       1         host ring pair 1
``netmap:eth0*``   NIC_SW (3)       0
``netmap:x{3``     ALL_NIC (1)      0         ``x{3`` (API 14: pipes in the name)
``vale0:p1-1``     ONE_NIC (4)      1         ``vale0:p1``
``/x z t r R T``   --               --        EXCLUSIVE ZCOPY_MON MONITOR_TX
                                              MONITOR_RX RX_RINGS_ONLY
                                              TX_RINGS_ONLY
``@3``             --               --        nr_mem_id = 3
=================  ===============  ========  ===============================
"""

import struct
from dataclasses import dataclass, replace

from netmapy.errors import BackendError
from netmapy.names import Mode, PortName, parse_name

__all__ = [
    "translate", "RegisterRequest", "LegacyRequest", "Extmem", "Offsets",
    "Share", "PortInfo", "LAYOUTS", "flag_names", "mode_name",
    "pack_header", "pack_port_info", "unpack_register", "unpack_port_info",
    "NETMAP_API", "LEGACY_API",
]

# --------------------------------------------------------------- constants
# (values from docs/netmap-abi.md section 2.5 / 2.6; the C header
# netmapy/includes/nm_ctrl.h has the same numbers, checked by the tests)

NETMAP_API = 14
LEGACY_API = 11
REQ_IFNAMSIZ = 64
LEGACY_IFNAMSIZ = 16
MAX_RINGID = 0x0fff - 1

REQ_REGISTER = 1
REQ_PORT_INFO_GET = 2
REQ_POOLS_INFO_GET = 12

OPT_EXTMEM = 1
OPT_OFFSETS = 5

NR_REG_DEFAULT = 0
NR_REG_ALL_NIC = 1
NR_REG_SW = 2
NR_REG_NIC_SW = 3
NR_REG_ONE_NIC = 4
NR_REG_PIPE_MASTER = 5
NR_REG_PIPE_SLAVE = 6
NR_REG_NULL = 7
NR_REG_ONE_SW = 8
NR_REG_MASK = 0xf

MODE_NAMES = {
    NR_REG_DEFAULT: "DEFAULT", NR_REG_ALL_NIC: "ALL_NIC", NR_REG_SW: "SW",
    NR_REG_NIC_SW: "NIC_SW", NR_REG_ONE_NIC: "ONE_NIC",
    NR_REG_PIPE_MASTER: "PIPE_MASTER", NR_REG_PIPE_SLAVE: "PIPE_SLAVE",
    NR_REG_NULL: "NULL", NR_REG_ONE_SW: "ONE_SW",
}

NR_MONITOR_TX = 0x00100
NR_MONITOR_RX = 0x00200
NR_ZCOPY_MON = 0x00400
NR_EXCLUSIVE = 0x00800
NR_RX_RINGS_ONLY = 0x02000
NR_TX_RINGS_ONLY = 0x04000
NR_ACCEPT_VNET_HDR = 0x08000
NR_DO_RX_POLL = 0x10000
NR_NO_TX_POLL = 0x20000

FLAG_NAMES = [
    (NR_MONITOR_TX, "MONITOR_TX"), (NR_MONITOR_RX, "MONITOR_RX"),
    (NR_ZCOPY_MON, "ZCOPY_MON"), (NR_EXCLUSIVE, "EXCLUSIVE"),
    (NR_RX_RINGS_ONLY, "RX_RINGS_ONLY"), (NR_TX_RINGS_ONLY, "TX_RINGS_ONLY"),
    (NR_ACCEPT_VNET_HDR, "ACCEPT_VNET_HDR"), (NR_DO_RX_POLL, "DO_RX_POLL"),
    (NR_NO_TX_POLL, "NO_TX_POLL"),
]

#: port-name flag letter -> nr_flags bit (libnetmap's nmreq_register_decode)
LETTER_FLAGS = {
    "x": NR_EXCLUSIVE, "z": NR_ZCOPY_MON, "t": NR_MONITOR_TX,
    "r": NR_MONITOR_RX, "R": NR_RX_RINGS_ONLY, "T": NR_TX_RINGS_ONLY,
}

# legacy struct nmreq: nr_ringid bits
LEGACY_RING_MASK = 0x0fff
LEGACY_NO_TX_POLL = 0x1000
LEGACY_SW_RING = 0x2000
LEGACY_HW_RING = 0x4000
LEGACY_DO_RX_POLL = 0x8000

# ------------------------------------------------------------------ layouts
# struct formats (little endian, explicit padding) and field tables

_HEADER = struct.Struct("<HHI64sQQ")                  # nmreq_header, 88
_REGISTER = struct.Struct("<QQIIHHHHHHII4xQ")         # nmreq_register, 56
_PORT_INFO = struct.Struct("<QIIHHHHH6x")             # nmreq_port_info_get, 32
_OPTION = struct.Struct("<QIIQ")                      # nmreq_option, 24
_POOLS = struct.Struct("<QH6xQIIQIIQII")              # nmreq_pools_info, 64
_EXTMEM = struct.Struct("<QIIQQ" + "QH6xQIIQIIQII")   # nmreq_opt_extmem, 96
_OFFSETS = struct.Struct("<QIIQQQIIQ")                # nmreq_opt_offsets, 56
_LEGACY = struct.Struct("<16sIIIIIHHHHHHII4x")        # nmreq (legacy), 60

#: name -> (size, [(field, offset, size), ...]) as docs/netmap-abi.md gives them
LAYOUTS = {
    "nmreq_header": (88, [
        ("nr_version", 0, 2), ("nr_reqtype", 2, 2), ("nr_reserved", 4, 4),
        ("nr_name", 8, 64), ("nr_options", 72, 8), ("nr_body", 80, 8)]),
    "nmreq_register": (56, [
        ("nr_offset", 0, 8), ("nr_memsize", 8, 8), ("nr_tx_slots", 16, 4),
        ("nr_rx_slots", 20, 4), ("nr_tx_rings", 24, 2), ("nr_rx_rings", 26, 2),
        ("nr_host_tx_rings", 28, 2), ("nr_host_rx_rings", 30, 2),
        ("nr_mem_id", 32, 2), ("nr_ringid", 34, 2), ("nr_mode", 36, 4),
        ("nr_extra_bufs", 40, 4), ("nr_flags", 48, 8)]),
    "nmreq_port_info_get": (32, [
        ("nr_memsize", 0, 8), ("nr_tx_slots", 8, 4), ("nr_rx_slots", 12, 4),
        ("nr_tx_rings", 16, 2), ("nr_rx_rings", 18, 2),
        ("nr_host_tx_rings", 20, 2), ("nr_host_rx_rings", 22, 2),
        ("nr_mem_id", 24, 2)]),
    "nmreq_option": (24, [
        ("nro_next", 0, 8), ("nro_reqtype", 8, 4), ("nro_status", 12, 4),
        ("nro_size", 16, 8)]),
    "nmreq_pools_info": (64, [
        ("nr_memsize", 0, 8), ("nr_mem_id", 8, 2), ("nr_if_pool_offset", 16, 8),
        ("nr_if_pool_objtotal", 24, 4), ("nr_if_pool_objsize", 28, 4),
        ("nr_ring_pool_offset", 32, 8), ("nr_ring_pool_objtotal", 40, 4),
        ("nr_ring_pool_objsize", 44, 4), ("nr_buf_pool_offset", 48, 8),
        ("nr_buf_pool_objtotal", 56, 4), ("nr_buf_pool_objsize", 60, 4)]),
    "nmreq_opt_extmem": (96, [
        ("nro_opt", 0, 24), ("nro_usrptr", 24, 8), ("nro_info", 32, 64)]),
    "nmreq_opt_offsets": (56, [
        ("nro_opt", 0, 24), ("nro_max_offset", 24, 8),
        ("nro_initial_offset", 32, 8), ("nro_offset_bits", 40, 4),
        ("nro_tx_align", 44, 4), ("nro_min_gap", 48, 8)]),
    "nmreq": (60, [
        ("nr_name", 0, 16), ("nr_version", 16, 4), ("nr_offset", 20, 4),
        ("nr_memsize", 24, 4), ("nr_tx_slots", 28, 4), ("nr_rx_slots", 32, 4),
        ("nr_tx_rings", 36, 2), ("nr_rx_rings", 38, 2), ("nr_ringid", 40, 2),
        ("nr_cmd", 42, 2), ("nr_arg1", 44, 2), ("nr_arg2", 46, 2),
        ("nr_arg3", 48, 4), ("nr_flags", 52, 4)]),
    "netmap_slot": (16, [
        ("buf_idx", 0, 4), ("len", 4, 2), ("flags", 6, 2), ("ptr", 8, 8)]),
    "netmap_ring": (256, [
        ("buf_ofs", 0, 8), ("num_slots", 8, 4), ("nr_buf_size", 12, 4),
        ("ringid", 16, 2), ("dir", 18, 2), ("head", 20, 4), ("cur", 24, 4),
        ("tail", 28, 4), ("flags", 32, 4), ("ts", 40, 16),
        ("offset_mask", 56, 8), ("buf_align", 64, 8), ("sem", 128, 128),
        ("slot", 256, 0)]),
    "netmap_if": (56, [
        ("ni_name", 0, 16), ("ni_version", 16, 4), ("ni_flags", 20, 4),
        ("ni_tx_rings", 24, 4), ("ni_rx_rings", 28, 4), ("ni_bufs_head", 32, 4),
        ("ni_host_tx_rings", 36, 4), ("ni_host_rx_rings", 40, 4),
        ("ring_ofs", 56, 0)]),
}

#: ioctl request numbers on Linux (x86_64/aarch64), docs/netmap-abi.md section 3
IOCTLS = {
    "NIOCGINFO": 0xc03c6991, "NIOCREGIF": 0xc03c6992,
    "NIOCTXSYNC": 0x00006994, "NIOCRXSYNC": 0x00006995,
    "NIOCCTRL": 0xc0586997,
}


def _ioc(direction, typ, nr, size):
    """Linux asm-generic _IOC()."""
    return (direction << 30) | (size << 16) | (ord(typ) << 8) | nr


def ioctl_numbers():
    """The ioctl numbers computed from the struct sizes (must equal IOCTLS)."""
    return {
        "NIOCGINFO": _ioc(3, "i", 145, _LEGACY.size),
        "NIOCREGIF": _ioc(3, "i", 146, _LEGACY.size),
        "NIOCTXSYNC": _ioc(0, "i", 148, 0),
        "NIOCRXSYNC": _ioc(0, "i", 149, 0),
        "NIOCCTRL": _ioc(3, "i", 151, _HEADER.size),
    }


def flag_names(flags):
    """'RX_RINGS_ONLY|EXCLUSIVE' for a set of nr_flags bits ('0' for none)."""
    out = [n for b, n in FLAG_NAMES if flags & b]
    rest = flags & ~sum(b for b, _ in FLAG_NAMES)
    if rest:
        out.append("%#x" % rest)
    return "|".join(out) or "0"


def mode_name(mode):
    return MODE_NAMES.get(mode, str(mode))


# ---------------------------------------------------------------- requests

@dataclass(frozen=True)
class Extmem:
    """``@extmem``: the shared region is a file the process maps itself."""
    file: str
    if_num: int = 0
    if_size: int = 0
    ring_num: int = 0
    ring_size: int = 0
    buf_num: int = 0
    buf_size: int = 0

    def pools(self, memsize=0):
        """The nmreq_pools_info request values (0 = kernel default)."""
        return dict(nr_memsize=memsize, nr_mem_id=0,
                    nr_if_pool_offset=0, nr_if_pool_objtotal=self.if_num,
                    nr_if_pool_objsize=self.if_size,
                    nr_ring_pool_offset=0, nr_ring_pool_objtotal=self.ring_num,
                    nr_ring_pool_objsize=self.ring_size,
                    nr_buf_pool_offset=0, nr_buf_pool_objtotal=self.buf_num,
                    nr_buf_pool_objsize=self.buf_size)


@dataclass(frozen=True)
class Offsets:
    """``@offset``: per-slot data offsets (libnetmap: max = initial)."""
    initial: int
    max_offset: int
    bits: int = 0


@dataclass(frozen=True)
class Share:
    """``@share``: use the memory region of another port (``port``, a kernel
    name resolved with PORT_INFO_GET) or of a named group of this process."""
    port: object = None       # nr_name of the port to share with
    port_spec: object = None  # as written (for messages)
    group: object = None      # netmapy group name


@dataclass(frozen=True)
class RegisterRequest:
    """A NETMAP_REQ_REGISTER request, field by field."""

    nr_name: str
    nr_mode: int = NR_REG_ALL_NIC
    nr_ringid: int = 0
    nr_flags: int = 0
    nr_mem_id: int = 0
    nr_tx_slots: int = 0
    nr_rx_slots: int = 0
    nr_tx_rings: int = 0
    nr_rx_rings: int = 0
    nr_host_tx_rings: int = 0
    nr_host_rx_rings: int = 0
    nr_extra_bufs: int = 0
    extmem: object = None     # Extmem or None
    offsets: object = None    # Offsets or None
    share: object = None      # Share or None
    # what the name meant (for checks and messages)
    kind: str = "nic"         # "nic", "vale", "pipe"
    ifname: str = ""          # the interface / parent / VALE port
    single_rx: bool = False   # '~N': only RX ring N (verified after register)
    pipe: object = None       # (role '{' or '}', pipe id) for pipes
    source: str = ""          # the port name as given (canonical)

    # -- what it binds
    @property
    def binds_host(self):
        """True if the request binds host rings ('^', '^N', '*')."""
        return self.nr_mode in (NR_REG_SW, NR_REG_NIC_SW, NR_REG_ONE_SW)

    @property
    def binds_nic(self):
        return self.nr_mode in (NR_REG_ALL_NIC, NR_REG_ONE_NIC, NR_REG_NIC_SW)

    @property
    def binds_tx(self):
        return not self.nr_flags & NR_RX_RINGS_ONLY

    @property
    def binds_rx(self):
        return not self.nr_flags & NR_TX_RINGS_ONLY

    @property
    def is_monitor(self):
        return bool(self.nr_flags & (NR_MONITOR_TX | NR_MONITOR_RX))

    def describe(self):
        """One line: nr_name, mode, ringid, flags, memory and counts."""
        parts = ["nr_name=%r" % self.nr_name, "mode=%s" % mode_name(self.nr_mode)]
        if self.nr_mode in (NR_REG_ONE_NIC, NR_REG_ONE_SW):
            parts.append("ringid=%d" % self.nr_ringid)
        parts.append("flags=%s" % flag_names(self.nr_flags))
        if self.nr_mem_id:
            parts.append("mem_id=%d" % self.nr_mem_id)
        for f in ("nr_tx_rings", "nr_rx_rings", "nr_host_tx_rings",
                  "nr_host_rx_rings", "nr_tx_slots", "nr_rx_slots",
                  "nr_extra_bufs"):
            v = getattr(self, f)
            if v:
                parts.append("%s=%d" % (f[3:], v))
        if self.extmem:
            parts.append("extmem=%s" % self.extmem.file)
        if self.offsets:
            parts.append("offset=%d" % self.offsets.initial)
        if self.share:
            parts.append("share=%s" % (self.share.port_spec or self.share.group))
        return " ".join(parts)

    # -- byte images (what the kernel reads)
    def pack_body(self, nr_offset=0, nr_memsize=0):
        """The 56-byte nmreq_register."""
        return _REGISTER.pack(
            nr_offset, nr_memsize, self.nr_tx_slots, self.nr_rx_slots,
            self.nr_tx_rings, self.nr_rx_rings, self.nr_host_tx_rings,
            self.nr_host_rx_rings, self.nr_mem_id, self.nr_ringid,
            self.nr_mode, self.nr_extra_bufs, self.nr_flags)

    def pack_header(self, body=0, options=0):
        """The 88-byte nmreq_header (body/options: user addresses)."""
        return pack_header(REQ_REGISTER, self.nr_name, body, options)

    def pack_options(self, usrptr=0, memsize=0):
        """[(reqtype, bytes)] of the option chain, in chain order, with
        nro_next left 0 (the backend links them)."""
        out = []
        if self.extmem is not None:
            p = self.extmem.pools(memsize)
            out.append((OPT_EXTMEM, _EXTMEM.pack(
                0, OPT_EXTMEM, 0, 0, usrptr,
                p["nr_memsize"], p["nr_mem_id"], p["nr_if_pool_offset"],
                p["nr_if_pool_objtotal"], p["nr_if_pool_objsize"],
                p["nr_ring_pool_offset"], p["nr_ring_pool_objtotal"],
                p["nr_ring_pool_objsize"], p["nr_buf_pool_offset"],
                p["nr_buf_pool_objtotal"], p["nr_buf_pool_objsize"])))
        if self.offsets is not None:
            o = self.offsets
            out.append((OPT_OFFSETS, _OFFSETS.pack(
                0, OPT_OFFSETS, 0, 0, o.max_offset, o.initial, o.bits, 0, 0)))
        return out

    def with_mem_id(self, mem_id):
        return replace(self, nr_mem_id=mem_id)

    def legacy(self):
        """The same request for NIOCREGIF (struct nmreq, API 11).

        Raises BackendError for what the legacy API cannot say: host ring
        counts, one host ring ('^N'), options, names over 15 characters.
        """
        return LegacyRequest.from_register(self)


def pack_header(reqtype, name, body=0, options=0, version=NETMAP_API):
    raw = name.encode()
    if len(raw) >= REQ_IFNAMSIZ:
        raise BackendError("netmap port name %r is longer than %d bytes"
                           % (name, REQ_IFNAMSIZ - 1))
    return _HEADER.pack(version, reqtype, 0, raw, options, body)


@dataclass(frozen=True)
class LegacyRequest:
    """A struct nmreq for NIOCREGIF (old modules)."""

    nr_name: str
    nr_version: int = LEGACY_API
    nr_tx_slots: int = 0
    nr_rx_slots: int = 0
    nr_tx_rings: int = 0
    nr_rx_rings: int = 0
    nr_ringid: int = 0
    nr_cmd: int = 0
    nr_arg1: int = 0
    nr_arg2: int = 0          # memory id
    nr_arg3: int = 0          # extra buffers
    nr_flags: int = 0         # NR_REG_* mode | NR_* flags

    @classmethod
    def from_register(cls, req):
        what = req.source or req.nr_name
        no = []
        if req.nr_host_tx_rings or req.nr_host_rx_rings:
            no.append("host ring counts (@conf:host-rings)")
        if req.nr_mode == NR_REG_ONE_SW:
            no.append("one host ring ('^N')")
        if req.extmem is not None:
            no.append("@extmem")
        if req.offsets is not None:
            no.append("@offset")
        if no:
            raise BackendError(
                "%s: this netmap module only speaks the legacy API (NIOCREGIF, "
                "API < 14), which has no %s: upgrade netmap (API 14, 2019 or "
                "later) or drop them" % (what, " or ".join(no)))
        name, mode, ringid = req.nr_name, req.nr_mode, req.nr_ringid
        if req.pipe is not None:
            role, pid = req.pipe
            name = name[:name.rindex(role)]
            mode = NR_REG_PIPE_MASTER if role == "{" else NR_REG_PIPE_SLAVE
            ringid = pid
            if ringid > LEGACY_RING_MASK:
                raise BackendError("%s: pipe %d does not fit the legacy API "
                                   "(at most %d)" % (what, pid, LEGACY_RING_MASK))
        if len(name.encode()) >= LEGACY_IFNAMSIZ:
            raise BackendError(
                "%s: the legacy netmap API limits port names to %d characters "
                "(%r): upgrade netmap to API 14" % (what, LEGACY_IFNAMSIZ - 1, name))
        ringid &= LEGACY_RING_MASK
        flags = req.nr_flags
        if flags & NR_NO_TX_POLL:
            ringid |= LEGACY_NO_TX_POLL
        if flags & NR_DO_RX_POLL:
            ringid |= LEGACY_DO_RX_POLL
        if mode == NR_REG_ONE_NIC:
            ringid |= LEGACY_HW_RING
        elif mode == NR_REG_SW:
            ringid |= LEGACY_SW_RING
        flags &= ~(NR_NO_TX_POLL | NR_DO_RX_POLL | NR_REG_MASK)
        return cls(nr_name=name, nr_tx_slots=req.nr_tx_slots,
                   nr_rx_slots=req.nr_rx_slots, nr_tx_rings=req.nr_tx_rings,
                   nr_rx_rings=req.nr_rx_rings, nr_ringid=ringid,
                   nr_arg2=req.nr_mem_id, nr_arg3=req.nr_extra_bufs,
                   nr_flags=(flags | mode) & 0xffffffff)

    @property
    def mode(self):
        return self.nr_flags & NR_REG_MASK

    def pack(self, nr_offset=0, nr_memsize=0):
        """The 60-byte struct nmreq."""
        return _LEGACY.pack(
            self.nr_name.encode(), self.nr_version, nr_offset, nr_memsize,
            self.nr_tx_slots, self.nr_rx_slots, self.nr_tx_rings,
            self.nr_rx_rings, self.nr_ringid, self.nr_cmd, self.nr_arg1,
            self.nr_arg2, self.nr_arg3, self.nr_flags)


# -------------------------------------------------------------- port info

@dataclass(frozen=True)
class PortInfo:
    """What NETMAP_REQ_PORT_INFO_GET (or a register reply) reports."""
    memsize: int = 0
    tx_slots: int = 0
    rx_slots: int = 0
    tx_rings: int = 0
    rx_rings: int = 0
    host_tx_rings: int = 0
    host_rx_rings: int = 0
    mem_id: int = 0


def pack_port_info(info=None):
    i = info or PortInfo()
    return _PORT_INFO.pack(i.memsize, i.tx_slots, i.rx_slots, i.tx_rings,
                           i.rx_rings, i.host_tx_rings, i.host_rx_rings,
                           i.mem_id)


def unpack_port_info(raw):
    return PortInfo(*_PORT_INFO.unpack(bytes(raw)))


def unpack_register(raw):
    """dict of the fields of a 56-byte nmreq_register."""
    names = ("nr_offset", "nr_memsize", "nr_tx_slots", "nr_rx_slots",
             "nr_tx_rings", "nr_rx_rings", "nr_host_tx_rings",
             "nr_host_rx_rings", "nr_mem_id", "nr_ringid", "nr_mode",
             "nr_extra_bufs", "nr_flags")
    return dict(zip(names, _REGISTER.unpack(bytes(raw))))


# -------------------------------------------------------------- translate

_CONF_ORDER = ("rings", "host-rings", "slots", "tx-rings", "rx-rings",
               "host-tx-rings", "host-rx-rings", "tx-slots", "rx-slots")

_KW_CONF = {"rings": "rings", "host_rings": "host-rings", "slots": "slots",
            "tx_rings": "tx-rings", "rx_rings": "rx-rings",
            "host_tx_rings": "host-tx-rings", "host_rx_rings": "host-rx-rings",
            "tx_slots": "tx-slots", "rx_slots": "rx-slots"}

_U16 = {"rings", "host-rings", "tx-rings", "rx-rings", "host-tx-rings",
        "host-rx-rings"}


def kernel_name(pname):
    """The nr_name the kernel sees for a netmap:/valeX: PortName."""
    if pname.backend == "vale":
        base = "%s:%s" % (pname.switch, pname.ifname)
    else:
        base = pname.ifname
    if pname.mode is Mode.PIPE_MASTER:
        return "%s{%d" % (base, pname.ring)
    if pname.mode is Mode.PIPE_SLAVE:
        return "%s}%d" % (base, pname.ring)
    return base


def _share_port_name(spec, where):
    """nr_name of the port named by @share:port=SPEC (a full port name)."""
    p = parse_name(spec)
    if p.backend not in ("netmap", "vale"):
        raise BackendError(
            "%s: @share:port=%s names a %s: port; the netmap backend can only "
            "share the memory of another netmap port (netmap:IF or valeX:P)"
            % (where, spec, p.backend))
    return kernel_name(p)


def translate(name, **kw):
    """The RegisterRequest for a netmap:/valeX: port name.

    ``kw`` may override the ``@conf`` keys (``slots``, ``tx_slots``,
    ``rx_slots``, ``rings``, ``tx_rings``, ``rx_rings``, ``host_rings``,
    ``host_tx_rings``, ``host_rx_rings``) and add ``extra_bufs``,
    ``mem_id``, ``no_tx_poll``, ``share`` (a group name).  Unknown keys are
    ignored (they belong to the backend).
    """
    pname = name if isinstance(name, PortName) else parse_name(name)
    where = str(pname)
    if pname.backend not in ("netmap", "vale"):
        raise BackendError("%s: the netmap backend opens netmap: and valeX: "
                           "ports, not %s:" % (where, pname.backend))
    mode = pname.mode
    nr_name = kernel_name(pname)
    if len(nr_name.encode()) >= REQ_IFNAMSIZ:
        raise BackendError("%s: the kernel name %r is longer than %d bytes"
                           % (where, nr_name, REQ_IFNAMSIZ - 1))
    ringid = 0
    flags = 0
    single_rx = False
    pipe = None
    if mode is Mode.ALL_NIC:
        nr_mode = NR_REG_ALL_NIC
    elif mode is Mode.ONE_NIC:
        nr_mode, ringid = NR_REG_ONE_NIC, pname.ring
    elif mode is Mode.SINGLE_RX:
        # CloudFlare's "single RX queue": upstream's -N/R (rings not
        # requested stay with the kernel)
        nr_mode, ringid = NR_REG_ONE_NIC, pname.ring
        flags |= NR_RX_RINGS_ONLY
        single_rx = True
    elif mode is Mode.SW:
        nr_mode = NR_REG_SW
    elif mode is Mode.ONE_SW:
        nr_mode, ringid = NR_REG_ONE_SW, pname.ring
    elif mode is Mode.NIC_SW:
        nr_mode = NR_REG_NIC_SW
    elif mode in (Mode.PIPE_MASTER, Mode.PIPE_SLAVE):
        # API 14: the pipe is part of the name, the mode is ALL_NIC
        nr_mode = NR_REG_ALL_NIC
        pipe = ("{" if mode is Mode.PIPE_MASTER else "}", pname.ring)
    else:                                   # pragma: no cover
        raise BackendError("%s: mode %s" % (where, mode))
    if ringid > MAX_RINGID:
        raise BackendError("%s: ring %d is out of range (0..%d)"
                           % (where, ringid, MAX_RINGID))
    for letter in pname.flags:
        flags |= LETTER_FLAGS[letter]
    if single_rx and flags & NR_TX_RINGS_ONLY:
        raise BackendError("%s: '~N' binds one RX ring and cannot take the 'T' "
                           "flag" % where)
    if kw.get("no_tx_poll"):
        flags |= NR_NO_TX_POLL

    # -- @conf, then keyword overrides, in libnetmap's order (the aggregate
    # keys first, the specific ones override them)
    conf = dict(pname.option("conf") or {})
    for k, ck in _KW_CONF.items():
        if kw.get(k) is not None:
            conf[ck] = str(int(kw[k]))
    counts = dict(nr_tx_slots=0, nr_rx_slots=0, nr_tx_rings=0, nr_rx_rings=0,
                  nr_host_tx_rings=0, nr_host_rx_rings=0)
    for key in _CONF_ORDER:
        if key not in conf:
            continue
        v = int(conf[key])
        if key in _U16 and v > 0xffff:
            raise BackendError("%s: %s=%d is more than %d" % (where, key, v, 0xffff))
        if key == "rings":
            counts["nr_tx_rings"] = counts["nr_rx_rings"] = v
        elif key == "host-rings":
            counts["nr_host_tx_rings"] = counts["nr_host_rx_rings"] = v
        elif key == "slots":
            counts["nr_tx_slots"] = counts["nr_rx_slots"] = v
        else:
            counts["nr_" + key.replace("-", "_")] = v

    # -- memory: @N, @share, @extmem
    mem_id = pname.memid or 0
    if kw.get("mem_id"):
        mem_id = int(kw["mem_id"])
    share = None
    sopt = pname.option("share")
    if sopt is not None:
        if "port" in sopt:
            share = Share(port=_share_port_name(sopt["port"], where),
                          port_spec=sopt["port"])
        else:
            share = Share(group=sopt.get("name", "default"))
    if isinstance(kw.get("share"), str):
        share = Share(group=kw["share"])
    if share is not None and mem_id:
        raise BackendError("%s: '@%d' and @share both choose the memory region: "
                           "give one of them" % (where, mem_id))
    extmem = None
    eopt = pname.option("extmem")
    if eopt is not None:
        extmem = Extmem(file=eopt["file"], **{
            k.replace("-", "_"): int(v) for k, v in eopt.items() if k != "file"})
        if share is not None or mem_id:
            raise BackendError("%s: @extmem makes its own memory region; it "
                               "cannot be combined with '@N' or @share" % where)
    offsets = None
    oopt = pname.option("offset")
    if oopt is not None:
        initial = int(oopt["initial"])
        offsets = Offsets(initial=initial, max_offset=initial,
                          bits=int(oopt.get("bits", 0)))
    if pipe is not None:
        kind = "pipe"
    elif pname.backend == "vale":
        kind = "vale"
    else:
        kind = "nic"
    return RegisterRequest(
        nr_name=nr_name, nr_mode=nr_mode, nr_ringid=ringid, nr_flags=flags,
        nr_mem_id=mem_id, nr_extra_bufs=int(kw.get("extra_bufs") or 0),
        extmem=extmem, offsets=offsets, share=share, kind=kind,
        ifname=pname.ifname, single_rx=single_rx, pipe=pipe, source=where,
        **counts)
