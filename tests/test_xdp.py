"""The xdp backend (AF_XDP + an XDP program) on multi-queue veth pairs in
namespaces: the backend contract, then what only xdp promises --
single-RX-queue bypass (the rest stays with the kernel), queues added and
removed while running, flow steering with tcpdump expressions, host-stack
reinjection, shared-UMEM zero copy, cleanup after close/signals/SIGKILL,
other people's programs, and one-line errors.

Traffic is spread over RX queues the way the lab's notes say: XPS maps
CPU c to TX queue c of the sender, so a sender thread pinned to CPU c hits
RX queue c of the peer (veth receives per queue once an XDP program is
attached).  Needs root and >= 2 CPUs.
"""

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

import netmapy
from netmapy import fastpath
from netmapy.errors import InterfaceNotFound, MemoryMismatch, QueueOutOfRange
from netmapy.names import Mode, PortName, parse_name
from netmapy.host.netns import netns

from backend_contract import BackendContract, Channel
from conftest import make_frame, needs_root, open_fds, unprivileged

xdp = pytest.importorskip("netmapy.backends.xdp",
                          reason="the xdp extension is not built")
from netmapy.backends.xdp import prog as xdpprog  # noqa: E402

pytestmark = [
    needs_root,
    pytest.mark.skipif((os.cpu_count() or 1) < 2,
                       reason="needs 2 CPUs to spread traffic over 2 queues"),
]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------- helpers

def host_name(ifname, suffix="^"):
    """xdp:IF^ (host ring) -- as a PortName if names.py does not yet
    accept host rings for xdp."""
    try:
        return parse_name("xdp:%s%s" % (ifname, suffix))
    except netmapy.PortNameError:
        return PortName("xdp", ifname, mode=Mode.SW if suffix == "^" else Mode.NIC_SW)


@contextlib.contextmanager
def on_cpu(cpu):
    """Pin the calling thread to one CPU (XPS then picks TX queue cpu)."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


def udp_socket(ns, bind=None, rcvbuf=1 << 21):
    with netns(ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if bind:
        s.bind(bind)
    return s


def send_from_cpu(ns, cpu, dst, payloads, sport=None):
    """Send UDP datagrams from a thread pinned to cpu (one sendto each)."""
    with on_cpu(cpu):
        s = udp_socket(ns, ("0.0.0.0", sport or 0))
        try:
            for p in payloads:
                s.sendto(p, dst)
        finally:
            s.close()


def drain_socket(s, quiet=0.3):
    out = []
    s.settimeout(quiet)
    try:
        while True:
            out.append(s.recv(65536))
    except socket.timeout:
        pass
    return out


def ring_payloads(port, n, timeout=3.0, ring=None):
    """UDP payloads of up to n packets from port's RX rings: {ring: [..]}."""
    got = {}
    total = 0
    end = time.monotonic() + timeout
    while total < n and time.monotonic() < end:
        b = port.recv(timeout=0.3)
        for f in b.tobytes():
            got.setdefault(b.ring, []).append(f[42:])
            total += 1
    # a little longer: nothing more must come
    b = port.recv(timeout=0.2)
    for f in b.tobytes():
        got.setdefault(b.ring, []).append(f[42:])
    return got


def programs_named(prefix="netmapy"):
    out = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True,
                         text=True).stdout
    return [m for m in re.findall(r'"name":"([^"]*)"', out) if m.startswith(prefix)]


def maps_named(prefix="netmapy"):
    out = subprocess.run(["bpftool", "-j", "map", "list"], capture_output=True,
                         text=True).stdout
    return [m for m in re.findall(r'"name":"([^"]*)"', out) if m.startswith(prefix)]


def xdp_on(ns, ifname):
    with netns(ns):
        return xdp.xdp_program(ifname)


def one_line(e):
    text = str(e)
    assert "\n" not in text and len(text) < 400, text
    return text


@pytest.fixture(autouse=True)
def nothing_left_open():
    """After every test: no xdp port open, no program held by this process."""
    yield
    import gc
    gc.collect()
    assert xdp.attachments() == {}
    assert [p for p in xdp.port._open_ports if not p.closed] == []


