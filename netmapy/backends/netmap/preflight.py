"""Preflight checks for netmap ports: what netmap users keep tripping over,
each with the exact fix.

    findings = check("netmap:eth3~4")            # or check_request(req)
    for f in findings:
        print(f)                                 # "eth3: ... -- fix: ethtool -K ..."

Checks (``Finding.check``):

``module``   /dev/netmap missing (module not loaded), or an unknown admode.
``link``     interface down (error), no carrier (warning).
``offload``  offloads that break netmap: with host rings or transparent
             forwarding (``^``, ``*``, ``^N``, ``forward=True``) the host stack
             must not hand netmap GSO/TSO super-frames or frames with checksums
             left to the NIC, nor merge received frames (GRO/LRO): the fix is
             netmap's own ``ethtool -K IF tx off rx off gso off tso off gro off
             lro off`` (only the ones that are on, and not fixed).  On NIC rings
             alone hardware LRO / GRO-HW merges frames beyond a netmap buffer;
             with the emulated adapter software GRO does the same.
``vlan``     RX VLAN offload strips tags netmap applications then cannot see.
``promisc``  bridging needs promiscuous mode (``bridge=True``).
``adapter``  emulated (generic) adapter instead of native: how to tell is
             below.
``queue``    the ring ``-N`` / ``~N`` / ``^N`` names does not exist.
``rings``    ring/slot/buffer counts the netmap memory pools cannot hold, and
             ``@conf`` counts a NIC ignores (its rings are its hardware's).

Native or emulated?  netmap picks, per interface, when the first port opens
(``netmap_get_hw_na``): the native adapter if the interface's driver is one
of netmap's patched drivers *and that patched module is the one loaded*,
unless ``admode`` forces generic; otherwise the emulated (generic) adapter
(slower: it works on skbs).  From user space:

* ``/sys/module/netmap/parameters/admode``: 0 best (native, else emulated),
  1 native only (open fails with EOPNOTSUPP), 2 always emulated;
* the driver name (ethtool ``GDRVINFO``) against the drivers netmap ships
  patches for (``LINUX/configure`` of luigirizzo/netmap: e1000, e1000e, igb,
  igc, ixgbe, ixgbevf, i40e, ice, mlx5, virtio_net, vmxnet3, r8169,
  forcedeth, veth, stmmac; ``NATIVE_DRIVERS``);
* whether the loaded driver module is netmap's build: a patched driver
  calls ``netmap_attach()``, so it depends on the netmap module and is
  listed in ``/sys/module/netmap/holders/``;
* the kernel log says "Emulated adapter for IF created" when netmap falls
  back (``dmesg | grep -i 'emulated adapter'``).

Link flaps: switching rings to netmap mode makes most drivers reset the
NIC, so the carrier drops for a moment right after registering (seconds on
some NICs; a switch running spanning tree may block the port much longer).
``wait_for_link()`` waits for the carrier to come back and stay up; the
netmap backend calls it after registering a NIC (``link_timeout=``).

Command line (netmapy/tools/preflight.py): ``python -m netmapy.preflight
[--netns NS] [--bridge] [--forward] NAME...`` prints the findings and
exits 1 if any is an error.
"""

import errno
import os
import subprocess
import time
from dataclasses import dataclass

from netmapy.backends.netmap import req as netmap_req
from netmapy.errors import InterfaceError, InterfaceNotFound, NetmapyError
from netmapy.host import ethtool as _ethtool_codec, iface
from netmapy.host.netns import netns as _enter_netns
from netmapy.names import PortName, parse_name

__all__ = [
    "Finding", "PreflightError", "LinkTimeout", "LinkWait", "check",
    "check_request", "features", "parse_ethtool_k", "channels", "ringparam",
    "module_state", "classify_adapter", "wait_for_link", "carrier",
    "NATIVE_DRIVERS", "NETMAP_DEFAULTS", "fix_commands",
]

SYSFS = "/sys"

# -------------------------------------------------------------- findings


