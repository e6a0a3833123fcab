"""Hot reload: new filters into running workers, between two batches, with
no packet lost and none judged by a mixture of the old and new rules.

The supervisor (``Coordinator``) and each worker (``Agent``, a thread
beside the worker's nogil loop) talk over a pipe, in two phases, so that a
rule set is either in force in every worker or in none:

    supervisor                                  worker (Agent thread)
    SIGHUP: the command re-reads its config
      (refused: a line naming why; the old
      filters stay in force)
    rule counter slots assigned
    ("prepare", gen, stages, slots)   ------>   build the filters off the fast path
                                                (and load the in-kernel rule program)
                                      <------   ("prepared", w, gen, None | error)
    every worker prepared?
      no:  ("abort", gen)             ------>   drop what was built
      yes: ("commit", gen)            ------>   publish to the loop's FilterSwap; the
                                                loop takes it at its next batch
                                                boundary; the queue's kernel program
                                                replaced (one map update); the old
                                                one's last counts folded, then closed
                                      <------   ("committed", w, gen, None | error)

Where the rules run in the kernel, a packet the old program sent to user
space may meet the new user-space filter: it is then judged entirely by
the new rule set (the user-space filter runs the whole set), and counted
once, where it was decided.
"""

import multiprocessing.connection as mpc
import threading
import time

from netmapy.errors import NetmapyError

__all__ = ["Agent", "Coordinator", "ReloadRefused", "Outcome"]

#: after the queue runs the new kernel program, how long before the old
#: one's counters are read for the last time (a packet the old program is
#: deciding on another CPU finishes in microseconds)
KERNEL_GRACE = 0.05
#: how long the supervisor waits for every worker to prepare / to commit
PREPARE_TIMEOUT = 60.0
COMMIT_TIMEOUT = 30.0


#: the worker's answer to each request
REPLY = {"prepare": "prepared", "commit": "committed", "abort": "aborted"}


class ReloadRefused(NetmapyError):
    """A reload that is not applied (the message says why and what to do);
    the filters in force stay."""


class Outcome:
    """What a reload did: ``ok``, a one-line ``message``, ``generation``."""

    def __init__(self, ok, message, generation, detail=None):
        self.ok, self.message, self.generation = ok, message, generation
        self.detail = detail or {}

    def as_dict(self):
        return dict(ok=self.ok, message=self.message, generation=self.generation,
                    time=time.time(), **self.detail)


# ---------------------------------------------------------------- the worker's side

class Agent:
    """The worker's end: prepares and commits the reloads the supervisor
    sends (see the module documentation)."""

    def __init__(self, conn, job, index, stats, ctx, build):
        self.conn, self.job, self.w, self.stats, self.ctx = conn, job, index, stats, ctx
        self.build = build                  # stages, slots, direction -> Filter
        self.swap = self.kernel_loader = self.port = None
        self.prepared = None
        self.lock = threading.Lock()
        self.closed = False
        self.thread = None

    def serve(self, swap, kernel_loader=None, port=None):
        self.swap, self.kernel_loader, self.port = swap, kernel_loader, port
        self.thread = threading.Thread(target=self._run, name="reload", daemon=True)
        self.thread.start()

    def close(self):
        """The loop has returned: no more swaps."""
        self.closed = True
        with self.lock:
            self._drop_prepared()

    def _drop_prepared(self):
        if self.prepared is not None:
            kr = self.prepared[2]
            self.prepared = None
            if kr is not None:
                kr.close()

    def _run(self):
        while not self.closed:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                return
            with self.lock:
                if self.closed:
                    reply = (REPLY.get(msg[0], msg[0]), self.w, msg[1], "the worker is stopping")
                else:
                    reply = self._handle(msg)
            try:
                self.conn.send(reply)
            except (OSError, ValueError):
                return

    def _handle(self, msg):
        from netmapy.cli import one_line
        op, gen = msg[0], msg[1]
        try:
            if op == "prepare":
                self._drop_prepared()
                stages, slots = msg[2], msg[3]
                filters = [self.build(stages, slots, d) for d in range(len(self.swap.filters))]
                kr = self.kernel_loader(filters[0], True) if self.kernel_loader else None
                self.prepared = (gen, filters, kr)
                return ("prepared", self.w, gen, None)
            if op == "commit":
                return ("committed", self.w, gen, self._commit(gen))
            if op == "abort":
                self._drop_prepared()
                return ("aborted", self.w, gen, None)
            return (REPLY.get(op, op), self.w, gen, "unknown request %r" % op)
        except Exception as e:           # reported to the supervisor, which refuses
            if op == "prepare":
                self._drop_prepared()
            return (REPLY.get(op, op), self.w, gen, one_line(e))

    def _commit(self, gen):
        if self.prepared is None or self.prepared[0] != gen:
            return "nothing prepared for generation %d" % gen
        _, filters, kr = self.prepared
        self.prepared = None
        sw = self.swap
        old_kr = sw.kernel
        sw.publish(filters, kr)
        while not sw.taken():
            if not sw.loop_running:
                sw.withdraw()
                if kr is not None and not sw.taken():
                    kr.close()
                return "the worker is stopping"
            time.sleep(0.0005)
        sw.settle()
        error = None
        if kr is not None or old_kr is not None:
            # the queue's program: one map update, atomic per packet
            try:
                self.port.set_queue_program(kr.prog_fd if kr is not None else -1)
            except OSError as e:
                from netmapy.cli import one_line
                error = "installing the new in-kernel rule program: %s (the old one " \
                        "still decides in the kernel)" % one_line(e)
            time.sleep(KERNEL_GRACE)
        sw.retire()
        while not sw.retired():
            if not sw.loop_running:
                return error                # the end of the run folds and closes it
            time.sleep(0.0005)
        if old_kr is not None and error is None:
            old_kr.close()
        return error


