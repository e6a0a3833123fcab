from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from netmapy.includes.abi cimport netmap_ring
from netmapy.includes.pcap cimport bpf_insn

cdef extern from "mb_filter.h" nogil:
    struct mb_pkt:
        uint16_t ethertype
        uint8_t l3
        uint8_t proto
        uint8_t flags
        uint8_t vlans
        uint16_t sport, dport
        uint8_t src[16]
        uint8_t dst[16]
        uint16_t l3_off, l4_off

    struct mb_rule:
        uint8_t action
        uint8_t match
        uint8_t proto
        uint16_t sport_lo, sport_hi, dport_lo, dport_hi
        uint64_t src_hi, src_lo, src_mask_hi, src_mask_lo
        uint64_t dst_hi, dst_lo, dst_mask_hi, dst_mask_lo
        uint64_t rate_pps, burst

    struct mb_bucket:
        uint64_t key_hi, key_lo
        uint32_t rule
        uint64_t tokens_nano
        uint64_t last_ns

    struct mb_group:
        uint8_t match
        uint64_t src_mask_hi, src_mask_lo, dst_mask_hi, dst_mask_lo

    struct mb_tentry:
        uint32_t rule

    struct mb_ruleset:
        mb_rule *rules
        uint32_t nrules
        uint8_t default_action
        uint32_t nbuckets
        mb_bucket *buckets
        uint32_t ngroups
        mb_group *groups
        uint32_t tsize
        mb_tentry *table
        uint32_t nlinear
        uint32_t *linear
        uint32_t match_all

    enum:
        MB_ACT_DENY
        MB_ACT_ALLOW
        MB_ACT_RATELIMIT
        MB_R_PROTO
        MB_R_SRC
        MB_R_DST
        MB_R_SPORT
        MB_R_DPORT
        MB_R_IP4
        MB_R_IP6
        MB_F_MALFORMED
        MB_F_FRAG
        MB_F_LATER_FRAG
        MB_F_L4

    void mb_parse(const uint8_t *f, uint32_t length, mb_pkt *p)
    int mb_tinsert(mb_ruleset *rs, uint32_t gi, uint32_t ri)
    int mb_ruleset_eval(mb_ruleset *rs, const mb_pkt *p, uint64_t now_ns,
                        uint32_t *rule_out, int *limited)

cdef extern from "mb_bpf.h" nogil:
    uint32_t mb_bpf_run(const bpf_insn *prog, uint32_t n, const uint8_t *p, uint32_t wirelen,
                        uint32_t buflen, uint32_t loop_limit, int *looped)

cdef enum:
    MAX_STAGES = 16
    STAGE_RULES = 0
    STAGE_BPF_ACCEPT = 1     # packets must match to pass
    STAGE_BPF_DROP = 2       # packets that match are dropped


cdef class Filter:
    cdef int nstages
    cdef int kind[MAX_STAGES]
    cdef mb_ruleset rs[MAX_STAGES]
    cdef bpf_insn *prog[MAX_STAGES]
    cdef uint32_t proglen[MAX_STAGES]
    cdef bint loops[MAX_STAGES]            # backward jumps: mb_bpf_run, not libpcap's
    cdef uint32_t loop_limit[MAX_STAGES]   # backward jumps allowed per packet
    cdef uint64_t looped[MAX_STAGES]       # packets the loop limit ended
    cdef uint32_t *rule_map[MAX_STAGES]    # C rule -> counter index
    cdef uint32_t base[MAX_STAGES]         # counter index of the stage's first entry
    cdef uint32_t ncounters
    cdef uint64_t *hits                    # packets each counter decided
    cdef uint64_t *limited                 # of those, dropped by a rate limit
    cdef object _counter_owner
    cdef readonly list names
    cdef readonly list descriptions
    cdef bint limited_drop                 # the last verdict: a rate limit dropped it
    cdef list slots                        # counter -> its index in hits/limited (None: itself)
    cdef void *dsample                     # struct mb_ds_ring: sampled drops (attack view)
    cdef uint8_t dsample_origin
    cdef object _dsample_owner

    cdef int verdict(self, const uint8_t *pkt, uint32_t length, uint64_t now_ns) noexcept nogil
    cdef int _stage(self) except -1
    cdef int _index(self, int s) except -1


# c: one direction's counters (middlebox/counters.pxd, C_RX .. C_ERRORS)
cdef uint32_t filter_move(Filter f, netmap_ring *rx, netmap_ring *tx, bint swap,
                          uint64_t now_ns, uint64_t *c,
                          netmap_ring *sample, uint64_t *sampled,
                          uint64_t sample_max) noexcept nogil
