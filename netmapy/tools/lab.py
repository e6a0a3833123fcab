"""The veth lab: network namespaces joined by veth pairs, for testing middleboxes.

Topology, for each line ``i`` (``i`` = 0 .. lines-1)::

    ns SRC                    ns MBOX                       ns SINK
    s{i} 10.{i}.0.1/24 <--veth--> a{i}  (middlebox)  b{i} <--veth--> k{i} 10.{i}.0.2/24

The namespaces are ``PREFIX+"src"``, ``PREFIX+"mbox"`` and ``PREFIX+"sink"``.
Source and sink share a subnet and know each other's MAC address (static,
permanent neighbour entries), so nothing reaches the sink unless the
middlebox forwards frames from a{i} to b{i} at layer 2.  The middlebox ports
have no IP address and are promiscuous.  IPv6 is off in all three namespaces
(no router solicitations or MLD reports to spoil exact counts).

Every veth has ``queues`` TX and RX queues.  With ``xps=True`` (default) CPU
``c`` transmits on TX queue ``c % queues`` of every lab interface, so a sender
pinned to CPU ``c`` lands on RX queue ``c % queues`` of the peer.

Command line (as root, from the repository root)::

    netmapy-lab up --lines 2 --queues 2     # build it and leave it
    netmapy-lab status
    netmapy-lab down                        # remove it (idempotent)
    netmapy-lab hold                        # up, wait for Ctrl-C, down
    netmapy-lab up --ifnames in=nb-mi,out=nb-mo   # any names Linux takes

(``python3 -m tools.lab ...`` from a checkout.)

In Python::

    from netmapy.tools.lab import Lab       # tools.lab in a checkout
    with Lab(lines=1, prefix="t1") as lab:
        line = lab.lines[0]
        lab.run("mbox", ["ip", "link", "add", "name", "br0", "type", "bridge"])
        ...
        gen = lab.trafgen(0, count=100000)
        gen.wait()
        print(lab.counters("sink", line.sink_if))

``down()`` always runs: on leaving the ``with`` block, on an exception, and
at interpreter exit (atexit).  A lab killed with SIGKILL is repaired by the
next ``up()`` with the same prefix, or by ``netmapy-lab down``.

Also here: ``VethPair`` (two fresh namespaces joined by one veth pair) and
``single_ns_veth`` (both ends of a veth pair in one fresh namespace), for
per-test fixtures.
"""

import atexit
import contextlib
import dataclasses
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import click

from netmapy import cli
from netmapy.errors import NetmapyError, PortNameError
from netmapy.names import check_ifname
from netmapy.host.cpus import cpumask_hex as _cpumask_hex
from netmapy.host.netns import netns_exists, list_netns  # noqa: F401  (part of this API)

__all__ = [
    "Lab", "Line", "VethPair", "SingleNsVeth", "single_ns_veth",
    "LabError", "CommandFailed", "build_udp_frame", "stop_process",
    "netns_exists", "list_netns", "main",
]

ROLES = ("src", "mbox", "sink")
MAX_LINES = 256

# Second-to-last MAC byte pattern: 02:00:00:ROLE:HI:LO, ROLE from this table.
_ROLE_MAC = {"s": 0x01, "a": 0x02, "b": 0x03, "k": 0x04,
             "pa": 0x0a, "pb": 0x0b, "sa": 0x1a, "sb": 0x1b}

_VETH_PAIR_RE = re.compile(r"^nmt(\d+)_\d+[abs]$")


class LabError(NetmapyError):
    """Something the lab could not do; the message says what and why."""


class CommandFailed(LabError):
    """A command run for the lab exited non-zero."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout or "").strip().splitlines()
        detail = detail[-1] if detail else "no output"
        super().__init__("`%s` failed (exit %d): %s"
                         % (shlex.join(self.argv), returncode, detail))


# --------------------------------------------------------------------------
# small helpers

def _need_root(what="the veth lab"):
    if os.geteuid() != 0:
        raise LabError("%s needs root (it creates network namespaces and "
                       "veth interfaces): run it with sudo" % what)


def _run(argv, input=None, check=True):
    try:
        p = subprocess.run(argv, input=input, capture_output=True, text=True)
    except FileNotFoundError:
        raise LabError("%s not found: install it (apt-get install %s)"
                       % (argv[0], _PACKAGE_OF.get(argv[0], argv[0]))) from None
    if check and p.returncode != 0:
        raise CommandFailed(argv, p.returncode, p.stdout, p.stderr)
    return p


_PACKAGE_OF = {"ip": "iproute2", "ethtool": "ethtool",
               "trafgen": "netsniff-ng", "timeout": "coreutils"}


def _ip_batch(cmds, ns=None, force=False):
    if not cmds:
        return
    argv = ["ip"]
    if force:
        argv.append("-force")
    if ns is not None:
        argv += ["-n", ns]
    argv += ["-batch", "-"]
    _run(argv, input="\n".join(cmds) + "\n")


def _netns_pids(names):
    """PIDs of the processes running in namespaces ``names`` (not ours)."""
    if not names:
        return []
    p = _run(["ip", "-force", "-batch", "-"], check=False,
             input="".join("netns pids %s\n" % n for n in names))
    pids = {int(w) for w in p.stdout.split() if w.isdigit()}
    pids.discard(os.getpid())
    return sorted(pids)


def _stop_pids(pids, grace=1.0):
    """SIGTERM ``pids``, SIGKILL whatever is still there after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        pids = alive
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if _pid_running(p)]
            if pids:
                time.sleep(0.02)
        if not pids:
            return


