"""netmapy: inspect ports, names, backends and pipes.

    netmapy backends                 which backends this machine can run
    netmapy name 'netmap:eth3~4'     how a port name parses
    netmapy info packet:eth0         open a port and describe it
    netmapy pipes                    pipe domains and the pipes in use
    netmapy recv PORT -c 10          receive packets and print a line each
"""

import argparse
import json
import os
import sys
import time

from . import cli


def build_parser():
    p = argparse.ArgumentParser(
        description="Inspect netmapy ports, port names, backends and pipes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    cli.add_common(p)
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("backends", help="which backends this machine can run, and why not")
    s = sub.add_parser("name", help="parse a port name and show its parts")
    s.add_argument("port")
    s = sub.add_parser("info", help="open a port and describe its rings and memory")
    s.add_argument("port")
    s.add_argument("--netns", help="open it inside this network namespace (ip netns name)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s = sub.add_parser("pipes", help="list pipe domains and the pipes in use")
    s.add_argument("--clean", action="store_true",
                   help="free pipes whose processes are all gone, remove empty domains")
    s = sub.add_parser("recv", help="receive packets and print one line each")
    s.add_argument("port")
    s.add_argument("-c", "--count", type=int, default=0, help="stop after COUNT packets")
    s.add_argument("-t", "--timeout", type=float, default=None,
                   help="stop after SECONDS without a packet")
    s.add_argument("--netns")
    s.add_argument("--promisc", action="store_true")
    return p


def _name(args):
    from .names import parse_name
    n = parse_name(args.port)
    print("name:      %s" % n)
    print("backend:   %s" % n.backend)
    print("interface: %s" % n.ifname)
    print("mode:      %s%s" % (n.mode.name, "" if n.ring is None else " %d" % n.ring))
    if n.flags:
        print("flags:     %s" % "".join(sorted(n.flags)))
    if n.memid is not None:
        print("memid:     %d" % n.memid)
    for opt, kv in n.options:
        print("option:    %s %s" % (opt, dict(kv)))
    if n.upstream() != str(n):
        print("upstream:  %s" % n.upstream())


def _backends(args):
    from .backends import BACKENDS
    for name, b in BACKENDS.items():
        ok, why = b.available()
        print("%-7s %-9s %s%s" % (name, "available" if ok else "no", b.summary,
                                  "" if ok else "  (%s)" % why))


def _info(args):
    import netmapy
    with netmapy.open(args.port, netns=args.netns) as p:
        info = p.info()
    if args.json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print("%-14s %s" % (k + ":", v))


def _pipes(args):
    from .backends import pipe
    d = pipe.rundir()
    if args.clean:
        for parent, freed, removed in pipe.clean_stale():
            print("%s: freed %d stale pipe(s)%s" % (parent, freed, ", domain removed" if removed else ""))
    doms = pipe.list_domains()
    if not doms:
        print("no pipe domains in %s" % d)
    for parent in doms:
        print("%s (%s)" % (parent, os.path.join(d, parent + ".mem")))


def _recv(args):
    import netmapy
    n = 0
    with netmapy.open(args.port, netns=args.netns, **({"promisc": True} if args.promisc else {})) as p:
        while not args.count or n < args.count:
            b = p.recv(timeout=args.timeout)
            if not b:
                break
            for s in b:
                data = s.tobytes()
                print("%d %4d %s" % (n, len(data), data[:32].hex()))
                n += 1
                if args.count and n >= args.count:
                    break
    print("%d packets" % n, file=sys.stderr)


def action(args):
    return {"name": _name, "backends": _backends, "info": _info, "pipes": _pipes,
            "recv": _recv}[args.cmd](args)


def main(argv=None):
    return cli.run("netmapy", build_parser, action, argv)


if __name__ == "__main__":
    sys.exit(main())
