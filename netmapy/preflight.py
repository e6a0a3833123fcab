"""Moved: this is ``netmapy.backends.netmap.preflight`` (its command line is
netmapy/tools/preflight.py; docs/architecture.md says where each part
lives).  The old name stays for code that imports it, and ``python3 -m
netmapy.preflight`` still runs the command."""
import importlib
import sys

if __name__ == "__main__":
    sys.exit(importlib.import_module("netmapy.tools.preflight").main())
sys.modules[__name__] = importlib.import_module("netmapy.backends.netmap.preflight")
