"""The journal of NIC changes: the undo log of one interface.

A JSON file in ``nic/`` of netmapy's run directory (``netmapy.host.rundir``)
with the owner's identity (pid, start time, boot id: ``netmapy.host.proc``)
and one undo record per change, written (fsync, atomic rename) *before* the
change is applied.  ``Journal.repair(ifname)`` undoes what a dead owner left
behind (through a ``Nic``); a new ``Nic`` on the interface does it on its own
at start.
"""

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import time

from netmapy.errors import InterfaceNotFound, NetmapyError, NoPrivilege
from netmapy.host import proc as _proc, rundir as _rundir

from .errors import NicError, NicBusy

__all__ = ["Journal", "journal_dir", "journal_path"]

log = logging.getLogger("netmapy.nic")



def journal_dir():
    """nic/ in netmapy's run directory (netmapy.host.rundir; not created here)."""
    return os.path.join(_rundir.base(), "nic")


def _ns_key(netns):
    if netns is None:
        return "default"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", str(netns).strip("/")) or "ns"


def journal_path(ifname, netns=None, persistent=False, directory=None):
    """Where the journal of ``ifname`` (in ``netns``) lives: the runtime one
    (a Nic's, undone when its owner dies) or, ``persistent=True``, the one of
    the netmapy-nic command line (undone only by ``netmapy-nic restore``)."""
    return os.path.join(directory or journal_dir(), "nic-%s-%s%s.json" % (
        _ns_key(netns), ifname, ".cli" if persistent else ""))


_owner_alive = _proc.alive


# Journals claimed by live objects of this process: path -> Journal.
_CLAIMED = {}


def _owner_active(owner, path):
    """Is the journal at ``path`` held by a live owner?  Our own process
    counts only while one of its Journal objects holds the journal."""
    if not _owner_alive(owner):
        return False
    if int(owner.get("pid", 0)) == os.getpid():
        return os.path.abspath(path) in _CLAIMED
    return True


def _me():
    me = _proc.identity()
    me["argv"] = " ".join(sys.argv)[:200]
    return me


def _describe_owner(owner):
    return "pid %s (%s)" % (owner.get("pid"), owner.get("argv") or "?")


