from libc.stdint cimport uint64_t

cdef extern from *:
    """
    static inline uint64_t mb_load_acquire(const uint64_t *p)
    { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void mb_store_release(uint64_t *p, uint64_t v)
    { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    """
    uint64_t mb_load_acquire(const uint64_t *p) nogil
    void mb_store_release(uint64_t *p, uint64_t v) nogil


cdef class FilterSwap:
    # what the loop uses (borrowed pointers: the Python references below
    # keep them alive while the loop may read them)
    cdef void *filt[2]              # the Filter of each direction
    cdef void *kern                 # the in-kernel rule program (KernelRules), or NULL
    cdef void *old_kern             # the program it replaced, folded until retired
    # what the control thread publishes
    cdef void *next_filt[2]
    cdef void *next_kern
    cdef uint64_t want, have        # swaps published / taken by the loop
    cdef uint64_t retire_want, retire_have
    cdef uint64_t folded_ns
    cdef uint64_t running           # 1 while the loop runs
    cdef readonly int nfilters
    cdef object cur, pending, retiring   # (filters, kernel) tuples: the references

    cdef _point(self, list filters, object kernel, bint nxt)
    cdef void boundary(self, uint64_t *c, uint64_t now, bint last, uint64_t *sampled,
                       uint64_t sample_max) noexcept nogil
