"""Generators for the classic BPF differential tests (tests/test_cbpf_diff.py):
frames (valid, truncated, VLAN-tagged, IPv6 with extension headers, IP
fragments, random bytes) built from a random source, and classic BPF
programs (every opcode, valid per the kernel's classic checker, plus
libpcap-style loops) drawn with hypothesis; and the three paths a program
runs in (libpcap's interpreter, middlebox.Filter, the XDP translation run
with BPF_PROG_RUN)."""

import ipaddress
import os
import random
import struct

from hypothesis import strategies as st

from netmapy.host import cbpf
from netmapy.backends.xdp import prog as xdpprog

M32 = 0xffffffff

# ------------------------------------------------------------------ frames
ADDRS4 = ["10.0.0.1", "10.0.0.2", "10.1.2.3", "192.168.1.1", "192.168.1.255", "192.168.255.255",
          "255.255.255.255", "224.0.0.1", "127.0.0.1", "0.0.0.0", "172.16.0.9"]
ADDRS6 = ["::1", "2001:db8::1", "2001:db8::2", "fe80::1", "ff02::1", "::"]
PORTS = [53, 80, 443, 22, 0, 65535, 123, 20, 25, 1000, 1500, 2000, 5060]
MACS = [b"\xff" * 6, b"\x02" * 6, b"\x04" * 6, b"\x01\x00\x5e\x00\x00\x01", b"\x33\x33\x00\x00\x00\x01"]


def _bytes(r, n):
    return bytes(r.getrandbits(8) for _ in range(n))


def _addr4(r):
    return ipaddress.ip_address(r.choice(ADDRS4)).packed if r.random() < 0.8 else _bytes(r, 4)


def _addr6(r):
    return ipaddress.ip_address(r.choice(ADDRS6)).packed if r.random() < 0.8 else _bytes(r, 16)


def _port(r):
    return r.choice(PORTS) if r.random() < 0.8 else r.getrandbits(16)


def _l4(r, proto):
    """An L4 header (+ a little payload) for IP protocol `proto`."""
    if proto == 6:
        off = r.choice([5, 5, 5, 6, 8, 15, 4])
        return struct.pack("!HHIIBBHHH", _port(r), _port(r), r.getrandbits(32), r.getrandbits(32),
                           off << 4, r.getrandbits(8), r.getrandbits(16), 0, 0) + \
            _bytes(r, max(0, (off - 5) * 4)) + _bytes(r, r.choice([0, 4, 20]))
    if proto == 17:
        data = _bytes(r, r.choice([0, 4, 8, 30]))
        return struct.pack("!HHHH", _port(r), _port(r), 8 + len(data), 0) + data
    if proto in (1, 58):
        return bytes([r.choice([0, 8, 3, 11, 128, 129, 135, 136, r.getrandbits(8)]),
                      r.getrandbits(8), 0, 0]) + _bytes(r, r.choice([4, 8, 28]))
    if proto == 51:                         # AH: next header, length in 4-byte units - 2
        ln = r.choice([1, 2, 3, 4, r.getrandbits(8) % 8])
        nh = r.choice([6, 17, 51, 59, 0, r.getrandbits(8)])
        body = bytes([nh, ln]) + _bytes(r, max(0, (ln + 2) * 4 - 2))
        return body + (_l4(r, nh) if nh in (6, 17) and r.random() < 0.7 else b"")
    return _bytes(r, r.choice([0, 8, 20]))


def ipv4(r):
    ihl = r.choice([5] * 8 + [6, 7, 15, 4, 0])
    proto = r.choice([6, 6, 17, 17, 1, 51, 47, 132, 50, r.getrandbits(8)])
    frag = r.choice([0, 0, 0, 0, 0x4000, 0x2000, 0x2000 | r.randint(1, 0x1fff),
                     r.randint(1, 0x1fff), r.getrandbits(16)])
    opts = _bytes(r, max(0, ihl - 5) * 4)
    l4 = _l4(r, proto) if not frag & 0x1fff or r.random() < 0.3 else _bytes(r, r.choice([8, 20]))
    tot = 20 + len(opts) + len(l4) if r.random() < 0.9 else r.getrandbits(16)
    hdr = struct.pack("!BBHHHBBH4s4s", (r.choice([4] * 9 + [6]) << 4) | ihl, r.getrandbits(8), tot,
                      r.getrandbits(16), frag, r.choice([64, 1, 255]), proto, 0, _addr4(r), _addr4(r))
    return hdr + opts + l4


