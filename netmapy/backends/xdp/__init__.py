"""The xdp backend: netmap rings over AF_XDP sockets (``xdp:eth3~4``).

Its parts, one job a file:

    prog.py      the eBPF assembler, the programs the backend attaches or
                 runs, and the classic BPF -> eBPF translator (pure Python:
                 nothing here touches the kernel)
    bpf.pyx      the bpf() calls: loading programs (the verifier's word when
                 it refuses one), what an interface runs, test runs; the
                 backend's errors
    attach.pyx   the program on one interface: the dispatcher, its maps and
                 its attachment, shared across processes under a lock
    port.pyx     the port (``XdpPort``), its UMEM (``Umem``), the exit
                 hook and the opt-in cleanup on signals; port.pxd declares
                 its types
    (C: netmapy/includes/nm_xdp.h, declared in netmapy/includes/xdp.pxd)

``import netmapy.backends.xdp`` gives the backend's public names (what the
docs call ``netmapy.backends.xdp.XdpPort`` & co; a ready-made loop over
xdp ports is ``netmapy.fastpath.bridge``, as over any port); options and design
are in port.pyx's docstring and docs/xdp.md.
"""

from .bpf import (load_program, test_run, test_run_timed, attach_program,  # noqa: F401
                  detach_program, xdp_program, XdpUnsupported, XdpProgramInUse)
from .attach import attachments  # noqa: F401
from .port import (XdpPort, Umem, open_port, cleanup_all,  # noqa: F401
                   install_signal_cleanup)
from .prog import compile_filter, SteerError, BpfTranslateError  # noqa: F401

__all__ = ["XdpPort", "Umem", "open_port", "compile_filter", "SteerError",
           "attach_program", "detach_program", "load_program",
           "BpfTranslateError", "XdpUnsupported", "XdpProgramInUse",
           "attachments", "cleanup_all", "install_signal_cleanup", "test_run",
           "test_run_timed", "xdp_program"]
