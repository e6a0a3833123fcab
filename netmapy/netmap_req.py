"""Moved: this is ``netmapy.backends.netmap.req`` (docs/architecture.md says where each part
lives).  The old name stays for code that imports it."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("netmapy.backends.netmap.req")
