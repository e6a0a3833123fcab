"""nm-offload against XDP_DROP and the bare kernel, in one run: the
scrubbing rate (the highest offered rate of a flood + valid mix at which no
valid packet is lost), what a real UDP server receives, where lost valid
packets were lost, and the CPU each packet costs.

    python -m tools.bench_offload                       # 10 % and 50 % valid, 20 s trials
    python -m tools.bench_offload --valid 10 --seconds 60 --soak 600 --json out.json

The lab: a veth pair with 2 queues in two namespaces.  The sender replays
a capture of the mix in a loop with netmapy-pktgen (xdp backend, TX queue
0, pinned to CPU 0, paced to the trial's rate): flood = UDP to port 53
from spoofed 198.18.0.0/15 sources, valid = UDP to port 53 from the
client's real address.  On the receiving side a real UDP server (udpsink,
C, recvmmsg) counts what the stack delivers, by source; nm-offload takes
RX queue 0 with the xdp backend and the 1,000-rule file (998 rules that
match nothing, then allow the client, deny the rest of port 53), pinned
to CPU 1, as is the server.

Each invocation measures, with the same generator:

* the ceiling: the generator at full speed into an XDP_DROP program on the
  receiver (what any XDP-based receiver could take here);
* the ideal in-kernel scrubber (tools/xdp_scrub_ideal.c): one comparison,
  valid packets passed to the stack, the flood dropped -- the least any
  scrubber that hands valid packets to the stack pays (on veth the stack's
  receive of the valid packets runs on the generator's core);
* for each nm-offload variant (rules in the kernel, rules in user space):
  a zero-loss search over paced trials (netmapy/tools/zeroloss.py) -- the
  scrubbing rate -- and, at each rate tried, the valid packets the server
  got;
* the bare kernel (nothing attached: the stack and the server take
  everything, flood included) at the same rates, for the >= 0.9x
  comparison of valid packets received;
* CPU per offered packet: nm-offload's workers (process time) plus the
  softirq time of both CPUs (the XDP program runs in the sender's softirq
  on veth; reinjection in the worker's), beside XDP_DROP's.

Lost valid packets are split by where: before nm-offload (the generator
sent them, the allow rule never saw them: the queue or its socket ring
overflowed), in reinjection (nm-offload's reinject_failed), in the stack
(reinjected but not delivered to the socket: e.g. backlog drops), and in
the server's socket buffer (UdpRcvbufErrors).
"""

import ipaddress
import json
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time

import click

from netmapy import cli
from netmapy.host.cpus import cpu_ticks
from netmapy.tools.zeroloss import search

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOW = 1000                     # frames per pass of the mix capture
GEN_CPU, MBOX_CPU = 0, 1


# ------------------------------------------------------------------ traffic
def frame(src_mac, dst_mac, src, dst, sport, dport, payload):
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, 17, 0,
                      ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    c = sum(struct.unpack("!10H", hdr))
    c = (c >> 16) + (c & 0xffff)
    hdr = hdr[:10] + struct.pack("!H", ~((c >> 16) + c) & 0xffff) + hdr[12:]
    mac = lambda m: bytes.fromhex(m.replace(":", ""))
    return mac(dst_mac) + mac(src_mac) + b"\x08\x00" + hdr + l4


