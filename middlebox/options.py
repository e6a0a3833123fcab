"""The filter options the middlebox commands share (netmapy-bridge,
nm-offload, netmapy-pipeline), defined once, and their validation.

    @filter_options
    def command(..., rules, filter, drop, bpf, python, sample_drops, sample_max): ...

``filter_specs(args)`` turns them into the filter stages a job carries,
compiling everything once in the command so that a bad rule file or
expression is one error line before any worker starts.
"""

import click

from netmapy import cli

__all__ = ["filter_options", "filter_specs", "FILTER_GROUP"]

FILTER_GROUP = "Filters (all run in C; a packet passes when every stage lets it)"


def filter_options(f=None, *, python=True, python_flag="--python"):
    """--rules, --filter, --drop, --bpf, --python, --sample-drops, --sample-max."""
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


def filter_specs(args):
    """The filter stages from the command line, validated (compiled once
    here so a bad expression is one error line before any worker starts).
    Returns (stages, rule names, rule descriptions)."""
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
    f = build_filter(specs)
    return tuple(specs), f.names, f.descriptions
