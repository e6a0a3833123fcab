# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""netmapy.tools.pktgen_engine: the packet generator's fast path (netmapy-pktgen;
its C is netmapy/includes/nm_pktgen.h, declared in netmapy/includes/pktgen.pxd;
the old name netmapy.pktgen still imports it).

Every loop here runs without the GIL over any netmapy port:

``transmit(port, gen, ...)``  builds Ethernet/IPv4/UDP frames from a
    ``Generator`` straight into TX ring slots, in batches, optionally paced
    to a rate (pps or bps), for a count or a duration.
``receive(port, ...)``  counts packets and bytes, and checks what
    pktgen frames carry: per-stream sequence numbers (loss, reordering,
    duplicates), IPv4/UDP checksums, and the send timestamp (one-way latency
    when the sender runs on the same host).
``ping(port, gen, ...)`` / ``pong(port, ...)``  round trips: ping sends a
    timestamped probe and waits for its echo; pong reflects every frame
    (MACs, IPs and ports swapped).  RTT min/avg/max, percentiles and a
    log-scale histogram.
``replay(src, dst, ...)``  sends the frames of a capture (``pcap:`` port)
    at their recorded timing, sped up, at a fixed rate, or as fast as
    possible.

Each loop keeps its counters in a ``Counters`` block (by default shared
memory that forked processes and other threads can read while the loop
runs) and stops at its count, its duration, ``stop()`` (process-wide,
signal safe) or ``counters.stop()`` (that loop only, from any process that
shares the block).

Frames
------
Ethernet (dst, src, 0x0800) / IPv4 (20 bytes, DF, TTL 64) / UDP, then a
16-byte pktgen header at UDP payload offset 0::

    0  magic 0x4e50 ("NP")     2  stream (worker id)   3  flags (1: ping)
    4  sequence number (32 bits, per stream)
    8  send time (CLOCK_MONOTONIC ns, taken once per TX batch)

and a filler (byte k of the filler is k mod 256).  Frame sizes count the
frame without its FCS (what tcpdump shows and the interface counts); the
minimum is 60.  Checksums (IPv4 header and UDP) are right on every frame:
the parts that never change are summed once, and per packet only the
changed words are added (tot_len, id, addresses, ports, length, sequence,
time, and a precomputed sum of the filler for that length).

Pacing
------
A token bucket in packets (pps) or bits (bps, frame bytes x 8) refilled
from CLOCK_MONOTONIC.  The loop waits until a *quantum* of tokens is there
(rate x ``pace_us``, default 50 us, at least one packet, at most one batch)
and sends that many frames back to back, then waits for the next quantum:
at 1 Mpps that is ~50 frames every 50 us, at 10 kpps one frame every
100 us.  The bucket holds at most 4 quanta, so after a late wakeup (a
preempted CPU) at most 4 quanta leave at once and the rest of the delay is
not made up.  Waits longer than ~15 us sleep in clock_nanosleep (timer
slack set to 1 ns for the loop's thread), waking a little early (the
oversleep, learnt as a moving average) and spinning the last few
microseconds; shorter waits spin.  ``transmit`` reports the batches sent
and the largest one (the worst burst).
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from netmapy.includes.system cimport POLLIN, POLLOUT
from netmapy.core cimport (Port, netmap_ring, netmap_slot, NETMAP_BUF,
                           nm_ring_space, nm_ring_next, ring_move, clear_eintr)
from netmapy.stop cimport stop_requested
from netmapy.backends.pcap cimport PcapPort

import math
import mmap
import re
import socket
import struct
import threading
import time

__all__ = [
    "Generator", "Counters", "Rate", "SizeSpec", "transmit", "receive", "ping",
    "pong", "replay", "stop", "reset", "parse_rate", "parse_sizes",
    "parse_ip_range", "parse_port_range", "parse_mac", "percentiles",
    "histogram_rows", "merge", "MIN_FRAME", "HEADER_LEN", "MAGIC", "IMIX",
    "decode", "check_frame",
]

from netmapy.includes.pktgen cimport *

MAGIC = PG_MAGIC
MIN_FRAME = PG_MIN_LEN
HEADER_LEN = 16
HIST_BUCKETS = PG_HIST_N

# stop() asks every loop of this process to return (signal-safe), reset()
# clears that: the process-wide stop request of netmapy.stop
from netmapy.stop import request as stop, reset


# ------------------------------------------------------------------ parsing
# the one rate/size parser of netmapy (re-exported here, where they began)
from netmapy.units import Rate, SizeSpec, parse_rate, parse_sizes, si, IMIX, MAX_FRAME, _int
from netmapy import units as _units
assert _units.MIN_FRAME == PG_MIN_LEN


def _ip(text, what):
    try:
        return struct.unpack("!I", socket.inet_aton(text.strip()))[0] \
            if text.count(".") == 3 else _bad_ip(text, what)
    except OSError:
        _bad_ip(text, what)


def _bad_ip(text, what):
    raise ValueError("%s: %r is not an IPv4 address (a.b.c.d)" % (what, text))


def parse_ip_range(text, what="IP"):
    """'10.0.0.1' or '10.0.0.1-10.0.0.100' or '10.0.0.0/24' -> (lo, hi) as
    integers."""
    if isinstance(text, tuple):
        return text
    t = str(text).strip()
    if "/" in t:
        addr, _, plen = t.partition("/")
        p = _int(plen, "%s %r prefix length" % (what, text))
        if not 0 <= p <= 32:
            raise ValueError("%s %r: prefix length must be 0..32" % (what, text))
        a = _ip(addr, what)
        mask = (0xffffffff << (32 - p)) & 0xffffffff
        return (a & mask, (a & mask) | (~mask & 0xffffffff))
    if "-" in t:
        lo, _, hi = t.partition("-")
        lo, hi = _ip(lo, what), _ip(hi, what)
        if lo > hi:
            raise ValueError("%s range %s is empty: write the lower address first" % (what, t))
        return (lo, hi)
    a = _ip(t, what)
    return (a, a)


def parse_port_range(text, what="port"):
    """'9' or '1024-65535' -> (lo, hi)."""
    if isinstance(text, tuple):
        return text
    if isinstance(text, int):
        text = str(text)
    t = str(text).strip()
    lo, _, hi = t.partition("-")
    lo = _int(lo.strip(), "%s %r" % (what, text))
    hi = _int(hi.strip(), "%s %r" % (what, text)) if hi else lo
    for v in (lo, hi):
        if not 0 <= v <= 65535:
            raise ValueError("%s %r: ports are 0..65535" % (what, text))
    if lo > hi:
        raise ValueError("%s range %s is empty: write the lower port first" % (what, t))
    return (lo, hi)


