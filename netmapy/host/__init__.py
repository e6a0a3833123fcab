"""The host layer: what netmapy asks of the machine, written once.

Used by the library (``netmapy``, its backends), the middlebox and the tools;
it imports nothing above it (only ``netmapy.errors`` and ``netmapy.units``):

    netns     enter network namespaces (setns through libc), list them
    rundir    the one run directory ($NETMAPY_RUNDIR) and its sub-directories
    iface     interface facts (netlink RTM_GETLINK, SIOCGIF* ioctls)
    ethtool   the SIOCETHTOOL ioctl: the one codec of the ethtool structs
    ntuple    ntuple flow rules (struct ethtool_rx_flow_spec) <-> rules
    cpus      online CPUs, NUMA nodes, CPU bitmaps
    proc      process identity (pid + start time + boot id): "is it alive?"
    cbpf      classic BPF as libpcap makes and runs it: the one libpcap
              binding (compiling tcpdump expressions, its reference
              interpreter), checks, text forms, disassembly

See docs/architecture.md for the layers and what each may import.
"""
