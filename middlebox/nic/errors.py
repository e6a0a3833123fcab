"""The errors of the NIC control plane (``middlebox.nic``), and the software
alternative each refusal names."""

import errno
import os

from netmapy.errors import NetmapyError, PortBusy

__all__ = ["NicError", "NicUnsupported", "NicBusy", "alternative"]

class NicError(NetmapyError):
    """A NIC control-plane step that cannot be done as asked."""


class NicUnsupported(NicError):
    """The device cannot do a step (the driver answered EOPNOTSUPP, or the
    capability is fixed off).  Attributes: ``ifname``, ``driver``, ``step``,
    ``errno``, ``alternative`` (the software way, or '')."""

    def __init__(self, ifname, driver, step, err=errno.EOPNOTSUPP,
                 alternative="", detail=""):
        self.ifname, self.driver, self.step = ifname, driver, step
        self.errno = err
        self.alternative = alternative
        dev = "%s (%s)" % (ifname, driver) if driver else ifname
        why = detail or "the device does not support it"
        name = "EOPNOTSUPP" if err == errno.EOPNOTSUPP else \
            errno.errorcode.get(err, str(err))
        msg = "%s: %s: %s (%s: %s)" % (dev, step, why, name, os.strerror(err))
        if alternative:
            msg += "; %s" % alternative
        super().__init__(msg)


class NicBusy(PortBusy):
    """The interface is controlled by another live process (its journal)."""


def alternative(kind, drv, ifname):
    d = drv or "this device"
    return {
        "ntuple": "%s has no ntuple flow steering: use the xdp backend's "
                  "software steering (--steer EXPR)" % d,
        "rss": "%s has no RSS indirection table: steer the flow to a queue "
               "in software with the xdp backend (--steer EXPR) instead" % d,
        "irq": "%s has no interrupts of its own (its packets are processed "
               "in the sender's softirq): pin the workers to cores instead "
               "(the supervisor does), or spread receive processing with RPS "
               "(echo MASK > /sys/class/net/%s/queues/rx-N/rps_cpus)"
               % (d, ifname),
        "channels": "%s cannot change its channel count: create the "
                    "interface with the queues you need" % d,
        "features": "%s cannot change this offload" % d,
    }.get(kind, "")
