# cython: language_level=3
"""One stop request per process, seen by every nogil loop.

The loops of netmapy and middlebox (``netmapy.fastpath``, ``netmapy.tools.pktgen_engine``,
``middlebox.loop``, ``middlebox.lb``)
run without the GIL, so Python signal handlers cannot run while they loop:
a handler that calls ``stop()`` would wait for the loop to end on its own.
Instead they all read one C flag (``stop_flag``, declared in
``netmapy/stop.pxd``):

    from netmapy import stop
    stop.install_handlers()        # SIGINT/SIGTERM set the flag (C handlers)
    try:
        fastpath.forward(a, b)     # returns soon after a signal
    finally:
        stop.restore_handlers()

* ``request()`` sets it (any thread; safe in a signal handler), ``reset()``
  clears it, ``requested()`` reads it, ``wait(timeout)`` sleeps until it is
  set (for a program's own Python loop).
* ``install_handlers(signals)`` is explicit: the library never installs
  signal handlers by itself.  The handlers are C functions that only set the
  flag, so a loop in the main thread sees the signal at once (its poll()
  returns EINTR) and a loop in another thread within one poll timeout.
  ``signal.getsignal()`` reports them as ``netmapy.stop.handler``.
* Without our handlers a loop that gets EINTR lets Python's handlers run
  (``on_eintr()``): Ctrl-C still raises KeyboardInterrupt out of the loop,
  and a Python handler that calls ``request()`` stops it cleanly.
* ``exit_on_signals(signals)`` is the other opt-in, for programs that want
  cleanup rather than a stop request: SIGTERM and SIGHUP (where their
  handlers are still the defaults) raise ``SystemExit``, so ``with``
  blocks, ``finally`` clauses and ``atexit`` run -- the xdp backend closes
  every open port at exit (``netmapy.backends.xdp.cleanup_all``).  The
  commands built on ``netmapy.cli.run`` (the tools and the middlebox) opt
  in; a program that only imports netmapy keeps the handlers it has.
"""

from cpython.exc cimport PyErr_CheckSignals
from posix.signal cimport sigaction, sigaction_t, sigemptyset

import signal as _signal
import threading
import time

stop_flag = 0
stop_signal = 0


cdef void _on_signal(int sig) noexcept nogil:
    global stop_flag, stop_signal
    stop_signal = sig
    stop_flag = 1


cdef int on_eintr() except -1 nogil:
    if stop_flag:
        return 1
    with gil:
        PyErr_CheckSignals()          # Python handlers (main thread only)
    return 1 if stop_flag else 0


def request():
    """Ask every loop of this process to return (signal-safe)."""
    global stop_flag
    stop_flag = 1


def reset():
    """Clear a stop request (before starting loops again)."""
    global stop_flag, stop_signal
    stop_flag = 0
    stop_signal = 0


def requested():
    """True once a stop was requested (by request() or a signal)."""
    return stop_flag != 0


def signal_received():
    """The signal number that requested the stop (0: none, or request())."""
    return stop_signal


def wait(timeout=None):
    """Sleep until a stop is requested or `timeout` seconds pass (None:
    no limit); True when a stop was requested."""
    end = None if timeout is None else time.monotonic() + timeout
    while not stop_flag:
        left = 0.05 if end is None else min(0.05, end - time.monotonic())
        if left <= 0:
            break
        time.sleep(left)
    return stop_flag != 0


def handler(signum, frame):
    """What ``signal.getsignal()`` shows for the signals install_handlers()
    took (the C handler runs instead; this one does the same)."""
    request()


_saved = {}


def install_handlers(signals=(_signal.SIGINT, _signal.SIGTERM)):
    """Make these signals set the stop flag (C-level handlers; from the
    main thread).  restore_handlers() puts the previous ones back."""
    cdef sigaction_t act
    if threading.current_thread() is not threading.main_thread():
        raise ValueError("netmapy.stop.install_handlers() works in the main thread only")
    for s in signals:
        s = int(s)
        if s not in _saved:
            _saved[s] = _signal.getsignal(s)
        _signal.signal(s, handler)      # what Python reports for the signal
        sigemptyset(&act.sa_mask)
        act.sa_flags = 0                # no SA_RESTART: blocking waits return EINTR
        act.sa_handler = _on_signal
        if sigaction(s, &act, NULL) != 0:
            raise OSError("sigaction(%d) failed" % s)


def restore_handlers():
    """Put back the handlers install_handlers() replaced."""
    while _saved:
        s, old = _saved.popitem()
        _signal.signal(s, old if old is not None else _signal.SIG_DFL)


def handlers_installed():
    """The signals whose handler is ours now."""
    return sorted(_saved)


def _exit_handler(signum, frame):
    raise SystemExit(128 + signum)


def exit_on_signals(signals=(_signal.SIGTERM, _signal.SIGHUP)):
    """Make these signals raise SystemExit(128 + signal) in the main thread
    (so ``with`` blocks, ``finally`` clauses and atexit run: every port
    closes) where their handler is still the default one; a program's own
    handlers stay.  Returns whether any was installed (False outside the
    main thread, where Python cannot install handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    done = False
    for s in signals:
        if _signal.getsignal(s) is _signal.SIG_DFL:
            _signal.signal(s, _exit_handler)
            done = True
    return done
