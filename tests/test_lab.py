"""Tests of the veth lab (netmapy/tools/lab.py, tools.lab in a checkout) and of netmapy.host.netns.

They create network namespaces, so they need root; every name they use is
unique to this test process and nothing is left behind (checked at the end).
"""

import errno
import itertools
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root (creates network namespaces)"),
    pytest.mark.skipif(shutil.which("ip") is None,
                       reason="needs iproute2 (ip)"),
]

from netmapy.errors import InterfaceError, NoPrivilege  # noqa: E402
from netmapy.host.netns import (current_netns_id, netns, netns_id,  # noqa: E402
                           setns)
from tools import lab as labmod  # noqa: E402
from tools.lab import Lab, VethPair, single_ns_veth  # noqa: E402

_TAG = "t%dx" % os.getpid()
_seq = itertools.count()


def unique(what=""):
    return "%s%d%s" % (_TAG, next(_seq), what)


def netns_list():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True, check=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def ours():
    fixture_tag = "nmt%d_" % os.getpid()
    return [n for n in netns_list()
            if n.startswith(_TAG) or n.startswith(fixture_tag)]


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    yield
    left = ours()
    for n in left:
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    assert not left, "tests left namespaces behind: %s" % left


@pytest.fixture
def plain_ns():
    name = unique("ns")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


# --------------------------------------------------------------------------
# helpers

def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def _icmp_ping(ns, dst, timeout):
    """One ICMP echo from namespace ``ns`` (for machines without ping)."""
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with s:
        ident, seq = os.getpid() & 0xffff, next(_seq) & 0xffff
        body = b"netmapy-lab-ping"
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = hdr[:2] + struct.pack("!H", _csum(hdr + body)) + hdr[4:] + body
        s.sendto(pkt, (dst, 0))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            s.settimeout(left)
            try:
                data, addr = s.recvfrom(2048)
            except socket.timeout:
                return False
            icmp = data[(data[0] & 15) * 4:]
            if (addr[0] == dst and icmp[0] == 0
                    and struct.unpack("!HH", icmp[4:8]) == (ident, seq)):
                return True


def ping(lab, line, timeout=1):
    ln = lab.lines[line]
    if shutil.which("ping"):
        p = lab.run("src", ["ping", "-c1", "-W%d" % timeout, ln.sink_ip],
                    check=False)
        return p.returncode == 0
    return _icmp_ping(ln.src_ns, ln.sink_ip, timeout)


def lab_cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "tools.lab"] + list(args),
                            cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def wait_for_line(proc, needle, timeout=20):
    """Read proc.stdout until a line containing ``needle``; return all."""
    q = queue.Queue()

    def reader():
        for ln in proc.stdout:
            q.put(ln)
            if needle in ln:
                break
        q.put(None)

    threading.Thread(target=reader, daemon=True).start()
    lines = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            ln = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            ln = None
        if ln is None:
            raise AssertionError("no %r from %s; got %r, stderr %r" % (
                needle, proc.args, lines,
                proc.stderr.read() if proc.poll() is not None else ""))
        lines.append(ln)
        if needle in ln:
            return lines


def lab_names(prefix):
    return [prefix + r for r in ("src", "mbox", "sink")]


# --------------------------------------------------------------------------
# netmapy.host.netns

def test_netns_moves_and_restores(plain_ns):
    orig = current_netns_id()
    target = netns_id(plain_ns)
    assert target != orig
    # A thread started before: it stays where it is.  A thread started
    # inside inherits the namespace of the thread that started it.
    seen_before, seen_inside = [], []
    go = threading.Event()

    def watch():
        go.wait()
        seen_before.append(current_netns_id())

    t = threading.Thread(target=watch)
    t.start()
    with netns(plain_ns) as n:
        assert n == plain_ns
        assert current_netns_id() == target
        go.set()
        t.join()
        t2 = threading.Thread(
            target=lambda: seen_inside.append(current_netns_id()))
        t2.start()
        t2.join()
    assert current_netns_id() == orig
    assert seen_before == [orig]
    assert seen_inside == [target]

    with pytest.raises(ZeroDivisionError):
        with netns(plain_ns):
            assert current_netns_id() == target
            1 / 0
    assert current_netns_id() == orig

    with netns(None) as n:
        assert n is None
        assert current_netns_id() == orig


