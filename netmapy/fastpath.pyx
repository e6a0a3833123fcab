# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Ready-made nogil loops over any backend: transmit, receive, forward.

The tools (pktgen, bench, bridge) and users who just need a loop at C speed
call these; each runs without the GIL until its count, its duration or a
stop request (``stop()`` from a signal handler or another thread) ends it,
and returns what it did as a dict.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from netmapy.includes.system cimport monotonic_ms, POLLIN, POLLOUT, EINTR
from netmapy.core cimport (Port, netmap_ring, netmap_slot, NETMAP_BUF,
                           nm_ring_space, nm_ring_next, NS_BUF_CHANGED,
                           ring_move, poll_pair, poll_bridge, txsync_all, interrupted,
                           pair_interrupted)
from netmapy.stop cimport stop_requested

import time

# the process-wide stop request (netmapy.stop): stop() from a signal handler
# or another thread ends every loop; stopping() is what user loops check
from netmapy.stop import request as stop, reset, requested as stopping


cdef inline long long _deadline(double seconds) noexcept nogil:
    if seconds <= 0:
        return 0
    return monotonic_ms() + <long long>(seconds * 1000)


cdef inline bint _ended(long long count, long long done, long long dl, int idle_ms,
                        long long last, long long *now) noexcept nogil:
    # the end of a loop: count reached, deadline passed, or (idle_ms) that
    # long without a packet since the last one; sets now
    now[0] = monotonic_ms()
    if count and done >= count:
        return True
    if dl and now[0] >= dl:
        return True
    return idle_ms != 0 and done != 0 and now[0] - last >= idle_ms


def transmit(Port port, frame, long long count=0, double seconds=0,
             uint32_t batch=512, int wait_ms=100):
    """Send ``frame`` (bytes-like) ``count`` times (0: until stopped or
    ``seconds`` pass) on every TX ring of port, in batches.

    Returns dict(packets, bytes, seconds)."""
    cdef const uint8_t[::1] f = memoryview(frame).cast("B")
    cdef uint32_t ln = f.shape[0], n, k, r, j
    cdef long long sent = 0, dl = _deadline(seconds), want, now
    cdef netmap_ring *t
    cdef int rc = 0
    cdef double t0
    if port.ntx == 0:
        raise ValueError("%s has no TX ring" % (port.name,))
    if ln > port.txr[0].nr_buf_size:
        raise ValueError("a %d-byte frame does not fit %d-byte buffers" % (ln, port.txr[0].nr_buf_size))
    t0 = time.perf_counter()
    with nogil:
        while not stop_requested():
            if _ended(count, sent, dl, 0, 0, &now):
                break
            for r in range(port.nic_tx):
                t = port.txr[r]
                n = nm_ring_space(t)
                if n > batch:
                    n = batch
                if count and n > count - sent:
                    n = <uint32_t>(count - sent)
                j = t.head
                for k in range(n):
                    memcpy(NETMAP_BUF(t, t.slot[j].buf_idx), &f[0], ln)
                    t.slot[j].len = <uint16_t>ln
                    t.slot[j].flags = 0
                    j = nm_ring_next(t, j)
                t.head = t.cur = j
                sent += n
            rc = port.c_poll(POLLOUT, wait_ms)
            if rc < 0:
                if interrupted(port) < 0:
                    break
                rc = 0
        if rc >= 0:
            # flush what is queued (without waiting for completion)
            rc = port.c_poll(0, 0)
    if rc < 0:
        port.raise_error()
    dt = time.perf_counter() - t0
    return dict(packets=sent, bytes=sent * ln, seconds=dt)


def receive(Port port, long long count=0, double seconds=0, int idle_ms=0,
            int wait_ms=100):
    """Receive and release packets from every RX ring until ``count``
    packets, ``seconds`` elapsed, ``idle_ms`` without traffic (after the
    first packet), a stop request, or the end of a capture.

    Returns dict(packets, bytes, seconds, first_to_last)."""
    cdef long long got = 0, nbytes = 0, dl = _deadline(seconds)
    cdef long long last = 0, now, first = 0
    cdef netmap_ring *r
    cdef uint32_t i, j, n
    cdef int rc = 0
    cdef double t0 = time.perf_counter()
    with nogil:
        while not stop_requested():
            if _ended(count, got, dl, idle_ms, last, &now):
                break
            rc = port.c_poll(POLLIN, wait_ms)
            if rc < 0:
                if interrupted(port) < 0:
                    break
                rc = 0
                continue
            if rc == 0:
                if port.eof:
                    break
                continue
            for i in range(port.nic_rx):
                r = port.rxr[i]
                j = r.head
                n = nm_ring_space(r)
                if count and n > count - got:
                    n = <uint32_t>(count - got)
                while n:
                    nbytes += r.slot[j].len
                    j = nm_ring_next(r, j)
                    n -= 1
                    got += 1
                r.head = r.cur = j
            last = monotonic_ms()
            if first == 0 and got:
                first = last
        if rc >= 0:
            for i in range(port.nic_rx):
                if port.c_rxsync(i) < 0:
                    rc = -1
                    break
    if rc < 0:
        port.raise_error()
    return dict(packets=got, bytes=nbytes, seconds=time.perf_counter() - t0,
                first_to_last=(last - first) / 1000.0 if got else 0.0)


