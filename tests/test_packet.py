"""The packet backend (AF_PACKET) on veth pairs in namespaces: the
contract, plus fanout, per-queue receive, promiscuous mode and errors."""

import contextlib
import os
import subprocess
import sys
import time

import pytest

import netmapy
from netmapy.host import iface
from netmapy.errors import (InterfaceDown, InterfaceNotFound, NoPrivilege,
                            QueueOutOfRange, BackendError)
from netmapy.host.netns import netns

from backend_contract import BackendContract, CythonExampleContract, Channel, receive_all, send_all
from conftest import IS_ROOT, frame_set, make_frame, needs_root, unprivileged

pytestmark = needs_root

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def veth():
    from tools.lab import SingleNsVeth
    with SingleNsVeth(queues=2) as v:
        yield v


class TestPacketContract(BackendContract, CythonExampleContract):
    backend = "packet"
    # Closing an AF_PACKET socket waits for an RCU grace period in the kernel
    # (packet_release -> synchronize_net), tens of ms on this VM, two sockets
    # per port: 10,000 rounds would take over ten minutes.  Pipes and pcap
    # run the full 10,000; here 300 rounds still show any per-open leak.
    leak_rounds = 300

    @pytest.fixture(autouse=True)
    def _veth(self, veth):
        self.v = veth

    def frames_for(self, n):
        return frame_set(n)

    @contextlib.contextmanager
    def channel(self, **kw):
        v = self.v
        rx = netmapy.open("packet:%s/R" % v.if_b, netns=v.ns, **kw)
        tx = netmapy.open("packet:%s/T" % v.if_a, netns=v.ns, **kw)
        ch = Channel(tx, lambda: rx)
        ch.rx()
        try:
            yield ch
        finally:
            ch.close()

    def same_memory_tx(self, port):
        # ports of one process share memory id 1 unless told otherwise
        return netmapy.open("packet:%s/T" % self.v.if_b, netns=self.v.ns)

    def open_close_once(self):
        with netmapy.open("packet:%s" % self.v.if_b, netns=self.v.ns,
                          block_nr=2, block_size=1 << 16, frame_nr=16, slots=64):
            pass


class TestPacketRingContract(TestPacketContract):
    """The same contract with the TPACKET TX ring (tx_mode="ring") instead
    of the default sendmmsg copies."""
    leak_rounds = 100

    @contextlib.contextmanager
    def channel(self, **kw):
        v = self.v
        rx = netmapy.open("packet:%s/R" % v.if_b, netns=v.ns, **kw)
        tx = netmapy.open("packet:%s/T" % v.if_a, netns=v.ns, tx_mode="ring", **kw)
        assert tx.stats()["tx_mode"] == "ring"
        ch = Channel(tx, lambda: rx)
        ch.rx()
        try:
            yield ch
        finally:
            ch.close()


def test_tx_mode_is_checked(veth):
    with pytest.raises(ValueError, match="tx_mode must be 'ring'"):
        netmapy.open("packet:%s/T" % veth.if_a, netns=veth.ns, tx_mode="bogus")


def test_interface_counters_match(veth):
    """What the TX port sends is what the interface counts, and the RX port
    receives every frame the peer counts."""
    v = veth
    before_a = v.counters("a")
    before_b = v.counters("b")
    frames = frame_set(2000, sizes=(60,))
    with netmapy.open("packet:%s/R" % v.if_b, netns=v.ns) as rx, \
            netmapy.open("packet:%s/T" % v.if_a, netns=v.ns) as tx:
        send_all(tx, frames)
        got = receive_all(rx, len(frames))
        st = rx.stats()
        assert tx.stats()["tx_packets"] == 2000
    assert got == frames
    assert st["rx_kernel_drops"] == 0
    assert v.counters("a")["tx_packets"] - before_a["tx_packets"] == 2000
    assert v.counters("b")["rx_packets"] - before_b["rx_packets"] == 2000


def test_bidirectional_port_does_not_see_its_own_frames(veth):
    v = veth
    with netmapy.open("packet:%s" % v.if_a, netns=v.ns) as a, \
            netmapy.open("packet:%s" % v.if_b, netns=v.ns) as b:
        send_all(a, [make_frame(1)])
        send_all(b, [make_frame(2)])
        assert receive_all(b, 1) == [make_frame(1)]
        assert receive_all(a, 1) == [make_frame(2)]
        assert len(a.recv(timeout=0.2)) == 0


