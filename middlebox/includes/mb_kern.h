/*
 * The in-kernel rule program's loader: opens the BPF object built from
 * middlebox/bpf/mb_rules.bpf.c, sizes and fills its maps from a compiled
 * rule set (struct mb_ruleset, mb_filter.h), and reads its per-CPU
 * counters back.  Layouts in mb_kern_abi.h.
 *
 * Life cycle (each step undone by mb_kern_close, whatever was reached):
 *   mb_kern_open()   open the object, size the maps, reuse the queue's
 *                    XSKMAP, load (verifier log on failure), fill the maps
 *   mb_kern_read()   per-CPU counters summed (one batched syscall)
 *   mb_kern_sample_drops() / mb_kern_drain_samples(): 1 of K drops described
 *                    in a BPF ring buffer, copied into the attack view's ring
 *   mb_kern_close()  the program goes when the last reference (ours, or
 *                    the interface's program array) goes
 */
#ifndef MB_KERN_H
#define MB_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "mb_kern_abi.h"

struct bpf_object;
struct ring_buffer;
struct mb_ruleset;

struct mb_kern {
    struct bpf_object *obj;
    int prog_fd, conf_fd, counts_fd, samples_fd;
    uint32_t ncounts;                /* MBK_C_RULES + nrules + 1 */
    uint32_t ncpus;
    uint64_t *vals;                  /* ncpus * ncounts, scratch for reads */
    uint32_t *keys;
    struct mbk_conf conf;
    struct ring_buffer *rb;          /* sampled drops (mbk_samples), when asked for */
    void *ds_ring;                   /* ... copied into this struct mb_ds_ring */
};

void mb_kern_init(struct mb_kern *k);
void mb_kern_close(struct mb_kern *k);
int mb_kern_open(struct mb_kern *k, const char *path, const struct mb_ruleset *rs,
                 int xsks_fd, int final, int punt_drops, const char **stage,
                 char *log, size_t log_size);
int mb_kern_set_conf(struct mb_kern *k);
int mb_kern_read(struct mb_kern *k, uint64_t *tot);
int mb_kern_sample_drops(struct mb_kern *k, void *ds_ring, uint32_t one_in);
int mb_kern_drain_samples(struct mb_kern *k);
int mb_kern_test_run(struct mb_kern *k, const void *data, uint32_t len, uint32_t repeat,
                     uint32_t *retval, uint32_t *duration);

#endif
