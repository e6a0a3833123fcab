"""Classic BPF as libpcap makes and runs it: compiling tcpdump expressions
(with a netmask), parsing the text forms tools print, checking a program
before anything runs it, and libpcap's own interpreter as the reference.

Both filter paths start here: ``middlebox.Filter`` (libpcap's interpreter,
or netmapy's bounded one for programs with loops) and the xdp backend's
steering (``netmapy.backends.xdp.prog`` translates the program to eBPF).  They agree
with the installed libpcap's ``bpf_filter`` on every program ``check``
accepts and every frame; what libpcap's interpreter does, and so what they
do, is:

* A, X and M[0..15] are 32-bit and start at 0; arithmetic wraps;
* a load that does not fit in the packet, at any offset (the kernel's
  negative "ancillary" offsets ``SKF_AD_OFF``/``SKF_NET_OFF``/``SKF_LL_OFF``
  included: libpcap has no such data), ends the program with 0;
* division or modulo by X == 0 ends the program with 0; a shift by X >= 32
  gives 0;
* conditional jumps go forward only; ``ja`` may go backward (libpcap
  compiles ``protochain`` to a loop).  A backward jump is a loop: netmapy
  allows ``LOOP_LIMIT`` backward jumps per packet and ends the program with
  0 at the next one (libpcap 1.10 itself has no limit and loops for ever on
  some packets; newer libpcap stops at 64);
* the return value is the verdict: non-zero accepts the packet.

``check`` refuses, with the reason and the fix, what has no defined result:
opcodes libpcap's interpreter does not know (it aborts the process on
them), division by the constant 0 (a crash), shifts by a constant >= 32,
jumps out of the program or to themselves, and reads of M[k] before any
store to it (the kernel's checker refuses these too).
"""

import ctypes
import ctypes.util
import ipaddress
import re
import warnings

from ..errors import NetmapyError

__all__ = [
    "CbpfError", "CbpfWarning", "LOOP_LIMIT", "MAX_LOOP_LIMIT", "MAX_INSNS", "check",
    "parse_text", "looks_like_text", "compile_expression", "parse_netmask",
    "backward_jumps", "disasm", "describe", "pcap_filter", "PCAP_NETMASK_UNKNOWN",
]


class CbpfError(NetmapyError, ValueError):
    """A classic BPF program or expression that cannot be used; the message
    names the program (the expression, file or stage name), the
    instruction, the reason and the fix."""


class CbpfWarning(UserWarning):
    """A classic BPF program that runs, but not as its author probably
    meant (a load that always fails, so the program returns 0 there)."""


# the backward jumps a program may take per packet (see the module doc):
# a loop that walks the packet by at least one byte per turn (protochain
# walks by 8) ends by itself before that in any frame up to 4 KiB
LOOP_LIMIT = 4096
MAX_LOOP_LIMIT = 1 << 20
# libpcap's interpreter has no length limit; this is ours (libpcap compiles
# long `or` chains past the kernel's 4096)
MAX_INSNS = 1 << 20
MEMWORDS = 16
PCAP_NETMASK_UNKNOWN = 0xffffffff
DLT_EN10MB = 1

SKF_AD_OFF = -0x1000
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
_ANCILLARY = {
    0: "protocol", 4: "pkttype", 8: "ifindex", 12: "nlattr", 16: "nlattr_nest",
    20: "mark", 24: "queue", 28: "hatype", 32: "rxhash", 36: "cpu",
    40: "alu_xor_x", 44: "vlan_tci", 48: "vlan_avail", 52: "pay_offset",
    56: "random", 60: "vlan_tpid",
}

