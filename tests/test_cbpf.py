"""Classic BPF checks, loops and netmasks, in both filter paths
(middlebox.Filter and the xdp backend's translation); their agreement with
libpcap on random programs and frames is tests/test_cbpf_diff.py."""

import os
import subprocess
import sys
import warnings

import pytest

from netmapy.host import cbpf
from netmapy.backends.xdp import prog as xdpprog
from middlebox.filter import Filter, FilterError, Interpreter
from conftest import IS_ROOT

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
M32 = 0xffffffff
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (loads XDP programs)")


def xdp_run(insns, frame, loop_limit=None):
    """The XDP translation's verdict on one frame (BPF_PROG_RUN)."""
    from netmapy.backends import xdp
    fd = xdp.load_program(xdpprog.steer_program(insns, match_action=xdpprog.XDP_TX,
                                                 loop_limit=loop_limit), "netmapy_t")
    try:
        return xdp.test_run(fd, frame) == xdpprog.XDP_TX
    finally:
        os.close(fd)


# ----------------------------------------------------------------- checks
RET = (0x06, 0, 0, 1)


@pytest.mark.parametrize("prog, needles", [
    ([(0x0e, 0, 0, 0)], ["instruction 0 (code 0x0e", "not an opcode", "aborts", "fix the code"]),
    ([(0x28, 0, 0, 12), (0x34, 0, 0, 0), RET],
     ["instruction 1 (div #0)", "division by the constant 0", "non-zero constant"]),
    ([(0x00, 0, 0, 1), (0x64, 0, 0, 32), RET], ["instruction 1 (lsh #32)", "shift by 0..31"]),
    ([(0x02, 0, 0, 16), RET], ["instruction 0 (st M[16])", "M[0]..M[15]"]),
    ([(0x60, 0, 0, 3), (0x16, 0, 0, 0)], ["instruction 0 (ld M[3])", "store to M[3] first"]),
    ([(0x30, 0, 0, 0), (0x15, 1, 0, 1), (0x02, 0, 0, 5), (0x60, 0, 0, 5), (0x16, 0, 0, 0)],
     ["instruction 3 (ld M[5]) reads M[5], which some path"]),
    ([(0x05, 0, 0, M32), RET], ["instruction 0 (ja 0)", "jumps to itself", "endless loop"]),
    ([(0x05, 0, 0, 5), RET], ["jumps to instruction 6, outside the 2-instruction program"]),
    ([(0x05, 0, 0, (-3) & M32), RET], ["jumps to instruction -2"]),
    ([(0x15, 0, 4, 1), RET], ["instruction 0 (jeq #0x1 jt 1 jf 5)", "past the end"]),
    ([(0x30, 0, 0, 0)], ["ends with instruction 0 (ldb [0])", "falls off its end", "ret"]),
    ([], ["empty", "ret #0"]),
    ([(0x06, 0, 256, 1)], ["out of range"]),
])
def test_check_names_the_program_the_instruction_and_the_fix(prog, needles):
    """The same message in both paths: the program's name first."""
    errors = []
    with pytest.raises(FilterError) as e:
        Filter().add_bpf(prog, name="mine")
    errors.append(str(e.value))
    with pytest.raises(xdpprog.BpfTranslateError) as e:
        xdpprog.steer_program(prog, source="mine")
    errors.append(str(e.value))
    for msg in errors:
        assert msg.startswith("mine: ") and "\n" not in msg, msg
        for n in needles:
            assert n in msg, msg
    assert errors[0] == errors[1]


def test_store_on_every_path_including_loops():
    """M[k] written before the loop, or on every path into a read, is fine;
    a read whose loop path skips the store is refused."""
    ok = [(0x00, 0, 0, 7), (0x02, 0, 0, 2),            # M[2] = 7
          (0x60, 0, 0, 2), (0x04, 0, 0, 1), (0x02, 0, 0, 2),
          (0x15, 1, 0, 12), (0x05, 0, 0, (-5) & M32), (0x16, 0, 0, 0)]
    assert Interpreter(ok)(b"") == (12, False)
    bad = [(0x00, 0, 0, 7), (0x15, 1, 0, 0),            # A == 0 -> skip the store
           (0x02, 0, 0, 2), (0x60, 0, 0, 2), (0x06, 0, 0, 1)]
    with pytest.raises(FilterError, match="reads M.2."):
        Filter().add_bpf(bad)


