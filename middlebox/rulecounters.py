"""Which counter belongs to which rule, across reloads.

A filter (middlebox.filter.Filter) has one counter per rule of each rule
file (and one for its default), one per tcpdump expression and one per BPF
program, in the order of its stages.  The counter file (middlebox.stats)
has a fixed number of rule counter *slots*; the supervisor gives each
counter a slot, and a reload that keeps a rule keeps its slot, so its
count carries over.  When is it "the same rule"?

* a rule of a rule file: the same file (its path as configured), the same
  rule text once comments, case and spacing are ignored, the same
  occurrence of that text in the file (a duplicate line is a second rule).
  Moving a rule to another line keeps its counter (its name, FILE:LINE,
  follows it); editing it makes it a new rule, counted from 0;
* a rule file's default: the same file and the same default action;
* a tcpdump expression: the same text and the same role (--filter or
  --drop);
* a BPF program: the same file and the same instructions.

New rules start at 0; removed rules disappear from the outputs (their
slots are reused once no worker counts into them any more).  The totals
(rx, fwd, drop, ...) are per worker, not per rule, and go on through every
reload.
"""

import hashlib

from netmapy.errors import NetmapyError

__all__ = ["counter_keys", "RuleCounters", "SlotsExhausted"]


class SlotsExhausted(NetmapyError):
    """More rule counters than the counter file has slots for."""


def _norm(text):
    return " ".join(text.split("#", 1)[0].split()).lower()


def counter_keys(stages):
    """One key per counter of the filter built from these stage specs
    (middlebox.worker.build_filter's: ("rules", text, source), ("expr",
    expression, drop), ("bpf", text, drop, name)), in the filter's counter
    order."""
    from . import rules as _rules
    keys = []
    for st in stages:
        kind = st[0]
        if kind == "rules":
            rs = _rules.parse(st[1], st[2])
            for r in rs.rules:
                keys.append(("rule", st[2], _norm(r.text)))
            keys.append(("default", st[2], rs.default))
        elif kind == "expr":
            keys.append(("expr", "drop" if st[2] else "accept", st[1]))
        elif kind == "bpf":
            from .filter import parse_bpf_text
            insns = parse_bpf_text(st[1], st[3] or "<bpf>")
            digest = hashlib.sha1(repr(insns).encode()).hexdigest()
            keys.append(("bpf", "drop" if st[2] else "accept", st[3], digest))
        else:
            raise ValueError("unknown filter stage %r" % (kind,))
    # the n-th occurrence of the same key is a rule of its own
    seen = {}
    out = []
    for k in keys:
        n = seen.get(k, 0)
        seen[k] = n + 1
        out.append(k + (n,))
    return out


class RuleCounters:
    """The supervisor's map of rule counters to slots.

        rc = RuleCounters(capacity)
        slots = rc.assign(keys, names, texts)   # at start, and for a reload
        ...                                     # the workers use the new slots
        rc.commit()                             # or rc.rollback() if refused

    ``live()`` lists (slot, name, text) of the filter in force, in its
    counter order."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.current = []                  # [(key, slot, name, text)] in counter order
        self.proposed = None
        self.fresh = []                    # slots the proposal gives to new rules

    def in_use(self):
        used = {slot for _, slot, _, _ in self.current}
        if self.proposed is not None:
            used |= {slot for _, slot, _, _ in self.proposed}
        return used

    def assign(self, keys, names, texts):
        """Slots for a filter's counters: a key the filter in force has keeps
        its slot, a new one gets a free slot (the caller zeroes those:
        ``fresh``).  Raises SlotsExhausted when the file has too few."""
        if not len(keys) == len(names) == len(texts):
            raise ValueError("keys, names and texts differ in length")
        if self.proposed is not None:
            raise RuntimeError("a proposal is pending")
        have = {key: slot for key, slot, _, _ in self.current}
        used = self.in_use()
        free = (s for s in range(self.capacity) if s not in used)
        out, fresh = [], []
        try:
            for key, name, text in zip(keys, names, texts):
                slot = have.get(key)
                if slot is None:
                    slot = next(free)
                    fresh.append(slot)
                out.append((key, slot, name, text))
        except StopIteration:
            raise SlotsExhausted(
                "the filters need %d rule counters, %d of them new; the counter file has "
                "%d slots and %d are in use: restart to apply this rule set (a start sizes "
                "the file for 4 times its rule set)" % (
                    len(keys), sum(1 for k in keys if k not in have), self.capacity,
                    len(used))) from None
        self.proposed = out
        self.fresh = fresh
        return [slot for _, slot, _, _ in out]

    def commit(self):
        """The proposal is in force; the slots only the old filter had are
        free again."""
        if self.proposed is None:
            raise RuntimeError("nothing to commit")
        old = {k for k, _, _, _ in self.current}
        new = {k for k, _, _, _ in self.proposed}
        self.current, self.proposed, self.fresh = self.proposed, None, []
        return dict(kept=len(old & new), added=len(new - old), removed=len(old - new))

    def rollback(self):
        self.proposed, self.fresh = None, []

    def live(self):
        return [(slot, name, text) for _, slot, name, text in self.current]

    def slots(self):
        return [slot for _, slot, _, _ in self.current]
