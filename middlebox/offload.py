"""nm-offload: scrub a flood on one RX queue and give the valid packets back
to the kernel (CloudFlare's single-RX-queue offload, end to end).

    nm-offload eth3 4 --rules dns.rules
    nm-offload eth3 4 --steer 'udp dst port 53' --drop 'udp[8:2] = 0xffff'
    nm-offload eth3 4 5 --bpf p0f.bpf --ntuple 'udp4 dst-port 53'
    nm-offload eth3 4 --rules dns.rules --dry-run        # print the plan, change nothing
    nm-offload --config /etc/netmapy/eth3.toml           # the settings in a file
    nm-offload --config /etc/netmapy/eth3.toml --reload  # the running one re-reads it

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
4. on SIGINT/SIGTERM, drain, remove the XDP program and undo the NIC changes;
   on SIGHUP (or --reload), re-read the configuration and swap the new
   filters in between two batches, losing nothing (docs/service.md).
"""

import json
import sys

import click

import netmapy
from netmapy import cli
from netmapy.host import iface, netns as nsmod
from netmapy.names import PortName
from .jobs import OffloadJob, PortSpec
from .options import (filter_options, filter_specs, check_filters, service_options,
                      attack_option, netmask_for)
from netmapy.host.cpus import local_first as numa_cpus
from .supervisor import Supervisor

EPILOG = __doc__.split("\n\n", 1)[1] + "\n" + cli.completion_help("nm-offload")


@cli.command("nm-offload", epilog=EPILOG)
@click.argument("ifname", metavar="IFACE", type=cli.IFACE, required=False)
@click.argument("queues", metavar="QUEUE...", type=cli.IntRange(min=0), nargs=-1)
@click.option("--steer", metavar="EXPR",
              help="only packets matching this tcpdump expression leave the kernel "
                   "(software flow steering in the XDP program)")
@click.option("--ntuple", metavar="SPEC", callback=lambda ctx, p, v: _check_ntuple(v),
              help="also ask the NIC to steer this flow to the queue, e.g. 'udp4 dst-port 53' "
                   "(ethtool -N syntax; skipped with a message when the NIC cannot)")
@click.option("--no-rss", "rss", is_flag=True, flag_value=False, default=True,
              help="leave the RSS indirection table alone")
@cli.backend_option(choices=("netmap", "xdp"),
                    help="netmap (the module where present, else xdp) or xdp")
@click.option("--rules-in", type=click.Choice(("auto", "kernel", "user")), default="auto",
              show_default=True,
              help="where the rule file (--rules, the first filter) runs: 'kernel' -- an XDP "
                   "program drops the flood and passes valid packets to the stack before any "
                   "copy to user space, leaving rate limits, later filter stages and sampled "
                   "drops to the workers; 'user' -- every packet of the queue goes to the "
                   "workers; 'auto' -- the kernel when it can, else user space, saying why")
@cli.netns_option(help="the interface is in this network namespace (ip netns name)")
@cli.cpus_option()
@cli.seconds_option()
@click.option("--dry-run", is_flag=True, help="print the NIC commands and the plan; change nothing")
@filter_options(python=False)
@cli.output_options(prometheus=True)
@attack_option
@service_options
@cli.common_options
@cli.pass_args
def command(args):
    """Scrub a flood on RX queue(s) of an interface and reinject the valid
    packets into the host stack.

    IFACE is the interface's Linux name as it is (eth3, nb-mi0, ...); each
    QUEUE gets one worker.  IFACE and QUEUE may come from --config instead.
    """
    return SERVICE.dispatch(click.get_current_context(), args, run)


def check(args, cfg):
    """--check: (problems, notes) about the resolved settings, without
    touching any interface (middlebox.service)."""
    from netmapy.errors import NetmapyError, NoPrivilege
    problems, notes = [], []
    if not args.ifname:
        problems.append(cfg.problem("ifname", "an interface is needed (interface = \"eth3\")"))
    if not args.queues:
        problems.append(cfg.problem("queues", "at least one queue is needed (queues = [4])"))
    if args.ifname:
        try:
            with nsmod.netns(args.netns):
                info = iface.require(args.ifname)
            for i, q in enumerate(args.queues):
                if q >= info.num_rx_queues:
                    problems.append(cfg.problem("queues", cli.one_line(
                        netmapy.QueueOutOfRange(args.ifname, q, info.num_rx_queues)), i))
        except (NetmapyError, OSError) as e:
            problems.append(cfg.problem("netns" if args.netns and "namespace" in str(e)
                                        else "ifname", cli.one_line(e)))
    if len(set(args.queues)) != len(args.queues):
        problems.append(cfg.problem("queues", "a queue is listed twice"))
    netmask = netmask_for(args, args.ifname)
    problems += check_filters(args, cfg, netmask)
    if args.steer:
        from netmapy.backends.xdp.prog import compile_filter, steer_program
        try:
            steer_program(compile_filter(args.steer, netmask=netmask,
                                         netmask_from=args.ifname if netmask is None else None),
                          source=repr(args.steer))
        except (NetmapyError, ValueError) as e:
            problems.append(cfg.problem("steer", cli.one_line(e)))
    if args.rules_in == "kernel" and not args.rules:
        problems.append(cfg.problem("rules_in", "'kernel' needs a rule file (rules = [...])"))
    if not problems and args.rules and args.rules_in != "user":
        from .kfilter import KernelRules, KernelFilterUnavailable
        from .worker import build_filter
        try:
            kr = KernelRules(build_filter(filter_specs(args, [netmask])[0], netmask=netmask))
            notes.append("the in-kernel rule program for %s loads (checked by the kernel's "
                         "verifier, not attached)" % args.rules[0])
            kr.close()
        except KernelFilterUnavailable as e:
            if args.rules_in == "kernel":
                problems.append(cfg.problem("rules_in", cli.one_line(e)))
            else:
                notes.append("the rules will run in user space: %s" % cli.one_line(e))
        except NoPrivilege as e:
            notes.append("the in-kernel rule program was not checked: %s" % cli.one_line(e))
    return problems, notes


