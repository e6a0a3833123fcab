# netmapy.core: the netmap ring model every backend presents.
#
# `cimport netmapy.core` (or `from netmapy.core cimport ...`) to walk rings in
# nogil loops.  The structs are the netmap ABI; the sync entry points are C
# methods of Port that run without the GIL on every backend:
#
#     port.c_txsync(i), port.c_rxsync(i)   -> 0, or -1 (error kept in the port)
#     port.c_poll(events, timeout_ms)      -> revents (>= 0), or -1
#
# After a -1, call port.raise_error() with the GIL to raise the exception.

from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy
from netmapy.includes.abi cimport (
    netmap_ring, netmap_slot, netmap_if, NETMAP_BUF, NETMAP_BUF_IDX,
    NETMAP_TXRING, NETMAP_RXRING, nm_ring_next, nm_ring_space, nm_ring_empty,
    nm_ring_advance, nm_ring_dist, nm_ring_size, NS_BUF_CHANGED, NS_FORWARD,
    NS_MOREFRAG, NR_FORWARD, NR_TX, NR_RX)
from netmapy.includes.system cimport POLLIN, POLLOUT, EINTR, pollfd
from netmapy.stop cimport stop_requested, on_eintr


cdef struct nm_kring:
    # the backend's view of a ring (netmap's kring): what it last accepted
    uint32_t hwcur      # the head at the last sync
    uint32_t hwtail     # the tail the backend published
    uint32_t nexports   # live buffer views on slots of this ring
    uint16_t *exports   # per-slot view counts (allocated on first view)


cdef class Memory:
    """A buffer pool: buffers of buf_size bytes addressed by index."""
    cdef readonly int memid
    cdef readonly str kind
    cdef char *bufs             # address of buffer 0
    cdef readonly uint32_t buf_size
    cdef uint32_t lo, hi        # valid buf_idx in [lo, hi)
    cdef uint32_t *stack        # free buffer indices
    cdef uint32_t *top          # entries on the stack
    cdef uint32_t *fresh        # next never-used index (lazy allocation)
    cdef uint32_t _top, _fresh
    cdef void *region
    cdef size_t region_size
    cdef readonly int owner_pid
    cdef object __weakref__

    cdef int alloc_bufs(self, uint32_t *out, uint32_t n) except -1
    cdef void free_bufs(self, const uint32_t *idx, uint32_t n) noexcept
    cdef netmap_ring *new_ring(self, uint32_t num_slots, uint16_t ringid,
                               uint16_t direction) except NULL
    cdef void free_ring(self, netmap_ring *r) noexcept


cdef class Batch


cdef class Port:
    cdef readonly object name       # the parsed PortName
    cdef readonly str backend       # which backend serves this port
    cdef readonly Memory mem
    cdef readonly uint32_t nic_tx, nic_rx, host_tx, host_rx
    cdef uint32_t ntx, nrx          # rings, NIC then host
    cdef netmap_ring **txr
    cdef netmap_ring **rxr
    cdef nm_kring *txk
    cdef nm_kring *rxk
    cdef netmap_if *nifp
    cdef int fd                     # what fileno() returns
    cdef readonly bint closed
    cdef int err                    # errno of the last failure
    cdef int err_kind               # 0 OSError, 1 BufferError, 2 RingStateError
    cdef char errmsg[240]
    cdef uint32_t rr                # next RX ring for recv()
    cdef int batch_ring             # RX ring of the batch handed out, or -1
    cdef uint32_t batch_end
    cdef readonly bint eof          # the source has no more packets (pcap)
    # frames handed to a TX sync that the backend could not send (counted,
    # released; never counted as sent): a loop that counted them as
    # forwarded moves the difference across a sync to its failed counter
    cdef readonly uint64_t tx_failed, tx_failed_bytes
    cdef object _undo               # [(what, callable)] run in reverse on close
    cdef object _rings              # cached Ring objects
    cdef object __weakref__

    # -- what a backend implements (called with head/cur validated) --
    cdef int b_txsync(self, uint32_t i) noexcept nogil
    cdef int b_rxsync(self, uint32_t i) noexcept nogil
    cdef int b_wait(self, int events, int timeout_ms) noexcept nogil
    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil
    cdef void b_woke(self) noexcept nogil
    cdef uint64_t b_rx_drops(self) noexcept nogil

    # -- the C API --
    cdef int c_txsync(self, uint32_t i) noexcept nogil
    cdef int c_rxsync(self, uint32_t i) noexcept nogil
    cdef int c_poll(self, int events, int timeout_ms) noexcept nogil
    cdef int fail(self, int err, const char *msg) noexcept nogil
    cdef int check_ring(self, netmap_ring *r, nm_kring *k, bint is_tx) noexcept nogil
    cdef int ring_init_port(self, uint32_t ntx, uint32_t nrx,
                            uint32_t host_tx, uint32_t host_rx) except -1
    cdef int alloc_rings(self, uint32_t tx_slots, uint32_t rx_slots) except -1
    cpdef raise_error(self)
    cdef int py_poll(self, int events, int timeout_ms) except -1
    cdef uint32_t move_to(self, Port dst, uint32_t limit) noexcept nogil
    cdef int push_undo(self, str what, object fn) except -1
    cdef _end_batch(self)
    cdef _send_batch(self, Batch b, timeout)
    cdef _send_buffers(self, packets, timeout)
    cdef _free_arrays(self)


