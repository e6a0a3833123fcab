"""netmapy benchmarks: print figures, with the references measured in the
same run (the machine is shared and noisy: compare only within one run).

    netmapy-microbench pipe      # forwarding over pipes: nogil Cython loop,
                                    # Python batch API, plain Python per packet
    netmapy-microbench packet    # AF_PACKET RX vs netsniff-ng, TX vs trafgen,
                                    # on a veth line of the lab (root)
    netmapy-microbench all --json results.json

Each figure is the median of --repeat runs of --seconds each.
"""

import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import click

from netmapy import cli

FRAME60 = bytes.fromhex("020000000002020000000001") + b"\x88\xb5" + bytes(range(46))


def _median(xs):
    return statistics.median(xs) if xs else 0.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------- pipes
def _pipe_forwarder(mode, parent, seconds, cpu, ready, out, slots):
    """The measured middle: forward parent}1 -> parent{2 with `mode`."""
    import netmapy
    from netmapy import fastpath
    os.sched_setaffinity(0, {cpu})
    a = netmapy.open("pipe:%s}1" % parent, slots=slots)
    b = netmapy.open("pipe:%s{2" % parent, slots=slots)
    ready.set()
    t_cpu = time.process_time()
    t0 = time.perf_counter()
    n = 0
    if mode == "nogil":
        n = fastpath.forward(a, b, seconds=seconds)["packets"]
    elif mode == "batch":
        while time.perf_counter() - t0 < seconds:
            n += b.send(a.recv(1024, timeout=0.1), timeout=0.1)
    elif mode == "python":
        rr, tr = a.rx_ring, b.tx_ring
        while time.perf_counter() - t0 < seconds:
            a.poll(timeout=0.1)
            while rr.head != rr.tail and time.perf_counter() - t0 < seconds:
                if not tr.space():
                    b.poll(netmapy.POLLOUT, timeout=0.1)
                    continue
                s, d = rr[rr.head], tr[tr.head]
                s.swap(d)
                rr.head = rr.next(rr.head)
                tr.head = tr.next(tr.head)
                n += 1
            b.txsync()
    out.put(dict(packets=n, seconds=time.perf_counter() - t0,
                 cpu=time.process_time() - t_cpu))
    a.close()
    b.close()


def bench_pipe(seconds=3.0, repeat=3, slots=1024):
    """Source and sink in this process (CPU 0), the forwarder in a child
    (CPU 1); pipes parent{1 -> }1 (forwarder) {2 -> }2 (sink), zero copy."""
    import netmapy
    from netmapy import fastpath
    ncpu = os.cpu_count() or 1
    results = {}
    ctx = mp.get_context("fork")
    for mode, what in (("nogil", "nogil Cython forwarding loop (netmapy.fastpath.forward)"),
                       ("batch", "Python batch API: b.send(a.recv(1024))"),
                       ("python", "plain Python per-packet loop (Slot.swap, ring.head)")):
        runs = []
        for r in range(repeat):
            parent = "bench%d%s%d" % (os.getpid(), mode, r)
            ready, out = ctx.Event(), ctx.Queue()
            p = ctx.Process(target=_pipe_forwarder, daemon=True,
                            args=(mode, parent, seconds + 0.5, 1 % ncpu, ready, out, slots))
            p.start()
            os.sched_setaffinity(0, {0})
            tx = netmapy.open("pipe:%s{1" % parent, slots=slots)
            rx = netmapy.open("pipe:%s}2" % parent, slots=slots)
            ready.wait(10)
            fastpath.reset()
            res = fastpath.source_sink(tx, rx, FRAME60, seconds=seconds, fill_once=True)
            fwd = out.get(timeout=seconds + 30)
            p.join(10)
            tx.close()
            rx.close()
            mpps = res["received"] / res["seconds"] / 1e6
            runs.append(dict(mpps=mpps, fwd_cpu_ns_per_pkt=1e9 * fwd["cpu"] / max(1, fwd["packets"])))
            log("  pipe %-7s run %d: %.2f Mpps delivered, forwarder %.1f ns CPU/packet" % (
                mode, r + 1, mpps, runs[-1]["fwd_cpu_ns_per_pkt"]))
        results[mode] = dict(what=what, mpps=_median([x["mpps"] for x in runs]),
                             cpu_ns_per_packet=_median([x["fwd_cpu_ns_per_pkt"] for x in runs]),
                             runs=runs)
    os.sched_setaffinity(0, set(range(ncpu)))
    return dict(benchmark="pipe", frame=60, seconds=seconds, repeat=repeat, slots=slots,
                results=results)


