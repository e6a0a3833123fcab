/*
 * A TX ring served by sendmmsg() on a socket: the frames of [next_tx, head)
 * are handed to the kernel a batch of 64 per system call, each from its own
 * netmap buffer (the kernel copies it into a linear skb).  A frame the
 * kernel refuses is counted in failed and released; when the socket buffer
 * is full the rest waits in the ring (tail says so) for the next sync.
 *
 * Used by the packet backend's TX (tx_mode="copy") and by host-stack
 * injection (nm_inject.h).
 */
#ifndef NM_MMSG_H
#define NM_MMSG_H

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <linux/if_ether.h>

#include "nm_abi.h"

#define NM_MMSG_BATCH 64

struct nm_mmsg_tx {
    int fd;
    uint32_t next_tx;                 /* first ring slot not yet handed over */
    uint64_t packets, bytes;          /* accepted by the kernel */
    uint64_t failed, failed_bytes;    /* refused: counted, never sent */
    uint64_t bad;                     /* of failed: malformed (length) */
    uint64_t again;                   /* socket buffer full: retried later */
    int last_err;
};

/* The sync: returns 0, or -errno when the interface is gone. */
static inline int nm_mmsg_tx_sync(struct nm_mmsg_tx *h, struct netmap_ring *r)
{
    struct mmsghdr msgs[NM_MMSG_BATCH];
    struct iovec iov[NM_MMSG_BATCH];
    uint32_t n = r->num_slots, i = h->next_tx, hd = r->head;
    int err = 0;
    while (i != hd) {
        uint32_t k = 0, j = i, idx[NM_MMSG_BATCH];
        int sent, off = 0;
        /* the next batch of well-formed frames; a malformed one is counted
         * on its own, so that a batch cut short by a full socket buffer
         * never counts a frame twice */
        while (j != hd && k < NM_MMSG_BATCH) {
            struct netmap_slot *sl = &r->slot[j];
            if (sl->len < ETH_HLEN || sl->len > r->nr_buf_size) {
                if (k)
                    break;                /* send the good ones first */
                h->bad++;
                h->failed++;
                h->failed_bytes += sl->len;
                sl->flags = 0;
                j = j + 1 == n ? 0 : j + 1;
                h->next_tx = i = j;
                continue;
            }
            iov[k].iov_base = NETMAP_BUF(r, sl->buf_idx);
            iov[k].iov_len = sl->len;
            memset(&msgs[k].msg_hdr, 0, sizeof(msgs[k].msg_hdr));
            msgs[k].msg_hdr.msg_iov = &iov[k];
            msgs[k].msg_hdr.msg_iovlen = 1;
            msgs[k].msg_len = 0;
            idx[k] = j;
            k++;
            sl->flags = 0;
            j = j + 1 == n ? 0 : j + 1;
        }
        while (off < (int)k) {
            sent = sendmmsg(h->fd, msgs + off, k - off, MSG_DONTWAIT);
            if (sent > 0) {
                int m;
                for (m = off; m < off + sent; m++) {
                    h->packets++;
                    h->bytes += iov[m].iov_len;
                }
                off += sent;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == ENOBUFS) {
                /* the socket buffer is full: frames off.. wait for the
                 * next sync (nothing is lost) */
                h->again++;
                h->next_tx = idx[off];
                goto out;
            }
            /* the kernel refused frame off: count it, go on */
            h->last_err = errno;
            h->failed++;
            h->failed_bytes += iov[off].iov_len;
            if (errno == ENODEV || errno == ENXIO)
                err = errno;
            off++;
        }
        i = j;
        h->next_tx = i;
        if (err)
            break;
    }
out:
    i = h->next_tx;
    r->tail = i == 0 ? n - 1 : i - 1;
    return err ? -err : 0;
}

#endif
