from libc.stdint cimport uint32_t, uint64_t
from netmapy.core cimport Port
from netmapy.includes.abi cimport netmap_ring
from netmapy.includes.mmsg cimport nm_mmsg_tx

cdef extern from "nm_packet.h" nogil:
    struct pk_rx:
        char *map
        uint32_t block_size, block_nr, cur
        char *next
        uint32_t left
        uint64_t truncated, packets, bytes

    struct pk_tx:
        char *map
        uint32_t frame_size, frame_nr
        uint32_t fill, reclaim, inflight, next_tx
        uint64_t bad_format, packets, bytes, kicks

    uint32_t pk_rx_fill(pk_rx *s, netmap_ring *r)
    int pk_rx_ready(pk_rx *s)
    void pk_tx_reclaim(pk_tx *s)
    int pk_tx_flush(pk_tx *s, netmap_ring *r, int fd)


cdef class PacketPort(Port):
    cdef pk_rx rx
    cdef pk_tx tx
    cdef nm_mmsg_tx mtx             # tx_mode="copy": sendmmsg instead of the TX ring
    cdef bint tx_copy
    cdef int rxfd, txfd
    cdef size_t rx_map_size, tx_map_size
    cdef object rxsock, txsock
    cdef readonly str ifname
    cdef readonly int queue
    cdef uint64_t kernel_drops, kernel_packets
    cdef void _read_stats(self) noexcept nogil