def _lock_of(args):
    if not args.ifname:
        raise cli.CliError("IFACE is needed (or --config naming the interface)")
    return args.netns, args.ifname


from .service import Service  # noqa: E402  (after the command: its parameters)
SERVICE = Service("nm-offload", "nm-offload", {"interface": ("ifname",), "queues": ("queues",)},
                  check, _lock_of)


def _check_ntuple(spec):
    if spec is not None:
        try:
            parse_ntuple(spec)
        except cli.CliError as e:
            raise click.BadParameter(str(e).replace("--ntuple: ", ""), param_hint="'--ntuple'")
    return spec


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
    cpus = args.cpus or numa_cpus(args.ifname)
    specs = []
    for k, q in enumerate(args.queues):
        kw = {"host": True}
        if args.steer:
            kw["steer"] = args.steer
            if args.netmask is not None:
                kw["netmask"] = args.netmask
        port = PortName.interface(args.ifname, args.backend, q, single_rx=True)
        specs.append(OffloadJob(ports=[PortSpec(port, args.netns, kw)], queue=q,
                                cpu=cpus[k % len(cpus)], tx_ring="host",
                                rules_in=args.rules_in, prog="nm-offload",
                                dir_names=("q%d>host" % q, "-")))
    return specs


def run(args, cfg=None, out=sys.stdout):
    if not args.ifname or not args.queues:
        raise cli.CliError("IFACE and QUEUE are needed: on the command line, or as interface "
                           "and queues in --config FILE")
    args.queues = list(args.queues)
    netmask = netmask_for(args, args.ifname)
    filters, names, descs = filter_specs(args, [netmask])
    specs = plan(args)
    if args.steer:
        from netmapy.backends.xdp.prog import compile_filter, steer_program
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
                      s.ports[0], ", ".join("%s=%r" % kv for kv in s.ports[0].options.items()),
                      len(filters), args.ifname, s.cpu), file=sys.stderr)
        nicplan.teardown()
        return dict(dry_run=True, commands=list(nicplan.done))
    for w, s in enumerate(specs):
        s.filters = filters
        s.netmasks = (netmask,)
        if args.sample_drops:
            s.sample = "%s.w%d.pcap" % (args.sample_drops, w)
            s.sample_max = args.sample_max
    print("nm-offload: %s queue(s) %s, %d worker(s)%s" % (
        args.ifname, ",".join(map(str, args.queues)), len(specs),
        ", configuration %s" % cfg.path if cfg is not None and cfg.path else ""),
        file=sys.stderr)

    def reload_plan():
        """SIGHUP: the new filter stages (or why not)."""
        from .reload import ReloadRefused
        new = cfg.resolve()
        new.queues = list(new.queues)
        fixed = cfg.fixed_changes(args, new)
        if fixed:
            raise ReloadRefused("these settings cannot change while running: %s; restart "
                                "the service to apply them" % ", ".join(fixed))
        stages, _, _ = filter_specs(new, [netmask])
        if new.rules_in == "kernel" and (not stages or stages[0][0] != "rules"):
            raise ReloadRefused("--rules-in kernel needs a rule file as the first filter")
        return stages
    sup = Supervisor("nm-offload", specs, locks=[(args.netns, args.ifname)],
                     setup=nicplan.setup, teardown=nicplan.teardown,
                     out=out, stats_json=args.json, prometheus=args.prometheus,
                     stages=filters, reload=reload_plan if cfg is not None else None,
                     attack_sample=args.attack_sample,
                     config=cfg.path if cfg is not None else None)
    tot = sup.run(seconds=args.seconds, interval=args.interval)
    d = tot["directions"][0]
    summary = dict(ifname=args.ifname, queues=args.queues, rx=d["rx"], reinjected=d["fwd"],
                   reinject_failed=d["failed"], dropped=d["drop"],
                   kernel_drops=d["kernel_drops"],
                   ratelimited=d["ratelimited"], errors=d["errors"],
                   rules=tot["rules"], restarts=tot["restarts"],
                   reloads=tot.get("reloads", 0), generation=tot.get("generation", 0))
    if "attack" in tot:
        summary["attack"] = tot["attack"]
    if args.json:
        print(json.dumps(dict(summary=summary)), file=out, flush=True)
    else:
        print("nm-offload: received %d, reinjected %d, reinjection failed %d, dropped %d "
              "(%d rate-limited); lost in the kernel before the workers %d; %d restart(s)" % (
                  d["rx"], d["fwd"], d["failed"], d["drop"], d["ratelimited"],
                  d["kernel_drops"], tot["restarts"]), file=sys.stderr)
    return summary


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
