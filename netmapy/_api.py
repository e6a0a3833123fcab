"""netmapy.open() and friends (re-exported by the package)."""

from typing import TYPE_CHECKING, Any, Optional, Union

from .names import parse_name, PortName
from .backends import resolve
from .host import netns as _netns

if TYPE_CHECKING:
    from .core import Port


def open(name: Union[str, PortName, None] = None, *, iface: Optional[str] = None,
         queue: Optional[int] = None, netns: Optional[str] = None,
         backend: Optional[str] = None, **options: Any) -> "Port":
    """Open a port and return a Port.

    ``name`` is a port name (``"pipe:x{1"``, ``"packet:veth0"``,
    ``"xdp:eth3~4"``, ``"pcap:in.pcap"``, ``"netmap:eth0-2/R"`` ...) or a
    PortName value (``PortName.interface("nb-mi0", "xdp", queue=1)``: an
    interface whose name the string grammar cannot spell, such as one with
    a '-', is opened this way).  Or, instead of a name, ``iface=`` the
    interface's Linux name as it is (and ``queue=N`` for ring pair N):
    ``netmapy.open(iface="nb-mi0", queue=1, backend="xdp")``.

    ``netns`` opens it inside that network namespace (``ip netns`` name);
    the port keeps working from the caller's namespace.  ``backend`` forces
    an implementation for a ``netmap:`` name or an ``iface=`` ("netmap",
    "xdp", "packet", "pipe") instead of the best available one.  Other
    keyword options go to the backend (``promisc=True``, ``slots=N``, the
    xdp backend's ``host=True`` for a host ring beside ``~N`` ...; see each
    backend's documentation).

    Errors: PortNameError for a malformed name (InterfaceNameError for an
    interface name Linux would refuse), BackendUnavailable,
    InterfaceNotFound / InterfaceDown / QueueOutOfRange, NoPrivilege, and
    OSError (with errno) for a failed system call.
    """
    if iface is not None:
        if name is not None:
            raise TypeError("open(): give a port name or iface=, not both")
        pname = PortName.interface(iface, "netmap", queue)
    elif queue is not None:
        raise TypeError("open(): queue= goes with iface= (a port name carries its own ring)")
    elif name is None:
        raise TypeError("open() needs a port name, a PortName or iface=")
    elif isinstance(name, PortName):
        pname = name.canonical()
    else:
        pname = parse_name(name)
    if backend is not None:
        from .backends import BACKENDS
        from .errors import BackendUnavailable
        if backend not in BACKENDS:
            raise BackendUnavailable("unknown backend %r (known: %s)" % (backend, ", ".join(BACKENDS)))
        if backend != "netmap" and pname.backend in ("netmap", "vale"):
            pname = pname.with_backend(backend)
        chosen = BACKENDS[backend]
    else:
        chosen = resolve(pname)
    with _netns.netns(netns):
        return chosen.open(pname, **options)
