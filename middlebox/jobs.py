"""What a middlebox worker process does: one typed spec per kind of job.

A command (netmapy-bridge, nm-offload, netmapy-pipeline) plans its workers
as a list of job objects; the supervisor starts one process per job
(middlebox.worker), which opens the job's ports, builds its filters and
calls ``job.run(ctx)``.  A job is a dataclass (picklable: it crosses the
process boundary as it is) whose ports are ``PortSpec`` values carrying a
``netmapy.PortName`` -- an interface travels by its Linux name, never as a
string to be parsed again.

    BridgeJob    two ports, both directions (netmapy-bridge)
    OffloadJob   one queue scrubbed, what passes reinjected (nm-offload)
    StageJob     a pipeline work stage: filter (or a Python function) between pipes
    MergeJob     a pipeline TX stage: several pipes into one port
    LbJob        a pipeline RX stage: one port spread over pipes by flow hash

A new kind of worker is one more subclass of ``Job`` with a ``kind`` and a
``run(ctx)``; ``JOBS`` maps each kind to its class.
"""

from dataclasses import dataclass, field
from typing import ClassVar, Dict, List, Optional, Tuple, Union

from netmapy.names import PortName

__all__ = ["PortSpec", "Job", "BridgeJob", "OffloadJob", "StageJob", "MergeJob", "LbJob",
           "JOBS", "job_class", "WorkerContext"]


@dataclass(frozen=True)
class PortSpec:
    """A port a worker opens: its PortName, the network namespace to open
    it in, and the backend options (``promisc=True``, ``steer=EXPR``...)."""

    name: PortName
    netns: Optional[str] = None
    options: Dict[str, object] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, PortName):
            raise TypeError("PortSpec.name is a PortName, not %s (build it with "
                            "PortName.interface() or parse_name())" % type(self.name).__name__)

    def open(self):
        import netmapy
        return netmapy.open(self.name, netns=self.netns, **self.options)

    def __str__(self):
        return str(self.name)


@dataclass
class WorkerContext:
    """What a running job gets: its opened ports, its filters (one per
    direction), its counter block in shared memory, the capture files for
    sampled drops, its drop sample ring (the attack view) and, when the
    supervisor can reload its filters, ``serve_reloads(swap)`` to call with
    the loop's FilterSwap (middlebox.swap) before the loop starts."""

    ports: list
    filters: list
    counters: object
    samples: list
    index: int = 0
    drop_ring: object = None
    one_in: int = 0
    reloads: object = None              # middlebox.reload.Agent, or None

    def serve_reloads(self, swap, kernel_loader=None, port=None):
        """Let the supervisor swap this loop's filters (and the in-kernel
        rule program: ``kernel_loader(filter) -> KernelRules or None``,
        installed on ``port``) while it runs."""
        if self.reloads is not None:
            self.reloads.serve(swap, kernel_loader, port)

    def stop_reloads(self):
        if self.reloads is not None:
            self.reloads.close()


JOBS = {}


@dataclass
class Job:
    """The fields every job has.  Subclasses set ``kind`` and ``run``."""

    ports: List[PortSpec]
    queue: int = 0
    cpu: Optional[int] = None
    filters: tuple = ()                 # filter stages (middlebox.worker.build_filter)
    python: Optional[str] = None        # MODULE:FUNC deciding per packet, instead
    sample: Optional[str] = None        # write dropped packets to this pcap file
    sample_max: int = 0
    counter_slots: tuple = ()           # each filter counter's slot (middlebox.rulecounters)
    dir_names: Tuple[str, str] = ("a>b", "b>a")
    wait_ms: int = 100
    seconds: float = 0
    stop_order: int = 0                 # stopped in this order (pipelines: lb, stages, merge)
    netmasks: tuple = ()                # per direction: for expressions that need one

    kind: ClassVar[str] = ""
    directions: ClassVar[int] = 1       # filters built per direction

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:
            if cls.kind in JOBS:
                raise TypeError("job kind %r is defined twice" % cls.kind)
            JOBS[cls.kind] = cls

    def __post_init__(self):
        self.ports = list(self.ports)
        for p in self.ports:
            if not isinstance(p, PortSpec):
                raise TypeError("%s: ports are PortSpec values, not %s"
                                % (type(self).__name__, type(p).__name__))

    def netmask(self, d=0):
        """The netmask expressions of direction d are compiled with."""
        return self.netmasks[d] if d < len(self.netmasks) else None

    def run(self, ctx):
        """Run until the process-wide stop flag (netmapy.stop: SIGTERM or
        SIGINT, set by the worker's C handlers) or the duration ends it."""
        raise NotImplementedError


