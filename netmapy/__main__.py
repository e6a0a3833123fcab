"""netmapy: inspect ports, names, backends and pipes.

    netmapy backends                 which backends this machine can run
    netmapy name 'netmap:eth3~4'     how a port name parses
    netmapy info packet:eth0         open a port and describe it
    netmapy info nb-mi0 --netns lab  an interface by its Linux name (best backend)
    netmapy pipes                    pipe domains and the pipes in use
    netmapy recv PORT -c 10          receive packets and print a line each
"""

import json
import os
import sys

import click

from . import cli

EPILOG = __doc__.split("\n\n", 1)[1] + "\n" + cli.completion_help("netmapy")


@cli.group("netmapy", epilog=EPILOG)
@cli.common_options
def command():
    """Inspect netmapy ports, port names, backends and pipes.

    PORT is a port name (netmap's grammar: packet:eth0, xdp:eth3~4,
    pipe:x{1, pcap:in.pcap ...) or a Linux interface name as it is
    (eth0, nb-mi0), opened with --backend.
    """


@command.command("backends")
@cli.common_options(version=False)
def _backends():
    """Which backends this machine can run, and why not."""
    from .backends import BACKENDS
    for name, b in BACKENDS.items():
        ok, why = b.available()
        print("%-7s %-9s %s%s" % (name, "available" if ok else "no", b.summary,
                                  "" if ok else "  (%s)" % why))


@command.command("name")
@click.argument("port", type=cli.PORT_OR_IFACE)
@cli.backend_option()
@cli.common_options(version=False)
def _name(port, backend):
    """Parse a port name (or take an interface name) and show its parts."""
    n = cli.port_for(port, backend)
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
    if not n.spellable:
        print("spelling:  none (the interface name has characters netmap's port names "
              "reserve: open it by value, netmapy.open(iface=%r))" % n.ifname)
    elif n.upstream() != str(n):
        print("upstream:  %s" % n.upstream())


@command.command("info")
@click.argument("port", type=cli.PORT_OR_IFACE)
@cli.backend_option()
@cli.netns_option(help="open it inside this network namespace (ip netns name)")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@cli.common_options(version=False)
def _info(port, backend, netns, as_json):
    """Open a port and describe its rings and memory."""
    import netmapy
    with netmapy.open(cli.port_for(port, backend), netns=netns) as p:
        info = p.info()
    if as_json:
        print(json.dumps(info))
    else:
        for k, v in info.items():
            print("%-14s %s" % (k + ":", v))


@command.command("pipes")
@click.option("--clean", is_flag=True,
              help="free pipes whose processes are all gone, remove empty domains")
@cli.common_options(version=False)
def _pipes(clean):
    """List pipe domains and the pipes in use."""
    from .backends import pipe
    d = pipe.rundir()
    if clean:
        for parent, freed, removed in pipe.clean_stale():
            print("%s: freed %d stale pipe(s)%s" % (parent, freed, ", domain removed" if removed else ""))
    doms = pipe.list_domains()
    if not doms:
        print("no pipe domains in %s" % d)
    for parent in doms:
        print("%s (%s)" % (parent, os.path.join(d, parent + ".mem")))


@command.command("recv")
@click.argument("port", type=cli.PORT_OR_IFACE)
@click.option("-c", "--count", type=cli.COUNT, default=0, help="stop after COUNT packets")
@click.option("-t", "--timeout", type=cli.SECONDS, default=None,
              help="stop after SEC seconds without a packet")
@cli.backend_option()
@cli.netns_option(help="open it inside this network namespace (ip netns name)")
@click.option("--promisc", is_flag=True, help="promiscuous mode (packet backend)")
@cli.common_options(version=False)
def _recv(port, count, timeout, backend, netns, promisc):
    """Receive packets and print one line each."""
    import netmapy
    n = 0
    with netmapy.open(cli.port_for(port, backend), netns=netns,
                      **({"promisc": True} if promisc else {})) as p:
        while not count or n < count:
            b = p.recv(timeout=timeout)
            if not b:
                break
            for s in b:
                data = s.tobytes()
                print("%d %4d %s" % (n, len(data), data[:32].hex()))
                n += 1
                if count and n >= count:
                    break
    print("%d packets" % n, file=sys.stderr)


def main(argv=None):
    return cli.run(command, argv, "netmapy")


if __name__ == "__main__":
    sys.exit(main())
