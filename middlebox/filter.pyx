# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled packet filters: rule files, tcpdump expressions and raw classic
BPF, chained; evaluated in C per batch, never per packet in Python.

    f = Filter()
    f.add_rules(rules.load("dns.rules"))          # allow/deny/ratelimit
    f.add_expression("udp and port 53", drop=True) # tcpdump syntax (libpcap)
    f.add_bpf(open("p0f.bpf").read(), drop=True)   # `tcpdump -ddd` text
    f.check(frame) -> True/False                   # one frame (for tests)

A packet passes when every stage lets it: a rule set decides by its first
matching rule (or its default), an accept-expression must match, a
drop-expression must not.  Counters: one per rule (and per default, per
expression): packets it decided, and how many of those a rate limit dropped.
"""

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset
from netmapy.includes.abi cimport (netmap_ring, netmap_slot, NETMAP_BUF,
                                   nm_ring_space)
from netmapy.core cimport slot_move
from netmapy.includes.pcap cimport (pcap_t, bpf_program, bpf_insn, pcap_open_dead,
                                    pcap_compile, pcap_freecode, pcap_close, pcap_geterr,
                                    bpf_filter, DLT_EN10MB)
from netmapy.includes.system cimport clock_gettime, timespec, CLOCK_MONOTONIC
from middlebox.counters cimport *

cdef extern from "mb_dsample.h" nogil:
    struct mb_ds_ring:
        pass
    void mb_ds_drop(mb_ds_ring *r, const uint8_t *frame, uint32_t length, uint8_t origin)

import ipaddress

from netmapy.errors import NetmapyError
from netmapy.host import cbpf as _cbpf
from . import rules as _rules


class FilterError(NetmapyError, ValueError):
    """A filter that does not compile; says where and why."""


cdef uint64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


def now_ns():
    return _now_ns()


cdef void _net_words(net, uint64_t *hi, uint64_t *lo, uint64_t *mhi, uint64_t *mlo):
    """A prefix as 128-bit value and mask (IPv4 as ::ffff:0:0/96 + prefix)."""
    if net.version == 4:
        addr = int(net.network_address) | (0xffff << 32)
        plen = 96 + net.prefixlen
    else:
        addr = int(net.network_address)
        plen = net.prefixlen
    mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1) if plen else 0
    addr &= mask
    hi[0] = addr >> 64
    lo[0] = addr & 0xffffffffffffffff
    mhi[0] = mask >> 64
    mlo[0] = mask & 0xffffffffffffffff


def parse_bpf_text(text, source="<bpf>"):
    """Classic BPF as `tcpdump -ddd` prints it (a count line, then
    "code jt jf k" lines) or as `tcpdump -dd` C fragments; also the
    single-line comma form of iptables -m bpf / bpftools
    ("4,48 0 0 9,21 0 1 17,6 0 0 65535,6 0 0 0").  Checked as
    netmapy.host.cbpf.check does (FilterError names the instruction and the fix)."""
    return _cbpf.check(_cbpf.parse_text(text, source, FilterError), source, FilterError)


def _validate_bpf(insns, source):
    return _cbpf.check(insns, source, FilterError)


def compile_expression(expr, snaplen=65535, netmask=None):
    """A tcpdump expression compiled with libpcap to classic BPF
    [(code, jt, jf, k)] for Ethernet frames.  netmask: the IPv4 netmask
    expressions such as `ip broadcast` need ("255.255.255.0", "/24", 24;
    None: unknown)."""
    return _cbpf.compile_expression(expr, netmask, snaplen, FilterError)


cdef class Interpreter:
    """Classic BPF `program` (checked first) loaded for netmapy's own
    interpreter, the one Filter uses for programs with backward jumps:
    ``interp(frame)`` is (the program's return value, whether the loop
    limit ended it).  For tests and tools."""
    cdef bpf_insn *prog
    cdef uint32_t n
    cdef uint32_t limit

    def __cinit__(self, program, uint32_t loop_limit=_cbpf.LOOP_LIMIT):
        cdef list insns = _cbpf.check(program, "<bpf>", FilterError, warn=False)
        cdef uint32_t i
        self.n = len(insns)
        self.limit = loop_limit
        self.prog = <bpf_insn *>calloc(self.n, sizeof(bpf_insn))
        if self.prog == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.prog[i].code, self.prog[i].jt, self.prog[i].jf, self.prog[i].k = insns[i]

    def __dealloc__(self):
        free(self.prog)

    def __call__(self, frame):
        cdef const uint8_t[::1] v = memoryview(frame).cast("B")
        cdef const uint8_t *pkt = <const uint8_t *>"" if v.shape[0] == 0 else &v[0]
        cdef int looped = 0
        cdef uint32_t r = mb_bpf_run(self.prog, self.n, pkt, v.shape[0], v.shape[0],
                                     self.limit, &looped)
        return r, bool(looped)


def interpret(program, frame, uint32_t loop_limit=_cbpf.LOOP_LIMIT):
    """(return value, ended by the loop limit) of classic BPF `program` on
    one frame, run by netmapy's interpreter (see Interpreter)."""
    return Interpreter(program, loop_limit)(bytes(frame))


