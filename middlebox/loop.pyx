# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The workers' nogil loops: filter and forward between two ports (bridge),
or filter one RX queue into a reinjection ring (offload).  Counters go to a
caller-provided uint64 block (shared memory the supervisor samples), in the
layout declared in middlebox/counters.pxd.

The loops end on the process-wide stop request (netmapy.stop: a worker
installs its C signal handlers with ``netmapy.stop.install_handlers()``),
so a worker stops within one poll timeout even while it never returns to
Python -- at once when the signal interrupts its poll(); the loops then
move what their RX rings still hold and flush TX before returning ("drain").
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from netmapy.includes.system cimport (POLLIN, POLLOUT, EINTR, clock_gettime, timespec,
                                      CLOCK_MONOTONIC, monotonic_ms)
from netmapy.includes.abi cimport netmap_ring, nm_ring_space
from netmapy.core cimport Port, poll_pair, poll_bridge, txsync_all, ring_move, pair_interrupted
from netmapy.stop cimport stop_requested
from middlebox.filter cimport Filter, filter_move
from middlebox.counters cimport *
from middlebox.kfilter cimport KernelRules
from middlebox.swap cimport FilterSwap
from cpython.exc cimport PyErr_CheckSignals

import time

from netmapy.stop import request as stop, reset, requested as stopping
from netmapy.stop import install_handlers as install_signal_handlers

cdef inline uint64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef uint32_t _direction(Port src, Port dst, Filter f, uint64_t *c, uint64_t now,
                         netmap_ring *sample, uint64_t *sampled, uint64_t smax,
                         bint swap) noexcept nogil:
    """Filter src's RX rings into dst's TX rings (its host TX rings when it
    has no NIC ring: NIC <-> host bridging); counts into c[RX..]."""
    cdef uint32_t i, t, n, total = 0
    cdef uint32_t ntx = dst.nic_tx if dst.nic_tx else dst.host_tx
    if ntx == 0:
        return 0
    for i in range(src.nic_rx):
        t = i % ntx
        n = filter_move(f, src.rxr[i], dst.txr[t], swap, now, c, sample, sampled, smax)
        total += n
    return total


cdef enum:
    KDROPS_NS = 100000000   # the ports' kernel drop counters read every 100 ms


cdef inline void _kdrops(Port p, uint64_t *slot, uint64_t base) noexcept nogil:
    """What the kernel dropped before p's RX rings (a restarted worker adds
    to what the block already held: base)."""
    slot[0] = base + p.b_rx_drops()


cdef inline int _sync_counted(Port p, uint32_t ring, uint64_t *c, uint64_t *failed) noexcept nogil:
    """TX sync of one ring; frames the backend could not send (counted as
    forwarded when they were moved) move from fwd to failed."""
    cdef uint64_t n0 = p.tx_failed, b0 = p.tx_failed_bytes, d
    cdef int rc = p.c_txsync(ring)
    d = p.tx_failed - n0
    if d:
        c[FWD] -= d
        c[FWD + 1] -= p.tx_failed_bytes - b0
        failed[0] += d
    return rc


cdef inline int _sync_tx(Port p, uint64_t *c, uint64_t *failed) noexcept nogil:
    cdef uint32_t i
    for i in range(p.ntx):
        if _sync_counted(p, i, c, failed) < 0:
            return -1
    return 0