def rules(nrules, client, linear=False):
    # linear: port ranges (two ports each), which the rule index leaves to
    # the in-order walk -- the cost of 1,000 rules without the index
    port = (lambda i: "%d-%d" % (1000 + 2 * i, 1001 + 2 * i)) if linear else (lambda i: str(1000 + i))
    lines = ["deny udp from 203.%d.%d.0/24 to any port %s" % (i // 250, i % 250, port(i))
             for i in range(nrules - 2)]
    lines += ["allow udp from %s to any port 53" % client, "deny udp to port 53", "default allow"]
    return "\n".join(lines) + "\n"


def write_mix(v, share, path):
    """FLOW frames, `share` % of them valid (spread evenly); returns the
    number of valid frames among the first k, for every k."""
    import netmapy
    rnd = random.Random(53)
    nvalid = FLOW * share // 100
    valid_at = {int(i * FLOW / nvalid) for i in range(nvalid)} if nvalid else set()
    frames, prefix = [], [0]
    for i in range(FLOW):
        if i in valid_at:
            f = frame(v.mac_a, v.mac_b, v.ip_a, v.ip_b, 40000 + i % 1000, 53, b"V" * 18)
        else:
            src = "198.%d.%d.%d" % (18 + rnd.getrandbits(1), rnd.randrange(256), rnd.randrange(1, 255))
            f = frame(v.mac_a, v.mac_b, src, v.ip_b, rnd.randrange(1024, 65536), 53, b"F" * 18)
        frames.append(f)
        prefix.append(prefix[-1] + (i in valid_at))
    with netmapy.open("pcap:" + path, mode="w") as w:
        assert w.send(frames) == FLOW
    return prefix


def generate(v, pcap, rate, seconds):
    """Replay the mix at `rate` pps (None: full speed) for `seconds`;
    returns pktgen's summary."""
    argv = [sys.executable, "-m", "netmapy.tools.pktgen", "-i", v.if_a, "--backend", "xdp",
            "--queue", "0", "--netns", v.ns_a,
            "--pcap", pcap, "--loop", "0", "-d", "%g" % seconds, "--cpus", str(GEN_CPU),
            "--json", "-T", "0"]
    argv += ["--replay-rate", "%d" % rate] if rate else ["--topspeed"]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO), timeout=seconds + 60)
    if out.returncode != 0:
        raise cli.CliError("the generator failed: %s" % out.stderr.strip()[-300:])
    return [json.loads(l) for l in out.stdout.splitlines() if '"summary"' in l][-1]


# ----------------------------------------------------------- host readings
def softnet_dropped():
    with open("/proc/net/softnet_stat") as f:
        return sum(int(l.split()[1], 16) for l in f if l.strip())


def ns_udp_rcvbuf_errors(ns):
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout
    head, vals = [l.split() for l in text.splitlines() if l.startswith("Udp:")][:2]
    return int(vals[head.index("RcvbufErrors")])


def rx_packets(ns, ifname):
    out = subprocess.run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0]["stats64"]["rx"]["packets"]


class Sink:
    """udpsink in the receiving namespace, pinned to the middlebox CPU."""

    binary = None

    def __init__(self, v):
        if Sink.binary is None:
            d = tempfile.mkdtemp(prefix="nmbench-udpsink-")
            Sink.binary = os.path.join(d, "udpsink")
            subprocess.run(["cc", "-O2", "-o", Sink.binary, os.path.join(REPO, "tools", "udpsink.c")],
                           check=True)
        self.p = subprocess.Popen(["ip", "netns", "exec", v.ns_b, "taskset", "-c", str(MBOX_CPU),
                                   Sink.binary, v.ip_b, "53", v.ip_a],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if "ready" not in line:
            raise cli.CliError("udpsink did not start: %s" % self.p.stderr.read().strip())

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=30)
        return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------- variants
class Offload:
    """nm-offload on queue 0 of the receiver, rules in the kernel or not."""

    def __init__(self, v, rules_path, where):
        self.v, self.rules_path, self.where = v, rules_path, where
        self.name = "nm-offload (rules in %s)" % ("the kernel" if where == "kernel" else
                                                   "user space")

    def start(self):
        import psutil
        v = self.v
        self.p = subprocess.Popen(
            [sys.executable, "-m", "middlebox.offload", v.if_b, "0", "--netns", v.ns_b,
             "--rules", self.rules_path, "--rules-in", self.where, "--backend", "xdp",
             "--cpus", str(MBOX_CPU), "--stats-json", "--interval", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
            env=dict(os.environ, PYTHONPATH=REPO))
        seen = []
        while True:
            line = self.p.stderr.readline()
            seen.append(line)
            if not line:
                self.p.wait()
                raise cli.CliError("nm-offload did not start (exit %s): %s" % (
                    self.p.returncode, "".join(seen).strip()[-300:] or "no output"))
            if ": running," in line:
                break
        self.kids = psutil.Process(self.p.pid).children(recursive=True)

    def cpu_seconds(self):
        tot = 0.0
        for k in self.kids:
            try:
                tot += sum(k.cpu_times()[:2])
            except Exception:
                pass
        return tot

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=60)
        lines = [l for l in out.splitlines() if l.startswith('{"summary"')]
        if self.p.returncode != 0 or not lines:
            raise cli.CliError("nm-offload failed: %s" % err.strip()[-300:])
        return json.loads(lines[0])["summary"]


