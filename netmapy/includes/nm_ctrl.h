/*
 * netmapy: the netmap control ABI (API 14) -- request structures, request
 * codes and ioctl numbers -- written from the layout facts recorded in
 * docs/netmap-abi.md (sections 2 and 3), not from netmap's headers.
 *
 * Names carry an "nmc_" prefix so that this header can never clash with
 * <net/netmap.h> if a user includes both.  Every size and offset the
 * backend relies on is pinned by a _Static_assert below (LP64 Linux:
 * x86_64, aarch64); the same numbers are exported at run time by
 * nmc_abi_table() so that the test suite can print and compare them.
 */
#ifndef NETMAPY_NM_CTRL_H
#define NETMAPY_NM_CTRL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>

#include "nm_abi.h"

/* ---------------------------------------------------------- constants */

#define NMC_API             14      /* the version we speak on NIOCCTRL */
#define NMC_MIN_API         14      /* what current kernels accept ... */
#define NMC_MAX_API         15      /* ... up to this */
#define NMC_LEGACY_API      11      /* what we send on NIOCREGIF (old modules) */
#define NMC_REQ_IFNAMSIZ    64
#define NMC_LEGACY_IFNAMSIZ 16
#define NMC_REQ_MAXSIZE     4096

/* hdr.nr_reqtype */
enum {
    NMC_REQ_REGISTER = 1,
    NMC_REQ_PORT_INFO_GET = 2,
    NMC_REQ_VALE_ATTACH = 3,
    NMC_REQ_VALE_DETACH = 4,
    NMC_REQ_VALE_LIST = 5,
    NMC_REQ_PORT_HDR_SET = 6,
    NMC_REQ_PORT_HDR_GET = 7,
    NMC_REQ_VALE_NEWIF = 8,
    NMC_REQ_VALE_DELIF = 9,
    NMC_REQ_VALE_POLLING_ENABLE = 10,
    NMC_REQ_VALE_POLLING_DISABLE = 11,
    NMC_REQ_POOLS_INFO_GET = 12,
    NMC_REQ_SYNC_KLOOP_START = 13,
    NMC_REQ_SYNC_KLOOP_STOP = 14,
    NMC_REQ_CSB_ENABLE = 15,
};

/* option.nro_reqtype */
enum {
    NMC_OPT_EXTMEM = 1,
    NMC_OPT_SYNC_KLOOP_EVENTFDS = 2,
    NMC_OPT_CSB = 3,
    NMC_OPT_SYNC_KLOOP_MODE = 4,
    NMC_OPT_OFFSETS = 5,
};

/* nmreq_register.nr_mode */
enum {
    NMC_REG_DEFAULT = 0,
    NMC_REG_ALL_NIC = 1,
    NMC_REG_SW = 2,
    NMC_REG_NIC_SW = 3,
    NMC_REG_ONE_NIC = 4,
    NMC_REG_PIPE_MASTER = 5,    /* legacy API only */
    NMC_REG_PIPE_SLAVE = 6,     /* legacy API only */
    NMC_REG_NULL = 7,
    NMC_REG_ONE_SW = 8,
};
#define NMC_REG_MASK 0xf        /* legacy: the mode in nmreq.nr_flags */

/* nmreq_register.nr_flags */
#define NMC_MONITOR_TX      0x00100ULL
#define NMC_MONITOR_RX      0x00200ULL
#define NMC_ZCOPY_MON       0x00400ULL
#define NMC_EXCLUSIVE       0x00800ULL
#define NMC_RX_RINGS_ONLY   0x02000ULL
#define NMC_TX_RINGS_ONLY   0x04000ULL
#define NMC_ACCEPT_VNET_HDR 0x08000ULL
#define NMC_DO_RX_POLL      0x10000ULL
#define NMC_NO_TX_POLL      0x20000ULL

/* legacy nmreq.nr_ringid bits */
#define NMC_LEGACY_RING_MASK  0x0fff
#define NMC_LEGACY_NO_TX_POLL 0x1000
#define NMC_LEGACY_SW_RING    0x2000
#define NMC_LEGACY_HW_RING    0x4000
#define NMC_LEGACY_DO_RX_POLL 0x8000

