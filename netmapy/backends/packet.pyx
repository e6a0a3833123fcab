# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""packet backend: netmap rings over AF_PACKET mmap rings, on any interface.

``packet:eth3`` receives every frame arriving on eth3 and transmits on it;
``packet:eth3-4`` receives only frames the kernel recorded as arriving on
RX queue 4; ``/R`` and ``/T`` open one direction only (a TX-only port binds
no protocol, so the kernel does not copy received frames to it).
``@fanout:group=G,mode=hash|queue|cpu|lb`` shares the traffic of an
interface among the ports (processes) that join group G, each frame going
to exactly one of them.

AF_PACKET copies: received frames stay with the kernel too (this backend
taps, it does not bypass; use xdp:eth3~4 for that).

The RX ring is 1024 blocks of 64 KiB (``block_nr``, ``block_size``).  The
kernel hands a block over when it is full or ``retire_ms`` (1 ms) after its
first frame, so at low rates each block holds ~1 ms of traffic: many small
blocks keep that from limiting the buffer to a few tens of milliseconds
(64 blocks of 1 MiB lost a quarter of a 200 kpps flow to a forwarder that
paused while transmitting; 1024 of 64 KiB lose nothing).  Promiscuous mode
(``promisc=True``) is a membership of the socket: the kernel drops it when
the port closes or the process dies.

