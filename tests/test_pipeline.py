"""Load balancing onto pipes and pipelines of worker pools: flows stay on
one pipe both ways, counts add up exactly, every group sees every packet,
a slow consumer gets back-pressure (or counted drops in lossy mode), the
priority class is served first, and whole pipelines run end to end."""

import ipaddress
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time

import pytest

import netmapy
from netmapy import fastpath
from middlebox import lb, loop
from middlebox.filter import Filter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_n = [0]


def uniq(tag):
    _n[0] += 1
    return "%s%d_%d" % (tag, os.getpid(), _n[0])


def udp(src, dst, sport, dport, seq=0, proto=17):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 32, 0, 0, 64, proto, 0,
                     ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return b"\x02" * 12 + b"\x08\x00" + ip + struct.pack("!HHHHI", sport, dport, 12, 0, seq)


def flows(n):
    out = []
    for i in range(n):
        a, b = "10.0.%d.%d" % (i // 200, i % 200 + 1), "192.168.%d.1" % (i % 7)
        out.append(((a, b, 1000 + i, 53), (b, a, 53, 1000 + i)))
    return out


def open_group(name, n, **kw):
    masters = [netmapy.open("pipe:%s{%d" % (name, k), **kw) for k in range(n)]
    slaves = [netmapy.open("pipe:%s}%d" % (name, k), **kw) for k in range(n)]
    return masters, slaves


def test_symmetric_hash_keeps_both_directions_on_one_pipe():
    inp = uniq("lbi")
    tx, rx = netmapy.open("pipe:%s{0" % inp), netmapy.open("pipe:%s}0" % inp)
    g = uniq("lbg")
    masters, slaves = open_group(g, 4)
    fl = flows(150)
    frames = []
    for k, (fwd, back) in enumerate(fl):
        frames += [udp(*fwd, seq=k), udp(*back, seq=k)]
    assert tx.send(frames) == len(frames)
    st = lb.Balancer(rx, [("g", masters)]).run(count=len(frames), seconds=5)
    where = {}
    total = 0
    for p, s in enumerate(slaves):
        got = s.recv(max=2000, timeout=1).tobytes()
        assert st["pipes"][p]["fwd"] == len(got)
        total += len(got)
        for f in got:
            where.setdefault(struct.unpack("!I", f[42:46])[0], set()).add(p)
    assert total == len(frames) == st["rx"]
    assert all(len(v) == 1 for v in where.values())           # one pipe per flow, both ways
    assert len(where) == 150 and len({next(iter(v)) for v in where.values()}) == 4
    assert lb.flow_hash(udp(*fl[0][0])) == lb.flow_hash(udp(*fl[0][1]))


def test_every_group_sees_every_packet():
    inp = uniq("lbi")
    tx, rx = netmapy.open("pipe:%s{0" % inp), netmapy.open("pipe:%s}0" % inp)
    a_m, a_s = open_group(uniq("ga"), 3)
    b_m, b_s = open_group(uniq("gb"), 2)
    frames = [udp(*f[0], seq=i) for i, f in enumerate(flows(500))]
    tx.send(frames)
    st = lb.Balancer(rx, [("a", a_m), ("b", b_m)]).run(count=500, seconds=5)
    for group in (a_s, b_s):
        got = []
        for s in group:
            got += s.recv(max=2000, timeout=1).tobytes()
        assert sorted(got) == sorted(frames)
    assert sum(p["fwd"] for p in st["pipes"][:3]) == 500
    assert sum(p["fwd"] for p in st["pipes"][3:]) == 500


def _slow(name, n, q, delay):
    with netmapy.open("pipe:%s}0" % name, slots=64) as s:
        got = 0
        q.put("ready")
        while got < n:
            b = s.recv(max=16, timeout=5)
            if not b:
                break
            got += len(b)
            time.sleep(delay)
        q.put(got)


def test_slow_worker_back_pressure_loses_nothing():
    import multiprocessing as mp
    inp = uniq("lbi")
    tx = netmapy.open("pipe:%s{0" % inp, slots=4096)
    rx = netmapy.open("pipe:%s}0" % inp, slots=4096)
    g = uniq("lbs")
    master = netmapy.open("pipe:%s{0" % g, slots=64)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_slow, args=(g, 3000, q, 0.002))
    p.start()
    assert q.get(timeout=10) == "ready"
    frames = [udp("10.0.0.1", "10.0.0.2", 1, 2, seq=i) for i in range(3000)]
    assert tx.send(frames[:4000]) == 3000
    b = lb.Balancer(rx, [("s", [master])], extra_bufs=100)
    st = b.run(count=3000, seconds=60)
    got = q.get(timeout=60)
    p.join(10)
    assert got == 3000 and st["rx"] == 3000
    assert st["pipes"][0]["blocked"] > 0           # it held its input back, and said so
    assert st["pipes"][0]["dropped"] == 0
    assert st["pipes"][0]["waiting_max"] == 100     # the extra buffers were used


def test_lossy_mode_drops_with_a_counter():
    inp = uniq("lbi")
    tx = netmapy.open("pipe:%s{0" % inp, slots=4096)
    rx = netmapy.open("pipe:%s}0" % inp, slots=4096)
    masters, slaves = open_group(uniq("lbl"), 2, slots=16)
    frames = [udp(*f[0], seq=i) for i, f in enumerate(flows(64))] * 20   # 1280, nobody reads
    tx.send(frames)
    st = lb.Balancer(rx, [("l", masters)], extra_bufs=50, lossy=True).run(count=1280, seconds=5)
    got = sum(len(s.recv(max=5000, timeout=0.5)) for s in slaves)
    dropped = sum(p["dropped"] for p in st["pipes"])
    waiting = sum(p["waiting"] for p in st["pipes"])
    assert st["rx"] == 1280 and dropped > 0
    assert got + dropped + waiting == 1280          # every packet accounted for