/* netmap_if.ni_flags */
#define NMC_NI_PRIV_MEM 0x1

/* ----------------------------------------------------------- requests */

struct nmc_header {                 /* struct nmreq_header, 88 bytes */
    uint16_t nr_version;
    uint16_t nr_reqtype;
    uint32_t nr_reserved;
    char     nr_name[NMC_REQ_IFNAMSIZ];
    uint64_t nr_options;            /* user pointer to the first option */
    uint64_t nr_body;               /* user pointer to the body */
};

struct nmc_register {               /* struct nmreq_register, 56 bytes */
    uint64_t nr_offset;
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t nr_ringid;
    uint32_t nr_mode;
    uint32_t nr_extra_bufs;
    uint32_t nr_pad;                /* alignment hole before nr_flags */
    uint64_t nr_flags;
};

struct nmc_port_info {              /* struct nmreq_port_info_get, 32 bytes */
    uint64_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_host_tx_rings;
    uint16_t nr_host_rx_rings;
    uint16_t nr_mem_id;
    uint16_t pad[3];
};

struct nmc_option {                 /* struct nmreq_option, 24 bytes */
    uint64_t nro_next;
    uint32_t nro_reqtype;
    uint32_t nro_status;
    uint64_t nro_size;
};

struct nmc_pools_info {             /* struct nmreq_pools_info, 64 bytes */
    uint64_t nr_memsize;
    uint16_t nr_mem_id;
    uint16_t pad1[3];
    uint64_t nr_if_pool_offset;
    uint32_t nr_if_pool_objtotal;
    uint32_t nr_if_pool_objsize;
    uint64_t nr_ring_pool_offset;
    uint32_t nr_ring_pool_objtotal;
    uint32_t nr_ring_pool_objsize;
    uint64_t nr_buf_pool_offset;
    uint32_t nr_buf_pool_objtotal;
    uint32_t nr_buf_pool_objsize;
};

struct nmc_opt_extmem {             /* struct nmreq_opt_extmem, 96 bytes */
    struct nmc_option nro_opt;
    uint64_t nro_usrptr;
    struct nmc_pools_info nro_info;
};

struct nmc_opt_offsets {            /* struct nmreq_opt_offsets, 56 bytes */
    struct nmc_option nro_opt;
    uint64_t nro_max_offset;
    uint64_t nro_initial_offset;
    uint32_t nro_offset_bits;
    uint32_t nro_tx_align;
    uint64_t nro_min_gap;
};

struct nmc_legacy {                 /* struct nmreq (NIOCGINFO/NIOCREGIF), 60 bytes */
    char     nr_name[NMC_LEGACY_IFNAMSIZ];
    uint32_t nr_version;
    uint32_t nr_offset;
    uint32_t nr_memsize;
    uint32_t nr_tx_slots;
    uint32_t nr_rx_slots;
    uint16_t nr_tx_rings;
    uint16_t nr_rx_rings;
    uint16_t nr_ringid;
    uint16_t nr_cmd;
    uint16_t nr_arg1;
    uint16_t nr_arg2;               /* memory id */
    uint32_t nr_arg3;               /* extra buffers */
    uint32_t nr_flags;              /* NR_REG_* mode | NR_* flags */
    uint32_t spare2[1];
};

/* ------------------------------------------------------ ioctl numbers */

#define NMC_NIOCGINFO   _IOWR('i', 145, struct nmc_legacy)
#define NMC_NIOCREGIF   _IOWR('i', 146, struct nmc_legacy)
#define NMC_NIOCTXSYNC  _IO('i', 148)
#define NMC_NIOCRXSYNC  _IO('i', 149)
#define NMC_NIOCCTRL    _IOWR('i', 151, struct nmc_header)

/* ----------------------------------------------------- layout checks */

#define NMC_CHECK(cond, what) _Static_assert(cond, "netmap ABI: " what)

