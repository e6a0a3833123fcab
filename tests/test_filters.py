"""Filters: rule files, tcpdump expressions and raw classic BPF, evaluated
in C.  Semantics are checked against an independent reference written from
the rule grammar; the parser is fuzzed with malformed frames (hypothesis,
and libFuzzer + AddressSanitizer when clang is there)."""

import ipaddress
import os
import re
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from middlebox import rules
from middlebox.filter import Filter, FilterError, compile_expression, parse_bpf_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------- frames
def ipv4_udp(src, dst, sport, dport, payload=b"x" * 18, proto=17, frag=0, vlan=None, ihl=5):
    opts = b"\x01" * ((ihl - 5) * 4) if ihl > 5 else b""
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload if proto in (6, 17) \
        else payload
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 2, 1024, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(opts) + len(l4), 1, frag, 64,
                     proto, 0, ipaddress.ip_address(src).packed,
                     ipaddress.ip_address(dst).packed) + opts
    eth = b"\x02" * 6 + b"\x04" * 6
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    return eth + b"\x08\x00" + ip + l4


def ipv6_udp(src, dst, sport, dport, payload=b"y" * 10, ext=False):
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    nh = 17
    exth = b""
    if ext:
        exth = bytes([17, 0]) + bytes(6)         # hop-by-hop, then UDP
        nh = 0
    ip = struct.pack("!IHBB", 0x60000000, len(exth) + len(l4), nh, 64) + \
        ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + ip + exth + l4


# ------------------------------------------------------------ rule files
@pytest.mark.parametrize("text, line, col, msg", [
    ("allw udp", 1, 1, "expected allow, deny"),
    ("allow udp from 10.0.0.300", 1, 16, "IPv4/IPv6 address"),
    ("\n\ndeny to any port 99999", 3, 18, "port (0..65535)"),
    ("deny to port 80-20", 1, 14, "range"),
    ("deny icmp to port 80", 1, 19, "ports need tcp, udp or sctp"),
    ("ratelimit fast udp", 1, 11, "expected a rate"),
    ("ratelimit 100pps burst x", 1, 24, "positive packet count"),
    ("allow from 10.0.0.0/8 to 2001:db8::/32", 1, 1, "mixes IPv4 and IPv6"),
    ("allow udp from any from any", 1, 20, "a second 'from'"),
    ("default maybe", 1, 9, "allow or deny"),
    ("allow udp sideways", 1, 11, "expected 'from', 'to'"),
    ("allow proto 300", 1, 13, "protocol number"),
])
def test_rule_errors_name_line_and_column(text, line, col, msg):
    with pytest.raises(rules.RuleError) as ei:
        rules.parse(text, "r.rules")
    e = ei.value
    assert (e.line, e.col) == (line, col), str(e)
    assert msg in str(e)
    assert str(e).startswith("r.rules:%d:%d: " % (line, col))


def test_rule_file_missing(tmp_path):
    with pytest.raises(rules.RuleError, match="cannot read the rule file"):
        rules.load(str(tmp_path / "nope.rules"))


DNS_RULES = """
# a DNS scrubber
allow udp from 10.0.0.0/8 to any port 53
deny  udp from 192.0.2.0/24 to any port 53
allow tcp to port 80,443,8000-8080
deny  from 2001:db8:bad::/48
deny  to 198.51.100.7
default deny
"""