_MAC_RE = re.compile(r"^([0-9a-fA-F]{1,2})([:-][0-9a-fA-F]{1,2}){5}$")


def parse_mac(text, what="MAC"):
    """'02:00:00:00:00:01' -> 6 bytes."""
    if isinstance(text, (bytes, bytearray)) and len(text) == 6:
        return bytes(text)
    t = str(text).strip()
    if not _MAC_RE.match(t):
        raise ValueError("%s %r: expected six hex bytes such as 02:00:00:00:00:01" % (what, text))
    return bytes(int(x, 16) for x in re.split("[:-]", t))


def _fmt_ip(v):
    return socket.inet_ntoa(struct.pack("!I", v))


# --------------------------------------------------------------- generator
cdef class Generator:
    """The frames a transmit (or ping) loop sends: addresses, ports and
    their ranges, sizes, and the stream id written into every frame.

    Address/port ranges are walked as an odometer (source port fastest,
    then destination port, source IP, destination IP), so every combination
    comes up in turn; ``random_flows=N`` draws N combinations at random
    from the ranges instead and picks one of them at random per packet.
    """
    cdef pg_gen g
    cdef readonly object sizes
    cdef readonly bytes src_mac, dst_mac
    cdef readonly tuple src_ip, dst_ip, src_port, dst_port
    cdef readonly uint32_t random_flows
    cdef readonly int stream

    def __cinit__(self, *a, **kw):
        memset(&self.g, 0, sizeof(self.g))

    def __init__(self, src_mac="02:00:00:00:00:01", dst_mac="ff:ff:ff:ff:ff:ff",
                 src_ip="10.0.0.1", dst_ip="10.0.0.2", src_port=1234, dst_port=9,
                 sizes=60, uint32_t random_flows=0, int stream=0, seed=1):
        cdef uint32_t i, k, nfill, maxlen
        cdef uint64_t s
        self.sizes = parse_sizes(sizes)
        self.src_mac = parse_mac(src_mac, "source MAC")
        self.dst_mac = parse_mac(dst_mac, "destination MAC")
        self.src_ip = parse_ip_range(src_ip, "source IP")
        self.dst_ip = parse_ip_range(dst_ip, "destination IP")
        self.src_port = parse_port_range(src_port, "source port")
        self.dst_port = parse_port_range(dst_port, "destination port")
        if not 0 <= stream <= 255:
            raise ValueError("stream must be 0..255 (one per worker), not %d" % stream)
        if random_flows > 10000000:
            raise ValueError("--random-flows %d: at most 10000000" % random_flows)
        self.random_flows = random_flows
        self.stream = stream
        self._free()
        maxlen = self.sizes.max
        self.g.maxlen = maxlen
        self.g.tmpl = <uint8_t *>calloc(maxlen, 1)
        nfill = maxlen - PG_FILL_OFF
        self.g.fill = <uint32_t *>calloc(nfill + 1, sizeof(uint32_t))
        if self.g.tmpl == NULL or self.g.fill == NULL:
            raise MemoryError()
        head = (self.dst_mac + self.src_mac + b"\x08\x00" +
                bytes([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]) + bytes(8) +
                bytes(8) + struct.pack("!HBB", PG_MAGIC, stream, 0) + bytes(12))
        memcpy(self.g.tmpl, <const char *>head, PG_FILL_OFF)
        s = 0
        self.g.fill[0] = 0
        for k in range(nfill):
            self.g.tmpl[PG_FILL_OFF + k] = k & 0xff
            s += ((k & 0xff) << 8) if (k % 2 == 0) else (k & 0xff)
            self.g.fill[k + 1] = <uint32_t>s
        self.g.ip_const = 0x4500 + 0x4000 + ((64 << 8) | 17)
        self.g.sip0, self.g.nsip = self.src_ip[0], <uint64_t>self.src_ip[1] - self.src_ip[0] + 1
        self.g.dip0, self.g.ndip = self.dst_ip[0], <uint64_t>self.dst_ip[1] - self.dst_ip[0] + 1
        self.g.sp0, self.g.nsp = self.src_port[0], self.src_port[1] - self.src_port[0] + 1
        self.g.dp0, self.g.ndp = self.dst_port[0], self.dst_port[1] - self.dst_port[0] + 1
        self.g.rng = (<uint64_t>seed * 0x9E3779B97F4A7C15ULL) ^ 0x2545F4914F6CDD1DULL
        if self.g.rng == 0:
            self.g.rng = 1
        self.g.stream = stream
        self._set_flags(0)
        if random_flows:
            self.g.fl_sip = <uint32_t *>malloc(random_flows * sizeof(uint32_t))
            self.g.fl_dip = <uint32_t *>malloc(random_flows * sizeof(uint32_t))
            self.g.fl_sp = <uint16_t *>malloc(random_flows * sizeof(uint16_t))
            self.g.fl_dp = <uint16_t *>malloc(random_flows * sizeof(uint16_t))
            if not (self.g.fl_sip and self.g.fl_dip and self.g.fl_sp and self.g.fl_dp):
                raise MemoryError()
            for i in range(random_flows):
                self.g.fl_sip[i] = self.g.sip0 + <uint32_t>(pg_rand(&self.g) % self.g.nsip)
                self.g.fl_dip[i] = self.g.dip0 + <uint32_t>(pg_rand(&self.g) % self.g.ndip)
                self.g.fl_sp[i] = <uint16_t>(self.g.sp0 + pg_rand(&self.g) % self.g.nsp)
                self.g.fl_dp[i] = <uint16_t>(self.g.dp0 + pg_rand(&self.g) % self.g.ndp)
            self.g.nflows = random_flows
        sz = self.sizes
        if sz.kind == "fixed":
            self.g.size_mode = 0
            self.g.next_len = sz.sizes[0]
        elif sz.kind == "range":
            self.g.size_mode = 1
            self.g.len_lo, self.g.len_hi = sz.sizes
            pg_next_len(&self.g)
        else:
            cyc = sz.cycle()
            self.g.size_mode = 2
            self.g.sizes = <uint16_t *>malloc(len(cyc) * sizeof(uint16_t))
            if self.g.sizes == NULL:
                raise MemoryError()
            for i in range(len(cyc)):
                self.g.sizes[i] = cyc[i]
            self.g.nsizes = len(cyc)
            self.g.isize = 0
            pg_next_len(&self.g)

    cdef _set_flags(self, uint8_t flags):
        self.g.flags = flags
        self.g.tmpl[PG_HDR_OFF + 3] = flags
        self.g.udp_const = 17 + PG_MAGIC + ((<uint32_t>self.g.stream << 8) | flags)

    cdef _free(self):
        free(self.g.tmpl); free(self.g.fill); free(self.g.sizes)
        free(self.g.fl_sip); free(self.g.fl_dip); free(self.g.fl_sp); free(self.g.fl_dp)
        self.g.tmpl = NULL; self.g.fill = NULL; self.g.sizes = NULL
        self.g.fl_sip = self.g.fl_dip = NULL
        self.g.fl_sp = self.g.fl_dp = NULL
        self.g.nflows = 0

    def __dealloc__(self):
        self._free()

    @property
    def max_len(self):
        return self.g.maxlen

    @property
    def seq(self):
        """The sequence number of the next frame."""
        return self.g.seq

    @property
    def flows(self):
        """How many distinct (src IP, dst IP, src port, dst port) it cycles
        through (random_flows, or the product of the ranges)."""
        if self.random_flows:
            return self.random_flows
        return self.g.nsip * self.g.ndip * self.g.nsp * self.g.ndp

    def frames(self, n, uint64_t ts=0):
        """The next n frames as bytes (what transmit() would send next)."""
        cdef bytearray b = bytearray(self.g.maxlen)
        cdef uint8_t *p = <uint8_t *>(<char *>b)
        cdef uint32_t ln
        out = []
        for _ in range(n):
            ln = self.g.next_len
            pg_build(&self.g, p, ln, ts or pg_now())
            pg_next_len(&self.g)
            out.append(bytes(b[:ln]))
        return out

    def describe(self):
        """One line: sizes, addresses, flows."""
        def rng(r, f):
            return f(r[0]) if r[0] == r[1] else "%s-%s" % (f(r[0]), f(r[1]))
        mac = lambda m: ":".join("%02x" % x for x in m)
        flows = ("%d random flows" % self.random_flows) if self.random_flows else \
            ("%s flow%s" % (si(self.flows), "" if self.flows == 1 else "s"))
        return "%s, %s %s:%s -> %s %s:%s, %s" % (
            self.sizes, mac(self.src_mac), rng(self.src_ip, _fmt_ip), rng(self.src_port, str),
            mac(self.dst_mac), rng(self.dst_ip, _fmt_ip), rng(self.dst_port, str), flows)