TX (``tx_mode``): ``"copy"`` (the default) hands each batch to the kernel
with one sendmmsg() straight from the netmap buffers (netmapy/includes/
nm_mmsg.h), which copies every frame into a linear skb; ``"ring"`` uses a
TPACKET_V2 TX ring, whose pages the skbs reference (zero copy until a
receiver needs its own copy).  On veth, whose receiver copies such pages
again (XDP, GRO), ``copy`` cost 15 % less CPU per forwarded packet
(netmapy-bench, 1,705 vs 2,006 ns).  A frame the kernel refuses is counted
in ``Port.tx_failed`` and released; a full device queue or socket buffer
(ENOBUFS, EAGAIN) leaves the frames in the ring for the next sync.
"""

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memset
from netmapy.includes.abi cimport netmap_ring
from netmapy.includes.system cimport (
    mmap, munmap, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_LOCKED,
    poll, pollfd, POLLIN, POLLOUT, errno, gettimeofday, timeval)
from netmapy.core import open_or_undo

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)

cdef enum:
    C_SOL_PACKET = 263
    C_PACKET_STATISTICS = 6
from netmapy.core cimport Port
from netmapy.includes.mmsg cimport nm_mmsg_tx_sync

import errno as _errno
import os
import socket
import struct

from netmapy.host import iface
from ..errors import NoPrivilege, BackendError, InterfaceError

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_TX_RING = 13
PACKET_LOSS = 14
PACKET_FANOUT = 18
PACKET_QDISC_BYPASS = 20
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
TPACKET_V2 = 1
TPACKET_V3 = 2
ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SKF_AD_OFF = -0x1000
SKF_AD_QUEUE = 24

FANOUT_MODES = {"hash": 0, "lb": 1, "cpu": 2, "rollover": 3, "random": 4,
                "queue": 5}
FANOUT_FLAG_DEFRAG = 0x8000


# Drivers that deliver frames with queue_mapping still holding the queue the
# peer transmitted on (which is the RX queue they arrive on) instead of
# recording the RX queue (q + 1) as NIC drivers do.
_RAW_QUEUE_DRIVERS = {"veth"}


def _queue_filter(int q, bint recorded=True):
    """Classic BPF: accept frames that arrived on RX queue q.  NIC drivers
    record it as skb->queue_mapping = q + 1; veth leaves the peer's TX
    queue index there (= the RX queue), so it matches q itself."""
    prog = [
        (0x20, 0, 0, (SKF_AD_OFF + SKF_AD_QUEUE) & 0xffffffff),  # ld [queue]
        (0x15, 0, 1, q + 1 if recorded else q),                   # jeq
        (0x06, 0, 0, 0x40000),                                    # ret all
        (0x06, 0, 0, 0),                                          # ret 0
    ]
    return prog


cdef class PacketPort(Port):
    """netmap rings over AF_PACKET: one RX ring (TPACKET_V3) and one TX ring
    (TPACKET_V2)."""

    def __init__(self, name, **kw):
        Port.__init__(self, name, None)
        self.rxfd = self.txfd = -1
        self.queue = -1

    def _open(self, promisc=False, slots=None, rx_slots=None, tx_slots=None,
              block_size=1 << 16, block_nr=1024, frame_nr=2048, retire_ms=1,
              qdisc_bypass=True, buf_size=None, memid=None, sock_filter=None, tx_mode="copy"):
        name = self.name
        mode = name.mode.name
        if mode == "SINGLE_RX":
            raise BackendError(
                "%s: AF_PACKET cannot take a queue away from the kernel (it copies): "
                "use xdp:%s~%d to bypass the kernel for queue %d, or packet:%s-%d "
                "for a copy of that queue's traffic" % (
                    name, name.ifname, name.ring, name.ring, name.ifname, name.ring))
        if mode not in ("ALL_NIC", "ONE_NIC"):
            raise BackendError("%s: the packet backend opens NIC rings only (no host "
                               "rings or pipes)" % name)
        conf = name.option("conf") or {}
        nrx = int(rx_slots or slots or conf.get("rx-slots") or conf.get("slots") or 1024)
        ntx = int(tx_slots or slots or conf.get("tx-slots") or conf.get("slots") or 1024)
        self.ifname = name.ifname
        want_rx = not name.tx_only
        want_tx = not name.rx_only
        q = name.ring if mode == "ONE_NIC" else None
        info = iface.require(name.ifname, up=True, rx_queue=q)
        if q is not None:
            self.queue = q
        mid = memid if memid is not None else (name.memid or 1)
        from netmapy.core import anon_memory
        self.mem = anon_memory(mid, buf_size=buf_size or 2048) if buf_size else anon_memory(mid)
        self.ring_init_port(1 if want_tx else 0, 1 if want_rx else 0, 0, 0)
        self.push_undo("free the rings", self._close_rings)
        self.alloc_rings(ntx, nrx)
        if want_rx:
            self._open_rx(info, promisc, block_size, block_nr, retire_ms, q, sock_filter)
            self.fd = self.rxfd
        if tx_mode not in ("ring", "copy"):
            raise ValueError("tx_mode must be 'ring' (a TPACKET TX ring, zero copy into the skb) "
                             "or 'copy' (sendmmsg: the kernel copies into a linear skb), not %r"
                             % (tx_mode,))
        if want_tx:
            self._open_tx(info, frame_nr, qdisc_bypass, promisc and not want_rx, tx_mode)
            if not want_rx:
                self.fd = self.txfd
        self._opened("packet")

    def _socket(self, proto):
        try:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, proto)
        except PermissionError:
            raise NoPrivilege("the packet backend (AF_PACKET sockets)", "CAP_NET_RAW") from None
        return s

    def _open_rx(self, info, promisc, uint32_t block_size, uint32_t block_nr,
                 int retire_ms, q, sock_filter):
        cdef void *m
        s = self._socket(0)
        self.rxsock = s
        self.push_undo("close the RX socket", s.close)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        try:
            s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass
        prog = sock_filter
        if prog is None and q is not None:
            prog = _queue_filter(q, info.driver not in _RAW_QUEUE_DRIVERS)
        if prog:
            raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
            import ctypes
            buf = ctypes.create_string_buffer(raw, len(raw))   # copied by the kernel
            fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        frame_size = 2048
        req = struct.pack("IIIIIII", block_size, block_nr, frame_size,
                          block_size // frame_size * block_nr, retire_ms, 0, 0)
        try:
            s.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        except OSError as e:
            raise OSError(e.errno, "%s: PACKET_RX_RING of %d blocks of %d bytes: %s" % (
                self.name, block_nr, block_size, e.strerror)) from None
        size = <size_t>block_size * block_nr
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s.fileno(), 0)
        if m == MAP_FAILED:
            raise OSError(errno, "%s: mmap of the RX ring: %s" % (self.name, os.strerror(errno)))
        self.rx_map_size = size
        memset(&self.rx, 0, sizeof(self.rx))
        self.rx.map = <char *>m
        self.rx.block_size = block_size
        self.rx.block_nr = block_nr
        self.push_undo("unmap the RX ring", self._unmap_rx)
        if promisc:
            mreq = struct.pack("iHH8s", info.index, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.bind((self.ifname, ETH_P_ALL))
        fan = self.name.option("fanout")
        if fan is not None:
            group = int(fan.get("group", os.getpid() & 0xffff))
            mode = fan.get("mode", "hash")
            if mode not in FANOUT_MODES:
                raise ValueError("fanout mode %r: expected one of %s" % (
                    mode, ", ".join(FANOUT_MODES)))
            val = (group & 0xffff) | (FANOUT_MODES[mode] << 16)
            if mode == "hash":
                val |= FANOUT_FLAG_DEFRAG << 16
            try:
                s.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", val))
            except OSError as e:
                raise OSError(e.errno, "%s: joining fanout group %d (%s): %s%s" % (
                    self.name, group, mode, e.strerror,
                    " -- the group exists with another mode or interface"
                    if e.errno == _errno.EINVAL else "")) from None
        self.rxfd = s.fileno()

    def _unmap_rx(self):
        if self.rx.map != NULL:
            munmap(self.rx.map, self.rx_map_size)
            self.rx.map = NULL

    def _open_tx(self, info, uint32_t frame_nr, qdisc_bypass, promisc, tx_mode):
        cdef void *m
        s = self._socket(0)
        self.txsock = s
        self.push_undo("close the TX socket", s.close)
        if qdisc_bypass:
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        if tx_mode == "copy":
            # sendmmsg from the netmap buffers: the kernel copies each frame
            # into a linear skb (no TX ring, no completion to wait for)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            if promisc:
                mreq = struct.pack("iHH8s", info.index, PACKET_MR_PROMISC, 0, b"")
                s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            s.bind((self.ifname, 0))
            s.setblocking(False)
            self.txfd = s.fileno()
            memset(&self.mtx, 0, sizeof(self.mtx))
            self.mtx.fd = self.txfd
            self.tx_copy = True
            return
        s.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V2)
        s.setsockopt(SOL_PACKET, PACKET_LOSS, 1)
        frame_size = 2048
        per_block = 4096 // frame_size if frame_size <= 4096 else 1
        block_size = frame_size * max(per_block, 1)
        block_nr = (frame_nr + per_block - 1) // per_block
        frame_nr = block_nr * per_block
        req = struct.pack("IIII", block_size, block_nr, frame_size, frame_nr)
        s.setsockopt(SOL_PACKET, PACKET_TX_RING, req)
        size = <size_t>block_size * block_nr
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, s.fileno(), 0)
        if m == MAP_FAILED:
            raise OSError(errno, "%s: mmap of the TX ring: %s" % (self.name, os.strerror(errno)))
        self.tx_map_size = size
        memset(&self.tx, 0, sizeof(self.tx))
        self.tx.map = <char *>m
        self.tx.frame_size = frame_size
        self.tx.frame_nr = frame_nr
        self.push_undo("unmap the TX ring", self._unmap_tx)
        if promisc:
            mreq = struct.pack("iHH8s", info.index, PACKET_MR_PROMISC, 0, b"")
            s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        s.bind((self.ifname, 0))
        self.txfd = s.fileno()

    def _unmap_tx(self):
        if self.tx.map != NULL:
            munmap(self.tx.map, self.tx_map_size)
            self.tx.map = NULL

    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        cdef int rc
        cdef uint64_t failed, failed_bytes
        if self.tx_copy:
            failed, failed_bytes = self.mtx.failed, self.mtx.failed_bytes
            rc = nm_mmsg_tx_sync(&self.mtx, self.txr[0])
            self.tx_failed += self.mtx.failed - failed
            self.tx_failed_bytes += self.mtx.failed_bytes - failed_bytes
            if rc < 0:
                return self.fail(-rc, "sendmmsg on the TX socket")
            return 0
        rc = pk_tx_flush(&self.tx, self.txr[0], self.txfd)
        if rc < 0:
            return self.fail(-rc, "send on the TX ring")
        return 0

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        cdef timeval tv
        if pk_rx_fill(&self.rx, self.rxr[0]):
            gettimeofday(&tv, NULL)
            self.rxr[0].ts.tv_sec = tv.tv_sec
            self.rxr[0].ts.tv_usec = tv.tv_usec
        return 0

    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil:
        cdef int n = 0
        if (events & POLLIN) and self.rxfd >= 0:
            fds[n].fd = self.rxfd
            fds[n].events = POLLIN
            fds[n].revents = 0
            n += 1
        if (events & POLLOUT) and self.txfd >= 0:
            fds[n].fd = self.txfd
            fds[n].events = POLLOUT
            fds[n].revents = 0
            n += 1
        return n

    cdef void _read_stats(self) noexcept nogil:
        """Fold PACKET_STATISTICS (which the kernel resets on every read)
        into our totals."""
        cdef unsigned int st[3]
        cdef socklen_t ln = sizeof(st)
        if self.rxfd < 0:
            return
        if getsockopt(self.rxfd, C_SOL_PACKET, C_PACKET_STATISTICS, st, &ln) == 0:
            self.kernel_packets += st[0]
            self.kernel_drops += st[1]

    cdef uint64_t b_rx_drops(self) noexcept nogil:
        self._read_stats()
        return self.kernel_drops

    def stats(self):
        """Counters: packets/bytes through the rings, frames the kernel
        dropped because the RX ring was full (rx_kernel_drops), frames cut
        to the buffer size, frames the kernel refused to send."""
        self._check_open()
        self._read_stats()
        return dict(rx_packets=self.rx.packets, rx_bytes=self.rx.bytes,
                    rx_kernel_packets=self.kernel_packets,
                    rx_kernel_drops=self.kernel_drops, rx_truncated=self.rx.truncated,
                    tx_packets=self.mtx.packets if self.tx_copy else self.tx.packets,
                    tx_bytes=self.mtx.bytes if self.tx_copy else self.tx.bytes,
                    tx_inflight=0 if self.tx_copy else self.tx.inflight,
                    tx_bad_format=self.mtx.failed if self.tx_copy else self.tx.bad_format,
                    tx_kicks=self.tx.kicks, tx_mode="copy" if self.tx_copy else "ring")

    def _backend_info(self):
        return {"ifname": self.ifname, "queue": self.queue}


def open_port(name, **kw):
    return open_or_undo(PacketPort(name), kw)
