"""What every netmapy command line shares, on click.

    @cli.command("netmapy-foo", epilog=EXAMPLES)
    @click.argument("ifname", type=cli.IFACE)
    @cli.netns_option()
    @cli.common_options
    def command(ifname, netns):
        ...

    def main(argv=None):
        return cli.run(command, argv)

``run()`` gives every command the same behaviour: a user error is one line
on stderr (``PROG: error: what went wrong and how to fix it``) and a non-zero
exit (2 for a bad command line, 1 for anything else), the traceback only
with ``--debug``; Ctrl-C exits 130; ``--help`` and ``--version`` work
everywhere; shell completion comes from click (see ``completion_help``).

The option groups several commands share are defined here once: debug and
verbose (``common_options``), the network namespace (``netns_option``), the
CPUs (``cpus_option``), the backend (``backend_option``) and the counters
and their output (``output_options``).  middlebox.options adds the filter
group.  The click types validate values with the one parser each
(netmapy.units, netmapy.names), and a bad value names the option and what
it accepts.
"""

import logging
import math
import os
import signal
import sys
from types import SimpleNamespace

import click

from .errors import NetmapyError

__all__ = [
    "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED", "CliError", "one_line",
    "run", "command", "group", "Command", "Group", "Option", "pass_args",
    "common_options", "netns_option", "cpus_option", "backend_option", "output_options",
    "IFACE", "PORT", "PORT_OR_IFACE", "CPUS", "RATE", "SIZES", "COUNT", "SECONDS",
    "HOST_PORT", "IntRange", "port_for", "terminate_on_sigterm", "completion_help",
]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(NetmapyError):
    """A user error a command reports in one line."""


def one_line(exc):
    """The message of an exception on one line (an OSError without its
    "[Errno N]" prefix: our messages already say what failed and why)."""
    if isinstance(exc, OSError) and len(exc.args) >= 2 and isinstance(exc.args[0], int):
        msg = str(exc.args[1])
        if exc.filename:
            msg += ": %s" % exc.filename
    elif isinstance(exc, click.ClickException):
        msg = exc.format_message()
    else:
        msg = str(exc) or exc.__class__.__name__
    return " ".join(msg.split())


# ---------------------------------------------------------------- help layout

class Option(click.Option):
    """A click option that belongs to a titled group in --help."""

    def __init__(self, *args, group=None, **kw):
        super().__init__(*args, **kw)
        self.group = group


def _verbatim(formatter, text):
    """Write text as it is (examples keep their lines), indented."""
    formatter.write_paragraph()
    with formatter.indentation():
        for line in text.rstrip().splitlines():
            formatter.write("%*s%s\n" % (formatter.current_indent, "", line) if line else "\n")


class _HelpLayout:
    """Options by group, docstring and epilog verbatim."""

    def format_help_text(self, ctx, formatter):
        if self.help:
            import inspect
            _verbatim(formatter, inspect.cleandoc(self.help))

    def format_epilog(self, ctx, formatter):
        if self.epilog:
            _verbatim(formatter, self.epilog)

    def format_options(self, ctx, formatter):
        groups = {}
        order = []
        for p in self.get_params(ctx):
            rv = p.get_help_record(ctx)
            if rv is None:
                continue
            title = getattr(p, "group", None)
            if p.name == "help":
                title = "General"
            elif title is None:
                title = "Options"
            if title not in groups:
                groups[title] = []
                order.append(title)
            groups[title].append(rv)
        # the command's own options first, the general ones last
        for title in sorted(order, key=lambda t: (t != "Options", t == "General")):
            with formatter.section(title):
                formatter.write_dl(groups[title])
        if isinstance(self, click.Group):
            self.format_commands(ctx, formatter)


class Command(_HelpLayout, click.Command):
    pass


class Group(_HelpLayout, click.Group):
    command_class = Command

    def format_options(self, ctx, formatter):
        _HelpLayout.format_options(self, ctx, formatter)


Group.group_class = Group

_SETTINGS = dict(help_option_names=["-h", "--help"], max_content_width=100)


def command(name, **kw):
    """click.command with netmapy's help layout (and -h)."""
    kw.setdefault("context_settings", _SETTINGS)
    return click.command(name, cls=Command, **kw)


def group(name, **kw):
    """click.group with netmapy's help layout (and -h)."""
    kw.setdefault("context_settings", _SETTINGS)
    return click.group(name, cls=Group, **kw)


def pass_args(fn):
    """Call ``fn(args)`` with the parameters as attributes of one object
    (the argparse habit: ``args.netns``) instead of keyword arguments."""
    import functools

    @functools.wraps(fn)
    def wrapper(**kw):
        return fn(SimpleNamespace(**kw))
    return wrapper


# ---------------------------------------------------------------- running

def _debug(ctx):
    return bool(ctx is not None and ctx.meta.get("netmapy.debug"))


def _complete_var(prog):
    return "_%s_COMPLETE" % prog.replace("-", "_").replace(".", "_").upper()


