/* mb_parse.h: the middlebox's one packet parser, for user space
 * (mb_filter.h: mb_parse) and for the in-kernel rule program
 * (bpf/mb_rules.bpf.c: parse), so both read a frame the same way.
 *
 * It reads Ethernet (up to two VLAN tags), IPv4 (options, fragments) or
 * IPv6 (hop-by-hop, routing, destination-options and fragment headers, at
 * most 8) and the first four bytes of TCP/UDP/SCTP/UDP-Lite, never past the
 * frame: every load goes through MB_AT, which gives a pointer to n bytes at
 * an offset or NULL past the end (in BPF, a bounds check the verifier can
 * follow).  Anything malformed (short frame, bad IHL, bad total length)
 * marks the packet MB_F_MALFORMED instead of being read further.
 *
 * The includer defines, before including this file:
 *
 *   MB_PARSE_NAME           the function's name
 *   MB_PARSE_PARAMS         its parameters before the result
 *   MB_PKT                  the result's type (fields ethertype, l3, proto,
 *                           flags, vlans, sport, dport; zeroed by the caller)
 *   MB_LEN                  the frame's length (an expression)
 *   MB_AT(off, n)           const unsigned char * to n bytes at off, or NULL
 *   MB_ADDR4(p, is_src, b)  store an IPv4 address (b: its 4 bytes; is_src:
 *                           1 for the source, 0 for the destination)
 *   MB_ADDR6(p, is_src, b)  store an IPv6 address (b: its 16 bytes)
 *   MB_OFFSETS(p, l3, l4)   record where L3 / L4 start (may do nothing;
 *                           l4 is 0 until it is known)
 *   MB_INLINE               "static inline" or "static __always_inline"
 *
 * This file includes nothing (BPF programs cannot include user space's
 * headers): it uses plain C types only.
 */
#ifndef MB_PARSE_H
#define MB_PARSE_H

#define MB_ETH_IP4   0x0800
#define MB_ETH_IP6   0x86DD
#define MB_ETH_VLAN  0x8100
#define MB_ETH_QINQ  0x88A8

enum { MB_L3_NONE = 0, MB_L3_IP4 = 4, MB_L3_IP6 = 6 };

/* what the parser found */
#define MB_F_MALFORMED  0x01    /* L3 header present but broken */
#define MB_F_FRAG       0x02    /* an IP fragment */
#define MB_F_LATER_FRAG 0x04    /* a fragment other than the first: no L4 */
#define MB_F_L4         0x08    /* ports (TCP/UDP/SCTP) were read */

#endif /* MB_PARSE_H */

#ifdef MB_PARSE_NAME
MB_INLINE void MB_PARSE_NAME(MB_PARSE_PARAMS, MB_PKT *p)
{
    const unsigned char *b;
    unsigned int off, l3off, len = MB_LEN;
    int i;

    if (len < 14 || !(b = MB_AT(12, 2)))
        return;
    p->ethertype = (unsigned short)(b[0] << 8 | b[1]);
    off = 14;
    for (i = 0; i < 2; i++) {
        if (p->ethertype != MB_ETH_VLAN && p->ethertype != MB_ETH_QINQ)
            break;
        if (off + 4 > len || !(b = MB_AT(off, 4)))
            return;
        p->ethertype = (unsigned short)(b[2] << 8 | b[3]);
        off += 4;
        p->vlans++;
    }
    l3off = off;
    MB_OFFSETS(p, l3off, 0);
    if (p->ethertype == MB_ETH_IP4) {
        unsigned int ihl, tot;
        unsigned short fo;
        p->l3 = MB_L3_IP4;
        if (off + 20 > len || !(b = MB_AT(off, 20))) {
            p->flags |= MB_F_MALFORMED;
            return;
        }
        ihl = (unsigned int)(b[0] & 0x0f) * 4;
        tot = (unsigned int)(b[2] << 8 | b[3]);
        if ((b[0] >> 4) != 4 || ihl < 20 || off + ihl > len || tot < ihl) {
            p->flags |= MB_F_MALFORMED;
            return;
        }
        p->proto = b[9];
        MB_ADDR4(p, 1, b + 12);
        MB_ADDR4(p, 0, b + 16);
        fo = (unsigned short)(b[6] << 8 | b[7]);
        if (fo & 0x3fff)
            p->flags |= MB_F_FRAG;
        if (fo & 0x1fff) {
            p->flags |= MB_F_LATER_FRAG;
            return;
        }
        off += ihl;
    } else if (p->ethertype == MB_ETH_IP6) {
        unsigned char nh;
        p->l3 = MB_L3_IP6;
        if (off + 40 > len || !(b = MB_AT(off, 40))) {
            p->flags |= MB_F_MALFORMED;
            return;
        }
        MB_ADDR6(p, 1, b + 8);
        MB_ADDR6(p, 0, b + 24);
        nh = b[6];
        off += 40;
        /* the common extension headers, bounded */
        for (i = 0; i < 8; i++) {
            if (nh == 0 || nh == 43 || nh == 60) {   /* hop-by-hop, routing, dest opts */
                if (off + 8 > len || !(b = MB_AT(off, 2))) {
                    p->flags |= MB_F_MALFORMED;
                    return;
                }
                nh = b[0];
                off += 8 + (unsigned int)b[1] * 8;
            } else if (nh == 44) {                    /* fragment */
                if (off + 8 > len || !(b = MB_AT(off, 4))) {
                    p->flags |= MB_F_MALFORMED;
                    return;
                }
                p->flags |= MB_F_FRAG;
                if ((b[2] << 8 | b[3]) & 0xfff8) {
                    p->proto = b[0];
                    p->flags |= MB_F_LATER_FRAG;
                    return;
                }
                nh = b[0];
                off += 8;
            } else {
                break;
            }
        }
        if (off > len) {
            p->flags |= MB_F_MALFORMED;
            return;
        }
        p->proto = nh;
    } else {
        return;
    }
    MB_OFFSETS(p, l3off, off);
    if ((p->proto == 6 || p->proto == 17 || p->proto == 132 || p->proto == 136) &&
            off + 4 <= len && (b = MB_AT(off, 4))) {
        p->sport = (unsigned short)(b[0] << 8 | b[1]);
        p->dport = (unsigned short)(b[2] << 8 | b[3]);
        p->flags |= MB_F_L4;
    }
}
#undef MB_PARSE_NAME
#endif
