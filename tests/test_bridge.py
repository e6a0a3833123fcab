"""netmapy-bridge end to end on the lab: src -> mbox (bridge) -> sink and
back, exact bytes and counts, filters and their counters, a second
instance refused, a killed worker restarted, counters for scripts."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

import netmapy
from conftest import needs_root, make_frame, stop_within

pytestmark = needs_root
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def lab():
    from tools.lab import Lab
    with Lab(lines=1, queues=2, prefix="tb%d" % (os.getpid() % 10000)) as lab:
        yield lab


def start_bridge(lab, *extra, backend="packet"):
    ln = lab.lines[0]
    argv = [sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
            "--netns", ln.mbox_ns, "--backend", backend, "--stats-json"] + list(extra)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    err = []
    while True:
        line = p.stderr.readline()
        if not line:
            out, rest = p.communicate(timeout=10)
            raise AssertionError("bridge did not start: %s %s" % ("".join(err), rest))
        err.append(line)
        if ": running," in line:
            p.startup_err = "".join(err)
            return p


def stop_bridge(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    summary = None
    lines = []
    for line in out.splitlines():
        d = json.loads(line)
        if "summary" in d:
            summary = d["summary"]
        else:
            lines.append(d)
    assert p.returncode == 0, err
    return summary, lines, err


def frames(n, src, dst, tag, size=100):
    s = bytes.fromhex(src.replace(":", ""))
    d = bytes.fromhex(dst.replace(":", ""))
    return [make_frame(i, size, dst=d, src=s)[:13] + bytes([tag]) + make_frame(i, size)[14:]
            for i in range(n)]


def exchange(lab, n=2000):
    """Send n frames each way at once; return what each end received."""
    ln = lab.lines[0]
    fwd = frames(n, ln.src_mac, ln.sink_mac, 0xb5)
    back = frames(n, ln.sink_mac, ln.src_mac, 0xb6)
    with netmapy.open("packet:%s" % ln.src_if, netns=ln.src_ns) as s, \
            netmapy.open("packet:%s" % ln.sink_if, netns=ln.sink_ns) as k:
        for i in range(0, n, 200):                 # both ways, interleaved
            assert s.send(fwd[i:i + 200]) == len(fwd[i:i + 200])
            assert k.send(back[i:i + 200]) == len(back[i:i + 200])
        got_k, got_s = [], []
        deadline = time.monotonic() + 10
        while (len(got_k) < n or len(got_s) < n) and time.monotonic() < deadline:
            got_k.extend(k.recv(timeout=0.05).tobytes())
            got_s.extend(s.recv(timeout=0.05).tobytes())
    return fwd, back, got_k, got_s


def test_both_directions_exact(lab):
    p = start_bridge(lab)
    try:
        fwd, back, got_k, got_s = exchange(lab)
    finally:
        summary, _, err = stop_bridge(p)
    assert sorted(got_k) == sorted(fwd)          # every packet, bytes identical
    assert sorted(got_s) == sorted(back)
    assert summary["a_to_b"]["fwd"] == len(fwd)
    assert summary["b_to_a"]["fwd"] == len(back)
    for d in ("a_to_b", "b_to_a"):
        c = summary[d]
        assert c["rx"] == c["fwd"] + c["drop"] + c["errors"]
    assert summary["workers"] == 2                    # one per queue pair


def test_filters_drop_and_count(lab, tmp_path):
    """Every counter, bytes included, after known traffic."""
    rules = tmp_path / "r.rules"
    rules.write_text("deny to port 7\nratelimit 1pps burst 3 udp from 10.0.0.9\ndefault allow\n")
    ln = lab.lines[0]
    p = start_bridge(lab, "--rules", str(rules), "--drop", "udp port 9",
                     "--sample-drops", str(tmp_path / "drops"), "--sample-max", "5")
    import struct
    from test_filters import ipv4_udp
    mk = lambda dport, i, size, src="10.0.0.1": (
        bytes.fromhex(ln.sink_mac.replace(":", "")) + bytes.fromhex(ln.src_mac.replace(":", "")) +
        ipv4_udp(src, "10.0.0.2", 1000 + i, dport, payload=b"p" * size)[12:])
    sent = [mk(7, i, 18) for i in range(30)] + [mk(9, i, 100) for i in range(20)] + \
        [mk(53, i, 300) for i in range(40)] + [mk(53, i, 50, "10.0.0.9") for i in range(10)]
    cpus = os.sched_getaffinity(0)
    try:
        # one CPU, so one RX queue (XPS) and one worker's rate-limit bucket
        os.sched_setaffinity(0, {min(cpus)})
        with netmapy.open("packet:%s" % ln.src_if, netns=ln.src_ns) as s, \
                netmapy.open("packet:%s/R" % ln.sink_if, netns=ln.sink_ns) as k:
            s.send(sent)
            got = []
            deadline = time.monotonic() + 5
            while len(got) < 43 and time.monotonic() < deadline:
                got.extend(k.recv(timeout=0.1).tobytes())
            time.sleep(0.3)
            got.extend(k.recv(timeout=0.2).tobytes())
    finally:
        os.sched_setaffinity(0, cpus)
        summary, lines, err = stop_bridge(p)
    passed = sent[50:93]                              # port 53, and the first 3 of 10.0.0.9
    assert sorted(got) == sorted(passed)
    nbytes = lambda fs: sum(len(f) for f in fs)
    assert summary["a_to_b"] == dict(
        rx=100, rx_bytes=nbytes(sent), fwd=43, fwd_bytes=nbytes(passed), drop=57,
        drop_bytes=nbytes(sent) - nbytes(passed), ratelimited=7, errors=0, failed=0,
        kernel_drops=0)
    by_rule = {r["text"]: (r["packets"], r["ratelimited"]) for r in summary["rules"]}
    assert by_rule["deny to port 7"] == (30, 0)
    assert by_rule["ratelimit 1pps burst 3 udp from 10.0.0.9"] == (7, 7)   # the ones it decided
    assert by_rule["drop 'udp port 9'"] == (20, 0)
    sampled = sum(len(netmapy.open("pcap:%s" % f).recv(max=100)) for f in
                  [str(tmp_path / n) for n in os.listdir(tmp_path) if n.endswith(".pcap")])
    assert 0 < sampled <= 10                       # bounded: 5 per worker


def run_files(lab, pid):
    """This bridge's counter file and its lock files, where they exist."""
    from middlebox import stats, supervisor
    ln = lab.lines[0]
    out = []
    path = os.path.join(stats.rundir(), "netmapy-bridge-%d.stats" % pid)
    if os.path.exists(path):
        out.append(path)
    for ifname in (ln.mbox_in, ln.mbox_out):
        lk = os.path.join(supervisor.lockdir(), "%s.%s.lock" % (ln.mbox_ns, ifname))
        if os.path.exists(lk) and ("pid %d" % pid) in open(lk).read():
            out.append(lk)
    return out


