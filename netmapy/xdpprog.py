"""XDP programs for the xdp backend, written as eBPF instructions.

Nothing here touches the kernel: this module builds instruction bytes
(``struct bpf_insn`` arrays) that ``netmapy.backends.xdp`` loads with the
bpf() system call.  It has three parts:

* a small eBPF assembler (``Asm``): instructions, labels, forward and
  backward jumps resolved when the program is finished;
* the programs the backend attaches or runs: the dispatcher attached to an
  interface (``dispatcher``), a per-queue flow filter (``steer_program``),
  the tcx program that hands frames to the host stack (``inject_program``)
  and a drop-everything program for benchmarks (``drop_program``);
* a translator from classic BPF (what ``pcap_compile`` and ``tcpdump -ddd``
  produce) to eBPF (``translate``), so that tcpdump expressions select the
  packets that leave the kernel.

The dispatcher, attached once per interface::

    tail_call(ctx, steer_progs, ctx->rx_queue_index)     # a filter, if any
    return bpf_redirect_map(xsks, ctx->rx_queue_index, XDP_PASS)

``xsks`` is an XSKMAP keyed by RX queue: a queue whose key holds an AF_XDP
socket is bypassed, every other queue goes to the kernel (the XDP_PASS in
the flags of bpf_redirect_map is what it returns when the key is empty).
``steer_progs`` is a PROG_ARRAY, also keyed by RX queue: a queue with a
filter program tail-calls it, and the filter redirects matching packets to
``xsks`` and passes the others; a queue without one falls through to the
redirect.  Adding or removing a queue, or changing its filter, is one map
update: nothing is reattached and no other queue notices.

Classic BPF semantics kept by ``translate``: A and X are 32-bit and start
at 0; M[0..15] start at 0; a load past the end of the packet ends the
filter with "no match"; division by X == 0 ends it with "no match"; a
non-zero return value means "match" (the packet leaves the kernel), zero
means "no match" (XDP_PASS).  The jumps compare 32-bit values (JMP32).
"""

import ctypes
import ctypes.util
import struct

from .errors import BackendError

__all__ = [
    "Asm", "SteerError", "BpfTranslateError", "compile_filter", "cbpf_match", "translate", "dispatcher", "steer_program",
    "inject_program", "drop_program", "parse_cbpf", "XDP_ABORTED", "XDP_DROP",
    "XDP_PASS", "XDP_TX", "XDP_REDIRECT", "PROG_NAME", "STEER_NAME",
    "INJECT_NAME", "XSKMAP_NAME", "PROGMAP_NAME", "CHAIN_NAME",
]

# names the backend gives its kernel objects (BPF_OBJ_NAME_LEN is 16)
PROG_NAME = "netmapy_xdp"
STEER_NAME = "netmapy_steer"
INJECT_NAME = "netmapy_inject"     # tcx egress: host-stack injection
XSKMAP_NAME = "netmapy_xsks"
PROGMAP_NAME = "netmapy_filters"
CHAIN_NAME = "netmapy_chain"      # per port: what runs after a steer match

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)

# instruction classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
RET, MISC = 0x06, 0x07           # classic BPF names of classes 6 and 7
# sizes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
# modes
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xa0
# ALU operations
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0,
    0xc0, 0xd0)
# jumps
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, CALL, EXIT, JLT, JLE = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0)
# operand source
K, X = 0x00, 0x08
TO_BE = 0x08
PSEUDO_MAP_FD = 1

# helpers
FN_GET_PRANDOM_U32 = 7
FN_GET_SMP_PROCESSOR_ID = 8
FN_TAIL_CALL = 12
FN_REDIRECT_MAP = 51
FN_XDP_GET_BUFF_LEN = 188
FN_REDIRECT = 23
FN_GET_SOCKET_COOKIE = 46

# tc programs: struct __sk_buff offsets, flags, verdicts
SKB_IFINDEX = 40
BPF_F_INGRESS = 1
TCX_NEXT = -1
PROG_TYPE_XDP, PROG_TYPE_SCHED_CLS = 6, 3