@dataclass(frozen=True)
class Finding:
    """One thing wrong (or worth knowing) about a port, with its fix."""

    check: str          # module, link, offload, vlan, promisc, adapter, queue, rings
    severity: str       # "error", "warning" or "info"
    ifname: str
    message: str
    fix: str = ""       # shell command(s), one per line; '' if none

    def __str__(self):
        s = "%s: %s: %s" % (self.severity, self.ifname, self.message)
        if self.fix:
            s += " -- fix: " + "; ".join(self.fix.splitlines())
        return s


class PreflightError(NetmapyError):
    """Preflight found errors (``findings``)."""

    def __init__(self, name, findings):
        self.findings = list(findings)
        super().__init__("%s: preflight failed:\n  %s" % (
            name, "\n  ".join(str(f) for f in self.findings)))


class LinkTimeout(InterfaceError):
    """No carrier within the timeout after netmap registered the interface."""

    def __init__(self, ifname, timeout, flaps, fix):
        self.ifname, self.timeout, self.flaps, self.fix = ifname, timeout, flaps, fix
        super().__init__(
            errno.ENOLINK,
            "interface %r has no carrier %.1f s after netmap took it over "
            "(drivers reset the link when rings switch to netmap mode; the link "
            "went down %d time(s) while waiting) -- fix: %s" % (
                ifname, timeout, flaps, fix))


def fix_commands(findings):
    """The fix commands of the findings, in order, without duplicates."""
    out = []
    for f in findings:
        for line in f.fix.splitlines():
            if line and line not in out:
                out.append(line)
    return out


def _prefix(ns):
    return "ip netns exec %s " % ns if ns else ""


# ------------------------------------------------------- ethtool (ioctl)
# through netmapy.host.ethtool, the one codec of the ethtool structs

def _ethtool(ifname):
    return _ethtool_codec.Ethtool(ifname)


def _not_found(e, ifname):
    if e.errno == errno.ENODEV:
        return InterfaceNotFound(ifname)
    return e


@dataclass(frozen=True)
class Feature:
    available: bool     # the device can change it ("not fixed")
    requested: bool
    active: bool
    fixed: bool


def features(ifname):
    """{kernel feature name: Feature} of ifname, by ETHTOOL_GFEATURES
    (the names ``ethtool -k`` shows in its indented lines, e.g. rx-gro,
    rx-lro, tx-tcp-segmentation, tx-checksum-ip-generic, rx-checksum)."""
    try:
        with _ethtool(ifname) as et:
            feats = et.features()
    except OSError as e:
        raise _not_found(e, ifname) from None
    return {n: Feature(f["available"], f["requested"], f["active"], f["fixed"])
            for n, f in feats.items()}


def parse_ethtool_k(text):
    """{kernel feature name: Feature} from ``ethtool -k IF`` output
    (``available`` is 'not fixed'; ``requested`` is not shown and is taken
    as ``active`` unless the line says '[requested on]' / '[requested off]')."""
    out = {}
    for line in text.splitlines():
        if ":" not in line or line.startswith("Features for"):
            continue
        name, _, rest = line.strip().partition(":")
        name = name.strip()
        if name in _ethtool_codec.ETHTOOL_K_GROUPS:
            continue
        name = _ethtool_codec.ETHTOOL_K_ALIASES.get(name, name)
        words = rest.split()
        if not words or words[0] not in ("on", "off"):
            continue
        active = words[0] == "on"
        fixed = "[fixed]" in rest
        requested = active
        if "[requested on]" in rest:
            requested = True
        elif "[requested off]" in rest:
            requested = False
        out[name] = Feature(not fixed, requested, active, fixed)
    return out


def features_via_ethtool(ifname, netns=None):
    """features() by running ``[ip netns exec NS] ethtool -k IF``."""
    argv = (["ip", "netns", "exec", netns] if netns else []) + ["ethtool", "-k", ifname]
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise OSError(errno.EIO, "%s: %s" % (" ".join(argv), out.stderr.strip()))
    return parse_ethtool_k(out.stdout)


def channels(ifname):
    """(rx, tx) queue counts as netmap counts rings (ETHTOOL_GCHANNELS:
    rx/tx counts, else combined), or None if the driver has no channels."""
    try:
        with _ethtool(ifname) as et:
            cur = et.channels()["current"]
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise _not_found(e, ifname) from None
    return (cur["rx"] or cur["combined"], cur["tx"] or cur["combined"])


