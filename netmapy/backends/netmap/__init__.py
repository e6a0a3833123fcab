"""The netmap backend: the real netmap kernel module (``/dev/netmap``).

Its parts, one job a file:

    req.py        the NETMAP_REQ_* requests as Python values: encoding a
                  parsed port name into the register request (pure Python)
    preflight.py  checks before a port opens (offloads, link, queues, the
                  module's state) with the exact fix; ``python3 -m
                  netmapy.preflight IF`` (old name, kept)
    port.pyx      the extension: the ioctls, the memory regions
                  (``NetmapMemory``) and the port (``NetmapPort``)
    port.pxd      its C declarations

See docs/netmap.md.
"""

from .port import (NetmapPort, NetmapMemory, open_port, memories, probe_api,  # noqa: F401
                   port_info, abi_sizes, ModuleApi)

__all__ = ["NetmapPort", "NetmapMemory", "open_port", "memories", "probe_api",
           "port_info", "abi_sizes", "ModuleApi"]
