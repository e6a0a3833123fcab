/*
 * netmapy xdp backend: netmap rings over AF_XDP sockets.
 *
 * The UMEM is the port's buffer memory: frame f of the UMEM is netmap
 * buffer f, and NETMAP_BUF(ring, f) points XDP_PACKET_HEADROOM bytes into
 * the frame, where the kernel puts received data.  Every frame has exactly
 * one owner at any time:
 *
 *   - a netmap slot (RX or TX ring of a port),
 *   - the free pool (the Memory's stack),
 *   - one AF_XDP socket: its fill ring or RX ring (receive side), or its TX
 *     ring or completion ring (transmit side).  owner[f] holds the socket's
 *     id while the kernel may use the frame, 0 otherwise, so the frames of
 *     a closed socket go back to the pool even if it died mid-flight.
 *
 * RX sync: each received descriptor's frame is swapped into the next free
 * netmap RX slot; the frame that slot held (already released by the user)
 * goes to the fill ring.  TX sync: each pending TX slot's frame goes to the
 * kernel's TX ring and the slot takes a free frame from the pool; frames
 * come back to the pool through the completion ring.  Nothing is copied by
 * user space; buffers can be swapped between ports that share the UMEM.
 */
#ifndef NETMAPY_NM_XDP_H
#define NETMAPY_NM_XDP_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <linux/if_xdp.h>
#include <linux/if_link.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "nm_abi.h"

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif
#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9      /* Linux 6.17 */
#endif
#ifndef BPF_F_TEST_XDP_LIVE_FRAMES
#define BPF_F_TEST_XDP_LIVE_FRAMES (1U << 1)
#endif
#define NX_XDP_HEADROOM 256          /* XDP_PACKET_HEADROOM */

struct nx_ring {
    uint32_t *producer, *consumer, *flags;
    void *desc;
    uint32_t mask, size;
    void *map;
    size_t map_len;
};

struct nx_pool {                     /* views of the Memory (UMEM) */
    uint32_t *stack;
    uint32_t *top;
    uint16_t *owner;
    uint32_t lo, hi;
};

struct nx_sock {
    int fd;
    uint16_t id;                     /* owner id of this socket's frames */
    uint32_t queue;
    struct nx_ring rx, tx, fill, comp;
    uint32_t frame_size, shift, headroom;
    uint32_t next_tx;                /* first TX slot not yet handed over */
    uint32_t inflight;               /* TX frames the kernel holds */
    uint32_t fill_frames;            /* frames in fill + RX rings */
    int copy_mode, need_wakeup;
    char *area;                      /* UMEM start */
    uint64_t rx_packets, rx_bytes, rx_realigned, rx_bad;
    uint64_t tx_packets, tx_bytes, tx_oversize, tx_kicks, tx_kick_errors;
    uint64_t fill_wakeups;
    int last_err;
};

