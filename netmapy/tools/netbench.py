"""netmapy-bench: source -> middlebox -> sink on the veth lab, one
middlebox after another: the zero-loss throughput (RFC 2544 section 26.1:
the highest paced rate carried with no loss), the full-speed delivered rate
and loss, the CPU each packet costs, with a table, JSON, a PNG plot
(delivered vs offered per middlebox, zero-loss throughput) and a markdown
report.

    netmapy-bench                                   # every available middlebox, 1 line
    netmapy-bench -m linux-bridge -m netmapy-packet --lines 1,2 --rounds 3
    netmapy-bench -m custom --custom "my-fwd {a} {b}" --no-search --rate 500k

For each middlebox and each line count N it builds the lab (namespaces
src, mbox, sink; N veth lines), starts the middlebox in mbox, reads its
idle CPU, offers trafgen traffic on every line from CPU 0 at full speed
(--repeat runs of --seconds), then searches the highest paced rate with no
loss (<= --tolerance %%) over trials of --trial-seconds: the full-speed rate
first, then halving the interval between the best lossless and the worst
lossy rate.  Offered and delivered come from the interface counters.  CPU
per packet: the middlebox processes' own time, and the softirq time of
every CPU (/proc/stat), per delivered packet.  Every middlebox runs once
per round and --rounds rounds run one after the other, so the machine's
drift over time spreads over all of them; medians are reported, each
beside the same invocation's references (the Linux bridge, the better
dpdk-testpmd PMD) and the hour's ceiling (none).  The lab is removed after
each run, also on Ctrl-C.

Middleboxes: none (trafgen straight into the sink: the ceiling),
linux-bridge, tc-mirred, xdp-redirect, netmapy-<backend> (netmapy-bridge
with that backend: packet, xdp, ...), netmapy-python (netmapy-bridge
with a Python per-packet function), netmapy-pipeline (RX -> filter worker
-> TX over pipes), python-mmap (a pure-Python TPACKET bridge),
testpmd-af_packet, testpmd-af_xdp (dpdk-testpmd io forwarding, when DPDK is
installed), custom (--custom).
"""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import click

from netmapy import cli
from netmapy.host.cpus import cpu_ticks

HERE = os.path.dirname(os.path.abspath(__file__))
#: Where netmapy is imported from (a checkout or site-packages): the
#: PYTHONPATH of the middlebox processes, so that they run this netmapy.
ROOT = os.path.dirname(os.path.dirname(HERE))
XDP_REDIRECT_C = os.path.join(HERE, "bpf", "xdp_redirect.c")
MAX_LINES = 8
MIDDLEBOXES = ("none", "linux-bridge", "tc-mirred", "xdp-redirect", "netmapy-packet",
               "netmapy-xdp", "netmapy-python", "testpmd-af_packet", "testpmd-af_xdp",
               "python-mmap", "netmapy-pipeline", "custom")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def _proc_cpu(pid):
    """utime+stime (s) of a process and its descendants."""
    try:
        import psutil
        p = psutil.Process(pid)
        procs = [p] + p.children(recursive=True)
        tot = 0.0
        for q in procs:
            try:
                t = q.cpu_times()
                tot += t.user + t.system
            except psutil.Error:
                pass
        return tot
    except Exception:
        return None


class Middlebox:
    """Base: a kernel-side middlebox set up with commands (no process)."""
    name = "?"
    process = False

    def __init__(self, args):
        self.args = args
        self.procs = []
        self.cpu0 = 0.0

    @classmethod
    def available(cls):
        return True, ""

    def setup(self, lab):
        pass

    def start(self, lab):
        pass

    def cpu_seconds(self):
        if not self.process:
            return None
        vals = [_proc_cpu(p.pid) for p in self.procs]
        if any(v is None for v in vals):
            return None
        return sum(vals)

    def stop(self, lab):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
        self.procs = []

    def teardown(self, lab):
        pass


class NoMiddlebox(Middlebox):
    name = "none"

    def setup(self, lab):
        # a direct veth src d{i} <-> sink e{i}, trafgen sends on it
        for ln in lab.lines:
            lab.run("src", ["ip", "link", "add", "name", "d%d" % ln.index, "address", ln.src_mac,
                            "type", "veth", "peer", "name", "e%d" % ln.index, "address",
                            ln.sink_mac, "netns", ln.sink_ns])
            for ns, dev in (("src", "d%d" % ln.index), ("sink", "e%d" % ln.index)):
                lab.run(ns, ["ethtool", "-K", dev, "gro", "off", "tso", "off", "gso", "off",
                             "rx", "off", "tx", "off"])
                lab.run(ns, ["ip", "link", "set", dev, "up"])
        time.sleep(1.2)

    def out_dev(self, ln):
        return "d%d" % ln.index, "e%d" % ln.index


