"""nm-offload and netmapy-bridge as long-running services: what their
``--config``, ``--check`` and ``--reload`` do, and the state a running
supervisor keeps for them.

    nm-offload --config /etc/netmapy/eth3.toml            # run
    nm-offload --config /etc/netmapy/eth3.toml --check    # validate; touch nothing
    nm-offload --config /etc/netmapy/eth3.toml --reload   # the running one re-reads it

``--check`` reads the file (middlebox.config), then checks what the values
mean without touching any interface: that the interfaces and queues exist
(read from /sys), that every rule file, expression and BPF program
compiles, that the in-kernel rule program loads (the kernel's verifier
runs it through; it is never attached), that a Python function imports.
One line per problem: ``FILE:LINE: KEY: what is wrong``; exit 1 if any.

``--reload`` finds the running instance -- by the configuration file it
was started with, else by the lock of its interface -- sends it SIGHUP,
waits for the outcome and prints it: exit 0 when the new filters are in
force, 1 when the reload was refused (the old ones stay).

A running supervisor keeps its state in ``ctl/PROG-PID.json`` of the run
directory (netmapy.host.rundir): the configuration file, the rules in force
and their counter slots, the number of reloads and the last one's outcome.
"""

import json
import os
import signal
import sys
import time

from netmapy import cli
from netmapy.errors import NetmapyError

__all__ = ["StateFile", "remove_stale_state", "find_instance", "request_reload", "Service",
           "LIVE_PARAMS"]

#: what a reload may change: the filters
LIVE_PARAMS = ("rules", "filter", "drop", "bpf")


def _ctl_dir():
    from netmapy.host import rundir
    return rundir.rundir("ctl")


def _start_time(pid):
    from netmapy.host.proc import start_time as _proc_start_time
    return _proc_start_time(pid)


class StateFile:
    """ctl/PROG-PID.json: written whole (a new file renamed over the old),
    removed at the end of the run."""

    def __init__(self, prog, pid=None):
        self.pid = pid or os.getpid()
        self.path = os.path.join(_ctl_dir(), "%s-%d.json" % (prog, self.pid))

    def write(self, state):
        state = dict(state, start=_start_time(self.pid) or 0)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, self.path)

    def remove(self):
        for p in (self.path, self.path + ".tmp"):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _alive(state):
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    start = _start_time(pid)
    return start is not None and state.get("start") in (0, start)


def remove_stale_state(prog):
    """Remove the state files of dead runs of `prog`."""
    d = _ctl_dir()
    for f in os.listdir(d):
        if not (f.startswith(prog + "-") and (f.endswith(".json") or f.endswith(".tmp"))):
            continue
        path = os.path.join(d, f)
        st = _read(path)
        if st is None or not _alive(st):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def find_instance(prog, config=None, netns=None, ifname=None):
    """The state of the running `prog` started with this configuration
    file (or holding this interface's lock); NetmapyError when none runs."""
    d = _ctl_dir()
    if config:
        config = os.path.abspath(config)
        for f in sorted(os.listdir(d)):
            if f.startswith(prog + "-") and f.endswith(".json"):
                st = _read(os.path.join(d, f))
                if st and st.get("config") == config and _alive(st):
                    st["_path"] = os.path.join(d, f)
                    return st
    if ifname:
        from .ifacelock import InterfaceLock
        lk = InterfaceLock(prog, netns, ifname)
        try:
            with open(lk.path) as f:
                holder = f.read(200).split()
        except OSError:
            holder = []
        if holder[:2] == [prog, "pid"] and holder[2:3] and holder[2].isdigit():
            path = os.path.join(d, "%s-%s.json" % (prog, holder[2]))
            st = _read(path)
            if st and _alive(st):
                st["_path"] = path
                return st
    where = ("started with %s" % config) if config else ("on %s%s" % (
        ifname, " in namespace %s" % netns if netns else "")) if ifname else "here"
    raise NetmapyError("no running %s %s: start it first (or give the configuration file "
                       "it was started with)" % (prog, where))


def request_reload(state, timeout=120.0, out=sys.stderr):
    """SIGHUP to the instance of `state` (find_instance's); wait for its
    outcome.  Returns (ok, message)."""
    path = state["_path"]
    before = state.get("reloads", 0)
    os.kill(state["pid"], signal.SIGHUP)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = _read(path)
        if st is None:
            if not _alive(state):
                return False, "the instance (pid %d) exited" % state["pid"]
        elif st.get("reloads", 0) > before and st.get("last_reload"):
            r = st["last_reload"]
            return bool(r.get("ok")), r.get("message", "")
        time.sleep(0.05)
    return False, "no outcome within %d s (the instance may be busy starting its workers: " \
                  "look at its log)" % timeout


