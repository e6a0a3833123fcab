# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""xdp backend: netmap rings over AF_XDP sockets, one per (interface, queue).

``xdp:eth3~4``  an RX ring fed by RX queue 4 of eth3 only: an XDP program
                redirects that queue's packets to an AF_XDP socket and
                passes everything else (other queues, and packets the
                optional ``steer`` filter does not select) to the kernel.
``xdp:eth3-4``  one RX and one TX ring, on queue 4.
``xdp:eth3``    one ring pair per queue (the whole interface bypassed).
``/R`` ``/T``   one direction only.
``xdp:eth3^``   the host TX ring only: frames written to it are received by
                eth3's network stack as if they had arrived on eth3
                (``xdp:eth3*`` gives the NIC rings and the host ring;
                ``host=True`` adds the host ring to any port).

Options (``netmapy.open(name, **options)``)::

    steer="udp dst port 53"   only matching packets leave the kernel (a
                              tcpdump expression, or classic BPF: a list of
                              (code, jt, jf, k) or ``tcpdump -ddd`` text)
    netmask="255.255.255.0"   for steer expressions that need one (`ip
                              broadcast`); default: the interface's IPv4
                              netmask
    share=port | "group" | Umem
                              use the UMEM of another xdp port (or of a named
                              group): buffers swap between them, zero copy;
                              the name option ``@share:port=xdp:IF-0`` or
                              ``@share:name=G`` says the same
    slots / rx_slots / tx_slots   netmap ring sizes (default 1024)
    ring_size=4096            AF_XDP RX/TX/fill/completion ring sizes (2048
                              above 4 queues, 1024 above 16)
    frame_size=2048           UMEM frame size (2048 or 4096)
    umem_frames=N             UMEM size in frames (for a shared UMEM that
                              more ports will join)
    xdp_mode="native"         or "generic" (skb mode: any interface, slower)
    zerocopy=None             None: try zero copy, fall back to copy mode;
                              True: require it; False: copy mode
    need_wakeup=True          XDP_USE_NEED_WAKEUP
    rx_coalesce_us=50         while packets flow, wait for the next batch on
                              a timer this long instead of being woken by
                              the kernel (0: always block in poll)
    host=False                add the host TX ring (reinjection)
    force=False               replace an XDP program someone else attached
                              (it is put back when the port closes)
    attach="link"             attach the program through a bpf_link (removed
                              by the kernel when the last holder dies) or
                              "netlink" (kernels without XDP links)
    tx_budget=256             packets one copy-mode sendto() may send

