"""The built-in lab run: traffic from src through netmapy-bridge in mbox to
sink, with live counters, then a summary; everything is removed at the end
(also after Ctrl-C).

    netmapy-demo                    # 1 line, 10 s, 200 kpps offered
    netmapy-demo --lines 2 --seconds 5 --rate 0   # full speed
    netmapy-demo --ifnames in=nb-mi,out=nb-mo     # interface names with '-'

(``python3 -m tools.demo`` from a checkout.)

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

import json
import os
import signal
import subprocess
import sys
import time

import click

from netmapy import cli
from .lab import _ifnames as _ifnames_cb
from .netbench import ROOT, _rate


@cli.command("netmapy-demo", epilog="examples:\n  netmapy-demo\n"
             "  netmapy-demo --lines 2 --seconds 5 --rate 0\n"
             "  netmapy-demo --ifnames in=nb-mi,out=nb-mo\n"
             "  (from a checkout: python3 -m tools.demo ...)\n\n" +
             cli.completion_help("netmapy-demo"))
@click.option("--lines", type=cli.IntRange(1, 8), default=1, show_default=True,
              help="veth lines")
@click.option("--seconds", type=cli.SECONDS, default=10, show_default=True,
              help="traffic duration")
@click.option("--rate", default="200000", show_default=True, callback=_rate, metavar="RATE",
              help="offered packets per second per line (500k, 1.5M), 0 for trafgen's full "
                   "speed")
@click.option("--size", type=cli.IntRange(60, 1514), default=60, show_default=True,
              help="frame size in bytes")
@cli.backend_option(default="packet", help="backend of the bridge's ports")
@click.option("--prefix", default="", help="prefix of the lab's namespace names")
@click.option("--ifnames", metavar="ROLE=STEM,...", callback=_ifnames_cb,
              help="the lab's interface names (as netmapy-lab's --ifnames), e.g. "
                   "in=nb-mi,out=nb-mo")
@click.option("--json", is_flag=True, help="print the summary as JSON")
@cli.common_options
@cli.pass_args
def command(args):
    """Run traffic through netmapy-bridge on the built-in veth lab
    (namespaces src, mbox, sink) with live counters."""
    return run(args)


def _pkts(lab, ns, ifname, key):
    return lab.counters(ns, ifname)[key]


def run(args):
    from .lab import Lab
    if os.geteuid() != 0:
        raise cli.CliError("the lab needs root (it creates network namespaces): run it with sudo")
    rate = None if args.rate is None else "%dpps" % args.rate.pps()
    bridges, gens = [], []
    with Lab(lines=args.lines, prefix=args.prefix, ifnames=args.ifnames) as lab:
        mbox = lab.ns("mbox")
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for ln in lab.lines:
            argv = [sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
                    "--netns", mbox, "--backend", args.backend, "--interval", "0",
                    "--json"]
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
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
