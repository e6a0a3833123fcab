"""systemd's readiness protocol (sd_notify), without libsystemd.

Under a ``Type=notify`` unit systemd passes ``$NOTIFY_SOCKET``, an AF_UNIX
datagram socket (a path, or an abstract name written with a leading
``@``); a service tells it how it is doing by sending newline-separated
``KEY=VALUE`` lines there:

    READY=1                      every worker loops: the start is complete
    RELOADING=1                  a reload began (with MONOTONIC_USEC=...)
    READY=1                      ... and ended (applied or refused)
    STOPPING=1                   on the way down
    STATUS=...                   one line `systemctl status` shows
    WATCHDOG=1                   alive (when the unit sets WatchdogSec=)

    n = Notifier()               # does nothing outside systemd
    n.send("READY=1", "STATUS=running")
    if n.watchdog_interval: ...  # send WATCHDOG=1 at least this often
"""

import os
import socket
import time

__all__ = ["Notifier"]


class Notifier:
    """The service's end of $NOTIFY_SOCKET (see the module documentation).
    ``enabled`` is False outside systemd; send() then does nothing."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ
        self.address = env.get("NOTIFY_SOCKET") or None
        if self.address and self.address.startswith("@"):
            self.address = "\0" + self.address[1:]          # the abstract namespace
        self.sock = None
        # WATCHDOG_USEC applies to the process WATCHDOG_PID names (when set)
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        self.watchdog_interval = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2      # ping twice per period
        self._last_ping = 0.0
        self.errors = 0

    @property
    def enabled(self):
        return self.address is not None

    def send(self, *fields):
        """Send KEY=VALUE lines in one datagram; False when there is no
        socket or it failed (never raises: systemd's absence or a full
        socket must not stop a scrubber)."""
        if not self.address:
            return False
        msg = "\n".join(f.replace("\n", " ") if f.startswith("STATUS=") else f
                        for f in fields).encode()
        try:
            if self.sock is None:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.sendto(msg, self.address)
            return True
        except OSError:
            self.errors += 1
            return False

    def ready(self, status=None):
        return self.send("READY=1", *(["STATUS=" + status] if status else []))

    def reloading(self, status=None):
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", "MONOTONIC_USEC=%d" % usec,
                         *(["STATUS=" + status] if status else []))

    def stopping(self, status=None):
        return self.send("STOPPING=1", *(["STATUS=" + status] if status else []))

    def status(self, text):
        return self.send("STATUS=" + text)

    def watchdog(self, healthy=True, now=None):
        """WATCHDOG=1 when due (and `healthy`): systemd restarts the
        service when it stops coming."""
        if self.watchdog_interval is None or not healthy:
            return False
        now = time.monotonic() if now is None else now
        if now - self._last_ping < self.watchdog_interval:
            return False
        self._last_ping = now
        return self.send("WATCHDOG=1")

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None