@pytest.fixture(scope="module")
def veth():
    """Both ends in one namespace (the contract's channel)."""
    from tools.lab import SingleNsVeth
    with SingleNsVeth(queues=2) as v:
        yield v


@pytest.fixture
def pair():
    """Two namespaces, 2 queues: ns_a sends, ns_b receives (10.250.0.x)."""
    from tools.lab import VethPair
    with VethPair(queues=2) as vp:
        yield vp


# ---------------------------------------------------------- the contract

class TestXdpContract(BackendContract):
    backend = "xdp"
    leak_rounds = 60

    @pytest.fixture(autouse=True)
    def _veth(self, veth):
        self.v = veth
        # one port stays open on queue 1: the program stays attached and
        # the cycles below cost a socket each, not an attach and a detach
        keeper = netmapy.open("xdp:%s~1" % veth.if_b, netns=veth.ns)
        yield
        keeper.close()

    @contextlib.contextmanager
    def channel(self, **kw):
        v = self.v
        # frames sent on TX queue 0 of va arrive on RX queue 0 of vb
        rx = netmapy.open("xdp:%s~0" % v.if_b, netns=v.ns, umem_frames=8192, **kw)
        tx = netmapy.open("xdp:%s-0/T" % v.if_a, netns=v.ns, **kw)
        ch = Channel(tx, lambda: rx)
        ch.rx()
        try:
            yield ch
        finally:
            ch.close()

    def same_memory_tx(self, port):
        return netmapy.open("xdp:%s-1/T" % self.v.if_a, netns=self.v.ns, share=port)

    def open_close_once(self):
        with netmapy.open("xdp:%s~0" % self.v.if_b, netns=self.v.ns):
            pass


# ------------------------------------------------- single RX queue mode

def test_single_queue_bypass_exact(pair):
    """xdp:vb~1 gets exactly what arrives on queue 1; queue 0's packets
    reach a socket in the namespace as if nothing had changed."""
    vp = pair
    sink = udp_socket(vp.ns_b, (vp.ip_b, 9000))
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b) as port:
        assert port.backend == "xdp" and port.queues == (1,)
        assert len(port.rx_rings) == 1 and len(port.tx_rings) == 0
        p0 = [b"cpu0-%05d" % i for i in range(300)]
        p1 = [b"cpu1-%05d" % i for i in range(300)]
        t = threading.Thread(target=send_from_cpu, args=(vp.ns_a, 0, (vp.ip_b, 9000), p0))
        t.start()
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 9000), p1)
        t.join()
        got = ring_payloads(port, 300)
        assert got == {0: p1}
        assert drain_socket(sink) == p0
        st = port.stats()
        assert st["rx_packets"] == 300 and st["rx_dropped"] == 0
        info = port.info()
        assert info["xdp_mode"] == "native" and info["queues"] == [1]
    sink.close()
    assert xdp_on(vp.ns_b, vp.if_b) is None


def test_netmap_prefix_falls_back_to_xdp(pair):
    vp = pair
    if os.path.exists("/dev/netmap"):
        pytest.skip("netmap is loaded here")
    with netmapy.open("netmap:%s~1" % vp.if_b, netns=vp.ns_b) as port:
        assert port.backend == "xdp"


def test_all_queues_and_ring_pairs(pair):
    """xdp:vb has a ring pair per queue: ring q receives queue q, and its TX
    ring transmits on the interface."""
    vp = pair
    with netmapy.open("xdp:%s" % vp.if_b, netns=vp.ns_b) as port:
        assert port.queues == (0, 1)
        assert len(port.rx_rings) == 2 and len(port.tx_rings) == 2
        for cpu in (0, 1):
            send_from_cpu(vp.ns_a, cpu, (vp.ip_b, 9000),
                          [b"q%d-%04d" % (cpu, i) for i in range(100)])
        got = ring_payloads(port, 200)
        assert got == {c: [b"q%d-%04d" % (c, i) for i in range(100)] for c in (0, 1)}
        # TX on ring 1: frames reach the peer
        with netns(vp.ns_a):
            rs = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88B5))
        rs.bind((vp.if_a, 0))
        frames = [make_frame(i, 100, dst=bytes.fromhex(vp.mac_a.replace(":", "")))
                  for i in range(50)]
        ring = port.tx_rings[1]
        for f in frames:
            ring[ring.head].set(f)
            ring.advance(1)
        ring.sync()
        out = []
        rs.settimeout(1)
        while len(out) < 50:
            out.append(rs.recv(2048))
        rs.close()
        assert out == frames
    with netmapy.open("xdp:%s-1" % vp.if_b, netns=vp.ns_b) as port:
        assert port.queues == (1,) and len(port.tx_rings) == 1


