"""The ``Nic`` class: one interface's NIC settings, changed step by step,
each change journaled first (``middlebox.nic.journal``) and undone on
restore; the structs go through ``netmapy.host.ethtool`` (the one ethtool
codec) and ``netmapy.host.ntuple`` (flow rules).  See ``middlebox.nic``."""

import contextlib
import errno
import fnmatch
import logging
import os
import re
import shlex
import socket
import struct
import sys

from netmapy.errors import (InterfaceError, InterfaceNotFound, NetmapyError,
                            NoPrivilege, QueueOutOfRange)
from netmapy.host.netns import current_netns_id, netns as _enter_netns
from netmapy import units as _units
from netmapy.host import cpus as _cpus

__all__ = ["Nic", "build_indir", "parse_cpulist", "format_cpulist", "online_cpus",
           "read_interrupts", "encode_flow_spec", "decode_flow_spec"]

log = logging.getLogger("netmapy.nic")

from .errors import NicError, NicUnsupported, NicBusy, alternative as _alternative  # noqa: E402,F401
from .journal import Journal, _owner_active, _first_line  # noqa: E402

# the ethtool structs and the ntuple rule codec are the host layer's (one
# codec for the library, the middlebox and the tools)
from netmapy.host.ethtool import (  # noqa: E402,F401  (LAYOUT: part of this API)
    LAYOUT, FEATURE_ALIASES, LEGACY_LONG as _LEGACY_LONG, ETHTOOL_F_WISH, RX_CLS_LOC_ANY,
    FS_LOCATION as _FS_LOCATION, Ethtool)
from netmapy.host import ntuple as _ntuple  # noqa: E402


# --------------------------------------------------------------------------
# small helpers

def parse_cpulist(text):
    """netmapy.units.parse_cpulist ('0-3,8' -> [0, 1, 2, 3, 8]), failing
    with a NicError."""
    try:
        return _units.parse_cpulist(text)
    except ValueError as e:
        raise NicError(str(e)) from None


format_cpulist = _units.format_cpulist


def _read(path):
    with open(path) as f:
        return f.read().strip()


online_cpus = _cpus.online


def build_indir(size, weights):
    """The RSS indirection table ``ethtool -X IF weight W0 W1 ...`` builds:
    ``size`` entries, queue ``q`` getting a share proportional to
    ``weights[q]`` (queues of weight 0 get none)."""
    weights = [int(w) for w in weights]
    total = sum(weights)
    if any(w < 0 for w in weights) or total == 0:
        raise NicError("RSS weights must be >= 0 and at least one > 0: %s"
                       % " ".join(map(str, weights)))
    if total > size:
        raise NicError("RSS weights add up to %d, more than the %d entries of "
                       "the indirection table" % (total, size))
    table, q, acc = [], -1, 0
    for i in range(size):
        while i >= size * acc // total:
            q += 1
            acc += weights[q]
        table.append(q)
    return table