# struct xdp_md offsets
MD_DATA, MD_DATA_END, MD_DATA_META, MD_IFINDEX, MD_RX_QUEUE = 0, 4, 8, 12, 16

# classic BPF ancillary offsets (linux/filter.h)
SKF_AD_OFF = -0x1000
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000
_ANCILLARY = {
    0: "protocol", 4: "pkttype", 8: "ifindex", 12: "nlattr", 16: "nlattr_nest",
    20: "mark", 24: "queue", 28: "hatype", 32: "rxhash", 36: "cpu",
    40: "alu_xor_x", 44: "vlan_tci", 48: "vlan_avail", 52: "pay_offset",
    56: "random", 60: "vlan_tpid",
}

MAX_PACKET_OFF = 0xffff
SCRATCH = 16


class SteerError(BackendError, ValueError):
    """A flow-steering expression or classic BPF program the xdp backend
    cannot use (it does not compile, or has no XDP translation)."""


class BpfTranslateError(SteerError):
    """A classic BPF program (or a part of it) that has no XDP translation."""


def _s32(v):
    v &= 0xffffffff
    return v - (1 << 32) if v & 0x80000000 else v


class Asm:
    """An eBPF program under construction.

    Methods append one instruction each (``ld_imm64`` two); jump targets
    are label names, resolved by ``code()``.  ``map_fd(name)`` marks an
    ``ld_imm64`` of a map whose fd is filled in when the program is linked
    (``code(maps={name: fd})``).
    """

    def __init__(self):
        self.insns = []          # [code, dst, src, off, imm]
        self.labels = {}
        self.fixups = []         # (index, label)
        self.map_refs = []       # (index, map name)

    def __len__(self):
        return len(self.insns)

    def emit(self, code, dst=0, src=0, off=0, imm=0):
        self.insns.append([code, dst, src, off, _s32(imm)])
        return len(self.insns) - 1

    def label(self, name):
        if name in self.labels:
            raise ValueError("label %r defined twice" % name)
        self.labels[name] = len(self.insns)

    # -- data movement
    def mov64(self, dst, src):
        return self.emit(ALU64 | MOV | X, dst, src)

    def mov64_imm(self, dst, imm):
        return self.emit(ALU64 | MOV | K, dst, 0, 0, imm)

    def mov32(self, dst, src):
        return self.emit(ALU | MOV | X, dst, src)

    def mov32_imm(self, dst, imm):
        return self.emit(ALU | MOV | K, dst, 0, 0, imm)

    def alu32(self, op, dst, src=None, imm=0):
        if src is None:
            return self.emit(ALU | op | K, dst, 0, 0, imm)
        return self.emit(ALU | op | X, dst, src)

    def alu64(self, op, dst, src=None, imm=0):
        if src is None:
            return self.emit(ALU64 | op | K, dst, 0, 0, imm)
        return self.emit(ALU64 | op | X, dst, src)

    def to_be(self, dst, bits):
        return self.emit(ALU | END | TO_BE, dst, 0, 0, bits)

    def ldx(self, size, dst, src, off=0):
        return self.emit(LDX | MEM | size, dst, src, off)

    def stx(self, size, dst, src, off=0):
        return self.emit(STX | MEM | size, dst, src, off)

    def st_imm(self, size, dst, off, imm):
        return self.emit(ST | MEM | size, dst, 0, off, imm)

    def ld_imm64(self, dst, value):
        value &= 0xffffffffffffffff
        i = self.emit(LD | DW | IMM, dst, 0, 0, value & 0xffffffff)
        self.emit(0, 0, 0, 0, value >> 32)
        return i

    def ld_map(self, dst, name):
        i = self.emit(LD | DW | IMM, dst, PSEUDO_MAP_FD, 0, 0)
        self.emit(0, 0, 0, 0, 0)
        self.map_refs.append((i, name))
        return i

    # -- control flow
    def jmp(self, op, dst, target, src=None, imm=0, wide=False):
        cls = JMP if wide else JMP32
        if op == JA:
            cls = JMP
        if src is None:
            i = self.emit(cls | op | K, dst, 0, 0, imm)
        else:
            i = self.emit(cls | op | X, dst, src)
        self.fixups.append((i, target))
        return i

    def ja(self, target):
        return self.jmp(JA, 0, target)

    def call(self, fn):
        return self.emit(JMP | CALL, 0, 0, 0, fn)

    def exit(self):
        return self.emit(JMP | EXIT)

    def ret(self, value):
        self.mov64_imm(0, value)
        self.exit()

    # -- output
    def code(self, maps=None):
        """The instruction bytes (8 per instruction).  Instructions no path
        reaches are left out (the verifier rejects unreachable code)."""
        maps = maps or {}
        insns = [list(i) for i in self.insns]
        n = len(insns)
        dest = {}
        for i, target in self.fixups:
            if isinstance(target, int):
                dest[i] = target
            elif target in self.labels:
                dest[i] = self.labels[target]
            else:
                raise ValueError("undefined label %r" % (target,))
        for i, name in self.map_refs:
            if name in maps:
                insns[i][4] = _s32(maps[name])
            elif maps:
                raise ValueError("no fd for map %r" % name)
        # reachability from instruction 0
        seen = [False] * n
        todo = [0] if n else []
        while todo:
            i = todo.pop()
            if i >= n or seen[i]:
                continue
            seen[i] = True
            code = insns[i][0]
            cls, op = code & 0x07, code & 0xf0
            if code == (LD | DW | IMM):
                if i + 1 < n:
                    seen[i + 1] = True
                todo.append(i + 2)
            elif cls in (JMP, JMP32) and op == EXIT:
                pass
            elif cls in (JMP, JMP32) and op == JA:
                todo.append(dest.get(i, i + 1 + insns[i][3]))
            elif cls in (JMP, JMP32) and op != CALL:
                todo.append(i + 1)
                todo.append(dest.get(i, i + 1 + insns[i][3]))
            else:
                todo.append(i + 1)
        new_index = []
        k = 0
        for i in range(n):
            new_index.append(k)
            if seen[i]:
                k += 1
        new_index.append(k)
        out = []
        for i in range(n):
            if not seen[i]:
                continue
            ins = insns[i]
            if i in dest:
                off = new_index[dest[i]] - (new_index[i] + 1)
                if not -0x8000 <= off <= 0x7fff:
                    raise BpfTranslateError("the program is too long: a jump of "
                                            "%d instructions does not fit" % off)
                ins[3] = off
            out.append(ins)
        return b"".join(struct.pack("<BBhi", c, (s << 4) | d, o, imm)
                        for c, d, s, o, imm in out)

    def count(self):
        return len(self.insns)


