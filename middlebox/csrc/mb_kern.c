/* The in-kernel rule program's loader (declarations and life cycle in
 * includes/mb_kern.h).  A compilation unit of its own: libbpf's headers and
 * libpcap's both define struct bpf_insn. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "mb_filter.h"
#include "mb_kern.h"


static int mb_kern_silent(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level; (void)fmt; (void)ap;
    return 0;
}

void mb_kern_init(struct mb_kern *k)
{
    memset(k, 0, sizeof(*k));
    k->prog_fd = k->conf_fd = k->counts_fd = -1;
}

void mb_kern_close(struct mb_kern *k)
{
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
    struct bpf_map *m_xsks, *m_conf, *m_rules, *m_linear, *m_groups, *m_table, *m_counts;
    struct bpf_program *prog;
    uint32_t i, nlinear, ntable = 0, zero = 0;
    int rc, fd;

    mb_kern_init(k);
    libbpf_set_print(mb_kern_silent);
    *stage = "too many rule shapes for the in-kernel program";
    if (rs->linear && rs->ngroups > MBK_MAX_GROUPS)
        return -E2BIG;
    nlinear = rs->linear ? rs->nlinear : rs->nrules;
    if (rs->linear)
        for (i = 0; i < rs->tsize; i++)
            ntable += rs->table[i].rule != 0;
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
        return rc ? rc : -ENOENT;
    }
    *stage = "sizing the maps";
    k->ncounts = MBK_C_RULES + rs->nrules + 1;
    if ((rc = mb_kern_map(k, "xsks", 0, &m_xsks)) ||
        (rc = mb_kern_map(k, "mbk_conf", 0, &m_conf)) ||
        (rc = mb_kern_map(k, "mbk_rules", rs->nrules ? rs->nrules : 1, &m_rules)) ||
        (rc = mb_kern_map(k, "mbk_linear", nlinear ? nlinear : 1, &m_linear)) ||
        (rc = mb_kern_map(k, "mbk_groups", 0, &m_groups)) ||
        (rc = mb_kern_map(k, "mbk_table", ntable ? ntable : 1, &m_table)) ||
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
    *stage = "filling the maps";
    fd = bpf_map__fd(m_rules);
    for (i = 0; i < rs->nrules; i++) {
        struct mbk_rule r;
        mb_kern_rule(&r, &rs->rules[i]);
        if (bpf_map_update_elem(fd, &i, &r, BPF_ANY)) {
            rc = -errno;
            goto fail;
        }
    }
    fd = bpf_map__fd(m_linear);
    for (i = 0; i < nlinear; i++) {
        uint32_t ri = rs->linear ? rs->linear[i] : i;
        if (bpf_map_update_elem(fd, &i, &ri, BPF_ANY)) {
            rc = -errno;
            goto fail;
        }
    }
    if (rs->linear) {
        fd = bpf_map__fd(m_groups);
        for (i = 0; i < rs->ngroups; i++) {
            struct mbk_group g;
            memset(&g, 0, sizeof(g));
            g.match = rs->groups[i].match;
            g.src_mask_hi = rs->groups[i].src_mask_hi;
            g.src_mask_lo = rs->groups[i].src_mask_lo;
            g.dst_mask_hi = rs->groups[i].dst_mask_hi;
            g.dst_mask_lo = rs->groups[i].dst_mask_lo;
            if (bpf_map_update_elem(fd, &i, &g, BPF_ANY)) {
                rc = -errno;
                goto fail;
            }
        }
        fd = bpf_map__fd(m_table);
        for (i = 0; i < rs->tsize; i++) {
            struct mbk_key key;
            uint32_t ri;
            if (!rs->table[i].rule)
                continue;
            memcpy(key.k, rs->table[i].k, sizeof(key.k));
            ri = rs->table[i].rule - 1;
            if (bpf_map_update_elem(fd, &key, &ri, BPF_NOEXIST)) {
                rc = -errno;
                goto fail;
            }
        }
    }
    memset(&k->conf, 0, sizeof(k->conf));
    k->conf.nrules = rs->nrules;
    k->conf.ngroups = rs->linear ? rs->ngroups : 0;
    k->conf.nlinear = nlinear;
    k->conf.match_all = rs->linear ? rs->match_all : rs->nrules;
    k->conf.default_allow = rs->default_action == MB_ACT_ALLOW;
    k->conf.final = final ? 1 : 0;
    k->conf.punt_drops = punt_drops ? 1 : 0;
    if (bpf_map_update_elem(k->conf_fd, &zero, &k->conf, BPF_ANY)) {
        rc = -errno;
        goto fail;
    }
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
    return 0;
fail:
    mb_kern_close(k);
    return rc < 0 ? rc : -EINVAL;
}

/* Change the conf (punt_drops, user_action, final); 0 or -errno. */
int mb_kern_set_conf(struct mb_kern *k)
{
    uint32_t zero = 0;
    return bpf_map_update_elem(k->conf_fd, &zero, &k->conf, BPF_ANY) ? -errno : 0;
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

/* BPF_PROG_RUN on one frame (not live): the program's XDP action. */
int mb_kern_test_run(struct mb_kern *k, const void *data, uint32_t len, uint32_t *retval)
{
    LIBBPF_OPTS(bpf_test_run_opts, o);
    o.data_in = data;
    o.data_size_in = len;
    o.repeat = 1;
    if (bpf_prog_test_run_opts(k->prog_fd, &o) < 0)
        return -errno;
    *retval = o.retval;
    return 0;
}
