"""Pipeline benchmarks (issue 7): does the filter stage scale, and does the
priority class stay fast under a bulk flood?

    python -m tools.bench_pipeline scaling --rules 10000 --seconds 10
    python -m tools.bench_pipeline latency --seconds 10
    python -m tools.bench_pipeline zeroloss --rules 1000 --seconds 10

scaling: one input (a pipe fed at full speed by a source process) fanned
out to 1, then 2 filter workers running a 10,000-rule file (no rule
matches: every packet walks all of them, then the default; the rules use
port ranges, which the rule index does not cover, so the walk is real).  Reports the
filter stage's packets per CPU-second (packets it processed / CPU time its
processes used) for 1 and 2 workers, and their ratio.  On this 2-core
machine the source and the balancer share the cores with the workers, so
the aggregate rate cannot double; per-core efficiency is what shows
whether the design scales.

zeroloss: the highest rate the whole pipeline (balancer -> filter
workers -> merge, over pipes) takes with no loss, by paced trials
(netmapy/tools/zeroloss.py), with 1 and 2 filter workers.

latency: a bulk flood far above what the filter stage can take, plus a
small flow (one probe per millisecond, stamped with the send time) of the
priority class; the balancer runs lossy (what the stage cannot take is
dropped at the balancer, as a NIC queue would), and the sink measures each
probe's latency.  Run with and without --priority; p50/p99/max reported.
"""

import ipaddress
import json
import multiprocessing as mp
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import click

from netmapy import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def frame(src, dport, payload=b""):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 0, 0, 64, 17, 0,
                     ipaddress.ip_address(src).packed, ipaddress.ip_address("10.9.0.1").packed)
    return (b"\x02" * 12 + b"\x08\x00" + ip +
            struct.pack("!HHHH", 4000 + int(src.split(".")[-1]), dport, 8 + len(payload), 0) + payload)