NMC_CHECK(sizeof(struct nmc_header) == 88, "sizeof nmreq_header");
NMC_CHECK(offsetof(struct nmc_header, nr_reqtype) == 2, "hdr.nr_reqtype");
NMC_CHECK(offsetof(struct nmc_header, nr_reserved) == 4, "hdr.nr_reserved");
NMC_CHECK(offsetof(struct nmc_header, nr_name) == 8, "hdr.nr_name");
NMC_CHECK(offsetof(struct nmc_header, nr_options) == 72, "hdr.nr_options");
NMC_CHECK(offsetof(struct nmc_header, nr_body) == 80, "hdr.nr_body");

NMC_CHECK(sizeof(struct nmc_register) == 56, "sizeof nmreq_register");
NMC_CHECK(offsetof(struct nmc_register, nr_memsize) == 8, "reg.nr_memsize");
NMC_CHECK(offsetof(struct nmc_register, nr_tx_slots) == 16, "reg.nr_tx_slots");
NMC_CHECK(offsetof(struct nmc_register, nr_rx_slots) == 20, "reg.nr_rx_slots");
NMC_CHECK(offsetof(struct nmc_register, nr_tx_rings) == 24, "reg.nr_tx_rings");
NMC_CHECK(offsetof(struct nmc_register, nr_rx_rings) == 26, "reg.nr_rx_rings");
NMC_CHECK(offsetof(struct nmc_register, nr_host_tx_rings) == 28, "reg.nr_host_tx_rings");
NMC_CHECK(offsetof(struct nmc_register, nr_host_rx_rings) == 30, "reg.nr_host_rx_rings");
NMC_CHECK(offsetof(struct nmc_register, nr_mem_id) == 32, "reg.nr_mem_id");
NMC_CHECK(offsetof(struct nmc_register, nr_ringid) == 34, "reg.nr_ringid");
NMC_CHECK(offsetof(struct nmc_register, nr_mode) == 36, "reg.nr_mode");
NMC_CHECK(offsetof(struct nmc_register, nr_extra_bufs) == 40, "reg.nr_extra_bufs");
NMC_CHECK(offsetof(struct nmc_register, nr_flags) == 48, "reg.nr_flags");

NMC_CHECK(sizeof(struct nmc_port_info) == 32, "sizeof nmreq_port_info_get");
NMC_CHECK(offsetof(struct nmc_port_info, nr_tx_slots) == 8, "pinfo.nr_tx_slots");
NMC_CHECK(offsetof(struct nmc_port_info, nr_tx_rings) == 16, "pinfo.nr_tx_rings");
NMC_CHECK(offsetof(struct nmc_port_info, nr_host_tx_rings) == 20, "pinfo.nr_host_tx_rings");
NMC_CHECK(offsetof(struct nmc_port_info, nr_mem_id) == 24, "pinfo.nr_mem_id");

NMC_CHECK(sizeof(struct nmc_option) == 24, "sizeof nmreq_option");
NMC_CHECK(offsetof(struct nmc_option, nro_reqtype) == 8, "opt.nro_reqtype");
NMC_CHECK(offsetof(struct nmc_option, nro_status) == 12, "opt.nro_status");
NMC_CHECK(offsetof(struct nmc_option, nro_size) == 16, "opt.nro_size");

NMC_CHECK(sizeof(struct nmc_pools_info) == 64, "sizeof nmreq_pools_info");
NMC_CHECK(offsetof(struct nmc_pools_info, nr_mem_id) == 8, "pools.nr_mem_id");
NMC_CHECK(offsetof(struct nmc_pools_info, nr_if_pool_offset) == 16, "pools.if_offset");
NMC_CHECK(offsetof(struct nmc_pools_info, nr_ring_pool_offset) == 32, "pools.ring_offset");
NMC_CHECK(offsetof(struct nmc_pools_info, nr_buf_pool_offset) == 48, "pools.buf_offset");
NMC_CHECK(offsetof(struct nmc_pools_info, nr_buf_pool_objtotal) == 56, "pools.buf_total");
NMC_CHECK(offsetof(struct nmc_pools_info, nr_buf_pool_objsize) == 60, "pools.buf_size");

