# C declarations of the netmap user ABI (see nm_abi.h).
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from posix.time cimport timeval

cdef extern from "nm_abi.h" nogil:
    enum:
        NM_API_VERSION
        NM_CACHE_ALIGN
        NS_BUF_CHANGED
        NS_REPORT
        NS_FORWARD
        NS_NO_LEARN
        NS_INDIRECT
        NS_MOREFRAG
        NS_TXMON
        NR_TIMESTAMP
        NR_FORWARD
        NR_TX
        NR_RX

    struct netmap_slot:
        uint32_t buf_idx
        uint16_t len
        uint16_t flags
        uint64_t ptr

    struct netmap_ring:
        int64_t buf_ofs
        uint32_t num_slots
        uint32_t nr_buf_size
        uint16_t ringid
        uint16_t dir
        uint32_t head
        uint32_t cur
        uint32_t tail
        uint32_t flags
        timeval ts
        uint64_t offset_mask
        uint64_t buf_align
        netmap_slot slot[1]

    struct netmap_if:
        char ni_name[16]
        uint32_t ni_version
        uint32_t ni_flags
        uint32_t ni_tx_rings
        uint32_t ni_rx_rings
        uint32_t ni_bufs_head
        uint32_t ni_host_tx_rings
        uint32_t ni_host_rx_rings
        ssize_t ring_ofs[1]

    char *NETMAP_BUF(netmap_ring *r, uint32_t idx)
    uint32_t NETMAP_BUF_IDX(netmap_ring *r, const char *buf)
    netmap_ring *NETMAP_TXRING(netmap_if *nifp, uint32_t i)
    netmap_ring *NETMAP_RXRING(netmap_if *nifp, uint32_t i)
    uint32_t nm_ring_next(netmap_ring *r, uint32_t i)
    uint32_t nm_ring_space(netmap_ring *r)
    bint nm_ring_empty(netmap_ring *r)
    void nm_ring_advance(netmap_ring *r, uint32_t n)
    uint32_t nm_ring_dist(uint32_t a, uint32_t b, uint32_t n)
    size_t nm_ring_size(uint32_t num_slots)