def test_queues_added_and_removed_while_running(pair):
    vp = pair
    sink = udp_socket(vp.ns_b, (vp.ip_b, 9000))

    def burst(tag):
        p = {c: [b"%s-%d-%03d" % (tag, c, i) for i in range(50)] for c in (0, 1)}
        for c in (0, 1):
            send_from_cpu(vp.ns_a, c, (vp.ip_b, 9000), p[c])
        return p

    with netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b) as port:
        with pytest.raises(netmapy.NetmapyError, match="umem_frames"):
            port.add_queue(1)                  # its UMEM is sized for one queue
    with netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b, umem_frames=16384) as port:
        p = burst(b"a")
        assert ring_payloads(port, 50) == {0: p[0]}
        assert drain_socket(sink) == p[1]
        port.add_queue(1)
        assert port.queues == (0, 1) and len(port.rx_rings) == 2
        p = burst(b"b")
        assert ring_payloads(port, 100) == {0: p[0], 1: p[1]}
        assert drain_socket(sink, 0.1) == []
        port.remove_queue(0)
        assert port.queues == (1,) and len(port.rx_rings) == 1
        p = burst(b"c")
        assert ring_payloads(port, 50) == {0: p[1]}
        assert drain_socket(sink) == p[0]
        with pytest.raises(ValueError):
            port.remove_queue(0)
        with pytest.raises(QueueOutOfRange):
            port.add_queue(7)
        assert port.stats()["rx_packets"] == 100     # queue 1: bursts b and c
    # two ports, one program: closing one leaves the other's queue alone
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b) as p1:
        p0 = netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b)
        assert p0.info()["xdp_prog_id"] == p1.info()["xdp_prog_id"]
        p0.close()
        p = burst(b"d")
        assert ring_payloads(p1, 50) == {0: p[1]}
        assert drain_socket(sink) == p[0]
    sink.close()
    assert xdp_on(vp.ns_b, vp.if_b) is None


# --------------------------------------------------------------- steer

def test_steer_only_matching_packets_bypass(pair):
    vp = pair
    dns = udp_socket(vp.ns_b, (vp.ip_b, 53))
    other = udp_socket(vp.ns_b, (vp.ip_b, 54))
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b,
                      steer="udp dst port 53") as port:
        assert port.steer == "udp dst port 53"
        q1_dns = [b"dns-q1-%03d" % i for i in range(80)]
        q1_other = [b"oth-q1-%03d" % i for i in range(80)]
        q0_dns = [b"dns-q0-%03d" % i for i in range(80)]
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 53), q1_dns)
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 54), q1_other)
        send_from_cpu(vp.ns_a, 0, (vp.ip_b, 53), q0_dns)
        assert ring_payloads(port, 80) == {0: q1_dns}
        assert drain_socket(dns) == q0_dns          # queue 0: not bypassed
        assert drain_socket(other) == q1_other      # queue 1, not matching
        # change the filter while running
        port.set_steer("udp dst port 54")
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 53), q1_dns)
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 54), q1_other)
        assert ring_payloads(port, 80) == {0: q1_other}
        assert drain_socket(dns) == q1_dns
        # classic BPF text (tcpdump -ddd) works too: accept everything
        port.set_steer("1,6 0 0 262144")
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 53), q1_dns[:10])
        assert ring_payloads(port, 10) == {0: q1_dns[:10]}
    for s in (dns, other):
        s.close()


