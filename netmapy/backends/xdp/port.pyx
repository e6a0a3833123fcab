# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""xdp backend: netmap rings over AF_XDP sockets, one per (interface, queue).

This file is the port (``XdpPort``), its UMEM (``Umem``) and the exit
hook (the forwarding loops are netmapy.fastpath's, for every backend); the bpf() calls are bpf.pyx, the per-interface program
attach.pyx, the programs prog.py (see the package's docstring).

``xdp:eth3~4``  an RX ring fed by RX queue 4 of eth3 only: an XDP program
                redirects that queue's packets to an AF_XDP socket and
                passes everything else (other queues, and packets the
                optional ``steer`` filter does not select) to the kernel.
``xdp:eth3-4``  one RX and one TX ring, on queue 4.
``xdp:eth3``    one ring pair per queue (the whole interface bypassed).
``/R`` ``/T``   one direction only.
``xdp:eth3^``   the host TX ring only: frames written to it are received by
                eth3's network stack as if they had arrived on eth3
                (``xdp:eth3*`` gives the NIC rings and the host ring;
                ``host=True`` adds the host ring to any port).

Options (``netmapy.open(name, **options)``)::

    steer="udp dst port 53"   only matching packets leave the kernel (a
                              tcpdump expression, or classic BPF: a list of
                              (code, jt, jf, k) or ``tcpdump -ddd`` text)
    netmask="255.255.255.0"   for steer expressions that need one (`ip
                              broadcast`); default: the interface's IPv4
                              netmask
    share=port | "group" | Umem
                              use the UMEM of another xdp port (or of a named
                              group): buffers swap between them, zero copy;
                              the name option ``@share:port=xdp:IF-0`` or
                              ``@share:name=G`` says the same
    slots / rx_slots / tx_slots   netmap ring sizes (default 1024)
    ring_size=4096            AF_XDP RX/TX/fill/completion ring sizes (2048
                              above 4 queues, 1024 above 16)
    frame_size=2048           UMEM frame size (2048 or 4096)
    umem_frames=N             UMEM size in frames (for a shared UMEM that
                              more ports will join)
    xdp_mode="native"         or "generic" (skb mode: any interface, slower)
    zerocopy=None             None: try zero copy, fall back to copy mode;
                              True: require it; False: copy mode
    need_wakeup=True          XDP_USE_NEED_WAKEUP
    rx_coalesce_us=50         while packets flow, wait for the next batch on
                              a timer this long instead of being woken by
                              the kernel (0: always block in poll)
    host=False                add the host TX ring (reinjection)
    force=False               replace an XDP program someone else attached
                              (it is put back when the port closes)
    attach="link"             attach the program through a bpf_link (removed
                              by the kernel when the last holder dies) or
                              "netlink" (kernels without XDP links)
    tx_budget=256             packets one copy-mode sendto() may send

See docs/xdp.md for the design, the buffer accounting and the limits.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy
from netmapy.includes.abi cimport (netmap_ring, NR_TX, NR_RX, nm_ring_space)
from netmapy.includes.system cimport (
    mmap, munmap, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_PRIVATE,
    MAP_ANONYMOUS, MAP_NORESERVE, pollfd, POLLIN, POLLOUT, errno, close,
    gettimeofday, timeval)
from netmapy.core import open_or_undo
from netmapy.core cimport Port, Memory, poll_pair, ring_move, pair_interrupted
from netmapy.stop cimport stop_requested
from netmapy.includes.xdp cimport *
from netmapy.includes.system cimport monotonic_ms

import atexit
import errno as _errno
import logging
import os
import select
import signal
import time
import weakref

from netmapy.host import iface
from netmapy.host.netns import (InNetnsFd as _InNs, current_netns_id as _cur_ns_ino,
                                current_netns_fd as _cur_ns_fd)
from netmapy.backends.xdp import prog as xdpprog
from netmapy.errors import NetmapyError, BackendError, QueueBusy, QueueOutOfRange
from netmapy.backends.xdp.bpf import EOPNOTSUPP, XdpUnsupported, _no_priv, _err, _steer_asm, load_program
from netmapy.backends.xdp.attach import _Attachment

log = logging.getLogger("netmapy")

__all__ = ["XdpPort", "Umem", "open_port", "cleanup_all",
           "install_signal_cleanup"]


# ----------------------------------------------------------------- UMEM

_groups = weakref.WeakValueDictionary()
_zc_by_driver = {}


cdef class Umem(Memory):
    """An AF_XDP UMEM used as netmap buffer memory: frame f is buffer f.

    ``NETMAP_BUF`` points XDP_PACKET_HEADROOM (256) bytes into the frame,
    where the kernel writes received data, so a slot's buffer holds
    ``frame_size - 256`` bytes of packet.  Ports with the same Umem swap
    buffers (zero copy).  Use it from one thread at a time.
    """

    def __init__(self, uint32_t frames, uint32_t frame_size=2048, str group=None,
                 int memid=0):
        cdef size_t ln
        cdef void *p
        cdef uint32_t i
        if frame_size not in (2048, 4096):
            raise ValueError("frame_size must be 2048 or 4096, not %d" % frame_size)
        if frames < 64 or frames > (1 << 24):
            raise ValueError("a UMEM has 64..%d frames, not %d" % (1 << 24, frames))
        self.kind = "xdp"
        self.memid = memid
        self.group = group
        self.frames = frames
        self.frame_size = frame_size
        self.buf_size = frame_size
        self.umem_len = <uint64_t>frames * frame_size
        # one more frame: a buffer filled to nr_buf_size spills 256 bytes
        # into the next frame's (unused) headroom; the last one too
        ln = <size_t>(frames + 1) * frame_size
        p = mmap(NULL, ln, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if p == MAP_FAILED:
            raise OSError(errno, "mmap of a %d-frame UMEM: %s" % (frames, os.strerror(errno)))
        self.area = <char *>p
        self.map_len = ln
        self.region = p
        self.region_size = ln
        self.bufs = self.area + NX_XDP_HEADROOM
        self.lo = 2
        self.hi = frames
        self.stack = <uint32_t *>malloc(frames * sizeof(uint32_t))
        self.owner = <uint16_t *>calloc(frames, sizeof(uint16_t))
        if self.stack == NULL or self.owner == NULL:
            raise MemoryError()
        for i in range(frames - 2):
            self.stack[i] = frames - 1 - i
        self._top = frames - 2
        self.top = &self._top
        # every frame is on the stack: none is "fresh" (core.Memory hands
        # out never-used indices from fresh..hi before popping the stack)
        self._fresh = self.hi
        self.fresh = &self._fresh
        self.pool.stack = self.stack
        self.pool.top = self.top
        self.pool.owner = self.owner
        self.pool.lo = self.lo
        self.pool.hi = self.hi
        self.next_id = 1
        self._socks = {}

    def __dealloc__(self):
        if self.area != NULL:
            munmap(self.area, self.map_len)
            self.area = NULL
        free(self.stack)
        free(self.owner)
        self.stack = NULL
        self.owner = NULL

    def _new_id(self):
        cdef uint32_t i
        for i in range(65535):
            v = self.next_id
            self.next_id = 1 if self.next_id == 65535 else self.next_id + 1
            if v not in self._socks:
                return v
        raise NetmapyError("too many AF_XDP sockets on one UMEM")

    def frames_held(self):
        """{socket id: frames it holds} (kernel side), for tests."""
        cdef uint32_t f
        out = {}
        for f in range(self.lo, self.hi):
            if self.owner[f]:
                out[self.owner[f]] = out.get(self.owner[f], 0) + 1
        return out

    def __repr__(self):
        return "<netmapy.Umem %s frames=%d free=%d frame_size=%d sockets=%d>" % (
            self.group or "private", self.frames, self.top[0], self.frame_size,
            len(self._socks))


def _umem_for(share, need, frame_size, umem_frames):
    """(Umem, created) for a port: a new private one, or a shared one."""
    if share is None:
        return Umem(max(umem_frames or 0, need), frame_size), True
    if isinstance(share, Umem):
        return share, False
    if isinstance(share, XdpPort):
        if share.closed:
            raise ValueError("share=: port %s is closed" % share.name)
        return share.mem, False
    if isinstance(share, str):
        key = (os.getpid(), share)
        u = _groups.get(key)
        if u is not None:
            return u, False
        u = Umem(umem_frames or max(2 * need, 16384), frame_size, group=share)
        _groups[key] = u
        return u, True
    raise TypeError("share= takes an xdp port, a Umem or a group name, not %s"
                    % type(share).__name__)


def _share_from_name(pname):
    opt = pname.option("share")
    if opt is None:
        return None
    if "port" in opt:
        target = opt["port"]
        for p in list(_open_ports):
            if not p.closed and str(p.name) == target:
                return p
        raise BackendError("%s: @share:port=%s: no open xdp port of that name in this "
                           "process (open it first)" % (pname, target))
    return opt.get("name", "default")


# ---------------------------------------------------------------- port

_open_ports = weakref.WeakSet()


cdef class XdpPort(Port):
    """netmap rings over AF_XDP sockets (see the module documentation)."""

    def __cinit__(self, *args, **kw):
        self.socks = NULL
        self.pool = NULL
        self.nsocks = 0
        self.ep_in = self.ep_out = -1
        nm_inject_init(&self.host)
        self.ifindex = -1

    def __init__(self, name, **kw):
        Port.__init__(self, name, None)
        self._py = {}
        self.ifname = name.ifname
        self.queues = ()
        self.xdp_mode = ""

    def _open(self, steer=None, share=None, slots=None, rx_slots=None, tx_slots=None,
              ring_size=None, frame_size=None, umem_frames=None, xdp_mode="native",
              zerocopy=None, need_wakeup=True, host=False, force=False, attach="link",
              tx_budget=256, fill_size=None, rx_coalesce_us=50, netmask=None):
        cdef Umem um
        cdef uint32_t i, nq_cap
        name = self.name
        mode = name.mode.name
        if xdp_mode not in ("native", "generic"):
            raise ValueError("xdp_mode must be 'native' or 'generic', not %r" % (xdp_mode,))
        if attach not in ("link", "netlink"):
            raise ValueError("attach must be 'link' or 'netlink', not %r" % (attach,))
        for what, v in (("ring_size", ring_size), ("fill_size", fill_size)):
            if v is not None and (v < 64 or v & (v - 1)):
                raise ValueError("%s must be a power of 2 >= 64, not %r" % (what, v))
        if mode == "ONE_SW":
            raise BackendError("%s: the xdp backend has one host ring: write %s:%s^"
                               % (name, name.backend, name.ifname))
        if mode not in ("ALL_NIC", "ONE_NIC", "SINGLE_RX", "SW", "NIC_SW"):
            raise BackendError("%s: the xdp backend opens interface queues and host rings "
                               "(no pipes)" % name)
        if rx_coalesce_us < 0 or rx_coalesce_us > 100000:
            raise ValueError("rx_coalesce_us must be 0..100000, not %r" % (rx_coalesce_us,))
        self.coalesce_ns = <long>(rx_coalesce_us * 1000)
        conf = name.option("conf") or {}
        nrs = int(rx_slots or slots or conf.get("rx-slots") or conf.get("slots") or 1024)
        nts = int(tx_slots or slots or conf.get("tx-slots") or conf.get("slots") or 1024)
        self.host_on = bool(host) or mode in ("SW", "NIC_SW")
        if self.host_on and xdp_mode == "generic" and mode != "SW" and not name.tx_only:
            raise BackendError(
                "%s: host rings need native XDP: in generic mode the stack would run the "
                "program again on reinjected frames and send them back to the socket "
                "(open the NIC rings and %s:%s^ as two ports instead)" % (
                    name, name.backend, name.ifname))
        q = name.ring if mode in ("ONE_NIC", "SINGLE_RX") else None
        want_rx = mode != "SW" and not name.tx_only
        want_tx = mode not in ("SW", "SINGLE_RX") and not name.rx_only
        self.rx_on, self.tx_on = want_rx, want_tx
        info = iface.require(name.ifname, up=True, rx_queue=q if want_rx else None,
                             tx_queue=None)
        if q is not None and want_tx and q >= max(info.num_tx_queues, info.num_rx_queues):
            raise QueueOutOfRange(name.ifname, q, max(info.num_tx_queues, info.num_rx_queues), "TX")
        self.ifindex = info.index
        nsfd = _cur_ns_fd()
        self._py["ns"] = (nsfd, _cur_ns_ino())
        self.push_undo("close the namespace fd", lambda: os.close(nsfd))
        if mode in ("ONE_NIC", "SINGLE_RX"):
            queues = [q]
        elif mode == "SW":
            queues = []
        else:
            queues = list(range(info.num_rx_queues if want_rx else info.num_tx_queues))
        nq_cap = max(info.num_rx_queues, info.num_tx_queues, 1)
        if frame_size is None:
            frame_size = 2048 if info.mtu + 14 + 4 <= 2048 - NX_XDP_HEADROOM else 4096
        if info.mtu + 18 > frame_size - NX_XDP_HEADROOM:
            log.warning("netmapy: %s: MTU %d does not fit %d-byte UMEM frames (%d bytes "
                        "after the headroom): longer frames are dropped (counted in "
                        "stats()['rx_dropped']); lower the MTU or use frame_size=4096",
                        name.ifname, info.mtu, frame_size, frame_size - NX_XDP_HEADROOM)
        if ring_size is None:           # deep enough to ride out stalls
            ring_size = 4096 if len(queues) <= 4 else 2048 if len(queues) <= 16 else 1024
        ring_size = int(ring_size)
        fill = int(fill_size or ring_size)
        self._py.update(ring_size=ring_size, fill=fill, need_wakeup=bool(need_wakeup),
                        zerocopy=zerocopy, tx_budget=int(tx_budget or 0), steer=None,
                        steer_fd=-1, chain_fd=-1, qprog_fd=-1, att=None, driver=info.driver, nrs=nrs, nts=nts,
                        hooks=[], sockfd={})
        # buffers: netmap slots, fill rings, in-flight TX, host ring
        per_q = (nrs + fill if want_rx else 0) + (nts + ring_size if want_tx else 0)
        need = per_q * len(queues) + (nts if self.host_on else 0) + 64
        if share is None:
            share = _share_from_name(name)
        um, created = _umem_for(share, need, frame_size, umem_frames)
        if um.frame_size != frame_size:
            frame_size = um.frame_size
        self.mem = um
        self.pool = &um.pool
        # the slots must have frames; fill rings and in-flight TX should
        hard = (nrs if want_rx else 0) * len(queues) + \
               (nts if want_tx else 0) * len(queues) + (nts if self.host_on else 0) + \
               (64 * len(queues) if want_rx else 0)
        if not created and um.free_buffers < hard:
            raise NetmapyError(
                "%s: the shared UMEM (%r) has %d free frames, this port needs at least "
                "%d (%d for full speed): open the first port of the group with "
                "umem_frames=N" % (name, um, um.free_buffers, hard, need - 64))
        if not created and um.free_buffers < need - 64:
            log.warning("netmapy: %s: the shared UMEM has %d free frames, %d would let "
                        "this port's rings run full: open the first port with "
                        "umem_frames=N", name, um.free_buffers, need - 64)
        # steer: compile (and so fail on a bad expression) before touching
        # the interface
        steer_asm = None
        if steer is not None and want_rx:
            steer_asm = _steer_asm(steer, netmask, name.ifname, chain=True)
            self._py["steer"] = steer
        elif steer is not None:
            raise BackendError("%s: steer= selects received packets; this port has no RX ring"
                               % name)
        # rings (arrays sized for every queue, for add_queue)
        self.ring_init_port(nq_cap if want_tx else 0, nq_cap if want_rx else 0,
                            1 if self.host_on else 0, 0)
        self.push_undo("free the rings", self._free_all_rings)
        self._py["cap"] = nq_cap
        self._set_counts(len(queues))
        self.socks = <nx_sock *>calloc(nq_cap, sizeof(nx_sock))
        if self.socks == NULL:
            raise MemoryError()
        for i in range(nq_cap):
            self.socks[i].fd = -1
        self.push_undo("close the AF_XDP sockets", self._close_socks)
        for i in range(len(queues)):
            self._ring_for(i)
        if self.host_on:
            self.txr[self.nic_tx] = um.new_ring(nts, self.nic_tx, NR_TX)
            self.txk[self.nic_tx].hwcur = 0
            self.txk[self.nic_tx].hwtail = self.txr[self.nic_tx].tail
        self.link_nifp()
        # the program (RX only), then the sockets, then the map entries
        if want_rx:
            self._py["att"] = _Attachment.acquire(name.ifname, info, xdp_mode, attach,
                                                   bool(force), max(info.num_rx_queues, 1))
            self.push_undo("release the XDP program", self._release_att)
            self.xdp_mode = self._py["att"].mode
            if steer_asm is not None:
                att = self._py["att"]
                self._py["steer_fd"] = load_program(
                    steer_asm, xdpprog.STEER_NAME, {xdpprog.XSKMAP_NAME: att.xsk_fd,
                                                    xdpprog.CHAIN_NAME: self._chain_map()})
                self.push_undo("unload the steer program", self._close_steer)
        self.queues = tuple(queues)
        self._py["reserve"] = 0
        for i in range(len(queues)):
            self._open_sock(i, queues[i])
        self.zerocopy = bool(self.nsocks and self.socks[0].copy_mode == 0)
        if want_rx:
            self.push_undo("remove the queues from the bypass", self._unbypass_all)
            for i in range(len(queues)):
                self._bypass(i)
        if self.host_on:
            self._open_host(info, q)
        self._setup_fds()
        self._py["zc"] = self.zerocopy
        _open_ports.add(self)
        _install_exit_hooks()
        self._opened("xdp")

    # ----------------------------------------------------------- rings
    cdef _set_counts(self, uint32_t n):
        """Set the ring counts to n NIC rings (the arrays have room)."""
        cdef uint32_t h = 1 if self.host_on else 0
        self.nic_rx = n if self.rx_on else 0
        self.nic_tx = n if self.tx_on else 0
        self.nrx = self.nic_rx
        self.ntx = self.nic_tx + h
        self.nsocks = n
        self.nifp.ni_tx_rings = self.nic_tx
        self.nifp.ni_rx_rings = self.nic_rx
        self.nifp.ni_host_tx_rings = h
        self.nifp.ni_host_rx_rings = 0

    def _ring_for(self, uint32_t i):
        cdef Memory m = self.mem
        if self.rx_on:
            self.rxr[i] = m.new_ring(self._py["nrs"], i, NR_RX)
            self.rxk[i].hwcur = 0
            self.rxk[i].hwtail = 0
        if self.tx_on:
            self.txr[i] = m.new_ring(self._py["nts"], i, NR_TX)
            self.txk[i].hwcur = 0
            self.txk[i].hwtail = self.txr[i].tail

    def _free_all_rings(self):
        cdef Memory m = self.mem
        cdef uint32_t i
        if self.txr == NULL:
            return
        for i in range(self.ntx):
            if self.txr[i] != NULL:
                m.free_ring(self.txr[i])
                self.txr[i] = NULL
        for i in range(self.nrx):
            if self.rxr[i] != NULL:
                m.free_ring(self.rxr[i])
                self.rxr[i] = NULL

    # --------------------------------------------------------- sockets
    def _open_sock(self, uint32_t i, uint32_t queue):
        """Create, fill and bind the socket of ring i (queue)."""
        cdef Umem um = <Umem>self.mem
        cdef nx_sock *s = &self.socks[i]
        cdef const char *stage = b""
        cdef int rc, one
        cdef uint32_t rs = self._py["ring_size"], fill = self._py["fill"]
        cdef uint16_t flags
        cdef uint32_t rxs, txs
        cdef int ifx, sfd, owner
        zc = self._py["zerocopy"]
        driver = self._py["driver"]
        if zc is None:
            zc = _zc_by_driver.get(driver, True)
        waited, pause, busy_wait = 0.0, 0.0005, self._py.get("busy_wait", 1.0)
        while True:
            memset(s, 0, sizeof(nx_sock))
            s.fd = -1
            s.id = um._new_id()
            owner = not um._socks
            rxs = rs if self.rx_on else 0
            txs = rs if self.tx_on else 0
            with nogil:
                rc = nx_sock_setup(s, owner, um.area, um.umem_len, um.frame_size,
                                   rxs, txs, fill, rs, &stage)
            if rc < 0:
                nx_sock_close(s, &um.pool)
                if rc == -_errno.EAFNOSUPPORT:
                    raise XdpUnsupported("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)", -rc)
                if -rc in (_errno.EPERM, _errno.EACCES):
                    raise _no_priv("AF_XDP sockets")
                if -rc == _errno.ENOMEM or -rc == _errno.ENOBUFS:
                    raise OSError(-rc, "%s: %s: %s (the UMEM of %d MB is pinned: raise "
                                  "RLIMIT_MEMLOCK or use fewer frames)" % (
                                      self.name, stage.decode(), os.strerror(-rc),
                                      um.umem_len >> 20))
                raise OSError(-rc, "%s: %s: %s" % (self.name, stage.decode(), os.strerror(-rc)))
            um._socks[s.id] = s.fd
            if self.rx_on:
                # keep frames for the slots of the rings still to come
                keep = self._py["reserve"]
                nx_fill_prime(s, &um.pool, min(fill, max(um.free_buffers - keep, 64)))
            if owner:
                flags = XDP_ZEROCOPY if zc else XDP_COPY
                if self._py["need_wakeup"]:
                    flags |= XDP_USE_NEED_WAKEUP
                ifx = self.ifindex
                with nogil:
                    rc = nx_sock_bind(s, ifx, queue, flags, -1)
            else:
                shared = next(fd for sid, fd in um._socks.items() if sid != s.id)
                ifx = self.ifindex
                sfd = shared
                with nogil:
                    rc = nx_sock_bind(s, ifx, queue, XDP_SHARED_UMEM, sfd)
            if rc < 0 and owner and zc and self._py["zerocopy"] is None and \
                    -rc in (_errno.EOPNOTSUPP, _errno.EINVAL, _errno.EPROTONOSUPPORT):
                um._socks.pop(s.id, None)
                nx_sock_close(s, &um.pool)
                _zc_by_driver[driver] = False
                zc = False
                continue
            if rc == -_errno.EBUSY and waited < busy_wait:
                # the kernel frees a closed socket's hold on its queue from
                # a workqueue, a little after close(): a queue we (or a
                # process that just exited) released may still look busy
                um._socks.pop(s.id, None)
                nx_sock_close(s, &um.pool)
                time.sleep(pause)
                waited += pause
                pause = min(pause * 2, 0.05)
                continue
            break
        if rc < 0:
            um._socks.pop(s.id, None)
            nx_sock_close(s, &um.pool)
            e = -rc
            if e == _errno.EBUSY:
                raise QueueBusy("%s: queue %d of %s is already bound to another AF_XDP "
                               "socket (another port or process)" % (self.name, queue, self.ifname))
            if e in (_errno.EPERM, _errno.EACCES):
                raise _no_priv("AF_XDP sockets")
            if e == _errno.EOPNOTSUPP and zc:
                raise XdpUnsupported("%s: %s has no AF_XDP zero-copy support (driver %r): "
                                     "open with zerocopy=False or None" % (
                                         self.name, self.ifname, driver), e)
            if e == _errno.EOPNOTSUPP or e == _errno.EINVAL and not owner:
                raise XdpUnsupported("%s: cannot bind an AF_XDP socket to queue %d of %s "
                                     "sharing this UMEM (%s)%s" % (
                                         self.name, queue, self.ifname, os.strerror(e),
                                         "; a UMEM in zero-copy mode can only be shared with "
                                         "queues that support zero copy" if um.zerocopy else ""), e)
            raise OSError(e, "%s: binding the AF_XDP socket to queue %d: %s" % (
                self.name, queue, os.strerror(e)))
        one = nx_sock_zerocopy(s)
        s.copy_mode = 0 if one == 1 else 1
        s.need_wakeup = 1 if self._py["need_wakeup"] else 0
        if owner:
            um.zerocopy = not s.copy_mode
            if zc and self._py["zerocopy"] is None:
                _zc_by_driver[driver] = not s.copy_mode
        s.queue = queue
        one = self._py["tx_budget"]
        if self.tx_on and s.copy_mode and one > 32:
            one = min(one, rs)
            setsockopt(s.fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &one, sizeof(int))
        self._py["sockfd"][queue] = s.fd

    def _close_sock(self, uint32_t i):
        cdef Umem um = <Umem>self.mem
        cdef nx_sock *s = &self.socks[i]
        cdef int tries, rc
        if s.fd < 0:
            return
        # let what was handed over leave (nothing accepted is lost): slots
        # still pending first, then frames the kernel holds
        tries = 0
        if self.tx_on and i < self.nic_tx and self.txr != NULL and self.txr[i] != NULL:
            while s.next_tx != self.txr[i].head and tries < 200:
                with nogil:
                    rc = self.c_txsync(i)
                if rc < 0:
                    self.err = 0
                    break
                if s.next_tx != self.txr[i].head:
                    select.select([], [], [], 0.001)
                tries += 1
        tries = 0
        while s.inflight and tries < 200:
            with nogil:
                nx_kick(s)
                nx_reclaim(s, &um.pool)
            if s.inflight:
                select.select([], [], [], 0.001)
            tries += 1
        um._socks.pop(s.id, None)
        self._py["sockfd"].pop(s.queue, None)
        with nogil:
            nx_sock_close(s, &um.pool)

    def _close_socks(self):
        cdef uint32_t i
        if self.socks == NULL:
            return
        for i in range(self.nsocks):
            self._close_sock(i)
        free(self.socks)
        self.socks = NULL

    def _bypass(self, uint32_t i):
        """Install the filters of ring i's queue, then its XSKMAP entry."""
        att = self._py["att"]
        q = self.socks[i].queue
        self._install_filters(q)
        att.bypass(q, self.socks[i].fd)

    def _install_filters(self, q):
        """Queue q's filter: the steer program (followed, through the chain
        map, by the queue program) or the queue program alone, or none."""
        att = self._py["att"]
        steer_fd, qprog = self._py["steer_fd"], self._py["qprog_fd"]
        if steer_fd >= 0:
            rc = nx_map_set(self._py["chain_fd"], q, qprog) if qprog >= 0 else \
                nx_map_del(self._py["chain_fd"], q)
            if rc < 0 and -rc != _errno.ENOENT:
                _err(rc, "%s: installing the program after the steer filter of queue %d"
                     % (self.name, q))
            att.set_filter(q, steer_fd)
        else:
            att.set_filter(q, qprog)

    def _unbypass(self, uint32_t i):
        att = self._py["att"]
        q = self.socks[i].queue
        att.unbypass(q)
        try:
            att.set_filter(q, -1)
        except OSError:
            pass
        if self._py.get("chain_fd", -1) >= 0:
            nx_map_del(self._py["chain_fd"], q)

    def _chain_map(self):
        """The port's CHAIN program array (created on first use)."""
        cdef int fd
        if self._py["chain_fd"] < 0:
            fd = nx_map_create(BPF_MAP_TYPE_PROG_ARRAY, xdpprog.CHAIN_NAME.encode(), 4, 4,
                               self._py["cap"])
            if fd < 0:
                _err(fd, "%s: creating the chain program array" % self.name)
            self._py["chain_fd"] = fd
            self.push_undo("close the chain program array", self._close_chain)
        return self._py["chain_fd"]

    def _close_chain(self):
        fd = self._py.get("chain_fd", -1)
        if fd >= 0:
            close(fd)
            self._py["chain_fd"] = -1

    @property
    def xsk_map_fd(self):
        """The interface's XSKMAP (queue -> AF_XDP socket): what a queue
        program redirects to (``bpf_redirect_map(xsks, rx_queue, XDP_PASS)``)."""
        self._check_open()
        if not self.rx_on:
            raise BackendError("%s has no RX ring: no XSKMAP" % self.name)
        return self._py["att"].xsk_fd

    def set_queue_program(self, int prog_fd):
        """Run this XDP program (an fd; -1 removes it) on this port's queues:
        after the steer filter when there is one, else instead of the plain
        redirect.  It sees every packet of the queue (that the steer filter
        selected) and decides: XDP_PASS, XDP_DROP, or redirect into
        ``xsk_map_fd`` (user space).  Atomic per queue; the caller keeps
        the fd open while it is installed (nm-offload's in-kernel rules:
        middlebox.kfilter)."""
        cdef uint32_t i
        self._check_open()
        if not self.rx_on:
            raise BackendError("%s: a queue program sees received packets; this port has "
                               "no RX ring" % self.name)
        self._py["qprog_fd"] = prog_fd
        for i in range(self.nsocks):
            if self.socks[i].fd >= 0:
                self._install_filters(self.socks[i].queue)

    def _unbypass_all(self):
        cdef uint32_t i
        if self._py.get("att") is None or self.socks == NULL:
            return
        for i in range(self.nsocks):
            if self.socks[i].fd >= 0:
                self._unbypass(i)

    def _release_att(self):
        att = self._py.pop("att", None)
        if att is not None:
            att.release()

    def _close_steer(self):
        fd = self._py.get("steer_fd", -1)
        if fd >= 0:
            close(fd)
            self._py["steer_fd"] = -1

    # ------------------------------------------------------------ host
    def _open_host(self, info, q):
        """The host TX ring: an AF_PACKET socket of this namespace and a
        tcx egress program that turns its packets around into IF's ingress
        (netmapy/includes/nm_inject.h)."""
        cdef const char *stage = NULL
        cdef int rc, fd
        rc = nm_inject_socket(&self.host, info.index, 8 << 20, &stage)
        if rc < 0:
            if rc in (-_errno.EPERM, -_errno.EACCES):
                raise _no_priv("opening the host ring's AF_PACKET socket")
            raise OSError(-rc, "%s: host ring: %s: %s" % (self.name, stage.decode(),
                                                          os.strerror(-rc)))
        self.push_undo("close the host injection socket and program", self._close_host)
        self.host.tx.next_tx = 0
        fd = load_program(xdpprog.inject_program(self.host.cookie), xdpprog.INJECT_NAME,
                          prog_type=xdpprog.PROG_TYPE_SCHED_CLS)
        rc = nm_inject_attach(&self.host, fd)
        if rc < 0:
            close(fd)
            if rc in (-_errno.EPERM, -_errno.EACCES):
                raise _no_priv("attaching the host ring's tc program")
            if rc == -_errno.EINVAL:
                raise XdpUnsupported(
                    "%s: host rings need tcx (Linux 6.6 or later): attaching the host "
                    "injection program to %s's egress failed with EINVAL" % (
                        self.name, info.name), _errno.EINVAL)
            raise OSError(-rc, "%s: attaching the host injection program to %s (tcx "
                               "egress): %s" % (self.name, info.name, os.strerror(-rc)))

    def _close_host(self):
        nm_inject_close(&self.host)

    # ------------------------------------------------------------ fds
    def _setup_fds(self):
        cdef uint32_t i
        if self.nsocks == 1:
            self.fd = self.socks[0].fd
        elif self.nsocks > 1:
            ein = select.epoll()
            eout = select.epoll()
            self._py["epoll"] = (ein, eout)
            for i in range(self.nsocks):
                ein.register(self.socks[i].fd, select.EPOLLIN)
                eout.register(self.socks[i].fd, select.EPOLLOUT)
            self.ep_in, self.ep_out = ein.fileno(), eout.fileno()
            self.fd = self.ep_in
            self.push_undo("close the epoll fds", self._close_epoll)
        else:
            fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
            if fd < 0:
                raise OSError(errno, "eventfd")
            self.fd = fd
            self.push_undo("close the eventfd", lambda: close(fd))

    def _close_epoll(self):
        eps = self._py.pop("epoll", None)
        self.ep_in = self.ep_out = -1
        if eps:
            for e in eps:
                e.close()

    def _refresh_fds(self):
        cdef uint32_t i
        if self.nsocks == 1 and "epoll" not in self._py:
            self.fd = self.socks[0].fd
            return
        if "epoll" not in self._py:
            ein, eout = select.epoll(), select.epoll()
            self._py["epoll"] = (ein, eout)
            self.push_undo("close the epoll fds", self._close_epoll)
        ein, eout = self._py["epoll"]
        for e, ev in ((ein, select.EPOLLIN), (eout, select.EPOLLOUT)):
            e.close()
        ein, eout = select.epoll(), select.epoll()
        for i in range(self.nsocks):
            ein.register(self.socks[i].fd, select.EPOLLIN)
            eout.register(self.socks[i].fd, select.EPOLLOUT)
        self._py["epoll"] = (ein, eout)
        self.ep_in, self.ep_out = ein.fileno(), eout.fileno()
        self.fd = self.ep_in if self.nsocks != 1 else self.socks[0].fd

    # ------------------------------------------------ backend interface
    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        cdef int rc
        if i < self.nic_tx:
            rc = nx_tx_sync(&self.socks[i], self.txr[i], self.pool)
            if rc < 0:
                return self.fail(-rc, "waking the AF_XDP socket for transmission")
            return 0
        cdef uint64_t failed = self.host.tx.failed, failed_bytes = self.host.tx.failed_bytes
        rc = nm_inject_tx(&self.host, self.txr[i])
        self.tx_failed += self.host.tx.failed - failed
        self.tx_failed_bytes += self.host.tx.failed_bytes - failed_bytes
        if rc < 0:
            return self.fail(-rc, "handing frames to the host stack")
        return 0

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        cdef timeval tv
        if nx_rx_sync(&self.socks[i], self.rxr[i], self.pool):
            self.rx_active = True
            gettimeofday(&tv, NULL)
            self.rxr[i].ts.tv_sec = tv.tv_sec
            self.rxr[i].ts.tv_usec = tv.tv_usec
        return 0

    cdef void _nap(self) noexcept nogil:
        """Interrupt moderation.  While frames flow, wait for the next
        batch on a timer (rx_coalesce_us), off the socket's wait queue: a
        sleeper on it costs the CPU that receives the frames a wakeup (and
        often an IPI) per NAPI poll.  Only when a nap brought nothing does
        the port block in poll() and let the kernel wake it."""
        cdef timespec ts
        if not self.rx_active or self.coalesce_ns <= 0:
            return
        self.rx_active = False
        ts.tv_sec = self.coalesce_ns // 1000000000
        ts.tv_nsec = self.coalesce_ns % 1000000000
        nanosleep(&ts, NULL)
        self.naps += 1

    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil:
        cdef int n = 0
        if events & POLLIN:
            self._nap()
        if self.nsocks == 1:
            fds[0].fd = self.socks[0].fd
            fds[0].events = events & (POLLIN | POLLOUT)
            fds[0].revents = 0
            return 1
        if self.nsocks > 1:
            if events & POLLIN:
                fds[n].fd = self.ep_in
                fds[n].events = POLLIN
                fds[n].revents = 0
                n += 1
            if events & POLLOUT:
                fds[n].fd = self.ep_out
                fds[n].events = POLLIN
                fds[n].revents = 0
                n += 1
            return n
        fds[0].fd = self.fd
        fds[0].events = events & (POLLIN | POLLOUT)
        fds[0].revents = 0
        return 1

    cdef uint64_t b_rx_drops(self) noexcept nogil:
        """The kernel's drops on our sockets: RX ring full, or no free
        frame in the fill ring (XDP_STATISTICS rx_ring_full + rx_dropped)."""
        cdef xdp_statistics st
        cdef uint32_t i
        cdef uint64_t n = 0
        for i in range(self.nsocks):
            if self.socks[i].fd >= 0 and nx_statistics(&self.socks[i], &st) == 0:
                n += st.rx_dropped + st.rx_ring_full
        return n

    # ------------------------------------------------------- Python API
    cdef void _move_host(self, uint32_t to) noexcept:
        """Move the host TX ring (after the NIC TX rings) to index to."""
        cdef uint32_t fr = self.nic_tx
        if not self.host_on or not self.tx_on or fr == to:
            return
        self.txr[to] = self.txr[fr]
        self.txk[to] = self.txk[fr]
        self.txr[to].ringid = to
        self.txr[fr] = NULL
        memset(&self.txk[fr], 0, sizeof(self.txk[fr]))

    def add_queue(self, uint32_t queue):
        """Take one more queue from the kernel: a new RX ring (and TX ring,
        for a port with TX rings) is appended, index ``len(port.queues)``.
        Other queues, and other ports, are not disturbed."""
        self._check_open()
        with _InNs(*self._py["ns"]):
            self._add_queue(queue)

    def _add_queue(self, uint32_t queue):
        cdef uint32_t i = self.nsocks
        cdef Memory m = self.mem
        self._check_open()
        self._end_batch()
        if queue in self.queues:
            raise ValueError("%s: queue %d is already in this port" % (self.name, queue))
        info = iface.require(self.ifname, up=False, rx_queue=queue if self.rx_on else None)
        if queue >= max(info.num_rx_queues, info.num_tx_queues):
            raise QueueOutOfRange(self.ifname, queue, max(info.num_rx_queues,
                                                          info.num_tx_queues), "TX")
        if i >= self._py["cap"]:
            raise BackendError("%s: the port already has %d rings, as many as %s had "
                               "queues when it was opened" % (self.name, i, self.ifname))
        per_q = (self._py["nrs"] + 64 if self.rx_on else 0) + (self._py["nts"] if self.tx_on else 0)
        if self.mem.free_buffers < per_q:
            raise NetmapyError(
                "%s: its UMEM has %d free frames, a queue needs at least %d: open the port "
                "with umem_frames=N to leave room for queues added later" % (
                    self.name, self.mem.free_buffers, per_q))
        self._move_host(i + 1)
        try:
            self._ring_for(i)
            self._open_sock(i, queue)
        except BaseException:
            if self.rx_on and self.rxr[i] != NULL:
                m.free_ring(self.rxr[i])
                self.rxr[i] = NULL
            if self.tx_on and self.txr[i] != NULL:
                m.free_ring(self.txr[i])
                self.txr[i] = NULL
            self.nic_tx = i + 1 if self.tx_on else 0
            self._move_host(i)
            self._set_counts(i)
            raise
        self._set_counts(i + 1)
        self.queues = self.queues + (queue,)
        self._rings = None
        self.link_nifp()
        self._refresh_fds()
        if self.rx_on:
            try:
                self._bypass(i)
            except BaseException:
                self.remove_queue(queue)
                raise

    def remove_queue(self, uint32_t queue):
        """Give a queue back to the kernel: from now on its packets go to
        the host stack again; packets still in its ring are dropped.  The
        rings after it move down one index."""
        cdef uint32_t i, j, n = self.nsocks
        cdef Memory m = self.mem
        self._check_open()
        self._end_batch()
        if queue not in self.queues:
            raise ValueError("%s: queue %d is not in this port (queues %s)"
                             % (self.name, queue, list(self.queues)))
        i = self.queues.index(queue)
        if (self.rx_on and self.rxk[i].nexports) or (self.tx_on and self.txk[i].nexports):
            raise BufferError("%s: a slot of queue %d's ring has a live memoryview"
                              % (self.name, queue))
        if self.rx_on and self._py.get("att") is not None:
            self._unbypass(i)
        self._close_sock(i)
        if self.rx_on:
            m.free_ring(self.rxr[i])
            free(self.rxk[i].exports)
            for j in range(i, n - 1):
                self.rxr[j] = self.rxr[j + 1]
                self.rxk[j] = self.rxk[j + 1]
                self.rxr[j].ringid = j
            self.rxr[n - 1] = NULL
            memset(&self.rxk[n - 1], 0, sizeof(self.rxk[0]))
        if self.tx_on:
            m.free_ring(self.txr[i])
            free(self.txk[i].exports)
            for j in range(i, n - 1):
                self.txr[j] = self.txr[j + 1]
                self.txk[j] = self.txk[j + 1]
                self.txr[j].ringid = j
            self.txr[n - 1] = NULL
            memset(&self.txk[n - 1], 0, sizeof(self.txk[0]))
            self.nic_tx = n          # the host ring is still at n
            self._move_host(n - 1)
        for j in range(i, n - 1):
            self.socks[j] = self.socks[j + 1]
        memset(&self.socks[n - 1], 0, sizeof(nx_sock))
        self.socks[n - 1].fd = -1
        self._set_counts(n - 1)
        self.queues = tuple(x for x in self.queues if x != queue)
        self._rings = None
        self.rr = 0
        self.link_nifp()
        self._refresh_fds()

    def set_steer(self, steer, netmask=None):
        """Replace the flow filter of this port's queues (None: every packet
        of the queues leaves the kernel).  Atomic per queue.  netmask: for
        expressions that need one (default: the interface's)."""
        cdef uint32_t i
        self._check_open()
        if not self.rx_on:
            raise BackendError("%s: steer selects received packets; this port has no RX ring"
                               % self.name)
        att = self._py["att"]
        new_fd = -1
        if steer is not None:
            if netmask is None and isinstance(steer, str):
                with _InNs(*self._py["ns"]):
                    netmask = iface.ipv4_netmask(self.ifname)
            new_fd = load_program(_steer_asm(steer, netmask, chain=True),
                                  xdpprog.STEER_NAME, {xdpprog.XSKMAP_NAME: att.xsk_fd,
                                                       xdpprog.CHAIN_NAME: self._chain_map()})
        old = self._py.get("steer_fd", -1)
        self._py["steer_fd"] = new_fd
        self._py["steer"] = steer
        for i in range(self.nsocks):
            self._install_filters(self.socks[i].queue)
        if old >= 0:
            close(old)
        if new_fd >= 0 and old < 0:
            self.push_undo("unload the steer program", self._close_steer)

    @property
    def steer(self):
        return self._py.get("steer")

    def stats(self):
        """Counters, per queue and totals: packets/bytes through the rings,
        the kernel's AF_XDP statistics (rx_dropped: the RX ring was full;
        rx_fill_ring_empty: no free frame), host-ring injections."""
        cdef xdp_statistics st
        cdef uint32_t i
        cdef nx_sock *s
        self._check_open()
        per = []
        tot = {}
        for i in range(self.nsocks):
            s = &self.socks[i]
            d = dict(queue=s.queue, rx_packets=s.rx_packets, rx_bytes=s.rx_bytes,
                     tx_packets=s.tx_packets, tx_bytes=s.tx_bytes,
                     tx_dropped_oversize=s.tx_oversize, tx_inflight=s.inflight,
                     tx_kicks=s.tx_kicks, rx_realigned=s.rx_realigned,
                     fill_wakeups=s.fill_wakeups)
            if nx_statistics(s, &st) == 0:
                d.update(rx_dropped=st.rx_dropped, rx_invalid_descs=st.rx_invalid_descs,
                         tx_invalid_descs=st.tx_invalid_descs, rx_ring_full=st.rx_ring_full,
                         rx_fill_ring_empty=st.rx_fill_ring_empty_descs,
                         tx_ring_empty=st.tx_ring_empty_descs)
            per.append(d)
            for k, v in d.items():
                if k != "queue":
                    tot[k] = tot.get(k, 0) + v
        tot["rx_naps"] = self.naps
        if self.host_on:
            tot.update(host_tx_packets=self.host.tx.packets, host_tx_bytes=self.host.tx.bytes,
                       host_tx_failed=self.host.tx.failed,
                       host_tx_failed_bytes=self.host.tx.failed_bytes,
                       host_tx_bad=self.host.tx.bad, host_tx_waits=self.host.tx.again)
        tot["queues"] = per
        return tot

    def _backend_info(self):
        d = dict(ifname=self.ifname, ifindex=self.ifindex, queues=list(self.queues),
                 zerocopy=self.zerocopy, host_ring=bool(self.host_on),
                 umem=repr(self.mem), steer=self._py.get("steer"))
        att = self._py.get("att")
        if att is not None:
            d.update(xdp_prog_id=att.prog_id, xdp_mode=att.mode,
                     xdp_attach="link" if att.link_fd >= 0 else "netlink",
                     xdp_joined=att.joined)
        return d

    def close(self):
        Port.close(self)
        _open_ports.discard(self)

    def __dealloc__(self):
        if self.socks != NULL:
            free(self.socks)
            self.socks = NULL


def open_port(name, **kw):
    return open_or_undo(XdpPort(name), kw)


# ------------------------------------------------------------ cleanup

def cleanup_all():
    """Close every open xdp port of this process (their XDP programs,
    maps and sockets go with them).  Runs at interpreter exit."""
    for p in list(_open_ports):
        try:
            p.close()
        except Exception as e:          # at exit: report, go on
            log.warning("netmapy: closing %s: %s", p.name, e)


_hooks_installed = False


def install_signal_cleanup(signals=(signal.SIGTERM, signal.SIGHUP)):
    """The opt-in for programs that want their xdp ports closed when a
    signal ends them: netmapy.stop.exit_on_signals (SIGTERM and SIGHUP, if
    their handlers are the defaults, raise SystemExit, so atexit runs
    cleanup_all()).  The backend itself installs no signal handler."""
    from netmapy.stop import exit_on_signals
    return exit_on_signals(signals)


def _install_exit_hooks():
    """On the first open: close every port at interpreter exit (atexit, not
    a signal handler; the kernel removes a bpf_link-attached program when
    the process dies in any case)."""
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(cleanup_all)
