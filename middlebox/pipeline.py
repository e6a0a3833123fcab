"""Pipelines whose stages scale on their own (NetChannel's lesson): one RX
stage reads the input and spreads flows over N work stages by a symmetric
hash, a TX stage merges their output; every stage is a pinned process, the
stages are joined by netmapy pipes (zero copy between pipes).

    netmapy-pipeline packet:a0/R packet:b0/T --stages filter=2 --rules big.rules
    netmapy-pipeline pipe:in}0 pipe:out{0 --stages filter=2 --priority 'udp port 5060'

In Python::

    from middlebox.pipeline import Pipeline
    Pipeline("packet:a0/R", "packet:b0/T", workers=2, work="mymod:decide").run(seconds=10)

``work`` is a per-packet Python function ``decide(memoryview) -> bool``
(``loop=False``, the default), or -- with ``loop=True`` -- a function
``work(rx, tx, hi)`` that runs its own loop over the three ports (a Cython
nogil loop, for example) until ``netmapy.fastpath.stopping()``.  Without
``work``, the compiled filters (rule files, tcpdump expressions, classic
BPF) run in C.

``priority=EXPR``: packets of that class travel in separate priority pipes
and every work stage serves them before bulk packets (at most ``budget``
bulk packets between two looks at the priority pipe), so a latency-
sensitive flow does not wait behind a bulk one.

Back-pressure: by default nothing is dropped between stages -- a slow work
stage fills its pipe, the RX stage's extra buffers absorb bursts, then it
stops reading its input (counted as "blocked").  ``lossy=True`` drops the
oldest packet of the longest backlog instead, counted per pipe.
"""

import argparse
import json
import os
import sys

from netmapy import cli
from .supervisor import Supervisor


class Pipeline:
    def __init__(self, input, output=None, workers=2, filters=(), work=None, loop=False,
                 priority=None, lossy=False, extra_bufs=4096, netns=None, cpus=None,
                 name=None, slots=None, budget=64, rule_names=(), rule_descriptions=(),
                 netmask=None):
        if workers < 1 or workers > 64:
            raise ValueError("workers must be 1..64")
        self.input, self.output = input, output
        self.workers = workers
        self.filters = list(filters)
        self.work, self.loop = work, loop
        self.priority, self.lossy, self.extra_bufs = priority, lossy, extra_bufs
        self.netns = netns
        self.cpus = cpus or sorted(os.sched_getaffinity(0))
        self.name = name or "pl%d" % os.getpid()
        self.slots = slots
        self.budget = budget
        self.rule_names, self.rule_descriptions = list(rule_names), list(rule_descriptions)
        self.netmask = netmask        # for expressions that need one (ip broadcast)

    def pipe(self, end, k):
        return "pipe:%s%s%d" % (self.name, end, k)

    def specs(self):
        n = self.workers
        kw = {"slots": self.slots} if self.slots else {}
        cpu = lambda i: self.cpus[i % len(self.cpus)]
        lb_ports = [self.input] + [self.pipe("{", k) for k in range(n)]
        if self.priority:
            lb_ports += [self.pipe("{", 1000 + k) for k in range(n)]
        specs = [dict(kind="lb", queue=0, cpu=cpu(0), ports=lb_ports, netns=self.netns,
                      open_kw={}, pipe_kw=kw, nworkers=n, priority=self.priority,
                      netmask=self.netmask,
                      lossy=self.lossy, extra_bufs=self.extra_bufs,
                      dir_names=("in>pipes", "-"))]
        for k in range(n):
            ports = [self.pipe("}", k), self.pipe("{", 2000 + k)]
            if self.priority:
                ports.append(self.pipe("}", 1000 + k))
            specs.append(dict(kind="stage", queue=k, cpu=cpu(k + 1), ports=ports,
                              open_kw={}, pipe_kw=kw, filters=self.filters, python=self.work,
                              netmasks=[self.netmask, self.netmask],
                              loop=self.loop, budget=self.budget,
                              dir_names=("bulk", "priority")))
        if self.output:
            specs.append(dict(kind="merge", queue=0, cpu=cpu(0),
                              ports=[self.pipe("}", 2000 + k) for k in range(n)] + [self.output],
                              netns=self.netns, open_kw={}, pipe_kw=kw,
                              dir_names=("pipes>out", "-")))
        else:
            # no output port: a sink stage counts and releases
            specs.append(dict(kind="merge", queue=0, cpu=cpu(0),
                              ports=[self.pipe("}", 2000 + k) for k in range(n)] +
                              ["pcap:/dev/null"], netns=None, open_kw={"mode": "w"},
                              pipe_kw=kw, dir_names=("pipes>null", "-")))
        return specs

    def run(self, seconds=0, interval=1.0, out=None, stats_json=False, prometheus=None):
        sup = Supervisor("netmapy-pipeline", self.specs(), locks=(),
                         rule_names=self.rule_names, rule_descriptions=self.rule_descriptions,
                         out=out, stats_json=stats_json, prometheus=prometheus)
        return sup.run(seconds=seconds, interval=interval)


