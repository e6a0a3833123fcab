"""The command line of the netmap backend's preflight checks
(``netmapy.backends.netmap.preflight``): ``python3 -m netmapy.preflight
[--netns NS] [--bridge] [--forward] PORT|IFACE...`` prints each problem with
its fix and exits 1 if any is an error."""

import sys

import click

from netmapy import cli
from netmapy.backends.netmap.preflight import check
from netmapy.errors import NetmapyError


@cli.command("netmapy-preflight", epilog="examples:\n"
             "  python3 -m netmapy.preflight eth3 netmap:eth3~4\n"
             "  python3 -m netmapy.preflight --netns mbox --bridge netmap:a0 netmap:b0")
@click.argument("names", nargs=-1, required=True, metavar="PORT|IFACE...",
                type=cli.PORT_OR_IFACE)
@cli.netns_option(help="network namespace of the interfaces")
@click.option("--bridge", is_flag=True, help="the ports will bridge (check promiscuous mode)")
@click.option("--forward", is_flag=True,
              help="transparent forwarding (NS_FORWARD) will be used")
@click.option("--ethtool", is_flag=True,
              help="read offloads by running ethtool -k (default: ioctl)")
@cli.common_options
def command(names, netns, bridge, forward, ethtool):
    """Check interfaces before opening netmap ports; print each problem with
    its fix.  PORT|IFACE: port names (netmap:eth3~4, netmap:eth3*) or
    interfaces by their Linux names."""
    errors = 0
    for n in names:
        try:
            fs = check(n, netns=netns, bridge=bridge, forward=forward, use_ethtool_cli=ethtool)
        except (NetmapyError, OSError, ValueError) as e:
            print("error: %s: %s" % (n, e))
            errors += 1
            continue
        if not fs:
            print("ok: %s" % n)
        for f in fs:
            print(f)
            errors += f.severity == "error"
    return 1 if errors else 0


def main(argv=None):
    return cli.run(command, argv)


if __name__ == "__main__":          # pragma: no cover
    sys.exit(main())
