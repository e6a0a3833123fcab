# cython: language_level=3, boundscheck=False, wraparound=False
"""A nogil forwarding loop written against netmapy's C API.

The same loop runs on every backend: it only uses the netmap ring ABI
(netmap_ring, netmap_slot, head/cur/tail) and the Port's C sync methods.
Buffers are swapped (zero copy) when the two ports share memory and copied
otherwise.

Build it like any Cython module (netmapy's headers are found by
``netmapy.get_include()``)::

    CFLAGS=-I$(python -c 'import netmapy; print(netmapy.get_include())') cythonize -i nogil_forward.pyx
"""

from libc.stdint cimport uint32_t
from libc.string cimport memcpy
from netmapy.core cimport (Port, netmap_ring, netmap_slot, NETMAP_BUF,
                           nm_ring_space, nm_ring_next, NS_BUF_CHANGED,
                           POLLIN)


def forward(Port src, Port dst, long count, int timeout_ms=1000):
    """Move `count` packets from src's first RX ring to dst's first TX ring.

    Returns the number forwarded (less than count if src stayed idle for
    timeout_ms).
    """
    cdef netmap_ring *rx = src.rxr[0]
    cdef netmap_ring *tx = dst.txr[0]
    cdef bint swap = src.mem is dst.mem
    cdef long done = 0
    cdef uint32_t n, m, i, j, k, idx
    cdef netmap_slot *rs
    cdef netmap_slot *ts
    cdef int rc = 0, err_port = 0
    with nogil:
        while done < count:
            rc = src.c_poll(POLLIN, timeout_ms)
            if rc <= 0:
                err_port = 1
                break
            n = nm_ring_space(rx)
            m = nm_ring_space(tx)
            if m == 0:
                # wait for room on dst
                if dst.c_txsync(0) < 0:
                    rc = -1
                    err_port = 2
                    break
                continue
            if n > m:
                n = m
            if n > count - done:
                n = <uint32_t>(count - done)
            i = rx.head
            j = tx.head
            for k in range(n):
                rs = &rx.slot[i]
                ts = &tx.slot[j]
                if swap:
                    idx = ts.buf_idx
                    ts.buf_idx = rs.buf_idx
                    rs.buf_idx = idx
                    ts.flags = NS_BUF_CHANGED
                    rs.flags = NS_BUF_CHANGED
                else:
                    memcpy(NETMAP_BUF(tx, ts.buf_idx), NETMAP_BUF(rx, rs.buf_idx), rs.len)
                ts.len = rs.len
                i = nm_ring_next(rx, i)
                j = nm_ring_next(tx, j)
            rx.head = rx.cur = i
            tx.head = tx.cur = j
            done += n
            if dst.c_txsync(0) < 0:
                rc = -1
                err_port = 2
                break
    if rc < 0:
        (src if err_port == 1 else dst).raise_error()
    # hand over anything still pending
    dst.txsync()
    src.rxsync()
    return done


def checksum(Port src, long count, int timeout_ms=1000):
    """Read `count` packets in a nogil loop; return (packets, bytes, sum of
    all bytes) -- touches every byte, as a filter would."""
    cdef netmap_ring *rx = src.rxr[0]
    cdef long done = 0, nbytes = 0
    cdef unsigned long total = 0
    cdef unsigned char *p
    cdef uint32_t i, b
    cdef int rc = 0
    with nogil:
        while done < count:
            rc = src.c_poll(POLLIN, timeout_ms)
            if rc <= 0:
                break
            i = rx.head
            while i != rx.tail and done < count:
                p = <unsigned char *>NETMAP_BUF(rx, rx.slot[i].buf_idx)
                for b in range(rx.slot[i].len):
                    total += p[b]
                nbytes += rx.slot[i].len
                done += 1
                i = nm_ring_next(rx, i)
            rx.head = rx.cur = i
    if rc < 0:
        src.raise_error()
    return done, nbytes, total