def test_netns_missing_namespace():
    name = unique("missing")
    with pytest.raises(InterfaceError) as ei:
        with netns(name):
            pass
    assert ei.value.errno == errno.ENOENT
    assert str(ei.value) == (
        "[Errno 2] no network namespace %r (list them with: ip netns list)"
        % name)


def test_netns_without_privilege(plain_ns):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop root, try to enter
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                with netns(plain_ns):
                    msg = "entered"
            except NoPrivilege as e:
                msg = "NoPrivilege %d %s" % (e.errno, e)
            except BaseException as e:  # noqa: BLE001
                msg = "other %r" % (e,)
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    os.waitpid(pid, 0)
    assert msg.startswith("NoPrivilege %d " % errno.EPERM), msg
    assert "CAP_SYS_ADMIN" in msg and "entering a network namespace" in msg


def test_setns_raw(plain_ns):
    result = {}

    def worker():  # in a throw-away thread: its namespace does not matter
        setns("/var/run/netns/" + plain_ns)
        result["id"] = current_netns_id()
        with pytest.raises(OSError) as ei:
            setns(-1)
        result["ebadf"] = ei.value.errno
        with open("/etc/hostname", "rb") as f, pytest.raises(OSError) as ei:
            setns(f)  # not a namespace file
        result["einval"] = ei.value.errno

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert result == {"id": netns_id(plain_ns), "ebadf": errno.EBADF,
                      "einval": errno.EINVAL}


# --------------------------------------------------------------------------
# the lab

def test_lab_needs_a_middlebox_then_bridges():
    prefix = unique()
    names = lab_names(prefix)
    with Lab(lines=2, queues=2, prefix=prefix) as lab:
        assert set(names) <= set(netns_list())
        ln = lab.lines[1]
        assert (ln.index, ln.src_ns, ln.src_if, ln.src_ip, ln.mbox_ns,
                ln.mbox_in, ln.mbox_out, ln.sink_ns, ln.sink_if,
                ln.sink_ip) == (1, prefix + "src", "s1", "10.1.0.1",
                                prefix + "mbox", "a1", "b1", prefix + "sink",
                                "k1", "10.1.0.2")
        macs = {x.src_mac for x in lab.lines} | {x.sink_mac for x in lab.lines}
        assert len(macs) == 4
        assert all(int(m.split(":")[0], 16) & 2 for m in macs)  # local admin

        # IPv6 off, two queues, XPS: CPU c -> TX queue c % 2
        assert lab.run("sink", ["cat", "/proc/sys/net/ipv6/conf/all/"
                                "disable_ipv6"]).stdout.strip() == "1"
        qs = lab.run("src", ["ls", "/sys/class/net/s0/queues"]).stdout.split()
        assert sorted(qs) == ["rx-0", "rx-1", "tx-0", "tx-1"]
        xps = [int(lab.run("mbox", ["cat", "/sys/class/net/b1/queues/tx-%d/"
                                    "xps_cpus" % q]).stdout.replace(",", ""),
                   16) for q in (0, 1)]
        ncpu = os.cpu_count()
        assert xps == [sum(1 << c for c in range(ncpu) if c % 2 == q)
                       for q in (0, 1)]

        # No middlebox: the echo request reaches the mbox, not the sink.
        assert not ping(lab, 0)
        assert lab.counters("mbox", "a0")["rx_packets"] >= 1
        assert lab.counters("sink", "k0")["rx_packets"] == 0

        mbox = lab.mbox_ns
        ipn = ["ip", "-n", mbox, "link"]
        subprocess.run(ipn + ["add", "name", "br0", "type", "bridge"],
                       check=True)
        for x in lab.lines:
            for port in (x.mbox_in, x.mbox_out):
                subprocess.run(ipn + ["set", "dev", port, "master", "br0"],
                               check=True)
        subprocess.run(ipn + ["set", "dev", "br0", "up"], check=True)
        for i in range(2):
            assert ping(lab, i) or ping(lab, i), "line %d: no reply" % i
        assert lab.counters("sink", "k1")["rx_packets"] >= 1
        assert lab.counters("src", "s1")["rx_packets"] >= 1
    assert not set(names) & set(netns_list())
    lab.down()  # idempotent


