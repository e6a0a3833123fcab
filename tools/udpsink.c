/*
 * udpsink: a real UDP server for the benchmarks -- binds ADDR:PORT, reads
 * datagrams in batches (recvmmsg) and counts them by source: those from
 * VALID_SRC (the "valid" client) and the others.  On SIGTERM or SIGINT it
 * prints one JSON line and exits:
 *
 *   {"valid": N, "valid_bytes": B, "other": M, "other_bytes": C}
 *
 * SIGUSR1 prints the same line without exiting (a running total).
 *
 *   cc -O2 -o udpsink tools/udpsink.c
 *   ip netns exec NS ./udpsink 10.250.0.2 53 10.250.0.1 [RCVBUF_BYTES]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BATCH 64

static volatile sig_atomic_t stop, report;
static void on_stop(int s) { (void)s; stop = 1; }
static void on_report(int s) { (void)s; report = 1; }

static struct in_addr valid;
static uint64_t nv, bv, no, bo;
static struct sockaddr_in from[BATCH];
static struct mmsghdr msgs[BATCH];
static struct iovec iov[BATCH];
static char bufs[BATCH][2048];

/* one recvmmsg, counted; returns what it returned */
static int take(int fd, int flags)
{
    int i, n;
    for (i = 0; i < BATCH; i++) {
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof(bufs[i]);
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &from[i];
        msgs[i].msg_hdr.msg_namelen = sizeof(from[i]);
    }
    n = recvmmsg(fd, msgs, BATCH, flags, NULL);
    for (i = 0; i < n; i++) {
        if (from[i].sin_addr.s_addr == valid.s_addr) {
            nv++;
            bv += msgs[i].msg_len;
        } else {
            no++;
            bo += msgs[i].msg_len;
        }
    }
    return n;
}

static void print_counts(void)
{
    printf("{\"valid\": %llu, \"valid_bytes\": %llu, \"other\": %llu, \"other_bytes\": %llu}\n",
           (unsigned long long)nv, (unsigned long long)bv, (unsigned long long)no,
           (unsigned long long)bo);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct sockaddr_in me;
    struct sigaction sa;
    int fd, rcvbuf = argc > 4 ? atoi(argv[4]) : 32 << 20;

    if (argc < 4) {
        fprintf(stderr, "usage: udpsink ADDR PORT VALID_SRC [RCVBUF_BYTES]\n");
        return 2;
    }
    memset(&me, 0, sizeof(me));
    me.sin_family = AF_INET;
    me.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &me.sin_addr) != 1 || inet_pton(AF_INET, argv[3], &valid) != 1) {
        fprintf(stderr, "udpsink: bad address\n");
        return 2;
    }
    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        perror("udpsink: socket");
        return 1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    if (bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0) {
        perror("udpsink: bind");
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;             /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_report;
    sigaction(SIGUSR1, &sa, NULL);
    printf("{\"ready\": true}\n");
    fflush(stdout);
    while (!stop) {
        if (take(fd, MSG_WAITFORONE) < 0 && errno != EINTR) {
            perror("udpsink: recvmmsg");
            return 1;
        }
        if (report) {
            report = 0;
            print_counts();
        }
    }
    while (take(fd, MSG_DONTWAIT) > 0)   /* what is queued was delivered too */
        ;
    print_counts();
    return 0;
}
