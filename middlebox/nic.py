"""NIC control plane: the ethtool steps operators run by hand, as a library.

What CloudFlare's and NetSlice's setup scripts did with ``ethtool`` and
``/proc/irq``: read and change channel counts, the RSS indirection table,
ntuple flow-steering rules, offload features and IRQ affinity -- every change
journaled first, so it can be undone on exit or, after a crash, by the next
start::

    from middlebox.nic import Nic
    with Nic("eth3") as nic:             # restore() on leaving the block
        nic.set_feature("gro", False)    # ethtool -K eth3 gro off
        nic.isolate_queue(4)             # ethtool -X eth3 weight 1 1 1 1 0 1 ...
        loc = nic.add_ntuple("udp4", dport=53, queue=4)
        nic.spread_irqs()                # one queue IRQ per CPU, NUMA-local first
        print(nic.show())

Everything goes through the kernel directly: the ``SIOCETHTOOL`` ioctl on an
``AF_INET`` socket (structs packed here with the layouts of
``include/uapi/linux/ethtool.h``; ``LAYOUT`` lists their sizes and offsets,
checked against a C compiler by the tests), ``/proc/interrupts``,
``/proc/irq/N/smp_affinity_list`` and the device's ``numa_node`` in sysfs.
``netns=NAME`` acts on an interface inside a network namespace: the ioctl
socket is created there (IRQs and sysfs device files are global).

``dry_run=True`` changes nothing: each step prints and returns the equivalent
command line (``ethtool -K eth3 gro off``); ``commands()`` lists the commands
of what a real Nic did.  A step the device cannot do raises ``NicUnsupported``
naming the device, the step, the errno and the software alternative.

The journal (``Journal``) is a JSON file in ``nic/`` of netmapy's run
directory (``netmapy.rundir``: ``$NETMAPY_RUNDIR``, default ``/dev/shm/netmapy-UID``) with the owner's pid and start time and one undo
record per change, written (fsync, atomic rename) *before* the change is
applied.  ``Journal.repair(ifname)`` undoes what a dead owner left behind;
a new ``Nic`` on the interface does it on its own at start.
"""

import contextlib
import ctypes
import errno
import fcntl
import fnmatch
import ipaddress
import json
import logging
import os
import re
import shlex
import socket
import struct
import sys
import time

from netmapy.errors import (InterfaceError, InterfaceNotFound, NetmapyError,
                            NoPrivilege, PortBusy, QueueOutOfRange)
from netmapy.netns import current_netns_id, netns as _enter_netns
from netmapy import rundir as _rundir, units as _units

__all__ = [
    "Nic", "Journal", "NicError", "NicUnsupported", "NicBusy",
    "journal_path", "build_indir", "parse_cpulist", "format_cpulist",
    "FEATURE_ALIASES", "LAYOUT",
]

log = logging.getLogger("netmapy.nic")

# --------------------------------------------------------------------------
# uapi constants (include/uapi/linux/ethtool.h, linux/sockios.h)

SIOCETHTOOL = 0x8946
SIOCGIFINDEX = 0x8933

ETHTOOL_GDRVINFO = 0x03
ETHTOOL_GSTRINGS = 0x1b
ETHTOOL_GRXRINGS = 0x2d
ETHTOOL_GRXCLSRLCNT = 0x2e
ETHTOOL_GRXCLSRULE = 0x2f
ETHTOOL_GRXCLSRLALL = 0x30
ETHTOOL_SRXCLSRLDEL = 0x31
ETHTOOL_SRXCLSRLINS = 0x32
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GRXFHINDIR = 0x38
ETHTOOL_SRXFHINDIR = 0x39
ETHTOOL_GFEATURES = 0x3a
ETHTOOL_SFEATURES = 0x3b
ETHTOOL_GCHANNELS = 0x3c
ETHTOOL_SCHANNELS = 0x3d
ETHTOOL_GRSSH = 0x46

ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32