@pytest.mark.parametrize("frame, ok", [
    (ipv4_udp("10.1.2.3", "10.9.9.9", 5000, 53), True),
    (ipv4_udp("192.0.2.77", "10.9.9.9", 5000, 53), False),
    (ipv4_udp("172.16.0.1", "10.9.9.9", 5000, 53), False),            # default deny
    (ipv4_udp("172.16.0.1", "10.9.9.9", 5000, 443, proto=6), True),
    (ipv4_udp("172.16.0.1", "10.9.9.9", 5000, 8042, proto=6), True),
    (ipv4_udp("172.16.0.1", "10.9.9.9", 5000, 8081, proto=6), False),
    (ipv6_udp("2001:db8:bad::1", "2001:db8::2", 1, 53), False),
    (ipv6_udp("2001:db8:900d::1", "2001:db8::2", 1, 53), False),       # default
    (ipv4_udp("10.0.0.1", "198.51.100.7", 1, 53), True),               # rule 1 first
    (ipv4_udp("10.1.2.3", "10.9.9.9", 5000, 53, vlan=42), True),       # behind a VLAN tag
    (b"\x02" * 12 + b"\x08\x06" + bytes(28), False),                   # ARP: default
])
@pytest.mark.parametrize("index", [False, True], ids=["linear", "indexed"])
def test_rule_semantics(frame, ok, index):
    f = Filter().add_rules(rules.parse(DNS_RULES), index=index)
    assert f.check(frame) is ok


@pytest.mark.parametrize("index", [False, True], ids=["linear", "indexed"])
def test_counters_per_rule(index):
    f = Filter().add_rules(rules.parse(DNS_RULES, "dns.rules"), index=index)
    for _ in range(3):
        f.check(ipv4_udp("10.1.2.3", "10.9.9.9", 5000, 53))
    f.check(ipv4_udp("192.0.2.77", "10.9.9.9", 5000, 53))
    f.check(ipv4_udp("172.16.0.1", "10.9.9.9", 5000, 53))
    c = {name: hits for name, _, hits, _ in f.counters()}
    assert c["dns.rules:3"] == 3 and c["dns.rules:4"] == 1 and c["dns.rules:default"] == 1
    assert sum(c.values()) == 5


def test_ratelimit_per_source_token_bucket():
    f = Filter().add_rules(rules.parse("ratelimit 10pps burst 4 udp to port 53\ndefault allow"))
    t = 10**12
    a = ipv4_udp("192.0.2.1", "10.0.0.1", 1, 53)
    b = ipv4_udp("192.0.2.2", "10.0.0.1", 1, 53)
    assert [f.check(a, t) for _ in range(6)] == [True] * 4 + [False] * 2   # burst of 4
    assert f.check(b, t)                            # another source has its own bucket
    assert not f.check(a, t + 50_000_000)           # 50 ms: half a token
    assert f.check(a, t + 150_000_000)              # 150 ms: one token
    assert f.check(ipv4_udp("192.0.2.1", "10.0.0.1", 1, 80), t)   # other port: not limited
    (_, _, hits, limited), _ = f.counters()
    assert limited == 3 and hits == 3