static inline uint32_t nx_load_acq(uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void nx_store_rel(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------ set up */

/* mmap one ring; entry is 16 (xdp_desc) or 8 (u64) bytes */
static inline int nx_ring_map(int fd, const struct xdp_ring_offset *off,
                              uint64_t pgoff, uint32_t size, uint32_t entry,
                              struct nx_ring *r)
{
    size_t len = off->desc + (size_t)size * entry;
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_POPULATE, fd, (off_t)pgoff);
    if (m == MAP_FAILED)
        return -errno;
    r->map = m;
    r->map_len = len;
    r->producer = (uint32_t *)((char *)m + off->producer);
    r->consumer = (uint32_t *)((char *)m + off->consumer);
    r->flags = (uint32_t *)((char *)m + off->flags);
    r->desc = (char *)m + off->desc;
    r->size = size;
    r->mask = size - 1;
    return 0;
}

static inline void nx_ring_unmap(struct nx_ring *r)
{
    if (r->map) {
        munmap(r->map, r->map_len);
        r->map = NULL;
    }
}

/*
 * Create the socket and its rings.  owner: register the UMEM
 * [area, area+len) on it.  Sizes of 0 leave a ring out.  On failure returns
 * -errno and sets *stage to the step that failed; the caller closes.
 */
static inline int nx_sock_setup(struct nx_sock *s, int owner, char *area,
                                uint64_t len, uint32_t frame_size,
                                uint32_t rx_size, uint32_t tx_size,
                                uint32_t fill_size, uint32_t comp_size,
                                const char **stage)
{
    struct xdp_mmap_offsets off;
    socklen_t optlen = sizeof(off);
    int rc;

    s->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        *stage = "socket(AF_XDP)";
        return -errno;
    }
    s->area = area;
    s->frame_size = frame_size;
    s->shift = __builtin_ctz(frame_size);
    s->headroom = NX_XDP_HEADROOM;
    if (owner) {
        struct xdp_umem_reg mr;
        memset(&mr, 0, sizeof(mr));
        mr.addr = (uint64_t)(uintptr_t)area;
        mr.len = len;
        mr.chunk_size = frame_size;
        mr.headroom = 0;
        mr.flags = 0;
        if (setsockopt(s->fd, SOL_XDP, XDP_UMEM_REG, &mr, sizeof(mr)) < 0) {
            *stage = "XDP_UMEM_REG (registering the UMEM)";
            return -errno;
        }
    }
    if (fill_size && setsockopt(s->fd, SOL_XDP, XDP_UMEM_FILL_RING, &fill_size, sizeof(fill_size)) < 0) {
        *stage = "XDP_UMEM_FILL_RING";
        return -errno;
    }
    if (comp_size && setsockopt(s->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &comp_size, sizeof(comp_size)) < 0) {
        *stage = "XDP_UMEM_COMPLETION_RING";
        return -errno;
    }
    if (rx_size && setsockopt(s->fd, SOL_XDP, XDP_RX_RING, &rx_size, sizeof(rx_size)) < 0) {
        *stage = "XDP_RX_RING";
        return -errno;
    }
    if (tx_size && setsockopt(s->fd, SOL_XDP, XDP_TX_RING, &tx_size, sizeof(tx_size)) < 0) {
        *stage = "XDP_TX_RING";
        return -errno;
    }
    if (getsockopt(s->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &optlen) < 0) {
        *stage = "XDP_MMAP_OFFSETS";
        return -errno;
    }
    *stage = "mmap of an AF_XDP ring";
    if (rx_size && (rc = nx_ring_map(s->fd, &off.rx, XDP_PGOFF_RX_RING, rx_size, sizeof(struct xdp_desc), &s->rx)) < 0)
        return rc;
    if (tx_size && (rc = nx_ring_map(s->fd, &off.tx, XDP_PGOFF_TX_RING, tx_size, sizeof(struct xdp_desc), &s->tx)) < 0)
        return rc;
    if (fill_size && (rc = nx_ring_map(s->fd, &off.fr, XDP_UMEM_PGOFF_FILL_RING, fill_size, sizeof(uint64_t), &s->fill)) < 0)
        return rc;
    if (comp_size && (rc = nx_ring_map(s->fd, &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING, comp_size, sizeof(uint64_t), &s->comp)) < 0)
        return rc;
    return 0;
}

/* Put up to n free frames of the pool on the fill ring; returns how many. */
static inline uint32_t nx_fill_prime(struct nx_sock *s, struct nx_pool *p, uint32_t n)
{
    uint32_t prod, cons, room, i;
    uint64_t *ring = (uint64_t *)s->fill.desc;
    if (!s->fill.map)
        return 0;
    prod = *s->fill.producer;
    cons = nx_load_acq(s->fill.consumer);
    room = s->fill.size - (prod - cons);
    if (n > room)
        n = room;
    if (n > *p->top)
        n = *p->top;
    for (i = 0; i < n; i++) {
        uint32_t f = p->stack[--*p->top];
        p->owner[f] = s->id;
        ring[prod++ & s->fill.mask] = (uint64_t)f << s->shift;
    }
    nx_store_rel(s->fill.producer, prod);
    s->fill_frames += n;
    return n;
}

