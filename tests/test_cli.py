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
