# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""pipe backend: netmap pipes in shared memory between processes.

``pipe:NAME{N`` is the master end and ``pipe:NAME}N`` the slave end of pipe
N of parent NAME.  All pipes of a parent share one memory domain (a 0600
file in pipes/ of netmapy's run directory, ``netmapy.host.rundir``:
``/dev/shm/netmapy-UID`` unless NETMAPY_RUNDIR says otherwise), so buffers
move between them by index: zero copy.

Each end has one TX and one RX ring.  Packets written to one end's TX ring
arrive in the other end's RX ring at its next rxsync/poll.  Nothing is
dropped: when the receiver is full, the sender's TX space drops to zero and
poll(POLLOUT) sleeps until the receiver releases slots.  Sleeping never
spins: each end has a FIFO doorbell that the other end rings only when the
sleeper asked for it (see nm_pipe.h).
"""

from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memset
from netmapy.includes.abi cimport netmap_ring, nm_ring_size, NR_TX, NR_RX
from netmapy.includes.system cimport (
    mmap, munmap, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_SHARED, poll, pollfd,
    POLLIN, POLLOUT, errno, EINTR, EINVAL, monotonic_us, cpu_relax)
from netmapy.core import open_or_undo
from netmapy.core cimport Memory, Port, nm_kring

import errno as _errno
import fcntl
import logging
import os
import stat
import time
import weakref

from ..errors import PortBusy, NetmapyError, BackendError

cdef enum:
    HDR_SIZE = 4096
    PAGE = 4096

DEFAULT_SLOTS = 1024
DEFAULT_MAX_PIPES = 32
DEFAULT_BUF_SIZE = 2048


def rundir():
    """Where pipe domains and doorbells live: the pipes/ sub-directory of
    netmapy's run directory (0700, owned by this user; see netmapy.host.rundir)."""
    from netmapy.host import rundir as _rundir
    try:
        d = _rundir.rundir("pipes")
    except NetmapyError as e:
        raise BackendError("pipes: %s" % e) from None
    if d not in _checked_dirs:
        _checked_dirs.add(d)
        if not _in_memory_fs(d):
            logging.getLogger("netmapy").warning(
                "pipe run directory %s is not on tmpfs: pipe memory will be written "
                "back to disk; point NETMAPY_RUNDIR at /dev/shm", d)
    return d


_checked_dirs = set()


def _in_memory_fs(path):
    """True for tmpfs/ramfs/hugetlbfs (per /proc/self/mountinfo)."""
    best, fstype = "", ""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                mnt = parts[4]
                sep = parts.index("-")
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, fstype = mnt, parts[sep + 1]
    except OSError:
        return True
    return fstype in ("tmpfs", "ramfs", "hugetlbfs")


cdef uint64_t _round(uint64_t v, uint64_t a):
    return (v + a - 1) // a * a


