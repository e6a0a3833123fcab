/*
 * Sampled drops for the attack view: 1 of K dropped packets, parsed, into a
 * small ring in shared memory (the worker's part of the counter file,
 * middlebox/stats.py) that the supervisor reads (middlebox/attack.py).
 *
 * One writer per ring: the worker's loop thread (packets its filters drop,
 * mb_ds_drop, and the in-kernel rule program's samples it drains,
 * mb_ds_put).  Any number of readers: a reader remembers the last sequence
 * number it read; a slot holds sample n once its seq is n + 1 (0 while it is
 * written), so a reader that copies a slot and finds the same seq before and
 * after has a whole sample.  Samples older than the ring are overwritten;
 * readers see the gap in the sequence numbers.
 *
 * The cost is on dropped packets only, and small: a countdown per drop, a
 * parse and a 40-byte write per sample.  Which drops are sampled is random
 * (gaps of 1..2K-1, K on average), so a flood whose sources repeat with a
 * period cannot hide from the sample.
 */
#ifndef MB_DSAMPLE_H
#define MB_DSAMPLE_H

#include <stdint.h>
#include <string.h>

#include "mb_filter.h"

/* where the drop was decided */
enum { MB_DS_USER0 = 0, MB_DS_USER1 = 1, MB_DS_KERNEL = 2 };

struct mb_ds_slot {                 /* 40 bytes */
    uint64_t seq;                   /* n + 1 when it holds sample n; 0 while written */
    uint8_t src[16];                /* source address, IPv4 as ::ffff:a.b.c.d */
    uint32_t len;                   /* frame length */
    uint16_t sport;                 /* source port; the EtherType when not IP */
    uint16_t dport;
    uint8_t proto, l3, origin, flags;   /* IP protocol, 4/6/0, MB_DS_*, MB_F_* */
    uint32_t reserved;
};

struct mb_ds_ring {                 /* 64-byte header, then nslots slots */
    uint64_t seq;                   /* samples written so far */
    uint32_t nslots;                /* a power of two */
    uint32_t one_in;                /* K: about 1 of K drops is sampled; 0: none */
    uint64_t gap;                   /* writer: drops left until the next sample */
    uint64_t rng;                   /* writer: xorshift64 state */
    uint64_t lost;                  /* samples the kernel could not hand over */
    uint64_t reserved[3];
    struct mb_ds_slot slot[];
};

#define MB_DS_HEADER 64

static inline uint64_t mb_ds_next_gap(struct mb_ds_ring *r)
{
    uint64_t x = r->rng ? r->rng : 0x9E3779B97F4A7C15ULL;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->rng = x;
    if (r->one_in <= 1)
        return 1;
    return 1 + x % (2ULL * r->one_in - 1);
}

/* a free slot for the next sample (seq 0 while it is written) */
static inline struct mb_ds_slot *mb_ds_begin(struct mb_ds_ring *r)
{
    struct mb_ds_slot *s = &r->slot[r->seq & (r->nslots - 1)];
    __atomic_store_n(&s->seq, 0, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    return s;
}

static inline void mb_ds_commit(struct mb_ds_ring *r, struct mb_ds_slot *s)
{
    uint64_t n = r->seq;
    __atomic_store_n(&s->seq, n + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&r->seq, n + 1, __ATOMIC_RELEASE);
}

/* a packet the filters dropped: sampled about once per one_in drops */
static inline void mb_ds_drop(struct mb_ds_ring *r, const uint8_t *frame, uint32_t len,
                              uint8_t origin)
{
    struct mb_pkt p;
    struct mb_ds_slot *s;
    if (r->one_in == 0)
        return;
    if (r->gap > 1) {
        r->gap--;
        return;
    }
    r->gap = mb_ds_next_gap(r);
    mb_parse(frame, len, &p);
    s = mb_ds_begin(r);
    memcpy(s->src, p.src, 16);
    s->len = len;
    s->sport = p.l3 == MB_L3_NONE ? p.ethertype : p.sport;
    s->dport = p.dport;
    s->proto = p.proto;
    s->l3 = p.l3;
    s->origin = origin;
    s->flags = p.flags;
    s->reserved = 0;
    mb_ds_commit(r, s);
}

#endif
