"""nm-offload and netmapy-bridge as services: the configuration file and
--check, hot reload under a flood (nothing lost, nothing judged by a
mixture of rule sets, counters following their rules), a broken
configuration refused while the old one keeps working, systemd's
notifications and unit files, the attack view."""

import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

import netmapy
from conftest import needs_root
from netmapy.host.netns import netns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)


def run_cmd(module, *argv, timeout=120):
    return subprocess.run([sys.executable, "-m", module] + list(argv), capture_output=True,
                          text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          timeout=timeout)


def line_of(text, needle, nth=0):
    """The 1-based line of the nth line of `text` containing `needle`."""
    hits = [i for i, l in enumerate(text.splitlines(), 1) if needle in l]
    return hits[nth]


# ---------------------------------------------------------------- --check

GOOD_RULES = "allow udp from 10.0.0.0/8 to any port 53\ndeny udp to port 53\ndefault allow\n"


def test_check_accepts_a_good_file(tmp_path):
    (tmp_path / "dns.rules").write_text(GOOD_RULES)
    conf = tmp_path / "lo.toml"
    conf.write_text('[nm-offload]\ninterface = "lo"\nqueues = [0]\nrules-in = "user"\n\n'
                    '[filters]\nrules = ["dns.rules"]   # relative to this file\n'
                    'drop = ["udp port 19"]\n\n[output]\ninterval = 10\nattack-sample = 32\n')
    out = run_cmd("middlebox.offload", "--config", str(conf), "--check")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "nm-offload: %s: OK" % conf
    assert "error" not in out.stderr


def test_check_reports_every_problem_with_file_line_and_key(tmp_path):
    (tmp_path / "bad.rules").write_text("allow udp to port 53\ndeny udp to port 5x3\n")
    text = """# every value here is wrong somewhere
[nm-offload]
interface = "nosuch-if0"
queues = [0, "one"]
backend = "dpdk"
rules-in = "kernal"

[filters]
rules = [
  "bad.rules",
  "missing.rules",
]
drop = ["udp prot 9"]
samplemax = 3

[output]
interval = "fast"

[outptu]
json = true
"""
    conf = tmp_path / "svc.toml"
    conf.write_text(text)
    out = run_cmd("middlebox.offload", "--config", str(conf), "--check")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    want = [  # (line, key, a word of the message)
        (line_of(text, "interface ="), "nm-offload.interface", "nosuch-if0"),
        (line_of(text, "queues ="), "nm-offload.queues[1]", "'one'"),
        (line_of(text, "backend ="), "nm-offload.backend", "dpdk"),
        (line_of(text, "rules-in ="), "nm-offload.rules-in", "kernal"),
        (line_of(text, '"bad.rules"'), "filters.rules[0]", "bad.rules:2:18"),
        (line_of(text, '"missing.rules"'), "filters.rules[1]", "missing.rules"),
        (line_of(text, "drop ="), "filters.drop[0]", "udp prot 9"),
        (line_of(text, "samplemax"), "filters.samplemax", "sample-max"),   # the suggestion
        (line_of(text, "interval ="), "output.interval", "fast"),
        (line_of(text, "[outptu]"), "outptu", "[output]"),
    ]
    assert len(lines) == len(want), out.stderr
    for got, (ln, key, word) in zip(lines, want):
        assert got.startswith("nm-offload: %s:%d: %s: " % (conf, ln, key)), (got, ln, key)
        assert word in got, (got, word)


def test_check_a_file_that_is_not_toml(tmp_path):
    conf = tmp_path / "svc.toml"
    conf.write_text('[nm-offload]\ninterface = "lo"\nqueues = [0\n')
    out = run_cmd("middlebox.offload", "--config", str(conf), "--check")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "nm-offload: %s:3: not valid TOML: Unclosed array (at end of document)" % conf]


