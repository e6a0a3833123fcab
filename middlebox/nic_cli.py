"""netmapy-nic: show and change NIC settings (the ethtool steps of a
middlebox set-up), journaled so ``netmapy-nic restore IF`` undoes them.

A thin command line over ``middlebox.nic``; see ``netmapy-nic --help``.
"""

__all__ = ["main", "command", "action"]

import json
import sys
from types import SimpleNamespace

import click

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


def _nic_options(f=None, *, changes=True):
    """IF's namespace, --dry-run (for the commands that change things),
    --debug/-v."""
    def deco(f):
        if changes:
            f = click.option("--dry-run", is_flag=True,
                             help="print the equivalent ethtool/echo commands, change nothing")(f)
        f = cli.netns_option(help="the interface is in network namespace NS (ip netns list)")(f)
        return cli.common_options(version=False)(f)
    return deco(f) if f is not None else deco


def _ifname_arg(f):
    return click.argument("ifname", metavar="IF", type=cli.IFACE)(f)


def _act(cmd, **fixed):
    """A subcommand body: action() on the parameters, as one object."""
    def body(**kw):
        kw.update(fixed, cmd=cmd)
        return action(SimpleNamespace(**kw))
    return body


@cli.group("netmapy-nic", epilog=EXAMPLES + "\n" + cli.completion_help("netmapy-nic"))
@cli.common_options
def command():
    """Show and change NIC settings for a middlebox: channels, RSS indirection
    weights, ntuple flow steering, offloads, IRQ affinity.  Changes are
    journaled; `restore IF` undoes them.

    IF is the interface's Linux name as it is (eth3, nb-mi0, ...).
    """


command.command("show", epilog="example:\n  netmapy-nic show eth3\n  netmapy-nic show va "
                               "--netns mbox --json")(
    _ifname_arg(
        click.option("--json", "json", is_flag=True, help="one JSON object (for scripts)")(
            click.option("--all-features", is_flag=True,
                         help="list fixed features too (default: only changeable or on)")(
                _nic_options(changes=False)(_act("show"))))))
command.commands["show"].help = "Channels, RSS, ntuple rules, offloads, IRQs, NUMA."


def _channels_body(**kw):
    if all(kw.get(k) is None for k in ("combined", "rx", "tx", "other")):
        raise click.UsageError("give --combined N, or --rx N / --tx N")
    return _act("channels")(**kw)


_ch = _nic_options(_channels_body)
for _k in ("other", "tx", "rx", "combined"):
    _ch = click.option("--" + _k, type=cli.IntRange(min=1), metavar="N",
                       help="number of %s channels" % _k)(_ch)
command.command("channels", help="Set channel counts (ethtool -L).",
                epilog="example:\n  netmapy-nic channels eth3 --combined 8\n"
                       "  netmapy-nic channels va --rx 2 --tx 2     # veth has separate rx/tx "
                       "channels")(_ifname_arg(_ch))


def _rss_body(weights, weights_flag, isolate, **kw):
    if (isolate is None) == (not weights):
        raise click.UsageError("give either --weights W... or --isolate Q")
    if weights and not weights_flag:
        raise click.UsageError("the weights come after --weights: rss IF --weights 1 1 0 1")
    return _act("rss")(weights=list(weights), isolate=isolate, **kw)


command.command("rss", help="RSS indirection weights (ethtool -X).",
                epilog="example:\n  netmapy-nic rss eth3 --weights 1 1 0 1   # queue 2 gets no "
                       "RSS traffic\n  netmapy-nic rss eth3 --isolate 4")(
    _ifname_arg(click.argument("weights", metavar="[W...]", nargs=-1,
                               type=cli.IntRange(min=0))(
        click.option("--weights", "weights_flag", is_flag=True,
                     help="one weight per RX queue follows, 0 = none (ethtool -X IF weight ...)")(
            click.option("--isolate", type=cli.IntRange(min=0), metavar="Q",
                         help="weight 0 for queue Q, 1 for the others")(
                _nic_options(_rss_body))))))