def test_steer_protochain_loops_on_live_frames(pair):
    """'ip protochain 17' (a loop in classic BPF) as a live steer program,
    tail-called by the dispatcher: UDP behind an AH header leaves the
    kernel (one turn of the loop), TCP behind AH and plain ICMP stay."""
    import struct
    vp = pair
    mac = lambda m: bytes.fromhex(m.replace(":", ""))

    def ip4(proto, l4):
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0,
                          socket.inet_aton(vp.ip_a), socket.inet_aton(vp.ip_b))
        return mac(vp.mac_b) + mac(vp.mac_a) + b"\x08\x00" + hdr + l4

    udp = struct.pack("!HHHH", 1000, 9, 12, 0) + b"tail"
    tcp = struct.pack("!HHIIBBHHH", 1000, 9, 0, 0, 0x50, 2, 1024, 0, 0)
    ah = lambda nh: bytes([nh, 4]) + bytes(22)           # (4 + 2) * 4 = 24 bytes
    frames = {"ah-udp": ip4(51, ah(17) + udp), "ah-tcp": ip4(51, ah(6) + tcp),
              "udp": ip4(17, udp), "icmp": ip4(1, bytes([8, 0, 0, 0, 0, 1, 0, 1]))}
    want = {k: cbpf_match("ip protochain 17", f) for k, f in frames.items()}
    assert want == {"ah-udp": True, "ah-tcp": False, "udp": True, "icmp": False}
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b, steer="ip protochain 17") as port:
        with on_cpu(1):
            with netns(vp.ns_a):
                rs = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            try:
                rs.bind((vp.if_a, 0))
                for k in ("ah-udp", "ah-tcp", "udp", "icmp") * 5:
                    rs.send(frames[k])
            finally:
                rs.close()
        got = []
        end = time.monotonic() + 3
        while len(got) < 10 and time.monotonic() < end:
            got += port.recv(timeout=0.3).tobytes()
        got += port.recv(timeout=0.2).tobytes()
        assert got == [frames["ah-udp"], frames["udp"]] * 5


def cbpf_match(expr, frame):
    return xdpprog.cbpf_match(xdpprog.compile_filter(expr), frame)


def test_steer_netmask_is_the_interfaces(pair):
    """steer='ip broadcast' takes the netmask of the interface (10.250.0.2/24
    here): datagrams to 10.250.0.255 leave the kernel, unicast ones stay;
    without an address the error names the interface and the option."""
    vp = pair
    uni = udp_socket(vp.ns_b, ("0.0.0.0", 9))
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b, steer="ip broadcast") as port:
        bc = [b"bcast-%03d" % i for i in range(40)]
        un = [b"ucast-%03d" % i for i in range(40)]
        with on_cpu(1):
            s = udp_socket(vp.ns_a, ("0.0.0.0", 0))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            try:
                for p in bc:
                    s.sendto(p, ("10.250.0.255", 9))
                for p in un:
                    s.sendto(p, (vp.ip_b, 9))
            finally:
                s.close()
        assert ring_payloads(port, 40) == {0: bc}
        assert drain_socket(uni) == un
        # an explicit netmask: under /16 10.250.0.255 is no broadcast
        port.set_steer("ip broadcast", netmask="255.255.0.0")
        send_from_cpu(vp.ns_a, 1, (vp.ip_b, 9), [b"x"])
        assert ring_payloads(port, 1, timeout=0.5) == {}
        assert drain_socket(uni) == [b"x"]
    uni.close()
    subprocess.run(["ip", "-n", vp.ns_b, "addr", "flush", "dev", vp.if_b], check=True)
    with pytest.raises(xdpprog.SteerError) as e:
        netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b, steer="ip broadcast")
    msg = one_line(e.value)
    assert msg.startswith("'ip broadcast': ") and "%s has no IPv4 address" % vp.if_b in msg
    assert "netmask=" in msg
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b, steer="ip broadcast",
                      netmask="/24"):
        pass
    assert xdp_on(vp.ns_b, vp.if_b) is None