def ringparam(ifname):
    """(rx, tx) descriptor counts (ETHTOOL_GRINGPARAM, current or else
    maximum, as netmap reads them), or None if the driver does not say."""
    try:
        with _ethtool(ifname) as et:
            rp = et.ringparam()
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise _not_found(e, ifname) from None
    cur, mx = rp["current"], rp["max"]
    return (cur["rx"] or mx["rx"], cur["tx"] or mx["tx"])


# ------------------------------------------------------ the netmap module

#: ethtool driver name -> the netmap driver patch that makes it native
NATIVE_DRIVERS = {
    "e1000": "e1000", "e1000e": "e1000e", "igb": "igb", "igc": "igc",
    "ixgbe": "ixgbe", "ixgbevf": "ixgbevf", "i40e": "i40e", "ice": "ice",
    "mlx5_core": "mlx5", "virtio_net": "virtio_net", "vmxnet3": "vmxnet3",
    "r8169": "r8169", "forcedeth": "forcedeth", "veth": "veth",
    "st_gmac": "stmmac", "st_mac100": "stmmac", "stmmac": "stmmac",
    "ptnet": "ptnetmap",
}

#: the kernel module a driver name lives in, where the names differ
_DRIVER_MODULE = {"st_gmac": "stmmac", "st_mac100": "stmmac",
                  "virtio_net": "virtio_net", "mlx5_core": "mlx5_core"}

#: netmap's defaults (sys/dev/netmap/netmap_mem2.c, netmap.c) with 4 KiB pages
NETMAP_DEFAULTS = {
    "buf_num": 163840, "buf_size": 2048, "ring_num": 200,
    "ring_size": 9 * 4096, "if_num": 100, "if_size": 1024,
    "generic_ringsize": 1024, "admode": 0, "fwd": 0,
}

ADMODES = {0: "best (native if the driver has it, else emulated)",
           1: "native only", 2: "emulated (generic) always"}


@dataclass(frozen=True)
class ModuleState:
    loaded: bool                 # /sys/module/netmap exists
    device: bool                 # /dev/netmap exists
    params: dict                 # parameters read (name -> int)
    holders: frozenset           # modules using netmap (patched drivers)

    def param(self, name):
        return self.params.get(name, NETMAP_DEFAULTS.get(name))


def module_state(sysfs=None, dev="/dev/netmap"):
    """What /sys/module/netmap says (an unloaded module reads as defaults)."""
    root = os.path.join(sysfs or SYSFS, "module", "netmap")
    loaded = os.path.isdir(root)
    params = {}
    holders = frozenset()
    if loaded:
        pdir = os.path.join(root, "parameters")
        for n in NETMAP_DEFAULTS:
            try:
                with open(os.path.join(pdir, n)) as f:
                    params[n] = int(f.read().strip())
            except (OSError, ValueError):
                pass
        try:
            holders = frozenset(os.listdir(os.path.join(root, "holders")))
        except OSError:
            pass
    return ModuleState(loaded, os.path.exists(dev), params, holders)


def classify_adapter(driver, state):
    """('native'|'emulated'|'unknown', Finding or None) for an interface
    whose ethtool driver name is `driver`, given a ModuleState."""
    patch = NATIVE_DRIVERS.get(driver)
    module = _DRIVER_MODULE.get(driver, driver)
    admode = state.param("admode")
    pdir = "/sys/module/netmap/parameters"
    if state.loaded and admode == 2:
        return "emulated", (
            "warning", "dev.netmap.admode=2 forces the emulated (generic) adapter "
            "for every interface (slower, works on skbs)",
            "echo 0 > %s/admode" % pdir)
    if patch is None:
        what = ("driver %r has no native netmap support: netmap will use the "
                "emulated (generic) adapter (slower; GRO must be off)" % driver
                if driver else "no driver reported: netmap will use the emulated "
                "(generic) adapter")
        if state.loaded and admode == 1:
            return "emulated", (
                "error", what + ", and admode=1 (native only) makes the open fail",
                "echo 0 > %s/admode" % pdir)
        return "emulated", ("warning", what, "")
    if not state.loaded:
        return "unknown", (
            "info", "driver %r has a native netmap patch (%s); whether it is used "
            "depends on loading netmap's build of it" % (driver, patch), "")
    if module in state.holders:
        return "native", None
    fix = ("cd netmap && ./configure --drivers=%s && make && rmmod %s && "
           "insmod ./%s/%s.ko   # netmap's build of the driver (LINUX/README.md)"
           % (patch, module, patch, module))
    sev = "error" if admode == 1 else "warning"
    if admode == 1:
        fix += "\necho 0 > %s/admode   # or accept the emulated adapter" % pdir
    return "emulated", (
        sev, "driver %r is not netmap's patched build (module %r does not use the "
        "netmap module): netmap will use the emulated (generic) adapter" % (
            driver, module) + (", and admode=1 makes the open fail"
                               if admode == 1 else ""), fix)


