from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from netmapy.core cimport Memory, Port
from netmapy.includes.abi cimport netmap_if, netmap_ring


cdef class NetmapMemory(Memory):
    """A netmap memory region (nr_mem_id), mapped once per process."""
    cdef readonly uint64_t memsize
    cdef readonly bint extmem
    cdef readonly bint private
    cdef readonly object extmem_file
    cdef int map_fd                 # the fd whose file backs the mapping
    cdef object _users              # {id(port): fd}
    cdef object _key

    cdef int set_bufs(self, char *bufs, uint32_t buf_size) except -1


cdef class NetmapPort(Port):
    cdef netmap_if *knifp           # the kernel's netmap_if (in the mapping)
    cdef readonly object request    # the RegisterRequest sent
    cdef readonly object reply      # what the kernel answered (dict)
    cdef readonly str api           # "NIOCCTRL 14" or "NIOCREGIF 11"
    cdef readonly object tx_ids     # kernel ring ids of our TX rings
    cdef readonly object rx_ids     # ... and of our RX rings
    cdef readonly int link_flaps    # carrier losses seen while waiting
    cdef readonly double link_wait  # seconds waited for the link
    cdef object _findings

    cdef int _sync_tx(self, int skip) noexcept nogil
    cdef int _sync_rx(self, int skip) noexcept nogil
    cdef void _absorb(self) noexcept nogil
    cdef void _refresh_tails(self) noexcept nogil
    cdef int _ready(self, int events) noexcept nogil
    cdef netmap_ring *_ring_at(self, netmap_if *nifp, int64_t o, uint32_t k,
                               str what) except NULL
