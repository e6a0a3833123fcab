"""Where netmapy keeps its run-time files: one directory, one variable.

    $NETMAPY_RUNDIR            if set (tests point it at a private directory)
    /dev/shm/netmapy-UID       otherwise (memory: pipe rings live in these files)

Everything run-time lives under it, one sub-directory per concern, each
0700 and owned by the user:

    pipes/   pipe domains and their doorbells      (netmapy.backends.pipe)
    xdp/     per-interface locks of the XDP program (netmapy.backends.xdp)
    stats/   the middlebox's shared counters        (middlebox.stats)
    locks/   one lock per interface a middlebox owns (middlebox.supervisor)
    nic/     journals of NIC changes, for restore   (middlebox.nic)
    ctl/     a running service's state: its rules, its last reload (middlebox.service)

Everything in it is gone after a reboot (tmpfs), which is right: pipes,
locks and counters die with their processes, and NIC settings the journals
would undo are reset by the reboot too.
"""

import os
import stat

from ..errors import NetmapyError

__all__ = ["ENV", "base", "rundir", "SUBDIRS"]

#: The one environment variable.
ENV = "NETMAPY_RUNDIR"
SUBDIRS = ("pipes", "xdp", "stats", "locks", "nic", "ctl")


def base():
    """The run directory's path (not created)."""
    return os.environ.get(ENV) or "/dev/shm/netmapy-%d" % os.geteuid()


def _ensure(d):
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
    except PermissionError:
        raise NetmapyError("cannot create the run directory %s (permission denied): "
                           "set %s to a directory of yours" % (d, ENV)) from None
    st = os.lstat(d)
    if not stat.S_ISDIR(st.st_mode):
        raise NetmapyError("run directory %s is not a directory: remove it or set %s"
                           % (d, ENV))
    if st.st_uid != os.geteuid():
        raise NetmapyError("run directory %s belongs to uid %d, not to uid %d: remove "
                           "it or set %s" % (d, st.st_uid, os.geteuid(), ENV))
    if st.st_mode & 0o077:
        os.chmod(d, 0o700)
    return d


def rundir(sub=None):
    """The run directory (``sub``: one of SUBDIRS), created 0700 if needed.

    Raises NetmapyError if it cannot be created or belongs to another user.
    """
    top = _ensure(base())
    if sub is None:
        return top
    if sub not in SUBDIRS:
        raise ValueError("unknown run sub-directory %r (one of %s)" % (sub, ", ".join(SUBDIRS)))
    return _ensure(os.path.join(top, sub))