def _pid_running(pid):
    """True unless ``pid`` is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _delete_netns(names):
    """Delete those of ``names`` that exist; return the ones deleted.

    Processes still running inside them are stopped first (SIGTERM, then
    SIGKILL): left alone they would keep the namespace, and its veths,
    alive after its name is gone (a trafgen would go on sending forever).
    """
    present = [n for n in names if netns_exists(n)]
    if present:
        _need_root("removing network namespaces")
        _stop_pids(_netns_pids(present))
        _ip_batch(["netns del %s" % n for n in present], force=True)
        left = [n for n in present if netns_exists(n)]
        if left:
            raise LabError("could not remove network namespace(s) %s "
                           "(try: ip netns del NAME)" % ", ".join(left))
    return present


def _mac(role, index):
    return "02:00:00:%02x:%02x:%02x" % (_ROLE_MAC[role], (index >> 8) & 0xff,
                                        index & 0xff)


def _check_name(kind, value, pattern=r"^[A-Za-z0-9_.-]*$"):
    if not re.match(pattern, value):
        raise LabError("bad %s %r: use letters, digits, '_', '.', '-'"
                       % (kind, value))


def _check_ifname(value):
    """An interface name the lab can create: anything Linux accepts
    ('-' included, as ``nb-mi0``) but the characters ip's batch files
    would take apart (quotes, backslash, '#')."""
    try:
        check_ifname(value)
    except PortNameError as e:
        raise LabError(str(e)) from None
    bad = [c for c in value if c in "\"'\\#"]
    if bad:
        raise LabError("bad interface name %r: the lab cannot create names with %r in them"
                       % (value, bad[0]))
    return value


#: The default interface name stems of a lab line: s0 -> a0 | b0 -> k0.
IFNAMES = {"src": "s", "in": "a", "out": "b", "sink": "k"}


def _ncpus():
    return os.cpu_count() or 1


def _xps_masks(queues, ncpus):
    """Per TX queue, the CPUs that use it: CPU c -> queue c % queues."""
    return [_cpumask_hex(c for c in range(ncpus) if c % queues == q)
            for q in range(queues)]


def _signals_blocked():
    """Defer SIGINT/SIGTERM/SIGHUP while cleaning up (delivered afterwards)."""
    sigs = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

    @contextlib.contextmanager
    def cm():
        old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return cm()


def _kill(proc, sig, group):
    try:
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process(proc, timeout=5.0):
    """Stop ``proc``: SIGTERM, wait ``timeout`` s, then SIGKILL.

    If ``proc`` leads its own process group (``start_new_session=True``, as
    ``Lab.trafgen`` starts it) the whole group is signalled: trafgen's
    parent does not pass SIGTERM on to its forked worker, so signalling the
    parent's PID alone leaves both hanging; SIGINT is ignored when it runs
    in the background.  Returns the exit status.
    """
    group = False
    if proc.poll() is None:
        try:
            group = os.getpgid(proc.pid) == proc.pid
        except ProcessLookupError:
            pass
        _kill(proc, signal.SIGTERM, group)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill(proc, signal.SIGKILL, group)
            proc.wait()
        if group:  # workers that outlived their parent
            _kill(proc, signal.SIGKILL, True)
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
    return proc.returncode


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def build_udp_frame(src_mac, dst_mac, src_ip, dst_ip, sport=9, dport=9,
                    size=60, payload=None):
    """An Ethernet/IPv4/UDP frame of ``size`` bytes (no FCS), checksums right.

    ``payload`` (bytes) is repeated/cut to fill the frame; by default the
    payload is the byte pattern 0, 1, 2, ... (mod 256).
    """
    if size < 42:
        raise ValueError("frame size %d too small: Ethernet+IPv4+UDP "
                         "headers take 42 bytes" % size)
    plen = size - 42
    if payload is None:
        body = bytes(i & 0xff for i in range(plen))
    else:
        payload = bytes(payload) or b"\0"
        body = (payload * (plen // len(payload) + 1))[:plen]
    src = socket.inet_aton(src_ip)
    dst = socket.inet_aton(dst_ip)
    udp_len = 8 + plen
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64,
                      socket.IPPROTO_UDP, 0, src, dst)
    iph = iph[:10] + struct.pack("!H", _checksum(iph)) + iph[12:]
    udph = struct.pack("!HHHH", sport, dport, udp_len, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    csum = _checksum(pseudo + udph + body) or 0xffff
    udph = udph[:6] + struct.pack("!H", csum)
    eth = (bytes.fromhex(dst_mac.replace(":", ""))
           + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00")
    return eth + iph + udph + body


# --------------------------------------------------------------------------
# building veth topologies

@dataclasses.dataclass
class _End:
    ns: str
    ifname: str
    mac: str
    cidr: str = None
    promisc: bool = False
    neigh: tuple = ()          # ((ip, mac), ...)


def _ethtool_args(gro, offloads):
    args = ["gro", "on" if gro else "off"]
    if not offloads:
        # Every frame exactly as on the wire: checksums computed by the
        # sender, verified by the receiver, no GSO super-frames, no VLAN
        # tags moved into metadata.  TSO off on the sender is also what lets
        # a GRO-enabled veth receive socket traffic through NAPI: veth_xmit
        # bypasses NAPI for packets from a TSO-capable sender unless the
        # receiver has rx-udp-gro-forwarding/rx-gro-list on.
        args += ["gso", "off", "tso", "off", "tx", "off", "rx", "off",
                 "rxvlan", "off", "txvlan", "off"]
    return args


def _build(namespaces, pairs, queues, mtu, gro, offloads, xps):
    """Create ``namespaces`` and the veth ``pairs`` ((_End, _End), ...)."""
    if shutil.which("ethtool") is None:
        raise LabError("ethtool not found: install it (apt-get install ethtool)")
    _ip_batch(["netns add %s" % n for n in namespaces])
    by_ns = {}
    for a, b in pairs:
        cmd = ("link add name {a} numtxqueues {q} numrxqueues {q} address "
               "{am} mtu {m} type veth peer name {b} numtxqueues {q} "
               "numrxqueues {q} address {bm} mtu {m}").format(
                   a=a.ifname, b=b.ifname, q=queues, m=mtu, am=a.mac,
                   bm=b.mac)
        if b.ns != a.ns:
            cmd += " netns %s" % b.ns
        by_ns.setdefault(a.ns, []).append(cmd)
    for ns, cmds in by_ns.items():
        _ip_batch(cmds, ns=ns)

    ends = {ns: [] for ns in namespaces}
    for a, b in pairs:
        ends[a.ns].append(a)
        ends[b.ns].append(b)
    eth = " ".join(_ethtool_args(gro, offloads))
    masks = _xps_masks(queues, _ncpus()) if (xps and queues > 1) else None
    for ns in namespaces:
        # IPv6 off before any link is up (new links inherit "default").
        script = ["for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 "
                  "/proc/sys/net/ipv6/conf/default/disable_ipv6; do "
                  "if [ -e $f ]; then echo 1 > $f; fi; done"]
        for e in ends[ns]:
            script.append("ethtool -K %s %s >/dev/null" % (e.ifname, eth))
            if masks:
                for q, m in enumerate(masks):
                    script.append("echo %s > /sys/class/net/%s/queues/tx-%d/"
                                  "xps_cpus" % (m, e.ifname, q))
        _run(["ip", "netns", "exec", ns, "sh", "-ec", "\n".join(script)])
    for ns in namespaces:
        cmds = ["link set dev lo up"]
        for e in ends[ns]:
            if e.promisc:
                cmds.append("link set dev %s promisc on" % e.ifname)
            if e.cidr:
                cmds.append("addr add %s dev %s" % (e.cidr, e.ifname))
            cmds.append("link set dev %s up" % e.ifname)
        for e in ends[ns]:
            for ip, mac in e.neigh:
                cmds.append("neigh replace %s lladdr %s dev %s nud permanent"
                            % (ip, mac, e.ifname))
        _ip_batch(cmds, ns=ns)
    _wait_oper_up(ends)


def _wait_oper_up(ends, timeout=5.0):
    """Wait until every end's operstate is UP.

    The kernel applies carrier changes through the link watcher, which may
    lag up to a second (it is not "urgent" for a veth whose ifindex equals
    its peer's, common across namespaces); until then the device has no
    active qdisc and drops what is sent through the stack.
    """
    deadline = time.monotonic() + timeout
    while True:
        down = []
        for ns, lst in ends.items():
            if not lst:
                continue
            links = json.loads(_run(["ip", "-n", ns, "-j", "link",
                                     "show"]).stdout)
            state = {ln["ifname"]: ln.get("operstate") for ln in links}
            down += ["%s:%s" % (ns, e.ifname) for e in lst
                     if state.get(e.ifname) != "UP"]
        if not down:
            return
        if time.monotonic() > deadline:
            raise LabError("interface(s) did not come up within %gs: %s"
                           % (timeout, " ".join(down)))
        time.sleep(0.05)


class _Topology:
    """Shared life cycle: namespaces, atexit, tracked processes, temp files."""

    _atexit_armed = False
    _what = "the veth lab"          # for the "needs root" message
    _repair_fixtures = False        # also remove dead test fixtures' namespaces

    def _namespace_names(self):
        raise NotImplementedError

    def _pairs(self):
        """The veth pairs to build: [(_End, _End), ...]."""
        raise NotImplementedError

    def up(self):
        """Build the topology (repairing a stale one first).  Returns self."""
        if self.is_up:
            return self
        _need_root(self._what)
        if self._repair_fixtures:
            _repair_dead_fixtures()
        self._repair_stale("lab")
        self._arm()
        try:
            _build(self._namespace_names(), self._pairs(), self.queues, self.mtu, self.gro,
                   self.offloads, self.xps)
        except BaseException:
            self.down()
            raise
        self.is_up = True
        return self

    def down(self):
        """Remove everything (idempotent): stops processes started through
        ``exec``/``trafgen`` and any other process still running in the
        namespaces, then deletes the namespaces (and so the veths)."""
        self._cleanup()
        self.is_up = False

    def _arm(self):
        if not self._atexit_armed:
            atexit.register(self._atexit_down)
            self._atexit_armed = True

    def _disarm(self):
        if self._atexit_armed:
            atexit.unregister(self._atexit_down)
            self._atexit_armed = False

    def _atexit_down(self):
        try:
            self.down()
        except Exception as e:  # at exit: report, do not raise
            print("lab: cleanup at exit failed: %s" % e, file=sys.stderr)

    def _repair_stale(self, label):
        stale = [n for n in self._namespace_names() if netns_exists(n)]
        if stale:
            print("%s: removing stale network namespace(s) left by an earlier "
                  "run: %s" % (label, " ".join(stale)), file=sys.stderr,
                  flush=True)
            _delete_netns(stale)

    def _cleanup(self):
        with _signals_blocked():
            for p in getattr(self, "_procs", ()):
                stop_process(p, timeout=3.0)
            self._procs = []
            _delete_netns(self._namespace_names())
            for f in getattr(self, "_tmpfiles", ()):
                try:
                    os.unlink(f)
                except FileNotFoundError:
                    pass
            self._tmpfiles = []
            self._disarm()

    def detach(self):
        """Forget about cleanup: leave everything in place at exit."""
        self._disarm()
        self._procs = []

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()
        return False


# --------------------------------------------------------------------------
# the lab

@dataclasses.dataclass(frozen=True)
class Line:
    """One src -> mbox -> sink line of the lab."""
    index: int
    src_ns: str
    src_if: str
    src_mac: str
    src_ip: str
    mbox_ns: str
    mbox_in: str
    mbox_out: str
    sink_ns: str
    sink_if: str
    sink_mac: str
    sink_ip: str
    mbox_in_mac: str = ""
    mbox_out_mac: str = ""
    prefixlen: int = 24


class Lab(_Topology):
    """The veth lab (see the module docstring).  A context manager.

    ``lines``: number of src->mbox->sink lines; ``queues``: TX/RX queues per
    veth; ``prefix``: prepended to the namespace names; ``mtu``; ``gro``: GRO
    on every lab interface, which puts veth receive into NAPI mode (needed
    for XDP_REDIRECT into a veth and for per-RX-queue counters);
    ``offloads``: False (default) turns checksum, TSO/GSO and VLAN offloads
    off on every lab interface, so frames are exactly what is on the wire;
    True leaves the kernel's defaults; ``xps``: map CPU c to TX queue
    c % queues on every lab interface.

    After construction ``lab.lines`` is a list of ``Line``; ``lab.nlines``
    is their number.
    """

    def __init__(self, lines=1, queues=1, prefix="", mtu=1500, gro=False,
                 xps=True, offloads=False, ifnames=None):
        if not 1 <= int(lines) <= MAX_LINES:
            raise LabError("lines must be 1..%d, not %r" % (MAX_LINES, lines))
        if int(queues) < 1:
            raise LabError("queues must be >= 1, not %r" % (queues,))
        if not 68 <= int(mtu) <= 65535:
            raise LabError("mtu must be 68..65535, not %r" % (mtu,))
        _check_name("prefix", prefix)
        names = dict(IFNAMES)
        for role, stem in (ifnames or {}).items():
            if role not in IFNAMES:
                raise LabError("unknown interface role %r (roles: %s)"
                               % (role, ", ".join(IFNAMES)))
            names[role] = stem
        self.ifnames = names
        self.nlines = int(lines)
        self.queues = int(queues)
        self.prefix = prefix
        self.mtu = int(mtu)
        self.gro = bool(gro)
        self.xps = bool(xps)
        self.offloads = bool(offloads)
        self.src_ns = prefix + "src"
        self.mbox_ns = prefix + "mbox"
        self.sink_ns = prefix + "sink"
        self.namespaces = (self.src_ns, self.mbox_ns, self.sink_ns)
        self.lines = [self._line(i) for i in range(self.nlines)]
        self.is_up = False
        self._procs = []
        self._tmpfiles = []

    def _namespace_names(self):
        return self.namespaces

    def _line(self, i):
        n = {role: _check_ifname("%s%d" % (stem, i)) for role, stem in self.ifnames.items()}
        if len(set(n.values())) < len(n):
            raise LabError("the interface names of a line must differ: %s"
                           % ", ".join(sorted(n.values())))
        return Line(index=i, src_ns=self.src_ns, src_if=n["src"],
                    src_mac=_mac("s", i), src_ip="10.%d.0.1" % i,
                    mbox_ns=self.mbox_ns, mbox_in=n["in"],
                    mbox_out=n["out"], sink_ns=self.sink_ns,
                    sink_if=n["sink"], sink_mac=_mac("k", i),
                    sink_ip="10.%d.0.2" % i, mbox_in_mac=_mac("a", i),
                    mbox_out_mac=_mac("b", i))

    def ns(self, name):
        """Namespace name for a role ("src", "mbox", "sink") or a full name."""
        if name in ROLES:
            return self.prefix + name
        if name in self.namespaces:
            return name
        raise LabError("no namespace %r in this lab (roles: src, mbox, sink; "
                       "names: %s)" % (name, ", ".join(self.namespaces)))

    # -- life cycle

    def _pairs(self):
        pairs = []
        for ln in self.lines:
            s = _End(ln.src_ns, ln.src_if, ln.src_mac,
                     "%s/%d" % (ln.src_ip, ln.prefixlen),
                     neigh=((ln.sink_ip, ln.sink_mac),))
            a = _End(ln.mbox_ns, ln.mbox_in, ln.mbox_in_mac, promisc=True)
            b = _End(ln.mbox_ns, ln.mbox_out, ln.mbox_out_mac, promisc=True)
            k = _End(ln.sink_ns, ln.sink_if, ln.sink_mac,
                     "%s/%d" % (ln.sink_ip, ln.prefixlen),
                     neigh=((ln.src_ip, ln.src_mac),))
            pairs += [(s, a), (b, k)]
        return pairs

    # -- running things inside

    def _line_of(self, line):
        if isinstance(line, Line):
            return line
        try:
            return self.lines[line]
        except (IndexError, TypeError):
            raise LabError("no line %r (this lab has %d)"
                           % (line, self.nlines)) from None

    def exec(self, ns, argv, **popen_kw):
        """Start ``argv`` in namespace ``ns`` (role or name); a Popen.

        The process is stopped (SIGTERM, then SIGKILL) by ``down()`` if it
        is still running then.
        """
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(ns)]
                             + [str(a) for a in argv], **popen_kw)
        self._procs = [q for q in self._procs if q.poll() is None] + [p]
        return p

    def run(self, ns, argv, check=True, **kw):
        """Run ``argv`` in namespace ``ns`` to completion; CompletedProcess.

        Output is captured as text unless ``kw`` says otherwise.  With
        ``check``, a non-zero exit raises ``CommandFailed``.
        """
        full = ["ip", "netns", "exec", self.ns(ns)] + [str(a) for a in argv]
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        p = subprocess.run(full, **kw)
        if check and p.returncode != 0:
            raise CommandFailed(full, p.returncode, p.stdout, p.stderr)
        return p

    def stop(self, proc, timeout=5.0):
        """Stop a process started by ``exec``/``trafgen`` (see stop_process)."""
        return stop_process(proc, timeout)

    # -- counters

    def counters(self, ns, ifname):
        """Interface counters: rx/tx packets, bytes, dropped (dict of int)."""
        return read_counters(self.ns(ns), ifname)

    def queue_counters(self, ns, ifname):
        """``ethtool -S`` of a lab veth, as a dict of int.

        Per-RX-queue counts (``rx_queue_N_xdp_packets``) only move while the
        veth receives in NAPI mode: GRO on (``gro=True``; with the sender's
        TSO off, as ``offloads=False`` leaves it) or an XDP program attached.
        """
        out = self.run(ns, ["ethtool", "-S", ifname]).stdout
        stats = {}
        for ln in out.splitlines():
            k, sep, v = ln.strip().partition(":")
            if sep and v.strip().lstrip("-").isdigit():
                stats[k.strip()] = int(v)
        return stats

    def rx_queue_packets(self, ns, ifname):
        """Packets received per RX queue (NAPI mode only, see above)."""
        st = self.queue_counters(ns, ifname)
        return [st.get("rx_queue_%d_xdp_packets" % q, 0)
                for q in range(self.queues)]

    # -- traffic

    def trafgen_config(self, line, size=60, cpu=0, sport=9, dport=9,
                       payload=None):
        """The trafgen configuration text for one UDP frame src->sink."""
        ln = self._line_of(line)
        frame = build_udp_frame(ln.src_mac, ln.sink_mac, ln.src_ip,
                                ln.sink_ip, sport, dport, size, payload)
        rows = [", ".join("0x%02x" % b for b in frame[i:i + 16])
                for i in range(0, len(frame), 16)]
        return ("# netmapy lab, line %d: %s -> %s, %d bytes\ncpu(%d): {\n  %s\n}\n"
                % (ln.index, ln.src_ip, ln.sink_ip, size, cpu,
                   ",\n  ".join(rows)))

    def trafgen(self, line, count=None, seconds=None, size=60, cpu=0,
                rate=None, sport=9, dport=9, payload=None, **popen_kw):
        """Start trafgen on s{line} in the src namespace; returns the Popen.

        Sends one fixed Ethernet/IPv4/UDP frame (``size`` bytes without FCS,
        right MACs/IPs/checksums) from worker CPU ``cpu``; ``count`` packets
        (``-n``) or until stopped; ``seconds`` limits the run with
        ``timeout`` (exit status 124 when time ran out); ``rate`` is passed
        to ``-b`` (e.g. "100kpps" or "10000pps").  It runs in a session of
        its own (``proc.pid`` is its process group); stop it with
        ``lab.stop(proc)``, which sends SIGTERM to that group (by PID alone
        it does not stop: the parent does not pass SIGTERM on to its forked
        worker; SIGINT is ignored in the background).  ``down()`` stops it
        too.  stdout is discarded and stderr piped unless ``popen_kw`` says
        otherwise.
        """
        if shutil.which("trafgen") is None:
            raise LabError("trafgen not found: install it "
                           "(apt-get install netsniff-ng)")
        ln = self._line_of(line)
        ncpu = _ncpus()
        if not 0 <= int(cpu) < ncpu:
            raise LabError("cpu must be 0..%d, not %r" % (ncpu - 1, cpu))
        if size > self.mtu + 14:
            raise LabError("frame size %d exceeds the MTU %d + 14"
                           % (size, self.mtu))
        cfg = self.trafgen_config(ln, size, int(cpu), sport, dport, payload)
        fd, path = tempfile.mkstemp(prefix="netmapy-lab-trafgen-",
                                    suffix=".cfg")
        with os.fdopen(fd, "w") as f:
            f.write(cfg)
        self._tmpfiles.append(path)
        # trafgen forks workers for CPUs 0..P-1; cpu(N) in the config gives
        # the frame to worker N only.
        argv = ["trafgen", "-o", ln.src_if, "-i", path, "-P", str(int(cpu) + 1),
                "--no-sock-mem", "-Q", "-C"]
        if size > 2048:
            argv.append("-J")
        if count is not None:
            argv += ["-n", str(int(count))]
        if rate is not None:
            argv += ["-b", str(rate)]
        if seconds is not None:
            argv = ["timeout", "-s", "TERM", "%g" % seconds] + argv
        popen_kw.setdefault("start_new_session", True)
        popen_kw.setdefault("stdout", subprocess.DEVNULL)
        popen_kw.setdefault("stderr", subprocess.PIPE)
        return self.exec("src", argv, **popen_kw)

    # -- reporting

    def summary(self):
        """Human-readable description of the lab (several lines)."""
        out = ["netmapy veth lab: %d line(s), %d queue(s) per veth, mtu %d, "
               "gro %s, xps %s" % (self.nlines, self.queues, self.mtu,
                                   "on" if self.gro else "off",
                                   "on" if self.xps else "off"),
               "namespaces: %s" % " ".join(self.namespaces)]
        for ln in self.lines:
            out.append(
                "line %d: %s %s %s %s  ->  %s %s | %s  ->  %s %s %s %s"
                % (ln.index, ln.src_ns, ln.src_if, ln.src_mac, ln.src_ip,
                   ln.mbox_ns, ln.mbox_in, ln.mbox_out, ln.sink_ns,
                   ln.sink_if, ln.sink_mac, ln.sink_ip))
        ln = self.lines[0]
        out.append("forward with e.g.: ip -n %s link add name br0 type bridge; "
                   "ip -n %s link set dev %s master br0; ip -n %s link set "
                   "dev %s master br0; ip -n %s link set dev br0 up"
                   % (self.mbox_ns, self.mbox_ns, ln.mbox_in, self.mbox_ns,
                      ln.mbox_out, self.mbox_ns))
        return "\n".join(out)


def read_counters(ns, ifname):
    """rx/tx packets, bytes, dropped of ``ifname`` in namespace ``ns``."""
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-s", "-j", "link", "show",
                                                  "dev", ifname]
    data = json.loads(_run(argv).stdout)
    st = data[0]["stats64"]
    return {"rx_packets": st["rx"]["packets"], "tx_packets": st["tx"]["packets"],
            "rx_bytes": st["rx"]["bytes"], "tx_bytes": st["tx"]["bytes"],
            "rx_dropped": st["rx"]["dropped"], "tx_dropped": st["tx"]["dropped"]}


# --------------------------------------------------------------------------
# small topologies for per-test fixtures

_seq = itertools.count()


def _unique_base():
    return "nmt%d_%d" % (os.getpid(), next(_seq))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _repair_dead_fixtures():
    """Remove nmt{pid}_{n}{a,b,s} namespaces whose creator is dead."""
    dead = []
    for n in list_netns():
        m = _VETH_PAIR_RE.match(n)
        if m and not _pid_alive(int(m.group(1))):
            dead.append(n)
    if dead:
        print("lab: removing network namespace(s) left by dead test "
              "processes: %s" % " ".join(dead), file=sys.stderr, flush=True)
        _delete_netns(dead)


class VethPair(_Topology):
    """Two fresh namespaces joined by one veth pair.  A context manager.

    Attributes: ``ns_a``, ``ns_b`` (namespace names ``nmt{pid}_{n}a`` /
    ``...b``), ``if_a``, ``if_b``, ``mac_a``, ``mac_b``, ``ip_a``, ``ip_b``
    (``prefixlen`` bits), ``queues``.  Both ends are up, IPv6 is off, each
    end has a static neighbour entry for the other.
    """

    def __init__(self, queues=1, mtu=1500, gro=False, xps=True, offloads=False,
                 name=None, if_a="va", if_b="vb", ip_a="10.250.0.1",
                 ip_b="10.250.0.2", prefixlen=24):
        base = name or _unique_base()
        _check_name("name", base, r"^[A-Za-z0-9_.-]+$")
        self.base = base
        self.ns_a, self.ns_b = base + "a", base + "b"
        self.if_a, self.if_b = _check_ifname(if_a), _check_ifname(if_b)
        self.mac_a, self.mac_b = _mac("pa", 1), _mac("pb", 2)
        self.ip_a, self.ip_b, self.prefixlen = ip_a, ip_b, prefixlen
        self.queues, self.mtu, self.gro, self.xps = queues, mtu, gro, xps
        self.offloads = offloads
        self.is_up = False

    def _namespace_names(self):
        return (self.ns_a, self.ns_b)

    _what = "a veth pair"
    _repair_fixtures = True

    def _pairs(self):
        a = _End(self.ns_a, self.if_a, self.mac_a, "%s/%d" % (self.ip_a, self.prefixlen),
                 neigh=((self.ip_b, self.mac_b),))
        b = _End(self.ns_b, self.if_b, self.mac_b, "%s/%d" % (self.ip_b, self.prefixlen),
                 neigh=((self.ip_a, self.mac_a),))
        return [(a, b)]

    def counters(self, side):
        """Counters of end ``"a"`` or ``"b"``."""
        ns, ifname = {"a": (self.ns_a, self.if_a),
                      "b": (self.ns_b, self.if_b)}[side]
        return read_counters(ns, ifname)


class SingleNsVeth(_Topology):
    """Both ends of one veth pair in one fresh namespace (no IP addresses).

    Attributes: ``ns`` (``nmt{pid}_{n}s``), ``if_a``, ``if_b``, ``mac_a``,
    ``mac_b``, ``queues``.  Both ends up, IPv6 off.  Send with AF_PACKET on
    one end and receive on the other.
    """

    def __init__(self, queues=1, mtu=1500, gro=False, xps=True, offloads=False,
                 name=None, if_a="va", if_b="vb"):
        base = name or _unique_base()
        _check_name("name", base, r"^[A-Za-z0-9_.-]+$")
        self.ns = base + "s"
        self.if_a, self.if_b = _check_ifname(if_a), _check_ifname(if_b)
        self.mac_a, self.mac_b = _mac("sa", 1), _mac("sb", 2)
        self.queues, self.mtu, self.gro, self.xps = queues, mtu, gro, xps
        self.offloads = offloads
        self.is_up = False

    def _namespace_names(self):
        return (self.ns,)

    _what = "a veth pair"
    _repair_fixtures = True

    def _pairs(self):
        return [(_End(self.ns, self.if_a, self.mac_a), _End(self.ns, self.if_b, self.mac_b))]

    def counters(self, side):
        return read_counters(self.ns, {"a": self.if_a, "b": self.if_b}[side])


def single_ns_veth(queues=1, mtu=1500, gro=False, xps=True, offloads=False,
                   name=None, if_a="va", if_b="vb"):
    """A ``SingleNsVeth`` (use it in a ``with`` statement)."""
    return SingleNsVeth(queues=queues, mtu=mtu, gro=gro, xps=xps,
                        offloads=offloads, name=name, if_a=if_a, if_b=if_b)


# --------------------------------------------------------------------------
# command line

class _Stop(BaseException):
    """Raised by the CLI's signal handlers."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise _Stop(signum)


def _status(prefix, out=sys.stdout):
    names = [prefix + r for r in ROLES]
    for n in names:
        if not netns_exists(n):
            print("namespace %-12s absent" % n, file=out)
            continue
        print("namespace %-12s present" % n, file=out)
        links = json.loads(_run(["ip", "-n", n, "-s", "-j", "addr",
                                 "show"]).stdout)
        for ln in links:
            if ln.get("ifname") == "lo":
                continue
            addrs = [a["local"] + "/" + str(a["prefixlen"])
                     for a in ln.get("addr_info", []) if "local" in a]
            st = ln.get("stats64", {"rx": {}, "tx": {}})
            print("  %-6s %-5s %-17s %-15s rx %d pkts %d B (drop %d)  "
                  "tx %d pkts %d B (drop %d)"
                  % (ln.get("ifname"), ln.get("operstate", "?"),
                     ln.get("address", ""), " ".join(addrs) or "-",
                     st["rx"].get("packets", 0), st["rx"].get("bytes", 0),
                     st["rx"].get("dropped", 0), st["tx"].get("packets", 0),
                     st["tx"].get("bytes", 0), st["tx"].get("dropped", 0)),
                  file=out)


def _ifnames(ctx, param, value):
    """--ifnames src=nb-s,in=nb-mi,out=nb-mo,sink=nb-k -> dict."""
    if not value:
        return None
    out = {}
    for part in value.split(","):
        role, sep, stem = part.partition("=")
        if not sep or role not in IFNAMES or not stem:
            raise click.BadParameter("%r: expected ROLE=STEM,... with ROLE one of %s "
                                     "(e.g. in=nb-mi,out=nb-mo)" % (value, ", ".join(IFNAMES)))
        try:
            _check_ifname(stem + "0")
        except LabError as e:
            raise click.BadParameter("%s=%s: %s" % (role, stem, e))
        out[role] = stem
    return out


def _prefix_option(f):
    return click.option("--prefix", default="", metavar="P",
                        help="prefix of the namespace names (P+src, P+mbox, P+sink); "
                             "default none")(f)


def _build_options(f):
    opts = [
        click.option("--lines", type=cli.IntRange(1, MAX_LINES), default=1, metavar="N",
                     show_default=True, help="number of src->mbox->sink lines"),
        click.option("--queues", type=cli.IntRange(min=1), default=1, metavar="Q",
                     show_default=True, help="TX and RX queues per veth"),
        click.option("--mtu", type=cli.IntRange(68, 65535), default=1500, show_default=True,
                     help="MTU of every lab interface"),
        click.option("--gro", is_flag=True,
                     help="GRO on: veth receive runs in NAPI mode (needed for XDP_REDIRECT "
                          "into a veth); default off"),
        click.option("--offloads", is_flag=True,
                     help="leave checksum/TSO/GSO/VLAN offloads at the kernel defaults; "
                          "default: all off, so frames are exactly what is on the wire"),
        click.option("--no-xps", "xps", is_flag=True, flag_value=False, default=True,
                     help="do not map CPU c to TX queue c % Q"),
        click.option("--ifnames", metavar="ROLE=STEM,...", callback=_ifnames,
                     help="interface names of line i: STEM + i per role (src, in, out, "
                          "sink; default src=s,in=a,out=b,sink=k), any name Linux takes, "
                          "e.g. in=nb-mi,out=nb-mo"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _lab_body(fn):
    """Root, signals (Ctrl-C/SIGTERM/SIGHUP end a hold; elsewhere they
    interrupt with exit 128+N)."""
    import functools

    @functools.wraps(fn)
    def body(**kw):
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _on_signal)
        try:
            _need_root("netmapy-lab")
            return fn(**kw)
        except _Stop as e:
            print("netmapy-lab: interrupted by signal %d" % e.signum, file=sys.stderr)
            raise click.exceptions.Exit(128 + e.signum)
    return body


EPILOG = """\
examples:
  netmapy-lab hold --lines 2 --queues 2
  netmapy-lab up; netmapy-lab status; netmapy-lab down
  netmapy-lab up --ifnames in=nb-mi,out=nb-mo     # mbox interfaces nb-mi0, nb-mo0
  (from a checkout: python3 -m tools.lab ...)

""" + cli.completion_help("netmapy-lab")


@cli.group("netmapy-lab", epilog=EPILOG)
@cli.common_options
def command():
    """The netmapy veth lab: namespaces src, mbox and sink; line i is
    src:s{i} (10.{i}.0.1/24) <-> mbox:a{i} | mbox:b{i} <-> sink:k{i}
    (10.{i}.0.2/24).  Nothing reaches the sink unless a middlebox in mbox
    forwards a{i} <-> b{i}.  Needs root.
    """


@command.command("up")
@_build_options
@_prefix_option
@cli.common_options(version=False)
@_lab_body
def _up(prefix, **kw):
    """Build the lab and leave it running (repairs a stale one); take it
    down with `netmapy-lab down`."""
    lab = Lab(prefix=prefix, **kw)
    lab.up()
    lab.detach()
    print(lab.summary())
    print("lab: up; remove it with: netmapy-lab down%s"
          % (" --prefix " + prefix if prefix else ""), flush=True)


@command.command("down")
@_prefix_option
@cli.common_options(version=False)
@_lab_body
def _down(prefix):
    """Remove the lab: delete its namespaces (and so its veths).  Does
    nothing if there is no lab (idempotent; also after a crash)."""
    gone = _delete_netns([prefix + r for r in ROLES])
    print("lab: removed %s" % (" ".join(gone) if gone else "nothing (no lab was up)"))


@command.command("status")
@_prefix_option
@cli.common_options(version=False)
@_lab_body
def _status_cmd(prefix):
    """Show the lab's namespaces, interfaces, addresses and counters."""
    _status(prefix)


@command.command("hold")
@_build_options
@_prefix_option
@cli.common_options(version=False)
@_lab_body
def _hold(prefix, **kw):
    """Build the lab, print a summary, wait until Ctrl-C (SIGINT), SIGTERM
    or SIGHUP, then remove it."""
    lab = Lab(prefix=prefix, **kw)
    # from here a signal only sets the stop flag (netmapy.stop), so it can
    # never cut the building or the removal of the lab short
    from netmapy import stop
    stop.reset()
    stop.install_handlers((signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    try:
        lab.up()
        print(lab.summary())
        print("lab: up; press Ctrl-C (or send SIGTERM) to take it down", flush=True)
        stop.wait()
        print("lab: signal %d: final counters" % stop.signal_received(), flush=True)
        _status(prefix)
    finally:
        lab.down()
        stop.restore_handlers()
    print("lab: down", flush=True)


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
