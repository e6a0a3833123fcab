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

import json
import sys
import threading
import time

import click

import netmapy
from netmapy import cli, stop
from netmapy.names import Mode, PortName

from .options import netmask_for, netmask_option


def parse_groups(specs):
    out = []
    for s in specs:
        name, sep, n = s.rpartition(":")
        if not sep or not name or not n.isdigit() or not 1 <= int(n) <= 256:
            raise click.BadParameter("%r: expected GROUP:N with N in 1..256 (e.g. scrub:4)" % s,
                                     param_hint="'-p' / '--pipes'")
        try:
            PortName("pipe", name, mode=Mode.PIPE_MASTER, ring=0).canonical()
        except ValueError as e:
            raise click.BadParameter("%r: the group is a pipe name: %s" % (s, cli.one_line(e)),
                                     param_hint="'-p' / '--pipes'")
        out.append((name, int(n)))
    if len({g for g, _ in out}) != len(out):
        raise click.BadParameter("a group is named twice", param_hint="'-p' / '--pipes'")
    return out


def _master(group, k):
    """The master end of pipe k of a group (pipe:GROUP{k)."""
    return PortName("pipe", group, mode=Mode.PIPE_MASTER, ring=k)


EPILOG = __doc__.split("\n\n", 1)[1] + "\n" + cli.completion_help("netmapy-lb")


@cli.command("netmapy-lb", epilog=EPILOG)
@click.option("-i", "--input", required=True, metavar="PORT|IFACE", type=cli.PORT_OR_IFACE,
              help="the port to read: a port name, or an interface's Linux name (opened with "
                   "--backend)")
@click.option("-p", "--pipes", multiple=True, required=True, metavar="GROUP:N",
              callback=lambda ctx, p, v: parse_groups(v),
              help="a group of N pipes (repeat for more groups; each gets a copy)")
@click.option("--extra-bufs", type=cli.IntRange(min=0), default=4096, show_default=True,
              help="buffers for packets a pipe cannot take at once")
@click.option("--lossy", is_flag=True,
              help="when the extra buffers run out, drop from the longest backlog instead of "
                   "holding the input back")
@click.option("--priority", metavar="EXPR",
              help="tcpdump expression of a latency-sensitive class: its packets go to the "
                   "priority pipes G{1000+k}")
@netmask_option(group=None)
@click.option("--slots", type=cli.IntRange(min=1), default=None, help="pipe ring size")
@cli.backend_option()
@cli.netns_option(help="open the input port inside this network namespace")
@cli.seconds_option()
@click.option("--count", type=cli.COUNT, default=0, help="stop after COUNT input packets")
@cli.output_options
@cli.common_options
@cli.pass_args
def command(args):
    """Spread one port's packets over pipes by flow hash."""
    run(args)


def run(args, out=sys.stdout):
    from middlebox import lb
    from middlebox.filter import Filter
    groups = args.pipes
    prio = None
    if args.priority:
        prio = Filter().add_expression(args.priority, netmask=netmask_for(args, args.input))
        prio.attach_counters()
    kw = {"slots": args.slots} if args.slots else {}
    opened = []
    # SIGINT/SIGTERM end b.run() (C handlers: it never returns to Python on
    # its own); then the summary is printed and the pipes are closed, before
    # the previous handlers come back
    stop.reset()
    stop.install_handlers()
    try:
        src = netmapy.open(cli.port_for(args.input, args.backend), netns=args.netns)
        opened.append(src)
        gp, pp = [], []
        for name, n in groups:
            ports = [netmapy.open(_master(name, k), **kw) for k in range(n)]
            opened.extend(ports)
            gp.append((name, ports))
            if prio is not None:
                pports = [netmapy.open(_master(name, lb.PRIO_BASE + k), **kw)
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
        t = threading.Thread(target=report, daemon=True)
        if args.interval:
            t.start()
        try:
            result = b.run(seconds=args.seconds, count=args.count)
        finally:
            done.set()
            if t.is_alive():
                t.join(5)
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
        stop.restore_handlers()


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
