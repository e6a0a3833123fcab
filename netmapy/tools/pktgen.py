"""netmapy-pktgen: generate, sink, reflect and replay traffic on any netmapy port.

The loops are netmapy.pktgen's (C, no GIL); this is the command line: it
opens the port(s), starts the workers, prints a report every interval and a
summary at the end (Ctrl-C ends the run and still prints the summary).
"""

import ctypes
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import traceback
from dataclasses import replace

import click

from netmapy import cli

EPILOG = """\
functions:
  tx    send generated Ethernet/IPv4/UDP frames (sequence number and send time
        in the payload, checksums right)
  rx    count what arrives: pps, bps, and for pktgen frames loss, reordering,
        duplicates, bad checksums and one-way latency (sender on this host)
  ping  send timestamped probes one at a time and wait for each echo: RTT
        min/avg/max, p50/p99/p99.9 and a histogram
  pong  reflect every frame (MACs, IPs and ports swapped)
  tx --pcap FILE   replay a capture (recorded timing, --speed, --replay-rate)

sizes count the frame without its 4-byte FCS (what tcpdump shows): 60 is the
Ethernet minimum; "imix" is 7:4:1 of 60/566/1514 bytes (64/570/1518 on the
wire); "imix:64,128,1500:5,2,1" is a custom mix (sizes:weights).
Rates: 100k, 1.5Mpps, 200Mbps (bits of frames, as interface byte counters),
10kbit.  Ranges: 10.0.0.1-10.0.0.100, 10.0.0.0/24, 1024-65535.

workers (-p N): one pinned process per ring (CPUs from --cpus, default the
CPUs this process may use):
  pipe:x{1      -> pipe:x{1, pipe:x{2, ... (one pipe each)
  xdp:eth3      -> xdp:eth3-0, xdp:eth3-1, ... (one queue each)
  xdp:eth3-2    -> xdp:eth3-2, xdp:eth3-3, ...
  packet:eth3   -> tx: every worker sends on eth3 from its own CPU (XPS maps
                   CPUs to TX queues); rx: an AF_PACKET fanout group (flow hash)
Count and rate are shared out among the workers.

examples:
  # 1 M frames of 60 bytes as fast as possible, reports every second
  netmapy-pktgen -i packet:veth0 -f tx -n 1000000
  # sink on the other end, in namespace ns1, stop after 2 s without traffic
  netmapy-pktgen -i packet:veth1 -f rx --netns ns1 --idle 2
  # an interface by its Linux name ('-' too), on the best backend or --backend
  netmapy-pktgen -i nb-si0 -f tx -n 1000 --backend xdp --queue 1
  # 10 s of IMIX at 200 Mbps over 1000 flows (source ports 1024-2023)
  netmapy-pktgen -i packet:veth0 -f tx -l imix -R 200Mbps -d 10 --src-port 1024-2023
  # random sizes, random flows among 10.0.0.0/24, 100 kpps
  netmapy-pktgen -i pipe:x{1 -f tx -l 60-1500 --src-ip 10.0.0.0/24 --random-flows 500 -R 100k
  # two workers on two pipes, and two sinks on their other ends
  netmapy-pktgen -i pipe:x}1 -f rx -p 2 &  netmapy-pktgen -i pipe:x{1 -f tx -p 2 -d 5
  # round trips: pong on one end, ping on the other
  netmapy-pktgen -i pipe:rt}1 -f pong &  netmapy-pktgen -i pipe:rt{1 -f ping -n 10000
  # replay a capture at twice its recorded speed, or at 50 kpps
  netmapy-pktgen -i packet:veth0 -f tx --pcap trace.pcap --speed 2
  netmapy-pktgen -i packet:veth0 -f tx --pcap trace.pcap --replay-rate 50k
  # write generated frames to a capture file (then: tcpdump -r out.pcap)
  netmapy-pktgen -i pcap:out.pcap -f tx -n 100 -l imix
  # JSON lines (one per interval, then the summary) for scripts
  netmapy-pktgen -i pipe:x{1 -f tx -d 3 --json
"""


# ------------------------------------------------------------------ command line
def _flag_group(title):
    return dict(cls=cli.Option, group=title)


_FRAMES = _flag_group("Frames (tx, ping)")
_HOW = _flag_group("How much, how fast")
_REPLAY = _flag_group("pcap replay (tx)")