def decode(frame):
    """The pktgen header of a frame as a dict (stream, flags, seq, ts), or
    None when it is not a pktgen IPv4/UDP frame."""
    cdef const uint8_t[::1] v = memoryview(frame).cast("B")
    cdef int p
    if v.shape[0] == 0:
        return None
    p = pg_parse(&v[0], v.shape[0])
    if p < 0:
        return None
    return dict(stream=v[p + 2], flags=v[p + 3], seq=pg_get32(&v[p + 4]),
                ts=pg_get64(&v[p + 8]))


def check_frame(frame):
    """True when the IPv4 header and UDP checksums of a pktgen frame are
    right (computed here in C; the tests also check them in Python)."""
    cdef const uint8_t[::1] v = memoryview(frame).cast("B")
    if v.shape[0] == 0 or pg_parse(&v[0], v.shape[0]) < 0:
        return False
    return bool(pg_csum_ok(&v[0], v.shape[0]))


# ----------------------------------------------------------------- counters
_FIELDS = {
    "tx_packets": PGC_TX_PACKETS, "tx_bytes": PGC_TX_BYTES,
    "rx_packets": PGC_RX_PACKETS, "rx_bytes": PGC_RX_BYTES,
    "rx_pktgen": PGC_RX_OURS, "rx_other": PGC_RX_OTHER, "bad_csum": PGC_BAD_CSUM,
    "lost": PGC_LOST, "reordered": PGC_REORDERED, "duplicates": PGC_DUPS,
    "lat_n": PGC_LAT_N, "lat_sum": PGC_LAT_SUM, "lat_min": PGC_LAT_MIN,
    "lat_max": PGC_LAT_MAX, "probes": PGC_PROBES, "probes_lost": PGC_PROBES_LOST,
    "late": PGC_LATE, "reflected": PGC_REFLECTED, "batches": PGC_BATCHES,
    "max_batch": PGC_MAX_BATCH, "sleeps": PGC_SLEEPS, "ring_full": PGC_FULL,
    "t0_ns": PGC_T0, "t1_ns": PGC_T1,
}
STATES = ("idle", "running", "done", "failed")


cdef class Counters:
    """The live counters of one loop: uint64 words in a buffer (by default
    an anonymous shared mapping, so that processes forked after it was made
    see the same block).  The loop writes, anyone reads: ``snapshot()``.
    ``stop()`` asks the loop that uses it to return."""
    cdef object buf
    cdef uint64_t[::1] view
    cdef uint64_t *c

    SIZE = PGC_WORDS * 8

    def __init__(self, buffer=None):
        if buffer is None:
            buffer = mmap.mmap(-1, PGC_WORDS * 8)
        self.buf = buffer
        self.view = memoryview(buffer).cast("B").cast("Q")
        if self.view.shape[0] < PGC_WORDS:
            raise ValueError("a Counters buffer needs %d bytes" % (PGC_WORDS * 8))
        self.c = &self.view[0]

    cdef uint64_t *ptr(self):
        return self.c

    def clear(self):
        cdef int i
        for i in range(PGC_WORDS):
            self.c[i] = 0

    def stop(self):
        """Ask the loop using these counters to return (any process)."""
        pg_set(self.c, PGC_STOP, 1)

    @property
    def stopping(self):
        return bool(pg_get(self.c, PGC_STOP))

    @property
    def state(self):
        return STATES[pg_get(self.c, PGC_STATE) & 3]

    def set_state(self, str s):
        pg_set(self.c, PGC_STATE, STATES.index(s))

    def snapshot(self, bint hist=True):
        """The counters now, as a dict (``hist``: the latency/RTT buckets,
        a list of (lower bound ns, count) for non-empty buckets)."""
        cdef int i
        d = {k: pg_get(self.c, v) for k, v in _FIELDS.items()}
        d["state"] = STATES[pg_get(self.c, PGC_STATE) & 3]
        if hist:
            d["hist"] = [(pg_hist_low(i), pg_get(self.c, PGC_HIST + i))
                         for i in range(PG_HIST_N) if pg_get(self.c, PGC_HIST + i)]
        return d


