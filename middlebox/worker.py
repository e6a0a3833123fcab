"""A middlebox worker process: one queue (or queue pair), pinned to one
core, running a nogil loop from middlebox.loop with counters in shared
memory.  Started by the supervisor (middlebox.supervisor); everything it
needs arrives in a picklable spec dict.
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


def main(spec, errors=None):
    """Run one worker until SIGTERM/SIGINT (or its duration) ends it."""
    from middlebox import loop, stats as st
    # our C-level SIGTERM/SIGINT handlers stop the loops; the xdp backend
    # must not replace them with Python ones (those would wait for the GIL)
    os.environ["NETMAPY_NO_SIGNAL_HANDLERS"] = "1"
    loop.install_signal_handlers()
    _die_with_parent()
    if os.getppid() != spec["parent"]:
        return 0                      # the supervisor is already gone
    try:
        os.setpgrp()                  # Ctrl-C reaches the supervisor, which stops us
    except OSError:
        pass
    w = spec["index"]
    stats = st.Stats.open(spec["stats"])
    blk = stats.block(w)
    blk[st.W_PID] = os.getpid()
    blk[st.W_QUEUE] = spec.get("queue", 0)
    blk[st.W_CPU] = spec.get("cpu", 0)
    blk[st.W_STATE] = 0
    ports = []
    try:
        if spec.get("cpu") is not None:
            os.sched_setaffinity(0, {spec["cpu"]})
        import netmapy
        filters = []
        netmasks = spec.get("netmasks") or (None, None)
        for d in range(2 if spec["kind"] == "bridge" else 1):
            f = build_filter(spec.get("filters", []), netmask=netmasks[d])
            hits, limited = stats.rule_counters(w, d)
            if f.num_counters:
                f.attach_counters(hits, limited)
            filters.append(f)
        kw = spec.get("open_kw", {})
        for name in spec["ports"]:
            if name.startswith("pipe:"):
                ports.append(netmapy.open(name, **spec.get("pipe_kw", {})))
            else:
                ports.append(netmapy.open(name, netns=spec.get("netns"), **kw))
        samples = []
        if spec.get("sample"):
            samples.append(netmapy.open("pcap:" + spec["sample"], mode="w", slots=256))
        if spec["kind"] == "lb":
            from middlebox import lb
            from middlebox.filter import Filter
            signal.signal(signal.SIGTERM, lambda *a: lb.stop())
            signal.signal(signal.SIGINT, lambda *a: lb.stop())
            src = ports[0]
            n = spec["nworkers"]
            outs = ports[1:1 + n]
            prio = None
            pp = None
            if spec.get("priority"):
                prio = Filter().add_expression(spec["priority"], netmask=spec.get("netmask"))
                prio.attach_counters()
                pp = [("w", ports[1 + n:1 + 2 * n])]
            b = lb.Balancer(src, [("w", outs)], extra_bufs=spec.get("extra_bufs", 4096),
                            lossy=spec.get("lossy", False), priority=prio, prio_groups=pp)
            b.run(counters=blk)
        elif spec["kind"] == "stage" and spec.get("python"):
            from netmapy import fastpath
            signal.signal(signal.SIGTERM, lambda *a: fastpath.stop())
            signal.signal(signal.SIGINT, lambda *a: fastpath.stop())
            fn = load_function(spec["python"])
            lo, out = ports[0], ports[1]
            hi = ports[2] if len(ports) > 2 else None
            blk[st.W_STATE] = 1
            if spec.get("loop"):
                fn(lo, out, hi)                     # the user's own loop
            else:
                fastpath.forward_py(lo, out, fn, counters=blk, hi=hi)
        elif spec["kind"] == "stage":
            lo, out = ports[0], ports[1]
            hi = ports[2] if len(ports) > 2 else None
            loop.stage(lo, out, filters[0], blk, hi=hi, budget=spec.get("budget", 64),
                       seconds=spec.get("seconds", 0))
        elif spec["kind"] == "merge":
            loop.merge(ports[:-1], ports[-1], blk, seconds=spec.get("seconds", 0))
        elif spec["kind"] == "bridge" and spec.get("python"):
            from netmapy import fastpath
            signal.signal(signal.SIGTERM, lambda *a: fastpath.stop())
            signal.signal(signal.SIGINT, lambda *a: fastpath.stop())
            fn = load_function(spec["python"])
            a, b = ports
            fastpath.bridge_py(a, b, fn, counters=blk, wait_ms=spec.get("wait_ms", 100),
                               seconds=spec.get("seconds", 0))
        elif spec["kind"] == "bridge":
            a, b = ports
            loop.bridge(a, b, filters[0], filters[1], blk,
                        samples[0] if samples else None, None,
                        wait_ms=spec.get("wait_ms", 100), seconds=spec.get("seconds", 0),
                        sample_max=spec.get("sample_max", 0))
        elif spec["kind"] == "offload":
            src = ports[0]
            dst = ports[1] if len(ports) > 1 else ports[0]
            tx_ring = spec["tx_ring"]
            if tx_ring == "host":                 # the first host TX ring
                if not dst.host_tx:
                    raise ValueError("%s has no host TX ring to reinject into" % dst.name)
                tx_ring = dst.num_tx_rings
            loop.offload(src, spec.get("rx_ring", 0), dst, tx_ring, filters[0], blk,
                         samples[0] if samples else None, wait_ms=spec.get("wait_ms", 100),
                         seconds=spec.get("seconds", 0), sample_max=spec.get("sample_max", 0))
        else:
            raise ValueError("unknown worker kind %r" % spec["kind"])
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
