/*
 * netmapy packet backend: netmap rings over AF_PACKET mmap rings.
 *
 * RX: a TPACKET_V3 ring (blocks the kernel fills and retires); rxsync copies
 * frames into free netmap RX slots and returns each block once it is read.
 * TX: a TPACKET_V2 ring; txsync copies pending netmap TX slots into free
 * frames, marks them SEND_REQUEST and kicks the kernel with one send().
 * A frame is in flight until the kernel marks it AVAILABLE again.
 */
#ifndef NETMAPY_NM_PACKET_H
#define NETMAPY_NM_PACKET_H

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include "nm_abi.h"

struct pk_rx {
    char    *map;
    uint32_t block_size, block_nr, cur;
    char    *next;            /* next frame of the current block, or NULL */
    uint32_t left;            /* frames left in the current block */
    uint64_t truncated;       /* frames cut to the buffer size */
    uint64_t packets, bytes;
};

struct pk_tx {
    char    *map;
    uint32_t frame_size, frame_nr;
    uint32_t fill, reclaim, inflight;
    uint32_t next_tx;         /* next netmap slot to copy out */
    uint64_t bad_format;      /* frames the kernel refused */
    uint64_t packets, bytes;
    uint64_t kicks;           /* send() calls */
};

#define PK_TX_DATA (TPACKET2_HDRLEN - sizeof(struct sockaddr_ll))

/* Fill the netmap RX ring from the TPACKET_V3 blocks; returns frames added. */
static inline uint32_t pk_rx_fill(struct pk_rx *s, struct netmap_ring *r)
{
    uint32_t n = r->num_slots, t = r->tail, got = 0;
    uint32_t room = (r->head + n - t - 1) % n;
    uint32_t bsz = r->nr_buf_size;

    while (room) {
        struct tpacket_block_desc *b =
            (struct tpacket_block_desc *)(s->map + (size_t)s->cur * s->block_size);
        if (!(__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            break;
        if (s->next == NULL) {
            s->next = (char *)b + b->hdr.bh1.offset_to_first_pkt;
            s->left = b->hdr.bh1.num_pkts;
        }
        while (s->left && room) {
            struct tpacket3_hdr *h = (struct tpacket3_hdr *)s->next;
            struct netmap_slot *sl = &r->slot[t];
            char *dst = NETMAP_BUF(r, sl->buf_idx);
            const char *src = (const char *)h + h->tp_mac;
            uint32_t len = h->tp_snaplen;
            if ((h->tp_status & TP_STATUS_VLAN_VALID) && len >= 12) {
                /* the NIC stripped the tag: put it back where it was */
                uint16_t tpid = (h->tp_status & TP_STATUS_VLAN_TPID_VALID) ?
                    h->hv1.tp_vlan_tpid : ETH_P_8021Q;
                uint16_t tci = h->hv1.tp_vlan_tci;
                if (len + 4 > bsz) {
                    len = bsz - 4;
                    s->truncated++;
                }
                memcpy(dst, src, 12);
                dst[12] = tpid >> 8; dst[13] = tpid & 0xff;
                dst[14] = tci >> 8;  dst[15] = tci & 0xff;
                memcpy(dst + 16, src + 12, len - 12);
                len += 4;
            } else {
                if (len > bsz) {
                    len = bsz;
                    s->truncated++;
                }
                memcpy(dst, src, len);
            }
            if (h->tp_snaplen < h->tp_len)
                s->truncated++;
            sl->len = (uint16_t)len;
            sl->flags = 0;
            s->bytes += len;
            s->left--;
            s->next = (char *)h + h->tp_next_offset;
            t = t + 1 == n ? 0 : t + 1;
            room--;
            got++;
        }
        if (s->left == 0) {
            __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            s->cur = s->cur + 1 == s->block_nr ? 0 : s->cur + 1;
            s->next = NULL;
        }
    }
    __atomic_store_n(&r->tail, t, __ATOMIC_RELEASE);
    s->packets += got;
    return got;
}

/* Is a TPACKET_V3 block ready for us (so poll() would say POLLIN)? */
static inline int pk_rx_ready(struct pk_rx *s)
{
    struct tpacket_block_desc *b =
        (struct tpacket_block_desc *)(s->map + (size_t)s->cur * s->block_size);
    return s->next != NULL ||
        (__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER);
}

/* Reclaim frames the kernel has sent. */
static inline void pk_tx_reclaim(struct pk_tx *s)
{
    while (s->inflight) {
        struct tpacket2_hdr *h =
            (struct tpacket2_hdr *)(s->map + (size_t)s->reclaim * s->frame_size);
        uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
        if (st == TP_STATUS_AVAILABLE) {
        } else if (st & TP_STATUS_WRONG_FORMAT) {
            s->bad_format++;
            __atomic_store_n(&h->tp_status, TP_STATUS_AVAILABLE, __ATOMIC_RELEASE);
        } else {
            break;
        }
        s->reclaim = s->reclaim + 1 == s->frame_nr ? 0 : s->reclaim + 1;
        s->inflight--;
    }
}

/*
 * Copy the pending netmap TX slots [next_tx, head) into free frames, kick
 * the kernel, reclaim what it sent, and set the ring's tail.
 * Returns 0 or -errno of the send().
 */
static inline int pk_tx_flush(struct pk_tx *s, struct netmap_ring *r, int fd)
{
    uint32_t n = r->num_slots, i = s->next_tx, queued = 0;
    int err = 0;
    pk_tx_reclaim(s);
    while (i != r->head && s->inflight < s->frame_nr) {
        struct netmap_slot *sl = &r->slot[i];
        struct tpacket2_hdr *h =
            (struct tpacket2_hdr *)(s->map + (size_t)s->fill * s->frame_size);
        uint32_t len = sl->len;
        if (len > s->frame_size - PK_TX_DATA)
            len = s->frame_size - PK_TX_DATA;
        memcpy((char *)h + PK_TX_DATA, NETMAP_BUF(r, sl->buf_idx), len);
        h->tp_len = len;
        __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
        s->fill = s->fill + 1 == s->frame_nr ? 0 : s->fill + 1;
        s->inflight++;
        s->bytes += len;
        i = i + 1 == n ? 0 : i + 1;
        queued++;
    }
    s->next_tx = i;
    s->packets += queued;
    if (queued) {
        s->kicks++;
        if (send(fd, NULL, 0, MSG_DONTWAIT) < 0 &&
            errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
            err = -errno;
        pk_tx_reclaim(s);
    }
    r->tail = i == 0 ? n - 1 : i - 1;
    return err;
}

#endif
