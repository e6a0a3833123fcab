"""netmapy-bridge: forward between two interfaces, both ways, with one
pinned worker process per queue pair.

    netmapy-bridge eth6 eth7                       # best backend, all queues
    netmapy-bridge nb-mi0 nb-mo0 --netns mbox --backend packet --seconds 10
    netmapy-bridge eth6 eth7 --rules scrub.rules --drop 'udp port 19'
    netmapy-bridge eth6                            # NIC <-> host stack of eth6
    netmapy-bridge --config /etc/netmapy/br0.toml  # the settings in a file

Worker q owns queue q of both interfaces and forwards in both directions
(so each (interface, queue) has a single owner, as AF_XDP needs), zero copy
when the two ports share buffer memory.  Filters (rule files, tcpdump
expressions, classic BPF) run in C per batch.  Counters per worker,
direction and rule are sampled from shared memory every --interval seconds:
a live table on a terminal, JSON lines with --json, a Prometheus
endpoint with --prometheus HOST:PORT.  SIGINT/SIGTERM stop the workers,
which forward what they hold before exiting; SIGHUP (or --reload)
re-reads the configuration and swaps the new filters in between two
batches, losing nothing (docs/service.md).
"""

import json
import os
import sys

import click

import netmapy
from netmapy import cli
from netmapy.names import PortName
from .jobs import BridgeJob, PortSpec
from .options import (filter_options, filter_specs, check_filters, service_options,
                      attack_option, netmask_for)
from netmapy.host.cpus import local_first as numa_cpus
from .supervisor import Supervisor

EPILOG = """\
examples:
  netmapy-bridge eth6 eth7
  netmapy-bridge nb-mi0 nb-mo0 --netns mbox --backend packet --seconds 10
  netmapy-bridge eth6 eth7 --rules scrub.rules --drop 'udp port 19'
  netmapy-bridge eth6        (NIC <-> host stack; needs host rings)
  netmapy-bridge xdp:eth6-0 xdp:eth7-0     (port names: exactly those rings)
  netmapy-bridge --config /etc/netmapy/br0.toml
  netmapy-bridge --config /etc/netmapy/br0.toml --reload

""" + cli.completion_help("netmapy-bridge")


@cli.command("netmapy-bridge", epilog=EPILOG)
@click.argument("if_a", metavar="IF_A", type=cli.PORT_OR_IFACE, required=False)
@click.argument("if_b", metavar="[IF_B]", type=cli.PORT_OR_IFACE, required=False)
@cli.backend_option()
@click.option("--queues", type=cli.IntRange(min=0), default=0, metavar="N",
              help="queue pairs, one worker each (default: the interfaces' RX queue count, "
                   "at most the CPUs)")
@cli.cpus_option()
@cli.netns_option()
@cli.seconds_option()
@click.option("--no-promisc", "promisc", is_flag=True, flag_value=False, default=True,
              help="do not put the interfaces in promiscuous mode")
@click.option("--keep-offloads", is_flag=True,
              help="leave GRO/LRO on (by default they are turned off while bridging, since "
                   "merged super-frames cannot be forwarded as received, and restored on "
                   "exit -- also by the next start after a crash)")
@filter_options
@cli.output_options(prometheus=True)
@attack_option
@service_options
@cli.common_options
@cli.pass_args
def command(args):
    """Forward every packet between two interfaces, both ways, through
    pinned per-queue netmapy workers.

    IF_A and IF_B are Linux interface names as they are (eth6, nb-mi0,
    br-1a2b3c: anything the kernel accepts), or full port names (xdp:eth6-0)
    for exactly those rings.  Omit IF_B to bridge IF_A's NIC and its host
    stack.  They may come from --config instead (interfaces = [A, B]).
    """
    return SERVICE.dispatch(click.get_current_context(), args, run)


def check(args, cfg):
    """--check: (problems, notes) about the resolved settings, without
    touching any interface (middlebox.service)."""
    from netmapy.host import iface, netns as nsmod
    from netmapy.errors import NetmapyError
    problems = []
    if args.if_a is None:
        problems.append(cfg.problem("if_a", "an interface is needed (interfaces = "
                                    "[\"eth6\", \"eth7\"])"))
    for i, v in enumerate((args.if_a, args.if_b)):
        if v is None:
            continue
        try:
            with nsmod.netns(args.netns):
                iface.require(_ifname(v))
        except (NetmapyError, OSError) as e:
            problems.append(cfg.problem("if_a" if i == 0 else "if_b", cli.one_line(e), i
                                        if cfg.path and "if_a" not in cfg.given else None))
    problems += check_filters(args, cfg, netmask_for(args, args.if_a))
    if args.python and (args.rules or args.filter or args.drop or args.bpf):
        problems.append(cfg.problem("python", "python replaces the compiled filters: use one "
                                              "or the other"))
    return problems, []


def _lock_of(args):
    if args.if_a is None:
        raise cli.CliError("IF_A is needed (or --config naming the interfaces)")
    return args.netns, _ifname(args.if_a)


from .service import Service  # noqa: E402  (after the command: its parameters)
SERVICE = Service("netmapy-bridge", "netmapy-bridge", {"interfaces": ("if_a", "if_b")},
                  check, _lock_of)


def _ifname(v):
    """The interface of a PORT|IFACE value (a str, or a PortName's ifname)."""
    return v if isinstance(v, str) else v.ifname


def _queues(args, names):
    from netmapy.host import iface, netns as nsmod
    counts = []
    with nsmod.netns(args.netns):
        for n in names:
            counts.append(iface.require(_ifname(n)).num_rx_queues)
    return counts


