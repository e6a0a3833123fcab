"""Python per-packet functions for `netmapy-bridge --python` (used by the
benchmarks): each gets a memoryview of one packet and returns True to
forward it."""


def accept_all(pkt):
    return True


def drop_udp_port_53(pkt):
    """A typical small decision: drop IPv4 UDP to port 53."""
    return not (len(pkt) >= 38 and pkt[12] == 8 and pkt[13] == 0 and pkt[23] == 17
                and pkt[36] == 0 and pkt[37] == 53)
