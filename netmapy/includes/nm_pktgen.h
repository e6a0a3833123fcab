/* The packet generator's engine in C (netmapy.tools.pktgen.engine): frame
 * building (template, flows, sizes, IPv4/UDP checksums), receive-side
 * checks (sequence, loss, reordering, duplicates, latency histogram),
 * pacing (token bucket, timer slack) and the shared counter block (PGC_*).
 * Declared for Cython in netmapy/includes/pktgen.pxd.
 */
#ifndef NM_PKTGEN_H
#define NM_PKTGEN_H

#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <sys/prctl.h>

#define PG_MAGIC 0x4e50
#define PG_F_PING 1
#define PG_HDR_OFF 42
#define PG_FILL_OFF 58
#define PG_MIN_LEN 60
#define PG_HIST_N 640
#define PG_WIN 4096

/* the shared counter block: uint64 words */
enum {
    PGC_STOP = 0, PGC_STATE, PGC_TX_PACKETS, PGC_TX_BYTES, PGC_RX_PACKETS,
    PGC_RX_BYTES, PGC_RX_OURS, PGC_RX_OTHER, PGC_BAD_CSUM, PGC_LOST,
    PGC_REORDERED, PGC_DUPS, PGC_LAT_N, PGC_LAT_SUM, PGC_LAT_MIN,
    PGC_LAT_MAX, PGC_PROBES, PGC_PROBES_LOST, PGC_LATE, PGC_REFLECTED,
    PGC_BATCHES, PGC_MAX_BATCH, PGC_SLEEPS, PGC_FULL, PGC_T0, PGC_T1,
    PGC_HIST = 32, PGC_WORDS = 32 + PG_HIST_N
};

static inline uint64_t pg_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static inline void pg_sleep_until(uint64_t t) {
    struct timespec ts;
    ts.tv_sec = (time_t)(t / 1000000000ull);
    ts.tv_nsec = (long)(t % 1000000000ull);
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}
static inline void pg_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
static inline long pg_timerslack(long ns) {
    long old = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl(PR_SET_TIMERSLACK, ns, 0, 0, 0);
    return old;
}
static inline void pg_set(uint64_t *c, int i, uint64_t v) { __atomic_store_n(&c[i], v, __ATOMIC_RELAXED); }
static inline uint64_t pg_get(uint64_t *c, int i) { return __atomic_load_n(&c[i], __ATOMIC_RELAXED); }

static inline uint16_t pg_fold(uint64_t s) {
    while (s >> 16)
        s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}
static inline void pg_put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void pg_put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint32_t pg_get16(const uint8_t *p) { return ((uint32_t)p[0] << 8) | p[1]; }
static inline uint32_t pg_get32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t pg_get64(const uint8_t *p) { return ((uint64_t)pg_get32(p) << 32) | pg_get32(p + 4); }

/* one's complement sum of n bytes starting at an even offset */
static inline uint64_t pg_sum(const uint8_t *p, uint32_t n) {
    uint64_t s = 0;
    uint32_t i;
    for (i = 0; i + 1 < n; i += 2)
        s += ((uint32_t)p[i] << 8) | p[i + 1];
    if (n & 1)
        s += (uint32_t)p[n - 1] << 8;
    return s;
}

/* ----------------------------------------------------------- histogram */
/* log-linear: 16 sub-buckets per power of two (values < 32 exact);
   bucket width / lower bound <= 1/16, so a value read back as its
   bucket's midpoint is within ~3 % */
static inline uint32_t pg_hist_idx(uint64_t v) {
    int e;
    uint32_t i;
    if (v < 16)
        return (uint32_t)v;
    e = 63 - __builtin_clzll(v);
    i = (uint32_t)(e - 3) * 16 + (uint32_t)((v >> (e - 4)) & 15);
    return i < PG_HIST_N ? i : PG_HIST_N - 1;
}
static inline uint64_t pg_hist_low(uint32_t i) {
    uint32_t e, m;
    if (i < 16)
        return i;
    e = i / 16 + 3;
    m = i % 16;
    return (uint64_t)(16 + m) << (e - 4);
}
static inline void pg_sample(uint64_t *c, uint64_t v) {
    uint64_t n = c[PGC_LAT_N];
    c[PGC_HIST + pg_hist_idx(v)]++;
    pg_set(c, PGC_LAT_SUM, c[PGC_LAT_SUM] + v);
    if (n == 0 || v < c[PGC_LAT_MIN])
        pg_set(c, PGC_LAT_MIN, v);
    if (v > c[PGC_LAT_MAX])
        pg_set(c, PGC_LAT_MAX, v);
    pg_set(c, PGC_LAT_N, n + 1);
}

