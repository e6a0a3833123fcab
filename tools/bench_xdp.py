"""Benchmarks of the xdp backend on the veth lab (needs root).

Two experiments, every case of an experiment in the same run (the machine
is noisy: compare within a run; ``--runs N`` repeats the set and reports
medians):

rx      trafgen floods s0 -> a0 (pinned to CPU0, so XPS puts every frame on
        RX queue 0 of a0).  Receivers in the mbox namespace, pinned to CPU1:
          xdp        ``xdp:a0~0`` (queue 0 bypassed, fastpath.receive); also
                     with generic-mode XDP and with interrupt moderation off
          packet     ``packet:a0/R`` (AF_PACKET TPACKET_V3, fastpath.receive)
          xdp_drop   an XDP program returning XDP_DROP on a0 (no user space)
bridge  trafgen floods s0 -> a0 | mbox | b0 -> k0 (sink); the middlebox:
          linux_bridge   br0 with a0 and b0
          testpmd        dpdk-testpmd io forwarding over net_af_xdp (a0, b0),
                         forwarding lcore on CPU1 (busy-polls)
          xdp            ``xdp:a0`` and ``xdp:b0`` sharing one UMEM, zero
                         copy, netmapy.fastpath.bridge() on CPU1 (blocks in poll())

For each case: generator rate (frames trafgen got out, Mpps), delivered
rate (Mpps received by the receiver / by the sink), loss (1 - delivered /
sent) and the middlebox's own CPU time per delivered packet (user + system
time of its process; kernel middleboxes run inside the sender's softirq and
have none of their own to report).

    python -m tools.bench_xdp                     # both, 5 s per case
    python -m tools.bench_xdp rx --runs 3 --seconds 10
    python -m tools.bench_xdp --json              # machine-readable

``run_rx()`` and ``run_bridge()`` return the figures as dicts (for
tools/bench.py).
"""

import contextlib
import json
import tempfile
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import click  # noqa: E402

from netmapy import cli  # noqa: E402
from netmapy.tools.lab import Lab, LabError, stop_process  # noqa: E402

MBOX_CPU = 1

_RECEIVER = r"""
import json, os, resource, sys
sys.path.insert(0, %(repo)r)
os.sched_setaffinity(0, {%(cpu)d})
import netmapy
from netmapy import fastpath
port = netmapy.open(%(name)r, **%(kw)r)
print("ready", flush=True)
r0 = resource.getrusage(resource.RUSAGE_SELF)
res = fastpath.receive(port, seconds=%(seconds)f, idle_ms=%(idle)d)
r1 = resource.getrusage(resource.RUSAGE_SELF)
st = port.stats() if hasattr(port, "stats") else {}
st.pop("queues", None)
port.close()
print(json.dumps(dict(packets=res["packets"], stats=st,
                      cpu=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))))
"""

_BRIDGE = r"""
import json, os, resource, sys
sys.path.insert(0, %(repo)r)
os.sched_setaffinity(0, {%(cpu)d})
import netmapy
from netmapy import fastpath
a = netmapy.open("xdp:%(a)s", share="bench")
b = netmapy.open("xdp:%(b)s", share="bench")
assert a.mem is b.mem
print("ready", flush=True)
r0 = resource.getrusage(resource.RUSAGE_SELF)
res = fastpath.bridge(a, b, seconds=%(seconds)f)
r1 = resource.getrusage(resource.RUSAGE_SELF)
sa, sb = a.stats(), b.stats()
b.close(); a.close()
print(json.dumps(dict(packets=res["a_to_b_packets"], back=res["b_to_a_packets"], swapped=res["swapped"],
                      rx_dropped=sa.get("rx_dropped", 0), tx=sb["tx_packets"],
                      cpu=(r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))))
"""