def forward(Port src, Port dst, long long count=0, double seconds=0,
            int idle_ms=0, uint32_t batch=1024, int wait_ms=100):
    """Forward from every RX ring of src to dst's TX rings: buffer swaps
    when the ports share memory, copies otherwise.  Packets dst has no room
    for stay in src's RX ring until there is room (nothing is dropped here).

    Returns dict(packets, bytes, seconds, swapped)."""
    cdef long long moved = 0, dl = _deadline(seconds), last = 0, now
    cdef bint swap = src.mem is dst.mem
    cdef uint32_t i, t, n, m
    cdef int rc = 0, which = 0
    cdef netmap_ring *rx
    cdef netmap_ring *tx
    cdef double t0 = time.perf_counter()
    if dst.nic_tx == 0 or src.nic_rx == 0:
        raise ValueError("forward() needs RX rings on src and TX rings on dst")
    with nogil:
        while not stop_requested():
            if _ended(count, moved, dl, idle_ms, last, &now):
                break
            rc = src.c_poll(POLLIN, wait_ms)
            if rc < 0:
                if interrupted(src) >= 0:
                    rc = 0
                    continue
                which = 1
                break
            if rc == 0:
                if src.eof:
                    break
                continue
            for i in range(src.nic_rx):
                rx = src.rxr[i]
                t = i % dst.nic_tx
                while nm_ring_space(rx):
                    tx = dst.txr[t]
                    m = batch
                    if count and m > count - moved:
                        m = <uint32_t>(count - moved)
                    if m == 0:
                        break
                    n = ring_move(rx, tx, m, swap)
                    moved += n
                    if dst.c_txsync(t) < 0:
                        rc = -1
                        which = 2
                        break
                    if n == 0:
                        # dst full: wait for room, keeping the packets
                        rc = dst.c_poll(POLLOUT, wait_ms)
                        if rc < 0 and interrupted(dst) >= 0:
                            rc = 0
                        if rc < 0:
                            which = 2
                            break
                        if stop_requested() or (dl and monotonic_ms() >= dl):
                            break
                if rc < 0:
                    break
            if rc < 0:
                break
            last = monotonic_ms()
        if rc >= 0:
            rc = dst.c_poll(0, 0)
            if rc < 0:
                which = 2
            elif src.nic_rx:
                for i in range(src.nic_rx):
                    if src.c_rxsync(i) < 0:
                        rc = -1
                        which = 1
                        break
    if rc < 0:
        (src if which == 1 else dst).raise_error()
    return dict(packets=moved, seconds=time.perf_counter() - t0, swapped=bool(swap))


