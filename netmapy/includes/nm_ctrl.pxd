# Cython declarations of the netmap control ABI (see nm_ctrl.h).
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "nm_ctrl.h" nogil:
    enum:
        NMC_API
        NMC_MIN_API
        NMC_MAX_API
        NMC_LEGACY_API
        NMC_REQ_IFNAMSIZ
        NMC_LEGACY_IFNAMSIZ
        NMC_REQ_REGISTER
        NMC_REQ_PORT_INFO_GET
        NMC_REQ_POOLS_INFO_GET
        NMC_OPT_EXTMEM
        NMC_OPT_OFFSETS
        NMC_REG_ALL_NIC
        NMC_REG_ONE_NIC
        NMC_REG_SW
        NMC_REG_NIC_SW
        NMC_REG_ONE_SW
        NMC_REG_PIPE_MASTER
        NMC_REG_PIPE_SLAVE
        NMC_NI_PRIV_MEM

    unsigned long long NMC_RX_RINGS_ONLY
    unsigned long long NMC_TX_RINGS_ONLY
    unsigned long NMC_NIOCCTRL
    unsigned long NMC_NIOCREGIF
    unsigned long NMC_NIOCGINFO
    unsigned long NMC_NIOCTXSYNC
    unsigned long NMC_NIOCRXSYNC

    struct nmc_header:
        uint16_t nr_version
        uint16_t nr_reqtype
        uint32_t nr_reserved
        char nr_name[64]
        uint64_t nr_options
        uint64_t nr_body

    struct nmc_register:
        uint64_t nr_offset
        uint64_t nr_memsize
        uint32_t nr_tx_slots
        uint32_t nr_rx_slots
        uint16_t nr_tx_rings
        uint16_t nr_rx_rings
        uint16_t nr_host_tx_rings
        uint16_t nr_host_rx_rings
        uint16_t nr_mem_id
        uint16_t nr_ringid
        uint32_t nr_mode
        uint32_t nr_extra_bufs
        uint32_t nr_pad
        uint64_t nr_flags

    struct nmc_port_info:
        uint64_t nr_memsize
        uint32_t nr_tx_slots
        uint32_t nr_rx_slots
        uint16_t nr_tx_rings
        uint16_t nr_rx_rings
        uint16_t nr_host_tx_rings
        uint16_t nr_host_rx_rings
        uint16_t nr_mem_id
        uint16_t pad[3]

    struct nmc_option:
        uint64_t nro_next
        uint32_t nro_reqtype
        uint32_t nro_status
        uint64_t nro_size

    struct nmc_pools_info:
        uint64_t nr_memsize
        uint16_t nr_mem_id
        uint64_t nr_if_pool_offset
        uint32_t nr_if_pool_objtotal
        uint32_t nr_if_pool_objsize
        uint64_t nr_ring_pool_offset
        uint32_t nr_ring_pool_objtotal
        uint32_t nr_ring_pool_objsize
        uint64_t nr_buf_pool_offset
        uint32_t nr_buf_pool_objtotal
        uint32_t nr_buf_pool_objsize

    struct nmc_opt_extmem:
        nmc_option nro_opt
        uint64_t nro_usrptr
        nmc_pools_info nro_info

    struct nmc_opt_offsets:
        nmc_option nro_opt
        uint64_t nro_max_offset
        uint64_t nro_initial_offset
        uint32_t nro_offset_bits
        uint32_t nro_tx_align
        uint64_t nro_min_gap

    struct nmc_legacy:
        char nr_name[16]
        uint32_t nr_version
        uint32_t nr_offset
        uint32_t nr_memsize
        uint32_t nr_tx_slots
        uint32_t nr_rx_slots
        uint16_t nr_tx_rings
        uint16_t nr_rx_rings
        uint16_t nr_ringid
        uint16_t nr_cmd
        uint16_t nr_arg1
        uint16_t nr_arg2
        uint32_t nr_arg3
        uint32_t nr_flags

    int nmc_abi_count()
    const char *nmc_abi_name(int i)
    unsigned long nmc_abi_value(int i)
    int nmc_txsync(int fd)
    int nmc_rxsync(int fd)
    int nmc_ctrl(int fd, nmc_header *h)
    int nmc_regif_legacy(int fd, nmc_legacy *r)
    int nmc_ginfo_legacy(int fd, nmc_legacy *r)
