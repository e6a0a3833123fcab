from libc.stdint cimport uint8_t, uint32_t, uint64_t
from middlebox.filter cimport Filter, mb_ruleset

cdef extern from "mb_kern_abi.h" nogil:
    struct mbk_conf:
        uint32_t nrules, ngroups, nlinear, match_all
        uint8_t default_allow, final, punt_drops, user_action
        uint32_t sample_thresh
    enum:
        MBK_MAX_GROUPS
        MBK_C_PASS
        MBK_C_PASS_BYTES
        MBK_C_DROP
        MBK_C_DROP_BYTES
        MBK_C_USER
        MBK_C_USER_BYTES
        MBK_C_SAMPLES_LOST
        MBK_C_RULES

cdef extern from "mb_kern.h" nogil:
    struct bpf_object:
        pass
    struct mb_kern:
        bpf_object *obj
        int prog_fd, conf_fd, counts_fd, samples_fd
        uint32_t ncounts, ncpus
        mbk_conf conf
    void mb_kern_init(mb_kern *k)
    void mb_kern_close(mb_kern *k)
    int mb_kern_open(mb_kern *k, const char *path, const mb_ruleset *rs, int xsks_fd,
                     int final, int punt_drops, const char **stage, char *log,
                     size_t log_size)
    int mb_kern_set_conf(mb_kern *k)
    int mb_kern_read(mb_kern *k, uint64_t *tot)
    int mb_kern_sample_drops(mb_kern *k, void *ds_ring, uint32_t one_in)
    int mb_kern_drain_samples(mb_kern *k)
    int mb_kern_test_run(mb_kern *k, const void *data, uint32_t length, uint32_t repeat,
                         uint32_t *retval, uint32_t *duration)


cdef class KernelRules:
    cdef mb_kern k
    cdef Filter f
    cdef uint64_t **hits_pp     # &f.hits
    cdef uint32_t *rmap         # f.rule_map[0]: C rule -> counter
    cdef uint32_t nrules
    cdef uint64_t *tot          # counters read now
    cdef uint64_t *last         # counters at the last fold
    cdef readonly bint final
    cdef readonly str path
    cdef object _ring_owner     # the attack view's ring the samples go to

    cdef int fold(self, uint64_t *c) noexcept nogil
    cdef int c_set_punt(self, bint on) noexcept nogil
    cdef int drain(self) noexcept nogil