def test_text_forms_and_expression_detection():
    insns = cbpf.compile_expression("udp dst port 53")
    ddd = "%d\n%s\n" % (len(insns), "\n".join("%d %d %d %d" % i for i in insns))
    comma = "%d,%s" % (len(insns), ",".join("%d %d %d %d" % i for i in insns))
    dd = "\n".join("{ 0x%x, %d, %d, 0x%08x }," % i for i in insns)
    for text in (ddd, comma, dd):
        assert cbpf.looks_like_text(text)
        assert cbpf.parse_text(text) == insns
    for expr in ("udp dst port 53", "1", "ip[0] = 1", "10.0.0.1"):
        assert not cbpf.looks_like_text(expr)


@pytest.mark.parametrize("value, mask", [
    ("255.255.255.0", 0xffffff00), ("/24", 0xffffff00), ("24", 0xffffff00), (24, 0xffffff00),
    (0xffff0000, 0xffff0000), ("0.0.0.0", 0), (0, 0), (None, cbpf.PCAP_NETMASK_UNKNOWN),
    ("255.255.255.255", M32), (32, M32),
])
def test_netmask_forms(value, mask):
    assert cbpf.parse_netmask(value) == mask


@pytest.mark.parametrize("value", ["255.0.255.0", "33", "/-1", "x", 1 << 32, -5, 1.5, "10.0.0.1"])
def test_bad_netmasks(value):
    with pytest.raises(cbpf.CbpfError, match="netmask"):
        cbpf.parse_netmask(value)


def test_negative_offsets_fail_like_libpcap_and_warn():
    """SKF_AD_OFF/SKF_NET_OFF/SKF_LL_OFF loads: the kernel reads ancillary
    data there; libpcap's interpreter has none and fails the load, and so do
    both paths, with a warning naming the load."""
    for k, name in (((cbpf.SKF_AD_OFF + 24) & M32, "SKF_AD_OFF+24 (queue)"),
                    ((cbpf.SKF_NET_OFF + 9) & M32, "SKF_NET_OFF+9"),
                    ((cbpf.SKF_LL_OFF + 12) & M32, "SKF_LL_OFF+12")):
        prog = [(0x30, 0, 0, k), (0x06, 0, 0, 1)]
        with pytest.warns(cbpf.CbpfWarning, match=r"instruction 0 \(ldb \[%s\]\)" %
                          name.replace("+", r"\+").replace("(", r"\(").replace(")", r"\)")):
            f = Filter().add_bpf(prog)
        assert not f.check(bytes(60))
        assert cbpf.pcap_filter(prog, bytes(60)) == 0


# ------------------------------------------------------------------ loops
def counting_loop(n):
    """A = 0; do A += 1 while A != n; return A: n - 1 backward jumps."""
    return [(0x00, 0, 0, 0), (0x04, 0, 0, 1), (0x15, 1, 0, n), (0x05, 0, 0, (-3) & M32),
            (0x16, 0, 0, 0)]


@pytest.mark.parametrize("limit", [0, 1, 7, None])
def test_loop_limit_is_the_same_in_both_paths(limit):
    """`limit` backward jumps are allowed (as many as libpcap would take:
    the same result), the next one ends the program with 0."""
    lim = cbpf.LOOP_LIMIT if limit is None else limit
    frame = bytes(60)
    within, past = counting_loop(lim + 1), counting_loop(lim + 2)
    assert cbpf.pcap_filter(within, frame) == lim + 1
    f_in = Filter().add_bpf(within, loop_limit=limit)
    f_out = Filter().add_bpf(past, loop_limit=limit)
    assert f_in.check(frame) and not f_out.check(frame)
    assert f_in.loop_limited() == {"bpf0": 0} and f_out.loop_limited() == {"bpf0": 1}
    assert Interpreter(within, lim)(frame) == (lim + 1, False)
    assert Interpreter(past, lim)(frame) == (0, True)
    if IS_ROOT:
        assert xdp_run(within, frame, limit) is True
        assert xdp_run(past, frame, limit) is False


