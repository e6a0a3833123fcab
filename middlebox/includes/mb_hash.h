/*
 * Symmetric flow hash: both directions of a flow hash alike.
 * IPv4/IPv6 5-tuple (addresses and ports ordered before mixing); other
 * frames: the two MAC addresses ordered.  Bounds-checked via mb_parse.
 */
#ifndef MB_HASH_H
#define MB_HASH_H

#include <stdint.h>
#include <string.h>
#include "mb_filter.h"

static inline uint64_t mb_mix64(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static inline uint64_t mb_words(const uint8_t *a, int n)
{
    uint64_t h = 0;
    int i;
    for (i = 0; i < n; i++)
        h = (h << 8 | a[i]) ^ (h >> 56) * 0x100000001b3ULL;
    return h;
}

static inline uint32_t mb_sym_hash(const uint8_t *f, uint32_t len)
{
    struct mb_pkt p;
    uint64_t a, b, h;
    mb_parse(f, len, &p);
    if (p.l3 != 0 && !(p.flags & MB_F_MALFORMED)) {
        a = mb_words(p.src, 16);
        b = mb_words(p.dst, 16);
        h = (a < b ? a : b) * 0x9E3779B97F4A7C15ULL ^ (a < b ? b : a);
        if (p.flags & MB_F_L4) {
            uint32_t lo = p.sport < p.dport ? p.sport : p.dport;
            uint32_t hi = p.sport < p.dport ? p.dport : p.sport;
            h ^= mb_mix64(((uint64_t)lo << 16 | hi) + p.proto);
        } else {
            h ^= p.proto;
        }
        return (uint32_t)mb_mix64(h);
    }
    if (len >= 12) {
        a = mb_words(f, 6);
        b = mb_words(f + 6, 6);
        return (uint32_t)mb_mix64((a < b ? a : b) * 0x9E3779B97F4A7C15ULL ^ (a < b ? b : a));
    }
    return 0;
}

#endif