def test_command_line_overrides_the_file(tmp_path):
    """The file names queue 5 of lo (which has one queue) and a broken
    rule file; the command line gives queue 0 and a good rule file: --check
    passes.  Interface names with '-' work in the file as on the command
    line."""
    (tmp_path / "good.rules").write_text(GOOD_RULES)
    (tmp_path / "bad.rules").write_text("deny udp to port 5x3\n")
    conf = tmp_path / "svc.toml"
    conf.write_text('[nm-offload]\ninterface = "lo"\nqueues = [5]\n'
                    '[filters]\nrules = ["bad.rules"]\n')
    bad = run_cmd("middlebox.offload", "--config", str(conf), "--check")
    assert bad.returncode == 1 and "queues[0]" in bad.stderr and "bad.rules:1" in bad.stderr
    ok = run_cmd("middlebox.offload", "lo", "0", "--rules", str(tmp_path / "good.rules"),
                 "--rules-in", "user", "--config", str(conf), "--check")
    assert ok.returncode == 0, ok.stderr
    # the bridge: its interfaces as a list, names with '-'
    conf2 = tmp_path / "br.toml"
    conf2.write_text('[netmapy-bridge]\ninterfaces = ["lo", "no-such-if"]\n')
    out = run_cmd("middlebox.bridge", "--config", str(conf2), "--check")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "netmapy-bridge: %s:2: netmapy-bridge.interfaces[1]: no network interface "
        "'no-such-if' in this network namespace (list them with: ip -br link)" % conf2]


def test_config_locations():
    """Where keys and list elements are, as --check reports them."""
    from middlebox.config import locate
    text = ('# c\n[a]\nx = 1\n"quoted key" = [ 1,\n  2, # two\n  "s,]" ,\n]\n'
            's = """multi\n[b]\nnot = 1\n"""\n[b]\ny.z = [[1, 2], [3]]\n')
    where = locate(text)
    assert where[("a",)] == 2 and where[("a", "x")] == 3
    assert where[("a", "quoted key")] == 4 and where[("a", "quoted key", 0)] == 4
    assert where[("a", "quoted key", 1)] == 5 and where[("a", "quoted key", 2)] == 6
    assert ("b", "not") not in where                 # inside a multi-line string
    assert where[("b",)] == 12 and where[("b", "y", "z")] == 13
    assert where[("b", "y", "z", 1)] == 13


# ---------------------------------------------------------------- systemd

UNITS = os.path.join(REPO, "middlebox", "systemd")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
@pytest.mark.parametrize("prog", ["nm-offload", "netmapy-bridge"])
def test_unit_file_verifies(tmp_path, prog):
    """The unit as shipped, with its Exec paths pointed at an executable
    that exists here (systemd-analyze checks that they do)."""
    with open(os.path.join(UNITS, "%s@.service" % prog)) as f:
        text = f.read()
    assert text.count("/usr/local/bin/%s " % prog) == 3
    for key in ("Type=notify", "ExecReload=", "WatchdogSec=", "KillMode=mixed"):
        assert key in text
    unit = tmp_path / ("%s@test.service" % prog)
    unit.write_text(text.replace("/usr/local/bin/%s" % prog, os.path.realpath(sys.executable)))
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and not out.stderr.strip() and not out.stdout.strip(), \
        out.stdout + out.stderr


def test_notifier_speaks_the_protocol(tmp_path):
    """Datagrams to a path and to an abstract socket; WATCHDOG only when
    due; nothing (and no error) outside systemd."""
    from middlebox.sdnotify import Notifier
    assert not Notifier({}).send("READY=1")
    for addr in (str(tmp_path / "notify"), "@netmapy-test-%d" % os.getpid()):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(addr.replace("@", "\0", 1) if addr.startswith("@") else addr)
        s.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "1000000"})
        assert n.ready("up") and s.recv(4096) == b"READY=1\nSTATUS=up"
        assert n.reloading()
        msg = s.recv(4096).decode().split("\n")
        assert msg[0] == "RELOADING=1" and msg[1].startswith("MONOTONIC_USEC=")
        assert n.watchdog(now=100.0) and s.recv(4096) == b"WATCHDOG=1"
        assert not n.watchdog(now=100.1)                 # not due: half the period
        assert not n.watchdog(healthy=False, now=200.0)  # a stuck worker: no ping
        n.close()
        s.close()
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent/x", "WATCHDOG_USEC": "1000000",
                      "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None and not other.send("READY=1")


# ---------------------------------------------------------------- live: helpers

def frame_prefix(v, src, dport, size):
    """An Ethernet/IPv4/UDP header for a frame of `size` bytes whose last 4
    bytes are a sequence number (UDP checksum 0: none)."""
    from test_offload import udp_frame
    return udp_frame(v.mac_a, v.mac_b, src, v.ip_b, 40000, dport, bytes(size - 42))[:-4]


