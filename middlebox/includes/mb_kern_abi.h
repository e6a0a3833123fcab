/*
 * The in-kernel rule program's maps: layouts shared by the BPF program
 * (middlebox/bpf/mb_rules.bpf.c) and its loader (mb_kern.h).
 *
 * A rule set is the one middlebox.filter compiles for user space (see
 * mb_filter.h): C rules (one per port range pair), the tuple-space index
 * (groups of rules of one shape, a hash table from the masked packet
 * fields to the first rule with that key) and the rules outside the index,
 * walked in order.  The program computes the same first match and
 * decides: allow -> XDP_PASS (into the stack, never copied to user
 * space), deny -> XDP_DROP, anything it cannot decide alone (a rate limit,
 * further filter stages, drops being sampled) -> the queue's AF_XDP socket,
 * where the worker runs the whole filter as before.
 */
#ifndef MB_KERN_ABI_H
#define MB_KERN_ABI_H

#ifdef __bpf__
typedef __u8 mbk_u8;
typedef __u16 mbk_u16;
typedef __u32 mbk_u32;
typedef __u64 mbk_u64;
#else
#include <stdint.h>
typedef uint8_t mbk_u8;
typedef uint16_t mbk_u16;
typedef uint32_t mbk_u32;
typedef uint64_t mbk_u64;
#endif

#define MBK_MAX_GROUPS 64          /* shapes in the index the program walks */
#define MBK_SMALL_GROUP 4          /* shapes with at most this many keys: walked, not hashed */
#define MBK_BITS_LOG2 16           /* per group, a 2^16-bit presence filter of its keys */
#define MBK_BITS_WORDS (1u << (MBK_BITS_LOG2 - 6))

/* verdicts (conf.final etc. decide what allow/deny become) */
enum { MBK_V_PASS = 0, MBK_V_DROP = 1, MBK_V_USER = 2 };

/* counters: a per-CPU array of u64; rule hits from MBK_C_RULES on */
enum {
    MBK_C_PASS = 0, MBK_C_PASS_BYTES, MBK_C_DROP, MBK_C_DROP_BYTES,
    MBK_C_USER, MBK_C_USER_BYTES,
    MBK_C_SAMPLES_LOST,         /* drop samples the ring buffer had no room for */
    MBK_C_RESERVED7,
    MBK_C_RULES = 8             /* + C rule index; + nrules: the default */
};

struct mbk_conf {
    mbk_u32 nrules;             /* C rules */
    mbk_u32 ngroups;            /* index groups (<= MBK_MAX_GROUPS) */
    mbk_u32 nlinear;            /* rules outside the index, ascending */
    mbk_u32 match_all;          /* first rule without conditions, or nrules */
    mbk_u8 default_allow;       /* the rule set's default */
    mbk_u8 final;               /* 1: allow is the whole verdict (no other stage) */
    mbk_u8 punt_drops;          /* 1: denied packets go to user space (sampling) */
    mbk_u8 user_action;         /* 0: redirect to the socket; else return this (tests) */
    mbk_u32 sample_thresh;      /* the attack view: a drop is sampled when a random u32 is
                                 * below this (2^32 / K: 1 of K), 0xffffffff: every drop,
                                 * 0: none */
};

/* a sampled drop, into the mbk_samples ring buffer (the worker copies it to
 * the attack view's ring, mb_dsample.h) */
struct mbk_sample {
    mbk_u64 shi, slo;           /* source address, IPv4 as ::ffff:a.b.c.d */
    mbk_u32 len;
    mbk_u16 sport, dport;
    mbk_u8 proto, l3, flags, _pad;
    mbk_u16 ethertype;
    mbk_u16 _pad2;
};

#define MBK_SAMPLE_RING_BYTES (1u << 16)

/* one C rule, as struct mb_rule minus the rate (user space keeps that) */
struct mbk_rule {
    mbk_u8 action;              /* MB_ACT_DENY 0, MB_ACT_ALLOW 1, MB_ACT_RATELIMIT 2 */
    mbk_u8 match;               /* MB_R_* */
    mbk_u8 proto;
    mbk_u8 _pad;
    mbk_u16 sport_lo, sport_hi, dport_lo, dport_hi;
    mbk_u32 _pad2;
    mbk_u64 src_hi, src_lo, src_mask_hi, src_mask_lo;
    mbk_u64 dst_hi, dst_lo, dst_mask_hi, dst_mask_lo;
};

/* an index group, in ascending order of min_rule: once the best match so
 * far is below a group's first rule, no later group can beat it */
struct mbk_group {
    mbk_u8 match;
    mbk_u8 _pad;
    mbk_u16 gi;                 /* the group number in the keys (user space's) */
    mbk_u32 min_rule;           /* its lowest rule */
    mbk_u64 src_mask_hi, src_mask_lo, dst_mask_hi, dst_mask_lo;
};

/* the index key: struct mb_tentry's k[5] */
struct mbk_key {
    mbk_u64 k[5];
};

/* the presence filter's bit for a key: a cheap look before the hash table
 * (a flood from random sources mostly misses every group) */
static inline mbk_u32 mbk_bit(const mbk_u64 *k)
{
    mbk_u64 h = k[0] * 0x9E3779B97F4A7C15ULL ^ k[1] * 0xC2B2AE3D27D4EB4FULL ^
                k[2] * 0x165667B19E3779F9ULL ^ k[3] * 0xD6E8FEB86659FD93ULL ^
                k[4] * 0xFF51AFD7ED558CCDULL;
    h ^= h >> 32;
    return (mbk_u32)((h * 0x9E3779B97F4A7C15ULL) >> (64 - MBK_BITS_LOG2));
}

#endif