ETHTOOL_F_UNSUPPORTED = 1 << 0
ETHTOOL_F_WISH = 1 << 1

RX_CLS_FLOW_DISC = 0xffffffffffffffff
RX_CLS_LOC_SPECIAL = 0x80000000
RX_CLS_LOC_ANY = 0xffffffff

FLOW_EXT = 0x80000000
FLOW_MAC_EXT = 0x40000000
FLOW_RSS = 0x20000000

TCP_V4_FLOW, UDP_V4_FLOW, SCTP_V4_FLOW = 0x01, 0x02, 0x03
TCP_V6_FLOW, UDP_V6_FLOW, SCTP_V6_FLOW = 0x05, 0x06, 0x07
IPV4_USER_FLOW = 0x0d
ETH_RX_NFC_IP4 = 1

FLOW_TYPES = {"tcp4": TCP_V4_FLOW, "udp4": UDP_V4_FLOW, "sctp4": SCTP_V4_FLOW,
              "tcp6": TCP_V6_FLOW, "udp6": UDP_V6_FLOW, "sctp6": SCTP_V6_FLOW,
              "ip4": IPV4_USER_FLOW}
_FLOW_NAMES = {v: k for k, v in FLOW_TYPES.items()}

# Struct layouts.  "=" is native byte order with no implicit alignment: every
# pad byte the C compiler inserts is written out ("x"), so calcsize() is the
# C sizeof().  Network-order fields are packed as raw bytes ("4s", "2s").
_IFREQ_SIZE = 40                       # struct ifreq on LP64
_CHANNELS = "=9I"                      # struct ethtool_channels
_DRVINFO = "=I32s32s32s32s32s12s5I"    # struct ethtool_drvinfo
_SSET_INFO = "=IIQ"                    # struct ethtool_sset_info (+ u32 data[])
_GSTRINGS = "=III"                     # struct ethtool_gstrings (+ u8 data[])
_FEATURES_HDR = "=II"                  # ethtool_[gs]features (+ blocks)
_GET_FEATURES_BLOCK = "=4I"            # available, requested, active, never_changed
_SET_FEATURES_BLOCK = "=2I"            # valid, requested
_RXFH_INDIR = "=II"                    # struct ethtool_rxfh_indir (+ u32 ring_index[])
_RXFH = "=IIIIB3xI"                    # struct ethtool_rxfh (+ u32 indir[], u8 key[])
_FLOW_UNION_SIZE = 52                  # union ethtool_flow_union
_FLOW_EXT_SIZE = 20                    # struct ethtool_flow_ext
_FLOW_SPEC = "=I52s20s52s20s4xQI4x"    # struct ethtool_rx_flow_spec
_RXNFC_HDR = "=IIQ"                    # cmd, flow_type, data
_RXNFC = "=IIQ168sI4x"                 # struct ethtool_rxnfc (fs inline, rule_cnt)
_RXNFC_RULE_LOCS = 188                 # offsetof(struct ethtool_rxnfc, rule_locs)
_TCPIP4 = "=4s4s2s2sB3x"               # struct ethtool_tcpip4_spec
_TCPIP6 = "=16s16s2s2sB3x"             # struct ethtool_tcpip6_spec
_USRIP4 = "=4s4s4sBBBx"                # struct ethtool_usrip4_spec

