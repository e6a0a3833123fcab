"""NIC control plane: the ethtool steps operators run by hand, as a library.

What CloudFlare's and NetSlice's setup scripts did with ``ethtool`` and
``/proc/irq``: read and change channel counts, the RSS indirection table,
ntuple flow-steering rules, offload features and IRQ affinity -- every change
journaled first, so it can be undone on exit or, after a crash, by the next
start::

    from middlebox.nic import Nic
    with Nic("eth3") as nic:             # restore() on leaving the block
        nic.set_feature("gro", False)    # ethtool -K eth3 gro off
        nic.isolate_queue(4)             # ethtool -X eth3 weight 1 1 1 1 0 1 ...
        loc = nic.add_ntuple("udp4", dport=53, queue=4)
        nic.spread_irqs()                # one queue IRQ per CPU, NUMA-local first
        print(nic.show())

Everything goes through the kernel directly: the ``SIOCETHTOOL`` ioctl on an
``AF_INET`` socket (the structs are ``netmapy.host.ethtool``'s, the one
ethtool codec of netmapy; ``LAYOUT`` lists their sizes and offsets, checked
against a C compiler by the tests), ``/proc/interrupts``,
``/proc/irq/N/smp_affinity_list`` and the device's ``numa_node`` in sysfs.
``netns=NAME`` acts on an interface inside a network namespace: the ioctl
socket is created there (IRQs and sysfs device files are global).

``dry_run=True`` changes nothing: each step prints and returns the equivalent
command line (``ethtool -K eth3 gro off``); ``commands()`` lists the commands
of what a real Nic did.  A step the device cannot do raises ``NicUnsupported``
naming the device, the step, the errno and the software alternative.

The journal (``Journal``) is a JSON file in ``nic/`` of netmapy's run
directory (``netmapy.host.rundir``: ``$NETMAPY_RUNDIR``, default
``/dev/shm/netmapy-UID``) with the owner's pid and start time and one undo
record per change, written (fsync, atomic rename) *before* the change is
applied.  ``Journal.repair(ifname)`` undoes what a dead owner left behind;
a new ``Nic`` on the interface does it on its own at start.

The package, one job a file: ``errors`` (NicError and kin), ``journal`` (the
undo log), ``device`` (``Nic``: the steps); the ethtool structs and the
ntuple rule codec are the host layer's (``netmapy.host.ethtool``,
``netmapy.host.ntuple``).
"""
from netmapy.host.ethtool import LAYOUT, FEATURE_ALIASES  # noqa: F401
from netmapy.host.ntuple import FLOW_TYPES  # noqa: F401

from .errors import NicError, NicUnsupported, NicBusy  # noqa: F401
from .journal import Journal, journal_dir, journal_path  # noqa: F401
from .device import (Nic, build_indir, parse_cpulist, format_cpulist,  # noqa: F401
                     online_cpus, read_interrupts, encode_flow_spec, decode_flow_spec)

__all__ = [
    "Nic", "Journal", "NicError", "NicUnsupported", "NicBusy",
    "journal_path", "build_indir", "parse_cpulist", "format_cpulist",
    "FEATURE_ALIASES", "LAYOUT",
]