def test_endless_loops_end_at_the_limit():
    """A raw program that loops for ever (libpcap 1.10 would never return
    from it) costs a worker LOOP_LIMIT backward jumps per packet, no more."""
    forever = [(0x00, 0, 0, 0), (0x04, 0, 0, 1), (0x05, 0, 0, (-2) & M32), (0x06, 0, 0, 1)]
    f = Filter().add_bpf(forever, name="spin")
    assert f.check_many([bytes(60)] * 3) == [False] * 3
    assert f.loop_limited() == {"spin": 3}
    if IS_ROOT:
        assert xdp_run(forever, bytes(60)) is False


def test_loop_limit_range():
    for bad in (-1, cbpf.MAX_LOOP_LIMIT + 1):
        with pytest.raises(FilterError, match="loop_limit"):
            Filter().add_bpf(counting_loop(3), loop_limit=bad)
        with pytest.raises(xdpprog.BpfTranslateError, match="loop_limit"):
            xdpprog.steer_program(counting_loop(3), loop_limit=bad)


def _ipv6_chain(chain, last=6):
    import struct
    payload = bytes(20)
    nh = last
    for h in reversed(chain):
        payload = (bytes([nh, 1]) + bytes(10) if h == 51 else bytes([nh, 0]) + bytes(6)) + payload
        nh = h
    return (b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + struct.pack("!IHBB", 6 << 28, len(payload), nh, 64)
            + bytes(32) + payload)


@pytest.mark.parametrize("expr", ["ip protochain 51", "ip6 protochain 6", "protochain 17",
                                  "ip6 protochain 6 or ip protochain 6"])
def test_protochain_runs_in_both_paths(expr):
    """libpcap compiles protochain to a loop: both paths run it (the XDP
    translation passes the verifier) and agree with libpcap."""
    insns = cbpf.compile_expression(expr)
    assert cbpf.backward_jumps(insns)
    f = Filter().add_expression(expr)
    for chain in ([], [0], [0, 60, 43], [44, 60], [0] * 30):
        fr = _ipv6_chain(chain)
        want = cbpf.pcap_filter(insns, fr) != 0
        assert f.check(fr) == want
        if IS_ROOT:
            assert xdp_run(insns, fr) == want
    if "ip6 protochain 6" in expr:
        assert f.check(_ipv6_chain([0, 60, 43])) and not f.check(_ipv6_chain([0], last=17))


def test_ipv6_ah_loop_that_hangs_libpcap_ends():
    """Two AH headers make libpcap 1.10's `ip6 protochain` loop for ever
    (its AH step sets X instead of adding to it); netmapy stops at the limit
    and says no match, in both paths."""
    fr = _ipv6_chain([51, 51])
    f = Filter().add_expression("ip6 protochain 6")
    assert not f.check(fr) and f.loop_limited() == {"ip6 protochain 6": 1}
    if IS_ROOT:
        assert xdp_run(cbpf.compile_expression("ip6 protochain 6"), fr) is False


# --------------------------------------------------------------- netmasks
def test_netmask_reaches_libpcap():
    with pytest.raises(xdpprog.SteerError) as e:
        xdpprog.compile_filter("ip broadcast", netmask_from="eth9")
    msg = str(e.value)
    assert msg.startswith("'ip broadcast': ") and "netmask not known" in msg
    assert "eth9 has no IPv4 address" in msg and "--netmask" in msg
    prog = xdpprog.compile_filter("ip broadcast", netmask="255.255.255.0")
    assert (0x15, 0, 1, 0xff) in prog or any(i[3] == 0xff for i in prog)