@cli.command("netmapy-pktgen", epilog=EPILOG + "\n" + cli.completion_help("netmapy-pktgen"))
@click.option("-i", "--interface", required=True, metavar="PORT|IFACE", type=cli.PORT_OR_IFACE,
              help="the port: pipe:x{1, packet:eth0, xdp:eth0-1, pcap:out.pcap ..., or an "
                   "interface's Linux name as it is (eth0, nb-mi0), opened with --backend")
@click.option("-f", "--function", type=click.Choice(["tx", "rx", "ping", "pong"]), default="tx",
              show_default=True, help="what to do")
@cli.backend_option(help="the backend an interface name (-i IFACE) is opened with: "
                         + cli.BACKEND_HELP)
@click.option("-q", "--queue", type=cli.IntRange(0, 4094), default=None, metavar="N",
              help="with -i IFACE: queue N (and the next ones with -p); default all queues")
@click.option("-l", "--size", type=cli.SIZES, default=None, metavar="SIZE", **_FRAMES,
              help="bytes without FCS: 60 (default), 60-1500 (uniform), imix, "
                   "imix:64,570,1518:7,4,1")
@click.option("--src-mac", metavar="MAC", **_FRAMES,
              help="default: the interface's MAC (02:00:00:00:00:01 for pipes and files)")
@click.option("--dst-mac", metavar="MAC", **_FRAMES, help="default ff:ff:ff:ff:ff:ff")
@click.option("--src-ip", metavar="IP[-IP]", **_FRAMES, help="address or range (default 10.0.0.1)")
@click.option("--dst-ip", metavar="IP[-IP]", **_FRAMES, help="address or range (default 10.0.0.2)")
@click.option("--src-port", metavar="P[-P]", **_FRAMES,
              help="UDP source port or range (default 1234; 1024-65535 with --random-flows)")
@click.option("--dst-port", metavar="P[-P]", **_FRAMES,
              help="UDP destination port or range (default 9)")
@click.option("--random-flows", type=cli.IntRange(min=1), metavar="N", **_FRAMES,
              help="N flows drawn at random from the ranges, one picked at random per frame "
                   "(default: walk every combination in turn)")
@click.option("-R", "--rate", type=cli.RATE, metavar="RATE", **_HOW,
              help="limit: 100k, 1.5Mpps, 200Mbps (tx, replay; ping: probes per second). "
                   "Default: as fast as the port takes them")
@click.option("-n", "--count", type=cli.COUNT, default=0, metavar="N", **_HOW,
              help="packets to send (tx, ping), receive (rx) or reflect (pong); 0: no limit")
@click.option("-d", "--duration", type=cli.SECONDS, default=0, metavar="SEC", **_HOW,
              help="stop after SEC seconds (0: no limit)")
@click.option("-b", "--batch", type=cli.IntRange(min=1), default=512, metavar="N", **_HOW,
              help="most frames written per sync (default 512)")
@click.option("--idle", type=cli.SECONDS, default=0, metavar="SEC", **_HOW,
              help="rx: stop SEC seconds after the last packet")
@click.option("--timeout", type=cli.SECONDS, default=1.0, metavar="SEC", **_HOW,
              help="ping: wait this long for each echo (default 1)")
@click.option("--busy", is_flag=True, **_HOW,
              help="rx/ping/pong: spin on the rings instead of sleeping in poll (steadier "
                   "latency, one CPU at 100%)")
@click.option("--no-verify", "verify", is_flag=True, flag_value=False, default=True, **_HOW,
              help="rx: do not check IPv4/UDP checksums")
@click.option("-p", "--workers", type=cli.IntRange(min=1), default=1, metavar="N",
              help="worker processes, one per ring, each pinned to a CPU (default 1)")
@cli.cpus_option(help="CPUs for the workers, e.g. 0,2-3 (one worker: pin it there too)")
@cli.netns_option(help="open the port(s) in this network namespace")
@click.option("--pcap", metavar="FILE", **_REPLAY,
              help="send the frames of this capture instead")
@click.option("--timing", is_flag=True, **_REPLAY,
              help="at the recorded timing (the default for --pcap)")
@click.option("--speed", type=float, metavar="X", **_REPLAY,
              help="recorded timing sped up X times (2.0: twice as fast)")
@click.option("--replay-rate", type=cli.RATE, metavar="RATE", **_REPLAY,
              help="at a fixed rate instead (100k, 1Gbps)")
@click.option("--topspeed", is_flag=True, **_REPLAY, help="as fast as the port takes them")
@click.option("--loop", type=cli.IntRange(min=0), default=1, metavar="N", **_REPLAY,
              help="send the capture N times (0: until -n or -d ends it; default 1)")