# ---------------------------------------------------------------- link

def carrier(ifname):
    """(up, carrier) of ifname in the calling thread's namespace."""
    i = iface.info(ifname)
    return i.up, bool(i.flags & iface.IFF_RUNNING)


@dataclass
class LinkWait:
    waited: float
    flaps: int
    up: bool


def wait_for_link(ifname, timeout=5.0, settle=0.2, interval=0.02, netns=None):
    """Wait until ifname has carrier and kept it for `settle` seconds.

    Returns a LinkWait (seconds waited, carrier losses seen); raises
    LinkTimeout (errno ENOLINK, with the fix) after `timeout` seconds.
    """
    with _enter_netns(netns):
        start = time.monotonic()
        deadline = start + timeout
        flaps = 0
        since = None
        was = None
        while True:
            up, has = carrier(ifname)
            now = time.monotonic()
            if has:
                if since is None:
                    since = now
                if now - since >= settle:
                    return LinkWait(now - start, flaps, True)
            else:
                if was:
                    flaps += 1
                since = None
            was = has
            if now >= deadline:
                if has:          # up, just not settled yet
                    return LinkWait(now - start, flaps, True)
                fix = ("bring the interface up (`%sip link set dev %s up`) and "
                       "check the cable and the peer (`%sethtool %s`); a switch "
                       "port running spanning tree can stay blocked ~30 s after a "
                       "flap (make it an edge/portfast port), or wait longer "
                       "(link_timeout=SECONDS)" % (
                           _prefix(netns), ifname, _prefix(netns), ifname)
                       if not up else
                       "check the cable and the peer (`%sethtool %s`); a switch port "
                       "running spanning tree can stay blocked ~30 s after a flap "
                       "(make it an edge/portfast port), or wait longer "
                       "(link_timeout=SECONDS)" % (_prefix(netns), ifname))
                raise LinkTimeout(ifname, timeout, flaps, fix)
            time.sleep(min(interval, max(0.0, deadline - now)))


# --------------------------------------------------------------- checks

# kernel feature name -> the `ethtool -K` word that turns it off
_OFF_WORD = {
    "rx-gro": "gro", "rx-lro": "lro",
    "tx-tcp-segmentation": "tso", "tx-tcp6-segmentation": "tso",
    "tx-tcp-ecn-segmentation": "tso", "tx-tcp-mangleid-segmentation": "tso",
    "tx-generic-segmentation": "gso",
    "rx-checksum": "rx",
    "tx-checksum-ipv4": "tx", "tx-checksum-ip-generic": "tx",
    "tx-checksum-ipv6": "tx", "tx-checksum-sctp": "tx",
    "tx-checksum-fcoe-crc": "tx",
    "rx-gro-hw": "rx-gro-hw", "tx-udp-segmentation": "tx-udp-segmentation",
    "rx-vlan-hw-parse": "rxvlan",
}
_WORD_ORDER = ["tx", "rx", "gso", "tso", "gro", "lro", "rx-gro-hw",
               "tx-udp-segmentation", "rxvlan"]
