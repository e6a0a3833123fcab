"""Rule files in the kernel (middlebox.kfilter): the XDP rule program gives
every packet the rule file's first-match verdict, as the user-space filter
and the independent reference do, and its counters fold into the same
per-rule and per-direction counters.  The program runs with BPF_PROG_RUN
(not live) on the frames the filter tests build."""

import ipaddress
import struct

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from conftest import needs_root
from middlebox import rules
from middlebox.filter import Filter

pytestmark = needs_root

kfilter = pytest.importorskip("middlebox.kfilter")
if not __import__("os").path.exists(kfilter.BPF_OBJECT):      # pragma: no cover
    pytest.skip("the rule program was not built (no clang)", allow_module_level=True)

from test_filters import (DNS_RULES, MALFORMED, ipv4_udp, ipv6_udp, reference, rule_line,  # noqa: E402
                          exact_line, addr4, addr6, _variants)

XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3
USER = XDP_TX            # what the program returns for "user space decides" in these tests


def kernel(f, **kw):
    kr = kfilter.KernelRules(f, **kw)
    kr.set_user_action(USER)
    return kr


def verdict(kr, frame):
    return {XDP_PASS: True, XDP_DROP: False, USER: None}[kr.test_run(frame)]


def frames_of(packets):
    for src, port, proto, frag in packets:
        if ":" in src:
            yield ipv6_udp(src, "2001:db8::9", 1234, port)
        else:
            yield ipv4_udp(src, "10.9.9.9", 1234, port, proto=proto, frag=0x20 if frag else 0)


@settings(max_examples=120, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(st.one_of(rule_line, exact_line), min_size=1, max_size=14),
       default=st.sampled_from(["allow", "deny"]),
       index=st.booleans(),
       packets=st.lists(st.tuples(st.one_of(addr4, addr6), st.sampled_from([53, 80, 443, 5353, 1500]),
                                  st.sampled_from([17, 6, 1]), st.booleans()), min_size=1, max_size=10))
def test_kernel_verdicts_and_counters_match_the_reference(lines, default, index, packets):
    rs = rules.parse("\n".join(lines + ["default " + default]), "p.rules")
    user = Filter().add_rules(rs, index=index)
    user.attach_counters()
    mine = Filter().add_rules(rs, index=index)
    mine.attach_counters()
    kr = kernel(mine)
    try:
        for frame in frames_of(packets):
            want = reference(rs, frame)
            assert verdict(kr, frame) == want, (lines, frame.hex())
            assert user.check(frame) == want
        blk = memoryview(bytearray(8 * 32)).cast("Q")
        kr.fold_into(blk)
        n = len(packets)
        passed = sum(1 for fr in frames_of(packets) if reference(rs, fr))
        assert (blk[8], blk[10], blk[12]) == (n, passed, n - passed)      # rx, fwd, drop
        assert [c[2] for c in mine.counters()] == [c[2] for c in user.counters()]
        kr.fold_into(blk)                                                  # nothing new
        assert blk[8] == n
    finally:
        kr.close()


