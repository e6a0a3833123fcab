"""netmapy-bridge: forward between two interfaces, both ways, with one
pinned worker process per queue pair.

    netmapy-bridge eth6 eth7                       # best backend, all queues
    netmapy-bridge a0 b0 --netns mbox --backend packet --seconds 10
    netmapy-bridge eth6 eth7 --rules scrub.rules --drop 'udp port 19'
    netmapy-bridge eth6                            # NIC <-> host stack of eth6

Worker q owns queue q of both interfaces and forwards in both directions
(so each (interface, queue) has a single owner, as AF_XDP needs), zero copy
when the two ports share buffer memory.  Filters (rule files, tcpdump
expressions, classic BPF) run in C per batch.  Counters per worker,
direction and rule are sampled from shared memory every --interval seconds:
a live table on a terminal, JSON lines with --stats-json, a Prometheus
endpoint with --prometheus HOST:PORT.  SIGINT/SIGTERM stop the workers,
which forward what they hold before exiting.
"""

import argparse
import json
import os
import sys

import netmapy
from netmapy import cli
from .supervisor import Supervisor, numa_cpus
from .worker import build_filter


def add_netmask_arg(g):
    """--netmask, for every command that compiles tcpdump expressions."""
    g.add_argument("--netmask", metavar="MASK",
                   help="IPv4 netmask for expressions that need one (ip broadcast), e.g. "
                        "255.255.255.0 or 24 (default: the IPv4 netmask of the interface "
                        "the packets arrive on, when it has an address)")


def netmask_for(args, port):
    """The netmask for expressions run on packets received from `port` (an
    interface or a port name): --netmask when given (checked here), else
    the IPv4 netmask of the interface behind it, read in --netns; None when
    there is none (pipes, capture files, an interface without an address)."""
    from netmapy import cbpf, iface, netns as nsmod
    from netmapy.names import parse_name
    if getattr(args, "netmask", None) is not None:
        try:
            cbpf.parse_netmask(args.netmask)
        except cbpf.CbpfError as e:
            raise cli.CliError("--netmask: %s" % e) from None
        return args.netmask
    if not port:
        return None
    ifname = port
    if ":" in port:
        try:
            name = parse_name(port)
        except ValueError:
            return None
        if name.backend not in ("netmap", "xdp", "packet"):
            return None
        ifname = name.ifname
    else:
        ifname = port.rstrip("^*")
    try:
        with nsmod.netns(getattr(args, "netns", None)):
            return iface.ipv4_netmask(ifname)
    except (netmapy.NetmapyError, OSError):
        return None             # opening the port reports a missing interface


def add_filter_args(p):
    g = p.add_argument_group("filters (all run in C; a packet passes when every stage lets it)")
    g.add_argument("--rules", metavar="FILE", action="append", default=[],
                   help="rule file: allow/deny by prefix, protocol, port; per-source rate "
                        "limits (see middlebox/rules.py)")
    g.add_argument("--filter", metavar="EXPR", action="append", default=[],
                   help="tcpdump expression packets must match to pass")
    g.add_argument("--drop", metavar="EXPR", action="append", default=[],
                   help="tcpdump expression whose matches are dropped")
    g.add_argument("--bpf", metavar="FILE", action="append", default=[],
                   help="classic BPF (tcpdump -ddd text, or bpftools' comma form) whose "
                        "matches are dropped")
    add_netmask_arg(g)
    g.add_argument("--python", metavar="MODULE:FUNC",
                   help="a Python function deciding per packet: FUNC(memoryview) -> True to "
                        "forward, False to drop (it may rewrite the packet in place); "
                        "MODULE may be a file.py")
    g.add_argument("--sample-drops", metavar="PREFIX",
                   help="write dropped packets to PREFIX.wN.pcap (one file per worker)")
    g.add_argument("--sample-max", type=int, default=10000,
                   help="at most this many sampled packets per worker (default %(default)s)")


def add_stats_args(p):
    g = p.add_argument_group("counters")
    g.add_argument("--interval", type=float, default=1.0,
                   help="seconds between counter reports (0: none)")
    g.add_argument("--stats-json", action="store_true", help="counters as JSON lines")
    g.add_argument("--prometheus", metavar="[HOST:]PORT",
                   help="serve Prometheus text metrics at http://HOST:PORT/metrics")


