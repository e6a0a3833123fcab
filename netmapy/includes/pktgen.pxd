# The packet generator's engine in C: netmapy/includes/nm_pktgen.h.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef extern from "nm_pktgen.h":
    enum:
        PG_MAGIC
        PG_F_PING
        PG_HDR_OFF
        PG_FILL_OFF
        PG_MIN_LEN
        PG_HIST_N
        PGC_STOP
        PGC_STATE
        PGC_TX_PACKETS
        PGC_TX_BYTES
        PGC_RX_PACKETS
        PGC_RX_BYTES
        PGC_RX_OURS
        PGC_RX_OTHER
        PGC_BAD_CSUM
        PGC_LOST
        PGC_REORDERED
        PGC_DUPS
        PGC_LAT_N
        PGC_LAT_SUM
        PGC_LAT_MIN
        PGC_LAT_MAX
        PGC_PROBES
        PGC_PROBES_LOST
        PGC_LATE
        PGC_REFLECTED
        PGC_BATCHES
        PGC_MAX_BATCH
        PGC_SLEEPS
        PGC_FULL
        PGC_T0
        PGC_T1
        PGC_HIST
        PGC_WORDS

    struct pg_gen:
        uint8_t *tmpl
        uint32_t maxlen
        uint32_t *fill
        uint32_t sip0, dip0, sp0, dp0
        uint64_t nsip, ndip, nsp, ndp, isip, idip, isp, idp
        uint32_t nflows
        uint32_t *fl_sip
        uint32_t *fl_dip
        uint16_t *fl_sp
        uint16_t *fl_dp
        int size_mode
        uint32_t len_lo, len_hi
        uint16_t *sizes
        uint32_t nsizes, isize
        uint32_t next_len
        uint64_t rng
        uint32_t seq
        uint32_t ip_const, udp_const
        uint8_t stream, flags

    struct pg_stream:
        int64_t first, highest
        uint64_t unique, dups, reordered

    struct pg_rx:
        pg_stream *st[256]
        uint64_t ours, other, bad_csum, span, unique, dups, reordered
        int verify

    struct pg_pacer:
        double per_ns
        int bits
        double tokens, quantum, depth
        uint64_t last
        int64_t early
        uint64_t sleeps

    uint64_t pg_now() nogil
    void pg_sleep_until(uint64_t t) nogil
    void pg_relax() nogil
    long pg_timerslack(long ns) nogil
    void pg_set(uint64_t *c, int i, uint64_t v) nogil
    uint64_t pg_get(uint64_t *c, int i) nogil
    uint16_t pg_fold(uint64_t s) nogil
    uint64_t pg_sum(const uint8_t *p, uint32_t n) nogil
    uint32_t pg_get16(const uint8_t *p) nogil
    uint32_t pg_get32(const uint8_t *p) nogil
    uint64_t pg_get64(const uint8_t *p) nogil
    uint32_t pg_hist_idx(uint64_t v) nogil
    uint64_t pg_hist_low(uint32_t i) nogil
    void pg_sample(uint64_t *c, uint64_t v) nogil
    uint64_t pg_rand(pg_gen *g) nogil
    void pg_next_len(pg_gen *g) nogil
    void pg_build(pg_gen *g, uint8_t *b, uint32_t len, uint64_t ts) nogil
    int pg_parse(const uint8_t *b, uint32_t len) nogil
    int pg_csum_ok(const uint8_t *b, uint32_t len) nogil
    void pg_rx_frame(pg_rx *rx, uint64_t *c, const uint8_t *b, uint32_t len, uint64_t now) nogil
    void pg_rx_free(pg_rx *rx) nogil
    void pg_reflect(uint8_t *b, uint32_t len) nogil
    double pg_cost(pg_pacer *p, uint32_t len) nogil
    void pg_pacer_init(pg_pacer *p, double rate, int bits, double pace_ns,
                       uint32_t maxlen, uint32_t batch, uint64_t now) nogil
    void pg_refill(pg_pacer *p, uint64_t now) nogil
    void pg_wait_until(uint64_t due, int64_t *early, uint64_t *sleeps) nogil
