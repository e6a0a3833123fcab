"""Counters in shared memory: workers write, the supervisor samples.

One file in the run directory (0600) holds a header and, per worker, a
block of uint64 counters followed by its per-rule counters.  Nothing on
the fast path takes a lock: each worker owns its block; the supervisor
reads torn-free 64-bit words and computes rates from differences.

Per direction d (0: a->b, or the offload direction; 1: b->a) the block
holds rx, rx_bytes, fwd, fwd_bytes, drop, drop_bytes, ratelimited, errors,
and failed: packets the filters passed that the destination then refused
(nm-offload: could not be reinjected; the bridge: the TX side refused
them).  `rx = fwd + drop + errors + failed` holds exactly, per direction;
fwd counts only what was handed over; ratelimited counts the drops a rate
limit decided; errors, the packets that could not be forwarded at all
(larger than the output's buffers: released, never truncated).
The layout is declared once, in middlebox/counters.pxd; the C loops
cimport it and this module takes its values from the compiled module
(middlebox.counters).

The per-rule counters are slots: a supervisor that reloads its filters
(middlebox.reload) sizes them with room to spare and keeps a rule's counter
in the same slot in every filter that has the rule
(middlebox.rulecounters); ``nrules`` is the number of slots.

After the workers' blocks, each worker has a small ring of sampled drops
(1 of K dropped packets, parsed: source, ports, protocol, length) for the
attack view (middlebox/includes/mb_dsample.h describes it, middlebox.attack
reads it).

The file is ``PROG-PID.stats``; its header names the owner (pid and start
time), so a new start of PROG removes the files of dead runs
(``remove_stale``).
"""

import mmap
import os
import re
import struct
import time

from middlebox import counters as _c

MAGIC = 0x5354534258424d4e          # "NMBXBSTS"
VERSION = 2
HEADER_WORDS = 16
BLOCK_WORDS = _c.BLOCK_WORDS        # per-worker fixed counters
H_OWNER_PID, H_OWNER_START = 5, 6   # header: who created the file
H_RING_SLOTS, H_ONE_IN = 7, 8       # header: the drop sample rings
RING_HEADER = 64                    # bytes: struct mb_ds_ring
RING_SLOT = 40                      # bytes: struct mb_ds_slot
DEFAULT_RING_SLOTS = 1024

# per-worker fixed words (middlebox/counters.pxd)
W_PID, W_RESTARTS, W_HEARTBEAT = _c.W_PID, _c.W_RESTARTS, _c.W_HEARTBEAT
W_STATE, W_QUEUE, W_CPU = _c.W_STATE, _c.W_QUEUE, _c.W_CPU
DIR_BASE = (_c.DIR0, _c.DIR1)       # direction 0 and 1
RX, RX_BYTES, FWD, FWD_BYTES = _c.RX, _c.RX_BYTES, _c.FWD, _c.FWD_BYTES
DROP, DROP_BYTES, LIMITED, ERRORS = _c.DROP, _c.DROP_BYTES, _c.LIMITED, _c.ERRORS
W_SAMPLED = _c.W_SAMPLED
W_FAILED = (_c.W_FAILED, _c.W_FAILED + 1)   # failed, per direction
W_KDROPS = (_c.W_KDROPS, _c.W_KDROPS + 1)   # kernel_drops, per direction (the input port's)
FIELDS = ("rx", "rx_bytes", "fwd", "fwd_bytes", "drop", "drop_bytes", "ratelimited", "errors")
ALL_FIELDS = FIELDS + ("failed", "kernel_drops")   # what snapshot() gives per direction
STATE_NAMES = {0: "starting", 1: "running", 2: "stopping", 3: "stopped", 4: "dead"}


def rundir():
    """Where the counter files live: stats/ in netmapy's run directory."""
    from netmapy.host import rundir as _rundir
    return _rundir.rundir("stats")