def _indir_as_ethtool(table, nrings):
    """ethtool -X arguments that rebuild ``table``, or None."""
    if nrings and table == [i % nrings for i in range(len(table))]:
        return ["default"]
    counts = [table.count(q) for q in range(max(table) + 1)] if table else []
    if counts:
        from math import gcd
        g = 0
        for c in counts:
            g = gcd(g, c)
        w = [c // g for c in counts]
        try:
            if build_indir(len(table), w) == table:
                return ["weight"] + [str(x) for x in w]
        except NicError:
            pass
    return None


# --------------------------------------------------------------------------
# IRQs and NUMA (global, not per network namespace)

def read_interrupts(path="/proc/interrupts"):
    """{irq: name} for the numbered lines of /proc/interrupts."""
    out = {}
    with open(path) as f:
        header = f.readline().split()
        ncpu = len(header)
        for line in f:
            head, sep, rest = line.partition(":")
            if not sep or not head.strip().isdigit():
                continue
            toks = rest.split()
            toks = toks[ncpu:]               # skip the per-CPU counts
            # chip, then "HWIRQ-edge" (or a fused "PCI-MSI-edge"), then names
            name = " ".join(toks[2:]) if len(toks) >= 3 else (toks[-1] if toks else "")
            out[int(head)] = name
    return out


_QUEUE_IRQ_RE = re.compile(r"(txrx|rx|tx|comp|fp|input|output|queue|q\d)",
                           re.IGNORECASE)


def _irq_sort_key(item):
    irq, name = item
    m = re.search(r"(\d+)\D*$", name)
    return (int(m.group(1)) if m else -1, irq)


def _device_dir(bus_info):
    """/sys/bus/*/devices/BUS for a bus address from ETHTOOL_GDRVINFO."""
    if not bus_info or "/" in bus_info or bus_info in (".", ".."):
        return None
    for bus in ("pci", "platform", "vmbus", "virtio", "usb"):
        p = "/sys/bus/%s/devices/%s" % (bus, bus_info)
        if os.path.isdir(p):
            return p
    return None


# --------------------------------------------------------------------------
# the NIC

class Nic:
    """Control of one interface's NIC settings (see the module docstring).

    ``journal``: None (default) -- the interface's runtime journal in
    nic/ of the run directory, claimed at the first change (or ``claim()``); a ``Journal``
    or a path; ``False`` -- no journal (restore() still undoes what this
    object did, but nothing survives a crash).  With ``dry_run`` there is
    none.  ``echo``: where dry-run commands are printed (default stdout).
    """

    def __init__(self, ifname, netns=None, dry_run=False, journal=None, echo=None):
        if not isinstance(ifname, str) or not ifname or len(ifname.encode()) > 15 \
                or "/" in ifname or any(c.isspace() for c in ifname):
            raise InterfaceNotFound(ifname, self._where(netns))
        self.ifname = ifname
        self.netns = netns
        self.dry_run = bool(dry_run)
        self._echo = echo if echo is not None else (sys.stdout if dry_run else None)
        self._cmds = []
        self._records = []
        self._et = None
        with _enter_netns(netns):
            self._et = Ethtool(ifname, socket.socket(socket.AF_INET,
                                                     socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
            self.netns_ino = current_netns_id()
        try:
            self.ifindex = self._ifindex()
            drv = self._drvinfo()
        except BaseException:
            self._et.sock.close()
            raise
        self.driver, self.bus_info = drv["driver"], drv["bus_info"]
        self.repaired = []
        if self.dry_run or journal is False:
            self.journal = None
        elif journal is None:
            self.journal = Journal.for_interface(ifname, netns)
        elif isinstance(journal, Journal):
            self.journal = journal
        else:
            self.journal = Journal(journal)
        if self.journal is not None:
            self._repair_at_start()

    # -- life cycle ----------------------------------------------------
    def _repair_at_start(self):
        """A new start repairs what a crashed one left behind."""
        j = self.journal
        try:
            data = Journal.load(j.path)
        except NoPrivilege:
            return                      # not root: the first change will say so
        if data is None or j.persistent or _owner_active(data.get("owner"), j.path):
            return
        self.repaired = Journal.repair(j.path)
        for cmd in self.repaired:
            log.warning("%s: repaired: %s", self.ifname, cmd)

    def claim(self):
        """Take this interface's journal now (a second instance on the same
        interface is then refused with NicBusy).  Changes claim it anyway."""
        j = self.journal
        if j is not None and not j._claimed:
            self.repaired += j.claim(self.ifname, self.netns, self.ifindex,
                                     self.netns_ino)
            if j.persistent:          # the CLI's journal: earlier runs' changes
                self._records = list(j.records) + self._records
        return self

    def close(self):
        if self.journal is not None:
            self.journal.release()
        if self._et is not None:
            self._et.sock.close()
            self._et = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.restore()
        finally:
            self.close()
        return False

    def __repr__(self):
        return "Nic(%r%s%s)" % (self.ifname, ", netns=%r" % self.netns if self.netns else "",
                                ", dry_run=True" if self.dry_run else "")

    @staticmethod
    def _where(netns):
        return "network namespace %r" % netns if netns else "this network namespace"

    # -- commands ------------------------------------------------------
    def _cmd(self, argv):
        """The shell command line that does the same, inside the namespace."""
        line = " ".join(shlex.quote(str(a)) for a in argv)
        if self.netns is not None and argv and argv[0] == "ethtool":
            if str(self.netns).startswith("/"):
                line = "nsenter --net=%s %s" % (shlex.quote(str(self.netns)), line)
            else:
                line = "ip netns exec %s %s" % (shlex.quote(str(self.netns)), line)
        return line

    def _emit(self, cmd):
        self._cmds.append(cmd)
        if self._echo is not None:
            print(cmd, file=self._echo, flush=True)
        return cmd

    def commands(self):
        """The equivalent commands of every step so far (dry run: what would
        be done; otherwise what was done, restore's undo commands included)."""
        return list(self._cmds)

    # -- journaled change ---------------------------------------------
    @contextlib.contextmanager
    def _change(self, rec):
        """Record ``rec`` (with its undo data) before the change in the with
        block is applied; forget it again if applying fails."""
        if self.dry_run:
            self._records.append(rec)
            yield rec
            return
        if self.journal is not None:
            self.claim()
            self.journal.add(rec)
        self._records.append(rec)
        try:
            yield rec
        except BaseException:
            self._records.remove(rec)
            if self.journal is not None:
                self.journal.remove(rec)
            raise
        if self.journal is not None and rec.get("_dirty"):
            rec.pop("_dirty", None)
            self.journal.update()

    def restore(self):
        """Undo everything this Nic did, newest first, and clear the journal.
        Returns the undo commands (a dry run prints them, changing nothing)."""
        done, failed = [], []
        for rec in reversed(list(self._records)):
            if self.dry_run:
                done.append(self._emit(rec["undo"]))
                continue
            try:
                self._undo(rec)
            except InterfaceNotFound:
                log.warning("%s is gone: cannot undo %s", self.ifname, rec.get("undo"))
            except NoPrivilege:
                raise
            except (NetmapyError, OSError) as e:
                failed.append((rec, e))
                continue
            done.append(self._emit(rec["undo"]))
            self._records.remove(rec)
            if self.journal is not None:
                self.journal.remove(rec)
        if failed:
            raise NicError("%s: could not undo %d change(s): %s" % (
                self.ifname, len(failed), "; ".join(
                    "%s: %s" % (r.get("undo"), _first_line(e)) for r, e in failed)))
        self._records = []
        if self.journal is not None:
            self.journal.clear()
        return done

    def _undo(self, rec):
        op = rec["op"]
        if op == "channels":
            cur = self._get_channels()["current"]
            cur.update(rec["prev"])
            self._set_channels_raw(cur)
        elif op == "rss":
            self._set_indir(rec["indir"])
        elif op == "ntuple_add":
            loc = rec.get("loc")
            if loc is None:
                loc = self._find_rule(bytes.fromhex(rec["fs"]))
                if loc is None:
                    return              # never got inserted
            try:
                self._del_rule(loc)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
        elif op == "ntuple_del":
            self._ins_rule(bytes.fromhex(rec["fs"]))
        elif op == "features":
            self._set_features_raw({k: bool(v) for k, v in rec["prev"].items()})
        elif op == "irq":
            self._write_affinity(rec["irq"], rec["prev"])
        else:
            raise NicError("unknown journal record %r" % (op,))

    # -- ioctl plumbing ------------------------------------------------
    @contextlib.contextmanager
    def _step(self, step, kind=None):
        """Run ethtool requests (``self._et``: netmapy.host.ethtool) as one
        step: a failure becomes the error a user can act on, naming the
        step (and for ``kind``, the software alternative)."""
        if self._et is None:
            raise NicError("%s: this Nic is closed" % self.ifname)
        try:
            yield self._et
        except NetmapyError:
            raise
        except OSError as e:
            raise self._error(e, step, kind) from None

    def _error(self, e, step, kind):
        if e.errno == errno.ENODEV:
            return InterfaceNotFound(self.ifname, self._where(self.netns))
        if e.errno in (errno.EPERM, errno.EACCES):
            return NoPrivilege("%s on %s" % (step, self.ifname), "CAP_NET_ADMIN")
        if e.errno == errno.EOPNOTSUPP and kind is not None:
            return NicUnsupported(self.ifname, self.driver_name(), step,
                                  alternative=_alternative(kind, self.driver_name(),
                                                           self.ifname))
        return OSError(e.errno, "%s: %s: %s" % (self.ifname, step, os.strerror(e.errno)))

    def driver_name(self):
        return getattr(self, "driver", "") or ""

    def _ifindex(self):
        try:
            return self._et.ifindex()
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise InterfaceNotFound(self.ifname, self._where(self.netns)) from None
            raise

    def _drvinfo(self):
        try:
            with self._step("reading driver info") as et:
                return et.drvinfo()
        except InterfaceError:
            raise
        except OSError:
            return {"driver": "", "bus_info": ""}

    # -- channels ------------------------------------------------------
    def _get_channels(self, step="reading the channel counts"):
        with self._step(step, "channels") as et:
            return et.channels()

    def _set_channels_raw(self, cur):
        ch = self._get_channels()
        with self._step("setting the channel counts", "channels") as et:
            et.set_channels(ch["max"], cur)

    def channels(self):
        """{'max': {rx, tx, other, combined}, 'current': {...}} (ethtool -l)."""
        return self._get_channels()

    def set_channels(self, rx=None, tx=None, combined=None, other=None):
        """ethtool -L IF [rx N] [tx N] [other N] [combined N]."""
        want = {k: v for k, v in (("rx", rx), ("tx", tx), ("other", other),
                                  ("combined", combined)) if v is not None}
        if not want:
            raise NicError("set_channels: give rx, tx, other and/or combined")
        argv = ["ethtool", "-L", self.ifname]
        for k, v in want.items():
            argv += [k, str(v)]
        cmd = self._cmd(argv)
        step = "setting the channel counts (%s)" % cmd
        ch = self._get_channels(step)
        for k, v in want.items():
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise NicError("%s: bad %s channel count %r" % (self.ifname, k, v))
            mx = ch["max"][k]
            if mx == 0 and v > 0:
                has = ", ".join("%s (max %d)" % (n, c) for n, c in ch["max"].items() if c)
                alt = ("%s has %s channels: use those, e.g. ethtool -L %s %s"
                       % (self.driver or "this device", has or "no settable",
                          self.ifname, " ".join("%s N" % n for n, c in ch["max"].items()
                                                if c)))
                raise NicUnsupported(self.ifname, self.driver, step, errno.EOPNOTSUPP,
                                     alt, "the device has no %s channels" % k)
            if v > mx:
                raise NicError("%s: at most %d %s channel%s (ethtool -l %s), not %d"
                               % (self.ifname, mx, k, "" if mx == 1 else "s",
                                  self.ifname, v))
        cur = dict(ch["current"])
        prev = {k: cur[k] for k in want if cur[k] != want[k]}
        if self.dry_run or not prev:
            if prev:
                self._records.append(self._channels_rec(cmd, prev))
            return self._emit(cmd)
        rec = self._channels_rec(cmd, prev)
        with self._change(rec):
            cur.update(want)
            self._set_channels_raw(cur)
        return self._emit(cmd)

    def _channels_rec(self, cmd, prev):
        argv = ["ethtool", "-L", self.ifname]
        for k, v in prev.items():
            argv += [k, str(v)]
        return {"op": "channels", "prev": prev, "do": cmd, "undo": self._cmd(argv)}

    # -- RSS -----------------------------------------------------------
    def rx_rings(self, step="reading the number of RX rings"):
        """Number of RX rings RSS spreads over (ETHTOOL_GRXRINGS)."""
        with self._step(step, "rss") as et:
            return et.rx_rings()

    def rss_indir(self, step="reading the RSS indirection table"):
        """The RSS indirection table (ETHTOOL_GRXFHINDIR): queue per entry."""
        with self._step(step, "rss") as et:
            table = et.rss_indir()
        if not table:
            raise NicUnsupported(self.ifname, self.driver, step, errno.EOPNOTSUPP,
                                 _alternative("rss", self.driver, self.ifname),
                                 "the device has no RSS indirection table")
        return table

    def rss_key(self):
        """(hash key as 'aa:bb:...', hash function bits) via ETHTOOL_GRSSH,
        or (None, None) where the device does not say."""
        try:
            with self._step("reading the RSS hash key", "rss") as et:
                return et.rss_key()
        except (NicUnsupported, OSError):
            return None, None

    def _set_indir(self, table):
        with self._step("setting the RSS indirection table", "rss") as et:
            et.set_rss_indir(table)

    def set_rss_weights(self, weights):
        """ethtool -X IF weight W0 W1 ...: RSS sends queue q a share of flows
        proportional to weights[q] (0: none)."""
        weights = [int(w) for w in weights]
        cmd = self._cmd(["ethtool", "-X", self.ifname, "weight"] + [str(w) for w in weights])
        step = "setting RSS weights (%s)" % cmd
        n = self.rx_rings(step)
        if len(weights) > n:
            raise NicError("%s: %d RSS weights given, but it has %d RX ring%s"
                           % (self.ifname, len(weights), n, "" if n == 1 else "s"))
        old = self.rss_indir(step)
        new = build_indir(len(old), weights)
        rec = self._rss_rec(cmd, old, n)
        if self.dry_run or old == new:
            if old != new:
                self._records.append(rec)
            return self._emit(cmd)
        with self._change(rec):
            self._set_indir(new)
        return self._emit(cmd)

    def _rss_rec(self, cmd, old, n):
        args = _indir_as_ethtool(old, n)
        undo = self._cmd(["ethtool", "-X", self.ifname] + args) if args else \
            "# restore the RSS indirection table of %s to %s" % (self.ifname, old)
        return {"op": "rss", "indir": old, "do": cmd, "undo": undo}

    def isolate_queue(self, q):
        """RSS weights with 0 for queue q (1 for the others), so only traffic
        steered there on purpose (an ntuple rule) reaches it."""
        step = "isolating RX queue %d from RSS" % q
        n = self.rx_rings(step)
        if not 0 <= q < n:
            raise QueueOutOfRange(self.ifname, q, n, "RX")
        if n < 2:
            raise NicError("%s: cannot isolate queue %d: it is the only RX queue "
                           "(add channels first: ethtool -L %s combined 2)"
                           % (self.ifname, q, self.ifname))
        return self.set_rss_weights([0 if i == q else 1 for i in range(n)])

    # -- ntuple --------------------------------------------------------
    def _rule_table(self, step="reading the ntuple rules"):
        """(table size, driver picks locations itself, [locations])."""
        with self._step(step, "ntuple") as et:
            return et.rule_table()

    def _get_rule(self, loc, step="reading an ntuple rule"):
        with self._step(step, "ntuple") as et:
            return et.get_rule(loc)

    def _del_rule(self, loc):
        with self._step("deleting ntuple rule %d" % loc, "ntuple") as et:
            et.del_rule(loc)

    def _ins_rule(self, fs, loc=None):
        with self._step("inserting an ntuple rule", "ntuple") as et:
            return et.ins_rule(fs, loc)

    def _find_rule(self, fs):
        want = _rule_identity(fs)
        _, _, locs = self._rule_table()
        for loc in locs:
            if _rule_identity(self._get_rule(loc)) == want:
                return loc
        return None

    def ntuple_rules(self):
        """{'table_size', 'special_locations', 'rules': [{loc, flow_type,
        src, dst, sport, dport, queue, text}]} (ethtool -n IF)."""
        size, special, locs = self._rule_table()
        rules = []
        for loc in locs:
            d = decode_flow_spec(self._get_rule(loc))
            d["loc"] = loc
            d["text"] = _rule_text(d)
            rules.append(d)
        return {"table_size": size, "special_locations": special, "rules": rules}

    def add_ntuple(self, flow_type="udp4", src=None, dst=None, sport=None, dport=None,
                   queue=None, loc=None):
        """ethtool -N IF flow-type T [src-ip A] [dst-ip A] [src-port P]
        [dst-port P] action Q [loc L].  ``src``/``dst`` take a prefix
        (10.0.0.0/8); ``queue=-1`` drops.  Turns the ntuple feature on first
        if it is off (journaled too).  Returns the rule's location (a dry run
        returns the command)."""
        if queue is None:
            raise NicError("add_ntuple: give queue=Q (or -1 to drop)")
        fs, argv = encode_flow_spec(flow_type, src, dst, sport, dport, queue)
        argv = ["ethtool", "-N", self.ifname] + argv
        if loc is not None:
            argv += ["loc", str(loc)]
        cmd = self._cmd(argv)
        step = "adding an ntuple rule (%s)" % cmd
        size, special, locs = self._rule_table(step)
        if queue >= 0:
            try:
                n = self.rx_rings(step)
            except NicUnsupported:
                n = None
            if n is not None and queue >= n:
                raise QueueOutOfRange(self.ifname, queue, n, "RX")
        self._need_ntuple_feature(step)
        if loc is not None:
            if not 0 <= loc < (size or 1 << 31):
                raise NicError("%s: rule location %d is outside the rule table "
                               "(0..%d)" % (self.ifname, loc, size - 1))
            if loc in locs:
                raise NicError("%s: rule location %d is in use: delete it first "
                               "(ethtool -N %s delete %d)" % (self.ifname, loc,
                                                               self.ifname, loc))
            where = loc
        elif special or not size:
            where = RX_CLS_LOC_ANY
        else:
            used = set(locs)
            free = [i for i in range(size - 1, -1, -1) if i not in used]
            if not free:
                raise NicError("%s: the ntuple rule table is full (%d rules)"
                               % (self.ifname, size))
            where = free[0]
        fs = bytearray(fs)
        struct.pack_into("=I", fs, _FS_LOCATION, where)
        rec = {"op": "ntuple_add", "loc": None if where == RX_CLS_LOC_ANY else where,
               "fs": bytes(fs).hex(), "do": cmd,
               "undo": self._cmd(["ethtool", "-N", self.ifname, "delete",
                                  "LOC" if where == RX_CLS_LOC_ANY else str(where)])}
        if self.dry_run:
            self._records.append(rec)
            return self._emit(cmd)
        with self._change(rec):
            got = self._ins_rule(bytes(fs), where)
            rec["loc"] = got
            rec["undo"] = self._cmd(["ethtool", "-N", self.ifname, "delete", str(got)])
            rec["_dirty"] = True
        self._emit(cmd)
        return got

    def del_ntuple(self, loc):
        """ethtool -N IF delete LOC (the rule is kept in the journal, to be
        put back on restore)."""
        cmd = self._cmd(["ethtool", "-N", self.ifname, "delete", str(loc)])
        step = "deleting ntuple rule %d (%s)" % (loc, cmd)
        _, _, locs = self._rule_table(step)
        if loc not in locs:
            raise NicError("%s: there is no ntuple rule at location %d (rules at: %s)"
                           % (self.ifname, loc, " ".join(map(str, locs)) or "none"))
        fs = self._get_rule(loc, step)
        d = decode_flow_spec(fs)
        d["loc"] = loc
        rec = {"op": "ntuple_del", "loc": loc, "fs": fs.hex(), "do": cmd,
               "undo": self._cmd(["ethtool", "-N", self.ifname] + _rule_text(d).split())}
        if self.dry_run:
            self._records.append(rec)
            return self._emit(cmd)
        with self._change(rec):
            self._del_rule(loc)
        return self._emit(cmd)

    def _need_ntuple_feature(self, step):
        feats = self.features()
        f = feats.get("rx-ntuple-filter")
        if f is None or f["active"]:
            return
        if f["fixed"]:
            raise NicUnsupported(self.ifname, self.driver, step, errno.EOPNOTSUPP,
                                 _alternative("ntuple", self.driver, self.ifname),
                                 "ntuple filtering is fixed off on this device")
        self.set_features({"ntuple": True})

    # -- features ------------------------------------------------------
    def _feature_strings(self):
        step = "reading the feature names"
        try:
            with self._step(step, "features") as et:
                return et.feature_names()
        except NicUnsupported:
            raise
        except OSError as e:
            if e.errno == errno.EOPNOTSUPP:
                raise NicUnsupported(self.ifname, self.driver, step) from None
            raise

    def features(self):
        """{kernel feature name: {'active', 'requested', 'fixed'}} (ethtool -k)."""
        self._feature_strings()
        with self._step("reading the features", "features") as et:
            return {n: {"active": f["active"], "requested": f["requested"],
                        "fixed": f["fixed"]} for n, f in et.features().items()}

    def resolve_feature(self, name, names=None):
        """Kernel feature names an ethtool -K name stands for."""
        names = names if names is not None else self._feature_strings()
        short = _LEGACY_LONG.get(name, name)
        pats = FEATURE_ALIASES.get(short)
        if pats is None:
            if name in names:
                return [name]
            raise NicError("%s: unknown feature %r (ethtool -K names: %s; or a kernel "
                           "feature name from `netmapy-nic show %s`)"
                           % (self.ifname, name, " ".join(FEATURE_ALIASES), self.ifname))
        got = [n for n in names if n and any(fnmatch.fnmatchcase(n, p) for p in pats)]
        if not got:
            raise NicUnsupported(self.ifname, self.driver, "feature %s" % name,
                                 errno.EOPNOTSUPP, "", "the device has no such feature")
        return got

    def _set_features_raw(self, wanted):
        """Set kernel features {name: bool} (ETHTOOL_SFEATURES)."""
        with self._step("changing offloads", "features") as et:
            return et.set_features(wanted)

    def set_feature(self, name, on):
        """ethtool -K IF NAME on|off (NAME: an ethtool short name such as
        gro, tso, rx, ntuple, or a kernel feature name such as rx-gro)."""
        return self.set_features({name: on})

    def set_features(self, wanted):
        """Several at once, in one step: {'gro': False, 'tso': False}."""
        wanted = dict(wanted)
        argv = ["ethtool", "-K", self.ifname]
        for name, on in wanted.items():
            argv += [name, "on" if on else "off"]
        cmd = self._cmd(argv)
        step = "changing offloads (%s)" % cmd
        feats = self.features()
        names = self._feature_strings()
        change, prev, uargs = {}, {}, []
        for name, on in wanted.items():
            on = bool(on)
            members = self.resolve_feature(name, names)
            settable = [m for m in members if not feats[m]["fixed"]]
            if not settable:
                if all(feats[m]["active"] == on for m in members):
                    continue
                raise NicUnsupported(
                    self.ifname, self.driver, step, errno.EOPNOTSUPP, "",
                    "%s (%s) is fixed %s on this device (ethtool -k %s shows "
                    "[fixed])" % (name, ", ".join(members),
                                  "on" if feats[members[0]]["active"] else "off",
                                  self.ifname))
            mine = {}
            for m in settable:
                if m not in change and (feats[m]["requested"] != on
                                        or feats[m]["active"] != on):
                    mine[m] = feats[m]["requested"]
            if not mine:
                continue
            change.update((m, on) for m in mine)
            prev.update(mine)
            if len(set(mine.values())) == 1 and set(mine) == set(settable):
                uargs += [name, "on" if next(iter(mine.values())) else "off"]
            else:
                for m, v in mine.items():
                    uargs += [m, "on" if v else "off"]
        if not change:
            return self._emit(cmd)
        uargv = ["ethtool", "-K", self.ifname] + uargs
        rec = {"op": "features", "prev": prev, "do": cmd, "undo": self._cmd(uargv)}
        if self.dry_run:
            self._records.append(rec)
            return self._emit(cmd)
        with self._change(rec):
            rc = self._set_features_raw(change)
        if rc & ETHTOOL_F_WISH:
            now = self.features()
            off = [m for m, v in change.items() if now[m]["active"] != v]
            if off:
                log.warning("%s: %s: requested, but the device did not apply it to "
                            "%s (dependent features?)", self.ifname, cmd, " ".join(off))
        return self._emit(cmd)

    # -- IRQs and NUMA -------------------------------------------------
    def device_dir(self):
        return _device_dir(self.bus_info)

    def numa_node(self):
        return _cpus.numa_node(self.device_dir())

    def numa_cpus(self):
        n = self.numa_node()
        return (_cpus.node_cpus(n) if n is not None else None) or online_cpus()

    def irqs(self, queues_only=False):
        """[{'irq', 'name', 'affinity' (cpu list), 'queue' (bool)}] for the
        interrupts of the interface's device (MSI/MSI-X vectors from sysfs)."""
        d = self.device_dir()
        nums = set()
        if d is not None:
            try:
                nums = {int(x) for x in os.listdir(os.path.join(d, "msi_irqs"))}
            except (OSError, ValueError):
                nums = set()
            if not nums:
                try:
                    legacy = int(_read(os.path.join(d, "irq")))
                    if legacy > 0:
                        nums = {legacy}
                except (OSError, ValueError):
                    pass
        if not nums:
            return []
        names = read_interrupts()
        out = []
        for irq, name in sorted(((i, names.get(i, "")) for i in nums), key=_irq_sort_key):
            try:
                aff = parse_cpulist(_read("/proc/irq/%d/smp_affinity_list" % irq))
            except OSError:
                aff = []
            out.append({"irq": irq, "name": name, "affinity": aff,
                        "queue": bool(_QUEUE_IRQ_RE.search(name))})
        if queues_only:
            q = [i for i in out if i["queue"]]
            return q or out
        return out

    def _no_irqs(self, step):
        return NicUnsupported(self.ifname, self.driver, step, errno.EOPNOTSUPP,
                              _alternative("irq", self.driver, self.ifname),
                              "the device has no interrupts of its own")

    def _write_affinity(self, irq, cpus):
        path = "/proc/irq/%d/smp_affinity_list" % irq
        try:
            with open(path, "w") as f:
                f.write(cpus + "\n")
        except PermissionError:
            raise NoPrivilege("changing the affinity of IRQ %d" % irq, "root") from None
        except OSError as e:
            if e.errno == errno.EIO:
                raise NicUnsupported(self.ifname, self.driver,
                                     "setting the affinity of IRQ %d" % irq, e.errno,
                                     "the kernel manages this interrupt's affinity "
                                     "itself (managed IRQ): pin the workers instead",
                                     "the affinity of this IRQ is managed by the "
                                     "kernel") from None
            raise OSError(e.errno, "writing %s: %s" % (path, os.strerror(e.errno))) from None

    def set_irq_affinity(self, irq, cpus):
        """echo CPUS > /proc/irq/IRQ/smp_affinity_list (IRQ must be one of
        this interface's)."""
        cpus = parse_cpulist(cpus)
        text = format_cpulist(cpus)
        cmd = "echo %s > /proc/irq/%d/smp_affinity_list" % (text, irq)
        mine = {i["irq"]: i for i in self.irqs()}
        if not mine:
            raise self._no_irqs("setting the affinity of IRQ %d (%s)" % (irq, cmd))
        if irq not in mine:
            raise NicError("%s: IRQ %d is not one of its interrupts (%s)" % (
                self.ifname, irq, " ".join(str(i) for i in sorted(mine))))
        bad = [c for c in cpus if c not in online_cpus()]
        if not cpus or bad:
            raise NicError("%s: CPU%s %s not online (online: %s)" % (
                self.ifname, "s" if len(bad) > 1 else "", format_cpulist(bad) or "list empty,",
                format_cpulist(online_cpus())))
        prev = format_cpulist(mine[irq]["affinity"])
        if prev == text:
            return self._emit(cmd)
        rec = {"op": "irq", "irq": irq, "prev": prev, "do": cmd,
               "undo": "echo %s > /proc/irq/%d/smp_affinity_list" % (prev, irq)}
        if self.dry_run:
            self._records.append(rec)
            return self._emit(cmd)
        with self._change(rec):
            self._write_affinity(irq, text)
        return self._emit(cmd)

    def spread_irqs(self, cpus=None):
        """One queue IRQ per CPU, round robin over ``cpus`` (default: all
        online), the device's NUMA-local CPUs first.  Returns the commands."""
        step = "spreading IRQ affinity"
        irqs = self.irqs(queues_only=True)
        if not irqs:
            raise self._no_irqs(step)
        cpus = online_cpus() if cpus is None else parse_cpulist(cpus)
        if not cpus:
            raise NicError("%s: spread_irqs: no CPUs given" % self.ifname)
        local = set(self.numa_cpus())
        order = [c for c in cpus if c in local] + [c for c in cpus if c not in local]
        return [self.set_irq_affinity(i["irq"], [order[k % len(order)]])
                for k, i in enumerate(irqs)]

    # -- show ----------------------------------------------------------
    def show(self):
        """Everything at once, as a dict (unsupported parts are None, with
        the reason in ``unsupported``)."""
        d = {"ifname": self.ifname, "netns": self.netns, "ifindex": self.ifindex,
             "driver": self.driver, "bus_info": self.bus_info, "unsupported": {}}

        def part(key, fn):
            try:
                d[key] = fn()
            except (NicUnsupported, OSError) as e:
                if isinstance(e, (InterfaceNotFound, NoPrivilege)):
                    raise
                d[key] = None
                d["unsupported"][key] = _first_line(e)

        part("channels", self.channels)
        part("rx_rings", self.rx_rings)

        def rss():
            key, hfunc = self.rss_key()
            return {"indir": self.rss_indir(), "key": key, "hfunc": hfunc}
        part("rss", rss)
        part("ntuple", self.ntuple_rules)
        part("features", self.features)
        irqs = self.irqs()
        d["irqs"] = irqs
        if not irqs:
            d["unsupported"]["irqs"] = str(self._no_irqs("IRQs"))
        d["numa_node"] = self.numa_node()
        d["numa_cpus"] = self.numa_cpus()
        return d


# --------------------------------------------------------------------------
# flow specs

def encode_flow_spec(flow_type, src=None, dst=None, sport=None, dport=None, queue=0):
    """(struct ethtool_rx_flow_spec bytes, ethtool -N arguments)
    (netmapy.host.ntuple, failing with a NicError)."""
    return _ntuple.encode_flow_spec(flow_type, src, dst, sport, dport, queue, exc=NicError)


decode_flow_spec = _ntuple.decode_flow_spec
_rule_text = _ntuple.rule_text
_rule_identity = _ntuple.rule_identity