/* ----------------------------------------------------------- generator */
struct pg_gen {
    uint8_t *tmpl;          /* maxlen bytes: the frame with its filler */
    uint32_t maxlen;
    uint32_t *fill;         /* fill[k]: sum of the first k filler bytes */
    uint32_t sip0, dip0, sp0, dp0;
    uint64_t nsip, ndip, nsp, ndp, isip, idip, isp, idp;
    uint32_t nflows;        /* random flows: a table, picked at random */
    uint32_t *fl_sip, *fl_dip;
    uint16_t *fl_sp, *fl_dp;
    int size_mode;          /* 0 fixed, 1 uniform range, 2 table (cycled) */
    uint32_t len_lo, len_hi;
    uint16_t *sizes;
    uint32_t nsizes, isize;
    uint32_t next_len;
    uint64_t rng;
    uint32_t seq;
    uint32_t ip_const, udp_const;
    uint8_t stream, flags;
};

static inline uint64_t pg_rand(struct pg_gen *g) {
    /* xorshift64* */
    uint64_t x = g->rng;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    g->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static inline void pg_next_len(struct pg_gen *g) {
    if (g->size_mode == 1)
        g->next_len = g->len_lo + (uint32_t)(pg_rand(g) % (g->len_hi - g->len_lo + 1));
    else if (g->size_mode == 2) {
        g->next_len = g->sizes[g->isize];
        if (++g->isize == g->nsizes)
            g->isize = 0;
    }
}
static inline void pg_flow(struct pg_gen *g, uint32_t *sip, uint32_t *dip,
                           uint32_t *sp, uint32_t *dp) {
    if (g->nflows) {
        uint32_t k = (uint32_t)(pg_rand(g) % g->nflows);
        *sip = g->fl_sip[k]; *dip = g->fl_dip[k]; *sp = g->fl_sp[k]; *dp = g->fl_dp[k];
        return;
    }
    *sip = g->sip0 + (uint32_t)g->isip; *dip = g->dip0 + (uint32_t)g->idip;
    *sp = g->sp0 + (uint32_t)g->isp; *dp = g->dp0 + (uint32_t)g->idp;
    /* odometer: source port fastest, then destination port, source IP,
       destination IP */
    if (++g->isp == g->nsp) {
        g->isp = 0;
        if (++g->idp == g->ndp) {
            g->idp = 0;
            if (++g->isip == g->nsip) {
                g->isip = 0;
                if (++g->idip == g->ndip)
                    g->idip = 0;
            }
        }
    }
}
/* write frame number g->seq of length len (g->next_len) into b */
static inline void pg_build(struct pg_gen *g, uint8_t *b, uint32_t len, uint64_t ts) {
    uint32_t sip, dip, sp, dp, seq = g->seq++;
    uint32_t iplen = len - 14, ulen = len - 34, id = seq & 0xffff;
    uint64_t s;
    uint16_t c;
    pg_flow(g, &sip, &dip, &sp, &dp);
    memcpy(b, g->tmpl, len);
    pg_put16(b + 16, iplen);
    pg_put16(b + 18, id);
    pg_put32(b + 26, sip);
    pg_put32(b + 30, dip);
    s = (uint64_t)g->ip_const + iplen + id + (sip >> 16) + (sip & 0xffff) +
        (dip >> 16) + (dip & 0xffff);
    pg_put16(b + 24, (uint16_t)~pg_fold(s));
    pg_put16(b + 34, sp);
    pg_put16(b + 36, dp);
    pg_put16(b + 38, ulen);
    pg_put32(b + 46, seq);
    pg_put32(b + 50, (uint32_t)(ts >> 32));
    pg_put32(b + 54, (uint32_t)ts);
    s = (uint64_t)g->udp_const + 2 * ulen + (sip >> 16) + (sip & 0xffff) +
        (dip >> 16) + (dip & 0xffff) + sp + dp + (seq >> 16) + (seq & 0xffff) +
        (ts >> 48) + ((ts >> 32) & 0xffff) + ((ts >> 16) & 0xffff) + (ts & 0xffff) +
        g->fill[len - PG_FILL_OFF];
    c = (uint16_t)~pg_fold(s);
    pg_put16(b + 40, c ? c : 0xffff);
}

/* ------------------------------------------------------------ parsing */
/* offset of the pktgen header of an IPv4/UDP frame, or -1 */
static inline int pg_parse(const uint8_t *b, uint32_t len) {
    uint32_t ihl, p;
    if (len < PG_FILL_OFF || b[12] != 0x08 || b[13] != 0x00 || (b[14] >> 4) != 4)
        return -1;
    ihl = (uint32_t)(b[14] & 15) * 4;
    if (ihl < 20 || b[23] != 17 || (pg_get16(b + 20) & 0x3fff))
        return -1;
    p = 14 + ihl + 8;
    if (len < p + 16 || pg_get16(b + p) != PG_MAGIC)
        return -1;
    return (int)p;
}
/* 1 when the IPv4 header and UDP checksums are right */
static inline int pg_csum_ok(const uint8_t *b, uint32_t len) {
    uint32_t ihl = (uint32_t)(b[14] & 15) * 4, u = 14 + ihl, ulen, iplen;
    uint64_t s;
    if (pg_fold(pg_sum(b + 14, ihl)) != 0xffff)
        return 0;
    iplen = pg_get16(b + 16);
    ulen = pg_get16(b + u + 4);
    if (iplen < ihl + 8 || 14 + iplen > len || ulen != iplen - ihl)
        return 0;
    if (pg_get16(b + u + 6) == 0)
        return 1;
    s = pg_sum(b + 26, 8) + 17 + ulen + pg_sum(b + u, ulen);
    return pg_fold(s) == 0xffff;
}

/* ----------------------------------------------------- receive checks */
struct pg_stream {
    int64_t first, highest;
    uint64_t unique, dups, reordered;
    uint64_t win[PG_WIN / 64];
};
struct pg_rx {
    struct pg_stream *st[256];
    uint64_t ours, other, bad_csum, span, unique, dups, reordered;
    int verify;
};
static inline int pg_bit(struct pg_stream *s, int64_t v) {
    uint64_t k = (uint64_t)v % PG_WIN;
    return (int)((s->win[k >> 6] >> (k & 63)) & 1);
}
static inline void pg_bitset(struct pg_stream *s, int64_t v) {
    uint64_t k = (uint64_t)v % PG_WIN;
    s->win[k >> 6] |= 1ull << (k & 63);
}
static inline void pg_bitclr(struct pg_stream *s, int64_t v) {
    uint64_t k = (uint64_t)v % PG_WIN;
    s->win[k >> 6] &= ~(1ull << (k & 63));
}
static inline void pg_track(struct pg_rx *rx, uint32_t stream, uint32_t seq) {
    struct pg_stream *s = rx->st[stream];
    int64_t ext, v;
    if (s == NULL) {
        s = (struct pg_stream *)calloc(1, sizeof(*s));
        if (s == NULL)
            return;
        rx->st[stream] = s;
        s->first = s->highest = seq;
        s->unique = 1;
        pg_bitset(s, seq);
        rx->span += 1;
        rx->unique += 1;
        return;
    }
    ext = s->highest + (int64_t)(int32_t)(seq - (uint32_t)s->highest);
    if (ext > s->highest) {
        if (ext - s->highest >= PG_WIN)
            memset(s->win, 0, sizeof(s->win));
        else
            for (v = s->highest + 1; v < ext; v++)
                pg_bitclr(s, v);
        rx->span += (uint64_t)(ext - s->highest);
        s->highest = ext;
        pg_bitset(s, ext);
        s->unique++;
        rx->unique++;
        return;
    }
    if (ext == s->highest || (s->highest - ext < PG_WIN && ext >= s->first && pg_bit(s, ext))) {
        s->dups++;
        rx->dups++;
        return;
    }
    if (s->highest - ext < PG_WIN)
        pg_bitset(s, ext);
    if (ext < s->first) {
        rx->span += (uint64_t)(s->first - ext);
        s->first = ext;
    }
    s->unique++;
    rx->unique++;
    s->reordered++;
    rx->reordered++;
}
static inline void pg_rx_frame(struct pg_rx *rx, uint64_t *c, const uint8_t *b,
                               uint32_t len, uint64_t now) {
    int p = pg_parse(b, len);
    uint64_t ts;
    if (p < 0) {
        rx->other++;
        return;
    }
    rx->ours++;
    if (rx->verify && !pg_csum_ok(b, len))
        rx->bad_csum++;
    pg_track(rx, b[p + 2], pg_get32(b + p + 4));
    ts = pg_get64(b + p + 8);
    if (now >= ts && now - ts < 60000000000ull)
        pg_sample(c, now - ts);
}
static inline void pg_rx_free(struct pg_rx *rx) {
    int i;
    for (i = 0; i < 256; i++) {
        free(rx->st[i]);
        rx->st[i] = NULL;
    }
}

/* ------------------------------------------------------------- pong */
static inline void pg_swap(uint8_t *a, uint8_t *b, int n) {
    uint8_t t;
    int i;
    for (i = 0; i < n; i++) {
        t = a[i]; a[i] = b[i]; b[i] = t;
    }
}
/* swap MACs, and IPs and ports for IPv4/IPv6 UDP/TCP (checksums stay
   right: the sums do not depend on the order) */
static inline void pg_reflect(uint8_t *b, uint32_t len) {
    uint32_t et, ihl, u;
    if (len < 14)
        return;
    pg_swap(b, b + 6, 6);
    et = pg_get16(b + 12);
    if (et == 0x0800 && len >= 34 && (b[14] >> 4) == 4) {
        ihl = (uint32_t)(b[14] & 15) * 4;
        pg_swap(b + 26, b + 30, 4);
        u = 14 + ihl;
        if ((b[23] == 17 || b[23] == 6) && !(pg_get16(b + 20) & 0x1fff) && len >= u + 4)
            pg_swap(b + u, b + u + 2, 2);
    } else if (et == 0x86dd && len >= 54) {
        pg_swap(b + 22, b + 38, 16);
        if ((b[20] == 17 || b[20] == 6) && len >= 58)
            pg_swap(b + 54, b + 56, 2);
    }
}

/* ------------------------------------------------------------- pacing */
struct pg_pacer {
    double per_ns;          /* token units per ns; 0: no limit */
    int bits;               /* units: bits (else packets) */
    double tokens, quantum, depth;
    uint64_t last;
    int64_t early;          /* wake this much before the due time */
    uint64_t sleeps;
};
static inline double pg_cost(struct pg_pacer *p, uint32_t len) {
    return p->bits ? (double)len * 8.0 : 1.0;
}
static inline void pg_pacer_init(struct pg_pacer *p, double rate, int bits, double pace_ns,
                                 uint32_t maxlen, uint32_t batch, uint64_t now) {
    double one = bits ? (double)maxlen * 8.0 : 1.0;
    p->per_ns = rate / 1e9;
    p->bits = bits;
    p->quantum = rate * pace_ns / 1e9;
    if (!bits && p->quantum > batch)
        p->quantum = batch;
    if (bits && p->quantum > (double)batch * maxlen * 8.0)
        p->quantum = (double)batch * maxlen * 8.0;
    if (p->quantum < one)
        p->quantum = one;
    p->depth = 4 * p->quantum;
    p->tokens = p->quantum;
    p->last = now;
    p->early = 5000;
    p->sleeps = 0;
}
static inline void pg_refill(struct pg_pacer *p, uint64_t now) {
    if (now > p->last) {
        p->tokens += (double)(now - p->last) * p->per_ns;
        p->last = now;
        if (p->tokens > p->depth)
            p->tokens = p->depth;
    }
}
/* Wait until `due` (CLOCK_MONOTONIC ns): sleep when it is far, waking
   `early` ns before it, and spin the rest.  Returns without waiting the
   whole time when the wait is over 50 ms (the caller loops, checking
   its stop conditions). */
static inline void pg_wait_until(uint64_t due, int64_t *early, uint64_t *sleeps) {
    uint64_t now = pg_now(), target, after;
    int64_t over;
    int partial = 0;
    if (due > now + (uint64_t)*early + 10000) {
        target = due - (uint64_t)*early;
        if (target > now + 50000000ull) {
            target = now + 50000000ull;
            partial = 1;
        }
        pg_sleep_until(target);
        after = pg_now();
        over = (int64_t)(after - target);
        if (!partial) {
            /* a preempted sleeper oversleeps by milliseconds: that says
               nothing about the timer, so samples are capped */
            if (over > 30000) over = 30000;
            *early += (over - *early) / 8;
            if (*early < 1000) *early = 1000;
        }
        (*sleeps)++;
        if (partial)
            return;
        now = after;
    }
    while (now < due) {
        pg_relax();
        now = pg_now();
    }
}

#endif /* NM_PKTGEN_H */
