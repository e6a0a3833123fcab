"""netmapy-pktgen tx vs trafgen vs dpdk-testpmd txonly, on one veth.

    python -m tools.bench_pktgen                  # 3 rounds of 5 s per generator
    python -m tools.bench_pktgen --seconds 10 --repeat 5 --json out.json
    python -m tools.bench_pktgen --cases packet,trafgen

The lab has one line (namespaces PREFIX+src, +mbox, +sink); every generator
sends the same 60-byte Ethernet/IPv4/UDP frame (s0's MAC and IP to the
sink's, port 9 -> 9) out of s0 in the src namespace from CPU 0, and the
figure is what the receiving interface (a0, in mbox) counts per second:
after a 1 s warm-up, the difference of its rx_packets counter over a
window of --seconds.  The rounds interleave the generators (A B C, A B C,
...) so that a noisy neighbour hits them all alike; the table gives the
median and the spread.

  packet   netmapy-pktgen -i packet:s0 (AF_PACKET TPACKET_V2 TX ring)
  xdp      netmapy-pktgen -i xdp:s0-0/T (AF_XDP; when the xdp backend imports)
  trafgen  trafgen -P 1 (netsniff-ng; pins itself to CPU 0)
  testpmd  dpdk-testpmd --forward-mode=txonly over net_af_packet (forwarding
           lcore 0, --no-huge)
  pipe     netmapy-pktgen tx into a pipe, a pktgen rx on the other end (CPU 1):
           not a veth, the ceiling of the frame builder and the ring model

Root is needed (the lab).  Ctrl-C stops everything and removes the lab.
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import click

from netmapy import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("packet", "xdp", "trafgen", "testpmd", "pipe")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _pktgen_argv(port, ln, size, extra=()):
    """netmapy-pktgen tx on ``port``: a port name, or [IFACE, options...]."""
    port = [port] if isinstance(port, str) else list(port)
    return [sys.executable, "-m", "netmapy.tools.pktgen", "-i"] + port + ["-f", "tx", "-l", str(size),
            "--src-mac", ln.src_mac, "--dst-mac", ln.sink_mac, "--src-ip", ln.src_ip,
            "--dst-ip", ln.sink_ip, "--src-port", "9", "--dst-port", "9", "-T", "0",
            "--json"] + list(extra)


def _popen(argv, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    kw.setdefault("start_new_session", True)
    return subprocess.Popen(argv, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), **kw)


def _stop(p, sig=signal.SIGINT, timeout=15):
    """Stop a generator we started (its own session), by PID."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
    return out or "", err or ""


class Case:
    """A generator: start() it, measure the window, stop() it."""
    name = "?"
    what = ""

    def __init__(self, lab, size):
        self.lab = lab
        self.ln = lab.lines[0]
        self.size = size

    def available(self):
        return True, ""

    def start(self):
        raise NotImplementedError

    def stop(self):
        out, err = _stop(self.proc)
        return out, err


class PktgenPacket(Case):
    name = "netmapy-pktgen packet"
    port = ["--backend", "packet"]

    def start(self):
        self.proc = _popen(_pktgen_argv([self.ln.src_if] + self.port, self.ln, self.size,
                                        ["--netns", self.lab.ns("src"), "--cpus", "0"]))
        line = self.proc.stdout.readline()
        if not line.startswith("{"):
            raise RuntimeError("%s did not start: %s" % (self.name, self.proc.stderr.read()))


class PktgenXdp(PktgenPacket):
    name = "netmapy-pktgen xdp"
    port = ["--backend", "xdp", "--queue", "0"]

    def available(self):
        try:
            import netmapy.backends.xdp   # noqa: F401
        except ImportError as e:
            return False, "the xdp backend does not import (%s)" % e
        return True, ""