def _starttime(pid):
    """Process start time in clock ticks (guards against pid reuse); None
    when there is no such process or it is a zombie (dead, holding nothing,
    not yet reaped)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X"):
        return None
    return int(rest[19])


def _alive(pid, starttime):
    if pid <= 0:
        return False
    st = _starttime(pid)
    return st is not None and st == starttime


_MY_START = None


def _me():
    global _MY_START
    if _MY_START is None or _MY_START[0] != os.getpid():
        _MY_START = (os.getpid(), _starttime(os.getpid()))
    return _MY_START


cdef class Domain(Memory):
    """The shared memory of all pipes of one parent name."""

    def __init__(self, str parent, str path, int fd, bint create,
                 uint32_t num_slots, uint32_t buf_size, uint32_t max_pipes):
        cdef uint64_t pipes_sz, stack_sz, rings_sz, size
        cdef uint32_t nbufs, i
        cdef void *p
        self.parent = parent
        self.path = path
        self.kind = "pipe:" + parent
        self.memid = 0
        self.dfd = -1
        st = os.fstat(fd)
        self.inode = st.st_ino
        if create:
            nbufs = max_pipes * 4 * num_slots
            pipes_sz = _round(max_pipes * sizeof(nmp_pipe), PAGE)
            stack_sz = _round(nbufs * 4, PAGE)
            rings_sz = _round(<uint64_t>max_pipes * 4 * nm_ring_size(num_slots), PAGE)
            size = HDR_SIZE + pipes_sz + stack_sz + rings_sz + (<uint64_t>nbufs + 2) * buf_size
            os.ftruncate(fd, size)
        else:
            size = st.st_size
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, "mmap of pipe domain %s: %s" % (path, os.strerror(errno)))
        self.region = p
        self.region_size = size
        self.d = <nmp_domain *>p
        if create:
            memset(p, 0, HDR_SIZE)
            self.d.size = size
            self.d.num_slots = num_slots
            self.d.buf_size = buf_size
            self.d.nbufs = nbufs
            self.d.max_pipes = max_pipes
            self.d.pipes_off = HDR_SIZE
            self.d.stack_off = HDR_SIZE + pipes_sz
            self.d.rings_off = self.d.stack_off + stack_sz
            self.d.bufs_off = self.d.rings_off + rings_sz
            self.d.created = <uint64_t>time.time()
            memset(<char *>p + self.d.pipes_off, 0, pipes_sz)
            self.d.free_top = 0
            self.d.next_fresh = 2
            self.d.version = NMP_VERSION
            self.d.magic = NMP_MAGIC
            self.d.ready = 1
        elif self.d.magic != NMP_MAGIC or self.d.version != NMP_VERSION or \
                self.d.size != size:
            munmap(p, size)
            self.region = NULL
            raise BackendError("%s is not a netmapy pipe domain of this version: "
                               "remove it if no process uses it" % path)
        self.buf_size = self.d.buf_size
        self.bufs = <char *>p + self.d.bufs_off
        self.lo = 2
        self.hi = self.d.nbufs + 2
        self.stack = <uint32_t *>(<char *>p + self.d.stack_off)
        self.top = &self.d.free_top
        self.fresh = &self.d.next_fresh
        self.dfd = os.dup(fd)

    def __dealloc__(self):
        if self.region != NULL:
            munmap(self.region, self.region_size)
            self.region = NULL
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1

    @property
    def num_slots(self):
        return self.d.num_slots

    @property
    def max_pipes(self):
        return self.d.max_pipes

    def pipes(self):
        """[(id, master_pid, slave_pid, packets m->s, packets s->m)] in use."""
        out = []
        for i in range(self.d.max_pipes):
            p = nmp_pipe_at(self.d, i)
            if p.in_use:
                out.append((p.id, p.end[0].pid, p.end[1].pid,
                            p.link[0].moved, p.link[1].moved))
        return out

    cdef netmap_ring *ring(self, uint32_t slot, int end, int direction):
        return <netmap_ring *>(<char *>self.region + nmp_ring_off(self.d, slot, end, direction))

    def _init_pipe(self, uint32_t slot, uint32_t pipe_id):
        """Under the domain lock: set up pipe `slot` with four rings."""
        cdef nmp_pipe *p = nmp_pipe_at(self.d, slot)
        cdef netmap_ring *r
        cdef uint32_t n = self.d.num_slots, i
        cdef int e, dr
        memset(p, 0, sizeof(nmp_pipe))
        for e in range(2):
            for dr in range(2):
                r = self.ring(slot, e, dr)
                memset(r, 0, nm_ring_size(n))
                r.num_slots = n
                r.nr_buf_size = self.d.buf_size
                r.buf_ofs = self.bufs - <char *>r
                r.ringid = 0
                r.dir = dr
                for i in range(n):
                    self.alloc_bufs(&r.slot[i].buf_idx, 1)
                r.head = r.cur = 0
                r.tail = n - 1 if dr == NR_TX else 0
                p.end[e].ring_off[dr] = nmp_ring_off(self.d, slot, e, dr)
        p.id = pipe_id
        p.in_use = 1
        self.d.pipes_in_use += 1

    def _free_pipe(self, uint32_t slot):
        """Under the domain lock: give the four rings' buffers back."""
        cdef nmp_pipe *p = nmp_pipe_at(self.d, slot)
        cdef netmap_ring *r
        cdef uint32_t i
        cdef int e, dr
        for e in range(2):
            for dr in range(2):
                r = self.ring(slot, e, dr)
                for i in range(r.num_slots):
                    self.free_bufs(&r.slot[i].buf_idx, 1)
        p.in_use = 0
        p.end[0].pid = p.end[1].pid = 0
        self.d.pipes_in_use -= 1

    def _find(self, uint32_t pipe_id, bint create):
        cdef nmp_pipe *p
        free_slot = None
        for i in range(self.d.max_pipes):
            p = nmp_pipe_at(self.d, i)
            if p.in_use and p.id == pipe_id:
                return i
            if not p.in_use and free_slot is None:
                free_slot = i
        if not create:
            return None
        if free_slot is None:
            raise NetmapyError(
                "pipe domain %r is full (%d pipes): close pipes or open the first "
                "pipe of the domain with max_pipes=N" % (self.parent, self.d.max_pipes))
        self._init_pipe(free_slot, pipe_id)
        return free_slot


_domains = weakref.WeakValueDictionary()