def source_sink(Port tx, Port rx, frame, long long count=0, double seconds=0,
                uint32_t batch=512, int wait_ms=100, bint fill_once=False):
    """Be the traffic source and the sink of a loop in one thread: send
    ``frame`` on tx and count what comes back on rx, until ``count``
    packets came back, ``seconds`` passed, or a stop request.

    ``fill_once``: with zero-copy backends (pipes) buffers circulate, so
    each buffer needs the frame written only the first time it shows up
    in the TX ring (a bitmap remembers which did); the source then costs
    almost nothing and the loop measures what is between.

    Returns dict(sent, received, bytes, seconds)."""
    cdef const uint8_t[::1] f = memoryview(frame).cast("B")
    cdef uint32_t ln = f.shape[0], n, k, j, i, idx
    cdef long long sent = 0, got = 0, dl = _deadline(seconds), now
    cdef netmap_ring *t
    cdef netmap_ring *r
    cdef int rc = 0, which = 0
    cdef double t0
    cdef bytearray seen_obj = bytearray((tx.mem.hi + 7) // 8 if fill_once else 1)
    cdef uint8_t *seen = <uint8_t *>seen_obj
    t0 = time.perf_counter()
    with nogil:
        while not stop_requested():
            if _ended(count, got, dl, 0, 0, &now):
                break
            t = tx.txr[0]
            n = nm_ring_space(t)
            if n > batch:
                n = batch
            if count and n > count - sent:
                n = <uint32_t>(count - sent)
            j = t.head
            for k in range(n):
                idx = t.slot[j].buf_idx
                if not fill_once or not (seen[idx >> 3] & (1 << (idx & 7))):
                    memcpy(NETMAP_BUF(t, idx), &f[0], ln)
                    if fill_once:
                        seen[idx >> 3] |= 1 << (idx & 7)
                t.slot[j].len = <uint16_t>ln
                t.slot[j].flags = 0
                j = nm_ring_next(t, j)
            t.head = t.cur = j
            sent += n
            if tx.c_txsync(0) < 0:
                rc = -1
                which = 1
                break
            # wait (for room or for packets) only when the TX ring was full
            rc = poll_pair(tx, POLLOUT if n == 0 else 0, rx, POLLIN, 0 if n else wait_ms)
            if rc < 0:
                which = -rc
                if pair_interrupted(tx, rx, which) < 0:
                    break
                rc = 0
            for i in range(rx.nic_rx):
                r = rx.rxr[i]
                got += nm_ring_space(r)
                r.head = r.cur = r.tail
    if rc < 0:
        (tx if which == 1 else rx).raise_error()
    return dict(sent=sent, received=got, bytes=got * ln,
                seconds=time.perf_counter() - t0)


cdef inline void memset_u64(uint64_t *p, int n) noexcept nogil:
    cdef int i
    for i in range(n):
        p[i] = 0


cdef inline uint32_t _move_all(Port src, Port dst, bint swap, uint64_t *ctr) noexcept nogil:
    """RX rings of src into TX rings of dst; returns packets moved and adds
    packets/bytes to ctr[0], ctr[1]."""
    cdef uint32_t i, t, n, moved = 0, k, j
    cdef netmap_ring *rx
    cdef netmap_ring *tx
    cdef uint64_t nbytes
    for i in range(src.nic_rx):
        rx = src.rxr[i]
        t = i % dst.nic_tx
        for k in range(dst.nic_tx):
            if not nm_ring_space(rx):
                break
            tx = dst.txr[(t + k) % dst.nic_tx]
            # bytes of what is about to move
            n = nm_ring_space(rx)
            if n > nm_ring_space(tx):
                n = nm_ring_space(tx)
            nbytes = 0
            j = rx.head
            for m in range(n):
                nbytes += rx.slot[j].len
                j = nm_ring_next(rx, j)
            n = ring_move(rx, tx, n, swap)
            moved += n
            ctr[0] += n
            ctr[1] += nbytes
    return moved


def bridge(Port a, Port b, counters=None, double seconds=0, int wait_ms=100,
           long long count=0):
    """Forward both ways between a and b until stop(), ``seconds`` or
    ``count`` packets (both ways together):
    what a receives goes out of b and vice versa, zero copy when the ports
    share memory.  Packets wait in the RX ring while the other side's TX
    ring is full (the loop then sleeps on that TX ring, it never spins).

    ``counters``: a writable buffer of at least 4 uint64 (a->b packets,
    a->b bytes, b->a packets, b->a bytes) updated live (e.g. shared memory
    a supervisor samples).  Returns the final counts as a dict."""
    cdef uint64_t local[4]
    cdef uint64_t *ctr = local
    cdef uint64_t[::1] cview
    cdef bint swap = a.mem is b.mem
    cdef long long dl = _deadline(seconds)
    cdef int rc = 0, which = 0
    cdef uint32_t i
    memset_u64(local, 4)
    if counters is not None:
        cview = memoryview(counters).cast("B").cast("Q")
        if cview.shape[0] < 4:
            raise ValueError("counters needs room for 4 uint64")
        ctr = &cview[0]
    if not (a.nic_rx and a.nic_tx and b.nic_rx and b.nic_tx):
        raise ValueError("bridge() needs RX and TX rings on both ports")
    t0 = time.perf_counter()
    with nogil:
        while not stop_requested():
            if dl and monotonic_ms() >= dl:
                break
            if count and <long long>(ctr[0] + ctr[2]) >= count:
                break
            # wait for packets, or for room where packets are stuck
            rc = poll_bridge(a, b, wait_ms)
            if rc < 0:
                which = -rc
                if pair_interrupted(a, b, which) < 0:
                    break
                rc = 0
                continue
            _move_all(a, b, swap, ctr)
            _move_all(b, a, swap, ctr + 2)
            if txsync_all(b) < 0:
                rc = -1
                which = 2
                break
            if txsync_all(a) < 0:
                rc = -1
                which = 1
                break
    if rc < 0:
        (a if which == 1 else b).raise_error()
    return dict(a_to_b_packets=ctr[0], a_to_b_bytes=ctr[1], b_to_a_packets=ctr[2],
                b_to_a_bytes=ctr[3], seconds=time.perf_counter() - t0, swapped=bool(swap))
