"""One middlebox per interface: an exclusive flock per (network namespace,
interface) in locks/ of the run directory (netmapy.host.rundir), released
by the kernel when the holder dies, so a SIGKILLed supervisor never blocks a
restart; ``remove_stale_locks`` removes the files dead runs left."""

import fcntl
import os
import sys

from netmapy.errors import NetmapyError

__all__ = ["AlreadyRunning", "InterfaceLock", "lockdir", "remove_stale_locks"]


class AlreadyRunning(NetmapyError):
    pass


def lockdir():
    """Where the interface locks live: locks/ in netmapy's run directory."""
    from netmapy.host import rundir as _rundir
    return _rundir.rundir("locks")


class InterfaceLock:
    """An exclusive flock per (namespace, interface); released by the kernel
    when the holder dies, so a SIGKILLed supervisor never blocks a restart."""

    def __init__(self, prog, netns, ifname):
        self.path = os.path.join(lockdir(), "%s.%s.lock" % (netns or "-", ifname))
        self.prog, self.netns, self.ifname = prog, netns, ifname
        self.fd = None

    def acquire(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                try:
                    holder = os.read(fd, 200).decode(errors="replace").strip()
                finally:
                    os.close(fd)
                where = self.ifname + (" in namespace %s" % self.netns if self.netns else "")
                raise AlreadyRunning("another middlebox is already running on %s (%s); stop "
                                     "it first" % (where, holder or "pid unknown")) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)            # unlinked by its last holder meanwhile: the lock is a new file
        os.ftruncate(fd, 0)
        os.write(fd, ("%s pid %d" % (self.prog, os.getpid())).encode())
        self.fd = fd

    def release(self):
        if self.fd is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            os.close(self.fd)
            self.fd = None


def remove_stale_locks(prog, out=sys.stderr):
    """Remove the lock files of dead runs of `prog` (nobody holds their
    lock: the kernel released it when the holder died); returns their
    paths.  A live holder's lock, or another program's, is left alone."""
    d = lockdir()
    gone = []
    for f in os.listdir(d):
        if not f.endswith(".lock"):
            continue
        path = os.path.join(d, f)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                            # held: a live run
            holder = os.read(fd, 200).decode(errors="replace").split()
            if holder[:2] != [prog, "pid"]:
                continue
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue
                os.unlink(path)                     # under the lock: see acquire()
            except FileNotFoundError:
                continue
            gone.append(path)
            print("%s: removed the lock file of a dead run (%s): %s" % (
                prog, " ".join(holder), path), file=out)
        finally:
            os.close(fd)
    return gone
