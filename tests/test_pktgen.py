"""netmapy-pktgen and its engine (netmapy.tools.pktgen_engine): tx -> rx over pipes (workers in
separate processes) and over a veth pair, frames checked independently of
the C code (sizes, IMIX mix, ranges, checksums), pacing (lower bounds
only), ping/pong, pcap replay timing, and one clear line per bad input."""

import collections
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import netmapy
from netmapy.tools import pktgen_engine as pktgen

from conftest import IS_ROOT, needs_root, stop_within

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_seq = [0]


def _unique():
    _seq[0] += 1
    return "pg%d_%d" % (os.getpid(), _seq[0])


# ------------------------------------------------------------------ helpers
def cli(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "tools.pktgen"] + [str(a) for a in argv],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env=dict(os.environ, PYTHONPATH=REPO))


def cli_bg(*argv):
    """Start netmapy-pktgen (--json), wait for its start line (ports open)."""
    p = subprocess.Popen([sys.executable, "-m", "tools.pktgen"] + [str(a) for a in argv]
                         + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    line = p.stdout.readline()
    if not line:
        p.wait(10)
        raise AssertionError("pktgen did not start: %s" % p.stderr.read())
    assert json.loads(line)["type"] == "start", line
    return p


def summary_of(stdout):
    lines = [json.loads(ln) for ln in stdout.splitlines() if ln.startswith("{")]
    assert lines and lines[-1]["type"] == "summary", stdout[-2000:]
    return lines[-1]


def finish(p, timeout=30):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err
    return summary_of(out)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return s


def check_udp_frame(f):
    """IPv4 header and UDP checksums, lengths, and the pktgen header,
    checked here in Python (independently of the C code)."""
    assert f[12:14] == b"\x08\x00"
    ihl = (f[14] & 15) * 4
    assert f[14] >> 4 == 4 and ihl == 20 and f[23] == 17
    assert csum(f[14:14 + ihl]) == 0xffff, "bad IPv4 header checksum"
    tot, = struct.unpack("!H", f[16:18])
    assert tot == len(f) - 14
    ulen, ucs = struct.unpack("!HH", f[38:40] + f[40:42])
    assert ulen == len(f) - 34
    assert ucs != 0
    pseudo = f[26:34] + struct.pack("!BBH", 0, 17, ulen)
    assert csum(pseudo + f[34:34 + ulen]) == 0xffff, "bad UDP checksum"
    magic, stream, flags, seq = struct.unpack("!HBBI", f[42:50])
    assert magic == pktgen.MAGIC
    # the filler: byte k is k mod 256
    assert f[58:] == bytes(k & 0xff for k in range(len(f) - 58))
    return stream, seq


def read_pcap(path):
    """(timestamps in seconds, frames) of a classic pcap, parsed by hand."""
    data = open(path, "rb").read()
    magic, = struct.unpack("<I", data[:4])
    assert magic in (0xa1b2c3d4, 0xa1b23c4d)
    div = 1e6 if magic == 0xa1b2c3d4 else 1e9
    off, ts, frames = 24, [], []
    while off < len(data):
        sec, frac, cap, ln = struct.unpack("<IIII", data[off:off + 16])
        ts.append(sec + frac / div)
        frames.append(data[off + 16:off + 16 + cap])
        off += 16 + cap
    return ts, frames


def write_pcap(path, stamps, frames):
    out = struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1)
    for t, f in zip(stamps, frames):
        out += struct.pack("<IIII", int(t), int(round((t - int(t)) * 1e6)), len(f), len(f)) + f
    with open(path, "wb") as fh:
        fh.write(out)


def ip(a):
    return socket.inet_ntoa(a)