@pytest.mark.parametrize("expr", [
    "udp dst port 53", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "ip[2:2] > 100 and not icmp", "vlan 10 and udp", "ip6 and tcp port 80",
    "net 10.0.0.0/8 or (ether[0] & 1 = 1)", "len > 100", "ip[0] & 0xf > 5",
    "udp[8:4] = 0x01020304", "greater 64", "ip proto 47 or ip6 proto 47",
])
def test_steer_programs_pass_the_verifier_and_match_pcap(expr):
    """Every program the translator makes loads (the verifier accepts it)
    and agrees with libpcap's interpreter on sample packets."""
    from tools.lab import build_udp_frame
    cbpf = xdpprog.compile_filter(expr)
    # matches return XDP_TX here (no map needed), the rest XDP_PASS
    fd = xdp.load_program(xdpprog.steer_program(cbpf, match_action=xdpprog.XDP_TX),
                          "netmapy_t")
    try:
        frames = [build_udp_frame("02:00:00:00:00:01", "02:00:00:00:00:02",
                                  "10.0.0.1", "10.0.0.2", 1000, d, size)
                  for d in (53, 54, 80) for size in (60, 200, 1000)]
        vlan = bytes.fromhex("020000000002020000000001" "8100000a")
        frames.append(vlan + frames[0][12:])
        frames.append(frames[0][:30])                  # cut short
        frames.append(bytes(frames[3][:14]) + bytes([0x46]) + frames[3][15:])
        for f in frames:
            want = xdpprog.cbpf_match(cbpf, f)
            got = xdp.test_run(fd, f) == xdpprog.XDP_TX
            assert got == want, (expr, f[:40].hex())
    finally:
        os.close(fd)


def test_steer_errors_are_one_line():
    with pytest.raises(xdpprog.SteerError) as e:
        xdpprog.steer_program(xdpprog.compile_filter("udp dst port banana"))
    assert "banana" in one_line(e.value)
    # the kernel's ancillary and negative offsets: libpcap's interpreter
    # treats them as loads past the end, and so does the translation (with
    # a warning naming the construct)
    from netmapy.host.cbpf import CbpfWarning
    vlan_tci = (0x20, 0, 0, (xdpprog.SKF_AD_OFF + 44) & 0xffffffff)
    net = (0x30, 0, 0, (xdpprog.SKF_NET_OFF + 9) & 0xffffffff)
    for ins, name in ((vlan_tci, "vlan_tci"), (net, "SKF_NET_OFF")):
        with pytest.warns(CbpfWarning, match=name):
            asm = xdpprog.steer_program([ins, (0x06, 0, 0, 0xffff)],
                                        match_action=xdpprog.XDP_TX)
        fd = xdp.load_program(asm, "netmapy_t")
        try:
            assert xdp.test_run(fd, bytes(60)) == xdpprog.XDP_PASS
        finally:
            os.close(fd)
    with pytest.raises(xdpprog.BpfTranslateError) as e:
        xdpprog.steer_program([(0x15, 5, 0, 1), (0x06, 0, 0, 1)], source="'mine'")
    msg = one_line(e.value)
    assert msg.startswith("'mine': instruction 0 (jeq #0x1 jt 6 jf 1)") and "past the end" in msg
    with pytest.raises(xdpprog.BpfTranslateError) as e:
        xdpprog.steer_program([(0x05, 0, 0, 0xffffffff), (0x06, 0, 0, 1)])
    assert "jumps to itself" in one_line(e.value)


# ------------------------------------------------------ host reinjection

def test_reinjected_packets_reach_a_real_server_and_its_replies_the_sender(pair):
    """Scrub queue 1 and hand the packets to the host stack through the
    host TX ring (zero copy: same UMEM): a UDP echo server in ns_b gets
    them, its replies go out vb and reach the senders in ns_a."""
    vp = pair
    server = udp_socket(vp.ns_b, (vp.ip_b, 7000))
    echoed = []
    stop = threading.Event()

    def echo():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                data, addr = server.recvfrom(2048)
            except socket.timeout:
                continue
            echoed.append(data)
            server.sendto(b"re:" + data, addr)

    th = threading.Thread(target=echo)
    th.start()
    c0 = udp_socket(vp.ns_a, (vp.ip_a, 6000))
    c1 = udp_socket(vp.ns_a, (vp.ip_a, 6001))
    port = netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b, host=True)
    try:
        assert len(port.host_tx_rings) == 1 and port.info()["host_ring"]
        p1 = [b"via-ring-%03d" % i for i in range(100)]
        p0 = [b"direct-%03d" % i for i in range(100)]
        with on_cpu(1):
            for p in p1:
                c1.sendto(p, (vp.ip_b, 7000))
        with on_cpu(0):
            for p in p0:
                c0.sendto(p, (vp.ip_b, 7000))
        seen = []
        end = time.monotonic() + 5
        while len(seen) < 100 and time.monotonic() < end:
            port.poll(timeout=0.2)
            seen += [s.tobytes()[42:] for s in port.rx_ring]
            port.forward(port)               # RX ring -> host TX ring, swap
        assert seen == p1
        replies1 = drain_socket(c1, 0.5)
        replies0 = drain_socket(c0, 0.5)
        assert replies1 == [b"re:" + p for p in p1]
        assert replies0 == [b"re:" + p for p in p0]
        assert sorted(echoed) == sorted(p0 + p1)
        st = port.stats()
        assert st["host_tx_packets"] == 100 and st["host_tx_failed"] == 0
    finally:
        port.close()
        stop.set()
        th.join()
        for s in (server, c0, c1):
            s.close()


