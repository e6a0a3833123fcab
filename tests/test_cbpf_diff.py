"""Differential tests of the two filter paths against libpcap.

A classic BPF program reaches packets in two ways: middlebox.Filter
(libpcap's interpreter, or netmapy's bounded one for programs with loops)
and the xdp backend's steering (netmapy.backends.xdp.prog translates it to eBPF, the
kernel runs it; here with BPF_PROG_RUN, not on live frames).  libpcap's own
interpreter (bpf_filter, the installed libpcap) is the reference: for every
program and frame below, netmapy's interpreter returns the same value and
Filter and the XDP translation give the same verdict.

* random programs (tests/cbpf_gen.py): every ALU and jump opcode, loads at
  every kind of offset, scratch memory, valid per the kernel's classic
  checker, plus libpcap-style loops (backward jumps), over generated frames
  (valid, truncated, VLAN-tagged, IPv6 with extension headers, fragments,
  random bytes) and a fixed pool of frames;
* a corpus of tcpdump expressions (protochain, shifts and divisions by
  packet bytes, `ip broadcast` with a netmask, ...) over the same frames.

The CI run checks about 20,000 random program/frame pairs.  The long run:

    NETMAPY_DIFF_PAIRS=10000000 python3 -m pytest -q -s tests/test_cbpf_diff.py -k random

(prints the number of pairs checked; about an hour on the lab machine).
"""

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netmapy.host import cbpf
from netmapy.backends.xdp import prog as xdpprog
from middlebox.filter import Filter, FilterError, Interpreter

from cbpf_gen import Paths, expressions, frame_pool, frames_st, programs, frame
from conftest import IS_ROOT

PAIRS = int(os.environ.get("NETMAPY_DIFF_PAIRS", "20000"))
LONG = PAIRS > 100000
POOL = frame_pool(512 if LONG else 256)
POOL_SAMPLE = 160 if LONG else 40      # pool frames per random program
GEN_FRAMES = 12 if LONG else 8         # generated frames per random program

needs_bpf = pytest.mark.skipif(not IS_ROOT, reason="needs root (loads XDP programs)")
counts = {"pairs": 0, "bounded": 0, "match": 0}


def _xdp_ok():
    try:
        p = Paths([(0x06, 0, 0, 1)])
    except Exception as e:                   # pragma: no cover - depends on the machine
        return str(e)
    p.close()
    return None


