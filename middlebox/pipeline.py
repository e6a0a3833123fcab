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

import json
import os
import re
import sys

import click

from netmapy import cli
from netmapy.names import PortName, parse_name
from .jobs import LbJob, MergeJob, PortSpec, StageJob
from .options import filter_options, filter_specs, netmask_for
from .supervisor import Supervisor


def _port(p):
    """A PortName for a port given as a PortName or a port-name string."""
    return p if isinstance(p, PortName) else parse_name(p)


class Pipeline:
    def __init__(self, input, output=None, workers=2, filters=(), work=None, loop=False,
                 priority=None, lossy=False, extra_bufs=4096, netns=None, cpus=None,
                 name=None, slots=None, budget=64, rule_names=(), rule_descriptions=(),
                 netmask=None):
        if workers < 1 or workers > 64:
            raise ValueError("workers must be 1..64")
        self.input = _port(input)
        self.output = _port(output) if output is not None else None
        self.workers = workers
        self.filters = tuple(filters)
        self.work, self.loop = work, loop
        self.priority, self.lossy, self.extra_bufs = priority, lossy, extra_bufs
        self.netns = netns
        self.cpus = cpus or sorted(os.sched_getaffinity(0))
        self.name = name or "pl%d" % os.getpid()
        self.slots = slots
        self.budget = budget
        self.rule_names, self.rule_descriptions = list(rule_names), list(rule_descriptions)
        self.netmask = netmask          # for expressions that need one (ip broadcast)

    def pipe(self, end, k):
        """A PortSpec for end '{' (master) or '}' (slave) of pipe k."""
        from netmapy.names import Mode
        mode = Mode.PIPE_MASTER if end == "{" else Mode.PIPE_SLAVE
        kw = {"slots": self.slots} if self.slots else {}
        return PortSpec(PortName("pipe", self.name, mode=mode, ring=k).canonical(), None, kw)

    def specs(self):
        """The jobs: one LbJob (RX), N StageJobs, one MergeJob (TX)."""
        n = self.workers
        cpu = lambda i: self.cpus[i % len(self.cpus)]
        lb_ports = [PortSpec(self.input, self.netns)] + [self.pipe("{", k) for k in range(n)]
        if self.priority:
            lb_ports += [self.pipe("{", 1000 + k) for k in range(n)]
        # stop_order: on a stop the supervisor stops the balancer first, then
        # the stages, then the merge; each drains what it was handed
        specs = [LbJob(ports=lb_ports, queue=0, cpu=cpu(0), nworkers=n, priority=self.priority,
                       lossy=self.lossy, extra_bufs=self.extra_bufs,
                       dir_names=("in>pipes", "-"), stop_order=0, netmasks=(self.netmask,))]
        for k in range(n):
            ports = [self.pipe("}", k), self.pipe("{", 2000 + k)]
            if self.priority:
                ports.append(self.pipe("}", 1000 + k))
            specs.append(StageJob(ports=ports, queue=k, cpu=cpu(k + 1), filters=self.filters,
                                  python=self.work, loop=self.loop, budget=self.budget,
                                  dir_names=("bulk", "priority"), stop_order=1,
                                  netmasks=(self.netmask,)))
        ins = [self.pipe("}", 2000 + k) for k in range(n)]
        if self.output:
            specs.append(MergeJob(ports=ins + [PortSpec(self.output, self.netns)], queue=0,
                                  cpu=cpu(0), dir_names=("pipes>out", "-"), stop_order=2))
        else:
            # no output port: a sink stage counts and releases
            sink = PortSpec(parse_name("pcap:/dev/null"), None, {"mode": "w"})
            specs.append(MergeJob(ports=ins + [sink], queue=0, cpu=cpu(0),
                                  dir_names=("pipes>null", "-"), stop_order=2))
        return specs

    def run(self, seconds=0, interval=1.0, out=None, stats_json=False, prometheus=None):
        remove_stale_pipes()
        sup = Supervisor("netmapy-pipeline", self.specs(), locks=(),
                         rule_names=self.rule_names, rule_descriptions=self.rule_descriptions,
                         out=out, stats_json=stats_json, prometheus=prometheus)
        return sup.run(seconds=seconds, interval=interval)


def remove_stale_pipes(out=sys.stderr):
    """Free the pipes of dead pipelines (default names plPID, PID the dead
    supervisor's) whose ends are all dead too (a SIGKILLed pipeline whose
    workers were killed as well); returns what pipe.clean_stale() did."""
    from netmapy.backends import pipe
    from netmapy.host.proc import start_time as _proc_start_time
    dead = [d for d in pipe.list_domains()
            if re.fullmatch(r"pl\d+", d) and int(d[2:]) != os.getpid() and
            _proc_start_time(int(d[2:])) is None]
    done = pipe.clean_stale(dead) if dead else []
    for parent, freed, removed in done:
        if not (freed or removed):
            continue                    # its pipes have live ends: kept
        print("netmapy-pipeline: freed %d pipe(s) of a dead pipeline%s: %s" % (
            freed, " and removed its memory" if removed else "", parent), file=out)
    return done


