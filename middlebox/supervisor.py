"""The supervisor: one pinned worker process per queue, restarted when it
dies, counters sampled from shared memory, clean stop on SIGINT/SIGTERM.

    sup = Supervisor("netmapy-bridge", jobs, locks=[("mbox", "a0"), ...])
    sup.run(seconds=0, interval=1.0)

``jobs`` are middlebox.jobs.Job values (BridgeJob, OffloadJob ...), one
per worker process.

It takes a lock per interface (a second instance is refused), runs the
setup steps given to it (NIC changes, journaled so a crashed run is
repaired by the next start) and undoes them on exit, whatever the exit.
A start also removes what dead runs of the same program left behind (their
counter files, their lock files).

SIGINT/SIGTERM set the process-wide stop flag (netmapy.stop, installed for
the duration of run()): the supervisor then stops the workers (each stops
on its own flag), prints the final totals and cleans up.

As a service (nm-offload, netmapy-bridge):

* SIGHUP reloads the filters (``reload=``: the command's function that
  re-reads its configuration) into every worker while packets flow
  (middlebox.reload); each rule keeps its counter slot across reloads
  (middlebox.rulecounters);
* under systemd it says READY=1 once every worker loops, RELOADING=1 and
  READY=1 around a reload, STOPPING=1 on the way down, a STATUS= line per
  interval and, when the unit asks, WATCHDOG=1 while every running worker's
  loop goes round (middlebox.sdnotify);
* its state (the rule table, the last reload's outcome) is in ctl/ of the
  run directory, where ``--reload`` and ``--status`` find it
  (middlebox.service);
* the attack view (middlebox.attack) is in the live table, the JSON lines
  and the Prometheus metrics;
* when its output is not a terminal it prints no table: one line per
  event on stderr, and one line of rates per interval on stdout.
"""

import http.server
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time

from netmapy import stop
from netmapy.errors import NetmapyError
from . import stats as st


# the interface locks and the live table have their own modules; these
# names stay here for code that imports them from the supervisor
from .ifacelock import AlreadyRunning, InterfaceLock, lockdir, remove_stale_locks  # noqa: E402,F401
from .table import rate_rows, table_lines  # noqa: E402,F401


