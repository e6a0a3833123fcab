# The xdp backend's C (netmapy/includes/nm_xdp.h): AF_XDP sockets and rings,
# the UMEM's free pool, host-stack injection, and the bpf() calls the
# backend makes (programs, maps, links, test runs).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from netmapy.includes.abi cimport netmap_ring
from netmapy.includes.mmsg cimport nm_mmsg_tx


cdef extern from "nm_xdp.h" nogil:
    enum:
        NX_XDP_HEADROOM
        XDP_SHARED_UMEM
        XDP_COPY
        XDP_ZEROCOPY
        XDP_USE_NEED_WAKEUP
        XDP_FLAGS_SKB_MODE
        XDP_FLAGS_DRV_MODE
        XDP_FLAGS_UPDATE_IF_NOEXIST
        SOL_XDP
        XDP_MAX_TX_SKB_BUDGET

    struct nx_ring:
        uint32_t *producer
        uint32_t *consumer
        uint32_t *flags
        void *desc
        uint32_t mask, size
        void *map
        size_t map_len

    struct nx_pool:
        uint32_t *stack
        uint32_t *top
        uint16_t *owner
        uint32_t lo, hi

    struct nx_sock:
        int fd
        uint16_t id
        uint32_t queue
        nx_ring rx, tx, fill, comp
        uint32_t frame_size, shift, headroom
        uint32_t next_tx, inflight, fill_frames
        int copy_mode, need_wakeup
        char *area
        uint64_t rx_packets, rx_bytes, rx_realigned, rx_bad
        uint64_t tx_packets, tx_bytes, tx_oversize, tx_kicks, tx_kick_errors
        uint64_t fill_wakeups
        int last_err

    struct nm_inject:
        nm_mmsg_tx tx
        int prog_fd, link_fd
        int ifindex
        uint64_t cookie

    struct xdp_statistics:
        uint64_t rx_dropped
        uint64_t rx_invalid_descs
        uint64_t tx_invalid_descs
        uint64_t rx_ring_full
        uint64_t rx_fill_ring_empty_descs
        uint64_t tx_ring_empty_descs

    struct nx_prog_info:
        uint32_t id, type, nr_map_ids
        uint32_t map_ids[16]
        char name[16]
        uint8_t tag[8]

    struct nx_map_info:
        uint32_t id, type, key_size, value_size, max_entries
        char name[16]

    struct nx_link_info:
        uint32_t id, type, prog_id, ifindex

    int nx_sock_setup(nx_sock *s, int owner, char *area, uint64_t len,
                      uint32_t frame_size, uint32_t rx_size, uint32_t tx_size,
                      uint32_t fill_size, uint32_t comp_size, const char **stage)
    uint32_t nx_fill_prime(nx_sock *s, nx_pool *p, uint32_t n)
    int nx_sock_bind(nx_sock *s, int ifindex, uint32_t queue, uint16_t flags, int shared_fd)
    int nx_sock_zerocopy(nx_sock *s)
    void nx_sock_close(nx_sock *s, nx_pool *p)
    int nx_statistics(nx_sock *s, xdp_statistics *st)
    uint32_t nx_rx_sync(nx_sock *s, netmap_ring *r, nx_pool *p)
    uint32_t nx_rx_pending(nx_sock *s)
    uint32_t nx_reclaim(nx_sock *s, nx_pool *p)
    int nx_kick(nx_sock *s)
    int nx_tx_sync(nx_sock *s, netmap_ring *r, nx_pool *p)
    void nm_inject_init(nm_inject *h)
    int nm_inject_socket(nm_inject *h, int ifindex, int sndbuf, const char **stage)
    int nm_inject_attach(nm_inject *h, int prog_fd)
    void nm_inject_close(nm_inject *h)
    int nm_inject_tx(nm_inject *h, netmap_ring *r)

    int nx_prog_load(int type, const char *name, const void *insns, uint32_t cnt, char *log, uint32_t log_size)
    int nx_map_create(int type, const char *name, uint32_t key, uint32_t value, uint32_t entries)
    int nx_map_set(int fd, uint32_t key, uint32_t value)
    int nx_map_del(int fd, uint32_t key)
    int nx_map_keys(int fd, uint32_t *keys, uint32_t max)
    int nx_link_create(int prog_fd, int ifindex, uint32_t flags)
    int nx_xdp_attach(int ifindex, int prog_fd, uint32_t flags, int old_fd)
    int nx_get_prog_info(int fd, nx_prog_info *out)
    int nx_get_map_info(int fd, nx_map_info *out)
    int nx_get_link_info(int fd, nx_link_info *out)
    int nx_test_run(int prog_fd, const void *data, uint32_t len, uint32_t *retval)
    int nx_test_run_repeat(int prog_fd, const void *data, uint32_t len, uint32_t repeat,
                           uint32_t *retval, uint32_t *ns)


# the kernel and libbpf declarations the backend uses
cdef extern from "<linux/bpf.h>":
    enum:
        BPF_MAP_TYPE_PROG_ARRAY
        BPF_MAP_TYPE_XSKMAP
        BPF_LINK_TYPE_XDP

cdef extern from "<bpf/bpf.h>" nogil:
    int bpf_prog_get_fd_by_id(uint32_t id)
    int bpf_map_get_fd_by_id(uint32_t id)
    int bpf_link_get_fd_by_id(uint32_t id)
    int bpf_link_get_next_id(uint32_t start_id, uint32_t *next_id)
    int bpf_link_detach(int link_fd)

cdef extern from "<bpf/libbpf.h>" nogil:
    struct bpf_xdp_query_opts:
        size_t sz
        uint32_t prog_id
        uint32_t drv_prog_id
        uint32_t hw_prog_id
        uint32_t skb_prog_id
        uint8_t attach_mode
    int bpf_xdp_query(int ifindex, int flags, bpf_xdp_query_opts *opts)
    int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_CLOEXEC
        EFD_NONBLOCK

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int nanosleep(const timespec *req, timespec *rem)

cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int fd, int level, int name, const void *val, unsigned int len)
