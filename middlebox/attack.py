"""The attack view: what is being dropped, for the operator writing the
next rule.

Each worker samples about 1 of K dropped packets (K: ``--attack-sample``,
64 by default) into a small ring in the counter file: its source address,
protocol and ports, and its length (middlebox/includes/mb_dsample.h; drops
decided in the kernel are sampled by the XDP rule program itself).  The
supervisor reads the rings every tenth of a second and, per interval,
gives the top N sources, destination ports and frame sizes of the sampled
drops -- their shares of the samples, and their estimated packets and
rates: the share times the interval's exact drop count (from the counters).

N is fixed (TOP = 10), so the JSON and the Prometheus metrics stay bounded
whatever the flood's spread:

    netmapy_attack_drop_pps{prog}                          all drops, last interval
    netmapy_attack_top_source_pps{prog,rank,source}        rank 1..N
    netmapy_attack_top_dport_pps{prog,rank,dport}          e.g. dport="udp/53"
    netmapy_attack_top_size_pps{prog,rank,size}            frame length in bytes
    netmapy_attack_samples_total{prog}

The whole run's top lists (in the final summary) are exact while fewer
than 4000 distinct values of a kind were seen, and approximate beyond
(only the most frequent 1000 are kept).
"""

import collections
import ipaddress
import struct
import threading
import time

__all__ = ["AttackView", "TOP", "describe"]

TOP = 10
KEEP = 1000                          # distinct values kept for the whole run
_SLOT = struct.Struct("=Q16sIHHBBBBI")
_HEAD = struct.Struct("=QII")
RING_HEADER = 64
PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "icmp6", 132: "sctp",
          136: "udplite"}
F_MALFORMED, F_LATER_FRAG, F_L4 = 0x01, 0x04, 0x08
ORIGINS = {0: "user", 1: "user", 2: "kernel"}


def describe(raw):
    """(source, dport, size, origin) of one sample slot's bytes."""
    _, src, length, sport, dport, proto, l3, origin, flags, _ = _SLOT.unpack(raw)
    if l3 == 4:
        source = "malformed IPv4" if flags & F_MALFORMED else \
            str(ipaddress.IPv4Address(src[12:16]))
    elif l3 == 6:
        source = "malformed IPv6" if flags & F_MALFORMED else str(ipaddress.IPv6Address(src))
    else:
        source = "non-IP"
    if l3 in (4, 6) and not flags & F_MALFORMED:
        name = PROTOS.get(proto, "proto %d" % proto)
        if flags & F_L4:
            port = "%s/%d" % (name, dport)
        elif flags & F_LATER_FRAG:
            port = "%s fragment" % name
        else:
            port = name
    elif l3:
        port = source
    else:
        port = "ethertype 0x%04x" % sport
    return source, port, length, ORIGINS.get(origin, "?")


class _Tally:
    def __init__(self, bounded=False):
        self.sources = collections.Counter()
        self.dports = collections.Counter()
        self.sizes = collections.Counter()
        self.samples = 0
        self.kernel = 0
        self.bounded = bounded

    def add(self, source, port, size, origin):
        self.sources[source] += 1
        self.dports[port] += 1
        self.sizes[size] += 1
        self.samples += 1
        if origin == "kernel":
            self.kernel += 1
        if self.bounded and self.samples % 4096 == 0:
            for c in (self.sources, self.dports, self.sizes):
                if len(c) > 4 * KEEP:
                    keep = c.most_common(KEEP)
                    c.clear()
                    c.update(dict(keep))

    def top(self, drops, seconds):
        def rows(counter, key):
            out = []
            for value, n in counter.most_common(TOP):
                share = n / self.samples if self.samples else 0.0
                est = share * drops
                row = {key: value, "samples": n, "share": round(share, 4),
                       "packets": int(round(est))}
                if seconds:
                    row["pps"] = round(est / seconds, 1)
                out.append(row)
            return out
        return dict(top_sources=rows(self.sources, "source"),
                    top_dports=rows(self.dports, "dport"),
                    top_sizes=rows(self.sizes, "size"))


