"""What every netmapy command line shares: one clear error line instead of
a traceback (unless --debug), exit codes, logging set-up.

    def main(argv=None):
        return cli.run("netmapy-foo", build_parser, do_it, argv)
"""

import argparse
import logging
import os
import signal
import sys

from .errors import NetmapyError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class CliError(NetmapyError):
    """A user error a command reports in one line."""


def add_common(parser):
    parser.add_argument("--debug", action="store_true",
                        help="show tracebacks and debug logging")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log what is being done (INFO level)")
    return parser


def one_line(exc):
    """The message of an exception on one line (an OSError without its
    "[Errno N]" prefix: our messages already say what failed and why)."""
    if isinstance(exc, OSError) and len(exc.args) >= 2 and isinstance(exc.args[0], int):
        msg = str(exc.args[1])
        if exc.filename:
            msg += ": %s" % exc.filename
    else:
        msg = str(exc) or exc.__class__.__name__
    return " ".join(msg.split())


def run(prog, build_parser, action, argv=None):
    """Parse argv, run action(args), turn failures into one line on stderr
    and a non-zero exit code."""
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    level = logging.DEBUG if getattr(args, "debug", False) else \
        logging.INFO if getattr(args, "verbose", False) else logging.WARNING
    logging.basicConfig(level=level, format="%(name)s: %(message)s")
    try:
        rc = action(args)
        return EXIT_OK if rc is None else rc
    except KeyboardInterrupt:
        print("%s: interrupted" % prog, file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except (NetmapyError, OSError, ValueError, BufferError) as e:
        if getattr(args, "debug", False):
            raise
        print("%s: error: %s" % (prog, one_line(e)), file=sys.stderr)
        return EXIT_ERROR


def terminate_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt so `finally` blocks (cleanup)
    run, as for Ctrl-C."""
    def handler(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, handler)