def trial(v, pcap, prefix, rate, seconds, mbox=None):
    """One trial; mbox None: the bare kernel."""
    rcv0 = ns_udp_rcvbuf_errors(v.ns_b)
    sink = Sink(v)
    try:
        if mbox:
            mbox.start()
        try:
            c0, sn0 = cpu_ticks(), softnet_dropped()
            w0 = mbox.cpu_seconds() if mbox else 0.0
            g = generate(v, pcap, rate, seconds)
            time.sleep(0.5)                           # let the last packets land
            c1, sn1 = cpu_ticks(), softnet_dropped()
            w1 = mbox.cpu_seconds() if mbox else 0.0
        finally:
            summ = mbox.stop() if mbox else None
    finally:
        got = sink.stop()
    sent = g["packets"]
    valid_sent = (sent // FLOW) * prefix[FLOW] + prefix[sent % FLOW]
    hz = os.sysconf("SC_CLK_TCK")
    r = dict(offered_pps=sent / max(1e-9, g["seconds"]), sent=sent, valid_sent=valid_sent,
             valid_got=got["valid"], other_got=got["other"],
             lost=valid_sent - got["valid"],
             server_overflow=ns_udp_rcvbuf_errors(v.ns_b) - rcv0,
             softnet_drops=sn1 - sn0,
             softirq_ns_per_packet=1e9 * sum(c1[c][1] - c0[c][1] for c in c1) / hz / max(1, sent),
             worker_ns_per_packet=1e9 * (w1 - w0) / max(1, sent))
    if summ:
        allow = [x for x in summ["rules"] if x["text"].startswith("allow udp from %s " % v.ip_a)]
        seen = allow[0]["packets"] if allow else 0
        r.update(offload_rx=summ["rx"], reinjected=summ["reinjected"],
                 reinject_failed=summ["reinject_failed"], dropped=summ["dropped"],
                 lost_before=valid_sent - seen,
                 lost_in_reinjection=min(summ["reinject_failed"], seen),
                 lost_in_stack=max(0, seen - min(summ["reinject_failed"], seen) - got["valid"]
                                   - (ns_udp_rcvbuf_errors(v.ns_b) - rcv0)))
    return r


def ideal_object(v):
    """tools/xdp_scrub_ideal.c for this lab's client address."""
    import ipaddress as ip
    d = tempfile.mkdtemp(prefix="nmbench-ideal-")
    obj = os.path.join(d, "ideal.o")
    subprocess.run(["clang", "-O2", "-target", "bpf", "-I",
                    "/usr/include/%s-linux-gnu" % os.uname().machine,
                    "-DCLIENT_IP=%#x" % int(ip.ip_address(v.ip_a)), "-c",
                    os.path.join(REPO, "tools", "xdp_scrub_ideal.c"), "-o", obj], check=True)
    return obj


def ideal_scrubber(v, pcap, prefix, seconds):
    """The mix at full speed through the least an in-kernel scrubber can
    do (tools/xdp_scrub_ideal.c): one comparison, valid packets to the
    stack, the flood dropped."""
    subprocess.run(["ip", "-n", v.ns_b, "link", "set", "dev", v.if_b, "xdpdrv", "obj",
                    ideal_object(v), "sec", "xdp"], check=True)
    try:
        return trial(v, pcap, prefix, None, seconds, None)
    finally:
        subprocess.run(["ip", "-n", v.ns_b, "link", "set", "dev", v.if_b, "xdpdrv", "off"])


def xdp_drop_rate(v, pcap, seconds):
    """The generator at full speed into an XDP_DROP program on the
    receiver: packets per second XDP saw, and the softirq CPU per packet."""
    from netmapy.tools.netbench import drop_object
    obj = drop_object()
    subprocess.run(["ip", "-n", v.ns_b, "link", "set", "dev", v.if_b, "xdpdrv", "obj", obj,
                    "sec", "xdp_drop"], check=True)
    try:
        rx0, c0 = rx_packets(v.ns_b, v.if_b), cpu_ticks()
        g = generate(v, pcap, None, seconds)
        time.sleep(0.3)
        rx1, c1 = rx_packets(v.ns_b, v.if_b), cpu_ticks()
    finally:
        subprocess.run(["ip", "-n", v.ns_b, "link", "set", "dev", v.if_b, "xdpdrv", "off"])
    hz = os.sysconf("SC_CLK_TCK")
    return dict(offered_pps=g["packets"] / g["seconds"], received_pps=(rx1 - rx0) / g["seconds"],
                softirq_ns_per_packet=1e9 * sum(c1[c][1] - c0[c][1] for c in c1) / hz /
                max(1, rx1 - rx0))


# ---------------------------------------------------------------- the run
def line(r):
    s = "  offered %9.0f pps: valid %d/%d received" % (r["offered_pps"], r["valid_got"],
                                                      r["valid_sent"])
    if "offload_rx" in r:
        s += " (lost: %d before nm-offload, %d in reinjection, %d in the stack, %d in the " \
             "server's socket)" % (r["lost_before"], r["lost_in_reinjection"], r["lost_in_stack"],
                                   r["server_overflow"])
        s += "; nm-offload rx %d, reinjected %d, dropped %d, failed %d; CPU/packet: worker " \
             "%.0f ns + softirq %.0f ns" % (r["offload_rx"], r["reinjected"], r["dropped"],
                                            r["reinject_failed"], r["worker_ns_per_packet"],
                                            r["softirq_ns_per_packet"])
    else:
        s += " (server socket overflow %d, softirq %.0f ns/packet)" % (
            r["server_overflow"], r["softirq_ns_per_packet"])
    return s


def run_share(v, share, args, rules_path):
    pcap = os.path.join(args.tmp, "mix%d.pcap" % share)
    prefix = write_mix(v, share, pcap)
    print("== %d %% valid (%d of every %d frames), %g s trials" % (share, prefix[FLOW], FLOW,
                                                                   args.seconds), flush=True)
    ceil = xdp_drop_rate(v, pcap, args.seconds)
    print("ceiling: the generator at full speed offers %.0f pps; XDP_DROP on the receiver "
          "takes %.0f pps (softirq %.0f ns/packet)" % (ceil["offered_pps"], ceil["received_pps"],
                                                       ceil["softirq_ns_per_packet"]), flush=True)
    ideal = ideal_scrubber(v, pcap, prefix, args.seconds)
    print("ideal in-kernel scrubber (one comparison, valid packets to the stack) at full speed:"
          " offered %.0f pps, valid %d/%d received, softirq %.0f ns/packet" % (
              ideal["offered_pps"], ideal["valid_got"], ideal["valid_sent"],
              ideal["softirq_ns_per_packet"]), flush=True)
    out = dict(share=share, xdp_drop=ceil, ideal=ideal, variants={}, kernel=[])
    top = ceil["received_pps"]
    for where in args.variants:
        mb = Offload(v, rules_path, where)
        print(mb.name + ":", flush=True)
        best, trials = search(lambda rate: trial(v, pcap, prefix, rate, args.seconds, mb), top,
                              resolution=args.resolution, max_trials=args.trials,
                              report=lambda r: print(line(r), flush=True))
        print("  scrubbing rate: %.0f pps = %.2fx XDP_DROP's %.0f pps, %.2fx the ideal "
              "scrubber's %.0f pps" % (best, best / top if top else 0, top,
                                       best / ideal["offered_pps"], ideal["offered_pps"]),
              flush=True)
        out["variants"][where] = dict(scrubbing_rate=best, ratio_xdp_drop=best / top if top else 0,
                                      ratio_ideal=best / ideal["offered_pps"], trials=trials)
    # the bare kernel at the rates the variants reached (and below)
    rates = sorted({round(x["scrubbing_rate"] * f) for x in out["variants"].values()
                    for f in (0.25, 0.5, 1.0) if x["scrubbing_rate"] > 0})
    print("bare kernel (no middlebox; the server also gets the flood):", flush=True)
    for rate in rates:
        r = trial(v, pcap, prefix, rate, args.seconds, None)
        r["requested_pps"] = rate
        out["kernel"].append(r)
        print(line(r), flush=True)
    # valid received through nm-offload vs the bare kernel at about the same rate
    for where, x in out["variants"].items():
        for t in x["trials"]:
            if not out["kernel"] or t["offered_pps"] > x["scrubbing_rate"] * 1.001:
                continue
            k = min(out["kernel"], key=lambda r: abs(r["offered_pps"] - t["offered_pps"]))
            t["vs_kernel"] = (t["valid_got"] / t["valid_sent"]) / max(1e-9, k["valid_got"] /
                                                                      max(1, k["valid_sent"]))
            print("  %s at %.0f pps: valid delivered %.3fx the bare kernel's (at %.0f pps)" % (
                where, t["offered_pps"], t["vs_kernel"], k["offered_pps"]), flush=True)
    return out


def _percentages(ctx, param, value):
    try:
        shares = [int(x) for x in value.split(",")]
    except ValueError:
        raise click.BadParameter("%r: percentages such as 10,50" % value)
    if any(not 0 < s <= 100 for s in shares):
        raise click.BadParameter("%r: percentages between 1 and 100" % value)
    return shares


def _variants(ctx, param, value):
    out = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in out if x not in ("kernel", "user")]
    if bad or not out:
        raise click.BadParameter("kernel or user, not %r" % (bad[0] if bad else value))
    return out


