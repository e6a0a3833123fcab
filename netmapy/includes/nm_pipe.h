/*
 * netmapy pipes: netmap pipes in shared memory between processes.
 *
 * A domain (one shared-memory file per parent name) holds a buffer pool and
 * up to max_pipes pipes.  A pipe has two ends, master '{' and slave '}', each
 * with one TX and one RX ring (struct netmap_ring, in the shared memory).
 * Each direction is a single-producer single-consumer link:
 *
 *   producer txsync: validates the slots the user handed over, publishes
 *       its TX head (release), wakes the consumer if it sleeps, and reclaims
 *       TX slots the consumer has taken (tail = prod_hwcur - 1).
 *   consumer rxsync: takes the published slots by swapping buffer indices
 *       between the producer's TX slots and its own free RX slots (zero copy),
 *       publishes prod_hwcur (release), wakes the producer if it waits for
 *       space.
 *
 * Nothing is dropped: a full RX ring leaves the slots in the producer's TX
 * ring, whose free space then drops to zero.  Sleeping uses an eventcount:
 * the sleeper sets a waiting flag, fences, re-checks, then poll()s a FIFO
 * that the other side writes one byte to after it fences and sees the flag.
 */
#ifndef NETMAPY_NM_PIPE_H
#define NETMAPY_NM_PIPE_H

#include <errno.h>
#include <poll.h>
#include <unistd.h>
#include "nm_abi.h"

#define NMP_MAGIC   0x31657069707970ULL      /* "pypipe1" */
#define NMP_VERSION 2
#define NMP_CL      64

struct __attribute__((aligned(NMP_CL))) nmp_link {   /* one direction */
    uint32_t prod_head;           /* producer's published TX head */
    uint8_t  _pad0[NMP_CL - 4];
    uint32_t prod_hwcur;          /* next producer TX slot to take */
    uint8_t  _pad1[NMP_CL - 4];
    uint32_t cons_waiting;        /* consumer sleeps for data */
    uint32_t prod_waiting;        /* producer sleeps for space */
    uint64_t moved;               /* packets moved over this link */
    uint8_t  _pad2[NMP_CL - 16];
};

struct nmp_end {
    int32_t  pid;                 /* owner, 0 when closed */
    uint32_t opens;               /* how many times this end was opened */
    uint64_t starttime;           /* owner's start time (pid reuse guard) */
    uint64_t ring_off[2];         /* [NR_TX], [NR_RX] from domain base */
};

struct nmp_pipe {
    int32_t  in_use;
    uint32_t id;                  /* the N of {N / }N */
    struct nmp_end end[2];        /* 0 master '{', 1 slave '}' */
    struct nmp_link link[2];      /* 0: master -> slave, 1: slave -> master */
};

struct nmp_domain {
    uint64_t magic;
    uint32_t version;
    uint32_t ready;
    uint64_t size;
    uint32_t num_slots;
    uint32_t buf_size;
    uint32_t nbufs;               /* valid indices: [2, nbufs + 2) */
    uint32_t max_pipes;
    uint64_t pipes_off, stack_off, rings_off, bufs_off;
    uint32_t free_top;            /* entries on the free stack */
    uint32_t next_fresh;          /* next never-allocated buffer index */
    uint32_t pipes_in_use;
    uint64_t created;             /* creation time, for listing */
};

static inline struct nmp_pipe *nmp_pipe_at(struct nmp_domain *d, uint32_t i)
{
    return (struct nmp_pipe *)((char *)d + d->pipes_off) + i;
}

/* ring k of a domain: pipes * 2 ends * 2 dirs */
static inline uint64_t nmp_ring_off(struct nmp_domain *d, uint32_t pipe, int end, int dir)
{
    return d->rings_off + (uint64_t)((pipe * 2 + end) * 2 + dir) * nm_ring_size(d->num_slots);
}

static inline void nmp_ring_doorbell(int fd)
{
    char c = 1;
    ssize_t r = write(fd, &c, 1);   /* EAGAIN: a wakeup is already pending */
    (void)r;
}

static inline void nmp_drain(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
        ;
}

