# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""netmap backend: the real netmap kernel module, through /dev/netmap.

Every ``netmap:`` and ``valeX:`` port kind works through the kernel's own
netmap (API 14): NIC rings (``netmap:eth3``, ``-N``, ``/R`` ``/T``), the
single-RX-queue form ``netmap:eth3~4`` (sent as ``-4/R``: only RX ring 4
leaves the kernel, every other ring stays with the host stack), host rings
(``^``, ``^N``, ``*``, ``@conf:host-rings=N``), VALE ports (``vale0:p1``),
pipes (``netmap:x{1`` / ``netmap:x}1``), monitors (``/t /r /z``), memory
regions (``@N``, ``@share``, ``@extmem``).

How a port is opened:

1. ``/dev/netmap`` is opened (one fd per port) and, once per process, the
   module's API is probed silently (``NETMAP_REQ_PORT_INFO_GET`` through
   ``NIOCCTRL``; modules older than API 14 answer differently and are then
   driven with the legacy ``NIOCREGIF``);
2. the name is translated by ``netmapy.backends.netmap.req.translate`` and sent as
   ``NETMAP_REQ_REGISTER`` (``nmreq_header`` + ``nmreq_register`` + the
   option chain);
3. the memory region is mapped once per (process, ``nr_mem_id``) and shared
   by every port of that region: ports with equal ``mem`` swap buffers with
   zero copy, others are refused (``MemoryMismatch``);