def test_lab_trafgen_exact_counts_and_xps():
    if shutil.which("trafgen") is None:
        pytest.skip("trafgen not installed (apt-get install netsniff-ng)")
    prefix = unique()
    # gro=True: veth receive in NAPI mode, so ethtool -S counts per RX queue
    with Lab(lines=1, queues=2, gro=True, prefix=prefix) as lab:
        ln = lab.lines[0]
        # capture in the mbox: a socket made there stays there
        with netns(lab.mbox_ns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                socket.htons(0x0800))
        with cap:
            cap.bind((ln.mbox_in, 0x0800))
            cap.settimeout(5)
            g = lab.trafgen(0, count=200, size=100, cpu=0)
            assert g.wait(10) == 0, g.stderr.read()
            frame = cap.recv(4096)
        assert frame == labmod.build_udp_frame(ln.src_mac, ln.sink_mac,
                                               ln.src_ip, ln.sink_ip, size=100)
        assert frame[:6] == bytes.fromhex(ln.sink_mac.replace(":", ""))
        assert _csum(frame[14:34]) == 0  # IPv4 header checksum right
        expect = [200, 0]
        if os.cpu_count() >= 2:
            g = lab.trafgen(0, count=300, cpu=1)
            assert g.wait(10) == 0, g.stderr.read()
            expect = [200, 300]
        # exact: no IPv6 or ARP noise in the lab
        c = lab.counters("mbox", ln.mbox_in)
        assert c["rx_packets"] == sum(expect)
        assert lab.counters("src", ln.src_if)["tx_packets"] == sum(expect)
        # XPS: what CPU c sent landed on RX queue c of the peer
        assert lab.rx_queue_packets("mbox", ln.mbox_in) == expect
        assert lab.counters("sink", ln.sink_if)["rx_packets"] == 0

        # open-ended run, stopped by SIGTERM; and a timed run
        g = lab.trafgen(0, rate="2000pps")
        time.sleep(0.3)
        assert g.poll() is None
        lab.stop(g)
        g = lab.trafgen(0, seconds=0.3, rate="1000pps")
        assert g.wait(10) == 124  # timeout ended it
    assert not set(lab_names(prefix)) & set(netns_list())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_cli_hold_signal_under_traffic_cleans_up(sig):
    """hold, with a generator flooding the lab: the signal takes the lab
    down promptly, after printing its final counters."""
    prefix = unique()
    p = lab_cli("hold", "--prefix", prefix, "--lines", "1")
    gen = None
    try:
        wait_for_line(p, "press Ctrl-C")
        assert set(lab_names(prefix)) <= set(netns_list())
        gen = subprocess.Popen([sys.executable, "-m", "tools.pktgen", "-i", "packet:s0",
                                "--netns", prefix + "src", "-f", "tx", "-T", "0"],
                               cwd=str(REPO), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env=dict(os.environ, PYTHONPATH=str(REPO)))
        time.sleep(1.0)
        assert gen.poll() is None
        p.send_signal(sig)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError("lab hold still running 10 s after signal %d" % sig)
        assert p.returncode == 0, err
        assert "lab: signal %d: final counters" % sig in out and "lab: down" in out
        assert "a0" in out.split("final counters", 1)[1]      # the counters, per interface
        assert not set(lab_names(prefix)) & set(netns_list())
    finally:
        for q in (gen, p):
            if q is not None and q.poll() is None:
                q.kill()
                q.wait()
        labmod._delete_netns(lab_names(prefix))


