"""The supervisor's live view: per worker and direction, the counters and
rates between two snapshots of the shared counters (``rate_rows``), and the
table the terminal shows (``table_lines``)."""

import time

__all__ = ["rate_rows", "table_lines"]


def rate_rows(prev, snap, dt, dir_names):
    """Per worker and direction: counters and rates between two snapshots
    (Stats.snapshot) `dt` seconds apart."""
    dt = max(1e-6, dt)
    rows = []
    for w, (cur, old) in enumerate(zip(snap, prev)):
        for d in range(2):
            c, o = cur["dirs"][d], old["dirs"][d]
            if d == 1 and dir_names[w][1] == "-":
                continue
            rows.append(dict(worker=w, queue=cur["queue"], cpu=cur["cpu"], dir=d,
                             state=cur["state"], restarts=cur["restarts"],
                             rx_pps=(c["rx"] - o["rx"]) / dt,
                             fwd_pps=(c["fwd"] - o["fwd"]) / dt,
                             drop_pps=(c["drop"] - o["drop"]) / dt,
                             fwd_bps=8 * (c["fwd_bytes"] - o["fwd_bytes"]) / dt,
                             rx=c["rx"], fwd=c["fwd"], drop=c["drop"],
                             ratelimited=c["ratelimited"], errors=c["errors"],
                             failed=c["failed"], kernel_drops=c["kernel_drops"]))
    return rows


def table_lines(prog, rows, dir_names, rules=None, generation=None):
    """The live table: a line per worker and direction, then the rules."""
    lines = ["%s  %s" % (prog, time.strftime("%H:%M:%S")),
             "%3s %5s %3s %-6s %-8s %10s %10s %10s %9s %12s %12s %8s %9s %3s" % (
                 "wrk", "queue", "cpu", "dir", "state", "rx pps", "fwd pps", "drop pps",
                 "Mbit/s", "forwarded", "dropped", "failed", "lost-in-k", "rst")]
    for r in rows:
        lines.append("%3d %5d %3d %-6s %-8s %10.0f %10.0f %10.0f %9.1f %12d %12d %8d %9d %3d" % (
            r["worker"], r["queue"], r["cpu"], dir_names[r["worker"]][r["dir"]][:6],
            r["state"], r["rx_pps"], r["fwd_pps"], r["drop_pps"], r["fwd_bps"] / 1e6,
            r["fwd"], r["drop"], r["failed"], r["kernel_drops"], r["restarts"]))
    if rules:
        lines.append("rules (packets decided / rate-limited)%s:" % (
            ", generation %d" % generation if generation is not None else ""))
        for r in rules:
            lines.append("  %-24s %12d %10d  %s" % (r["rule"], r["packets"], r["ratelimited"],
                                                    r["text"][:60]))
    return lines