def _bucket_mid(uint32_t i):
    lo = pg_hist_low(i)
    hi = pg_hist_low(i + 1) if i + 1 < PG_HIST_N else lo * 2
    return lo if hi - lo <= 1 else (lo + hi - 1) / 2.0


_LOW_INDEX = {}


def percentiles(snap, ps=(50, 99, 99.9)):
    """Percentiles (ns) of the latency/RTT histogram in a snapshot, from
    the bucket midpoints (within ~3 %), clamped to the exact min and max."""
    n = snap.get("lat_n", 0)
    out = {}
    if not n:
        return {p: None for p in ps}
    hist = sorted(snap["hist"])
    for p in ps:
        target = max(1, int(math.ceil(p / 100.0 * n)))
        acc = 0
        val = snap["lat_max"]
        for low, cnt in hist:
            acc += cnt
            if acc >= target:
                val = _bucket_mid(pg_hist_idx(low))
                break
        out[p] = min(max(val, snap["lat_min"]), snap["lat_max"])
    return out


def rtt_summary(snap):
    """min/avg/max/p50/p99/p99.9 in ns of a snapshot's samples (None when
    there are none)."""
    n = snap.get("lat_n", 0)
    if not n:
        return None
    pc = percentiles(snap)
    return dict(samples=n, min=snap["lat_min"], avg=snap["lat_sum"] / float(n),
                max=snap["lat_max"], p50=pc[50], p99=pc[99], p999=pc[99.9])


def histogram_rows(snap):
    """The histogram folded into powers of two: [(low ns, high ns, count)]
    from the first to the last non-empty octave."""
    rows = {}
    for low, cnt in snap.get("hist", ()):
        e = int(low).bit_length() - 1 if low > 0 else -1
        key = 0 if e < 0 else 1 << e
        rows[key] = rows.get(key, 0) + cnt
    if not rows:
        return []
    keys = sorted(rows)
    out = []
    k = keys[0]
    last = max(keys)
    while k <= last:
        out.append((k, max(1, k * 2), rows.get(k, 0)))
        k = k * 2 if k else 1
    return out


def merge(snaps):
    """Add up snapshots of several workers (sums; min of mins; max of
    maxes; histograms bucket by bucket)."""
    out = {}
    hist = {}
    for s in snaps:
        for k, v in s.items():
            if k in ("hist", "state"):
                continue
            if k == "lat_min":
                if s.get("lat_n"):
                    out[k] = v if "lat_min" not in out else min(out[k], v)
            elif k in ("lat_max", "max_batch", "t1_ns"):
                out[k] = max(out.get(k, 0), v)
            elif k == "t0_ns":
                out[k] = v if not out.get(k) else min(out[k], v) if v else out[k]
            else:
                out[k] = out.get(k, 0) + v
        for low, cnt in s.get("hist", ()):
            hist[low] = hist.get(low, 0) + cnt
    out.setdefault("lat_min", 0)
    out["hist"] = sorted(hist.items())
    return out


# -------------------------------------------------------------- the loops
cdef inline uint64_t _deadline(double seconds, uint64_t now) noexcept nogil:
    if seconds <= 0:
        return 0
    return now + <uint64_t>(seconds * 1e9)


cdef Counters _counters(counters):
    if counters is None:
        return Counters(bytearray(PGC_WORDS * 8))
    return <Counters?>counters


cdef inline bint _stopped(uint64_t *c) noexcept nogil:
    return stop_requested() or pg_get(c, PGC_STOP) != 0


cdef int _check_signals() noexcept with gil:
    """1 if a Python signal handler raised (Ctrl-C on the main thread); the
    exception stays set for the caller to re-raise."""
    if threading.current_thread() is not threading.main_thread():
        return 0
    try:
        PyErr_CheckSignals()
    except BaseException as e:
        _pending[0] = e
        return 1
    return 0


_pending = [None]

cdef enum:
    CHECK_NS = 100000000        # Python's signal handlers run every 100 ms


cdef inline uint64_t _start(uint64_t *c, double seconds, uint64_t *dl,
                            uint64_t *next_check) noexcept nogil:
    # a loop starts: T0 in the counters, its deadline (0: none) and the
    # first time Python's signal handlers run; returns now
    cdef uint64_t now = pg_now()
    pg_set(c, PGC_T0, now)
    dl[0] = _deadline(seconds, now)
    next_check[0] = now + CHECK_NS
    return now


cdef inline bint _signalled(uint64_t now, uint64_t *next_check, int *intr) noexcept nogil:
    # once every CHECK_NS: let Python's handlers run; True (and intr set)
    # when one raised (the loop ends, _finish re-raises)
    if now < next_check[0]:
        return False
    next_check[0] = now + CHECK_NS
    if _check_signals():
        intr[0] = 1
        return True
    return False


cdef inline bint _turn_ends(long long count, uint64_t done, uint64_t *now, uint64_t dl,
                            uint64_t *next_check, int *intr) noexcept nogil:
    # the top of every loop's turn: reads the clock into *now; True when
    # count packets are done, the deadline has passed, or a signal handler
    # raised (intr set)
    now[0] = pg_now()
    if count and done >= <uint64_t>count:
        return True
    if dl and now[0] >= dl:
        return True
    return _signalled(now[0], next_check, intr)



def _raise_pending():
    e = _pending[0]
    _pending[0] = None
    if e is not None:
        raise e


cdef inline int _poll(Port p, int events, int timeout_ms) noexcept nogil:
    # p.c_poll(); a signal is no error here (the loop goes round and sees
    # the stop flag, or _check_signals() says what Python made of it)
    cdef int rc = p.c_poll(events, timeout_ms)
    if rc < 0 and clear_eintr(p):
        rc = 0
    return rc


cdef object _finish(Counters ctr, int rc, Port port, bint intr, bint full=True):
    """The end of every loop: the state, then the port's error or the
    exception a signal raised, then the last snapshot of the counters."""
    ctr.set_state("failed" if rc < 0 else "done")
    if rc < 0:
        port.raise_error()
    if intr:
        _raise_pending()
    return ctr.snapshot(full)


def _seconds(snap):
    return (snap["t1_ns"] - snap["t0_ns"]) / 1e9