# -------------------------------------------------------- reference model
def reference(ruleset, frame):
    """The rule grammar's meaning, written independently in Python (no
    rate limits).  Returns True when the frame passes."""
    et = struct.unpack("!H", frame[12:14])[0] if len(frame) >= 14 else None
    off = 14
    vl = 0
    while et in (0x8100, 0x88A8) and vl < 2 and len(frame) >= off + 4:
        et = struct.unpack("!H", frame[off + 2:off + 4])[0]
        off += 4
        vl += 1
    info = None
    if et == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 15) * 4
        tot = struct.unpack("!H", frame[off + 2:off + 4])[0]
        if frame[off] >> 4 == 4 and ihl >= 20 and len(frame) >= off + ihl and tot >= ihl:
            proto = frame[off + 9]
            src = ipaddress.ip_address(frame[off + 12:off + 16])
            dst = ipaddress.ip_address(frame[off + 16:off + 20])
            fo = struct.unpack("!H", frame[off + 6:off + 8])[0] & 0x1fff
            ports = None
            l4 = off + ihl
            if fo == 0 and proto in (6, 17, 132, 136) and len(frame) >= l4 + 4:
                ports = struct.unpack("!HH", frame[l4:l4 + 4])
            info = (4, proto, src, dst, ports)
    elif et == 0x86DD and len(frame) >= off + 40:
        nh = frame[off + 6]
        src = ipaddress.ip_address(frame[off + 8:off + 24])
        dst = ipaddress.ip_address(frame[off + 24:off + 40])
        l4 = off + 40
        ports = None
        if nh in (6, 17, 132, 136) and len(frame) >= l4 + 4:
            ports = struct.unpack("!HH", frame[l4:l4 + 4])
        info = (6, nh, src, dst, ports)
    for r in ruleset.rules:
        if info is None:
            if r.proto is None and r.src is None and r.dst is None and not r.sports \
                    and not r.dports and r.family is None:
                return r.action == "allow"
            continue
        fam, proto, src, dst, ports = info
        if r.family and r.family != fam:
            continue
        if r.proto is not None and r.proto != proto:
            continue
        if r.src is not None and (src.version != r.src.version or src not in r.src):
            continue
        if r.dst is not None and (dst.version != r.dst.version or dst not in r.dst):
            continue
        if r.sports or r.dports:
            if ports is None:
                continue
            if r.sports and not any(lo <= ports[0] <= hi for lo, hi in r.sports):
                continue
            if r.dports and not any(lo <= ports[1] <= hi for lo, hi in r.dports):
                continue
        return r.action == "allow"
    return ruleset.default == "allow"


addr6 = st.builds(lambda a, b: "2001:db8:%x::%x" % (a % 3, b), st.integers(0, 255), st.integers(0, 255))
addr4 = st.builds(lambda a, b: "%d.%d.%d.%d" % (10 if a else 192, b % 4, a % 256, b % 256),
                  st.integers(0, 255), st.integers(0, 255))
rule_line = st.builds(
    lambda act, proto, src, dport: "%s %s %s %s" % (
        act, proto, ("from %s" % src) if src else "",
        ("to any port %s" % dport) if dport and proto in ("udp", "tcp") else ""),
    st.sampled_from(["allow", "deny"]), st.sampled_from(["udp", "tcp", "icmp", "any"]),
    st.one_of(st.none(), st.sampled_from(["10.0.0.0/8", "192.0.0.0/14", "10.2.3.4", "0.0.0.0/0",
                                          "10.0.0.0/16", "10.1.0.0/16", "2001:db8::/32",
                                          "2001:db8:1::/48", "2001:db8:2::7"])),
    st.one_of(st.none(), st.sampled_from(["53", "1-1024", "53,80,443", "5353", "80", "443"])))
# a rule set big enough to be indexed with many exact rules of few shapes
exact_line = st.builds(
    lambda act, a, b, port: "%s udp from 10.%d.%d.0/24 to any port %d" % (act, a, b, port),
    st.sampled_from(["allow", "deny"]), st.integers(0, 2), st.integers(0, 3), st.sampled_from([53, 80]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(rule_line, exact_line), min_size=1, max_size=14),
       default=st.sampled_from(["allow", "deny"]),
       packets=st.lists(st.tuples(st.one_of(addr4, addr6), st.sampled_from([53, 80, 443, 5353, 1500]),
                                  st.sampled_from([17, 6, 1]), st.booleans()), min_size=1, max_size=10))
def test_rules_match_the_reference(lines, default, packets):
    rs = rules.parse("\n".join(lines + ["default " + default]))
    linear = Filter().add_rules(rs, index=False)
    indexed = Filter().add_rules(rs, index=True)
    for src, port, proto, frag in packets:
        if ":" in src:
            frame = ipv6_udp(src, "2001:db8::9", 1234, port)
        else:
            frame = ipv4_udp(src, "10.9.9.9", 1234, port, proto=proto, frag=0x20 if frag else 0)
        want = reference(rs, frame)
        assert linear.check(frame) == want, (lines, src, port, proto)
        assert indexed.check(frame) == want, ("indexed", lines, src, port, proto)


