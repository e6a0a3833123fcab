/*
 * Host-stack injection: frames written to a host TX ring are received by
 * an interface's network stack as if they had arrived on it.
 *
 * How: an AF_PACKET socket bound to the interface (protocol 0: it receives
 * nothing) sends each batch with one sendmmsg(); a tcx egress program on
 * the interface, attached through a bpf_link the port owns, recognises the
 * socket's packets by its socket cookie and redirects them to the
 * interface's own ingress (bpf_redirect(ifindex, BPF_F_INGRESS)).  The
 * kernel then receives them through netif_rx on the interface: rp_filter,
 * netfilter `-i IF`, sockets bound to IF and routing see an ordinary
 * arrival.  Every other packet on the interface's egress is untouched
 * (the program returns TCX_NEXT).
 *
 * Why this and not BPF_PROG_RUN live frames: one syscall per batch instead
 * of one per frame, nothing registered per frame (live frames register an
 * XDP memory allocator per run, which the kernel tears down asynchronously:
 * ENOSPC after ~70,000 frames, kernel workers busy long after), no namespace
 * switch per batch (the socket belongs to the port's namespace from its
 * creation), and a per-frame result: a frame the kernel refuses is counted
 * as failed, never as injected.
 *
 * The bpf_link detaches the program when its last fd closes: on close,
 * at exit, and when the process is killed.
 */
#ifndef NM_INJECT_H
#define NM_INJECT_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <bpf/bpf.h>

#include "nm_abi.h"
#include "nm_mmsg.h"

#ifndef NM_BPF_TCX_EGRESS
#define NM_BPF_TCX_EGRESS 47          /* enum bpf_attach_type, Linux 6.6 */
#endif
#ifndef NM_BPF_F_BEFORE
#define NM_BPF_F_BEFORE (1U << 3)     /* first in the tcx chain */
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif
#ifndef SO_SNDBUFFORCE
#define SO_SNDBUFFORCE 32
#endif

struct nm_inject {
    struct nm_mmsg_tx tx;             /* the socket and its counters */
    int prog_fd, link_fd;
    int ifindex;
    uint64_t cookie;
};

static inline void nm_inject_init(struct nm_inject *h)
{
    memset(h, 0, sizeof(*h));
    h->tx.fd = h->prog_fd = h->link_fd = -1;
}

/* The injection socket, in the caller's network namespace.  Returns 0 or
 * -errno; *stage names the step that failed. */
static inline int nm_inject_socket(struct nm_inject *h, int ifindex, int sndbuf,
                                   const char **stage)
{
    struct sockaddr_ll sll;
    socklen_t len = sizeof(h->cookie);
    int fd;
    *stage = "socket(AF_PACKET)";
    fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof(sndbuf)) < 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = 0;             /* send only: receive nothing */
    sll.sll_ifindex = ifindex;
    *stage = "bind(AF_PACKET)";
    if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0)
        goto fail;
    *stage = "getsockopt(SO_COOKIE)";
    if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &h->cookie, &len) < 0)
        goto fail;
    h->tx.fd = fd;
    h->ifindex = ifindex;
    return 0;
fail:
    {
        int e = errno;
        close(fd);
        return -e;
    }
}

/* Attach the (loaded) redirect program to the interface's tcx egress,
 * first in its chain.  Returns 0 or -errno. */
static inline int nm_inject_attach(struct nm_inject *h, int prog_fd)
{
    LIBBPF_OPTS(bpf_link_create_opts, o);
    int fd;
    o.flags = NM_BPF_F_BEFORE;
    fd = bpf_link_create(prog_fd, h->ifindex, (enum bpf_attach_type)NM_BPF_TCX_EGRESS, &o);
    if (fd < 0)
        return -errno;
    h->prog_fd = prog_fd;
    h->link_fd = fd;
    return 0;
}

static inline void nm_inject_close(struct nm_inject *h)
{
    if (h->link_fd >= 0)
        close(h->link_fd);
    if (h->prog_fd >= 0)
        close(h->prog_fd);
    if (h->tx.fd >= 0)
        close(h->tx.fd);
    h->link_fd = h->prog_fd = h->tx.fd = -1;
}

/* The host TX ring's sync: frames to the stack, a batch per sendmmsg(). */
static inline int nm_inject_tx(struct nm_inject *h, struct netmap_ring *r)
{
    return nm_mmsg_tx_sync(&h->tx, r);
}

#endif
