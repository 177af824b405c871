"""The ``tl-studio`` command line: everything the app does, through the same core.

Each command lives in a module of ``tl_core.cli.commands`` that registers its own subcommand;
this module builds the parser from them and runs one.

Exit codes: 0 success, 1 the task could not be done (bad data, a failed run, ...), 2 bad usage.
Errors are printed as plain sentences with a hint, never as tracebacks (``--debug`` shows them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tl_core import __version__
from tl_core.cli.commands import COMMANDS
from tl_core.cli.options import HelpFormatter
from tl_core.cli.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    print_error,
)
from tl_core.common import (
    TLStudioError,
    UsageError,
    explain_os_error,
    os_error_in,
    setup_logging,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tl-studio", description="Transfer learning on your own labelled images."
    )
    parser.add_argument("--version", action="version", version=f"tl-studio {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    for command_parser in sub.choices.values():
        command_parser.formatter_class = HelpFormatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.debug)  # one line per warning; tracebacks only with --debug
    try:
        return args.func(args)
    except TLStudioError as exc:
        if args.debug:
            raise
        print_error(exc.message, exc.hint)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        os_error = os_error_in(exc)  # a full disk or a read-only folder is not a bug
        if os_error is not None:
            print_error(*explain_os_error(os_error))
        else:
            print_error(
                f"unexpected {type(exc).__name__}: {exc}",
                "run again with --debug to see the full traceback.",
            )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