cdef _rate_args(rate, Generator gen, double *value, int *bits):
    if rate is None or rate == 0:
        value[0] = 0
        bits[0] = 0
        return None
    r = parse_rate(rate)
    value[0] = r.value
    bits[0] = r.unit == "bps"
    return r


def _check_fits(Port port, uint32_t maxlen, bint tx=True):
    if port.closed:
        raise ValueError("port %s is closed" % (port.name,))
    if tx and port.nic_tx == 0:
        raise ValueError("%s has no TX ring: open it for transmission (not /R, and a "
                         "capture file with mode='w')" % (port.name,))
    if tx and maxlen > port.txr[0].nr_buf_size:
        raise ValueError("a %d-byte frame does not fit the %d-byte buffers of %s" % (
            maxlen, port.txr[0].nr_buf_size, port.name))


def transmit(Port port, Generator gen, rate=None, long long count=0, double seconds=0,
             uint32_t batch=512, Counters counters=None, double pace_us=50,
             int wait_ms=100):
    """Send frames of ``gen`` on every TX ring of ``port``: ``count`` frames
    (0: no limit), for ``seconds`` (0: no limit), until stop().

    ``rate``: None (as fast as the port takes them), a Rate, or text such
    as "100k", "1.5Mpps", "200Mbps" (see the module doc for the pacing).
    ``batch``: the most frames written per sync.

    Returns dict(packets, bytes, seconds, batches, max_batch, sleeps,
    ring_full); ``counters`` (a Counters) shows the same while it runs."""
    cdef Counters ctr = _counters(counters)
    cdef uint64_t *c = ctr.ptr()
    cdef double rv = 0
    cdef int bits = 0, rc = 0, intr = 0
    cdef pg_pacer pc
    cdef bint paced
    cdef uint64_t now, dl, ts, sent = 0, nbytes = 0, batches = 0, max_batch = 0, full = 0
    cdef uint64_t want, n, next_check, due
    cdef uint32_t r, j, k, space, ln, rr = 0
    cdef double need, cost
    cdef netmap_ring *t
    cdef long slack
    cdef pg_gen *g = &gen.g
    memset(&pc, 0, sizeof(pc))
    r_obj = _rate_args(rate, gen, &rv, &bits)
    _check_fits(port, g.maxlen)
    if batch == 0:
        raise ValueError("batch must be at least 1")
    paced = rv > 0
    ctr.set_state("running")
    with nogil:
        slack = pg_timerslack(1)
        now = _start(c, seconds, &dl, &next_check)
        if paced:
            pg_pacer_init(&pc, rv, bits, pace_us * 1000.0, g.maxlen, batch, now)
        while not _stopped(c):
            if _turn_ends(count, sent, &now, dl, &next_check, &intr):
                break
            want = batch
            if count and want > <uint64_t>count - sent:
                want = <uint64_t>count - sent
            if paced:
                pg_refill(&pc, now)
                cost = pg_cost(&pc, g.next_len)
                need = pc.quantum
                if want * cost < need:
                    need = want * cost
                if need < cost:
                    need = cost
                if pc.tokens < need:
                    due = now + <uint64_t>((need - pc.tokens) / pc.per_ns) + 1
                    if dl and due > dl:
                        due = dl
                    pg_wait_until(due, &pc.early, &pc.sleeps)
                    continue
            ts = now
            n = 0
            for k in range(port.nic_tx):
                r = (rr + k) % port.nic_tx
                t = port.txr[r]
                space = nm_ring_space(t)
                j = t.head
                while space and n < want:
                    ln = g.next_len
                    if paced:
                        cost = pg_cost(&pc, ln)
                        if pc.tokens < cost:
                            break
                        pc.tokens -= cost
                    pg_build(g, <uint8_t *>NETMAP_BUF(t, t.slot[j].buf_idx), ln, ts)
                    t.slot[j].len = <uint16_t>ln
                    t.slot[j].flags = 0
                    nbytes += ln
                    pg_next_len(g)
                    j = nm_ring_next(t, j)
                    space -= 1
                    n += 1
                t.head = t.cur = j
                if n >= want or (paced and pc.tokens < pg_cost(&pc, g.next_len)):
                    break
            rr = (rr + 1) % port.nic_tx
            sent += n
            if n:
                batches += 1
                if n > max_batch:
                    max_batch = n
                rc = _poll(port, 0, 0)
            else:
                # every TX ring is full: sleep until the backend takes some
                full += 1
                rc = _poll(port, POLLOUT, wait_ms)
            if rc < 0:
                break
            pg_set(c, PGC_TX_PACKETS, sent)
            pg_set(c, PGC_TX_BYTES, nbytes)
            pg_set(c, PGC_BATCHES, batches)
            pg_set(c, PGC_MAX_BATCH, max_batch)
            pg_set(c, PGC_FULL, full)
            if paced:
                pg_set(c, PGC_SLEEPS, pc.sleeps)
        if rc >= 0:
            rc = _poll(port, 0, 0)
        pg_set(c, PGC_TX_PACKETS, sent)
        pg_set(c, PGC_TX_BYTES, nbytes)
        pg_set(c, PGC_T1, pg_now())
        pg_timerslack(slack)
    snap = _finish(ctr, rc, port, intr, False)
    return dict(packets=sent, bytes=nbytes, seconds=_seconds(snap),
                batches=batches, max_batch=max_batch, sleeps=pc.sleeps if paced else 0,
                ring_full=full, rate=str(r_obj) if r_obj is not None else None)


cdef inline int _rx_sync_all(Port port) noexcept nogil:
    cdef uint32_t i
    cdef int ready = 0
    for i in range(port.nic_rx):
        if port.c_rxsync(i) < 0:
            return -1
        if nm_ring_space(port.rxr[i]):
            ready = POLLIN
    return ready


cdef inline void _rx_publish(uint64_t *c, pg_rx *rx, uint64_t got, uint64_t nbytes) noexcept nogil:
    pg_set(c, PGC_RX_PACKETS, got)
    pg_set(c, PGC_RX_BYTES, nbytes)
    pg_set(c, PGC_RX_OURS, rx.ours)
    pg_set(c, PGC_RX_OTHER, rx.other)
    pg_set(c, PGC_BAD_CSUM, rx.bad_csum)
    pg_set(c, PGC_LOST, rx.span - rx.unique if rx.span > rx.unique else 0)
    pg_set(c, PGC_REORDERED, rx.reordered)
    pg_set(c, PGC_DUPS, rx.dups)