@cli.output_options(group="Workers and output")
@cli.common_options
@cli.pass_args
def command(args):
    """Generate (tx), sink (rx), ping/pong and replay traffic on any netmapy
    port: pipe:, packet:, xdp:, pcap:, netmap:, or an interface by its
    Linux name."""
    return run(args)


# ------------------------------------------------------------- the workers
def port_name(value, backend="netmap", queue=None):
    """The PortName -i names: a port name as it is; an interface name on
    ``backend`` (the best available one for "netmap"), ``queue`` if given."""
    from netmapy import PortName, backends
    if isinstance(value, PortName):
        if queue is not None:
            raise cli.CliError("-q/--queue goes with an interface name; the port name %s says "
                               "its rings itself" % value)
        return value
    pn = PortName.interface(value, backend, queue)
    if backend == "netmap":
        chosen = backends.resolve(pn).name
        if chosen != "netmap":
            pn = pn.with_backend(chosen)
    return pn


def worker_ports(pn, workers, function):
    """The PortName each worker opens, plus how they split."""
    from netmapy import Mode
    name = pn
    if pn.backend == "pcap":
        if workers > 1:
            raise cli.CliError("%s: a capture file is one port: use one worker (-p 1)" % name)
        return [pn], "one file"
    # direction: bind only what the function uses (no RX socket for a sender)
    if pn.backend in ("packet", "xdp") and not (pn.flags & {"R", "T"}) and \
            pn.mode is not Mode.SINGLE_RX:
        if function == "tx":
            pn = replace(pn, flags=pn.flags | {"T"})
        elif function == "rx":
            pn = replace(pn, flags=pn.flags | {"R"})
    if workers == 1:
        return [pn], "one worker"
    if pn.mode.has_ring:
        if pn.mode in (Mode.NIC_SW, Mode.SW, Mode.ONE_SW):
            raise cli.CliError("%s: host rings take one worker (-p 1)" % name)
        names = [replace(pn, ring=pn.ring + k).canonical() for k in range(workers)]
        what = "pipe" if pn.is_pipe else "queue"
        return names, "one %s each (%s %d-%d)" % (what, what, pn.ring, pn.ring + workers - 1)
    if pn.backend == "packet":
        if function == "rx":
            if pn.option("fanout") is None:
                grp = os.getpid() & 0xffff
                pn = replace(pn, options=pn.options + (("fanout", (("group", str(grp)),
                                                                   ("mode", "hash"))),))
            return [pn] * workers, "AF_PACKET fanout group (flow hash)"
        return [pn] * workers, "same interface, one CPU each (XPS picks the TX queue)"
    if pn.mode is Mode.ALL_NIC:
        names = [replace(pn, mode=Mode.ONE_NIC, ring=k).canonical() for k in range(workers)]
        return names, "one queue each (0-%d)" % (workers - 1)
    raise cli.CliError("%s: cannot split among %d workers" % (name, workers))


