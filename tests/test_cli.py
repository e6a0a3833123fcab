"""Command lines: a user error is one clear line on stderr and a non-zero
exit, never a traceback (unless --debug)."""

import os
import struct
import subprocess
import sys

import pytest

from conftest import IS_ROOT, unprivileged

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, **kw):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable] + argv, capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=60, **kw)


def one_error_line(out, prog, *needles, code=1):
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(prog + ": error: "), lines[0]
    assert "Traceback" not in out.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_bad_port_name():
    out = run(["-m", "netmapy", "info", "netmap:eth0-x"])
    one_error_line(out, "netmapy", "Invalid value for 'PORT'", "position 12", "ring number",
                   code=2)


def test_missing_interface():
    out = run(["-m", "netmapy", "info", "packet:nosuchif0"])
    one_error_line(out, "netmapy", "no network interface 'nosuchif0'", "ip -br link")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to build a veth pair")
def test_bad_queue_and_down_interface():
    from tools.lab import SingleNsVeth
    with SingleNsVeth(queues=2) as v:
        out = run(["-m", "netmapy", "info", "packet:%s-7" % v.if_a, "--netns", v.ns])
        one_error_line(out, "netmapy", "2 RX queues", "no queue 7", "ethtool -l")
        subprocess.run(["ip", "-n", v.ns, "link", "set", v.if_a, "down"], check=True)
        out = run(["-m", "netmapy", "info", "packet:%s" % v.if_a, "--netns", v.ns])
        one_error_line(out, "netmapy", "is down", "ip link set dev %s up" % v.if_a)


def test_no_privilege():
    out = subprocess.run(unprivileged([sys.executable, "-m", "netmapy", "info", "packet:lo"]),
                         capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    if IS_ROOT and out.returncode == 0:
        pytest.skip("could not drop privileges here")
    one_error_line(out, "netmapy", "CAP_NET_RAW")


def test_unreadable_and_truncated_pcap(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"garbage" * 10)
    one_error_line(run(["-m", "netmapy", "info", "pcap:%s" % bad]), "netmapy",
                   str(bad), "not a readable capture")
    trunc = tmp_path / "trunc.pcap"
    rec = struct.pack("<IIII", 1, 0, 60, 60) + bytes(60)
    trunc.write_bytes(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1) + rec * 3 + rec[:30])
    out = run(["-m", "netmapy", "recv", "pcap:%s" % trunc])
    line = one_error_line(out, "netmapy", str(trunc), "truncated")
    assert out.stdout.count("\n") == 3            # the three whole frames came first


def test_debug_shows_the_traceback():
    out = run(["-m", "netmapy", "--debug", "info", "packet:nosuchif0"])
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_help_teaches():
    out = run(["-m", "netmapy", "--help"])
    assert out.returncode == 0
    for word in ("backends", "info", "recv", "pipes", "name"):
        assert word in out.stdout
    out = run(["-m", "middlebox.bridge", "--help"])
    assert out.returncode == 0 and "IF_A" in out.stdout and "examples" in out.stdout


def test_name_explains_single_rx_queue():
    out = run(["-m", "netmapy", "name", "netmap:eth3~4"])
    assert out.returncode == 0
    assert "SINGLE_RX 4" in out.stdout and "netmap:eth3-4/R" in out.stdout


# ---------------------------------------------------------------- every command, on click

COMMANDS = [  # (module, prog, a subcommand for groups)
    ("netmapy", "netmapy", None),
    ("middlebox.bridge", "netmapy-bridge", None),
    ("middlebox.offload", "nm-offload", None),
    ("middlebox.nic_cli", "netmapy-nic", "show"),
    ("middlebox.lbcli", "netmapy-lb", None),
    ("middlebox.pipeline", "netmapy-pipeline", None),
    ("netmapy.tools.pktgen", "netmapy-pktgen", None),
    ("netmapy.tools.netbench", "netmapy-bench", None),
    ("netmapy.tools.lab", "netmapy-lab", "up"),
    ("netmapy.tools.demo", "netmapy-demo", None),
    ("netmapy.tools.bench", "netmapy-microbench", None),
]


