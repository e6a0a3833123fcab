// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
/*
 * nm-offload's in-kernel rule program: the stateless part of a rule file
 * (allow/deny by prefix, protocol and port; first match wins), run as the
 * queue's XDP filter, so a flood is dropped -- and valid packets passed to
 * the stack -- before any copy to user space.  Packets it cannot decide
 * alone go to the queue's AF_XDP socket (see mb_kern_abi.h).
 *
 * It computes exactly what mb_filter.h computes in user space: the same
 * parse (mb_parse.h, one parser for both: Ethernet, two VLAN tags, IPv4
 * with options and fragments, IPv6 with hop-by-hop/routing/destination-
 * options/fragment headers, the first four bytes of TCP/UDP/SCTP/UDP-Lite), the same
 * tuple-space index lookup (mb_tlookup) and in-order walk of the other
 * rules (mb_ruleset_eval).  Tests run both on the same frames.
 *
 * Built by setup.py with clang -target bpf; loaded by mb_kern.h.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../includes/mb_kern_abi.h"

#include "../includes/mb_parse.h"     /* the parser, shared with mb_filter.h */

#include "../includes/mb_match.h"     /* the rule match, shared with mb_filter.h */

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __type(key, __u32);
    __type(value, __u32);
    __uint(max_entries, 1);              /* replaced by the interface's map */
} xsks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct mbk_conf);
    __uint(max_entries, 1);
} mbk_conf SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct mbk_rule);
    __uint(max_entries, 1);              /* sized by the loader */
} mbk_rules SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, __u32);
    __uint(max_entries, 1);
} mbk_linear SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, struct mbk_group);
    __uint(max_entries, MBK_MAX_GROUPS);
} mbk_groups SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __type(key, struct mbk_key);
    __type(value, __u32);
    __uint(max_entries, 1);
} mbk_table SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, 1);              /* groups * MBK_BITS_WORDS */
} mbk_bits SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __type(key, __u32);
    __type(value, __u64);
    __uint(max_entries, MBK_C_RULES + 1);
} mbk_counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, MBK_SAMPLE_RING_BYTES);
} mbk_samples SEC(".maps");

struct pkt {
    __u32 len;
    __u16 ethertype;
    __u8 l3, proto, flags, vlans;
    __u16 sport, dport;
    __u64 shi, slo, dhi, dlo;            /* IPv4 as ::ffff:a.b.c.d */
};

/* direct packet access: a pointer to n bytes at off, or NULL past the end
 * (off is bounded first, so the verifier can follow it) */
#define AT(off, n) ({                                                       \
        __u32 o_ = (off) & 0xffff;                                          \
        const __u8 *q_ = data + o_;                                         \
        (q_ + (n) <= (const __u8 *)data_end) ? q_ : (const __u8 *)0; })

/* mb_parse.h's parser, over direct packet access */
#define MB_PARSE_NAME parse
#define MB_PARSE_PARAMS const void *data, const void *data_end
#define MB_PKT struct pkt
#define MB_LEN p->len
#define MB_AT(off, n) AT(off, n)
#define MB_ADDR4(p, is_src, b) do {                                          \
        __u64 v_ = 0xffffULL << 32 | bpf_ntohl(*(const __u32 *)(b));         \
        if (is_src) { (p)->shi = 0; (p)->slo = v_; }                        \
        else { (p)->dhi = 0; (p)->dlo = v_; } } while (0)
#define MB_ADDR6(p, is_src, b) do {                                          \
        __u64 h_ = bpf_be64_to_cpu(*(const __u64 *)(b));                     \
        __u64 l_ = bpf_be64_to_cpu(*(const __u64 *)((b) + 8));               \
        if (is_src) { (p)->shi = h_; (p)->slo = l_; }                       \
        else { (p)->dhi = h_; (p)->dlo = l_; } } while (0)
#define MB_OFFSETS(p, l3, l4) ((void)(l3), (void)(l4))
#define MB_INLINE static __always_inline
#include "../includes/mb_parse.h"

/* mb_match.h's rule match */
#define MB_MATCH_NAME matches
#define MB_MATCH_PARAMS const struct mbk_rule *r, const struct pkt *p
#define MB_SHI p->shi
#define MB_SLO p->slo
#define MB_DHI p->dhi
#define MB_DLO p->dlo
#include "../includes/mb_match.h"

struct walk {
    const struct pkt *p;
    __u32 best;             /* lowest matching indexed rule (or match_all/nrules) */
    __u32 ngroups;
    __u32 decided;          /* 1: rule `rule` decided; 2: a rate limit matched */
    __u32 rule;
};

/* mb_tlookup, one group per call (groups in ascending order of their
 * first rule: stop once the best match so far comes before it) */
