"""netmapy-bridge: forward everything between two interfaces, both ways.

    netmapy-bridge eth6 eth7                 # best backend, live counters
    netmapy-bridge a0 b0 --netns mbox --backend packet --seconds 10

What arrives on one interface leaves through the other unchanged, zero copy
when the two ports share buffer memory.  Counters (packets and bits per
second each way) are printed every --interval seconds on a terminal, or as
JSON lines with --stats-json.
"""

import argparse
import json
import sys
import threading
import time
from array import array

import netmapy
from netmapy import cli, fastpath


def build_parser():
    p = argparse.ArgumentParser(
        description="Forward every packet between two interfaces, both ways, "
                    "through netmapy ports.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  netmapy-bridge eth6 eth7\n"
               "  netmapy-bridge a0 b0 --netns mbox --backend packet --seconds 10\n")
    p.add_argument("if_a", metavar="IF_A", help="first interface (or a full port name)")
    p.add_argument("if_b", metavar="IF_B", help="second interface (or a full port name)")
    p.add_argument("--backend", default="netmap",
                   help="netmap (best available: netmap, then xdp, then packet), xdp, "
                        "packet (default: %(default)s)")
    p.add_argument("--netns", help="the interfaces are in this network namespace")
    p.add_argument("--seconds", type=float, default=0, help="stop after SECONDS (default: run "
                   "until Ctrl-C or SIGTERM)")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between counter lines (0: none)")
    p.add_argument("--stats-json", action="store_true",
                   help="print counters as JSON lines (for scripts)")
    p.add_argument("--promisc", action="store_true", default=True,
                   help="put the interfaces in promiscuous mode while bridging (default)")
    p.add_argument("--no-promisc", dest="promisc", action="store_false")
    cli.add_common(p)
    return p


def port_name(spec, backend):
    """'eth6' -> 'netmap:eth6'; a full port name is kept as given."""
    return spec if ":" in spec else "%s:%s" % (backend, spec)


def run(args, out=sys.stdout):
    a_name = port_name(args.if_a, args.backend)
    b_name = port_name(args.if_b, args.backend)
    kw = {"promisc": True} if args.promisc else {}
    counters = array("Q", [0] * 4)
    with netmapy.open(a_name, netns=args.netns, **kw) as a, \
            netmapy.open(b_name, netns=args.netns, **kw) as b:
        print("netmapy-bridge: %s (%s) <-> %s (%s), %s" % (
            a.name, a.backend, b.name, b.backend,
            "zero copy" if a.mem is b.mem else "copying"), file=sys.stderr)
        result = {}
        done = threading.Event()

        def work():
            try:
                result["r"] = fastpath.bridge(a, b, counters, seconds=args.seconds)
            except BaseException as e:      # reported by the main thread
                result["e"] = e
            finally:
                done.set()
        fastpath.reset()
        t = threading.Thread(target=work, daemon=True)
        t.start()
        last = list(counters)
        t_last = time.monotonic()
        try:
          try:
            # (Event.wait, not Thread.join: a join interrupted by a signal
            # can return early on this Python while the thread still runs)
            while not done.is_set():
                done.wait(args.interval or 0.5)
                if args.interval and not done.is_set():
                    now = time.monotonic()
                    cur = list(counters)
                    dt = now - t_last
                    rates = [(c - l) / dt for c, l in zip(cur, last)]
                    last, t_last = cur, now
                    line = dict(a_to_b_pps=round(rates[0]), a_to_b_bps=round(rates[1] * 8),
                                b_to_a_pps=round(rates[2]), b_to_a_bps=round(rates[3] * 8),
                                a_to_b_packets=cur[0], b_to_a_packets=cur[2])
                    if args.stats_json:
                        print(json.dumps(line), file=out, flush=True)
                    else:
                        print("%s->%s %10.0f pps %8.1f Mbit/s | %s->%s %10.0f pps %8.1f Mbit/s"
                              " | total %d / %d" % (
                                  args.if_a, args.if_b, rates[0], rates[1] * 8e-6,
                                  args.if_b, args.if_a, rates[2], rates[3] * 8e-6,
                                  cur[0], cur[2]), file=out, flush=True)
          except KeyboardInterrupt:
            pass                    # Ctrl-C / SIGTERM: stop and report
        finally:
            fastpath.stop()
            while not done.wait(1.0):
                pass
        if "e" in result:
            raise result["e"]
        r = result["r"]
        summary = dict(r, a=str(a.name), b=str(b.name))
        print(json.dumps(summary) if args.stats_json else
              "netmapy-bridge: forwarded %d packets %s->%s and %d %s->%s" % (
                  r["a_to_b_packets"], args.if_a, args.if_b, r["b_to_a_packets"],
                  args.if_b, args.if_a), file=out if args.stats_json else sys.stderr)
        return summary


def main(argv=None):
    cli.terminate_on_sigterm()
    return cli.run("netmapy-bridge", build_parser, lambda a: (run(a), 0)[1], argv)


if __name__ == "__main__":
    sys.exit(main())