class LinuxBridge(Middlebox):
    name = "linux-bridge"

    def setup(self, lab):
        for ln in lab.lines:
            br = "br%d" % ln.index
            lab.run("mbox", ["ip", "link", "add", "name", br, "type", "bridge"])
            for dev in (ln.mbox_in, ln.mbox_out):
                lab.run("mbox", ["ip", "link", "set", dev, "master", br])
            lab.run("mbox", ["ip", "link", "set", br, "up"])
        time.sleep(0.5)


class TcMirred(Middlebox):
    name = "tc-mirred"

    def setup(self, lab):
        for ln in lab.lines:
            for src, dst in ((ln.mbox_in, ln.mbox_out), (ln.mbox_out, ln.mbox_in)):
                lab.run("mbox", ["tc", "qdisc", "add", "dev", src, "ingress"])
                lab.run("mbox", ["tc", "filter", "add", "dev", src, "parent", "ffff:", "protocol",
                                 "all", "u32", "match", "u32", "0", "0", "action", "mirred",
                                 "egress", "redirect", "dev", dst])


class XdpRedirect(Middlebox):
    name = "xdp-redirect"

    @classmethod
    def available(cls):
        if not shutil.which("clang"):
            return False, "clang not found (apt-get install clang)"
        return True, ""

    def setup(self, lab):
        self.tmp = tempfile.mkdtemp(prefix="nmbench-xdp-")
        src = XDP_REDIRECT_C
        inc = "/usr/include/%s-linux-gnu" % os.uname().machine
        for ln in lab.lines:
            for dev, dst, peer_ns, peer in ((ln.mbox_in, ln.mbox_out, ln.sink_ns, ln.sink_if),
                                            (ln.mbox_out, ln.mbox_in, ln.src_ns, ln.src_if)):
                idx = int(open_ifindex(lab, "mbox", dst))
                obj = os.path.join(self.tmp, "%s.o" % dev)
                subprocess.run(["clang", "-O2", "-target", "bpf", "-I", inc,
                                "-DTARGET_IFINDEX=%d" % idx, "-c", src, "-o", obj], check=True)
                lab.run("mbox", ["ip", "link", "set", "dev", dev, "xdpdrv", "obj", obj, "sec", "xdp"])
                # the far end of the target veth must be in NAPI mode (the
                # sink's drop program already does that for the sink)
                if not (self.args.sink == "drop" and peer_ns == ln.sink_ns):
                    lab.run(peer_ns, ["ip", "link", "set", "dev", peer, "xdpdrv", "obj", obj,
                                      "sec", "xdp_pass"])

    def teardown(self, lab):
        shutil.rmtree(getattr(self, "tmp", "/nonexistent"), ignore_errors=True)


def open_ifindex(lab, ns, dev):
    out = lab.run(ns, ["cat", "/sys/class/net/%s/ifindex" % dev]).stdout
    return out.strip() if isinstance(out, str) else out.decode().strip()


class NetmapyBridge(Middlebox):
    process = True

    def __init__(self, args, backend, python=False):
        super().__init__(args)
        self.backend = backend
        self.python = python
        self.name = "netmapy-python" if python else "netmapy-%s" % backend

    @classmethod
    def available_backend(cls, backend):
        try:
            import importlib
            importlib.import_module("netmapy.backends." + backend)
        except ImportError as e:
            return False, "netmapy's %s backend is not built (%s)" % (backend, e)
        return True, ""

    def start(self, lab):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for ln in lab.lines:
            argv = [sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
                    "--netns", lab.ns("mbox"), "--backend", self.backend, "--interval", "0",
                    "--queues", "1", "--cpus", str(self.args.mbox_cpu)]
            if self.python:
                argv += ["--python", "netmapy.tools.pyfuncs:accept_all"]
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=env)
            self.procs.append(p)
            wait_line(p, ": running,", "netmapy-bridge")


def wait_line(p, needle, what, timeout=30):
    err = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = p.stderr.readline()
        if not line:
            break
        err.append(line.strip())
        if needle in line:
            return
    p.kill()
    raise cli.CliError("%s did not start: %s" % (what, " | ".join(err)[-400:]))


class NetmapyPipeline(Middlebox):
    """netmapy-pipeline IN OUT: an RX worker, a filter worker and a TX
    worker joined by zero-copy pipes, all on the middlebox CPU."""
    name = "netmapy-pipeline"
    process = True

    def start(self, lab):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for ln in lab.lines:
            argv = [sys.executable, "-m", "middlebox.pipeline", ln.mbox_in, ln.mbox_out,
                    "--netns", lab.ns("mbox"), "--backend", self.args.pipeline_backend,
                    "--stages", "rx=1,filter=1,tx=1", "--cpus", str(self.args.mbox_cpu),
                    "--interval", "0"]
            p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, env=env)
            self.procs.append(p)
            wait_line(p, ": running", "netmapy-pipeline")