cdef class Filter:
    """A chain of compiled filter stages (see the module documentation)."""

    def __cinit__(self):
        self.nstages = 0
        self.ncounters = 0
        self.hits = NULL
        self.limited = NULL
        self.dsample = NULL
        self.names = []
        self.descriptions = []
        memset(self.prog, 0, sizeof(self.prog))
        memset(self.rule_map, 0, sizeof(self.rule_map))
        memset(self.rs, 0, sizeof(self.rs))

    def __dealloc__(self):
        cdef int i
        for i in range(self.nstages):
            free(self.prog[i])
            free(self.rule_map[i])
            free(self.rs[i].rules)
            free(self.rs[i].buckets)
            free(self.rs[i].groups)
            free(self.rs[i].table)
            free(self.rs[i].linear)
        if self._counter_owner is None:
            free(self.hits)
            free(self.limited)

    def __len__(self):
        return self.nstages

    def is_rules_first(self):
        """True when the first stage is a rule file (what the kernel can run)."""
        return self.nstages > 0 and self.kind[0] == STAGE_RULES

    cdef int _stage(self) except -1:
        if self.nstages >= MAX_STAGES:
            raise FilterError("at most %d filter stages" % MAX_STAGES)
        if self.hits != NULL:
            raise FilterError("add every stage before the counters are attached")
        return self.nstages

    def add_rules(self, ruleset, uint32_t buckets=65536, index=None):
        """Add a parsed rule file (middlebox.rules.RuleSet, or its text).

        The index groups the plain allow/deny rules with exact ports by
        shape (which fields, which prefix lengths) into hash tables, so a
        packet costs one lookup per shape instead of one test per rule;
        port ranges and rate limits are still walked in order.  The verdict
        is the same as the linear walk's (first match wins).  index=None
        (the default) builds it from 8 rules up, True always, False never
        (the linear walk, for comparison)."""
        cdef int s = self._stage()
        cdef list crules = []
        cdef mb_rule *r
        cdef uint32_t i, nb
        if isinstance(ruleset, str):
            ruleset = _rules.parse(ruleset)
        # expand port lists: one C rule per (sport range, dport range)
        for ui, rule in enumerate(ruleset.rules):
            for sp in (rule.sports or [None]):
                for dp in (rule.dports or [None]):
                    crules.append((ui, rule, sp, dp))
        nb = 1
        while nb < buckets:
            nb <<= 1
        self.rs[s].rules = <mb_rule *>calloc(max(1, len(crules)), sizeof(mb_rule))
        self.rule_map[s] = <uint32_t *>calloc(len(crules) + 1, sizeof(uint32_t))
        has_rl = any(r_.action == "ratelimit" for r_ in ruleset.rules)
        self.rs[s].nbuckets = nb if has_rl else 2
        self.rs[s].buckets = <mb_bucket *>calloc(self.rs[s].nbuckets, sizeof(mb_bucket))
        if self.rs[s].rules == NULL or self.rule_map[s] == NULL or self.rs[s].buckets == NULL:
            raise MemoryError()
        for i, (ui, rule, sp, dp) in enumerate(crules):
            r = &self.rs[s].rules[i]
            r.action = {"allow": MB_ACT_ALLOW, "deny": MB_ACT_DENY,
                        "ratelimit": MB_ACT_RATELIMIT}[rule.action]
            r.match = 0
            if rule.proto is not None:
                r.match |= MB_R_PROTO
                r.proto = rule.proto
            if rule.src is not None:
                r.match |= MB_R_SRC
                _net_words(rule.src, &r.src_hi, &r.src_lo, &r.src_mask_hi, &r.src_mask_lo)
            if rule.dst is not None:
                r.match |= MB_R_DST
                _net_words(rule.dst, &r.dst_hi, &r.dst_lo, &r.dst_mask_hi, &r.dst_mask_lo)
            if sp is not None:
                r.match |= MB_R_SPORT
                r.sport_lo, r.sport_hi = sp
            if dp is not None:
                r.match |= MB_R_DPORT
                r.dport_lo, r.dport_hi = dp
            if rule.family == 4:
                r.match |= MB_R_IP4
            elif rule.family == 6:
                r.match |= MB_R_IP6
            r.rate_pps = rule.rate
            r.burst = rule.burst
            self.rule_map[s][i] = self.ncounters + ui
        self.rule_map[s][len(crules)] = self.ncounters + len(ruleset.rules)
        self.rs[s].nrules = len(crules)
        if index or (index is None and len(crules) >= 8):
            self._index(s)
        self.rs[s].default_action = MB_ACT_ALLOW if ruleset.default == "allow" else MB_ACT_DENY
        self.kind[s] = STAGE_RULES
        self.base[s] = self.ncounters
        for rule in ruleset.rules:
            self.names.append("%s:%d" % (ruleset.source, rule.line))
            self.descriptions.append(rule.text)
        self.names.append("%s:default" % ruleset.source)
        self.descriptions.append("default %s" % ruleset.default)
        self.ncounters += len(ruleset.rules) + 1
        self.nstages += 1
        return self

    cdef int _index(self, int s) except -1:
        """Build the tuple-space index of stage s (see add_rules)."""
        cdef mb_ruleset *rs = &self.rs[s]
        cdef mb_rule *r
        cdef uint32_t i, gi, n = rs.nrules, ts = 16
        cdef dict shapes = {}
        cdef list members = []
        cdef list linear = []
        rs.match_all = n
        for i in range(n):
            r = &rs.rules[i]
            if r.action == MB_ACT_RATELIMIT:
                linear.append(i)
                continue
            if r.match == 0:
                if rs.match_all == n:
                    rs.match_all = i
                continue
            if ((r.match & MB_R_SPORT and r.sport_lo != r.sport_hi) or
                    (r.match & MB_R_DPORT and r.dport_lo != r.dport_hi)):
                linear.append(i)
                continue
            shape = (r.match, r.src_mask_hi if r.match & MB_R_SRC else 0,
                     r.src_mask_lo if r.match & MB_R_SRC else 0,
                     r.dst_mask_hi if r.match & MB_R_DST else 0,
                     r.dst_mask_lo if r.match & MB_R_DST else 0)
            gi = shapes.setdefault(shape, len(shapes))
            members.append((gi, i))
        # rules after the first match-everything rule never decide
        linear = [i for i in linear if i < rs.match_all]
        members = [(g, i) for (g, i) in members if i < rs.match_all]
        rs.ngroups = len(shapes)
        rs.nlinear = len(linear)
        while ts < 2 * len(members):
            ts <<= 1
        rs.tsize = ts
        rs.groups = <mb_group *>calloc(max(1, rs.ngroups), sizeof(mb_group))
        rs.table = <mb_tentry *>calloc(ts, sizeof(mb_tentry))
        rs.linear = <uint32_t *>calloc(max(1, rs.nlinear), sizeof(uint32_t))
        if rs.groups == NULL or rs.table == NULL or rs.linear == NULL:
            raise MemoryError()
        for shape, gi in shapes.items():
            rs.groups[gi].match = shape[0]
            rs.groups[gi].src_mask_hi = shape[1]
            rs.groups[gi].src_mask_lo = shape[2]
            rs.groups[gi].dst_mask_hi = shape[3]
            rs.groups[gi].dst_mask_lo = shape[4]
        for gi, i in members:          # ascending rule order: the first wins
            if mb_tinsert(rs, gi, i) != 0:
                raise FilterError("internal error: rule index table full")
        for i in range(rs.nlinear):
            rs.linear[i] = linear[i]
        return 0

    def add_bpf(self, program, bint drop=False, str name=None, loop_limit=None, source=None):
        """Add classic BPF: a list of (code, jt, jf, k) or `tcpdump -ddd`
        text.  drop=True: matching packets are dropped; else only matching
        packets pass.  A program with backward jumps (libpcap's `protochain`)
        runs in netmapy's interpreter, which allows loop_limit backward jumps
        per packet (default netmapy.host.cbpf.LOOP_LIMIT) and ends the program
        with 0 at the next; the others in libpcap's own.  Errors name the
        program as `source` (default: the stage name)."""
        cdef int s = self._stage()
        cdef uint32_t i
        src = source or name or ("bpf%d" % s)
        if loop_limit is None:
            loop_limit = _cbpf.LOOP_LIMIT
        if not 0 <= loop_limit <= _cbpf.MAX_LOOP_LIMIT:
            raise FilterError("%s: loop_limit=%r: 0..%d backward jumps per packet" % (
                src, loop_limit, _cbpf.MAX_LOOP_LIMIT))
        if isinstance(program, str):
            insns = parse_bpf_text(program, src)
        else:
            insns = _validate_bpf(program, src)
        self.prog[s] = <bpf_insn *>calloc(len(insns), sizeof(bpf_insn))
        if self.prog[s] == NULL:
            raise MemoryError()
        for i, (code, jt, jf, k) in enumerate(insns):
            self.prog[s][i].code = code
            self.prog[s][i].jt = jt
            self.prog[s][i].jf = jf
            self.prog[s][i].k = k
        self.proglen[s] = len(insns)
        self.loops[s] = bool(_cbpf.backward_jumps(insns))
        self.loop_limit[s] = loop_limit
        self.looped[s] = 0
        self.kind[s] = STAGE_BPF_DROP if drop else STAGE_BPF_ACCEPT
        self.base[s] = self.ncounters
        self.names.append(name or ("bpf%d" % s))
        self.descriptions.append("%s %d BPF instructions" % ("drop matches of" if drop else
                                                             "accept only", len(insns)))
        self.ncounters += 1
        self.nstages += 1
        return self

    def add_expression(self, str expr, bint drop=False, netmask=None, loop_limit=None):
        """Add a tcpdump expression (compiled with libpcap).  netmask: the
        IPv4 netmask of the packets' network, for expressions that need one
        (`ip broadcast`): "255.255.255.0", "/24" or 24; None: not known."""
        self.add_bpf(compile_expression(expr, netmask=netmask), drop, expr, loop_limit,
                     source=repr(expr))
        self.descriptions[len(self.descriptions) - 1] = "%s %r" % (
            "drop" if drop else "accept only", expr)
        return self

    def attach_counters(self, hits=None, limited=None, slots=None):
        """Keep the counters in these buffers (uint64 each, e.g. shared
        memory a supervisor reads); allocate them when not given.

        ``slots``: where each counter lives in the buffers (counter i at
        index slots[i]; default i).  A supervisor that swaps filters while
        packets flow (middlebox.reload) keeps a rule's counter at the same
        index in every filter that has the rule, so its count carries over."""
        cdef uint64_t[::1] h, l
        cdef int s
        cdef uint32_t i, n, need
        if self.hits != NULL:
            raise FilterError("counters are already attached")
        need = self.ncounters
        if slots is not None:
            slots = [int(x) for x in slots]
            if len(slots) != self.ncounters:
                raise ValueError("%d counter slots for %d counters" % (len(slots),
                                                                      self.ncounters))
            if len(set(slots)) != len(slots) or (slots and min(slots) < 0):
                raise ValueError("counter slots must be distinct and >= 0")
            need = max(slots) + 1 if slots else 0
        if hits is None:
            self.hits = <uint64_t *>calloc(max(1, need), sizeof(uint64_t))
            self.limited = <uint64_t *>calloc(max(1, need), sizeof(uint64_t))
            if self.hits == NULL or self.limited == NULL:
                raise MemoryError()
        else:
            h = memoryview(hits).cast("B").cast("Q")
            l = memoryview(limited).cast("B").cast("Q")
            if h.shape[0] < need or l.shape[0] < need:
                raise ValueError("counter buffers need %d entries" % need)
            self.hits = &h[0]
            self.limited = &l[0]
            self._counter_owner = (hits, limited)
        if slots is not None:
            # C rule -> counter becomes C rule -> slot (the kernel program's
            # counters fold through the same map); a BPF stage's one counter
            for s in range(self.nstages):
                if self.kind[s] == STAGE_RULES:
                    n = self.rs[s].nrules
                    for i in range(n + 1):
                        self.rule_map[s][i] = slots[self.rule_map[s][i]]
                else:
                    self.base[s] = slots[self.base[s]]
            self.slots = slots

    def set_drop_sampler(self, ring, int origin=0):
        """Sample about 1 of K dropped packets into ``ring`` (a writable
        buffer holding a struct mb_ds_ring: the worker's part of the
        counter file, middlebox/stats.py), for the attack view; ``origin``
        says which direction dropped them.  None stops sampling."""
        cdef unsigned char[::1] v
        if ring is None:
            self.dsample = NULL
            self._dsample_owner = None
            return
        v = memoryview(ring).cast("B")
        if v.shape[0] < 64:
            raise ValueError("the drop sample ring is too small")
        self.dsample = <void *>&v[0]
        self.dsample_origin = origin
        self._dsample_owner = ring

    def loop_limited(self):
        """{stage name: packets the loop limit ended} for the stages whose
        programs have backward jumps (this process's count)."""
        return {self.names[self.base[s]]: self.looped[s] for s in range(self.nstages)
                if self.kind[s] != STAGE_RULES and self.loops[s]}

    @property
    def num_counters(self):
        return self.ncounters

    def counters(self):
        """[(name, description, packets decided, rate-limited drops)]."""
        if self.hits == NULL:
            return [(n, d, 0, 0) for n, d in zip(self.names, self.descriptions)]
        at = self.slots if self.slots is not None else range(self.ncounters)
        return [(self.names[i], self.descriptions[i], self.hits[at[i]], self.limited[at[i]])
                for i in range(self.ncounters)]

    cdef int verdict(self, const uint8_t *pkt, uint32_t length, uint64_t now_ns) noexcept nogil:
        """1: pass, 0: drop.  Counts into hits/limited."""
        cdef int s, lim, ok
        cdef uint32_t ri, c
        cdef mb_pkt p
        cdef bint parsed = False
        self.limited_drop = False
        for s in range(self.nstages):
            if self.kind[s] == STAGE_RULES:
                if not parsed:
                    mb_parse(pkt, length, &p)
                    parsed = True
                ok = mb_ruleset_eval(&self.rs[s], &p, now_ns, &ri, &lim)
                c = self.rule_map[s][ri]
                self.hits[c] += 1
                if lim:
                    self.limited[c] += 1
                if not ok:
                    self.limited_drop = lim != 0
                    return 0
            else:
                if self.loops[s]:
                    lim = 0
                    ok = mb_bpf_run(self.prog[s], self.proglen[s], pkt, length, length,
                                    self.loop_limit[s], &lim) != 0
                    if lim:
                        self.looped[s] += 1
                else:
                    ok = bpf_filter(self.prog[s], pkt, length, length) != 0
                if self.kind[s] == STAGE_BPF_DROP:
                    if ok:
                        self.hits[self.base[s]] += 1
                        return 0
                elif not ok:
                    self.hits[self.base[s]] += 1
                    return 0
        return 1

    def check(self, frame, now_ns=None):
        """The verdict for one frame (True: pass).  For tests and tools: the
        workers call the C method per batch."""
        cdef const uint8_t[::1] v = memoryview(frame).cast("B")
        cdef uint64_t t = _now_ns() if now_ns is None else now_ns
        if self.hits == NULL:
            self.attach_counters()
        if v.shape[0] == 0:
            return bool(self.verdict(<const uint8_t *>"", 0, t))
        return bool(self.verdict(&v[0], v.shape[0], t))

    def check_many(self, frames, now_ns=None):
        return [self.check(f, now_ns) for f in frames]

    def time_verdicts(self, frames, uint32_t rounds=1000):
        """Run the verdict on every frame `rounds` times in a nogil C loop
        (as the workers do, without the rings); returns (nanoseconds per
        packet, packets passed in one round).  For benchmarks: counters
        count these packets too."""
        cdef list fl = [bytes(f) for f in frames]
        cdef uint32_t n = len(fl), i, r
        cdef uint64_t t0, t1, passed = 0
        cdef bytes blob = b"".join(fl)
        cdef const uint8_t *base = <const uint8_t *>blob
        cdef uint32_t *offs = <uint32_t *>calloc(n + 1, sizeof(uint32_t))
        if offs == NULL:
            raise MemoryError()
        if n == 0 or rounds == 0:
            free(offs)
            raise ValueError("time_verdicts needs frames and rounds >= 1")
        if self.hits == NULL:
            self.attach_counters()
        try:
            for i in range(n):
                offs[i + 1] = offs[i] + len(fl[i])
            with nogil:
                t0 = _now_ns()
                for r in range(rounds):
                    for i in range(n):
                        passed += self.verdict(base + offs[i], offs[i + 1] - offs[i], t0)
                t1 = _now_ns()
            return (t1 - t0) / (<double>n * rounds), passed // rounds
        finally:
            free(offs)