def _pdeathsig():
    """Die with the parent (a worker must not outlive netmapy-pktgen)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)        # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Plan:
    """Everything a worker needs (made in the parent, inherited by fork)."""

    def __init__(self, args, names):
        self.args = args
        self.names = names


def _default_src_mac(args, pn):
    from netmapy.host import iface
    from netmapy.host.netns import netns
    if pn.backend in ("packet", "xdp", "netmap") and not pn.is_pipe:
        try:
            with netns(args.netns):
                mac = iface.info(pn.ifname).mac
            return ":".join("%02x" % b for b in mac)
        except Exception:
            pass
    return "02:00:00:00:00:01"


def _check_mtu(args, pn, sizes):
    from netmapy.host import iface
    from netmapy.host.netns import netns
    if pn.backend not in ("packet", "xdp", "netmap") or pn.is_pipe:
        return
    try:
        with netns(args.netns):
            info = iface.info(pn.ifname)
    except Exception:
        return          # opening the port will say what is wrong
    if sizes.max > info.mtu + 14:
        raise cli.CliError(
            "frame size %d does not fit %s: its MTU %d carries frames of at most %d bytes "
            "(without FCS); use smaller frames or raise the MTU (ip link set dev %s mtu N)"
            % (sizes.max, pn.ifname, info.mtu, info.mtu + 14, pn.ifname))


def _share(total, k, n):
    return total // n + (1 if k < total % n else 0)


def _run_worker(plan, k, counters, events, go):
    """Open the port of worker k, say ready, wait for go, run, report."""
    import netmapy
    from netmapy.tools import pktgen_engine as pktgen
    args = plan.args
    name = plan.names[k]
    ports = []
    try:
        cpu = None
        if args.cpus or args.workers > 1:
            cpus = args.cpus or sorted(os.sched_getaffinity(0))
            cpu = cpus[k % len(cpus)]
            os.sched_setaffinity(0, {cpu})
        opts = {}
        if name.backend == "pcap":
            opts["mode"] = "w" if args.function in ("tx", "ping", "pong") else "r"
        port = netmapy.open(name, netns=args.netns, **opts)
        ports.append(port)
        src = None
        if args.pcap:
            src = netmapy.open(netmapy.PortName("pcap", args.pcap))
            ports.append(src)
        gen = None
        if args.function in ("tx", "ping") and not args.pcap:
            gen = pktgen.Generator(src_mac=args.src_mac or _default_src_mac(args, name),
                                   dst_mac=args.dst_mac or "ff:ff:ff:ff:ff:ff",
                                   src_ip=args.src_ip or "10.0.0.1",
                                   dst_ip=args.dst_ip or "10.0.0.2",
                                   src_port=args.src_port or
                                   ("1024-65535" if args.random_flows else "1234"),
                                   dst_port=args.dst_port or "9",
                                   sizes=args.size or 60, random_flows=args.random_flows or 0,
                                   stream=k & 0xff, seed=k + 1)
        if gen is not None:
            pktgen._check_fits(port, gen.max_len)
        elif args.function in ("rx", "pong"):
            if args.function == "pong" and (port.num_tx_rings == 0 or port.num_rx_rings == 0):
                raise cli.CliError("%s: pong sends back what it receives: open the port for "
                                   "both directions" % name)
        events.put(("ready", k, dict(port=str(port.name), backend=port.backend, cpu=cpu)))
        go.wait()
        n = args.workers
        count = _share(args.count, k, n) if args.function in ("tx", "ping") else args.count
        if args.count and args.function in ("tx", "ping") and count == 0:
            res = dict(packets=0, bytes=0, seconds=0.0)
        elif args.pcap:
            rate = args.replay_rate or args.rate
            res = pktgen.replay(src, port, timing=not args.topspeed and rate is None,
                                speed=args.speed or 1.0, rate=rate, count=count,
                                seconds=args.duration, batch=args.batch, counters=counters,
                                loops=args.loop)
        elif args.function == "tx":
            rate = args.rate.split(n) if args.rate else None
            res = pktgen.transmit(port, gen, rate=rate, count=count, seconds=args.duration,
                                  batch=args.batch, counters=counters)
        elif args.function == "rx":
            res = pktgen.receive(port, count=count, seconds=args.duration, idle=args.idle,
                                 counters=counters, verify=args.verify, busy=args.busy)
        elif args.function == "ping":
            rate = args.rate.split(n) if args.rate else None
            res = pktgen.ping(port, gen, count=count, seconds=args.duration, rate=rate,
                              timeout=args.timeout, counters=counters, busy=args.busy)
        else:
            res = pktgen.pong(port, count=count, seconds=args.duration, counters=counters,
                              busy=args.busy)
        events.put(("done", k, res))
    except BaseException as e:
        msg = cli.one_line(e)
        if getattr(args, "debug", False):
            msg += "\n" + traceback.format_exc()
        events.put(("error", k, msg))
    finally:
        for p in reversed(ports):
            try:
                p.close()
            except Exception:
                pass


def _process_main(plan, k, counters, events, go):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from netmapy import stop
    stop.exit_on_signals((signal.SIGTERM,))     # opt in: ports close on SIGTERM
    _pdeathsig()
    _run_worker(plan, k, counters, events, go)


# ------------------------------------------------------------------ output
def _rate_str(v, unit):
    """2093000, "pps" -> "2.093 Mpps"; without a unit: "2.093M"."""
    v = float(v)
    for p, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= p:
            return ("%.4g %s%s" % (v / p, s, unit)) if unit else "%.4g%s" % (v / p, s)
    return ("%.4g %s" % (v, unit)) if unit else "%.4g" % v


def _us(ns):
    if ns is None:
        return "-"
    if ns >= 1e6:
        return "%.3g ms" % (ns / 1e6)
    return "%.3g us" % (ns / 1e3)


class Reporter:
    def __init__(self, args, out=sys.stdout):
        self.args = args
        self.out = out
        self.json = args.json

    def emit(self, obj, text):
        if self.json:
            print(json.dumps(obj, sort_keys=True), file=self.out, flush=True)
        elif text is not None:
            print(text, file=self.out, flush=True)


def _which(fn):
    """The counter pair a function's rate is read from."""
    return ("rx_packets", "rx_bytes") if fn == "rx" else ("tx_packets", "tx_bytes")