_WHY = {
    "tx": "the host stack leaves checksums to the NIC (frames reaching the "
          "host RX ring carry no valid checksum, and are dropped by the "
          "receiver when netmap sends them)",
    "rx": "frames passed to the host stack are trusted as checksummed by the "
          "NIC",
    "gso": "the host stack sends GSO super-frames (up to 64 KB) that do not "
           "fit netmap buffers and are dropped",
    "tso": "the host stack sends TSO super-frames that do not fit netmap "
           "buffers and are dropped",
    "gro": "received frames are merged into super-frames that do not fit "
           "netmap buffers",
    "lro": "the NIC merges received frames into super-frames that do not fit "
           "netmap buffers",
    "rx-gro-hw": "the NIC merges received frames (hardware GRO)",
    "tx-udp-segmentation": "the host stack sends UDP GSO super-frames",
    "rxvlan": "the NIC strips VLAN tags, which netmap applications then do "
              "not see",
}


def _offload_findings(ifname, feats, words, netns, context, severity="error"):
    on = {}
    fixed = {}
    for fname, word in _OFF_WORD.items():
        if word not in words:
            continue
        f = feats.get(fname)
        if f is None or not f.active:
            continue
        (fixed if f.fixed else on).setdefault(word, []).append(fname)
    out = []
    if on:
        ws = [w for w in _WORD_ORDER if w in on]
        out.append(Finding(
            "offload", severity, ifname,
            "%s: %s on (%s)" % (context, ", ".join(ws), "; ".join(
                "%s: %s" % (w, _WHY[w]) for w in ws)),
            "%sethtool -K %s %s" % (_prefix(netns), ifname,
                                     " ".join("%s off" % w for w in ws))))
    for w in [w for w in _WORD_ORDER if w in fixed]:
        out.append(Finding(
            "offload", "warning", ifname,
            "%s: %s is on and fixed (the driver cannot turn it off): %s" % (
                context, ", ".join(fixed[w]), _WHY[w]), ""))
    return out


def _name_to_request(name, **kw):
    if isinstance(name, netmap_req.RegisterRequest):
        return name
    if isinstance(name, str) and ":" not in name:
        name = PortName.interface(name)       # an interface, by its Linux name
    p = name if isinstance(name, PortName) else parse_name(name)
    if p.backend not in ("netmap", "vale"):
        p = p.with_backend("netmap")
    return netmap_req.translate(p, **kw)


def check(name, netns=None, bridge=False, forward=False, sysfs=None,
          use_ethtool_cli=False):
    """Preflight findings for a port name (``netmap:eth3~4``, ``vale0:p``, or
    a bare interface name), in namespace `netns` (fixes say so)."""
    req = _name_to_request(name)
    return check_request(req, netns=netns, bridge=bridge, forward=forward,
                         sysfs=sysfs, use_ethtool_cli=use_ethtool_cli)


def check_request(req, netns=None, bridge=False, forward=False, sysfs=None,
                  use_ethtool_cli=False):
    """Preflight findings for a netmap_req.RegisterRequest."""
    state = module_state(sysfs)
    out = []
    if not state.device:
        out.append(Finding(
            "module", "error", req.ifname,
            "/dev/netmap does not exist: the netmap kernel module is not loaded",
            "insmod netmap.ko   # from a netmap build (github.com/luigirizzo/netmap), "
            "or: modprobe netmap"))
    admode = state.param("admode")
    if state.loaded and admode not in ADMODES:
        out.append(Finding("module", "warning", req.ifname,
                           "dev.netmap.admode=%s is not a known mode (netmap "
                           "resets it to 0)" % admode,
                           "echo 0 > /sys/module/netmap/parameters/admode"))
    if req.kind != "nic":
        out.extend(_pool_findings(req, state, None, None, req.ifname))
        return out
    with _enter_netns(netns):
        return out + _nic_findings(req, state, netns, bridge, forward,
                                   use_ethtool_cli)