def test_priority_served_before_bulk():
    """A work stage with 500 bulk packets waiting and 5 priority packets
    arriving: the priority ones come out among the first 64+5."""
    name = uniq("pr")
    lo_m, lo_s = netmapy.open("pipe:%s{0" % name), netmapy.open("pipe:%s}0" % name)
    hi_m, hi_s = netmapy.open("pipe:%s{1" % name), netmapy.open("pipe:%s}1" % name)
    out_m, out_s = netmapy.open("pipe:%s{2" % name), netmapy.open("pipe:%s}2" % name)
    bulk = [udp("10.0.0.1", "10.0.0.2", 1, 2, seq=i) for i in range(500)]
    prio = [udp("10.0.0.9", "10.0.0.2", 5060, 5060, seq=10000 + i) for i in range(5)]
    lo_m.send(bulk)
    hi_m.send(prio)
    from middlebox import stats as st
    blk = memoryview(bytearray(8 * 32)).cast("Q")
    loop.reset()
    loop.stage(lo_s, out_m, Filter(), blk, hi=hi_s, budget=64, seconds=0.5)
    got = []
    while len(got) < 505:
        b = out_s.recv(max=1024, timeout=1)
        if not b:
            break
        got += b.tobytes()
    assert sorted(got) == sorted(bulk + prio)
    pos = [got.index(p) for p in prio]
    assert max(pos) < 5                        # served first
    assert got[5:] == bulk                     # bulk order kept
    assert blk[16] == 5 and blk[8] == 500      # priority and bulk counters


def run_pipeline(argv, feed, expect, timeout=30):
    """Start netmapy-pipeline, feed frames into its input pipe while reading
    its output pipe; returns (received, summary)."""
    p = subprocess.Popen([sys.executable, "-m", "middlebox.pipeline"] + argv +
                         ["--stats-json", "--interval", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    while True:
        line = p.stderr.readline()
        if not line:
            raise AssertionError("pipeline did not start: " + p.communicate()[1])
        if ": running," in line:
            break
    return p


def test_pipeline_end_to_end_with_filters_and_python(tmp_path):
    for extra in (["--drop", "udp port 9"],
                  ["--work", "%s:keep" % (tmp_path / "w.py")]):
        (tmp_path / "w.py").write_text("def keep(p):\n    return p[37] != 9\n")
        name = uniq("pe")
        src = netmapy.open("pipe:%sin{0" % name)
        sink = netmapy.open("pipe:%sout}0" % name)
        p = run_pipeline(["pipe:%sin}0" % name, "pipe:%sout{0" % name, "--stages", "filter=2"]
                         + extra, None, None)
        frames = [udp(*f[0], seq=i) for i, f in enumerate(flows(200))] * 10
        frames = [f[:36] + bytes([0, 9 if i % 10 == 0 else 53]) + f[38:] for i, f in enumerate(frames)]
        res = {}
        t = threading.Thread(target=lambda: res.update(fastpath.receive(sink, count=1800, seconds=15)))
        t.start()
        assert src.send(frames) == 2000
        t.join()
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
        summary = json.loads([l for l in out.splitlines() if l.startswith('{"summary"')][0])["summary"]
        assert res["packets"] == 1800, err
        assert summary["rx"] == 2000 and summary["tx"] == 1800
        assert sum(s["drop"] for s in summary["stages"]) == 200
        assert all(s["rx"] > 0 for s in summary["stages"])      # both workers had work
        src.close()
        sink.close()


@pytest.mark.parametrize("argv, code, needle", [
    (["-i", "pipe:x}0", "-p", "nope"], 2, "Invalid value for '-p' / '--pipes': 'nope': "
                                          "expected GROUP:N"),
    (["-i", "pipe:x}0", "-p", "g:2", "--extra-bufs", "-1"], 2, "'--extra-bufs'"),
    (["-i", "pcap:/nonexistent.pcap", "-p", "g:2"], 1, "no such capture file"),
])
def test_lb_cli_errors(argv, code, needle):
    out = subprocess.run([sys.executable, "-m", "middlebox.lbcli"] + argv, capture_output=True,
                         text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert out.returncode == code and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith("netmapy-lb: error: ") and needle in out.stderr


def test_pipeline_cli_errors():
    out = subprocess.run([sys.executable, "-m", "middlebox.pipeline", "pipe:a}0", "--stages",
                          "rx=2,filter=2"], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "Invalid value for '--stages'" in out.stderr and "one RX and one TX worker" in out.stderr


def test_lb_cli_runs(tmp_path):
    name = uniq("lc")
    cap = tmp_path / "in.pcap"
    with netmapy.open("pcap:%s" % cap, mode="w") as w:
        w.send([udp(*f[0], seq=i) for i, f in enumerate(flows(300))])
    outs = [netmapy.open("pipe:%s}%d" % (name, k)) for k in range(3)]
    r = subprocess.run([sys.executable, "-m", "middlebox.lbcli", "-i", "pcap:%s" % cap,
                        "-p", "%s:3" % name, "--json", "--interval", "0"], capture_output=True,
                       text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])["summary"]
    got = [len(o.recv(max=1000, timeout=0.5)) for o in outs]
    assert summary["rx"] == 300 and sum(got) == 300
    assert [p["fwd"] for p in summary["pipes"]] == got