def ipv6(r):
    chain = [r.choice([0, 43, 44, 60, 51, 60]) for _ in range(r.choice([0, 0, 0, 1, 1, 2, 3, 5, 9]))]
    last = r.choice([6, 6, 17, 17, 58, 59, 51, r.getrandbits(8)])
    payload = _l4(r, last)
    nh = last
    for h in reversed(chain):
        if h == 44:
            frag = r.choice([0, 1, 0x8, 0x9, r.getrandbits(16)])
            hdr = struct.pack("!BBHI", nh, 0, frag, r.getrandbits(32))
        elif h == 51:
            ln = r.choice([1, 2, 4])
            hdr = bytes([nh, ln]) + _bytes(r, (ln + 2) * 4 - 2)
        else:
            ln = r.choice([0, 0, 1, 2])
            hdr = bytes([nh, ln]) + _bytes(r, 6 + ln * 8)
        payload = hdr + payload
        nh = h
    plen = len(payload) if r.random() < 0.9 else r.getrandbits(16)
    return struct.pack("!IHBB", (6 << 28) | r.getrandbits(20), plen, nh, r.choice([64, 255, 1])) + \
        _addr6(r) + _addr6(r) + payload


def frame(r):
    """One frame from random source r (a random.Random)."""
    kind = r.choice(["ipv4"] * 4 + ["ipv6"] * 3 + ["arp", "other", "raw"])
    if kind == "raw":
        return _bytes(r, r.choice([0, 1, 13, 14, 15, 20, 40, 60, 100, r.randint(0, 200)]))
    eth = (r.choice(MACS) if r.random() < 0.7 else _bytes(r, 6)) + \
        (r.choice(MACS) if r.random() < 0.7 else _bytes(r, 6))
    for _ in range(r.choice([0, 0, 0, 0, 1, 1, 2])):
        eth += struct.pack("!HH", r.choice([0x8100, 0x8100, 0x88a8, 0x9100]),
                           r.choice([10, 20, 0, 4095]) | (r.getrandbits(4) << 12))
    if kind == "ipv4":
        body = struct.pack("!H", 0x0800) + ipv4(r)
    elif kind == "ipv6":
        body = struct.pack("!H", 0x86dd) + ipv6(r)
    elif kind == "arp":
        body = struct.pack("!H", r.choice([0x0806, 0x8035])) + _bytes(r, 28)
    else:
        body = struct.pack("!H", r.choice([0x88b5, 0x8847, 0x8864, 0x0800, r.getrandbits(16)])) + \
            _bytes(r, r.choice([0, 20, 46]))
    f = eth + body
    if r.random() < 0.1:
        f += _bytes(r, r.randint(0, 1500 - len(f))) if len(f) < 1500 else b""
    elif len(f) < 60 and r.random() < 0.5:
        f += bytes(60 - len(f))                  # Ethernet minimum
    if r.random() < 0.25:
        f = f[:r.randint(0, len(f))]             # truncated anywhere
    return f


def frame_pool(n=256, seed=1):
    """A fixed list of frames: n random ones plus every truncation of a few
    typical ones at each header boundary."""
    r = random.Random(seed)
    out = [frame(r) for _ in range(n)]
    for base in out[:8]:
        for cut in (0, 12, 13, 14, 15, 17, 18, 22, 23, 26, 30, 34, 38, 42, 54, 58):
            if cut < len(base):
                out.append(base[:cut])
    return out


frames_st = st.randoms(use_true_random=False).map(frame)


# ---------------------------------------------------------------- programs
ABS_OFFS = st.one_of(st.integers(0, 80), st.integers(0, 1700), st.sampled_from(
    [M32, 0x80000000, 0x7fffffff, (cbpf.SKF_AD_OFF + 44) & M32, cbpf.SKF_AD_OFF & M32,
     (cbpf.SKF_NET_OFF + 9) & M32, (cbpf.SKF_LL_OFF + 12) & M32, 65535, 65534, 65532, 65531]))
