/*
 * A classic BPF interpreter with libpcap's semantics and a loop limit.
 *
 * middlebox.Filter runs programs without backward jumps with libpcap's own
 * interpreter (bpf_filter).  libpcap 1.10's interpreter has no limit on
 * backward jumps (libpcap compiles `protochain` to a loop), so a packet can
 * keep it looping for ever; programs with backward jumps run here instead:
 * the same results for every opcode, plus at most `loop_limit` backward
 * jumps per packet (the next one ends the program with 0, and *looped is
 * set).  netmapy.host.cbpf.check() has vetted the program (known opcodes, jumps
 * inside it, M[] written before read, no constant division by 0 or shift
 * past 31); unknown opcodes and jumps out of it still end it with 0 here.
 */
#ifndef MB_BPF_H
#define MB_BPF_H

#include <stdint.h>
#include <pcap/bpf.h>

static inline uint32_t mb_bpf_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* the packet bytes [off, off + size), where off = base + k without
 * wrapping; NULL when they are not all in the buffer */
static inline const uint8_t *mb_bpf_at(const uint8_t *p, uint32_t buflen, uint32_t base,
                                       uint32_t k, uint32_t size)
{
    uint64_t off = (uint64_t)base + k;
    if (off + size > buflen)
        return NULL;
    return p + off;
}

static inline uint32_t mb_bpf_run(const struct bpf_insn *prog, uint32_t n, const uint8_t *p,
                                  uint32_t wirelen, uint32_t buflen, uint32_t loop_limit,
                                  int *looped)
{
    uint32_t A = 0, X = 0, pc = 0, back = 0, k;
    uint32_t mem[BPF_MEMWORDS] = {0};
    const uint8_t *q;

    for (;;) {
        const struct bpf_insn *in;
        if (pc >= n)
            return 0;
        in = &prog[pc++];
        k = in->k;
        switch (in->code) {
        case BPF_RET | BPF_K:
            return k;
        case BPF_RET | BPF_A:
            return A;
        case BPF_LD | BPF_W | BPF_ABS:
            if (!(q = mb_bpf_at(p, buflen, 0, k, 4)))
                return 0;
            A = mb_bpf_rd32(q);
            break;
        case BPF_LD | BPF_H | BPF_ABS:
            if (!(q = mb_bpf_at(p, buflen, 0, k, 2)))
                return 0;
            A = (uint32_t)q[0] << 8 | q[1];
            break;
        case BPF_LD | BPF_B | BPF_ABS:
            if (!(q = mb_bpf_at(p, buflen, 0, k, 1)))
                return 0;
            A = q[0];
            break;
        case BPF_LD | BPF_W | BPF_IND:
            if (!(q = mb_bpf_at(p, buflen, X, k, 4)))
                return 0;
            A = mb_bpf_rd32(q);
            break;
        case BPF_LD | BPF_H | BPF_IND:
            if (!(q = mb_bpf_at(p, buflen, X, k, 2)))
                return 0;
            A = (uint32_t)q[0] << 8 | q[1];
            break;
        case BPF_LD | BPF_B | BPF_IND:
            if (!(q = mb_bpf_at(p, buflen, X, k, 1)))
                return 0;
            A = q[0];
            break;
        case BPF_LDX | BPF_MSH | BPF_B:
            if (!(q = mb_bpf_at(p, buflen, 0, k, 1)))
                return 0;
            X = (uint32_t)(q[0] & 0xf) << 2;
            break;
        case BPF_LD | BPF_W | BPF_LEN:
            A = wirelen;
            break;
        case BPF_LDX | BPF_W | BPF_LEN:
            X = wirelen;
            break;
        case BPF_LD | BPF_IMM:
            A = k;
            break;
        case BPF_LDX | BPF_IMM:
            X = k;
            break;
        case BPF_LD | BPF_MEM:
            if (k >= BPF_MEMWORDS)
                return 0;
            A = mem[k];
            break;
        case BPF_LDX | BPF_MEM:
            if (k >= BPF_MEMWORDS)
                return 0;
            X = mem[k];
            break;
        case BPF_ST:
            if (k >= BPF_MEMWORDS)
                return 0;
            mem[k] = A;
            break;
        case BPF_STX:
            if (k >= BPF_MEMWORDS)
                return 0;
            mem[k] = X;
            break;
        case BPF_JMP | BPF_JA:
            if ((int32_t)k < 0) {
                if (back >= loop_limit) {
                    *looped = 1;
                    return 0;
                }
                back++;
            }
            pc += k;            /* modulo 2^32: k < 0 goes back; out of range ends above */
            break;
        case BPF_JMP | BPF_JGT | BPF_K:
            pc += A > k ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_K:
            pc += A >= k ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JEQ | BPF_K:
            pc += A == k ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_K:
            pc += (A & k) ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JGT | BPF_X:
            pc += A > X ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JGE | BPF_X:
            pc += A >= X ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JEQ | BPF_X:
            pc += A == X ? in->jt : in->jf;
            break;
        case BPF_JMP | BPF_JSET | BPF_X:
            pc += (A & X) ? in->jt : in->jf;
            break;
        case BPF_ALU | BPF_ADD | BPF_X: A += X; break;
        case BPF_ALU | BPF_SUB | BPF_X: A -= X; break;
        case BPF_ALU | BPF_MUL | BPF_X: A *= X; break;
        case BPF_ALU | BPF_DIV | BPF_X:
            if (X == 0)
                return 0;
            A /= X;
            break;
        case BPF_ALU | BPF_MOD | BPF_X:
            if (X == 0)
                return 0;
            A %= X;
            break;
        case BPF_ALU | BPF_AND | BPF_X: A &= X; break;
        case BPF_ALU | BPF_OR | BPF_X: A |= X; break;
        case BPF_ALU | BPF_XOR | BPF_X: A ^= X; break;
        case BPF_ALU | BPF_LSH | BPF_X: A = X < 32 ? A << X : 0; break;
        case BPF_ALU | BPF_RSH | BPF_X: A = X < 32 ? A >> X : 0; break;
        case BPF_ALU | BPF_ADD | BPF_K: A += k; break;
        case BPF_ALU | BPF_SUB | BPF_K: A -= k; break;
        case BPF_ALU | BPF_MUL | BPF_K: A *= k; break;
        case BPF_ALU | BPF_DIV | BPF_K:
            if (k == 0)
                return 0;
            A /= k;
            break;
        case BPF_ALU | BPF_MOD | BPF_K:
            if (k == 0)
                return 0;
            A %= k;
            break;
        case BPF_ALU | BPF_AND | BPF_K: A &= k; break;
        case BPF_ALU | BPF_OR | BPF_K: A |= k; break;
        case BPF_ALU | BPF_XOR | BPF_K: A ^= k; break;
        case BPF_ALU | BPF_LSH | BPF_K: A = k < 32 ? A << k : 0; break;
        case BPF_ALU | BPF_RSH | BPF_K: A = k < 32 ? A >> k : 0; break;
        case BPF_ALU | BPF_NEG: A = 0U - A; break;
        case BPF_MISC | BPF_TAX: X = A; break;
        case BPF_MISC | BPF_TXA: A = X; break;
        default:
            return 0;
        }
    }
}

#endif