# ------------------------------------------------------- frames (library)
def test_frames_imix_ranges_and_checksums():
    g = pktgen.Generator(sizes="imix", src_ip="10.0.0.1-10.0.0.3", dst_ip="10.9.0.1",
                         src_port="1000-1001", dst_port="53", stream=5,
                         src_mac="02:00:00:00:00:0a", dst_mac="02:00:00:00:00:0b")
    frames = g.frames(2400)
    mix = collections.Counter(len(f) for f in frames)
    assert mix == {60: 1400, 566: 800, 1514: 200}          # 7:4:1, exactly
    seqs = [check_udp_frame(f)[1] for f in frames]
    assert seqs == list(range(2400))
    tuples = collections.Counter((ip(f[26:30]), struct.unpack("!H", f[34:36])[0]) for f in frames)
    assert set(tuples) == {("10.0.0.%d" % i, p) for i in (1, 2, 3) for p in (1000, 1001)}
    assert max(tuples.values()) - min(tuples.values()) <= 1      # walked in turn
    assert all(f[:6] == bytes.fromhex("02000000000b") and f[6:12] == bytes.fromhex("02000000000a")
               for f in frames)
    assert {f[44] for f in frames} == {5}


def test_frames_random_sizes_and_random_flows():
    g = pktgen.Generator(sizes="60-1500", src_ip="10.1.0.0/24", src_port="1024-65535",
                         random_flows=50, seed=7)
    frames = g.frames(3000)
    sizes = [len(f) for f in frames]
    assert min(sizes) >= 60 and max(sizes) <= 1500
    assert len(set(sizes)) > 500                      # spread over the range
    assert 600 < sum(sizes) / len(sizes) < 960        # mean ~780
    flows = {(f[26:30], f[34:36]) for f in frames}
    assert 30 <= len(flows) <= 50
    assert all(ip(f[26:30]).startswith("10.1.0.") for f in frames)
    for f in frames[:500]:
        check_udp_frame(f)
    custom = pktgen.Generator(sizes="imix:64,128,1500:5,2,1").frames(80)
    assert collections.Counter(len(f) for f in custom) == {64: 50, 128: 20, 1500: 10}


def test_parsers():
    assert pktgen.parse_rate("1.5Mpps") == pktgen.Rate(1.5e6, "pps")
    assert pktgen.parse_rate("200Mbps") == pktgen.Rate(2e8, "bps")
    assert pktgen.parse_rate("100k") == pktgen.Rate(1e5, "pps")
    assert pktgen.parse_rate("10kbit") == pktgen.Rate(1e4, "bps")
    for bad in ("abc", "0", "-1k", "5Qpps", "100 bananas"):
        with pytest.raises(ValueError):
            pktgen.parse_rate(bad)
    assert pktgen.parse_sizes("imix").sizes == (60, 566, 1514)
    assert pktgen.parse_sizes("imix:64,570,1518:7,4,1").weights == (7, 4, 1)
    for bad in ("1500-60", "59", "imix:64,100:1", "big", "70000"):
        with pytest.raises(ValueError):
            pktgen.parse_sizes(bad)
    assert pktgen.parse_ip_range("10.0.0.0/30") == (0x0a000000, 0x0a000003)
    for bad in ("10.0.0.9-10.0.0.1", "1.2.3", "10.0.0.0/33"):
        with pytest.raises(ValueError):
            pktgen.parse_ip_range(bad)
    with pytest.raises(ValueError):
        pktgen.parse_port_range("9-1")
    with pytest.raises(ValueError):
        pktgen.parse_port_range("65536")


def test_receive_finds_loss_reordering_duplicates():
    """Frames sent out of order, with gaps and repeats, through a pipe:
    receive() counts each kind exactly."""
    name = _unique()
    frames = pktgen.Generator(stream=3).frames(2000)
    order = list(range(2000))
    lost = {10, 11, 12, 500, 1999}
    for i in sorted(lost, reverse=True):
        del order[i]
    order[100], order[101] = order[101], order[100]      # one swap: 1 late frame
    order[700:700] = [650, 651]                          # two duplicates
    for i in (300, 301, 302):                            # three corrupted payloads
        f = bytearray(frames[i])
        f[59] ^= 0xff
        frames[i] = bytes(f)
    with netmapy.open("pipe:%s{1" % name, slots=4096) as tx, \
            netmapy.open("pipe:%s}1" % name, slots=4096) as rx:
        tx.send([frames[i] for i in order])
        r = pktgen.receive(rx, count=len(order), seconds=10)
    assert r["packets"] == r["pktgen"] == len(order)
    assert r["duplicates"] == 2
    assert r["reordered"] == 1
    assert r["lost"] == 4            # 1999 is past the highest seen: not counted
    assert r["streams"][3]["received"] == 2000 - 5
    assert r["bad_csum"] == 3


