"""netmapy.open() and friends (re-exported by the package)."""

from .names import parse_name, PortName
from .backends import resolve
from . import netns as _netns


def open(name, *, netns=None, **options):
    """Open a port by name and return a Port.

    ``name`` is a port name (``"pipe:x{1"``, ``"packet:veth0"``,
    ``"xdp:eth3~4"``, ``"pcap:in.pcap"``, ``"netmap:eth0-2/R"`` ...) or a
    parsed PortName.  ``netns`` opens it inside that network namespace
    (``ip netns`` name); the port keeps working from the caller's namespace.
    Other keyword options go to the backend (``promisc=True``,
    ``slots=N`` ...; see each backend's documentation).

    Errors: PortNameError for a malformed name, BackendUnavailable,
    InterfaceNotFound / InterfaceDown / QueueOutOfRange, NoPrivilege, and
    OSError (with errno) for a failed system call.
    """
    pname = name if isinstance(name, PortName) else parse_name(name)
    backend = resolve(pname)
    with _netns.netns(netns):
        return backend.open(pname, **options)
