"""nm-offload: scrub a flood on one RX queue and give the valid packets back
to the kernel (CloudFlare's single-RX-queue offload, end to end).

    nm-offload eth3 4 --rules dns.rules
    nm-offload eth3 4 --steer 'udp dst port 53' --drop 'udp[8:2] = 0xffff'
    nm-offload eth3 4 5 --bpf p0f.bpf --ntuple 'udp4 dst-port 53'
    nm-offload eth3 4 --rules dns.rules --dry-run        # print the plan, change nothing

For each QUEUE:

1. isolate it on the NIC when the NIC can (RSS indirection weight 0 for the
   queue, and with --ntuple a flow-steering rule sending the attacked flow
   to it) -- the ethtool steps, journaled and undone on exit; a NIC that
   cannot (veth) gets one line saying so, and the xdp backend's software
   steering (--steer) selects the traffic instead;
2. bypass only that queue (``xdp:IF~QUEUE``, or the netmap module's
   ``netmap:IF~QUEUE`` where it exists): everything else stays with the kernel;
3. run the filters (rule files, tcpdump expressions, classic BPF) in C on
   every packet: what they reject is dropped and counted, what they accept
   is reinjected into the host stack as if it had just arrived on IF;
4. on SIGINT/SIGTERM, drain, remove the XDP program and undo the NIC changes.
"""

import argparse
import json
import os
import sys

import netmapy
from netmapy import cli, iface, netns as nsmod
from .bridge import add_filter_args, add_stats_args, filter_specs, netmask_for
from .supervisor import Supervisor, numa_cpus