# ---------------------------------------------------------------- the supervisor's side

class Coordinator:
    """The supervisor's end (see the module documentation).

    ``plan()`` is the command's: it re-reads the configuration and returns
    the new filter stages, or raises (ReloadRefused or any user error) with
    the reason."""

    def __init__(self, sup, plan):
        self.sup = sup
        self.plan = plan
        self.generation = 0
        self.outcomes = 0

    def _conns(self):
        """{worker: connection} of the workers that run now."""
        out = {}
        for w, p in self.sup.procs.items():
            c = self.sup.ctl.get(w)
            if p is not None and p.is_alive() and c is not None:
                out[w] = c
        return out

    def _exchange(self, conns, msg, want, timeout):
        """Send msg to every worker; {worker: error or None} of the replies
        (a worker that does not answer within `timeout`: an error)."""
        from netmapy.cli import one_line
        got = {}
        pending = {}
        for w, c in conns.items():
            try:
                c.send(msg)
                pending[c] = w
            except (OSError, ValueError) as e:
                got[w] = "the worker cannot be reached (%s)" % one_line(e)
        from netmapy import stop
        end = time.monotonic() + timeout
        while pending:
            left = end - time.monotonic()
            if left <= 0 or stop.requested():       # out of time, or stopping
                break
            for c in mpc.wait(list(pending), min(left, 0.2)):
                w = pending[c]
                try:
                    r = c.recv()
                except (EOFError, OSError) as e:
                    got[w] = "the worker exited (%s)" % (one_line(e) or "EOF")
                    del pending[c]
                    continue
                if r[0] == want and r[2] == msg[1]:
                    got[w] = r[3]
                    del pending[c]
        for c, w in pending.items():
            got[w] = "stopping" if stop.requested() else "no answer within %d s" % timeout
        return got

    def reload(self):
        """Re-read, check, prepare everywhere, commit everywhere: an Outcome."""
        from netmapy.cli import one_line
        from .rulecounters import counter_keys, SlotsExhausted
        sup = self.sup
        try:
            stages = tuple(self.plan())
        except Exception as e:
            return Outcome(False, "refused: %s; the running configuration stays in force"
                           % one_line(e), self.generation)
        current = tuple(sup.specs[0].filters) if sup.specs else ()
        if stages == current:
            return Outcome(True, "applied: the filters are unchanged (generation %d)"
                           % self.generation, self.generation, dict(kept=len(sup.rc.current),
                                                                     added=0, removed=0))
        starting = [w for w, p in sup.procs.items() if p is not None and p.is_alive()
                    and sup.stats.block(w)[sup.st.W_STATE] == 0]
        if starting:
            return Outcome(False, "refused: worker %d is starting; reload again in a moment"
                           % starting[0], self.generation)
        try:
            f = sup.build_filter(stages)
            keys = counter_keys(stages)
            slots = sup.rc.assign(keys, list(f.names), list(f.descriptions))
        except SlotsExhausted as e:
            return Outcome(False, "refused: %s" % one_line(e), self.generation)
        except Exception as e:
            return Outcome(False, "refused: %s; the running configuration stays in force"
                           % one_line(e), self.generation)
        sup.stats.clear_rule_counters(sup.rc.fresh)
        gen = self.generation + 1
        conns = self._conns()
        errs = self._exchange(conns, ("prepare", gen, stages, slots), "prepared",
                              PREPARE_TIMEOUT)
        bad = sorted((w, e) for w, e in errs.items() if e)
        if bad:
            self._exchange({w: c for w, c in conns.items() if w not in dict(bad)},
                           ("abort", gen), "aborted", COMMIT_TIMEOUT)
            sup.rc.rollback()
            return Outcome(False, "refused: worker %d: %s; the running configuration stays in "
                           "force" % bad[0], self.generation)
        # from here on a worker that restarts starts with the new filters
        for spec in sup.specs:
            spec.filters = stages
            spec.counter_slots = tuple(slots)
        errs = self._exchange(conns, ("commit", gen), "committed", COMMIT_TIMEOUT)
        self.generation = gen
        info = sup.rc.commit()
        bad = sorted((w, e) for w, e in errs.items() if e)
        msg = "applied: generation %d, %d rule counter(s): %d kept, %d new, %d removed" % (
            gen, len(slots), info["kept"], info["added"], info["removed"])
        if bad:
            return Outcome(False, msg + "; but worker %d: %s" % bad[0], gen, info)
        return Outcome(True, msg, gen, info)