def bridge(Port a, Port b, Filter f_ab, Filter f_ba, counters, Port sample_a=None,
           Port sample_b=None, int wait_ms=100, double seconds=0, uint64_t sample_max=0,
           FilterSwap fswap=None):
    """Forward a<->b through the filters until stop() or a signal.  Packets
    wait in RX while the other side's TX is full (the loop sleeps on that TX
    ring).  Returns when stopped, after a last pass that forwards what the
    RX rings hold and a TX flush.  `fswap`: the filters, replaceable while
    the loop runs (middlebox.swap; f_ab and f_ba are then ignored)."""
    cdef uint64_t[::1] cv = memoryview(counters).cast("B").cast("Q")
    cdef uint64_t *c = &cv[0]
    cdef bint swap = a.mem is b.mem
    cdef netmap_ring *sa = sample_a.txr[0] if sample_a is not None else NULL
    cdef netmap_ring *sb = sample_b.txr[0] if sample_b is not None else NULL
    cdef int rc = 0, which = 0, last = 0
    cdef uint64_t now, deadline = 0, unsampled = 0, kread = 0
    cdef uint64_t kbase_a = cv[W_KDROPS], kbase_b = cv[W_KDROPS + 1]
    # hot reload: the filters are read through sw at every batch boundary
    cdef FilterSwap sw = fswap if fswap is not None else FilterSwap([f_ab, f_ba])
    if cv.shape[0] < BLOCK_WORDS:
        raise ValueError("the counter block needs %d uint64" % BLOCK_WORDS)
    if sw.nfilters != 2:
        raise ValueError("the bridge needs a FilterSwap of two directions")
    if seconds > 0:
        deadline = _now_ns() + <uint64_t>(seconds * 1e9)
    c[W_STATE] = 1
    sw.start()
    try:
      with nogil:
        while True:
            if stop_requested() or (deadline and _now_ns() >= deadline):
                last = 1
            rc = poll_bridge(a, b, 0 if last else wait_ms)
            if rc < 0:
                which = -rc
                if pair_interrupted(a, b, which) >= 0:
                    rc = 0
                    continue                  # the top sees a stop request
                break
            now = _now_ns()
            sw.boundary(c + DIR0, now, last, &unsampled, 0)     # reload swap point
            _direction(a, b, <Filter>sw.filt[0], c + DIR0, now, sa, c + W_SAMPLED, sample_max,
                       swap)
            _direction(b, a, <Filter>sw.filt[1], c + DIR1, now, sb, c + W_SAMPLED, sample_max,
                       swap)
            if _sync_tx(b, c + DIR0, c + W_FAILED) < 0:
                rc = -1
                which = 2
                break
            if _sync_tx(a, c + DIR1, c + W_FAILED + 1) < 0:
                rc = -1
                which = 1
                break
            if sa != NULL:
                sample_a.c_txsync(0)
            if sb != NULL:
                sample_b.c_txsync(0)
            if last or now >= kread:
                _kdrops(a, c + W_KDROPS, kbase_a)
                _kdrops(b, c + W_KDROPS + 1, kbase_b)
                kread = now + KDROPS_NS
            c[W_HEARTBEAT] = now
            if last:
                break
    finally:
        sw.stop()
    c[W_STATE] = 2
    if rc < 0:
        (a if which == 1 else b).raise_error()
    return dict(a_to_b=[cv[DIR0 + k] for k in range(8)], b_to_a=[cv[DIR1 + k] for k in range(8)])


def offload(Port src, uint32_t ring, Port dst, uint32_t dst_ring, Filter f, counters,
            Port sample=None, int wait_ms=100, double seconds=0, uint64_t sample_max=0,
            KernelRules kernel=None, FilterSwap fswap=None):
    """Filter what src's RX ring `ring` receives into dst's TX ring
    `dst_ring` (for nm-offload: the host TX ring, i.e. reinjection into the
    kernel); what the filter drops is released.  Same stop/drain rules as
    bridge().  `kernel`: the queue's in-kernel rule program, whose counters
    are folded into ours every FOLD_NS (and whose dropped packets come to
    user space while drops are sampled).  `fswap`: the filter and kernel
    program, replaceable while the loop runs (middlebox.swap; f and kernel
    are then ignored)."""
    cdef uint64_t[::1] cv = memoryview(counters).cast("B").cast("Q")
    cdef uint64_t *c = &cv[0] + DIR0
    cdef bint swap = src.mem is dst.mem
    cdef netmap_ring *s = sample.txr[0] if sample is not None else NULL
    cdef netmap_ring *rx = src.rxr[ring]
    cdef netmap_ring *tx = dst.txr[dst_ring]
    cdef int rc = 0, which = 0, last = 0
    cdef uint32_t n
    cdef uint64_t now, deadline = 0, kread = 0, kbase = cv[W_KDROPS]
    # hot reload: the filter and the kernel's rule program are read through
    # sw at every batch boundary, which also folds the program's counters
    cdef FilterSwap sw = fswap if fswap is not None else FilterSwap([f], kernel)
    if seconds > 0:
        deadline = _now_ns() + <uint64_t>(seconds * 1e9)
    cv[W_STATE] = 1
    sw.start()
    try:
      with nogil:
        while True:
            if stop_requested() or (deadline and _now_ns() >= deadline):
                last = 1
            if nm_ring_space(rx) and not nm_ring_space(tx):
                rc = poll_pair(src, 0, dst, POLLOUT, 0 if last else wait_ms)
            else:
                rc = poll_pair(src, POLLIN, dst, 0, 0 if last else wait_ms)
            if rc < 0:
                which = -rc
                if pair_interrupted(src, dst, which) >= 0:
                    rc = 0
                    continue                  # the top sees a stop request
                break
            now = _now_ns()
            sw.boundary(c, now, last, &cv[W_SAMPLED], sample_max)     # reload swap point
            n = filter_move(<Filter>sw.filt[0], rx, tx, swap, now, c, s, &cv[W_SAMPLED],
                            sample_max)
            if _sync_counted(dst, dst_ring, c, &cv[W_FAILED]) < 0:
                rc = -1
                which = 2
                break
            if s != NULL:
                sample.c_txsync(0)
            if last or now >= kread:
                _kdrops(src, &cv[W_KDROPS], kbase)
                kread = now + KDROPS_NS
            cv[W_HEARTBEAT] = now
            if last:
                break
    finally:
        sw.stop()
    cv[W_STATE] = 2
    if rc < 0:
        (src if which == 1 else dst).raise_error()
    return dict(rx=c[RX], fwd=c[FWD], drop=c[DROP], failed=cv[W_FAILED])