def build_parser():
    p = argparse.ArgumentParser(
        prog="nm-offload",
        description="Scrub a flood on RX queue(s) of an interface and reinject the valid "
                    "packets into the host stack.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("ifname", metavar="IFACE")
    p.add_argument("queues", metavar="QUEUE", type=int, nargs="+",
                   help="RX queue(s) to take over, one worker each")
    p.add_argument("--steer", metavar="EXPR",
                   help="only packets matching this tcpdump expression leave the kernel "
                        "(software flow steering in the XDP program)")
    p.add_argument("--ntuple", metavar="SPEC",
                   help="also ask the NIC to steer this flow to the queue, e.g. "
                        "'udp4 dst-port 53' (ethtool -N syntax; skipped with a message "
                        "when the NIC cannot)")
    p.add_argument("--no-rss", dest="rss", action="store_false",
                   help="leave the RSS indirection table alone")
    p.add_argument("--backend", default="netmap",
                   help="netmap (the module where present, else xdp) or xdp")
    p.add_argument("--netns", help="the interface is in this network namespace")
    p.add_argument("--cpus", help="CPUs for the workers (default: NUMA-local first)")
    p.add_argument("--seconds", type=float, default=0, help="stop after SECONDS")
    p.add_argument("--dry-run", action="store_true",
                   help="print the NIC commands and the plan; change nothing")
    add_filter_args(p)
    add_stats_args(p)
    cli.add_common(p)
    return p


def parse_ntuple(spec):
    toks = spec.split()
    if not toks:
        raise cli.CliError("--ntuple: empty flow spec")
    kw = {"flow_type": toks[0]}
    keys = {"src-ip": "src", "dst-ip": "dst", "src-port": "sport", "dst-port": "dport"}
    it = iter(toks[1:])
    for k in it:
        if k not in keys:
            raise cli.CliError("--ntuple: unknown field %r (use src-ip, dst-ip, src-port, dst-port)" % k)
        try:
            v = next(it)
        except StopIteration:
            raise cli.CliError("--ntuple: %s needs a value" % k)
        kw[keys[k]] = int(v) if k.endswith("port") else v
    return kw


class NicPlan:
    """The NIC steps for the queues: applied in setup(), undone in
    teardown(); each one the NIC cannot do is reported and skipped."""

    def __init__(self, args, out=sys.stderr):
        from .nic import Nic
        self.args = args
        self.out = out
        self.nic = Nic(args.ifname, netns=args.netns, dry_run=args.dry_run)
        self.done = []

    def _try(self, what, fn):
        from .nic import NicUnsupported
        try:
            cmd = fn()
            self.done.append(cmd)
            print("nm-offload: %s: %s" % (what, cmd), file=self.out)
        except NicUnsupported as e:
            print("nm-offload: %s skipped: %s" % (what, cli.one_line(e)), file=self.out)

    def setup(self):
        if hasattr(self.nic, "claim") and not self.args.dry_run:
            self.nic.claim()
        if self.args.rss:
            for q in self.args.queues:
                self._try("isolating queue %d from RSS" % q, lambda q=q: self.nic.isolate_queue(q))
        if self.args.ntuple:
            kw = parse_ntuple(self.args.ntuple)
            for q in self.args.queues:
                self._try("steering %s to queue %d" % (self.args.ntuple, q),
                          lambda q=q: self.nic.add_ntuple(queue=q, **kw))

    def teardown(self):
        self.nic.restore()
        self.nic.close()


def plan(args):
    with nsmod.netns(args.netns):
        info = iface.require(args.ifname)
    for q in args.queues:
        if q >= info.num_rx_queues:
            raise netmapy.QueueOutOfRange(args.ifname, q, info.num_rx_queues)
    if len(set(args.queues)) != len(args.queues):
        raise cli.CliError("a queue is listed twice")
    cpus = [int(x) for x in args.cpus.split(",")] if args.cpus else numa_cpus(args.ifname)
    specs = []
    for k, q in enumerate(args.queues):
        kw = {"host": True}
        if args.steer:
            kw["steer"] = args.steer
            if args.netmask is not None:
                kw["netmask"] = args.netmask
        specs.append(dict(kind="offload", queue=q, cpu=cpus[k % len(cpus)],
                          ports=["%s:%s~%d" % (args.backend, args.ifname, q)],
                          netns=args.netns, open_kw=kw, tx_ring="host",
                          dir_names=("q%d>host" % q, "-")))
    return specs


def run(args, out=sys.stdout):
    netmask = netmask_for(args, args.ifname)
    filters, names, descs = filter_specs(args, [netmask])
    specs = plan(args)
    if args.steer:
        from netmapy.xdpprog import compile_filter, steer_program
        # a bad expression is one line, now
        steer_program(compile_filter(args.steer, netmask=netmask,
                                     netmask_from=args.ifname if netmask is None else None),
                      source=repr(args.steer))
    nicplan = NicPlan(args)
    if args.dry_run:
        nicplan.setup()
        for s in specs:
            print("nm-offload: would open %s (%s) with %d filter stage(s), reinjecting what "
                  "passes into %s's stack, on CPU %d" % (
                      s["ports"][0], ", ".join("%s=%r" % kv for kv in s["open_kw"].items()),
                      len(filters), args.ifname, s["cpu"]), file=sys.stderr)
        nicplan.teardown()
        return dict(dry_run=True, commands=list(nicplan.done))
    for w, s in enumerate(specs):
        s["filters"] = filters
        s["netmasks"] = [netmask]
        if args.sample_drops:
            s["sample"] = "%s.w%d.pcap" % (args.sample_drops, w)
            s["sample_max"] = args.sample_max
    print("nm-offload: %s queue(s) %s, %d worker(s)" % (
        args.ifname, ",".join(map(str, args.queues)), len(specs)), file=sys.stderr)
    sup = Supervisor("nm-offload", specs, locks=[(args.netns, args.ifname)], rule_names=names,
                     rule_descriptions=descs, setup=nicplan.setup, teardown=nicplan.teardown,
                     out=out, stats_json=args.stats_json, prometheus=args.prometheus)
    tot = sup.run(seconds=args.seconds, interval=args.interval)
    d = tot["directions"][0]
    summary = dict(ifname=args.ifname, queues=args.queues, rx=d["rx"], reinjected=d["fwd"],
                   dropped=d["drop"], ratelimited=d["ratelimited"], errors=d["errors"],
                   rules=tot["rules"], restarts=tot["restarts"])
    if args.stats_json:
        print(json.dumps(dict(summary=summary)), file=out, flush=True)
    else:
        print("nm-offload: received %d, reinjected %d, dropped %d (%d rate-limited), "
              "%d restart(s)" % (d["rx"], d["fwd"], d["drop"], d["ratelimited"],
                                 tot["restarts"]), file=sys.stderr)
    return summary


def main(argv=None):
    return cli.run("nm-offload", build_parser, lambda a: (run(a), 0)[1], argv)


if __name__ == "__main__":
    sys.exit(main())