NMC_CHECK(sizeof(struct nmc_opt_extmem) == 96, "sizeof nmreq_opt_extmem");
NMC_CHECK(offsetof(struct nmc_opt_extmem, nro_usrptr) == 24, "extmem.nro_usrptr");
NMC_CHECK(offsetof(struct nmc_opt_extmem, nro_info) == 32, "extmem.nro_info");

NMC_CHECK(sizeof(struct nmc_opt_offsets) == 56, "sizeof nmreq_opt_offsets");
NMC_CHECK(offsetof(struct nmc_opt_offsets, nro_max_offset) == 24, "offsets.max");
NMC_CHECK(offsetof(struct nmc_opt_offsets, nro_initial_offset) == 32, "offsets.initial");
NMC_CHECK(offsetof(struct nmc_opt_offsets, nro_offset_bits) == 40, "offsets.bits");
NMC_CHECK(offsetof(struct nmc_opt_offsets, nro_tx_align) == 44, "offsets.tx_align");
NMC_CHECK(offsetof(struct nmc_opt_offsets, nro_min_gap) == 48, "offsets.min_gap");

NMC_CHECK(sizeof(struct nmc_legacy) == 60, "sizeof nmreq (legacy)");
NMC_CHECK(offsetof(struct nmc_legacy, nr_version) == 16, "legacy.nr_version");
NMC_CHECK(offsetof(struct nmc_legacy, nr_offset) == 20, "legacy.nr_offset");
NMC_CHECK(offsetof(struct nmc_legacy, nr_memsize) == 24, "legacy.nr_memsize");
NMC_CHECK(offsetof(struct nmc_legacy, nr_tx_slots) == 28, "legacy.nr_tx_slots");
NMC_CHECK(offsetof(struct nmc_legacy, nr_rx_slots) == 32, "legacy.nr_rx_slots");
NMC_CHECK(offsetof(struct nmc_legacy, nr_tx_rings) == 36, "legacy.nr_tx_rings");
NMC_CHECK(offsetof(struct nmc_legacy, nr_rx_rings) == 38, "legacy.nr_rx_rings");
NMC_CHECK(offsetof(struct nmc_legacy, nr_ringid) == 40, "legacy.nr_ringid");
NMC_CHECK(offsetof(struct nmc_legacy, nr_cmd) == 42, "legacy.nr_cmd");
NMC_CHECK(offsetof(struct nmc_legacy, nr_arg1) == 44, "legacy.nr_arg1");
NMC_CHECK(offsetof(struct nmc_legacy, nr_arg2) == 46, "legacy.nr_arg2");
NMC_CHECK(offsetof(struct nmc_legacy, nr_arg3) == 48, "legacy.nr_arg3");
NMC_CHECK(offsetof(struct nmc_legacy, nr_flags) == 52, "legacy.nr_flags");

/* the shared-memory structures of nm_abi.h, beyond its own asserts */
NMC_CHECK(sizeof(struct netmap_if) == 56, "sizeof netmap_if header");
NMC_CHECK(offsetof(struct netmap_if, ni_flags) == 20, "nifp.ni_flags");
NMC_CHECK(offsetof(struct netmap_if, ni_tx_rings) == 24, "nifp.ni_tx_rings");
NMC_CHECK(offsetof(struct netmap_if, ni_rx_rings) == 28, "nifp.ni_rx_rings");
NMC_CHECK(offsetof(struct netmap_if, ni_host_tx_rings) == 36, "nifp.ni_host_tx_rings");
NMC_CHECK(offsetof(struct netmap_if, ni_host_rx_rings) == 40, "nifp.ni_host_rx_rings");
NMC_CHECK(offsetof(struct netmap_slot, len) == 4, "slot.len");
NMC_CHECK(offsetof(struct netmap_slot, flags) == 6, "slot.flags");
NMC_CHECK(offsetof(struct netmap_slot, ptr) == 8, "slot.ptr");
NMC_CHECK(NR_RX == 0 && NR_TX == 1, "ring->dir as the kernel writes it");

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
NMC_CHECK(NMC_NIOCGINFO == 0xc03c6991UL, "NIOCGINFO");
NMC_CHECK(NMC_NIOCREGIF == 0xc03c6992UL, "NIOCREGIF");
NMC_CHECK(NMC_NIOCTXSYNC == 0x00006994UL, "NIOCTXSYNC");
NMC_CHECK(NMC_NIOCRXSYNC == 0x00006995UL, "NIOCRXSYNC");
NMC_CHECK(NMC_NIOCCTRL == 0xc0586997UL, "NIOCCTRL");
#endif