class Stats:
    """The shared counter file.  ``Stats.create(path, nworkers, nrules)`` in
    the supervisor, ``Stats.open(path)`` in a worker."""

    def __init__(self, path, fd, create, nworkers=0, nrules=0, ring_slots=0, one_in=0,
                 writable=True):
        self.path = path
        if ring_slots & (ring_slots - 1):
            raise ValueError("ring_slots must be a power of two")
        if create:
            size = 8 * (HEADER_WORDS + nworkers * (BLOCK_WORDS + 4 * nrules)) + \
                nworkers * (RING_HEADER + RING_SLOT * ring_slots)
            os.ftruncate(fd, size)
        self.mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
        os.close(fd)
        self.words = memoryview(self.mm).cast("Q")
        if create:
            from netmapy.host.proc import start_time as _proc_start_time
            self.words[1] = VERSION
            self.words[2] = nworkers
            self.words[3] = nrules
            self.words[4] = time.time_ns()
            self.words[H_OWNER_PID] = os.getpid()
            self.words[H_OWNER_START] = _proc_start_time(os.getpid()) or 0
            self.words[H_RING_SLOTS] = ring_slots
            self.words[H_ONE_IN] = one_in
        elif self.words[0] != MAGIC or self.words[1] != VERSION:
            raise ValueError("%s is not a netmapy stats file of this version" % path)
        self.nworkers = self.words[2]
        self.nrules = self.words[3]
        self.ring_slots = self.words[H_RING_SLOTS]
        self.one_in = self.words[H_ONE_IN]
        if create:
            for w in range(nworkers):
                r = self.drop_ring(w)
                struct.pack_into("=QII QQ", r, 0, 0, ring_slots, one_in, 1,
                                 int.from_bytes(os.urandom(8), "little") | 1)
                r.release()
            self.words[0] = MAGIC

    @classmethod
    def create(cls, path, nworkers, nrules, ring_slots=DEFAULT_RING_SLOTS, one_in=0):
        """A new counter file: ``nrules`` rule counter slots per worker and
        direction; drop sample rings of ``ring_slots`` samples, about 1 of
        ``one_in`` drops sampled (0: none)."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        return cls(path, fd, True, nworkers, nrules, ring_slots, one_in)

    @classmethod
    def open(cls, path, writable=True):
        fd = os.open(path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        return cls(path, fd, False, writable=writable)

    def _base(self, w):
        if not 0 <= w < self.nworkers:
            raise IndexError("worker %d of %d" % (w, self.nworkers))
        return HEADER_WORDS + w * (BLOCK_WORDS + 4 * self.nrules)

    def block(self, w):
        """The worker's fixed counters (a writable uint64 memoryview)."""
        b = self._base(w)
        return self.words[b:b + BLOCK_WORDS]

    def rule_counters(self, w, direction):
        """(hits, limited) uint64 views for the rules of one direction."""
        b = self._base(w) + BLOCK_WORDS + 2 * self.nrules * direction
        return self.words[b:b + self.nrules], self.words[b + self.nrules:b + 2 * self.nrules]

    def clear_rule_counters(self, slots):
        """Zero these rule counter slots in every worker and direction (a
        slot given to a new rule: nobody writes it meanwhile)."""
        for w in range(self.nworkers):
            for d in range(2):
                for v in self.rule_counters(w, d):
                    for i in slots:
                        v[i] = 0

    def drop_ring(self, w):
        """Worker w's drop sample ring (a writable byte view of its struct
        mb_ds_ring; middlebox/includes/mb_dsample.h)."""
        if not 0 <= w < self.nworkers:
            raise IndexError("worker %d of %d" % (w, self.nworkers))
        off = 8 * (HEADER_WORDS + self.nworkers * (BLOCK_WORDS + 4 * self.nrules)) + \
            w * (RING_HEADER + RING_SLOT * self.ring_slots)
        return memoryview(self.mm)[off:off + RING_HEADER + RING_SLOT * self.ring_slots]

    def snapshot(self, rules=None):
        """A plain-Python copy of every counter (of the rule counters, the
        slots in ``rules`` when given, in that order)."""
        out = []
        rules_at = None if rules is None else list(rules)
        for w in range(self.nworkers):
            blk = self.block(w)
            d = dict(pid=blk[W_PID], restarts=blk[W_RESTARTS], heartbeat_ns=blk[W_HEARTBEAT],
                     state=STATE_NAMES.get(blk[W_STATE], "?"), queue=blk[W_QUEUE],
                     cpu=blk[W_CPU], sampled=blk[W_SAMPLED], dirs=[])
            for di, base in enumerate(DIR_BASE):
                dd = {f: blk[base + i] for i, f in enumerate(FIELDS)}
                dd["failed"] = blk[W_FAILED[di]]
                dd["kernel_drops"] = blk[W_KDROPS[di]]
                d["dirs"].append(dd)
            rules = []
            for di in range(2):
                h, l = self.rule_counters(w, di)
                if rules_at is None:
                    rules.append((list(h), list(l)))
                else:
                    rules.append(([h[i] for i in rules_at], [l[i] for i in rules_at]))
            d["rules"] = rules
            out.append(d)
        return out

    def close(self):
        try:
            self.words.release()
            self.mm.close()
        except (BufferError, ValueError):
            pass

    def unlink(self):
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _owner(path):
    """(pid, start time) the header of a counter file names, or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(8 * HEADER_WORDS)
    except OSError:
        return None
    if len(head) < 8 * HEADER_WORDS:
        return None
    w = struct.unpack("=%dQ" % HEADER_WORDS, head)
    if w[0] != MAGIC:
        return None
    return w[H_OWNER_PID], w[H_OWNER_START]


def remove_stale(prog):
    """Remove the counter files of dead runs of `prog` (a SIGKILLed
    supervisor cannot remove its own); returns [(path, pid)].  A file whose
    process lives (the same process: its start time matches) is kept."""
    from netmapy.host.proc import start_time as _proc_start_time
    d = rundir()
    pat = re.compile(re.escape(prog) + r"-(\d+)\.stats")
    gone = []
    for f in sorted(os.listdir(d)):
        m = pat.fullmatch(f)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid():
            continue
        path = os.path.join(d, f)
        owner = _owner(path)
        start = _proc_start_time(pid)
        if start is not None and (owner is None or owner[1] in (0, start)):
            continue                        # alive (or an unreadable file of a live pid)
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        gone.append((path, pid))
    return gone