def plan(args):
    """The jobs (one BridgeJob per queue pair) for the command line."""
    a, b = args.if_a, args.if_b
    host = b is None
    backend = args.backend
    counts = _queues(args, [a] if host else [a, b])
    nq = args.queues or min(counts + [len(os.sched_getaffinity(0))])
    if nq < 1 or nq > min(counts):
        raise cli.CliError("--queues %d: the interfaces have %s RX queues" % (
            nq, " and ".join(map(str, counts))))
    cpus = args.cpus or numa_cpus(_ifname(a))
    name_a, name_b = _ifname(a), _ifname(b) if b is not None else "host"
    jobs = []
    opts = {"promisc": True} if args.promisc else {}
    for q in range(nq):
        if nq == 1:
            pa = cli.port_for(a, backend)
            pb = PortName.interface(pa.ifname, pa.backend, host=True) if host else \
                cli.port_for(b, backend)
        else:
            for v in (a, b):
                if v is not None and not isinstance(v, str):
                    raise cli.CliError("%s: with %d queue pairs give interface names (each "
                                       "worker opens its own queue), or --queues 1" % (v, nq))
            pa = cli.port_for(a, backend, queue=q)
            pb = cli.port_for(a if host else b, backend, queue=q, host=host)
        jobs.append(BridgeJob(
            ports=[PortSpec(pa, args.netns, dict(opts)), PortSpec(pb, args.netns, dict(opts))],
            queue=q, cpu=cpus[q % len(cpus)],
            dir_names=("%s>%s" % (name_a, name_b), "%s>%s" % (name_b, name_a))))
    return jobs


def run(args, cfg=None, out=sys.stdout):
    if args.if_a is None:
        raise cli.CliError("IF_A is needed: on the command line, or as interfaces in "
                           "--config FILE")
    # each direction's expressions get the netmask of the interface it receives on
    netmasks = (netmask_for(args, args.if_a), netmask_for(args, args.if_b or args.if_a))
    filters, names, descs = filter_specs(args, netmasks)
    specs = plan(args)
    if args.python:
        from .worker import load_function
        load_function(args.python)              # fail here, in one line, if it is wrong
        if filters:
            raise cli.CliError("--python replaces the compiled filters: use one or the other")
    for w, s in enumerate(specs):
        s.filters = filters
        s.netmasks = netmasks
        s.python = args.python
        if args.sample_drops:
            s.sample = "%s.w%d.pcap" % (args.sample_drops, w)
            s.sample_max = args.sample_max
    # open the ports once here, so a bad interface is one error line now
    with netmapy.open(specs[0].ports[0].name, netns=args.netns) as p0:
        backend = p0.backend
    if backend != "packet":
        # AF_XDP and netmap see every frame the NIC accepts: promiscuity is an
        # interface setting there (preflight reports it), not a socket option
        for s in specs:
            for p in s.ports:
                p.options.pop("promisc", None)
    if_a, if_b = _ifname(args.if_a), args.if_b and _ifname(args.if_b)
    print("netmapy-bridge: %s <-> %s, %d worker(s), %s backend, CPUs %s" % (
        if_a, if_b or "host stack", len(specs), backend,
        ",".join(str(s.cpu) for s in specs)), file=sys.stderr)
    locks = [(args.netns, if_a)] + ([(args.netns, if_b)] if if_b else [])
    nics = []

    def setup():
        """GRO/LRO off on both interfaces (journaled: a crashed run is
        repaired by the next start, which constructs the Nic)."""
        from .nic import Nic, NicError
        for ifname in filter(None, (if_a, if_b)):
            nic = Nic(ifname, netns=args.netns)
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

    def reload_plan():
        """SIGHUP: the new filter stages (or why not)."""
        from .reload import ReloadRefused
        new = cfg.resolve()
        fixed = cfg.fixed_changes(args, new)
        if fixed:
            raise ReloadRefused("these settings cannot change while running: %s; restart "
                                "the service to apply them" % ", ".join(fixed))
        if args.python:
            raise ReloadRefused("the bridge runs a Python function (python): nothing to "
                                "reload; restart the service to change it")
        return filter_specs(new, netmasks)[0]
    sup = Supervisor("netmapy-bridge", specs, locks=locks, out=out, stats_json=args.json,
                     prometheus=args.prometheus, setup=setup, teardown=teardown,
                     stages=filters, reload=reload_plan if cfg is not None else None,
                     attack_sample=0 if args.python else args.attack_sample,
                     config=cfg.path if cfg is not None else None)
    tot = sup.run(seconds=args.seconds, interval=args.interval)
    d = tot["directions"]
    summary = dict(a=if_a, b=if_b or "host", a_to_b=d[0], b_to_a=d[1],
                   rules=tot["rules"], restarts=tot["restarts"], workers=len(specs),
                   reloads=tot.get("reloads", 0), generation=tot.get("generation", 0))
    if "attack" in tot:
        summary["attack"] = tot["attack"]
    if args.json:
        print(json.dumps(dict(summary=summary)), file=out, flush=True)
    else:
        print("netmapy-bridge: %s->%s forwarded %d, dropped %d, failed %d, lost in the kernel %d; "
              "%s->%s forwarded %d, dropped %d, failed %d, lost in the kernel %d; %d restart(s)" % (
                  if_a, if_b or "host", d[0]["fwd"], d[0]["drop"], d[0]["failed"],
                  d[0]["kernel_drops"], if_b or "host", if_a, d[1]["fwd"], d[1]["drop"],
                  d[1]["failed"], d[1]["kernel_drops"], tot["restarts"]), file=sys.stderr)
    return summary


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())