EXAMPLES = max(1, PAIRS // (POOL_SAMPLE + GEN_FRAMES))
BATCH = 500                 # hypothesis remembers every example of a run: run in batches


@settings(max_examples=min(EXAMPLES, BATCH), deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(prog=programs(), gen=st.lists(frames_st, min_size=GEN_FRAMES, max_size=GEN_FRAMES),
       pick=st.randoms(use_true_random=False))
def _random_batch(prog, gen, pick):
    paths = Paths(prog)
    try:
        for f in gen + pick.sample(POOL, POOL_SAMPLE):
            v = paths.check(f)
            counts["pairs"] += 1
            counts["bounded"] += v == "bounded"
            counts["match"] += v is True
    finally:
        paths.close()


@needs_bpf
def test_random_programs_agree_with_libpcap():
    for b in range(max(1, -(-EXAMPLES // BATCH))):
        _random_batch()
        if LONG:
            print("batch %d: %d pairs" % (b, counts["pairs"]), flush=True)


@st.composite
def alu_chains(draw):
    """ld #k; ldx #x; 1..8 ALU operations (K and X, neg, tax, txa); ret a."""
    from cbpf_gen import KVALS, XVALS, _plain_alu
    prog = [(0x00, 0, 0, draw(KVALS)), (0x01, 0, 0, draw(XVALS))]
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.integers(0, 7)) == 0:
            prog.append((draw(st.sampled_from([0x07, 0x87])), 0, 0, 0))
        else:
            prog.append(_plain_alu(draw, True))
    return prog + [(0x16, 0, 0, 0)]


@needs_bpf
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
          database=None)
@given(prog=alu_chains())
def test_alu_chains_return_what_libpcap_returns(prog):
    """Every ALU result, value for value (the XDP translation returns A)."""
    paths = Paths(prog)
    try:
        paths.check(bytes(60))
    finally:
        paths.close()


def test_random_pair_count():
    """Runs after the random test (file order): the pairs really checked."""
    if not counts["pairs"]:
        pytest.skip("the random program test did not run in this session")
    print("\nclassic BPF differential: %(pairs)d program/frame pairs checked, %(match)d "
          "matches, %(bounded)d ended by the loop limit" % counts)
    assert counts["pairs"] >= PAIRS * 0.9


# -------------------------------------------------------- tcpdump corpus
CORPUS = [
    "udp dst port 53", "tcp port 80 or tcp port 443", "host 10.0.0.1", "src net 10.0.0.0/8",
    "dst net 192.168.0.0/16 and not udp", "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "ip[2:2] > 100 and not icmp", "vlan and udp", "vlan 10 and udp", "vlan and vlan and tcp",
    "ip6 and tcp port 80", "ip6 and dst port 53", "ip[0] & 0xf > 5", "udp[8:4] = 0x01020304",
    "greater 64", "less 60", "len > 100", "ip proto 47 or ip6 proto 47",
    "icmp[icmptype] = icmp-echo", "icmp6", "ip6[6] = 58", "arp", "rarp", "ether broadcast",
    "ether multicast", "ip multicast", "ip6 multicast", "ether host 02:02:02:02:02:02",
    "ether src 04:04:04:04:04:04", "ip protochain 51", "ip protochain 6", "ip6 protochain 6",
    "ip6 protochain 17", "protochain 17", "ip6 protochain 44", "ip6 protochain 59",
    "ip protochain 17 or ip6 protochain 51", "vlan and ip protochain 6",
    "ip6 protochain 58 and ip6 src host 2001:db8::1", "not ip6 protochain 6",
    "ip[8] >> (ip[9] + 32) != 0", "ether[0] << ether[1] = 0", "ip[8] >> ip[9] != 0",
    "ether[1] << (ether[2] & 0x3f) > 0", "ip[2:2] / ip[9] > 3", "ip[2:2] % ip[8] = 0",
    "ip[2:2] / (ip[9] - 6) > 1", "ip[2:2] % (ip[9] - 17) = 1", "(ip[2:2] ^ 0xff) & 0xf00 != 0",
    "ip[0] * 3 > 100", "ip[6:2] & 0x1fff != 0", "ip[6] & 0x20 != 0", "ip6[40] = 44",
    "tcp[13] & 2 != 0", "udp[0:2] + udp[2:2] > 1000", "portrange 1000-2000",
    "tcp portrange 20-25 or udp port 123", "net 224.0.0.0/4", "ip host 255.255.255.255",
    "not ip and not ip6", "ip6 net 2001:db8::/32", "ip6 src host ::1",
    "ether[12:2] = 0x8100 and ether[16:2] = 0x0800", "ether proto 0x88b5", "ip[9] = 51",
    "mpls", "pppoes", "sctp", "ip and len >= 60", "ether[100] = 0", "ether[1500:4] != 1",
    "udp and ip[6:2] & 0x3fff = 0", "tcp[4:4] = 0",
    "ip[ip[0] & 0xf] = 0", "ether[ether[0]] > 3", "ip[2:2] - ip[4:2] > 0x8000",
    "ip[12:4] & 0xffffff00 = 0xc0a80100", "ip6[ip6[6]] != 0", "udp[udp[4] & 0x7] = 1",
    "ip[1] & 0xfc >> 2 = 0", "ether[0] & 1 = 1 and not ether broadcast",
]
NETMASK_CORPUS = [("ip broadcast", "255.255.255.0"), ("ip broadcast", "/16"),
                  ("ip broadcast or ip multicast", 24), ("not ip broadcast", "255.0.0.0"),
                  ("ip broadcast and udp port 53", "255.255.255.128")]


@needs_bpf
@pytest.mark.parametrize("expr, netmask", [(e, None) for e in CORPUS] + NETMASK_CORPUS)
def test_tcpdump_corpus_agrees_with_libpcap(expr, netmask):
    insns = cbpf.compile_expression(expr, netmask=netmask)
    paths = Paths(insns, source=repr(expr))
    try:
        r = random.Random(expr)
        frames = POOL + [frame(r) for _ in range(64)]
        verdicts = [paths.check(f) for f in frames]
    finally:
        paths.close()
    # the corpus is only worth something if its frames exercise both verdicts
    # (a few expressions select nothing in these frames)
    assert False in verdicts


@needs_bpf
@settings(max_examples=2000 if LONG else 150, deadline=None,
          suppress_health_check=list(HealthCheck), database=None)
@given(expr=expressions, gen=st.lists(frames_st, min_size=8, max_size=8),
       pick=st.randoms(use_true_random=False))
def test_random_expressions_agree_with_libpcap(expr, gen, pick):
    """Expressions built from tcpdump's primitives (protochain, vlan, byte
    arithmetic with shifts and divisions by packet bytes, ...): whatever
    libpcap compiles, both paths take (no refusal) and agree on."""
    try:
        insns = cbpf.compile_expression(expr, netmask="255.255.255.0")
    except cbpf.CbpfError:
        return                                # libpcap refuses it (e.g. "division by zero")
    paths = Paths(insns, source=repr(expr))
    try:
        for f in gen + pick.sample(POOL, 24):
            paths.check(f)
            counts["expr_pairs"] = counts.get("expr_pairs", 0) + 1
    finally:
        paths.close()


@needs_bpf
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(expr=st.sampled_from([e for e in CORPUS if "protochain" in e]),
       frames=st.lists(frames_st, min_size=20, max_size=20))
def test_protochain_on_generated_frames(expr, frames):
    paths = Paths(cbpf.compile_expression(expr), source=repr(expr))
    try:
        for f in frames:
            paths.check(f)
    finally:
        paths.close()


def test_expressions_compile_with_filter_and_netmask():
    """Filter.add_expression takes the netmask; without one, `ip broadcast`
    is refused with the expression, libpcap's reason and the fix."""
    with pytest.raises(FilterError) as e:
        Filter().add_expression("ip broadcast")
    msg = str(e.value)
    assert msg.startswith("'ip broadcast': ") and "netmask" in msg and "--netmask" in msg
    f = Filter().add_expression("ip broadcast", netmask="255.255.255.0")
    bcast = _udp4("10.0.0.1", "192.168.1.255")
    other = _udp4("10.0.0.1", "192.168.1.7")
    assert f.check(bcast) and not f.check(other)
    g = Filter().add_expression("ip broadcast", netmask=16)
    assert not g.check(bcast) and g.check(_udp4("10.0.0.1", "192.168.255.255"))
    with pytest.raises(FilterError, match="/32"):
        Filter().add_expression("ip broadcast", netmask="255.255.255.255")
    for bad in ("255.0.255.0", "33", "x", -1, 1 << 32):
        with pytest.raises(FilterError, match="netmask"):
            Filter().add_expression("ip broadcast", netmask=bad)


def _udp4(src, dst):
    import ipaddress
    import struct
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 64, 17, 0,
                     ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + struct.pack("!HHHH", 1, 53, 8, 0) + \
        bytes(18)