def job_class(kind):
    """The Job subclass for a kind name (KeyError lists the known ones)."""
    try:
        return JOBS[kind]
    except KeyError:
        raise KeyError("unknown worker kind %r (known: %s)" % (kind, ", ".join(sorted(JOBS))))


@dataclass
class BridgeJob(Job):
    """Forward both ways between ports[0] and ports[1]."""

    kind: ClassVar[str] = "bridge"
    directions: ClassVar[int] = 2

    def run(self, ctx):
        from middlebox import loop
        a, b = ctx.ports
        if self.python:
            from middlebox import pyloop
            from middlebox.worker import load_function
            fn = load_function(self.python)
            pyloop.bridge_py(a, b, fn, counters=ctx.counters, wait_ms=self.wait_ms,
                               seconds=self.seconds)
            return
        from middlebox.swap import FilterSwap
        sw = FilterSwap(ctx.filters[:2])
        ctx.serve_reloads(sw)
        try:
            loop.bridge(a, b, None, None, ctx.counters,
                        ctx.samples[0] if ctx.samples else None, None,
                        wait_ms=self.wait_ms, seconds=self.seconds, sample_max=self.sample_max,
                        fswap=sw)
        finally:
            ctx.stop_reloads()


@dataclass
class OffloadJob(Job):
    """Scrub RX ring ``rx_ring`` of ports[0]; reinject what passes into TX
    ring ``tx_ring`` of ports[1] (or ports[0]), "host" being the first host
    TX ring."""

    rx_ring: int = 0
    tx_ring: Union[int, str] = "host"
    rules_in: str = "auto"              # where a rule file runs: auto, kernel, user
    prog: str = "nm-offload"            # the command, for messages

    kind: ClassVar[str] = "offload"

    def run(self, ctx):
        from middlebox import loop
        from middlebox.swap import FilterSwap
        src = ctx.ports[0]
        dst = ctx.ports[1] if len(ctx.ports) > 1 else ctx.ports[0]
        tx_ring = self.tx_ring
        if tx_ring == "host":
            if not dst.host_tx:
                raise ValueError("%s has no host TX ring to reinject into" % dst.name)
            tx_ring = dst.num_tx_rings

        def kernel_loader(f, reload=False):
            return self._kernel_rules(ctx, src, f, reload)
        kr = kernel_loader(ctx.filters[0])
        if kr is not None:
            src.set_queue_program(kr.prog_fd)
        sw = FilterSwap([ctx.filters[0]], kr)
        ctx.serve_reloads(sw, kernel_loader, src)
        try:
            loop.offload(src, self.rx_ring, dst, tx_ring, None, ctx.counters,
                         ctx.samples[0] if ctx.samples else None, wait_ms=self.wait_ms,
                         seconds=self.seconds, sample_max=self.sample_max, fswap=sw)
        finally:
            ctx.stop_reloads()
            progs = sw.kernel_programs()
            if progs:
                # the queue back to the kernel first, then the last counts
                src.close()
                sw.final_fold(ctx.counters)
                for k in progs:
                    k.close()

    def _kernel_rules(self, ctx, port, f, reload=False):
        """The in-kernel rule program (middlebox.kfilter) for filter f, not
        yet installed (``port.set_queue_program``); None when the rules run
        in user space.  ``rules_in``: "auto" (the kernel when it can, else
        user space, saying why once), "kernel" (the kernel or an error),
        "user".  Its dropped packets go to user space while drops are
        sampled into pcap files; 1 of K is described for the attack view."""
        import sys
        from middlebox import stats as st
        where = self.rules_in
        if where == "user" or f is None or not f.is_rules_first():
            if where == "kernel":
                raise ValueError("--rules-in kernel needs a rule file as the first filter "
                                 "(--rules)")
            return None
        from middlebox.kfilter import KernelRules, KernelFilterUnavailable
        sampling = bool(ctx.samples) and self.sample_max > 0 and \
            ctx.counters[st.W_SAMPLED] < self.sample_max
        try:
            if not hasattr(port, "set_queue_program"):
                raise KernelFilterUnavailable("the %s backend has no XDP program to run them in"
                                              % port.backend)
            kr = KernelRules(f, port.xsk_map_fd, punt_drops=sampling)
        except KernelFilterUnavailable as e:
            if where == "kernel":
                raise
            if ctx.index == 0:
                print("%s: rules run in user space%s: %s" % (
                    self.prog, " after the reload" if reload else "", e), file=sys.stderr,
                    flush=True)
            return None
        if ctx.one_in and ctx.drop_ring is not None:
            kr.sample_drops(ctx.drop_ring, ctx.one_in)
        return kr