# --------------------------------------------------------------- programs

def _redirect_tail(a):
    """r1 = xsks; r2 = rx queue; r3 = XDP_PASS; return redirect_map()."""
    a.ld_map(1, XSKMAP_NAME)
    a.ldx(W, 2, 6, MD_RX_QUEUE)
    a.mov64_imm(3, XDP_PASS)
    a.call(FN_REDIRECT_MAP)
    a.exit()


def dispatcher():
    """The program attached to an interface (see the module docstring).
    Maps: XSKMAP_NAME (XSKMAP), PROGMAP_NAME (PROG_ARRAY)."""
    a = Asm()
    a.mov64(6, 1)                       # r6 = ctx
    a.ld_map(2, PROGMAP_NAME)
    a.ldx(W, 3, 6, MD_RX_QUEUE)
    a.call(FN_TAIL_CALL)                # returns only if no filter
    _redirect_tail(a)
    return a


def inject_program(cookie):
    """The tcx egress program of host-stack injection (a SCHED_CLS
    program): a packet sent by the socket whose cookie is ``cookie`` is
    redirected to the ingress of the interface it was sent on; every other
    packet goes on (TCX_NEXT).  See netmapy/includes/nm_inject.h."""
    a = Asm()
    a.mov64(6, 1)                          # r6 = skb
    a.call(FN_GET_SOCKET_COOKIE)           # r0 = cookie of skb->sk, 0 if none
    a.ld_imm64(1, cookie)
    a.jmp(JNE, 0, "next", src=1, wide=True)
    a.ldx(W, 1, 6, SKB_IFINDEX)            # r1 = skb->ifindex
    a.mov64_imm(2, BPF_F_INGRESS)
    a.call(FN_REDIRECT)
    a.exit()
    a.label("next")
    a.ret(TCX_NEXT)
    return a


