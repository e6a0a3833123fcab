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

Classic BPF semantics kept by ``translate``: those of libpcap's
interpreter, instruction by instruction (see ``netmapy.host.cbpf``): A, X and
M[0..15] are 32-bit and start at 0 (ALU32 and JMP32); a load that does not
fit in the packet, at any offset (negative ones included), ends the filter
with "no match", and so does a division or modulo by X == 0; a shift by
X >= 32 gives 0; a non-zero return value means "match" (the packet leaves
the kernel), zero means "no match" (XDP_PASS).  Backward jumps (libpcap's
``protochain`` loops) take one of ``cbpf.LOOP_LIMIT`` turns each; the
verifier accepts the loop without walking every turn (``may_goto`` and
values it cannot predict at the loop head).
"""

import struct

from netmapy.errors import BackendError
from netmapy.host import cbpf as _cbpf

__all__ = [
    "Asm", "SteerError", "BpfTranslateError", "compile_filter", "cbpf_match", "translate",
    "dispatcher", "steer_program", "value_program",
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
JCOND, MAY_GOTO = 0xe0, 0
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

MAX_PACKET_OFF = 0xffff
SCRATCH = 16
_SIZE_BYTES = {W: 4, H: 2, B: 1}


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

    def may_goto(self, target):
        """``may_goto target`` (kernel 6.9+): falls through, and jumps once
        the kernel's per-run budget of these (8 million) is used up.  The
        verifier treats a loop through it as bounded without walking every
        iteration."""
        i = self.emit(JMP | JCOND | K, 0, MAY_GOTO)
        self.fixups.append((i, target))
        return i

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
                    src = getattr(self, "source", None)
                    raise BpfTranslateError(
                        "%sthe XDP translation is too long (%d eBPF instructions): a jump "
                        "of %d instructions does not fit in an eBPF jump (at most 32767): "
                        "shorten the expression (a rule file indexes long lists of "
                        "hosts and ports) or filter in a middlebox Filter"
                        % ("%s: " % src if src else "", k, off))
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


def parse_cbpf(text, source="<bpf>"):
    """Parse classic BPF in the forms tools print: ``tcpdump -ddd`` /
    bpftools / ``nfbpf_compile`` ("N,code jt jf k,code jt jf k,...", or one
    instruction per line, the first line holding the count), or
    ``tcpdump -dd`` ("{ 0x28, 0, 0, 0x0000000c },").  Returns a list of
    (code, jt, jf, k) tuples (not yet checked: ``translate`` checks)."""
    return _cbpf.parse_text(text, source, BpfTranslateError)


def steer_program(cbpf, match_action=None, source=None, loop_limit=None, chain=False):
    """The filter program for one queue: runs the classic BPF ``cbpf`` (a
    list of (code, jt, jf, k)) on the packet; on match redirects to the
    queue's AF_XDP socket, otherwise returns XDP_PASS.  Maps: XSKMAP_NAME.
    ``chain``: on a match, first tail-call the queue's entry of the
    CHAIN_NAME program array (a further filter, e.g. nm-offload's rule
    program), redirecting only when it holds none.
    ``match_action`` (an XDP_* value) makes it return that on a match
    instead, with no map (for testing the translation).  ``source`` names
    the program in errors (the expression).  Raises BpfTranslateError
    naming the program, the construct and the fix."""
    a = Asm()
    a.source = source
    translate(cbpf, a, match="match", nomatch="pass", source=source, loop_limit=loop_limit)
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


def value_program(cbpf, source=None, loop_limit=None):
    """The translation of classic BPF ``cbpf`` as an XDP program that
    returns what the classic program returns (0 where a load fails, a
    division by 0 or the loop limit ends it): for testing the translation
    value by value (BPF_PROG_RUN reports the return value), not for
    attaching."""
    a = Asm()
    a.source = source
    translate(cbpf, a, match=None, nomatch="zero", source=source, loop_limit=loop_limit)
    a.label("zero")
    a.ret(0)
    return a


# eBPF registers of the translation
_CTX, _A, _X, _LEN, _LOOP = 6, 7, 8, 9, 5
_INVERSE = {JEQ: JNE, JGT: JLE, JGE: JLT}


def translate(cbpf, a, match, nomatch, source=None, loop_limit=None):
    """Append the eBPF translation of classic BPF ``cbpf`` to Asm ``a``:
    it jumps to label ``match`` when the classic program returns non-zero
    and to ``nomatch`` when it returns zero (or a load fails, or X is 0 in
    a division, or the loop limit is reached): libpcap's interpreter's
    semantics (see netmapy.host.cbpf), instruction by instruction.

    Registers: r6 = ctx (set here from r1), r7 = A, r8 = X, r9 = packet
    length (when the program reads it), r5 = backward jumps left (when it
    has loops); r1-r4 scratch; M[] on the stack.  A backward ``ja`` costs
    one of ``loop_limit`` (default netmapy.host.cbpf.LOOP_LIMIT) and ends the
    program with "no match" when none is left: the kernel's verifier walks
    every iteration, so the loop is bounded where it can see it.
    """
    src = source or "<bpf>"
    insns = _cbpf.check(cbpf, src, BpfTranslateError)
    if loop_limit is None:
        loop_limit = _cbpf.LOOP_LIMIT
    if not 0 <= loop_limit <= _cbpf.MAX_LOOP_LIMIT:
        raise BpfTranslateError("%s: loop_limit=%r: 0..%d backward jumps per packet"
                                % (src, loop_limit, _cbpf.MAX_LOOP_LIMIT))
    n = len(insns)
    back = _cbpf.backward_jumps(insns)
    uses_len = any(ins[0] in (0x80, 0x81) for ins in insns)
    scratch = sorted({ins[3] for ins in insns if ins[0] in (0x02, 0x03, 0x60, 0x61)})
    a.loops = [(t, pc) for pc, t in back]
    a.loop_limit = loop_limit if back else 0

    a.mov64(_CTX, 1)
    if uses_len:
        a.call(FN_XDP_GET_BUFF_LEN)      # r1 = ctx
        a.mov32(_LEN, 0)
    a.mov32_imm(_A, 0)
    a.mov32_imm(_X, 0)
    for m in scratch:
        a.st_imm(W, 10, _m(m), 0)
    if back:
        a.mov64_imm(_LOOP, loop_limit)

    lab = lambda pc: "pc%d" % pc
    for pc, ins in enumerate(insns):
        a.label(lab(pc))
        code, jt, jf, k = ins
        cls = code & 0x07
        if cls == LD or cls == LDX:
            _load(a, pc, ins, nomatch)
        elif cls == ST:
            a.stx(W, 10, _A, _m(k))
        elif cls == STX:
            a.stx(W, 10, _X, _m(k))
        elif cls == ALU:
            _alu(a, pc, ins, nomatch)
        elif cls == JMP:
            op = code & 0xf0
            if op == JA:
                t = pc + 1 + _s32(k)
                if t <= pc:                   # a loop: one backward jump less
                    _loop_jump(a, pc, scratch, nomatch)
                a.ja(lab(t))
                continue
            src_reg = _X if code & X else None
            t, f = pc + 1 + jt, pc + 1 + jf
            if jt == jf:
                if jt:
                    a.ja(lab(t))
                continue
            if not jf:
                a.jmp(op, _A, lab(t), src=src_reg, imm=k)
            elif not jt and op in _INVERSE:
                a.jmp(_INVERSE[op], _A, lab(f), src=src_reg, imm=k)
            else:
                a.jmp(op, _A, lab(t), src=src_reg, imm=k)
                a.ja(lab(f))
        elif cls == RET and match is None:    # value_program: return it
            if code == 0x06:
                a.mov32_imm(0, k)
            else:
                a.mov32(0, _A)
            a.exit()
        elif cls == RET:
            if code == 0x06:                  # ret #k
                a.ja(match if k else nomatch)
            else:                             # ret a
                a.jmp(JNE, _A, match, imm=0)
                a.ja(nomatch)
        elif cls == MISC:
            if code == 0x07:                  # tax
                a.mov32(_X, _A)
            else:                             # txa
                a.mov32(_A, _X)
    return a


def _m(k):
    return -4 * (SCRATCH - k)


def _loop_jump(a, pc, scratch, nomatch):
    """Before a backward jump: take one from the loop budget (none left:
    no match), and make A, X and the scratch words look unknown to the
    verifier (x ^ u ^ u with u a value it cannot know), so that every path
    that reaches the loop head in one iteration arrives in the same state
    and the verifier walks the loop once per iteration, not once per path
    through it.  The values do not change."""
    ok = "pc%d_loop" % pc
    a.jmp(JNE, _LOOP, ok, imm=0, wide=True)
    a.ja(nomatch)
    a.label(ok)
    a.alu64(SUB, _LOOP, imm=1)
    a.ldx(W, 1, _CTX, MD_RX_QUEUE)
    for r in (_A, _X, _LOOP):
        a.alu32(XOR, r, 1)
        a.alu32(XOR, r, 1)
    for m in scratch:
        a.ldx(W, 2, 10, _m(m))
        a.alu32(XOR, 2, 1)
        a.alu32(XOR, 2, 1)
        a.stx(W, 10, 2, _m(m))
    a.may_goto(nomatch)


def _packet_load(a, size, reg, nomatch, k, var=False):
    """reg = packet[off : off+size] (big-endian), or goto nomatch when it
    is not all in the packet.  off = k, or X + k when var (no wrapping:
    libpcap's interpreter checks X + k without overflow)."""
    nbytes = _SIZE_BYTES[size]
    if k > MAX_PACKET_OFF - nbytes:        # no packet is that long
        a.ja(nomatch)
        return
    # the checks jump over a "goto nomatch" when they pass: the verifier
    # explores the failing side first and so keeps few paths pending
    a.n_checks = getattr(a, "n_checks", 0) + 1
    ok = "load%d" % a.n_checks
    if var:
        a.mov32(2, _X)                        # r2 = X (zero-extended)
        if k:
            a.alu64(ADD, 2, imm=k)
        a.jmp(JLE, 2, ok + "x", imm=MAX_PACKET_OFF - nbytes, wide=True)
        a.ja(nomatch)
        a.label(ok + "x")
        a.ldx(W, 3, _CTX, MD_DATA)
        a.alu64(ADD, 3, 2)                    # r3 = data + offset
    else:
        a.ldx(W, 3, _CTX, MD_DATA)
        if k:
            a.alu64(ADD, 3, imm=k)
    a.ldx(W, 4, _CTX, MD_DATA_END)
    a.mov64(1, 3)
    a.alu64(ADD, 1, imm=nbytes)
    a.jmp(JLE, 1, ok, src=4, wide=True)
    a.ja(nomatch)
    a.label(ok)
    a.ldx(size, reg, 3, 0)
    if size == H:
        a.to_be(reg, 16)
    elif size == W:
        a.to_be(reg, 32)


def _load(a, pc, ins, nomatch):
    code, jt, jf, k = ins
    mode, size = code & 0xe0, code & 0x18
    reg = _A if code & 0x07 == LD else _X
    if mode == IMM:
        a.mov32_imm(reg, k)
    elif mode == MEM:
        a.ldx(W, reg, 10, _m(k))
    elif mode == LEN:
        a.mov32(reg, _LEN)
    elif mode in (ABS, IND):
        # negative offsets (the kernel's ancillary data) are loads past the
        # end for libpcap's interpreter: the k > MAX_PACKET_OFF case
        _packet_load(a, size, _A, nomatch, k, var=mode == IND)
    else:                                     # ldxb 4*([k]&0xf)
        _packet_load(a, B, _X, nomatch, k)
        a.alu32(AND, _X, imm=0x0f)
        a.alu32(LSH, _X, imm=2)


def _alu(a, pc, ins, nomatch):
    code, jt, jf, k = ins
    op = code & 0xf0
    if op == NEG:
        a.emit(ALU | NEG, _A)
        return
    if code & X:
        if op in (DIV, MOD):                  # by 0: the program returns 0
            a.jmp(JEQ, _X, nomatch, imm=0)
            a.alu32(op, _A, _X)
        elif op in (LSH, RSH):                # by 32 or more: A = 0
            big, done = "pc%d_big" % pc, "pc%d_done" % pc
            a.jmp(JGE, _X, big, imm=32)
            a.alu32(op, _A, _X)
            a.ja(done)
            a.label(big)
            a.mov32_imm(_A, 0)
            a.label(done)
        else:
            a.alu32(op, _A, _X)
        return
    a.alu32(op, _A, imm=k)                    # check() refused k == 0 divisions, k > 31 shifts


# ------------------------------------------------------------ libpcap

DLT_EN10MB = _cbpf.DLT_EN10MB
PCAP_NETMASK_UNKNOWN = _cbpf.PCAP_NETMASK_UNKNOWN


def compile_filter(expr, snaplen=65535, netmask=None, netmask_from=None):
    """Compile a tcpdump expression for Ethernet frames to classic BPF with
    libpcap (``pcap_compile`` on a dead DLT_EN10MB handle, optimised);
    returns a list of (code, jt, jf, k).  netmask: the IPv4 netmask that
    expressions such as `ip broadcast` need ("255.255.255.0", "/24", 24;
    None: not known); netmask_from: the interface the default came from
    (for the message).  Raises SteerError naming the expression, libpcap's
    message and the fix."""
    return _cbpf.compile_expression(expr, netmask, snaplen, SteerError, netmask_from)


def cbpf_match(cbpf, frame):
    """Run classic BPF on a frame with libpcap's interpreter (bpf_filter):
    True if it accepts the frame.  The reference the translation is tested
    against."""
    return _cbpf.pcap_filter(cbpf, frame) != 0