class Server:
    """UDP sockets in the receiving namespace recording (port, seq) of every
    datagram the stack delivers."""

    def __init__(self, v, ports):
        self.got = []
        self.stop_ev = threading.Event()
        self.socks = {}
        with netns(v.ns_b):
            for port in ports:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                s.bind((v.ip_b, port))
                s.setblocking(False)
                self.socks[s] = port
        self.ns = v.ns_b
        self.rcvbuf0 = udp_rcvbuf_errors(v.ns_b)
        self.th = threading.Thread(target=self._run)
        self.th.start()

    def _run(self):
        socks = list(self.socks)
        while not self.stop_ev.is_set():
            r, _, _ = select.select(socks, [], [], 0.1)
            for s in r:
                while True:
                    try:
                        data = s.recv(2048)
                    except BlockingIOError:
                        break
                    self.got.append((self.socks[s], struct.unpack("!I", data[-4:])[0]))

    def count(self, port):
        return sum(1 for p, _ in list(self.got) if p == port)

    def overflow(self):
        return udp_rcvbuf_errors(self.ns) - self.rcvbuf0

    def close(self):
        self.stop_ev.set()
        self.th.join()
        for s in self.socks:
            s.close()


def udp_rcvbuf_errors(ns):
    text = subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"],
                          capture_output=True, text=True, check=True).stdout
    head, vals = [l.split() for l in text.splitlines() if l.startswith("Udp:")][:2]
    return int(vals[head.index("RcvbufErrors")])


def start(module, argv, env=None):
    p = subprocess.Popen([sys.executable, "-m", module] + list(argv), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=env or dict(os.environ, PYTHONPATH=REPO))
    err = []
    while True:
        line = p.stderr.readline()
        if not line:
            raise AssertionError("%s did not start: %s %s" % (
                module, "".join(err), p.communicate(timeout=10)[1]))
        err.append(line)
        if ": running," in line:
            p.startup_err = "".join(err)
            return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    summary = [json.loads(l)["summary"] for l in out.splitlines() if l.startswith('{"summary"')]
    return summary[0], out, err


def sighup_reload(pid):
    """SIGHUP and wait for the outcome, as `--reload` does (middlebox.service)."""
    from middlebox import service
    st = [s for s in (service._read(os.path.join(service._ctl_dir(), f))
                      for f in os.listdir(service._ctl_dir()) if f.endswith("-%d.json" % pid))
          if s]
    assert st, "no state file for pid %d" % pid
    st[0]["_path"] = os.path.join(service._ctl_dir(), "nm-offload-%d.json" % pid)
    return service.request_reload(st[0])


@pytest.fixture
def pair():
    from tools.lab import VethPair
    with VethPair(queues=1) as v:
        yield v


# ---------------------------------------------------------------- reload under a flood

# X (port 7001): A allows, B denies; Y (7002): A denies, B allows; Z (7003):
# both allow; W (7004): both deny.  The rules Z and W meet are the same text
# in both sets: their counters carry over every reload.
SET_A = ("allow udp to port 7001\ndeny udp to port 7002\nallow udp to port 7003\n"
         "deny udp to port 7004\ndefault allow\n")
SET_B = ("deny udp to port 7001\nallow udp to port 7002\nallow udp to port 7003\n"
         "deny udp to port 7004\ndefault allow\n")
X, Y, Z, W = 7001, 7002, 7003, 7004


class Flood:
    """Groups of four frames (X, Y, W, Z), each with its own sequence
    number, sent in batches at about `pps` from the other namespace."""

    def __init__(self, v, pps=16000, batch=64):
        self.pre = {port: frame_prefix(v, v.ip_a, port, 64) for port in (X, Y, Z, W)}
        self.order = (X, Y, W, Z)
        self.sent = []                         # port of each sequence number
        self.v, self.pps, self.batch = v, pps, batch
        self.go = threading.Event()
        self.pause = threading.Event()
        self.done = threading.Event()
        self.error = None
        self.lock = threading.Lock()

    def _frames(self, n):
        out = []
        with self.lock:
            for _ in range(n):
                port = self.order[len(self.sent) % 4]
                out.append(self.pre[port] + struct.pack("!I", len(self.sent)))
                self.sent.append(port)
        return out

    def send_now(self, n):
        with netmapy.open("packet:%s/T" % self.v.if_a, netns=self.v.ns_a) as tx:
            assert tx.send(self._frames(n)) == n

    def run(self):
        try:
            with netmapy.open("packet:%s/T" % self.v.if_a, netns=self.v.ns_a) as tx:
                t0, n0 = time.monotonic(), 0
                while not self.done.is_set():
                    fr = self._frames(self.batch)
                    assert tx.send(fr) == len(fr)
                    n0 += len(fr)
                    ahead = n0 / self.pps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except BaseException as e:                # the test reports it
            self.error = e

    def mark(self):
        with self.lock:
            return len(self.sent)