# every opcode libpcap's interpreter knows (it aborts on any other), with
# the way `tcpdump -d` prints it; the kernel's classic checker allows the same
_OPS = {
    0x20: "ld [{k}]", 0x28: "ldh [{k}]", 0x30: "ldb [{k}]",
    0x40: "ld [x + {k}]", 0x48: "ldh [x + {k}]", 0x50: "ldb [x + {k}]",
    0x80: "ld #pktlen", 0x00: "ld #{k:#x}", 0x60: "ld M[{k}]",
    0x81: "ldx #pktlen", 0xb1: "ldxb 4*([{k}]&0xf)", 0x01: "ldx #{k:#x}", 0x61: "ldx M[{k}]",
    0x02: "st M[{k}]", 0x03: "stx M[{k}]",
    0x05: "ja {t}",
    0x15: "jeq #{k:#x} jt {jt} jf {jf}", 0x25: "jgt #{k:#x} jt {jt} jf {jf}",
    0x35: "jge #{k:#x} jt {jt} jf {jf}", 0x45: "jset #{k:#x} jt {jt} jf {jf}",
    0x1d: "jeq x jt {jt} jf {jf}", 0x2d: "jgt x jt {jt} jf {jf}",
    0x3d: "jge x jt {jt} jf {jf}", 0x4d: "jset x jt {jt} jf {jf}",
    0x04: "add #{k}", 0x14: "sub #{k}", 0x24: "mul #{k}", 0x34: "div #{k}",
    0x94: "mod #{k}", 0x54: "and #{k:#x}", 0x44: "or #{k:#x}", 0xa4: "xor #{k:#x}",
    0x64: "lsh #{k}", 0x74: "rsh #{k}",
    0x0c: "add x", 0x1c: "sub x", 0x2c: "mul x", 0x3c: "div x", 0x9c: "mod x",
    0x5c: "and x", 0x4c: "or x", 0xac: "xor x", 0x6c: "lsh x", 0x7c: "rsh x",
    0x84: "neg", 0x06: "ret #{k}", 0x16: "ret a", 0x07: "tax", 0x87: "txa",
}
OPCODES = frozenset(_OPS)
_LOADS_MEM = (0x60, 0x61)
_STORES = (0x02, 0x03)
_COND = (0x15, 0x25, 0x35, 0x45, 0x1d, 0x2d, 0x3d, 0x4d)
_PACKET = {0x20: 4, 0x28: 2, 0x30: 1, 0x40: 4, 0x48: 2, 0x50: 1, 0xb1: 1}


def _s32(v):
    v &= 0xffffffff
    return v - (1 << 32) if v & 0x80000000 else v


def _offset_text(k):
    s = _s32(k)
    if s >= 0:
        return "%d" % s
    if s >= SKF_AD_OFF:
        name = _ANCILLARY.get(s - SKF_AD_OFF)
        return "SKF_AD_OFF%+d%s" % (s - SKF_AD_OFF, " (%s)" % name if name else "")
    if s >= SKF_NET_OFF:
        return "SKF_NET_OFF%+d" % (s - SKF_NET_OFF)
    if s >= SKF_LL_OFF:
        return "SKF_LL_OFF%+d" % (s - SKF_LL_OFF)
    return "%d" % s


def disasm(ins, pc=None):
    """One instruction as `tcpdump -d` prints it (jump targets absolute
    when pc is given), or "code 0x.. jt .. jf .. k .." for an unknown one."""
    code, jt, jf, k = ins
    fmt = _OPS.get(code)
    if fmt is None:
        return "code %#04x jt %d jf %d k %#x" % (code, jt, jf, k)
    if code == 0x05:
        t = pc + 1 + _s32(k) if pc is not None else "%+d" % _s32(k)
        return fmt.format(t=t)
    if code in _COND and pc is not None:
        jt, jf = pc + 1 + jt, pc + 1 + jf
    if code in _PACKET:
        return fmt.format(k=_offset_text(k), jt=jt, jf=jf)
    return fmt.format(k=k, jt=jt, jf=jf)


def describe(pc, ins):
    """'instruction 19 (ja 4)'."""
    return "instruction %d (%s)" % (pc, disasm(ins, pc))


def _name(source):
    return source if source else "<bpf>"


def backward_jumps(insns):
    """[(pc, target)] of the jumps that go backward (only `ja` can)."""
    return [(pc, pc + 1 + _s32(k)) for pc, (code, jt, jf, k) in enumerate(insns)
            if code == 0x05 and _s32(k) < 0]


