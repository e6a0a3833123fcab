"""The netmapy exception hierarchy.

Every failure a user can cause is one of these (or a plain ``OSError`` with
``errno`` set, for a failed system call).  Each message names the cause and,
where there is one, the fix.
"""

import errno as _errno

__all__ = [
    "NetmapyError", "PortNameError", "InterfaceNameError", "BackendError", "BackendUnavailable",
    "InterfaceError", "InterfaceNotFound", "InterfaceDown", "QueueOutOfRange",
    "NoPrivilege", "PortBusy", "QueueBusy", "MemoryMismatch", "CaptureFileError",
    "RingStateError",
]


class NetmapyError(Exception):
    """Base class of every error netmapy raises on purpose."""


class PortNameError(NetmapyError, ValueError):
    """A port name that does not follow the grammar.

    Attributes: ``name`` (the whole name), ``pos`` (0-based index of the
    offending character, ``len(name)`` for a premature end), ``found`` (that
    character, or ``''`` at the end), ``expected`` (what the grammar wanted).
    """

    what = "port name"

    def __init__(self, name, pos, expected, found=None):
        self.name = name
        self.pos = pos
        self.expected = expected
        if found is None:
            found = name[pos] if 0 <= pos < len(name) else ""
        self.found = found
        what = repr(found) if found else "the end of the name"
        msg = "bad %s %r: at position %d found %s, expected %s" % (
            self.what, name, pos, what, expected)
        super().__init__(msg)

    def caret(self):
        """Two lines: the name and a caret under the offending character."""
        return "%s\n%s^" % (self.name, " " * self.pos)


class InterfaceNameError(PortNameError):
    """A name Linux would not accept for a network interface (empty, more
    than 15 bytes, '.', '..', or with '/', ':' or whitespace in it)."""

    what = "interface name"


class BackendError(NetmapyError):
    """A backend cannot do what was asked."""


class BackendUnavailable(BackendError):
    """The backend named (or needed) is not available on this machine."""


class InterfaceError(NetmapyError, OSError):
    """A problem with a network interface; carries an errno."""

    def __init__(self, err, message):
        OSError.__init__(self, err, message)


class InterfaceNotFound(InterfaceError):
    def __init__(self, ifname, where="this network namespace"):
        self.ifname = ifname
        super().__init__(
            _errno.ENODEV,
            "no network interface %r in %s (list them with: ip -br link)"
            % (ifname, where))


class InterfaceDown(InterfaceError):
    def __init__(self, ifname):
        self.ifname = ifname
        super().__init__(
            _errno.ENETDOWN,
            "interface %r is down: bring it up with `ip link set dev %s up`"
            % (ifname, ifname))


class QueueOutOfRange(InterfaceError):
    def __init__(self, ifname, queue, nqueues, kind="RX"):
        self.ifname, self.queue, self.nqueues = ifname, queue, nqueues
        super().__init__(
            _errno.EINVAL,
            "interface %r has %d %s queue%s (0..%d), there is no queue %d "
            "(see `ethtool -l %s`)" % (ifname, nqueues, kind,
                                       "" if nqueues == 1 else "s",
                                       nqueues - 1, queue, ifname))


class NoPrivilege(NetmapyError, PermissionError):
    def __init__(self, what, need="CAP_NET_RAW"):
        PermissionError.__init__(
            self, _errno.EPERM,
            "%s needs %s: run as root (sudo) or grant the capability "
            "(setcap cap_net_raw,cap_net_admin+ep on the Python binary)"
            % (what, need))


class PortBusy(NetmapyError, OSError):
    def __init__(self, message):
        OSError.__init__(self, _errno.EBUSY, message)


class QueueBusy(PortBusy):
    """An interface queue bound to another socket -- possibly one that has
    closed but that the kernel has not released yet (AF_XDP frees a
    socket's hold on its queue asynchronously), so waiting may help."""


class MemoryMismatch(NetmapyError, ValueError):
    """A zero-copy buffer swap between ports that do not share memory."""


class CaptureFileError(NetmapyError, OSError):
    """A capture file that cannot be read or written."""

    def __init__(self, path, message, err=_errno.EINVAL):
        self.path = path
        OSError.__init__(self, err, "%s: %s" % (path, message))


class RingStateError(NetmapyError, ValueError):
    """head/cur set outside the user-owned part of a ring."""