def drop_program():
    """return XDP_DROP (for benchmarks)."""
    a = Asm()
    a.ret(XDP_DROP)
    return a


def parse_cbpf(text):
    """Parse classic BPF in the forms tools print: ``tcpdump -ddd`` /
    bpftools / ``nfbpf_compile`` ("N,code jt jf k,code jt jf k,...", or one
    instruction per line, the first line holding the count), or
    ``tcpdump -dd`` ("{ 0x28, 0, 0, 0x0000000c },").  Returns a list of
    (code, jt, jf, k) tuples."""
    text = text.strip()
    if not text:
        raise BpfTranslateError("empty classic BPF program")
    if "{" in text:
        out = []
        for part in text.split("{")[1:]:
            body = part.split("}")[0]
            nums = [int(x.strip(), 0) for x in body.split(",") if x.strip()]
            if len(nums) != 4:
                raise BpfTranslateError("bad instruction {%s}: expected "
                                        "4 numbers" % body)
            out.append(tuple(nums))
        return out
    parts = [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]
    try:
        n = int(parts[0])
        insns = [tuple(int(x, 0) for x in p.split()) for p in parts[1:]]
    except ValueError as e:
        raise BpfTranslateError("bad classic BPF text: %s" % e) from None
    if any(len(i) != 4 for i in insns):
        raise BpfTranslateError("bad classic BPF text: every instruction is "
                                "'code jt jf k'")
    if n != len(insns):
        raise BpfTranslateError("classic BPF text says %d instructions but "
                                "has %d" % (n, len(insns)))
    return insns


_CLASS_NAMES = {LD: "ld", LDX: "ldx", ST: "st", STX: "stx", ALU: "alu",
                JMP: "jmp", RET: "ret", MISC: "misc"}
_SIZE_BYTES = {W: 4, H: 2, B: 1}
_SIZE_NAMES = {W: "w", H: "h", B: "b", DW: "dw"}


def _describe(pc, ins):
    code, jt, jf, k = ins
    return "instruction %d (code %#06x jt %d jf %d k %#x)" % (pc, code, jt, jf, k)


def steer_program(cbpf, match_action=None, chain=False):
    """The filter program for one queue: runs the classic BPF ``cbpf`` (a
    list of (code, jt, jf, k)) on the packet; on match redirects to the
    queue's AF_XDP socket, otherwise returns XDP_PASS.  Maps: XSKMAP_NAME.
    ``chain``: on a match, first tail-call the queue's entry of the
    CHAIN_NAME program array (a further filter, e.g. nm-offload's rule
    program), redirecting only when it holds none.
    ``match_action`` (an XDP_* value) makes it return that on a match
    instead, with no map (for testing the translation).
    Raises BpfTranslateError naming the construct it cannot translate."""
    a = Asm()
    translate(cbpf, a, match="match", nomatch="pass")
    a.label("match")
    if match_action is None:
        if chain:
            a.mov64(1, 6)
            a.ld_map(2, CHAIN_NAME)
            a.ldx(W, 3, 6, MD_RX_QUEUE)
            a.call(FN_TAIL_CALL)            # returns only if the entry is empty
        _redirect_tail(a)
    else:
        a.ret(match_action)
    a.label("pass")
    a.ret(XDP_PASS)
    return a