/* ------------------------------------------- the numbers, at run time */

struct nmc_abi_entry {
    const char *name;
    unsigned long value;
};

#define NMC_SZ(t)        { "sizeof " #t, (unsigned long)sizeof(struct t) }
#define NMC_OF(t, f)     { #t "." #f, (unsigned long)offsetof(struct t, f) }

static const struct nmc_abi_entry nmc_abi_entries[] = {
    NMC_SZ(netmap_slot), NMC_SZ(netmap_ring), NMC_SZ(netmap_if),
    NMC_OF(netmap_slot, buf_idx), NMC_OF(netmap_slot, len),
    NMC_OF(netmap_slot, flags), NMC_OF(netmap_slot, ptr),
    NMC_OF(netmap_ring, buf_ofs), NMC_OF(netmap_ring, num_slots),
    NMC_OF(netmap_ring, nr_buf_size), NMC_OF(netmap_ring, ringid),
    NMC_OF(netmap_ring, dir), NMC_OF(netmap_ring, head),
    NMC_OF(netmap_ring, cur), NMC_OF(netmap_ring, tail),
    NMC_OF(netmap_ring, flags), NMC_OF(netmap_ring, ts),
    NMC_OF(netmap_ring, offset_mask), NMC_OF(netmap_ring, buf_align),
    NMC_OF(netmap_ring, sem), NMC_OF(netmap_ring, slot),
    NMC_OF(netmap_if, ni_name), NMC_OF(netmap_if, ni_version),
    NMC_OF(netmap_if, ni_flags), NMC_OF(netmap_if, ni_tx_rings),
    NMC_OF(netmap_if, ni_rx_rings), NMC_OF(netmap_if, ni_bufs_head),
    NMC_OF(netmap_if, ni_host_tx_rings), NMC_OF(netmap_if, ni_host_rx_rings),
    NMC_OF(netmap_if, ring_ofs),
    NMC_SZ(nmc_header), NMC_OF(nmc_header, nr_version),
    NMC_OF(nmc_header, nr_reqtype), NMC_OF(nmc_header, nr_reserved),
    NMC_OF(nmc_header, nr_name), NMC_OF(nmc_header, nr_options),
    NMC_OF(nmc_header, nr_body),
    NMC_SZ(nmc_register), NMC_OF(nmc_register, nr_offset),
    NMC_OF(nmc_register, nr_memsize), NMC_OF(nmc_register, nr_tx_slots),
    NMC_OF(nmc_register, nr_rx_slots), NMC_OF(nmc_register, nr_tx_rings),
    NMC_OF(nmc_register, nr_rx_rings), NMC_OF(nmc_register, nr_host_tx_rings),
    NMC_OF(nmc_register, nr_host_rx_rings), NMC_OF(nmc_register, nr_mem_id),
    NMC_OF(nmc_register, nr_ringid), NMC_OF(nmc_register, nr_mode),
    NMC_OF(nmc_register, nr_extra_bufs), NMC_OF(nmc_register, nr_flags),
    NMC_SZ(nmc_port_info), NMC_OF(nmc_port_info, nr_memsize),
    NMC_OF(nmc_port_info, nr_tx_slots), NMC_OF(nmc_port_info, nr_rx_slots),
    NMC_OF(nmc_port_info, nr_tx_rings), NMC_OF(nmc_port_info, nr_rx_rings),
    NMC_OF(nmc_port_info, nr_host_tx_rings), NMC_OF(nmc_port_info, nr_host_rx_rings),
    NMC_OF(nmc_port_info, nr_mem_id),
    NMC_SZ(nmc_option), NMC_OF(nmc_option, nro_next),
    NMC_OF(nmc_option, nro_reqtype), NMC_OF(nmc_option, nro_status),
    NMC_OF(nmc_option, nro_size),
    NMC_SZ(nmc_pools_info), NMC_OF(nmc_pools_info, nr_memsize),
    NMC_OF(nmc_pools_info, nr_mem_id), NMC_OF(nmc_pools_info, nr_if_pool_offset),
    NMC_OF(nmc_pools_info, nr_if_pool_objtotal), NMC_OF(nmc_pools_info, nr_if_pool_objsize),
    NMC_OF(nmc_pools_info, nr_ring_pool_offset), NMC_OF(nmc_pools_info, nr_ring_pool_objtotal),
    NMC_OF(nmc_pools_info, nr_ring_pool_objsize), NMC_OF(nmc_pools_info, nr_buf_pool_offset),
    NMC_OF(nmc_pools_info, nr_buf_pool_objtotal), NMC_OF(nmc_pools_info, nr_buf_pool_objsize),
    NMC_SZ(nmc_opt_extmem), NMC_OF(nmc_opt_extmem, nro_opt),
    NMC_OF(nmc_opt_extmem, nro_usrptr), NMC_OF(nmc_opt_extmem, nro_info),
    NMC_SZ(nmc_opt_offsets), NMC_OF(nmc_opt_offsets, nro_opt),
    NMC_OF(nmc_opt_offsets, nro_max_offset),
    NMC_OF(nmc_opt_offsets, nro_initial_offset), NMC_OF(nmc_opt_offsets, nro_offset_bits),
    NMC_OF(nmc_opt_offsets, nro_tx_align), NMC_OF(nmc_opt_offsets, nro_min_gap),
    NMC_SZ(nmc_legacy), NMC_OF(nmc_legacy, nr_name), NMC_OF(nmc_legacy, nr_version),
    NMC_OF(nmc_legacy, nr_offset), NMC_OF(nmc_legacy, nr_memsize),
    NMC_OF(nmc_legacy, nr_tx_slots), NMC_OF(nmc_legacy, nr_rx_slots),
    NMC_OF(nmc_legacy, nr_tx_rings), NMC_OF(nmc_legacy, nr_rx_rings),
    NMC_OF(nmc_legacy, nr_ringid), NMC_OF(nmc_legacy, nr_cmd),
    NMC_OF(nmc_legacy, nr_arg1), NMC_OF(nmc_legacy, nr_arg2),
    NMC_OF(nmc_legacy, nr_arg3), NMC_OF(nmc_legacy, nr_flags),
    NMC_OF(nmc_legacy, spare2),
    { "NIOCGINFO", (unsigned long)NMC_NIOCGINFO },
    { "NIOCREGIF", (unsigned long)NMC_NIOCREGIF },
    { "NIOCTXSYNC", (unsigned long)NMC_NIOCTXSYNC },
    { "NIOCRXSYNC", (unsigned long)NMC_NIOCRXSYNC },
    { "NIOCCTRL", (unsigned long)NMC_NIOCCTRL },
};

static inline int nmc_abi_count(void)
{
    return (int)(sizeof(nmc_abi_entries) / sizeof(nmc_abi_entries[0]));
}

static inline const char *nmc_abi_name(int i) { return nmc_abi_entries[i].name; }
static inline unsigned long nmc_abi_value(int i) { return nmc_abi_entries[i].value; }

/* ------------------------------------------------------- sync helpers */

static inline int nmc_txsync(int fd) { return ioctl(fd, NMC_NIOCTXSYNC, NULL); }
static inline int nmc_rxsync(int fd) { return ioctl(fd, NMC_NIOCRXSYNC, NULL); }
static inline int nmc_ctrl(int fd, struct nmc_header *h) { return ioctl(fd, NMC_NIOCCTRL, h); }
static inline int nmc_regif_legacy(int fd, struct nmc_legacy *r) { return ioctl(fd, NMC_NIOCREGIF, r); }
static inline int nmc_ginfo_legacy(int fd, struct nmc_legacy *r) { return ioctl(fd, NMC_NIOCGINFO, r); }

#endif