cdef object _streams(pg_rx *rx):
    cdef int i
    cdef pg_stream *s
    out = {}
    for i in range(256):
        s = rx.st[i]
        if s == NULL:
            continue
        span = s.highest - s.first + 1
        out[i] = dict(first=s.first, highest=s.highest, received=s.unique,
                      lost=max(0, span - <int64_t>s.unique), reordered=s.reordered,
                      duplicates=s.dups)
    return out


def receive(Port port, long long count=0, double seconds=0, double idle=0,
            Counters counters=None, bint verify=True, bint busy=False, int wait_ms=100):
    """Count what arrives on every RX ring of ``port`` until ``count``
    packets, ``seconds``, ``idle`` seconds without a packet (after the
    first), stop(), or the end of a capture file.

    pktgen frames are checked: sequence numbers per stream (lost,
    reordered, duplicates), IPv4/UDP checksums (``verify``), and the send
    timestamp gives a one-way latency (meaningful when the sender runs on
    this host: it is CLOCK_MONOTONIC).  ``busy``: spin on rxsync instead of
    sleeping in poll.

    Returns dict(packets, bytes, seconds, first_to_last, pktgen, other,
    bad_csum, lost, reordered, duplicates, streams, latency)."""
    cdef Counters ctr = _counters(counters)
    cdef uint64_t *c = ctr.ptr()
    cdef pg_rx *rx = <pg_rx *>calloc(1, sizeof(pg_rx))
    cdef uint64_t now, dl, got = 0, nbytes = 0, last = 0, first = 0, idle_ns, next_check
    cdef uint32_t i, j, n
    cdef int rc = 0, intr = 0
    cdef netmap_ring *r
    if rx == NULL:
        raise MemoryError()
    if port.closed:
        free(rx)
        raise ValueError("port %s is closed" % (port.name,))
    if port.nic_rx == 0:
        free(rx)
        raise ValueError("%s has no RX ring: open it for reception (not /T)" % (port.name,))
    rx.verify = verify
    idle_ns = <uint64_t>(idle * 1e9) if idle > 0 else 0
    ctr.set_state("running")
    try:
        with nogil:
            now = _start(c, seconds, &dl, &next_check)
            while not _stopped(c):
                if _turn_ends(count, got, &now, dl, &next_check, &intr):
                    break
                if idle_ns and got and now - last >= idle_ns:
                    break
                if busy:
                    rc = _rx_sync_all(port)
                    if rc == 0:
                        if port.eof:
                            break
                        pg_relax()
                        continue
                else:
                    rc = _poll(port, POLLIN, wait_ms)
                if rc < 0:
                    break
                if rc == 0:
                    if port.eof:
                        break
                    continue
                now = pg_now()
                for i in range(port.nic_rx):
                    r = port.rxr[i]
                    j = r.head
                    n = nm_ring_space(r)
                    if count and n > <uint64_t>count - got:
                        n = <uint32_t>(<uint64_t>count - got)
                    while n:
                        pg_rx_frame(rx, c, <const uint8_t *>NETMAP_BUF(r, r.slot[j].buf_idx),
                                    r.slot[j].len, now)
                        nbytes += r.slot[j].len
                        got += 1
                        j = nm_ring_next(r, j)
                        n -= 1
                    r.head = r.cur = j
                if got and first == 0:
                    first = now
                last = now
                _rx_publish(c, rx, got, nbytes)
            if rc >= 0:
                for i in range(port.nic_rx):
                    if port.c_rxsync(i) < 0:
                        rc = -1
                        break
            _rx_publish(c, rx, got, nbytes)
            pg_set(c, PGC_T1, pg_now())
        snap = _finish(ctr, rc, port, intr)
        return dict(packets=got, bytes=nbytes, seconds=_seconds(snap),
                    first_to_last=(last - first) / 1e9 if got else 0.0,
                    pktgen=rx.ours, other=rx.other, bad_csum=rx.bad_csum,
                    lost=snap["lost"], reordered=rx.reordered, duplicates=rx.dups,
                    streams=_streams(rx), latency=rtt_summary(snap))
    finally:
        pg_rx_free(rx)
        free(rx)


cdef inline bint memcmp6(const uint8_t *a, const uint8_t *b) noexcept nogil:
    cdef int i
    for i in range(6):
        if a[i] != b[i]:
            return False
    return True