LAYOUT = {
    "sizeof": {
        "ethtool_channels": struct.calcsize(_CHANNELS),
        "ethtool_drvinfo": struct.calcsize(_DRVINFO),
        "ethtool_sset_info": struct.calcsize(_SSET_INFO),
        "ethtool_gstrings": struct.calcsize(_GSTRINGS),
        "ethtool_gfeatures": struct.calcsize(_FEATURES_HDR),
        "ethtool_sfeatures": struct.calcsize(_FEATURES_HDR),
        "ethtool_get_features_block": struct.calcsize(_GET_FEATURES_BLOCK),
        "ethtool_set_features_block": struct.calcsize(_SET_FEATURES_BLOCK),
        "ethtool_rxfh_indir": struct.calcsize(_RXFH_INDIR),
        "ethtool_rxfh": struct.calcsize(_RXFH),
        "ethtool_rx_flow_spec": struct.calcsize(_FLOW_SPEC),
        "ethtool_rxnfc": struct.calcsize(_RXNFC),
        "ethtool_flow_ext": _FLOW_EXT_SIZE,
        "ethtool_tcpip4_spec": struct.calcsize(_TCPIP4),
        "ethtool_tcpip6_spec": struct.calcsize(_TCPIP6),
        "ethtool_usrip4_spec": struct.calcsize(_USRIP4),
        "ethtool_flow_union": _FLOW_UNION_SIZE,
    },
    "offsetof": {
        "ethtool_rxnfc.data": struct.calcsize("=II"),
        "ethtool_rxnfc.fs": struct.calcsize(_RXNFC_HDR),
        "ethtool_rxnfc.rule_cnt": struct.calcsize(_RXNFC_HDR + "168s"),
        "ethtool_rxnfc.rule_locs": _RXNFC_RULE_LOCS,
        "ethtool_rx_flow_spec.h_u": 4,
        "ethtool_rx_flow_spec.h_ext": struct.calcsize("=I52s"),
        "ethtool_rx_flow_spec.m_u": struct.calcsize("=I52s20s"),
        "ethtool_rx_flow_spec.m_ext": struct.calcsize("=I52s20s52s"),
        "ethtool_rx_flow_spec.ring_cookie": struct.calcsize("=I52s20s52s20s4x"),
        "ethtool_rx_flow_spec.location": struct.calcsize("=I52s20s52s20s4xQ"),
        "ethtool_rxfh.hfunc": struct.calcsize("=IIII"),
        "ethtool_rxfh.rss_config": struct.calcsize(_RXFH),
        "ethtool_drvinfo.bus_info": struct.calcsize("=I32s32s32s"),
        "ethtool_sset_info.data": struct.calcsize(_SSET_INFO),
        "ethtool_tcpip6_spec.psrc": struct.calcsize("=16s16s"),
        "ethtool_tcpip6_spec.tclass": struct.calcsize("=16s16s2s2s"),
        "ethtool_usrip4_spec.proto": struct.calcsize("=4s4s4sBB"),
    },
}
assert LAYOUT["offsetof"]["ethtool_rxnfc.rule_cnt"] == 184

# ethtool -K short (and legacy long) names -> kernel feature name patterns,
# as ethtool's off_flag_def table maps them.
FEATURE_ALIASES = {
    "rx": ("rx-checksum",),
    "tx": ("tx-checksum-*",),
    "sg": ("tx-scatter-gather*",),
    "tso": ("tx-tcp*-segmentation",),
    "ufo": ("tx-udp-fragmentation",),
    "gso": ("tx-generic-segmentation",),
    "gro": ("rx-gro",),
    "lro": ("rx-lro",),
    "rxvlan": ("rx-vlan-hw-parse",),
    "txvlan": ("tx-vlan-hw-insert",),
    "ntuple": ("rx-ntuple-filter",),
    "rxhash": ("rx-hashing",),
}
_LEGACY_LONG = {
    "rx-checksumming": "rx", "tx-checksumming": "tx", "scatter-gather": "sg",
    "tcp-segmentation-offload": "tso", "udp-fragmentation-offload": "ufo",
    "generic-segmentation-offload": "gso", "generic-receive-offload": "gro",
    "large-receive-offload": "lro", "rx-vlan-offload": "rxvlan",
    "tx-vlan-offload": "txvlan", "ntuple-filters": "ntuple",
    "receive-hashing": "rxhash",
}



# --------------------------------------------------------------------------
# errors

class NicError(NetmapyError):
    """A NIC control-plane step that cannot be done as asked."""


