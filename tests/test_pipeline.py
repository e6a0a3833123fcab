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
from middlebox import lb, loop, stats
from middlebox.filter import Filter

from conftest import stop_within

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


# ------------------------------------------------ signals under load, cleanup
def feeder(port, frames_, seconds):
    """Send frames on port until `seconds` pass (waits when it is full)."""
    end = time.monotonic() + seconds
    sent = 0
    while time.monotonic() < end:
        sent += port.send(frames_, timeout=0.05)
    return sent


def sink(port, seconds, got):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got[0] += len(port.recv(max=1024, timeout=0.05))


def start_cli(module, argv):
    p = subprocess.Popen([sys.executable, "-m", module] + argv, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    return p


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_lb_cli_stops_on_a_signal_under_load(sig, private_rundir):
    """netmapy-lb reading a pipe that a feeder keeps full, one consumer
    slower than the other: the signal ends it promptly, it prints its
    summary (counts that add up) and closes its pipes."""
    name = uniq("ls")
    src = netmapy.open("pipe:%sin{0" % name)
    outs = [netmapy.open("pipe:%s}%d" % (name, k)) for k in range(2)]
    p = start_cli("middlebox.lbcli", ["-i", "pipe:%sin}0" % name, "-p", "%s:2" % name,
                                      "--json", "--interval", "0.2"])
    got = [[0], [0]]
    frames_ = [udp(*f[0], seq=i) for i, f in enumerate(flows(64))]
    threads = [threading.Thread(target=sink, args=(outs[0], 3.0, got[0]))]
    try:
        assert "netmapy-lb:" in p.stderr.readline()
        threads[0].start()
        fed = threading.Thread(target=feeder, args=(src, frames_, 2.0))
        fed.start()
        time.sleep(1.0)                              # traffic flows (pipe 1 is full)
        out, err = stop_within(p, sig)
        fed.join()
        threads[0].join()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    lines = [json.loads(l) for l in out.splitlines()]
    s = lines[-1]["summary"]
    assert len(lines) > 1 and all("rx_pps" in l for l in lines[:-1])   # live reports
    assert s["rx"] > 0 and s["errors"] == 0
    assert s["rx"] == sum(x["fwd"] + x["dropped"] for x in s["pipes"])
    assert s["rx_bytes"] == sum(x["fwd_bytes"] + x["dropped_bytes"] for x in s["pipes"])
    got[1][0] = len(outs[1].recv(max=100000, timeout=0.2))
    assert [x["fwd"] for x in s["pipes"]] == [got[0][0] + len(outs[0].recv(max=100000, timeout=0.2)),
                                             got[1][0]]
    for o in outs + [src]:
        o.close()
    # its pipe ends were closed: the pipes' files went with ours
    assert not [f for f in os.listdir(os.path.join(private_rundir, "pipes"))
                if f.startswith(name)]


def _run_files(rundir):
    """The counter files and pipe domains in the run directory."""
    return [f for d in ("stats", "pipes") if os.path.isdir(os.path.join(rundir, d))
            for f in os.listdir(os.path.join(rundir, d))]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_pipeline_stops_on_a_signal_under_load(sig, private_rundir):
    name = uniq("ps")
    src = netmapy.open("pipe:%sin{0" % name)
    out_ = netmapy.open("pipe:%sout}0" % name)
    p = start_cli("middlebox.pipeline", ["pipe:%sin}0" % name, "pipe:%sout{0" % name,
                                         "--stages", "filter=2", "--drop", "udp port 9",
                                         "--stats-json", "--interval", "0.5"])
    got = [0]
    frames_ = [udp(*f[0], seq=i) for i, f in enumerate(flows(64))]
    try:
        while ": running," not in p.stderr.readline():
            assert p.poll() is None, p.communicate()[1]
        pid = p.pid
        assert "netmapy-pipeline-%d.stats" % pid in os.listdir(os.path.join(private_rundir,
                                                                             "stats"))
        rd = threading.Thread(target=sink, args=(out_, 3.0, got))
        rd.start()
        fed = threading.Thread(target=feeder, args=(src, frames_, 2.0))
        fed.start()
        time.sleep(1.0)
        out, err = stop_within(p, sig)
        fed.join()
        rd.join()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    s = json.loads([l for l in out.splitlines() if l.startswith('{"summary"')][0])["summary"]
    assert s["rx"] > 0 and s["tx"] == got[0] + len(out_.recv(max=100000, timeout=0.2))
    assert "keeps failing" not in err and "exited with" not in err, err   # workers stopped, not killed
    out_.close()
    src.close()
    left = _run_files(private_rundir)
    assert "netmapy-pipeline-%d.stats" % pid not in left
    assert not [f for f in left if f.startswith(name) or f.startswith("pl%d." % pid)], left


def test_a_new_start_removes_what_a_killed_pipeline_left(private_rundir):
    """Supervisor and workers SIGKILLed: their counter file and pipes stay;
    the next pipeline start removes them (and says so)."""
    name = uniq("pk")
    src = netmapy.open("pipe:%sin{0" % name)
    argv = ["pipe:%sin}0" % name, "--stages", "filter=2", "--stats-json", "--interval", "0"]
    p = start_cli("middlebox.pipeline", argv)
    while ": running," not in p.stderr.readline():
        assert p.poll() is None, p.communicate()[1]
    dead = p.pid
    kids = [int(k) for k in subprocess.run(["pgrep", "-P", str(dead)], capture_output=True,
                                           text=True).stdout.split()]
    os.kill(dead, signal.SIGSTOP)                  # no restarts, no clean-up
    for k in kids:
        os.kill(k, signal.SIGKILL)
    os.kill(dead, signal.SIGKILL)
    p.communicate(timeout=10)
    left = _run_files(private_rundir)
    assert "netmapy-pipeline-%d.stats" % dead in left and "pl%d.mem" % dead in left
    p = start_cli("middlebox.pipeline", argv)
    err = []
    while True:
        line = p.stderr.readline()
        assert line, "".join(err) + p.communicate()[1]
        err.append(line)
        if ": running," in line:
            break
    out, rest = stop_within(p, signal.SIGTERM)
    err = "".join(err) + rest
    assert p.returncode == 0, err
    assert "removed the counters of a dead run (pid %d)" % dead in err
    assert "of a dead pipeline and removed its memory: pl%d" % dead in err
    assert "exited with" not in err, err          # the dead ends did not block the new run
    src.close()
    left = _run_files(private_rundir)
    assert not [f for f in left if f.startswith("pl%d." % dead) or f.startswith(name)
                or f.startswith("pl%d." % p.pid) or "-%d.stats" % dead in f
                or "-%d.stats" % p.pid in f], left


def test_stale_lock_files_of_dead_runs_removed(tmp_path, monkeypatch):
    """A lock file whose holder died (the kernel freed the lock) is removed
    by the next start of the same program; a live holder's lock, and
    another program's, are kept."""
    from middlebox import supervisor
    monkeypatch.setenv("NETMAPY_RUNDIR", str(tmp_path))
    locks = tmp_path / "locks"
    hold = ("import sys, time\nfrom middlebox.supervisor import InterfaceLock\n"
            "InterfaceLock(sys.argv[1], None, sys.argv[2]).acquire()\n"
            "print('ready', flush=True)\ntime.sleep(60)\n")
    holders = {}
    for prog, ifname in [("netmapy-bridge", "dead0"), ("netmapy-bridge", "live0"),
                         ("nm-offload", "other0")]:
        holders[ifname] = subprocess.Popen([sys.executable, "-c", hold, prog, ifname],
                                           stdout=subprocess.PIPE, text=True, cwd=REPO,
                                           env=dict(os.environ, PYTHONPATH=REPO))
        assert holders[ifname].stdout.readline().strip() == "ready"
    try:
        for ifname in ("dead0", "other0"):
            holders[ifname].kill()
            holders[ifname].wait()
        gone = supervisor.remove_stale_locks("netmapy-bridge", out=open(os.devnull, "w"))
        assert gone == [str(locks / "-.dead0.lock")]
        assert sorted(os.listdir(locks)) == ["-.live0.lock", "-.other0.lock"]
        with pytest.raises(supervisor.AlreadyRunning):       # still held
            supervisor.InterfaceLock("netmapy-bridge", None, "live0").acquire()
        lk = supervisor.InterfaceLock("netmapy-bridge", None, "dead0")
        lk.acquire()                                         # free again
        lk.release()
    finally:
        for h in holders.values():
            h.kill()
            h.wait()


# ------------------------------------------------ every counter, every loop
def sized(src, dport, size, i=0):
    """An IPv4/UDP frame of exactly `size` bytes, lengths right."""
    pay = bytes((i + k) & 0xff for k in range(size - 42))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size - 14, i & 0xffff, 0, 64, 17, 0,
                     ipaddress.ip_address(src).packed, ipaddress.ip_address("10.0.0.2").packed)
    return b"\x02" * 12 + b"\x08\x00" + ip + struct.pack("!HHHH", 1000 + i, dport, size - 34, 0) + pay


