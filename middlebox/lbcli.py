"""netmapy-lb: read one port and spread its packets over netmapy pipes by a
symmetric flow hash (netmap's lb).

    netmapy-lb -i packet:eth0 -p scrub:4              # pipe:scrub{0..3
    netmapy-lb -i xdp:eth0~2 -p scrub:2 -p capture:1  # each group gets a copy
    netmapy-lb -i pipe:in}0 -p w:2 --priority 'udp port 5060' --lossy

Group G with N pipes: the balancer opens the master ends ``pipe:G{0`` ..
``pipe:G{N-1`` (and ``pipe:G{1000+k`` for --priority), consumers open
``pipe:G}k``.  Both directions of a flow land on the same pipe.  Short
bursts wait in --extra-bufs buffers; when those run out the balancer holds
its input back (default, nothing lost here, counted as "blocked") or, with
--lossy, drops the oldest packet of the longest backlog (counted).
"""

import argparse
import json
import sys
import threading
import time

import netmapy
from netmapy import cli
from .bridge import add_netmask_arg, netmask_for


def build_parser():
    p = argparse.ArgumentParser(
        prog="netmapy-lb", description="Spread one port's packets over pipes by flow hash.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("-i", "--input", required=True, metavar="PORT", help="the port to read")
    p.add_argument("-p", "--pipes", action="append", required=True, metavar="GROUP:N",
                   help="a group of N pipes (repeat for more groups; each gets a copy)")
    p.add_argument("--extra-bufs", type=int, default=4096,
                   help="buffers for packets a pipe cannot take at once (default %(default)s)")
    p.add_argument("--lossy", action="store_true",
                   help="when the extra buffers run out, drop from the longest backlog "
                        "instead of holding the input back")
    p.add_argument("--priority", metavar="EXPR",
                   help="tcpdump expression of a latency-sensitive class: its packets go to "
                        "the priority pipes G{1000+k}")
    add_netmask_arg(p)
    p.add_argument("--slots", type=int, default=None, help="pipe ring size")
    p.add_argument("--netns", help="open the input port inside this network namespace")
    p.add_argument("--seconds", type=float, default=0, help="stop after SECONDS")
    p.add_argument("--count", type=int, default=0, help="stop after COUNT input packets")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between reports (0: none)")
    p.add_argument("--json", action="store_true", help="reports as JSON lines")
    cli.add_common(p)
    return p


def parse_groups(specs):
    out = []
    for s in specs:
        name, sep, n = s.rpartition(":")
        if not sep or not name or not n.isdigit() or not 1 <= int(n) <= 256:
            raise cli.CliError("-p %r: expected GROUP:N with N in 1..256 (e.g. scrub:4)" % s)
        out.append((name, int(n)))
    if len({g for g, _ in out}) != len(out):
        raise cli.CliError("a group is named twice")
    return out


def run(args, out=sys.stdout):
    from middlebox import lb
    from middlebox.filter import Filter
    groups = parse_groups(args.pipes)
    if args.extra_bufs < 0:
        raise cli.CliError("--extra-bufs must be >= 0")
    prio = None
    if args.priority:
        prio = Filter().add_expression(args.priority, netmask=netmask_for(args, args.input))
        prio.attach_counters()
    kw = {"slots": args.slots} if args.slots else {}
    opened = []
    try:
        src = netmapy.open(args.input, netns=args.netns)
        opened.append(src)
        gp, pp = [], []
        for name, n in groups:
            ports = [netmapy.open("pipe:%s{%d" % (name, k), **kw) for k in range(n)]
            opened.extend(ports)
            gp.append((name, ports))
            if prio is not None:
                pports = [netmapy.open("pipe:%s{%d" % (name, lb.PRIO_BASE + k), **kw)
                          for k in range(n)]
                opened.extend(pports)
                pp.append((name, pports))
        b = lb.Balancer(src, gp, extra_bufs=args.extra_bufs, lossy=args.lossy, priority=prio,
                        prio_groups=pp or None)
        print("netmapy-lb: %s -> %s (%s)" % (
            src.name, ", ".join("%s:%d" % g for g in groups),
            "lossy" if args.lossy else "lossless"), file=sys.stderr, flush=True)
        done = threading.Event()
        result = {}

        def report():
            prev, t_prev = None, time.monotonic()
            while not done.wait(args.interval):
                st = b.stats()
                now = time.monotonic()
                rate = (st["rx"] - prev) / (now - t_prev) if prev is not None else 0
                prev, t_prev = st["rx"], now
                if args.json:
                    print(json.dumps(dict(st, rx_pps=round(rate))), file=out, flush=True)
                else:
                    print("rx %d (%.0f pps) blocked %d | %s" % (st["rx"], rate, st["blocked"], "  ".join(
                        "%s fwd %d wait %d drop %d" % (p["port"], p["fwd"], p["waiting"],
                                                       p["dropped"]) for p in st["pipes"])),
                          file=out, flush=True)
        lb.reset()
        import signal
        signal.signal(signal.SIGTERM, lambda *a: lb.stop())
        signal.signal(signal.SIGINT, lambda *a: lb.stop())
        t = threading.Thread(target=report, daemon=True)
        if args.interval:
            t.start()
        try:
            result = b.run(seconds=args.seconds, count=args.count)
        finally:
            done.set()
        print(json.dumps(dict(summary=result)) if args.json else
              "netmapy-lb: %d packets in; %s" % (result["rx"], ", ".join(
                  "%s %d" % (p["port"], p["fwd"]) for p in result["pipes"])),
              file=out if args.json else sys.stderr)
        return result
    finally:
        for p in opened:
            try:
                p.close()
            except Exception:
                pass


def main(argv=None):
    return cli.run("netmapy-lb", build_parser, lambda a: (run(a), 0)[1], argv)


if __name__ == "__main__":
    sys.exit(main())
