"""The backend registry: one interface, many implementations.

Every backend is a module with ``open_port(name, **options) -> Port`` and an
entry here saying which port kinds it serves and whether this machine can
run it.  ``resolve(name)`` turns a parsed name into the backend that will
serve it; ``netmap:`` names pick the best one available and say which.
"""

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from ..errors import BackendUnavailable

log = logging.getLogger("netmapy")


def _always():
    return True, ""


def _netmap_dev():
    if os.path.exists("/dev/netmap"):
        return True, ""
    return False, "/dev/netmap does not exist (the netmap kernel module is not loaded)"


def _module_ok(mod):
    def check():
        try:
            importlib.import_module("netmapy.backends." + mod)
        except ImportError as e:
            return False, "its extension is not built (%s); reinstall netmapy" % e
        return True, ""
    return check


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    summary: str
    available: Callable[[], Tuple[bool, str]]

    def check(self):
        ok, why = self.available()
        if not ok:
            raise BackendUnavailable("the %s backend is not available here: %s" % (self.name, why))

    def open(self, pname, **kw):
        self.check()
        mod = importlib.import_module("netmapy.backends." + self.module)
        return mod.open_port(pname, **kw)


BACKENDS = {
    "netmap": Backend("netmap", "netmap", "the netmap kernel module (/dev/netmap)", _netmap_dev),
    "xdp": Backend("xdp", "xdp", "AF_XDP sockets and an XDP program", _module_ok("xdp")),
    "packet": Backend("packet", "packet", "AF_PACKET mmap rings, any interface", _module_ok("packet")),
    "pipe": Backend("pipe", "pipe", "shared-memory pipes between processes", _module_ok("pipe")),
    "pcap": Backend("pcap", "pcap", "capture files (read as RX, write as TX)", _module_ok("pcap")),
}

_said: set = set()


def resolve(pname) -> Backend:
    """The backend that will serve a parsed port name.

    An explicit prefix (xdp:, packet:, pipe:, pcap:) is obeyed.  ``netmap:``
    and ``valeX:`` use the netmap module when /dev/netmap exists; otherwise
    netmap pipes go to the pipe backend and interfaces to the best
    kernel-bypass backend available (xdp, then packet), said once at INFO.
    """
    b = pname.backend
    if b in ("netmap", "vale"):
        ok, why = _netmap_dev()
        if ok:
            return BACKENDS["netmap"]
        if b == "vale":
            raise BackendUnavailable("%s: VALE switches need the netmap kernel module: %s"
                                     % (pname, why))
        if pname.is_pipe:
            chosen = "pipe"
        else:
            chosen = "packet"
            if _module_ok("xdp")()[0]:
                chosen = "xdp"
            if pname.mode.name in ("SW", "NIC_SW", "ONE_SW") and chosen == "packet":
                raise BackendUnavailable(
                    "%s: host rings need netmap or the xdp backend: %s" % (pname, why))
        if chosen not in _said:
            _said.add(chosen)
            log.info("netmapy: no /dev/netmap here; %s is served by the %s backend",
                     pname, chosen)
        return BACKENDS[chosen]
    try:
        return BACKENDS[b]
    except KeyError:
        raise BackendUnavailable("unknown backend %r (known: %s)" % (b, ", ".join(BACKENDS)))


def available():
    """{backend: (ok, reason)} for this machine."""
    return {n: b.available() for n, b in BACKENDS.items()}