def wait_for(cond, timeout=20, what="a condition"):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


@needs_root
@pytest.mark.parametrize("where", ["user", "kernel"])
def test_reload_under_flood_loses_and_misjudges_nothing(pair, tmp_path, where):
    v = pair
    rules = tmp_path / "scrub.rules"
    rules.write_text(SET_A)
    conf = tmp_path / "scrub.toml"
    conf.write_text('[nm-offload]\ninterface = "%s"\nqueues = [0]\nnetns = "%s"\n'
                    'rules-in = "%s"\n\n[filters]\nrules = ["scrub.rules"]\n\n'
                    '[output]\ninterval = 0\njson = true\n' % (v.if_b, v.ns_b, where))
    srv = Server(v, (X, Y, Z, W))
    p = start("middlebox.offload", ["--config", str(conf)])
    flood = Flood(v)
    applied, refused, kept_b = 0, 0, None
    try:
        # before any reload: set A, all processed (Z, the last of a group, arrived)
        flood.send_now(400)
        wait_for(lambda: srv.count(Z) == 100, what="the first packets")
        th = threading.Thread(target=flood.run)
        th.start()
        sets = [SET_B, SET_A]
        for k in range(9):                      # odd: B is in force at the end
            rules.write_text(sets[k % 2])
            if k % 3 == 2:                      # the operator's command
                out = run_cmd("middlebox.offload", "--config", str(conf), "--reload")
                ok, msg = out.returncode == 0, out.stdout + out.stderr
            else:                               # what systemd's `kill -HUP` does
                ok, msg = sighup_reload(p.pid)
            assert ok and "applied" in msg, msg
            applied += 1
            if k == 4:
                # a broken rule file: refused, the set in force (B) stays while
                # the flood goes on; what is sent until the next reload is
                # judged by B (waited for before that reload)
                rules.write_text(SET_A.replace("port 7002", "port 70x2"))
                ok, msg = sighup_reload(p.pid)
                assert not ok and "refused" in msg and "scrub.rules:2:" in msg, msg
                refused += 1
                m0 = flood.mark()
                time.sleep(0.2)
                m1 = flood.mark()
                wait_for(lambda: max((seq for port, seq in list(srv.got) if port == Z),
                                     default=-1) >= m1 - 4,
                         what="the packets sent after the refused reload")
                kept_b = (m0, m1)
        last = flood.mark()                     # sent from here on: set B, surely
        time.sleep(0.3)
        flood.done.set()
        th.join()
        assert flood.error is None, flood.error
        total = flood.mark()
        wait_for(lambda: srv.count(Z) == total // 4, what="every Z packet")
        time.sleep(0.2)
    finally:
        flood.done.set()
        summary, out, err = stop(p)
        srv.close()
    assert srv.overflow() == 0, "the test's server fell behind"
    sent = flood.sent
    got = {seq for _, seq in srv.got}
    assert len(got) == len(srv.got)                  # nothing twice
    # nothing lost: every packet was either delivered or counted as dropped
    assert summary["rx"] == len(sent)
    assert summary["reinjected"] == len(got) and summary["reinject_failed"] == 0
    assert summary["dropped"] == len(sent) - len(got) and summary["errors"] == 0
    # the rules both sets share: every Z delivered, no W; their counters
    # carried over every reload
    assert all(sent[s] in (X, Y, Z) for s in got)
    assert sum(1 for port in sent if port == Z) == srv.count(Z)
    by = {r["text"]: r["packets"] for r in summary["rules"]}
    assert by["allow udp to port 7003"] == srv.count(Z)
    assert by["deny udp to port 7004"] == sum(1 for port in sent if port == W)
    # each X/Y packet judged by A or by B, the set changing only at a reload
    verdicts = []
    for seq, port in enumerate(sent):
        if port in (X, Y):
            delivered = seq in got
            verdicts.append((seq, "A" if delivered == (port == X) else "B"))
    runs = [verdicts[0][1]]
    for _, s in verdicts[1:]:
        if s != runs[-1]:
            runs.append(s)
    assert runs[0] == "A" and runs[-1] == "B"
    assert len(runs) <= applied + 1, (len(runs), applied)
    assert all(s == "B" for seq, s in verdicts if seq >= last)
    assert kept_b and kept_b[1] - kept_b[0] > 100
    assert all(s == "B" for seq, s in verdicts if kept_b[0] <= seq < kept_b[1])
    assert all(s == "A" for seq, s in verdicts if seq < 400)
    assert summary["generation"] == applied and summary["reloads"] == applied + refused
    assert "the running configuration stays in force" in err


@pytest.fixture
def dash_pair():
    from tools.lab import VethPair
    with VethPair(queues=1, if_a="nb-a0", if_b="nb-b0") as v:
        yield v


@needs_root
def test_reload_refused_names_what_cannot_change(dash_pair, tmp_path):
    """A configuration that does not parse, and one that changes what a
    reload cannot (the backend, the queues), are refused with the old
    filters in force; a good one afterwards applies.  (The interface's
    name has a '-'.)"""
    v = dash_pair
    (tmp_path / "a.rules").write_text("deny udp to port 9\ndefault allow\n")
    conf = tmp_path / "s.toml"
    base = ('[nm-offload]\ninterface = "%s"\nqueues = [0]\nnetns = "%s"\n\n'
            '[filters]\nrules = ["a.rules"]\n\n[output]\ninterval = 0\njson = true\n'
            % (v.if_b, v.ns_b))
    conf.write_text(base)
    p = start("middlebox.offload", ["--config", str(conf), "--rules-in", "user"])
    frames = [frame_prefix(v, v.ip_a, 9, 64) + struct.pack("!I", i) for i in range(10)]
    try:
        conf.write_text(base.replace("queues = [0]", "queues = [0\n"))
        out = run_cmd("middlebox.offload", "--config", str(conf), "--reload")
        assert out.returncode == 1
        assert "reload refused: %s:5: not valid TOML" % conf in out.stderr, out.stderr
        conf.write_text(base.replace('netns', 'backend = "xdp"\nnetns')
                        .replace("[0]", "[0, 1]"))
        out = run_cmd("middlebox.offload", "--config", str(conf), "--reload")
        assert out.returncode == 1
        assert "cannot change while running: nm-offload.backend (netmap -> xdp), " \
               "nm-offload.queues ([0] -> [0, 1]); restart" in out.stderr, out.stderr
        with netmapy.open(iface=v.if_a, backend="packet", netns=v.ns_a) as tx:
            assert tx.send(frames) == 10            # still dropped by the old rules
        conf.write_text(base)
        (tmp_path / "a.rules").write_text("deny udp to port 10\ndefault allow\n")
        out = run_cmd("middlebox.offload", "--config", str(conf), "--reload")
        assert out.returncode == 0 and "applied: generation 1" in out.stdout, out.stderr
        time.sleep(0.3)
    finally:
        summary, _, err = stop(p)
    assert summary["rx"] == 10 and summary["dropped"] == 10
    assert [r["text"] for r in summary["rules"]] == ["deny udp to port 10", "default allow"]
    assert summary["rules"][1]["packets"] == 0       # carried over: "default allow", 0
    assert summary["generation"] == 1 and summary["reloads"] == 3


# ---------------------------------------------------------------- systemd's protocol

@needs_root
def test_sd_notify_ready_reloading_watchdog_stopping(pair, tmp_path):
    v = pair
    addr = str(tmp_path / "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(addr)
    s.settimeout(20)
    rules = tmp_path / "r.rules"
    rules.write_text("deny udp to port 9\n")
    env = dict(os.environ, PYTHONPATH=REPO, NOTIFY_SOCKET=addr, WATCHDOG_USEC="1000000")
    p = start("middlebox.offload", [v.if_b, "0", "--netns", v.ns_b, "--rules", str(rules),
                                    "--rules-in", "user", "-T", "0.2"], env=env)
    msgs = []

    def until(key):
        while True:
            m = s.recv(4096).decode().split("\n")
            msgs.append(m)
            if key in m:
                return m
    try:
        ready = until("READY=1")
        assert any(f.startswith("STATUS=running") for f in ready)
        until("WATCHDOG=1")
        rules.write_text("deny udp to port 10\n")
        p.send_signal(signal.SIGHUP)
        rel = until("RELOADING=1")
        assert any(f.startswith("MONOTONIC_USEC=") for f in rel)
        after = until("READY=1")
        assert any("reload applied" in f for f in after), after
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    until("STOPPING=1")
    s.close()
    keys = [k for m in msgs for k in m if k in ("READY=1", "RELOADING=1", "STOPPING=1")]
    assert keys == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"]
    statuses = [k for m in msgs for k in m if k.startswith("STATUS=rx ")]
    assert statuses and "rules generation 1" in statuses[-1]
    # not a terminal: one line per event on stderr, one line of rates per
    # interval on stdout, never a table
    assert "reload applied: generation 1" in err and "\x1b[" not in err + out
    lines = out.strip().splitlines()
    assert lines and all(l.startswith("nm-offload: rx ") for l in lines), out


# ---------------------------------------------------------------- the attack view

@needs_root
@pytest.mark.parametrize("where", ["user", "kernel"])
def test_attack_view_top_sources_ports_sizes(pair, tmp_path, where):
    """Known drops from twelve sources (12, 11, ... 1 packets each; so the
    top ten are known), to three ports, in three sizes, every drop sampled
    (K=1): the summary's top lists are exact, the live view (Prometheus)
    shows at most ten of each, ranked."""
    v = pair
    (tmp_path / "r.rules").write_text("allow udp to port 53\ndeny udp\ndefault allow\n")
    from test_offload import free_port
    port = free_port()
    p = start("middlebox.offload", [v.if_b, "0", "--netns", v.ns_b, "--rules",
                                    str(tmp_path / "r.rules"), "--rules-in", where,
                                    "--attack-sample", "1", "--json", "-T", "2",
                                    "--prometheus", "127.0.0.1:%d" % port])
    frames = []
    for i in range(12):
        src = "198.51.100.%d" % (i + 1)
        for k in range(12 - i):
            dport = (123, 19, 11211)[k % 3]
            size = (90, 400, 1400)[k % 3]
            frames.append(frame_prefix(v, src, dport, size) + struct.pack("!I", k))
    frames += [frame_prefix(v, v.ip_a, 53, 80) + struct.pack("!I", k) for k in range(5)]
    metrics = None
    try:
        with netmapy.open("packet:%s/T" % v.if_a, netns=v.ns_a) as tx:
            assert tx.send(frames) == len(frames)
        end = time.monotonic() + 15
        while time.monotonic() < end:
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                          timeout=5).read().decode()
            if 'netmapy_attack_top_source_pps{prog="nm-offload",rank="1"' in text:
                metrics = text
                break
            time.sleep(0.1)
    finally:
        summary, out, err = stop(p)
    drops = len(frames) - 5
    assert summary["dropped"] == drops
    a = summary["attack"]
    assert a["samples"] == drops and a["one_in"] == 1
    assert a["kernel_samples"] == (drops if where == "kernel" else 0)
    assert [(r["source"], r["packets"]) for r in a["top_sources"]] == \
        [("198.51.100.%d" % (i + 1), 12 - i) for i in range(10)]
    per_port = {d: sum(1 for i in range(12) for k in range(12 - i) if k % 3 == j)
                for j, d in enumerate(("udp/123", "udp/19", "udp/11211"))}
    assert {r["dport"]: r["packets"] for r in a["top_dports"]} == per_port
    assert {r["size"]: r["packets"] for r in a["top_sizes"]} == {
        s: per_port[d] for s, d in zip((90, 400, 1400), ("udp/123", "udp/19", "udp/11211"))}
    assert metrics is not None, "the attack view never showed in /metrics"
    tops = [l for l in metrics.splitlines() if l.startswith("netmapy_attack_top_source_pps{")]
    assert len(tops) == 10
    assert tops[0].startswith('netmapy_attack_top_source_pps{prog="nm-offload",rank="1",'
                              'source="198.51.100.1"}')
    # the JSON line of that interval has it too
    lines = [json.loads(l) for l in out.splitlines() if l.startswith('{"time"')]
    seen = [l["attack"] for l in lines if l.get("attack", {}).get("samples")]
    assert seen and seen[0]["top_sources"][0]["source"] == "198.51.100.1"


# ---------------------------------------------------------------- the bridge

@needs_root
def test_bridge_reload_swaps_both_directions(tmp_path):
    """netmapy-bridge with a configuration file: a reload changes what it
    drops, both ways, and a rule kept keeps its count."""
    from tools.lab import Lab
    from test_bridge import frames as mkframes
    conf = tmp_path / "br.toml"
    with Lab(lines=1, queues=1, prefix="ts%d" % (os.getpid() % 10000)) as lab:
        ln = lab.lines[0]
        conf.write_text('[netmapy-bridge]\ninterfaces = ["%s", "%s"]\nnetns = "%s"\n'
                        'backend = "packet"\n\n[filters]\ndrop = ["ether[13] = 0xb5"]\n\n'
                        '[output]\ninterval = 0\njson = true\n'
                        % (ln.mbox_in, ln.mbox_out, ln.mbox_ns))
        p = start("middlebox.bridge", ["--config", str(conf)])

        def exchange(n):
            fwd = mkframes(n, ln.src_mac, ln.sink_mac, 0xb5)
            back = mkframes(n, ln.sink_mac, ln.src_mac, 0xb6)
            with netmapy.open("packet:%s" % ln.src_if, netns=ln.src_ns) as s, \
                    netmapy.open("packet:%s" % ln.sink_if, netns=ln.sink_ns) as k:
                assert s.send(fwd) == n and k.send(back) == n
            time.sleep(0.5)
        try:
            exchange(100)
            conf.write_text(conf.read_text().replace(
                'drop = ["ether[13] = 0xb5"]', 'drop = ["ether[13] = 0xb6", "ether[13] = 0xb5"]'))
            out = run_cmd("middlebox.bridge", "--config", str(conf), "--reload")
            assert out.returncode == 0, out.stderr
            assert "1 kept, 1 new, 0 removed" in out.stdout, out.stdout
            exchange(100)
        finally:
            summary, _, err = stop(p)
    assert summary["a_to_b"]["drop"] == 200 and summary["a_to_b"]["fwd"] == 0
    assert summary["b_to_a"]["drop"] == 100 and summary["b_to_a"]["fwd"] == 100
    by = {r["rule"]: r["packets"] for r in summary["rules"]}
    assert by == {"ether[13] = 0xb5": 200, "ether[13] = 0xb6": 100}


@needs_root
def test_status_reads_the_running_instance(pair, tmp_path):
    """--status finds the instance by its configuration file and shows its
    rates, rules and attack view over -T seconds, from shared memory."""
    v = pair
    (tmp_path / "r.rules").write_text("deny udp to port 9\ndefault allow\n")
    conf = tmp_path / "s.toml"
    conf.write_text('[nm-offload]\ninterface = "%s"\nqueues = [0]\nnetns = "%s"\n'
                    'rules-in = "user"\n\n[filters]\nrules = ["r.rules"]\n\n'
                    '[output]\ninterval = 0\njson = true\nattack-sample = 1\n'
                    % (v.if_b, v.ns_b))
    p = start("middlebox.offload", ["--config", str(conf)])
    flood = [frame_prefix(v, "203.0.113.%d" % (1 + i % 3 // 2), 9, 100) +
             struct.pack("!I", i) for i in range(60)]       # .1 twice as often as .2
    done = threading.Event()

    def send():
        with netmapy.open("packet:%s/T" % v.if_a, netns=v.ns_a) as tx:
            while not done.is_set():
                tx.send(flood)
                time.sleep(0.01)
    th = threading.Thread(target=send)
    th.start()
    try:
        out = run_cmd("middlebox.offload", "--config", str(conf), "--status", "--json",
                      "-T", "1")
        text = run_cmd("middlebox.offload", "--config", str(conf), "--status")
    finally:
        done.set()
        th.join()
        summary, _, _ = stop(p)
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["pid"] == p.pid and st["config"] == str(conf) and st["generation"] == 0
    assert [r["text"] for r in st["rules"]] == ["deny udp to port 9", "default allow"]
    assert st["rules"][0]["packets"] > 0 and st["workers"][0]["drop_pps"] > 0
    a = st["attack"]
    assert [r["source"] for r in a["top_sources"]] == ["203.0.113.1", "203.0.113.2"]
    assert a["top_dports"][0]["dport"] == "udp/9" and a["top_sizes"][0]["size"] == 100
    assert text.returncode == 0 and "top sources" in text.stdout and \
        "deny udp to port 9" in text.stdout, text.stdout + text.stderr
    assert summary["dropped"] > 0


@needs_root
def test_reload_refused_when_a_worker_cannot_build_it(pair, tmp_path):
    """Rules in the kernel (required: rules-in kernel) and a new rule file
    with more rule shapes than the in-kernel program takes: the worker
    cannot prepare it, so no worker switches -- the reload is refused and
    the old program still decides (in the kernel)."""
    v = pair
    rules = tmp_path / "k.rules"
    rules.write_text("deny udp to port 9\ndefault allow\n")
    p = start("middlebox.offload", [v.if_b, "0", "--netns", v.ns_b, "--rules", str(rules),
                                    "--rules-in", "kernel", "--json", "-T", "0"])
    big = []
    for plen in range(8, 33):
        for proto in ("", "udp "):
            for port in ("", " to any port 80"):
                big += ["deny %sfrom %d.0.0.0/%d%s" % (proto, 11 + i, plen, port)
                        for i in range(5)]
    frames = [frame_prefix(v, v.ip_a, 9, 64) + struct.pack("!I", i) for i in range(20)]
    try:
        rules.write_text("\n".join(big) + "\ndeny udp to port 10\n")
        # an instance started without --config: found by its interface
        out = run_cmd("middlebox.offload", v.if_b, "--netns", v.ns_b, "--reload")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "reload refused: worker 0:" in out.stderr and "rule shapes" in out.stderr, \
            out.stderr
        with netmapy.open("packet:%s/T" % v.if_a, netns=v.ns_a) as tx:
            assert tx.send(frames) == 20
        time.sleep(0.5)
    finally:
        summary, _, err = stop(p)
    assert summary["dropped"] == 20 and summary["generation"] == 0
    assert [r["text"] for r in summary["rules"]] == ["deny udp to port 9", "default allow"]
    assert summary["rules"][0]["packets"] == 20


def test_which_counter_is_which_rule():
    """Same rule (comments, case and spacing aside; any line) -> same key;
    an edited rule, another file, a duplicate line, another default, an
    expression in another role, a BPF program with other instructions ->
    another key; slots are kept for kept keys and reused after a commit."""
    from middlebox.rulecounters import counter_keys, RuleCounters, SlotsExhausted
    a = counter_keys([("rules", "allow udp to port 53\ndeny udp\ndeny udp\n", "f.rules"),
                      ("expr", "udp port 19", True), ("bpf", "1\n6 0 0 0\n", True, "p.bpf")])
    b = counter_keys([("rules", "# new first line\nDENY  udp   # spoofed\nallow udp to port 54\n"
                      "default deny\n", "f.rules"),
                      ("expr", "udp port 19", False), ("bpf", "1\n6 0 0 1\n", True, "p.bpf")])
    assert len(a) == 6 and len(set(a)) == 6            # the second "deny udp" is its own
    assert a[1] == b[0]                                 # moved, recased, commented: kept
    assert not set(a) - {a[1]} & set(b)                # everything else differs
    assert counter_keys([("rules", "deny udp\n", "g.rules")])[0] != a[1]
    rc = RuleCounters(10)
    s1 = rc.assign(a, ["n"] * 6, ["t"] * 6)
    rc.commit()
    s2 = rc.assign(b, ["n"] * 5, ["t"] * 5)
    assert s2[0] == s1[1] and set(s2[1:]).isdisjoint(s1) and rc.fresh == s2[1:]
    rc.commit()
    assert sorted(rc.slots()) == sorted(s2)
    with pytest.raises(SlotsExhausted, match="restart"):
        rc.assign(a + counter_keys([("rules", "deny tcp\n", "h")]), ["n"] * 8, ["t"] * 8)
