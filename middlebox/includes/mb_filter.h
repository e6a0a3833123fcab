/*
 * middlebox filters: packet parsing and rule matching in C.
 *
 * mb_parse() reads Ethernet (up to two VLAN tags), IPv4 or IPv6 and the
 * first L4 header of a frame into struct mb_pkt, never reading past `len`
 * (the parser is mb_parse.h's, the one the in-kernel rule program uses
 * too): anything malformed (short frame, bad IHL, bad total length) leaves
 * the packet marked as such instead of being read further.
 *
 * A rule set is an array of struct mb_rule evaluated in order, first match
 * wins; "ratelimit" rules keep a per-source token bucket in a fixed-size
 * hash table and drop what exceeds the rate, letting the rest fall through.
 */
#ifndef MB_FILTER_H
#define MB_FILTER_H

#include <stdint.h>
#include <string.h>

#include "mb_parse.h"      /* MB_ETH_*, MB_L3_*, MB_F_*; the parser below */

struct mb_pkt {
    uint16_t ethertype;          /* after VLAN tags */
    uint8_t  l3;                 /* MB_L3_* */
    uint8_t  proto;              /* IP protocol / next header */
    uint8_t  flags;              /* MB_F_* */
    uint8_t  vlans;
    uint16_t sport, dport;
    uint8_t  src[16], dst[16];   /* IPv4 as ::ffff:a.b.c.d */
    uint16_t l3_off, l4_off;
};

static inline uint16_t mb_rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static inline void mb_v4mapped(uint8_t *out, const uint8_t *a)
{
    memset(out, 0, 10);
    out[10] = out[11] = 0xff;
    memcpy(out + 12, a, 4);
}

/* the parser is mb_parse.h's, shared with the in-kernel rule program */
#define MB_PARSE_NAME mb_parse_frame
#define MB_PARSE_PARAMS const uint8_t *f, uint32_t flen
#define MB_PKT struct mb_pkt
#define MB_LEN flen
#define MB_AT(off, n) ((uint64_t)(off) + (n) <= flen ? f + (off) : (const uint8_t *)0)
#define MB_ADDR4(p, is_src, b) mb_v4mapped((is_src) ? (p)->src : (p)->dst, (b))
#define MB_ADDR6(p, is_src, b) memcpy((is_src) ? (p)->src : (p)->dst, (b), 16)
#define MB_OFFSETS(p, l3, l4) ((p)->l3_off = (uint16_t)(l3), (p)->l4_off = (uint16_t)(l4))
#define MB_INLINE static inline
#include "mb_parse.h"

static inline void mb_parse(const uint8_t *f, uint32_t len, struct mb_pkt *p)
{
    memset(p, 0, sizeof(*p));
    mb_parse_frame(f, len, p);
}

/* ------------------------------------------------------------------ rules */
#include "mb_match.h"      /* MB_ACT_*, MB_R_*; the rule match below */

struct mb_rule {
    uint8_t  action;
    uint8_t  match;          /* MB_R_* bits: which fields must match */
    uint8_t  proto;
    uint8_t  _pad;
    uint16_t sport_lo, sport_hi, dport_lo, dport_hi;
    uint64_t src_hi, src_lo, src_mask_hi, src_mask_lo;
    uint64_t dst_hi, dst_lo, dst_mask_hi, dst_mask_lo;
    /* ratelimit: tokens per second (scaled by 1e9 for ns arithmetic) and burst */
    uint64_t rate_pps, burst;
};

struct mb_bucket {
    uint64_t key_hi, key_lo;
    uint32_t rule;
    uint32_t _pad;
    uint64_t tokens_nano;    /* tokens * 1e9 */
    uint64_t last_ns;
};

/*
 * Tuple-space index (optional): rules that are plain allow/deny with exact
 * ports (or none) are grouped by "shape" (which fields, which prefix
 * lengths); a group is a hash table from the masked packet fields to the
 * first rule of that shape that matches them.  Evaluation looks the packet
 * up once per group and takes the lowest rule index, then walks the rules
 * outside the index (port ranges, rate limits) that come before it, in
 * order.  First match wins, exactly as the linear walk.
 */
struct mb_group {
    uint8_t  match;          /* MB_R_* of every rule in the group */
    uint8_t  _pad[7];
    uint64_t src_mask_hi, src_mask_lo, dst_mask_hi, dst_mask_lo;
};

struct mb_tentry {
    uint64_t k[5];           /* src hi/lo, dst hi/lo, proto|sport|dport|group */
    uint32_t rule;           /* rule index + 1; 0: empty */
    uint32_t _pad;
};