def filter_specs(args, netmasks=(None,)):
    """The filter stages from the command line, validated (compiled once
    here, with each netmask the workers will use, so a bad expression is
    one error line before any worker starts)."""
    specs = []
    from middlebox import rules as _rules
    for path in args.rules:
        rs = _rules.load(path)
        with open(path) as f:
            specs.append(("rules", f.read(), path))
    for expr in args.filter:
        specs.append(("expr", expr, False))
    for expr in args.drop:
        specs.append(("expr", expr, True))
    for path in args.bpf:
        try:
            with open(path) as f:
                specs.append(("bpf", f.read(), True, path))
        except OSError as e:
            raise cli.CliError("%s: cannot read the BPF file: %s" % (path, e.strerror))
    for nm in dict.fromkeys(netmasks):
        f = build_filter(specs, netmask=nm)
    return specs, f.names, f.descriptions


def build_parser():
    p = argparse.ArgumentParser(
        prog="netmapy-bridge",
        description="Forward every packet between two interfaces, both ways, through "
                    "pinned per-queue netmapy workers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  netmapy-bridge eth6 eth7\n"
               "  netmapy-bridge a0 b0 --netns mbox --backend packet --seconds 10\n"
               "  netmapy-bridge eth6 eth7 --rules scrub.rules --drop 'udp port 19'\n"
               "  netmapy-bridge eth6        (NIC <-> host stack; needs host rings)\n")
    p.add_argument("if_a", metavar="IF_A", help="first interface (or a full port name)")
    p.add_argument("if_b", metavar="IF_B", nargs="?",
                   help="second interface; omit it to bridge IF_A's NIC and host stack")
    p.add_argument("--backend", default="netmap",
                   help="netmap (the best available: netmap, else xdp, else packet), xdp or "
                        "packet (default: %(default)s)")
    p.add_argument("--queues", type=int, default=0,
                   help="queue pairs, one worker each (default: the interfaces' RX queue "
                        "count, at most the CPUs)")
    p.add_argument("--cpus", help="CPUs for the workers, e.g. 2,3 (default: NUMA-local first)")
    p.add_argument("--netns", help="the interfaces are in this network namespace")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after SECONDS (default: until Ctrl-C or SIGTERM)")
    p.add_argument("--no-promisc", dest="promisc", action="store_false",
                   help="do not put the interfaces in promiscuous mode")
    p.add_argument("--keep-offloads", action="store_true",
                   help="leave GRO/LRO on (by default they are turned off while bridging, "
                        "since merged super-frames cannot be forwarded as received, and "
                        "restored on exit -- also by the next start after a crash)")
    add_filter_args(p)
    add_stats_args(p)
    cli.add_common(p)
    return p


def _queues(args, names):
    from netmapy import iface, netns as nsmod
    counts = []
    with nsmod.netns(args.netns):
        for n in names:
            ifname = n.split(":", 1)[1] if ":" in n else n
            ifname = ifname.rstrip("^*")
            counts.append(iface.require(ifname).num_rx_queues)
    return counts


def plan(args):
    """The worker specs for the command line."""
    a, b = args.if_a, args.if_b
    host = b is None
    backend = args.backend
    counts = _queues(args, [a] if host else [a, b])
    nq = args.queues or min(counts + [len(os.sched_getaffinity(0))])
    if nq < 1 or nq > min(counts):
        raise cli.CliError("--queues %d: the interfaces have %s RX queues" % (
            nq, " and ".join(map(str, counts))))
    if args.cpus:
        cpus = [int(x) for x in args.cpus.split(",")]
        bad = [c for c in cpus if c not in os.sched_getaffinity(0)]
        if bad:
            raise cli.CliError("--cpus: CPU %d is not available to this process" % bad[0])
    else:
        cpus = numa_cpus(a.split(":", 1)[-1])
    specs = []
    for q in range(nq):
        if nq == 1:
            pa = a if ":" in a else "%s:%s" % (backend, a)
            pb = (pa + "^") if host else (b if ":" in b else "%s:%s" % (backend, b))
        else:
            pa = "%s:%s-%d" % (backend, a, q)
            pb = ("%s:%s^%d" % (backend, a, q)) if host else "%s:%s-%d" % (backend, b, q)
        specs.append(dict(kind="bridge", queue=q, cpu=cpus[q % len(cpus)], ports=[pa, pb],
                          netns=args.netns, open_kw={"promisc": True} if args.promisc else {},
                          dir_names=("%s>%s" % (a, b or "host"), "%s>%s" % (b or "host", a))))
    return specs