cdef uint32_t filter_move(Filter f, netmap_ring *rx, netmap_ring *tx, bint swap,
                          uint64_t now_ns, uint64_t *c,
                          netmap_ring *sample, uint64_t *sampled,
                          uint64_t sample_max) noexcept nogil:
    """Walk rx [head, tail): passing packets go to tx (swap or copy, in
    order), dropped ones are released (and copied to `sample`'s TX ring if
    given, it has room and fewer than sample_max were sampled so far).
    Stops when tx is full (before deciding: a packet is decided, and its
    rule counted, once), so nothing is lost.
    Advances both heads; returns packets consumed.
    c: the direction's counters (RX .. ERRORS of middlebox/counters.pxd):
    every consumed packet is counted in rx and in exactly one of fwd, drop
    (ratelimited too when a rate limit decided) and errors (a passing packet
    larger than tx's buffers when copying: released, never truncated);
    sampled counts the copies."""
    cdef uint32_t i = rx.head, j = tx.head, n = 0, sj
    cdef uint32_t room = nm_ring_space(tx) if tx != NULL else 0
    cdef uint32_t cap = tx.nr_buf_size if tx != NULL else 0
    cdef uint64_t nbytes = 0
    cdef netmap_slot *rs
    cdef netmap_slot *ts
    cdef char *buf
    while i != rx.tail and room:
        rs = &rx.slot[i]
        buf = NETMAP_BUF(rx, rs.buf_idx)
        if f is None or f.nstages == 0 or f.verdict(<const uint8_t *>buf, rs.len, now_ns):
            if not swap and rs.len > cap:
                c[ERRORS] += 1
            else:
                ts = &tx.slot[j]
                slot_move(rx, rs, tx, ts, swap)
                c[FWD] += 1
                c[FWD_BYTES] += rs.len
                j = j + 1 if j + 1 < tx.num_slots else 0
                room -= 1
        else:
            c[DROP] += 1
            c[DROP_BYTES] += rs.len
            if f.limited_drop:
                c[LIMITED] += 1
            if f.dsample != NULL:           # the attack view: 1 of K drops, parsed
                mb_ds_drop(<mb_ds_ring *>f.dsample, <const uint8_t *>buf, rs.len,
                           f.dsample_origin)
            if sample != NULL and sampled[0] < sample_max and nm_ring_space(sample):
                sampled[0] += 1
                sj = sample.head
                memcpy(NETMAP_BUF(sample, sample.slot[sj].buf_idx), buf, rs.len)
                sample.slot[sj].len = rs.len
                sample.head = sample.cur = sj + 1 if sj + 1 < sample.num_slots else 0
        nbytes += rs.len
        i = i + 1 if i + 1 < rx.num_slots else 0
        n += 1
    rx.head = rx.cur = i
    if tx != NULL:
        tx.head = tx.cur = j
    c[RX] += n
    c[RX_BYTES] += nbytes
    return n
