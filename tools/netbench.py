"""netmapy-bench: source -> middlebox -> sink on the veth lab, one
middlebox after another, with delivered rate and loss per line, a table, JSON,
a PNG plot and a markdown report.

    netmapy-bench                                   # every available middlebox, 1..2 lines
    netmapy-bench -m linux-bridge -m netmapy-packet --lines 1,2 --seconds 5
    netmapy-bench -m custom --custom "my-fwd {a} {b}" --rate 500k

For each middlebox and each line count N it builds the lab (namespaces
src, mbox, sink; N veth lines), starts the middlebox in mbox, offers
trafgen traffic on every line from CPU 0 (full speed, or --rate per line),
and counts what src sent (offered) and sink received (delivered) from the
interface counters.  For middleboxes that are processes it also reports
their CPU time per delivered packet.  The lab is removed after each run,
also on Ctrl-C.

Middleboxes: none (trafgen straight into the sink: the ceiling),
linux-bridge, tc-mirred, xdp-redirect, netmapy-<backend> (netmapy-bridge
with that backend: packet, xdp, ...), netmapy-python (netmapy-bridge
with a Python per-packet function), testpmd-af_packet, testpmd-af_xdp
(dpdk-testpmd io forwarding, when DPDK is installed), custom (--custom).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from netmapy import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 8


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
        src = os.path.join(REPO, "tools", "bpf", "xdp_redirect.c")
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
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for ln in lab.lines:
            argv = [sys.executable, "-m", "middlebox.bridge", ln.mbox_in, ln.mbox_out,
                    "--netns", lab.ns("mbox"), "--backend", self.backend, "--interval", "0",
                    "--queues", "1", "--cpus", str(self.args.mbox_cpu)]
            if self.python:
                argv += ["--python", "%s:accept_all" % os.path.join(REPO, "tools", "pyfuncs.py")]
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


class Testpmd(Middlebox):
    process = True

    def __init__(self, args, pmd):
        super().__init__(args)
        self.pmd = pmd
        self.name = "testpmd-%s" % pmd

    @classmethod
    def available(cls):
        if not shutil.which("dpdk-testpmd"):
            return False, "dpdk-testpmd not found (apt-get install dpdk)"
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
    """The pure-Python TPACKET bridge (tools/pymmap_bridge.py): the reference
    for a Python-function netmapy bridge."""
    name = "python-mmap"

    def start(self, lab):
        for ln in lab.lines:
            argv = ["taskset", "-c", str(self.args.mbox_cpu), sys.executable,
                    os.path.join(REPO, "tools", "pymmap_bridge.py"), ln.mbox_in, ln.mbox_out]
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


def measure(args, mb, nlines):
    """One run: lab with nlines, middlebox mb, trafgen on every line."""
    from tools.lab import Lab
    rate = None if args.rate in ("0", "", None) else "%dpps" % parse_rate(args.rate)
    with Lab(lines=nlines, prefix=args.prefix, gro=False) as lab:
        if args.sink == "drop":
            attach_sink_drop(lab, args)
        mb.setup(lab)
        if args.sink == "drop" and isinstance(mb, NoMiddlebox):
            attach_sink_drop(lab, args, devs=["e%d" % ln.index for ln in lab.lines])
        try:
            mb.start(lab)
            time.sleep(0.3)
            devs = []
            for ln in lab.lines:
                if isinstance(mb, NoMiddlebox):
                    out, into = mb.out_dev(ln)
                    devs.append((ln.src_ns, out, ln.sink_ns, into))
                else:
                    devs.append((ln.src_ns, ln.src_if, ln.sink_ns, ln.sink_if))
            base = [(lab.counters(a, b)["tx_packets"], lab.counters(c, d)["rx_packets"])
                    for a, b, c, d in devs]
            cpu0 = mb.cpu_seconds()
            gens = []
            for ln, (sns, sdev, kns, kdev) in zip(lab.lines, devs):
                gens.append(start_trafgen(lab, ln, sdev, args.seconds, rate, args.size,
                                          args.gen_cpu))
            t0 = time.monotonic()
            for g in gens:
                g.wait(timeout=args.seconds + 30)
            time.sleep(0.5)                       # let the rings drain
            cpu1 = mb.cpu_seconds()
            res = []
            for (sns, sdev, kns, kdev), (tx0, rx0) in zip(devs, base):
                off = lab.counters(sns, sdev)["tx_packets"] - tx0
                dlv = lab.counters(kns, kdev)["rx_packets"] - rx0
                res.append(dict(offered=off, delivered=dlv,
                                offered_mpps=off / args.seconds / 1e6,
                                delivered_mpps=dlv / args.seconds / 1e6,
                                delivered_gbps=dlv * (args.size + 24) * 8 / args.seconds / 1e9,
                                loss=(off - dlv) / off if off else 0.0))
            tot = sum(r["delivered"] for r in res)
            cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            return dict(middlebox=mb.name, lines=nlines, per_line=res,
                        offered_mpps=sum(r["offered_mpps"] for r in res),
                        delivered_mpps=sum(r["delivered_mpps"] for r in res),
                        delivered_gbps=sum(r["delivered_gbps"] for r in res),
                        loss=1 - tot / max(1, sum(r["offered"] for r in res)),
                        cpu_ns_per_packet=None if cpu is None else 1e9 * cpu / max(1, tot))
        finally:
            try:
                mb.stop(lab)
            finally:
                mb.teardown(lab)


_DROP_OBJ = []


def drop_object():
    """tools/bpf/xdp_redirect.c compiled (once per process): its section
    xdp_drop counts (the veth counts what XDP sees) and drops."""
    if not _DROP_OBJ:
        d = tempfile.mkdtemp(prefix="nmbench-sink-")
        obj = os.path.join(d, "sink.o")
        subprocess.run(["clang", "-O2", "-target", "bpf", "-I",
                        "/usr/include/%s-linux-gnu" % os.uname().machine, "-c",
                        os.path.join(REPO, "tools", "bpf", "xdp_redirect.c"), "-o", obj], check=True)
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


def parse_rate(text):
    import re
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)(pps)?\s*", str(text))
    if not m:
        raise cli.CliError("--rate %r: expected packets per second like 200000, 500k or 1.5M" % text)
    v = float(m.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}[m.group(2)]
    if v <= 0 or v > 100e6:
        raise cli.CliError("--rate %r is not a rate this lab can offer (1 pps .. 100 Mpps)" % text)
    return int(v)


def table(results):
    lines = ["%-18s %5s %12s %14s %10s %8s %12s" % ("middlebox", "lines", "offered Mpps",
                                                    "delivered Mpps", "Gbit/s", "loss", "CPU ns/pkt")]
    for r in results:
        cpu = "-" if r.get("cpu_ns_per_packet") is None else "%.0f" % r["cpu_ns_per_packet"]
        lines.append("%-18s %5d %12.3f %14.3f %10.3f %7.2f%% %12s" % (
            r["middlebox"], r["lines"], r["offered_mpps"], r["delivered_mpps"], r["delivered_gbps"],
            100 * r["loss"], cpu))
    return "\n".join(lines)


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    names = []
    for r in results:
        if r["middlebox"] not in names:
            names.append(r["middlebox"])
    for n in names:
        rs = sorted((r for r in results if r["middlebox"] == n), key=lambda r: r["lines"])
        xs = [r["lines"] for r in rs]
        ax1.plot(xs, [r["delivered_mpps"] for r in rs], marker="o", label=n)
        ax2.plot(xs, [100 * r["loss"] for r in rs], marker="o", label=n)
    ax1.set_xlabel("veth lines")
    ax1.set_ylabel("delivered Mpps (all lines)")
    ax1.set_title("Delivered rate")
    ax2.set_xlabel("veth lines")
    ax2.set_ylabel("loss (%)")
    ax2.set_title("Loss")
    for ax in (ax1, ax2):
        ax.set_xticks(sorted({r["lines"] for r in results}))
        ax.grid(True, alpha=0.3)
    handles, labels = ax1.get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8)
    fig.suptitle("src -> middlebox -> sink on veth, %d-byte frames" % results[0].get("size", 60))
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    fig.savefig(path, dpi=100, metadata={"Title": "netmapy-bench",
                                         "Description": "series: " + ", ".join(names)})
    plt.close(fig)


def markdown(results, args, png):
    out = ["# netmapy-bench report", "",
           "%s; %d-byte frames; %s per line offered by trafgen on CPU %d; middlebox on CPU %d; "
           "sink: %s; %g s per run, median of %d run(s)." % (
               time.strftime("%Y-%m-%d %H:%M"), args.size,
               "full speed" if args.rate in ("0", "", None) else args.rate, args.gen_cpu,
               args.mbox_cpu, "XDP drop" if args.sink == "drop" else "the IP stack",
               args.seconds, args.repeat), "",
           "| middlebox | lines | offered Mpps | delivered Mpps | Gbit/s | loss | CPU ns/packet |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        cpu = "-" if r.get("cpu_ns_per_packet") is None else "%.0f" % r["cpu_ns_per_packet"]
        out.append("| %s | %d | %.3f | %.3f | %.3f | %.2f %% | %s |" % (
            r["middlebox"], r["lines"], r["offered_mpps"], r["delivered_mpps"],
            r["delivered_gbps"], 100 * r["loss"], cpu))
    out += ["", "![delivered rate and loss](%s)" % os.path.basename(png), "",
            "CPU time is the middlebox processes' own (user + system); kernel middleboxes run in "
            "the sender's softirq and have none of their own to report."]
    return "\n".join(out) + "\n"


def build_parser():
    p = argparse.ArgumentParser(
        prog="netmapy-bench",
        description="Compare middleboxes on the veth lab: offered vs delivered rate and loss "
                    "per line, CPU time per packet; table, JSON, PNG plot, markdown report.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("-m", "--middlebox", action="append", default=[],
                   help="middlebox to run (repeatable; default: all available)")
    p.add_argument("--lines", default="1,2", help="line counts to run, e.g. 1,2,4 (default %(default)s)")
    p.add_argument("--seconds", type=float, default=5.0, help="traffic per run (default %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="runs per point; the median is kept")
    p.add_argument("--rate", default="0", help="offered pps per line (0: trafgen's full speed)")
    p.add_argument("--size", type=int, default=60, help="frame size without FCS (default 60)")
    p.add_argument("--gen-cpu", type=int, default=0, help="CPU of the generators (default 0)")
    p.add_argument("--mbox-cpu", type=int, default=None,
                   help="CPU of process middleboxes (default: the last CPU)")
    p.add_argument("--custom", help="command for -m custom; {a} {b} are the mbox interfaces")
    p.add_argument("--custom-wait", type=float, default=1.0, help="seconds to let it start")
    p.add_argument("--python-backend", default="packet", help="backend of netmapy-python")
    p.add_argument("--sink", choices=["drop", "stack"], default="drop",
                   help="drop: the sink counts and drops with XDP (default); stack: the "
                        "sink's IP stack handles every frame (whoever transmits into the "
                        "sink pays for it)")
    p.add_argument("--prefix", default="nb", help="namespace prefix (default %(default)s)")
    p.add_argument("--out", default="bench-results", help="directory for JSON, PNG and report")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    cli.add_common(p)
    return p


def run(args):
    if os.geteuid() != 0:
        raise cli.CliError("netmapy-bench needs root (it builds network namespaces)")
    for tool in ("trafgen", "ip", "ethtool"):
        if not shutil.which(tool):
            raise cli.CliError("%s not found: run tools/setup.sh" % tool)
    ncpu = os.cpu_count() or 1
    if args.mbox_cpu is None:
        args.mbox_cpu = ncpu - 1
    for c, what in ((args.gen_cpu, "--gen-cpu"), (args.mbox_cpu, "--mbox-cpu")):
        if not 0 <= c < ncpu:
            raise cli.CliError("%s %d: this machine has CPUs 0..%d" % (what, c, ncpu - 1))
    try:
        line_counts = [int(x) for x in args.lines.split(",")]
    except ValueError:
        raise cli.CliError("--lines %r: expected numbers like 1,2,4" % args.lines)
    for n in line_counts:
        if not 1 <= n <= MAX_LINES:
            raise cli.CliError("--lines %d: this machine can host 1..%d lines" % (n, MAX_LINES))
    if args.rate not in ("0", ""):
        parse_rate(args.rate)
    if args.sink == "drop" and not shutil.which("clang"):
        raise cli.CliError("--sink drop needs clang (apt-get install clang), or use --sink stack")
    if not 60 <= args.size <= 1514:
        raise cli.CliError("--size %d: frames are 60..1514 bytes here" % args.size)
    mbs, avail = registry(args)
    wanted = args.middlebox or [m for m in mbs if m != "custom"]
    for m in wanted:
        if m not in mbs:
            raise cli.CliError("unknown middlebox %r (known: %s)" % (m, ", ".join(mbs)))
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
    results = []
    total = len(todo) * len(line_counts) * args.repeat
    k = 0
    for m in todo:
        for n in line_counts:
            runs = []
            for r in range(args.repeat):
                k += 1
                log("[%d/%d] %s, %d line(s), run %d ..." % (k, total, m, n, r + 1))
                res = measure(args, mbs[m](), n)
                log("        delivered %.3f Mpps, loss %.2f%%%s" % (
                    res["delivered_mpps"], 100 * res["loss"],
                    "" if res["cpu_ns_per_packet"] is None else
                    ", %.0f ns CPU/packet" % res["cpu_ns_per_packet"]))
                runs.append(res)
            runs.sort(key=lambda x: x["delivered_mpps"])
            med = dict(runs[len(runs) // 2])
            med["size"] = args.size
            med["runs"] = [dict(delivered_mpps=x["delivered_mpps"], loss=x["loss"]) for x in runs]
            results.append(med)
    if not results:
        raise cli.CliError("no middlebox could run")
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


def main(argv=None):
    cli.terminate_on_sigterm()
    return cli.run("netmapy-bench", build_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
