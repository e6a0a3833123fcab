"""The built-in lab run: traffic from src through netmapy-bridge in mbox to
sink, with live counters, then a summary; everything is removed at the end
(also after Ctrl-C).

    python -m tools.demo                    # 1 line, 10 s, 200 kpps offered
    python -m tools.demo --lines 2 --seconds 5 --rate 0   # full speed

Each second it prints, per line, what src offered and what sink received
(rates and totals), and how many offered packets were not delivered yet.

That live column is not a loss: while traffic flows, offered minus
delivered counts the packets still in the veths' queues and the bridge's
rings -- when the bridge is slower than the generator, a backlog of up to a
second of traffic, all of it delivered later -- together with any that
were lost; counters read at one moment cannot tell the two apart.  The
loss is the final line's, read after the generator stopped and the
backlog drained: exact.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

from netmapy import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_parser():
    p = argparse.ArgumentParser(
        description="Run traffic through netmapy-bridge on the built-in veth lab "
                    "(namespaces src, mbox, sink) with live counters.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m tools.demo\n"
               "  python -m tools.demo --lines 2 --seconds 5 --rate 0\n")
    p.add_argument("--lines", type=int, default=1, help="veth lines (default %(default)s)")
    p.add_argument("--seconds", type=float, default=10, help="traffic duration (default %(default)s)")
    p.add_argument("--rate", default="200000",
                   help="offered packets per second per line, 0 for trafgen's full "
                        "speed (default %(default)s)")
    p.add_argument("--size", type=int, default=60, help="frame size in bytes (default 60)")
    p.add_argument("--backend", default="packet",
                   help="backend of the bridge's ports (default %(default)s)")
    p.add_argument("--prefix", default="", help="prefix of the lab's namespace names")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    cli.add_common(p)
    return p


def _pkts(lab, ns, ifname, key):
    return lab.counters(ns, ifname)[key]


def run(args):
    from tools.lab import Lab
    if os.geteuid() != 0:
        raise cli.CliError("the lab needs root (it creates network namespaces): run it with sudo")
    if args.lines < 1 or args.lines > 8:
        raise cli.CliError("--lines must be 1..8 on this machine")
    rate = None if str(args.rate) in ("0", "") else "%dpps" % int(float(args.rate))
    bridges, gens = [], []
    with Lab(lines=args.lines, prefix=args.prefix) as lab:
        mbox = lab.ns("mbox")
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for ln in lab.lines:
            argv = [sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
                    "--netns", mbox, "--backend", args.backend, "--interval", "0",
                    "--stats-json"]
            bridges.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            text=True, env=env))
        for b in bridges:                       # wait for "running"
            seen = []
            while True:
                line = b.stderr.readline()
                if not line:
                    raise cli.CliError("netmapy-bridge failed to start: %s" % " ".join(seen)[-300:])
                seen.append(line.strip())
                if ": running," in line:
                    break
        base = [(_pkts(lab, ln.src_ns, ln.src_if, "tx_packets"),
                 _pkts(lab, ln.sink_ns, ln.sink_if, "rx_packets")) for ln in lab.lines]
        for ln in lab.lines:
            gens.append(lab.trafgen(ln.index, seconds=args.seconds, size=args.size,
                                    cpu=ln.index % max(1, os.cpu_count() - 1), rate=rate))
        print("lab up: %d line(s); trafgen in %s -> netmapy-bridge (%s) in %s -> %s; %s s" % (
            args.lines, lab.ns("src"), args.backend, mbox, lab.ns("sink"), args.seconds))
        print("%6s %5s %12s %12s %12s %22s" % (
            "time", "line", "offered pps", "delivered pps", "delivered",
            "not delivered yet (*)"))
        t0 = time.monotonic()
        prev = [b for b in base]
        tprev = t0
        try:
            while any(g.poll() is None for g in gens):
                time.sleep(1.0)
                now = time.monotonic()
                for i, ln in enumerate(lab.lines):
                    tx = _pkts(lab, ln.src_ns, ln.src_if, "tx_packets")
                    rx = _pkts(lab, ln.sink_ns, ln.sink_if, "rx_packets")
                    dtx, drx = tx - prev[i][0], rx - prev[i][1]
                    off, dlv = tx - base[i][0], rx - base[i][1]
                    print("%6.1f %5d %12.0f %12.0f %12d %12d (%5.1f%%)" % (
                        now - t0, i, dtx / (now - tprev), drx / (now - tprev), dlv,
                        off - dlv, 100.0 * (off - dlv) / off if off else 0.0), flush=True)
                    prev[i] = (tx, rx)
                tprev = now
            print("(*) in flight (queues, the bridge's rings) or lost; the loss is in the "
                  "final line, once the traffic drained", flush=True)
        finally:
            for g in gens:
                lab.stop(g)
            time.sleep(0.5)            # let the last frames drain
            results = []
            for i, (ln, b) in enumerate(zip(lab.lines, bridges)):
                b.send_signal(signal.SIGTERM)
                out, err = b.communicate(timeout=10)
                fwd = {}
                for line in out.strip().splitlines():
                    if line.startswith('{"summary"'):
                        fwd = json.loads(line)["summary"]["a_to_b"]
                if b.returncode not in (0, None):
                    print("netmapy-bridge exited with %s: %s" % (b.returncode, err.strip()[-300:]),
                          file=sys.stderr)
                off = _pkts(lab, ln.src_ns, ln.src_if, "tx_packets") - base[i][0]
                dlv = _pkts(lab, ln.sink_ns, ln.sink_if, "rx_packets") - base[i][1]
                results.append(dict(line=i, offered=off, forwarded=fwd.get("fwd"),
                                    delivered=dlv, loss=(off - dlv) / off if off else 0.0,
                                    seconds=args.seconds))
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print("line %d: offered %d, bridge forwarded %s, sink received %d, loss %.3f%%, "
                  "%.0f pps delivered" % (r["line"], r["offered"], r["forwarded"], r["delivered"],
                                          100 * r["loss"], r["delivered"] / args.seconds))
        print("lab removed")
    return 0


def main(argv=None):
    cli.terminate_on_sigterm()
    return cli.run("netmapy-demo", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