See docs/xdp.md for the design, the buffer accounting and the limits.
"""

from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy
from netmapy.includes.abi cimport (netmap_ring, NR_TX, NR_RX, nm_ring_space)
from netmapy.includes.system cimport (
    mmap, munmap, MAP_FAILED, PROT_READ, PROT_WRITE, MAP_PRIVATE,
    MAP_ANONYMOUS, MAP_NORESERVE, pollfd, POLLIN, POLLOUT, errno, close,
    gettimeofday, timeval)
from netmapy.core import open_or_undo
from netmapy.core cimport Port, Memory, poll_pair, ring_move, pair_interrupted
from netmapy.stop cimport stop_requested
from netmapy.includes.system cimport monotonic_ms

import atexit
import errno as _errno
import fcntl
import logging
import os
import select
import signal
import tempfile
import threading
import time
import weakref

from .. import iface
from .. import netns as _netns
from .. import xdpprog
from .. import cbpf
from ..errors import (NetmapyError, NoPrivilege, BackendError, InterfaceError,
                      PortBusy, QueueBusy, QueueOutOfRange, InterfaceNotFound)
from ..xdpprog import SteerError, BpfTranslateError, compile_filter

log = logging.getLogger("netmapy")

cdef extern from "<linux/bpf.h>":
    enum:
        BPF_MAP_TYPE_PROG_ARRAY
        BPF_MAP_TYPE_XSKMAP
        BPF_LINK_TYPE_XDP

cdef extern from "<bpf/bpf.h>" nogil:
    int bpf_prog_get_fd_by_id(uint32_t id)
    int bpf_map_get_fd_by_id(uint32_t id)
    int bpf_link_get_fd_by_id(uint32_t id)
    int bpf_link_get_next_id(uint32_t start_id, uint32_t *next_id)
    int bpf_link_detach(int link_fd)

cdef extern from "<bpf/libbpf.h>" nogil:
    struct bpf_xdp_query_opts:
        size_t sz
        uint32_t prog_id
        uint32_t drv_prog_id
        uint32_t hw_prog_id
        uint32_t skb_prog_id
        uint8_t attach_mode
    int bpf_xdp_query(int ifindex, int flags, bpf_xdp_query_opts *opts)
    int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_CLOEXEC
        EFD_NONBLOCK

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int nanosleep(const timespec *req, timespec *rem)

cdef extern from "<sys/socket.h>" nogil:
    int setsockopt(int fd, int level, int name, const void *val, unsigned int len)

__all__ = ["XdpPort", "Umem", "open_port", "compile_filter", "SteerError",
           "forward_pair", "attach_program", "detach_program", "load_program",
           "BpfTranslateError", "XdpUnsupported", "XdpProgramInUse",
           "attachments", "cleanup_all", "install_signal_cleanup"]

EOPNOTSUPP = _errno.EOPNOTSUPP
XDP_ATTACHED_MODE = {1: "native", 2: "generic", 3: "offload", 4: "multi"}


class XdpUnsupported(BackendError, InterfaceError):
    """The interface cannot run the XDP program or AF_XDP sockets in the
    mode asked for."""

    def __init__(self, message, err=_errno.EOPNOTSUPP):
        InterfaceError.__init__(self, err, message)


class XdpProgramInUse(PortBusy):
    """Another XDP program is attached to the interface."""


_PRIV = ("CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or CAP_SYS_ADMIN)")


def _no_priv(what):
    return NoPrivilege("the xdp backend (%s)" % what, _PRIV)


def _err(int rc, what):
    """An OSError for a negative errno return of a C helper."""
    e = -rc
    if e in (_errno.EPERM, _errno.EACCES):
        raise _no_priv(what)
    raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _close_nogil(int fd):
    with nogil:
        close(fd)


def _cur_ns_ino():
    return os.stat("/proc/thread-self/ns/net").st_ino


class _InNs:
    """Run a block in the network namespace of an open namespace fd (used
    at close, which may run from another namespace than open did)."""

    def __init__(self, fd, ino):
        self.fd, self.ino, self.back = fd, ino, -1

    def __enter__(self):
        if self.fd >= 0 and _cur_ns_ino() != self.ino:
            self.back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            _netns.setns(self.fd)
        return self

    def __exit__(self, *exc):
        if self.back >= 0:
            try:
                _netns.setns(self.back)
            finally:
                os.close(self.back)
                self.back = -1
        return False


# ----------------------------------------------------------- programs

def _steer_asm(steer, netmask=None, ifname=None, chain=False):
    """The steer program from a steer option (a tcpdump expression,
    classic BPF text or a list of instructions).  An expression gets
    netmask, or by default the IPv4 netmask of ifname (read now, in the
    calling thread's namespace) for expressions that need one."""
    if isinstance(steer, str):
        s = steer.strip()
        if cbpf.looks_like_text(s):
            return xdpprog.steer_program(xdpprog.parse_cbpf(s, "steer"), source="steer",
                                         chain=chain)
        if netmask is None and ifname:
            netmask = iface.ipv4_netmask(ifname)
        return xdpprog.steer_program(
            compile_filter(steer, netmask=netmask, netmask_from=ifname), source=repr(steer),
            chain=chain)
    return xdpprog.steer_program(steer, source="steer", chain=chain)


def load_program(asm, str name, maps=None, int prog_type=xdpprog.PROG_TYPE_XDP):
    """Load an xdpprog.Asm as an XDP program (or another prog_type);
    returns its fd.  A verifier rejection raises SteerError with the end of
    the verifier's log (and the program's source, when it is a translation
    of a filter)."""
    cdef bytes code = asm.code(maps)
    cdef char *log = <char *>malloc(1 << 20)
    cdef int fd
    if log == NULL:
        raise MemoryError()
    try:
        log[0] = 0
        fd = nx_prog_load(prog_type, name.encode(), <const char *>code, len(code) // 8, log,
                          1 << 20)
        kind = "XDP" if prog_type == xdpprog.PROG_TYPE_XDP else "tc"
        if fd < 0:
            if fd in (-_errno.EPERM, -_errno.EACCES):
                raise _no_priv("loading a BPF program")
            text = (<bytes>log).decode("utf-8", "replace").strip().splitlines()
            if text:
                src = getattr(asm, "source", None)
                raise SteerError("%sthe kernel's verifier rejected the %s program %s (%d "
                                 "instructions): %s%s" % (
                                     "%s: " % src if src else "", kind, name, len(code) // 8,
                                     " | ".join(text[max(0, len(text) - 3):]),
                                     "; run this filter in a middlebox Filter (libpcap's "
                                     "interpreter) instead" if src else ""))
            raise OSError(-fd, "loading the %s program %s: %s" % (kind, name, os.strerror(-fd)))
        return fd
    finally:
        free(log)


def _xdp_query(int ifindex):
    """{prog_id, drv, skb, hw, mode} of the XDP programs on ifindex."""
    cdef bpf_xdp_query_opts o
    memset(&o, 0, sizeof(o))
    o.sz = sizeof(o)
    if bpf_xdp_query(ifindex, 0, &o) < 0:
        e = errno
        if e in (_errno.EPERM, _errno.EACCES):
            raise _no_priv("querying XDP programs")
        raise OSError(e, "querying the XDP program of ifindex %d: %s" % (ifindex, os.strerror(e)))
    return dict(prog_id=o.prog_id, drv=o.drv_prog_id, skb=o.skb_prog_id,
                hw=o.hw_prog_id, mode=o.attach_mode)


def _prog_info(int fd):
    cdef nx_prog_info pi
    rc = nx_get_prog_info(fd, &pi)
    if rc < 0:
        _err(rc, "reading program info")
    return dict(id=pi.id, type=pi.type, name=(<bytes>pi.name).decode("ascii", "replace"),
                map_ids=[pi.map_ids[i] for i in range(pi.nr_map_ids)],
                tag=bytes(pi.tag[:8]).hex())


def _map_info(int fd):
    cdef nx_map_info mi
    rc = nx_get_map_info(fd, &mi)
    if rc < 0:
        _err(rc, "reading map info")
    return dict(id=mi.id, type=mi.type, max_entries=mi.max_entries,
                name=(<bytes>mi.name).decode("ascii", "replace"))


def _find_xdp_link(uint32_t prog_id):
    """(link id, ifindex) of the XDP bpf_link that holds program prog_id,
    or (0, 0)."""
    cdef uint32_t cur = 0, nxt = 0
    cdef nx_link_info li
    cdef int fd
    while bpf_link_get_next_id(cur, &nxt) == 0:
        cur = nxt
        fd = bpf_link_get_fd_by_id(cur)
        if fd < 0:
            continue
        try:
            if nx_get_link_info(fd, &li) == 0 and li.type == BPF_LINK_TYPE_XDP \
                    and li.prog_id == prog_id:
                return li.id, li.ifindex
        finally:
            close(fd)
    return 0, 0


# ------------------------------------------------- per-interface program

def _lock_dir():
    """The xdp/ sub-directory of netmapy's run directory (netmapy.rundir)."""
    from netmapy import rundir as _rundir
    return _rundir.rundir("xdp")


_key_locks = {}
_lock = threading.Lock()


def _gc_lock_files(d):
    """Remove the lock files of interfaces nobody uses any more (left by
    processes killed with SIGKILL).  Skips any that is busy."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        if not n.endswith(".lock"):
            continue
        mpath = os.path.join(d, n)
        upath = mpath[:len(mpath) - 5] + ".users"
        try:
            mfd = os.open(mpath, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(mfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(mpath).st_ino != os.fstat(mfd).st_ino:
                continue
            try:
                ufd = os.open(upath, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                ufd = -1
            try:
                if ufd >= 0:
                    fcntl.flock(ufd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    os.unlink(upath)
                os.unlink(mpath)
            finally:
                if ufd >= 0:
                    os.close(ufd)
        except OSError:
            pass
        finally:
            os.close(mfd)


class _Attachment:
    """The dispatcher program of one interface, as this process uses it.

    Shared by every port of the process on that interface (refcounted) and,
    through the kernel objects, by every netmapy process on it: each holds
    the program's maps (and its bpf_link) by fd.  Open and close of these
    run under an exclusive lock (a file in xdp/ of the run directory, per network
    namespace and ifindex); while it has ports, a process holds the
    interface's "users" file locked shared, so the last one out knows it is
    the last (flock locks die with their process, even after SIGKILL).
    """

    registry = {}

    def __init__(self, key, ifname, ifindex, ns_fd, ns_ino):
        self.key = key
        self.ifname, self.ifindex = ifname, ifindex
        self.ns_fd, self.ns_ino = ns_fd, ns_ino
        self.users = 0
        self.prog_fd = self.xsk_fd = self.progs_fd = self.link_fd = -1
        self.netlink_flags = None   # set when attached through netlink by us
        self.joined = False
        self.mode = None
        self.prog_id = 0
        self.displaced = None       # (fd, flags, id, name) of a forced-out program
        self.users_fd = -1
        self.max_entries = 0
        d = _lock_dir()
        _gc_lock_files(d)
        base = os.path.join(d, "ns%d-if%d" % (ns_ino, ifindex))
        self.mutex_path = base + ".lock"
        self.users_path = base + ".users"

    # -- locks
    def _mutex(self):
        """Lock the interface's mutex file.  The last process out unlinks
        the files, so after locking check that the path still names the
        file we locked (or we would be alone with a deleted one)."""
        while True:
            fd = os.open(self.mutex_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.mutex_path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _alone(self):
        """True if no other process holds the users lock (we hold it shared,
        or not at all).  Leaves our lock shared."""
        try:
            fcntl.flock(self.users_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(self.users_fd, fcntl.LOCK_SH)
        return True

    @staticmethod
    def _key_lock(key):
        with _lock:
            lk = _key_locks.get(key)
            if lk is None:
                lk = _key_locks[key] = threading.Lock()
            return lk

    @classmethod
    def acquire(cls, ifname, info, xdp_mode, attach, force, nqueues):
        ns_ino = _cur_ns_ino()
        key = (ns_ino, info.index)
        with cls._key_lock(key):
            a = cls.registry.get(key)
            if a is None:
                ns_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                a = None
                try:
                    a = cls(key, ifname, info.index, ns_fd, ns_ino)
                    a._setup(info, xdp_mode, attach, force, nqueues)
                except BaseException:
                    if a is not None:
                        a._teardown()
                    else:
                        os.close(ns_fd)
                    raise
                cls.registry[key] = a
            a.users += 1
            return a

    def _setup(self, info, xdp_mode, attach, force, nqueues):
        mfd = self._mutex()
        try:
            self.users_fd = os.open(self.users_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self.users_fd, fcntl.LOCK_SH)
            q = _xdp_query(self.ifindex)
            ids = [i for i in (q["drv"], q["skb"], q["hw"]) if i] or \
                  ([q["prog_id"]] if q["prog_id"] else [])
            for pid in ids:
                if self._try_join(pid, q, force, info):
                    return
            self._attach_new(info, xdp_mode, attach, max(nqueues, 1))
        finally:
            os.close(mfd)

    def _ours(self, int fd):
        """Map fds (xsk, progs) if fd is a netmapy dispatcher, else None."""
        pi = _prog_info(fd)
        if pi["name"] != xdpprog.PROG_NAME:
            return None, pi
        xsk = progs = -1
        for mid in pi["map_ids"]:
            mfd = bpf_map_get_fd_by_id(mid)
            if mfd < 0:
                continue
            mi = _map_info(mfd)
            if mi["name"] == xdpprog.XSKMAP_NAME and mi["type"] == BPF_MAP_TYPE_XSKMAP and xsk < 0:
                xsk = mfd
                self.max_entries = mi["max_entries"]
            elif mi["name"] == xdpprog.PROGMAP_NAME and mi["type"] == BPF_MAP_TYPE_PROG_ARRAY and progs < 0:
                progs = mfd
            else:
                close(mfd)
        if xsk < 0 or progs < 0:
            for f in (xsk, progs):
                if f >= 0:
                    close(f)
            return None, pi
        return (xsk, progs), pi

    def _try_join(self, uint32_t prog_id, q, force, info):
        """Handle an attached program: join ours, replace our stale one,
        refuse (or, forced, displace) someone else's.  True if joined."""
        cdef int fd = bpf_prog_get_fd_by_id(prog_id)
        if fd < 0:
            e = errno
            if e in (_errno.EPERM, _errno.EACCES):
                raise _no_priv("reading the interface's XDP program")
            if e == _errno.ENOENT:
                return False        # detached meanwhile
            raise OSError(e, "bpf_prog_get_fd_by_id(%d): %s" % (prog_id, os.strerror(e)))
        mode = ("native" if prog_id == q["drv"] else "generic" if prog_id == q["skb"]
                else "offload" if prog_id == q["hw"] else XDP_ATTACHED_MODE.get(q["mode"], "?"))
        flags = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}.get(mode, 0)
        try:
            maps, pi = self._ours(fd)
        except BaseException:
            close(fd)
            raise
        link_id, _ = _find_xdp_link(prog_id)
        if maps is not None:
            if link_id:
                lfd = bpf_link_get_fd_by_id(link_id)
                if lfd >= 0:
                    self.link_fd = lfd
                    self.prog_fd = fd
                    self.xsk_fd, self.progs_fd = maps
                    self.mode, self.prog_id, self.joined = mode, prog_id, True
                    return True
                # the link went away meanwhile (its last holder closed it)
                for f in maps:
                    close(f)
                close(fd)
                return False
            elif not self._alone():
                # attached through netlink by a live netmapy process
                self.prog_fd = fd
                self.xsk_fd, self.progs_fd = maps
                self.netlink_flags = flags
                self.mode, self.prog_id, self.joined = mode, prog_id, True
                return True
            else:
                log.warning("netmapy: %s: replacing netmapy's stale XDP program "
                            "(id %d, %s mode) left by a process that died",
                            self.ifname, prog_id, mode)
                for f in maps:
                    close(f)
                rc = nx_xdp_attach(self.ifindex, -1, flags, fd)
                close(fd)
                if rc < 0 and -rc != _errno.EEXIST:
                    _err(rc, "%s: detaching the stale XDP program %d" % (self.ifname, prog_id))
                return False
        # someone else's program
        owner = ("held by bpf_link id %d" % link_id) if link_id else "attached through netlink"
        desc = ("%s already has an XDP program that netmapy did not install: id %d "
                "'%s' (%s mode, %s)" % (self.ifname, prog_id, pi["name"], mode, owner))
        if not force:
            close(fd)
            how = ("`ip link set dev %s xdp off`" % self.ifname) if not link_id else \
                  ("`bpftool link detach id %d`" % link_id)
            raise XdpProgramInUse("%s; netmapy never removes it silently: remove it (%s) "
                                  "or open with force=True to replace it while the port "
                                  "is open (it is put back on close)" % (desc, how))
        if link_id:
            close(fd)
            raise XdpProgramInUse("%s; force=True cannot take over a program held by a "
                                  "bpf_link: its owner must release it (`bpftool link "
                                  "detach id %d`)" % (desc, link_id))
        rc = nx_xdp_attach(self.ifindex, -1, flags, fd)
        if rc < 0:
            close(fd)
            _err(rc, "%s: detaching XDP program %d (force=True)" % (self.ifname, prog_id))
        log.warning("netmapy: %s: force=True: removed XDP program %d '%s' (%s mode); it "
                    "is put back when the port closes", self.ifname, prog_id, pi["name"], mode)
        self.displaced = (fd, flags, prog_id, pi["name"])
        return False

    def _attach_new(self, info, xdp_mode, attach, uint32_t nq):
        cdef int fd
        flags = XDP_FLAGS_DRV_MODE if xdp_mode == "native" else XDP_FLAGS_SKB_MODE
        fd = nx_map_create(BPF_MAP_TYPE_XSKMAP, xdpprog.XSKMAP_NAME.encode(), 4, 4, nq)
        if fd < 0:
            _err(fd, "creating the XSKMAP")
        self.xsk_fd = fd
        self.max_entries = nq
        fd = nx_map_create(BPF_MAP_TYPE_PROG_ARRAY, xdpprog.PROGMAP_NAME.encode(), 4, 4, nq)
        if fd < 0:
            _err(fd, "creating the filter program array")
        self.progs_fd = fd
        self.prog_fd = load_program(xdpprog.dispatcher(), xdpprog.PROG_NAME,
                                    {xdpprog.XSKMAP_NAME: self.xsk_fd,
                                     xdpprog.PROGMAP_NAME: self.progs_fd})
        cdef int pfd = self.prog_fd, ifx = self.ifindex
        cdef uint32_t fl = flags
        if attach == "link":
            with nogil:
                fd = nx_link_create(pfd, ifx, fl)
            if fd >= 0:
                self.link_fd = fd
        else:
            with nogil:
                fd = nx_xdp_attach(ifx, pfd, fl | XDP_FLAGS_UPDATE_IF_NOEXIST, -1)
            if fd == 0:
                self.netlink_flags = flags
        if fd < 0:
            e = -fd
            if e in (_errno.EPERM, _errno.EACCES):
                raise _no_priv("attaching an XDP program")
            if e in (_errno.EOPNOTSUPP, _errno.EINVAL) and xdp_mode == "native":
                raise XdpUnsupported(
                    "interface %s (driver %r) has no native XDP support: open it with "
                    "xdp_mode='generic' (skb mode: slower, copy only)"
                    % (self.ifname, info.driver or "?"), e)
            if e == _errno.EBUSY or e == _errno.EEXIST:
                raise XdpProgramInUse("%s: another XDP program was attached meanwhile; "
                                      "try again" % self.ifname)
            raise XdpUnsupported("%s: cannot attach the XDP program in %s mode: %s"
                                 % (self.ifname, xdp_mode, os.strerror(e)), e)
        self.mode = xdp_mode
        self.prog_id = _prog_info(self.prog_fd)["id"]

    # -- per queue
    def bypass(self, uint32_t queue, int sock_fd):
        if queue >= self.max_entries:
            raise QueueOutOfRange(self.ifname, queue, self.max_entries, "RX")
        rc = nx_map_set(self.xsk_fd, queue, sock_fd)
        if rc < 0:
            _err(rc, "%s: adding queue %d to the XSKMAP" % (self.ifname, queue))

    def unbypass(self, uint32_t queue):
        if self.xsk_fd >= 0:
            nx_map_del(self.xsk_fd, queue)

    def set_filter(self, uint32_t queue, int prog_fd):
        if prog_fd < 0:
            rc = nx_map_del(self.progs_fd, queue)
            if rc < 0 and -rc != _errno.ENOENT:
                _err(rc, "%s: removing the filter of queue %d" % (self.ifname, queue))
            return
        rc = nx_map_set(self.progs_fd, queue, prog_fd)
        if rc < 0:
            _err(rc, "%s: installing the filter of queue %d" % (self.ifname, queue))

    def bypassed_queues(self):
        cdef uint32_t keys[4096]
        if self.xsk_fd < 0:
            return []
        n = nx_map_keys(self.xsk_fd, keys, 4096)
        return [keys[i] for i in range(n)]

    def release(self):
        with self._key_lock(self.key):
            self.users -= 1
            if self.users > 0:
                return
            if self.registry.get(self.key) is self:
                del self.registry[self.key]
            self._teardown()

    def _teardown(self):
        mfd = -1
        try:
            mfd = self._mutex()
        except OSError:
            pass
        alone = False
        try:
            alone = self.users_fd < 0 or self._alone()
            if self.netlink_flags is not None and self.prog_fd >= 0 and alone:
                with _InNs(self.ns_fd, self.ns_ino):
                    rc = nx_xdp_attach(self.ifindex, -1, self.netlink_flags, self.prog_fd)
                if rc < 0 and -rc not in (_errno.EEXIST, _errno.ENODEV):
                    log.warning("netmapy: %s: detaching the XDP program: %s",
                                self.ifname, os.strerror(-rc))
            for name in ("link_fd", "prog_fd", "xsk_fd", "progs_fd"):
                f = getattr(self, name)
                if f >= 0:
                    _close_nogil(f)
                    setattr(self, name, -1)
            if self.displaced is not None:
                dfd, dflags, did, dname = self.displaced
                self.displaced = None
                if alone:
                    with _InNs(self.ns_fd, self.ns_ino):
                        rc = nx_xdp_attach(self.ifindex, dfd, dflags | XDP_FLAGS_UPDATE_IF_NOEXIST, -1)
                    if rc < 0:
                        log.warning("netmapy: %s: could not put back XDP program %d '%s': %s",
                                    self.ifname, did, dname, os.strerror(-rc))
                else:
                    log.warning("netmapy: %s: XDP program %d '%s' (replaced with force=True) "
                                "is not put back: other netmapy processes still use the "
                                "interface", self.ifname, did, dname)
                close(dfd)
        finally:
            if alone and mfd >= 0:
                # nobody else uses the interface: remove the lock files
                # (under the mutex; openers re-check the inode they lock)
                for path in (self.users_path, self.mutex_path):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            if self.users_fd >= 0:
                os.close(self.users_fd)
                self.users_fd = -1
            if mfd >= 0:
                os.close(mfd)
            if self.ns_fd >= 0:
                os.close(self.ns_fd)
                self.ns_fd = -1

    def describe(self):
        return dict(prog_id=self.prog_id, mode=self.mode, joined=self.joined,
                    attach="link" if self.link_fd >= 0 else "netlink",
                    bypassed=sorted(self.bypassed_queues()))


