"""Interfaces by their Linux names, '-' included, end to end on the lab:
netmapy-bridge, nm-offload and netmapy-pktgen take `nb-mi0`-style names
as they are (the string grammar cannot spell them: a '-' ends a netmap
interface name), carry them to their workers as PortName values, and move
every packet; the library opens them by value (PortName.interface,
open(iface=...))."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import netmapy
import netmapy.host.iface
from netmapy import PortName
from conftest import needs_root, make_frame
from netmapy.host.netns import netns

pytestmark = needs_root
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
IFNAMES = {"src": "nb-si", "in": "nb-mi", "out": "nb-mo", "sink": "nb-ki"}


@pytest.fixture(scope="module")
def lab():
    from tools.lab import Lab
    with Lab(lines=1, queues=2, prefix="td%d" % (os.getpid() % 10000), ifnames=IFNAMES) as lab:
        yield lab


def start(argv, what="running"):
    p = subprocess.Popen([sys.executable, "-m"] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
    err = []
    while True:
        line = p.stderr.readline()
        if not line:
            raise AssertionError("%s did not start: %s %s" % (argv[0], "".join(err),
                                                              p.communicate(timeout=10)[1]))
        err.append(line)
        if ": running," in line:
            p.startup_err = "".join(err)
            return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return [json.loads(l)["summary"] for l in out.splitlines() if '"summary"' in l][0], err


def test_lab_builds_dashed_names(lab):
    ln = lab.lines[0]
    assert (ln.src_if, ln.mbox_in, ln.mbox_out, ln.sink_if) == ("nb-si0", "nb-mi0", "nb-mo0",
                                                                 "nb-ki0")
    for ns, ifname in ((ln.src_ns, ln.src_if), (ln.mbox_ns, ln.mbox_in),
                       (ln.mbox_ns, ln.mbox_out), (ln.sink_ns, ln.sink_if)):
        with netns(ns):
            info = netmapy.host.iface.info(ifname)
        assert info.up and info.num_rx_queues == 2


@pytest.mark.parametrize("backend,queues", [("packet", "1"), ("xdp", "2")])
def test_bridge_forwards_between_dashed_interfaces(lab, backend, queues):
    ln = lab.lines[0]
    p = start(["middlebox.bridge", ln.mbox_in, ln.mbox_out, "--netns", ln.mbox_ns,
               "--backend", backend, "--queues", queues, "--json", "--interval", "0"])
    n = 600
    s_mac = bytes.fromhex(ln.src_mac.replace(":", ""))
    k_mac = bytes.fromhex(ln.sink_mac.replace(":", ""))
    sent = [make_frame(i, 60 + i % 200, dst=k_mac, src=s_mac) for i in range(n)]
    got = []
    try:
        # the library opens the dashed names by value: keyword and PortName
        with netmapy.open(iface=ln.src_if, backend="packet", netns=ln.src_ns) as s, \
                netmapy.open(PortName.interface(ln.sink_if, "packet", rx_only=True),
                             netns=ln.sink_ns) as k:
            for i in range(0, n, 100):
                assert s.send(sent[i:i + 100]) == 100
            deadline = time.monotonic() + 10
            while len(got) < n and time.monotonic() < deadline:
                got += [f for f in k.recv(timeout=0.2).tobytes() if f[12:14] == b"\x88\xb5"]
    finally:
        summary, err = stop(p)
    assert sorted(got) == sorted(sent)
    assert (summary["a"], summary["b"]) == (ln.mbox_in, ln.mbox_out)
    assert summary["a_to_b"]["fwd"] >= n and summary["workers"] == int(queues)
    assert "netmapy-bridge: %s <-> %s" % (ln.mbox_in, ln.mbox_out) in p.startup_err


def test_pktgen_through_the_bridge_by_interface_names(lab):
    ln = lab.lines[0]
    br = start(["middlebox.bridge", ln.mbox_in, ln.mbox_out, "--netns", ln.mbox_ns,
                "--backend", "packet", "--queues", "1", "--json", "--interval", "0"])
    try:
        rx = subprocess.Popen([sys.executable, "-m", "tools.pktgen", "-i", ln.sink_if,
                               "--backend", "packet", "-f", "rx", "--netns", ln.sink_ns,
                               "-n", "3000", "-d", "30", "--json", "-T", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, env=ENV)
        time.sleep(1.0)
        tx = subprocess.run([sys.executable, "-m", "tools.pktgen", "-i", ln.src_if,
                             "--backend", "packet", "-f", "tx", "--netns", ln.src_ns,
                             "-n", "3000", "-R", "50k", "--src-ip", ln.src_ip,
                             "--dst-ip", ln.sink_ip, "--dst-mac", ln.sink_mac, "--json",
                             "-T", "0"], capture_output=True, text=True, cwd=REPO, env=ENV,
                            timeout=60)
        assert tx.returncode == 0, tx.stderr
        out, err = rx.communicate(timeout=60)
        assert rx.returncode == 0, err
    finally:
        stop(br)
    sent = [json.loads(l) for l in tx.stdout.splitlines()]
    recv = [json.loads(l) for l in out.splitlines()]
    start_tx = [d for d in sent if d["type"] == "start"][0]
    assert start_tx["ports"] == ["packet:%s/T" % ln.src_if]
    done_tx = [d for d in sent if d["type"] == "summary"][0]
    done_rx = [d for d in recv if d["type"] == "summary"][0]
    assert done_tx["packets"] == 3000
    assert done_rx["pktgen"] == 3000 and done_rx["lost"] == 0 and done_rx["bad_csum"] == 0


def test_offload_scrubs_a_dashed_interface(tmp_path):
    from tools.lab import VethPair
    from test_offload import udp_frame, echo_server
    with VethPair(queues=1, if_a="nb-cl", if_b="nb-sv") as v:
        rules = tmp_path / "dns.rules"
        rules.write_text("allow udp from %s to any port 53\ndeny udp to port 53\n"
                         "default allow\n" % v.ip_a)
        stop_ev, served = threading.Event(), []
        srv = threading.Thread(target=echo_server, args=(v.ns_b, v.ip_b, 53, stop_ev, served))
        srv.start()
        p = start(["middlebox.offload", v.if_b, "0", "--netns", v.ns_b, "--rules", str(rules),
                   "--json", "--interval", "0"])
        try:
            with netns(v.ns_a):
                c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind((v.ip_a, 40000))
            c.settimeout(3)
            flood = [udp_frame(v.mac_a, v.mac_b, "192.0.2.%d" % (i % 250 + 1), v.ip_b,
                               1024 + i, 53, b"flood%05d" % i) for i in range(500)]
            with netmapy.open(PortName.interface(v.if_a, "packet", tx_only=True),
                              netns=v.ns_a) as tx:
                for k in range(10):
                    assert tx.send(flood[k * 50:(k + 1) * 50]) == 50
                    c.sendto(b"q%d" % k, (v.ip_b, 53))
                replies = sorted(c.recvfrom(2048)[0] for _ in range(10))
            c.close()
            time.sleep(0.3)
        finally:
            summary, err = stop(p)
            stop_ev.set()
            srv.join()
        assert replies == sorted(b"re:q%d" % k for k in range(10))
        assert summary["ifname"] == "nb-sv"
        assert summary["rx"] == 510 and summary["reinjected"] == 10
        assert summary["dropped"] == 500
        with netns(v.ns_b):
            assert netmapy.host.iface.info(v.if_b).xdp_prog_id == 0


def test_lab_cli_takes_dashed_names():
    prefix = "tdc%d" % (os.getpid() % 10000)
    up = subprocess.run([sys.executable, "-m", "tools.lab", "up", "--prefix", prefix,
                         "--ifnames", "in=nb-mi,out=nb-mo"], capture_output=True, text=True,
                        cwd=REPO, env=ENV, timeout=60)
    try:
        assert up.returncode == 0, up.stderr
        assert "nb-mi0" in up.stdout and "nb-mo0" in up.stdout
        with netns(prefix + "mbox"):
            assert netmapy.host.iface.info("nb-mi0").up and netmapy.host.iface.info("nb-mo0").up
    finally:
        down = subprocess.run([sys.executable, "-m", "tools.lab", "down", "--prefix", prefix],
                              capture_output=True, text=True, cwd=REPO, env=ENV, timeout=60)
    assert down.returncode == 0, down.stderr
    bad = subprocess.run([sys.executable, "-m", "tools.lab", "up", "--prefix", prefix,
                          "--ifnames", "in=nb/mi"], capture_output=True, text=True, cwd=REPO,
                         env=ENV, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert "Invalid value for '--ifnames'" in bad.stderr and "'/'" in bad.stderr