static inline int nx_sock_bind(struct nx_sock *s, int ifindex, uint32_t queue,
                               uint16_t flags, int shared_fd)
{
    struct sockaddr_xdp sxdp;
    memset(&sxdp, 0, sizeof(sxdp));
    sxdp.sxdp_family = AF_XDP;
    sxdp.sxdp_flags = flags;
    sxdp.sxdp_ifindex = ifindex;
    sxdp.sxdp_queue_id = queue;
    sxdp.sxdp_shared_umem_fd = shared_fd >= 0 ? shared_fd : 0;
    if (bind(s->fd, (struct sockaddr *)&sxdp, sizeof(sxdp)) < 0)
        return -errno;
    s->queue = queue;
    return 0;
}

/* 1: zero-copy, 0: copy mode, -errno */
static inline int nx_sock_zerocopy(struct nx_sock *s)
{
    struct xdp_options o;
    socklen_t len = sizeof(o);
    if (getsockopt(s->fd, SOL_XDP, XDP_OPTIONS, &o, &len) < 0)
        return -errno;
    return (o.flags & XDP_OPTIONS_ZEROCOPY) ? 1 : 0;
}

/*
 * Close the socket and give every frame it held back to the pool.  The
 * rings are unmapped first: a mapping keeps the socket alive.  Once close()
 * returns the kernel has unbound it (xsk_release waits for the datapath).
 */
static inline void nx_sock_close(struct nx_sock *s, struct nx_pool *p)
{
    uint32_t f;
    nx_ring_unmap(&s->rx);
    nx_ring_unmap(&s->tx);
    nx_ring_unmap(&s->fill);
    nx_ring_unmap(&s->comp);
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    if (p && p->owner && s->id) {
        for (f = p->lo; f < p->hi; f++) {
            if (p->owner[f] == s->id) {
                p->owner[f] = 0;
                p->stack[(*p->top)++] = f;
            }
        }
    }
    s->inflight = 0;
    s->fill_frames = 0;
}

static inline int nx_statistics(struct nx_sock *s, struct xdp_statistics *st)
{
    socklen_t len = sizeof(*st);
    memset(st, 0, sizeof(*st));
    if (getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, st, &len) < 0)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------- RX */

/*
 * Move received frames into the free netmap RX slots [tail, head-1); the
 * frames those slots held go to the fill ring.  Returns frames received.
 */
static inline uint32_t nx_rx_sync(struct nx_sock *s, struct netmap_ring *r,
                                  struct nx_pool *p)
{
    uint32_t n = r->num_slots, t = r->tail, k, j;
    uint32_t room = (r->head + n - t - 1) % n;
    uint32_t cons, prod, fprod, fcons, ffree;
    struct xdp_desc *rx = (struct xdp_desc *)s->rx.desc;
    uint64_t *fill = (uint64_t *)s->fill.desc;
    uint32_t fmask = s->frame_size - 1, room_data = s->frame_size - s->headroom;

