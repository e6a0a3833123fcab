"""The pipe backend: the contract, plus what only pipes promise
(processes, back-pressure without loss, permissions, crash recovery)."""

import contextlib
import multiprocessing as mp
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

import netmapy
from netmapy.errors import PortBusy, PortNameError
from netmapy import fastpath

from backend_contract import BackendContract, CythonExampleContract, Channel, receive_all, send_all
from conftest import frame_set, make_frame, unprivileged

_seq = [0]


def _unique():
    _seq[0] += 1
    return "tp%d_%d" % (os.getpid(), _seq[0])


class TestPipeContract(BackendContract, CythonExampleContract):
    backend = "pipe"

    @contextlib.contextmanager
    def channel(self, **kw):
        name = _unique()
        tx = netmapy.open("pipe:%s{1" % name, **kw)
        rx = netmapy.open("pipe:%s}1" % name, **kw)
        ch = Channel(tx, lambda: rx)
        ch.rx()
        try:
            yield ch
        finally:
            ch.close()

    def same_memory_tx(self, port):
        # every pipe of a parent shares its memory
        return netmapy.open("pipe:%s{77" % port.name.ifname)

    def open_close_once(self):
        with netmapy.open("pipe:leak{1") as a, netmapy.open("pipe:leak}1"):
            pass


# ---------------------------------------------------------------- processes
def _child_rx(name, n, q):
    with netmapy.open("pipe:%s}1" % name) as rx:
        q.put("ready")
        got = receive_all(rx, n, timeout=10)
        q.put(got)


def test_between_processes_exact():
    name = _unique()
    frames = frame_set(3000)
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_rx, args=(name, len(frames), q))
    p.start()
    assert q.get(timeout=10) == "ready"
    with netmapy.open("pipe:%s{1" % name) as tx:
        send_all(tx, frames)
        got = q.get(timeout=20)
    p.join(10)
    assert got == frames


def _slow_consumer(name, n, q, delay):
    with netmapy.open("pipe:%s}1" % name, slots=64) as rx:
        q.put("ready")
        got = []
        while len(got) < n:
            b = rx.recv(max=50, timeout=10)
            if not b:
                break
            got.extend(b.tobytes())
            time.sleep(delay)
        q.put(got)


def test_backpressure_loses_nothing():
    """A sender much faster than its receiver fills the pipe: space() drops
    to 0 and send() waits; every packet arrives, in order."""
    name = _unique()
    frames = frame_set(5000, sizes=(60, 200))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_slow_consumer, args=(name, len(frames), q, 0.001))
    p.start()
    assert q.get(timeout=10) == "ready"
    with netmapy.open("pipe:%s{1" % name, slots=64) as tx:
        # without waiting, only what fits is taken, and it says so
        first = tx.send(frames[:1000], timeout=0)
        assert 0 < first < 1000
        assert tx.tx_ring.space() == 0 or first < 1000
        rest = tx.send(frames[first:])            # waits for room
        assert first + rest == len(frames)
        got = q.get(timeout=60)
    p.join(10)
    assert got == frames


def test_nonblocking_full_ring_reports_zero_space():
    name = _unique()
    with netmapy.open("pipe:%s{1" % name, slots=16) as tx, \
            netmapy.open("pipe:%s}1" % name, slots=16) as rx:
        frames = [make_frame(i) for i in range(100)]
        # 15 fit our TX ring (one slot stays with the backend); the
        # receiver takes nothing until it syncs
        sent = tx.send(frames, timeout=0)
        assert sent == 15
        assert tx.tx_ring.space() == 0
        assert tx.poll(netmapy.POLLOUT, timeout=0) == 0
        rx.rxsync()                          # takes the 15 into its RX ring
        assert rx.rx_ring.space() == 15
        assert tx.poll(netmapy.POLLOUT, timeout=0) == netmapy.POLLOUT
        sent += tx.send(frames[sent:], timeout=0)
        assert sent == 30                    # its RX ring is full now
        rx.rxsync()
        assert tx.tx_ring.space() == 0
        got = receive_all(rx, 30, timeout=1)
        assert got == frames[:30]


def test_blocking_poll_does_not_spin():
    """A receiver blocked in recv() uses (almost) no CPU."""
    name = _unique()
    with netmapy.open("pipe:%s}1" % name) as rx, netmapy.open("pipe:%s{1" % name):
        t0 = time.process_time()
        w0 = time.monotonic()
        b = rx.recv(timeout=0.5)
        assert len(b) == 0
        assert time.monotonic() - w0 >= 0.45
        assert time.process_time() - t0 < 0.1


