# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Rule files run in the kernel: nm-offload's XDP rule program.

    kr = KernelRules(filter, port.xsk_map_fd)     # the filter's first stage: a rule set
    port.set_queue_program(kr.prog_fd)            # the queue's XDP filter, atomically
    ...                                           # the worker's loop folds the counters
    kr.fold_into(counter_block)                   # (also: one last time after the stop)

The stateless part of a rule file -- allow/deny by prefix, protocol and
port, first match wins -- is evaluated by an XDP program
(middlebox/bpf/mb_rules.bpf.c) from the same compiled tables the user-space
filter uses (mb_filter.h): a flood is dropped, and valid packets handed to
the stack, before any copy to user space.  What the program cannot decide
alone goes to the queue's AF_XDP socket and the worker's full filter: a
packet whose first matching rule is a rate limit, a packet the rules allow
while further filter stages (expressions, BPF, Python) must agree, and
denied packets while drops are sampled into a pcap file.

Its per-CPU counters are folded into the worker's shared counters (rx,
fwd = reinjected, drop, bytes, and each rule's packets), so every output
shows one set of figures whichever side decided.
"""

import os

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from netmapy.errors import NoPrivilege
from middlebox.filter cimport STAGE_RULES
from middlebox.filter import FilterError

import errno as _errno

cdef extern from "<errno.h>" nogil:
    int errno

BPF_OBJECT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bpf", "mb_rules.bpf.o")

# worker counter block, per direction
from middlebox.counters cimport RX, RX_BYTES, FWD, FWD_BYTES, DROP, DROP_BYTES


class KernelFilterUnavailable(FilterError):
    """The rules cannot run in the kernel here (says why); the worker runs
    them in user space instead."""


cdef class KernelRules:
    """The XDP rule program for the first stage (a rule set) of a Filter
    (see the module documentation)."""

    def __cinit__(self):
        mb_kern_init(&self.k)
        self.tot = NULL
        self.last = NULL

    def __init__(self, Filter f not None, int xsks_fd=-1, bint punt_drops=False, path=None):
        cdef const char *stage = NULL
        cdef char *log = <char *>calloc(1, 1 << 20)
        cdef int rc
        cdef bytes bpath
        if f.nstages < 1 or f.kind[0] != STAGE_RULES:
            raise KernelFilterUnavailable("the first filter stage is not a rule file: only "
                                          "rule files run in the kernel")
        self.path = path or BPF_OBJECT
        if not os.path.exists(self.path):
            raise KernelFilterUnavailable(
                "%s is missing: netmapy was built without clang, so rule files run in user "
                "space (apt-get install clang, then reinstall netmapy)" % self.path)
        self.f = f                       # keeps the filter (and these) alive
        self.hits_pp = &f.hits           # attached later, maybe
        self.rmap = f.rule_map[0]
        self.nrules = f.rs[0].nrules
        self.final = f.nstages == 1
        bpath = self.path.encode()
        if log == NULL:
            raise MemoryError()
        try:
            rc = mb_kern_open(&self.k, bpath, &f.rs[0], xsks_fd, self.final, punt_drops, &stage,
                              log, 1 << 20)
            text = (<bytes>log).decode("utf-8", "replace").strip().splitlines()
        finally:
            free(log)
        if rc < 0:
            what = (<bytes>stage).decode() if stage != NULL else "loading"
            if rc in (-_errno.EPERM, -_errno.EACCES):
                raise NoPrivilege("loading the in-kernel rule program", "CAP_BPF and CAP_NET_ADMIN")
            if rc == -_errno.E2BIG and what.startswith("too many rule shapes"):
                raise KernelFilterUnavailable(
                    "the rule file has %d rule shapes (fields and prefix lengths), more than "
                    "the %d the in-kernel program hashes: it runs in user space" % (
                        f.rs[0].ngroups, MBK_MAX_GROUPS))
            raise KernelFilterUnavailable(
                "the in-kernel rule program could not be used (%s: %s)%s" % (
                    what, os.strerror(-rc),
                    (": " + " | ".join(text[max(0, len(text) - 3):])) if text else ""))
        self.tot = <uint64_t *>calloc(self.k.ncounts, sizeof(uint64_t))
        self.last = <uint64_t *>calloc(self.k.ncounts, sizeof(uint64_t))
        if self.tot == NULL or self.last == NULL:
            self.close()
            raise MemoryError()

    def __dealloc__(self):
        mb_kern_close(&self.k)
        free(self.tot)
        free(self.last)

    def close(self):
        """Unload (the program lives on while the interface's program array
        holds it: remove it there first)."""
        mb_kern_close(&self.k)

    @property
    def prog_fd(self):
        if self.k.obj == NULL:
            raise ValueError("the rule program is closed")
        return self.k.prog_fd

    @property
    def punt_drops(self):
        return bool(self.k.conf.punt_drops)

    def set_punt_drops(self, bint on):
        """Send denied packets to user space (while drops are sampled) or
        drop them in the kernel."""
        self._set(punt_drops=on)

    def set_user_action(self, int action):
        """Tests: return this XDP action instead of redirecting to the
        socket (0: redirect)."""
        self._set(user_action=action)

    def _set(self, punt_drops=None, user_action=None):
        cdef int rc
        if self.k.obj == NULL:
            raise ValueError("the rule program is closed")
        if punt_drops is not None:
            self.k.conf.punt_drops = 1 if punt_drops else 0
        if user_action is not None:
            self.k.conf.user_action = user_action
        rc = mb_kern_set_conf(&self.k)
        if rc < 0:
            raise OSError(-rc, "updating the in-kernel rule program: %s" % os.strerror(-rc))

    cdef int c_set_punt(self, bint on) noexcept nogil:
        if self.k.obj == NULL:
            return 0
        self.k.conf.punt_drops = 1 if on else 0
        return mb_kern_set_conf(&self.k)

    def sample_drops(self, ring, uint32_t one_in):
        """Describe about 1 of ``one_in`` drops the program decides (0:
        none) in its ring buffer; drain() copies them into ``ring`` (a
        writable buffer holding the worker's struct mb_ds_ring, the attack
        view's, middlebox/includes/mb_dsample.h)."""
        cdef unsigned char[::1] v
        cdef int rc
        if self.k.obj == NULL:
            raise ValueError("the rule program is closed")
        v = memoryview(ring).cast("B")
        rc = mb_kern_sample_drops(&self.k, <void *>&v[0], one_in)
        if rc < 0:
            raise OSError(-rc, "sampling the drops of the in-kernel rule program: %s"
                          % os.strerror(-rc))
        self._ring_owner = ring

    cdef int drain(self) noexcept nogil:
        """Copy the drops the program sampled since the last call into
        the attack view's ring (the worker's loop thread: the ring's one
        writer).  The number of samples, or -errno."""
        if self.k.obj == NULL:
            return 0
        return mb_kern_drain_samples(&self.k)

    def drain_samples(self):
        """drain() from Python (tests; no loop may be running)."""
        cdef int rc = self.drain()
        if rc < 0:
            raise OSError(-rc, "reading the in-kernel rule program's samples")
        return rc

    cdef int fold(self, uint64_t *c) noexcept nogil:
        """Add what the program decided since the last fold to a
        direction's counters c (rx, fwd, drop and bytes) and to the
        filter's rule counters.  0, or -errno (counters unchanged)."""
        cdef uint32_t i, n = self.k.ncounts
        cdef uint64_t dp, dd
        cdef uint64_t *hits = self.hits_pp[0]
        cdef int rc
        if self.k.obj == NULL:
            return 0
        rc = mb_kern_read(&self.k, self.tot)
        if rc < 0:
            return rc
        dp = self.tot[MBK_C_PASS] - self.last[MBK_C_PASS]
        dd = self.tot[MBK_C_DROP] - self.last[MBK_C_DROP]
        c[RX] += dp + dd
        c[RX_BYTES] += (self.tot[MBK_C_PASS_BYTES] - self.last[MBK_C_PASS_BYTES] +
                        self.tot[MBK_C_DROP_BYTES] - self.last[MBK_C_DROP_BYTES])
        c[FWD] += dp
        c[FWD_BYTES] += self.tot[MBK_C_PASS_BYTES] - self.last[MBK_C_PASS_BYTES]
        c[DROP] += dd
        c[DROP_BYTES] += self.tot[MBK_C_DROP_BYTES] - self.last[MBK_C_DROP_BYTES]
        if hits != NULL:
            for i in range(self.nrules + 1):
                hits[self.rmap[i]] += self.tot[MBK_C_RULES + i] - self.last[MBK_C_RULES + i]
        memcpy(self.last, self.tot, n * sizeof(uint64_t))
        return 0

    def fold_into(self, counters):
        """fold() into a worker's counter block (the offload direction)."""
        cdef uint64_t[::1] cv = memoryview(counters).cast("B").cast("Q")
        cdef int rc
        if cv.shape[0] < 16:
            raise ValueError("the counter block needs 16 uint64 at least")
        rc = self.fold(&cv[8])
        if rc < 0:
            raise OSError(-rc, "reading the in-kernel rule program's counters")

    def totals(self):
        """What the program did so far: {pass, pass_bytes, drop, drop_bytes,
        user, user_bytes, rules: [per C rule..., default]}."""
        cdef int rc
        cdef uint32_t i
        if self.k.obj == NULL:
            raise ValueError("the rule program is closed")
        rc = mb_kern_read(&self.k, self.tot)
        if rc < 0:
            raise OSError(-rc, "reading the in-kernel rule program's counters")
        return dict(pass_=self.tot[MBK_C_PASS], pass_bytes=self.tot[MBK_C_PASS_BYTES],
                    drop=self.tot[MBK_C_DROP], drop_bytes=self.tot[MBK_C_DROP_BYTES],
                    user=self.tot[MBK_C_USER], user_bytes=self.tot[MBK_C_USER_BYTES],
                    samples_lost=self.tot[MBK_C_SAMPLES_LOST],
                    rules=[self.tot[MBK_C_RULES + i] for i in range(self.k.ncounts - MBK_C_RULES)])

    def test_run(self, frame, uint32_t repeat=1, timed=False):
        """Run the program on one frame with BPF_PROG_RUN (not live): its
        XDP action (XDP_DROP 1, XDP_PASS 2, or the user action set with
        set_user_action); with timed=True, (action, ns per run) over
        `repeat` runs as the kernel measured them."""
        cdef bytes data = bytes(frame)
        cdef uint32_t ret = 0, dur = 0
        cdef int rc
        if self.k.obj == NULL:
            raise ValueError("the rule program is closed")
        rc = mb_kern_test_run(&self.k, <const char *>data, len(data), repeat, &ret, &dur)
        if rc < 0:
            raise OSError(-rc, "BPF_PROG_RUN of the rule program")
        if timed:
            return ret, dur
        return ret