class _Prom(http.server.BaseHTTPRequestHandler):
    sup = None

    def do_GET(self):
        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.send_error(404)
            return
        body = self.sup.prometheus_text().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Supervisor:
    #: rule counter slots: at least this many, or 4 times the first rule set's
    MIN_RULE_SLOTS = 4096

    def __init__(self, prog, specs, locks=(), rule_names=(), rule_descriptions=(),
                 setup=None, teardown=None, out=None, stats_json=False, prometheus=None,
                 max_quick_failures=3, busy_wait=30, stages=None, reload=None,
                 attack_sample=0, config=None):
        """``stages``: the jobs' filter stages, when the rule counters
        follow the rules across reloads (then rule_names is not needed);
        ``reload``: the command's function returning the new stages
        (SIGHUP); ``attack_sample``: sample 1 of K drops for the attack view
        (0: none); ``config``: the configuration file, for the state file."""
        from .rulecounters import RuleCounters
        self.prog = prog
        self.specs = specs
        self.locks = [InterfaceLock(prog, ns, ifn) for ns, ifn in locks]
        self.st = st
        self.reload_plan = reload
        self.attack_sample = attack_sample
        self.config = config
        if stages is not None:
            from .rulecounters import counter_keys
            f = self.build_filter(stages)
            n = f.num_counters
            self.rc = RuleCounters(max(self.MIN_RULE_SLOTS, 4 * n) if reload else n)
            slots = self.rc.assign(counter_keys(stages), list(f.names), list(f.descriptions))
            self.rc.commit()
            for spec in specs:
                spec.filters = tuple(stages)
                spec.counter_slots = tuple(slots)
        else:
            self.rc = RuleCounters(len(rule_names))
            self.rc.current = [(("rule", i), i, name,
                                rule_descriptions[i] if i < len(rule_descriptions) else "")
                               for i, name in enumerate(rule_names)]
        self.setup, self.teardown = setup, teardown
        self.out = out or sys.stdout
        self.stats_json = stats_json
        self.prometheus = prometheus
        self.max_quick_failures = max_quick_failures
        self.procs = {}
        self.restarts = {}
        self.backoff = {}
        self.next_start = {}
        self.started_at = {}
        self.quick_failures = {}
        self.busy_since = {}
        self.announced = False
        self.busy_wait = busy_wait
        self.errors = None
        self.stats = None
        self.stopping = False
        self.failure = None
        self.httpd = None
        self._prev = None
        self.final = None
        self.ctl = {}
        self.reload_wanted = False
        self.coordinator = None
        self.attack = None
        self.notifier = None
        self.state = None
        self.last_reload = None
        self.reloads = 0

    def build_filter(self, stages):
        """The filter of the first job's first direction (for the rule
        names and descriptions; expressions compiled with its netmask)."""
        from .worker import build_filter
        spec = self.specs[0] if self.specs else None
        return build_filter(stages, netmask=spec.netmask(0) if hasattr(spec, "netmask")
                            else None)

    @property
    def rule_names(self):
        return [name for _, name, _ in self.rc.live()]

    # ------------------------------------------------------------ lifecycle
    def _start(self, w):
        spec = self.specs[w]
        ctx = mp.get_context("spawn")
        from . import worker
        old = self.ctl.pop(w, None)
        if old is not None:
            old.close()
        ctl = child = None
        if self.reload_plan is not None:
            ctl, child = ctx.Pipe(duplex=True)
        p = ctx.Process(target=worker.main,
                        args=(spec, w, self.stats.path, os.getpid(), self.errors, child),
                        daemon=False, name="%s-w%d" % (self.prog, w))
        p.start()
        if child is not None:
            child.close()
            self.ctl[w] = ctl
        cpu = spec.cpu
        if cpu is not None:
            try:
                import psutil
                psutil.Process(p.pid).cpu_affinity([cpu])
            except Exception:
                pass          # the worker pins itself too
        self.procs[w] = p
        self.started_at[w] = time.monotonic()

    def _check_workers(self):
        now = time.monotonic()
        while True:
            try:
                w, msg, tb, queue_busy = self.errors.get_nowait()
            except Exception:
                break
            self.last_error = msg
            if queue_busy and w not in self.busy_since:
                # AF_XDP: the kernel releases a closed socket's queue from a
                # workqueue once nothing references the socket any more;
                # after heavy traffic that has been seen to take tens of
                # seconds.  The instance lock says no netmapy middlebox
                # holds the queue, so wait for it (bounded) instead of
                # giving up after three quick tries.
                self.busy_since[w] = now
                print("%s: worker %d: %s; waiting up to %d s for it to be released (a socket "
                      "closed moments ago is freed by the kernel asynchronously)" % (
                          self.prog, w, msg, self.busy_wait), file=sys.stderr)
                continue
            if queue_busy and now - self.busy_since[w] < self.busy_wait:
                continue
            print("%s: worker %d: %s" % (self.prog, w, msg), file=sys.stderr)
        for w, p in list(self.procs.items()):
            if p is None:
                if now >= self.next_start.get(w, 0):
                    self._start(w)
                continue
            if p.is_alive():
                if w in self.busy_since and self.stats is not None and \
                        self.stats.block(w)[st.W_STATE] == 1:
                    del self.busy_since[w]      # it got its queue
                if now - self.started_at[w] > 30:
                    self.backoff[w] = 0.2
                    self.quick_failures[w] = 0
                continue
            if self.stopping:
                continue
            code = p.exitcode
            p.join()
            waiting = w in self.busy_since and now - self.busy_since[w] < self.busy_wait
            if not waiting:
                self.restarts[w] = self.restarts.get(w, 0) + 1
                if self.stats is not None:
                    self.stats.block(w)[st.W_RESTARTS] = self.restarts[w]
            quick = now - self.started_at[w] < 2.0
            if waiting:
                quick = False                     # waiting for the kernel: see above
                self.backoff[w] = 0.5
            self.quick_failures[w] = self.quick_failures.get(w, 0) + (1 if quick else 0)
            if self.quick_failures[w] >= self.max_quick_failures:
                self.failure = "worker %d keeps failing at start (%s)" % (
                    w, getattr(self, "last_error", "exit code %s" % code))
                return
            b = self.backoff.get(w, 0.2)
            self.backoff[w] = min(b * 2, 5.0)
            self.next_start[w] = now + b
            self.procs[w] = None
            if not waiting:
                print("%s: worker %d (queue %s) exited with %s; restart %d in %.1fs" % (
                    self.prog, w, self.specs[w].queue, code, self.restarts[w], b),
                    file=sys.stderr)

    def _stop_workers(self, timeout=5.0):
        """SIGTERM the workers, in the order of their jobs' stop_order
        (upstream first: a pipeline's balancer, then its stages, then its
        merge, so each drains what the previous one handed it and none
        waits for room downstream that will never come); SIGKILL one that
        is still there `timeout` seconds later."""
        self.stopping = True
        for order in sorted({spec.stop_order for spec in self.specs}):
            group = [p for w, p in self.procs.items()
                     if p is not None and self.specs[w].stop_order == order]
            for p in group:
                if p.is_alive():
                    try:
                        os.kill(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            end = time.monotonic() + timeout
            for p in group:
                p.join(max(0.1, end - time.monotonic()))
                if p.is_alive():
                    p.kill()
                    p.join(2)

    def _stop_requested(self):
        if stop.requested():
            self.stopping = True
        return self.stopping

    def _wait_running(self, timeout=20.0):
        """Wait until every worker has its ports open and loops (then say
        so on stderr: scripts wait for that line), or one failed."""
        end = time.monotonic() + timeout
        while not self._stop_requested() and self.failure is None and (
                time.monotonic() < end or self.busy_since):
            if self._announce():
                return True
            self._check_workers()
            time.sleep(0.02)
        return False

    def _announce(self):
        """Print the "running" line once, when every worker loops (and tell
        systemd: READY=1)."""
        if self.announced:
            return True
        if all(self.stats.block(w)[st.W_STATE] == 1 for w in range(len(self.specs))):
            self.announced = True
            self._write_state()             # before saying so: --reload finds it then
            print("%s: running, %d worker(s)" % (self.prog, len(self.specs)),
                  file=sys.stderr, flush=True)
            if self.notifier is not None:
                self.notifier.ready("running, %d worker(s)" % len(self.specs))
        return self.announced

    # ------------------------------------------------------------ service
    def _on_sighup(self, signum, frame):
        self.reload_wanted = True

    def _reload(self):
        """SIGHUP: re-read the configuration and swap the filters in."""
        self.reload_wanted = False
        if self.notifier is not None:
            self.notifier.reloading("reloading")
        print("%s: reload requested: re-reading the configuration" % self.prog,
              file=sys.stderr, flush=True)
        out = self.coordinator.reload()
        self.reloads += 1
        self.last_reload = out
        print("%s: reload %s" % (self.prog, out.message), file=sys.stderr, flush=True)
        self._write_state()
        if self.notifier is not None:
            self.notifier.ready("reload %s" % ("applied" if out.ok else "refused") +
                                " (generation %d)" % out.generation)
        return out

    def _healthy(self):
        """Every worker that runs has gone round its loop lately (for the
        systemd watchdog)."""
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        limit = self.notifier.watchdog_interval * 1e9
        for w, p in self.procs.items():
            if p is None or not p.is_alive():
                continue
            blk = self.stats.block(w)
            if blk[st.W_STATE] == 1 and blk[st.W_HEARTBEAT] and now - blk[st.W_HEARTBEAT] > limit:
                return False
        return True

    def _write_state(self):
        if self.state is None:
            return
        try:
            self.state.write(dict(
                prog=self.prog, pid=os.getpid(), config=self.config, stats=self.stats.path,
                running=self.announced, workers=len(self.specs),
                generation=self.coordinator.generation if self.coordinator else 0,
                reloads=self.reloads,
                last_reload=self.last_reload.as_dict() if self.last_reload else None,
                rules=[dict(slot=s, rule=n, text=t) for s, n, t in self.rc.live()],
                dir_names=[list(sp.dir_names) for sp in self.specs],
                attack_sample=self.attack_sample))
        except OSError as e:
            print("%s: cannot write the state file: %s" % (self.prog, e), file=sys.stderr)

    def run(self, seconds=0, interval=1.0):
        """Run until SIGINT/SIGTERM or `seconds`; returns the final totals."""
        stop.reset()
        stop.install_handlers()
        acquired = []
        setup_done = False
        try:
            for lk in self.locks:
                lk.acquire()
                acquired.append(lk)
            if self.setup is not None:
                setup_done = True
                self.setup()
            # what dead runs of this program left (the NIC state was repaired
            # by setup(): the journal)
            for path, pid in st.remove_stale(self.prog):
                print("%s: removed the counters of a dead run (pid %d): %s" % (
                    self.prog, pid, path), file=sys.stderr)
            remove_stale_locks(self.prog)
            path = os.path.join(st.rundir(), "%s-%d.stats" % (self.prog, os.getpid()))
            self.stats = st.Stats.create(path, len(self.specs), self.rc.capacity,
                                         one_in=self.attack_sample)
            if self.attack_sample:
                from .attack import AttackView
                self.attack = AttackView(self.stats, self.attack_sample)
            from .sdnotify import Notifier
            self.notifier = Notifier()
            if self.reload_plan is not None:
                from .reload import Coordinator
                from . import service
                self.coordinator = Coordinator(self, self.reload_plan)
                service.remove_stale_state(self.prog)
                self.state = service.StateFile(self.prog)
                self._old_hup = signal.signal(signal.SIGHUP, self._on_sighup)
                self._write_state()         # starting: a reload waits until it runs
            self.errors = mp.get_context("spawn").Queue()
            if self.prometheus:
                if isinstance(self.prometheus, str):
                    host, _, port = self.prometheus.rpartition(":")
                else:
                    host, port = self.prometheus
                _Prom.sup = self
                self.httpd = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), _Prom)
                threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
            for w in range(len(self.specs)):
                self._start(w)
            self._wait_running()
            t0 = time.monotonic()
            last = t0
            self._prev = (t0, self._snapshot())
            window = interval or 10.0
            while not self._stop_requested() and self.failure is None:
                stop.wait(min(0.1, interval or 0.1))
                self._check_workers()
                self._announce()
                if self.reload_wanted and self.announced:
                    self._reload()
                if self.attack is not None:
                    self.attack.poll()
                if self.notifier.watchdog_interval:
                    self.notifier.watchdog(self._healthy())
                now = time.monotonic()
                if now - last >= window:
                    if self.attack is not None:
                        self.attack.roll(self._drops())
                    if interval:
                        self.report(now)
                    elif self.notifier.enabled:
                        self.notifier.status(self.status_line(now))
                    last = now
                if seconds and now - t0 >= seconds:
                    break
            self.stopping = True
            self.notifier.stopping("stopping")
            print("%s: stopping" % self.prog, file=sys.stderr, flush=True)
            self._sample_cpu()
            self._stop_workers()
            self.final = self.totals()
            if self.failure:
                raise NetmapyError(self.failure)
            return self.final
        finally:
            self.stopping = True
            try:
                self._stop_workers()
            finally:
                if self.httpd is not None:
                    self.httpd.shutdown()
                if setup_done and self.teardown is not None:
                    self.teardown()
                if self.stats is not None:
                    if self.final is None:
                        self.final = self.totals()
                    self.stats.unlink()
                if self.state is not None:
                    self.state.remove()
                for c in self.ctl.values():
                    c.close()
                if hasattr(self, "_old_hup"):
                    signal.signal(signal.SIGHUP, self._old_hup or signal.SIG_DFL)
                if self.notifier is not None:
                    self.notifier.close()
                for lk in acquired:
                    lk.release()
                stop.restore_handlers()

    def _sample_cpu(self):
        """CPU seconds (user + system) each worker used, read just before
        they are stopped (for CPU time per packet)."""
        self.cpu = {}
        try:
            import psutil
        except ImportError:
            return
        for w, p in self.procs.items():
            if p is not None and p.is_alive():
                try:
                    t = psutil.Process(p.pid).cpu_times()
                    self.cpu[w] = t.user + t.system
                except psutil.Error:
                    pass

    # ------------------------------------------------------------ reporting
    def _snapshot(self):
        return self.stats.snapshot(rules=self.rc.slots())

    def _drops(self, snap=None):
        snap = snap if snap is not None else self.stats.snapshot(rules=())
        return sum(wk["dirs"][d]["drop"] for wk in snap for d in range(2))

    def _rule_totals(self, snap=None):
        """[{rule, text, packets, ratelimited}] of the rules in force, all
        workers and directions summed."""
        live = self.rc.live()
        if snap is None:
            snap = self.stats.snapshot(rules=[slot for slot, _, _ in live])
        rules = []
        for i, (slot, name, text) in enumerate(live):
            hits = sum(wk["rules"][d][0][i] for wk in snap for d in range(2))
            lim = sum(wk["rules"][d][1][i] for wk in snap for d in range(2))
            rules.append(dict(rule=name, text=text, packets=hits, ratelimited=lim))
        return rules

    def totals(self):
        live = self.rc.live()
        snap = self.stats.snapshot(rules=[slot for slot, _, _ in live])
        tot = [{f: 0 for f in st.ALL_FIELDS} for _ in range(2)]
        for wk in snap:
            for d in range(2):
                for f in st.ALL_FIELDS:
                    tot[d][f] += wk["dirs"][d][f]
        rules = self._rule_totals(snap)
        for w, wk in enumerate(snap):
            wk["cpu_seconds"] = getattr(self, "cpu", {}).get(w)
        out = dict(directions=tot, workers=snap, rules=rules,
                   restarts=sum(wk["restarts"] for wk in snap))
        if self.attack is not None:
            out["attack"] = self.attack.summary(self._drops(snap))
        if self.coordinator is not None:
            out["generation"] = self.coordinator.generation
            out["reloads"] = self.reloads
        return out

    def _rows(self, now):
        snap = self._snapshot()
        t_prev, prev = self._prev
        self._prev = (now, snap)
        return rate_rows(prev, snap, now - t_prev, [sp.dir_names for sp in self.specs])

    def status_line(self, now=None, rows=None):
        """One line: rates, the top dropped source, the rule generation (the
        journal's periodic line, systemd's STATUS=)."""
        if rows is None:
            rows = self._rows(time.monotonic() if now is None else now)
        rx = sum(r["rx_pps"] for r in rows)
        fwd = sum(r["fwd_pps"] for r in rows)
        drop = sum(r["drop_pps"] for r in rows)
        text = "rx %.0f pps, forwarded %.0f pps, dropped %.0f pps" % (rx, fwd, drop)
        v = self.attack.last if self.attack is not None else None
        if v and v["top_sources"]:
            t = v["top_sources"][0]
            text += "; top dropped source %s (%.0f%%)" % (t["source"], 100 * t["share"])
        if self.coordinator is not None:
            text += "; rules generation %d" % self.coordinator.generation
        return text

    def report(self, now):
        rows = self._rows(now)
        if self.notifier is not None and self.notifier.enabled:
            self.notifier.status(self.status_line(rows=rows))
        if self.stats_json:
            obj = dict(time=time.time(), workers=rows)
            if self.attack is not None and self.attack.last is not None:
                obj["attack"] = self.attack.last
            print(json.dumps(obj), file=self.out, flush=True)
            return
        if not self.out.isatty():
            # no tables in a log: one line per interval
            print("%s: %s" % (self.prog, self.status_line(rows=rows)), file=self.out, flush=True)
            return
        lines = table_lines(self.prog, rows, [sp.dir_names for sp in self.specs],
                            self._rule_totals() if self.rc.current else None,
                            self.coordinator.generation if self.coordinator else None)
        if self.attack is not None:
            lines.extend(self.attack.table_lines())
        text = "\n".join(lines)
        self.out.write("\x1b[H\x1b[J" + text + "\n")
        self.out.flush()

    def prometheus_text(self):
        snap = self.stats.snapshot(rules=())
        out = []
        for f in st.ALL_FIELDS:
            out.append("# TYPE netmapy_%s_total counter" % f)
            for w, wk in enumerate(snap):
                for d in range(2):
                    out.append('netmapy_%s_total{prog="%s",worker="%d",queue="%d",direction="%d"} %d'
                               % (f, self.prog, w, wk["queue"], d, wk["dirs"][d][f]))
        out.append("# TYPE netmapy_worker_restarts_total counter")
        for w, wk in enumerate(snap):
            out.append('netmapy_worker_restarts_total{prog="%s",worker="%d"} %d' % (
                self.prog, w, wk["restarts"]))
        if self.rc.current:
            out.append("# TYPE netmapy_rule_packets_total counter")
            tot = self._rule_totals()
            for r in tot:
                out.append('netmapy_rule_packets_total{prog="%s",rule="%s"} %d' % (
                    self.prog, r["rule"].replace('"', "'"), r["packets"]))
                out.append('netmapy_rule_ratelimited_total{prog="%s",rule="%s"} %d' % (
                    self.prog, r["rule"].replace('"', "'"), r["ratelimited"]))
        if self.coordinator is not None:
            out.append("# TYPE netmapy_reloads_total counter")
            out.append('netmapy_reloads_total{prog="%s"} %d' % (self.prog, self.reloads))
            out.append("# TYPE netmapy_rules_generation gauge")
            out.append('netmapy_rules_generation{prog="%s"} %d' % (
                self.prog, self.coordinator.generation))
        if self.attack is not None:
            out.extend(self.attack.prometheus_lines(self.prog))
        return "\n".join(out) + "\n"
