/* XDP program for the benchmark's "XDP redirect" middlebox: every frame
 * arriving on the interface is redirected to TARGET_IFINDEX (a compile-time
 * constant, -DTARGET_IFINDEX=N).  Built with:
 *   clang -O2 -target bpf -DTARGET_IFINDEX=N -c xdp_redirect.c -o prog.o
 * and attached with `ip link set dev IF xdpdrv obj prog.o sec xdp`.
 * A second section, "xdp_pass", passes everything: attached to the far end
 * of the target veth it puts that veth in NAPI mode, which XDP_REDIRECT
 * into a veth needs. */
#include <linux/bpf.h>

#ifndef TARGET_IFINDEX
#define TARGET_IFINDEX 0
#endif

static long (*redirect)(__u32 ifindex, __u64 flags) = (void *)BPF_FUNC_redirect;

__attribute__((section("xdp"), used))
int xdp_redirect_all(struct xdp_md *ctx)
{
    return redirect(TARGET_IFINDEX, 0);
}

__attribute__((section("xdp_pass"), used))
int xdp_pass_all(struct xdp_md *ctx)
{
    return XDP_PASS;
}

/* the benchmark's sink: count (the veth counts what XDP sees) and drop */
__attribute__((section("xdp_drop"), used))
int xdp_drop_all(struct xdp_md *ctx)
{
    return XDP_DROP;
}

char _license[] __attribute__((section("license"), used)) = "GPL";
