"""The command-line tools that install with netmapy, beside the library.

    pktgen      netmapy-pktgen: generate, sink, ping/pong and replay traffic
    lab         netmapy-lab: the veth lab (namespaces src -> mbox -> sink)
    netbench    netmapy-bench: source -> middlebox -> sink comparisons on the lab
    demo        netmapy-demo: the lab with netmapy-bridge forwarding, live counters
    bench       netmapy-microbench: the binding's own benchmarks (pipes, AF_PACKET)

with what they run: ``pyfuncs`` (per-packet Python functions for
``--python``), ``pymmap_bridge`` (the pure-Python reference bridge) and
``bpf/xdp_redirect.c`` (the XDP redirect reference).  The checkout's
tools/ folder keeps the benchmark scripts that do not install
(tools/bench_*.py) and ``python3 -m tools.lab`` / ``python3 -m tools.demo``.
"""