@command.group("ntuple", epilog="example:\n  netmapy-nic ntuple eth3 add --flow-type udp4 "
                                "--dst-port 53 --queue 4\n  netmapy-nic ntuple eth3 add "
                                "--flow-type tcp4 --src 10.0.0.0/8 --queue -1   # drop\n"
                                "  netmapy-nic ntuple eth3 del 1023")
@click.argument("ifname", metavar="IF", type=cli.IFACE)
@click.pass_context
def _ntuple(ctx, ifname):
    """Add or delete ntuple flow-steering rules (ethtool -N)."""
    ctx.obj = ifname


_PORT = cli.IntRange(0, 65535)


@_ntuple.command("add")
@click.option("--flow-type", type=click.Choice(sorted(nicmod.FLOW_TYPES)), default="udp4",
              show_default=True)
@click.option("--src", metavar="ADDR[/LEN]", help="source address or prefix")
@click.option("--dst", metavar="ADDR[/LEN]", help="destination address or prefix")
@click.option("--src-port", type=_PORT, metavar="P", help="source port (tcp/udp/sctp)")
@click.option("--dst-port", type=_PORT, metavar="P", help="destination port (tcp/udp/sctp)")
@click.option("--queue", type=cli.IntRange(min=-1), required=True, metavar="Q",
              help="deliver to RX queue Q (-1: drop)")
@click.option("--loc", type=cli.IntRange(min=0), metavar="L",
              help="rule location (default: any free)")
@_nic_options
@click.pass_obj
def _ntuple_add(ifname, **kw):
    """Add a rule; prints its location."""
    return _act("ntuple", action="add", ifname=ifname)(**kw)


@_ntuple.command("del")
@click.argument("loc", type=cli.IntRange(min=0), metavar="LOC")
@_nic_options
@click.pass_obj
def _ntuple_del(ifname, **kw):
    """Delete the rule at location LOC."""
    return _act("ntuple", action="del", ifname=ifname)(**kw)


command.command("offload", help="Turn offloads on or off (ethtool -K).",
                epilog="names: ethtool -K short names (%s) or kernel feature names (rx-gro, "
                       "tx-tcp-segmentation, ... see `show`)\n\nexample:\n  netmapy-nic offload "
                       "eth3 gro off lro off tso off" % " ".join(nicmod.FEATURE_ALIASES))(
    _ifname_arg(click.argument("settings", nargs=-1, required=True, metavar="NAME on|off...")(
        _nic_options(_act("offload")))))


def _irqs_body(spread, set, **kw):
    if spread is not None and set:
        raise click.UsageError("--spread and --set exclude each other")
    return _act("irqs")(spread=spread, set=set, **kw)


command.command("irqs", help="List IRQs or set their CPU affinity.",
                epilog="example:\n  netmapy-nic irqs eth3                 # list\n"
                       "  netmapy-nic irqs eth3 --spread        # all online CPUs\n"
                       "  netmapy-nic irqs eth3 --spread 0-3\n"
                       "  netmapy-nic irqs eth3 --set 45 2      # IRQ 45 on CPU 2")(
    _ifname_arg(click.option("--spread", is_flag=False, flag_value="", default=None,
                             metavar="[CPUS]",
                             help="one queue IRQ per CPU, NUMA-local CPUs first (default: all "
                                  "online CPUs)")(
        click.option("--set", "set", nargs=2, type=(cli.IntRange(min=0), str), default=None,
                     metavar="IRQ CPUS", help="set one IRQ's affinity (CPUS as 0-3,5)")(
            _nic_options(_irqs_body)))))

command.command("restore", help="Undo what netmapy changed on IF (from the journal).",
                epilog="example:\n  netmapy-nic restore eth3")(
    _ifname_arg(_nic_options(_act("restore"))))


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
                nic.set_irq_affinity(args.set[0], args.set[1])
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
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())

