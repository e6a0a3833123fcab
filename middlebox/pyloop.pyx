# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The workers' loops where a Python function decides per packet
(``--python MODULE:FUNC``): the waiting, syncing and moving stay in C, only
the decision is Python.  Counters go to the worker block declared in
middlebox/counters.pxd, like middlebox.loop's."""

from libc.stdint cimport uint32_t, uint64_t
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_WRITE
from netmapy.includes.system cimport monotonic_ms, POLLIN, POLLOUT
from netmapy.core cimport (Port, netmap_ring, netmap_slot, NETMAP_BUF, nm_ring_space,
                           nm_ring_next, slot_move, poll_pair, poll_bridge, txsync_all,
                           interrupted,
                           pair_interrupted)
from netmapy.stop cimport stop_requested
from middlebox.counters cimport *

import time


cdef inline long long _deadline(double seconds) noexcept nogil:
    if seconds <= 0:
        return 0
    return monotonic_ms() + <long long>(seconds * 1000)


cdef inline void memset_u64(uint64_t *p, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        p[i] = 0


cdef uint32_t _move_py(Port src, Port dst, object fn, bint swap, uint64_t *ctr) except? 0xffffffff:
    """Offer each packet of src's RX rings to fn(view) and move those it
    accepts to dst's TX rings; the rest are dropped.  Stops at an accepted
    packet when TX is full.  ctr: one direction of the worker block
    (counters.pxd): RX, FWD, DROP (packets and bytes) and ERRORS (accepted,
    but larger than dst's buffers: released, never truncated)."""
    cdef uint32_t i, moved = 0, ri, ti
    cdef netmap_ring *rx
    cdef netmap_ring *tx
    cdef netmap_slot *rs
    cdef netmap_slot *ts
    cdef char *buf
    for i in range(src.nic_rx):
        rx = src.rxr[i]
        tx = dst.txr[i % dst.nic_tx]
        ri = rx.head
        ti = tx.head
        while ri != rx.tail:
            rs = &rx.slot[ri]
            buf = NETMAP_BUF(rx, rs.buf_idx)
            view = PyMemoryView_FromMemory(buf, rs.len, PyBUF_WRITE)
            try:
                ok = fn(view)
            finally:
                view.release()
            if ok and not swap and rs.len > tx.nr_buf_size:
                ctr[ERRORS] += 1
            elif ok:
                if ti == tx.tail:       # TX full: keep this one for later
                    break
                ts = &tx.slot[ti]
                slot_move(rx, rs, tx, ts, swap)
                ctr[FWD] += 1
                ctr[FWD_BYTES] += rs.len
                ti = nm_ring_next(tx, ti)
            else:
                ctr[DROP] += 1
                ctr[DROP_BYTES] += rs.len
            ctr[RX] += 1
            ctr[RX_BYTES] += rs.len
            ri = nm_ring_next(rx, ri)
            moved += 1
        rx.head = rx.cur = ri
        tx.head = tx.cur = ti
    return moved


def bridge_py(Port a, Port b, fn_ab, fn_ba=None, counters=None, double seconds=0,
              int wait_ms=100):
    """bridge() with a Python function deciding per packet: fn(view) gets a
    writable memoryview of the packet (valid during the call only: it is
    released afterwards; modify it in place to rewrite the packet) and
    returns True to forward it, False to drop it.  The waiting, syncing and
    moving stay in C; only the decision is Python.  fn_ba defaults to fn_ab.

    ``counters``: a worker block (counters.pxd: a->b at DIR0, b->a at
    DIR1).  Returns the counts."""
    cdef uint64_t local[BLOCK_WORDS]
    cdef uint64_t *ctr = local
    cdef uint64_t[::1] cview
    cdef bint swap = a.mem is b.mem
    cdef long long dl = _deadline(seconds)
    cdef int rc = 0, which = 0
    cdef uint32_t i
    memset_u64(local, BLOCK_WORDS)
    if fn_ba is None:
        fn_ba = fn_ab
    if counters is not None:
        cview = memoryview(counters).cast("B").cast("Q")
        if cview.shape[0] < BLOCK_WORDS:
            raise ValueError("counters needs room for %d uint64" % BLOCK_WORDS)
        ctr = &cview[0]
    t0 = time.perf_counter()
    ctr[W_STATE] = 1                     # running
    while not stop_requested():
        if dl and monotonic_ms() >= dl:
            break
        with nogil:
            rc = poll_bridge(a, b, wait_ms)
        if rc < 0:
            which = -rc
            if pair_interrupted(a, b, which) >= 0:
                rc = 0
                continue
            break
        _move_py(a, b, fn_ab, swap, ctr + DIR0)
        _move_py(b, a, fn_ba, swap, ctr + DIR1)
        with nogil:
            if txsync_all(b) < 0:
                rc = -1
                which = 2
            elif txsync_all(a) < 0:
                rc = -1
                which = 1
        if rc < 0:
            break
        ctr[W_HEARTBEAT] = monotonic_ms() * 1000000
    ctr[W_STATE] = 2
    if rc < 0:
        (a if which == 1 else b).raise_error()
    return dict(a_to_b_packets=ctr[DIR0 + FWD], a_to_b_bytes=ctr[DIR0 + FWD_BYTES],
                a_to_b_dropped=ctr[DIR0 + DROP], b_to_a_packets=ctr[DIR1 + FWD],
                b_to_a_bytes=ctr[DIR1 + FWD_BYTES], b_to_a_dropped=ctr[DIR1 + DROP],
                seconds=time.perf_counter() - t0)


def forward_py(Port src, Port dst, fn, counters=None, Port hi=None, double seconds=0,
               int wait_ms=100):
    """One-way forward() with a Python per-packet decision fn(view) -> bool
    (see bridge_py); `hi`, when given, is served before src each round.
    counters: a worker block (counters.pxd: src counts at DIR0, hi at DIR1)."""
    cdef uint64_t local[BLOCK_WORDS]
    cdef uint64_t *ctr = local
    cdef uint64_t[::1] cview
    cdef bint swap = src.mem is dst.mem
    cdef long long dl = _deadline(seconds)
    cdef int rc = 0
    memset_u64(local, BLOCK_WORDS)
    if counters is not None:
        cview = memoryview(counters).cast("B").cast("Q")
        ctr = &cview[0]
    ctr[W_STATE] = 1
    while not stop_requested():
        if dl and monotonic_ms() >= dl:
            break
        if hi is not None:
            with nogil:
                rc = poll_pair(hi, POLLIN, src, POLLIN, wait_ms)
        else:
            with nogil:
                rc = src.c_poll(POLLIN, wait_ms)
        if rc < 0:
            if interrupted(src if hi is None or rc != -1 else hi) >= 0:
                rc = 0
                continue
            (src if hi is None or rc != -1 else hi).raise_error()
        if hi is not None:
            _move_py(hi, dst, fn, swap and hi.mem is dst.mem, ctr + DIR1)
        _move_py(src, dst, fn, swap, ctr + DIR0)
        with nogil:
            rc = dst.c_txsync(0)
        if rc < 0:
            dst.raise_error()
        ctr[W_HEARTBEAT] = monotonic_ms() * 1000000
    ctr[W_STATE] = 2
    return dict(rx=ctr[DIR0 + RX], fwd=ctr[DIR0 + FWD], drop=ctr[DIR0 + DROP])
