"""A middlebox worker process: one queue (or queue pair), pinned to one
core, running a nogil loop from middlebox.loop with counters in shared
memory.  Started by the supervisor (middlebox.supervisor); everything it
needs arrives in its job (a middlebox.jobs.Job: typed, picklable, ports as
PortName values), which says what to run.
"""

import ctypes
import os
import signal
import sys
import traceback

PR_SET_PDEATHSIG = 1


def build_filter(filters, source_tag="", netmask=None):
    """A middlebox.filter.Filter from a list of stage specs:
    ("rules", text, source), ("expr", expression, drop), ("bpf", text, drop, name);
    expressions are compiled with `netmask` (for those that need one)."""
    from middlebox.filter import Filter
    from middlebox import rules
    f = Filter()
    for st in filters:
        kind = st[0]
        if kind == "rules":
            f.add_rules(rules.parse(st[1], st[2]))
        elif kind == "expr":
            f.add_expression(st[1], drop=st[2], netmask=netmask)
        elif kind == "bpf":
            f.add_bpf(st[1], drop=st[2], name=st[3])
        else:
            raise ValueError("unknown filter stage %r" % (kind,))
    return f


def load_function(ref):
    """'module:function' or 'path/to/file.py:function' -> the callable."""
    import importlib
    import importlib.util
    mod, sep, name = ref.rpartition(":")
    if not sep or not mod or not name:
        raise ValueError("--python wants MODULE:FUNCTION or FILE.py:FUNCTION, not %r" % ref)
    try:
        if mod.endswith(".py"):
            spec = importlib.util.spec_from_file_location("netmapy_user_fn", mod)
            if spec is None or not os.path.exists(mod):
                raise ValueError("cannot load %s: no such file" % mod)
            m = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(m)
        else:
            m = importlib.import_module(mod)
    except ImportError as e:
        raise ValueError("cannot import %s: %s" % (mod, e)) from None
    except SyntaxError as e:
        raise ValueError("%s:%s: %s" % (e.filename, e.lineno, e.msg)) from None
    fn = getattr(m, name, None)
    if not callable(fn):
        raise ValueError("%s has no function %r" % (mod, name))
    return fn


def _die_with_parent():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(job, index, stats_path, parent, errors=None, ctl=None):
    """Run one job (a middlebox.jobs.Job) as worker ``index`` until
    SIGTERM/SIGINT (or its duration) ends it; ``stats_path`` is the shared
    counter file, ``parent`` the supervisor's pid, ``ctl`` the pipe the
    supervisor sends reloads through (middlebox.reload)."""
    from middlebox import stats as st
    from middlebox.jobs import WorkerContext
    from netmapy import stop
    # SIGTERM/SIGINT set the process-wide stop flag (C handlers) that every
    # loop below reads, also while it never returns to Python (Python
    # handlers would wait for the GIL)
    stop.reset()
    stop.install_handlers()
    # a reload is the supervisor's signal (SIGHUP), not ours: a hangup of
    # the terminal or a `kill -HUP` of the whole group must not end a worker
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() != parent:
        return 0                      # the supervisor is already gone
    try:
        os.setpgrp()                  # Ctrl-C reaches the supervisor, which stops us
    except OSError:
        pass
    w = index
    stats = st.Stats.open(stats_path)
    blk = stats.block(w)
    blk[st.W_PID] = os.getpid()
    blk[st.W_QUEUE] = job.queue
    blk[st.W_CPU] = job.cpu or 0
    blk[st.W_STATE] = 0
    ports = []
    try:
        if job.cpu is not None:
            os.sched_setaffinity(0, {job.cpu})
        import netmapy
        one_in = stats.one_in
        ring = stats.drop_ring(w) if one_in else None

        def filter_for(stages, slots, d):
            """A direction's filter, counting into its rule counter slots
            and sampling its drops for the attack view (expressions compiled
            with the netmask of the interface the direction receives on)."""
            f = build_filter(stages, netmask=job.netmask(d))
            hits, limited = stats.rule_counters(w, d)
            if f.num_counters:
                f.attach_counters(hits, limited, slots=list(slots) if slots else None)
            if ring is not None:
                f.set_drop_sampler(ring, d)
            return f
        filters = [filter_for(job.filters, job.counter_slots, d) for d in range(job.directions)]
        for p in job.ports:
            ports.append(p.open())
        samples = []
        if job.sample:
            samples.append(netmapy.open(netmapy.PortName("pcap", job.sample), mode="w",
                                        slots=256))
        ctx = WorkerContext(ports=ports, filters=filters, counters=blk, samples=samples,
                            index=w, drop_ring=ring, one_in=one_in)
        if ctl is not None:
            from middlebox.reload import Agent
            ctx.reloads = Agent(ctl, job, w, stats, ctx, filter_for)
        job.run(ctx)
        for s in samples:
            s.close()
        blk[st.W_STATE] = 3
        return 0
    except BaseException as e:
        blk[st.W_STATE] = 4
        msg = "%s" % (e,) if not isinstance(e, (KeyboardInterrupt,)) else "interrupted"
        if errors is not None:
            try:
                from netmapy.errors import QueueBusy
                errors.put((w, msg, traceback.format_exc(), isinstance(e, QueueBusy)))
            except Exception:
                pass
        if isinstance(e, KeyboardInterrupt):
            return 0
        sys.exit(1)
    finally:
        for p in ports:
            try:
                p.close()
            except Exception:
                pass
        stats.close()
