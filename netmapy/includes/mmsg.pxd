# nm_mmsg.h: a TX ring served by sendmmsg() (packet backend tx_mode="copy",
# host-stack injection).
from libc.stdint cimport uint32_t, uint64_t
from netmapy.includes.abi cimport netmap_ring

cdef extern from "nm_mmsg.h" nogil:
    struct nm_mmsg_tx:
        int fd
        uint32_t next_tx
        uint64_t packets, bytes, failed, failed_bytes, bad, again
        int last_err
    int nm_mmsg_tx_sync(nm_mmsg_tx *h, netmap_ring *r)