def test_end_busy_and_permissions(private_rundir):
    name = _unique()
    with netmapy.open("pipe:%s{1" % name) as a:
        ctx = mp.get_context("fork")
        q = ctx.Queue()

        def other():
            try:
                netmapy.open("pipe:%s{1" % name)
                q.put("opened")
            except PortBusy as e:
                q.put(str(e))
        p = ctx.Process(target=other)
        p.start()
        msg = q.get(timeout=10)
        p.join(5)
        assert "already open by process %d" % os.getpid() in msg
        dom = a.info()["domain"]
        assert stat.S_IMODE(os.stat(dom).st_mode) == 0o600
        assert os.path.dirname(dom) == os.path.join(private_rundir, "pipes")
        assert stat.S_IMODE(os.stat(private_rundir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(os.path.dirname(dom)).st_mode) == 0o700
    # both ends closed: the pipe and its files are gone
    assert not [f for f in os.listdir(os.path.dirname(dom)) if f.startswith(name + ".")]


def test_reopen_after_crash_keeps_packets(private_rundir):
    """A receiver killed with SIGKILL leaves its end; the next open of that
    end takes it over and still finds the packets in flight."""
    name = _unique()
    code = ("import netmapy, os, sys, time\n"
            "rx = netmapy.open('pipe:%s}1')\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n" % name)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert child.stdout.readline().strip() == b"ready"
    with netmapy.open("pipe:%s{1" % name) as tx:
        send_all(tx, frame_set(20))
        child.kill()
        child.wait()
        with netmapy.open("pipe:%s}1" % name) as rx:
            assert receive_all(rx, 20, timeout=2) == frame_set(20)


def test_works_without_privilege(private_rundir):
    """Pipes need no capability: a sender/receiver pair in a process whose
    capability sets are empty (setpriv), which cannot even open AF_PACKET."""
    code = ("import socket\n"
            "try:\n"
            "    socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0); print('privileged')\n"
            "except PermissionError:\n"
            "    pass\n"
            "import netmapy\n"
            "with netmapy.open('pipe:np{1') as a, netmapy.open('pipe:np}1') as b:\n"
            "    a.send([b'x' * 60] * 10)\n"
            "    print(len(b.recv(timeout=2)))\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo)
    out = subprocess.run(unprivileged([sys.executable, "-c", code]), capture_output=True,
                         text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"


def test_netmap_spelling_uses_pipe_backend_without_dev_netmap():
    if os.path.exists("/dev/netmap"):
        pytest.skip("/dev/netmap present: netmap: names go to the kernel")
    name = _unique()
    with netmapy.open("netmap:%s{3" % name) as a, netmapy.open("pipe:%s}3" % name) as b:
        assert a.backend == "pipe"
        send_all(a, [make_frame(1)])
        assert receive_all(b, 1) == [make_frame(1)]


def test_fastpath_forward_between_pipes_zero_copy():
    name = _unique()
    with netmapy.open("pipe:%s{1" % name) as src_tx, \
            netmapy.open("pipe:%s}1" % name) as src_rx, \
            netmapy.open("pipe:%s{2" % name) as dst_tx, \
            netmapy.open("pipe:%s}2" % name) as dst_rx:
        frames = frame_set(300)
        send_all(src_tx, frames)
        r = fastpath.forward(src_rx, dst_tx, count=300, seconds=5)
        assert r["packets"] == 300 and r["swapped"]
        assert receive_all(dst_rx, 300) == frames


def test_bad_pipe_names():
    with pytest.raises(PortNameError):
        netmapy.open("pipe:x")
    with pytest.raises(ValueError, match="memory"):
        netmapy.open("pipe:x{1@3")


def test_clean_stale_pipes(private_rundir):
    """Pipes whose processes were all killed are freed by `netmapy pipes
    --clean`; a pipe with a live end is kept."""
    name = _unique()
    code = ("import netmapy, time\n"
            "a = netmapy.open('pipe:%s{1'); b = netmapy.open('pipe:%s}1')\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n" % (name, name))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    assert child.stdout.readline().strip() == b"ready"
    child.kill()
    child.wait()
    keep = _unique()
    with netmapy.open("pipe:%s{1" % keep):
        out = subprocess.run([sys.executable, "-m", "netmapy", "pipes", "--clean"],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        assert "%s: freed 1 stale pipe(s), domain removed" % name in out.stdout
        assert not os.path.exists(os.path.join(private_rundir, "pipes", name + ".mem"))
        assert os.path.exists(os.path.join(private_rundir, "pipes", keep + ".mem"))
