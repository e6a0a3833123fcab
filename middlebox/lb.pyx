# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The load balancer (netmap's lb, in netmapy): read one port, spread its
packets over the pipes of one or more groups by a symmetric 5-tuple hash
(both directions of a flow land on the same pipe); every group gets a copy.

Short bursts that a pipe cannot take at once wait in extra buffers (a FIFO
per pipe, order kept).  When the extra buffers run out:

* lossless (default): the balancer stops reading its input until a pipe
  drains -- back-pressure, counted per pipe (``blocked``) -- so the balancer
  itself loses nothing (the input's own queue then fills, as a NIC's would);
* lossy (``lossy=True``): the oldest packet of the longest backlog is
  dropped to make room, counted per pipe (``dropped``).

``priority``: a Filter; packets it accepts go to the group's priority
pipes (``GROUP{K+k``, K = ``PRIO_BASE``) so that workers can serve them
first.  Everything per packet is C; Python sees batches.

A packet longer than the pipes' buffers is not truncated: it is released
and counted as an error.  Counters (``stats()``, and a middlebox.stats
worker block when ``run(counters=...)``): ``rx`` and ``errors`` count input
packets; ``fwd`` and ``dropped`` count copies (one per group), so with G
groups, once run() returned, ``G * (rx - errors) == fwd + dropped``
(packets still waiting when run() gives up draining are counted as
dropped).  ``run()`` ends on the process-wide stop request (netmapy.stop).
"""

from cpython.ref cimport PyObject
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy
from netmapy.includes.abi cimport (netmap_ring, netmap_slot, NETMAP_BUF, nm_ring_space,
                                   nm_ring_next, NS_BUF_CHANGED)
from netmapy.includes.system cimport POLLIN, POLLOUT, monotonic_ms
from netmapy.core cimport Port, Memory, interrupted
from netmapy.stop cimport stop_requested
from middlebox.filter cimport Filter
from middlebox.counters cimport *

import time

from netmapy.core import anon_memory

PRIO_BASE = 1000

cdef extern from "mb_hash.h" nogil:
    uint32_t mb_sym_hash(const uint8_t *f, uint32_t length)

from netmapy.stop import request as stop, reset


def flow_hash(frame):
    """The symmetric flow hash of one frame (for tests and tools)."""
    cdef const uint8_t[::1] v = memoryview(frame).cast("B")
    if v.shape[0] == 0:
        return 0
    return mb_sym_hash(&v[0], v.shape[0])


cdef struct out_t:
    netmap_ring *tx           # the pipe's TX ring
    uint32_t *q               # overflow FIFO of extra-buffer indices
    uint32_t qhead, qlen
    uint64_t fwd, dropped, blocked, queued_max
    uint64_t fwd_bytes, dropped_bytes


cdef class Balancer:
    cdef Port src
    cdef list outs_py            # the output Ports, flat
    cdef out_t *outs
    cdef int nouts
    cdef int ngroups
    cdef int gbase[64]           # first output of group g
    cdef int gsize[64]           # normal pipes of group g
    cdef int gprio[64]           # first priority output of group g, or -1
    cdef Memory extra
    cdef uint32_t *free_extra
    cdef uint32_t nfree, nextra
    cdef bint lossy
    cdef Filter prio
    cdef readonly object group_names
    cdef uint32_t maxlen         # longest packet every pipe (and extra buffer) can hold
    cdef uint64_t rx, rx_bytes, errors, blocked_batches, prio_packets

    def __cinit__(self):
        self.outs = NULL
        self.free_extra = NULL

    def __init__(self, Port src, groups, uint32_t extra_bufs=4096, bint lossy=False,
                 Filter priority=None, prio_groups=None):
        """groups: [(name, [Port, ...])] (the pipes' master ends, in order);
        prio_groups: the same shape, the priority pipes (or None)."""
        cdef int g, k, n = 0, i
        cdef Port p
        if src.nic_rx == 0:
            raise ValueError("%s has no RX ring to balance" % (src.name,))
        if not groups or len(groups) > 64:
            raise ValueError("1..64 groups")
        self.src = src
        self.lossy = lossy
        self.prio = priority
        self.group_names = [g_[0] for g_ in groups]
        self.outs_py = []
        for g, (name, ports) in enumerate(groups):
            if not ports:
                raise ValueError("group %r has no pipes" % name)
            self.gbase[g] = len(self.outs_py)
            self.gsize[g] = len(ports)
            self.outs_py.extend(ports)
        for g in range(len(groups)):
            self.gprio[g] = -1
        if prio_groups is not None:
            for g, (name, ports) in enumerate(prio_groups):
                if len(ports) != self.gsize[g]:
                    raise ValueError("group %r needs as many priority pipes as pipes" % name)
                self.gprio[g] = len(self.outs_py)
                self.outs_py.extend(ports)
        self.ngroups = len(groups)
        self.nouts = len(self.outs_py)
        self.outs = <out_t *>calloc(self.nouts, sizeof(out_t))
        self.nextra = extra_bufs
        if self.outs == NULL:
            raise MemoryError()
        for i, port in enumerate(self.outs_py):
            p = <Port>port
            if p.nic_tx == 0:
                raise ValueError("%s has no TX ring" % (p.name,))
            self.outs[i].tx = p.txr[0]
            self.outs[i].q = <uint32_t *>calloc(max(1, extra_bufs), sizeof(uint32_t))
            if self.outs[i].q == NULL:
                raise MemoryError()
        # extra buffers: private memory (packets wait there as copies)
        self.extra = anon_memory(0x4c42, nbufs=max(16, extra_bufs + 16))
        self.free_extra = <uint32_t *>malloc(max(1, extra_bufs) * sizeof(uint32_t))
        if self.free_extra == NULL:
            raise MemoryError()
        if extra_bufs:
            self.extra.alloc_bufs(self.free_extra, extra_bufs)
        self.nfree = extra_bufs
        self.maxlen = self.extra.buf_size - 2
        for port in self.outs_py:
            if (<Port>port).txr[0].nr_buf_size < self.maxlen:
                self.maxlen = (<Port>port).txr[0].nr_buf_size

    def __dealloc__(self):
        cdef int i
        if self.outs != NULL:
            for i in range(self.nouts):
                free(self.outs[i].q)
            free(self.outs)
        if self.free_extra != NULL:
            if self.extra is not None:
                self.extra.free_bufs(self.free_extra, self.nfree)
            free(self.free_extra)

    cdef inline char *_xbuf(self, uint32_t idx) noexcept nogil:
        return self.extra.bufs + <size_t>idx * self.extra.buf_size

    cdef void _flush(self) noexcept nogil:
        """Move waiting packets into their pipes as room allows (FIFO)."""
        cdef int k
        cdef out_t *o
        cdef netmap_ring *t
        cdef uint32_t idx, j, ln
        for k in range(self.nouts):
            o = &self.outs[k]
            t = o.tx
            while o.qlen and nm_ring_space(t):
                idx = o.q[o.qhead]
                j = t.head
                ln = (<uint16_t *>self._xbuf(idx))[0]
                memcpy(NETMAP_BUF(t, t.slot[j].buf_idx), self._xbuf(idx) + 2, ln)
                t.slot[j].len = <uint16_t>ln
                t.slot[j].flags = 0
                t.head = t.cur = nm_ring_next(t, j)
                self.free_extra[self.nfree] = idx
                self.nfree += 1
                o.qhead = (o.qhead + 1) % self.nextra
                o.qlen -= 1
                o.fwd += 1
                o.fwd_bytes += ln

    cdef int _longest(self) noexcept nogil:
        cdef int k, best = -1
        cdef uint32_t bl = 0
        for k in range(self.nouts):
            if self.outs[k].qlen > bl:
                bl = self.outs[k].qlen
                best = k
        return best

    cdef int _place(self, int k, const char *buf, uint32_t ln) noexcept nogil:
        """Put one packet on output k (now or in its FIFO).  0 ok, -1 no
        room (lossless)."""
        cdef out_t *o = &self.outs[k]
        cdef netmap_ring *t = o.tx
        cdef uint32_t j, idx
        cdef int v
        if o.qlen == 0 and nm_ring_space(t):
            j = t.head
            memcpy(NETMAP_BUF(t, t.slot[j].buf_idx), buf, ln)
            t.slot[j].len = <uint16_t>ln
            t.slot[j].flags = 0
            t.head = t.cur = nm_ring_next(t, j)
            o.fwd += 1
            o.fwd_bytes += ln
            return 0
        if self.nfree == 0:
            if not self.lossy:
                return -1
            v = self._longest()
            if v < 0:
                return -1
            # drop the oldest of the longest backlog, reuse its buffer
            idx = self.outs[v].q[self.outs[v].qhead]
            self.outs[v].dropped_bytes += (<uint16_t *>self._xbuf(idx))[0]
            self.free_extra[self.nfree] = idx
            self.nfree += 1
            self.outs[v].qhead = (self.outs[v].qhead + 1) % self.nextra
            self.outs[v].qlen -= 1
            self.outs[v].dropped += 1
        self.nfree -= 1
        idx = self.free_extra[self.nfree]
        (<uint16_t *>self._xbuf(idx))[0] = <uint16_t>ln
        memcpy(self._xbuf(idx) + 2, buf, ln)
        o.q[(o.qhead + o.qlen) % self.nextra] = idx
        o.qlen += 1
        if o.qlen > o.queued_max:
            o.queued_max = o.qlen
        return 0

    cdef uint32_t _balance(self, uint64_t now) noexcept nogil:
        """One pass over the input's RX rings; returns packets consumed."""
        cdef uint32_t r, i, n = 0, h, ln, need
        cdef int g, k, base
        cdef netmap_ring *rx
        cdef char *buf
        cdef bint prio
        self._flush()
        for r in range(self.src.nic_rx):
            rx = self.src.rxr[r]
            i = rx.head
            while i != rx.tail:
                buf = NETMAP_BUF(rx, rx.slot[i].buf_idx)
                ln = rx.slot[i].len
                if ln > self.maxlen:
                    # does not fit the pipes: released, counted, never truncated
                    self.errors += 1
                    self.rx_bytes += ln
                    i = nm_ring_next(rx, i)
                    n += 1
                    continue
                prio = self.prio is not None and self.prio.verdict(<const uint8_t *>buf, ln, now) != 0
                h = mb_sym_hash(<const uint8_t *>buf, ln)
                if not self.lossy:
                    # every copy must have a place, or the packet waits
                    need = 0
                    for g in range(self.ngroups):
                        base = self.gprio[g] if (prio and self.gprio[g] >= 0) else self.gbase[g]
                        k = base + <int>(h % <uint32_t>self.gsize[g])
                        if self.outs[k].qlen or not nm_ring_space(self.outs[k].tx):
                            need += 1
                    if need > self.nfree:
                        for g in range(self.ngroups):
                            base = self.gprio[g] if (prio and self.gprio[g] >= 0) else self.gbase[g]
                            k = base + <int>(h % <uint32_t>self.gsize[g])
                            if self.outs[k].qlen or not nm_ring_space(self.outs[k].tx):
                                self.outs[k].blocked += 1
                        self.blocked_batches += 1
                        rx.head = rx.cur = i
                        self.rx += n
                        return n
                for g in range(self.ngroups):
                    base = self.gprio[g] if (prio and self.gprio[g] >= 0) else self.gbase[g]
                    k = base + <int>(h % <uint32_t>self.gsize[g])
                    self._place(k, buf, ln)
                if prio:
                    self.prio_packets += 1
                self.rx_bytes += ln
                i = nm_ring_next(rx, i)
                n += 1
            rx.head = rx.cur = i
        self.rx += n
        return n

    def run(self, double seconds=0, uint64_t count=0, int wait_ms=100, idle_ms=0,
            counters=None):
        """Balance until a stop request (netmapy.stop), `seconds`, `count`
        input packets, `idle_ms` without input, or the end of a capture.
        Returns stats().  counters: a middlebox.stats worker block, kept up
        to date (direction 0: rx, fwd, drop, errors and their bytes)."""
        cdef uint64_t now, start_rx = self.rx
        cdef uint64_t[::1] cv
        if counters is not None:
            cv = memoryview(counters).cast("B").cast("Q")
            if cv.shape[0] < BLOCK_WORDS:
                raise ValueError("the counter block needs %d uint64" % BLOCK_WORDS)
            cv[W_STATE] = 1
        cdef long long deadline = monotonic_ms() + <long long>(seconds * 1000) if seconds > 0 else 0
        cdef long long last = monotonic_ms()
        cdef int rc, k, blocked
        cdef Port p
        cdef uint32_t moved
        while not stop_requested():
            if deadline and monotonic_ms() >= deadline:
                break
            if count and self.rx - start_rx >= count:
                break
            blocked = self.nfree == 0 and not self.lossy
            with nogil:
                if blocked:
                    rc = 0
                else:
                    rc = self.src.c_poll(POLLIN, 0 if self._waiting() else wait_ms)
                now = monotonic_ms() * 1000000
                moved = self._balance(now) if rc >= 0 else 0
            if rc < 0:
                if interrupted(self.src) < 0:
                    self.src.raise_error()
                continue                      # the loop condition sees a stop request
            for k in range(self.nouts):
                p = <Port>self.outs_py[k]
                if p.c_txsync(0) < 0:
                    p.raise_error()
            if self._waiting():
                # wait for room in the pipes that hold us up
                self._wait_room(wait_ms)
            if counters is not None:
                self._publish(&cv[0])
            if moved:
                last = monotonic_ms()
            elif idle_ms and monotonic_ms() - last >= idle_ms:
                break
            elif self.src.eof and not self._waiting():
                break
        self._drain(1000)
        self._give_up()
        if counters is not None:
            self._publish(&cv[0])
            cv[W_STATE] = 2
        return self.stats()

    cdef void _publish(self, uint64_t *c) noexcept:
        cdef int k
        cdef uint64_t fwd = 0, fwd_bytes = 0, dropped = 0, dropped_bytes = 0
        for k in range(self.nouts):
            fwd += self.outs[k].fwd
            fwd_bytes += self.outs[k].fwd_bytes
            dropped += self.outs[k].dropped
            dropped_bytes += self.outs[k].dropped_bytes
        c[DIR0 + RX] = self.rx
        c[DIR0 + RX_BYTES] = self.rx_bytes
        c[DIR0 + FWD] = fwd
        c[DIR0 + FWD_BYTES] = fwd_bytes
        c[DIR0 + DROP] = dropped
        c[DIR0 + DROP_BYTES] = dropped_bytes
        c[DIR0 + ERRORS] = self.errors
        c[W_HEARTBEAT] = monotonic_ms() * 1000000

    cdef void _give_up(self) noexcept:
        """Count the packets still waiting after the last drain as dropped
        (they are lost when the balancer goes) and free their buffers."""
        cdef int k
        cdef out_t *o
        cdef uint32_t idx
        for k in range(self.nouts):
            o = &self.outs[k]
            while o.qlen:
                idx = o.q[o.qhead]
                o.dropped += 1
                o.dropped_bytes += (<uint16_t *>self._xbuf(idx))[0]
                self.free_extra[self.nfree] = idx
                self.nfree += 1
                o.qhead = (o.qhead + 1) % self.nextra
                o.qlen -= 1

    cdef bint _waiting(self) noexcept nogil:
        cdef int k
        for k in range(self.nouts):
            if self.outs[k].qlen:
                return True
        return False

    def _wait_room(self, int wait_ms):
        cdef int k
        cdef Port p
        for k in range(self.nouts):
            if self.outs[k].qlen and not nm_ring_space(self.outs[k].tx):
                p = <Port>self.outs_py[k]
                p.py_poll(POLLOUT, min(wait_ms, 10))
                return

    def _drain(self, int ms, int stall_ms=200):
        """Give waiting packets up to `ms` to get into their pipes, or
        until none got in for `stall_ms` (nobody reads those pipes)."""
        cdef long long now = monotonic_ms()
        cdef long long end = now + ms, moved_at = now
        cdef uint64_t left, before = self._nwaiting()
        cdef int k
        cdef Port p
        while before and now < end and now - moved_at < stall_ms:
            self._flush()
            for k in range(self.nouts):
                p = <Port>self.outs_py[k]
                p.py_poll(POLLOUT if self.outs[k].qlen else 0, 0)
            left = self._nwaiting()
            now = monotonic_ms()
            if left < before:
                moved_at = now
            before = left
            if left:
                time.sleep(0.001)

    cdef uint64_t _nwaiting(self) noexcept nogil:
        cdef int k
        cdef uint64_t n = 0
        for k in range(self.nouts):
            n += self.outs[k].qlen
        return n

    def stats(self):
        """Input packets, and per pipe: forwarded, waiting now, most ever
        waiting, dropped (lossy mode, or still waiting when run() gave up
        draining), times it held the input back; bytes of each."""
        pipes = []
        for k in range(self.nouts):
            pipes.append(dict(port=str((<Port>self.outs_py[k]).name), fwd=self.outs[k].fwd,
                              fwd_bytes=self.outs[k].fwd_bytes,
                              waiting=self.outs[k].qlen, waiting_max=self.outs[k].queued_max,
                              dropped=self.outs[k].dropped,
                              dropped_bytes=self.outs[k].dropped_bytes,
                              blocked=self.outs[k].blocked))
        return dict(rx=self.rx, rx_bytes=self.rx_bytes, errors=self.errors,
                    priority=self.prio_packets, blocked=self.blocked_batches,
                    extra_free=self.nfree, extra=self.nextra, pipes=pipes)