def _merge_streams(results):
    streams = {}
    for r in results:
        for sid, s in (r.get("streams") or {}).items():
            m = streams.setdefault(int(sid), dict(first=s["first"], highest=s["highest"],
                                                  received=0, reordered=0, duplicates=0))
            m["first"] = min(m["first"], s["first"])
            m["highest"] = max(m["highest"], s["highest"])
            m["received"] += s["received"]
            m["reordered"] += s["reordered"]
            m["duplicates"] += s["duplicates"]
    for m in streams.values():
        m["lost"] = max(0, m["highest"] - m["first"] + 1 - m["received"])
    return streams


def summarize(args, results, snaps, seconds, interrupted):
    """The summary dict (JSON) from the workers' results and counters."""
    from netmapy.tools import pktgen_engine as pktgen
    fn = "replay" if args.pcap else args.function
    tot = pktgen.merge(snaps)
    pk, by = _which(args.function)
    packets, nbytes = tot.get(pk, 0), tot.get(by, 0)
    # each worker's own elapsed time; the run's is the longest
    secs = max([r.get("seconds", 0) for r in results if r] + [0.0]) or seconds
    d = dict(type="summary", function=fn, packets=packets, bytes=nbytes, seconds=secs,
             pps=packets / secs if secs else 0.0, bps=nbytes * 8 / secs if secs else 0.0,
             interrupted=interrupted, workers=[])
    for k, (r, s) in enumerate(zip(results, snaps)):
        w = dict(worker=k, packets=s.get(pk, 0), bytes=s.get(by, 0))
        ws = (r or {}).get("seconds") or secs
        w["pps"] = w["packets"] / ws if ws else 0.0
        w["bps"] = w["bytes"] * 8 / ws if ws else 0.0
        d["workers"].append(w)
    if fn in ("tx", "replay"):
        d["batches"] = tot.get("batches", 0)
        d["max_batch"] = tot.get("max_batch", 0)
        d["ring_full"] = tot.get("ring_full", 0)
        if fn == "replay":
            d["late"] = tot.get("late", 0)
    if fn == "rx":
        streams = _merge_streams([r for r in results if r])
        d.update(pktgen=tot.get("rx_pktgen", 0), other=tot.get("rx_other", 0),
                 bad_csum=tot.get("bad_csum", 0),
                 lost=sum(s["lost"] for s in streams.values()),
                 reordered=tot.get("reordered", 0), duplicates=tot.get("duplicates", 0),
                 streams={str(k): v for k, v in sorted(streams.items())},
                 latency=pktgen.rtt_summary(tot))
        firsts = [r.get("first_to_last", 0) for r in results if r]
        d["first_to_last"] = max(firsts) if firsts else 0.0
        if d["first_to_last"] > 0:
            d["pps_first_to_last"] = packets / d["first_to_last"]
    if fn == "ping":
        d.update(probes=tot.get("probes", 0),
                 replies=tot.get("probes", 0) - tot.get("probes_lost", 0),
                 lost=tot.get("probes_lost", 0), late=tot.get("late", 0),
                 rtt=pktgen.rtt_summary(tot),
                 histogram=[dict(low_ns=lo, high_ns=hi, count=n)
                            for lo, hi, n in pktgen.histogram_rows(tot)])
    if fn == "pong":
        d["reflected"] = tot.get("reflected", 0)
    return d