cdef class Batch:
    cdef readonly Port port
    cdef readonly int ring
    cdef uint32_t start
    cdef uint32_t n
    @staticmethod
    cdef Batch _make(Port port, int ring, uint32_t start, uint32_t n)
    cdef netmap_ring *_r(self) except NULL


cdef inline char *slot_buf(netmap_ring *r, uint32_t i) noexcept nogil:
    return NETMAP_BUF(r, r.slot[i].buf_idx)


cdef inline void slot_move(netmap_ring *rx, netmap_slot *rs, netmap_ring *tx,
                           netmap_slot *ts, bint swap) noexcept nogil:
    # one packet rx slot -> tx slot: swap the buffer indices (the rings
    # share memory) or copy (the caller has checked rs.len fits tx's
    # buffers); NS_MOREFRAG travels with the packet
    cdef uint32_t idx
    if swap:
        idx = ts.buf_idx
        ts.buf_idx = rs.buf_idx
        rs.buf_idx = idx
        rs.flags = rs.flags | NS_BUF_CHANGED
        ts.flags = NS_BUF_CHANGED | (rs.flags & NS_MOREFRAG)
    else:
        memcpy(NETMAP_BUF(tx, ts.buf_idx), NETMAP_BUF(rx, rs.buf_idx), rs.len)
        ts.flags = rs.flags & NS_MOREFRAG
    ts.len = rs.len


cdef inline bint clear_eintr(Port p) noexcept nogil:
    # After a -1 from p: True (and the error cleared) when a signal
    # interrupted the wait; the loop goes on and sees a stop request.
    if p.err != EINTR:
        return False
    p.err = 0
    return True


cdef inline int interrupted(Port p) except -2 nogil:
    # After a -1 from p: was it a signal?  1: yes, and a stop is requested
    # (end the loop); 0: yes, go on (the wait is retried); -1: a real error,
    # kept in p for raise_error().  Lets Python's handlers run on EINTR
    # (netmapy.stop.on_eintr), so Ctrl-C still interrupts a loop in a program
    # that installed no handlers of its own.
    if not clear_eintr(p):
        return -1
    return on_eintr()


cdef inline int pair_interrupted(Port a, Port b, int which) except -2 nogil:
    # interrupted() for the port that failed in poll_pair() (which = -rc:
    # 1 for a, 2 for b)
    if which == 1:
        return interrupted(a)
    return interrupted(b)


cdef int poll_pair(Port a, int ev_a, Port b, int ev_b, int timeout_ms) noexcept nogil


cdef inline uint32_t rx_pending(Port p) noexcept nogil:
    # packets waiting in p's NIC RX rings (a two-way loop leaves them there
    # while the other side's TX ring is full)
    cdef uint32_t i, n = 0
    for i in range(p.nic_rx):
        n += nm_ring_space(p.rxr[i])
    return n


cdef inline int txsync_all(Port p) noexcept nogil:
    # publish every NIC TX ring of p: 0, or -1 (the error kept in p)
    cdef uint32_t i
    for i in range(p.nic_tx):
        if p.c_txsync(i) < 0:
            return -1
    return 0


cdef inline int poll_bridge(Port a, Port b, int timeout_ms) noexcept nogil:
    # poll_pair() for a two-way loop: both ports for packets, and each also
    # for room in TX while the other one holds packets it could not move
    cdef int ev_a = POLLIN, ev_b = POLLIN
    if rx_pending(a):
        ev_b |= POLLOUT
    if rx_pending(b):
        ev_a |= POLLOUT
    return poll_pair(a, ev_a, b, ev_b, timeout_ms)


cdef uint32_t ring_move(netmap_ring *rx, netmap_ring *tx, uint32_t limit,
                        bint swap, uint64_t *too_big=*) noexcept nogil