/*
 * Producer side.  hwcur: the head published last time (updated here).
 * Returns 0, or -EINVAL when a slot handed over is bad (*bad = its index).
 */
static inline int nmp_txsync(struct nmp_link *L, struct netmap_ring *tx,
                             uint32_t *hwcur, uint32_t max_idx,
                             int peer_bell, uint32_t *bad)
{
    uint32_t n = tx->num_slots, h = tx->head, i;
    if (h != *hwcur) {
        for (i = *hwcur; i != h; i = i + 1 == n ? 0 : i + 1) {
            struct netmap_slot *s = &tx->slot[i];
            if (s->buf_idx < 2 || s->buf_idx >= max_idx || s->len > tx->nr_buf_size) {
                *bad = i;
                return -EINVAL;
            }
        }
        __atomic_store_n(&L->prod_head, h, __ATOMIC_RELEASE);
        *hwcur = h;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(&L->cons_waiting, __ATOMIC_RELAXED) &&
            __atomic_exchange_n(&L->cons_waiting, 0, __ATOMIC_ACQ_REL))
            nmp_ring_doorbell(peer_bell);
    }
    uint32_t pc = __atomic_load_n(&L->prod_hwcur, __ATOMIC_ACQUIRE);
    tx->tail = pc == 0 ? n - 1 : pc - 1;
    if (tx->tail == tx->head) {
        /* no room: ask the consumer to wake us, then look once more */
        __atomic_store_n(&L->prod_waiting, 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        pc = __atomic_load_n(&L->prod_hwcur, __ATOMIC_ACQUIRE);
        tx->tail = pc == 0 ? n - 1 : pc - 1;
    }
    return 0;
}

/*
 * Consumer side: take what the producer published, as far as our RX ring
 * has room.  The caller validated rx->head; it is our hwcur.
 * Returns the number of packets moved.
 */
static inline uint32_t nmp_rxsync(struct nmp_link *L, struct netmap_ring *ptx,
                                  struct netmap_ring *rx, int peer_bell)
{
    uint32_t n = rx->num_slots, pn = ptx->num_slots, moved = 0;
    for (;;) {
        uint32_t ph = __atomic_load_n(&L->prod_head, __ATOMIC_ACQUIRE);
        uint32_t pc = L->prod_hwcur;
        uint32_t t = rx->tail;
        uint32_t avail = nm_ring_dist(pc, ph, pn);
        uint32_t room = (rx->head + n - t - 1) % n;
        uint32_t k = avail < room ? avail : room, j;
        for (j = 0; j < k; j++) {
            struct netmap_slot *ps = &ptx->slot[pc], *rs = &rx->slot[t];
            uint32_t idx = rs->buf_idx;
            rs->buf_idx = ps->buf_idx;
            rs->len = ps->len;
            rs->flags = ps->flags | NS_BUF_CHANGED;
            ps->buf_idx = idx;
            ps->flags |= NS_BUF_CHANGED;
            pc = pc + 1 == pn ? 0 : pc + 1;
            t = t + 1 == n ? 0 : t + 1;
        }
        if (k) {
            __atomic_store_n(&L->prod_hwcur, pc, __ATOMIC_RELEASE);
            __atomic_store_n(&rx->tail, t, __ATOMIC_RELEASE);
            L->moved += k;
            moved += k;
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (__atomic_load_n(&L->prod_waiting, __ATOMIC_RELAXED) &&
                __atomic_exchange_n(&L->prod_waiting, 0, __ATOMIC_ACQ_REL))
                nmp_ring_doorbell(peer_bell);
        }
        if (rx->head != rx->tail || k == room)
            return moved;     /* something to read, or no room left */
        /* empty: arm the wakeup, then look once more */
        __atomic_store_n(&L->cons_waiting, 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (__atomic_load_n(&L->prod_head, __ATOMIC_ACQUIRE) == L->prod_hwcur)
            return moved;
    }
}

_Static_assert(sizeof(struct nmp_link) == 3 * NMP_CL, "nmp_link layout");
_Static_assert(sizeof(struct nmp_pipe) % NMP_CL == 0, "nmp_pipe layout");

#endif
