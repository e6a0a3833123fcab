/* The bench_offload "ideal scrubber" reference: the least an in-kernel
 * scrubber can do for the benchmark's mix -- pass IPv4 packets from the
 * client (CLIENT_IP, host order, -DCLIENT_IP=0x0afa0001) to the stack, drop
 * every other IPv4/UDP packet, pass the rest (ARP...).  One comparison
 * instead of a rule set: the gap between it and nm-offload's rule program
 * is the cost of evaluating the rules; the gap between it and XDP_DROP is
 * the cost of handing the valid packets to the stack.
 *
 *   clang -O2 -target bpf -DCLIENT_IP=... -c xdp_scrub_ideal.c -o ideal.o
 *   ip link set dev IF xdpdrv obj ideal.o sec xdp
 */
#include <linux/bpf.h>

#ifndef CLIENT_IP
#define CLIENT_IP 0x0afa0001
#endif

#define SWAP32(x) ((((x) & 0xff) << 24) | (((x) & 0xff00) << 8) | \
                   (((x) >> 8) & 0xff00) | (((x) >> 24) & 0xff))

__attribute__((section("xdp"), used))
int xdp_scrub_ideal(struct xdp_md *ctx)
{
    unsigned char *data = (unsigned char *)(long)ctx->data;
    unsigned char *end = (unsigned char *)(long)ctx->data_end;
    if (data + 34 > end)
        return XDP_PASS;
    if (data[12] != 0x08 || data[13] != 0x00)
        return XDP_PASS;
    if (*(unsigned int *)(data + 26) == SWAP32(CLIENT_IP))
        return XDP_PASS;
    return data[23] == 17 ? XDP_DROP : XDP_PASS;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