@pytest.mark.parametrize("cmd", ["middlebox.bridge", "middlebox.offload", "middlebox.pipeline",
                                 "middlebox.lbcli"])
def test_every_cli_that_compiles_expressions_has_netmask(cmd):
    out = subprocess.run([sys.executable, "-m", cmd, "--help"], capture_output=True, text=True,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), timeout=60)
    assert out.returncode == 0 and "--netmask" in out.stdout, out.stderr


@pytest.fixture
def pair():
    from tools.lab import VethPair
    with VethPair(queues=1) as v:
        yield v


@needs_root
def test_netmask_defaults_to_the_interfaces(pair):
    """The default netmask is the receiving interface's own, read in its
    namespace; without an address the error names the interface and the
    option."""
    from types import SimpleNamespace as Namespace
    from netmapy.host import iface, netns
    from netmapy.names import parse_name
    from middlebox.options import netmask_for
    v = pair
    with netns.netns(v.ns_b):
        assert iface.ipv4_netmask(v.if_b) == "255.255.255.0"
    args = Namespace(netns=v.ns_b, netmask=None)
    assert netmask_for(args, v.if_b) == "255.255.255.0"
    assert netmask_for(args, parse_name("xdp:%s~0" % v.if_b)) == "255.255.255.0"
    assert netmask_for(args, parse_name("pipe:x{0")) is None
    assert netmask_for(Namespace(netns=v.ns_b, netmask="/16"), v.if_b) == "/16"
    env = dict(os.environ, PYTHONPATH=REPO)
    base = [sys.executable, "-m", "middlebox.offload", v.if_b, "0", "--netns", v.ns_b,
            "--dry-run", "--drop", "ip broadcast"]
    ok = subprocess.run(base, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(base + ["--netmask", "255.0.255.0"], capture_output=True, text=True,
                         cwd=REPO, env=env, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "--netmask" in bad.stderr and "not a netmask" in bad.stderr
    subprocess.run(["ip", "-n", v.ns_b, "addr", "flush", "dev", v.if_b], check=True)
    with netns.netns(v.ns_b):
        assert iface.ipv4_netmask(v.if_b) is None
    none = subprocess.run(base, capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert none.returncode == 1 and len(none.stderr.strip().splitlines()) == 1, none.stderr
    assert "'ip broadcast'" in none.stderr and "--netmask" in none.stderr
    given = subprocess.run(base + ["--netmask", "24"], capture_output=True, text=True, cwd=REPO,
                           env=env, timeout=60)
    assert given.returncode == 0, given.stderr


@needs_root
def test_service_configuration_takes_a_netmask(pair, tmp_path):
    """[filters] netmask in a service's TOML file; --check compiles with it,
    or with the interface's, and names the file, line and key."""
    v = pair
    env = dict(os.environ, PYTHONPATH=REPO)
    conf = tmp_path / "svc.toml"
    head = '[nm-offload]\ninterface = "%s"\nqueues = [0]\nnetns = "%s"\n\n[filters]\n' \
        'drop = ["ip broadcast"]\n' % (v.if_b, v.ns_b)

    def check(extra=""):
        conf.write_text(head + extra)
        return subprocess.run([sys.executable, "-m", "middlebox.offload", "--config", str(conf),
                               "--check"], capture_output=True, text=True, cwd=REPO, env=env,
                              timeout=60)
    assert check().returncode == 0                      # the interface's /24
    r = check('netmask = "255.0.255.0"\n')
    assert r.returncode == 1 and "svc.toml:8: filters.netmask: netmask 255.0.255.0: not a " \
        "netmask" in r.stderr, r.stderr
    subprocess.run(["ip", "-n", v.ns_b, "addr", "flush", "dev", v.if_b], check=True)
    r = check()
    assert r.returncode == 1 and "svc.toml:7: filters.drop[0]: 'ip broadcast'" in r.stderr
    assert "in a service's [filters]" in r.stderr
    assert check('netmask = "/16"\n').returncode == 0