def run(cmd, argv=None, prog=None):
    """Run a click command the netmapy way; returns the exit code.

    A command run this way is a program, not a library user: it opts in to
    cleanup on SIGTERM/SIGHUP (``netmapy.stop.exit_on_signals``: where the
    handlers are still the defaults, they raise SystemExit, so ``finally``
    and atexit run and xdp ports close); its own handlers replace these."""
    from . import stop
    stop.exit_on_signals()
    args = sys.argv[1:] if argv is None else [str(a) for a in argv]
    prog = prog or cmd.name
    var = _complete_var(prog)
    if os.environ.get(var):
        return cmd.main(args=args, prog_name=prog, complete_var=var)   # exits
    ctx = None
    try:
        ctx = cmd.make_context(prog, args)
        with ctx:
            rc = cmd.invoke(ctx)
        return EXIT_OK if rc is None or not isinstance(rc, int) else rc
    except click.exceptions.Exit as e:             # --help, --version
        return e.exit_code
    except click.UsageError as e:
        where = e.ctx.command_path if e.ctx is not None else prog
        print("%s: error: %s (see '%s --help')" % (prog, one_line(e).rstrip("."), where),
              file=sys.stderr)
        return EXIT_USAGE
    except click.ClickException as e:
        print("%s: error: %s" % (prog, one_line(e)), file=sys.stderr)
        return e.exit_code
    except (KeyboardInterrupt, click.Abort):
        print("%s: interrupted" % prog, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except (NetmapyError, OSError, ValueError, BufferError) as e:
        if _debug(ctx):
            raise
        print("%s: error: %s" % (prog, one_line(e)), file=sys.stderr)
        return EXIT_ERROR


def terminate_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt so `finally` blocks (cleanup)
    run, as for Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)


def completion_help(prog):
    """How to turn on shell completion for ``prog`` (for epilogs and docs)."""
    var = _complete_var(prog)
    return ('shell completion: eval "$(%s=bash_source %s)" in ~/.bashrc '
            '(zsh_source, fish_source for zsh and fish)' % (var, prog))


# ---------------------------------------------------------------- types

class _Type(click.ParamType):
    """A click type over one of netmapy's parsers (ValueError -> the
    option's name and what it accepts)."""

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as e:
            self.fail(one_line(e), param, ctx)


def _sys_interfaces():
    try:
        return sorted(os.listdir("/sys/class/net"))
    except OSError:
        return []


class InterfaceType(_Type):
    """A Linux interface name, as the kernel accepts it ('-' included)."""
    name = "IFACE"

    def parse(self, value):
        from .names import check_ifname
        return check_ifname(value)

    def shell_complete(self, ctx, param, incomplete):
        from click.shell_completion import CompletionItem
        return [CompletionItem(n) for n in _sys_interfaces() if n.startswith(incomplete)]


class PortType(_Type):
    """A netmapy port name (netmap's grammar) -> PortName."""
    name = "PORT"

    def parse(self, value):
        from .names import parse_name
        return parse_name(value)


class PortOrInterfaceType(InterfaceType):
    """A port name (it has a ':' after its backend, as xdp:eth0-1 or
    pipe:x{1) -> PortName, or else a Linux interface name (no ':' is
    possible in those) -> str, opened by ``port_for`` on the backend the
    command chose."""
    name = "PORT|IFACE"

    def parse(self, value):
        from .names import parse_name, check_ifname
        if ":" in value:
            return parse_name(value)
        return check_ifname(value)


def port_for(value, backend="netmap", **kw):
    """A PortName for a PORT|IFACE value: a PortName as it is, an interface
    name (str) as ``PortName.interface(value, backend, **kw)``."""
    from .names import PortName
    if isinstance(value, PortName):
        return value
    return PortName.interface(value, backend, **kw)


class CpuListType(_Type):
    """'0-3,5' -> [0, 1, 2, 3, 5], each a CPU this process may use."""
    name = "CPUS"

    def parse(self, value):
        from .units import parse_cpulist, format_cpulist
        cpus = parse_cpulist(value)
        allowed = os.sched_getaffinity(0)
        bad = [c for c in cpus if c not in allowed]
        if bad:
            raise ValueError("CPU %s not available to this process (it may use %s)" % (
                format_cpulist(bad), format_cpulist(allowed)))
        return cpus


class RateType(_Type):
    """'100k', '1.5Mpps', '200Mbps' -> netmapy.units.Rate."""
    name = "RATE"

    def parse(self, value):
        from .units import parse_rate
        return parse_rate(value)


class SizesType(_Type):
    """'60', '60-1500', 'imix', 'imix:64,570,1518:7,4,1' -> SizeSpec."""
    name = "SIZE"

    def parse(self, value):
        from .units import parse_sizes
        return parse_sizes(value)


class CountType(_Type):
    """'1000', '10k', '1M' -> int >= 0."""
    name = "N"

    def parse(self, value):
        from .units import parse_count
        return parse_count(value)


