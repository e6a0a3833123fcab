"""Moved: this is ``netmapy.tools.pktgen_engine`` (the engine of
netmapy-pktgen, beside its command line netmapy/tools/pktgen.py; see
docs/architecture.md).  The old name stays for code that imports it."""
import importlib
import sys

sys.modules[__name__] = importlib.import_module("netmapy.tools.pktgen_engine")