def test_host_only_port(pair):
    """xdp:vb^ alone: no XDP program, a host TX ring that feeds vb's stack."""
    from tools.lab import build_udp_frame
    vp = pair
    srv = udp_socket(vp.ns_b, (vp.ip_b, 5000))
    with netmapy.open(host_name(vp.if_b), netns=vp.ns_b) as h:
        assert len(h.rx_rings) == 0 and len(h.tx_rings) == 0
        assert xdp_on(vp.ns_b, vp.if_b) is None
        frames = [build_udp_frame(vp.mac_a, vp.mac_b, vp.ip_a, vp.ip_b, 6000, 5000,
                                  80, b"h%03d" % i) for i in range(20)]
        # from another namespace than the port's: still delivered to vb's
        r = h.host_tx_rings[0]
        for f in frames:
            r[r.head].set(f)
            r.advance(1)
        r.sync()
        got = drain_socket(srv)
        assert got == [f[42:] for f in frames]
    srv.close()


# ------------------------------------------------ shared UMEM, zero copy

def test_shared_umem_bridge_zero_copy():
    """Two interfaces, one UMEM: the bridge swaps buffers; a port with its
    own UMEM cannot swap with them."""
    from tools.lab import Lab
    prefix = "tx%d" % os.getpid()
    with Lab(lines=1, prefix=prefix) as lab:
        ln = lab.lines[0]
        sink = udp_socket(ln.sink_ns, (ln.sink_ip, 9000))
        a = netmapy.open("xdp:%s" % ln.mbox_in, netns=ln.mbox_ns, share="bridge1")
        b = netmapy.open("xdp:%s@share:port=xdp:%s" % (ln.mbox_out, ln.mbox_in),
                         netns=ln.mbox_ns)
        try:
            assert a.mem is b.mem
            # slot level: swap an RX slot of a with a TX slot of b
            payloads = [b"zc-%04d" % i for i in range(500)]
            send_from_cpu(ln.src_ns, 0, (ln.sink_ip, 9000), payloads[:1])
            a.poll(timeout=2)
            rs = a.rx_ring[a.rx_ring.head]
            ts = b.tx_ring[b.tx_ring.head]
            idx = rs.buf_idx
            rs.swap(ts)
            assert ts.buf_idx == idx and ts.tobytes()[42:] == payloads[0]
            a.rx_ring.advance(1)
            b.tx_ring.advance(1)
            b.txsync()
            assert drain_socket(sink, 0.5) == payloads[:1]
            # across UMEMs: refused, with the fix in the message
            other = netmapy.open("xdp:%s-0/T" % ln.src_if, netns=ln.src_ns)
            try:
                send_from_cpu(ln.src_ns, 0, (ln.sink_ip, 9000), payloads[:1])
                a.poll(timeout=2)
                with pytest.raises(MemoryMismatch, match="copy"):
                    a.rx_ring[a.rx_ring.head].swap(other.tx_ring[other.tx_ring.head])
                a.rx_ring.advance(1)
            finally:
                other.close()
            # the nogil bridge, both ways
            res = {}
            th = threading.Thread(target=lambda: res.update(
                fastpath.bridge(a, b, count=len(payloads), seconds=10)))
            th.start()
            send_from_cpu(ln.src_ns, 0, (ln.sink_ip, 9000), payloads)
            th.join()
            assert res["swapped"] and res["a_to_b_packets"] == len(payloads)
            assert drain_socket(sink) == payloads
        finally:
            b.close()
            a.close()
            sink.close()