def parse_stages(text):
    """'filter=2' or 'rx=1,filter=2,tx=1' -> number of filter workers."""
    d = {}
    for part in text.split(","):
        k, sep, v = part.partition("=")
        if not sep or not v.isdigit():
            raise cli.CliError("--stages %r: expected rx=1,filter=N,tx=1" % text)
        if k not in ("rx", "filter", "tx"):
            raise cli.CliError("--stages: unknown stage %r (rx, filter, tx)" % k)
        d[k] = int(v)
    if d.get("rx", 1) != 1 or d.get("tx", 1) != 1:
        raise cli.CliError("--stages: one RX and one TX worker per pipeline (run one pipeline "
                           "per input queue to use more)")
    n = d.get("filter", 1)
    if not 1 <= n <= 64:
        raise cli.CliError("--stages: filter=1..64")
    return n


def build_parser():
    from .bridge import add_filter_args, add_stats_args
    p = argparse.ArgumentParser(
        prog="netmapy-pipeline",
        description="RX -> N filter workers -> TX, each a pinned process, joined by pipes.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("input", metavar="IN", help="input port (e.g. packet:a0/R, xdp:a0~0)")
    p.add_argument("output", metavar="OUT", nargs="?", help="output port (omit: count and drop)")
    p.add_argument("--stages", default="filter=2", help="workers per stage (default %(default)s)")
    p.add_argument("--priority", metavar="EXPR", help="latency-sensitive class, served first")
    p.add_argument("--budget", type=int, default=64,
                   help="bulk packets a worker takes between looks at the priority pipe")
    p.add_argument("--lossy", action="store_true",
                   help="drop from the longest backlog instead of holding the input back")
    p.add_argument("--extra-bufs", type=int, default=4096)
    p.add_argument("--work", metavar="MOD:FUNC", help="Python per-packet function (instead of "
                   "the compiled filters)")
    p.add_argument("--netns", help="the input/output interfaces are in this namespace")
    p.add_argument("--cpus", help="CPUs to use, e.g. 0,1")
    p.add_argument("--seconds", type=float, default=0)
    add_filter_args(p)
    add_stats_args(p)
    cli.add_common(p)
    return p


def run(args, out=sys.stdout):
    from .bridge import filter_specs, netmask_for
    n = parse_stages(args.stages)
    netmask = netmask_for(args, args.input)
    filters, names, descs = filter_specs(args, [netmask])
    if args.work:
        from .worker import load_function
        load_function(args.work)
    if args.priority:
        from middlebox.filter import Filter
        Filter().add_expression(args.priority, netmask=netmask)
    cpus = [int(x) for x in args.cpus.split(",")] if args.cpus else None
    pl = Pipeline(args.input, args.output, workers=n, filters=filters, work=args.work,
                  priority=args.priority, lossy=args.lossy, extra_bufs=args.extra_bufs,
                  netns=args.netns, cpus=cpus, budget=args.budget, rule_names=names,
                  rule_descriptions=descs, netmask=netmask)
    tot = pl.run(seconds=args.seconds, interval=args.interval, out=out,
                 stats_json=args.stats_json, prometheus=args.prometheus)
    w = tot["workers"]
    summary = dict(rx=w[0]["dirs"][0]["rx"], lb_dropped=w[0]["dirs"][0]["drop"],
                   stages=[dict(rx=x["dirs"][0]["rx"] + x["dirs"][1]["rx"],
                                fwd=x["dirs"][0]["fwd"] + x["dirs"][1]["fwd"],
                                drop=x["dirs"][0]["drop"] + x["dirs"][1]["drop"],
                                priority=x["dirs"][1]["rx"], cpu_seconds=x["cpu_seconds"])
                           for x in w[1:-1]],
                   lb_cpu_seconds=w[0]["cpu_seconds"],
                   tx=w[-1]["dirs"][0]["fwd"], restarts=tot["restarts"], rules=tot["rules"])
    print(json.dumps(dict(summary=summary)) if args.stats_json else
          "netmapy-pipeline: in %d, out %d, per worker %s" % (
              summary["rx"], summary["tx"], [s["rx"] for s in summary["stages"]]),
          file=out if args.stats_json else sys.stderr)
    return summary


def main(argv=None):
    return cli.run("netmapy-pipeline", build_parser, lambda a: (run(a), 0)[1], argv)


if __name__ == "__main__":
    sys.exit(main())