class Trafgen(Case):
    name = "trafgen"

    def available(self):
        if not shutil.which("trafgen"):
            return False, "trafgen not found (apt-get install netsniff-ng)"
        return True, ""

    def start(self):
        self.proc = self.lab.trafgen(0, size=self.size, cpu=0, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def stop(self):
        return _stop(self.proc, signal.SIGTERM)


class Testpmd(Case):
    name = "dpdk-testpmd txonly"

    def available(self):
        if not shutil.which("dpdk-testpmd"):
            return False, "dpdk-testpmd not found (apt-get install dpdk)"
        return True, ""

    def start(self):
        ln = self.ln
        argv = ["ip", "netns", "exec", self.lab.ns("src"), shutil.which("dpdk-testpmd"),
                "-l", "0,1", "--main-lcore", "1", "--no-huge", "-m", "512", "--no-pci",
                "--log-level=*:warning", "--file-prefix=nmpg%d" % os.getpid(),
                "--vdev=net_af_packet0,iface=%s" % ln.src_if,
                "--", "--forward-mode=txonly", "--auto-start", "--total-num-mbufs=16384",
                "--stats-period=0", "--txpkts=%d" % self.size,
                "--eth-peer=0,%s" % ln.sink_mac, "--tx-ip=%s,%s" % (ln.src_ip, ln.sink_ip),
                "--tx-udp=9,9"]
        # its output goes to a file: through a pipe it is block-buffered (the
        # "Press enter" line would never come) and, undrained, could block it
        self.log = tempfile.TemporaryFile("w+")
        self.proc = _popen(argv, stdin=subprocess.PIPE, stdout=self.log,
                           stderr=subprocess.STDOUT)
        # started when the receiving interface starts counting
        n0 = _rx_packets(self.lab)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            time.sleep(0.2)
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("dpdk-testpmd exited: %s" % self.log.read()[-800:])
            if _rx_packets(self.lab) - n0 > 1000:
                return
        _stop(self.proc, signal.SIGINT, 30)
        raise RuntimeError("dpdk-testpmd sent nothing within 30 s")

    def stop(self):
        return _stop(self.proc, signal.SIGINT, 30)


class Pipe(Case):
    name = "netmapy-pktgen pipe (ceiling)"

    def start(self):
        self.parent = "bpg%d_%d" % (os.getpid(), int(time.monotonic() * 1000) % 100000)
        self.rx = _popen([sys.executable, "-m", "netmapy.tools.pktgen", "-i", "pipe:%s}1" % self.parent,
                          "-f", "rx", "--cpus", "1", "--no-verify", "-T", "0", "--json"])
        if not self.rx.stdout.readline().startswith("{"):
            raise RuntimeError("pktgen rx did not start: %s" % self.rx.stderr.read())
        self.proc = _popen(_pktgen_argv("pipe:%s{1" % self.parent, self.ln, self.size,
                                        ["--cpus", "0"]))
        if not self.proc.stdout.readline().startswith("{"):
            raise RuntimeError("pktgen tx did not start: %s" % self.proc.stderr.read())
        self.t_start = time.monotonic()

    def measure(self, warmup, seconds):
        time.sleep(warmup + seconds)
        _stop(self.proc)
        out, err = _stop(self.rx)
        s = [json.loads(x) for x in out.splitlines() if x.startswith("{")][-1]
        return s["pps_first_to_last"] if s.get("pps_first_to_last") else s["pps"]

    def stop(self):
        return "", ""


def _rx_packets(lab):
    ln = lab.lines[0]
    return lab.counters("mbox", ln.mbox_in)["rx_packets"]


def _rx_counts(lab):
    c = lab.counters("mbox", lab.lines[0].mbox_in)
    return c["rx_packets"], c["rx_bytes"]


def run_case(lab, cls, size, warmup, seconds, sizes=None):
    c = cls(lab, size)
    c.frame_bytes = float(size)
    c.start()
    try:
        if hasattr(c, "measure"):
            return c.measure(warmup, seconds)
        time.sleep(warmup)
        if c.proc.poll() is not None:
            raise RuntimeError("%s exited early: %s" % (c.name, c.proc.stderr.read()
                                                         if c.proc.stderr else ""))
        (n0, b0), t0 = _rx_counts(lab), time.monotonic()
        time.sleep(seconds)
        (n1, b1), t1 = _rx_counts(lab), time.monotonic()
        c.frame_bytes = (b1 - b0) / max(1, n1 - n0)
        return (n1 - n0) / (t1 - t0)
    finally:
        c.stop()
        if sizes is not None:
            sizes.append(c.frame_bytes)


def bench(cases, seconds=5.0, repeat=3, size=60, warmup=1.0, prefix="pgb"):
    from netmapy.tools.lab import Lab
    if os.geteuid() != 0:
        raise cli.CliError("the benchmark needs root (it builds the veth lab)")
    classes = {"packet": PktgenPacket, "xdp": PktgenXdp, "trafgen": Trafgen,
               "testpmd": Testpmd, "pipe": Pipe}
    runs = {k: [] for k in cases}
    frame = {k: [] for k in cases}
    skipped = {}
    with Lab(lines=1, prefix=prefix) as lab:
        todo = []
        for k in cases:
            ok, why = classes[k](lab, size).available()
            if ok:
                todo.append(k)
            else:
                skipped[k] = why
                log("  skipping %s: %s" % (k, why))
        for r in range(repeat):
            for k in todo:
                try:
                    pps = run_case(lab, classes[k], size, warmup, seconds, frame[k])
                except Exception as e:          # one broken generator must not end the rest
                    log("  round %d %-8s failed: %s" % (r + 1, k, cli.one_line(e)))
                    skipped.setdefault(k, cli.one_line(e))
                    continue
                runs[k].append(pps)
                log("  round %d %-8s %.3f Mpps" % (r + 1, k, pps / 1e6))
    res = {}
    for k in cases:
        if runs[k]:
            res[k] = dict(name=classes[k].name, mpps=statistics.median(runs[k]) / 1e6,
                          runs=[x / 1e6 for x in runs[k]],
                          frame_bytes=statistics.median(frame[k]) if frame[k] else size)
    ref = res.get("trafgen", {}).get("mpps")
    for v in res.values():
        v["vs_trafgen"] = v["mpps"] / ref if ref else None
    return dict(benchmark="pktgen-tx", size=size, seconds=seconds, repeat=repeat,
                results=res, skipped=skipped, cpus=os.cpu_count(),
                load=os.getloadavg())


def report(r):
    lines = ["TX on one veth (s0 -> a0), %d-byte frames, generator on CPU 0, measured at a0's "
             "rx counter; median of %d x %gs (load avg %.1f at the end)" % (
                 r["size"], r["repeat"], r["seconds"], r["load"][0]),
             "  %-30s %9s %9s %7s   %s" % ("generator", "Mpps", "x trafgen", "bytes",
                                           "runs (Mpps)")]
    for k, v in sorted(r["results"].items(), key=lambda kv: -kv[1]["mpps"]):
        lines.append("  %-30s %9.3f %9s %7.1f   %s" % (
            v["name"], v["mpps"], "%.2f" % v["vs_trafgen"] if v["vs_trafgen"] else "-",
            v["frame_bytes"],
            " ".join("%.3f" % x for x in v["runs"])))
    for k, why in r["skipped"].items():
        if k not in r["results"]:
            lines.append("  %-30s skipped: %s" % (k, why))
    return "\n".join(lines)


def _cases(ctx, param, value):
    cases = [c.strip() for c in value.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad or not cases:
        raise click.BadParameter("unknown case %s (known: %s)" % (", ".join(bad) or "''",
                                                                  ", ".join(CASES)))
    return cases


@cli.command("bench_pktgen", epilog=__doc__.split("\n\n", 1)[1])
@click.option("--cases", default=",".join(CASES), callback=_cases, metavar="CASE,...",
              help="comma-separated, from %s (default: all)" % ",".join(CASES))
@click.option("--seconds", type=cli.SECONDS, default=5.0, show_default=True,
              help="measured window per run")
@click.option("--repeat", type=cli.IntRange(min=1), default=3, show_default=True,
              help="rounds (median)")
@click.option("--size", type=cli.IntRange(60, 1514), default=60, show_default=True,
              help="frame size without FCS")
@click.option("--prefix", default="pgb", show_default=True, help="lab namespace prefix")
@click.option("--json", metavar="FILE", type=click.Path(dir_okay=False),
              help="also write the results as JSON")
@cli.common_options(version=False)
@cli.pass_args
def command(args):
    """netmapy-pktgen against trafgen and testpmd (see the module docstring)."""
    return run(args)


def run(args):
    cases = args.cases
    cli.terminate_on_sigterm()
    r = bench(cases, args.seconds, args.repeat, args.size, prefix=args.prefix)
    print(report(r), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
