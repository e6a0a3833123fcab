# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The xdp backend's bpf() calls: loading programs (with the verifier's
word when it refuses one), asking what an interface runs, and the
programs' test runs; the backend's errors.  The programs themselves are
built by netmapy.backends.xdp.prog; attaching them per interface is
netmapy.backends.xdp.attach."""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy
from netmapy.includes.system cimport errno, close
from netmapy.includes.xdp cimport *

import errno as _errno
import logging
import os

from netmapy.host import cbpf, iface
from netmapy.backends.xdp import prog as xdpprog
from netmapy.backends.xdp.prog import SteerError, compile_filter
from netmapy.errors import BackendError, InterfaceError, NoPrivilege, PortBusy

log = logging.getLogger("netmapy")

__all__ = ["XdpUnsupported", "XdpProgramInUse", "load_program", "test_run", "test_run_timed",
           "attach_program", "detach_program", "xdp_program"]

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