def attachments():
    """{(netns inode, ifindex): description} of this process's programs."""
    return {k: a.describe() for k, a in _Attachment.registry.items()}


# ----------------------------------------------------------------- UMEM

_groups = weakref.WeakValueDictionary()
_zc_by_driver = {}


cdef class Umem(Memory):
    """An AF_XDP UMEM used as netmap buffer memory: frame f is buffer f.

    ``NETMAP_BUF`` points XDP_PACKET_HEADROOM (256) bytes into the frame,
    where the kernel writes received data, so a slot's buffer holds
    ``frame_size - 256`` bytes of packet.  Ports with the same Umem swap
    buffers (zero copy).  Use it from one thread at a time.
    """

    def __init__(self, uint32_t frames, uint32_t frame_size=2048, str group=None,
                 int memid=0):
        cdef size_t ln
        cdef void *p
        cdef uint32_t i
        if frame_size not in (2048, 4096):
            raise ValueError("frame_size must be 2048 or 4096, not %d" % frame_size)
        if frames < 64 or frames > (1 << 24):
            raise ValueError("a UMEM has 64..%d frames, not %d" % (1 << 24, frames))
        self.kind = "xdp"
        self.memid = memid
        self.group = group
        self.frames = frames
        self.frame_size = frame_size
        self.buf_size = frame_size
        self.umem_len = <uint64_t>frames * frame_size
        # one more frame: a buffer filled to nr_buf_size spills 256 bytes
        # into the next frame's (unused) headroom; the last one too
        ln = <size_t>(frames + 1) * frame_size
        p = mmap(NULL, ln, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if p == MAP_FAILED:
            raise OSError(errno, "mmap of a %d-frame UMEM: %s" % (frames, os.strerror(errno)))
        self.area = <char *>p
        self.map_len = ln
        self.region = p
        self.region_size = ln
        self.bufs = self.area + NX_XDP_HEADROOM
        self.lo = 2
        self.hi = frames
        self.stack = <uint32_t *>malloc(frames * sizeof(uint32_t))
        self.owner = <uint16_t *>calloc(frames, sizeof(uint16_t))
        if self.stack == NULL or self.owner == NULL:
            raise MemoryError()
        for i in range(frames - 2):
            self.stack[i] = frames - 1 - i
        self._top = frames - 2
        self.top = &self._top
        # every frame is on the stack: none is "fresh" (core.Memory hands
        # out never-used indices from fresh..hi before popping the stack)
        self._fresh = self.hi
        self.fresh = &self._fresh
        self.pool.stack = self.stack
        self.pool.top = self.top
        self.pool.owner = self.owner
        self.pool.lo = self.lo
        self.pool.hi = self.hi
        self.next_id = 1
        self._socks = {}

    def __dealloc__(self):
        if self.area != NULL:
            munmap(self.area, self.map_len)
            self.area = NULL
        free(self.stack)
        free(self.owner)
        self.stack = NULL
        self.owner = NULL

    def _new_id(self):
        cdef uint32_t i
        for i in range(65535):
            v = self.next_id
            self.next_id = 1 if self.next_id == 65535 else self.next_id + 1
            if v not in self._socks:
                return v
        raise NetmapyError("too many AF_XDP sockets on one UMEM")

    def frames_held(self):
        """{socket id: frames it holds} (kernel side), for tests."""
        cdef uint32_t f
        out = {}
        for f in range(self.lo, self.hi):
            if self.owner[f]:
                out[self.owner[f]] = out.get(self.owner[f], 0) + 1
        return out

    def __repr__(self):
        return "<netmapy.Umem %s frames=%d free=%d frame_size=%d sockets=%d>" % (
            self.group or "private", self.frames, self.top[0], self.frame_size,
            len(self._socks))


def _umem_for(share, need, frame_size, umem_frames):
    """(Umem, created) for a port: a new private one, or a shared one."""
    if share is None:
        return Umem(max(umem_frames or 0, need), frame_size), True
    if isinstance(share, Umem):
        return share, False
    if isinstance(share, XdpPort):
        if share.closed:
            raise ValueError("share=: port %s is closed" % share.name)
        return share.mem, False
    if isinstance(share, str):
        key = (os.getpid(), share)
        u = _groups.get(key)
        if u is not None:
            return u, False
        u = Umem(umem_frames or max(2 * need, 16384), frame_size, group=share)
        _groups[key] = u
        return u, True
    raise TypeError("share= takes an xdp port, a Umem or a group name, not %s"
                    % type(share).__name__)


def _share_from_name(pname):
    opt = pname.option("share")
    if opt is None:
        return None
    if "port" in opt:
        target = opt["port"]
        for p in list(_open_ports):
            if not p.closed and str(p.name) == target:
                return p
        raise BackendError("%s: @share:port=%s: no open xdp port of that name in this "
                           "process (open it first)" % (pname, target))
    return opt.get("name", "default")


# ---------------------------------------------------------------- port

_open_ports = weakref.WeakSet()


cdef class XdpPort(Port):
    """netmap rings over AF_XDP sockets (see the module documentation)."""

    def __cinit__(self, *args, **kw):
        self.socks = NULL
        self.pool = NULL
        self.nsocks = 0
        self.ep_in = self.ep_out = -1
        nm_inject_init(&self.host)
        self.ifindex = -1

    def __init__(self, name, **kw):
        Port.__init__(self, name, None)
        self._py = {}
        self.ifname = name.ifname
        self.queues = ()
        self.xdp_mode = ""

    def _open(self, steer=None, share=None, slots=None, rx_slots=None, tx_slots=None,
              ring_size=None, frame_size=None, umem_frames=None, xdp_mode="native",
              zerocopy=None, need_wakeup=True, host=False, force=False, attach="link",
              tx_budget=256, fill_size=None, rx_coalesce_us=50, netmask=None):
        cdef Umem um
        cdef uint32_t i, nq_cap
        name = self.name
        mode = name.mode.name
        if xdp_mode not in ("native", "generic"):
            raise ValueError("xdp_mode must be 'native' or 'generic', not %r" % (xdp_mode,))
        if attach not in ("link", "netlink"):
            raise ValueError("attach must be 'link' or 'netlink', not %r" % (attach,))
        for what, v in (("ring_size", ring_size), ("fill_size", fill_size)):
            if v is not None and (v < 64 or v & (v - 1)):
                raise ValueError("%s must be a power of 2 >= 64, not %r" % (what, v))
        if mode == "ONE_SW":
            raise BackendError("%s: the xdp backend has one host ring: write %s:%s^"
                               % (name, name.backend, name.ifname))
        if mode not in ("ALL_NIC", "ONE_NIC", "SINGLE_RX", "SW", "NIC_SW"):
            raise BackendError("%s: the xdp backend opens interface queues and host rings "
                               "(no pipes)" % name)
        if rx_coalesce_us < 0 or rx_coalesce_us > 100000:
            raise ValueError("rx_coalesce_us must be 0..100000, not %r" % (rx_coalesce_us,))
        self.coalesce_ns = <long>(rx_coalesce_us * 1000)
        conf = name.option("conf") or {}
        nrs = int(rx_slots or slots or conf.get("rx-slots") or conf.get("slots") or 1024)
        nts = int(tx_slots or slots or conf.get("tx-slots") or conf.get("slots") or 1024)
        self.host_on = bool(host) or mode in ("SW", "NIC_SW")
        if self.host_on and xdp_mode == "generic" and mode != "SW" and not name.tx_only:
            raise BackendError(
                "%s: host rings need native XDP: in generic mode the stack would run the "
                "program again on reinjected frames and send them back to the socket "
                "(open the NIC rings and %s:%s^ as two ports instead)" % (
                    name, name.backend, name.ifname))
        q = name.ring if mode in ("ONE_NIC", "SINGLE_RX") else None
        want_rx = mode != "SW" and not name.tx_only
        want_tx = mode not in ("SW", "SINGLE_RX") and not name.rx_only
        self.rx_on, self.tx_on = want_rx, want_tx
        info = iface.require(name.ifname, up=True, rx_queue=q if want_rx else None,
                             tx_queue=None)
        if q is not None and want_tx and q >= max(info.num_tx_queues, info.num_rx_queues):
            raise QueueOutOfRange(name.ifname, q, max(info.num_tx_queues, info.num_rx_queues), "TX")
        self.ifindex = info.index
        nsfd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._py["ns"] = (nsfd, _cur_ns_ino())
        self.push_undo("close the namespace fd", lambda: os.close(nsfd))
        if mode in ("ONE_NIC", "SINGLE_RX"):
            queues = [q]
        elif mode == "SW":
            queues = []
        else:
            queues = list(range(info.num_rx_queues if want_rx else info.num_tx_queues))
        nq_cap = max(info.num_rx_queues, info.num_tx_queues, 1)
        if frame_size is None:
            frame_size = 2048 if info.mtu + 14 + 4 <= 2048 - NX_XDP_HEADROOM else 4096
        if info.mtu + 18 > frame_size - NX_XDP_HEADROOM:
            log.warning("netmapy: %s: MTU %d does not fit %d-byte UMEM frames (%d bytes "
                        "after the headroom): longer frames are dropped (counted in "
                        "stats()['rx_dropped']); lower the MTU or use frame_size=4096",
                        name.ifname, info.mtu, frame_size, frame_size - NX_XDP_HEADROOM)
        if ring_size is None:           # deep enough to ride out stalls
            ring_size = 4096 if len(queues) <= 4 else 2048 if len(queues) <= 16 else 1024
        ring_size = int(ring_size)
        fill = int(fill_size or ring_size)
        self._py.update(ring_size=ring_size, fill=fill, need_wakeup=bool(need_wakeup),
                        zerocopy=zerocopy, tx_budget=int(tx_budget or 0), steer=None,
                        steer_fd=-1, chain_fd=-1, qprog_fd=-1, att=None, driver=info.driver, nrs=nrs, nts=nts,
                        hooks=[], sockfd={})
        # buffers: netmap slots, fill rings, in-flight TX, host ring
        per_q = (nrs + fill if want_rx else 0) + (nts + ring_size if want_tx else 0)
        need = per_q * len(queues) + (nts if self.host_on else 0) + 64
        if share is None:
            share = _share_from_name(name)
        um, created = _umem_for(share, need, frame_size, umem_frames)
        if um.frame_size != frame_size:
            frame_size = um.frame_size
        self.mem = um
        self.pool = &um.pool
        # the slots must have frames; fill rings and in-flight TX should
        hard = (nrs if want_rx else 0) * len(queues) + \
               (nts if want_tx else 0) * len(queues) + (nts if self.host_on else 0) + \
               (64 * len(queues) if want_rx else 0)
        if not created and um.free_buffers < hard:
            raise NetmapyError(
                "%s: the shared UMEM (%r) has %d free frames, this port needs at least "
                "%d (%d for full speed): open the first port of the group with "
                "umem_frames=N" % (name, um, um.free_buffers, hard, need - 64))
        if not created and um.free_buffers < need - 64:
            log.warning("netmapy: %s: the shared UMEM has %d free frames, %d would let "
                        "this port's rings run full: open the first port with "
                        "umem_frames=N", name, um.free_buffers, need - 64)
        # steer: compile (and so fail on a bad expression) before touching
        # the interface
        steer_asm = None
        if steer is not None and want_rx:
            steer_asm = _steer_asm(steer, netmask, name.ifname, chain=True)
            self._py["steer"] = steer
        elif steer is not None:
            raise BackendError("%s: steer= selects received packets; this port has no RX ring"
                               % name)
        # rings (arrays sized for every queue, for add_queue)
        self.ring_init_port(nq_cap if want_tx else 0, nq_cap if want_rx else 0,
                            1 if self.host_on else 0, 0)
        self.push_undo("free the rings", self._free_all_rings)
        self._py["cap"] = nq_cap
        self._set_counts(len(queues))
        self.socks = <nx_sock *>calloc(nq_cap, sizeof(nx_sock))
        if self.socks == NULL:
            raise MemoryError()
        for i in range(nq_cap):
            self.socks[i].fd = -1
        self.push_undo("close the AF_XDP sockets", self._close_socks)
        for i in range(len(queues)):
            self._ring_for(i)
        if self.host_on:
            self.txr[self.nic_tx] = um.new_ring(nts, self.nic_tx, NR_TX)
            self.txk[self.nic_tx].hwcur = 0
            self.txk[self.nic_tx].hwtail = self.txr[self.nic_tx].tail
        self.link_nifp()
        # the program (RX only), then the sockets, then the map entries
        if want_rx:
            self._py["att"] = _Attachment.acquire(name.ifname, info, xdp_mode, attach,
                                                   bool(force), max(info.num_rx_queues, 1))
            self.push_undo("release the XDP program", self._release_att)
            self.xdp_mode = self._py["att"].mode
            if steer_asm is not None:
                att = self._py["att"]
                self._py["steer_fd"] = load_program(
                    steer_asm, xdpprog.STEER_NAME, {xdpprog.XSKMAP_NAME: att.xsk_fd,
                                                    xdpprog.CHAIN_NAME: self._chain_map()})
                self.push_undo("unload the steer program", self._close_steer)
        self.queues = tuple(queues)
        self._py["reserve"] = 0
        for i in range(len(queues)):
            self._open_sock(i, queues[i])
        self.zerocopy = bool(self.nsocks and self.socks[0].copy_mode == 0)
        if want_rx:
            self.push_undo("remove the queues from the bypass", self._unbypass_all)
            for i in range(len(queues)):
                self._bypass(i)
        if self.host_on:
            self._open_host(info, q)
        self._setup_fds()
        self._py["zc"] = self.zerocopy
        _open_ports.add(self)
        _install_exit_hooks()
        self._opened("xdp")

    # ----------------------------------------------------------- rings
    cdef _set_counts(self, uint32_t n):
        """Set the ring counts to n NIC rings (the arrays have room)."""
        cdef uint32_t h = 1 if self.host_on else 0
        self.nic_rx = n if self.rx_on else 0
        self.nic_tx = n if self.tx_on else 0
        self.nrx = self.nic_rx
        self.ntx = self.nic_tx + h
        self.nsocks = n
        self.nifp.ni_tx_rings = self.nic_tx
        self.nifp.ni_rx_rings = self.nic_rx
        self.nifp.ni_host_tx_rings = h
        self.nifp.ni_host_rx_rings = 0

    def _ring_for(self, uint32_t i):
        cdef Memory m = self.mem
        if self.rx_on:
            self.rxr[i] = m.new_ring(self._py["nrs"], i, NR_RX)
            self.rxk[i].hwcur = 0
            self.rxk[i].hwtail = 0
        if self.tx_on:
            self.txr[i] = m.new_ring(self._py["nts"], i, NR_TX)
            self.txk[i].hwcur = 0
            self.txk[i].hwtail = self.txr[i].tail

    def _free_all_rings(self):
        cdef Memory m = self.mem
        cdef uint32_t i
        if self.txr == NULL:
            return
        for i in range(self.ntx):
            if self.txr[i] != NULL:
                m.free_ring(self.txr[i])
                self.txr[i] = NULL
        for i in range(self.nrx):
            if self.rxr[i] != NULL:
                m.free_ring(self.rxr[i])
                self.rxr[i] = NULL

    # --------------------------------------------------------- sockets
    def _open_sock(self, uint32_t i, uint32_t queue):
        """Create, fill and bind the socket of ring i (queue)."""
        cdef Umem um = <Umem>self.mem
        cdef nx_sock *s = &self.socks[i]
        cdef const char *stage = b""
        cdef int rc, one
        cdef uint32_t rs = self._py["ring_size"], fill = self._py["fill"]
        cdef uint16_t flags
        cdef uint32_t rxs, txs
        cdef int ifx, sfd, owner
        zc = self._py["zerocopy"]
        driver = self._py["driver"]
        if zc is None:
            zc = _zc_by_driver.get(driver, True)
        waited, pause, busy_wait = 0.0, 0.0005, self._py.get("busy_wait", 1.0)
        while True:
            memset(s, 0, sizeof(nx_sock))
            s.fd = -1
            s.id = um._new_id()
            owner = not um._socks
            rxs = rs if self.rx_on else 0
            txs = rs if self.tx_on else 0
            with nogil:
                rc = nx_sock_setup(s, owner, um.area, um.umem_len, um.frame_size,
                                   rxs, txs, fill, rs, &stage)
            if rc < 0:
                nx_sock_close(s, &um.pool)
                if rc == -_errno.EAFNOSUPPORT:
                    raise XdpUnsupported("this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS)", -rc)
                if -rc in (_errno.EPERM, _errno.EACCES):
                    raise _no_priv("AF_XDP sockets")
                if -rc == _errno.ENOMEM or -rc == _errno.ENOBUFS:
                    raise OSError(-rc, "%s: %s: %s (the UMEM of %d MB is pinned: raise "
                                  "RLIMIT_MEMLOCK or use fewer frames)" % (
                                      self.name, stage.decode(), os.strerror(-rc),
                                      um.umem_len >> 20))
                raise OSError(-rc, "%s: %s: %s" % (self.name, stage.decode(), os.strerror(-rc)))
            um._socks[s.id] = s.fd
            if self.rx_on:
                # keep frames for the slots of the rings still to come
                keep = self._py["reserve"]
                nx_fill_prime(s, &um.pool, min(fill, max(um.free_buffers - keep, 64)))
            if owner:
                flags = XDP_ZEROCOPY if zc else XDP_COPY
                if self._py["need_wakeup"]:
                    flags |= XDP_USE_NEED_WAKEUP
                ifx = self.ifindex
                with nogil:
                    rc = nx_sock_bind(s, ifx, queue, flags, -1)
            else:
                shared = next(fd for sid, fd in um._socks.items() if sid != s.id)
                ifx = self.ifindex
                sfd = shared
                with nogil:
                    rc = nx_sock_bind(s, ifx, queue, XDP_SHARED_UMEM, sfd)
            if rc < 0 and owner and zc and self._py["zerocopy"] is None and \
                    -rc in (_errno.EOPNOTSUPP, _errno.EINVAL, _errno.EPROTONOSUPPORT):
                um._socks.pop(s.id, None)
                nx_sock_close(s, &um.pool)
                _zc_by_driver[driver] = False
                zc = False
                continue
            if rc == -_errno.EBUSY and waited < busy_wait:
                # the kernel frees a closed socket's hold on its queue from
                # a workqueue, a little after close(): a queue we (or a
                # process that just exited) released may still look busy
                um._socks.pop(s.id, None)
                nx_sock_close(s, &um.pool)
                time.sleep(pause)
                waited += pause
                pause = min(pause * 2, 0.05)
                continue
            break
        if rc < 0:
            um._socks.pop(s.id, None)
            nx_sock_close(s, &um.pool)
            e = -rc
            if e == _errno.EBUSY:
                raise QueueBusy("%s: queue %d of %s is already bound to another AF_XDP "
                               "socket (another port or process)" % (self.name, queue, self.ifname))
            if e in (_errno.EPERM, _errno.EACCES):
                raise _no_priv("AF_XDP sockets")
            if e == _errno.EOPNOTSUPP and zc:
                raise XdpUnsupported("%s: %s has no AF_XDP zero-copy support (driver %r): "
                                     "open with zerocopy=False or None" % (
                                         self.name, self.ifname, driver), e)
            if e == _errno.EOPNOTSUPP or e == _errno.EINVAL and not owner:
                raise XdpUnsupported("%s: cannot bind an AF_XDP socket to queue %d of %s "
                                     "sharing this UMEM (%s)%s" % (
                                         self.name, queue, self.ifname, os.strerror(e),
                                         "; a UMEM in zero-copy mode can only be shared with "
                                         "queues that support zero copy" if um.zerocopy else ""), e)
            raise OSError(e, "%s: binding the AF_XDP socket to queue %d: %s" % (
                self.name, queue, os.strerror(e)))
        one = nx_sock_zerocopy(s)
        s.copy_mode = 0 if one == 1 else 1
        s.need_wakeup = 1 if self._py["need_wakeup"] else 0
        if owner:
            um.zerocopy = not s.copy_mode
            if zc and self._py["zerocopy"] is None:
                _zc_by_driver[driver] = not s.copy_mode
        s.queue = queue
        one = self._py["tx_budget"]
        if self.tx_on and s.copy_mode and one > 32:
            one = min(one, rs)
            setsockopt(s.fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &one, sizeof(int))
        self._py["sockfd"][queue] = s.fd

    def _close_sock(self, uint32_t i):
        cdef Umem um = <Umem>self.mem
        cdef nx_sock *s = &self.socks[i]
        cdef int tries, rc
        if s.fd < 0:
            return
        # let what was handed over leave (nothing accepted is lost): slots
        # still pending first, then frames the kernel holds
        tries = 0
        if self.tx_on and i < self.nic_tx and self.txr != NULL and self.txr[i] != NULL:
            while s.next_tx != self.txr[i].head and tries < 200:
                with nogil:
                    rc = self.c_txsync(i)
                if rc < 0:
                    self.err = 0
                    break
                if s.next_tx != self.txr[i].head:
                    select.select([], [], [], 0.001)
                tries += 1
        tries = 0
        while s.inflight and tries < 200:
            with nogil:
                nx_kick(s)
                nx_reclaim(s, &um.pool)
            if s.inflight:
                select.select([], [], [], 0.001)
            tries += 1
        um._socks.pop(s.id, None)
        self._py["sockfd"].pop(s.queue, None)
        with nogil:
            nx_sock_close(s, &um.pool)

    def _close_socks(self):
        cdef uint32_t i
        if self.socks == NULL:
            return
        for i in range(self.nsocks):
            self._close_sock(i)
        free(self.socks)
        self.socks = NULL

    def _bypass(self, uint32_t i):
        """Install the filters of ring i's queue, then its XSKMAP entry."""
        att = self._py["att"]
        q = self.socks[i].queue
        self._install_filters(q)
        att.bypass(q, self.socks[i].fd)

    def _install_filters(self, q):
        """Queue q's filter: the steer program (followed, through the chain
        map, by the queue program) or the queue program alone, or none."""
        att = self._py["att"]
        steer_fd, qprog = self._py["steer_fd"], self._py["qprog_fd"]
        if steer_fd >= 0:
            rc = nx_map_set(self._py["chain_fd"], q, qprog) if qprog >= 0 else \
                nx_map_del(self._py["chain_fd"], q)
            if rc < 0 and -rc != _errno.ENOENT:
                _err(rc, "%s: installing the program after the steer filter of queue %d"
                     % (self.name, q))
            att.set_filter(q, steer_fd)
        else:
            att.set_filter(q, qprog)

    def _unbypass(self, uint32_t i):
        att = self._py["att"]
        q = self.socks[i].queue
        att.unbypass(q)
        try:
            att.set_filter(q, -1)
        except OSError:
            pass
        if self._py.get("chain_fd", -1) >= 0:
            nx_map_del(self._py["chain_fd"], q)

    def _chain_map(self):
        """The port's CHAIN program array (created on first use)."""
        cdef int fd
        if self._py["chain_fd"] < 0:
            fd = nx_map_create(BPF_MAP_TYPE_PROG_ARRAY, xdpprog.CHAIN_NAME.encode(), 4, 4,
                               self._py["cap"])
            if fd < 0:
                _err(fd, "%s: creating the chain program array" % self.name)
            self._py["chain_fd"] = fd
            self.push_undo("close the chain program array", self._close_chain)
        return self._py["chain_fd"]

    def _close_chain(self):
        fd = self._py.get("chain_fd", -1)
        if fd >= 0:
            close(fd)
            self._py["chain_fd"] = -1

    @property
    def xsk_map_fd(self):
        """The interface's XSKMAP (queue -> AF_XDP socket): what a queue
        program redirects to (``bpf_redirect_map(xsks, rx_queue, XDP_PASS)``)."""
        self._check_open()
        if not self.rx_on:
            raise BackendError("%s has no RX ring: no XSKMAP" % self.name)
        return self._py["att"].xsk_fd

    def set_queue_program(self, int prog_fd):
        """Run this XDP program (an fd; -1 removes it) on this port's queues:
        after the steer filter when there is one, else instead of the plain
        redirect.  It sees every packet of the queue (that the steer filter
        selected) and decides: XDP_PASS, XDP_DROP, or redirect into
        ``xsk_map_fd`` (user space).  Atomic per queue; the caller keeps
        the fd open while it is installed (nm-offload's in-kernel rules:
        middlebox.kfilter)."""
        cdef uint32_t i
        self._check_open()
        if not self.rx_on:
            raise BackendError("%s: a queue program sees received packets; this port has "
                               "no RX ring" % self.name)
        self._py["qprog_fd"] = prog_fd
        for i in range(self.nsocks):
            if self.socks[i].fd >= 0:
                self._install_filters(self.socks[i].queue)

    def _unbypass_all(self):
        cdef uint32_t i
        if self._py.get("att") is None or self.socks == NULL:
            return
        for i in range(self.nsocks):
            if self.socks[i].fd >= 0:
                self._unbypass(i)

    def _release_att(self):
        att = self._py.pop("att", None)
        if att is not None:
            att.release()

    def _close_steer(self):
        fd = self._py.get("steer_fd", -1)
        if fd >= 0:
            close(fd)
            self._py["steer_fd"] = -1

    # ------------------------------------------------------------ host
    def _open_host(self, info, q):
        """The host TX ring: an AF_PACKET socket of this namespace and a
        tcx egress program that turns its packets around into IF's ingress
        (netmapy/includes/nm_inject.h)."""
        cdef const char *stage = NULL
        cdef int rc, fd
        rc = nm_inject_socket(&self.host, info.index, 8 << 20, &stage)
        if rc < 0:
            if rc in (-_errno.EPERM, -_errno.EACCES):
                raise _no_priv("opening the host ring's AF_PACKET socket")
            raise OSError(-rc, "%s: host ring: %s: %s" % (self.name, stage.decode(),
                                                          os.strerror(-rc)))
        self.push_undo("close the host injection socket and program", self._close_host)
        self.host.tx.next_tx = 0
        fd = load_program(xdpprog.inject_program(self.host.cookie), xdpprog.INJECT_NAME,
                          prog_type=xdpprog.PROG_TYPE_SCHED_CLS)
        rc = nm_inject_attach(&self.host, fd)
        if rc < 0:
            close(fd)
            if rc in (-_errno.EPERM, -_errno.EACCES):
                raise _no_priv("attaching the host ring's tc program")
            if rc == -_errno.EINVAL:
                raise XdpUnsupported(
                    "%s: host rings need tcx (Linux 6.6 or later): attaching the host "
                    "injection program to %s's egress failed with EINVAL" % (
                        self.name, info.name), _errno.EINVAL)
            raise OSError(-rc, "%s: attaching the host injection program to %s (tcx "
                               "egress): %s" % (self.name, info.name, os.strerror(-rc)))

    def _close_host(self):
        nm_inject_close(&self.host)

    # ------------------------------------------------------------ fds
    def _setup_fds(self):
        cdef uint32_t i
        if self.nsocks == 1:
            self.fd = self.socks[0].fd
        elif self.nsocks > 1:
            ein = select.epoll()
            eout = select.epoll()
            self._py["epoll"] = (ein, eout)
            for i in range(self.nsocks):
                ein.register(self.socks[i].fd, select.EPOLLIN)
                eout.register(self.socks[i].fd, select.EPOLLOUT)
            self.ep_in, self.ep_out = ein.fileno(), eout.fileno()
            self.fd = self.ep_in
            self.push_undo("close the epoll fds", self._close_epoll)
        else:
            fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
            if fd < 0:
                raise OSError(errno, "eventfd")
            self.fd = fd
            self.push_undo("close the eventfd", lambda: close(fd))

    def _close_epoll(self):
        eps = self._py.pop("epoll", None)
        self.ep_in = self.ep_out = -1
        if eps:
            for e in eps:
                e.close()

    def _refresh_fds(self):
        cdef uint32_t i
        if self.nsocks == 1 and "epoll" not in self._py:
            self.fd = self.socks[0].fd
            return
        if "epoll" not in self._py:
            ein, eout = select.epoll(), select.epoll()
            self._py["epoll"] = (ein, eout)
            self.push_undo("close the epoll fds", self._close_epoll)
        ein, eout = self._py["epoll"]
        for e, ev in ((ein, select.EPOLLIN), (eout, select.EPOLLOUT)):
            e.close()
        ein, eout = select.epoll(), select.epoll()
        for i in range(self.nsocks):
            ein.register(self.socks[i].fd, select.EPOLLIN)
            eout.register(self.socks[i].fd, select.EPOLLOUT)
        self._py["epoll"] = (ein, eout)
        self.ep_in, self.ep_out = ein.fileno(), eout.fileno()
        self.fd = self.ep_in if self.nsocks != 1 else self.socks[0].fd

    # ------------------------------------------------ backend interface
    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        cdef int rc
        if i < self.nic_tx:
            rc = nx_tx_sync(&self.socks[i], self.txr[i], self.pool)
            if rc < 0:
                return self.fail(-rc, "waking the AF_XDP socket for transmission")
            return 0
        cdef uint64_t failed = self.host.tx.failed, failed_bytes = self.host.tx.failed_bytes
        rc = nm_inject_tx(&self.host, self.txr[i])
        self.tx_failed += self.host.tx.failed - failed
        self.tx_failed_bytes += self.host.tx.failed_bytes - failed_bytes
        if rc < 0:
            return self.fail(-rc, "handing frames to the host stack")
        return 0

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        cdef timeval tv
        if nx_rx_sync(&self.socks[i], self.rxr[i], self.pool):
            self.rx_active = True
            gettimeofday(&tv, NULL)
            self.rxr[i].ts.tv_sec = tv.tv_sec
            self.rxr[i].ts.tv_usec = tv.tv_usec
        return 0

    cdef void _nap(self) noexcept nogil:
        """Interrupt moderation.  While frames flow, wait for the next
        batch on a timer (rx_coalesce_us), off the socket's wait queue: a
        sleeper on it costs the CPU that receives the frames a wakeup (and
        often an IPI) per NAPI poll.  Only when a nap brought nothing does
        the port block in poll() and let the kernel wake it."""
        cdef timespec ts
        if not self.rx_active or self.coalesce_ns <= 0:
            return
        self.rx_active = False
        ts.tv_sec = self.coalesce_ns // 1000000000
        ts.tv_nsec = self.coalesce_ns % 1000000000
        nanosleep(&ts, NULL)
        self.naps += 1

    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil:
        cdef int n = 0
        if events & POLLIN:
            self._nap()
        if self.nsocks == 1:
            fds[0].fd = self.socks[0].fd
            fds[0].events = events & (POLLIN | POLLOUT)
            fds[0].revents = 0
            return 1
        if self.nsocks > 1:
            if events & POLLIN:
                fds[n].fd = self.ep_in
                fds[n].events = POLLIN
                fds[n].revents = 0
                n += 1
            if events & POLLOUT:
                fds[n].fd = self.ep_out
                fds[n].events = POLLIN
                fds[n].revents = 0
                n += 1
            return n
        fds[0].fd = self.fd
        fds[0].events = events & (POLLIN | POLLOUT)
        fds[0].revents = 0
        return 1

    cdef uint64_t b_rx_drops(self) noexcept nogil:
        """The kernel's drops on our sockets: RX ring full, or no free
        frame in the fill ring (XDP_STATISTICS rx_ring_full + rx_dropped)."""
        cdef xdp_statistics st
        cdef uint32_t i
        cdef uint64_t n = 0
        for i in range(self.nsocks):
            if self.socks[i].fd >= 0 and nx_statistics(&self.socks[i], &st) == 0:
                n += st.rx_dropped + st.rx_ring_full
        return n

    # ------------------------------------------------------- Python API
    cdef void _move_host(self, uint32_t to) noexcept:
        """Move the host TX ring (after the NIC TX rings) to index to."""
        cdef uint32_t fr = self.nic_tx
        if not self.host_on or not self.tx_on or fr == to:
            return
        self.txr[to] = self.txr[fr]
        self.txk[to] = self.txk[fr]
        self.txr[to].ringid = to
        self.txr[fr] = NULL
        memset(&self.txk[fr], 0, sizeof(self.txk[fr]))

    def add_queue(self, uint32_t queue):
        """Take one more queue from the kernel: a new RX ring (and TX ring,
        for a port with TX rings) is appended, index ``len(port.queues)``.
        Other queues, and other ports, are not disturbed."""
        self._check_open()
        with _InNs(*self._py["ns"]):
            self._add_queue(queue)

    def _add_queue(self, uint32_t queue):
        cdef uint32_t i = self.nsocks
        cdef Memory m = self.mem
        self._check_open()
        self._end_batch()
        if queue in self.queues:
            raise ValueError("%s: queue %d is already in this port" % (self.name, queue))
        info = iface.require(self.ifname, up=False, rx_queue=queue if self.rx_on else None)
        if queue >= max(info.num_rx_queues, info.num_tx_queues):
            raise QueueOutOfRange(self.ifname, queue, max(info.num_rx_queues,
                                                          info.num_tx_queues), "TX")
        if i >= self._py["cap"]:
            raise BackendError("%s: the port already has %d rings, as many as %s had "
                               "queues when it was opened" % (self.name, i, self.ifname))
        per_q = (self._py["nrs"] + 64 if self.rx_on else 0) + (self._py["nts"] if self.tx_on else 0)
        if self.mem.free_buffers < per_q:
            raise NetmapyError(
                "%s: its UMEM has %d free frames, a queue needs at least %d: open the port "
                "with umem_frames=N to leave room for queues added later" % (
                    self.name, self.mem.free_buffers, per_q))
        self._move_host(i + 1)
        try:
            self._ring_for(i)
            self._open_sock(i, queue)
        except BaseException:
            if self.rx_on and self.rxr[i] != NULL:
                m.free_ring(self.rxr[i])
                self.rxr[i] = NULL
            if self.tx_on and self.txr[i] != NULL:
                m.free_ring(self.txr[i])
                self.txr[i] = NULL
            self.nic_tx = i + 1 if self.tx_on else 0
            self._move_host(i)
            self._set_counts(i)
            raise
        self._set_counts(i + 1)
        self.queues = self.queues + (queue,)
        self._rings = None
        self.link_nifp()
        self._refresh_fds()
        if self.rx_on:
            try:
                self._bypass(i)
            except BaseException:
                self.remove_queue(queue)
                raise

    def remove_queue(self, uint32_t queue):
        """Give a queue back to the kernel: from now on its packets go to
        the host stack again; packets still in its ring are dropped.  The
        rings after it move down one index."""
        cdef uint32_t i, j, n = self.nsocks
        cdef Memory m = self.mem
        self._check_open()
        self._end_batch()
        if queue not in self.queues:
            raise ValueError("%s: queue %d is not in this port (queues %s)"
                             % (self.name, queue, list(self.queues)))
        i = self.queues.index(queue)
        if (self.rx_on and self.rxk[i].nexports) or (self.tx_on and self.txk[i].nexports):
            raise BufferError("%s: a slot of queue %d's ring has a live memoryview"
                              % (self.name, queue))
        if self.rx_on and self._py.get("att") is not None:
            self._unbypass(i)
        self._close_sock(i)
        if self.rx_on:
            m.free_ring(self.rxr[i])
            free(self.rxk[i].exports)
            for j in range(i, n - 1):
                self.rxr[j] = self.rxr[j + 1]
                self.rxk[j] = self.rxk[j + 1]
                self.rxr[j].ringid = j
            self.rxr[n - 1] = NULL
            memset(&self.rxk[n - 1], 0, sizeof(self.rxk[0]))
        if self.tx_on:
            m.free_ring(self.txr[i])
            free(self.txk[i].exports)
            for j in range(i, n - 1):
                self.txr[j] = self.txr[j + 1]
                self.txk[j] = self.txk[j + 1]
                self.txr[j].ringid = j
            self.txr[n - 1] = NULL
            memset(&self.txk[n - 1], 0, sizeof(self.txk[0]))
            self.nic_tx = n          # the host ring is still at n
            self._move_host(n - 1)
        for j in range(i, n - 1):
            self.socks[j] = self.socks[j + 1]
        memset(&self.socks[n - 1], 0, sizeof(nx_sock))
        self.socks[n - 1].fd = -1
        self._set_counts(n - 1)
        self.queues = tuple(x for x in self.queues if x != queue)
        self._rings = None
        self.rr = 0
        self.link_nifp()
        self._refresh_fds()

    def set_steer(self, steer, netmask=None):
        """Replace the flow filter of this port's queues (None: every packet
        of the queues leaves the kernel).  Atomic per queue.  netmask: for
        expressions that need one (default: the interface's)."""
        cdef uint32_t i
        self._check_open()
        if not self.rx_on:
            raise BackendError("%s: steer selects received packets; this port has no RX ring"
                               % self.name)
        att = self._py["att"]
        new_fd = -1
        if steer is not None:
            if netmask is None and isinstance(steer, str):
                with _InNs(*self._py["ns"]):
                    netmask = iface.ipv4_netmask(self.ifname)
            new_fd = load_program(_steer_asm(steer, netmask, chain=True),
                                  xdpprog.STEER_NAME, {xdpprog.XSKMAP_NAME: att.xsk_fd,
                                                       xdpprog.CHAIN_NAME: self._chain_map()})
        old = self._py.get("steer_fd", -1)
        self._py["steer_fd"] = new_fd
        self._py["steer"] = steer
        for i in range(self.nsocks):
            self._install_filters(self.socks[i].queue)
        if old >= 0:
            close(old)
        if new_fd >= 0 and old < 0:
            self.push_undo("unload the steer program", self._close_steer)

    @property
    def steer(self):
        return self._py.get("steer")

    def stats(self):
        """Counters, per queue and totals: packets/bytes through the rings,
        the kernel's AF_XDP statistics (rx_dropped: the RX ring was full;
        rx_fill_ring_empty: no free frame), host-ring injections."""
        cdef xdp_statistics st
        cdef uint32_t i
        cdef nx_sock *s
        self._check_open()
        per = []
        tot = {}
        for i in range(self.nsocks):
            s = &self.socks[i]
            d = dict(queue=s.queue, rx_packets=s.rx_packets, rx_bytes=s.rx_bytes,
                     tx_packets=s.tx_packets, tx_bytes=s.tx_bytes,
                     tx_dropped_oversize=s.tx_oversize, tx_inflight=s.inflight,
                     tx_kicks=s.tx_kicks, rx_realigned=s.rx_realigned,
                     fill_wakeups=s.fill_wakeups)
            if nx_statistics(s, &st) == 0:
                d.update(rx_dropped=st.rx_dropped, rx_invalid_descs=st.rx_invalid_descs,
                         tx_invalid_descs=st.tx_invalid_descs, rx_ring_full=st.rx_ring_full,
                         rx_fill_ring_empty=st.rx_fill_ring_empty_descs,
                         tx_ring_empty=st.tx_ring_empty_descs)
            per.append(d)
            for k, v in d.items():
                if k != "queue":
                    tot[k] = tot.get(k, 0) + v
        tot["rx_naps"] = self.naps
        if self.host_on:
            tot.update(host_tx_packets=self.host.tx.packets, host_tx_bytes=self.host.tx.bytes,
                       host_tx_failed=self.host.tx.failed,
                       host_tx_failed_bytes=self.host.tx.failed_bytes,
                       host_tx_bad=self.host.tx.bad, host_tx_waits=self.host.tx.again)
        tot["queues"] = per
        return tot

    def _backend_info(self):
        d = dict(ifname=self.ifname, ifindex=self.ifindex, queues=list(self.queues),
                 zerocopy=self.zerocopy, host_ring=bool(self.host_on),
                 umem=repr(self.mem), steer=self._py.get("steer"))
        att = self._py.get("att")
        if att is not None:
            d.update(xdp_prog_id=att.prog_id, xdp_mode=att.mode,
                     xdp_attach="link" if att.link_fd >= 0 else "netlink",
                     xdp_joined=att.joined)
        return d

    def close(self):
        Port.close(self)
        _open_ports.discard(self)

    def __dealloc__(self):
        if self.socks != NULL:
            free(self.socks)
            self.socks = NULL


def open_port(name, **kw):
    return open_or_undo(XdpPort(name), kw)


# ------------------------------------------------------- forwarding

# stop() asks a running forward_pair() (every loop of the process) to
# return, signal-safe: the process-wide stop request of netmapy.stop
from netmapy.stop import request as stop


cdef uint64_t _move_all(Port src, Port dst, uint32_t batch, bint swap, int *err) noexcept nogil:
    """RX rings of src -> NIC TX rings of dst, one txsync per batch."""
    cdef uint32_t i, t, n
    cdef uint64_t moved = 0
    for i in range(src.nic_rx):
        t = i % dst.nic_tx
        while nm_ring_space(src.rxr[i]):
            n = ring_move(src.rxr[i], dst.txr[t], batch, swap)
            if n == 0:
                break
            moved += n
            if dst.c_txsync(t) < 0:
                err[0] = 2
                return moved
    return moved


def forward_pair(Port a, Port b, long long count=0, double seconds=0,
                 uint32_t batch=256, int wait_ms=100):
    """Forward both ways between a and b in one thread, without the GIL:
    a's RX rings to b's TX rings and back, blocking in poll() on both ports
    when there is nothing to do.  Buffers are swapped when the ports share
    memory (xdp ports with one UMEM), copied otherwise; packets the other
    side has no room for wait in their RX ring.  Ends after count packets,
    seconds, or a stop request (netmapy.stop).  Returns dict(a_to_b, b_to_a,
    seconds, swapped)."""
    cdef bint swap = a.mem is b.mem
    cdef long long ab = 0, ba = 0
    cdef long long dl = monotonic_ms() + <long long>(seconds * 1000) if seconds > 0 else 0
    cdef int rc = 0, err = 0, ev
    cdef double t0 = time.perf_counter()
    if a.nic_rx == 0 or b.nic_tx == 0 or b.nic_rx == 0 or a.nic_tx == 0:
        raise ValueError("forward_pair() needs RX and TX rings on both ports")
    with nogil:
        while not stop_requested():
            if count and ab + ba >= count:
                break
            if dl and monotonic_ms() >= dl:
                break
            rc = poll_pair(a, POLLIN, b, POLLIN, wait_ms)
            if rc < 0:
                err = -rc
                if pair_interrupted(a, b, err) >= 0:
                    err = 0
                    continue
                break
            ab += _move_all(a, b, batch, swap, &err)
            if err:
                break
            ba += _move_all(b, a, batch, swap, &err)
            if err:
                err = 1 if err == 2 else 2
                break
    if err == 1:
        a.raise_error()
    elif err == 2:
        b.raise_error()
    return dict(a_to_b=ab, b_to_a=ba, seconds=time.perf_counter() - t0,
                swapped=bool(swap))


def test_run(int prog_fd, frame):
    """Run an XDP program once on frame (BPF_PROG_RUN, no side effects);
    returns its XDP_* verdict."""
    cdef bytes data = bytes(frame)
    cdef uint32_t ret = 0
    rc = nx_test_run(prog_fd, <const char *>data, len(data), &ret)
    if rc < 0:
        _err(rc, "BPF_PROG_RUN")
    return ret


def test_run_timed(int prog_fd, frame, uint32_t repeat):
    """Run an XDP program `repeat` times on frame in the kernel
    (BPF_PROG_RUN with repeat, no side effects): (its XDP_* verdict, the
    kernel's mean nanoseconds per run).  For benchmarks."""
    cdef bytes data = bytes(frame)
    cdef uint32_t ret = 0, ns = 0
    rc = nx_test_run_repeat(prog_fd, <const char *>data, len(data), repeat, &ret, &ns)
    if rc < 0:
        _err(rc, "BPF_PROG_RUN")
    return ret, ns


def attach_program(ifname, asm, str name="netmapy_aux", mode="native"):
    """Load an xdpprog.Asm and attach it to ifname through netlink (as
    `ip link set dev IF xdp obj ...` would): for tests and benchmarks (an
    XDP_DROP baseline, or "someone else's program").  Returns its id."""
    cdef int fd, rc
    info = iface.require(ifname, up=False)
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    fd = load_program(asm, name)
    try:
        rc = nx_xdp_attach(info.index, fd, flags | XDP_FLAGS_UPDATE_IF_NOEXIST, -1)
        if rc < 0:
            _err(rc, "%s: attaching XDP program %s" % (ifname, name))
        return _prog_info(fd)["id"]
    finally:
        close(fd)


def detach_program(ifname, mode="native"):
    """Detach whatever XDP program is attached to ifname through netlink."""
    info = iface.require(ifname, up=False)
    flags = XDP_FLAGS_DRV_MODE if mode == "native" else XDP_FLAGS_SKB_MODE
    rc = nx_xdp_attach(info.index, -1, flags, -1)
    if rc < 0:
        _err(rc, "%s: detaching the XDP program" % ifname)


def xdp_program(ifname):
    """(id, name, mode) of the XDP program on ifname, or None."""
    cdef int fd
    info = iface.require(ifname, up=False)
    q = _xdp_query(info.index)
    pid = q["drv"] or q["skb"] or q["hw"] or q["prog_id"]
    if not pid:
        return None
    fd = bpf_prog_get_fd_by_id(pid)
    if fd < 0:
        return (pid, "?", XDP_ATTACHED_MODE.get(q["mode"], "?"))
    try:
        return (pid, _prog_info(fd)["name"],
                "native" if pid == q["drv"] else "generic" if pid == q["skb"] else "offload")
    finally:
        close(fd)


# ------------------------------------------------------------ cleanup

def cleanup_all():
    """Close every open xdp port of this process (their XDP programs,
    maps and sockets go with them).  Runs at interpreter exit."""
    for p in list(_open_ports):
        try:
            p.close()
        except Exception as e:          # at exit: report, go on
            log.warning("netmapy: closing %s: %s", p.name, e)


_hooks_installed = False


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def install_signal_cleanup(signals=(signal.SIGTERM, signal.SIGHUP)):
    """Make these signals raise SystemExit in the main thread (so ``with``
    blocks, ``finally`` clauses and atexit run and every port closes) when
    their handler is still the default one.  Called on the first xdp open;
    a program that installs its own handlers keeps them (and should close
    its ports there, or call cleanup_all())."""
    if threading.current_thread() is not threading.main_thread():
        return False
    done = False
    for s in signals:
        if signal.getsignal(s) is signal.SIG_DFL:
            signal.signal(s, _on_sigterm)
            done = True
    return done


def _install_exit_hooks():
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(cleanup_all)
    if os.environ.get("NETMAPY_NO_SIGNAL_HANDLERS") != "1":
        install_signal_cleanup()