# ------------------------------------------------------------- pipes (CLI)
def test_tx_rx_pipes_two_workers_exact():
    name = _unique()
    rx = cli_bg("-i", "pipe:%s}1" % name, "-f", "rx", "-p", 2, "-n", 40000, "-d", 30, "-T", 0.2)
    tx = cli("-i", "pipe:%s{1" % name, "-f", "tx", "-p", 2, "-n", 40000, "-l", "60-1500",
             "--json", "-T", 0.2)
    assert tx.returncode == 0, tx.stderr
    s = summary_of(tx.stdout)
    assert s["packets"] == 40000 and [w["packets"] for w in s["workers"]] == [20000, 20000]
    r = finish(rx)
    assert r["packets"] == r["pktgen"] == 40000
    assert r["lost"] == r["reordered"] == r["duplicates"] == r["bad_csum"] == 0
    assert {k: v["received"] for k, v in r["streams"].items()} == {"0": 20000, "1": 20000}
    assert r["bytes"] == s["bytes"]
    assert [w["packets"] for w in r["workers"]] == [20000, 20000]


def test_tx_into_pcap_file_imix_and_ranges(tmp_path):
    out = tmp_path / "out.pcap"
    p = cli("-i", "pcap:%s" % out, "-f", "tx", "-n", 1200, "-l", "imix", "--src-ip",
            "10.0.0.1-10.0.0.4", "--dst-port", "5000-5002", "--src-mac", "02:aa:00:00:00:01",
            "--dst-mac", "02:bb:00:00:00:02", "-T", 0)
    assert p.returncode == 0, p.stderr
    assert "summary: sent 1200 packets" in p.stdout
    _, frames = read_pcap(str(out))
    assert len(frames) == 1200
    assert collections.Counter(len(f) for f in frames) == {60: 700, 566: 400, 1514: 100}
    assert [check_udp_frame(f)[1] for f in frames] == list(range(1200))
    assert {ip(f[26:30]) for f in frames} == {"10.0.0.%d" % i for i in range(1, 5)}
    assert {struct.unpack("!H", f[36:38])[0] for f in frames} == {5000, 5001, 5002}
    assert {f[:12] for f in frames} == {bytes.fromhex("02bb0000000202aa00000001")}


def test_rate_limit_is_a_floor_on_the_duration(tmp_path):
    """N frames at R pps take at least 0.8 N/R seconds (a file port is
    always ready, so only the pacer holds the sender back); the capture's
    own timestamps say the same; and packets leave in small batches."""
    out = tmp_path / "rate.pcap"
    t0 = time.monotonic()
    p = cli("-i", "pcap:%s" % out, "-f", "tx", "-n", 3000, "-R", "10k", "--json", "-T", 0)
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    s = summary_of(p.stdout)
    assert s["packets"] == 3000
    assert s["seconds"] >= 0.8 * 3000 / 10e3 and wall >= 0.8 * 3000 / 10e3
    assert s["max_batch"] <= 8           # quantum 1 frame at 10 kpps, bucket 4 quanta
    ts, frames = read_pcap(str(out))
    assert ts[-1] - ts[0] >= 0.8 * 2999 / 10e3
    # bits per second: 60-byte frames are 480 bits; 2.4 Mbps = 5000 fps
    out2 = tmp_path / "bps.pcap"
    p = cli("-i", "pcap:%s" % out2, "-f", "tx", "-n", 1500, "-R", "2.4Mbps", "--json", "-T", 0)
    s = summary_of(p.stdout)
    assert s["seconds"] >= 0.8 * 1500 / 5000