def test_index_keeps_rule_order_with_ranges_and_rate_limits():
    # exact rules around a port range and a rate limit: the first match wins
    text = "\n".join(["deny udp from 10.0.%d.0/24 to any port 53" % i for i in range(20)] + [
        "allow udp from 10.0.5.0/24 to any port 1-100",      # after its deny: never decides
        "ratelimit 1pps burst 1 udp to any port 5353",
        "allow udp from 10.0.30.0/24 to any port 5353",      # after the rate limit
        "allow udp to any port 5353",
        "default deny"])
    rs = rules.parse(text, "t.rules")
    f = Filter().add_rules(rs, index=True)
    t = 10**12
    assert not f.check(ipv4_udp("10.0.5.1", "10.9.9.9", 1, 53), t)
    assert f.check(ipv4_udp("10.0.5.1", "10.9.9.9", 1, 54), t)         # the range
    assert f.check(ipv4_udp("10.0.30.1", "10.9.9.9", 1, 5353), t)      # the bucket's token
    assert not f.check(ipv4_udp("10.0.30.1", "10.9.9.9", 1, 5353), t)  # limited before rule 23
    c = {name: (hits, lim) for name, _, hits, lim in f.counters()}
    assert c["t.rules:6"] == (1, 0) and c["t.rules:21"] == (1, 0)
    assert c["t.rules:22"] == (1, 1) and c["t.rules:23"] == (1, 0)   # passed on, then limited


# ------------------------------------------------------------- expressions
def test_expression_drop_and_accept():
    drop = Filter().add_expression("udp dst port 53", drop=True)
    assert not drop.check(ipv4_udp("1.2.3.4", "5.6.7.8", 9, 53))
    assert drop.check(ipv4_udp("1.2.3.4", "5.6.7.8", 9, 54))
    acc = Filter().add_expression("src net 10.0.0.0/8")
    assert acc.check(ipv4_udp("10.2.3.4", "5.6.7.8", 9, 53))
    assert not acc.check(ipv4_udp("11.2.3.4", "5.6.7.8", 9, 53))


def test_expression_errors():
    with pytest.raises(FilterError, match="^'udp dst prot 53': libpcap cannot compile it"):
        Filter().add_expression("udp dst prot 53")


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_tcpdump_ddd_text_and_bpftools_form():
    out = subprocess.run(["tcpdump", "-ddd", "udp and dst port 53"], capture_output=True,
                         text=True, check=True).stdout
    f = Filter().add_bpf(out, drop=True, name="dns")
    assert not f.check(ipv4_udp("1.1.1.1", "2.2.2.2", 5, 53))
    assert f.check(ipv4_udp("1.1.1.1", "2.2.2.2", 5, 54))
    insns = parse_bpf_text(out)
    comma = "%d,%s" % (len(insns), ",".join("%d %d %d %d" % i for i in insns))
    assert parse_bpf_text(comma) == insns
    dd = subprocess.run(["tcpdump", "-dd", "udp and dst port 53"], capture_output=True,
                        text=True, check=True).stdout
    assert parse_bpf_text(dd) == insns


@pytest.mark.parametrize("text, msg", [
    ("2\n6 0 0 1\n", "says 2 instructions"),
    ("1\n21 0 5 17\n", "past the end"),
    ("2\n96 0 0 16\n6 0 0 0\n", r"M\[16\]"),
    ("1\n48 0 0 0\n", "falls off its end"),
    ("1\n6 0 x 0\n", "expected numbers"),
    ("", "no BPF instructions"),
])
def test_bad_bpf_programs(text, msg):
    with pytest.raises(FilterError, match=msg):
        Filter().add_bpf(text)


