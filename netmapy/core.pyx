# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The netmap ring model, shared by every backend.

A Port owns TX and RX rings (``struct netmap_ring``) whose slots index
buffers in a Memory.  Backends subclass Port and implement three C methods
(``b_txsync``, ``b_rxsync``, ``b_wait``); everything else -- validation of
head/cur, buffer-view guards, poll(), the batch API, the Python objects for
rings and slots -- lives here once.
"""

cimport cython
from cpython.buffer cimport PyBUF_WRITABLE, PyBUF_FORMAT, PyBUF_ND, PyBUF_STRIDES
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset, strncpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int64_t
from netmapy.includes.system cimport (
    mmap, munmap, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_PRIVATE,
    MAP_ANONYMOUS, MAP_NORESERVE, posix_memalign, errno, strerror,
    EINVAL, EBUSY, ENOMEM, EINTR, monotonic_ms, POLLIN, POLLOUT, gettimeofday, timeval,
    poll, pollfd)

import os
import errno as _errno
import weakref

from .errors import (NetmapyError, RingStateError, MemoryMismatch)

cdef enum:
    MAX_RINGS = 1024

# ---------------------------------------------------------------- resources
# Live-object counters: tests use them to prove open/close leaks nothing.
_resources = {"ports": 0, "memories": 0, "rings": 0, "views": 0}


def resources():
    """Counts of live netmapy objects in this process (ports, memories,
    rings, buffer views)."""
    return dict(_resources)


# ------------------------------------------------------------------ memory
cdef class Memory:
    """A pool of fixed-size packet buffers, addressed by index.

    Ports whose rings draw on the same Memory can exchange buffers by index
    (a zero-copy swap); ports with different memories must copy.
    """

    def __cinit__(self, *args, **kw):
        self.region = NULL
        self.stack = NULL
        self.top = &self._top
        self.fresh = &self._fresh
        self.owner_pid = os.getpid()
        _resources["memories"] += 1

    def __init__(self, uint32_t nbufs=131072, uint32_t buf_size=2048,
                 int memid=0, str kind="anon"):
        """Anonymous process-private memory with ``nbufs`` buffers.

        The address space is reserved up front (MAP_NORESERVE): untouched
        buffers cost no RAM.
        """
        cdef size_t size = (<size_t>nbufs + 2) * buf_size
        cdef uint32_t i
        if buf_size < 64 or buf_size > 65535 or buf_size % 64:
            raise ValueError("buf_size must be a multiple of 64 in 64..65535, "
                             "not %d" % buf_size)
        self.memid = memid
        self.kind = kind
        self.buf_size = buf_size
        self.region = mmap(NULL, size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if self.region == MAP_FAILED:
            self.region = NULL
            raise OSError(errno, "mmap of %d buffers: %s" % (nbufs, strerror(errno).decode()))
        self.region_size = size
        self.bufs = <char *>self.region
        self.lo = 2
        self.hi = nbufs + 2
        self.stack = <uint32_t *>malloc(nbufs * sizeof(uint32_t))
        if self.stack == NULL:
            raise MemoryError()
        self._top = 0
        self._fresh = self.lo

    def __dealloc__(self):
        _resources["memories"] -= 1
        if self.kind == "anon":
            if self.region != NULL:
                munmap(self.region, self.region_size)
            if self.stack != NULL:
                free(self.stack)

    @property
    def free_buffers(self):
        return self.top[0] + (self.hi - self.fresh[0])

    @property
    def num_buffers(self):
        return self.hi - self.lo

    def __repr__(self):
        return "<netmapy.Memory %s id=%d bufs=%d free=%d size=%d>" % (
            self.kind, self.memid, self.hi - self.lo, self.free_buffers, self.buf_size)

    cdef int alloc_bufs(self, uint32_t *out, uint32_t n) except -1:
        cdef uint32_t i
        if n > self.top[0] + (self.hi - self.fresh[0]):
            raise NetmapyError(
                "memory %s (id %d) has %d free buffers, %d needed: open fewer "
                "or smaller rings, or give the port a bigger pool" % (
                    self.kind, self.memid, self.free_buffers, n))
        for i in range(n):
            if self.top[0]:
                self.top[0] -= 1
                out[i] = self.stack[self.top[0]]
            else:
                out[i] = self.fresh[0]
                self.fresh[0] += 1
        return 0

    cdef void free_bufs(self, const uint32_t *idx, uint32_t n) noexcept:
        cdef uint32_t i
        for i in range(n):
            if self.lo <= idx[i] < self.hi:
                self.stack[self.top[0]] = idx[i]
                self.top[0] += 1

    cdef netmap_ring *new_ring(self, uint32_t num_slots, uint16_t ringid,
                               uint16_t direction) except NULL:
        cdef void *p = NULL
        cdef netmap_ring *r
        cdef uint32_t i
        cdef uint32_t *idx
        if posix_memalign(&p, 128, nm_ring_size(num_slots)) != 0:
            raise MemoryError()
        memset(p, 0, nm_ring_size(num_slots))
        r = <netmap_ring *>p
        idx = <uint32_t *>malloc(num_slots * sizeof(uint32_t))
        if idx == NULL:
            free(p)
            raise MemoryError()
        try:
            self.alloc_bufs(idx, num_slots)
        except BaseException:
            free(idx)
            free(p)
            raise
        r.buf_ofs = <int64_t>(self.bufs - <char *>r)
        r.num_slots = num_slots
        r.nr_buf_size = self.buf_size
        r.ringid = ringid
        r.dir = direction
        for i in range(num_slots):
            r.slot[i].buf_idx = idx[i]
            r.slot[i].len = 0
            r.slot[i].flags = 0
        free(idx)
        r.head = r.cur = 0
        r.tail = num_slots - 1 if direction == NR_TX else 0
        _resources["rings"] += 1
        return r

    cdef void free_ring(self, netmap_ring *r) noexcept:
        cdef uint32_t i
        if r == NULL:
            return
        for i in range(r.num_slots):
            self.free_bufs(&r.slot[i].buf_idx, 1)
        free(r)
        _resources["rings"] -= 1

    def buffer(self, uint32_t idx):
        """A bytes copy of buffer ``idx`` (for debugging)."""
        if not (self.lo <= idx < self.hi):
            raise IndexError("buffer index %d outside %d..%d" % (idx, self.lo, self.hi - 1))
        return PyBytes_FromStringAndSize(self.bufs + <size_t>idx * self.buf_size,
                                         self.buf_size)


_anon_memories = weakref.WeakValueDictionary()


def anon_memory(int memid=1, uint32_t nbufs=131072, uint32_t buf_size=2048):
    """The process-private memory ``memid``: ports opened with the same memid
    in one process share it, and can swap buffers with zero copy."""
    key = (os.getpid(), memid)
    m = _anon_memories.get(key)
    if m is None:
        m = Memory(nbufs, buf_size, memid, "anon")
        _anon_memories[key] = m
    return m


# -------------------------------------------------------------------- port
cdef uint32_t ring_move(netmap_ring *rx, netmap_ring *tx, uint32_t limit,
                        bint swap, uint64_t *too_big=NULL) noexcept nogil:
    """Move up to limit packets from rx [head, tail) to tx [head, tail):
    by swapping buffer indices (same memory) or by copying.  Advances both
    heads; returns the number moved.  When copying, a packet longer than
    tx's buffers is never truncated nor written past its buffer: it is
    released (its RX slot consumed, no TX slot used) and counted in
    *too_big when given."""
    cdef uint32_t n = nm_ring_space(rx)
    cdef uint32_t m = nm_ring_space(tx)
    cdef uint32_t j, ri = rx.head, ti = tx.head
    cdef netmap_slot *rs
    cdef netmap_slot *ts
    if m < n:
        n = m
    if limit < n:
        n = limit
    j = 0
    while j < n and ri != rx.tail:
        rs = &rx.slot[ri]
        ts = &tx.slot[ti]
        if not swap and rs.len > tx.nr_buf_size:
            if too_big != NULL:
                too_big[0] += 1
            rs.flags = 0
            ri = ri + 1 if ri + 1 < rx.num_slots else 0
            continue
        j += 1
        slot_move(rx, rs, tx, ts, swap)
        ri = ri + 1 if ri + 1 < rx.num_slots else 0
        ti = ti + 1 if ti + 1 < tx.num_slots else 0
    rx.head = rx.cur = ri
    tx.head = tx.cur = ti
    return j


@cython.internal
cdef class _Undo:
    pass


def open_or_undo(port, kw):
    """Run port._open(**kw) and return the port; if any step fails, close
    it (each backend's close undoes exactly the steps that were done, as
    libnetmap's nmport_undo_*) and re-raise.  Every backend's open_port()
    is this."""
    try:
        port._open(**kw)
    except BaseException:
        try:
            port.close()
        except Exception:
            pass          # the open's own error is the one the user needs
        raise
    return port


cdef class Port:
    """A netmap port: TX and RX rings over one backend.

    Do not instantiate directly: use ``netmapy.open(name)``.
    """

    def __cinit__(self, *args, **kw):
        self.fd = -1
        self.closed = True
        self.txr = self.rxr = NULL
        self.txk = self.rxk = NULL
        self.nifp = NULL
        self.batch_ring = -1
        self._undo = []
        self._rings = None
        self.backend = "?"
        self.errmsg[0] = 0

    def __init__(self, name, mem=None):
        self.name = name
        self.mem = mem

    cdef int push_undo(self, str what, object fn) except -1:
        """Record the undo of a step of open(); close() runs them in reverse."""
        self._undo.append((what, fn))
        return 0

    cdef int ring_init_port(self, uint32_t ntx, uint32_t nrx,
                            uint32_t host_tx, uint32_t host_rx) except -1:
        """Allocate the ring pointer and kring arrays and the netmap_if."""
        cdef uint32_t tot_tx = ntx + host_tx, tot_rx = nrx + host_rx, i
        if tot_tx > MAX_RINGS or tot_rx > MAX_RINGS:
            raise ValueError("too many rings")
        self.nic_tx, self.nic_rx, self.host_tx, self.host_rx = ntx, nrx, host_tx, host_rx
        self.ntx, self.nrx = tot_tx, tot_rx
        self.txr = <netmap_ring **>calloc(tot_tx + 1, sizeof(netmap_ring *))
        self.rxr = <netmap_ring **>calloc(tot_rx + 1, sizeof(netmap_ring *))
        self.txk = <nm_kring *>calloc(tot_tx + 1, sizeof(nm_kring))
        self.rxk = <nm_kring *>calloc(tot_rx + 1, sizeof(nm_kring))
        self.nifp = <netmap_if *>calloc(1, sizeof(netmap_if) + (tot_tx + tot_rx) * sizeof(ssize_t))
        if not (self.txr and self.rxr and self.txk and self.rxk and self.nifp):
            raise MemoryError()
        self.nifp.ni_version = 14
        self.nifp.ni_tx_rings = ntx
        self.nifp.ni_rx_rings = nrx
        self.nifp.ni_host_tx_rings = host_tx
        self.nifp.ni_host_rx_rings = host_rx
        ifname = str(getattr(self.name, "ifname", ""))[:15].encode()
        strncpy(self.nifp.ni_name, ifname, 15)
        return 0

    cdef int alloc_rings(self, uint32_t tx_slots, uint32_t rx_slots) except -1:
        """Give every ring its slots, with buffers from self.mem."""
        cdef uint32_t i
        for i in range(self.ntx):
            self.txr[i] = self.mem.new_ring(tx_slots, i, NR_TX)
            self.txk[i].hwcur = 0
            self.txk[i].hwtail = self.txr[i].tail
        for i in range(self.nrx):
            self.rxr[i] = self.mem.new_ring(rx_slots, i, NR_RX)
        self.link_nifp()
        return 0

    def link_nifp(self):
        cdef uint32_t i
        for i in range(self.ntx):
            self.nifp.ring_ofs[i] = <char *>self.txr[i] - <char *>self.nifp
        for i in range(self.nrx):
            self.nifp.ring_ofs[self.ntx + i] = <char *>self.rxr[i] - <char *>self.nifp

    def _opened(self, str backend):
        """Mark the port open (the last step of a backend's open)."""
        self.backend = backend
        self.closed = False
        _resources["ports"] += 1

    # ---------------------------------------------------- backend interface
    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        return 0

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        return 0

    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil:
        """Fill up to 2 pollfd entries that wake us for `events`; 0 means
        the port is always ready (nothing to wait for)."""
        if self.fd < 0:
            return 0
        fds[0].fd = self.fd
        fds[0].events = events & (POLLIN | POLLOUT)
        fds[0].revents = 0
        return 1

    cdef void b_woke(self) noexcept nogil:
        """Called after a poll() on our fds returned (drain doorbells)."""
        pass

    cdef uint64_t b_rx_drops(self) noexcept nogil:
        """Received frames the kernel dropped before they reached our RX
        rings (a full socket ring, no free buffer), so far: what no RX
        counter of ours can see.  0 where the backend cannot lose any."""
        return 0

    cdef int b_wait(self, int events, int timeout_ms) noexcept nogil:
        """Sleep until something may have changed (or timeout_ms elapsed);
        0 on wakeup or timeout, -1 on error."""
        cdef pollfd fds[2]
        cdef int n = self.b_pollfds(events, fds), rc
        if n <= 0:
            return 0
        rc = poll(fds, n, timeout_ms)
        if rc < 0:
            return self.fail(errno, "poll")
        if rc > 0:
            self.b_woke()
        return 0

    # ---------------------------------------------------------- the C API
    cdef int fail(self, int err, const char *msg) noexcept nogil:
        self.err = err
        self.err_kind = 0
        if msg != NULL:
            strncpy(self.errmsg, msg, sizeof(self.errmsg) - 1)
            self.errmsg[sizeof(self.errmsg) - 1] = 0
        else:
            self.errmsg[0] = 0
        return -1

    cdef int check_ring(self, netmap_ring *r, nm_kring *k, bint is_tx) noexcept nogil:
        """netmap's head/cur validation, and the buffer-view guard for the
        slots the user is releasing."""
        cdef uint32_t n = r.num_slots, h = r.head, c = r.cur, i
        if h >= n or c >= n or \
                nm_ring_dist(k.hwcur, h, n) > nm_ring_dist(k.hwcur, k.hwtail, n) or \
                nm_ring_dist(h, c, n) > nm_ring_dist(h, k.hwtail, n):
            self.fail(EINVAL, "ring head/cur outside the user's slots")
            self.err_kind = 2
            return -1
        if k.nexports:
            i = k.hwcur
            while i != h:
                if k.exports[i]:
                    self.fail(EBUSY, "a slot being released still has a live "
                              "buffer view: release the memoryview first")
                    self.err_kind = 1
                    r.head = r.cur = k.hwcur
                    return -1
                i = i + 1 if i + 1 < n else 0
        return 0

    cdef int c_txsync(self, uint32_t i) noexcept nogil:
        cdef netmap_ring *r = self.txr[i]
        cdef nm_kring *k = &self.txk[i]
        if self.check_ring(r, k, True) < 0:
            return -1
        if self.b_txsync(i) < 0:
            return -1
        k.hwcur = r.head
        k.hwtail = r.tail
        return 0

    cdef int c_rxsync(self, uint32_t i) noexcept nogil:
        cdef netmap_ring *r = self.rxr[i]
        cdef nm_kring *k = &self.rxk[i]
        if self.check_ring(r, k, False) < 0:
            return -1
        if self.b_rxsync(i) < 0:
            return -1
        k.hwcur = r.head
        k.hwtail = r.tail
        return 0

    cdef int c_poll(self, int events, int timeout_ms) noexcept nogil:
        """netmap's poll(): sync the rings, return the ready events, sleep
        (without spinning) until one is ready or the timeout expires.
        timeout_ms < 0 waits forever."""
        cdef uint32_t i
        cdef int revents
        cdef long long deadline = 0, now
        if timeout_ms > 0:
            deadline = monotonic_ms() + timeout_ms
        while True:
            revents = 0
            for i in range(self.ntx):
                if (events & POLLOUT) or self.txr[i].head != self.txk[i].hwcur:
                    if self.c_txsync(i) < 0:
                        return -1
                if (events & POLLOUT) and self.txr[i].head != self.txr[i].tail:
                    revents |= POLLOUT
            if events & POLLIN:
                for i in range(self.nrx):
                    if self.c_rxsync(i) < 0:
                        return -1
                    if self.rxr[i].head != self.rxr[i].tail:
                        revents |= POLLIN
            if revents or timeout_ms == 0 or (self.eof and (events & POLLIN)):
                return revents
            if timeout_ms > 0:
                now = monotonic_ms()
                if now >= deadline:
                    return 0
                if self.b_wait(events, <int>(deadline - now)) < 0:
                    return -1
            elif self.b_wait(events, -1) < 0:
                return -1

    cpdef raise_error(self):
        """The chokepoint: turn the failure recorded by a C call into an
        exception (OSError with errno, BufferError, RingStateError)."""
        msg = self.errmsg.decode("utf-8", "replace")
        err, kind = self.err, self.err_kind
        self.err = 0
        self.err_kind = 0
        where = "%s (%s)" % (self.name, self.backend)
        if kind == 1:
            raise BufferError("%s: %s" % (where, msg))
        if kind == 2:
            raise RingStateError("%s: %s" % (where, msg))
        if kind == 3:
            from .errors import CaptureFileError
            raise CaptureFileError(str(getattr(self.name, "ifname", self.name)), msg,
                                   err or _errno.EIO)
        if not err:
            err = _errno.EIO
        text = os.strerror(err)
        raise OSError(err, "%s: %s%s" % (where, msg + ": " if msg else "", text))

    cdef int py_poll(self, int events, int timeout_ms) except -1:
        """c_poll without the GIL, retried after signals (which Python
        handles here, so Ctrl-C interrupts a blocking wait)."""
        cdef int rc
        cdef long long deadline = monotonic_ms() + timeout_ms if timeout_ms > 0 else 0
        while True:
            with nogil:
                rc = self.c_poll(events, timeout_ms)
            if rc >= 0:
                return rc
            if self.err != EINTR:
                self.raise_error()
            self.err = 0
            PyErr_CheckSignals()
            if timeout_ms > 0:
                timeout_ms = <int>(deadline - monotonic_ms())
                if timeout_ms <= 0:
                    return 0

    cdef uint32_t move_to(self, Port dst, uint32_t limit) noexcept nogil:
        """Move what our RX rings hold into dst's TX rings (swap when both
        ports share memory, copy otherwise).  No sync."""
        cdef uint32_t i, j, m, moved = 0, got
        cdef bint swap = self.mem is dst.mem
        cdef netmap_ring *t
        j = 0
        for i in range(self.nrx):
            while moved < limit and not nm_ring_empty(self.rxr[i]):
                # pick a TX ring with room, round robin from j
                got = 0
                for m in range(dst.ntx):
                    t = dst.txr[j]
                    if nm_ring_space(t):
                        got = ring_move(self.rxr[i], t, limit - moved, swap)
                        break
                    j = j + 1 if j + 1 < dst.ntx else 0
                if got == 0:
                    return moved
                moved += got
        return moved

    # ----------------------------------------------------------- Python API
    def _check_open(self):
        if self.closed:
            raise ValueError("I/O operation on closed port %s" % (self.name,))

    def fileno(self):
        """A file descriptor for select/poll/selectors/asyncio: readable when
        the port may have news (packets or TX room).  Readiness is
        edge-triggered: after a wakeup, call recv()/poll() until they
        return nothing."""
        self._check_open()
        return self.fd

    @property
    def num_tx_rings(self):
        return self.nic_tx

    @property
    def num_rx_rings(self):
        return self.nic_rx

    def _ring_objects(self):
        if self._rings is None:
            self._check_open()
            self._rings = (
                tuple(Ring._make(self, i, True) for i in range(self.nic_tx)),
                tuple(Ring._make(self, i, False) for i in range(self.nic_rx)),
                tuple(Ring._make(self, i, True) for i in range(self.nic_tx, self.ntx)),
                tuple(Ring._make(self, i, False) for i in range(self.nic_rx, self.nrx)),
            )
        return self._rings

    def _all_rx(self):
        r = self._ring_objects()
        return r[1] + r[3]

    @property
    def tx_rings(self):
        """The NIC (or pipe, or file) TX rings."""
        return self._ring_objects()[0]

    @property
    def rx_rings(self):
        return self._ring_objects()[1]

    @property
    def host_tx_rings(self):
        """Host TX rings: packets written there go to the host stack."""
        return self._ring_objects()[2]

    @property
    def host_rx_rings(self):
        """Host RX rings: packets the host stack sent."""
        return self._ring_objects()[3]

    @property
    def tx_ring(self):
        """The first TX ring (shorthand)."""
        return self.tx_rings[0]

    @property
    def rx_ring(self):
        return self.rx_rings[0]

    def txsync(self):
        """Hand every filled TX slot to the backend and reclaim sent ones."""
        cdef uint32_t i
        self._check_open()
        for i in range(self.ntx):
            if self.c_txsync(i) < 0:
                self.raise_error()

    def rxsync(self):
        """Release consumed RX slots and collect newly received packets."""
        cdef uint32_t i
        self._check_open()
        self._end_batch()
        for i in range(self.nrx):
            if self.c_rxsync(i) < 0:
                self.raise_error()

    def poll(self, events=POLLIN, timeout=None):
        """Sync and wait until RX has packets (POLLIN) or TX has room
        (POLLOUT).  timeout in seconds (None: forever, 0: don't wait).
        Returns the ready events (0 on timeout)."""
        self._check_open()
        return self.py_poll(events, _timeout_ms(timeout))

    cdef _end_batch(self):
        """Release the batch recv() handed out last (advance RX head)."""
        cdef netmap_ring *r
        cdef nm_kring *k
        cdef uint32_t i
        if self.batch_ring < 0:
            return
        r = self.rxr[self.batch_ring]
        k = &self.rxk[self.batch_ring]
        self.batch_ring = -1
        # release up to batch_end unless the user moved head past it
        if nm_ring_dist(k.hwcur, r.head, r.num_slots) < \
                nm_ring_dist(k.hwcur, self.batch_end, r.num_slots):
            if k.nexports:
                i = r.head
                while i != self.batch_end:
                    if k.exports[i]:
                        raise BufferError(
                            "%s: a packet of the previous batch still has a live "
                            "memoryview; release it before the next recv()" % (self.name,))
                    i = i + 1 if i + 1 < r.num_slots else 0
            r.head = r.cur = self.batch_end

    def recv(self, uint32_t max=256, timeout=None):
        """Receive up to ``max`` packets with at most one sync per ring.

        Returns a Batch (possibly empty when the timeout expires or a
        capture file ends).  The previous batch of this port is released
        first.  No Python object is made per packet unless you index or
        iterate the batch.  timeout in seconds: None waits, 0 polls.
        """
        cdef uint32_t i, ri, n
        cdef int t = _timeout_ms(timeout), rc = 0
        cdef netmap_ring *r
        cdef uint32_t nr = self.nic_rx or self.host_rx   # host rings when no NIC ring
        self._check_open()
        self._end_batch()
        if nr == 0:
            raise ValueError("%s has no RX ring to receive from (opened TX-only?)" % (self.name,))
        if max == 0:
            return Batch._make(self, 0, 0, 0)
        while True:
            for i in range(nr):
                ri = (self.rr + i) % nr
                r = self.rxr[ri]
                if nm_ring_empty(r):
                    continue
                n = nm_ring_space(r)
                if n > max:
                    n = max
                self.rr = (ri + 1) % nr
                self.batch_ring = ri
                self.batch_end = (r.head + n) % r.num_slots
                return Batch._make(self, ri, r.head, n)
            if rc:       # synced and still nothing: only a race, try again
                rc = 0
                continue
            rc = self.py_poll(POLLIN, t)
            if rc == 0:
                return Batch._make(self, 0, 0, 0)

    def send(self, packets, timeout=None):
        """Queue packets for transmission and sync once per filled batch.

        ``packets`` is a Batch from recv() (buffers are swapped when the two
        ports share memory, copied otherwise; the batch is released as its
        packets are taken) or an iterable of bytes-like objects (copied).
        Waits for room while packets remain (timeout None), or gives up
        when the timeout expires (0: don't wait); returns the number queued.
        Nothing is dropped: what was not queued is still yours.
        """
        self._check_open()
        if isinstance(packets, Batch):
            return self._send_batch(<Batch>packets, timeout)
        return self._send_buffers(packets, timeout)

    cdef _send_batch(self, Batch b, timeout):
        cdef Port src = b.port
        cdef netmap_ring *r
        cdef netmap_ring *t
        cdef uint32_t sent = 0, moved, left, j, tj = 0, i
        cdef bint swap
        cdef int tm = _timeout_ms(timeout), rc
        cdef nm_kring *k
        cdef uint32_t nt = self.nic_tx or self.host_tx
        src._check_open()
        if nt == 0:
            raise ValueError("%s has no TX ring to send on (opened RX-only?)" % (self.name,))
        if b.n == 0:
            return 0
        swap = src.mem is self.mem
        r = src.rxr[b.ring]
        k = &src.rxk[b.ring]
        if r.head != b.start:
            raise ValueError("this batch is no longer at the head of its ring "
                             "(released already?)")
        if k.nexports:
            i = b.start
            for j in range(b.n):
                if k.exports[i]:
                    raise BufferError("a packet of the batch has a live memoryview: "
                                      "release it before send()")
                i = i + 1 if i + 1 < r.num_slots else 0
        while b.n:
            left = b.n
            moved = 0
            for j in range(nt):
                t = self.txr[(tj + j) % nt]
                moved += ring_move(r, t, left - moved, swap)
                if moved == left:
                    break
            tj = (tj + 1) % nt
            b.start = r.head
            b.n -= moved
            sent += moved
            if src.batch_ring == b.ring:
                if b.n == 0:
                    src.batch_ring = -1
            rc = self.py_poll(POLLOUT if b.n else 0, tm if b.n else 0)
            if b.n and rc == 0:
                break
        return sent

    cdef _send_buffers(self, packets, timeout):
        cdef const uint8_t[::1] view
        cdef netmap_ring *t
        cdef uint32_t sent = 0, j, ti = 0, pending = 0
        cdef int tm = _timeout_ms(timeout), rc
        cdef Py_ssize_t ln
        cdef uint32_t nt = self.nic_tx or self.host_tx   # host rings when no NIC ring
        if nt == 0:
            raise ValueError("%s has no TX ring to send on (opened RX-only?)" % (self.name,))
        for p in packets:
            view = _as_bytes_view(p)
            ln = view.shape[0]
            while True:
                t = NULL
                for j in range(nt):
                    if nm_ring_space(self.txr[(ti + j) % nt]):
                        t = self.txr[(ti + j) % nt]
                        break
                if t != NULL:
                    break
                rc = self.py_poll(POLLOUT, tm)
                pending = 0
                if rc == 0:
                    return sent
            if ln > t.nr_buf_size:
                raise ValueError("packet %d is %d bytes, more than the buffer "
                                 "size %d" % (sent, ln, t.nr_buf_size))
            if ln:
                memcpy(NETMAP_BUF(t, t.slot[t.head].buf_idx), &view[0], ln)
            t.slot[t.head].len = <uint16_t>ln
            t.slot[t.head].flags = 0
            nm_ring_advance(t, 1)
            sent += 1
            pending += 1
            if pending >= 256:
                self.py_poll(0, 0)
                pending = 0
        if pending:
            self.py_poll(0, 0)
        return sent

    def forward(self, Port dst, uint32_t max=0xffffffff, timeout=0):
        """Move every packet our RX rings hold (up to max) into dst's TX
        rings and sync both: zero copy when the ports share memory.
        Waits up to timeout seconds (None: forever) for the first packet.
        Returns the number forwarded; packets dst had no room for stay in
        our RX rings."""
        cdef uint32_t moved = 0, j
        cdef int rc = 0, t = _timeout_ms(timeout)
        self._check_open()
        dst._check_open()
        self._end_batch()
        rc = self.py_poll(POLLIN, t)
        with nogil:
            if rc > 0:
                moved = self.move_to(dst, max)
                for j in range(dst.ntx):
                    if dst.c_txsync(j) < 0:
                        rc = -2
                        break
                if rc > 0:
                    for j in range(self.nrx):
                        if self.c_rxsync(j) < 0:
                            rc = -1
                            break
        if rc == -2:
            dst.raise_error()
        if rc < 0:
            self.raise_error()
        return moved

    def __iter__(self):
        """Iterate over batches until the source ends (capture files) or
        forever (live ports)."""
        while True:
            b = self.recv()
            if len(b) == 0 and self.eof:
                return
            yield b

    def _close_rings(self):
        cdef uint32_t i
        if self.mem is not None and self.txr != NULL:
            for i in range(self.ntx):
                if self.txr[i] != NULL:
                    self.mem.free_ring(self.txr[i])
                    self.txr[i] = NULL
            for i in range(self.nrx):
                if self.rxr[i] != NULL:
                    self.mem.free_ring(self.rxr[i])
                    self.rxr[i] = NULL

    def _live_views(self):
        cdef uint32_t i, n = 0
        if self.txk != NULL:
            for i in range(self.ntx):
                n += self.txk[i].nexports
        if self.rxk != NULL:
            for i in range(self.nrx):
                n += self.rxk[i].nexports
        return n

    def close(self):
        """Release everything the port holds; undo every step of open() in
        reverse.  Closing twice is fine.  Raises BufferError while a
        memoryview of one of its buffers is alive (as mmap does)."""
        if self.closed and not self._undo:
            return
        n = self._live_views()
        if n:
            raise BufferError("%s: cannot close: %d memoryview(s) of its buffers "
                              "still exist; release them first" % (self.name, n))
        if not self.closed:
            _resources["ports"] -= 1
        self.closed = True
        self._rings = None
        errors = []
        while self._undo:
            what, fn = self._undo.pop()
            try:
                fn()
            except Exception as e:      # keep undoing; report the first
                errors.append("%s: %s" % (what, e))
        self._free_arrays()
        if errors:
            raise NetmapyError("%s: closing left work undone: %s" % (
                self.name, "; ".join(errors)))

    cdef _free_arrays(self):
        cdef uint32_t i
        if self.txk != NULL:
            for i in range(self.ntx):
                free(self.txk[i].exports)
        if self.rxk != NULL:
            for i in range(self.nrx):
                free(self.rxk[i].exports)
        free(self.txr); free(self.rxr); free(self.txk); free(self.rxk); free(self.nifp)
        self.txr = self.rxr = NULL
        self.txk = self.rxk = NULL
        self.nifp = NULL

    def __dealloc__(self):
        if self.txr != NULL or self.rxr != NULL:
            self._free_arrays()

    def __del__(self):
        if not self.closed:
            try:
                self.close()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else "%d tx/%d rx rings" % (self.nic_tx, self.nic_rx)
        return "<netmapy.Port %s backend=%s %s>" % (self.name, self.backend, state)

    def info(self):
        """A dict describing the port (for logs and tests)."""
        self._check_open()
        d = dict(name=str(self.name), backend=self.backend,
                 tx_rings=self.nic_tx, rx_rings=self.nic_rx,
                 host_tx_rings=self.host_tx, host_rx_rings=self.host_rx,
                 memory=repr(self.mem))
        if self.ntx:
            d["tx_slots"] = self.txr[0].num_slots
        if self.nrx:
            d["rx_slots"] = self.rxr[0].num_slots
        d["buf_size"] = self.mem.buf_size if self.mem is not None else 0
        d.update(self._backend_info())
        return d

    def _backend_info(self):
        return {}


cdef int poll_pair(Port a, int ev_a, Port b, int ev_b, int timeout_ms) noexcept nogil:
    """poll() over two ports at once (a bridge, or a source that is also a
    sink).  Returns (revents of a) | (revents of b) << 16, 0 on timeout, -1
    when a failed, -2 when b failed (the error is kept in that port)."""
    cdef pollfd fds[4]
    cdef int ra, rb, n, rc
    cdef long long deadline = monotonic_ms() + timeout_ms if timeout_ms > 0 else 0, now
    while True:
        ra = a.c_poll(ev_a, 0)
        if ra < 0:
            return -1
        rb = b.c_poll(ev_b, 0)
        if rb < 0:
            return -2
        if ra or rb or timeout_ms == 0:
            return ra | (rb << 16)
        if (a.eof and (ev_a & POLLIN)) or (b.eof and (ev_b & POLLIN)):
            return 0
        n = a.b_pollfds(ev_a, fds)
        if n < 0:
            n = 0
        rc = b.b_pollfds(ev_b, &fds[n])
        if rc > 0:
            n += rc
        if n == 0:
            continue
        if timeout_ms > 0:
            now = monotonic_ms()
            if now >= deadline:
                return 0
            rc = poll(fds, n, <int>(deadline - now))
        else:
            rc = poll(fds, n, -1)
        if rc < 0:
            a.fail(errno, "poll")
            return -1
        if rc > 0:
            a.b_woke()
            b.b_woke()


cdef int _timeout_ms(timeout) except? -2:
    if timeout is None:
        return -1
    if timeout < 0:
        raise ValueError("timeout must be >= 0 seconds or None")
    if timeout > 2000000:
        return -1
    return <int>(timeout * 1000 + 0.999)


cdef const uint8_t[::1] _as_bytes_view(p) except *:
    if isinstance(p, Slot):
        return memoryview(p)
    return memoryview(p).cast("B")


# -------------------------------------------------------------- rings/slots
cdef class Ring:
    """One netmap ring of a port.

    ``head``/``cur``/``tail``/``num_slots`` as in netmap: on RX the slots in
    [head, tail) hold received packets; on TX they are free to fill.  Advance
    ``head`` to release (RX) or hand over (TX), then ``sync()``.
    """
    cdef Port port
    cdef netmap_ring *r
    cdef nm_kring *k
    cdef readonly uint32_t index
    cdef readonly bint is_tx

    @staticmethod
    cdef Ring _make(Port port, uint32_t i, bint is_tx):
        cdef Ring ring = Ring.__new__(Ring)
        ring.port = port
        ring.index = i
        ring.is_tx = is_tx
        ring.r = port.txr[i] if is_tx else port.rxr[i]
        ring.k = &port.txk[i] if is_tx else &port.rxk[i]
        return ring

    cdef inline int _live(self) except -1:
        if self.port.closed:
            raise ValueError("ring of a closed port")
        return 0

    @property
    def num_slots(self):
        self._live()
        return self.r.num_slots

    @property
    def buf_size(self):
        self._live()
        return self.r.nr_buf_size

    @property
    def head(self):
        self._live()
        return self.r.head

    @head.setter
    def head(self, uint32_t v):
        cdef uint32_t i, n
        self._live()
        n = self.r.num_slots
        if v >= n:
            raise RingStateError("head %d outside the ring (0..%d)" % (v, n - 1))
        if nm_ring_dist(self.k.hwcur, v, n) > nm_ring_dist(self.k.hwcur, self.k.hwtail, n):
            raise RingStateError(
                "head %d is outside the user's slots [%d, %d]" % (v, self.k.hwcur, self.k.hwtail))
        if self.k.nexports:
            i = self.r.head
            while i != v:
                if self.k.exports[i]:
                    raise BufferError("slot %d still has a live memoryview: "
                                      "release it before releasing the slot" % i)
                i = i + 1 if i + 1 < n else 0
        self.r.head = v
        if nm_ring_dist(v, self.r.cur, n) > nm_ring_dist(v, self.k.hwtail, n):
            self.r.cur = v

    @property
    def cur(self):
        self._live()
        return self.r.cur

    @cur.setter
    def cur(self, uint32_t v):
        self._live()
        if v >= self.r.num_slots:
            raise RingStateError("cur %d outside the ring" % v)
        self.r.cur = v

    @property
    def tail(self):
        self._live()
        return self.r.tail

    @property
    def flags(self):
        self._live()
        return self.r.flags

    @flags.setter
    def flags(self, uint32_t v):
        self._live()
        self.r.flags = v

    @property
    def timestamp(self):
        self._live()
        return self.r.ts.tv_sec + self.r.ts.tv_usec * 1e-6

    def space(self):
        """Slots the user owns: packets to read (RX) or room to fill (TX)."""
        self._live()
        return nm_ring_space(self.r)

    def empty(self):
        self._live()
        return nm_ring_empty(self.r)

    def next(self, uint32_t i):
        self._live()
        return nm_ring_next(self.r, i)

    def advance(self, uint32_t n=1):
        """head = cur = head + n (release n slots)."""
        self._live()
        if n > nm_ring_space(self.r):
            raise RingStateError("cannot advance %d slots: the user owns %d"
                                 % (n, nm_ring_space(self.r)))
        self.head = (self.r.head + n) % self.r.num_slots
        self.r.cur = self.r.head

    def sync(self):
        """txsync or rxsync this ring."""
        cdef int rc
        self._live()
        if self.is_tx:
            with nogil:
                rc = self.port.c_txsync(self.index)
        else:
            if self.port.batch_ring == <int>self.index:
                self.port._end_batch()
            with nogil:
                rc = self.port.c_rxsync(self.index)
        if rc < 0:
            self.port.raise_error()

    def __len__(self):
        self._live()
        return self.r.num_slots

    def __getitem__(self, Py_ssize_t i):
        self._live()
        if i < 0:
            i += self.r.num_slots
        if i < 0 or i >= self.r.num_slots:
            raise IndexError("slot %d outside the ring (0..%d)" % (i, self.r.num_slots - 1))
        return Slot._make(self, <uint32_t>i)

    def __iter__(self):
        """The user-owned slots, head to tail."""
        cdef uint32_t i
        self._live()
        i = self.r.head
        while i != self.r.tail:
            yield Slot._make(self, i)
            i = nm_ring_next(self.r, i)

    def __repr__(self):
        if self.port.closed:
            return "<netmapy.Ring (closed)>"
        return "<netmapy.Ring %s %d head=%d cur=%d tail=%d slots=%d>" % (
            "tx" if self.is_tx else "rx", self.index, self.r.head, self.r.cur,
            self.r.tail, self.r.num_slots)


cdef class Slot:
    """One slot of a ring: ``buf_idx``, ``len``, ``flags``, and its buffer.

    ``memoryview(slot)`` is the packet (``len`` bytes) without a copy;
    ``slot.buffer`` is the whole buffer, for filling a TX slot.  A slot
    cannot be released (head moved past it) while a view is alive.
    """
    cdef Ring ring
    cdef readonly uint32_t index

    @staticmethod
    cdef Slot _make(Ring ring, uint32_t i):
        cdef Slot s = Slot.__new__(Slot)
        s.ring = ring
        s.index = i
        return s

    cdef inline netmap_slot *_s(self) except NULL:
        self.ring._live()
        return &self.ring.r.slot[self.index]

    @property
    def buf_idx(self):
        return self._s().buf_idx

    @buf_idx.setter
    def buf_idx(self, uint32_t v):
        cdef netmap_slot *s = self._s()
        cdef Memory m = self.ring.port.mem
        if not (m.lo <= v < m.hi):
            raise ValueError("buffer index %d outside this memory (%d..%d)" % (v, m.lo, m.hi - 1))
        if self.ring.k.exports != NULL and self.ring.k.exports[self.index]:
            raise BufferError("slot %d has a live memoryview: release it before "
                              "changing buf_idx" % self.index)
        s.buf_idx = v
        s.flags |= NS_BUF_CHANGED

    @property
    def len(self):
        return self._s().len

    @len.setter
    def len(self, uint32_t v):
        if v > self.ring.r.nr_buf_size:
            raise ValueError("len %d exceeds the buffer size %d" % (v, self.ring.r.nr_buf_size))
        self._s().len = <uint16_t>v

    @property
    def flags(self):
        return self._s().flags

    @flags.setter
    def flags(self, uint16_t v):
        self._s().flags = v

    @property
    def buffer(self):
        """A writable memoryview of the whole buffer (nr_buf_size bytes)."""
        return memoryview(_SlotView._make(self, True))

    def tobytes(self):
        """A copy of the packet."""
        cdef netmap_slot *s = self._s()
        return PyBytes_FromStringAndSize(NETMAP_BUF(self.ring.r, s.buf_idx), s.len)

    def set(self, data):
        """Copy data into the buffer and set len."""
        cdef const uint8_t[::1] v = memoryview(data).cast("B")
        cdef netmap_slot *s = self._s()
        if v.shape[0] > self.ring.r.nr_buf_size:
            raise ValueError("%d bytes do not fit a %d-byte buffer" % (
                v.shape[0], self.ring.r.nr_buf_size))
        if v.shape[0]:
            memcpy(NETMAP_BUF(self.ring.r, s.buf_idx), &v[0], v.shape[0])
        s.len = <uint16_t>v.shape[0]

    def swap(self, Slot other):
        """Exchange buffers with another slot (zero copy); both get
        NS_BUF_CHANGED.  Refused across memories: copy with set() then."""
        cdef netmap_slot *a = self._s()
        cdef netmap_slot *b = other._s()
        cdef uint32_t t
        cdef uint16_t l
        if self.ring.port.mem is not other.ring.port.mem:
            raise MemoryMismatch(
                "cannot swap buffers between %s (memory %r) and %s (memory %r): "
                "they do not share memory; copy instead (slot.set(other))" % (
                    self.ring.port.name, self.ring.port.mem,
                    other.ring.port.name, other.ring.port.mem))
        if (self.ring.k.exports != NULL and self.ring.k.exports[self.index]) or \
                (other.ring.k.exports != NULL and other.ring.k.exports[other.index]):
            raise BufferError("a slot being swapped has a live memoryview")
        t = a.buf_idx; a.buf_idx = b.buf_idx; b.buf_idx = t
        l = a.len; a.len = b.len; b.len = l
        a.flags |= NS_BUF_CHANGED
        b.flags |= NS_BUF_CHANGED

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        _export(self, buffer, flags, False, self)

    def __releasebuffer__(self, Py_buffer *buffer):
        _unexport(self)

    def __repr__(self):
        if self.ring.port.closed:
            return "<netmapy.Slot (closed)>"
        s = &self.ring.r.slot[self.index]
        return "<netmapy.Slot %d buf_idx=%d len=%d flags=%#x>" % (
            self.index, s.buf_idx, s.len, s.flags)


cdef class _SlotView:
    """Exports a whole slot buffer (Slot.buffer)."""
    cdef Slot slot

    @staticmethod
    cdef _SlotView _make(Slot s, bint full):
        cdef _SlotView v = _SlotView.__new__(_SlotView)
        v.slot = s
        return v

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        _export(self.slot, buffer, flags, True, self)

    def __releasebuffer__(self, Py_buffer *buffer):
        _unexport(self.slot)


cdef int _export(Slot s, Py_buffer *buffer, int flags, bint full, obj) except -1:
    cdef netmap_slot *sl = s._s()
    cdef nm_kring *k = s.ring.k
    cdef uint32_t n = s.ring.r.num_slots
    if k.exports == NULL:
        k.exports = <uint16_t *>calloc(n, sizeof(uint16_t))
        if k.exports == NULL:
            raise MemoryError()
    if k.exports[s.index] == 0xffff:
        raise BufferError("too many views of one slot")
    buffer.buf = NETMAP_BUF(s.ring.r, sl.buf_idx)
    buffer.len = s.ring.r.nr_buf_size if full else sl.len
    buffer.obj = obj
    buffer.readonly = 0
    buffer.itemsize = 1
    buffer.format = NULL
    if flags & PyBUF_FORMAT:
        buffer.format = b"B"
    buffer.ndim = 1
    buffer.shape = &buffer.len if (flags & PyBUF_ND) else NULL
    buffer.strides = &buffer.itemsize if (flags & PyBUF_STRIDES) else NULL
    buffer.suboffsets = NULL
    buffer.internal = NULL
    k.exports[s.index] += 1
    k.nexports += 1
    _resources["views"] += 1
    return 0


cdef void _unexport(Slot s) noexcept:
    cdef nm_kring *k = s.ring.k
    if s.ring.port.txk == NULL and s.ring.port.rxk == NULL:
        return
    if k.exports != NULL and k.exports[s.index]:
        k.exports[s.index] -= 1
        k.nexports -= 1
    _resources["views"] -= 1


# ------------------------------------------------------------------ batches
cdef class Batch:
    """Packets received by one recv(): slots [start, start+n) of one RX ring.

    Index or iterate it for Slot objects (made on request); ``lengths()``,
    ``tobytes()`` and ``copy_into()`` work without per-packet objects.
    ``release()`` gives the slots back; the next recv() does it anyway.
    """
    @staticmethod
    cdef Batch _make(Port port, int ring, uint32_t start, uint32_t n):
        cdef Batch b = Batch.__new__(Batch)
        b.port = port
        b.ring = ring
        b.start = start
        b.n = n
        return b

    def __len__(self):
        return self.n

    def __bool__(self):
        return self.n > 0

    cdef netmap_ring *_r(self) except NULL:
        self.port._check_open()
        return self.port.rxr[self.ring]

    def __getitem__(self, Py_ssize_t i):
        cdef netmap_ring *r = self._r()
        if i < 0:
            i += self.n
        if i < 0 or i >= self.n:
            raise IndexError("packet %d outside the batch of %d" % (i, self.n))
        return Slot._make(self.port._all_rx()[self.ring], (self.start + i) % r.num_slots)

    def __iter__(self):
        cdef uint32_t j
        cdef netmap_ring *r = self._r()
        ring = self.port._all_rx()[self.ring]
        for j in range(self.n):
            yield Slot._make(ring, (self.start + j) % r.num_slots)

    def lengths(self):
        """A list of the packet lengths."""
        cdef netmap_ring *r = self._r()
        return [r.slot[(self.start + j) % r.num_slots].len for j in range(self.n)]

    @property
    def nbytes(self):
        cdef netmap_ring *r = self._r()
        cdef uint64_t tot = 0
        cdef uint32_t j
        for j in range(self.n):
            tot += r.slot[(self.start + j) % r.num_slots].len
        return tot

    def tobytes(self):
        """A list of bytes objects, one per packet (copies)."""
        cdef netmap_ring *r = self._r()
        cdef netmap_slot *s
        out = []
        for j in range(self.n):
            s = &r.slot[(self.start + j) % r.num_slots]
            out.append(PyBytes_FromStringAndSize(NETMAP_BUF(r, s.buf_idx), s.len))
        return out

    def copy_into(self, buf, uint32_t stride=2048):
        """Copy packet j to buf[j*stride:], one C loop; returns the lengths.
        Packets longer than stride are cut to stride bytes."""
        cdef uint8_t[::1] out = memoryview(buf).cast("B")
        cdef netmap_ring *r = self._r()
        cdef netmap_slot *s
        cdef uint32_t j, ln
        if <size_t>out.shape[0] < <size_t>self.n * stride:
            raise ValueError("buffer of %d bytes is too small for %d packets of "
                             "stride %d" % (out.shape[0], self.n, stride))
        lens = []
        for j in range(self.n):
            s = &r.slot[(self.start + j) % r.num_slots]
            ln = s.len if s.len < stride else stride
            memcpy(&out[j * stride], NETMAP_BUF(r, s.buf_idx), ln)
            lens.append(ln)
        return lens

    def release(self):
        """Give the slots back to the port (advance the RX head past them)."""
        cdef netmap_ring *r
        if self.n == 0 or self.port.closed:
            return
        r = self.port.rxr[self.ring]
        if r.head != self.start:
            raise ValueError("this batch is no longer at the head of its ring")
        rings = self.port._all_rx()
        (<Ring>rings[self.ring]).head = (self.start + self.n) % r.num_slots
        if self.port.batch_ring == self.ring:
            self.port.batch_ring = -1
        self.n = 0

    def __repr__(self):
        return "<netmapy.Batch %d packets from %s ring %d>" % (self.n, self.port.name, self.ring)