class AttackView:
    """Reads every worker's drop sample ring and keeps the interval's and
    the run's tallies.  ``poll()`` often (the rings hold about a thousand
    samples each), ``roll(drops)`` once per interval."""

    def __init__(self, stats, one_in):
        self.stats = stats
        self.one_in = one_in
        self.cursors = [None] * stats.nworkers
        self.window = _Tally()
        self.run = _Tally(bounded=True)
        self.lost = 0
        self.t0 = self.window_start = time.monotonic()
        self.drops_at_start = None
        self.last = None
        self.lock = threading.RLock()       # the Prometheus thread reads too

    def poll(self):
        """Read the samples written since the last poll."""
        if not self.one_in:
            return 0
        with self.lock:
            return self._poll()

    def _poll(self):
        got = 0
        for w in range(self.stats.nworkers):
            ring = self.stats.drop_ring(w)
            try:
                seq, nslots = _HEAD.unpack_from(ring, 0)[:2]
                cur = self.cursors[w]
                if cur is None or cur > seq:        # first look, or a new ring
                    cur = 0
                if seq - cur > nslots:
                    self.lost += seq - cur - nslots
                    cur = seq - nslots
                for n in range(cur, seq):
                    off = RING_HEADER + (n & (nslots - 1)) * _SLOT.size
                    s1 = struct.unpack_from("=Q", ring, off)[0]
                    raw = bytes(ring[off:off + _SLOT.size])
                    s2 = struct.unpack_from("=Q", ring, off)[0]
                    if not s1 == s2 == n + 1 or struct.unpack_from("=Q", raw)[0] != n + 1:
                        self.lost += 1              # overwritten meanwhile
                        continue
                    d = describe(raw)
                    self.window.add(*d)
                    self.run.add(*d)
                    got += 1
                self.cursors[w] = seq
            finally:
                ring.release()
        return got

    def skip(self, drops):
        """Start the interval now: the samples already in the rings and
        the drops so far are not part of it (a reader that came late:
        ``--status``)."""
        with self.lock:
            for w in range(self.stats.nworkers):
                ring = self.stats.drop_ring(w)
                try:
                    self.cursors[w] = _HEAD.unpack_from(ring, 0)[0]
                finally:
                    ring.release()
            self.window = _Tally()
            self.window_start = time.monotonic()
            self.drops_at_start = drops

    def roll(self, drops, now=None):
        """End the interval: ``drops`` is the total drop count now (all
        workers, from the counters).  Returns the interval's view (also
        kept as ``last``)."""
        with self.lock:
            return self._roll(drops, time.monotonic() if now is None else now)

    def _roll(self, drops, now):
        self._poll()
        if self.drops_at_start is None:
            self.drops_at_start = 0
        d = max(0, drops - self.drops_at_start)
        dt = max(1e-6, now - self.window_start)
        v = dict(seconds=round(dt, 3), drops=d, drop_pps=round(d / dt, 1),
                 samples=self.window.samples, kernel_samples=self.window.kernel,
                 one_in=self.one_in)
        v.update(self.window.top(d, dt))
        self.window = _Tally()
        self.window_start = now
        self.drops_at_start = drops
        self.last = v
        return v

    def summary(self, drops):
        """The whole run's view (``drops``: the run's drop count)."""
        with self.lock:
            return self._summary(drops)

    def _summary(self, drops):
        self._poll()
        dt = max(1e-6, time.monotonic() - self.t0)
        v = dict(seconds=round(dt, 3), drops=drops, samples=self.run.samples,
                 kernel_samples=self.run.kernel, samples_lost=self.lost, one_in=self.one_in)
        v.update(self.run.top(drops, dt))
        return v

    # ------------------------------------------------------------ outputs
    def table_lines(self, width=100):
        """The last interval as a few lines of the live table."""
        v = self.last
        if v is None or not self.one_in:
            return []
        lines = ["dropped over the last %.1f s: %.0f pps, %d samples (1 in %d)%s" % (
            v["seconds"], v["drop_pps"], v["samples"], v["one_in"],
            ", %d from the kernel" % v["kernel_samples"] if v["kernel_samples"] else "")]
        if not v["samples"]:
            return lines
        cols = [("top sources", [(r["source"], r["share"]) for r in v["top_sources"]]),
                ("top destination ports", [(r["dport"], r["share"]) for r in v["top_dports"]]),
                ("top sizes (bytes)", [(str(r["size"]), r["share"]) for r in v["top_sizes"]])]
        w = [40, 28, 20]
        lines.append(("  " + "".join("%-*s" % (w[i], c[0]) for i, c in enumerate(cols))).rstrip())
        for k in range(max(len(c[1]) for c in cols)):
            cells = []
            for i, (_, rows) in enumerate(cols):
                if k < len(rows):
                    label, share = rows[k]
                    cells.append("%-*s" % (w[i], "%-*s %5.1f%%" % (w[i] - 9, label[:w[i] - 9],
                                                                   100 * share)))
                else:
                    cells.append(" " * w[i])
            lines.append("  " + "".join(cells).rstrip())
        return lines

    def prometheus_lines(self, prog):
        v = self.last
        out = ["# HELP netmapy_attack_drop_pps packets dropped per second over the last interval",
               "# TYPE netmapy_attack_drop_pps gauge",
               'netmapy_attack_drop_pps{prog="%s"} %s' % (prog, v["drop_pps"] if v else 0),
               "# TYPE netmapy_attack_samples_total counter",
               'netmapy_attack_samples_total{prog="%s"} %d' % (prog, self.run.samples)]
        for metric, rows_key, label in (("source", "top_sources", "source"),
                                        ("dport", "top_dports", "dport"),
                                        ("size", "top_sizes", "size")):
            name = "netmapy_attack_top_%s_pps" % metric
            out.append("# HELP %s estimated drop rate of the top %d %ss of the sampled drops, "
                       "last interval" % (name, TOP, metric))
            out.append("# TYPE %s gauge" % name)
            for rank, r in enumerate((v or {}).get(rows_key, []), 1):
                out.append('%s{prog="%s",rank="%d",%s="%s"} %s' % (
                    name, prog, rank, label, str(r[label]).replace('"', "'"),
                    r.get("pps", 0)))
        return out