def test_cli_sigkill_leaves_stale_and_up_repairs():
    prefix = unique()
    names = lab_names(prefix)
    p = lab_cli("hold", "--prefix", prefix)
    try:
        wait_for_line(p, "press Ctrl-C")
        p.kill()
        p.communicate(timeout=20)
        assert set(names) <= set(netns_list())   # SIGKILL: nothing ran
        # something still running in the stale lab (an orphaned generator)
        squatter = subprocess.Popen(["ip", "netns", "exec", names[0],
                                     "sleep", "60"])
        time.sleep(0.1)
        up = subprocess.run([sys.executable, "-m", "tools.lab", "up",
                             "--prefix", prefix], cwd=str(REPO),
                            capture_output=True, text=True, timeout=60)
        assert up.returncode == 0, up.stderr
        err = up.stderr.strip().splitlines()
        assert len(err) == 1 and "stale" in err[0], up.stderr
        assert squatter.wait(5) == -signal.SIGTERM  # repair stopped it
        assert set(names) <= set(netns_list())
        status = subprocess.run([sys.executable, "-m", "tools.lab", "status",
                                 "--prefix", prefix], cwd=str(REPO),
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0 and "s0" in status.stdout
        down = subprocess.run([sys.executable, "-m", "tools.lab", "down",
                               "--prefix", prefix], cwd=str(REPO),
                              capture_output=True, text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        assert not set(names) & set(netns_list())
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        labmod._delete_netns(names)


def test_cli_errors_are_one_line():
    bad = subprocess.run([sys.executable, "-m", "tools.lab", "up", "--lines",
                          "0", "--prefix", unique()], cwd=str(REPO),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("netmapy-lab: error: Invalid value for '--lines': 0 is not in "
                                 "the range 1<=x<=256")
    assert len(bad.stderr.strip().splitlines()) == 1
    # not root -> one clear line
    nonroot = subprocess.run(
        [sys.executable, "-c",
         "import os, sys; from tools.lab import main; os.setgroups([]); "
         "os.setgid(65534); os.setuid(65534); sys.exit(main())",
         "status"], cwd=str(REPO), capture_output=True, text=True, timeout=60)
    assert nonroot.returncode == 1
    assert nonroot.stderr.startswith("netmapy-lab: error:") and "root" in nonroot.stderr
    assert len(nonroot.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------
# per-test topologies

def _frame(dst, src, ethertype=0x88b5, n=60):
    return (bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(
        src.replace(":", "")) + struct.pack("!H", ethertype)
        + bytes(range(n - 14)))


def test_veth_pair_af_packet_across_namespaces():
    with VethPair(queues=2) as vp:
        assert {vp.ns_a, vp.ns_b} <= set(netns_list())
        with netns(vp.ns_b):
            rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                               socket.htons(0x88b5))
        with netns(vp.ns_a):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with rx, tx:
            # bound outside the namespaces: names resolve in each socket's own
            rx.bind((vp.if_b, 0x88b5))
            tx.bind((vp.if_a, 0))
            rx.settimeout(5)
            f = _frame(vp.mac_b, vp.mac_a)
            tx.send(f)
            assert rx.recv(2048) == f
        assert vp.counters("b")["rx_packets"] == 1   # no IPv6 noise
        assert vp.counters("a")["tx_packets"] == 1
        names = [vp.ns_a, vp.ns_b]
    assert not set(names) & set(netns_list())


def test_single_ns_veth():
    with single_ns_veth() as v:
        with netns(v.ns):
            rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                               socket.htons(0x88b5))
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        with rx, tx:
            rx.bind((v.if_b, 0x88b5))
            tx.bind((v.if_a, 0))
            rx.settimeout(5)
            f = _frame(v.mac_b, v.mac_a, n=100)
            tx.send(f)
            assert rx.recv(2048) == f
        name = v.ns
    assert name not in netns_list()