class _Locked:
    """Open and lock the domain file of a parent, creating it if needed."""

    def __init__(self, parent):
        self.parent = parent
        self.dir = rundir()
        self.path = os.path.join(self.dir, parent + ".mem")
        self.fd = -1
        self.created = False

    def __enter__(self):
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:            # unlinked by a last closer meanwhile
                os.close(fd)
                continue
            self.fd = fd
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or st.st_mode & 0o077:
                os.close(fd)
                raise BackendError("pipe domain %s has unsafe owner/permissions: "
                                   "remove it" % self.path)
            self.created = st.st_size == 0
            return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _domain_for(lk, uint32_t num_slots, uint32_t buf_size, uint32_t max_pipes,
                bint explicit):
    """The mapped Domain behind an open _Locked (reusing this process's map)."""
    cdef Domain dom
    ino = os.fstat(lk.fd).st_ino
    dom = _domains.get(lk.parent)
    if dom is not None and dom.inode == ino and dom.owner_pid == os.getpid():
        pass
    else:
        dom = Domain(lk.parent, lk.path, lk.fd, lk.created, num_slots, buf_size, max_pipes)
        _domains[lk.parent] = dom
    if explicit and (dom.d.num_slots != num_slots or dom.d.buf_size != buf_size):
        raise BackendError(
            "pipe domain %r exists with %d slots of %d bytes, not %d of %d: all "
            "pipes of a parent share one layout (close them all to change it)" % (
                lk.parent, dom.d.num_slots, dom.d.buf_size, num_slots, buf_size))
    return dom