# ------------------------------------------------------------- cleanup

CHILD = r"""
import sys, time, logging, signal
sys.path.insert(0, %(repo)r)
import netmapy
from netmapy.backends import xdp
xdp.install_signal_cleanup()          # the opt-in: SIGTERM/SIGHUP -> SystemExit
port = netmapy.open(%(name)r, **%(kw)r)
print("ready", flush=True)
time.sleep(60)
"""

BARE = r"""
import sys, signal
sys.path.insert(0, %(repo)r)
import netmapy
before = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)]
with netmapy.open(%(name)r) as port:
    after = [signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)]
print(before == after, before[0] is signal.SIG_DFL)
"""


def test_opening_installs_no_signal_handler(pair):
    """The library installs no signal handler by itself: a program that
    only opens an xdp port keeps the handlers it had (cleanup on signals
    is xdp.install_signal_cleanup(), an opt-in)."""
    vp = pair
    code = BARE % dict(repo=REPO, name="xdp:%s~0" % vp.if_b)
    out = subprocess.run(["ip", "netns", "exec", vp.ns_b, sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def _child(ns, name, **kw):
    code = CHILD % dict(repo=REPO, name=name, kw=kw)
    p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    assert line.strip() == "ready", p.stderr.read()
    return p


@pytest.mark.parametrize("sig,attach", [
    ("SIGTERM", "link"), ("SIGINT", "link"), ("SIGTERM", "netlink"),
    ("SIGKILL", "link")])
def test_program_removed_when_the_process_ends(pair, sig, attach):
    vp = pair
    p = _child(vp.ns_b, "xdp:%s~0" % vp.if_b, attach=attach)
    assert xdp_on(vp.ns_b, vp.if_b)[1] == xdpprog.PROG_NAME
    p.send_signal(getattr(__import__("signal"), sig))
    p.wait(10)
    p.stdout.close()
    p.stderr.close()
    assert xdp_on(vp.ns_b, vp.if_b) is None


def test_stale_program_after_sigkill_is_replaced(pair, caplog):
    """A netlink-attached program survives SIGKILL; the next open sees it is
    netmapy's, that nobody uses it, and replaces it."""
    vp = pair
    p = _child(vp.ns_b, "xdp:%s~0" % vp.if_b, attach="netlink")
    old = xdp_on(vp.ns_b, vp.if_b)
    p.kill()
    p.wait(10)
    p.stdout.close()
    p.stderr.close()
    assert xdp_on(vp.ns_b, vp.if_b) == old         # left behind
    with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b) as port:
        assert port.info()["xdp_prog_id"] != old[0]
        assert "stale" in caplog.text
    assert xdp_on(vp.ns_b, vp.if_b) is None


def test_a_live_process_program_is_joined_not_replaced(pair):
    vp = pair
    p = _child(vp.ns_b, "xdp:%s~0" % vp.if_b)
    try:
        prog = xdp_on(vp.ns_b, vp.if_b)
        with netmapy.open("xdp:%s~1" % vp.if_b, netns=vp.ns_b) as port:
            assert port.info()["xdp_prog_id"] == prog[0] and port.info()["xdp_joined"]
            send_from_cpu(vp.ns_a, 1, (vp.ip_b, 9000), [b"x%d" % i for i in range(20)])
            assert ring_payloads(port, 20) == {0: [b"x%d" % i for i in range(20)]}
        assert xdp_on(vp.ns_b, vp.if_b) == prog      # the child still uses it
    finally:
        p.terminate()
        p.wait(10)
        p.stdout.close()
        p.stderr.close()
    assert xdp_on(vp.ns_b, vp.if_b) is None


def test_someone_elses_program_is_never_removed_silently(pair):
    vp = pair
    with netns(vp.ns_b):
        pid = xdp.attach_program(vp.if_b, xdpprog.drop_program(), "their_prog")
    try:
        with pytest.raises(xdp.XdpProgramInUse) as e:
            netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b)
        msg = one_line(e.value)
        assert "their_prog" in msg and str(pid) in msg and "force=True" in msg
        assert xdp_on(vp.ns_b, vp.if_b)[:2] == (pid, "their_prog")
        with netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b, force=True):
            assert xdp_on(vp.ns_b, vp.if_b)[1] == xdpprog.PROG_NAME
        assert xdp_on(vp.ns_b, vp.if_b)[:2] == (pid, "their_prog")   # put back
    finally:
        with netns(vp.ns_b):
            xdp.detach_program(vp.if_b)