struct mb_ruleset {
    struct mb_rule *rules;
    uint32_t nrules;
    uint8_t  default_action;
    uint32_t nbuckets;       /* power of two */
    struct mb_bucket *buckets;
    /* the index (linear == NULL: not indexed, walk every rule) */
    uint32_t ngroups;
    struct mb_group *groups;
    uint32_t tsize;          /* power of two */
    struct mb_tentry *table;
    uint32_t nlinear;
    uint32_t *linear;        /* rule indices outside the index, ascending */
    uint32_t match_all;      /* lowest rule with no conditions, or nrules */
};

static inline void mb_addr_words(const uint8_t *a, uint64_t *hi, uint64_t *lo)
{
    uint64_t h = 0, l = 0;
    int i;
    for (i = 0; i < 8; i++) h = h << 8 | a[i];
    for (i = 8; i < 16; i++) l = l << 8 | a[i];
    *hi = h;
    *lo = l;
}

/* the rule match is mb_match.h's, shared with the in-kernel rule program */
#define MB_MATCH_NAME mb_rule_matches
#define MB_MATCH_PARAMS const struct mb_rule *r, const struct mb_pkt *p, \
                        uint64_t shi, uint64_t slo, uint64_t dhi, uint64_t dlo
#define MB_SHI shi
#define MB_SLO slo
#define MB_DHI dhi
#define MB_DLO dlo
#include "mb_match.h"

static inline uint64_t mb_hash(uint64_t hi, uint64_t lo, uint32_t rule)
{
    uint64_t h = hi * 0x9E3779B97F4A7C15ULL ^ lo * 0xC2B2AE3D27D4EB4FULL ^ rule;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return h ^ (h >> 32);
}

/* token bucket of (source, rule); returns 1 if the packet may pass */
static inline int mb_ratelimit(struct mb_ruleset *rs, uint32_t ri, uint64_t shi, uint64_t slo,
                               uint64_t now_ns)
{
    const struct mb_rule *r = &rs->rules[ri];
    struct mb_bucket *b;
    uint64_t h = mb_hash(shi, slo, ri);
    uint32_t i = (uint32_t)h & (rs->nbuckets - 1), j;
    uint64_t cap = r->burst * 1000000000ULL;
    /* two-way set: reuse the entry for this key, else the older one */
    b = &rs->buckets[i];
    j = i ^ 1;
    if (!(b->key_hi == shi && b->key_lo == slo && b->rule == ri && b->last_ns)) {
        struct mb_bucket *c = &rs->buckets[j];
        if (c->key_hi == shi && c->key_lo == slo && c->rule == ri && c->last_ns)
            b = c;
        else {
            if (c->last_ns < b->last_ns)
                b = c;
            b->key_hi = shi;
            b->key_lo = slo;
            b->rule = ri;
            b->tokens_nano = cap;
            b->last_ns = now_ns ? now_ns : 1;
        }
    }
    if (now_ns > b->last_ns) {
        /* rate_pps <= 1e8 (the parser's limit) and elapsed <= 1e10: no overflow */
        uint64_t elapsed = now_ns - b->last_ns;
        uint64_t add;
        if (elapsed > 10000000000ULL)
            elapsed = 10000000000ULL;
        add = elapsed * r->rate_pps;
        b->tokens_nano = b->tokens_nano + add > cap ? cap : b->tokens_nano + add;
        b->last_ns = now_ns;
    }
    if (b->tokens_nano >= 1000000000ULL) {
        b->tokens_nano -= 1000000000ULL;
        return 1;
    }
    return 0;
}

static inline uint64_t mb_tkey_hash(const uint64_t *k)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    int i;
    for (i = 0; i < 5; i++)
        h = (h ^ k[i]) * 0xff51afd7ed558ccdULL, h ^= h >> 31;
    return h;
}

/* the key a rule (or a packet, for that group) has: 5 words */
static inline void mb_tkey(const struct mb_group *g, uint32_t gi, uint64_t shi, uint64_t slo,
                           uint64_t dhi, uint64_t dlo, uint8_t proto, uint16_t sport,
                           uint16_t dport, uint64_t *k)
{
    k[0] = (g->match & MB_R_SRC) ? shi & g->src_mask_hi : 0;
    k[1] = (g->match & MB_R_SRC) ? slo & g->src_mask_lo : 0;
    k[2] = (g->match & MB_R_DST) ? dhi & g->dst_mask_hi : 0;
    k[3] = (g->match & MB_R_DST) ? dlo & g->dst_mask_lo : 0;
    k[4] = ((uint64_t)gi << 48) | ((uint64_t)((g->match & MB_R_PROTO) ? proto : 0) << 32) |
           ((uint64_t)((g->match & MB_R_SPORT) ? sport : 0) << 16) |
           ((g->match & MB_R_DPORT) ? dport : 0);
}