def translate(cbpf, a, match, nomatch):
    """Append the eBPF translation of classic BPF ``cbpf`` to Asm ``a``:
    it jumps to label ``match`` when the classic program returns non-zero
    and to ``nomatch`` when it returns zero (or a load fails).

    Registers: r6 = ctx (set here from r1), r7 = A, r8 = X, r9 = packet
    length (when the program reads it); r1-r5 scratch; M[] on the stack.
    """
    cbpf = [tuple(int(v) for v in ins) for ins in cbpf]
    n = len(cbpf)
    if n == 0:
        raise BpfTranslateError("empty classic BPF program")
    if n > 4096:
        raise BpfTranslateError("classic BPF program of %d instructions: at "
                                "most 4096" % n)
    # pass 1: check and collect facts
    uses_len = False
    scratch = set()
    for pc, ins in enumerate(cbpf):
        code, jt, jf, k = ins
        if not (0 <= code <= 0xffff and 0 <= jt <= 255 and 0 <= jf <= 255
                and 0 <= k <= 0xffffffff):
            raise BpfTranslateError("%s: field out of range" % _describe(pc, ins))
        cls = code & 0x07
        if cls in (LD, LDX) and code & 0xe0 == LEN:
            uses_len = True
        if cls in (LD, LDX) and code & 0xe0 == MEM or cls in (ST, STX):
            if k >= SCRATCH:
                raise BpfTranslateError("%s: scratch memory M[%d] does not "
                                        "exist (M[0]..M[15])" % (_describe(pc, ins), k))
            scratch.add(k)
        if cls == JMP:
            if code & 0xf0 == JA:
                tgt = [pc + 1 + k]
            else:
                tgt = [pc + 1 + jt, pc + 1 + jf]
            if any(t >= n for t in tgt):
                raise BpfTranslateError("%s: jumps past the end of the "
                                        "program" % _describe(pc, ins))
    last = cbpf[-1][0] & 0x07
    if last not in (RET, JMP):
        raise BpfTranslateError("the classic BPF program does not end with "
                                "a return (ret)")

    a.mov64(6, 1)
    if uses_len:
        a.call(FN_XDP_GET_BUFF_LEN)      # r1 = ctx
        a.mov32(9, 0)
    a.mov32_imm(7, 0)
    a.mov32_imm(8, 0)
    for m in sorted(scratch):
        a.st_imm(W, 10, _m(m), 0)

    lab = lambda pc: "pc%d" % pc
    for pc, ins in enumerate(cbpf):
        a.label(lab(pc))
        code, jt, jf, k = ins
        cls = code & 0x07
        if cls == LD or cls == LDX:
            _load(a, pc, ins, nomatch)
        elif cls == ST:
            a.stx(W, 10, 7, _m(k))
        elif cls == STX:
            a.stx(W, 10, 8, _m(k))
        elif cls == ALU:
            _alu(a, pc, ins, nomatch)
        elif cls == JMP:
            op = code & 0xf0
            if op == JA:
                a.ja(lab(pc + 1 + k))
                continue
            if op not in (JEQ, JGT, JGE, JSET):
                raise BpfTranslateError("%s: unknown jump" % _describe(pc, ins))
            src = 8 if code & X else None
            t, f = lab(pc + 1 + jt), lab(pc + 1 + jf)
            if jt == jf:
                if jt:
                    a.ja(t)
                continue
            if jt and not jf:
                a.jmp(op, 7, t, src=src, imm=k)
            else:
                a.jmp(op, 7, t if jt else lab(pc + 1), src=src, imm=k)
                a.ja(f)
        elif cls == RET:
            rv = code & 0x18
            if rv == 0x00:                    # ret #k
                a.ja(match if k else nomatch)
            elif rv in (0x10, 0x08):          # ret a / ret x
                reg = 7 if rv == 0x10 else 8
                a.jmp(JNE, reg, match, imm=0)
                a.ja(nomatch)
            else:
                raise BpfTranslateError("%s: unknown return" % _describe(pc, ins))
        elif cls == MISC:
            if code & 0xf8 == 0x00:       # tax
                a.mov32(8, 7)
            elif code & 0xf8 == 0x80:     # txa
                a.mov32(7, 8)
            else:
                raise BpfTranslateError("%s: unknown misc instruction"
                                        % _describe(pc, ins))
    return a


