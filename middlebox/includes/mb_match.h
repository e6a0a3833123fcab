/* mb_match.h: whether one rule matches a parsed packet, for user space
 * (mb_filter.h: mb_rule_matches) and for the in-kernel rule program
 * (bpf/mb_rules.bpf.c: matches), with the rule constants both use.
 *
 * The includer defines, before including this file (after mb_parse.h):
 *
 *   MB_MATCH_NAME     the function's name
 *   MB_MATCH_PARAMS   its parameters, among them `r` (a rule: match, proto,
 *                     src/dst value and mask halves, port ranges) and `p`
 *                     (a packet as mb_parse.h fills it)
 *   MB_SHI, MB_SLO, MB_DHI, MB_DLO   the packet's addresses as 64-bit halves
 *   MB_INLINE         "static inline" or "static __always_inline"
 *
 * Like mb_parse.h it includes nothing and uses plain C types only.
 */
#ifndef MB_MATCH_H
#define MB_MATCH_H

enum { MB_ACT_DENY = 0, MB_ACT_ALLOW = 1, MB_ACT_RATELIMIT = 2 };

#define MB_R_PROTO   0x01
#define MB_R_SRC     0x02
#define MB_R_DST     0x04
#define MB_R_SPORT   0x08
#define MB_R_DPORT   0x10
#define MB_R_IP4     0x20   /* only IPv4 */
#define MB_R_IP6     0x40   /* only IPv6 */

#endif /* MB_MATCH_H */

#ifdef MB_MATCH_NAME
MB_INLINE int MB_MATCH_NAME(MB_MATCH_PARAMS)
{
    unsigned char m = r->match;
    if (!m)
        return 1;
    if (p->l3 == MB_L3_NONE || (p->flags & MB_F_MALFORMED))
        return 0;
    if ((m & MB_R_IP4) && p->l3 != MB_L3_IP4)
        return 0;
    if ((m & MB_R_IP6) && p->l3 != MB_L3_IP6)
        return 0;
    if ((m & MB_R_PROTO) && p->proto != r->proto)
        return 0;
    if ((m & MB_R_SRC) && (((MB_SHI & r->src_mask_hi) != r->src_hi) ||
                           ((MB_SLO & r->src_mask_lo) != r->src_lo)))
        return 0;
    if ((m & MB_R_DST) && (((MB_DHI & r->dst_mask_hi) != r->dst_hi) ||
                           ((MB_DLO & r->dst_mask_lo) != r->dst_lo)))
        return 0;
    if (m & (MB_R_SPORT | MB_R_DPORT)) {
        if (!(p->flags & MB_F_L4))
            return 0;
        if ((m & MB_R_SPORT) && (p->sport < r->sport_lo || p->sport > r->sport_hi))
            return 0;
        if ((m & MB_R_DPORT) && (p->dport < r->dport_lo || p->dport > r->dport_hi))
            return 0;
    }
    return 1;
}
#undef MB_MATCH_NAME
#endif