class NicUnsupported(NicError):
    """The device cannot do a step (the driver answered EOPNOTSUPP, or the
    capability is fixed off).  Attributes: ``ifname``, ``driver``, ``step``,
    ``errno``, ``alternative`` (the software way, or '')."""

    def __init__(self, ifname, driver, step, err=errno.EOPNOTSUPP,
                 alternative="", detail=""):
        self.ifname, self.driver, self.step = ifname, driver, step
        self.errno = err
        self.alternative = alternative
        dev = "%s (%s)" % (ifname, driver) if driver else ifname
        why = detail or "the device does not support it"
        name = "EOPNOTSUPP" if err == errno.EOPNOTSUPP else \
            errno.errorcode.get(err, str(err))
        msg = "%s: %s: %s (%s: %s)" % (dev, step, why, name, os.strerror(err))
        if alternative:
            msg += "; %s" % alternative
        super().__init__(msg)


class NicBusy(PortBusy):
    """The interface is controlled by another live process (its journal)."""


def _alternative(kind, drv, ifname):
    d = drv or "this device"
    return {
        "ntuple": "%s has no ntuple flow steering: use the xdp backend's "
                  "software steering (--steer EXPR)" % d,
        "rss": "%s has no RSS indirection table: steer the flow to a queue "
               "in software with the xdp backend (--steer EXPR) instead" % d,
        "irq": "%s has no interrupts of its own (its packets are processed "
               "in the sender's softirq): pin the workers to cores instead "
               "(the supervisor does), or spread receive processing with RPS "
               "(echo MASK > /sys/class/net/%s/queues/rx-N/rps_cpus)"
               % (d, ifname),
        "channels": "%s cannot change its channel count: create the "
                    "interface with the queues you need" % d,
        "features": "%s cannot change this offload" % d,
    }.get(kind, "")


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


def online_cpus():
    try:
        return parse_cpulist(_read("/sys/devices/system/cpu/online"))
    except OSError:
        return sorted(os.sched_getaffinity(0))


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


def _proc_start_time(pid):
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


def _boot_id():
    try:
        return _read("/proc/sys/kernel/random/boot_id")
    except OSError:
        return ""


def _pad(b, n):
    return bytes(b) + bytes(n - len(b))


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
# journal

def journal_dir():
    """nic/ in netmapy's run directory (netmapy.rundir; not created here)."""
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