# ------------------------------------------------------------------ packet
def _packet_sockets(lab, ns):
    """Lines of /proc/net/packet in a namespace (one per packet socket)."""
    out = lab.run(ns, ["cat", "/proc/net/packet"]).stdout
    out = out if isinstance(out, str) else out.decode()
    return len(out.strip().splitlines()) - 1


def _netsniff_capture(lab, ns, ifname, seconds, cpu, started):
    """netsniff-ng capturing into /dev/null; returns (packets captured,
    packets incoming) from its own statistics.  `started` is set once its
    packet socket exists (it takes a moment to set up its ring)."""
    before = _packet_sockets(lab, ns)
    argv = ["timeout", "-s", "INT", "%g" % seconds, "netsniff-ng", "--in", ifname, "--out",
            "/dev/null", "--silent", "--bind-cpu", str(cpu), "--no-sock-mem", "-Q"]
    p = lab.exec(ns, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.monotonic() + 10
    while time.monotonic() < end and _packet_sockets(lab, ns) <= before:
        time.sleep(0.05)
    time.sleep(0.3)
    started.set()
    out = p.communicate(timeout=seconds + 20)[0]
    m = re.search(r"(\d+)\s+packets passed filter", out)
    inc = re.search(r"(\d+)\s+packets incoming", out)
    if not m:
        raise RuntimeError("could not read netsniff-ng's counters from: %r" % out[-500:])
    return int(m.group(1)), int(inc.group(1)) if inc else None


def _rx_netmapy(ns, ifname, seconds, cpu, out):
    import netmapy
    from netmapy import fastpath
    os.sched_setaffinity(0, {cpu})
    with netmapy.open(netmapy.PortName.interface(ifname, "packet", rx_only=True),
                      netns=ns) as p:
        c0 = time.process_time()
        r = fastpath.receive(p, seconds=seconds)
        r["cpu"] = time.process_time() - c0
        r["kernel"] = p.stats()
    out.put(r)


def _tx_netmapy(ns, ifname, seconds, cpu, out):
    import netmapy
    from netmapy import fastpath
    os.sched_setaffinity(0, {cpu})
    try:
        with netmapy.open(netmapy.PortName.interface(ifname, "packet", tx_only=True),
                          netns=ns) as p:
            c0 = time.process_time()
            t0 = time.perf_counter()
            r = fastpath.transmit(p, FRAME60, seconds=seconds)
            r["cpu"] = time.process_time() - c0
    except OSError as e:
        r = dict(error=str(e), packets=0, seconds=time.perf_counter() - t0)
    out.put(r)


def bench_packet(seconds=5.0, repeat=3):
    """On one lab line: trafgen floods s0 -> a0 at full speed from CPU 0;
    a0's receiver on CPU 1 is netmapy's packet backend, then netsniff-ng.
    TX: netmapy's packet backend on s0 (CPU 0) vs trafgen on s0 (CPU 0)."""
    from .lab import Lab
    if os.geteuid() != 0:
        raise cli.CliError("the packet benchmark needs root (it builds the veth lab)")
    for tool in ("trafgen", "netsniff-ng"):
        if not shutil.which(tool):
            raise cli.CliError("%s not found: install netsniff-ng (apt-get install netsniff-ng)" % tool)
    ctx = mp.get_context("fork")
    ncpu = os.cpu_count() or 1
    rxcpu = 1 % ncpu
    res = {"rx_netmapy": [], "rx_netsniff": [], "tx_netmapy": [], "tx_trafgen": []}
    with Lab(lines=1, prefix="bn") as lab:
        ln = lab.lines[0]
        for r in range(repeat):
            # RX, netmapy
            out = ctx.Queue()
            p = ctx.Process(target=_rx_netmapy, args=(ln.mbox_ns, ln.mbox_in, seconds + 1.0, rxcpu, out))
            p.start()
            time.sleep(0.5)
            c0 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            g = lab.trafgen(0, seconds=seconds, cpu=0)
            g.wait()
            time.sleep(0.3)
            c1 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            got = out.get(timeout=seconds + 30)
            p.join(10)
            res["rx_netmapy"].append(dict(
                interface=c1 - c0, received=got["packets"], ratio=got["packets"] / max(1, c1 - c0),
                mpps=got["packets"] / seconds / 1e6, kernel_drops=got["kernel"]["rx_kernel_drops"],
                cpu_ns_per_pkt=1e9 * got["cpu"] / max(1, got["packets"])))
            log("  packet RX run %d: received %d of %d counted by a0 (%.2f%%), %.3f Mpps, "
                "%.0f ns CPU/packet" % (r + 1, got["packets"], c1 - c0, 100 * got["packets"] / max(1, c1 - c0),
                                        got["packets"] / seconds / 1e6, res["rx_netmapy"][-1]["cpu_ns_per_pkt"]))
            # RX, netsniff-ng
            c0 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            import threading
            box = {}
            started = threading.Event()
            th = threading.Thread(target=lambda: box.update(
                v=_netsniff_capture(lab, ln.mbox_ns, ln.mbox_in, seconds + 3.0, rxcpu, started)))
            th.start()
            started.wait(15)
            c0 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            g = lab.trafgen(0, seconds=seconds, cpu=0)
            g.wait()
            th.join()
            c1 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            ns_got, ns_inc = box["v"]
            res["rx_netsniff"].append(dict(interface=c1 - c0, received=ns_got,
                                           ratio=ns_got / max(1, c1 - c0),
                                           mpps=ns_got / seconds / 1e6))
            log("  netsniff-ng RX run %d: captured %d of %d (%.2f%%), %.3f Mpps" % (
                r + 1, ns_got, c1 - c0, 100 * ns_got / max(1, c1 - c0), ns_got / seconds / 1e6))
            # TX, netmapy
            c0 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            out = ctx.Queue()
            p = ctx.Process(target=_tx_netmapy, args=(ln.src_ns, ln.src_if, seconds, 0, out))
            p.start()
            tx = out.get(timeout=seconds + 30)
            p.join(10)
            if tx.get("error"):
                log("  packet TX run %d failed: %s" % (r + 1, tx["error"]))
            time.sleep(0.3)
            c1 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            res["tx_netmapy"].append(dict(sent=tx["packets"], delivered=c1 - c0,
                                          mpps=(c1 - c0) / tx["seconds"] / 1e6))
            log("  packet TX run %d: %.3f Mpps delivered to a0" % (r + 1, res["tx_netmapy"][-1]["mpps"]))
            # TX, trafgen
            c0 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            t0 = time.perf_counter()
            g = lab.trafgen(0, seconds=seconds, cpu=0)
            g.wait()
            dt = time.perf_counter() - t0
            time.sleep(0.3)
            c1 = lab.counters(ln.mbox_ns, ln.mbox_in)["rx_packets"]
            res["tx_trafgen"].append(dict(delivered=c1 - c0, mpps=(c1 - c0) / seconds / 1e6))
            log("  trafgen TX run %d: %.3f Mpps delivered to a0" % (r + 1, res["tx_trafgen"][-1]["mpps"]))
    summary = {k: dict(mpps=_median([x["mpps"] for x in v]), runs=v) for k, v in res.items()}
    summary["rx_netmapy"]["ratio_of_interface"] = _median([x["ratio"] for x in res["rx_netmapy"]])
    summary["rx_netmapy"]["cpu_ns_per_packet"] = _median([x["cpu_ns_per_pkt"] for x in res["rx_netmapy"]])
    summary["rx_netsniff"]["ratio_of_interface"] = _median([x["ratio"] for x in res["rx_netsniff"]])
    summary["rx_vs_netsniff"] = summary["rx_netmapy"]["mpps"] / max(1e-9, summary["rx_netsniff"]["mpps"])
    summary["tx_vs_trafgen"] = summary["tx_netmapy"]["mpps"] / max(1e-9, summary["tx_trafgen"]["mpps"])
    return dict(benchmark="packet", frame=60, seconds=seconds, repeat=repeat, results=summary)


def report(r):
    lines = []
    if r["benchmark"] == "pipe":
        lines.append("pipe forwarding, 60-byte frames, source+sink on CPU 0, forwarder on CPU 1 "
                     "(median of %d x %gs):" % (r["repeat"], r["seconds"]))
        for k, v in r["results"].items():
            lines.append("  %-7s %8.2f Mpps  %7.1f ns CPU/packet  %s" % (
                k, v["mpps"], v["cpu_ns_per_packet"], v["what"]))
    else:
        s = r["results"]
        lines.append("packet backend on a veth line, 60-byte frames, trafgen flood from CPU 0 "
                     "(median of %d x %gs):" % (r["repeat"], r["seconds"]))
        lines.append("  RX netmapy packet   %.3f Mpps, %.2f%% of what the interface counted, "
                     "%.0f ns CPU/packet" % (s["rx_netmapy"]["mpps"], 100 * s["rx_netmapy"]["ratio_of_interface"],
                                             s["rx_netmapy"]["cpu_ns_per_packet"]))
        lines.append("  RX netsniff-ng      %.3f Mpps, %.2f%% of what the interface counted" % (
            s["rx_netsniff"]["mpps"], 100 * s["rx_netsniff"]["ratio_of_interface"]))
        lines.append("  RX ratio netmapy / netsniff-ng: %.2fx" % s["rx_vs_netsniff"])
        lines.append("  TX netmapy packet   %.3f Mpps delivered" % s["tx_netmapy"]["mpps"])
        lines.append("  TX trafgen          %.3f Mpps delivered" % s["tx_trafgen"]["mpps"])
        lines.append("  TX ratio netmapy / trafgen: %.2fx" % s["tx_vs_trafgen"])
    return "\n".join(lines)


@cli.command("netmapy-microbench", epilog=__doc__.split("\n\n", 1)[1] + "\n" +
             cli.completion_help("netmapy-microbench"))
@click.argument("which", type=click.Choice(["pipe", "packet", "all"]))
@click.option("--seconds", type=cli.SECONDS, default=None, help="length of each run")
@click.option("--repeat", type=cli.IntRange(min=1), default=3, show_default=True,
              help="runs per figure (median)")
@click.option("--slots", type=cli.IntRange(min=1), default=1024, show_default=True,
              help="pipe ring slots")
@click.option("--json", metavar="FILE", type=click.Path(dir_okay=False),
              help="also write the results as JSON")
@cli.common_options
@cli.pass_args
def command(args):
    """netmapy's own benchmarks (figures, not tests)."""
    return run(args)


def run(args):
    out = []
    if args.which in ("pipe", "all"):
        out.append(bench_pipe(args.seconds or 3.0, args.repeat, args.slots))
        print(report(out[-1]), flush=True)
    if args.which in ("packet", "all"):
        out.append(bench_packet(args.seconds or 5.0, args.repeat))
        print(report(out[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