def test_chain_all_stages_must_pass():
    f = Filter()
    f.add_rules(rules.parse("deny from 192.0.2.0/24\ndefault allow"))
    f.add_expression("udp")
    f.add_expression("dst port 666", drop=True)
    assert f.check(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53))
    assert not f.check(ipv4_udp("192.0.2.1", "10.0.0.2", 1, 53))
    assert not f.check(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53, proto=6))
    assert not f.check(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 666))
    assert [c[2] for c in f.counters()] == [1, 3, 1, 1]


# -------------------------------------------------------------- malformed
MALFORMED = [
    b"", b"\x00", bytes(13), bytes(14),
    b"\x02" * 12 + b"\x08\x00",                                   # IPv4 ethertype, no header
    b"\x02" * 12 + b"\x08\x00" + b"\x45" + bytes(10),             # short IPv4
    b"\x02" * 12 + b"\x81\x00",                                   # VLAN tag cut
    b"\x02" * 12 + b"\x81\x00\x00\x01\x81\x00\x00\x02\x08\x00",   # QinQ, then nothing
    b"\x02" * 12 + b"\x86\xdd" + bytes(39),                       # short IPv6
]


def _variants(frame):
    yield frame
    for cut in range(len(frame)):
        yield frame[:cut]


@pytest.mark.parametrize("base", [
    ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53),
    ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53, ihl=15),
    ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53, frag=0x2000),
    ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53, frag=0x0010),
    ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53, vlan=7),
    ipv6_udp("2001:db8::1", "2001:db8::2", 1, 53, ext=True),
])
def test_truncations_never_crash(base):
    f = Filter().add_rules(rules.parse(DNS_RULES)).add_expression("udp port 53", drop=True)
    for fr in list(_variants(base)) + MALFORMED:
        f.check(fr)
    # a header that claims a bigger IHL than the frame has is malformed: no port match
    bad = bytearray(ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53))
    bad[14] = 0x4f
    g = Filter().add_rules(rules.parse("allow udp to port 53\ndefault deny"))
    assert not g.check(bytes(bad[:40]))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.sampled_from([0x0800, 0x86DD, 0x8100, 0x88A8, 0x0806]))
def test_random_frames_never_crash(tail, et):
    f = Filter().add_rules(rules.parse(DNS_RULES + "\nratelimit 5pps udp"))
    f.add_expression("udp port 53 or icmp", drop=True)
    f.check(b"\x02" * 12 + struct.pack("!H", et) + tail)
    f.check(tail)


@pytest.mark.skipif(shutil.which("clang") is None,
                    reason="needs clang for libFuzzer + ASan: apt-get install clang "
                           "libclang-rt-dev (tools/setup.sh installs both)")
def test_libfuzzer_asan(tmp_path):
    """Coverage-guided fuzzing of the parser and rule evaluation under
    AddressSanitizer and UBSan, 15 s: any out-of-bounds read aborts."""
    exe = tmp_path / "fuzz"
    build = subprocess.run(["clang", "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
                            "-I", os.path.join(REPO, "middlebox", "includes"),
                            os.path.join(REPO, "tests", "fuzz", "mb_filter_fuzz.c"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    missing = re.search(r"cannot find \S*(libclang_rt\.\S+)|(libclang_rt\.\S+)\S*: No such file",
                        build.stderr)
    if build.returncode != 0 and missing:
        # Debian/Ubuntu ship clang's runtimes apart: libclang-rt-N-dev for clang N
        pytest.skip("clang has no libFuzzer/sanitizer runtime (%s is missing): apt-get install "
                    "libclang-rt-dev (tools/setup.sh installs it)" % (missing.group(1) or
                                                                      missing.group(2)).rstrip(":"))
    assert build.returncode == 0, build.stderr
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, fr in enumerate(MALFORMED + [ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53),
                                        ipv6_udp("2001:db8::1", "2001:db8::2", 1, 53, ext=True)]):
        (corpus / ("seed%d" % i)).write_bytes(b"\x11" + fr)
    run = subprocess.run([str(exe), "-max_total_time=15", "-max_len=256", str(corpus)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done" in run.stderr
