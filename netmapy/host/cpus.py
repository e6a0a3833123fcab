"""CPUs: which are online, which a NUMA node has, which sit near a device,
and the kernel's bitmap text for a set of them (what /sys/.../xps_cpus and
/proc/irq/N/smp_affinity take).  CPU list text ('0-3,8') is parsed and
printed by ``netmapy.units.parse_cpulist`` / ``format_cpulist``.
"""

import os

from ..units import parse_cpulist

__all__ = ["online", "node_cpus", "numa_node", "local_first", "cpumask_hex", "cpu_ticks"]


def _read(path):
    with open(path) as f:
        return f.read().strip()


def online():
    """The online CPUs (/sys/devices/system/cpu/online; else the ones this
    process may run on)."""
    try:
        return parse_cpulist(_read("/sys/devices/system/cpu/online"))
    except (OSError, ValueError):
        return sorted(os.sched_getaffinity(0))


def node_cpus(node):
    """The CPUs of NUMA node ``node``, or None when the machine does not say."""
    try:
        return parse_cpulist(_read("/sys/devices/system/node/node%d/cpulist" % node))
    except (OSError, ValueError):
        return None


def numa_node(device_dir):
    """The NUMA node of a device (its sysfs directory), or None."""
    if device_dir is None:
        return None
    try:
        n = int(_read(os.path.join(device_dir, "numa_node")))
    except (OSError, ValueError):
        return None
    return n if n >= 0 else None


def local_first(ifname):
    """The CPUs this process may run on, those of the interface's NUMA node
    first (all of them, in order, when the machine or device does not say)."""
    allowed = sorted(os.sched_getaffinity(0))
    node = numa_node("/sys/class/net/%s/device" % ifname)
    cpus = node_cpus(node) if node is not None else None
    local = [c for c in (cpus or ()) if c in allowed]
    return local + [c for c in allowed if c not in local] if local else allowed


def cpumask_hex(cpus):
    """Kernel bitmap text (comma-separated 32-bit hex words) for a CPU set."""
    mask = 0
    for c in cpus:
        mask |= 1 << c
    words = []
    while True:
        words.append("%08x" % (mask & 0xffffffff))
        mask >>= 32
        if not mask:
            break
    return ",".join(reversed(words))


def cpu_ticks():
    """{cpu: (busy ticks outside softirq, softirq ticks)} from /proc/stat
    (clock ticks: divide by os.sysconf("SC_CLK_TCK") for seconds)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                p = line.split()
                v = [int(x) for x in p[1:8]]     # user nice system idle iowait irq softirq
                out[int(p[0][3:])] = (v[0] + v[1] + v[2] + v[5], v[6])
    return out