def test_ping_pong_pipes():
    name = _unique()
    pong = cli_bg("-i", "pipe:%s}1" % name, "-f", "pong", "-d", 20, "-T", 0)
    try:
        p = cli("-i", "pipe:%s{1" % name, "-f", "ping", "-n", 500, "-T", 0)
        assert p.returncode == 0, p.stderr
        assert "500 probes, 500 replies, 0 lost" in p.stdout
        assert "rtt min/avg/max" in p.stdout and "histogram" in p.stdout
        p = cli("-i", "pipe:%s{1" % name, "-f", "ping", "-n", 300, "--json", "-T", 0)
        s = summary_of(p.stdout)
    finally:
        pong.send_signal(signal.SIGINT)
        pr = finish(pong)
    r = s["rtt"]
    assert s["replies"] == 300 and r["samples"] == 300
    assert 0 < r["min"] <= r["p50"] <= r["p99"] <= r["p999"] <= r["max"]
    assert r["min"] <= r["avg"] <= r["max"]
    assert sum(h["count"] for h in s["histogram"]) == 300
    assert pr["reflected"] == 800 and pr["interrupted"]


def test_pcap_replay_timing_order_and_gaps(tmp_path):
    src = tmp_path / "in.pcap"
    frames = pktgen.Generator(sizes="60-300", stream=9).frames(8)
    gaps = [0.0, 0.04, 0.01, 0.06, 0.0, 0.03, 0.05, 0.02]
    stamps = [1700000000.0 + sum(gaps[:i + 1]) for i in range(8)]
    write_pcap(str(src), stamps, frames)
    out = tmp_path / "out.pcap"
    p = cli("-i", "pcap:%s" % out, "-f", "tx", "--pcap", src, "--json", "-T", 0)
    assert p.returncode == 0, p.stderr
    s = summary_of(p.stdout)
    assert s["function"] == "replay" and s["packets"] == 8
    ts, got = read_pcap(str(out))
    assert got == frames                                   # same frames, same order
    for i in range(1, 8):
        assert ts[i] - ts[i - 1] >= 0.8 * gaps[i] - 0.001, (i, ts[i] - ts[i - 1], gaps[i])
    assert s["seconds"] >= 0.8 * sum(gaps)
    # twice as fast: at least 0.8 x half the recorded span
    p = cli("-i", "pcap:%s" % (tmp_path / "x2.pcap"), "-f", "tx", "--pcap", src, "--speed", 2,
            "--json", "-T", 0)
    s2 = summary_of(p.stdout)
    assert s2["packets"] == 8 and s2["seconds"] >= 0.8 * sum(gaps) / 2
    # a fixed rate: 8 frames at 40 pps take at least 0.8 x 7/40 s
    p = cli("-i", "pcap:%s" % (tmp_path / "r.pcap"), "-f", "tx", "--pcap", src,
            "--replay-rate", 40, "--json", "-T", 0)
    s3 = summary_of(p.stdout)
    assert s3["packets"] == 8 and s3["seconds"] >= 0.8 * 7 / 40
    assert read_pcap(str(tmp_path / "r.pcap"))[1] == frames


