/* The in-kernel rule program's loader (declarations and life cycle in
 * includes/mb_kern.h).  A compilation unit of its own: libbpf's headers and
 * libpcap's both define struct bpf_insn. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mb_filter.h"
#include "mb_dsample.h"
#include "mb_kern.h"


static int mb_kern_silent(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level; (void)fmt; (void)ap;
    return 0;
}

void mb_kern_init(struct mb_kern *k)
{
    memset(k, 0, sizeof(*k));
    k->prog_fd = k->conf_fd = k->counts_fd = k->samples_fd = -1;
}

void mb_kern_close(struct mb_kern *k)
{
    if (k->rb)
        ring_buffer__free(k->rb);
    if (k->obj)
        bpf_object__close(k->obj);   /* closes prog_fd and the map fds */
    free(k->vals);
    free(k->keys);
    mb_kern_init(k);
}

int mb_kern_map(struct mb_kern *k, const char *name, uint32_t entries,
                              struct bpf_map **out)
{
    struct bpf_map *m = bpf_object__find_map_by_name(k->obj, name);
    if (!m)
        return -ENOENT;
    if (entries && bpf_map__set_max_entries(m, entries))
        return -errno ? -errno : -EINVAL;
    *out = m;
    return 0;
}

void mb_kern_rule(struct mbk_rule *o, const struct mb_rule *r)
{
    memset(o, 0, sizeof(*o));
    o->action = r->action;
    o->match = r->match;
    o->proto = r->proto;
    o->sport_lo = r->sport_lo;
    o->sport_hi = r->sport_hi;
    o->dport_lo = r->dport_lo;
    o->dport_hi = r->dport_hi;
    o->src_hi = r->src_hi;
    o->src_lo = r->src_lo;
    o->src_mask_hi = r->src_mask_hi;
    o->src_mask_lo = r->src_mask_lo;
    o->dst_hi = r->dst_hi;
    o->dst_lo = r->dst_lo;
    o->dst_mask_hi = r->dst_mask_hi;
    o->dst_mask_lo = r->dst_mask_lo;
}

/*
 * The kernel's view of a rule set's index: groups with more than
 * MBK_SMALL_GROUP keys stay hashed (sorted by their first rule, each with a
 * presence filter), the rules of smaller groups join the rules walked in
 * order (a handful of comparisons costs less than a hash lookup).  First
 * match wins either way: a walked rule is tried when it comes before the
 * best hashed match, and of the rules sharing a key only the first is in
 * the table at all.
 */
struct mbk_plan {
    uint32_t nlinear, *linear;          /* ascending */
    uint32_t ngroups;
    uint32_t ntable;
    uint32_t match_all;
    struct mbk_group groups[MBK_MAX_GROUPS];
    uint32_t slot_of[65536];            /* user-space group -> slot, or ~0 (walked) */
};