@pytest.mark.parametrize("index", [False, True], ids=["linear", "indexed"])
def test_kernel_agrees_with_the_filter_on_malformed_and_unusual_frames(index):
    """Frames the reference does not model (IPv6 extension headers, VLAN
    tags, truncations, bad IHL, later fragments): the program's verdict is
    the user-space filter's, frame by frame."""
    text = DNS_RULES.replace("default deny", "") + "\nallow udp to port 53\ndeny proto 17\n" \
        "allow from 2001:db8::/32 port 1\ndefault allow\n"
    rs = rules.parse(text)
    f = Filter().add_rules(rs, index=index)
    kr = kernel(Filter().add_rules(rs, index=index))
    bases = [ipv4_udp("10.1.0.1", "10.0.0.2", 1, 53),
             ipv4_udp("172.16.0.1", "10.0.0.2", 1, 53, ihl=15),
             ipv4_udp("172.16.0.1", "10.0.0.2", 1, 53, frag=0x2000),
             ipv4_udp("172.16.0.1", "10.0.0.2", 1, 53, frag=0x0010),
             ipv4_udp("10.1.0.1", "10.0.0.2", 1, 53, vlan=7),
             ipv4_udp("172.16.0.1", "10.0.0.2", 1, 8042, proto=6),
             ipv6_udp("2001:db8::1", "2001:db8::2", 1, 53, ext=True),
             ipv6_udp("2001:db8:bad::1", "2001:db8::2", 1, 53),
             b"\x02" * 12 + b"\x81\x00\x00\x01\x88\xa8\x00\x02" + ipv4_udp("10.1.0.1", "1.1.1.1", 1, 53)[12:]]
    seen = 0
    try:
        for base in bases:
            for fr in list(_variants(base)) + MALFORMED:
                if len(fr) < 14:
                    continue                # BPF_PROG_RUN needs an Ethernet header
                assert verdict(kr, fr) == f.check(fr), fr.hex()
                seen += 1
    finally:
        kr.close()
    assert seen > 500


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=120), st.sampled_from([0x0800, 0x86DD, 0x8100, 0x88A8]))
def test_random_frames_same_verdict(tail, et):
    rs = rules.parse(DNS_RULES)
    f = Filter().add_rules(rs)
    kr = _shared_kernel()
    fr = b"\x02" * 12 + struct.pack("!H", et) + tail
    assert verdict(kr, fr) == f.check(fr)


_KR = []


def _shared_kernel():
    if not _KR:
        _KR.append(kernel(Filter().add_rules(rules.parse(DNS_RULES))))
    return _KR[0]


def test_what_the_kernel_leaves_to_user_space():
    """A first match that is a rate limit, an allow while later stages must
    agree, a deny while drops are sampled: user space decides those."""
    rs = rules.parse("ratelimit 10pps udp to port 5353\nallow udp to port 53\n"
                     "deny udp\ndefault allow")
    kr = kernel(Filter().add_rules(rs))
    try:
        assert kr.final
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 5353)) is None
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53)) is True
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 54)) is False
        kr.set_punt_drops(True)
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 54)) is None
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53)) is True
        t = kr.totals()
        assert (t["pass_"], t["drop"], t["user"]) == (2, 1, 2)
    finally:
        kr.close()
    chained = Filter().add_rules(rs).add_expression("udp port 53", drop=True)
    kr = kernel(chained)
    try:
        assert not kr.final
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 53)) is None   # allowed: ask the rest
        assert verdict(kr, ipv4_udp("10.0.0.1", "10.0.0.2", 1, 54)) is False  # denied: final
    finally:
        kr.close()


def test_only_rule_files_and_few_shapes_run_in_the_kernel():
    with pytest.raises(kfilter.KernelFilterUnavailable, match="not a rule file"):
        kfilter.KernelRules(Filter().add_expression("udp"))
    # 75 shapes (prefix length x protocol/port), 5 rules each: more hashed
    # groups than the program walks
    lines = []
    for plen in range(8, 33):
        for k in range(5):
            net = str(ipaddress.ip_address((10 << 24) + (k << (32 - plen))))
            lines += ["deny udp from %s/%d to any port 53" % (net, plen),
                      "deny udp to %s/%d" % (net, plen),
                      "deny from %s/%d" % (net, plen)]
    with pytest.raises(kfilter.KernelFilterUnavailable, match="rule shapes"):
        kfilter.KernelRules(Filter().add_rules(rules.parse("\n".join(lines))))
    # small shapes are walked, not hashed: no limit for them
    few = "\n".join("deny udp from 10.0.0.0/%d to any port %d" % (8 + i % 24, 1000 + i)
                     for i in range(70))
    kfilter.KernelRules(Filter().add_rules(rules.parse(few))).close()
