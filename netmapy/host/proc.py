"""Processes as the kernel names them: a pid plus its start time (so a
reused pid is not taken for the process that died), and the boot id (so a
file written before a reboot is not taken for a live owner's).

Used by the journals of NIC changes, the middlebox's counters and state
files, and the pipeline's workers: every "is the owner of this file still
alive?" in netmapy asks here.
"""

import os

__all__ = ["start_time", "boot_id", "alive", "identity"]


def start_time(pid):
    """Start time of ``pid`` in clock ticks since boot (/proc/PID/stat field
    22), or None if there is no such process (or it is a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def boot_id():
    """This boot's id (/proc/sys/kernel/random/boot_id), or ''."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def identity(pid=None):
    """{'pid', 'start_time', 'boot_id'} of ``pid`` (default: this process)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start_time": start_time(pid), "boot_id": boot_id()}


def alive(ident):
    """Is the process described by ``ident`` (as identity() gives it) still
    running?  A different boot, a dead pid or a reused pid say no."""
    if not ident:
        return False
    if ident.get("boot_id") and ident.get("boot_id") != boot_id():
        return False
    st = start_time(int(ident.get("pid", 0)))
    return st is not None and st == ident.get("start_time")
