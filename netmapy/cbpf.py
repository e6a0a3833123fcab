"""Moved: this is ``netmapy.host.cbpf`` (docs/architecture.md says where each part
lives).  The old name stays for code that imports it."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("netmapy.host.cbpf")
