"""netmapy-nic: show and change NIC settings (the ethtool steps of a
middlebox set-up), journaled so ``netmapy-nic restore IF`` undoes them.

A thin command line over ``middlebox.nic``; see ``netmapy-nic --help``.
"""

__all__ = ["main", "build_parser", "action"]

import argparse
import json
import sys

from netmapy import cli

from . import nic as nicmod
from .nic import Journal, Nic, NicError, format_cpulist

EXAMPLES = """\
examples:
  netmapy-nic show eth3                      # channels, RSS, ntuple, offloads, IRQs, NUMA
  netmapy-nic show va --netns mbox --json    # an interface inside a network namespace
  netmapy-nic channels eth3 --combined 8     # ethtool -L eth3 combined 8
  netmapy-nic rss eth3 --isolate 4           # RSS sends nothing to queue 4 (weights 1 1 1 1 0 ...)
  netmapy-nic rss eth3 --weights 1 1 0 1     # ethtool -X eth3 weight 1 1 0 1
  netmapy-nic ntuple eth3 add --flow-type udp4 --dst-port 53 --queue 4
  netmapy-nic ntuple eth3 del 1023           # delete the rule at location 1023
  netmapy-nic offload eth3 gro off tso off   # ethtool -K eth3 gro off tso off
  netmapy-nic irqs eth3 --spread             # one queue IRQ per CPU, NUMA-local first
  netmapy-nic irqs eth3 --spread 2-7         # ... over CPUs 2..7 only
  netmapy-nic restore eth3                   # undo everything netmapy changed on eth3
  netmapy-nic offload eth3 gro off --dry-run # print the ethtool command, change nothing

The CloudFlare flood-scrubbing set-up (queue 4 takes DNS, nothing else):
  netmapy-nic rss eth3 --isolate 4
  netmapy-nic ntuple eth3 add --flow-type udp4 --dst-port 53 --queue 4

Changes persist after the command exits (as ethtool's do), but each one is
recorded first in a journal (nic/ in $NETMAPY_RUNDIR, default /dev/shm/netmapy-UID):
`netmapy-nic restore IF` undoes them, newest first, and also repairs what a
crashed netmapy middlebox left behind on IF.  A step the device cannot do
(veth: RSS, ntuple, IRQs) fails with one line naming the software
alternative (usually the xdp backend's --steer).
"""


def _add_common(p, changes=True):
    p.add_argument("--netns", metavar="NS",
                   help="the interface is in network namespace NS (ip netns list)")
    if changes:
        p.add_argument("--dry-run", action="store_true",
                       help="print the equivalent ethtool/echo commands, change nothing")
    cli.add_common(p)