from netmapy.includes.system cimport pollfd, poll as c_poll_fds, errno as c_errno


cdef int _wait_ports(list ports, list events, int timeout_ms) except -2:
    """poll() over several ports' file descriptors (their own wakeup fds);
    after a wakeup each port drains its doorbell.  0 on wakeup/timeout."""
    cdef pollfd fds[64]
    cdef int n = 0, k, rc
    cdef Port p
    for k in range(len(ports)):
        p = <Port>ports[k]
        if n + 2 > 64:
            break
        if events[k]:
            n += max(0, p.b_pollfds(events[k], &fds[n]))
    if n == 0:
        return 0
    with nogil:
        rc = c_poll_fds(fds, n, timeout_ms)
    if rc < 0:
        if c_errno != EINTR:
            raise OSError(c_errno, "poll")
        PyErr_CheckSignals()          # Python handlers; the loop sees a stop request
    for k in range(len(ports)):
        (<Port>ports[k]).b_woke()
    return 0


def stage(Port lo, Port out, Filter f, counters, Port hi=None, uint32_t budget=64,
          int wait_ms=100, double seconds=0):
    """A pipeline's work stage: packets from `hi` (the priority pipe) are
    always taken first, then at most `budget` from `lo` before looking at
    `hi` again; what the filter passes goes to `out`, zero copy when the
    pipes share memory.  Stops on stop()/signal after a last pass."""
    cdef uint64_t[::1] cv = memoryview(counters).cast("B").cast("Q")
    cdef uint64_t *c = &cv[0] + DIR0
    cdef uint64_t *ch = &cv[0] + DIR1
    cdef netmap_ring *lrx = lo.rxr[0]
    cdef netmap_ring *hrx = hi.rxr[0] if hi is not None else NULL
    cdef netmap_ring *tx = out.txr[0]
    cdef bint swap_l = lo.mem is out.mem
    cdef bint swap_h = hi is not None and hi.mem is out.mem
    cdef uint64_t now, deadline = 0, unused = 0
    cdef uint32_t n, saved_tail, room
    cdef int last = 0, rc, busy
    if seconds > 0:
        deadline = _now_ns() + <uint64_t>(seconds * 1e9)
    cdef uint64_t drain_end = 0
    cv[W_STATE] = 1
    ports = [lo, out] + ([hi] if hi is not None else [])
    while True:
        if not last and (stop_requested() or (deadline and _now_ns() >= deadline)):
            last = 1
            drain_end = _now_ns() + 1000000000ULL     # at most 1 s to drain
        if last and _now_ns() >= drain_end:
            break
        with nogil:
            rc = 0
            if hi is not None and hi.c_rxsync(0) < 0:
                rc = -1
            if rc == 0 and lo.c_rxsync(0) < 0:
                rc = -2
            if rc == 0 and out.c_txsync(0) < 0:
                rc = -3
            busy = 0
            if rc == 0:
                now = _now_ns()
                if hrx != NULL and nm_ring_space(hrx):
                    n = filter_move(f, hrx, tx, swap_h, now, ch, NULL, &unused, 0)
                    busy = 1
                if (hrx == NULL or not nm_ring_space(hrx)) and nm_ring_space(lrx):
                    # at most `budget` bulk packets before the priority ring again
                    saved_tail = lrx.tail
                    if nm_ring_space(lrx) > budget:
                        lrx.tail = (lrx.head + budget) % lrx.num_slots
                    n = filter_move(f, lrx, tx, swap_l, now, c, NULL, &unused, 0)
                    lrx.tail = saved_tail
                    busy = 1
                if out.c_txsync(0) < 0:
                    rc = -3
                cv[W_HEARTBEAT] = now
        if rc < 0:
            (hi if rc == -1 else lo if rc == -2 else out).raise_error()
        if last and not busy:
            break
        if not busy or not nm_ring_space(tx):
            evs = [POLLIN, POLLOUT if not nm_ring_space(tx) else 0] + ([POLLIN] if hi is not None else [])
            _wait_ports(ports, evs, 0 if last else wait_ms)
    cv[W_STATE] = 2
    return dict(rx=c[RX], fwd=c[FWD], drop=c[DROP], prio_rx=ch[RX])