4. the rings bound to the fd (the non-zero ``ring_ofs[]`` entries of the
   kernel's ``netmap_if``) become the port's rings, NIC rings first, then
   host rings, each in kernel order (``tx_ids``/``rx_ids`` give the kernel
   ring ids).

Sync: ``NIOCTXSYNC``/``NIOCRXSYNC`` act on every ring bound to the fd, so a
sync of one ring syncs all of them (the others' state is taken over, after
the same head/cur and buffer-view checks).  ``poll()`` makes one TX and one
RX ioctl per round and sleeps in the kernel's poll.

Options (``netmapy.open(name, **options)``)::

    slots, tx_slots, rx_slots, rings, tx_rings, rx_rings, host_rings,
    host_tx_rings, host_rx_rings   override @conf (VALE ports, pipes; a NIC's
                                   counts are its hardware's: ethtool -L/-G)
    extra_bufs=N        extra buffers (nr_extra_bufs; ``port.extra_buffers``)
    share=port|memory|"group"      use the memory region of another port
    forward=False       set NR_FORWARD on the RX rings (transparent mode:
                        slots released with NS_FORWARD go to the other side)
    link_timeout=5.0    after registering a NIC, wait this long for the
                        carrier to come back (drivers reset the link); 0: no
    link_settle=0.2     ... and for it to stay up this long
    preflight="warn"    run netmapy.backends.netmap.preflight checks: "warn" logs them,
                        "strict" raises PreflightError on errors, False: skip
    require_up=True     refuse an interface that is down (InterfaceDown)
    no_tx_poll=False    NR_NO_TX_POLL
"""

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memset, memcpy, strncpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from netmapy.includes.abi cimport (netmap_ring, netmap_if, nm_ring_space,
                                   NR_FORWARD)
from netmapy.includes.nm_ctrl cimport *
from netmapy.includes.system cimport (
    mmap, munmap, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_SHARED, poll, pollfd,
    POLLIN, POLLOUT, POLLERR, errno, EINTR, EINVAL, EIO, monotonic_ms)
from netmapy.core import open_or_undo
from netmapy.core cimport Memory, Port, nm_kring

import errno as _errno
import logging
import os

from netmapy.host import iface
from netmapy.backends.netmap import req as netmap_req
from netmapy.errors import (BackendError, InterfaceDown, InterfaceNotFound,
                      NetmapyError, NoPrivilege, PortBusy, QueueOutOfRange)

cdef extern from "<sys/mman.h>" nogil:
    enum:
        MAP_FIXED

log = logging.getLogger("netmapy")

DEVICE = "/dev/netmap"
LOAD_HINT = (
    "load it first (from a netmap build: `insmod "
    "netmap.ko`, or `modprobe netmap` where it is installed; see "
    "https://github.com/luigirizzo/netmap and docs/netmap.md)")


# ------------------------------------------------------------ ABI helpers

def abi_sizes():
    """{name: value} of every struct size, field offset and ioctl number
    the extension was compiled with (nm_ctrl.h; checked there by
    _Static_assert, here for the tests and for humans)."""
    cdef int i
    return {nmc_abi_name(i).decode(): nmc_abi_value(i) for i in range(nmc_abi_count())}


cdef int _fill_register(nmc_header *h, nmc_register *r, object req,
                        uint16_t mem_id) except -1:
    name = req.nr_name.encode()
    if len(name) >= NMC_REQ_IFNAMSIZ:
        raise BackendError("netmap port name %r is too long" % req.nr_name)
    memset(h, 0, sizeof(nmc_header))
    memset(r, 0, sizeof(nmc_register))
    h.nr_version = NMC_API
    h.nr_reqtype = NMC_REQ_REGISTER
    strncpy(h.nr_name, name, NMC_REQ_IFNAMSIZ - 1)
    r.nr_tx_slots = req.nr_tx_slots
    r.nr_rx_slots = req.nr_rx_slots
    r.nr_tx_rings = req.nr_tx_rings
    r.nr_rx_rings = req.nr_rx_rings
    r.nr_host_tx_rings = req.nr_host_tx_rings
    r.nr_host_rx_rings = req.nr_host_rx_rings
    r.nr_mem_id = mem_id
    r.nr_ringid = req.nr_ringid
    r.nr_mode = req.nr_mode
    r.nr_extra_bufs = req.nr_extra_bufs
    r.nr_flags = req.nr_flags
    return 0


cdef int _fill_options(nmc_header *h, nmc_opt_extmem *ext, nmc_opt_offsets *off,
                       object req, uint64_t usrptr, uint64_t memsize) except -1:
    """Link the option chain the way libnetmap does (newest first)."""
    memset(ext, 0, sizeof(nmc_opt_extmem))
    memset(off, 0, sizeof(nmc_opt_offsets))
    h.nr_options = 0
    if req.extmem is not None:
        e = req.extmem
        ext.nro_opt.nro_reqtype = NMC_OPT_EXTMEM
        ext.nro_usrptr = usrptr
        ext.nro_info.nr_memsize = memsize
        ext.nro_info.nr_if_pool_objtotal = e.if_num
        ext.nro_info.nr_if_pool_objsize = e.if_size
        ext.nro_info.nr_ring_pool_objtotal = e.ring_num
        ext.nro_info.nr_ring_pool_objsize = e.ring_size
        ext.nro_info.nr_buf_pool_objtotal = e.buf_num
        ext.nro_info.nr_buf_pool_objsize = e.buf_size
        ext.nro_opt.nro_next = h.nr_options
        h.nr_options = <uint64_t><uintptr_t>ext
    if req.offsets is not None:
        o = req.offsets
        off.nro_opt.nro_reqtype = NMC_OPT_OFFSETS
        off.nro_max_offset = o.max_offset
        off.nro_initial_offset = o.initial
        off.nro_offset_bits = o.bits
        off.nro_opt.nro_next = h.nr_options
        h.nr_options = <uint64_t><uintptr_t>off
    return 0


def _c_pack_register(req, uint64_t usrptr=0, uint64_t memsize=0):
    """(header, body, [(reqtype, option bytes)]) as the C side builds them
    for a RegisterRequest, with every pointer field zeroed: the tests
    compare these bytes with netmap_req's pure-Python packing."""
    cdef nmc_header h
    cdef nmc_register r
    cdef nmc_opt_extmem ext
    cdef nmc_opt_offsets off
    _fill_register(&h, &r, req, req.nr_mem_id)
    _fill_options(&h, &ext, &off, req, usrptr, memsize)
    opts = []
    if req.extmem is not None:
        ext.nro_opt.nro_next = 0
        opts.append((NMC_OPT_EXTMEM, PyBytes_FromStringAndSize(<char *>&ext, sizeof(ext))))
    if req.offsets is not None:
        off.nro_opt.nro_next = 0
        opts.append((NMC_OPT_OFFSETS, PyBytes_FromStringAndSize(<char *>&off, sizeof(off))))
    h.nr_options = 0
    h.nr_body = 0
    return (PyBytes_FromStringAndSize(<char *>&h, sizeof(h)),
            PyBytes_FromStringAndSize(<char *>&r, sizeof(r)), opts)


cdef int _fill_legacy(nmc_legacy *l, object lreq) except -1:
    name = lreq.nr_name.encode()
    if len(name) >= NMC_LEGACY_IFNAMSIZ:
        raise BackendError("netmap port name %r is too long for the legacy API"
                           % lreq.nr_name)
    memset(l, 0, sizeof(nmc_legacy))
    strncpy(l.nr_name, name, NMC_LEGACY_IFNAMSIZ - 1)
    l.nr_version = lreq.nr_version
    l.nr_tx_slots = lreq.nr_tx_slots
    l.nr_rx_slots = lreq.nr_rx_slots
    l.nr_tx_rings = lreq.nr_tx_rings
    l.nr_rx_rings = lreq.nr_rx_rings
    l.nr_ringid = lreq.nr_ringid
    l.nr_cmd = lreq.nr_cmd
    l.nr_arg1 = lreq.nr_arg1
    l.nr_arg2 = lreq.nr_arg2
    l.nr_arg3 = lreq.nr_arg3
    l.nr_flags = lreq.nr_flags
    return 0


def _c_pack_legacy(lreq):
    """The 60-byte struct nmreq the C side builds for a LegacyRequest."""
    cdef nmc_legacy l
    _fill_legacy(&l, lreq)
    return PyBytes_FromStringAndSize(<char *>&l, sizeof(l))


# ------------------------------------------------------------- the module

_api_cache = {}


class ModuleApi:
    """What the probe learnt about the loaded module."""

    def __init__(self, control, version, global_memsize=0):
        self.control = control            # "NIOCCTRL" or "NIOCREGIF"
        self.version = version            # API version (best knowledge)
        self.global_memsize = global_memsize

    @property
    def legacy(self):
        return self.control == "NIOCREGIF"

    def __str__(self):
        return "%s %s" % (self.control, self.version)

    def __repr__(self):
        return "<netmap module API: %s>" % self


def _open_device():
    """An fd on /dev/netmap, or the error a user can act on."""
    try:
        return os.open(DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise OSError(_errno.ENOENT, "%s does not exist: the netmap kernel module "
                      "is not loaded; %s" % (DEVICE, LOAD_HINT)) from None
    except PermissionError:
        raise NoPrivilege("opening %s" % DEVICE,
                          "read/write access to %s (root, or a udev rule "
                          "giving your group access)" % DEVICE) from None
    except OSError as e:
        if e.errno in (_errno.ENXIO, _errno.ENODEV):
            raise OSError(e.errno, "%s exists but no driver answers (%s): the "
                          "netmap module is not loaded; %s" % (
                              DEVICE, e.strerror, LOAD_HINT)) from None
        raise


def probe_api(int fd=-1):
    """Which control API the loaded module speaks (cached per process).

    Sends NETMAP_REQ_PORT_INFO_GET (empty name: the global memory region)
    with API 14 through NIOCCTRL.  An API 14+ module writes nr_mem_id at
    offset 24 of the body; an API 13 module (same header size and ioctl
    number, but no host-ring fields) writes it at offset 20; an API 11
    module does not know NIOCCTRL at all.  For those the legacy NIOCGINFO
    tells the version and NIOCREGIF is used.  Nothing is logged by the
    kernel on any path.
    """
    cdef nmc_header h
    cdef nmc_port_info b
    cdef nmc_legacy l
    cdef int rc, err
    key = os.getpid()
    cached = _api_cache.get(key)
    if cached is not None:
        return cached
    own = fd < 0
    if own:
        fd = _open_device()
    try:
        memset(&h, 0, sizeof(h))
        memset(&b, 0, sizeof(b))
        h.nr_version = NMC_API
        h.nr_reqtype = NMC_REQ_PORT_INFO_GET
        h.nr_body = <uint64_t><uintptr_t>&b
        rc = nmc_ctrl(fd, &h)
        err = errno
        if rc == 0 and b.nr_mem_id != 0:
            api = ModuleApi("NIOCCTRL", NMC_API, b.nr_memsize)
        else:
            if rc == 0:
                why = "API 13 layout"
            elif err in (_errno.ENOTTY, _errno.EOPNOTSUPP, _errno.EINVAL):
                why = os.strerror(err)
            else:
                raise OSError(err, "%s: probing the netmap API: %s" % (
                    DEVICE, os.strerror(err)))
            memset(&l, 0, sizeof(l))
            l.nr_version = NMC_LEGACY_API
            rc = nmc_ginfo_legacy(fd, &l)
            if rc < 0:
                raise BackendError(
                    "the netmap module answered neither NIOCCTRL (API 14: %s) nor "
                    "NIOCGINFO (legacy: %s): unsupported netmap version; install "
                    "a current netmap" % (why, os.strerror(errno)))
            api = ModuleApi("NIOCREGIF", l.nr_version if rc == 0 else 0, l.nr_memsize)
            log.warning("netmapy: the netmap module is old (%s, legacy API %d): using "
                        "NIOCREGIF; host ring counts, '^N', @extmem and @offset "
                        "need API 14", why, api.version)
        _api_cache[key] = api
        return api
    finally:
        if own:
            os.close(fd)


cdef object _port_info(int fd, object nr_name, object req=None):
    """NETMAP_REQ_PORT_INFO_GET for a port name: a netmap_req.PortInfo, or
    raises OSError with the errno."""
    cdef nmc_header h
    cdef nmc_port_info b
    cdef int rc
    raw = nr_name.encode()
    memset(&h, 0, sizeof(h))
    memset(&b, 0, sizeof(b))
    h.nr_version = NMC_API
    h.nr_reqtype = NMC_REQ_PORT_INFO_GET
    strncpy(h.nr_name, raw, NMC_REQ_IFNAMSIZ - 1)
    if req is not None:
        b.nr_tx_slots = req.nr_tx_slots
        b.nr_rx_slots = req.nr_rx_slots
        b.nr_tx_rings = req.nr_tx_rings
        b.nr_rx_rings = req.nr_rx_rings
        b.nr_host_tx_rings = req.nr_host_tx_rings
        b.nr_host_rx_rings = req.nr_host_rx_rings
        b.nr_mem_id = req.nr_mem_id
    h.nr_body = <uint64_t><uintptr_t>&b
    with nogil:
        rc = nmc_ctrl(fd, &h)
    if rc < 0:
        e = errno
        raise OSError(e, "netmap: port info of %r: %s" % (nr_name, os.strerror(e)))
    return netmap_req.PortInfo(b.nr_memsize, b.nr_tx_slots, b.nr_rx_slots,
                               b.nr_tx_rings, b.nr_rx_rings, b.nr_host_tx_rings,
                               b.nr_host_rx_rings, b.nr_mem_id)


def port_info(name):
    """What the kernel reports for a netmap port without registering it
    (rings, slots, host rings, memory id and size): a netmap_req.PortInfo."""
    req = netmap_req.translate(name)
    fd = _open_device()
    try:
        if probe_api(fd).legacy:
            raise BackendError("port_info() needs a netmap module with API 14")
        return _port_info(fd, req.nr_name, req)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- memory

_memories = {}          # (pid, mem_id) -> NetmapMemory, while mapped
_groups = {}            # (pid, group) -> NetmapMemory


cdef class NetmapMemory(Memory):
    """A netmap memory region: rings and buffers the kernel allocated.

    Mapped once per process and shared by every port registered in it
    (``memid`` is the kernel's ``nr_mem_id``), so buffers swap between
    those ports by index.  The buffers all belong to rings (or to a port's
    extra-buffer list): netmapy never allocates from it.
    """

    def __cinit__(self, *args, **kw):
        self.map_fd = -1
        self._users = {}

    def __init__(self, *args, **kw):
        raise TypeError("netmap memory regions are made by opening netmap ports")

    def __dealloc__(self):
        if self.region != NULL:
            munmap(self.region, self.region_size)
            self.region = NULL

    cdef int set_bufs(self, char *bufs, uint32_t buf_size) except -1:
        cdef char *end = <char *>self.region + self.memsize
        if self.bufs != NULL:
            if bufs != self.bufs or buf_size != self.buf_size:
                raise BackendError(
                    "netmap memory %d: a ring points at buffers at %#x (size %d), "
                    "another at %#x (size %d)" % (self.memid, <uintptr_t>bufs,
                                                  buf_size, <uintptr_t>self.bufs,
                                                  self.buf_size))
            return 0
        if buf_size == 0 or bufs < <char *>self.region or bufs >= end:
            raise BackendError("netmap memory %d: buffers outside the mapped region"
                               % self.memid)
        self.bufs = bufs
        self.buf_size = buf_size
        self.lo = 2                    # buffers 0 and 1 are reserved
        self.hi = <uint32_t>((end - bufs) // buf_size)
        self._top = 0
        self._fresh = self.hi          # nothing to hand out
        return 0

    @property
    def mapped(self):
        return self.region != NULL

    @property
    def users(self):
        return len(self._users)

    def _attach(self, port, int fd):
        self._users[id(port)] = fd

    def _detach(self, port):
        """A port of this memory closes: drop it; unmap with the last one,
        or move the mapping onto another user's fd if it was backed by the
        closing one (so that closing the fd really releases the port)."""
        cdef void *p
        fd = self._users.pop(id(port), None)
        if fd is None:
            return
        if not self._users:
            self._unmap()
            return
        if self.extmem or fd != self.map_fd:
            return
        other = next(iter(self._users.values()))
        p = mmap(self.region, self.region_size, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_FIXED, other, 0)
        if p == MAP_FAILED or p != self.region:
            log.warning("netmapy: netmap memory %d: could not move the mapping to "
                        "fd %d (%s); %s stays registered until the memory's last "
                        "port closes", self.memid, other, os.strerror(errno),
                        port.name)
            return
        self.map_fd = other

    def _unmap(self):
        if self.region != NULL:
            munmap(self.region, self.region_size)
        self.region = NULL
        self.bufs = NULL
        self.lo = self.hi = 0
        self._top = self._fresh = 0
        self.map_fd = -1
        if _memories.get(self._key) is self:
            del _memories[self._key]
        for k, m in list(_groups.items()):
            if m is self:
                del _groups[k]

    cdef int alloc_bufs(self, uint32_t *out, uint32_t n) except -1:
        raise NetmapyError(
            "netmap memory %d: its buffers belong to the kernel's rings; netmapy "
            "allocates none from it (ask for extra buffers with extra_bufs=N, or "
            "swap buffers between rings)" % self.memid)

    cdef void free_bufs(self, const uint32_t *idx, uint32_t n) noexcept:
        pass

    def __repr__(self):
        if self.region == NULL:
            return "<netmapy.NetmapMemory id=%d (unmapped)>" % self.memid
        return "<netmapy.NetmapMemory id=%d%s size=%d bufs=%d buf_size=%d ports=%d>" % (
            self.memid, " extmem" if self.extmem else (" private" if self.private else ""),
            self.memsize, self.hi - self.lo, self.buf_size, len(self._users))


cdef NetmapMemory _new_memory(int mem_id, uint64_t memsize, void *region,
                              int map_fd, bint extmem, object extmem_file):
    cdef NetmapMemory m = NetmapMemory.__new__(NetmapMemory)
    m.memid = mem_id
    m.kind = "netmap-extmem" if extmem else "netmap"
    m.memsize = memsize
    m.region = region
    m.region_size = memsize
    m.map_fd = map_fd
    m.extmem = extmem
    m.extmem_file = extmem_file
    m._key = (os.getpid(), mem_id)
    _memories[m._key] = m
    return m


def memories():
    """{mem_id: NetmapMemory} mapped by this process."""
    pid = os.getpid()
    return {k[1]: m for k, m in _memories.items() if k[0] == pid}


# ------------------------------------------------------------------ port

_ERRNO_TEXT = {
    _errno.ENXIO: "no such netmap port",
    _errno.EBUSY: "busy",
    _errno.EINVAL: "invalid request",
    _errno.EOPNOTSUPP: "not supported",
    _errno.ENOMEM: "out of netmap memory",
    _errno.EIO: "I/O error",
}


cdef class NetmapPort(Port):
    """A port of the netmap kernel module (see the module documentation)."""

    def __cinit__(self, *args, **kw):
        self.knifp = NULL
        self.tx_ids = ()
        self.rx_ids = ()
        self.api = ""

    def __init__(self, name, **kw):
        Port.__init__(self, name, None)

    # ------------------------------------------------------------- open
    def _open(self, forward=False, link_timeout=5.0, link_settle=0.2,
              preflight="warn", require_up=True, share=None, **kw):
        name = self.name
        req = netmap_req.translate(name, **{k: v for k, v in kw.items()
                                            if k != "share"})
        if req.offsets is not None:
            raise BackendError(
                "%s: @offset asks the kernel to move packet data inside buffers "
                "(per-slot offsets); netmapy's rings, slots and buffer views use "
                "the buffer start: drop @offset" % name)
        unknown = set(kw) - {"slots", "tx_slots", "rx_slots", "rings", "tx_rings",
                             "rx_rings", "host_rings", "host_tx_rings",
                             "host_rx_rings", "extra_bufs", "mem_id", "no_tx_poll"}
        if unknown:
            raise TypeError("%s: unknown option(s) for the netmap backend: %s"
                            % (name, ", ".join(sorted(unknown))))
        carrier_before = None
        if req.kind == "nic" and not req.is_monitor:
            try:
                info = iface.info(req.ifname)
            except InterfaceNotFound:
                info = None       # netmap may still know it (ENXIO below)
            if info is not None:
                if require_up and not info.up:
                    raise InterfaceDown(req.ifname)
                carrier_before = bool(info.flags & iface.IFF_RUNNING)
        if preflight and req.kind == "nic":
            self._preflight(req, preflight, forward)

        fd = _open_device()
        self.push_undo("close /dev/netmap", lambda: os.close(fd))
        api = probe_api(fd)
        self.api = str(api)
        req = self._resolve_share(fd, req, share, api)
        if not api.legacy and req.kind == "nic" and req.nr_mode in (
                netmap_req.NR_REG_ONE_NIC, netmap_req.NR_REG_ONE_SW):
            self._check_ring_exists(fd, req)

        ext_map = None
        if req.extmem is not None:
            ext_map = _map_extmem_file(req.extmem.file)
        try:
            if api.legacy:
                if req.single_rx:
                    log.info("netmapy: %s: legacy module; checking that it honours "
                             "NR_RX_RINGS_ONLY after registering", name)
                reply = self._register_legacy(fd, req)
            else:
                reply = self._register(fd, req, ext_map)
        except BaseException:
            if ext_map is not None:
                munmap(<void *><uintptr_t>ext_map[0], ext_map[1])
            raise
        self.request = req
        self.reply = reply
        self._map(fd, req, reply, ext_map)
        self._bind_rings(req, reply)
        if forward:
            self.set_forward(True)
        self.fd = fd
        if req.kind == "nic" and link_timeout and carrier_before and not req.is_monitor:
            self._wait_link(req.ifname, link_timeout, link_settle)
        self._opened("netmap")

    def _preflight(self, req, mode, forward):
        from netmapy.backends.netmap import preflight as pf
        findings = pf.check_request(req, forward=forward)
        self._findings = findings
        errors = [f for f in findings if f.severity == "error"]
        for f in findings:
            if f.severity != "info":
                log.warning("netmapy: %s: preflight: %s", self.name, f)
        if mode == "strict" and errors:
            raise pf.PreflightError(self.name, errors)

    def _resolve_share(self, int fd, req, share, api):
        """Turn @share / share= into an nr_mem_id."""
        if share is not None:
            if isinstance(share, NetmapPort):
                if (<NetmapPort>share).closed:
                    raise ValueError("share=: port %s is closed" % share.name)
                return req.with_mem_id((<NetmapPort>share).mem.memid)
            if isinstance(share, NetmapMemory):
                if not (<NetmapMemory>share).mapped:
                    raise ValueError("share=: %r is no longer mapped" % share)
                return req.with_mem_id((<NetmapMemory>share).memid)
            if isinstance(share, str):
                from dataclasses import replace
                if req.nr_mem_id:
                    raise BackendError("%s: '@%d' and share= both choose the memory "
                                       "region: give one of them" % (self.name, req.nr_mem_id))
                req = replace(req, share=netmap_req.Share(group=share))
            else:
                raise TypeError("share= takes a netmap port, a NetmapMemory or a "
                                "group name, not %s" % type(share).__name__)
        s = req.share
        if s is None:
            return req
        if s.group is not None:
            m = _groups.get((os.getpid(), s.group))
            if m is not None and (<NetmapMemory>m).mapped:
                return req.with_mem_id(m.memid)
            return req                 # the first of the group picks
        if api.legacy:
            raise BackendError("%s: @share:port needs a netmap module with API 14"
                               % self.name)
        try:
            info = _port_info(fd, s.port)
        except OSError as e:
            raise OSError(e.errno, "%s: @share:port=%s: the kernel does not know "
                          "port %r (%s); open that port first" % (
                              self.name, s.port_spec, s.port,
                              os.strerror(e.errno))) from None
        return req.with_mem_id(info.mem_id)

    def _check_ring_exists(self, int fd, req):
        """-N, ~N and ^N: a clear error for a ring the adapter does not have
        (the kernel would say EINVAL, or silently use ring 0 of a direction
        with fewer rings)."""
        try:
            info = _port_info(fd, req.nr_name, req)
        except OSError as e:
            if e.errno == _errno.ENXIO:
                raise InterfaceNotFound(req.ifname) from None
            return               # let the register report it
        n = req.nr_ringid
        if req.nr_mode == netmap_req.NR_REG_ONE_SW:
            ht, hr = info.host_tx_rings, info.host_rx_rings
            if (req.binds_tx and n >= ht) or (req.binds_rx and n >= hr):
                raise QueueOutOfRange(
                    req.ifname, n, min(ht, hr) if req.binds_tx and req.binds_rx
                    else (ht if req.binds_tx else hr), "host")
            return
        if req.single_rx or not req.binds_tx:
            if n >= info.rx_rings:
                raise QueueOutOfRange(req.ifname, n, info.rx_rings, "RX")
        elif not req.binds_rx:
            if n >= info.tx_rings:
                raise QueueOutOfRange(req.ifname, n, info.tx_rings, "TX")
        elif n >= info.tx_rings or n >= info.rx_rings:
            if n < info.tx_rings:
                raise QueueOutOfRange(req.ifname, n, info.rx_rings,
                                      "RX (ring %d exists on TX only: add /T)" % n)
            if n < info.rx_rings:
                raise QueueOutOfRange(req.ifname, n, info.tx_rings,
                                      "TX (ring %d exists on RX only: add /R)" % n)
            raise QueueOutOfRange(req.ifname, n, min(info.tx_rings, info.rx_rings),
                                  "netmap ring pair")

    def _register(self, int fd, req, ext_map):
        cdef nmc_header h
        cdef nmc_register r
        cdef nmc_opt_extmem ext
        cdef nmc_opt_offsets off
        cdef int rc, err
        _fill_register(&h, &r, req, req.nr_mem_id)
        _fill_options(&h, &ext, &off, req, ext_map[0] if ext_map else 0,
                      ext_map[1] if ext_map else 0)
        h.nr_body = <uint64_t><uintptr_t>&r
        with nogil:
            rc = nmc_ctrl(fd, &h)
        err = errno
        if rc < 0:
            opt_err = []
            if req.extmem is not None and ext.nro_opt.nro_status:
                opt_err.append("@extmem: %s" % os.strerror(ext.nro_opt.nro_status))
            raise _register_error(err, req, self.name, opt_err)
        return dict(nr_offset=r.nr_offset, nr_memsize=r.nr_memsize,
                    nr_tx_slots=r.nr_tx_slots, nr_rx_slots=r.nr_rx_slots,
                    nr_tx_rings=r.nr_tx_rings, nr_rx_rings=r.nr_rx_rings,
                    nr_host_tx_rings=r.nr_host_tx_rings,
                    nr_host_rx_rings=r.nr_host_rx_rings, nr_mem_id=r.nr_mem_id,
                    nr_extra_bufs=r.nr_extra_bufs)

    def _register_legacy(self, int fd, req):
        cdef nmc_legacy l
        cdef int rc, err
        lreq = req.legacy()
        _fill_legacy(&l, lreq)
        with nogil:
            rc = nmc_regif_legacy(fd, &l)
        err = errno
        if rc < 0:
            raise _register_error(err, req, self.name, [])
        return dict(nr_offset=l.nr_offset, nr_memsize=l.nr_memsize,
                    nr_tx_slots=l.nr_tx_slots, nr_rx_slots=l.nr_rx_slots,
                    nr_tx_rings=l.nr_tx_rings, nr_rx_rings=l.nr_rx_rings,
                    nr_host_tx_rings=0, nr_host_rx_rings=0,
                    nr_mem_id=l.nr_arg2, nr_extra_bufs=l.nr_arg3)

    def _map(self, int fd, req, reply, ext_map):
        """Map the region once per (process, mem_id); attach this port."""
        cdef NetmapMemory m
        cdef void *p
        mem_id = reply["nr_mem_id"]
        memsize = reply["nr_memsize"]
        m = _memories.get((os.getpid(), mem_id))
        if m is not None and not m.mapped:
            m = None
        if m is not None:
            if m.memsize != memsize:
                raise BackendError(
                    "%s: netmap memory %d is mapped here with %d bytes but the "
                    "kernel now says %d: close every port of it and retry" % (
                        self.name, mem_id, m.memsize, memsize))
            if ext_map is not None:         # the kernel found the same pages
                munmap(<void *><uintptr_t>ext_map[0], ext_map[1])
        elif ext_map is not None:
            if ext_map[1] < memsize:
                munmap(<void *><uintptr_t>ext_map[0], ext_map[1])
                raise BackendError("%s: @extmem file %s is %d bytes, the region "
                                   "needs %d" % (self.name, req.extmem.file,
                                                 ext_map[1], memsize))
            m = _new_memory(mem_id, ext_map[1], <void *><uintptr_t>ext_map[0], -1,
                            True, req.extmem.file)
        else:
            if memsize == 0:
                raise BackendError("%s: the kernel reported a memory region of 0 "
                                   "bytes" % self.name)
            p = mmap(NULL, memsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            if p == MAP_FAILED:
                e = errno
                raise OSError(e, "%s: mmap of netmap memory %d (%d bytes): %s" % (
                    self.name, mem_id, memsize, os.strerror(e)))
            m = _new_memory(mem_id, memsize, p, fd, False, None)
        m._attach(self, fd)
        self.mem = m
        self.push_undo("release netmap memory %d" % mem_id, lambda: m._detach(self))
        if req.share is not None and req.share.group is not None:
            _groups.setdefault((os.getpid(), req.share.group), m)

    def _bind_rings(self, req, reply):
        """Find the rings bound to our fd in the kernel's netmap_if."""
        cdef NetmapMemory m = <NetmapMemory>self.mem
        cdef char *base = <char *>m.region
        cdef uint64_t off = reply["nr_offset"]
        cdef netmap_if *nifp
        cdef uint32_t T, HT, R, HR, k, i
        cdef int64_t o
        cdef netmap_ring *ring
        if off + sizeof(netmap_if) > m.memsize:
            raise BackendError("%s: netmap_if offset %d outside the %d-byte region"
                               % (self.name, off, m.memsize))
        nifp = <netmap_if *>(base + off)
        T, R = nifp.ni_tx_rings, nifp.ni_rx_rings
        # API 14 reports max(1, host rings); older modules left these 0 but
        # always had one host ring slot in ring_ofs[]
        HT = nifp.ni_host_tx_rings if nifp.ni_host_tx_rings else 1
        HR = nifp.ni_host_rx_rings if nifp.ni_host_rx_rings else 1
        if T + HT + R + HR > 4 * 4096 or \
                off + sizeof(netmap_if) + (T + HT + R + HR) * 8 > m.memsize:
            raise BackendError("%s: implausible netmap_if (%d/%d/%d/%d rings)"
                               % (self.name, T, HT, R, HR))
        tx, rx = [], []
        for k in range(T + HT):
            if nifp.ring_ofs[k]:
                tx.append(k)
        for k in range(R + HR):
            if nifp.ring_ofs[T + HT + k]:
                rx.append(k)
        nic_tx = [k for k in tx if k < T]
        host_tx = [k for k in tx if k >= T]
        nic_rx = [k for k in rx if k < R]
        host_rx = [k for k in rx if k >= R]
        if req.single_rx and tx:
            raise BackendError(
                "%s: this netmap module bound TX ring(s) %s although '~%d' asked "
                "for NR_RX_RINGS_ONLY: it predates per-ring netmap mode (December "
                "2015) and would take the whole NIC away from the kernel; install a "
                "current netmap (API 14)" % (self.name, tx, req.nr_ringid))
        if req.single_rx and nic_rx != [req.nr_ringid]:
            raise BackendError("%s: the kernel bound RX ring(s) %s, not %d" % (
                self.name, nic_rx + host_rx, req.nr_ringid))
        if not tx and not rx:
            raise BackendError("%s: the kernel bound no ring to this port (%s)" % (
                self.name, req.describe()))
        self.knifp = nifp
        self.ring_init_port(len(nic_tx), len(nic_rx), len(host_tx), len(host_rx))
        for i, k in enumerate(nic_tx + host_tx):
            o = nifp.ring_ofs[k]
            self.txr[i] = self._ring_at(nifp, o, k, "TX")
        for i, k in enumerate(nic_rx + host_rx):
            o = nifp.ring_ofs[T + HT + k]
            self.rxr[i] = self._ring_at(nifp, o, k, "RX")
        self.tx_ids = tuple(nic_tx + host_tx)
        self.rx_ids = tuple(nic_rx + host_rx)
        self.link_nifp()
        memcpy(self.nifp.ni_name, nifp.ni_name, 15)
        self.nifp.ni_name[15] = 0
        self.nifp.ni_flags = nifp.ni_flags
        m.private = bool(nifp.ni_flags & NMC_NI_PRIV_MEM)
        ring = self.txr[0] if self.ntx else self.rxr[0]
        m.set_bufs(<char *>ring + ring.buf_ofs, ring.nr_buf_size)
        self._absorb()
        rh = reply
        if (req.nr_host_tx_rings and rh["nr_host_tx_rings"] != req.nr_host_tx_rings) or \
                (req.nr_host_rx_rings and rh["nr_host_rx_rings"] != req.nr_host_rx_rings):
            log.warning("netmapy: %s: asked for %d/%d host rings, the adapter has "
                        "%d/%d (the count is set when the interface first enters "
                        "netmap mode: close every netmap user of it to change it)",
                        self.name, req.nr_host_tx_rings, req.nr_host_rx_rings,
                        rh["nr_host_tx_rings"], rh["nr_host_rx_rings"])

    cdef netmap_ring *_ring_at(self, netmap_if *nifp, int64_t o, uint32_t k,
                               str what) except NULL:
        cdef NetmapMemory m = <NetmapMemory>self.mem
        cdef char *p = <char *>nifp + o
        cdef netmap_ring *r
        if p < <char *>m.region or p + 256 > <char *>m.region + m.memsize:
            raise BackendError("%s: %s ring %d lies outside the mapped region"
                               % (self.name, what, k))
        r = <netmap_ring *>p
        if r.num_slots == 0 or p + 256 + <size_t>r.num_slots * 16 > \
                <char *>m.region + m.memsize:
            raise BackendError("%s: %s ring %d has an implausible size (%d slots)"
                               % (self.name, what, k, r.num_slots))
        return r

    def _wait_link(self, ifname, timeout, settle):
        from netmapy.backends.netmap import preflight as pf
        res = pf.wait_for_link(ifname, timeout=timeout, settle=settle)
        self.link_flaps = res.flaps
        self.link_wait = res.waited

    # ------------------------------------------------------------- sync
    cdef void _absorb(self) noexcept nogil:
        """Take the kernel's view of every ring (after a sync or poll)."""
        cdef uint32_t i
        for i in range(self.ntx):
            self.txk[i].hwcur = self.txr[i].head
            self.txk[i].hwtail = self.txr[i].tail
        for i in range(self.nrx):
            self.rxk[i].hwcur = self.rxr[i].head
            self.rxk[i].hwtail = self.rxr[i].tail

    cdef void _refresh_tails(self) noexcept nogil:
        """Take the tails the kernel wrote meanwhile (a poll()/select() on
        fileno() syncs the rings behind our back)."""
        cdef uint32_t i
        for i in range(self.ntx):
            self.txk[i].hwtail = self.txr[i].tail
        for i in range(self.nrx):
            self.rxk[i].hwtail = self.rxr[i].tail

    cdef void b_woke(self) noexcept nogil:
        self._refresh_tails()

    cdef int _sync_tx(self, int skip) noexcept nogil:
        """Check every TX ring (but `skip`, which the caller checked), then
        NIOCTXSYNC, which syncs all of them."""
        cdef uint32_t i
        for i in range(self.ntx):
            self.txk[i].hwtail = self.txr[i].tail
        for i in range(self.ntx):
            if <int>i != skip and self.check_ring(self.txr[i], &self.txk[i], True) < 0:
                return -1
        if nmc_txsync(self.fd) < 0:
            return self.fail(errno, "NIOCTXSYNC")
        for i in range(self.ntx):
            self.txk[i].hwcur = self.txr[i].head
            self.txk[i].hwtail = self.txr[i].tail
        return 0

    cdef int _sync_rx(self, int skip) noexcept nogil:
        cdef uint32_t i
        for i in range(self.nrx):
            self.rxk[i].hwtail = self.rxr[i].tail
        for i in range(self.nrx):
            if <int>i != skip and self.check_ring(self.rxr[i], &self.rxk[i], False) < 0:
                return -1
        if nmc_rxsync(self.fd) < 0:
            return self.fail(errno, "NIOCRXSYNC")
        for i in range(self.nrx):
            self.rxk[i].hwcur = self.rxr[i].head
            self.rxk[i].hwtail = self.rxr[i].tail
        return 0

    cdef int c_txsync(self, uint32_t i) noexcept nogil:
        cdef uint32_t j
        for j in range(self.ntx):
            self.txk[j].hwtail = self.txr[j].tail
        return Port.c_txsync(self, i)

    cdef int c_rxsync(self, uint32_t i) noexcept nogil:
        cdef uint32_t j
        for j in range(self.nrx):
            self.rxk[j].hwtail = self.rxr[j].tail
        return Port.c_rxsync(self, i)

    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        return self._sync_tx(<int>i)

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        return self._sync_rx(<int>i)

    cdef int _ready(self, int events) noexcept nogil:
        cdef uint32_t i
        cdef int rev = 0
        if events & POLLOUT:
            for i in range(self.ntx):
                if self.txr[i].head != self.txr[i].tail:
                    rev |= POLLOUT
                    break
        if events & POLLIN:
            for i in range(self.nrx):
                if self.rxr[i].head != self.rxr[i].tail:
                    rev |= POLLIN
                    break
        return rev

    cdef int c_poll(self, int events, int timeout_ms) noexcept nogil:
        """One NIOCTXSYNC and one NIOCRXSYNC per round (each syncs every
        bound ring), then sleep in the kernel's poll()."""
        cdef uint32_t i
        cdef bint tx_dirty
        cdef int rev, rc
        cdef long long deadline = 0, now
        cdef pollfd pfd
        if timeout_ms > 0:
            deadline = monotonic_ms() + timeout_ms
        while True:
            tx_dirty = False
            for i in range(self.ntx):
                if self.txr[i].head != self.txk[i].hwcur:
                    tx_dirty = True
                    break
            if self.ntx and (tx_dirty or (events & POLLOUT)):
                if self._sync_tx(-1) < 0:
                    return -1
            if self.nrx and (events & POLLIN):
                if self._sync_rx(-1) < 0:
                    return -1
            rev = self._ready(events)
            if rev or timeout_ms == 0 or not (events & (POLLIN | POLLOUT)):
                return rev
            pfd.fd = self.fd
            pfd.events = events & (POLLIN | POLLOUT)
            pfd.revents = 0
            if timeout_ms > 0:
                now = monotonic_ms()
                if now >= deadline:
                    return 0
                rc = poll(&pfd, 1, <int>(deadline - now))
            else:
                rc = poll(&pfd, 1, -1)
            if rc < 0:
                return self.fail(errno, "poll")
            if pfd.revents & POLLERR:
                return self.fail(EIO, "poll() reported POLLERR: the kernel found a "
                                 "ring's head/cur out of range and reset it")
            if rc > 0:
                # the kernel's poll synced the rings it reported ready
                self._refresh_tails()
                rev = self._ready(events)
                if rev:
                    return rev

    # ------------------------------------------------------ host / fwd
    def set_forward(self, bint on=True):
        """Transparent mode: NR_FORWARD on every RX ring of the port.  Slots
        released with NS_FORWARD set then go to the other side at the next
        sync: NIC RX -> host stack, host RX -> NIC (the latter only when the
        port holds every NIC TX ring, i.e. 'netmap:IF*')."""
        cdef uint32_t i
        self._check_open()
        for i in range(self.nrx):
            if on:
                self.rxr[i].flags |= NR_FORWARD
            else:
                self.rxr[i].flags &= ~NR_FORWARD

    @property
    def extra_buffers(self):
        """The buffer indices on the port's extra-buffer list (ni_bufs_head,
        linked through each buffer's first 4 bytes).  Leave exactly the
        buffers you own on that list before closing: the kernel frees it."""
        cdef NetmapMemory m
        cdef uint32_t idx, n = 0
        self._check_open()
        m = <NetmapMemory>self.mem
        out = []
        idx = self.knifp.ni_bufs_head
        while m.lo <= idx < m.hi and n < m.hi:
            out.append(idx)
            idx = (<uint32_t *>(m.bufs + <size_t>idx * m.buf_size))[0]
            n += 1
        return out

    @property
    def findings(self):
        """The preflight findings of the open (a list, maybe empty)."""
        return list(self._findings or ())

    def _backend_info(self):
        m = self.mem
        r = self.reply or {}
        return {"nr_name": self.request.nr_name, "request": self.request.describe(),
                "api": self.api, "mem_id": m.memid, "memsize": m.memsize,
                "private_memory": m.private, "tx_ring_ids": list(self.tx_ids),
                "rx_ring_ids": list(self.rx_ids),
                "adapter_tx_rings": r.get("nr_tx_rings"),
                "adapter_rx_rings": r.get("nr_rx_rings"),
                "adapter_host_tx_rings": r.get("nr_host_tx_rings"),
                "adapter_host_rx_rings": r.get("nr_host_rx_rings"),
                "extra_bufs": r.get("nr_extra_bufs"),
                "link_flaps": self.link_flaps, "link_wait_s": self.link_wait}


def _map_extmem_file(path):
    """(address, size) of @extmem's file mapped shared read/write."""
    cdef void *p
    cdef size_t size
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, "@extmem file %s: %s" % (path, e.strerror)) from None
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise BackendError("@extmem file %s is empty: size it first (e.g. "
                               "truncate -s 512M %s)" % (path, path))
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            e = errno
            raise OSError(e, "@extmem file %s: mmap: %s" % (path, os.strerror(e)))
        return (<uintptr_t>p, size)
    finally:
        os.close(fd)


def _register_error(int err, req, name, opt_err):
    """The exception for a failed NETMAP_REQ_REGISTER, with what to do."""
    what = "%s: netmap refused the registration (%s)" % (name, req.describe())
    extra = ("; " + "; ".join(opt_err)) if opt_err else ""
    if err in (_errno.EPERM, _errno.EACCES):
        return NoPrivilege("registering %s with netmap" % name, "CAP_NET_ADMIN")
    if err == _errno.ENXIO:
        if req.kind == "nic":
            return InterfaceNotFound(req.ifname)
        return OSError(err, "%s: no such netmap port %r%s" % (what, req.nr_name, extra))
    if err == _errno.EBUSY:
        return PortBusy(
            "%s: %s: the rings are held exclusively ('/x') by another process, "
            "or the interface is attached to a VALE switch (vale-ctl -d "
            "SWITCH:%s), or a kernel user owns it%s" % (
                what, os.strerror(err), req.ifname, extra))
    if err == _errno.EOPNOTSUPP:
        return OSError(err, "%s: %s: the driver of %s has no native netmap support "
                       "and dev.netmap.admode=1 (native only) forbids the emulated "
                       "adapter: `echo 0 > /sys/module/netmap/parameters/admode`, "
                       "or load netmap's patched driver%s" % (
                           what, os.strerror(err), req.ifname, extra))
    if err == _errno.ENOMEM:
        return OSError(err, "%s: %s: the netmap memory pools are too small for "
                       "these rings (see `python -m netmapy.preflight %s`; raise "
                       "/sys/module/netmap/parameters/buf_num or ring_num while "
                       "no port is open)%s" % (what, os.strerror(err), name, extra))
    if err == _errno.EIO:
        return OSError(err, "%s: %s: the port carries a virtio-net header "
                       "(NR_ACCEPT_VNET_HDR), which netmapy does not handle%s"
                       % (what, os.strerror(err), extra))
    if err == _errno.EINVAL:
        hint = " (ring numbers, modes and options the adapter cannot do)"
        if req.single_rx:
            hint = (": '~%d' is sent as NR_REG_ONE_NIC + ring %d + "
                    "NR_RX_RINGS_ONLY; a module that rejects it cannot take one "
                    "RX queue alone (install a current netmap, API 14)"
                    % (req.nr_ringid, req.nr_ringid))
        elif req.binds_host:
            hint = ": host rings need an adapter with host rings (a NIC, not a " \
                   "VALE port or pipe)"
        elif req.kind == "pipe":
            hint = ": pipes take no ring selector"
        return OSError(err, "%s: %s%s%s" % (what, os.strerror(err), hint, extra))
    return OSError(err, "%s: %s%s" % (what, os.strerror(err), extra))


def open_port(name, **kw):
    """Open a netmap port (the backend entry point)."""
    if not os.path.exists(DEVICE):
        raise OSError(_errno.ENOENT, "%s: %s does not exist: the netmap kernel "
                      "module is not loaded; %s" % (name, DEVICE, LOAD_HINT))
    return open_or_undo(NetmapPort(name), kw)