def _start(lab, code, timeout=20):
    p = lab.exec("mbox", [sys.executable, "-c", code], stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if line.strip() != "ready":
        err = p.stderr.read()
        stop_process(p)
        raise LabError("a benchmark process did not start: %s" % err.strip()[-500:])
    return p


def _finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        raise LabError("a benchmark process failed: %s" % err.strip()[-500:])
    return json.loads(lines[-1])


def _flood(lab, seconds, size):
    """trafgen for `seconds`; returns frames s0 sent in that window."""
    ln = lab.lines[0]
    before = lab.counters("src", ln.src_if)["tx_packets"]
    g = lab.trafgen(0, seconds=seconds, size=size, cpu=0)
    g.wait()
    if g.stderr is not None:
        g.stderr.close()
    time.sleep(0.3)
    return lab.counters("src", ln.src_if)["tx_packets"] - before


def _proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tck


def _row(case, seconds, sent, delivered, cpu=None, **extra):
    d = dict(case=case, sent_mpps=sent / seconds / 1e6,
             delivered_mpps=delivered / seconds / 1e6,
             loss=(1 - delivered / sent) if sent else 0.0,
             cpu_ns_per_pkt=(cpu / delivered * 1e9) if (cpu is not None and delivered) else None)
    d.update(extra)
    return d


# -------------------------------------------------------------------- rx

def _rx_xdp_or_packet(lab, name, seconds, size, kw):
    code = _RECEIVER % dict(repo=REPO, cpu=MBOX_CPU, name=name, kw=kw,
                            seconds=seconds + 10, idle=700)
    p = _start(lab, code)
    try:
        sent = _flood(lab, seconds, size)
        res = _finish(p)
    finally:
        stop_process(p)
    return sent, res


def _rx_drop(lab, seconds, size):
    from netmapy.backends import xdp
    from netmapy import xdpprog
    from netmapy.netns import netns
    ln = lab.lines[0]
    with netns(lab.mbox_ns):
        xdp.attach_program(ln.mbox_in, xdpprog.drop_program(), "bench_drop")
    try:
        before = sum(lab.rx_queue_packets("mbox", ln.mbox_in))
        sent = _flood(lab, seconds, size)
        dropped = sum(lab.rx_queue_packets("mbox", ln.mbox_in)) - before
    finally:
        with netns(lab.mbox_ns):
            xdp.detach_program(ln.mbox_in)
    return sent, dropped


RX_VARIANTS = (("xdp ~0 generic", dict(xdp_mode="generic")),
               ("xdp ~0 no-coalesce", dict(rx_coalesce_us=0)))


def run_rx(seconds=5.0, size=60, runs=1, prefix="bx", log=None, variants=RX_VARIANTS):
    """RX on one bypassed queue vs packet vs XDP_DROP (and the variants:
    generic-mode XDP, interrupt moderation off).  Returns a list of rows
    per run: [[row, ...], ...]."""
    out = []
    with Lab(lines=1, queues=2, prefix=prefix) as lab:
        for r in range(runs):
            rows = []
            sent, res = _rx_xdp_or_packet(lab, "xdp:%s~0" % lab.lines[0].mbox_in,
                                          seconds, size, {})
            st = res["stats"]
            rows.append(_row("xdp ~0", seconds, sent, res["packets"], res["cpu"],
                             kernel_drops=st.get("rx_dropped", 0) + st.get("rx_fill_ring_empty", 0)))
            for label, kw in variants:
                sent, res = _rx_xdp_or_packet(lab, "xdp:%s~0" % lab.lines[0].mbox_in,
                                              seconds, size, kw)
                st = res["stats"]
                rows.append(_row(label, seconds, sent, res["packets"], res["cpu"],
                                 kernel_drops=st.get("rx_dropped", 0) + st.get("rx_fill_ring_empty", 0)))
            sent, res = _rx_xdp_or_packet(lab, "packet:%s/R" % lab.lines[0].mbox_in,
                                          seconds, size, {})
            rows.append(_row("packet", seconds, sent, res["packets"], res["cpu"],
                             kernel_drops=res["stats"].get("rx_kernel_drops", 0)))
            sent, dropped = _rx_drop(lab, seconds, size)
            rows.append(_row("xdp_drop", seconds, sent, dropped, None))
            out.append(rows)
            if log:
                log(rows)
    return out


# ---------------------------------------------------------------- bridge

def _sink_count(lab, sink):
    ln = lab.lines[0]
    if sink == "xdp_drop":
        return sum(lab.rx_queue_packets("sink", ln.sink_if))
    return lab.counters("sink", ln.sink_if)["rx_packets"]


def _sink_delta(lab, fn, sink):
    before = _sink_count(lab, sink)
    res = fn()
    time.sleep(0.3)
    return res, _sink_count(lab, sink) - before


@contextlib.contextmanager
def _sink_mode(lab, sink):
    """sink="stack": k0's IP stack takes the frames (and, as nothing
    listens on the port, answers each with an ICMP port unreachable, rate
    limited but routed every time); sink="xdp_drop": an XDP_DROP program on
    k0 counts and drops them, so the sink's own cost stays out of the
    comparison."""
    if sink != "xdp_drop":
        yield
        return
    from netmapy.backends import xdp
    from netmapy import xdpprog
    from netmapy.netns import netns
    ln = lab.lines[0]
    with netns(lab.sink_ns):
        xdp.attach_program(ln.sink_if, xdpprog.drop_program(), "bench_sink")
    try:
        yield
    finally:
        with netns(lab.sink_ns):
            xdp.detach_program(ln.sink_if)


def _br_linux(lab, seconds, size, sink):
    ln = lab.lines[0]
    lab.run("mbox", ["ip", "link", "add", "name", "br0", "type", "bridge"])
    try:
        for i in (ln.mbox_in, ln.mbox_out):
            lab.run("mbox", ["ip", "link", "set", "dev", i, "master", "br0"])
        lab.run("mbox", ["ip", "link", "set", "dev", "br0", "up"])
        time.sleep(0.5)
        sent, got = _sink_delta(lab, lambda: _flood(lab, seconds, size), sink)
    finally:
        lab.run("mbox", ["ip", "link", "del", "dev", "br0"], check=False)
    return sent, got, None


def _br_testpmd(lab, seconds, size, sink):
    ln = lab.lines[0]
    exe = shutil.which("dpdk-testpmd")
    if exe is None:
        return None
    argv = [exe, "-l", "0,%d" % MBOX_CPU, "--no-huge", "-m", "512", "--no-pci",
            "--log-level=*:warning",
            "--vdev=net_af_xdp0,iface=%s,start_queue=0,queue_count=1" % ln.mbox_in,
            "--vdev=net_af_xdp1,iface=%s,start_queue=0,queue_count=1" % ln.mbox_out,
            "--", "--forward-mode=io", "--auto-start", "--total-num-mbufs=16384",
            "--stats-period=0"]
    # testpmd's stdout is block-buffered into a pipe: let it write a file
    out = tempfile.TemporaryFile(mode="w+")
    p = lab.exec("mbox", ["stdbuf", "-oL"] + argv, stdin=subprocess.PIPE,
                 stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end and p.poll() is None:
            out.seek(0)
            if "Press enter to exit" in out.read():
                break
            time.sleep(0.2)
        if p.poll() is not None:
            out.seek(0)
            raise LabError("dpdk-testpmd exited early: %s" % out.read()[-500:])
        time.sleep(1.0)
        c0 = _proc_cpu(p.pid)
        sent, got = _sink_delta(lab, lambda: _flood(lab, seconds, size), sink)
        cpu = _proc_cpu(p.pid) - c0
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        try:
            p.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            stop_process(p)
        out.close()
    return sent, got, cpu


def _br_xdp(lab, seconds, size, sink):
    ln = lab.lines[0]
    code = _BRIDGE % dict(repo=REPO, cpu=MBOX_CPU, a=ln.mbox_in, b=ln.mbox_out,
                          seconds=seconds + 3)
    p = _start(lab, code)
    try:
        sent, got = _sink_delta(lab, lambda: _flood(lab, seconds, size), sink)
        res = _finish(p)
    finally:
        stop_process(p)
    return sent, got, res["cpu"], res


def run_bridge(seconds=5.0, size=60, runs=1, prefix="bb", log=None, sink="xdp_drop"):
    """Zero-copy xdp bridge vs Linux bridge vs testpmd/af_xdp."""
    out = []
    with Lab(lines=1, queues=1, prefix=prefix) as lab, _sink_mode(lab, sink):
        for r in range(runs):
            rows = []
            sent, got, cpu = _br_linux(lab, seconds, size, sink)
            rows.append(_row("linux_bridge", seconds, sent, got, None))
            tp = _br_testpmd(lab, seconds, size, sink)
            if tp is not None:
                rows.append(_row("testpmd af_xdp io", seconds, tp[0], tp[1], tp[2]))
            sent, got, cpu, res = _br_xdp(lab, seconds, size, sink)
            rows.append(_row("xdp zero-copy", seconds, sent, got, cpu,
                             swapped=res["swapped"], forwarded=res["packets"]))
            out.append(rows)
            if log:
                log(rows)
    return out


# ---------------------------------------------------------------- report

def median_rows(runs):
    """Per case, the median of each numeric figure over the runs."""
    cases = {}
    for rows in runs:
        for row in rows:
            cases.setdefault(row["case"], []).append(row)
    out = []
    for case, rows in cases.items():
        m = dict(case=case, runs=len(rows))
        for k in ("sent_mpps", "delivered_mpps", "loss", "cpu_ns_per_pkt"):
            vals = [r[k] for r in rows if r.get(k) is not None]
            m[k] = statistics.median(vals) if vals else None
        out.append(m)
    return out


def format_rows(title, rows):
    lines = [title,
             "%-20s %10s %14s %8s %14s" % ("case", "gen Mpps", "delivered Mpps",
                                          "loss", "CPU ns/pkt")]
    for r in rows:
        lines.append("%-20s %10.3f %14.3f %7.2f%% %14s" % (
            r["case"], r["sent_mpps"], r["delivered_mpps"], max(0.0, 100 * r["loss"]),
            "%.0f" % r["cpu_ns_per_pkt"] if r.get("cpu_ns_per_pkt") else "-"))
    return "\n".join(lines)


@cli.command("bench_xdp", epilog=__doc__.split("\n\n", 1)[1])
@click.argument("what", type=click.Choice(("rx", "bridge", "all")), default="all")
@click.option("--seconds", type=cli.SECONDS, default=5.0, show_default=True)
@click.option("--runs", type=cli.IntRange(min=1), default=1, show_default=True)
@click.option("--size", type=cli.IntRange(60, 1514), default=60, show_default=True)
@click.option("--json", is_flag=True, help="machine-readable output")
@click.option("--sink", type=click.Choice(("xdp_drop", "stack")), default="xdp_drop",
              show_default=True, help="bridge: what takes the frames at k0")
@cli.common_options(version=False)
@cli.pass_args
def command(args):
    """AF_XDP receive and bridging against the kernel's own paths (see the module docstring)."""
    return run(args)


def main(argv=None):
    return cli.run(command, argv)


def run(args):
    if os.geteuid() != 0:
        raise cli.CliError("needs root (it builds the veth lab)")
    report = {}

    def show(title):
        def log(rows):
            if not args.json:
                print(format_rows(title, rows), flush=True)
        return log

    if args.what in ("rx", "all"):
        runs = run_rx(args.seconds, args.size, args.runs, log=show("rx (one run)"))
        report["rx"] = dict(runs=runs, median=median_rows(runs))
        if not args.json and args.runs > 1:
            print(format_rows("rx: medians of %d runs" % args.runs, report["rx"]["median"]))
    if args.what in ("bridge", "all"):
        runs = run_bridge(args.seconds, args.size, args.runs, sink=args.sink,
                          log=show("bridge (one run, sink %s)" % args.sink))
        report["bridge"] = dict(runs=runs, median=median_rows(runs))
        if not args.json and args.runs > 1:
            print(format_rows("bridge: medians of %d runs" % args.runs,
                              report["bridge"]["median"]))
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