static int mbk_cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int mbk_plan_make(struct mbk_plan *pl, const struct mb_ruleset *rs)
{
    uint32_t i, j, g, *cnt = NULL, *minr = NULL, order[MBK_MAX_GROUPS];
    int rc = 0;

    memset(pl, 0, offsetof(struct mbk_plan, slot_of));    /* slot_of: set per group below */
    if (!rs->linear) {                  /* not indexed: walk every rule */
        pl->linear = calloc(rs->nrules ? rs->nrules : 1, sizeof(uint32_t));
        if (!pl->linear)
            return -ENOMEM;
        for (i = 0; i < rs->nrules; i++)
            pl->linear[i] = i;
        pl->nlinear = rs->nrules;
        pl->match_all = rs->nrules;
        return 0;
    }
    if (rs->ngroups > 65536)
        return -E2BIG;
    cnt = calloc(rs->ngroups + 1, sizeof(uint32_t));
    minr = calloc(rs->ngroups + 1, sizeof(uint32_t));
    pl->linear = calloc(rs->nlinear + rs->tsize + 1, sizeof(uint32_t));
    if (!cnt || !minr || !pl->linear) {
        rc = -ENOMEM;
        goto out;
    }
    for (g = 0; g < rs->ngroups; g++)
        minr[g] = UINT32_MAX;
    for (i = 0; i < rs->tsize; i++) {
        if (!rs->table[i].rule)
            continue;
        g = (uint32_t)(rs->table[i].k[4] >> 48);
        cnt[g]++;
        if (rs->table[i].rule - 1 < minr[g])
            minr[g] = rs->table[i].rule - 1;
    }
    /* the big groups, by first rule */
    for (g = 0; g < rs->ngroups; g++) {
        pl->slot_of[g] = UINT32_MAX;
        if (cnt[g] <= MBK_SMALL_GROUP)
            continue;
        if (pl->ngroups == MBK_MAX_GROUPS) {
            rc = -E2BIG;
            goto out;
        }
        order[pl->ngroups++] = g;
    }
    for (i = 1; i < pl->ngroups; i++)            /* insertion sort: at most 64 */
        for (j = i; j > 0 && minr[order[j - 1]] > minr[order[j]]; j--) {
            uint32_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (j = 0; j < pl->ngroups; j++) {
        const struct mb_group *src = &rs->groups[order[j]];
        struct mbk_group *d = &pl->groups[j];
        d->match = src->match;
        d->gi = (mbk_u16)order[j];
        d->min_rule = minr[order[j]];
        d->src_mask_hi = src->src_mask_hi;
        d->src_mask_lo = src->src_mask_lo;
        d->dst_mask_hi = src->dst_mask_hi;
        d->dst_mask_lo = src->dst_mask_lo;
        pl->slot_of[order[j]] = j;
        pl->ntable += cnt[order[j]];
    }
    /* walked: the rules outside the index, and the small groups' */
    for (i = 0; i < rs->nlinear; i++)
        pl->linear[pl->nlinear++] = rs->linear[i];
    for (i = 0; i < rs->tsize; i++) {
        if (!rs->table[i].rule)
            continue;
        g = (uint32_t)(rs->table[i].k[4] >> 48);
        if (pl->slot_of[g] == UINT32_MAX)
            pl->linear[pl->nlinear++] = rs->table[i].rule - 1;
    }
    qsort(pl->linear, pl->nlinear, sizeof(uint32_t), mbk_cmp_u32);
    pl->match_all = rs->match_all;
out:
    free(cnt);
    free(minr);
    return rc;
}

/*
 * Load the program for rule set rs.  xsks_fd: the XSKMAP the program
 * redirects to (the interface's; -1 makes a private one, for tests);
 * final: allow is the whole verdict; punt_drops: denied packets go to user
 * space.  Returns 0 or -errno; *stage names the failed step and log holds
 * the end of the verifier's log when loading failed.
 */
int mb_kern_open(struct mb_kern *k, const char *path, const struct mb_ruleset *rs,
                 int xsks_fd, int final, int punt_drops, const char **stage,
                 char *log, size_t log_size)
{
    LIBBPF_OPTS(bpf_object_open_opts, oo);
    struct bpf_map *m_xsks, *m_conf, *m_rules, *m_linear, *m_groups, *m_table, *m_bits, *m_counts;
    struct bpf_program *prog;
    struct mbk_plan *pl;
    uint32_t i, zero = 0, nbits;
    uint64_t *bits = NULL;
    int rc, fd;

    mb_kern_init(k);
    libbpf_set_print(mb_kern_silent);
    pl = malloc(sizeof(*pl));
    if (!pl)
        return -ENOMEM;
    *stage = "too many rule shapes for the in-kernel program";
    rc = mbk_plan_make(pl, rs);
    if (rc < 0)
        goto fail;
    nbits = pl->ngroups * MBK_BITS_WORDS;
    *stage = "allocating the presence filters";
    bits = calloc(nbits ? nbits : 1, sizeof(uint64_t));
    if (!bits) {
        rc = -ENOMEM;
        goto fail;
    }
    if (log && log_size) {
        log[0] = 0;
        oo.kernel_log_buf = log;
        oo.kernel_log_size = log_size;
        oo.kernel_log_level = 0;      /* the log only when loading fails */
    }
    *stage = "opening the BPF object";
    k->obj = bpf_object__open_file(path, &oo);
    if (!k->obj) {
        rc = -errno;
        k->obj = NULL;
        rc = rc ? rc : -ENOENT;
        goto fail;
    }
    *stage = "sizing the maps";
    k->ncounts = MBK_C_RULES + rs->nrules + 1;
    if ((rc = mb_kern_map(k, "xsks", 0, &m_xsks)) ||
        (rc = mb_kern_map(k, "mbk_conf", 0, &m_conf)) ||
        (rc = mb_kern_map(k, "mbk_rules", rs->nrules ? rs->nrules : 1, &m_rules)) ||
        (rc = mb_kern_map(k, "mbk_linear", pl->nlinear ? pl->nlinear : 1, &m_linear)) ||
        (rc = mb_kern_map(k, "mbk_groups", 0, &m_groups)) ||
        (rc = mb_kern_map(k, "mbk_table", pl->ntable ? pl->ntable : 1, &m_table)) ||
        (rc = mb_kern_map(k, "mbk_bits", nbits ? nbits : 1, &m_bits)) ||
        (rc = mb_kern_map(k, "mbk_counts", k->ncounts, &m_counts)))
        goto fail;
    if (xsks_fd >= 0) {
        *stage = "sharing the interface's XSKMAP";
        if (bpf_map__reuse_fd(m_xsks, xsks_fd)) {
            rc = -errno;
            goto fail;
        }
    }
    prog = bpf_object__find_program_by_name(k->obj, "mb_rules");
    *stage = "finding the program";
    if (!prog) {
        rc = -ENOENT;
        goto fail;
    }
    /* as the dispatcher's other filters: tail calls need equal attributes */
    bpf_program__set_expected_attach_type(prog, (enum bpf_attach_type)0);
    *stage = "loading the program";
    if (bpf_object__load(k->obj)) {
        rc = -errno;
        goto fail;
    }
    k->prog_fd = bpf_program__fd(prog);
    k->conf_fd = bpf_map__fd(m_conf);
    k->counts_fd = bpf_map__fd(m_counts);
    {
        struct bpf_map *m_samples = bpf_object__find_map_by_name(k->obj, "mbk_samples");
        k->samples_fd = m_samples ? bpf_map__fd(m_samples) : -1;
    }
    *stage = "filling the maps";
    fd = bpf_map__fd(m_rules);
    for (i = 0; i < rs->nrules; i++) {
        struct mbk_rule r;
        mb_kern_rule(&r, &rs->rules[i]);
        if (bpf_map_update_elem(fd, &i, &r, BPF_ANY))
            goto fail_errno;
    }
    fd = bpf_map__fd(m_linear);
    for (i = 0; i < pl->nlinear; i++)
        if (bpf_map_update_elem(fd, &i, &pl->linear[i], BPF_ANY))
            goto fail_errno;
    fd = bpf_map__fd(m_groups);
    for (i = 0; i < pl->ngroups; i++)
        if (bpf_map_update_elem(fd, &i, &pl->groups[i], BPF_ANY))
            goto fail_errno;
    if (pl->ngroups) {
        fd = bpf_map__fd(m_table);
        for (i = 0; i < rs->tsize; i++) {
            struct mbk_key key;
            uint32_t ri, slot, bit;
            if (!rs->table[i].rule)
                continue;
            slot = pl->slot_of[(uint32_t)(rs->table[i].k[4] >> 48)];
            if (slot == UINT32_MAX)
                continue;                       /* walked */
            memcpy(key.k, rs->table[i].k, sizeof(key.k));
            ri = rs->table[i].rule - 1;
            if (bpf_map_update_elem(fd, &key, &ri, BPF_NOEXIST))
                goto fail_errno;
            bit = mbk_bit(key.k);
            bits[slot * MBK_BITS_WORDS + (bit >> 6)] |= 1ULL << (bit & 63);
        }
        fd = bpf_map__fd(m_bits);
        for (i = 0; i < nbits; i++)
            if (bits[i] && bpf_map_update_elem(fd, &i, &bits[i], BPF_ANY))
                goto fail_errno;
    }
    memset(&k->conf, 0, sizeof(k->conf));
    k->conf.nrules = rs->nrules;
    k->conf.ngroups = pl->ngroups;
    k->conf.nlinear = pl->nlinear;
    k->conf.match_all = pl->match_all;
    k->conf.default_allow = rs->default_action == MB_ACT_ALLOW;
    k->conf.final = final ? 1 : 0;
    k->conf.punt_drops = punt_drops ? 1 : 0;
    if (bpf_map_update_elem(k->conf_fd, &zero, &k->conf, BPF_ANY))
        goto fail_errno;
    *stage = "allocating the counter buffers";
    rc = libbpf_num_possible_cpus();
    if (rc <= 0)
        goto fail;
    k->ncpus = (uint32_t)rc;
    k->vals = calloc((size_t)k->ncpus * k->ncounts, sizeof(uint64_t));
    k->keys = calloc(k->ncounts, sizeof(uint32_t));
    if (!k->vals || !k->keys) {
        rc = -ENOMEM;
        goto fail;
    }
    free(pl->linear);
    free(pl);
    free(bits);
    return 0;
fail_errno:
    rc = -errno;
fail:
    free(pl->linear);
    free(pl);
    free(bits);
    mb_kern_close(k);
    return rc < 0 ? rc : -EINVAL;
}

/* Change the conf (punt_drops, user_action, final); 0 or -errno. */
int mb_kern_set_conf(struct mb_kern *k)
{
    uint32_t zero = 0;
    return bpf_map_update_elem(k->conf_fd, &zero, &k->conf, BPF_ANY) ? -errno : 0;
}

/* one record of the program's sample ring buffer into the attack view's ring */
static int mb_kern_on_sample(void *ctx, void *data, size_t size)
{
    struct mb_ds_ring *r = ctx;
    const struct mbk_sample *in = data;
    struct mb_ds_slot *s;
    int i;
    if (size < sizeof(*in))
        return 0;
    s = mb_ds_begin(r);
    for (i = 0; i < 8; i++) {
        s->src[i] = (uint8_t)(in->shi >> (56 - 8 * i));
        s->src[8 + i] = (uint8_t)(in->slo >> (56 - 8 * i));
    }
    s->len = in->len;
    s->sport = in->l3 == 0 ? in->ethertype : in->sport;
    s->dport = in->dport;
    s->proto = in->proto;
    s->l3 = in->l3;
    s->origin = MB_DS_KERNEL;
    s->flags = in->flags;
    s->reserved = 0;
    mb_ds_commit(r, s);
    return 0;
}

/*
 * Sample about 1 of one_in drops the program decides (0: none) into
 * ds_ring (a struct mb_ds_ring), read by mb_kern_drain_samples().  0 or
 * -errno.
 */
int mb_kern_sample_drops(struct mb_kern *k, void *ds_ring, uint32_t one_in)
{
    int rc;
    if (!k->obj)
        return -EBADF;
    if (one_in && ds_ring && !k->rb) {
        if (k->samples_fd < 0)
            return -ENOENT;
        k->rb = ring_buffer__new(k->samples_fd, mb_kern_on_sample, ds_ring, NULL);
        if (!k->rb)
            return -errno ? -errno : -ENOMEM;
        k->ds_ring = ds_ring;
    }
    k->conf.sample_thresh = !one_in || !ds_ring ? 0 :
        one_in == 1 ? 0xffffffffu : (uint32_t)((1ULL << 32) / one_in);
    rc = mb_kern_set_conf(k);
    return rc;
}

/* Copy what the program sampled since the last call; the number of
 * samples, or -errno. */
int mb_kern_drain_samples(struct mb_kern *k)
{
    if (!k->rb)
        return 0;
    return ring_buffer__consume(k->rb);
}

/* Every counter summed over the CPUs into tot[ncounts]; 0 or -errno. */
int mb_kern_read(struct mb_kern *k, uint64_t *tot)
{
    LIBBPF_OPTS(bpf_map_batch_opts, bo);
    uint32_t count = k->ncounts, out_batch = 0, i, c, got;
    int rc;
    memset(tot, 0, k->ncounts * sizeof(uint64_t));
    rc = bpf_map_lookup_batch(k->counts_fd, NULL, &out_batch, k->keys, k->vals, &count, &bo);
    if (rc < 0 && errno != ENOENT) {
        /* no batch lookups: one key at a time */
        for (i = 0; i < k->ncounts; i++) {
            if (bpf_map_lookup_elem(k->counts_fd, &i, k->vals))
                return -errno;
            for (c = 0; c < k->ncpus; c++)
                tot[i] += k->vals[c];
        }
        return 0;
    }
    got = count;
    for (i = 0; i < got; i++) {
        uint32_t key = k->keys[i];
        if (key >= k->ncounts)
            continue;
        for (c = 0; c < k->ncpus; c++)
            tot[key] += k->vals[(size_t)i * k->ncpus + c];
    }
    return 0;
}

/* BPF_PROG_RUN on one frame (not live), `repeat` times: the program's XDP
 * action, and the kernel's measured time per run (ns). */
int mb_kern_test_run(struct mb_kern *k, const void *data, uint32_t len, uint32_t repeat,
                     uint32_t *retval, uint32_t *duration)
{
    LIBBPF_OPTS(bpf_test_run_opts, o);
    o.data_in = data;
    o.data_size_in = len;
    o.repeat = repeat ? repeat : 1;
    if (bpf_prog_test_run_opts(k->prog_fd, &o) < 0)
        return -errno;
    *retval = o.retval;
    if (duration)
        *duration = o.duration;
    return 0;
}
