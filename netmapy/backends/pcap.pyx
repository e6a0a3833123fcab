# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""pcap backend: capture files as ports.

``netmapy.open("pcap:in.pcap")`` reads a capture (classic pcap or pcapng,
through libpcap) as a port with one RX ring; the port's ``eof`` turns true
when the file is exhausted.  ``netmapy.open("pcap:out.pcap", mode="w")``
writes a classic pcap (Ethernet, microsecond timestamps, readable by
tcpdump and Wireshark) from a port with one TX ring.

Capture timestamps of received packets: ``port.timestamps(batch)`` (ns).
A file that ends inside a record delivers every packet before the cut and
then raises CaptureFileError naming the file; frames longer than the
buffer size are cut to it and counted (``stats()['rx_truncated']``).
"""

from libc.stdint cimport uint16_t, uint32_t, uint64_t, uint8_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, strncpy
from netmapy.includes.abi cimport netmap_ring, netmap_slot, NETMAP_BUF
from netmapy.includes.system cimport gettimeofday, timeval, EIO, pollfd
from netmapy.includes.pcap cimport *
from netmapy.core import open_or_undo
from netmapy.core cimport Port, Batch

import os
import errno as _errno

from ..errors import CaptureFileError, BackendError

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    enum:
        EFD_CLOEXEC
        EFD_NONBLOCK


cdef class PcapPort(Port):

    def __init__(self, name, **kw):
        Port.__init__(self, name, None)
        self.rx = NULL
        self.dead = NULL
        self.dumper = NULL
        self.ts_ns = NULL
        self.evfd = -1

    def _open(self, mode="r", slots=None, buf_size=None, memid=None, snaplen=65535):
        cdef char errbuf[PCAP_ERRBUF_SIZE]
        cdef uint32_t nslots
        name = self.name
        self.path = name.ifname
        if mode not in ("r", "w"):
            raise ValueError("mode must be 'r' (read the capture as RX) or 'w' "
                             "(write TX packets to it), not %r" % (mode,))
        self.direction = mode
        nslots = int(slots or 1024)
        from netmapy.core import anon_memory
        mid = memid if memid is not None else (name.memid or 1)
        self.mem = anon_memory(mid)
        path = os.fsencode(self.path)
        if len(path) >= sizeof(self.path_c):
            raise CaptureFileError(self.path, "the path is too long", _errno.ENAMETOOLONG)
        strncpy(self.path_c, path, sizeof(self.path_c) - 1)
        if mode == "r":
            if not os.path.exists(self.path):
                raise CaptureFileError(self.path, "no such capture file (to write one, "
                                       "open it with mode='w')", _errno.ENOENT)
            self.rx = pcap_open_offline_with_tstamp_precision(
                path, PCAP_TSTAMP_PRECISION_NANO, errbuf)
            if self.rx == NULL:
                msg = errbuf.decode("utf-8", "replace")
                if not os.access(self.path, os.R_OK):
                    raise CaptureFileError(self.path, "cannot read it: " + msg, _errno.EACCES)
                raise CaptureFileError(self.path, "not a readable capture: " + msg)
            self.push_undo("close the capture", self._close_rx)
            dlt = pcap_datalink(self.rx)
            if dlt != DLT_EN10MB:
                raise CaptureFileError(
                    self.path, "link type %s: netmapy ports carry Ethernet frames; "
                    "convert it first (e.g. editcap -T ether)" % (
                        (<bytes>pcap_datalink_val_to_name(dlt)).decode()
                        if pcap_datalink_val_to_name(dlt) != NULL else dlt))
            self.ring_init_port(0, 1, 0, 0)
            self.push_undo("free the rings", self._close_rings)
            self.alloc_rings(nslots, nslots)
            self.ts_ns = <uint64_t *>calloc(nslots, sizeof(uint64_t))
            if self.ts_ns == NULL:
                raise MemoryError()
            self.evfd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK)
        else:
            self.dead = pcap_open_dead_with_tstamp_precision(
                DLT_EN10MB, snaplen, PCAP_TSTAMP_PRECISION_MICRO)
            if self.dead == NULL:
                raise MemoryError()
            self.push_undo("close the writer", self._close_tx)
            self.dumper = pcap_dump_open(self.dead, path)
            if self.dumper == NULL:
                msg = pcap_geterr(self.dead).decode("utf-8", "replace")
                raise CaptureFileError(self.path, "cannot write it: " + msg,
                                       _errno.EACCES if "ermission" in msg else _errno.EIO)
            self.ring_init_port(1, 0, 0, 0)
            self.push_undo("free the rings", self._close_rings)
            self.alloc_rings(nslots, nslots)
            self.evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)
        if self.evfd < 0:
            raise OSError(_errno.EMFILE, "eventfd")
        self.push_undo("close the eventfd", self._close_evfd)
        self.fd = self.evfd
        self._opened("pcap")

    def _close_evfd(self):
        if self.evfd >= 0:
            os.close(self.evfd)
            self.evfd = -1

    def _close_rx(self):
        if self.rx != NULL:
            pcap_close(self.rx)
            self.rx = NULL
        free(self.ts_ns)
        self.ts_ns = NULL

    def _close_tx(self):
        cdef int i
        if self.dumper != NULL:
            # hand over what the user queued but never synced
            if self.ntx and self.txr != NULL and self.txr[0] != NULL:
                self.b_txsync(0)
            pcap_dump_close(self.dumper)
            self.dumper = NULL
        if self.dead != NULL:
            pcap_close(self.dead)
            self.dead = NULL

    cdef int c_rewind(self) noexcept nogil:
        """Read the capture again from its first frame (after eof): what
        is already in the RX ring stays.  0, or -1 (error kept)."""
        cdef char errbuf[PCAP_ERRBUF_SIZE]
        cdef pcap_t *h
        if self.rx == NULL:
            return self.fail(EIO, "rewind: the capture is not open for reading")
        h = pcap_open_offline_with_tstamp_precision(self.path_c, PCAP_TSTAMP_PRECISION_NANO,
                                                    errbuf)
        if h == NULL:
            return self.fail(EIO, "rewind: the capture cannot be read again")
        pcap_close(self.rx)
        self.rx = h
        self.eof = False
        self.rewinds += 1
        return 0

    def rewind(self):
        """Read the capture again from the start (replay loops)."""
        if self.c_rewind() < 0:
            self.raise_error()

    cdef int b_rxsync(self, uint32_t i) noexcept nogil:
        cdef netmap_ring *r = self.rxr[0]
        cdef uint32_t n = r.num_slots, t = r.tail, room, got = 0, ln
        cdef pcap_pkthdr *h
        cdef const unsigned char *data
        cdef int rc
        cdef netmap_slot *s
        if self.pending_err:
            self.err = self.pending_err
            self.err_kind = 3
            strncpy(self.errmsg, self.pending_msg, sizeof(self.errmsg) - 1)
            self.pending_err = 0
            return -1
        if self.eof:
            return 0
        room = (r.head + n - t - 1) % n
        while room:
            rc = pcap_next_ex(self.rx, &h, &data)
            if rc == 1:
                s = &r.slot[t]
                ln = h.caplen
                if ln > r.nr_buf_size:
                    ln = r.nr_buf_size
                    self.rx_truncated += 1
                elif h.caplen < h.len:
                    self.rx_truncated += 1
                memcpy(NETMAP_BUF(r, s.buf_idx), data, ln)
                s.len = <uint16_t>ln
                s.flags = 0
                self.ts_ns[t] = <uint64_t>h.ts.tv_sec * 1000000000ULL + <uint64_t>h.ts.tv_usec
                self.rx_bytes += ln
                t = t + 1 if t + 1 < n else 0
                room -= 1
                got += 1
            elif rc == PCAP_ERROR_BREAK:
                self.eof = True
                break
            else:
                self.eof = True
                strncpy(self.pending_msg, pcap_geterr(self.rx), sizeof(self.pending_msg) - 1)
                self.pending_err = EIO
                break
        self.rx_packets += got
        r.tail = t
        if self.pending_err and got == 0:
            return self.b_rxsync(i)
        return 0

    cdef int b_txsync(self, uint32_t i) noexcept nogil:
        cdef netmap_ring *r = self.txr[0]
        cdef uint32_t n = r.num_slots, j = self.txk[0].hwcur
        cdef pcap_pkthdr h
        cdef timeval tv
        cdef netmap_slot *s
        if j == r.head:
            r.tail = r.head - 1 if r.head else n - 1
            return 0
        gettimeofday(&tv, NULL)
        h.ts.tv_sec = tv.tv_sec
        h.ts.tv_usec = tv.tv_usec
        while j != r.head:
            s = &r.slot[j]
            h.caplen = s.len
            h.len = s.len
            pcap_dump(<unsigned char *>self.dumper, &h, <unsigned char *>NETMAP_BUF(r, s.buf_idx))
            self.tx_packets += 1
            self.tx_bytes += s.len
            j = j + 1 if j + 1 < n else 0
        if pcap_dump_flush(self.dumper) != 0:
            return self.fail(EIO, "writing the capture file")
        r.tail = r.head - 1 if r.head else n - 1
        return 0

    cdef int b_pollfds(self, int events, pollfd *fds) noexcept nogil:
        return 0      # a file is always ready

    def timestamps(self, Batch batch):
        """Capture times (integer nanoseconds since the epoch) of a batch."""
        cdef netmap_ring *r
        self._check_open()
        if batch.port is not self or self.ts_ns == NULL:
            raise ValueError("timestamps() takes a batch received from this port")
        r = self.rxr[batch.ring]
        return [self.ts_ns[(batch.start + j) % r.num_slots] for j in range(batch.n)]

    def stats(self):
        return dict(rx_packets=self.rx_packets, rx_bytes=self.rx_bytes,
                    rx_truncated=self.rx_truncated, tx_packets=self.tx_packets,
                    tx_bytes=self.tx_bytes)

    def _backend_info(self):
        return {"path": self.path, "mode": self.direction}


def open_port(name, **kw):
    return open_or_undo(PcapPort(name), kw)