def ping(Port port, Generator gen, long long count=0, double seconds=0, rate=None,
         double timeout=1.0, Counters counters=None, bint busy=False):
    """Round trips: send one timestamped probe (a frame of ``gen`` marked
    as a ping), wait up to ``timeout`` seconds for its echo (a frame
    carrying the probe's stream and sequence number, addressed to our
    source MAC), then the next.  ``rate`` spaces the probes out (at most
    that many per second).  ``busy`` spins on rxsync instead of sleeping in
    poll (lower, steadier RTTs at the cost of a CPU).

    Returns dict(probes, replies, lost, late, seconds, rtt) with rtt
    min/avg/max/p50/p99/p999 in ns; the histogram is in the counters."""
    cdef Counters ctr = _counters(counters)
    cdef uint64_t *c = ctr.ptr()
    cdef pg_gen *g = &gen.g
    cdef uint64_t now, dl, ts, sent = 0, replies = 0, lost = 0, late = 0, nbytes = 0
    cdef uint64_t deadline, tmo = <uint64_t>(timeout * 1e9), next_due = 0, interval = 0
    cdef uint64_t next_check, sleeps = 0, rts, got_pk = 0, got_bytes = 0
    cdef int64_t early = 5000
    cdef uint32_t probe, i, j, ln, wait
    cdef int rc = 0, intr = 0, p
    cdef bint answered
    cdef netmap_ring *t
    cdef netmap_ring *r
    cdef const uint8_t *b
    cdef long slack
    cdef uint8_t mymac[6]
    cdef double rv = 0
    cdef int bits = 0
    r_obj = _rate_args(rate, gen, &rv, &bits)
    if rv > 0:
        interval = <uint64_t>(1e9 / rv * (gen.sizes.mean() * 8 if bits else 1))
    _check_fits(port, g.maxlen)
    if port.nic_rx == 0:
        raise ValueError("%s has no RX ring: ping needs both directions" % (port.name,))
    if timeout <= 0:
        raise ValueError("timeout must be more than 0 seconds")
    memcpy(mymac, <const char *>gen.src_mac, 6)
    gen._set_flags(PG_F_PING)
    ctr.set_state("running")
    try:
        with nogil:
            slack = pg_timerslack(1)
            now = _start(c, seconds, &dl, &next_check)
            while not _stopped(c):
                if _turn_ends(count, sent, &now, dl, &next_check, &intr):
                    break
                if next_due and now < next_due:
                    pg_wait_until(next_due if not dl or next_due < dl else dl, &early, &sleeps)
                    continue
                t = port.txr[0]
                if nm_ring_space(t) == 0:
                    rc = _poll(port, POLLOUT, 100)
                    if rc < 0:
                        break
                    continue
                # drop what arrived before this probe (stale echoes)
                rc = _rx_sync_all(port)
                if rc < 0:
                    break
                for i in range(port.nic_rx):
                    r = port.rxr[i]
                    got_pk += nm_ring_space(r)
                    r.head = r.cur = r.tail
                probe = g.seq
                ln = g.next_len
                j = t.head
                ts = pg_now()
                pg_build(g, <uint8_t *>NETMAP_BUF(t, t.slot[j].buf_idx), ln, ts)
                t.slot[j].len = <uint16_t>ln
                t.slot[j].flags = 0
                pg_next_len(g)
                t.head = t.cur = nm_ring_next(t, j)
                if port.c_txsync(0) < 0:
                    rc = -1
                    break
                sent += 1
                nbytes += ln
                if interval:
                    next_due = ts + interval
                deadline = ts + tmo
                answered = False
                while not answered and not _stopped(c):
                    now = pg_now()
                    if now >= deadline:
                        break
                    if busy:
                        rc = _rx_sync_all(port)
                        if rc == 0:
                            pg_relax()
                            continue
                    else:
                        wait = <uint32_t>((deadline - now + 999999) // 1000000)
                        if wait > 100:
                            wait = 100
                        rc = _poll(port, POLLIN, wait)
                    if rc < 0:
                        break
                    if rc == 0:
                        continue
                    rts = pg_now()
                    for i in range(port.nic_rx):
                        r = port.rxr[i]
                        j = r.head
                        while j != r.tail:
                            b = <const uint8_t *>NETMAP_BUF(r, r.slot[j].buf_idx)
                            got_pk += 1
                            got_bytes += r.slot[j].len
                            p = pg_parse(b, r.slot[j].len)
                            if p >= 0 and b[p + 2] == g.stream and (b[p + 3] & PG_F_PING) and \
                                    memcmp6(b, mymac):
                                if pg_get32(b + p + 4) == probe and pg_get64(b + p + 8) == ts:
                                    answered = True
                                    pg_sample(c, rts - ts)
                                else:
                                    late += 1
                            j = nm_ring_next(r, j)
                        r.head = r.cur = j
                if rc < 0:
                    break
                if answered:
                    replies += 1
                else:
                    lost += 1
                pg_set(c, PGC_PROBES, sent)
                pg_set(c, PGC_TX_PACKETS, sent)
                pg_set(c, PGC_TX_BYTES, nbytes)
                pg_set(c, PGC_RX_PACKETS, got_pk)
                pg_set(c, PGC_RX_BYTES, got_bytes)
                pg_set(c, PGC_PROBES_LOST, lost)
                pg_set(c, PGC_LATE, late)
                pg_set(c, PGC_SLEEPS, sleeps)
            pg_set(c, PGC_PROBES, sent)
            pg_set(c, PGC_PROBES_LOST, lost)
            pg_set(c, PGC_T1, pg_now())
            pg_timerslack(slack)
    finally:
        gen._set_flags(0)
    snap = _finish(ctr, rc, port, intr)
    return dict(probes=sent, replies=replies, lost=lost, late=late,
                seconds=_seconds(snap), rtt=rtt_summary(snap))


def pong(Port port, long long count=0, double seconds=0, Counters counters=None,
         bint busy=False, int wait_ms=100):
    """Reflect every frame received back out of the same port: MACs
    swapped, and IPv4/IPv6 addresses and UDP/TCP ports swapped (checksums
    stay right), payload untouched.  Zero copy (buffer swap) from RX ring i
    to TX ring i (mod the TX rings).  Frames wait in the RX ring while the
    TX ring is full (none dropped here).  Until ``count`` reflected,
    ``seconds``, or stop().

    Returns dict(reflected, bytes, seconds)."""
    cdef Counters ctr = _counters(counters)
    cdef uint64_t *c = ctr.ptr()
    cdef uint64_t now, dl, done = 0, nbytes = 0, next_check, got = 0
    cdef uint32_t i, j, k, n, m
    cdef int rc = 0, intr = 0, ev
    cdef bint pending = False
    cdef netmap_ring *rx
    cdef netmap_ring *tx
    if port.closed:
        raise ValueError("port %s is closed" % (port.name,))
    if port.nic_rx == 0 or port.nic_tx == 0:
        raise ValueError("%s: pong needs RX and TX rings" % (port.name,))
    ctr.set_state("running")
    with nogil:
        now = _start(c, seconds, &dl, &next_check)
        while not _stopped(c):
            if _turn_ends(count, done, &now, dl, &next_check, &intr):
                break
            if busy:
                rc = _rx_sync_all(port)
                if rc == 0 and not pending:
                    pg_relax()
                    continue
            else:
                ev = POLLOUT if pending else POLLIN
                rc = _poll(port, ev, wait_ms)
                if rc >= 0 and pending:
                    rc = _rx_sync_all(port)
            if rc < 0:
                break
            pending = False
            for i in range(port.nic_rx):
                rx = port.rxr[i]
                tx = port.txr[i % port.nic_tx]
                n = nm_ring_space(rx)
                m = nm_ring_space(tx)
                if n > m:
                    n = m
                    pending = True
                if count and n > <uint64_t>count - done:
                    n = <uint32_t>(<uint64_t>count - done)
                j = rx.head
                for k in range(n):
                    pg_reflect(<uint8_t *>NETMAP_BUF(rx, rx.slot[j].buf_idx), rx.slot[j].len)
                    nbytes += rx.slot[j].len
                    j = nm_ring_next(rx, j)
                got += n
                done += ring_move(rx, tx, n, True)
            rc = _poll(port, 0, 0)
            if rc < 0:
                break
            pg_set(c, PGC_REFLECTED, done)
            pg_set(c, PGC_RX_PACKETS, got)
            pg_set(c, PGC_RX_BYTES, nbytes)
            pg_set(c, PGC_TX_PACKETS, done)
            pg_set(c, PGC_TX_BYTES, nbytes)
        if rc >= 0:
            rc = _poll(port, 0, 0)
        pg_set(c, PGC_T1, pg_now())
    snap = _finish(ctr, rc, port, intr, False)
    return dict(reflected=done, bytes=nbytes, seconds=_seconds(snap))


def replay(PcapPort src, Port dst, bint timing=True, double speed=1.0, rate=None,
           long long count=0, double seconds=0, uint32_t batch=512,
           Counters counters=None, int wait_ms=100, long long loops=1):
    """Send the frames of a capture (``src``, a ``pcap:`` port opened for
    reading) out of ``dst``, in order, ``loops`` times (0: until ``count``
    or ``seconds`` ends it; with recorded timing each pass starts right
    after the previous one):

    - ``timing=True``: at the recorded times, divided by ``speed`` (2.0:
      twice as fast); the first frame leaves at once.  Frames recorded out
      of order in time leave right after their predecessor.
    - ``rate``: at a fixed rate instead (pps or bps, paced as transmit()).
    - neither (timing=False, rate=None): as fast as dst takes them.

    Returns dict(packets, bytes, seconds, late) where ``late`` counts
    frames that left more than 1 ms after their due time."""
    cdef Counters ctr = _counters(counters)
    cdef uint64_t *c = ctr.ptr()
    cdef double rv = 0, cost
    cdef int bits = 0, rc = 0, intr = 0
    cdef pg_pacer pc
    cdef uint64_t now, dl, t0 = 0, cap0 = 0, cap, due = 0, prev_due = 0, sent = 0, nbytes = 0
    cdef uint64_t late = 0, next_check, sleeps = 0, pend = 0
    cdef int64_t early = 5000
    cdef uint32_t j
    cdef bint started = False, paced
    cdef long long passes = 1
    cdef netmap_ring *r
    cdef netmap_ring *t
    cdef long slack
    cdef bint swap = src.mem is dst.mem
    r_obj = None
    memset(&pc, 0, sizeof(pc))
    if rate is not None and rate != 0:
        r_obj = parse_rate(rate)
        rv = r_obj.value
        bits = r_obj.unit == "bps"
        timing = False
    paced = rv > 0
    if timing and not (speed > 0 and math.isfinite(speed)):
        raise ValueError("speed must be a positive factor (2.0: twice as fast), not %r" % speed)
    if src.closed or src.nic_rx == 0 or src.ts_ns == NULL:
        raise ValueError("replay() reads a capture opened for reading (pcap:FILE)")
    if loops < 0:
        raise ValueError("loops must be >= 0 (0: until count or seconds), not %d" % loops)
    _check_fits(dst, 0)
    ctr.set_state("running")
    with nogil:
        slack = pg_timerslack(1)
        now = _start(c, seconds, &dl, &next_check)
        if paced:
            pg_pacer_init(&pc, rv, bits, 50000.0, 1514, batch, now)
        r = src.rxr[0]
        t = dst.txr[0]
        while not _stopped(c):
            if _turn_ends(count, sent, &now, dl, &next_check, &intr):
                break
            if r.head == r.tail:
                if pend:
                    rc = _poll(dst, 0, 0)
                    pend = 0
                    if rc < 0:
                        break
                if src.eof:
                    if loops and passes >= loops:
                        break
                    if src.c_rewind() < 0:
                        rc = -2
                        break
                    passes += 1
                    started = False         # recorded timing: restart the clock
                    if timing:
                        prev_due = 0
                if src.c_rxsync(0) < 0:
                    rc = -2
                    break
                continue
            if nm_ring_space(t) == 0:
                rc = _poll(dst, POLLOUT, wait_ms)
                pend = 0
                if rc < 0:
                    break
                continue
            j = r.head
            if r.slot[j].len > t.nr_buf_size:
                rc = -3
                break
            if timing:
                cap = src.ts_ns[j]
                if not started:
                    started = True
                    t0 = now
                    cap0 = cap
                due = t0 + (<uint64_t>((cap - cap0) / speed) if cap > cap0 else 0)
                if due < prev_due:
                    due = prev_due
                if due > now:
                    if pend:
                        rc = _poll(dst, 0, 0)
                        pend = 0
                        if rc < 0:
                            break
                    pg_wait_until(due if not dl or due < dl else dl, &early, &sleeps)
                    now = pg_now()
                    if now < due:
                        continue
                elif now - due > 1000000:
                    late += 1
                prev_due = due
            elif paced:
                pg_refill(&pc, now)
                cost = pg_cost(&pc, r.slot[j].len)
                if pc.tokens < cost:
                    if pend:
                        rc = _poll(dst, 0, 0)
                        pend = 0
                        if rc < 0:
                            break
                    due = now + <uint64_t>((cost - pc.tokens) / pc.per_ns) + 1
                    pg_wait_until(due if not dl or due < dl else dl, &pc.early, &pc.sleeps)
                    continue
                pc.tokens -= cost
            nbytes += r.slot[j].len
            ring_move(r, t, 1, swap)
            sent += 1
            pend += 1
            if pend >= batch or nm_ring_space(t) == 0:
                rc = _poll(dst, 0, 0)
                pend = 0
                if rc < 0:
                    break
            pg_set(c, PGC_TX_PACKETS, sent)
            pg_set(c, PGC_TX_BYTES, nbytes)
            pg_set(c, PGC_LATE, late)
        if rc >= 0:
            rc = _poll(dst, 0, 0)
        pg_set(c, PGC_TX_PACKETS, sent)
        pg_set(c, PGC_TX_BYTES, nbytes)
        pg_set(c, PGC_SLEEPS, sleeps + (pc.sleeps if paced else 0))
        pg_set(c, PGC_T1, pg_now())
        pg_timerslack(slack)
    ctr.set_state("failed" if rc < 0 else "done")
    if rc == -2:
        src.raise_error()
    if rc == -3:
        raise ValueError("%s: a %d-byte frame does not fit the %d-byte buffers of %s" % (
            src.name, r.slot[r.head].len, t.nr_buf_size, dst.name))
    if rc < 0:
        dst.raise_error()
    if intr:
        _raise_pending()
    snap = ctr.snapshot(False)
    return dict(packets=sent, bytes=nbytes, seconds=_seconds(snap),
                late=late, passes=passes, mode="timing x%g" % speed if timing else
                ("rate %s" % r_obj if paced else "as fast as possible"))
