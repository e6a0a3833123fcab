# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The xdp backend's program on one interface: the dispatcher, its maps and
its attachment (a bpf_link, or netlink), shared by every port of every
netmapy process on that interface, under a per-interface lock in the run
directory (``xdp/``: netmapy.host.rundir) -- see ``_Attachment``."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy
from netmapy.includes.system cimport errno, close
from netmapy.includes.xdp cimport *

import errno as _errno
import fcntl
import logging
import os
import threading

from netmapy.host.netns import (InNetnsFd as _InNs, current_netns_id as _cur_ns_ino,
                                current_netns_fd as _cur_ns_fd)
from netmapy.backends.xdp import prog as xdpprog
from netmapy.backends.xdp.bpf import (EOPNOTSUPP, XDP_ATTACHED_MODE, XdpUnsupported,
                                      XdpProgramInUse, _no_priv, _err, _close_nogil,
                                      load_program, _xdp_query, _prog_info, _map_info,
                                      _find_xdp_link)
from netmapy.errors import QueueOutOfRange

log = logging.getLogger("netmapy")

__all__ = ["attachments"]

# ------------------------------------------------- per-interface program

def _lock_dir():
    """The xdp/ sub-directory of netmapy's run directory (netmapy.host.rundir)."""
    from netmapy.host import rundir as _rundir
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
                ns_fd = _cur_ns_fd()
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
