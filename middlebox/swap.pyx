# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The worker loop's filters, replaceable while packets flow (hot reload).

A worker's nogil loop (middlebox.loop) reads its filters -- and, in
nm-offload with the rules in the kernel, its XDP rule program -- through a
FilterSwap.  The worker's control thread (middlebox.reload) builds the new
ones off the fast path and publishes them; the loop takes them at the next
batch boundary (``boundary()``: two atomic loads per batch, nothing per
packet), so every packet is judged entirely by the old filters or entirely
by the new ones, and none waits or is lost:

    sw = FilterSwap([f])                      # the loop's filters, at start
    loop.offload(..., swap=sw)                # (another thread:)
    sw.publish([f2], kr2)                     # built and compiled beforehand
    while not sw.taken(): sleep(...)          # the loop switched between two batches
    old_filters, old_kernel = sw.settle()
    port.set_queue_program(kr2.prog_fd)       # the kernel's side: one map update
    sw.retire()                               # a moment later: the old program's
    while not sw.retired(): sleep(...)        # last counts folded, then close it

The in-kernel rule program's per-CPU counters are folded into the worker's
counters at the boundary every FOLD_NS (and at the last round), the old
program's too until it is retired, and the drops it sampled for the attack
view are copied then (middlebox/includes/mb_dsample.h).
"""

from libc.stdint cimport uint64_t
from middlebox.filter cimport Filter
from middlebox.kfilter cimport KernelRules
from middlebox.counters cimport *

cdef enum:
    FOLD_NS = 100000000     # in-kernel rule counters folded every 100 ms

FOLD_SECONDS = FOLD_NS / 1e9


cdef class FilterSwap:
    """See the module documentation."""

    def __init__(self, filters, kernel=None):
        filters = list(filters)
        if not 1 <= len(filters) <= 2:
            raise ValueError("a FilterSwap holds the filters of one or two directions")
        self.nfilters = len(filters)
        self._point(filters, kernel, False)
        self.cur = (filters, kernel)
        self.pending = None
        self.retiring = None

    cdef _point(self, list filters, kernel, bint nxt):
        # a filter may be None (no filtering): the loop passes it on as None
        cdef Filter f0 = filters[0]
        cdef Filter f1 = filters[1] if len(filters) > 1 else None
        cdef KernelRules kr = kernel
        cdef void *p1 = <void *>f1 if len(filters) > 1 else NULL
        if nxt:
            self.next_filt[0] = <void *>f0
            self.next_filt[1] = p1
            self.next_kern = <void *>kr if kr is not None else NULL
        else:
            self.filt[0] = <void *>f0
            self.filt[1] = p1
            self.kern = <void *>kr if kr is not None else NULL

    # ---------------------------------------------------------------- the loop's side
    cdef void boundary(self, uint64_t *c, uint64_t now, bint last, uint64_t *sampled,
                       uint64_t sample_max) noexcept nogil:
        """Between two batches: take published filters, retire the old
        kernel program when asked, fold the kernel programs' counters when
        due.  c: the direction's counters (the offload direction)."""
        cdef uint64_t w = mb_load_acquire(&self.want)
        if w != self.have:
            if self.kern != NULL:
                (<KernelRules>self.kern).fold(c)
            self.old_kern = self.kern
            self.kern = self.next_kern
            self.filt[0] = self.next_filt[0]
            self.filt[1] = self.next_filt[1]
            mb_store_release(&self.have, w)
        w = mb_load_acquire(&self.retire_want)
        if w != self.retire_have:
            if self.old_kern != NULL:
                (<KernelRules>self.old_kern).fold(c)
                (<KernelRules>self.old_kern).drain()
                self.old_kern = NULL
            mb_store_release(&self.retire_have, w)
        if (self.kern != NULL or self.old_kern != NULL) and (last or now - self.folded_ns >= FOLD_NS):
            self.folded_ns = now
            if self.old_kern != NULL:
                (<KernelRules>self.old_kern).fold(c)
                (<KernelRules>self.old_kern).drain()
            if self.kern != NULL:
                (<KernelRules>self.kern).fold(c)
                (<KernelRules>self.kern).drain()
                if (<KernelRules>self.kern).k.conf.punt_drops and sampled[0] >= sample_max:
                    (<KernelRules>self.kern).c_set_punt(0)   # enough samples: drop in the kernel

    def start(self):
        """The loop runs (set by the loop)."""
        mb_store_release(&self.running, 1)

    def stop(self):
        """The loop has returned: nothing takes a swap any more."""
        mb_store_release(&self.running, 0)

    @property
    def loop_running(self):
        return mb_load_acquire(&self.running) != 0

    # ---------------------------------------------------------------- the control thread's side
    @property
    def filters(self):
        """The filters in use (or taken by the loop and not yet settled)."""
        return list(self.cur[0])

    @property
    def kernel(self):
        return self.cur[1]

    def publish(self, filters, kernel=None):
        """Offer new filters (one per direction, counters attached) and the
        new in-kernel rule program (or None); the loop takes them at its
        next batch boundary."""
        filters = list(filters)
        if len(filters) != self.nfilters:
            raise ValueError("%d filters for a swap of %d" % (len(filters), self.nfilters))
        if self.pending is not None or self.retiring is not None:
            raise RuntimeError("the previous swap is not finished")
        self._point(filters, kernel, True)
        self.pending = (filters, kernel)
        mb_store_release(&self.want, self.want + 1)

    def taken(self):
        """True once the loop uses what publish() offered."""
        return mb_load_acquire(&self.have) == self.want

    def settle(self):
        """After taken(): the new filters become current; returns the old
        (filters, kernel), whose kernel program is still folded until
        retire()."""
        if self.pending is None or not self.taken():
            raise RuntimeError("nothing taken to settle")
        self.retiring = self.cur
        self.cur = self.pending
        self.pending = None
        return self.retiring

    def withdraw(self):
        """Take back what publish() offered, when the loop has stopped
        without taking it (loop_running is False)."""
        if self.pending is None:
            return
        if self.loop_running:
            raise RuntimeError("the loop runs: wait for taken()")
        if self.taken():
            self.settle()
            return
        self.want = self.have
        self.pending = None

    def retire(self):
        """Ask the loop to fold the old kernel program one last time and
        forget it (after the queue runs the new one)."""
        mb_store_release(&self.retire_want, self.retire_want + 1)

    def retired(self):
        """True once the loop has forgotten the old program; its references
        are dropped then (the caller closes the program)."""
        if mb_load_acquire(&self.retire_have) != self.retire_want:
            return False
        self.retiring = None
        return True

    def final_fold(self, counters):
        """After the loop has returned: fold what the kernel programs still
        counted into the counter block (the offload direction) and copy
        their last samples."""
        cdef uint64_t[::1] cv = memoryview(counters).cast("B").cast("Q")
        cdef uint64_t *c = &cv[0] + DIR0
        if self.loop_running:
            raise RuntimeError("the loop runs")
        if self.old_kern != NULL:
            (<KernelRules>self.old_kern).fold(c)
            (<KernelRules>self.old_kern).drain()
        if self.kern != NULL:
            (<KernelRules>self.kern).fold(c)
            (<KernelRules>self.kern).drain()

    def kernel_programs(self):
        """Every KernelRules the loop may still use (to close at the end)."""
        out = []
        for t in (self.cur, self.pending, self.retiring):
            if t is not None and t[1] is not None and t[1] not in out:
                out.append(t[1])
        return out