def summary_text(d):
    from netmapy.tools.pktgen_engine import si
    fn = d["function"]
    verb = {"tx": "sent", "replay": "replayed", "rx": "received", "ping": "sent",
            "pong": "reflected"}[fn]
    lines = ["summary: %s %d packets, %d bytes in %.3f s: %s, %s%s" % (
        verb, d["packets"], d["bytes"], d["seconds"], _rate_str(d["pps"], "pps"),
        _rate_str(d["bps"], "bps"), " (interrupted)" if d["interrupted"] else "")]
    if len(d["workers"]) > 1:
        lines.append("  per worker: " + "  ".join(
            "w%d %d (%s)" % (w["worker"], w["packets"], _rate_str(w["pps"], "pps"))
            for w in d["workers"]))
    if fn in ("tx", "replay") and d.get("batches"):
        lines.append("  batches: %d, %.1f frames on average, at most %d back to back; "
                     "ring full %d times" % (d["batches"], d["packets"] / d["batches"],
                                             d["max_batch"], d["ring_full"]))
    if fn == "replay":
        lines.append("  late by more than 1 ms: %d" % d["late"])
    if fn == "rx":
        lines.append("  pktgen frames %d (other %d): lost %d, reordered %d, duplicates %d, "
                     "bad checksums %d" % (d["pktgen"], d["other"], d["lost"], d["reordered"],
                                           d["duplicates"], d["bad_csum"]))
        if d.get("pps_first_to_last"):
            lines.append("  first to last packet %.3f s: %s" % (
                d["first_to_last"], _rate_str(d["pps_first_to_last"], "pps")))
        lat = d.get("latency")
        if lat:
            lines.append("  one-way latency (sender on this host): min/avg/max %s/%s/%s, "
                         "p50 %s, p99 %s, p99.9 %s" % (
                             _us(lat["min"]), _us(lat["avg"]), _us(lat["max"]),
                             _us(lat["p50"]), _us(lat["p99"]), _us(lat["p999"])))
        if len(d["streams"]) > 1:
            lines.append("  streams: " + "  ".join(
                "%s: %d (lost %d)" % (k, s["received"], s["lost"])
                for k, s in d["streams"].items()))
    if fn == "ping":
        pct = 100.0 * d["lost"] / d["probes"] if d["probes"] else 0.0
        lines.append("  %d probes, %d replies, %d lost (%.1f%%), %d late" % (
            d["probes"], d["replies"], d["lost"], pct, d["late"]))
        r = d.get("rtt")
        if r:
            lines.append("  rtt min/avg/max = %s / %s / %s   p50 %s   p99 %s   p99.9 %s" % (
                _us(r["min"]), _us(r["avg"]), _us(r["max"]), _us(r["p50"]), _us(r["p99"]),
                _us(r["p999"])))
            hist = d["histogram"]
            peak = max(h["count"] for h in hist) or 1
            lines.append("  histogram (log scale):")
            for h in hist:
                bar = "#" * int(round(40.0 * h["count"] / peak))
                lines.append("    %9s - %-9s |%-40s %d" % (_us(h["low_ns"]), _us(h["high_ns"]),
                                                          bar, h["count"]))
    return "\n".join(lines)


# --------------------------------------------------------------------- run
def _validate(args):
    if args.pcap:
        if args.function != "tx":
            raise cli.CliError("--pcap replays a capture: use it with -f tx")
        given = [o for o, v in (("-l/--size", args.size), ("--src-mac", args.src_mac),
                                ("--dst-mac", args.dst_mac), ("--src-ip", args.src_ip),
                                ("--dst-ip", args.dst_ip), ("--src-port", args.src_port),
                                ("--dst-port", args.dst_port),
                                ("--random-flows", args.random_flows)) if v]
        if given:
            raise cli.CliError("--pcap sends the capture's own frames: %s do not apply"
                               % ", ".join(given))
        modes = sum(bool(x) for x in (args.speed is not None, args.replay_rate or args.rate,
                                      args.topspeed))
        if modes > 1:
            raise cli.CliError("choose one of --timing/--speed, --replay-rate (or -R) and "
                               "--topspeed")
        if args.speed is not None and not (args.speed > 0 and args.speed < float("inf")):
            raise cli.CliError("--speed %r: a positive factor (2.0: twice as fast)" % args.speed)
        if args.workers > 1:
            raise cli.CliError("--pcap replays with one worker (-p 1)")
        if not os.path.exists(args.pcap):
            raise cli.CliError("--pcap %s: no such file" % args.pcap)
    elif args.speed is not None or args.replay_rate or args.topspeed or args.timing or \
            args.loop != 1:
        raise cli.CliError("--timing/--speed/--replay-rate/--topspeed/--loop go with --pcap FILE")
    if args.function in ("rx", "pong"):
        given = [o for o, v in (("-l/--size", args.size), ("--src-ip", args.src_ip),
                                ("--dst-ip", args.dst_ip), ("--random-flows", args.random_flows),
                                ("-R/--rate", args.rate)) if v]
        if given:
            raise cli.CliError("-f %s does not send generated frames: %s do not apply" % (
                args.function, ", ".join(given)))
    # parse the addresses now, for one clear line per mistake
    from netmapy.tools import pktgen_engine as pktgen
    for opt, val, fn in (("--src-mac", args.src_mac, pktgen.parse_mac),
                         ("--dst-mac", args.dst_mac, pktgen.parse_mac),
                         ("--src-ip", args.src_ip, pktgen.parse_ip_range),
                         ("--dst-ip", args.dst_ip, pktgen.parse_ip_range),
                         ("--src-port", args.src_port, pktgen.parse_port_range),
                         ("--dst-port", args.dst_port, pktgen.parse_port_range)):
        if val is not None:
            fn(val, opt)