def flood(lab, seconds):
    """netmapy-pktgen sending from src through the bridge at full speed."""
    ln = lab.lines[0]
    return subprocess.Popen([sys.executable, "-m", "tools.pktgen", "-i", "packet:%s" % ln.src_if,
                             "--netns", ln.src_ns, "-f", "tx", "--dst-mac", ln.sink_mac,
                             "-d", str(seconds), "-T", "0"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_under_load_summary_and_cleanup(lab, sig):
    p = start_bridge(lab, "--interval", "0.5")
    assert len(run_files(lab, p.pid)) == 3
    gen = flood(lab, 5)
    try:
        time.sleep(1.5)
        assert gen.poll() is None
        out, err = stop_within(p, sig)
    finally:
        gen.kill()
        gen.wait()
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    summary = [json.loads(l)["summary"] for l in out.splitlines() if '"summary"' in l][0]
    c = summary["a_to_b"]
    assert c["rx"] > 1000 and c["rx"] == c["fwd"] + c["drop"] + c["errors"]
    assert c["rx_bytes"] == c["fwd_bytes"] + c["drop_bytes"] > 0
    assert "exited with" not in err                 # the workers stopped, not killed
    assert run_files(lab, p.pid) == []


def test_second_instance_refused_and_bad_input(lab):
    p = start_bridge(lab)
    try:
        ln = lab.lines[0]
        out = subprocess.run([sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
                              "--netns", ln.mbox_ns, "--backend", "packet"], capture_output=True,
                             text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
        assert out.returncode == 1
        assert out.stderr.strip().splitlines()[-1].startswith(
            "netmapy-bridge: error: another middlebox is already running on %s" % ln.mbox_in)
    finally:
        stop_bridge(p)
    for argv, needle in [(["nosuch0", "nosuch1"], "no network interface 'nosuch0'"),
                         ([ln.mbox_in, ln.mbox_out, "--drop", "udp prt 5"], "cannot compile"),
                         ([ln.mbox_in, ln.mbox_out, "--queues", "9"], "RX queues")]:
        out = subprocess.run([sys.executable, "-m", "middlebox.bridge"] + argv +
                             ["--netns", ln.mbox_ns, "--backend", "packet"], capture_output=True,
                             text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
        assert out.returncode == 1, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr, out.stderr


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_killed_worker_is_restarted(lab):
    port = free_port()
    p = start_bridge(lab, "--interval", "0.2", "--prometheus", "127.0.0.1:%d" % port)
    try:
        # the worker processes are the bridge's children
        kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(k) for k in kids
                   if b"netmapy-bridge-w" in open("/proc/%s/cmdline" % k, "rb").read()
                   or b"multiprocessing" in open("/proc/%s/cmdline" % k, "rb").read()]
        workers = [w for w in workers if b"resource_tracker" not in open("/proc/%d/cmdline" % w, "rb").read()]
        assert len(workers) == 2, kids
        os.kill(workers[0], signal.SIGKILL)
        time.sleep(1.5)
        fwd, back, got_k, got_s = exchange(lab, 500)
        time.sleep(0.3)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    finally:
        summary, lines, err = stop_bridge(p)
    fwd_total = sum(int(l.rsplit(" ", 1)[1]) for l in metrics.splitlines()
                    if l.startswith("netmapy_fwd_total{"))
    assert fwd_total >= 1000
    assert 'netmapy_worker_restarts_total{prog="netmapy-bridge",worker="0"} 1' in metrics
    assert "exited with -9; restart 1" in err
    assert summary["restarts"] == 1
    assert sorted(got_k) == sorted(fwd) and sorted(got_s) == sorted(back)
    assert lines and all("workers" in ln for ln in lines)


def test_python_function_decides(lab, tmp_path):
    fn = tmp_path / "decide.py"
    fn.write_text("def decide(pkt):\n"
                  "    # drop odd sequence numbers; mark what passes\n"
                  "    if pkt[17] & 1:\n"
                  "        return False\n"
                  "    pkt[20] = 0xee\n"
                  "    return True\n")
    p = start_bridge(lab, "--python", "%s:decide" % fn)
    ln = lab.lines[0]
    sent = frames(200, ln.src_mac, ln.sink_mac, 0xb5)
    try:
        with netmapy.open("packet:%s/T" % ln.src_if, netns=ln.src_ns) as s, \
                netmapy.open("packet:%s/R" % ln.sink_if, netns=ln.sink_ns) as k:
            s.send(sent)
            got = []
            deadline = time.monotonic() + 5
            while len(got) < 100 and time.monotonic() < deadline:
                got.extend(k.recv(timeout=0.1).tobytes())
    finally:
        summary, _, err = stop_bridge(p)
    want = [f[:20] + b"\xee" + f[21:] for f in sent if not f[17] & 1]
    assert sorted(got) == sorted(want)
    assert summary["a_to_b"]["fwd"] == 100 and summary["a_to_b"]["drop"] == 100
    out = subprocess.run([sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
                          "--netns", ln.mbox_ns, "--backend", "packet", "--python", "nosuchmod:f"],
                         capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert out.returncode == 1 and "No module named 'nosuchmod'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr


def gro(lab, ns_role, dev):
    out = lab.run(ns_role, ["ethtool", "-k", dev]).stdout
    out = out if isinstance(out, str) else out.decode()
    line = [l for l in out.splitlines() if l.startswith("generic-receive-offload:")][0]
    return line.split(":")[1].split()[0] == "on"


def test_offloads_restored_and_crash_repaired(lab):
    """The bridge turns GRO off while it runs and puts it back on exit; a
    supervisor killed with SIGKILL leaves it off, and the next start
    repairs it (then turns it off again, and restores it on a clean exit)."""
    ln = lab.lines[0]
    lab.run("mbox", ["ethtool", "-K", ln.mbox_in, "gro", "on"])
    try:
        assert gro(lab, "mbox", ln.mbox_in)
        p = start_bridge(lab)
        assert not gro(lab, "mbox", ln.mbox_in)
        p.kill()                                   # the supervisor, SIGKILL
        p.communicate(timeout=30)
        time.sleep(1.0)                            # its workers follow (PDEATHSIG)
        assert not gro(lab, "mbox", ln.mbox_in)    # left behind by the crash
        dead = p.pid
        stale = run_files(lab, dead)               # its counters and locks, too
        assert len(stale) == 3, stale
        p = start_bridge(lab)                      # the lock died with it: not refused
        try:
            fwd, back, got_k, got_s = exchange(lab, 300)
            assert sorted(got_k) == sorted(fwd)
        finally:
            summary, _, err = stop_bridge(p)
        assert "repaired what a crashed run left on %s" % ln.mbox_in in p.startup_err
        assert "removed the counters of a dead run (pid %d)" % dead in p.startup_err
        assert run_files(lab, dead) == [] and run_files(lab, p.pid) == []
        assert gro(lab, "mbox", ln.mbox_in)        # as it was before the first start
    finally:
        lab.run("mbox", ["ethtool", "-K", ln.mbox_in, "gro", "off"])


def test_bridge_nic_and_host_stack_of_one_interface(tmp_path):
    """`netmapy-bridge IF` (one interface, xdp backend): what IF receives
    goes through the bridge into IF's own host stack, where a UDP server
    gets it; the server's replies leave normally."""
    import socket
    from tools.lab import VethPair
    from netmapy.host.netns import netns
    with VethPair(queues=1) as v:
        with netns(v.ns_b):
            srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        srv.bind((v.ip_b, 7777))
        srv.settimeout(5)
        p = subprocess.Popen([sys.executable, "-m", "middlebox.bridge", v.if_b, "--netns", v.ns_b,
                              "--backend", "xdp", "--stats-json", "--interval", "0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=REPO))
        while ": running," not in p.stderr.readline():
            assert p.poll() is None, p.communicate()[1]
        with netns(v.ns_a):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(5)
        got = []
        for k in range(20):
            c.sendto(b"hello%d" % k, (v.ip_b, 7777))
            d, addr = srv.recvfrom(100)
            got.append(d)
            srv.sendto(b"re" + d, addr)
            assert c.recv(100) == b"re" + d
        summary, _, err = stop_bridge(p)
        srv.close()
        c.close()
        assert got == [b"hello%d" % k for k in range(20)]
        assert summary["a_to_b"]["fwd"] == 20 and summary["b"] == "host"