def _m(k):
    return -4 * (SCRATCH - k)


def _packet_load(a, size, reg, nomatch, const_off=None, var=False, k=0):
    """reg = packet[off : off+size] (big-endian), or goto nomatch when it
    is out of bounds.  The offset is const_off, or X + k when var."""
    nbytes = _SIZE_BYTES[size]
    if var:
        a.mov64(2, 8)                         # r2 = X (zero-extended)
        if k:
            a.alu64(ADD, 2, imm=k)
        a.jmp(JGT, 2, nomatch, imm=MAX_PACKET_OFF - nbytes, wide=True)
        a.ldx(W, 3, 6, MD_DATA)
        a.alu64(ADD, 3, 2)                    # r3 = data + offset
    else:
        if const_off > MAX_PACKET_OFF - nbytes:
            a.ja(nomatch)
            return
        a.ldx(W, 3, 6, MD_DATA)
        if const_off:
            a.alu64(ADD, 3, imm=const_off)
    a.ldx(W, 4, 6, MD_DATA_END)
    a.mov64(1, 3)
    a.alu64(ADD, 1, imm=nbytes)
    a.jmp(JGT, 1, nomatch, src=4, wide=True)
    a.ldx(size, reg, 3, 0)
    if size == H:
        a.to_be(reg, 16)
    elif size == W:
        a.to_be(reg, 32)


def _ancillary(a, pc, ins, off):
    name = _ANCILLARY.get(off)
    if name in ("queue", "ifindex"):
        a.ldx(W, 7, 6, MD_RX_QUEUE if name == "queue" else MD_IFINDEX)
    elif name == "cpu":
        a.call(FN_GET_SMP_PROCESSOR_ID)
        a.mov32(7, 0)
    elif name == "random":
        a.call(FN_GET_PRANDOM_U32)
        a.mov32(7, 0)
    else:
        raise BpfTranslateError(
            "%s: the ancillary load '%s' (SKF_AD_OFF%+d) has no XDP "
            "equivalent (only queue, ifindex, cpu and random do)"
            % (_describe(pc, ins), name or "unknown", off))


def _load(a, pc, ins, nomatch):
    code, jt, jf, k = ins
    cls, size, mode = code & 0x07, code & 0x18, code & 0xe0
    reg = 7 if cls == LD else 8
    what = "%s%s" % (_CLASS_NAMES[cls], _SIZE_NAMES.get(size, "?"))
    if mode == IMM:
        a.mov32_imm(reg, k)
    elif mode == MEM:
        a.ldx(W, reg, 10, _m(k))
    elif mode == LEN:
        a.mov32(reg, 9)
    elif cls == LD and mode in (ABS, IND):
        if size not in _SIZE_BYTES:
            raise BpfTranslateError("%s: load size" % _describe(pc, ins))
        sk = _s32(k)
        if sk < 0:
            if mode == ABS and SKF_AD_OFF <= sk < 0 and size == W:
                _ancillary(a, pc, ins, sk - SKF_AD_OFF)
                return
            area = ("the link-layer area (SKF_LL_OFF)" if sk < SKF_NET_OFF
                    else "the network-layer area (SKF_NET_OFF)" if sk < SKF_AD_OFF
                    else "an ancillary field (SKF_AD_OFF)")
            raise BpfTranslateError("%s: %s %s loads from %s, which XDP does "
                                    "not have" % (_describe(pc, ins), what,
                                                  "abs" if mode == ABS else "ind",
                                                  area))
        if mode == ABS:
            _packet_load(a, size, reg, nomatch, const_off=k)
        else:
            _packet_load(a, size, reg, nomatch, var=True, k=k)
    elif cls == LDX and mode == MSH and size == B:
        _packet_load(a, B, 8, nomatch, const_off=k)
        a.alu32(AND, 8, imm=0x0f)
        a.alu32(LSH, 8, imm=2)
    else:
        raise BpfTranslateError("%s: unknown load" % _describe(pc, ins))