class Journal:
    """The undo log of one interface: a JSON file (mode 0600, in a 0700
    directory) rewritten atomically and fsync'd before every change::

        {"version": 1, "owner": {"pid", "start_time", "boot_id", "argv"},
         "ifname", "netns", "ifindex", "netns_ino", "persistent",
         "records": [{"op": ..., "do": CMD, "undo": CMD, ...}, ...]}

    A Nic creates and uses one on its own; pass ``Journal(path)`` to choose
    the file.  ``Journal.repair(ifname)`` undoes what a dead owner left.
    """

    VERSION = 1

    def __init__(self, path, persistent=False):
        self.path = os.fspath(path)
        self.persistent = persistent
        self.records = []
        self.meta = {}
        self._claimed = False

    @classmethod
    def for_interface(cls, ifname, netns=None, persistent=False, directory=None):
        return cls(journal_path(ifname, netns, persistent, directory), persistent)

    # -- file handling -------------------------------------------------
    def _ensure_dir(self):
        d = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(d, mode=0o700)
            os.chmod(d, 0o700)
        except FileExistsError:
            pass
        except PermissionError:
            raise NoPrivilege("writing the NIC journal in %s" % d, "root") from None
        st = os.lstat(d)
        if st.st_uid != os.geteuid() and st.st_uid != 0:
            raise NicError("journal directory %s belongs to uid %d, not to us: "
                           "refusing to use it" % (d, st.st_uid))
        return d

    @contextlib.contextmanager
    def _locked(self):
        """Serialize claim/repair of journals between processes."""
        d = self._ensure_dir()
        fd = os.open(os.path.join(d, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def load(path):
        """The journal file's content (a dict), or None if there is none."""
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except PermissionError:
            raise NoPrivilege("reading the NIC journal %s" % path, "root") from None
        except ValueError as e:
            raise NicError("NIC journal %s is corrupt (%s): inspect it, undo by "
                           "hand and delete it" % (path, e)) from None
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise NicError("NIC journal %s is not a netmapy journal" % path)
        return data

    def _write(self):
        d = self._ensure_dir()
        data = dict(self.meta)
        data.update(version=self.VERSION, persistent=self.persistent,
                    owner=_me(), records=self.records, updated=time.time())
        blob = json.dumps(data, indent=1, sort_keys=True).encode()
        tmp = "%s.tmp.%d" % (self.path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(blob)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _delete(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    # -- ownership -----------------------------------------------------
    def claim(self, ifname, netns, ifindex, netns_ino):
        """Take the journal for this process: repair it if a dead owner left
        one (runtime journals), adopt its records (persistent ones), refuse
        if a live process owns it.  Returns what a repair undid."""
        if self._claimed:
            return []
        repaired = []
        with self._locked():
            data = self.load(self.path)
            if data is not None:
                owner = data.get("owner") or {}
                if _owner_active(owner, self.path):
                    if owner.get("pid") == os.getpid():
                        raise NicBusy("%s%s is already controlled by another Nic "
                                      "of this process (journal %s): restore() "
                                      "it first" % (ifname, _in_ns(netns), self.path))
                    raise NicBusy(
                        "%s%s is controlled by another running netmapy instance, "
                        "%s (journal %s): stop it first, or pass journal=False "
                        "for a read-only Nic" % (ifname, _in_ns(netns),
                                                 _describe_owner(owner), self.path))
                if self.persistent and data.get("ifindex") == ifindex and \
                        data.get("netns_ino") == netns_ino:
                    self.records = list(data["records"])
                else:
                    repaired = self._repair_locked(data)
            self.meta = {"ifname": ifname, "netns": netns, "ifindex": ifindex,
                         "netns_ino": netns_ino}
            self._write()
            self._claimed = True
            _CLAIMED[os.path.abspath(self.path)] = self
        return repaired

    def add(self, rec):
        self.records.append(rec)
        self._write()

    def update(self):
        self._write()

    def remove(self, rec):
        for i, r in enumerate(self.records):
            if r is rec:
                del self.records[i]
                break
        self._write()

    def release(self):
        """Give the journal up: delete it when nothing is left to undo (a
        journal with records stays, for Journal.repair after we are gone)."""
        if self._claimed and not self.records:
            self._delete()
        self._unclaim()

    def clear(self):
        self.records = []
        self._delete()
        self._unclaim()

    def _unclaim(self):
        if self._claimed and _CLAIMED.get(os.path.abspath(self.path)) is self:
            del _CLAIMED[os.path.abspath(self.path)]
        self._claimed = False

    # -- repair --------------------------------------------------------
    @classmethod
    def repair(cls, path_or_ifname, netns=None, directory=None, persistent=False):
        """Undo what the journal's dead owner left, then delete the journal.

        ``path_or_ifname`` is a journal file or an interface name (its
        runtime journal in ``netns``; ``persistent=True`` for the CLI's).
        Returns the undo commands applied (a line starting with ``#`` says
        why there was nothing to undo), ``[]`` if there was no journal.
        Raises ``NicBusy`` if the owner is alive.
        """
        s = os.fspath(path_or_ifname)
        if os.sep in s or s.endswith(".json"):
            j = cls(s, persistent=persistent)
        else:
            j = cls.for_interface(s, netns, persistent, directory)
        if not os.path.exists(j.path):
            return []
        with j._locked():
            data = cls.load(j.path)
            if data is None:
                return []
            owner = data.get("owner") or {}
            if _owner_active(owner, j.path):
                raise NicBusy(
                    "%s%s is controlled by a running netmapy instance, %s "
                    "(journal %s): stop it (it restores on exit) instead of "
                    "repairing" % (data.get("ifname"), _in_ns(data.get("netns")),
                                   _describe_owner(owner), j.path))
            return j._repair_locked(data)

    def _repair_locked(self, data):
        ifname, netns = data.get("ifname"), data.get("netns")
        owner = data.get("owner") or {}
        records = data.get("records") or []
        done = []
        if not records:
            self._delete()
            return done
        log.info("repairing %s%s: undoing %d change(s) left by %s",
                 ifname, _in_ns(netns), len(records), _describe_owner(owner))
        if owner.get("boot_id") and owner["boot_id"] != _proc.boot_id():
            self._delete()
            return ["# %s: journal is from an earlier boot: nothing to undo" % ifname]
        from .device import Nic        # the journal undoes through a Nic
        try:
            nic = Nic(ifname, netns=netns, journal=False)
        except (InterfaceNotFound, NicError, OSError) as e:
            if isinstance(e, NoPrivilege):
                raise
            self._delete()
            return ["# %s%s is gone (%s): nothing to undo" % (
                ifname, _in_ns(netns), _first_line(e))]
        try:
            if nic.ifindex != data.get("ifindex") or \
                    (data.get("netns_ino") and nic.netns_ino != data.get("netns_ino")):
                self._delete()
                return ["# %s%s was recreated since %s changed it: nothing to "
                        "undo" % (ifname, _in_ns(netns), _describe_owner(owner))]
            failed = []
            for rec in reversed(records):
                try:
                    nic._undo(rec)
                    done.append(rec.get("undo", rec.get("op")))
                except NoPrivilege:
                    raise
                except (NetmapyError, OSError) as e:
                    failed.append((rec, e))
        finally:
            nic.close()
        if failed:
            # keep what could not be undone, for another try
            self.records = [r for r, _ in reversed(failed)]
            self.meta = {k: data.get(k) for k in ("ifname", "netns", "ifindex", "netns_ino")}
            self._write()
            raise NicError("%s: could not undo %d change(s): %s (journal %s kept)"
                           % (ifname, len(failed), "; ".join(
                               "%s: %s" % (r.get("undo"), _first_line(e))
                               for r, e in failed), self.path))
        self._delete()
        return done


def _in_ns(netns):
    return "" if netns is None else " (netns %s)" % netns


def _first_line(e):
    s = e.args[1] if isinstance(e, OSError) and len(e.args) > 1 else str(e)
    return " ".join(str(s).split())