def merge(list ins, Port out, counters, int wait_ms=100, double seconds=0):
    """A pipeline's TX stage: every input pipe into `out`'s TX rings,
    round robin, without loss (inputs wait while out is full)."""
    cdef uint64_t[::1] cv = memoryview(counters).cast("B").cast("Q")
    cdef uint64_t *c = &cv[0] + DIR0
    cdef Port p
    cdef uint32_t n, i, t = 0
    cdef int last = 0, busy
    cdef uint64_t deadline = 0
    cdef netmap_ring *rx
    if seconds > 0:
        deadline = _now_ns() + <uint64_t>(seconds * 1e9)
    cdef uint64_t drain_end = 0
    cv[W_STATE] = 1
    while True:
        if not last and (stop_requested() or (deadline and _now_ns() >= deadline)):
            last = 1
            drain_end = _now_ns() + 1000000000ULL     # at most 1 s to drain
        if last and _now_ns() >= drain_end:
            break
        busy = 0
        for p in ins:
            if p.c_rxsync(0) < 0:
                p.raise_error()
            rx = p.rxr[0]
            if nm_ring_space(rx):
                busy = 1
                for i in range(out.nic_tx):
                    n = ring_move_counted(rx, out.txr[(t + i) % out.nic_tx], p.mem is out.mem, c)
                    if not nm_ring_space(rx):
                        break
                t += 1
        if txsync_all(out) < 0:
            out.raise_error()
        cv[W_HEARTBEAT] = _now_ns()
        if last and not busy:
            break
        if not busy or not nm_ring_space(out.txr[0]):
            _wait_ports(list(ins) + [out], [POLLIN] * len(ins) + [POLLOUT if busy else 0],
                        0 if last else wait_ms)
    cv[W_STATE] = 2
    return dict(rx=c[RX], fwd=c[FWD], errors=c[ERRORS])


cdef uint32_t ring_move_counted(netmap_ring *rx, netmap_ring *tx, bint swap, uint64_t *c) noexcept nogil:
    """rx -> tx as ring_move() (swap or copy), counting rx/fwd/errors and
    their bytes into c (RX ..): a packet larger than tx's buffers (when
    copying) is released and counted as an error, never truncated."""
    cdef uint32_t n, j, k = 0, i = rx.head
    cdef uint64_t nbytes = 0, rbytes = 0
    n = nm_ring_space(rx)
    if n > nm_ring_space(tx):
        n = nm_ring_space(tx)
    if not swap:
        # stop before the first packet that does not fit: ring_move() moves a prefix
        while k < n and rx.slot[i].len <= tx.nr_buf_size:
            nbytes += rx.slot[i].len
            i = i + 1 if i + 1 < rx.num_slots else 0
            k += 1
        if k == 0 and n:
            # the packet at head does not fit: release it
            c[RX] += 1
            c[RX_BYTES] += rx.slot[i].len
            c[ERRORS] += 1
            rx.head = rx.cur = i + 1 if i + 1 < rx.num_slots else 0
            return 1
        n = k
    else:
        for j in range(n):
            nbytes += rx.slot[i].len
            i = i + 1 if i + 1 < rx.num_slots else 0
    n = ring_move(rx, tx, n, swap)
    c[RX] += n
    c[RX_BYTES] += nbytes
    c[FWD] += n
    c[FWD_BYTES] += nbytes
    return n