def test_thousand_open_close_cycles_leave_nothing(pair):
    """1,000 open/close cycles (spread over 4 interfaces at once, as the
    kernel serialises attach/detach anyway) leave no XDP program, map, fd
    or netmapy object behind."""
    from tools.lab import VethPair
    extra = [VethPair(queues=1).up() for _ in range(3)]
    ends = [(pair.ns_b, pair.if_b)] + [(v.ns_b, v.if_b) for v in extra]
    try:
        for ns, ifn in ends:
            netmapy.open("xdp:%s~0" % ifn, netns=ns).close()   # warm up
        fds, res = open_fds(), netmapy.resources()
        errors = []

        def cycles(ns, ifn, n):
            try:
                with netns(ns):
                    for _ in range(n):
                        netmapy.open("xdp:%s~0" % ifn).close()
            except BaseException as e:      # pragma: no cover
                errors.append(e)

        ths = [threading.Thread(target=cycles, args=(ns, ifn, 250)) for ns, ifn in ends]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        assert not errors, errors
        assert open_fds() == fds
        assert netmapy.resources() == res
        for ns, ifn in ends:
            out = subprocess.run(["ip", "-n", ns, "link", "show", ifn],
                                 capture_output=True, text=True).stdout
            assert "xdp" not in out
        # the kernel frees programs and maps from a workqueue after their
        # last reference goes: give it a moment, then insist
        deadline = time.monotonic() + 10
        while (programs_named() or maps_named()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert programs_named() == [] and maps_named() == []
    finally:
        for v in extra:
            v.down()


# -------------------------------------------------------------- errors

def test_errors_are_one_clear_line(pair):
    vp = pair
    with pytest.raises(InterfaceNotFound) as e:
        netmapy.open("xdp:nosuch0~0", netns=vp.ns_b)
    assert "nosuch0" in one_line(e.value)
    with pytest.raises(QueueOutOfRange) as e:
        netmapy.open("xdp:%s~2" % vp.if_b, netns=vp.ns_b)
    assert "queue 2" in one_line(e.value)
    with pytest.raises(xdp.XdpUnsupported) as e:
        netmapy.open("xdp:lo~0", netns=vp.ns_b)
    assert "generic" in one_line(e.value)
    with pytest.raises(xdpprog.SteerError) as e:
        netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b, steer="udp port banana")
    one_line(e.value)
    with pytest.raises(xdpprog.BpfTranslateError) as e:
        netmapy.open("xdp:%s~0" % vp.if_b, netns=vp.ns_b,
                     steer=[(0x30, 0, 0, 14), (0x34, 0, 0, 0), (0x06, 0, 0, 1)])
    assert "division by the constant 0" in one_line(e.value)
    # nothing was left attached by the failed opens
    assert xdp_on(vp.ns_b, vp.if_b) is None
    # generic mode works where native does not
    with netmapy.open("xdp:lo~0", netns=vp.ns_b, xdp_mode="generic") as port:
        assert port.info()["xdp_mode"] == "generic"


def test_no_privilege_is_one_line(pair):
    vp = pair
    code = ("import sys; sys.path.insert(0, %r); import netmapy\n"
            "try:\n    netmapy.open('xdp:%s~0')\n"
            "except netmapy.NoPrivilege as e:\n    print('NOPRIV', e)\n") % (REPO, vp.if_b)
    argv = ["ip", "netns", "exec", vp.ns_b] + unprivileged([sys.executable, "-c", code])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert out.stdout.startswith("NOPRIV"), out.stderr
    assert len(out.stdout.strip().splitlines()) == 1
    assert "CAP_" in out.stdout