    cons = *s->rx.consumer;
    prod = nx_load_acq(s->rx.producer);
    k = prod - cons;
    if (k > room)
        k = room;
    fprod = *s->fill.producer;
    fcons = nx_load_acq(s->fill.consumer);
    ffree = s->fill.size - (fprod - fcons);
    if (k > ffree)
        k = ffree;
    for (j = 0; j < k; j++) {
        const struct xdp_desc *d = &rx[cons++ & s->rx.mask];
        struct netmap_slot *sl = &r->slot[t];
        uint64_t addr = d->addr;
        uint32_t f = (uint32_t)(addr >> s->shift), len = d->len;
        uint32_t old = sl->buf_idx;
        if (f < p->lo || f >= p->hi) {      /* cannot happen; never trust */
            s->rx_bad++;
            continue;
        }
        if ((addr & fmask) != s->headroom) {
            /* data elsewhere in the frame (a program moved it): put it
             * where NETMAP_BUF points */
            char *base = s->area + ((uint64_t)f << s->shift);
            if (len > room_data)
                len = room_data;
            memmove(base + s->headroom, s->area + addr, len);
            s->rx_realigned++;
        }
        p->owner[f] = 0;
        sl->buf_idx = f;
        sl->len = (uint16_t)len;
        sl->flags = 0;
        p->owner[old] = s->id;
        fill[fprod++ & s->fill.mask] = (uint64_t)old << s->shift;
        s->rx_bytes += len;
        t = t + 1 == n ? 0 : t + 1;
    }
    if (k) {
        nx_store_rel(s->rx.consumer, cons);
        nx_store_rel(s->fill.producer, fprod);
        s->rx_packets += k;
        __atomic_store_n(&r->tail, t, __ATOMIC_RELEASE);
    }
    if (s->need_wakeup && (__atomic_load_n(s->fill.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP)) {
        recvfrom(s->fd, NULL, 0, MSG_DONTWAIT, NULL, NULL);
        s->fill_wakeups++;
    }
    return k;
}

/* Frames waiting in the RX ring (the kernel's side), for poll decisions. */
static inline uint32_t nx_rx_pending(struct nx_sock *s)
{
    return nx_load_acq(s->rx.producer) - *s->rx.consumer;
}

/* ------------------------------------------------------------- TX */

/* Completed TX frames back to the pool. */
static inline uint32_t nx_reclaim(struct nx_sock *s, struct nx_pool *p)
{
    uint32_t cons = *s->comp.consumer, prod = nx_load_acq(s->comp.producer);
    uint32_t k = prod - cons, j;
    const uint64_t *ring = (const uint64_t *)s->comp.desc;
    for (j = 0; j < k; j++) {
        uint32_t f = (uint32_t)(ring[cons++ & s->comp.mask] >> s->shift);
        if (f >= p->lo && f < p->hi && p->owner[f] == s->id) {
            p->owner[f] = 0;
            p->stack[(*p->top)++] = f;
        }
    }
    if (k) {
        nx_store_rel(s->comp.consumer, cons);
        s->inflight -= k < s->inflight ? k : s->inflight;
    }
    return k;
}

/* Wake the kernel to transmit what the TX ring holds.  In copy mode a
 * sendto() sends at most the socket's budget and says EAGAIN when more is
 * left: go on while it makes progress.  Returns 0 or -errno. */
static inline int nx_kick(struct nx_sock *s)
{
    int tries;
    for (tries = 0; tries < 64; tries++) {
        uint32_t before = nx_load_acq(s->tx.consumer);
        if (before == *s->tx.producer)
            return 0;
        if (!s->copy_mode && s->need_wakeup &&
            !(__atomic_load_n(s->tx.flags, __ATOMIC_ACQUIRE) & XDP_RING_NEED_WAKEUP))
            return 0;
        s->tx_kicks++;
        if (sendto(s->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) >= 0)
            continue;
        if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS || errno == EINTR) {
            if (nx_load_acq(s->tx.consumer) == before)
                return 0;           /* no progress: try again at the next sync */
            continue;
        }
        s->tx_kick_errors++;
        return -errno;
    }
    return 0;
}

/*
 * Hand the TX slots [next_tx, head) to the kernel: each slot's frame goes
 * to the TX ring and the slot takes a free frame from the pool.  Slots
 * that cannot go yet (kernel ring full, pool empty) stay pending; tail
 * says where.  Returns 0 or -errno of the wakeup.
 */
