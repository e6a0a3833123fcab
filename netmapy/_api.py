"""netmapy.open() and friends (re-exported by the package)."""

from .names import parse_name, PortName
from .backends import resolve
from . import netns as _netns


def open(name, *, netns=None, backend=None, **options):
    """Open a port by name and return a Port.

    ``name`` is a port name (``"pipe:x{1"``, ``"packet:veth0"``,
    ``"xdp:eth3~4"``, ``"pcap:in.pcap"``, ``"netmap:eth0-2/R"`` ...) or a
    parsed PortName.  ``netns`` opens it inside that network namespace
    (``ip netns`` name); the port keeps working from the caller's namespace.
    ``backend`` forces an implementation for a ``netmap:`` name ("netmap",
    "xdp", "packet", "pipe") instead of the best available one.
    Other keyword options go to the backend (``promisc=True``,
    ``slots=N`` ...; see each backend's documentation).

    Errors: PortNameError for a malformed name, BackendUnavailable,
    InterfaceNotFound / InterfaceDown / QueueOutOfRange, NoPrivilege, and
    OSError (with errno) for a failed system call.
    """
    pname = name if isinstance(name, PortName) else parse_name(name)
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