RULES_RL = "ratelimit 1pps burst 3 udp from 10.9.0.1\ndeny udp to port 9\ndefault allow\n"


def known_traffic():
    """(frames, forwarded, dropped, rate-limited drops, too big) for
    RULES_RL and 2048-byte output buffers."""
    ok = [sized("10.0.0.1", 53, 100 + i, i) for i in range(20)]
    denied = [sized("10.0.0.1", 9, 150, i) for i in range(5)]
    limited = [sized("10.9.0.1", 53, 80, i) for i in range(10)]
    big = [sized("10.0.0.1", 53, 3000, i) for i in range(2)]
    frames_ = ok[:10] + denied + limited + big + ok[10:]
    return frames_, ok[:10] + limited[:3] + ok[10:], denied + limited[3:], 7, big


def expect(c, frames_, fwd, drop, limited, big):
    n = lambda fs: sum(len(f) for f in fs)
    assert dict(zip(stats.FIELDS, c)) == dict(
        rx=len(frames_), rx_bytes=n(frames_), fwd=len(fwd), fwd_bytes=n(fwd), drop=len(drop),
        drop_bytes=n(drop), ratelimited=limited, errors=len(big))


def rules_filter():
    from middlebox import rules
    f = Filter().add_rules(rules.parse(RULES_RL))
    f.attach_counters()
    return f


