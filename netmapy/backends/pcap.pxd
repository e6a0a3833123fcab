from libc.stdint cimport uint32_t, uint64_t
from netmapy.core cimport Port
from netmapy.includes.pcap cimport pcap_t, pcap_dumper_t

cdef class PcapPort(Port):
    cdef pcap_t *rx
    cdef pcap_t *dead
    cdef pcap_dumper_t *dumper
    cdef readonly str path
    cdef readonly str direction
    cdef uint64_t *ts_ns            # per RX slot: capture time (ns)
    cdef uint64_t rx_packets, rx_bytes, rx_truncated, tx_packets, tx_bytes
    cdef int pending_err
    cdef char pending_msg[256]
    cdef bint nano
    cdef int evfd
    cdef char path_c[4096]          # the file, for rewind
    cdef uint64_t rewinds

    cdef int c_rewind(self) noexcept nogil
