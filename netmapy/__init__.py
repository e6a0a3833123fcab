"""netmapy: netmap-style packet I/O for Python and Cython.

    import netmapy
    with netmapy.open("pipe:demo{1") as tx, netmapy.open("pipe:demo}1") as rx:
        tx.send([b"\\xff" * 60])
        for pkt in rx.recv(timeout=1):
            print(pkt.len, pkt.tobytes()[:14].hex())

Ports are named as in netmap (``netmap:eth0-1/R``, ``vale0:p``, pipes
``x{1``/``x}1``, the single-RX-queue form ``eth3~4``), with a backend prefix
choosing an implementation (``xdp:``, ``packet:``, ``pipe:``, ``pcap:``).
Every backend presents the same rings and slots (the netmap ABI); see
``netmapy.core`` for the Python objects and ``core.pxd`` for the C API.

An interface whose name the string grammar cannot spell (``nb-mi0``: in
netmap's names a '-' ends the interface name) is opened by value:
``netmapy.open(iface="nb-mi0", queue=1)`` or
``netmapy.open(PortName.interface("nb-mi0", "xdp", queue=1))``.
"""

from .errors import *  # noqa: F401,F403
from .errors import __all__ as _errors_all
from .names import parse_name, PortName, Mode
from ._api import open
from .core import Port, Ring, Slot, Batch, Memory, resources, anon_memory
from select import POLLIN, POLLOUT  # noqa: F401
from .backends import available as backends_available

__version__ = "0.1.0"

NS_BUF_CHANGED = 0x0001
NS_REPORT = 0x0002
NS_FORWARD = 0x0004
NS_MOREFRAG = 0x0020
NR_FORWARD = 0x0004

__all__ = ["open", "parse_name", "PortName", "Mode", "Port", "Ring", "Slot",
           "Batch", "Memory", "resources", "anon_memory", "backends_available",
           "POLLIN", "POLLOUT", "NS_BUF_CHANGED", "NS_REPORT", "NS_FORWARD",
           "NS_MOREFRAG", "NR_FORWARD"] + list(_errors_all)


def get_include():
    """Directory of netmapy's C headers, for building Cython code that
    cimports netmapy (pass it as include_dirs)."""
    import os
    return os.path.join(os.path.dirname(__file__), "includes")