def build_parser():
    p = argparse.ArgumentParser(
        prog="netmapy-nic",
        description="Show and change NIC settings for a middlebox: channels, RSS "
                    "indirection weights, ntuple flow steering, offloads, IRQ affinity. "
                    "Changes are journaled; `restore IF` undoes them.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    s = sub.add_parser("show", help="channels, RSS, ntuple rules, offloads, IRQs, NUMA",
                       formatter_class=fmt,
                       epilog="example:\n  netmapy-nic show eth3\n  netmapy-nic show va "
                              "--netns mbox --json\n")
    s.add_argument("ifname", metavar="IF")
    s.add_argument("--json", action="store_true", help="one JSON object (for scripts)")
    s.add_argument("--all-features", action="store_true",
                   help="list fixed features too (default: only changeable or on)")
    _add_common(s, changes=False)

    s = sub.add_parser("channels", help="set channel counts (ethtool -L)",
                       formatter_class=fmt,
                       epilog="example:\n  netmapy-nic channels eth3 --combined 8\n"
                              "  netmapy-nic channels va --rx 2 --tx 2     # veth has "
                              "separate rx/tx channels\n")
    s.add_argument("ifname", metavar="IF")
    for k in ("combined", "rx", "tx", "other"):
        s.add_argument("--" + k, type=int, metavar="N", help="number of %s channels" % k)
    _add_common(s)

    s = sub.add_parser("rss", help="RSS indirection weights (ethtool -X)",
                       formatter_class=fmt,
                       epilog="example:\n  netmapy-nic rss eth3 --weights 1 1 0 1   # queue 2 "
                              "gets no RSS traffic\n  netmapy-nic rss eth3 --isolate 4\n")
    s.add_argument("ifname", metavar="IF")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", type=int, nargs="+", metavar="W",
                   help="one weight per RX queue, 0 = none (ethtool -X IF weight ...)")
    g.add_argument("--isolate", type=int, metavar="Q",
                   help="weight 0 for queue Q, 1 for the others")
    _add_common(s)

    s = sub.add_parser("ntuple", help="add or delete ntuple flow-steering rules (ethtool -N)",
                       formatter_class=fmt,
                       epilog="example:\n  netmapy-nic ntuple eth3 add --flow-type udp4 "
                              "--dst-port 53 --queue 4\n  netmapy-nic ntuple eth3 add "
                              "--flow-type tcp4 --src 10.0.0.0/8 --queue -1   # drop\n"
                              "  netmapy-nic ntuple eth3 del 1023\n")
    s.add_argument("ifname", metavar="IF")
    nsub = s.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = nsub.add_parser("add", help="add a rule; prints its location")
    a.add_argument("--flow-type", default="udp4", choices=sorted(nicmod.FLOW_TYPES),
                   help="default: %(default)s")
    a.add_argument("--src", metavar="ADDR[/LEN]", help="source address or prefix")
    a.add_argument("--dst", metavar="ADDR[/LEN]", help="destination address or prefix")
    a.add_argument("--src-port", type=int, metavar="P", help="source port (tcp/udp/sctp)")
    a.add_argument("--dst-port", type=int, metavar="P", help="destination port (tcp/udp/sctp)")
    a.add_argument("--queue", type=int, required=True, metavar="Q",
                   help="deliver to RX queue Q (-1: drop)")
    a.add_argument("--loc", type=int, metavar="L", help="rule location (default: any free)")
    _add_common(a)
    d = nsub.add_parser("del", help="delete the rule at location LOC")
    d.add_argument("loc", type=int, metavar="LOC")
    _add_common(d)

    s = sub.add_parser("offload", help="turn offloads on or off (ethtool -K)",
                       formatter_class=fmt,
                       epilog="names: ethtool -K short names (%s) or kernel feature "
                              "names (rx-gro, tx-tcp-segmentation, ... see `show`)\n\n"
                              "example:\n  netmapy-nic offload eth3 gro off lro off tso off\n"
                              % " ".join(nicmod.FEATURE_ALIASES))
    s.add_argument("ifname", metavar="IF")
    s.add_argument("settings", nargs="+", metavar="NAME on|off")
    _add_common(s)

    s = sub.add_parser("irqs", help="list IRQs or set their CPU affinity",
                       formatter_class=fmt,
                       epilog="example:\n  netmapy-nic irqs eth3                 # list\n"
                              "  netmapy-nic irqs eth3 --spread        # all online CPUs\n"
                              "  netmapy-nic irqs eth3 --spread 0-3\n"
                              "  netmapy-nic irqs eth3 --set 45 2      # IRQ 45 on CPU 2\n")
    s.add_argument("ifname", metavar="IF")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--spread", nargs="?", const="", metavar="CPUS",
                   help="one queue IRQ per CPU, NUMA-local CPUs first (default: all "
                        "online CPUs)")
    g.add_argument("--set", nargs=2, metavar=("IRQ", "CPUS"),
                   help="set one IRQ's affinity")
    _add_common(s)

    s = sub.add_parser("restore", help="undo what netmapy changed on IF (from the journal)",
                       formatter_class=fmt,
                       epilog="example:\n  netmapy-nic restore eth3\n")
    s.add_argument("ifname", metavar="IF")
    _add_common(s)
    return p


# --------------------------------------------------------------------------

def _on_off(settings):
    if len(settings) % 2:
        raise NicError("offload settings come in pairs: NAME on|off (got %s)"
                       % " ".join(settings))
    out = {}
    for name, val in zip(settings[::2], settings[1::2]):
        if val not in ("on", "off"):
            raise NicError("offload %s: expected on or off, got %r" % (name, val))
        out[name] = val == "on"
    return out


def _restore_hint(args):
    return "undo with: netmapy-nic restore %s%s" % (
        args.ifname, " --netns %s" % args.netns if args.netns else "")