static long group_step(__u32 j, void *arg)
{
    struct walk *w = arg;
    const struct pkt *p = w->p;
    struct mbk_group *g;
    struct mbk_key key;
    __u32 *ri, bit, wi;
    __u64 *word;
    __u8 m;

    if (j >= w->ngroups)
        return 1;
    g = bpf_map_lookup_elem(&mbk_groups, &j);
    if (!g || g->min_rule >= w->best)
        return 1;
    m = g->match;
    if ((m & MB_R_IP4) && p->l3 != MB_L3_IP4)
        return 0;
    if ((m & MB_R_IP6) && p->l3 != MB_L3_IP6)
        return 0;
    if ((m & (MB_R_SPORT | MB_R_DPORT)) && !(p->flags & MB_F_L4))
        return 0;
    key.k[0] = (m & MB_R_SRC) ? p->shi & g->src_mask_hi : 0;
    key.k[1] = (m & MB_R_SRC) ? p->slo & g->src_mask_lo : 0;
    key.k[2] = (m & MB_R_DST) ? p->dhi & g->dst_mask_hi : 0;
    key.k[3] = (m & MB_R_DST) ? p->dlo & g->dst_mask_lo : 0;
    key.k[4] = ((__u64)g->gi << 48) | ((__u64)((m & MB_R_PROTO) ? p->proto : 0) << 32) |
               ((__u64)((m & MB_R_SPORT) ? p->sport : 0) << 16) |
               ((m & MB_R_DPORT) ? p->dport : 0);
    bit = mbk_bit(key.k);
    wi = j * MBK_BITS_WORDS + (bit >> 6);
    word = bpf_map_lookup_elem(&mbk_bits, &wi);
    if (!word || !(*word & (1ULL << (bit & 63))))
        return 0;                            /* no rule of this group has the key */
    ri = bpf_map_lookup_elem(&mbk_table, &key);
    if (ri && *ri < w->best)
        w->best = *ri;
    return 0;
}

/* the in-order walk of the rules outside the index, up to `best` */
static long linear_step(__u32 j, void *arg)
{
    struct walk *w = arg;
    struct mbk_rule *r;
    __u32 *rip, ri;

    rip = bpf_map_lookup_elem(&mbk_linear, &j);
    if (!rip)
        return 1;
    ri = *rip;
    if (ri >= w->best)
        return 1;
    r = bpf_map_lookup_elem(&mbk_rules, &ri);
    if (!r)
        return 1;
    if (!matches(r, w->p))
        return 0;
    w->rule = ri;
    w->decided = r->action == MB_ACT_RATELIMIT ? 2 : 1;
    return 1;
}

static __always_inline void count(__u32 idx, __u64 n)
{
    __u64 *c = bpf_map_lookup_elem(&mbk_counts, &idx);
    if (c)
        *c += n;
}

/* the attack view: about 1 of K drops described to the worker, which reads
 * the ring buffer when it folds the counters (no wakeups).  Which ones: the
 * CPU's drop count scrambled (a multiplicative hash: no helper call, no
 * period an attacker can line a flood up with) below the threshold. */
static __always_inline void sample_drop(const struct mbk_conf *cf, const struct pkt *p,
                                        __u64 n)
{
    struct mbk_sample *s;
    if (cf->sample_thresh != 0xffffffff &&
            (__u32)((n * 0x9E3779B97F4A7C15ULL) >> 32) >= cf->sample_thresh)
        return;
    s = bpf_ringbuf_reserve(&mbk_samples, sizeof(*s), 0);
    if (!s) {
        count(MBK_C_SAMPLES_LOST, 1);
        return;
    }
    s->shi = p->shi;
    s->slo = p->slo;
    s->len = p->len;
    s->sport = p->sport;
    s->dport = p->dport;
    s->proto = p->proto;
    s->l3 = p->l3;
    s->flags = p->flags;
    s->_pad = 0;
    s->ethertype = p->ethertype;
    s->_pad2 = 0;
    bpf_ringbuf_submit(s, BPF_RB_NO_WAKEUP);
}

SEC("xdp")
int mb_rules(struct xdp_md *ctx)
{
    struct pkt p = {};
    struct walk w = {};
    struct mbk_conf *cf;
    struct mbk_rule *r;
    __u32 zero = 0, rule;
    int allow;

    cf = bpf_map_lookup_elem(&mbk_conf, &zero);
    if (!cf)
        return XDP_PASS;
    void *data = (void *)(long)ctx->data, *data_end = (void *)(long)ctx->data_end;
    p.len = (__u32)(data_end - data);     /* one buffer: no frags without BPF_F_XDP_HAS_FRAGS */
    parse(data, data_end, &p);
    w.p = &p;
    w.best = cf->match_all;                  /* nrules when there is no index */
    w.ngroups = cf->ngroups < MBK_MAX_GROUPS ? cf->ngroups : MBK_MAX_GROUPS;
    if (w.ngroups && p.l3 != MB_L3_NONE && !(p.flags & MB_F_MALFORMED))
        bpf_loop(w.ngroups, group_step, &w, 0);
    if (cf->nlinear)
        bpf_loop(cf->nlinear, linear_step, &w, 0);
    if (w.decided == 2)
        goto user;                           /* a rate limit: user space decides */
    rule = w.decided ? w.rule : w.best;
    if (rule < cf->nrules) {
        r = bpf_map_lookup_elem(&mbk_rules, &rule);
        if (!r)
            goto user;
        if (r->action == MB_ACT_RATELIMIT)
            goto user;
        allow = r->action == MB_ACT_ALLOW;
    } else {
        rule = cf->nrules;                   /* the default */
        allow = cf->default_allow;
    }
    if (allow && !cf->final)
        goto user;                           /* other stages must agree */
    if (!allow && cf->punt_drops)
        goto user;                           /* drops are being sampled */
    count(MBK_C_RULES + rule, 1);
    if (allow) {
        count(MBK_C_PASS, 1);
        count(MBK_C_PASS_BYTES, p.len);
        return XDP_PASS;
    }
    {
        __u32 di = MBK_C_DROP;
        __u64 *dc = bpf_map_lookup_elem(&mbk_counts, &di);
        if (dc) {
            *dc += 1;
            if (cf->sample_thresh)
                sample_drop(cf, &p, *dc);
        }
    }
    count(MBK_C_DROP_BYTES, p.len);
    return XDP_DROP;
user:
    count(MBK_C_USER, 1);
    count(MBK_C_USER_BYTES, p.len);
    if (cf->user_action)
        return cf->user_action;
    return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