@pytest.mark.parametrize("module,prog,sub", COMMANDS, ids=[c[1] for c in COMMANDS])
def test_version_help_and_completion(module, prog, sub):
    import netmapy
    out = run(["-m", module, "--version"])
    assert out.returncode == 0 and out.stdout.strip() == "%s (netmapy %s)" % (
        prog, netmapy.__version__), out.stdout + out.stderr
    argv = ["-m", module] + ([sub] if sub else []) + ["--help"]
    out = run(argv)
    assert out.returncode == 0 and out.stdout.startswith("Usage: %s " % prog), out.stdout
    assert "--debug" in out.stdout and "-h, --help" in out.stdout
    # shell completion comes from click, under the command's own name
    var = "_%s_COMPLETE" % prog.replace("-", "_").upper()
    env = dict(os.environ, PYTHONPATH=REPO, COMP_WORDS="%s --deb" % prog, COMP_CWORD="1")
    env[var] = "bash_complete"
    out = subprocess.run([sys.executable, "-m", module], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=60)
    assert "plain,--debug" in out.stdout.splitlines(), out.stdout + out.stderr


def test_completion_offers_interface_names():
    env = dict(os.environ, PYTHONPATH=REPO, COMP_WORDS="netmapy-bridge l", COMP_CWORD="1",
               _NETMAPY_BRIDGE_COMPLETE="bash_complete")
    out = subprocess.run([sys.executable, "-m", "middlebox.bridge"], capture_output=True,
                         text=True, env=env, cwd=REPO, timeout=60)
    assert "plain,lo" in out.stdout.splitlines(), out.stdout + out.stderr


# a bad value is a usage error: one line naming the option and what it accepts, exit 2
BAD_VALUES = [
    ("middlebox.bridge", ["a0", "b0", "--cpus", "1-x"], "Invalid value for '--cpus'",
     "bad CPU list '1-x'"),
    ("middlebox.bridge", ["a0", "b0", "--cpus", "999"], "Invalid value for '--cpus'",
     "not available to this process"),
    ("middlebox.bridge", ["nb/mi0", "b0"], "Invalid value for 'IF_A'",
     "bad interface name 'nb/mi0'"),
    ("middlebox.bridge", ["a0", "b0", "--backend", "dpdk"], "Invalid value for '--backend'",
     "'dpdk' is not one of 'netmap', 'xdp', 'packet'"),
    ("middlebox.bridge", ["a0", "b0", "--prometheus", "host:x"],
     "Invalid value for '--prometheus'", "expected [HOST:]PORT"),
    ("middlebox.offload", ["eth0", "four"], "Invalid value for 'QUEUE...'", "'four'"),
    ("middlebox.offload", ["eth0", "1", "--rules-in", "disk"], "Invalid value for '--rules-in'",
     "'disk' is not one of"),
    ("middlebox.pipeline", ["pipe:x}0", "--budget", "0"], "Invalid value for '--budget'",
     "0 is not in the range x>=1"),
    ("middlebox.lbcli", ["-i", "pipe:x}0", "-p", "g:2", "--count", "many"],
     "Invalid value for '--count'", "is not a count"),
    ("middlebox.nic_cli", ["rss", "eth0", "--isolate", "-3"], "Invalid value for '--isolate'",
     "-3 is not in the range x>=0"),
    ("netmapy.tools.pktgen", ["-i", "pipe:x{1", "-n", "1", "-l", "imix:60,70:1"],
     "Invalid value for '-l' / '--size'", "2 sizes but 1 weights"),
    ("netmapy.tools.pktgen", ["-i", "pipe:x{1", "-R", "2Gpps"], "Invalid value for '-R' / '--rate'",
     "beyond any interface"),
    ("netmapy.tools.pktgen", ["-i", "pipe:x{1", "-f", "sink"],
     "Invalid value for '-f' / '--function'", "'sink' is not one of 'tx', 'rx', 'ping', 'pong'"),
    ("netmapy.tools.netbench", ["--size", "10"], "Invalid value for '--size'",
     "10 is not in the range 60<=x<=1514"),
    ("netmapy.tools.lab", ["up", "--mtu", "5"], "Invalid value for '--mtu'",
     "5 is not in the range 68<=x<=65535"),
    ("netmapy.tools.demo", ["--rate", "10Mbps"], "Invalid value for '--rate'",
     "packets per second are needed here"),
    ("netmapy", ["recv", "pipe:x}1", "-t", "-1"], "Invalid value for '-t' / '--timeout'",
     "a number of seconds >= 0"),
]