def _print_show(d, out, all_features=False):
    ns = " (netns %s)" % d["netns"] if d["netns"] else ""
    print("%s%s: driver %s%s, ifindex %d" % (
        d["ifname"], ns, d["driver"] or "?",
        ", bus %s" % d["bus_info"] if d["bus_info"] else "", d["ifindex"]), file=out)
    uns = d["unsupported"]
    ch = d["channels"]
    if ch:
        fmt = lambda c: "  ".join("%s %s" % (k, v if v else "n/a") for k, v in c.items())
        print("channels   max:     %s" % fmt(ch["max"]), file=out)
        print("           current: %s" % fmt(ch["current"]), file=out)
    else:
        print("channels   (%s)" % uns.get("channels", "unavailable"), file=out)
    if d["rx_rings"] is not None:
        print("rx rings   %d" % d["rx_rings"], file=out)
    rss = d["rss"]
    if rss:
        t = rss["indir"]
        counts = {}
        for q in t:
            counts[q] = counts.get(q, 0) + 1
        print("rss        %d entries; entries per queue: %s" % (
            len(t), " ".join("%d:%d" % kv for kv in sorted(counts.items()))), file=out)
        if rss.get("key"):
            print("rss key    %s" % rss["key"], file=out)
    else:
        print("rss        unsupported: %s" % uns.get("rss", "?"), file=out)
    nt = d["ntuple"]
    if nt is not None:
        print("ntuple     %d rule%s (table of %d)" % (
            len(nt["rules"]), "" if len(nt["rules"]) == 1 else "s", nt["table_size"]),
            file=out)
        for r in nt["rules"]:
            print("           %s" % r["text"], file=out)
    else:
        print("ntuple     unsupported: %s" % uns.get("ntuple", "?"), file=out)
    feats = d["features"]
    if feats:
        shown = [(k, v) for k, v in feats.items()
                 if all_features or not v["fixed"] or v["active"]]
        print("offloads   (%d of %d shown%s)" % (
            len(shown), len(feats), "" if all_features else "; --all-features for all"),
            file=out)
        for k, v in shown:
            extra = " [fixed]" if v["fixed"] else ""
            if v["requested"] != v["active"]:
                extra += " [requested %s]" % ("on" if v["requested"] else "off")
            print("           %s: %s%s" % (k, "on" if v["active"] else "off", extra), file=out)
    if d["irqs"]:
        print("irqs       %d" % len(d["irqs"]), file=out)
        for i in d["irqs"]:
            print("           %5d  cpus %-8s %s%s" % (i["irq"], format_cpulist(i["affinity"]),
                                                     i["name"], "" if i["queue"] else
                                                     " (not a queue)"), file=out)
    else:
        print("irqs       none: %s" % uns.get("irqs", ""), file=out)
    print("numa       node %s, cpus %s" % (
        "?" if d["numa_node"] is None else d["numa_node"],
        format_cpulist(d["numa_cpus"])), file=out)


def action(args, out=None):
    out = out or sys.stdout
    if args.cmd == "show":
        nic = Nic(args.ifname, netns=args.netns, journal=False)
        try:
            d = nic.show()
        finally:
            nic.close()
        if args.json:
            json.dump(d, out, indent=1)
            out.write("\n")
        else:
            _print_show(d, out, args.all_features)
        return 0

    if args.cmd == "restore":
        done = []
        if not args.dry_run:
            done += Journal.repair(args.ifname, netns=args.netns)
            done += Journal.repair(args.ifname, netns=args.netns, persistent=True)
        else:
            for persistent in (False, True):
                data = Journal.load(nicmod.journal_path(args.ifname, args.netns, persistent))
                for rec in reversed((data or {}).get("records", [])):
                    done.append(rec.get("undo", "?"))
        if not done:
            print("%s: nothing to restore (no journal)" % args.ifname, file=out)
        for cmd in done:
            print(cmd, file=out)
        return 0

    dry = args.dry_run
    journal = None if dry else Journal.for_interface(args.ifname, args.netns, persistent=True)
    nic = Nic(args.ifname, netns=args.netns, dry_run=dry, journal=journal,
              echo=out if dry else None)
    try:
        if args.cmd == "channels":
            if all(getattr(args, k) is None for k in ("combined", "rx", "tx", "other")):
                raise NicError("channels: give --combined N, or --rx N / --tx N")
            nic.set_channels(rx=args.rx, tx=args.tx, combined=args.combined,
                             other=args.other)
        elif args.cmd == "rss":
            if args.isolate is not None:
                nic.isolate_queue(args.isolate)
            else:
                nic.set_rss_weights(args.weights)
        elif args.cmd == "ntuple":
            if args.action == "add":
                loc = nic.add_ntuple(args.flow_type, src=args.src, dst=args.dst,
                                     sport=args.src_port, dport=args.dst_port,
                                     queue=args.queue, loc=args.loc)
                if not dry:
                    print("rule at location %d" % loc, file=out)
            else:
                nic.del_ntuple(args.loc)
        elif args.cmd == "offload":
            nic.set_features(_on_off(args.settings))
        elif args.cmd == "irqs":
            if args.spread is not None:
                nic.spread_irqs(args.spread or None)
            elif args.set:
                try:
                    irq = int(args.set[0])
                except ValueError:
                    raise NicError("--set: bad IRQ number %r" % args.set[0]) from None
                nic.set_irq_affinity(irq, args.set[1])
            else:
                irqs = nic.irqs()
                if not irqs:
                    raise nic._no_irqs("listing IRQs")
                for i in irqs:
                    print("%5d  cpus %-8s %s" % (i["irq"], format_cpulist(i["affinity"]),
                                                 i["name"]), file=out)
                return 0
        if not dry:
            for cmd in nic.commands():
                print(cmd, file=out)
            if nic._records:
                print(_restore_hint(args), file=sys.stderr)
    finally:
        nic.close()
    return 0


def main(argv=None):
    return cli.run("netmapy-nic", build_parser, action, argv)


if __name__ == "__main__":
    sys.exit(main())