static inline int nx_tx_sync(struct nx_sock *s, struct netmap_ring *r,
                             struct nx_pool *p)
{
    uint32_t n = r->num_slots, i = s->next_tx, h = r->head;
    uint32_t prod, cons, room, maxlen = s->frame_size - s->headroom;
    struct xdp_desc *tx = (struct xdp_desc *)s->tx.desc;
    int err = 0;

    nx_reclaim(s, p);
    prod = *s->tx.producer;
    cons = nx_load_acq(s->tx.consumer);
    room = s->tx.size - (prod - cons);
    while (i != h && room && *p->top) {
        struct netmap_slot *sl = &r->slot[i];
        uint32_t len = sl->len;
        if (len == 0 || len > maxlen || sl->buf_idx < p->lo || sl->buf_idx >= p->hi) {
            s->tx_oversize++;        /* cannot be sent: dropped, counted */
        } else {
            struct xdp_desc *d = &tx[prod++ & s->tx.mask];
            uint32_t f = p->stack[--*p->top];
            d->addr = ((uint64_t)sl->buf_idx << s->shift) + s->headroom;
            d->len = len;
            d->options = 0;
            p->owner[sl->buf_idx] = s->id;
            sl->buf_idx = f;
            room--;
            s->inflight++;
            s->tx_packets++;
            s->tx_bytes += len;
        }
        sl->flags = 0;
        i = i + 1 == n ? 0 : i + 1;
    }
    if (prod != *s->tx.producer)
        nx_store_rel(s->tx.producer, prod);
    if (s->inflight) {
        err = nx_kick(s);
        nx_reclaim(s, p);
    }
    s->next_tx = i;
    r->tail = i == 0 ? n - 1 : i - 1;
    if (err)
        s->last_err = -err;
    return err;
}

/* ------------------------------------------------------ host stack */

/* The host TX ring is served by nm_inject.h (AF_PACKET + a tcx redirect). */
#include "nm_inject.h"

/* ------------------------------------------------------------ bpf */

/* Load a program (XDP, SCHED_CLS, ...); on failure the verifier's log is in log. */
static inline int nx_prog_load(int type, const char *name, const void *insns, uint32_t cnt,
                               char *log, uint32_t log_size)
{
    LIBBPF_OPTS(bpf_prog_load_opts, o);
    int fd;
    o.log_buf = NULL;
    o.log_size = 0;
    o.log_level = 0;
    fd = bpf_prog_load((enum bpf_prog_type)type, name, "GPL",
                       (const struct bpf_insn *)insns, cnt, &o);
    if (fd >= 0 || !log || errno == EPERM)
        return fd < 0 ? -errno : fd;
    /* again with the log, to say why */
    log[0] = 0;
    o.log_buf = log;
    o.log_size = log_size;
    o.log_level = 1;
    fd = bpf_prog_load((enum bpf_prog_type)type, name, "GPL",
                       (const struct bpf_insn *)insns, cnt, &o);
    return fd < 0 ? -errno : fd;
}

static inline int nx_map_create(int type, const char *name, uint32_t key,
                                uint32_t value, uint32_t entries)
{
    int fd = bpf_map_create((enum bpf_map_type)type, name, key, value, entries, NULL);
    return fd < 0 ? -errno : fd;
}

static inline int nx_map_set(int fd, uint32_t key, uint32_t value)
{
    return bpf_map_update_elem(fd, &key, &value, BPF_ANY) < 0 ? -errno : 0;
}

static inline int nx_map_del(int fd, uint32_t key)
{
    return bpf_map_delete_elem(fd, &key) < 0 ? -errno : 0;
}

/* 1 if key holds an entry, 0 if not, -errno (XSKMAP and PROG_ARRAY
 * lookups from user space are not allowed: use get_next_key). */