def parse_stages(text):
    """'filter=2' or 'rx=1,filter=2,tx=1' -> number of filter workers."""
    d = {}
    for part in text.split(","):
        k, sep, v = part.partition("=")
        if not sep or not v.isdigit():
            raise ValueError("%r: expected rx=1,filter=N,tx=1" % text)
        if k not in ("rx", "filter", "tx"):
            raise ValueError("unknown stage %r (rx, filter, tx)" % k)
        d[k] = int(v)
    if d.get("rx", 1) != 1 or d.get("tx", 1) != 1:
        raise ValueError("one RX and one TX worker per pipeline (run one pipeline per input "
                         "queue to use more)")
    n = d.get("filter", 1)
    if not 1 <= n <= 64:
        raise ValueError("filter=1..64")
    return n


def _stages(ctx, param, value):
    try:
        return parse_stages(value)
    except ValueError as e:
        raise click.BadParameter(str(e))


EPILOG = __doc__.split("\n\n", 1)[1] + "\n" + cli.completion_help("netmapy-pipeline")


@cli.command("netmapy-pipeline", epilog=EPILOG)
@click.argument("input", metavar="IN", type=cli.PORT_OR_IFACE)
@click.argument("output", metavar="[OUT]", type=cli.PORT_OR_IFACE, required=False)
@click.option("--stages", default="filter=2", show_default=True, callback=_stages,
              help="workers per stage: filter=N, or rx=1,filter=N,tx=1")
@click.option("--priority", metavar="EXPR", help="latency-sensitive class, served first")
@click.option("--budget", type=cli.IntRange(min=1), default=64, show_default=True,
              help="bulk packets a worker takes between looks at the priority pipe")
@click.option("--lossy", is_flag=True,
              help="drop from the longest backlog instead of holding the input back")
@click.option("--extra-bufs", type=cli.IntRange(min=0), default=4096, show_default=True,
              help="buffers for bursts a pipe cannot take at once")
@cli.backend_option(help="the backend IN and OUT are opened with when they are interface "
                         "names: " + cli.BACKEND_HELP)
@cli.netns_option(help="the input/output interfaces are in this namespace")
@cli.cpus_option(help="CPUs to use, e.g. 0,1 (default: all this process may use)")
@cli.seconds_option()
@filter_options(python_flag="--work")
@cli.output_options(prometheus=True)
@cli.common_options
@cli.pass_args
def command(args):
    """RX -> N filter workers -> TX, each a pinned process, joined by pipes.

    IN and OUT are port names (packet:a0/R, xdp:a0~0, pipe:in}0) or Linux
    interface names as they are (opened with --backend); omit OUT to count
    and drop.
    """
    run(args)


def run(args, out=sys.stdout):
    n = args.stages
    netmask = netmask_for(args, args.input)
    filters, names, descs = filter_specs(args, [netmask])
    if args.python:
        from .worker import load_function
        load_function(args.python)
    if args.priority:
        from middlebox.filter import Filter
        Filter().add_expression(args.priority, netmask=netmask)
    inp = cli.port_for(args.input, args.backend)
    outp = cli.port_for(args.output, args.backend) if args.output is not None else None
    pl = Pipeline(inp, outp, workers=n, filters=filters, work=args.python,
                  priority=args.priority, lossy=args.lossy, extra_bufs=args.extra_bufs,
                  netns=args.netns, cpus=args.cpus, budget=args.budget, rule_names=names,
                  rule_descriptions=descs, netmask=netmask)
    tot = pl.run(seconds=args.seconds, interval=args.interval, out=out,
                 stats_json=args.json, prometheus=args.prometheus)
    w = tot["workers"]
    summary = dict(rx=w[0]["dirs"][0]["rx"], lb_dropped=w[0]["dirs"][0]["drop"],
                   stages=[dict(rx=x["dirs"][0]["rx"] + x["dirs"][1]["rx"],
                                fwd=x["dirs"][0]["fwd"] + x["dirs"][1]["fwd"],
                                drop=x["dirs"][0]["drop"] + x["dirs"][1]["drop"],
                                priority=x["dirs"][1]["rx"], cpu_seconds=x["cpu_seconds"])
                           for x in w[1:-1]],
                   lb_cpu_seconds=w[0]["cpu_seconds"],
                   tx=w[-1]["dirs"][0]["fwd"], restarts=tot["restarts"], rules=tot["rules"])
    print(json.dumps(dict(summary=summary)) if args.json else
          "netmapy-pipeline: in %d, out %d, per worker %s" % (
              summary["rx"], summary["tx"], [s["rx"] for s in summary["stages"]]),
          file=out if args.json else sys.stderr)
    return summary


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