class SecondsType(_Type):
    """A finite number of seconds >= 0."""
    name = "SEC"

    def parse(self, value):
        try:
            v = float(value)
        except ValueError:
            raise ValueError("%r is not a number of seconds" % value) from None
        if not (v >= 0 and math.isfinite(v)):
            raise ValueError("%r: a number of seconds >= 0 is needed" % value)
        return v


class HostPortType(_Type):
    """'[HOST:]PORT' -> (host, port)."""
    name = "[HOST:]PORT"

    def parse(self, value):
        host, _, port = value.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("%r: expected [HOST:]PORT with PORT 1..65535 (e.g. 9100 or "
                             "127.0.0.1:9100)" % value)
        return (host or "127.0.0.1", int(port))


class IntRange(click.IntRange):
    """click.IntRange shown as N in --help."""
    name = "n"


IFACE = InterfaceType()
PORT = PortType()
PORT_OR_IFACE = PortOrInterfaceType()
CPUS = CpuListType()
RATE = RateType()
SIZES = SizesType()
COUNT = CountType()
SECONDS = SecondsType()
HOST_PORT = HostPortType()


# ---------------------------------------------------------------- option groups

def _apply(decorators, f):
    for d in reversed(decorators):
        f = d(f)
    return f


def _set_debug(ctx, param, value):
    if value:
        ctx.meta["netmapy.debug"] = True
        _logging(logging.DEBUG)
    return value


def _set_verbose(ctx, param, value):
    if value and not ctx.meta.get("netmapy.debug"):
        _logging(logging.INFO)
    return value


def _logging(level):
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format="%(name)s: %(message)s")
    if root.level > level or root.level == logging.NOTSET or level == logging.DEBUG:
        root.setLevel(level)


def common_options(f=None, *, version=True):
    """--debug, -v/--verbose (and --version on a top-level command)."""
    def deco(f):
        from . import __version__
        opts = [
            click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
                         callback=_set_debug, cls=Option, group="General",
                         help="show tracebacks and debug logging"),
            click.option("-v", "--verbose", is_flag=True, expose_value=False,
                         callback=_set_verbose, cls=Option, group="General",
                         help="log what is being done (INFO level)"),
        ]
        if version:
            opts.append(click.version_option(__version__, "--version",
                                             message="%(prog)s (netmapy %(version)s)",
                                             cls=Option, group="General"))
        return _apply(opts, f)
    return deco(f) if f is not None else deco


def netns_option(help="the interface(s) are in this network namespace (ip netns name)",
                 group=None, **kw):
    return click.option("--netns", metavar="NS", cls=Option, group=group, help=help,
                        shell_complete=_complete_netns, **kw)


def _complete_netns(ctx, param, incomplete):
    from click.shell_completion import CompletionItem
    try:
        names = sorted(os.listdir("/var/run/netns"))
    except OSError:
        names = []
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def cpus_option(help="CPUs for the workers, e.g. 0-3,5 (default: NUMA-local first)",
                flags=("--cpus",), group=None, **kw):
    return click.option(*flags, "cpus", type=CPUS, metavar="CPUS", cls=Option, group=group,
                        help=help, **kw)


BACKEND_HELP = ("netmap (the best available: the netmap module, else xdp, else packet), "
                "xdp or packet")


def backend_option(choices=("netmap", "xdp", "packet"), default="netmap", help=None,
                   group=None, **kw):
    return click.option("--backend", type=click.Choice(choices), default=default,
                        show_default=True, cls=Option, group=group,
                        help=help or "the backend interfaces are opened with: " + BACKEND_HELP,
                        **kw)


def output_options(f=None, *, prometheus=False, interval=1.0, group="Counters and output"):
    """-T/--interval, --json (alias --stats-json) and, for the supervised
    middleboxes, --prometheus."""
    def deco(f):
        opts = [
            click.option("-T", "--interval", type=SECONDS, default=interval, show_default=True,
                         cls=Option, group=group,
                         help="seconds between counter reports (0: only the summary)"),
            click.option("--json", "--stats-json", "json", is_flag=True, cls=Option,
                         group=group, help="counters and the summary as JSON lines"),
        ]
        if prometheus:
            opts.append(click.option("--prometheus", type=HOST_PORT, cls=Option, group=group,
                                     help="serve Prometheus text metrics at "
                                          "http://HOST:PORT/metrics"))
        return _apply(opts, f)
    return deco(f) if f is not None else deco


def seconds_option(help="stop after SEC seconds (0: until Ctrl-C or SIGTERM)",
                   flags=("--seconds",), group=None, **kw):
    return click.option(*flags, "seconds", type=SECONDS, default=0, cls=Option,
                        group=group, help=help, **kw)


def error(message):
    """A CliError for ``message`` (raise it)."""
    return CliError(message)


def usage_error(message, param_hint=None):
    """A bad command line found after parsing (exit 2, one line)."""
    if param_hint:
        return click.BadParameter(message, param_hint=param_hint)
    return click.UsageError(message)