def _nic_findings(req, state, netns, bridge, forward, use_ethtool_cli):
    ifname = req.ifname
    out = []
    try:
        info = iface.info(ifname)
    except InterfaceNotFound as e:
        return [Finding("link", "error", ifname, str(e),
                        "%sip -br link   # pick an existing interface" % _prefix(netns))]
    pre = _prefix(netns)
    # -- link
    if not info.up:
        out.append(Finding("link", "error", ifname, "interface is down",
                           "%sip link set dev %s up" % (pre, ifname)))
    elif not info.flags & iface.IFF_RUNNING:
        out.append(Finding(
            "link", "warning", ifname, "interface is up but has no carrier (no link)",
            "check the cable/peer: %sethtool %s" % (pre, ifname)))
    # -- promiscuous mode for bridging
    if bridge and not info.promisc:
        out.append(Finding(
            "promisc", "error", ifname,
            "not in promiscuous mode: a bridge only receives frames addressed to "
            "this NIC's MAC (some drivers, e.g. i40e, also drop promiscuous mode "
            "when netmap resets the NIC: toggle it after the port is open)",
            "%sip link set dev %s promisc on" % (pre, ifname)))
    # -- adapter kind
    kind, f = classify_adapter(info.driver, state)
    if f is not None:
        out.append(Finding("adapter", f[0], ifname, f[1], f[2]))
    if info.driver == "veth" and kind in ("native", "unknown"):
        out.append(Finding(
            "adapter", "info", ifname,
            "native netmap on a veth needs its peer in native netmap mode too "
            "(netmap's veth datapath is a netmap pipe): traffic to or from a peer "
            "left to the kernel stack does not flow", ""))
    # -- offloads
    feats = None
    try:
        if use_ethtool_cli:
            feats = features_via_ethtool(ifname, netns)
        else:
            try:
                feats = features(ifname)
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                feats = features_via_ethtool(ifname, netns)
    except OSError as e:
        out.append(Finding("offload", "warning", ifname,
                           "cannot read the offload settings (%s)" % e,
                           "%sethtool -k %s" % (pre, ifname)))
    if feats is not None:
        host_path = req.binds_host or forward
        if host_path:
            ctx = ("host rings" if req.binds_host else "transparent forwarding "
                   "(NS_FORWARD)")
            out.extend(_offload_findings(
                ifname, feats, {"tx", "rx", "gso", "tso", "gro", "lro",
                                "tx-udp-segmentation"}, netns, ctx))
            if req.binds_nic or forward:
                out.extend(_offload_findings(ifname, feats, {"rx-gro-hw"}, netns,
                                             "NIC rings"))
        elif req.binds_nic:
            words = {"lro", "rx-gro-hw"}
            if kind != "native":
                words.add("gro")        # the emulated adapter sees skbs after GRO
            out.extend(_offload_findings(
                ifname, feats, words, netns,
                "NIC rings" + (" (emulated adapter)" if kind != "native" else "")))
        vlan = feats.get("rx-vlan-hw-parse")
        if vlan is not None and vlan.active and (req.binds_nic or host_path):
            out.append(Finding(
                "vlan", "info", ifname,
                "RX VLAN offload is on: %s" % _WHY["rxvlan"] +
                (" (it cannot be turned off on this device)" if vlan.fixed else ""),
                "" if vlan.fixed else "%sethtool -K %s rxvlan off" % (pre, ifname)))
    # -- queues and rings
    try:
        ch = channels(ifname)
    except OSError:
        ch = None
    if ch is None:
        ch = (info.num_rx_queues, info.num_tx_queues)
    try:
        rp = ringparam(ifname)
    except OSError:
        rp = None
    out.extend(_queue_findings(req, ch, netns))
    out.extend(_pool_findings(req, state, ch, rp, ifname, netns))
    return out


def _queue_findings(req, ch, netns):
    rxq, txq = ch
    n = req.nr_ringid
    pre = _prefix(netns)
    out = []
    if req.nr_mode == netmap_req.NR_REG_ONE_NIC:
        if req.single_rx or not req.binds_tx:
            have, kind = rxq, "RX"
        elif not req.binds_rx:
            have, kind = txq, "TX"
        else:
            have, kind = min(rxq, txq), "RX/TX"
        if n >= have:
            out.append(Finding(
                "queue", "error", req.ifname,
                "ring %d does not exist: the interface has %d %s queue(s) (0..%d)" % (
                    n, have, kind, have - 1),
                "%sethtool -L %s combined %d   # or rx %d, if the driver counts "
                "RX queues apart" % (pre, req.ifname, n + 1, n + 1)))
    return out


