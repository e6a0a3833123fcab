# The xdp backend's extension types (netmapy/backends/xdp/port.pyx); the C
# they use is declared in netmapy/includes/xdp.pxd.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from netmapy.core cimport Port, Memory
from netmapy.includes.xdp cimport nx_pool, nx_sock, nm_inject


cdef class Umem(Memory):
    """An AF_XDP UMEM: frames are the Memory's buffers."""
    cdef char *area
    cdef size_t map_len
    cdef uint64_t umem_len
    cdef readonly uint32_t frames
    cdef readonly uint32_t frame_size
    cdef uint16_t *owner
    cdef uint16_t next_id
    cdef nx_pool pool
    cdef readonly str group
    cdef object _socks          # {id: fd} of live sockets bound to this UMEM
    cdef readonly bint zerocopy


cdef class XdpPort(Port):
    cdef nx_sock *socks
    cdef nx_pool *pool
    cdef uint32_t nsocks
    cdef bint rx_on, tx_on, host_on
    cdef nm_inject host
    cdef int ep_in, ep_out
    cdef object _py                 # Python-side state (dict)
    cdef readonly str ifname
    cdef readonly int ifindex
    cdef readonly tuple queues
    cdef readonly str xdp_mode
    cdef readonly bint zerocopy
    cdef long coalesce_ns
    cdef bint rx_active
    cdef uint64_t naps

    cdef _set_counts(self, uint32_t n)
    cdef void _move_host(self, uint32_t to) noexcept
    cdef void _nap(self) noexcept nogil