class Service:
    """What a service command does with --config, --check and --reload
    (see the module documentation).  ``checks(args, cfg)`` is the
    command's: it returns (problems, notes) about the resolved values
    without touching an interface."""

    def __init__(self, prog, section, arguments, checks, lock_of):
        self.prog, self.section, self.arguments = prog, section, arguments
        self.checks, self.lock_of = checks, lock_of

    def config(self, ctx, args):
        from .config import ServiceConfig
        return ServiceConfig(ctx, args.config, self.section, self.arguments, live=LIVE_PARAMS)

    def dispatch(self, ctx, args, run):
        """--reload, --check, --status, or run(args, cfg) with the resolved
        values."""
        cfg = self.config(ctx, args)
        if sum(map(bool, (args.reload, args.check, args.status))) > 1:
            raise cli.usage_error("--check, --reload and --status are one at a time")
        if args.reload:
            return self.reload(cfg)
        if args.check:
            return self.check(cfg)
        if args.status:
            return self.status(cfg, args.json, cfg.given.get("interval") or 1.0)
        return run(cfg.resolve(), cfg)

    def instance(self, cfg):
        """The running instance's state (find_instance) for this
        configuration file, or this command line's interface."""
        from .config import ConfigError
        netns = ifname = None
        try:
            a = cfg.resolve()
            netns, ifname = self.lock_of(a)
        except (ConfigError, NetmapyError):
            if not cfg.path:
                raise
        return find_instance(self.prog, cfg.path, netns, ifname)

    def reload(self, cfg):
        st = self.instance(cfg)
        ok, msg = request_reload(st)
        print("%s: pid %d: reload %s" % (self.prog, st["pid"], msg),
              file=sys.stdout if ok else sys.stderr, flush=True)
        return cli.EXIT_OK if ok else cli.EXIT_ERROR

    def check(self, cfg):
        from .config import ConfigError
        problems = []
        try:
            args = cfg.resolve(problems)
        except ConfigError as e:                 # the file does not parse at all
            problems = e.problems
            args = None
        if args is not None:
            # what the values mean, except those already found wrong
            bad = {str(p.key).split("[")[0] for p in problems}
            more, notes = self.checks(args, cfg)
            problems += [p for p in more if str(p.key).split("[")[0] not in bad]
        else:
            notes = []
        problems.sort(key=lambda p: (p.path or "", p.line or 0))
        for p in problems:
            print("%s: %s" % (self.prog, p), file=sys.stderr)
        for n in notes:
            print("%s: note: %s" % (self.prog, n), file=sys.stderr)
        if problems:
            return cli.EXIT_ERROR
        print("%s: %s: OK" % (self.prog, cfg.path or "the command line"), flush=True)
        return cli.EXIT_OK

    def status(self, cfg, as_json=False, seconds=1.0):
        """--status: the running instance's counters, rules and attack view
        over `seconds`, read from its shared memory (read-only)."""
        from . import stats as st_
        from .attack import AttackView
        from .table import rate_rows, table_lines
        state = self.instance(cfg)
        stats = st_.Stats.open(state["stats"], writable=False)
        slots = [r["slot"] for r in state.get("rules", [])]
        attack = AttackView(stats, state.get("attack_sample") or 0) \
            if state.get("attack_sample") else None
        s0 = stats.snapshot(rules=slots)
        t0 = time.monotonic()
        drops0 = sum(w["dirs"][d]["drop"] for w in s0 for d in range(2))
        if attack is not None:
            attack.skip(drops0)
        time.sleep(seconds)
        s1 = stats.snapshot(rules=slots)
        dt = time.monotonic() - t0
        rows = rate_rows(s0, s1, dt, state.get("dir_names") or [("a>b", "b>a")] * len(s1))
        rules = []
        for i, r in enumerate(state.get("rules", [])):
            rules.append(dict(rule=r["rule"], text=r["text"],
                              packets=sum(w["rules"][d][0][i] for w in s1 for d in range(2)),
                              ratelimited=sum(w["rules"][d][1][i] for w in s1 for d in range(2))))
        view = attack.roll(sum(w["dirs"][d]["drop"] for w in s1 for d in range(2))) \
            if attack is not None else None
        last = state.get("last_reload") or {}
        if as_json:
            print(json.dumps(dict(time=time.time(), pid=state["pid"], config=state.get("config"),
                                  generation=state.get("generation"),
                                  reloads=state.get("reloads"), last_reload=last or None,
                                  workers=rows, rules=rules, attack=view)), flush=True)
        else:
            head = "%s pid %d%s: generation %d, %d reload(s)%s" % (
                self.prog, state["pid"],
                ", %s" % state["config"] if state.get("config") else "",
                state.get("generation", 0), state.get("reloads", 0),
                "; last: %s" % last["message"] if last else "")
            lines = [head] + table_lines(self.prog, rows, state.get("dir_names"), rules,
                                         state.get("generation"))[1:]
            if attack is not None:
                lines += attack.table_lines()
            print("\n".join(lines), flush=True)
        stats.close()
        return cli.EXIT_OK