def recv_all(port, n):
    got = []
    end = time.monotonic() + 5
    while len(got) < n and time.monotonic() < end:
        got += port.recv(max=1024, timeout=0.1).tobytes()
    return got + port.recv(max=1024, timeout=0.1).tobytes()


def test_every_counter_of_bridge_offload_stage_merge_lb():
    """Known traffic (passing, denied, rate-limited, too big for the output's
    2048-byte buffers: inputs are pipes with 4096-byte buffers) through each
    loop: every counter of the block, bytes included, read back."""
    big, small = uniq("cb"), uniq("cs")
    B = lambda k, end: netmapy.open("pipe:%s%s%d" % (big, end, k), buf_size=4096)
    S = lambda k, end: netmapy.open("pipe:%s%s%d" % (small, end, k))
    frames_, fwd, drop, limited, toobig = known_traffic()
    opened = []
    try:
        # bridge: a (big) <-> b (small), both directions
        a_m, a, b_m, b = B(0, "{"), B(0, "}"), S(0, "{"), S(0, "}")
        opened += [a_m, a, b_m, b]
        back = [sized("10.0.0.1", 53, 64 + i, i) for i in range(7)]
        assert a_m.send(frames_) == len(frames_) and b_m.send(back) == 7
        blk = bytearray(8 * 32)
        loop.bridge(a, b, rules_filter(), Filter(), blk, seconds=0.3)
        w = memoryview(blk).cast("Q")
        expect(w[8:16], frames_, fwd, drop, limited, toobig)
        expect(w[16:24], back, back, [], 0, [])
        assert sorted(recv_all(b_m, len(fwd))) == sorted(fwd)
        assert sorted(recv_all(a_m, 7)) == sorted(back)

        # offload: one RX ring into one TX ring
        o_m, o, t_m, t = B(1, "{"), B(1, "}"), S(1, "{"), S(1, "}")
        opened += [o_m, o, t_m, t]
        o_m.send(frames_)
        blk = bytearray(8 * 32)
        loop.offload(o, 0, t, 0, rules_filter(), blk, seconds=0.3)
        w = memoryview(blk).cast("Q")
        expect(w[8:16], frames_, fwd, drop, limited, toobig)
        assert sorted(recv_all(t_m, len(fwd))) == sorted(fwd)

        # stage: bulk and priority inputs
        l_m, l, h_m, h, s_m, s_ = B(2, "{"), B(2, "}"), B(3, "{"), B(3, "}"), S(2, "{"), S(2, "}")
        opened += [l_m, l, h_m, h, s_m, s_]
        prio = [sized("10.0.0.1", 53, 200, i) for i in range(4)]
        l_m.send(frames_)
        h_m.send(prio)
        blk = bytearray(8 * 32)
        loop.stage(l, s_m, rules_filter(), blk, hi=h, seconds=0.3)
        w = memoryview(blk).cast("Q")
        expect(w[8:16], frames_, fwd, drop, limited, toobig)
        expect(w[16:24], prio, prio, [], 0, [])
        assert sorted(recv_all(s_, len(fwd) + 4)) == sorted(fwd + prio)

        # merge: two inputs, no filter
        i1_m, i1, i2_m, i2, m_m, m = B(4, "{"), B(4, "}"), B(5, "{"), B(5, "}"), S(3, "{"), S(3, "}")
        opened += [i1_m, i1, i2_m, i2, m_m, m]
        i1_m.send(frames_)
        i2_m.send(prio)
        blk = bytearray(8 * 32)
        loop.merge([i1, i2], m_m, blk, seconds=0.3)
        w = memoryview(blk).cast("Q")
        passing = [f for f in frames_ + prio if len(f) <= 2048]
        expect(w[8:16], frames_ + prio, passing, [], 0, toobig)
        assert sorted(recv_all(m, len(passing))) == sorted(passing)

        # lb: one input, a group of two 16-slot pipes nobody reads while it
        # runs, lossy, with 8 extra buffers: drops, counted with their bytes
        x_m, x = B(6, "{"), B(6, "}")
        tiny = uniq("ct")
        outs = [netmapy.open("pipe:%s{%d" % (tiny, k), slots=16) for k in range(2)]
        ins = [netmapy.open("pipe:%s}%d" % (tiny, k), slots=16) for k in range(2)]
        opened += [x_m, x] + outs + ins
        many = [sized("10.0.%d.1" % (i % 50), 53, 60 + i, i) for i in range(200)]
        lbin = many[:100] + toobig + many[100:]
        bal = lb.Balancer(x, [("g", outs)], extra_bufs=8, lossy=True)
        blk = bytearray(8 * 32)
        sent = 0
        while sent < len(lbin):                  # the input pipe holds 1023
            sent += x_m.send(lbin[sent:sent + 500])
        bal.run(idle_ms=300, counters=blk)
        w = memoryview(blk).cast("Q")
        st_ = bal.stats()
        got = [ins[k].recv(max=100, timeout=0.1).tobytes() for k in range(2)]
        kept = got[0] + got[1]
        lost = [f for f in many if f not in kept]
        assert len(kept) == sum(p["fwd"] for p in st_["pipes"]) == 30     # 2 x 15 slots
        expect(w[8:16], lbin, kept, lost, 0, toobig)
    finally:
        for p in opened:
            p.close()


