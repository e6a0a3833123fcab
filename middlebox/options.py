"""The filter options the middlebox commands share (netmapy-bridge,
nm-offload, netmapy-pipeline), defined once, and their validation.

    @filter_options
    def command(..., rules, filter, drop, bpf, python, netmask, sample_drops, sample_max): ...

``filter_specs(args, netmasks)`` turns them into the filter stages a job
carries, compiling everything once in the command (with the netmask of
each receiving interface, ``netmask_for``) so that a bad rule file or
expression is one error line before any worker starts.
"""

import os

import click

from netmapy import cli

__all__ = ["filter_options", "filter_specs", "check_filters", "service_options",
           "attack_option", "netmask_option", "netmask_for", "NETMASK", "FILTER_GROUP",
           "SERVICE_GROUP"]

FILTER_GROUP = "Filters (all run in C; a packet passes when every stage lets it)"
SERVICE_GROUP = "Service (configuration file, reload: docs/service.md)"
OUTPUT_GROUP = "Counters and output"


def service_options(f):
    """--config FILE, --check, --reload, --status (middlebox.service)."""
    g = dict(cls=cli.Option, group=SERVICE_GROUP)
    opts = [
        click.option("--config", metavar="FILE", type=click.Path(dir_okay=False), **g,
                     help="read the settings from this TOML file (middlebox/config.py); "
                          "options on the command line override it"),
        click.option("--check", is_flag=True, **g,
                     help="check the settings (and compile every filter) without touching "
                          "any interface: one line per problem, with file, line and key"),
        click.option("--reload", is_flag=True, **g,
                     help="make the running instance (the one started with this --config, "
                          "else the one on this interface) re-read its configuration and "
                          "swap its filters in without losing a packet (as SIGHUP does); "
                          "prints the outcome"),
        click.option("--status", is_flag=True, **g,
                     help="show the running instance's counters, rules and attack view over "
                          "-T seconds (default 1), from its shared memory; with --json as one "
                          "JSON object"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def attack_option(f):
    """--attack-sample K (the attack view, middlebox.attack)."""
    return click.option(
        "--attack-sample", type=cli.IntRange(min=0), default=64, show_default=True,
        metavar="K", cls=cli.Option, group=OUTPUT_GROUP,
        help="the attack view: sample about 1 of K dropped packets (C, per worker; in the "
             "kernel too) for the top sources, destination ports and sizes of what is "
             "dropped (0: off)")(f)


class NetmaskType(click.ParamType):
    """An IPv4 netmask: 255.255.255.0, /24 or 24 (kept as typed, checked)."""

    name = "MASK"

    def convert(self, value, param, ctx):
        from netmapy.host import cbpf
        try:
            cbpf.parse_netmask(value)
        except cbpf.CbpfError as e:
            self.fail(str(e), param, ctx)
        return value


NETMASK = NetmaskType()


def netmask_option(f=None, *, group=FILTER_GROUP):
    """--netmask: for every command that compiles tcpdump expressions."""
    o = click.option("--netmask", metavar="MASK", type=NETMASK, cls=cli.Option, group=group,
                     help="IPv4 netmask for expressions that need one (ip broadcast): "
                          "255.255.255.0, /24 or 24 (default: the IPv4 netmask of the "
                          "interface the packets arrive on, when it has an address)")
    return o(f) if f is not None else o


def netmask_for(args, port):
    """The netmask for expressions run on packets received from `port` (an
    interface name or a PortName): --netmask when given, else the IPv4
    netmask of the interface behind it, read in --netns; None when there is
    none (pipes, capture files, an interface without an address)."""
    from netmapy import NetmapyError
    from netmapy.host import iface, netns as nsmod
    if getattr(args, "netmask", None) is not None:
        return args.netmask
    if port is None:
        return None
    if isinstance(port, str):
        ifname = port
    elif getattr(port, "backend", None) in ("netmap", "xdp", "packet"):
        ifname = port.ifname
    else:
        return None
    try:
        with nsmod.netns(getattr(args, "netns", None)):
            return iface.ipv4_netmask(ifname)
    except (NetmapyError, OSError):
        return None             # opening the port reports a missing interface


def filter_options(f=None, *, python=True, python_flag="--python"):
    """--rules, --filter, --drop, --bpf, --python, --netmask, --sample-drops,
    --sample-max."""
    def deco(f):
        g = dict(cls=cli.Option, group=FILTER_GROUP)
        opts = [
            click.option("--rules", metavar="FILE", multiple=True,
                         type=click.Path(dir_okay=False), **g,
                         help="rule file: allow/deny by prefix, protocol, port; per-source "
                              "rate limits (see middlebox/rules.py); repeatable"),
            click.option("--filter", "filter", metavar="EXPR", multiple=True, **g,
                         help="tcpdump expression packets must match to pass; repeatable"),
            click.option("--drop", metavar="EXPR", multiple=True, **g,
                         help="tcpdump expression whose matches are dropped; repeatable"),
            click.option("--bpf", metavar="FILE", multiple=True,
                         type=click.Path(dir_okay=False), **g,
                         help="classic BPF (tcpdump -ddd text, or bpftools' comma form) "
                              "whose matches are dropped; repeatable"),
            netmask_option(),
            click.option("--sample-drops", metavar="PREFIX", **g,
                         help="write dropped packets to PREFIX.wN.pcap (one file per worker)"),
            click.option("--sample-max", type=cli.IntRange(min=0), default=10000,
                         show_default=True, **g,
                         help="at most this many sampled packets per worker"),
        ]
        if python:
            opts.insert(4, click.option(
                python_flag, "python", metavar="MODULE:FUNC", **g,
                help="a Python function deciding per packet: FUNC(memoryview) -> True to "
                     "forward, False to drop (it may rewrite the packet in place); MODULE "
                     "may be a file.py"))
        for o in reversed(opts):
            f = o(f)
        return f
    return deco(f) if f is not None else deco


def filter_specs(args, netmasks=(None,)):
    """The filter stages from the command line, validated (compiled once
    here, with each netmask the workers will use, so a bad expression is
    one error line before any worker starts).  Returns (stages, rule names,
    rule descriptions)."""
    from middlebox import rules as _rules
    from .worker import build_filter
    specs = []
    for path in args.rules:
        _rules.load(path)
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
    for nm in dict.fromkeys(netmasks or (None,)):
        f = build_filter(specs, netmask=nm)
    return tuple(specs), f.names, f.descriptions


def check_filters(args, cfg, netmask=None):
    """Every filter of the resolved settings compiled on its own (with
    `netmask`, see netmask_for): a list of config.Problem (one per filter
    that does not compile, with the line of the file that names it).
    Touches nothing."""
    from middlebox import rules as _rules
    from middlebox.filter import Filter, FilterError
    from netmapy.cli import one_line
    problems = []
    for i, path in enumerate(args.rules):
        try:
            _rules.load(path)
        except (ValueError, OSError) as e:
            problems.append(cfg.problem("rules", one_line(e), i))
    for name in ("filter", "drop"):
        for i, expr in enumerate(getattr(args, name)):
            try:
                Filter().add_expression(expr, drop=name == "drop", netmask=netmask)
            except (FilterError, ValueError) as e:
                problems.append(cfg.problem(name, one_line(e), i))
    for i, path in enumerate(args.bpf):
        try:
            with open(path) as f:
                Filter().add_bpf(f.read(), drop=True, name=path)
        except OSError as e:
            problems.append(cfg.problem("bpf", "%s: cannot read the BPF file: %s" % (
                path, e.strerror), i))
        except (FilterError, ValueError) as e:
            problems.append(cfg.problem("bpf", one_line(e), i))
    if getattr(args, "sample_drops", None):
        d = os.path.dirname(os.path.abspath(args.sample_drops))
        if not os.path.isdir(d):
            problems.append(cfg.problem("sample_drops", "the directory %s does not exist" % d))
    if getattr(args, "python", None):
        from .worker import load_function
        try:
            load_function(args.python)
        except (ValueError, OSError) as e:
            problems.append(cfg.problem("python", one_line(e)))
    return problems