cdef class PipePort(Port):
    """One end of a netmapy pipe."""

    def __init__(self, name, **kw):
        Port.__init__(self, name, None)
        self.bell_own = self.bell_peer = -1

    def _open(self, slots=None, buf_size=None, max_pipes=None, busy_poll_us=0):
        cdef Domain dom
        cdef nmp_pipe *p
        cdef netmap_ring *tx
        cdef netmap_ring *rx
        name = self.name
        conf = name.option("conf") or {}
        explicit = slots is not None or "slots" in conf or buf_size is not None
        nslots = int(slots or conf.get("slots") or conf.get("tx-slots") or
                     conf.get("rx-slots") or DEFAULT_SLOTS)
        bsize = int(buf_size or DEFAULT_BUF_SIZE)
        npipes = int(max_pipes or DEFAULT_MAX_PIPES)
        if not (4 <= nslots <= 65536):
            raise ValueError("pipe slots must be in 4..65536, not %d" % nslots)
        if name.memid is not None:
            raise ValueError("%s: pipes use their parent's memory; @memid does not "
                             "apply (drop '@%d')" % (name, name.memid))
        self.end = 0 if name.mode.name == "PIPE_MASTER" else 1
        self.spin_us = busy_poll_us
        pipe_id = name.ring
        with _Locked(name.ifname) as lk:
            dom = _domain_for(lk, nslots, bsize, npipes, explicit)
            slot = dom._find(pipe_id, True)
            p = nmp_pipe_at(dom.d, slot)
            if p.end[self.end].pid and _alive(p.end[self.end].pid, p.end[self.end].starttime):
                raise PortBusy("%s is already open by process %d; one process per "
                               "pipe end" % (name, p.end[self.end].pid))
            pid, start = _me()
            p.end[self.end].pid = pid
            p.end[self.end].starttime = start
            p.end[self.end].opens += 1
            bells = [os.path.join(lk.dir, "%s.%d.%s" % (name.ifname, pipe_id, c))
                     for c in "ms"]
            for b in bells:
                try:
                    os.mkfifo(b, 0o600)
                except FileExistsError:
                    pass
            self.push_undo("release the pipe end", self._release)
            self.dom = dom
            self.mem = dom
            self.pipe_slot = slot
            self.bell_own = os.open(bells[self.end], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self.push_undo("close the doorbell", self._close_bells)
            self.bell_peer = os.open(bells[1 - self.end], os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            self.ring_init_port(1, 1, 0, 0)
            tx = dom.ring(slot, self.end, NR_TX)
            rx = dom.ring(slot, self.end, NR_RX)
            self.txr[0] = tx
            self.rxr[0] = rx
            self.link_nifp()
            self.tx_link = &p.link[self.end]
            self.rx_link = &p.link[1 - self.end]
            self.peer_tx = dom.ring(slot, 1 - self.end, NR_TX)
            # (re)attach: slots handed over but never published are handed
            # back; received packets not released are delivered again
            tx.head = tx.cur = self.tx_link.prod_head
            self.txk[0].hwcur = tx.head
            pc = self.tx_link.prod_hwcur
            tx.tail = dom.d.num_slots - 1 if pc == 0 else pc - 1
            self.txk[0].hwtail = tx.tail
            rx.cur = rx.head
            self.rxk[0].hwcur = rx.head
            self.rxk[0].hwtail = rx.tail
        self.fd = self.bell_own
        self._opened("pipe")

    def _close_bells(self):
        if self.bell_own >= 0:
            os.close(self.bell_own)
            self.bell_own = -1
        if self.bell_peer >= 0:
            os.close(self.bell_peer)
            self.bell_peer = -1

    def _release(self):
        cdef nmp_pipe *p
        cdef Domain dom = self.dom
        name = self.name
        with _Locked(name.ifname) as lk:
            if os.fstat(lk.fd).st_ino != dom.inode:
                return          # domain was removed under us
            p = nmp_pipe_at(dom.d, self.pipe_slot)
            if not p.in_use or p.end[self.end].pid != os.getpid():
                return
            p.end[self.end].pid = 0
            if not _alive(p.end[1 - self.end].pid, p.end[1 - self.end].starttime):
                dom._free_pipe(self.pipe_slot)
                for c in "ms":
                    try:
                        os.unlink(os.path.join(lk.dir, "%s.%d.%s" % (name.ifname, p.id, c)))
                    except FileNotFoundError:
                        pass
            if dom.d.pipes_in_use == 0:
                os.unlink(lk.path)

    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        cdef uint32_t bad = 0
        if nmp_txsync(self.tx_link, self.txr[0], &self.txk[0].hwcur,
                      self.dom.hi, self.bell_peer, &bad) < 0:
            return self.fail(EINVAL, "a TX slot handed over has a bad buf_idx or len")
        return 0

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        nmp_rxsync(self.rx_link, self.peer_tx, self.rxr[0], self.bell_peer)
        return 0

    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil:
        fds[0].fd = self.bell_own
        fds[0].events = POLLIN
        fds[0].revents = 0
        return 1

    cdef void b_woke(self) noexcept nogil:
        nmp_drain(self.bell_own)

    cdef int b_wait(self, int events, int timeout_ms) noexcept nogil:
        cdef long long until
        if self.spin_us:
            # busy-poll the shared state briefly before sleeping
            until = monotonic_us() + self.spin_us
            while monotonic_us() < until:
                if (events & POLLIN) and __atomic_load_n(&self.rx_link.prod_head, __ATOMIC_ACQUIRE) != self.rx_link.prod_hwcur:
                    return 0
                if (events & POLLOUT) and self.txr[0].tail == self.txr[0].head and \
                        __atomic_load_n(&self.tx_link.prod_hwcur, __ATOMIC_ACQUIRE) != (self.txr[0].tail + 1) % self.txr[0].num_slots:
                    return 0
                cpu_relax()
        self.sleeps += 1
        return Port.b_wait(self, events, timeout_ms)

    def stats(self):
        """Packets moved over each direction of the pipe, and how often this
        end went to sleep in poll()."""
        self._check_open()
        return dict(tx_packets=self.tx_link.moved, rx_packets=self.rx_link.moved,
                    sleeps=self.sleeps)

    def _backend_info(self):
        return {"domain": self.dom.path, "end": "master" if self.end == 0 else "slave",
                "pipe": self.name.ring}


def open_port(name, **kw):
    """Open a pipe end (the backend entry point)."""
    return open_or_undo(PipePort(name), kw)


def clean_stale(parents=None):
    """Free the pipes whose ends are all closed or dead (their processes were
    killed), and remove domains left without pipes.  Returns
    [(parent, pipes freed, domain removed)].  Pipes with a live end are kept
    (packets in flight wait for a restarted peer).  parents: only these
    domains (default: every domain in the run directory)."""
    cdef Domain dom
    cdef nmp_pipe *p
    out = []
    doms = list_domains()
    for parent in doms if parents is None else [x for x in parents if x in doms]:
        with _Locked(parent) as lk:
            if lk.created:              # an empty file: nothing in it
                os.unlink(lk.path)
                out.append((parent, 0, True))
                continue
            try:
                dom = _domain_for(lk, DEFAULT_SLOTS, DEFAULT_BUF_SIZE, DEFAULT_MAX_PIPES, False)
            except BackendError:
                continue
            freed = 0
            for i in range(dom.d.max_pipes):
                p = nmp_pipe_at(dom.d, i)
                if p.in_use and not _alive(p.end[0].pid, p.end[0].starttime) and \
                        not _alive(p.end[1].pid, p.end[1].starttime):
                    pid = p.id
                    dom._free_pipe(i)
                    for c in "ms":
                        try:
                            os.unlink(os.path.join(lk.dir, "%s.%d.%s" % (parent, pid, c)))
                        except FileNotFoundError:
                            pass
                    freed += 1
            removed = dom.d.pipes_in_use == 0
            if removed:
                os.unlink(lk.path)
            out.append((parent, freed, removed))
    return out


def list_domains():
    """[(parent, path, pipes in use)] for the domains in the run directory."""
    out = []
    d = rundir()
    for f in sorted(os.listdir(d)):
        if f.endswith(".mem"):
            out.append(f[:len(f) - 4])
    return out