def check(insns, source=None, exc=CbpfError, max_insns=MAX_INSNS, warn=True):
    """Check a classic BPF program [(code, jt, jf, k)] (see the module doc
    for the rules); returns it as a list of int 4-tuples.  Raises ``exc``
    with the program's name (``source``), the instruction and the fix.
    warn: a CbpfWarning for loads that can never succeed (kernel-only
    negative offsets)."""
    src = _name(source)
    try:
        insns = [tuple(int(v) for v in ins) for ins in insns]
    except (TypeError, ValueError):
        raise exc("%s: a classic BPF program is a list of (code, jt, jf, k) "
                  "numbers" % src) from None
    n = len(insns)
    if n == 0:
        raise exc("%s: the classic BPF program is empty: it needs at least a return "
                  "(ret #0 rejects every packet, ret #262144 accepts it)" % src)
    if n > max_insns:
        raise exc("%s: %d classic BPF instructions, more than the %d allowed: split "
                  "the filter into stages" % (src, n, max_insns))
    never = []
    for pc, ins in enumerate(insns):
        if len(ins) != 4:
            raise exc("%s: instruction %d has %d fields, a classic BPF instruction "
                      "has 4 (code, jt, jf, k)" % (src, pc, len(ins)))
        code, jt, jf, k = ins
        if not (0 <= code <= 0xffff and 0 <= jt <= 255 and 0 <= jf <= 255
                and 0 <= k <= 0xffffffff):
            raise exc("%s: instruction %d (code %r jt %r jf %r k %r): a field is out of "
                      "range (code 0..0xffff, jt and jf 0..255, k 0..0xffffffff)"
                      % (src, pc, code, jt, jf, k))
        what = describe(pc, ins)
        if code not in OPCODES:
            raise exc("%s: %s: not an opcode of classic BPF as libpcap and the kernel "
                      "know it (libpcap's interpreter aborts on it): fix the code "
                      "(`tcpdump -d EXPR` shows valid programs)" % (src, what))
        if code in _LOADS_MEM + _STORES and k >= MEMWORDS:
            raise exc("%s: %s: scratch memory is M[0]..M[15]: use an index below 16"
                      % (src, what))
        if code in (0x34, 0x94) and k == 0:
            raise exc("%s: %s: division by the constant 0 (libpcap's interpreter would "
                      "crash, the kernel refuses it): divide by a non-zero constant"
                      % (src, what))
        if code in (0x64, 0x74) and k >= 32:
            raise exc("%s: %s: a shift by %d bits of a 32-bit register (libpcap's "
                      "compiler and the kernel refuse it; the result is undefined): "
                      "shift by 0..31, or load #0" % (src, what, k))
        if code == 0x05:
            t = pc + 1 + _s32(k)
            if t == pc:
                raise exc("%s: %s: jumps to itself, an endless loop: jump elsewhere"
                          % (src, what))
            if not 0 <= t < n:
                raise exc("%s: %s: jumps to instruction %d, outside the %d-instruction "
                          "program (ja counts from the next instruction, negative k "
                          "goes back): fix the offset" % (src, what, t, n))
        elif code in _COND:
            for t in (pc + 1 + jt, pc + 1 + jf):
                if t >= n:
                    raise exc("%s: %s: jumps to instruction %d, past the end of the "
                              "%d-instruction program (jt/jf count from the next "
                              "instruction): fix the offsets" % (src, what, t, n))
        elif code in _PACKET and _s32(k) < 0:
            never.append((pc, ins))
    last = insns[-1][0]
    if last not in (0x06, 0x16, 0x05):
        raise exc("%s: the program ends with %s, which falls off its end: end it with "
                  "a return (ret #k or ret a)" % (src, describe(n - 1, insns[-1])))
    _check_scratch(insns, src, exc)
    if warn and never:
        pc, ins = never[0]
        warnings.warn(CbpfWarning(
            "%s: %s loads from a negative offset: the kernel's socket filters read "
            "ancillary data or headers there, libpcap's interpreter (and so netmapy, in "
            "both filter paths) treats it as a load past the end: the program returns 0 "
            "when it gets there%s" % (src, describe(pc, ins),
                                      " (and %d more such loads)" % (len(never) - 1)
                                      if len(never) > 1 else "")), stacklevel=3)
    return insns


def _successors(pc, ins):
    code, jt, jf, k = ins
    if code in (0x06, 0x16):
        return ()
    if code == 0x05:
        return (pc + 1 + _s32(k),)
    if code in _COND:
        return (pc + 1 + jt, pc + 1 + jf)
    return (pc + 1,)


