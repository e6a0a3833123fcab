"""Enter Linux network namespaces from Python (stdlib + ctypes only).

Python 3.11 has no ``os.setns`` (it arrived in 3.12), so this module calls
libc's ``setns(2)`` through ctypes.

A network namespace belongs to a *thread*, not to a process: ``netns(name)``
moves only the calling thread and always moves it back.  Everything created
while inside keeps the namespace it was created in, so the usual pattern is::

    with netns("sink"):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("k0", 0))          # s lives in "sink" for good

Threads and child processes started while inside inherit the namespace (a
new thread starts in the namespace of the thread that created it; threads
that already exist are not affected).  ``/sys/class/net`` does *not*
follow (sysfs shows the namespace it was mounted in): use ``ip netns exec``
for tools that read /sys.
"""

import contextlib
import ctypes
import ctypes.util
import errno
import os

from ..errors import InterfaceError, NoPrivilege

__all__ = [
    "CLONE_NEWNET", "NETNS_RUN_DIR", "setns", "netns", "netns_path",
    "netns_exists", "netns_id", "current_netns_id", "current_netns_fd", "list_netns",
    "InNetnsFd",
]

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/var/run/netns"
_SELF_NET = "/proc/thread-self/ns/net"

_libc = None


def _get_libc():
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c") or "libc.so.6"
        lib = ctypes.CDLL(name, use_errno=True)
        lib.setns.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.setns.restype = ctypes.c_int
        _libc = lib
    return _libc


def setns(fd_or_path, nstype=CLONE_NEWNET):
    """Move the calling thread into the namespace ``fd_or_path`` refers to.

    ``fd_or_path`` is an open file descriptor (int, or an object with
    ``fileno()``) or a path such as ``/var/run/netns/NAME`` or
    ``/proc/PID/ns/net``.  ``nstype`` is checked by the kernel (0 = any).
    Raises ``OSError`` with the errno of the failed call.
    """
    if isinstance(fd_or_path, (str, bytes, os.PathLike)):
        fd = os.open(fd_or_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns_fd(fd, nstype)
        finally:
            os.close(fd)
        return
    if hasattr(fd_or_path, "fileno"):
        fd_or_path = fd_or_path.fileno()
    _setns_fd(int(fd_or_path), nstype)


def _setns_fd(fd, nstype):
    if _get_libc().setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "setns: %s" % os.strerror(err))


def netns_path(name):
    """The file ``ip netns add NAME`` creates; absolute paths pass through."""
    name = os.fspath(name)
    if name.startswith("/"):
        return name
    if not name or "/" in name or name in (".", ".."):
        raise InterfaceError(
            errno.EINVAL, "bad network namespace name %r" % (name,))
    return os.path.join(NETNS_RUN_DIR, name)


def netns_exists(name):
    return os.path.exists(netns_path(name))


def list_netns():
    """Names in /var/run/netns (what ``ip netns list`` shows), sorted."""
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


def netns_id(name):
    """Inode of namespace ``name`` (equal to ``current_netns_id()`` inside)."""
    return os.stat(netns_path(name)).st_ino


def current_netns_id():
    """Inode of the calling thread's network namespace."""
    return os.stat(_SELF_NET).st_ino


def current_netns_fd():
    """A new fd (O_CLOEXEC) of the calling thread's network namespace, for
    InNetnsFd or setns() later; the caller closes it."""
    return os.open(_SELF_NET, os.O_RDONLY | os.O_CLOEXEC)


def _no_such(name):
    return InterfaceError(
        errno.ENOENT,
        "no network namespace %r (list them with: ip netns list)" % (name,))


@contextlib.contextmanager
def netns(name):
    """Run the ``with`` body with the calling thread in namespace ``name``.

    ``name`` is a name from ``ip netns list`` (or an absolute path to a
    namespace file); ``None`` does nothing.  On exit, normal or by exception,
    the thread returns to the namespace it was in.  Yields ``name``.

    Raises ``InterfaceError`` (ENOENT) for a namespace that does not exist
    and ``NoPrivilege`` without CAP_SYS_ADMIN.
    """
    if name is None:
        yield None
        return
    path = netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _no_such(name) from None
    except PermissionError:
        raise NoPrivilege("entering a network namespace",
                          "CAP_SYS_ADMIN") from None
    try:
        orig = os.open(_SELF_NET, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns_fd(target, CLONE_NEWNET)
            except OSError as e:
                if e.errno == errno.EPERM:
                    raise NoPrivilege("entering a network namespace",
                                      "CAP_SYS_ADMIN") from None
                if e.errno == errno.EINVAL:
                    raise InterfaceError(
                        errno.EINVAL,
                        "%s is not a network namespace" % (path,)) from None
                raise
            try:
                yield name
            finally:
                # Going back to where we were cannot fail for lack of
                # privilege (we just entered one); if it fails anyway the
                # thread would be stranded, so that error wins.
                _setns_fd(orig, CLONE_NEWNET)
        finally:
            os.close(orig)
    finally:
        os.close(target)


class InNetnsFd:
    """Run a block in the network namespace of an open namespace fd whose
    inode is ``ino`` (for code that must act where a resource was made:
    closing it may run from another namespace than opening it did).  Does
    nothing when the calling thread is there already, or ``fd`` < 0."""

    def __init__(self, fd, ino):
        self.fd, self.ino, self.back = fd, ino, -1

    def __enter__(self):
        if self.fd >= 0 and current_netns_id() != self.ino:
            self.back = current_netns_fd()
            setns(self.fd)
        return self

    def __exit__(self, *exc):
        if self.back >= 0:
            try:
                setns(self.back)
            finally:
                os.close(self.back)
                self.back = -1
        return False
