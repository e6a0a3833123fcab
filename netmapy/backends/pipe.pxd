from libc.stdint cimport uint32_t, uint64_t, int32_t
from netmapy.core cimport Memory, Port
from netmapy.includes.abi cimport netmap_ring

cdef extern from "nm_pipe.h" nogil:
    struct nmp_link:
        uint32_t prod_head
        uint32_t prod_hwcur
        uint32_t cons_waiting
        uint32_t prod_waiting
        uint64_t moved

    struct nmp_end:
        int32_t pid
        uint32_t opens
        uint64_t starttime
        uint64_t ring_off[2]

    struct nmp_pipe:
        int32_t in_use
        uint32_t id
        nmp_end end[2]
        nmp_link link[2]

    struct nmp_domain:
        uint64_t magic
        uint32_t version
        uint32_t ready
        uint64_t size
        uint32_t num_slots
        uint32_t buf_size
        uint32_t nbufs
        uint32_t max_pipes
        uint64_t pipes_off, stack_off, rings_off, bufs_off
        uint32_t free_top
        uint32_t next_fresh
        uint32_t pipes_in_use
        uint64_t created

    enum:
        NMP_MAGIC
        NMP_VERSION

    nmp_pipe *nmp_pipe_at(nmp_domain *d, uint32_t i)
    uint64_t nmp_ring_off(nmp_domain *d, uint32_t pipe, int end, int dir)
    void nmp_drain(int fd)
    int nmp_txsync(nmp_link *L, netmap_ring *tx, uint32_t *hwcur,
                   uint32_t max_idx, int peer_bell, uint32_t *bad)
    uint32_t __atomic_load_n(uint32_t *p, int order)
    enum:
        __ATOMIC_ACQUIRE
    uint32_t nmp_rxsync(nmp_link *L, netmap_ring *ptx, netmap_ring *rx,
                        int peer_bell)


cdef class Domain(Memory):
    cdef nmp_domain *d
    cdef readonly str path
    cdef readonly str parent
    cdef int dfd
    cdef readonly uint64_t inode
    cdef netmap_ring *ring(self, uint32_t slot, int end, int direction)


cdef class PipePort(Port):
    cdef Domain dom
    cdef uint32_t pipe_slot
    cdef int end
    cdef nmp_link *tx_link      # we produce
    cdef nmp_link *rx_link      # we consume
    cdef netmap_ring *peer_tx
    cdef int bell_own
    cdef int bell_peer
    cdef int spin_us
    cdef readonly uint64_t sleeps