def run(args):
    from netmapy.tools import pktgen_engine as pktgen
    _validate(args)
    cli.terminate_on_sigterm()
    # Ctrl-C (or kill -INT, even when started in the background, where the
    # shell leaves SIGINT ignored) ends the run with the summary
    signal.signal(signal.SIGINT, signal.default_int_handler)
    names, how = worker_ports(port_name(args.interface, args.backend, args.queue),
                              args.workers, args.function)
    if args.function in ("tx", "ping") and not args.pcap:
        _check_mtu(args, names[0], args.size or pktgen.parse_sizes(60))
    plan = Plan(args, names)
    n = len(names)
    rep = Reporter(args)
    counters = [pktgen.Counters() for _ in range(n)]
    # Ctrl-C / SIGTERM ask the workers to stop (they then report "done" and
    # the summary follows).  No exception is raised from the handler: one
    # raised inside Queue.get can leave the queue's lock held (a hang).
    stop_requested = []

    def on_stop(signum, frame):
        stop_requested.append(signum)
        for c in counters:
            c.stop()
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    if n == 1:
        events, go = queue.Queue(), threading.Event()
        workers = [threading.Thread(target=_run_worker, args=(plan, 0, counters[0], events, go),
                                    name="pktgen-worker", daemon=True)]
    else:
        ctx = mp.get_context("fork")
        events, go = ctx.Queue(), ctx.Event()
        workers = [ctx.Process(target=_process_main, args=(plan, k, counters[k], events, go),
                               name="pktgen-worker-%d" % k, daemon=True) for k in range(n)]
    results = [None] * n
    infos = [None] * n
    error = None
    interrupted = False
    pk, by = _which(args.function)
    for w in workers:
        w.start()
    try:
        # every worker opened its port (or one failed)
        ready = 0
        deadline = time.monotonic() + 60
        while ready < n:
            try:
                ev = events.get(timeout=0.2)
            except queue.Empty:
                if time.monotonic() > deadline or not any(w.is_alive() for w in workers):
                    raise cli.CliError("workers did not start (%d of %d ready)" % (ready, n))
                continue
            if ev[0] == "ready":
                infos[ev[1]] = ev[2]
                ready += 1
            elif ev[0] == "error":
                raise cli.CliError(ev[2])
        fn = "replay" if args.pcap else args.function
        backend = infos[0]["backend"]
        desc = ""
        if args.function in ("tx", "ping") and not args.pcap:
            desc = pktgen.Generator(src_mac=args.src_mac or _default_src_mac(args, names[0]),
                                    dst_mac=args.dst_mac or "ff:ff:ff:ff:ff:ff",
                                    src_ip=args.src_ip or "10.0.0.1",
                                    dst_ip=args.dst_ip or "10.0.0.2",
                                    src_port=args.src_port or
                                    ("1024-65535" if args.random_flows else "1234"),
                                    dst_port=args.dst_port or "9", sizes=args.size or 60,
                                    random_flows=args.random_flows or 0).describe()
        elif args.pcap:
            rate = args.replay_rate or args.rate
            desc = "%s at %s" % (args.pcap, "rate %s" % rate if rate else "top speed"
                                 if args.topspeed else "recorded timing x%g" % (args.speed or 1))
        limits = []
        if args.rate and not args.pcap:
            limits.append("rate %s" % args.rate)
        if args.count:
            limits.append("%d packets" % args.count)
        if args.duration:
            limits.append("%g s" % args.duration)
        cpus = [i["cpu"] for i in infos]
        head = "netmapy-pktgen: %s on %s (%s backend), %d worker%s%s [%s]%s%s" % (
            fn, ", ".join(i["port"] for i in infos), backend, n, "" if n == 1 else "s",
            "" if cpus[0] is None else " on CPU " + ",".join(map(str, cpus)), how,
            "; " + desc if desc else "", "; " + ", ".join(limits) if limits else "")
        rep.emit(dict(type="start", function=fn, ports=[i["port"] for i in infos],
                      backend=backend, workers=n, cpus=cpus, split=how, frames=desc or None,
                      rate=str(args.rate) if args.rate else None, count=args.count,
                      duration=args.duration), head)
        if not args.json and args.interval:
            print("%10s %13s %13s   %s" % ("time", "pps", "bps",
                                           "per worker" if n > 1 else ""), flush=True)
        go.set()
        t0 = time.monotonic()
        last_t = t0
        last = [(0, 0, 0, 0)] * n
        done = 0
        next_report = t0 + (args.interval or 3600 * 24 * 365)
        while done < n:
            timeout = max(0.0, min(next_report - time.monotonic(), 0.2))
            try:
                ev = events.get(timeout=timeout)
                if ev[0] == "done":
                    results[ev[1]] = ev[2]
                    done += 1
                elif ev[0] == "error":
                    error = ev[2]
                    results[ev[1]] = {}
                    done += 1
                    for c in counters:
                        c.stop()
                continue
            except queue.Empty:
                pass
            now = time.monotonic()
            if args.function == "rx" and args.count and n > 1:
                if sum(c.snapshot(False)["rx_packets"] for c in counters) >= args.count:
                    for c in counters:
                        c.stop()
            if not any(w.is_alive() for w in workers) and done < n:
                # a worker died without a word (killed)
                for k, w in enumerate(workers):
                    if results[k] is None:
                        results[k] = {}
                error = error or "a worker died (exit code %s)" % ",".join(
                    str(getattr(w, "exitcode", "?")) for w in workers)
                break
            if args.interval and now >= next_report:
                next_report += args.interval
                snaps = [c.snapshot(False) for c in counters]
                dt = now - last_t
                last_t = now
                per = []
                for k, s in enumerate(snaps):
                    p0, b0, l0, ls0 = last[k]
                    per.append(dict(worker=k, packets=s[pk], pps=(s[pk] - p0) / dt,
                                    bps=(s[by] - b0) * 8 / dt,
                                    lat_avg_ns=((s["lat_sum"] - ls0) / (s["lat_n"] - l0))
                                    if s["lat_n"] > l0 else None))
                    last[k] = (s[pk], s[by], s["lat_n"], s["lat_sum"])
                pps = sum(p["pps"] for p in per)
                bps = sum(p["bps"] for p in per)
                obj = dict(type="interval", function=fn, t=round(now - t0, 6), pps=pps, bps=bps,
                           packets=sum(s[pk] for s in snaps), workers=per)
                extra = ""
                lats = [p["lat_avg_ns"] for p in per if p["lat_avg_ns"] is not None]
                lat = sum(lats) / len(lats) if lats else None
                if args.function == "rx":
                    obj["lost"] = sum(s["lost"] for s in snaps)
                    obj["latency_avg_ns"] = lat
                    extra = "  lost %d" % obj["lost"]
                if args.function == "ping":
                    obj["rtt_avg_ns"] = lat
                    extra = "  rtt avg %s" % _us(lat)
                text = "%9.3fs %13s %13s   %s%s" % (
                    now - t0, _rate_str(pps, "pps"), _rate_str(bps, "bps"),
                    "  ".join("w%d %s" % (p["worker"], _rate_str(p["pps"], ""))
                              for p in per) if n > 1 else "", extra)
                rep.emit(obj, text)
    except KeyboardInterrupt:
        interrupted = True
        for c in counters:
            c.stop()
        # the workers finish their batch and report
        end = time.monotonic() + 10
        while any(r is None for r in results) and time.monotonic() < end:
            try:
                ev = events.get(timeout=0.2)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    break
                continue
            except KeyboardInterrupt:
                break
            if ev[0] == "done":
                results[ev[1]] = ev[2]
            elif ev[0] == "error":
                results[ev[1]] = {}
                error = ev[2]
    finally:
        for c in counters:
            c.stop()
        go.set()
        for w in workers:
            w.join(5)
            if isinstance(w, mp.process.BaseProcess) and w.is_alive():
                w.terminate()
                w.join(2)
    interrupted = interrupted or bool(stop_requested)
    if error:
        raise cli.CliError(error)
    if any(i is None for i in infos):
        return cli.EXIT_INTERRUPTED
    snaps = [c.snapshot() for c in counters]
    results = [r or {} for r in results]
    d = summarize(args, results, snaps, time.monotonic() - t0, interrupted)
    d["ports"] = [i["port"] for i in infos]
    rep.emit(d, summary_text(d))
    return 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