_ALU_OPS = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or",
            AND: "and", LSH: "lsh", RSH: "rsh", NEG: "neg", MOD: "mod",
            XOR: "xor"}


def _alu(a, pc, ins, nomatch):
    code, jt, jf, k = ins
    op = code & 0xf0
    if op not in _ALU_OPS:
        raise BpfTranslateError("%s: unknown ALU operation" % _describe(pc, ins))
    if op == NEG:
        a.emit(ALU | NEG, 7)
        return
    if code & X:
        if op in (DIV, MOD):
            a.jmp(JEQ, 8, nomatch, imm=0)
        a.alu32(op, 7, 8)
        return
    if op in (DIV, MOD) and k == 0:
        raise BpfTranslateError("%s: division by zero" % _describe(pc, ins))
    if op in (LSH, RSH) and k >= 32:
        raise BpfTranslateError("%s: shift by %d (at most 31)" % (_describe(pc, ins), k))
    a.alu32(op, 7, imm=k)


# ------------------------------------------------------------ libpcap

class _PcapInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _PcapProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_PcapInsn))]


_libpcap = None
DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xffffffff


def _pcap():
    global _libpcap
    if _libpcap is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise SteerError("steering expressions need libpcap (apt-get install "
                             "libpcap0.8): %s" % e) from None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = (ctypes.c_void_p, ctypes.POINTER(_PcapProgram),
                                     ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32)
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = (ctypes.c_void_p,)
        lib.pcap_freecode.argtypes = (ctypes.POINTER(_PcapProgram),)
        lib.pcap_close.argtypes = (ctypes.c_void_p,)
        _libpcap = lib
    return _libpcap


def compile_filter(expr, snaplen=65535):
    """Compile a tcpdump expression for Ethernet frames to classic BPF with
    libpcap (``pcap_compile`` on a dead DLT_EN10MB handle, optimised);
    returns a list of (code, jt, jf, k).  Raises SteerError with libpcap's
    message when the expression is not valid."""
    if not isinstance(expr, str):
        raise TypeError("a filter expression is a str, not %s" % type(expr).__name__)
    lib = _pcap()
    p = lib.pcap_open_dead(DLT_EN10MB, snaplen)
    if not p:
        raise MemoryError()
    try:
        prog = _PcapProgram()
        if lib.pcap_compile(p, ctypes.byref(prog), expr.encode(), 1,
                            PCAP_NETMASK_UNKNOWN) < 0:
            msg = lib.pcap_geterr(p).decode("utf-8", "replace")
            raise SteerError("cannot compile the filter %r: %s" % (expr, msg))
        try:
            return [(prog.bf_insns[i].code, prog.bf_insns[i].jt,
                     prog.bf_insns[i].jf, prog.bf_insns[i].k)
                    for i in range(prog.bf_len)]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(p)


def cbpf_match(cbpf, frame):
    """Run classic BPF on a frame with libpcap's interpreter (bpf_filter):
    True if it accepts the frame.  The reference the translation is tested
    against."""
    lib = _pcap()
    if not hasattr(lib, "_nm_bpf_filter"):
        f = lib.bpf_filter
        f.restype = ctypes.c_uint
        f.argtypes = (ctypes.POINTER(_PcapInsn), ctypes.c_char_p, ctypes.c_uint,
                      ctypes.c_uint)
        lib._nm_bpf_filter = f
    arr = (_PcapInsn * len(cbpf))(*[_PcapInsn(*i) for i in cbpf])
    frame = bytes(frame)
    return lib._nm_bpf_filter(arr, frame, len(frame), len(frame)) != 0