def test_ctrl_c_ends_with_the_summary():
    name = _unique()
    rx = cli_bg("-i", "pipe:%s}1" % name, "-f", "rx", "-T", 0)
    tx = cli_bg("-i", "pipe:%s{1" % name, "-f", "tx", "-R", "20k", "-T", 0.2)
    time.sleep(0.6)
    tx.send_signal(signal.SIGINT)
    s = finish(tx)
    assert s["interrupted"] and s["packets"] > 0
    time.sleep(0.2)
    rx.send_signal(signal.SIGINT)
    r = finish(rx)
    assert r["pktgen"] == s["packets"] and r["lost"] == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_under_load_summary_and_no_pipe_left(sig, private_rundir):
    """Full speed over a pipe (the sender often waits for room): a signal
    ends each side promptly with its summary; their pipe ends are closed
    (the pipe's files go with the last end)."""
    name = _unique()
    rx = cli_bg("-i", "pipe:%s}1" % name, "-f", "rx", "-T", 0)
    tx = cli_bg("-i", "pipe:%s{1" % name, "-f", "tx", "-p", 1, "-T", 0)
    time.sleep(1.0)
    out, err = stop_within(tx, sig)
    assert tx.returncode == 0, err
    s = summary_of(out)
    assert s["interrupted"] and s["packets"] > 0
    time.sleep(0.3)
    out, err = stop_within(rx, sig)
    assert rx.returncode == 0, err
    r = summary_of(out)
    assert r["interrupted"] and r["pktgen"] == s["packets"] and r["lost"] == 0
    pipes = os.path.join(private_rundir, "pipes")
    assert os.path.isdir(pipes)
    assert not [f for f in os.listdir(pipes) if f.startswith(name + ".")]


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("argv,needle", [
    (["-i", "pipe:b{1", "-R", "fast"], "rate 'fast'"),
    (["-i", "pipe:b{1", "-R", "0"], "must be more than 0"),
    (["-i", "pipe:b{1", "-l", "20"], "below the 60-byte minimum"),
    (["-i", "pipe:b{1", "-l", "1500-60"], "is empty"),
    (["-i", "pipe:b{1", "-l", "imix:64,128:1"], "2 sizes but 1 weights"),
    (["-i", "pipe:b{1", "--src-ip", "10.0.0.9-10.0.0.1"], "range 10.0.0.9-10.0.0.1 is empty"),
    (["-i", "pipe:b{1", "--dst-port", "80-79"], "is empty"),
    (["-i", "pipe:b{1", "-l", "4000"], "does not fit the 2048-byte buffers"),
    (["-i", "pipe:b{1", "--pcap", "/nonexistent/x.pcap"], "no such file"),
    (["-i", "packet:nosuchif0"], "no network interface 'nosuchif0'"),
    (["-i", "bogus:x"], "bad port name"),
    (["-i", "pipe:b{1", "-f", "rx", "-l", "100"], "do not apply"),
])
def test_bad_input_one_line(argv, needle):
    p = cli(*(argv + ["-n", 10, "-T", 0]))
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("netmapy-pktgen: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in p.stderr


def test_unreadable_pcap(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture" * 5)
    p = cli("-i", "pcap:%s" % (tmp_path / "o.pcap"), "-f", "tx", "--pcap", bad, "-T", 0)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and "not a readable capture" in lines[0]


def test_help_teaches():
    p = cli("--help")
    assert p.returncode == 0
    for word in ("examples:", "imix", "--random-flows", "--replay-rate", "ping", "pong",
                 "workers", "fanout", "1.5Mpps"):
        assert word in p.stdout, word


# ------------------------------------------------------------------ veth
@pytest.fixture(scope="module")
def veth():
    from tools.lab import SingleNsVeth
    with SingleNsVeth() as v:
        yield v


@needs_root
def test_tx_rx_veth_exact_and_interface_counters(veth):
    v = veth
    a0, b0 = v.counters("a"), v.counters("b")
    rx = cli_bg("-i", "packet:%s" % v.if_b, "-f", "rx", "--netns", v.ns, "-n", 50000,
                "-d", 30, "-T", 0)
    tx = cli("-i", "packet:%s" % v.if_a, "-f", "tx", "--netns", v.ns, "-n", 50000, "-p", 2,
             "--dst-mac", v.mac_b, "-l", "60-1514", "--json", "-T", 0)
    assert tx.returncode == 0, tx.stderr
    s = summary_of(tx.stdout)
    r = finish(rx)
    assert s["packets"] == 50000
    assert r["pktgen"] == 50000 and r["lost"] == 0 and r["bad_csum"] == 0
    assert v.counters("a")["tx_packets"] - a0["tx_packets"] == 50000
    assert v.counters("b")["rx_packets"] - b0["rx_packets"] == 50000
    assert v.counters("b")["rx_bytes"] - b0["rx_bytes"] == s["bytes"] == r["bytes"]


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_under_load_veth_workers(veth, sig):
    """Two pinned transmit processes and a receiver, at full speed: the
    signal ends each command promptly, with its summary."""
    v = veth
    rx = cli_bg("-i", "packet:%s" % v.if_b, "-f", "rx", "--netns", v.ns, "-T", 0)
    tx = cli_bg("-i", "packet:%s" % v.if_a, "-f", "tx", "--netns", v.ns, "-p", 2,
                "--dst-mac", v.mac_b, "-T", 0)
    try:
        time.sleep(1.0)
        out, err = stop_within(tx, sig)
        assert tx.returncode == 0, err
        s = summary_of(out)
        assert s["interrupted"] and s["packets"] > 0
        out, err = stop_within(rx, sig)
        assert rx.returncode == 0, err
        r = summary_of(out)
        assert r["interrupted"] and 0 < r["pktgen"] <= s["packets"]
    finally:
        for p in (tx, rx):
            if p.poll() is None:
                p.kill()
                p.wait()


@needs_root
def test_veth_frames_seen_by_a_capture_imix(veth):
    """IMIX through the veth: the frames a netmapy packet port captures on
    the peer have the exact mix and right checksums."""
    v = veth
    with netmapy.open("packet:%s/R" % v.if_b, netns=v.ns) as cap:
        p = cli("-i", "packet:%s" % v.if_a, "-f", "tx", "--netns", v.ns, "-n", 1200, "-l",
                "imix", "-R", "50k", "--dst-mac", v.mac_b, "-T", 0)
        assert p.returncode == 0, p.stderr
        got = []
        end = time.monotonic() + 10
        while len(got) < 1200 and time.monotonic() < end:
            got.extend(f for f in cap.recv(timeout=0.5).tobytes() if pktgen.decode(f))
    assert collections.Counter(len(f) for f in got) == {60: 700, 566: 400, 1514: 100}
    assert [check_udp_frame(f)[1] for f in got] == list(range(1200))
    assert all(f[6:12] == bytes.fromhex(v.mac_a.replace(":", "")) for f in got)  # its MAC


@needs_root
def test_ping_pong_veth(veth):
    v = veth
    pong = cli_bg("-i", "packet:%s" % v.if_b, "-f", "pong", "--netns", v.ns, "-d", 20, "-T", 0)
    try:
        p = cli("-i", "packet:%s" % v.if_a, "-f", "ping", "--netns", v.ns, "-n", 100,
                "--dst-mac", v.mac_b, "--json", "-T", 0)
        assert p.returncode == 0, p.stderr
        s = summary_of(p.stdout)
    finally:
        pong.send_signal(signal.SIGINT)
        finish(pong)
    r = s["rtt"]
    assert s["replies"] == 100 and s["lost"] == 0
    assert 0 < r["min"] <= r["p50"] <= r["p99"] <= r["max"] < 1e9


def test_pcap_replay_loops(tmp_path):
    """loops=N sends the capture N times in order; loops=0 goes on until
    count ends it, mid-pass."""
    src_path, out = str(tmp_path / "ten.pcap"), str(tmp_path / "out.pcap")
    frames = [bytes([2] * 12) + b"\x08\x00" + bytes([i]) * 46 for i in range(10)]
    with netmapy.open("pcap:" + src_path, mode="w") as w:
        assert w.send(frames) == 10
    with netmapy.open("pcap:" + src_path) as s, netmapy.open("pcap:" + out, mode="w") as d:
        res = pktgen.replay(s, d, timing=False, loops=3)
    assert res["packets"] == 30 and res["passes"] == 3
    with netmapy.open("pcap:" + out) as r:
        got = [bytes(x) for x in r.recv(max=100, timeout=1)]
    assert got == frames * 3
    with netmapy.open("pcap:" + src_path) as s, netmapy.open("pcap:" + out, mode="w") as d:
        res = pktgen.replay(s, d, timing=False, loops=0, count=25)
    assert res["packets"] == 25 and res["passes"] == 3
    with netmapy.open("pcap:" + out) as r:
        got = [bytes(x) for x in r.recv(max=100, timeout=1)]
    assert got == frames * 2 + frames[:5]
    with netmapy.open("pcap:" + src_path) as s, netmapy.open("pcap:" + out, mode="w") as d:
        with pytest.raises(ValueError, match="loops must be >= 0"):
            pktgen.replay(s, d, loops=-1)