def run(args, out=sys.stdout):
    netmasks = [netmask_for(args, args.if_a), netmask_for(args, args.if_b or args.if_a)]
    filters, names, descs = filter_specs(args, netmasks)
    specs = plan(args)
    if args.python:
        from .worker import load_function
        load_function(args.python)              # fail here, in one line, if it is wrong
        if filters:
            raise cli.CliError("--python replaces the compiled filters: use one or the other")
    for w, s in enumerate(specs):
        s["filters"] = filters
        s["netmasks"] = netmasks
        s["python"] = args.python
        if args.sample_drops:
            s["sample"] = "%s.w%d.pcap" % (args.sample_drops, w)
            s["sample_max"] = args.sample_max
    # open the ports once here, so a bad interface is one error line now
    with netmapy.open(specs[0]["ports"][0], netns=args.netns) as p0:
        backend = p0.backend
    if backend != "packet":
        # AF_XDP and netmap see every frame the NIC accepts: promiscuity is an
        # interface setting there (preflight reports it), not a socket option
        for s in specs:
            s["open_kw"].pop("promisc", None)
    print("netmapy-bridge: %s <-> %s, %d worker(s), %s backend, CPUs %s" % (
        args.if_a, args.if_b or "host stack", len(specs), backend,
        ",".join(str(s["cpu"]) for s in specs)), file=sys.stderr)
    locks = [(args.netns, args.if_a)] + ([(args.netns, args.if_b)] if args.if_b else [])
    nics = []

    def setup():
        """GRO/LRO off on both interfaces (journaled: a crashed run is
        repaired by the next start, which constructs the Nic)."""
        from .nic import Nic, NicError
        for ifname in filter(None, (args.if_a, args.if_b)):
            nic = Nic(ifname.split(":", 1)[-1].split("-")[0].rstrip("^*"), netns=args.netns)
            for r in nic.repaired:
                print("netmapy-bridge: repaired what a crashed run left on %s: %s" % (
                    ifname, r), file=sys.stderr)
            nics.append(nic)
            if args.keep_offloads:
                continue
            feats = nic.features()
            off = {}
            for n in ("gro", "lro"):
                try:
                    members = nic.resolve_feature(n)
                except NicError:
                    continue
                if any(feats.get(m, {}).get("active") and not feats.get(m, {}).get("fixed")
                       for m in members):
                    off[n] = False
            if off:
                try:
                    print("netmapy-bridge: %s" % nic.set_features(off), file=sys.stderr)
                except NicError as e:
                    print("netmapy-bridge: could not turn off %s on %s: %s" % (
                        "/".join(off), ifname, cli.one_line(e)), file=sys.stderr)

    def teardown():
        for nic in reversed(nics):
            nic.restore()
            nic.close()

    sup = Supervisor("netmapy-bridge", specs, locks=locks, rule_names=names,
                     rule_descriptions=descs, out=out, stats_json=args.stats_json,
                     prometheus=args.prometheus, setup=setup, teardown=teardown)
    tot = sup.run(seconds=args.seconds, interval=args.interval)
    d = tot["directions"]
    summary = dict(a=args.if_a, b=args.if_b or "host", a_to_b=d[0], b_to_a=d[1],
                   rules=tot["rules"], restarts=tot["restarts"], workers=len(specs))
    if args.stats_json:
        print(json.dumps(dict(summary=summary)), file=out, flush=True)
    else:
        print("netmapy-bridge: %s->%s forwarded %d, dropped %d; %s->%s forwarded %d, dropped %d; "
              "%d restart(s)" % (args.if_a, args.if_b or "host", d[0]["fwd"], d[0]["drop"],
                                 args.if_b or "host", args.if_a, d[1]["fwd"], d[1]["drop"],
                                 tot["restarts"]), file=sys.stderr)
    return summary


def main(argv=None):
    return cli.run("netmapy-bridge", build_parser, lambda a: (run(a), 0)[1], argv)


if __name__ == "__main__":
    sys.exit(main())