def _owner_alive(owner):
    """Is the process described by ``owner`` (pid, start_time, boot_id)
    still running?"""
    if not owner:
        return False
    if owner.get("boot_id") and owner.get("boot_id") != _boot_id():
        return False
    st = _proc_start_time(int(owner.get("pid", 0)))
    return st is not None and st == owner.get("start_time")


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
    pid = os.getpid()
    return {"pid": pid, "start_time": _proc_start_time(pid), "boot_id": _boot_id(),
            "argv": " ".join(sys.argv)[:200]}


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
        if owner.get("boot_id") and owner["boot_id"] != _boot_id():
            self._delete()
            return ["# %s: journal is from an earlier boot: nothing to undo" % ifname]
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
        self._sock = None
        self._feature_names = None
        with _enter_netns(netns):
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.netns_ino = current_netns_id()
        try:
            self.ifindex = self._ifindex()
            drv = self._drvinfo()
        except BaseException:
            self._sock.close()
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
        if self._sock is not None:
            self._sock.close()
            self._sock = None

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
    def _ethtool(self, payload, step, kind=None):
        """SIOCETHTOOL with ``payload`` (the ethtool struct); returns (rc,
        the struct as the kernel left it)."""
        if self._sock is None:
            raise NicError("%s: this Nic is closed" % self.ifname)
        buf = ctypes.create_string_buffer(bytes(payload), len(payload))
        ifr = bytearray(_pad(struct.pack("16sP", self.ifname.encode(),
                                         ctypes.addressof(buf)), _IFREQ_SIZE))
        try:
            rc = fcntl.ioctl(self._sock.fileno(), SIOCETHTOOL, ifr, True)
        except OSError as e:
            raise self._error(e, step, kind) from None
        return rc, buf.raw

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
        ifr = bytearray(_pad(struct.pack("16s", self.ifname.encode()), _IFREQ_SIZE))
        try:
            fcntl.ioctl(self._sock.fileno(), SIOCGIFINDEX, ifr, True)
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise InterfaceNotFound(self.ifname, self._where(self.netns)) from None
            raise
        return struct.unpack_from("i", ifr, 16)[0]

    def _drvinfo(self):
        try:
            _, out = self._ethtool(struct.pack(_DRVINFO, ETHTOOL_GDRVINFO, *([b""] * 6),
                                               0, 0, 0, 0, 0), "reading driver info")
        except InterfaceError:
            raise
        except OSError:
            return {"driver": "", "bus_info": ""}
        f = struct.unpack(_DRVINFO, out)
        s = lambda b: b.split(b"\0", 1)[0].decode(errors="replace")
        return {"driver": s(f[1]), "version": s(f[2]), "bus_info": s(f[4])}

    # -- channels ------------------------------------------------------
    def _get_channels(self, step="reading the channel counts"):
        _, out = self._ethtool(struct.pack(_CHANNELS, ETHTOOL_GCHANNELS, *([0] * 8)),
                               step, "channels")
        v = struct.unpack(_CHANNELS, out)[1:]
        keys = ("rx", "tx", "other", "combined")
        return {"max": dict(zip(keys, v[:4])), "current": dict(zip(keys, v[4:]))}

    def _set_channels_raw(self, cur):
        ch = self._get_channels()
        m = ch["max"]
        self._ethtool(struct.pack(_CHANNELS, ETHTOOL_SCHANNELS, m["rx"], m["tx"], m["other"],
                                  m["combined"], cur["rx"], cur["tx"], cur["other"],
                                  cur["combined"]),
                      "setting the channel counts", "channels")

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
        _, out = self._ethtool(struct.pack(_RXNFC, ETHTOOL_GRXRINGS, 0, 0, b"", 0),
                               step, "rss")
        return struct.unpack(_RXNFC, out)[2]

    def rss_indir(self, step="reading the RSS indirection table"):
        """The RSS indirection table (ETHTOOL_GRXFHINDIR): queue per entry."""
        _, out = self._ethtool(struct.pack(_RXFH_INDIR, ETHTOOL_GRXFHINDIR, 0), step, "rss")
        size = struct.unpack(_RXFH_INDIR, out)[1]
        if size == 0:
            raise NicUnsupported(self.ifname, self.driver, step, errno.EOPNOTSUPP,
                                 _alternative("rss", self.driver, self.ifname),
                                 "the device has no RSS indirection table")
        _, out = self._ethtool(struct.pack(_RXFH_INDIR, ETHTOOL_GRXFHINDIR, size)
                               + bytes(4 * size), step, "rss")
        return list(struct.unpack_from("=%dI" % size, out, 8))

    def rss_key(self):
        """(hash key as 'aa:bb:...', hash function bits) via ETHTOOL_GRSSH,
        or (None, None) where the device does not say."""
        try:
            _, out = self._ethtool(struct.pack(_RXFH, ETHTOOL_GRSSH, 0, 0, 0, 0, 0),
                                   "reading the RSS hash key", "rss")
            _, _, isz, ksz, hfunc, _ = struct.unpack(_RXFH, out)
            if ksz == 0:
                return None, hfunc
            _, out = self._ethtool(struct.pack(_RXFH, ETHTOOL_GRSSH, 0, isz, ksz, 0, 0)
                                   + bytes(4 * isz + ksz), "reading the RSS hash key", "rss")
            hdr = struct.calcsize(_RXFH)
            key = out[hdr + 4 * isz: hdr + 4 * isz + ksz]
            return ":".join("%02x" % b for b in key), out[16]
        except (NicUnsupported, OSError):
            return None, None

    def _set_indir(self, table):
        self._ethtool(struct.pack(_RXFH_INDIR, ETHTOOL_SRXFHINDIR, len(table))
                      + struct.pack("=%dI" % len(table), *table),
                      "setting the RSS indirection table", "rss")

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
    def _rxnfc(self, cmd, step, fs=b"", loc=0, data=0, rule_cnt=0, extra=b""):
        if fs:
            fs = bytearray(fs)
            struct.pack_into("=I", fs, LAYOUT["offsetof"]["ethtool_rx_flow_spec.location"], loc)
        else:
            fs = struct.pack(_FLOW_SPEC, 0, b"", b"", b"", b"", 0, loc)
        return self._ethtool(struct.pack(_RXNFC, cmd, 0, data, bytes(fs), rule_cnt) + extra,
                             step, "ntuple")

    def _rule_table(self, step="reading the ntuple rules"):
        """(table size, driver picks locations itself, [locations])."""
        _, out = self._rxnfc(ETHTOOL_GRXCLSRLCNT, step)
        _, _, data, _, cnt = struct.unpack(_RXNFC, out[:192])
        special = bool(data & RX_CLS_LOC_SPECIAL)
        size = data & ~RX_CLS_LOC_SPECIAL & 0xffffffff
        locs = []
        if cnt:
            _, out = self._rxnfc(ETHTOOL_GRXCLSRLALL, step, rule_cnt=cnt,
                                 extra=bytes(4 * cnt))
            _, _, size2, _, cnt2 = struct.unpack(_RXNFC, out[:192])
            size = size2 or size
            locs = list(struct.unpack_from("=%dI" % cnt2, out, _RXNFC_RULE_LOCS))
        return size, special, locs

    def _get_rule(self, loc, step="reading an ntuple rule"):
        _, out = self._rxnfc(ETHTOOL_GRXCLSRULE, step, loc=loc)
        return struct.unpack(_RXNFC, out[:192])[3]

    def _del_rule(self, loc):
        self._rxnfc(ETHTOOL_SRXCLSRLDEL, "deleting ntuple rule %d" % loc, loc=loc)

    def _ins_rule(self, fs, loc=None):
        if loc is None:
            loc = struct.unpack_from("=I", fs, LAYOUT["offsetof"]["ethtool_rx_flow_spec.location"])[0]
        _, out = self._rxnfc(ETHTOOL_SRXCLSRLINS, "inserting an ntuple rule", fs=fs, loc=loc)
        return struct.unpack_from("=I", out, 16 + LAYOUT["offsetof"]["ethtool_rx_flow_spec.location"])[0]

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
        struct.pack_into("=I", fs, LAYOUT["offsetof"]["ethtool_rx_flow_spec.location"], where)
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
        if self._feature_names is None:
            step = "reading the feature names"
            _, out = self._ethtool(struct.pack(_SSET_INFO, ETHTOOL_GSSET_INFO, 0,
                                               1 << ETH_SS_FEATURES) + bytes(4), step,
                                   "features")
            mask = struct.unpack_from(_SSET_INFO, out)[2]
            if not mask & (1 << ETH_SS_FEATURES):
                raise NicUnsupported(self.ifname, self.driver, step)
            n = struct.unpack_from("=I", out, struct.calcsize(_SSET_INFO))[0]
            _, out = self._ethtool(struct.pack(_GSTRINGS, ETHTOOL_GSTRINGS, ETH_SS_FEATURES, n)
                                   + bytes(ETH_GSTRING_LEN * n), step, "features")
            n = struct.unpack_from(_GSTRINGS, out)[2]
            base = struct.calcsize(_GSTRINGS)
            self._feature_names = [
                out[base + i * ETH_GSTRING_LEN: base + (i + 1) * ETH_GSTRING_LEN]
                .split(b"\0", 1)[0].decode() for i in range(n)]
        return self._feature_names

    def _feature_blocks(self):
        names = self._feature_strings()
        words = (len(names) + 31) // 32
        _, out = self._ethtool(struct.pack(_FEATURES_HDR, ETHTOOL_GFEATURES, words)
                               + bytes(16 * words), "reading the features", "features")
        base = struct.calcsize(_FEATURES_HDR)
        return names, [struct.unpack_from(_GET_FEATURES_BLOCK, out, base + 16 * i)
                       for i in range(words)]

    def features(self):
        """{kernel feature name: {'active', 'requested', 'fixed'}} (ethtool -k)."""
        names, blocks = self._feature_blocks()
        out = {}
        for i, name in enumerate(names):
            if not name:
                continue
            avail, req, act, never = blocks[i // 32]
            bit = 1 << (i % 32)
            out[name] = {"active": bool(act & bit), "requested": bool(req & bit),
                         "fixed": not (avail & bit) or bool(never & bit)}
        return out

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
        names = self._feature_strings()
        words = (len(names) + 31) // 32
        valid, req = [0] * words, [0] * words
        for name, on in wanted.items():
            i = names.index(name)
            valid[i // 32] |= 1 << (i % 32)
            if on:
                req[i // 32] |= 1 << (i % 32)
        payload = struct.pack(_FEATURES_HDR, ETHTOOL_SFEATURES, words) + b"".join(
            struct.pack(_SET_FEATURES_BLOCK, v, r) for v, r in zip(valid, req))
        rc, _ = self._ethtool(payload, "changing offloads", "features")
        return rc

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
        d = self.device_dir()
        if d is None:
            return None
        try:
            n = int(_read(os.path.join(d, "numa_node")))
        except (OSError, ValueError):
            return None
        return n if n >= 0 else None

    def numa_cpus(self):
        n = self.numa_node()
        if n is None:
            return online_cpus()
        try:
            return parse_cpulist(_read("/sys/devices/system/node/node%d/cpulist" % n))
        except OSError:
            return online_cpus()

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

def _addr(text, v6):
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NicError("bad %s address %r" % ("IPv6" if v6 else "IPv4", text)) from None
    if (net.version == 6) != v6:
        raise NicError("address %r is IPv%d, the flow type wants IPv%d"
                       % (text, net.version, 6 if v6 else 4))
    return net


def _port(p, what):
    if p is None:
        return None
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 65535:
        raise NicError("bad %s %r: a port is 0..65535" % (what, p))
    return p


def encode_flow_spec(flow_type, src=None, dst=None, sport=None, dport=None, queue=0):
    """(struct ethtool_rx_flow_spec bytes, ethtool -N arguments)."""
    if flow_type not in FLOW_TYPES:
        raise NicError("unknown flow type %r (one of: %s)"
                       % (flow_type, " ".join(FLOW_TYPES)))
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < -1:
        raise NicError("bad queue %r: a queue number, or -1 to drop" % (queue,))
    ft = FLOW_TYPES[flow_type]
    v6 = flow_type.endswith("6")
    sport, dport = _port(sport, "source port"), _port(dport, "destination port")
    args = ["flow-type", flow_type]
    alen = 16 if v6 else 4
    h = {"src": bytes(alen), "dst": bytes(alen)}
    m = {"src": bytes(alen), "dst": bytes(alen)}
    for key, val, opt in (("src", src, "src-ip"), ("dst", dst, "dst-ip")):
        if val is None:
            continue
        net = _addr(val, v6)
        h[key] = net.network_address.packed
        m[key] = net.netmask.packed
        args += [opt, str(net.network_address)]
        if net.prefixlen != net.max_prefixlen:
            args += ["m", str(ipaddress.ip_address(bytes(~b & 0xff for b in net.netmask.packed)))]
    hp = {"s": struct.pack("!H", sport or 0), "d": struct.pack("!H", dport or 0)}
    mp = {"s": b"\xff\xff" if sport is not None else b"\0\0",
          "d": b"\xff\xff" if dport is not None else b"\0\0"}
    if sport is not None:
        args += ["src-port", str(sport)]
    if dport is not None:
        args += ["dst-port", str(dport)]
    if ft == IPV4_USER_FLOW:
        if sport is not None or dport is not None:
            raise NicError("flow type ip4 matches addresses only: use tcp4/udp4/sctp4 "
                           "for ports")
        hu = struct.pack(_USRIP4, h["src"], h["dst"], b"", 0, ETH_RX_NFC_IP4, 0)
        mu = struct.pack(_USRIP4, m["src"], m["dst"], b"", 0, 0, 0)
    else:
        fmt = _TCPIP6 if v6 else _TCPIP4
        hu = struct.pack(fmt, h["src"], h["dst"], hp["s"], hp["d"], 0)
        mu = struct.pack(fmt, m["src"], m["dst"], mp["s"], mp["d"], 0)
    cookie = RX_CLS_FLOW_DISC if queue == -1 else queue
    args += ["action", str(queue)]
    fs = struct.pack(_FLOW_SPEC, ft, hu, b"", mu, b"", cookie, 0)
    return fs, args


def decode_flow_spec(fs):
    """struct ethtool_rx_flow_spec bytes -> dict."""
    ft, hu, hext, mu, mext, cookie, loc = struct.unpack(_FLOW_SPEC, fs)
    base = ft & ~(FLOW_EXT | FLOW_MAC_EXT | FLOW_RSS)
    d = {"flow_type": _FLOW_NAMES.get(base, "0x%x" % base), "src": None, "dst": None,
         "sport": None, "dport": None,
         "queue": -1 if cookie == RX_CLS_FLOW_DISC else cookie & 0xffffffff,
         "loc": loc}
    if base in (TCP_V4_FLOW, UDP_V4_FLOW, SCTP_V4_FLOW, TCP_V6_FLOW, UDP_V6_FLOW,
                SCTP_V6_FLOW, IPV4_USER_FLOW):
        v6 = base in (TCP_V6_FLOW, UDP_V6_FLOW, SCTP_V6_FLOW)
        if base == IPV4_USER_FLOW:
            hs, hd, _, _, _, _ = struct.unpack_from(_USRIP4, hu)
            ms, md, _, _, _, _ = struct.unpack_from(_USRIP4, mu)
            hps = hpd = mps = mpd = b"\0\0"
        else:
            fmt = _TCPIP6 if v6 else _TCPIP4
            hs, hd, hps, hpd, _ = struct.unpack_from(fmt, hu)
            ms, md, mps, mpd, _ = struct.unpack_from(fmt, mu)
        for key, a, msk in (("src", hs, ms), ("dst", hd, md)):
            if any(msk):
                plen = bin(int.from_bytes(msk, "big")).count("1")
                ip = ipaddress.ip_address(a)
                d[key] = str(ip) if plen == len(a) * 8 else "%s/%d" % (ip, plen)
        if any(mps):
            d["sport"] = struct.unpack("!H", hps)[0]
        if any(mpd):
            d["dport"] = struct.unpack("!H", hpd)[0]
    return d


def _rule_text(d):
    """ethtool -N arguments describing a decoded rule."""
    a = ["flow-type", d["flow_type"]]
    for key, opt in (("src", "src-ip"), ("dst", "dst-ip")):
        if d.get(key):
            net = ipaddress.ip_network(d[key], strict=False)
            a += [opt, str(net.network_address)]
            if net.prefixlen != net.max_prefixlen:
                a += ["m", str(ipaddress.ip_address(
                    bytes(~b & 0xff for b in net.netmask.packed)))]
    if d.get("sport") is not None:
        a += ["src-port", str(d["sport"])]
    if d.get("dport") is not None:
        a += ["dst-port", str(d["dport"])]
    a += ["action", str(d["queue"])]
    if d.get("loc") is not None:
        a += ["loc", str(d["loc"])]
    return " ".join(a)


def _rule_identity(fs):
    """What a rule matches and where it sends (location excluded)."""
    d = decode_flow_spec(fs)
    d.pop("loc", None)
    return tuple(sorted(d.items()))