def test_counter_layout_declared_once():
    """middlebox/counters.pxd declares the worker block once: the C loops
    cimport it, and middlebox.stats (the supervisor) reads the values from
    the compiled middlebox.counters.  The block they describe is sound:
    the fixed words, the two direction groups and the per-direction words
    do not overlap and fit in BLOCK_WORDS."""
    from middlebox import counters
    lay = counters.LAYOUT
    assert (stats.W_PID, stats.DIR_BASE, stats.W_FAILED[0], stats.BLOCK_WORDS) == \
        (lay["W_PID"], (lay["DIR0"], lay["DIR1"]), lay["W_FAILED"], lay["BLOCK_WORDS"])
    assert (stats.RX, stats.FWD, stats.DROP, stats.ERRORS) == \
        tuple(lay["FIELDS"][i] for i in (0, 2, 4, 7))
    words = [lay[k] for k in ("W_PID", "W_RESTARTS", "W_HEARTBEAT", "W_STATE", "W_QUEUE",
                              "W_CPU", "W_SAMPLED")]
    words += [d + f for d in (lay["DIR0"], lay["DIR1"]) for f in lay["FIELDS"]]
    words += [lay["W_FAILED"] + d for d in (0, 1)] + [lay["W_KDROPS"] + d for d in (0, 1)]
    assert len(set(words)) == len(words), "two counters share a word"
    assert all(0 <= w < lay["BLOCK_WORDS"] for w in words)
    assert len(stats.FIELDS) == len(lay["FIELDS"]) == len(set(lay["FIELDS"]))
