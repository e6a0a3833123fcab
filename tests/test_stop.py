"""The one stop request (netmapy.stop): every nogil loop of netmapy and
middlebox ends on it; C signal handlers a program installs set it, also
while a loop never returns to Python; without them, Python's own handlers
still run when a signal interrupts a loop's wait."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import netmapy
from netmapy import fastpath, stop
from netmapy.tools import pktgen_engine as pktgen
from middlebox import lb, loop
from middlebox.filter import Filter

from conftest import stop_within

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_n = [0]


def uniq(tag):
    _n[0] += 1
    return "%s%d_%d" % (tag, os.getpid(), _n[0])


def child(body):
    """A Python child running `body` (it prints "ready" once its loop is
    about to start)."""
    code = "import os, signal, sys, time\nimport netmapy\nfrom netmapy import fastpath, stop\n" + \
        textwrap.dedent(body)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    line = p.stdout.readline()
    assert line.strip() == "ready", line + p.communicate(timeout=10)[1]
    time.sleep(0.2)                 # into the loop's poll()
    return p


# A loop that would wait a minute in poll(): only the signal can end it soon.
RECEIVE = """
rx = netmapy.open("pipe:%s}0")
tx = netmapy.open("pipe:%s{0")
%s
print("ready", flush=True)
res = fastpath.receive(rx, wait_ms=60000)
print("returned", res["packets"], stop.signal_received(), flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_installed_handlers_end_a_nogil_loop_in_the_main_thread(sig):
    name = uniq("sh")
    p = child(RECEIVE % (name, name, "stop.install_handlers()\n"
                         "assert signal.getsignal(signal.SIGTERM) is stop.handler"))
    out, err = stop_within(p, sig)
    assert p.returncode == 0, err
    assert out.split() == ["returned", "0", str(int(sig))]


def test_without_handlers_ctrl_c_still_interrupts_a_nogil_loop():
    name = uniq("ki")
    p = child(RECEIVE % (name, name, ""))
    out, err = stop_within(p, signal.SIGINT)
    assert p.returncode != 0 and "KeyboardInterrupt" in err, err
    assert "returned" not in out


def test_a_python_handler_that_requests_a_stop_ends_the_loop():
    # what netmapy-lb did: the handler runs although the loop never returns
    name = uniq("ph")
    p = child(RECEIVE % (name, name, "signal.signal(signal.SIGTERM, lambda *a: stop.request())"))
    out, err = stop_within(p, signal.SIGTERM)
    assert p.returncode == 0, err
    assert out.split() == ["returned", "0", "0"]


def test_restore_puts_the_previous_handlers_back():
    code = """
    def mine(*a):
        pass
    signal.signal(signal.SIGTERM, mine)
    stop.install_handlers()
    assert stop.handlers_installed() == sorted([signal.SIGINT, signal.SIGTERM])
    stop.restore_handlers()
    assert signal.getsignal(signal.SIGTERM) is mine
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)      # mine: ignored
    print("alive", stop.requested(), flush=True)
    """
    p = subprocess.run([sys.executable, "-c", "import os, signal\nfrom netmapy import stop\n" +
                        textwrap.dedent(code)], capture_output=True, text=True, cwd=REPO,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ready", "alive", "False"]


def test_one_flag_for_every_module():
    try:
        for req in (stop.request, fastpath.stop, pktgen.stop, lb.stop, loop.stop):
            stop.reset()
            assert not (stop.requested() or fastpath.stopping() or loop.stopping())
            req()
            assert stop.requested() and fastpath.stopping() and loop.stopping()
    finally:
        stop.reset()


def _pipes(name, n=1):
    m = [netmapy.open("pipe:%s{%d" % (name, k)) for k in range(n)]
    s = [netmapy.open("pipe:%s}%d" % (name, k)) for k in range(n)]
    return m, s


def _loops():
    """Every long-running loop, each set up to wait (idle input, or an
    output that is full), as (name, start) where start() returns the
    callable to run and the ports to close."""
    def blocked_tx():
        (m,), (s,) = _pipes(uniq("tx"))
        gen = pktgen.Generator()
        return (lambda: pktgen.transmit(m, gen)), [m, s]     # s never reads: full

    def receive():
        (m,), (s,) = _pipes(uniq("rx"))
        return (lambda: pktgen.receive(s)), [m, s]

    def fast_forward():
        (a, b), (sa, sb) = _pipes(uniq("ff"), 2)
        return (lambda: fastpath.forward(sa, b)), [a, b, sa, sb]

    def fast_bridge():
        (a, b), (sa, sb) = _pipes(uniq("fb"), 2)
        return (lambda: fastpath.bridge(sa, sb)), [a, b, sa, sb]

    def mb_bridge():
        (a, b), (sa, sb) = _pipes(uniq("mb"), 2)
        return (lambda: loop.bridge(sa, sb, Filter(), Filter(), bytearray(256))), [a, b, sa, sb]

    def mb_offload():
        (a, b), (sa, sb) = _pipes(uniq("mo"), 2)
        return (lambda: loop.offload(sa, 0, b, 0, Filter(), bytearray(256))), [a, b, sa, sb]

    def mb_stage():
        (a, b), (sa, sb) = _pipes(uniq("ms"), 2)
        return (lambda: loop.stage(sa, b, Filter(), bytearray(256))), [a, b, sa, sb]

    def mb_merge():
        (a, b), (sa, sb) = _pipes(uniq("mg"), 2)
        return (lambda: loop.merge([sa], b, bytearray(256))), [a, b, sa, sb]

    def balancer():
        (a, o), (sa, so) = _pipes(uniq("lb"), 2)
        bal = lb.Balancer(sa, [("g", [o])])
        return (lambda: bal.run()), [a, o, sa, so]

    return [blocked_tx, receive, fast_forward, fast_bridge, mb_bridge, mb_offload, mb_stage,
            mb_merge, balancer]


@pytest.mark.parametrize("make", _loops(), ids=lambda f: f.__name__)
def test_every_loop_ends_on_the_stop_request(make):
    """From another thread (where no signal interrupts its poll): within
    its poll timeout."""
    stop.reset()
    run, ports = make()
    done = []
    t = threading.Thread(target=lambda: done.append(run()), daemon=True)
    try:
        t.start()
        time.sleep(0.3)
        assert t.is_alive()                  # waiting, as set up
        stop.request()
        t.join(10)
        assert not t.is_alive() and done
    finally:
        stop.request()
        t.join(10)
        stop.reset()
        for p in ports:
            p.close()