static inline int nx_map_keys(int fd, uint32_t *keys, uint32_t max)
{
    uint32_t k, next, n = 0;
    int first = 1;
    while (n < max) {
        if (bpf_map_get_next_key(fd, first ? NULL : &k, &next) < 0)
            break;
        first = 0;
        keys[n++] = next;
        k = next;
    }
    return (int)n;
}

static inline int nx_link_create(int prog_fd, int ifindex, uint32_t flags)
{
    LIBBPF_OPTS(bpf_link_create_opts, o);
    int fd;
    o.flags = flags;
    fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &o);
    return fd < 0 ? -errno : fd;
}

static inline int nx_xdp_attach(int ifindex, int prog_fd, uint32_t flags, int old_fd)
{
    LIBBPF_OPTS(bpf_xdp_attach_opts, o);
    if (old_fd >= 0) {
        o.old_prog_fd = old_fd;
        flags |= XDP_FLAGS_REPLACE;
    }
    return bpf_xdp_attach(ifindex, prog_fd, flags, &o) < 0 ? -errno : 0;
}

struct nx_prog_info {
    uint32_t id, type, nr_map_ids;
    uint32_t map_ids[16];
    char name[16];
    uint8_t tag[8];
};

static inline int nx_get_prog_info(int fd, struct nx_prog_info *out)
{
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    memset(out, 0, sizeof(*out));
    info.nr_map_ids = 16;
    info.map_ids = (uint64_t)(uintptr_t)out->map_ids;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
        return -errno;
    out->id = info.id;
    out->type = info.type;
    out->nr_map_ids = info.nr_map_ids < 16 ? info.nr_map_ids : 16;
    memcpy(out->name, info.name, sizeof(out->name));
    out->name[15] = 0;
    memcpy(out->tag, info.tag, 8);
    return 0;
}

struct nx_map_info {
    uint32_t id, type, key_size, value_size, max_entries;
    char name[16];
};

static inline int nx_get_map_info(int fd, struct nx_map_info *out)
{
    struct bpf_map_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
        return -errno;
    out->id = info.id;
    out->type = info.type;
    out->key_size = info.key_size;
    out->value_size = info.value_size;
    out->max_entries = info.max_entries;
    memcpy(out->name, info.name, sizeof(out->name));
    out->name[15] = 0;
    return 0;
}

struct nx_link_info {
    uint32_t id, type, prog_id, ifindex;
};

static inline int nx_get_link_info(int fd, struct nx_link_info *out)
{
    struct bpf_link_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0)
        return -errno;
    out->id = info.id;
    out->type = info.type;
    out->prog_id = info.prog_id;
    out->ifindex = info.type == BPF_LINK_TYPE_XDP ? info.xdp.ifindex : 0;
    return 0;
}

/* BPF_PROG_RUN of an XDP program on one frame (not live); the return
 * value of the program in *retval.  Returns 0 or -errno. */
static inline int nx_test_run(int prog_fd, const void *data, uint32_t len, uint32_t *retval)
{
    LIBBPF_OPTS(bpf_test_run_opts, o);
    o.data_in = data;
    o.data_size_in = len;
    o.repeat = 1;
    if (bpf_prog_test_run_opts(prog_fd, &o) < 0)
        return -errno;
    *retval = o.retval;
    return 0;
}

/* The same, run `repeat` times in the kernel; *ns: the mean time of one
 * run (the kernel's measure).  For benchmarks of steer programs. */
static inline int nx_test_run_repeat(int prog_fd, const void *data, uint32_t len,
                                     uint32_t repeat, uint32_t *retval, uint32_t *ns)
{
    LIBBPF_OPTS(bpf_test_run_opts, o);
    o.data_in = data;
    o.data_size_in = len;
    o.repeat = repeat;
    if (bpf_prog_test_run_opts(prog_fd, &o) < 0)
        return -errno;
    *retval = o.retval;
    *ns = o.duration;
    return 0;
}

static inline int nx_id_or_err(int rc)
{
    return rc < 0 ? -errno : rc;
}

#endif
