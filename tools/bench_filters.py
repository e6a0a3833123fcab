"""Per-packet cost of the two filter paths on one core (issue 13).

    python3 -m tools.bench_filters [--cpu 1] [--repeat 5] [--json]

For a few typical tcpdump expressions (a port match, a long `or` chain, a
byte-offset test, and `protochain`, a loop), each over a frame it matches
and one it does not:

* Filter: middlebox.Filter's verdict in its nogil C loop over the frames,
  as the workers run it (libpcap's interpreter, bpf_filter; netmapy's own
  for programs with loops), measured with the monotonic clock;
* XDP: the xdp backend's translation run in the kernel with BPF_PROG_RUN
  and a repeat count (the kernel's own time per run), minus the same run of
  a program that only returns XDP_PASS (the test-run harness per packet),
  measured in the same run.

Medians of --repeat measurements, pinned to --cpu.  A noisy shared machine
moves the absolute figures: compare the columns of one run.
"""

import ipaddress
import json
import os
import statistics
import struct
import sys

import click

from netmapy import cli


def udp4(dst, dport, payload=b"\x01\x02\x03\x04" + bytes(14)):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 1, 0, 64, 17, 0,
                     ipaddress.ip_address("10.9.0.1").packed, ipaddress.ip_address(dst).packed)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + \
        struct.pack("!HHHH", 4000, dport, 8 + len(payload), 0) + payload


def ipv6_chain(nexts, last=6):
    payload = bytes(20)
    nh = last
    for h in reversed(nexts):
        payload = bytes([nh, 0]) + bytes(6) + payload
        nh = h
    return b"\x02" * 6 + b"\x04" * 6 + b"\x86\xdd" + \
        struct.pack("!IHBB", 6 << 28, len(payload), nh, 64) + bytes(32) + payload


HOSTS = " or ".join("host 10.0.%d.%d" % (i // 200, i % 200 + 1) for i in range(64))
CASES = [
    # name, expression, matching frame, non-matching frame
    ("port match", "udp dst port 53", udp4("10.0.0.1", 53), udp4("10.0.0.1", 54)),
    ("64-host `or` chain", HOSTS, udp4("10.0.0.64", 9), udp4("10.7.7.7", 9)),
    ("byte offsets", "udp[8:4] = 0x01020304 and ip[8] > 32", udp4("10.0.0.1", 9),
     udp4("10.0.0.1", 9, b"\x05" * 18)),
    ("protochain (loop)", "ip6 protochain 6", ipv6_chain([0, 60, 43]), ipv6_chain([0, 60], 17)),
]


def measure(args):
    from middlebox.filter import Filter
    from netmapy import cbpf, xdpprog
    from netmapy.backends import xdp
    os.sched_setaffinity(0, {args.cpu})
    a = xdpprog.Asm()
    a.ret(xdpprog.XDP_PASS)
    base_fd = xdp.load_program(a, "netmapy_bench")
    rows = []
    try:
        for name, expr, yes, no in CASES:
            insns = cbpf.compile_expression(expr)
            f = Filter().add_expression(expr)
            fd = xdp.load_program(xdpprog.steer_program(insns, match_action=xdpprog.XDP_TX,
                                                        source=repr(expr)), "netmapy_bench")
            try:
                for which, fr in (("match", yes), ("no match", no)):
                    want = cbpf.pcap_filter(insns, fr) != 0
                    assert want == (which == "match"), (expr, which)
                    fil, raw, base = [], [], []
                    for _ in range(args.repeat):
                        ns, passed = f.time_verdicts([fr] * 16, args.rounds)
                        assert passed == (16 if want else 0)
                        fil.append(ns)
                        v, t = xdp.test_run_timed(fd, fr, args.rounds * 16)
                        assert (v == xdpprog.XDP_TX) == want
                        raw.append(t)
                        base.append(xdp.test_run_timed(base_fd, fr, args.rounds * 16)[1])
                    r, b = statistics.median(raw), statistics.median(base)
                    rows.append(dict(case=name, expr=expr if len(expr) < 60 else expr[:57] + "...",
                                     frame=which, cbpf=len(insns),
                                     filter_ns=round(statistics.median(fil), 1),
                                     xdp_ns=r, xdp_harness_ns=b, xdp_net_ns=max(0, r - b)))
            finally:
                os.close(fd)
    finally:
        os.close(base_fd)
    return rows


@cli.command("bench_filters", epilog=__doc__.split("\n\n", 1)[1])
@click.option("--cpu", type=cli.IntRange(min=0), default=1, show_default=True,
              help="the core to run on")
@click.option("--repeat", type=cli.IntRange(min=1), default=5, show_default=True,
              help="measurements per figure (median)")
@click.option("--rounds", type=cli.IntRange(min=1), default=20000, show_default=True,
              help="rounds of 16 frames per measurement")
@click.option("--json", is_flag=True, help="the figures as JSON")
@cli.common_options(version=False)
@cli.pass_args
def command(args):
    """Per-packet cost of the two filter paths on one core."""
    run(args)


def run(args):
    rows = measure(args)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("%-20s %-9s %5s %12s %10s %12s %10s" % ("expression", "frame", "cBPF", "Filter ns",
                                                "XDP ns", "(harness)", "XDP net"))
    for r in rows:
        print("%-20s %-9s %5d %12.1f %10d %12d %10d" % (
            r["case"], r["frame"], r["cbpf"], r["filter_ns"], r["xdp_ns"], r["xdp_harness_ns"],
            r["xdp_net_ns"]))


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":
    sys.exit(main())