def _pool_findings(req, state, ch, rp, ifname, netns=None):
    out = []
    pdir = "/sys/module/netmap/parameters"
    src = "" if state.loaded else " (netmap's defaults: module not loaded)"
    conf_rings = req.nr_tx_rings or req.nr_rx_rings
    conf_slots = req.nr_tx_slots or req.nr_rx_slots
    pre = _prefix(netns)
    if req.kind == "nic":
        if conf_rings:
            out.append(Finding(
                "rings", "warning", ifname,
                "@conf ring counts are ignored for a NIC: its netmap rings are its "
                "hardware queues (%s)" % ("%d RX / %d TX" % ch if ch else "see ethtool -l"),
                "%sethtool -L %s combined %d" % (pre, ifname, conf_rings)))
        if conf_slots and rp is not None and (
                (req.nr_rx_slots and req.nr_rx_slots != rp[0]) or
                (req.nr_tx_slots and req.nr_tx_slots != rp[1])):
            out.append(Finding(
                "rings", "warning", ifname,
                "@conf slot counts are ignored for a NIC: its netmap slots are its "
                "descriptors (now %d RX / %d TX)" % rp,
                "%sethtool -G %s rx %d tx %d" % (
                    pre, ifname, req.nr_rx_slots or rp[0], req.nr_tx_slots or rp[1])))
        rxs, txs = rp if rp is not None else (state.param("generic_ringsize"),) * 2
        nrx, ntx = ch if ch is not None else (1, 1)
    else:
        rxs = req.nr_rx_slots or 1024
        txs = req.nr_tx_slots or 1024
        nrx = req.nr_rx_rings or 1
        ntx = req.nr_tx_rings or 1
    # rings this port binds (what the allocator must provide buffers for)
    b_tx = b_rx = 0
    hosts_tx = req.nr_host_tx_rings or 1
    hosts_rx = req.nr_host_rx_rings or 1
    m = req.nr_mode
    if m in (netmap_req.NR_REG_ALL_NIC, netmap_req.NR_REG_NIC_SW):
        b_tx, b_rx = ntx, nrx
    elif m == netmap_req.NR_REG_ONE_NIC:
        b_tx = b_rx = 1
    if m in (netmap_req.NR_REG_SW, netmap_req.NR_REG_NIC_SW):
        b_tx += hosts_tx
        b_rx += hosts_rx
    elif m == netmap_req.NR_REG_ONE_SW:
        b_tx += 1
        b_rx += 1
    if not req.binds_tx:
        b_tx = 0
    if not req.binds_rx:
        b_rx = 0
    need_bufs = b_tx * txs + b_rx * rxs + req.nr_extra_bufs
    need_rings = b_tx + b_rx
    if req.nr_mem_id in (0, 1) and req.extmem is None:
        buf_num = state.param("buf_num")
        if need_bufs > buf_num - 2:
            target = 1 << max(need_bufs * 2 - 1, 1).bit_length()
            out.append(Finding(
                "rings", "error", ifname,
                "the port needs about %d buffers (%d TX rings x %d slots + %d RX "
                "rings x %d slots + %d extra), the global netmap memory has %d%s" % (
                    need_bufs, b_tx, txs, b_rx, rxs, req.nr_extra_bufs, buf_num, src),
                "echo %d > %s/buf_num   # takes effect when no netmap port is open"
                % (target, pdir)))
        ring_num = state.param("ring_num")
        if need_rings > ring_num:
            out.append(Finding(
                "rings", "error", ifname,
                "the port needs %d rings, the global netmap memory has %d%s" % (
                    need_rings, ring_num, src),
                "echo %d > %s/ring_num   # takes effect when no netmap port is open"
                % (need_rings * 2, pdir)))
        ring_size = state.param("ring_size")
        slots = max(rxs if b_rx else 0, txs if b_tx else 0)
        if 256 + 16 * slots > ring_size:
            want = (256 + 16 * slots + 4095) // 4096 * 4096
            out.append(Finding(
                "rings", "error", ifname,
                "rings of %d slots need %d bytes, netmap's ring_size is %d%s" % (
                    slots, 256 + 16 * slots, ring_size, src),
                "echo %d > %s/ring_size   # takes effect when no netmap port is open"
                % (want, pdir)))
    return out