@cli.command("bench_offload", epilog=__doc__.split("\n\n", 1)[1])
@click.option("--valid", default="10,50", show_default=True, callback=_percentages,
              metavar="PCT,...", help="valid shares in %")
@click.option("--seconds", type=cli.SECONDS, default=20, show_default=True, help="trial length")
@click.option("--rules", type=cli.IntRange(min=1), default=1000, show_default=True,
              help="rules in the file")
@click.option("--linear", is_flag=True,
              help="write the non-matching rules as port ranges (the in-order walk)")
@click.option("--variants", default="kernel,user", show_default=True, callback=_variants,
              metavar="kernel,user", help="nm-offload variants")
@click.option("--trials", type=cli.IntRange(min=1), default=7, show_default=True,
              help="trials per search")
@click.option("--resolution", type=click.FloatRange(0, 1, min_open=True), default=0.05,
              show_default=True,
              help="stop searching when the interval is below this share of the ceiling")
@click.option("--soak", type=cli.SECONDS, default=0, metavar="SEC",
              help="then run nm-offload (rules in the kernel) this long at its scrubbing rate "
                   "and report every valid packet's fate")
@click.option("--json", metavar="FILE", type=click.Path(dir_okay=False),
              help="also write the results as JSON")
@cli.common_options(version=False)
@cli.pass_args
def command(args):
    """nm-offload against XDP_DROP and the bare kernel, in one run."""
    return run(args)


def run(args):
    from netmapy.tools.lab import VethPair
    shares = args.valid
    args.tmp = tempfile.mkdtemp(prefix="nmbench-offload-")
    results = []
    with VethPair(queues=2) as v:
        rules_path = os.path.join(args.tmp, "scrub.rules")
        with open(rules_path, "w") as f:
            f.write(rules(args.rules, v.ip_a, args.linear))
        for share in shares:
            results.append(run_share(v, share, args, rules_path))
        soak = None
        if args.soak:
            pcap = os.path.join(args.tmp, "mix%d.pcap" % shares[0])
            prefix = write_mix(v, shares[0], pcap)
            rate = results[0]["variants"].get("kernel", {}).get("scrubbing_rate") or \
                results[0]["xdp_drop"]["received_pps"]
            print("soak: %g s at %.0f pps, %d %% valid, rules in the kernel" % (
                args.soak, rate, shares[0]), flush=True)
            soak = trial(v, pcap, prefix, rate, args.soak, Offload(v, rules_path, "kernel"))
            print(line(soak), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results, soak=soak, seconds=args.seconds, rules=args.rules),
                      f, indent=1)
    return 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