IND_OFFS = st.one_of(st.integers(0, 64), st.sampled_from(
    [M32, 0xfffffffe, 0x80000000, 65535, 65532, 1500, (cbpf.SKF_AD_OFF + 24) & M32]))
XVALS = st.one_of(st.integers(0, 64), st.sampled_from(
    [31, 32, 33, 63, 64, 100, 1500, 65535, 0x7fffffff, 0x80000000, M32, 0xfffffff0]))
KVALS = st.one_of(st.integers(0, 300), st.integers(0, M32), st.sampled_from(
    [0x800, 0x86dd, 6, 17, 53, 0x80000000, M32, 0x7fffffff, 0xffff]))
ALU_OPS = [0x00, 0x10, 0x20, 0x30, 0x90, 0x50, 0x40, 0xa0, 0x60, 0x70]   # add..rsh
JMP_OPS = [0x10, 0x20, 0x30, 0x40]                                         # jeq jgt jge jset


def _plain(draw, slots, x_ok):
    """One instruction that is not a jump."""
    kinds = ["ld_abs", "ld_abs", "ld_ind", "ld_len", "ld_imm", "alu_k", "alu_k", "alu_x",
             "alu_x", "neg", "st", "txa", "ret"]
    if slots:
        kinds.append("ld_mem")
    if x_ok:
        kinds += ["ldx_imm", "ldx_imm", "ldx_len", "ldx_msh", "tax"] + (["ldx_mem"] if slots else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "ld_abs":
        return (draw(st.sampled_from([0x20, 0x28, 0x30])), 0, 0, draw(ABS_OFFS))
    if kind == "ld_ind":
        return (draw(st.sampled_from([0x40, 0x48, 0x50])), 0, 0, draw(IND_OFFS))
    if kind == "ld_len":
        return (0x80, 0, 0, 0)
    if kind == "ld_imm":
        return (0x00, 0, 0, draw(KVALS))
    if kind == "ld_mem":
        return (0x60, 0, 0, draw(st.sampled_from(sorted(slots))))
    if kind == "ldx_mem":
        return (0x61, 0, 0, draw(st.sampled_from(sorted(slots))))
    if kind == "ldx_imm":
        return (0x01, 0, 0, draw(XVALS))
    if kind == "ldx_len":
        return (0x81, 0, 0, 0)
    if kind == "ldx_msh":
        return (0xb1, 0, 0, draw(st.one_of(st.integers(0, 60), ABS_OFFS)))
    if kind == "alu_k":
        op = draw(st.sampled_from(ALU_OPS))
        if op in (0x60, 0x70):
            k = draw(st.integers(0, 31))
        elif op in (0x30, 0x90):
            k = draw(KVALS.filter(lambda v: v != 0))
        else:
            k = draw(KVALS)
        return (0x04 | op, 0, 0, k)
    if kind == "alu_x":
        return (0x0c | draw(st.sampled_from(ALU_OPS)), 0, 0, 0)
    if kind == "neg":
        return (0x84, 0, 0, 0)
    if kind == "st":
        return (draw(st.sampled_from([0x02, 0x03])), 0, 0, draw(st.integers(0, 15)))
    if kind == "tax":
        return (0x07, 0, 0, 0)
    if kind == "txa":
        return (0x87, 0, 0, 0)
    return (draw(st.sampled_from([0x06, 0x16])), 0, 0, draw(st.sampled_from([0, 1, 0xffff, M32])))


def _probe(draw, slots, x_ok, room):
    """Three or four instructions that make an edge case decide the result:
    an ALU operation by X (X from the edge values: shifts by 32 and more,
    division by 0) or a load at X + k, then a comparison of A whose
    outcome shows the value (the jump targets the next instruction either
    way, so it only needs the comparison to be run: the returns after it
    show it)."""
    seq = [(draw(st.sampled_from([0x00, 0x20, 0x28, 0x30])), 0, 0,
            draw(st.one_of(KVALS, st.integers(0, 60))))]
    if draw(st.booleans()):
        # a chain of ALU operations, then A decides: every operation's
        # 32-bit result shows (a carry or a sign out of 32 bits would too)
        if x_ok:
            seq.append((0x01, 0, 0, draw(XVALS)))
        for _ in range(draw(st.integers(1, min(6, room - len(seq) - 1)))):
            seq.append(_plain_alu(draw, x_ok))
        seq.append((0x16, 0, 0, 0))
        return seq
    if x_ok:
        seq.append((0x01, 0, 0, draw(XVALS)))
    op = draw(st.sampled_from(ALU_OPS + ["ind"]))
    if op == "ind":
        seq.append((draw(st.sampled_from([0x40, 0x48, 0x50])), 0, 0, draw(IND_OFFS)))
    else:
        seq.append((0x0c | op, 0, 0, 0))
    # A == 0 / A != 0 decide the verdict: ret a
    seq.append((0x16, 0, 0, 0))
    return seq


def _plain_alu(draw, x_ok):
    op = draw(st.sampled_from(ALU_OPS + ["neg"]))
    if op == "neg":
        return (0x84, 0, 0, 0)
    if draw(st.booleans()):
        return (0x0c | op, 0, 0, 0)
    if op in (0x60, 0x70):
        return (0x04 | op, 0, 0, draw(st.integers(0, 31)))
    if op in (0x30, 0x90):
        return (0x04 | op, 0, 0, draw(KVALS.filter(lambda v: v != 0)))
    return (0x04 | op, 0, 0, draw(KVALS))


def _target(draw, i, ranges):
    """A jump offset from instruction i to one of the allowed (lo, hi)
    target ranges, at most 255 ahead when conditional."""
    ok = [(max(lo, i + 1), min(hi, i + 256)) for lo, hi in ranges]
    ok = [(lo, hi) for lo, hi in ok if lo <= hi]
    lo, hi = draw(st.sampled_from(ok))
    return draw(st.integers(lo, hi)) - i - 1


@st.composite
def programs(draw, max_segments=4, loops=True):
    """A classic BPF program: a prologue storing to some scratch words (so
    every later load of them is valid, as the kernel's checker requires),
    segments of random instructions and forward jumps, up to two
    libpcap-style loops, and returns.

    A loop: a body that does not write X, then an advance that adds at
    least 1 to X and loads the packet at X + k, then `ja` back to the head
    (as libpcap's protochain: a walk along the packet that a failing load
    ends).  So libpcap's interpreter, which has no limit, finishes the loop
    in fewer turns than the frame has bytes."""
    slots = draw(st.sets(st.integers(0, 15), max_size=4))
    pro = []
    for s in sorted(slots):
        if draw(st.booleans()):
            pro += [(0x00, 0, 0, draw(KVALS)), (0x02, 0, 0, s)]
        else:
            pro += [(0x01, 0, 0, draw(XVALS)), (0x03, 0, 0, s)]
    segs = []
    nloops = 0
    for _ in range(draw(st.integers(1, max_segments))):
        if loops and nloops < 2 and draw(st.integers(0, 3)) == 0:
            nloops += 1
            adv = draw(st.sampled_from(["step", "walk"]))
            segs.append(("loop", draw(st.integers(1, 8)), adv))
        else:
            segs.append(("code", draw(st.integers(1, 12)), None))
    # layout: positions of every segment, then 3 returns
    pos = len(pro)
    layout = []
    for kind, n, adv in segs:
        if kind == "loop":
            advlen = 4 if adv == "step" else 6
            layout.append((kind, pos, n, adv, pos + n, pos + n + advlen))   # head, body, adv at, ja at
            pos += n + advlen + 1
        else:
            layout.append((kind, pos, n, None, None, None))
            pos += n
    end = pos + 2                               # last index (3 returns)
    insns = list(pro)
    for kind, start, n, adv, adv_at, ja_at in layout:
        i = start
        while i < start + n:
            if kind == "loop":
                ranges = [(i + 1, adv_at), (ja_at + 1, end)]
            else:
                ranges = [(i + 1, end)]
            what = draw(st.integers(0, 13))
            if what >= 10 and start + n - i >= 4:
                seq = _probe(draw, slots, x_ok=kind != "loop", room=start + n - i)
                insns += seq
                i += len(seq)
                continue
            pc, i = i, i + 1
            if what < 3:
                op = draw(st.sampled_from(JMP_OPS))
                src = draw(st.sampled_from([0x00, 0x08]))
                jt, jf = _target(draw, pc, ranges), _target(draw, pc, ranges)
                insns.append((0x05 | op | src, jt, jf, draw(KVALS)))
            elif what == 3:
                t = _target(draw, pc, ranges)
                insns.append((0x05, 0, 0, t))
            else:
                insns.append(_plain(draw, slots, x_ok=kind != "loop"))
        if kind == "loop":
            k0 = draw(st.integers(0, 40))
            if adv == "step":
                insns += [(0x87, 0, 0, 0), (0x04, 0, 0, draw(st.integers(1, 64))), (0x07, 0, 0, 0),
                          (0x50, 0, 0, k0)]
            else:
                insns += [(0x50, 0, 0, draw(st.integers(0, 40))), (0x04, 0, 0, 1),
                          (0x24, 0, 0, draw(st.integers(1, 8))), (0x0c, 0, 0, 0), (0x07, 0, 0, 0),
                          (0x50, 0, 0, k0)]
            insns.append((0x05, 0, 0, (start - ja_at - 1) & M32))
    insns += [(0x06, 0, 0, draw(st.sampled_from([1, 0xffff, 262144, M32]))), (0x16, 0, 0, 0),
              (0x06, 0, 0, 0)]
    assert len(insns) == end + 1, (len(insns), end)
    return insns


# ------------------------------------------------------------------- paths
def listing(insns):
    return "\n".join("(%03d) %s" % (i, cbpf.disasm(ins, i)) for i, ins in enumerate(insns))


class Paths:
    """One classic BPF program in every path: libpcap's interpreter (the
    reference), netmapy's interpreter (what Filter runs loops in),
    middlebox.Filter, and the XDP translation (BPF_PROG_RUN, not live)."""

    def __init__(self, insns, source=None, xdp=True):
        import warnings
        with warnings.catch_warnings():
            # loads at negative offsets are generated on purpose
            warnings.simplefilter("ignore", cbpf.CbpfWarning)
            self._init(insns, source, xdp)

    def _init(self, insns, source, xdp):
        from middlebox.filter import Filter, Interpreter
        self.insns = insns
        self.source = source
        self.ref = cbpf.Reference(insns)
        self.own = Interpreter(insns)
        self.filter = Filter().add_bpf(insns, name="diff")
        self.fd = self.vfd = -1
        if xdp:
            from netmapy.backends import xdp as _xdp
            self._xdp = _xdp
            # the steer program (match: XDP_TX here instead of the redirect)
            # and the same translation returning the classic return value
            self.fd = _xdp.load_program(xdpprog.steer_program(
                insns, match_action=xdpprog.XDP_TX, source=source), "netmapy_diff")
            self.vfd = _xdp.load_program(xdpprog.value_program(insns, source=source),
                                         "netmapy_diffv")

    def close(self):
        for fd in (self.fd, self.vfd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.vfd = -1

    def check(self, f):
        """Run every path on frame f; raise AssertionError on a
        disagreement.  Returns "bounded" when the loop limit ended the
        program (libpcap 1.10 may loop for ever there: not run), else the
        verdict."""
        own, looped = self.own(f)
        filt = self.filter.check(f)
        xdp = xval = None
        if self.fd >= 0 and len(f) >= 14:          # BPF_PROG_RUN needs an Ethernet header
            xdp = self._xdp.test_run(self.fd, f) == xdpprog.XDP_TX
            xval = self._xdp.test_run(self.vfd, f)
        if looped:
            assert not filt and xdp in (None, False) and xval in (None, 0), \
                self._msg(f, "loop limit", own, filt, xdp, xval)
            return "bounded"
        ref = self.ref(f)
        ok = own == ref and filt == (ref != 0) and xdp in (None, ref != 0) and xval in (None, ref)
        assert ok, self._msg(f, ref, own, filt, xdp, xval)
        return ref != 0

    def _msg(self, f, ref, own, filt, xdp, xval):
        return ("disagreement on %s\n%s\nframe (%d bytes) %s\nlibpcap %r, netmapy interpreter %r, "
                "Filter %r, XDP verdict %r, XDP value %r" % (
                    self.source or "a program", listing(self.insns), len(f), f.hex(), ref, own,
                    filt, xdp, xval))


# ------------------------------------------------------------- expressions
_N = st.sampled_from([0, 1, 6, 17, 53, 80, 443, 1000, 65535])
_BYTE = st.integers(0, 60)
_PRIMS = [
    st.sampled_from(["udp", "tcp", "icmp", "icmp6", "ip", "ip6", "arp", "vlan", "mpls", "sctp",
                     "ether broadcast", "ether multicast", "ip multicast", "ip6 multicast",
                     "tcp[tcpflags] & tcp-syn != 0", "icmp[icmptype] = icmp-echo",
                     "ip6[40] = 44", "pppoes", "ip[6:2] & 0x1fff != 0"]),
    st.builds("vlan {}".format, st.sampled_from([0, 10, 20, 4095])),
    st.builds("{} port {}".format, st.sampled_from(["", "src", "dst", "tcp", "udp dst"]), _N),
    st.builds("portrange {}-{}".format, st.sampled_from([0, 20, 53]), st.sampled_from([25, 80, 2000])),
    st.builds("{} host {}".format, st.sampled_from(["", "src", "dst", "ip"]), st.sampled_from(ADDRS4)),
    st.builds("ip6 {} host {}".format, st.sampled_from(["src", "dst"]), st.sampled_from(ADDRS6)),
    st.builds("net {}/{}".format, st.sampled_from(["10.0.0.0", "192.168.0.0", "224.0.0.0"]),
              st.sampled_from([4, 8, 16, 24, 32])),
    st.builds("{}protochain {}".format, st.sampled_from(["", "ip ", "ip6 "]),
              st.sampled_from([6, 17, 51, 44, 58, 59, 0, 60])),
    st.builds("ip proto {}".format, st.sampled_from([1, 6, 17, 47, 51, 132])),
    st.builds("{} {}".format, st.sampled_from(["len >", "len <=", "greater", "less"]),
              st.sampled_from([0, 14, 60, 64, 100, 1500])),
    st.builds("{}[{}] {} {}".format, st.sampled_from(["ip", "ether", "udp", "tcp", "ip6", "icmp"]),
              _BYTE, st.sampled_from(["=", "!=", ">", "<", ">=", "<="]), st.integers(0, 255)),
    st.builds("{}[{}:{}] & {} = {}".format, st.sampled_from(["ip", "ether", "udp", "tcp"]), _BYTE,
              st.sampled_from([1, 2, 4]), st.sampled_from([0xff, 0xf0f0, 0x1fff, 0xffffffff]),
              st.integers(0, 255)),
    st.builds("{}[{}] {} ({}[{}] {} {}) {} {}".format, st.sampled_from(["ip", "ether", "udp"]),
              _BYTE, st.sampled_from([">>", "<<", "/", "%", "*", "+", "-", "&", "|", "^"]),
              st.sampled_from(["ip", "ether"]), _BYTE, st.sampled_from(["+", "-", "&"]),
              st.sampled_from([0, 1, 6, 17, 31, 32, 33, 64]),
              st.sampled_from(["=", "!=", ">"]), st.sampled_from([0, 1, 3, 255])),
    st.builds("{}[{}[{}] & {}] = {}".format, st.sampled_from(["ip", "ether", "udp"]),
              st.sampled_from(["ip", "ether"]), _BYTE, st.sampled_from([0x7, 0xf, 0x3f]),
              st.integers(0, 255)),
]
primitives = st.one_of(_PRIMS)
expressions = st.recursive(
    primitives,
    lambda sub: st.one_of(
        st.builds("({}) and ({})".format, sub, sub), st.builds("({}) or ({})".format, sub, sub),
        st.builds("not ({})".format, sub)),
    max_leaves=5)
