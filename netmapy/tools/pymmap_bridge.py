"""A pure-Python AF_PACKET bridge: the reference a Python-function netmapy
bridge is compared with.  No netmapy, no C of ours: TPACKET_V3 mmap RX rings
read with struct/memoryview in Python, frames written into TPACKET_V2 mmap TX
rings in Python, one send() per batch.  Forwards both ways.

    python3 -m netmapy.tools.pymmap_bridge IF_A IF_B [--seconds S]

(What LAB-NOTES calls "pure Python, TPACKET_V3 mmap ring + batched send".)
"""

import mmap
import select
import signal
import socket
import struct
import sys
import time

import click

from netmapy import cli

SOL_PACKET = 263
PACKET_RX_RING, PACKET_VERSION, PACKET_TX_RING, PACKET_QDISC_BYPASS = 5, 10, 13, 20
PACKET_IGNORE_OUTGOING = 23
TP_STATUS_USER, TP_STATUS_SEND_REQUEST = 1, 1
ETH_P_ALL = 3
BLOCK, NBLOCKS = 1 << 16, 256
FRAME, NFRAMES = 2048, 1024


class RxRing:
    def __init__(self, ifname):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, 2)                 # TPACKET_V3
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.setsockopt(SOL_PACKET, PACKET_RX_RING, struct.pack(
            "IIIIIII", BLOCK, NBLOCKS, FRAME, BLOCK // FRAME * NBLOCKS, 1, 0, 0))
        self.m = mmap.mmap(s.fileno(), BLOCK * NBLOCKS)
        s.bind((ifname, ETH_P_ALL))
        self.s, self.cur = s, 0

    def frames(self):
        """Yield the frames of every ready block (as bytes), returning blocks."""
        m = self.m
        while True:
            off = self.cur * BLOCK
            status, npkts, first = struct.unpack_from("III", m, off + 8)
            if not status & TP_STATUS_USER:
                return
            p = off + first
            for _ in range(npkts):
                nxt, _, _, snap, _, _, mac = struct.unpack_from("IIIIIIH", m, p)
                yield m[p + mac:p + mac + snap]
                p += nxt
            struct.pack_into("I", m, off + 8, 0)                   # back to the kernel
            self.cur = (self.cur + 1) % NBLOCKS


class TxRing:
    def __init__(self, ifname):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        s.setsockopt(SOL_PACKET, PACKET_VERSION, 1)                 # TPACKET_V2
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.setsockopt(SOL_PACKET, PACKET_TX_RING, struct.pack("IIII", 4096, NFRAMES // 2, FRAME, NFRAMES))
        self.m = mmap.mmap(s.fileno(), FRAME * NFRAMES)
        s.bind((ifname, 0))
        self.s, self.cur, self.pending = s, 0, 0

    def put(self, data):
        off = self.cur * FRAME
        if struct.unpack_from("I", self.m, off)[0]:                 # still in flight
            self.flush()
            while struct.unpack_from("I", self.m, off)[0]:
                select.select([], [self.s], [], 0.01)
        self.m[off + 32:off + 32 + len(data)] = data
        struct.pack_into("I", self.m, off + 4, len(data))           # tp_len
        struct.pack_into("I", self.m, off, TP_STATUS_SEND_REQUEST)
        self.cur = (self.cur + 1) % NFRAMES
        self.pending += 1

    def flush(self):
        if self.pending:
            try:
                self.s.send(b"", socket.MSG_DONTWAIT)
            except (BlockingIOError, OSError):
                pass
            self.pending = 0


@cli.command("pymmap_bridge")
@click.argument("if_a", type=cli.IFACE)
@click.argument("if_b", type=cli.IFACE)
@cli.seconds_option()
@cli.common_options(version=False)
@cli.pass_args
def command(a):
    """The pure-Python TPACKET bridge: the reference for a Python-function
    netmapy bridge (see the module docstring)."""
    ra, rb, ta, tb = RxRing(a.if_a), RxRing(a.if_b), TxRing(a.if_a), TxRing(a.if_b)
    stop = []
    signal.signal(signal.SIGTERM, lambda *x: stop.append(1))
    signal.signal(signal.SIGINT, lambda *x: stop.append(1))
    t0 = time.monotonic()
    n = 0
    while not stop and not (a.seconds and time.monotonic() - t0 > a.seconds):
        select.select([ra.s, rb.s], [], [], 0.1)
        for f in ra.frames():
            tb.put(f)
            n += 1
        tb.flush()
        for f in rb.frames():
            ta.put(f)
            n += 1
        ta.flush()
    print("pymmap_bridge: forwarded %d" % n, file=sys.stderr)


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
