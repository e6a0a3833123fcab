"""Moved: this is ``netmapy.host.iface`` (the host layer, docs/architecture.md).
The old name stays for code that imports it."""
import sys

from netmapy.host import iface as _moved

sys.modules[__name__] = _moved