@pytest.mark.parametrize("module,argv,option,needle", BAD_VALUES,
                         ids=["%s %s" % (b[0].rsplit(".", 1)[-1], " ".join(b[1])) for b in BAD_VALUES])
def test_bad_values_name_the_option(module, argv, option, needle):
    prog = dict((c[0], c[1]) for c in COMMANDS)[module]
    out = run(["-m", module] + argv)
    line = one_error_line(out, prog, option, needle, code=2)
    assert "--help" in line


def test_one_cpu_list_rate_and_size_parser():
    from netmapy import units
    assert units.parse_cpulist("0-3,5") == [0, 1, 2, 3, 5]
    assert units.parse_cpulist("0-6:2,9") == [0, 2, 4, 6, 9]
    assert units.format_cpulist([0, 1, 2, 3, 5]) == "0-3,5"
    for bad in ("", "3-1", "x", "-1", "1,,x"):
        with pytest.raises(ValueError):
            units.parse_cpulist(bad)
    assert units.parse_rate("1.5Mpps") == units.Rate(1.5e6, "pps")
    assert units.parse_rate("200Mbps") == units.Rate(2e8, "bps")
    assert units.parse_rate("2.5e5").value == 250000
    assert units.parse_count("10k") == 10000 and units.parse_count("1e6") == 10 ** 6
    with pytest.raises(ValueError):
        units.parse_count("1.5")
    assert units.parse_sizes("imix").cycle().count(60) == 7
    # the same objects everywhere: pktgen's names are the units' ones
    from netmapy.tools import pktgen_engine as pktgen
    assert pktgen.parse_rate is units.parse_rate and pktgen.SizeSpec is units.SizeSpec
    from middlebox import nic, rules
    assert nic.format_cpulist is units.format_cpulist
    assert rules._parse_rate("2kpps") == 2000 and rules._parse_rate("2kbps") is None


def test_one_run_directory(tmp_path):
    """Pipes, counters, locks, NIC journals and XDP locks all live under
    $NETMAPY_RUNDIR."""
    code = ("import netmapy, json\n"
            "from netmapy.host import rundir\n"
            "from netmapy.backends import pipe\n"
            "from middlebox import stats, supervisor, nic\n"
            "from netmapy.backends import xdp\n"
            "print(json.dumps([rundir.base(), pipe.rundir(), stats.rundir(), "
            "supervisor.lockdir(), nic.journal_dir(), xdp.attach._lock_dir()]))\n")
    env = dict(os.environ, PYTHONPATH=REPO, NETMAPY_RUNDIR=str(tmp_path / "run"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    import json
    dirs = json.loads(out.stdout)
    base = str(tmp_path / "run")
    assert dirs == [base] + [os.path.join(base, d) for d in ("pipes", "stats", "locks", "nic",
                                                              "xdp")]
    env.pop("NETMAPY_RUNDIR")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=60)
    assert json.loads(out.stdout)[0] == "/dev/shm/netmapy-%d" % os.geteuid()