class Testpmd(Middlebox):
    process = True

    def __init__(self, args, pmd):
        super().__init__(args)
        self.pmd = pmd
        self.name = "testpmd-%s" % pmd

    @classmethod
    def available(cls):
        if not shutil.which("dpdk-testpmd"):
            return False, "dpdk-testpmd not found (apt-get install dpdk-dev)"
        return True, ""

    def start(self, lab):
        for ln in lab.lines:
            vdevs = []
            for k, dev in enumerate((ln.mbox_in, ln.mbox_out)):
                if self.pmd == "af_packet":
                    vdevs.append("--vdev=net_af_packet%d,iface=%s" % (k, dev))
                else:
                    vdevs.append("--vdev=net_af_xdp%d,iface=%s,start_queue=0,queue_count=1" % (k, dev))
            cpu = self.args.mbox_cpu
            main = 0 if cpu != 0 else 1
            argv = ["dpdk-testpmd", "--no-huge", "-m", "512", "--no-pci",
                    "--file-prefix", "nmb%d_%d" % (os.getpid(), ln.index),
                    "-l", "%d,%d" % (min(main, cpu), max(main, cpu)), "--main-lcore", str(main)] + \
                vdevs + ["--", "--forward-mode=io", "--auto-start", "--nb-cores=1",
                         "--stats-period=1", "--total-num-mbufs=16384"]
            p = lab.exec("mbox", argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
            self.procs.append(p)
            out = []
            end = time.monotonic() + 30
            while time.monotonic() < end:
                line = p.stdout.readline()
                if not line:
                    break
                out.append(line.strip())
                if "Port statistics" in line or "forwarding packets" in line.lower():
                    break
            else:
                raise cli.CliError("dpdk-testpmd did not start: %s" % " | ".join(out)[-400:])
            if p.poll() is not None:
                raise cli.CliError("dpdk-testpmd exited: %s" % " | ".join(out)[-400:])
            # keep draining its output so it never blocks on a full pipe
            import threading
            threading.Thread(target=lambda s=p.stdout: [None for _ in s], daemon=True).start()

    def stop(self, lab):
        stop_groups(self.procs, signal.SIGINT)      # testpmd quits cleanly on SIGINT
        self.procs = []


def stop_groups(procs, sig):
    """Signal each process group, wait, SIGKILL what does not go."""
    for p in procs:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class Custom(Middlebox):
    name = "custom"
    process = True

    def start(self, lab):
        if not self.args.custom:
            raise cli.CliError("-m custom needs --custom 'COMMAND {a} {b}'")
        for ln in lab.lines:
            cmd = self.args.custom.format(a=ln.mbox_in, b=ln.mbox_out, line=ln.index)
            p = lab.exec("mbox", ["sh", "-c", cmd], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            self.procs.append(p)
        time.sleep(self.args.custom_wait)
        for p in self.procs:
            if p.poll() is not None:
                raise cli.CliError("the custom middlebox exited: %s" % p.stderr.read()[-300:])

    def stop(self, lab):
        stop_groups(self.procs, signal.SIGTERM)
        self.procs = []


class PyMmapBridge(Custom):
    """The pure-Python TPACKET bridge (netmapy/tools/pymmap_bridge.py): the reference
    for a Python-function netmapy bridge."""
    name = "python-mmap"

    def start(self, lab):
        for ln in lab.lines:
            argv = ["env", "PYTHONPATH=" + ROOT, "taskset", "-c", str(self.args.mbox_cpu),
                    sys.executable, "-m", "netmapy.tools.pymmap_bridge", ln.mbox_in,
                    ln.mbox_out]
            self.procs.append(lab.exec("mbox", argv, start_new_session=True,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        time.sleep(1.0)
        for p in self.procs:
            if p.poll() is not None:
                raise cli.CliError("pymmap_bridge exited: %s" % p.stderr.read()[-300:])


def registry(args):
    mbs = {
        "none": lambda: NoMiddlebox(args),
        "linux-bridge": lambda: LinuxBridge(args),
        "tc-mirred": lambda: TcMirred(args),
        "xdp-redirect": lambda: XdpRedirect(args),
        "netmapy-packet": lambda: NetmapyBridge(args, "packet"),
        "netmapy-xdp": lambda: NetmapyBridge(args, "xdp"),
        "netmapy-python": lambda: NetmapyBridge(args, args.python_backend, python=True),
        "testpmd-af_packet": lambda: Testpmd(args, "af_packet"),
        "testpmd-af_xdp": lambda: Testpmd(args, "af_xdp"),
        "python-mmap": lambda: PyMmapBridge(args),
        "netmapy-pipeline": lambda: NetmapyPipeline(args),
        "custom": lambda: Custom(args),
    }
    avail = {
        "xdp-redirect": XdpRedirect.available,
        "netmapy-packet": lambda: NetmapyBridge.available_backend("packet"),
        "netmapy-xdp": lambda: NetmapyBridge.available_backend("xdp"),
        "netmapy-python": lambda: NetmapyBridge.available_backend(args.python_backend),
        "testpmd-af_packet": Testpmd.available,
        "testpmd-af_xdp": Testpmd.available,
    }
    return mbs, avail


class Session:
    """One lab with `nlines` lines and middlebox `mb` running in it, for as
    many trials as wanted: full-speed runs, paced zero-loss trials and an
    idle reading all see the same middlebox process."""

    def __init__(self, args, mb, nlines):
        self.args, self.mb, self.nlines = args, mb, nlines

    def __enter__(self):
        from .lab import Lab
        args, mb = self.args, self.mb
        self.lab = Lab(lines=self.nlines, prefix=args.prefix, gro=False)
        self.lab.__enter__()
        try:
            lab = self.lab
            if args.sink == "drop":
                attach_sink_drop(lab, args)
            mb.setup(lab)
            if args.sink == "drop" and isinstance(mb, NoMiddlebox):
                attach_sink_drop(lab, args, devs=["e%d" % ln.index for ln in lab.lines])
            self.started = False
            mb.start(lab)
            self.started = True
            time.sleep(0.3)
            self.devs = []
            for ln in lab.lines:
                if isinstance(mb, NoMiddlebox):
                    out, into = mb.out_dev(ln)
                    self.devs.append((ln, ln.src_ns, out, ln.sink_ns, into))
                else:
                    self.devs.append((ln, ln.src_ns, ln.src_if, ln.sink_ns, ln.sink_if))
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        try:
            try:
                self.mb.stop(self.lab)
            finally:
                self.mb.teardown(self.lab)
        finally:
            self.lab.__exit__(*exc)

    def settle(self, quiet=0.3, limit=10.0):
        """Wait until the sinks' counters stop moving (`quiet` seconds
        without a packet, at most `limit`): a backlogged middlebox keeps
        delivering after the generator stopped, and a trial must neither
        miss those packets nor hand them to the next trial."""
        last, still, end = None, 0.0, time.monotonic() + limit
        while time.monotonic() < end:
            now = [self.lab.counters(c, d)["rx_packets"] for ln, a, b, c, d in self.devs]
            if now == last:
                still += 0.1
                if still >= quiet:
                    return
            else:
                still = 0.0
            last = now
            time.sleep(0.1)

    def idle_cpu(self, seconds=2.0):
        """The middlebox's own CPU use with no traffic, in % of one CPU
        (None for kernel middleboxes)."""
        c0 = self.mb.cpu_seconds()
        time.sleep(seconds)
        c1 = self.mb.cpu_seconds()
        return None if c0 is None or c1 is None else 100.0 * (c1 - c0) / seconds

    def trial(self, rate=None, seconds=None):
        """Offer `rate` pps per line (None: trafgen's full speed) for
        `seconds`; what was offered and delivered, the loss and the CPU it
        took (the middlebox's own process time, and the softirq time of
        every CPU, per delivered packet)."""
        args, lab, mb = self.args, self.lab, self.mb
        seconds = seconds or args.seconds
        rate_arg = None if rate is None else "%dpps" % max(1, int(rate))
        base = [(lab.counters(a, b)["tx_packets"], lab.counters(c, d)["rx_packets"])
                for ln, a, b, c, d in self.devs]
        cpu0, t0 = mb.cpu_seconds(), cpu_ticks()
        gens = [start_trafgen(lab, ln, sdev, seconds, rate_arg, args.size, args.gen_cpu)
                for ln, sns, sdev, kns, kdev in self.devs]
        for g in gens:
            g.wait(timeout=seconds + 30)
        self.settle()                         # what the middlebox holds arrives now
        cpu1, t1 = mb.cpu_seconds(), cpu_ticks()
        res = []
        for (ln, sns, sdev, kns, kdev), (tx0, rx0) in zip(self.devs, base):
            off = lab.counters(sns, sdev)["tx_packets"] - tx0
            dlv = lab.counters(kns, kdev)["rx_packets"] - rx0
            res.append(dict(offered=off, delivered=dlv, loss=(off - dlv) / off if off else 0.0))
        off = sum(r["offered"] for r in res)
        tot = sum(r["delivered"] for r in res)
        hz = os.sysconf("SC_CLK_TCK")
        soft = sum(t1[c][1] - t0[c][1] for c in t1) / hz
        cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
        return dict(per_line=res, offered=off, delivered=tot, sent=off, lost=max(0, off - tot),
                    requested_pps=None if rate is None else rate * self.nlines,
                    offered_pps=off / seconds, offered_mpps=off / seconds / 1e6,
                    delivered_mpps=tot / seconds / 1e6,
                    delivered_gbps=tot * (args.size + 24) * 8 / seconds / 1e9,
                    loss=1 - tot / max(1, off),
                    cpu_ns_per_packet=None if cpu is None else 1e9 * cpu / max(1, tot),
                    softirq_ns_per_packet=1e9 * soft / max(1, tot))


def measure(args, mb, nlines):
    """One full-speed run in a lab of its own (tests and quick looks)."""
    with Session(args, mb, nlines) as s:
        r = s.trial()
    r.update(middlebox=mb.name, lines=nlines)
    return r


def characterise(args, mb, nlines):
    """Everything netmapy-bench reports for one middlebox and line count:
    idle CPU, `repeat` full-speed runs (median), and the zero-loss
    throughput found by paced trials (median of `search_repeat` searches),
    with every trial kept for the delivered-vs-offered curve."""
    from .zeroloss import search
    with Session(args, mb, nlines) as s:
        idle = s.idle_cpu()
        full = []
        fixed = args.rate.pps() if args.rate is not None else None
        for r in range(args.repeat):
            t = s.trial(fixed)
            log("        %s: offered %.3f, delivered %.3f Mpps, loss %.3f%%%s, softirq "
                "%.0f ns/packet" % ("full speed" if fixed is None else "fixed rate",
                                    t["offered_mpps"], t["delivered_mpps"], 100 * t["loss"],
                                    "" if t["cpu_ns_per_packet"] is None else
                                    ", %.0f ns CPU/packet" % t["cpu_ns_per_packet"],
                                    t["softirq_ns_per_packet"]))
            full.append(t)
        full.sort(key=lambda x: x["delivered_mpps"])
        med = dict(full[len(full) // 2])
        zl, trials = [], []
        if args.search:
            ceiling = max(t["offered_pps"] for t in full) / nlines
            for k in range(args.search_repeat):
                best, ts = search(
                    lambda rate: s.trial(rate, args.trial_seconds), ceiling,
                    resolution=args.resolution, max_trials=args.trials,
                    tolerance=args.tolerance / 100.0,
                    report=lambda t: log("        paced %.3f Mpps/line: delivered %.3f Mpps, "
                                         "loss %.4f%%" % (t["requested_pps"] / nlines / 1e6,
                                                           t["delivered_mpps"], 100 * t["loss"])))
                zl.append(best)
                trials += ts
            zl.sort()
            log("        zero-loss throughput: %.3f Mpps" % (zl[len(zl) // 2] / 1e6))
    med.update(middlebox=mb.name, lines=nlines, size=args.size, idle_cpu_pct=idle,
               runs=[dict(delivered_mpps=x["delivered_mpps"], loss=x["loss"]) for x in full],
               zero_loss_mpps=(zl[len(zl) // 2] / 1e6) if zl else None,
               zero_loss_runs=[z / 1e6 for z in zl],
               curve=[dict(offered_mpps=t["offered_mpps"], delivered_mpps=t["delivered_mpps"],
                           loss=t["loss"]) for t in trials + full])
    return med


_DROP_OBJ = []


def drop_object():
    """bpf/xdp_redirect.c compiled (once per process): its section xdp_drop
    counts (the veth counts what XDP sees) and drops."""
    if not _DROP_OBJ:
        d = tempfile.mkdtemp(prefix="nmbench-sink-")
        obj = os.path.join(d, "sink.o")
        subprocess.run(["clang", "-O2", "-target", "bpf", "-I",
                        "/usr/include/%s-linux-gnu" % os.uname().machine, "-c",
                        XDP_REDIRECT_C, "-o", obj], check=True)
        _DROP_OBJ.append(obj)
    return _DROP_OBJ[0]


def attach_sink_drop(lab, args, devs=None):
    """The sink counts and drops with a 1-instruction XDP program, so its
    IP stack (ICMP port unreachable for every frame...) costs nothing to
    whoever transmits into it: a userspace middlebox pays its TX and the
    sink's receive on its own core on veth."""
    obj = drop_object()
    for dev in devs or [ln.sink_if for ln in lab.lines]:
        lab.run("sink", ["ip", "link", "set", "dev", dev, "xdpdrv", "obj", obj, "sec", "xdp_drop"])


def start_trafgen(lab, ln, dev, seconds, rate, size, cpu):
    cfg = lab.trafgen_config(ln, size, cpu)
    fd, path = tempfile.mkstemp(prefix="nmbench-trafgen-", suffix=".cfg")
    with os.fdopen(fd, "w") as f:
        f.write(cfg)
    lab._tmpfiles.append(path)
    argv = ["timeout", "-s", "TERM", "%g" % seconds, "trafgen", "-o", dev, "-i", path,
            "-P", str(cpu + 1), "--no-sock-mem", "-Q", "-C"]
    if rate:
        argv += ["-b", rate]
    return lab.exec("src", argv, start_new_session=True, stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE)


def _rate(ctx, param, value):
    """--rate: packets per second per line (netmapy.units' parser), 0 for
    trafgen's full speed -> Rate or None."""
    from netmapy.units import parse_rate
    if value in (None, "", "0"):
        return None
    try:
        r = parse_rate(value)
        r.pps()
    except ValueError as e:
        raise click.BadParameter(str(e))
    if r.value > 100e6:
        raise click.BadParameter("%r is not a rate this lab can offer (1 pps .. 100 Mpps)"
                                 % value)
    return r


def _lines(ctx, param, value):
    try:
        counts = [int(x) for x in value.split(",")]
    except ValueError:
        raise click.BadParameter("%r: expected numbers like 1,2,4" % value)
    for n in counts:
        if not 1 <= n <= MAX_LINES:
            raise click.BadParameter("%d: this machine can host 1..%d lines" % (n, MAX_LINES))
    return counts


def _f(v, fmt):
    return "-" if v is None else fmt % v


def table(results):
    head = "%-18s %5s %10s %9s %9s %8s %8s %9s %8s %7s" % (
        "middlebox", "lines", "zero-loss", "full", "loss", "xbridge", "xtestpmd", "CPU ns/p",
        "softirq", "idle%")
    lines = [head, "%-18s %5s %10s %9s %9s %8s %8s %9s %8s %7s" % (
        "", "", "Mpps", "Mpps", "", "(0-loss)", "(0-loss)", "(process)", "ns/p", "")]
    for r in results:
        lines.append("%-18s %5d %10s %9.3f %8.3f%% %8s %8s %9s %8s %7s" % (
            r["middlebox"], r["lines"], _f(r.get("zero_loss_mpps"), "%.3f"), r["delivered_mpps"],
            100 * r["loss"], _f(r.get("zero_loss_vs_bridge"), "%.2fx"),
            _f(r.get("zero_loss_vs_testpmd"), "%.2fx"), _f(r.get("cpu_ns_per_packet"), "%.0f"),
            _f(r.get("softirq_ns_per_packet"), "%.0f"), _f(r.get("idle_cpu_pct"), "%.1f")))
    ceil = {r["lines"]: r["delivered_mpps"] for r in results if r["middlebox"] == "none"}
    for n, c in sorted(ceil.items()):
        lines.append("ceiling (trafgen straight into the sink), %d line(s): %.3f Mpps" % (n, c))
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    counts = sorted({r["lines"] for r in results})
    fig, axes = plt.subplots(1, len(counts) + 1, figsize=(6 * (len(counts) + 1), 4.8))
    names = []
    for r in results:
        if r["middlebox"] not in names:
            names.append(r["middlebox"])
    for ax, n in zip(axes, counts):
        top = 0
        for name in names:
            rs = [r for r in results if r["middlebox"] == name and r["lines"] == n]
            if not rs:
                continue
            pts = sorted((c["offered_mpps"], c["delivered_mpps"]) for c in rs[0]["curve"])
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=name)
                top = max(top, max(p[0] for p in pts))
        ax.plot([0, top], [0, top], color="grey", lw=0.8, ls="--", label="no loss")
        ax.set_xlabel("offered Mpps (all lines)")
        ax.set_ylabel("delivered Mpps")
        ax.set_title("delivered vs offered, %d line(s)" % n)
        ax.grid(True, alpha=0.3)
    ax = axes[-1]
    width = 0.8 / max(1, len(counts))
    for i, n in enumerate(counts):
        ys = [next((r.get("zero_loss_mpps") or 0 for r in results
                    if r["middlebox"] == name and r["lines"] == n), 0) for name in names]
        ax.bar([j + i * width for j in range(len(names))], ys, width, label="%d line(s)" % n)
    ax.set_xticks([j + width * (len(counts) - 1) / 2 for j in range(len(names))])
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("zero-loss Mpps")
    ax.set_title("zero-loss throughput")
    ax.legend(fontsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle("src -> middlebox -> sink on veth, %d-byte frames" % results[0].get("size", 60))
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.savefig(path, dpi=100, metadata={"Title": "netmapy-bench",
                                         "Description": "series: " + ", ".join(names)})
    plt.close(fig)


def markdown(results, args, png):
    out = ["# netmapy-bench report", "",
           "%s; %d-byte frames; trafgen on CPU %d; middlebox on CPU %d; sink: %s; full-speed "
           "runs of %g s; zero-loss search over paced trials of %g s (loss <= %g %%); median of "
           "%d round(s), the middleboxes interleaved." % (
               time.strftime("%Y-%m-%d %H:%M"), args.size, args.gen_cpu, args.mbox_cpu,
               "XDP drop" if args.sink == "drop" else "the IP stack", args.seconds,
               args.trial_seconds, args.tolerance, args.rounds), ""]
    ceil = {r["lines"]: r["delivered_mpps"] for r in results if r["middlebox"] == "none"}
    for n, c in sorted(ceil.items()):
        out.append("The hour's ceiling (trafgen straight into the sink), %d line(s): **%.3f "
                   "Mpps**." % (n, c))
    out += ["", "| middlebox | lines | zero-loss Mpps | x Linux bridge | x best testpmd | "
                "full-speed delivered Mpps | loss | CPU ns/packet (process) | softirq ns/packet "
                "| idle CPU % |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        out.append("| %s | %d | %s | %s | %s | %.3f | %.3f %% | %s | %s | %s |" % (
            r["middlebox"], r["lines"], _f(r.get("zero_loss_mpps"), "%.3f"),
            _f(r.get("zero_loss_vs_bridge"), "%.2f"), _f(r.get("zero_loss_vs_testpmd"), "%.2f"),
            r["delivered_mpps"], 100 * r["loss"], _f(r.get("cpu_ns_per_packet"), "%.0f"),
            _f(r.get("softirq_ns_per_packet"), "%.0f"), _f(r.get("idle_cpu_pct"), "%.1f")))
    out += ["", "![delivered vs offered, zero-loss throughput](%s)" % os.path.basename(png), "",
            "CPU ns/packet: the middlebox processes' own time (user + system) per delivered "
            "packet. softirq ns/packet: the softirq time of every CPU during the run per delivered "
            "packet, which includes the generator's transmit and the sink's receive: compare it "
            "with the `none` row (the same work without a middlebox); kernel middleboxes (bridge, "
            "mirred, XDP redirect) do all their work there, in the sender's softirq."]
    return "\n".join(out) + "\n"


_CPU = cli.IntRange(0, (os.cpu_count() or 1) - 1)


@cli.command("netmapy-bench", epilog=__doc__.split("\n\n", 1)[1] + "\n" +
             cli.completion_help("netmapy-bench"))
@click.option("-m", "--middlebox", type=click.Choice(MIDDLEBOXES), multiple=True,
              help="middlebox to run (repeatable; default: all available)")
@click.option("--lines", default="1", show_default=True, callback=_lines, metavar="N,N...",
              help="line counts to run, e.g. 1,2,4")
@click.option("--seconds", type=cli.SECONDS, default=10.0, show_default=True,
              help="length of each full-speed run")
@click.option("--repeat", type=cli.IntRange(min=1), default=1, show_default=True,
              help="full-speed runs per round")
@click.option("--rounds", type=cli.IntRange(min=1), default=3, show_default=True,
              help="rounds over every middlebox (interleaved); medians are reported")
@click.option("--search/--no-search", default=True, show_default=True,
              help="search each middlebox's zero-loss throughput with paced trials")
@click.option("--search-repeat", type=cli.IntRange(min=1), default=1, show_default=True,
              help="searches per round")
@click.option("--trial-seconds", type=cli.SECONDS, default=10.0, show_default=True,
              help="length of each paced trial")
@click.option("--trials", type=cli.IntRange(min=1), default=7, show_default=True,
              help="most paced trials per search")
@click.option("--resolution", type=float, default=0.03, show_default=True,
              help="a search ends when the rates it brackets are closer than this share of "
                   "the full-speed rate")
@click.option("--tolerance", type=float, default=0.001, show_default=True,
              help="loss (in %) a trial may have and still count as lossless")
@click.option("--rate", default="0", callback=_rate, metavar="RATE",
              help="offered packets per second per line, e.g. 500k (0: trafgen's full speed)")
@click.option("--size", type=cli.IntRange(60, 1514), default=60, show_default=True,
              help="frame size without FCS")
@click.option("--gen-cpu", type=_CPU, default=0, show_default=True, help="CPU of the generators")
@click.option("--mbox-cpu", type=_CPU, default=None,
              help="CPU of process middleboxes (default: the last CPU)")
@click.option("--custom", help="command for -m custom; {a} {b} are the mbox interfaces")
@click.option("--custom-wait", type=cli.SECONDS, default=1.0, help="seconds to let it start")
@click.option("--python-backend", type=click.Choice(["packet", "xdp"]), default="packet",
              show_default=True, help="backend of netmapy-python")
@click.option("--pipeline-backend", type=click.Choice(["packet", "xdp"]), default="packet",
              show_default=True, help="backend of netmapy-pipeline's RX and TX")
@click.option("--sink", type=click.Choice(["drop", "stack"]), default="drop", show_default=True,
              help="drop: the sink counts and drops with XDP; stack: the sink's IP stack "
                   "handles every frame (whoever transmits into the sink pays for it)")
@click.option("--prefix", default="nb", show_default=True, help="namespace prefix")
@click.option("--out", default="bench-results", show_default=True, type=click.Path(file_okay=False),
              help="directory for JSON, PNG and report")
@click.option("--json", is_flag=True, help="print the results as JSON on stdout")
@cli.common_options
@cli.pass_args
def command(args):
    """Compare middleboxes on the veth lab: offered vs delivered rate and loss
    per line, CPU time per packet; table, JSON, PNG plot, markdown report."""
    return run(args)


def run(args):
    if os.geteuid() != 0:
        raise cli.CliError("netmapy-bench needs root (it builds network namespaces)")
    for tool in ("trafgen", "ip", "ethtool"):
        if not shutil.which(tool):
            raise cli.CliError("%s not found: run tools/setup.sh" % tool)
    if args.mbox_cpu is None:
        args.mbox_cpu = (os.cpu_count() or 1) - 1
    line_counts = args.lines
    if args.sink == "drop" and not shutil.which("clang"):
        raise cli.CliError("--sink drop needs clang (apt-get install clang), or use --sink stack")
    mbs, avail = registry(args)
    wanted = list(args.middlebox) or [m for m in mbs if m != "custom"]
    if "custom" in wanted and not args.custom:
        raise click.UsageError("-m custom needs --custom 'COMMAND {a} {b}'")
    todo = []
    for m in wanted:
        ok, why = avail.get(m, lambda: (True, ""))()
        if ok:
            todo.append(m)
        elif args.middlebox:
            raise cli.CliError("middlebox %s is not available: %s" % (m, why))
        else:
            log("netmapy-bench: skipping %s: %s" % (m, why))
    os.makedirs(args.out, exist_ok=True)
    # rounds: every middlebox once per round, so that the machine's drift
    # over the run spreads over all of them; the median of the rounds is kept
    per = {}
    total = len(todo) * len(line_counts) * args.rounds
    k = 0
    for rnd in range(args.rounds):
        for m in todo:
            for n in line_counts:
                k += 1
                log("[%d/%d] %s, %d line(s), round %d ..." % (k, total, m, n, rnd + 1))
                per.setdefault((m, n), []).append(characterise(args, mbs[m](), n))
    if not per:
        raise cli.CliError("no middlebox could run")
    results = [aggregate(rs) for rs in per.values()]
    add_ratios(results)
    jpath = os.path.join(args.out, "results.json")
    with open(jpath, "w") as f:
        json.dump(results, f, indent=1)
    png = os.path.join(args.out, "delivered.png")
    plot(results, png)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(markdown(results, args, png))
    print(json.dumps(results) if args.json else table(results))
    log("netmapy-bench: wrote %s, %s and %s" % (jpath, png, os.path.join(args.out, "report.md")))
    return 0


def _median(xs):
    xs = sorted(x for x in xs if x is not None)
    return xs[len(xs) // 2] if xs else None


def aggregate(rounds):
    """One middlebox and line count over its rounds: medians, and every
    round's figures kept."""
    out = dict(rounds[0])
    for key in ("offered_mpps", "delivered_mpps", "delivered_gbps", "loss", "cpu_ns_per_packet",
                "softirq_ns_per_packet", "idle_cpu_pct", "zero_loss_mpps"):
        out[key] = _median([r.get(key) for r in rounds])
    out["runs"] = [x for r in rounds for x in r["runs"]]
    out["zero_loss_runs"] = [x for r in rounds for x in r["zero_loss_runs"]]
    out["curve"] = [x for r in rounds for x in r["curve"]]
    out["rounds"] = len(rounds)
    return out


def add_ratios(results):
    """Each result's zero-loss throughput and full-speed delivery as
    ratios of the references measured in the same invocation: the Linux
    bridge, the better dpdk-testpmd PMD, and the ceiling (none)."""
    def ref(names, n, key):
        vals = [r[key] for r in results if r["middlebox"] in names and r["lines"] == n
                and r.get(key)]
        return max(vals) if vals else None
    for r in results:
        n = r["lines"]
        for label, names in (("bridge", ("linux-bridge",)),
                             ("testpmd", ("testpmd-af_packet", "testpmd-af_xdp")),
                             ("ceiling", ("none",))):
            for key in ("zero_loss_mpps", "delivered_mpps"):
                base = ref(names, n, key)
                r["%s_vs_%s" % (key.split("_mpps")[0], label)] = \
                    (r[key] / base) if base and r.get(key) is not None else None


def main(argv=None):
    cli.terminate_on_sigterm()
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