def _check_scratch(insns, src, exc):
    """Every read of M[k] must follow a store to M[k] on every path to it
    (the kernel's rule, extended to loops): a must-analysis to a fixpoint."""
    n = len(insns)
    if not any(ins[0] in _LOADS_MEM for ins in insns):
        return
    full = (1 << MEMWORDS) - 1
    preds = [[] for _ in range(n)]
    for pc, ins in enumerate(insns):
        for t in _successors(pc, ins):
            preds[t].append(pc)
    out = [full] * n
    changed = True
    while changed:
        changed = False
        for pc in range(n):
            v = 0 if pc == 0 else full
            for p in preds[pc]:
                v &= out[p]
            code, k = insns[pc][0], insns[pc][3]
            if code in _STORES:
                v |= 1 << k
            if v != out[pc]:
                out[pc] = v
                changed = True
    for pc, (code, jt, jf, k) in enumerate(insns):
        if code not in _LOADS_MEM:
            continue
        v = 0 if pc == 0 else full
        for p in preds[pc]:
            v &= out[p]
        if not v & (1 << k):
            raise exc("%s: %s reads M[%d], which some path to it has not written (libpcap's "
                      "interpreter would read garbage; the kernel refuses such programs): "
                      "store to M[%d] first" % (src, describe(pc, insns[pc]), k, k))


# ------------------------------------------------------------ text forms

def looks_like_text(s):
    """True if s is classic BPF text rather than a tcpdump expression."""
    s = s.strip()
    return bool(s) and (s.startswith("{") or re.fullmatch(r"\d+\s*[,\n][\s\S]*", s) is not None
                        and all(re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)", t) for t in
                                re.split(r"[\s,]+", s) if t))


def parse_text(text, source="<bpf>", exc=CbpfError):
    """Classic BPF as `tcpdump -ddd` prints it (a count line, then
    "code jt jf k" lines), as `tcpdump -dd` C fragments, or in the
    single-line comma form of iptables -m bpf / bpftools
    ("4,48 0 0 9,21 0 1 17,6 0 0 65535,6 0 0 0").  "//" starts a comment.
    Returns the instructions (not yet checked)."""
    t = text.strip()
    if "," in t and "{" not in t and "\n" not in t:
        lines = [p.strip() for p in t.split(",") if p.strip()]
    else:
        lines = [ln.split("//")[0].strip() for ln in t.splitlines()]
        lines = [ln for ln in lines if ln]
    insns = []
    count = None
    for n, ln in enumerate(lines, 1):
        m = re.fullmatch(r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*"
                         r"(0x[0-9a-fA-F]+|\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*\},?", ln)
        if m:
            insns.append(tuple(int(g, 0) for g in m.groups()))
            continue
        f = ln.split()
        if len(f) == 1 and count is None and not insns:
            try:
                count = int(f[0])
            except ValueError:
                raise exc("%s:%d: expected an instruction count, found %r" % (source, n, ln))
            continue
        if len(f) != 4:
            raise exc("%s:%d: expected 'code jt jf k' (4 numbers), found %r" % (source, n, ln))
        try:
            ins = tuple(int(x, 0) for x in f)
        except ValueError:
            raise exc("%s:%d: expected numbers, found %r" % (source, n, ln))
        if not (0 <= ins[0] <= 0xffff and 0 <= ins[1] <= 255 and 0 <= ins[2] <= 255
                and 0 <= ins[3] <= 0xffffffff):
            raise exc("%s:%d: a field is out of range in %r" % (source, n, ln))
        insns.append(ins)
    if not insns:
        raise exc("%s: no BPF instructions found" % source)
    if count is not None and count != len(insns):
        raise exc("%s: the count line says %d instructions, there are %d" % (
            source, count, len(insns)))
    return insns


# -------------------------------------------------------------- netmask

def parse_netmask(value):
    """An IPv4 netmask for pcap_compile (a host-order int), from
    "255.255.255.0", "/24", "24", a prefix length 0..32, a 32-bit mask
    (0xffffff00) or an ipaddress value; None gives PCAP_NETMASK_UNKNOWN
    (which is also what 255.255.255.255 means to libpcap)."""
    if value is None:
        return PCAP_NETMASK_UNKNOWN
    if isinstance(value, ipaddress.IPv4Network):
        return int(value.netmask)
    if isinstance(value, ipaddress.IPv4Interface):
        return int(value.network.netmask)
    if isinstance(value, ipaddress.IPv4Address):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 32:
        value = "/%d" % value                     # a prefix length
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value <= 0xffffffff:
            raise CbpfError("netmask %r: a 32-bit IPv4 netmask is 0..0xffffffff" % value)
        m = value
    elif isinstance(value, str):
        s = value.strip()
        try:
            if s.lstrip("/").isdigit():
                plen = int(s.lstrip("/"))
                if not 0 <= plen <= 32:
                    raise ValueError
                m = (0xffffffff << (32 - plen)) & 0xffffffff
            else:
                m = int(ipaddress.IPv4Address(s))
        except ValueError:
            raise CbpfError("netmask %r: expected an IPv4 netmask such as 255.255.255.0 "
                            "or a prefix length such as 24" % value) from None
    else:
        raise CbpfError("netmask %r: expected an IPv4 netmask such as 255.255.255.0 or a "
                        "prefix length such as 24" % (value,))
    inv = ~m & 0xffffffff
    if inv & (inv + 1):
        raise CbpfError("netmask %s: not a netmask (its one bits must be contiguous from "
                        "the left, e.g. 255.255.255.0)" % ipaddress.IPv4Address(m))
    return m


