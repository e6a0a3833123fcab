"""Behaviour every backend shows, written once (uvloop-style mixins).

A test class for a backend inherits ``BackendContract`` and provides
``channel()``: a context manager yielding a ``Channel`` whose ``tx`` port
sends frames that its ``rx()`` port then receives.  Live backends open both
up front; the pcap backend writes a file and reads it back.
"""

import asyncio
import contextlib
import os
import select
import selectors

import pytest

import netmapy
from netmapy.errors import MemoryMismatch, RingStateError

from conftest import frame_set, make_frame, open_fds


class Channel:
    """tx: a port to send on; rx(): the port that receives what tx sent;
    flush(): make what was sent receivable (pcap: close the writer)."""

    def __init__(self, tx, rx_factory, flush=None, live=True):
        self.tx = tx
        self._rx_factory = rx_factory
        self._rx = None
        self._flush = flush
        self.live = live

    def rx(self):
        if self._rx is None:
            self._rx = self._rx_factory()
        return self._rx

    def flush(self):
        if self._flush is not None:
            self._flush()

    def close(self):
        for p in (self.tx, self._rx):
            if p is not None:
                p.close()


def receive_all(port, n, timeout=3.0):
    """Receive up to n frames as bytes (stops at timeout or end of file)."""
    out = []
    while len(out) < n:
        b = port.recv(timeout=timeout)
        if not b:
            break
        out.extend(b.tobytes())
    return out


def send_all(port, frames):
    sent = port.send(frames)
    assert sent == len(frames)


