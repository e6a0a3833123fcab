/*
 * netmapy: the netmap user ABI (API 14), written from the published layout.
 *
 * Every backend presents these exact structures, so a loop written against
 * them runs on real netmap and on netmapy's emulated backends alike.
 * Layout facts are checked below with static asserts (x86_64/aarch64 LP64).
 */
#ifndef NETMAPY_NM_ABI_H
#define NETMAPY_NM_ABI_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>

#define NM_API_VERSION      14
#define NM_CACHE_ALIGN      128
#define NM_IFNAMSIZ         16

/* slot flags */
#define NS_BUF_CHANGED  0x0001  /* buf_idx changed: reload the mapping */
#define NS_REPORT       0x0002  /* ask for a completion report */
#define NS_FORWARD      0x0004  /* forward to the other side (host/NIC) */
#define NS_NO_LEARN     0x0008
#define NS_INDIRECT     0x0010
#define NS_MOREFRAG     0x0020
#define NS_TXMON        0x0040

/* ring flags */
#define NR_TIMESTAMP    0x0002
#define NR_FORWARD      0x0004

/* ring->dir as the netmap kernel writes it (its enum txrx): RX 0, TX 1.
 * (netmap.h's comment says the opposite; the kernel's value is what counts.) */
#define NR_RX 0
#define NR_TX 1

struct netmap_slot {
    uint32_t buf_idx;
    uint16_t len;
    uint16_t flags;
    uint64_t ptr;
};

struct netmap_ring {
    int64_t  buf_ofs;        /* buffers start at (char*)ring + buf_ofs */
    uint32_t num_slots;
    uint32_t nr_buf_size;
    uint16_t ringid;
    uint16_t dir;            /* NR_RX (0) or NR_TX (1) */
    uint32_t head;           /* (u) first slot the user owns */
    uint32_t cur;            /* (u) wakeup point */
    uint32_t tail;           /* (k) first slot the kernel owns */
    uint32_t flags;
    struct timeval ts;       /* (k) time of last sync */
    uint64_t offset_mask;
    uint64_t buf_align;
    uint8_t  sem[128] __attribute__((aligned(NM_CACHE_ALIGN)));
    struct netmap_slot slot[0];
};

struct netmap_if {
    char     ni_name[NM_IFNAMSIZ];
    uint32_t ni_version;
    uint32_t ni_flags;
    uint32_t ni_tx_rings;
    uint32_t ni_rx_rings;
    uint32_t ni_bufs_head;
    uint32_t ni_host_tx_rings;
    uint32_t ni_host_rx_rings;
    uint32_t ni_spare1[3];
    ssize_t  ring_ofs[0];
};

_Static_assert(sizeof(struct netmap_slot) == 16, "netmap_slot size");
_Static_assert(offsetof(struct netmap_ring, num_slots) == 8, "num_slots");
_Static_assert(offsetof(struct netmap_ring, nr_buf_size) == 12, "nr_buf_size");
_Static_assert(offsetof(struct netmap_ring, ringid) == 16, "ringid");
_Static_assert(offsetof(struct netmap_ring, dir) == 18, "dir");
_Static_assert(offsetof(struct netmap_ring, head) == 20, "head");
_Static_assert(offsetof(struct netmap_ring, cur) == 24, "cur");
_Static_assert(offsetof(struct netmap_ring, tail) == 28, "tail");
_Static_assert(offsetof(struct netmap_ring, flags) == 32, "flags");
_Static_assert(offsetof(struct netmap_ring, ts) == 40, "ts");
_Static_assert(offsetof(struct netmap_ring, offset_mask) == 56, "offset_mask");
_Static_assert(offsetof(struct netmap_ring, buf_align) == 64, "buf_align");
_Static_assert(offsetof(struct netmap_ring, sem) == 128, "sem");
_Static_assert(offsetof(struct netmap_ring, slot) == 256, "slot[]");
_Static_assert(sizeof(struct netmap_ring) == 256, "netmap_ring size");
_Static_assert(offsetof(struct netmap_if, ni_version) == 16, "ni_version");
_Static_assert(offsetof(struct netmap_if, ni_bufs_head) == 32, "ni_bufs_head");
_Static_assert(offsetof(struct netmap_if, ring_ofs) == 56, "ring_ofs");

/* ---- the classic netmap_user.h helpers, as inline functions ---- */

static inline char *NETMAP_BUF(struct netmap_ring *r, uint32_t idx)
{
    return (char *)r + r->buf_ofs + (int64_t)idx * r->nr_buf_size;
}

static inline uint32_t NETMAP_BUF_IDX(struct netmap_ring *r, const char *buf)
{
    return (uint32_t)((buf - ((char *)r + r->buf_ofs)) / r->nr_buf_size);
}

static inline struct netmap_ring *NETMAP_TXRING(struct netmap_if *nifp, uint32_t i)
{
    return (struct netmap_ring *)((char *)nifp + nifp->ring_ofs[i]);
}

static inline struct netmap_ring *NETMAP_RXRING(struct netmap_if *nifp, uint32_t i)
{
    return (struct netmap_ring *)((char *)nifp +
        nifp->ring_ofs[i + nifp->ni_tx_rings + nifp->ni_host_tx_rings]);
}

static inline uint32_t nm_ring_next(struct netmap_ring *r, uint32_t i)
{
    return i + 1 == r->num_slots ? 0 : i + 1;
}

/* slots the user owns: received packets (RX) or free slots (TX) */
static inline uint32_t nm_ring_space(struct netmap_ring *r)
{
    int32_t n = (int32_t)r->tail - (int32_t)r->head;
    if (n < 0)
        n += r->num_slots;
    return (uint32_t)n;
}

static inline int nm_ring_empty(struct netmap_ring *r)
{
    return r->head == r->tail;
}

/* advance head and cur together (publish a batch) */
static inline void nm_ring_advance(struct netmap_ring *r, uint32_t n)
{
    uint32_t h = r->head + n;
    if (h >= r->num_slots)
        h -= r->num_slots;
    r->head = r->cur = h;
}

/* distance from a to b going forward in a ring of n slots */
static inline uint32_t nm_ring_dist(uint32_t a, uint32_t b, uint32_t n)
{
    return b >= a ? b - a : b + n - a;
}

/* size of a ring with n slots, rounded to the cache alignment */
static inline size_t nm_ring_size(uint32_t num_slots)
{
    size_t s = sizeof(struct netmap_ring) + (size_t)num_slots * sizeof(struct netmap_slot);
    return (s + NM_CACHE_ALIGN - 1) & ~(size_t)(NM_CACHE_ALIGN - 1);
}

#endif