def bulk_frames(n=256):
    return [frame("10.0.%d.%d" % (i // 250, i % 250 + 1), 53, bytes(18)) for i in range(n)]


def rules_file(n):
    f = tempfile.NamedTemporaryFile("w", suffix=".rules", delete=False)
    for i in range(n):
        # port ranges: the rule index leaves them to the in-order walk, so
        # the stage stays as expensive as the benchmark means it to be
        f.write("deny udp from 203.%d.%d.0/24 to any port %d-%d\n" % (
            i // 256 % 256, i % 256, 1 + i % 1000, 2 + i % 1000))
    f.write("default allow\n")
    f.close()
    return f.name


def _source(name, seconds, probe_ms, ready, out, rate=0):
    import netmapy
    os.sched_setaffinity(0, {0})
    bulk = bulk_frames()
    with netmapy.open("pipe:%s{0" % name, slots=4096) as tx:
        ready.wait()
        sent = probes = offered = 0
        t0 = time.monotonic()
        next_probe = t0
        while time.monotonic() - t0 < seconds:
            if rate:
                # paced: a batch whenever the schedule allows one
                due = t0 + offered / rate
                now = time.monotonic()
                if due > now:
                    time.sleep(min(due - now, 0.001))
                    continue
            offered += len(bulk)
            sent += tx.send(bulk, timeout=0)          # never wait: drop here when full
            if probe_ms and time.monotonic() >= next_probe:
                ts = time.monotonic_ns()
                tx.send([frame("10.8.0.1", 5060, struct.pack("!Q", ts) + bytes(10))], timeout=1)
                probes += 1
                next_probe += probe_ms / 1000.0
            if not tx.tx_ring.space():
                time.sleep(0.0002)
        out.put(dict(sent=sent, probes=probes, offered=offered,
                     seconds=time.monotonic() - t0))


def _sink(name, ready, done, out):
    """Count what the pipeline delivers from the moment the source starts
    until the source is done and nothing has arrived for 0.5 s (so packets
    still in flight when the source stops are counted, not lost)."""
    import netmapy
    lat = []
    n = 0
    with netmapy.open("pipe:%s}0" % name, slots=4096) as rx:
        ready.wait()
        last = time.monotonic()
        while not (done.is_set() and time.monotonic() - last > 0.5):
            b = rx.recv(max=1024, timeout=0.1)
            now = time.monotonic_ns()
            if len(b):
                last = time.monotonic()
            n += len(b)
            for s in b:
                if s.len >= 52:
                    v = memoryview(s)
                    if v[36] == 0x13 and v[37] == 0xc4:           # dport 5060
                        lat.append((now - struct.unpack("!Q", v[42:50])[0]) / 1000.0)
                    v.release()
    out.put(dict(received=n, latencies_us=lat))


def run_case(workers, seconds, rules=None, priority=None, lossy=False, probe_ms=0, budget=64,
             rate=0):
    name = "bp%d_%d" % (os.getpid(), int(time.time() * 1000) % 100000)
    argv = [sys.executable, "-m", "middlebox.pipeline", "pipe:%sin}0" % name,
            "pipe:%sout{0" % name, "--stages", "filter=%d" % workers, "--stats-json",
            "--interval", "0", "--budget", str(budget)]
    if rules:
        argv += ["--rules", rules]
    if priority:
        argv += ["--priority", priority]
    if lossy:
        argv += ["--lossy"]
    ctx = mp.get_context("fork")
    ready, done, q_src, q_sink = ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    src = ctx.Process(target=_source, args=(name + "in", seconds, probe_ms, ready, q_src, rate))
    sink = ctx.Process(target=_sink, args=(name + "out", ready, done, q_sink))
    src.start()
    sink.start()
    time.sleep(0.5)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO))
    while True:
        line = p.stderr.readline()
        if not line:
            raise cli.CliError("pipeline failed: " + p.communicate()[1][-400:])
        if ": running," in line:
            break
    ready.set()
    s = q_src.get(timeout=seconds + 60)
    done.set()
    k = q_sink.get(timeout=120)                 # the pipeline has drained
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    src.join(5)
    sink.join(5)
    summary = json.loads([l for l in out.splitlines() if l.startswith('{"summary"')][0])["summary"]
    return dict(source=s, sink=dict(received=k["received"]), latencies_us=k["latencies_us"],
                summary=summary)


def scaling(args):
    rules = rules_file(args.rules)
    res = {}
    for w in (1, 2):
        runs = []
        for r in range(args.repeat):
            c = run_case(w, args.seconds, rules=rules)
            st = c["summary"]["stages"]
            pkts = sum(s["rx"] for s in st)
            cpu = sum(s["cpu_seconds"] or 0 for s in st)
            runs.append(dict(packets=pkts, cpu=cpu, per_cpu_second=pkts / cpu if cpu else 0,
                             per_worker=[s["rx"] for s in st],
                             per_worker_cpu=[s["cpu_seconds"] for s in st],
                             delivered_pps=c["sink"]["received"] / args.seconds))
            print("  %d worker(s) run %d: %d packets, %.2f CPU-s in the filter stage -> %.0f "
                  "packets/CPU-s; %.0f pps delivered" % (w, r + 1, pkts, cpu,
                                                         runs[-1]["per_cpu_second"],
                                                         runs[-1]["delivered_pps"]),
                  file=sys.stderr, flush=True)
        runs.sort(key=lambda x: x["per_cpu_second"])
        res[w] = runs[len(runs) // 2]
    os.unlink(rules)
    ratio = res[2]["per_cpu_second"] / res[1]["per_cpu_second"] if res[1]["per_cpu_second"] else 0
    return dict(benchmark="scaling", rules=args.rules, seconds=args.seconds, one=res[1],
                two=res[2], ratio=ratio)


def zeroloss(args):
    """The highest rate the pipeline (balancer -> filter workers -> merge,
    over pipes) takes with no loss: paced trials from the source; a batch
    the input pipe has no room for is lost at the source, as it would be at
    a NIC queue."""
    from netmapy.tools.zeroloss import search
    rules = rules_file(args.rules)
    out = {}
    for w in (1, 2):
        def trial(rate):
            c = run_case(w, args.seconds, rules=rules, rate=rate)
            off, got = c["source"]["offered"], c["sink"]["received"]
            return dict(offered_pps=off / c["source"]["seconds"], sent=off,
                        lost=off - got, delivered=got)
        # the ceiling: what the source offers unpaced
        top = trial(0)
        print("  %d worker(s) unpaced: offered %.0f pps, delivered %d of %d" % (
            w, top["offered_pps"], top["delivered"], top["sent"]), file=sys.stderr, flush=True)
        best, trials = search(trial, top["offered_pps"], max_trials=args.trials,
                              tolerance=1e-5,
                              report=lambda r: print("  %d worker(s) paced %.0f pps: lost %d of %d"
                                                     % (w, r["offered_pps"], r["lost"], r["sent"]),
                                                     file=sys.stderr, flush=True))
        out[w] = dict(zero_loss_pps=best, unpaced=top, trials=trials)
    os.unlink(rules)
    return dict(benchmark="zeroloss", rules=args.rules, seconds=args.seconds, results=out)


def latency(args):
    rules = rules_file(args.rules)
    out = {}
    for prio in (False, True):
        c = run_case(args.workers, args.seconds, rules=rules, lossy=True, probe_ms=1,
                     priority="udp dst port 5060" if prio else None)
        lat = sorted(c["latencies_us"])
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None
        out["with" if prio else "without"] = dict(
            probes_sent=c["source"]["probes"], probes_received=len(lat), p50_us=q(0.5),
            p99_us=q(0.99), max_us=lat[-1] if lat else None,
            bulk_offered=c["source"]["sent"], delivered=c["sink"]["received"])
        print("  priority %-3s: %d/%d probes, p50 %s us, p99 %s us, max %s us" % (
            "on" if prio else "off", len(lat), c["source"]["probes"],
            out["with" if prio else "without"]["p50_us"], out["with" if prio else "without"]["p99_us"],
            out["with" if prio else "without"]["max_us"]), file=sys.stderr, flush=True)
    os.unlink(rules)
    return dict(benchmark="latency", rules=args.rules, workers=args.workers, results=out)


@cli.command("bench_pipeline", epilog=__doc__.split("\n\n", 1)[1])
@click.argument("which", type=click.Choice(["scaling", "latency", "zeroloss", "all"]))
@click.option("--rules", type=cli.IntRange(min=1), default=10000, show_default=True)
@click.option("--seconds", type=cli.SECONDS, default=8, show_default=True)
@click.option("--repeat", type=cli.IntRange(min=1), default=3, show_default=True)
@click.option("--workers", type=cli.IntRange(1, 64), default=1, show_default=True)
@click.option("--trials", type=cli.IntRange(min=1), default=6, show_default=True,
              help="zeroloss: most paced trials per search")
@click.option("--json", metavar="FILE", type=click.Path(dir_okay=False),
              help="also write the results as JSON")
@cli.common_options(version=False)
@cli.pass_args
def command(args):
    """Pipeline benchmarks."""
    return run(args)


def run(args):
    results = []
    if args.which in ("scaling", "all"):
        r = scaling(args)
        results.append(r)
        print("filter stage, %d rules: 1 worker %.0f packets/CPU-s, 2 workers %.0f packets/CPU-s "
              "(ratio %.2f)" % (args.rules, r["one"]["per_cpu_second"], r["two"]["per_cpu_second"],
                               r["ratio"]))
    if args.which in ("zeroloss", "all"):
        r = zeroloss(args)
        results.append(r)
        for w, v in sorted(r["results"].items()):
            print("pipeline over pipes, %d filter worker(s), %d rules: zero-loss %.0f pps "
                  "(unpaced source: %.0f pps offered)" % (w, args.rules, v["zero_loss_pps"],
                                                          v["unpaced"]["offered_pps"]))
    if args.which in ("latency", "all"):
        r = latency(args)
        results.append(r)
        for k, v in r["results"].items():
            print("priority %-7s: p50 %s us, p99 %s us, max %s us (%d probes)" % (
                k, v["p50_us"], v["p99_us"], v["max_us"], v["probes_received"]))
    if args.json:
        json.dump(results, open(args.json, "w"), indent=1)
    return 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