@dataclass
class StageJob(Job):
    """A pipeline work stage: ports[0] (bulk in) -> ports[1] (out), ports[2]
    (priority in) served first; compiled filters, a Python per-packet
    function (``python``) or, ``loop=True``, the user's own loop
    ``python(lo, out, hi)``."""

    loop: bool = False
    budget: int = 64

    kind: ClassVar[str] = "stage"

    def run(self, ctx):
        lo, out = ctx.ports[0], ctx.ports[1]
        hi = ctx.ports[2] if len(ctx.ports) > 2 else None
        if self.python:
            from middlebox import pyloop
            from middlebox.worker import load_function
            from middlebox import stats as st
            fn = load_function(self.python)
            ctx.counters[st.W_STATE] = 1
            if self.loop:
                fn(lo, out, hi)
            else:
                pyloop.forward_py(lo, out, fn, counters=ctx.counters, hi=hi)
            return
        from middlebox import loop
        loop.stage(lo, out, ctx.filters[0], ctx.counters, hi=hi, budget=self.budget,
                   seconds=self.seconds)


@dataclass
class MergeJob(Job):
    """A pipeline TX stage: ports[:-1] merged into ports[-1]."""

    kind: ClassVar[str] = "merge"

    def run(self, ctx):
        from middlebox import loop
        loop.merge(ctx.ports[:-1], ctx.ports[-1], ctx.counters, seconds=self.seconds)


@dataclass
class LbJob(Job):
    """A pipeline RX stage: ports[0] spread over ports[1:1+nworkers] by a
    symmetric flow hash (and, with ``priority``, its class over the next
    ``nworkers`` ports)."""

    nworkers: int = 1
    priority: Optional[str] = None
    lossy: bool = False
    extra_bufs: int = 4096

    kind: ClassVar[str] = "lb"

    def run(self, ctx):
        from middlebox import lb
        from middlebox.filter import Filter
        n = self.nworkers
        src, outs = ctx.ports[0], ctx.ports[1:1 + n]
        prio = pp = None
        if self.priority:
            prio = Filter().add_expression(self.priority, netmask=self.netmask(0))
            prio.attach_counters()
            pp = [("w", ctx.ports[1 + n:1 + 2 * n])]
        b = lb.Balancer(src, [("w", outs)], extra_bufs=self.extra_bufs, lossy=self.lossy,
                        priority=prio, prio_groups=pp)
        b.run(counters=ctx.counters)