def test_fanout_gives_disjoint_shares(veth):
    """Two ports in one fanout group (hash mode) split the flows: every
    frame arrives exactly once, and both members get some."""
    v = veth
    frames = []
    for i in range(400):
        # vary the IPv4/UDP 5-tuple so the flow hash spreads them
        ip = bytes.fromhex("4500002e0000000040110000") + bytes([10, 0, i % 256, 1]) + \
            bytes([10, 0, 0, 2])
        udp = (1000 + i).to_bytes(2, "big") + (53).to_bytes(2, "big") + b"\x00\x1a\x00\x00"
        frames.append(b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" +
                      ip + udp + i.to_bytes(4, "big") + bytes(14))
    name = "packet:%s/R@fanout:group=4242,mode=hash" % v.if_b
    with netmapy.open(name, netns=v.ns) as m1, netmapy.open(name, netns=v.ns) as m2, \
            netmapy.open("packet:%s/T" % v.if_a, netns=v.ns) as tx:
        send_all(tx, frames)
        time.sleep(0.3)
        g1 = receive_all(m1, 400, timeout=0.5)
        g2 = receive_all(m2, 400, timeout=0.5)
    assert len(g1) + len(g2) == 400
    assert sorted(g1 + g2) == sorted(frames)
    assert g1 and g2


def test_single_queue_receive(tmp_path):
    """packet:IF-Q receives only what arrived on RX queue Q.  Two senders
    pinned to CPU 0 and CPU 1 hit queues 0 and 1 (XPS maps CPU c to TX
    queue c, and veth delivers TX queue c to the peer's RX queue c)."""
    from tools.lab import SingleNsVeth
    if os.cpu_count() < 2:
        pytest.skip("needs 2 CPUs")
    with SingleNsVeth(queues=2) as v:
        q0 = netmapy.open("packet:%s-0/R" % v.if_b, netns=v.ns)
        q1 = netmapy.open("packet:%s-1/R" % v.if_b, netns=v.ns)
        allq = netmapy.open("packet:%s/R" % v.if_b, netns=v.ns)
        code = ("import os, sys, netmapy\n"
                "os.sched_setaffinity(0, {%d})\n"
                "with netmapy.open('packet:%s/T', netns='%s') as tx:\n"
                "    tx.send([bytes.fromhex('020000000002020000000001') + b'\\x88\\xb5' + bytes([%d]) * 46] * %d)\n")
        for cpu, n in ((0, 30), (1, 50)):
            subprocess.run([sys.executable, "-c", code % (cpu, v.if_a, v.ns, cpu, n)],
                           check=True, env=dict(os.environ, PYTHONPATH=REPO))
        got0, got1, every = receive_all(q0, 100, 0.5), receive_all(q1, 100, 0.5), \
            receive_all(allq, 100, 0.5)
        for p in (q0, q1, allq):
            p.close()
    assert len(every) == 80
    assert len(got0) == 30 and all(f[14] == 0 for f in got0)
    assert len(got1) == 50 and all(f[14] == 1 for f in got1)


def test_promisc_on_request_and_restored(veth):
    v = veth
    with netns(v.ns):
        assert not iface.info(v.if_b).promisc
    with netmapy.open("packet:%s/R" % v.if_b, netns=v.ns, promisc=True):
        with netns(v.ns):
            assert iface.info(v.if_b).promisc
    with netns(v.ns):
        assert not iface.info(v.if_b).promisc


def test_errors_missing_down_queue(veth):
    v = veth
    with pytest.raises(InterfaceNotFound, match="no network interface 'nosuch0'"):
        netmapy.open("packet:nosuch0", netns=v.ns)
    with pytest.raises(QueueOutOfRange, match="has 2 RX queues.*no queue 5"):
        netmapy.open("packet:%s-5" % v.if_b, netns=v.ns)
    with pytest.raises(BackendError, match="xdp:.*~1"):
        netmapy.open("packet:%s~1" % v.if_b, netns=v.ns)
    # a new veth pair starts down
    subprocess.run(["ip", "-n", v.ns, "link", "add", "name", "dn0", "type", "veth",
                    "peer", "name", "dn1"], check=True)
    try:
        with pytest.raises(InterfaceDown, match="ip link set dev dn0 up"):
            netmapy.open("packet:dn0", netns=v.ns)
    finally:
        subprocess.run(["ip", "-n", v.ns, "link", "del", "dn0"], check=True)


def test_no_privilege_one_clear_error(veth):
    code = ("import netmapy\n"
            "try:\n"
            "    netmapy.open('packet:lo')\n"
            "except netmapy.NoPrivilege as e:\n"
            "    print('NoPrivilege', e.errno, e)\n")
    out = subprocess.run(unprivileged([sys.executable, "-c", code]), capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert out.stdout.startswith("NoPrivilege 1 "), out.stderr
    assert "CAP_NET_RAW" in out.stdout