# -------------------------------------------------------------- libpcap

class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Program(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_Insn))]


_lib = None


def libpcap():
    """libpcap through ctypes (pcap_open_dead, pcap_compile, bpf_filter)."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise CbpfError("tcpdump expressions need libpcap (apt-get install "
                            "libpcap0.8): %s" % e) from None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = (ctypes.c_void_p, ctypes.POINTER(_Program),
                                     ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32)
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
        lib.pcap_freecode.argtypes = (ctypes.POINTER(_Program),)
        lib.pcap_close.argtypes = (ctypes.c_void_p,)
        lib.bpf_filter.restype = ctypes.c_uint
        lib.bpf_filter.argtypes = (ctypes.POINTER(_Insn), ctypes.c_char_p, ctypes.c_uint,
                                   ctypes.c_uint)
        lib.pcap_lib_version.restype = ctypes.c_char_p
        _lib = lib
    return _lib


def libpcap_version():
    return libpcap().pcap_lib_version().decode()


def compile_expression(expr, netmask=None, snaplen=65535, exc=CbpfError, netmask_from=None):
    """Compile a tcpdump expression for Ethernet frames to classic BPF with
    libpcap (``pcap_compile`` on a dead DLT_EN10MB handle, optimised);
    returns [(code, jt, jf, k)].  netmask: see parse_netmask (None: not
    known, which only `ip broadcast` needs); netmask_from names where the
    default came from, for the error message.  Raises ``exc`` naming the
    expression, libpcap's reason and the fix."""
    if not isinstance(expr, str):
        raise TypeError("a filter expression is a str, not %s" % type(expr).__name__)
    try:
        mask = parse_netmask(netmask)
    except CbpfError as e:
        raise exc("%r: %s" % (expr, e)) from None
    lib = libpcap()
    p = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not p:
        raise MemoryError()
    try:
        prog = _Program()
        if lib.pcap_compile(p, ctypes.byref(prog), expr.encode(), 1, mask) < 0:
            msg = lib.pcap_geterr(p).decode("utf-8", "replace")
            fix = ""
            if "netmask not known" in msg and mask == PCAP_NETMASK_UNKNOWN and netmask is not None:
                fix = (": the netmask 255.255.255.255 (/32) means 'not known' to libpcap, and a "
                       "/32 network has no broadcast address: give the netmask of the network "
                       "the packets belong to")
            elif "netmask not known" in msg:
                fix = (": give the IPv4 netmask of the network the packets belong to "
                       "(netmask='255.255.255.0' in Python, --netmask 255.255.255.0 on a "
                       "command line, netmask = \"255.255.255.0\" in a service's [filters])%s" % (
                           "; %s has no IPv4 address to take it from" % netmask_from
                           if netmask_from else ""))
            raise exc("%r: libpcap cannot compile it: %s%s" % (expr, msg, fix))
        try:
            return [(prog.bf_insns[i].code, prog.bf_insns[i].jt,
                     prog.bf_insns[i].jf, prog.bf_insns[i].k)
                    for i in range(prog.bf_len)]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(p)


class Reference:
    """A program loaded once for libpcap's interpreter (``bpf_filter``):
    ``ref(frame)`` is its return value on the frame.  The reference the
    other paths are tested against.  libpcap 1.10 has no limit on backward
    jumps: do not run it on programs that may loop for ever."""

    def __init__(self, insns):
        self.lib = libpcap()
        self.n = len(insns)
        self.arr = (_Insn * len(insns))(*[_Insn(*i) for i in insns])

    def __call__(self, frame, wirelen=None):
        frame = bytes(frame)
        return self.lib.bpf_filter(self.arr, frame,
                                   len(frame) if wirelen is None else wirelen, len(frame))


def pcap_filter(insns, frame):
    """libpcap's interpreter's return value for one frame."""
    return Reference(insns)(frame)