/* insert rule ri (of group gi) unless a lower rule has the same key */
static inline int mb_tinsert(struct mb_ruleset *rs, uint32_t gi, uint32_t ri)
{
    const struct mb_rule *r = &rs->rules[ri];
    uint64_t k[5];
    uint32_t i, n = 0;
    mb_tkey(&rs->groups[gi], gi, r->src_hi, r->src_lo, r->dst_hi, r->dst_lo, r->proto,
            r->sport_lo, r->dport_lo, k);
    i = (uint32_t)mb_tkey_hash(k) & (rs->tsize - 1);
    while (rs->table[i].rule && n++ < rs->tsize) {
        if (!memcmp(rs->table[i].k, k, sizeof(k)))
            return 0;                       /* an earlier rule already covers it */
        i = (i + 1) & (rs->tsize - 1);
    }
    if (n >= rs->tsize)
        return -1;
    memcpy(rs->table[i].k, k, sizeof(k));
    rs->table[i].rule = ri + 1;
    return 0;
}

/* lowest indexed rule matching the packet, or nrules */
static inline uint32_t mb_tlookup(const struct mb_ruleset *rs, const struct mb_pkt *p,
                                  uint64_t shi, uint64_t slo, uint64_t dhi, uint64_t dlo)
{
    uint32_t best = rs->match_all, gi;
    uint64_t k[5];
    if (p->l3 == MB_L3_NONE || (p->flags & MB_F_MALFORMED))
        return best;
    for (gi = 0; gi < rs->ngroups; gi++) {
        const struct mb_group *g = &rs->groups[gi];
        uint32_t i, n = 0;
        if ((g->match & MB_R_IP4) && p->l3 != MB_L3_IP4)
            continue;
        if ((g->match & MB_R_IP6) && p->l3 != MB_L3_IP6)
            continue;
        if ((g->match & (MB_R_SPORT | MB_R_DPORT)) && !(p->flags & MB_F_L4))
            continue;
        mb_tkey(g, gi, shi, slo, dhi, dlo, p->proto, p->sport, p->dport, k);
        i = (uint32_t)mb_tkey_hash(k) & (rs->tsize - 1);
        while (rs->table[i].rule && n++ < rs->tsize) {
            if (!memcmp(rs->table[i].k, k, sizeof(k))) {
                if (rs->table[i].rule - 1 < best)
                    best = rs->table[i].rule - 1;
                break;
            }
            i = (i + 1) & (rs->tsize - 1);
        }
    }
    return best;
}

/*
 * Verdict of a rule set for a parsed packet: 1 accept, 0 drop.
 * *rule_out: the index of the deciding rule, or nrules for the default.
 * *limited: set when a ratelimit rule dropped it.
 */
static inline int mb_ruleset_eval(struct mb_ruleset *rs, const struct mb_pkt *p, uint64_t now_ns,
                                  uint32_t *rule_out, int *limited)
{
    uint64_t shi, slo, dhi, dlo;
    uint32_t best = rs->nrules, n = rs->nrules, j;
    mb_addr_words(p->src, &shi, &slo);
    mb_addr_words(p->dst, &dhi, &dlo);
    *limited = 0;
    if (rs->linear) {
        /* indexed: the best grouped rule, then walk the others before it */
        best = mb_tlookup(rs, p, shi, slo, dhi, dlo);
        n = rs->nlinear;
    }
    for (j = 0; j < n; j++) {
        uint32_t ri = rs->linear ? rs->linear[j] : j;
        const struct mb_rule *r = &rs->rules[ri];
        if (ri >= best)
            break;
        if (!mb_rule_matches(r, p, shi, slo, dhi, dlo))
            continue;
        if (r->action == MB_ACT_RATELIMIT) {
            if (mb_ratelimit(rs, ri, shi, slo, now_ns))
                continue;          /* within the rate: keep evaluating */
            *rule_out = ri;
            *limited = 1;
            return 0;
        }
        *rule_out = ri;
        return r->action == MB_ACT_ALLOW;
    }
    *rule_out = best;
    if (best < rs->nrules)
        return rs->rules[best].action == MB_ACT_ALLOW;
    return rs->default_action == MB_ACT_ALLOW;
}

#endif