class BackendContract:
    """Subclasses set ``backend`` and implement ``channel()``."""

    backend = None
    leak_rounds = 10000

    def channel(self, **kw):     # pragma: no cover - abstract
        raise NotImplementedError

    # -------------------------------------------------------------- delivery
    def test_exact_delivery(self):
        frames = frame_set(500)
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            got = receive_all(ch.rx(), len(frames))
        assert len(got) == len(frames)
        assert got == frames

    def test_port_reports_backend_and_rings(self):
        with self.channel() as ch:
            assert ch.tx.backend == self.backend
            assert len(ch.tx.tx_rings) >= 1
            ch.flush()
            rx = ch.rx()
            assert rx.backend == self.backend
            assert len(rx.rx_rings) >= 1
            r = rx.rx_ring
            assert r.num_slots >= 4 and not r.is_tx
            assert rx.info()["backend"] == self.backend

    def test_recv_respects_max_and_releases(self):
        frames = frame_set(40, sizes=(60,))
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            rx = ch.rx()
            got = []
            while len(got) < 40:
                b = rx.recv(max=7, timeout=3)
                assert 0 < len(b) <= 7
                assert b.lengths() == [60] * len(b)
                got.extend(b.tobytes())
            assert got == frames

    def test_batch_without_python_objects(self):
        frames = frame_set(16, sizes=(64,))
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            rx = ch.rx()
            buf = bytearray(16 * 128)
            got = 0
            while got < 16:
                b = rx.recv(max=16 - got, timeout=3)
                assert b
                lens = b.copy_into(memoryview(buf)[got * 128:], stride=128)
                assert b.nbytes == sum(lens)
                got += len(b)
            for i in range(16):
                assert bytes(buf[i * 128:i * 128 + 64]) == frames[i]

    # ----------------------------------------------------------- ring model
    def _wait_rx(self, rx, n, timeout=3.0):
        ring = rx.rx_ring
        import time
        end = time.monotonic() + timeout
        while ring.space() < n and time.monotonic() < end:
            rx.poll(timeout=0.2)
        return ring

    def test_ring_semantics(self):
        frames = frame_set(10, sizes=(60,))
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            rx = ch.rx()
            ring = self._wait_rx(rx, 10)
            assert ring.space() == 10
            assert (ring.tail - ring.head) % ring.num_slots == 10
            # packets are in [head, tail)
            slots = list(ring)
            assert [s.tobytes() for s in slots] == frames
            # release three; they are gone after the sync
            ring.advance(3)
            ring.sync()
            assert ring.space() == 7
            assert ring[ring.head].tobytes() == frames[3]
            # head may not go past tail
            with pytest.raises(RingStateError):
                ring.head = (ring.tail + 1) % ring.num_slots
            ring.advance(7)
            ring.sync()
            assert ring.space() == 0

    def test_tx_ring_space_and_sync(self):
        with self.channel() as ch:
            t = ch.tx.tx_ring
            free = t.space()
            assert free == t.num_slots - 1        # one slot stays with the kernel
            s = t[t.head]
            s.set(make_frame(1))
            assert s.len == 60
            t.advance(1)
            assert t.space() == free - 1
            t.sync()
            ch.flush()
            got = receive_all(ch.rx(), 1)
            assert got == [make_frame(1)]

    def test_slot_views_are_guarded(self):
        frames = frame_set(4, sizes=(60,))
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            rx = ch.rx()
            b = rx.recv(max=4, timeout=3)
            assert len(b) >= 1
            view = memoryview(b[0])
            assert bytes(view) == frames[0]
            with pytest.raises(BufferError):
                b.release()
            with pytest.raises(BufferError):
                rx.rx_ring.advance(1)
            with pytest.raises(BufferError):
                rx.close()
            assert not rx.closed
            full = b[0].buffer
            assert len(full) == rx.rx_ring.buf_size
            full.release()
            view.release()
            b.release()
            assert netmapy.resources()["views"] >= 0

    def test_closed_port(self):
        with self.channel() as ch:
            ch.tx.close()
            ch.tx.close()                 # twice is fine
            assert ch.tx.closed
            with pytest.raises(ValueError):
                ch.tx.send([make_frame(0)])
            with pytest.raises(ValueError):
                ch.tx.fileno()
            assert "closed" in repr(ch.tx)

    # ------------------------------------------------------- event loops
    def test_fileno_with_select_poll_selectors(self):
        with self.channel() as ch:
            ch.flush()
            rx = ch.rx()
            rx.recv(timeout=0)                       # arms the wakeup
            if ch.live:
                send_all(ch.tx, [make_frame(7)])
            r, _, _ = select.select([rx], [], [], 3)
            assert r == [rx]
            p = select.poll()
            p.register(rx.fileno(), select.POLLIN)
            assert p.poll(3000)
            with selectors.DefaultSelector() as sel:
                sel.register(rx, selectors.EVENT_READ)
                assert sel.select(3)
            if ch.live:
                assert receive_all(rx, 1) == [make_frame(7)]

    def test_asyncio_reader(self):
        async def main(ch):
            loop = asyncio.get_running_loop()
            rx = ch.rx()
            rx.recv(timeout=0)
            fut = loop.create_future()
            loop.add_reader(rx.fileno(), lambda: fut.done() or fut.set_result(True))
            try:
                if ch.live:
                    send_all(ch.tx, [make_frame(9)])
                await asyncio.wait_for(fut, 3)
            finally:
                loop.remove_reader(rx.fileno())
            return receive_all(rx, 1)
        with self.channel() as ch:
            ch.flush()
            got = asyncio.run(main(ch))
        if ch.live:
            assert got == [make_frame(9)]

    # ------------------------------------------------------------ buffers
    def test_zero_copy_swap_needs_shared_memory(self):
        frames = frame_set(2, sizes=(60,))
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            rx = ch.rx()
            ring = self._wait_rx(rx, 2)
            assert ring.space() >= 1
            s = ring[ring.head]
            # a TX slot of a port in the same memory: the swap is allowed
            mate = self.same_memory_tx(rx)
            if mate is not None:
                with mate:
                    t = mate.tx_ring[mate.tx_ring.head]
                    old = (s.buf_idx, t.buf_idx)
                    s.swap(t)
                    assert (t.buf_idx, s.buf_idx) == old
                    assert t.tobytes() == frames[0]
                    assert t.flags & netmapy.NS_BUF_CHANGED
                    s.swap(t)                        # and back
            # a port in another memory: refused, with the fix in the message
            with netmapy.open("pipe:contractother{1") as other:
                if other.mem is not rx.mem:
                    t = other.tx_ring[other.tx_ring.head]
                    with pytest.raises(MemoryMismatch, match="copy"):
                        s.swap(t)
                    t.set(s.tobytes())              # the copy path works
                    assert t.tobytes() == frames[0]

    def same_memory_tx(self, port):
        """A TX-capable port sharing port's memory, or None."""
        return None

    # ----------------------------------------------------------- resources
    def open_close_once(self):      # pragma: no cover - abstract
        raise NotImplementedError

    def test_open_close_leaks_nothing(self):
        for _ in range(50):
            self.open_close_once()          # warm caches, lazy imports
        base_fds = open_fds()
        base = netmapy.resources()
        base_rss = rss_kb()
        for _ in range(self.leak_rounds):
            self.open_close_once()
        assert open_fds() == base_fds
        # no memory growth beyond allocator noise (a leak of even one ring
        # per round would be >= 16 KiB * rounds)
        assert rss_kb() - base_rss < 8192
        after = netmapy.resources()
        assert after["ports"] == base["ports"]
        assert after["rings"] == base["rings"]
        assert after["views"] == base["views"]


def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


class CythonExampleContract:
    """The docs' nogil Cython loop, compiled by the test suite, on this
    backend: forward what the channel carries into a pipe and read it
    there; then sum bytes in a nogil loop."""

    def test_cython_nogil_forward(self, nogil_example):
        frames = frame_set(200)
        name = "cyex%d" % os.getpid()
        with self.channel() as ch, netmapy.open("pipe:%s{1" % name) as out_tx, \
                netmapy.open("pipe:%s}1" % name) as out_rx:
            send_all(ch.tx, frames)
            ch.flush()
            n = nogil_example.forward(ch.rx(), out_tx, len(frames), 3000)
            assert n == len(frames)
            assert receive_all(out_rx, len(frames)) == frames

    def test_cython_nogil_checksum(self, nogil_example):
        frames = frame_set(50)
        with self.channel() as ch:
            send_all(ch.tx, frames)
            ch.flush()
            n, nbytes, total = nogil_example.checksum(ch.rx(), len(frames), 3000)
        assert (n, nbytes) == (50, sum(map(len, frames)))
        assert total == sum(sum(f) for f in frames)
