"""The checkout's lab and benchmark scripts (not installed).

``python3 -m tools.lab`` and ``python3 -m tools.demo`` (and tools.pktgen,
tools.netbench, tools.bench) run the installed commands' code, which lives
in netmapy.tools; tools/bench_*.py are the benchmark scripts behind
docs/benchmarks.md, and setup.sh installs everything on a Debian machine.
"""
