"""The ``lsr`` command line.

The CLI only parses arguments into the library's configuration dataclasses and
calls the Python API; each sub-command lives in ``lsr/commands/<name>.py`` with
``register(subparsers)`` adding its parser and a ``run(args)`` function.
Errors in the user's input (:class:`~lsr.errors.LsrError`) are printed as one
line, ``lsr: error: ...``, with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from . import __version__
from .errors import LsrError

# Sub-command modules, in the order ``lsr --help`` lists them.
COMMANDS = ["encode", "index", "search", "eval", "benchmark", "info"]


def _available_commands() -> list:
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"lsr.commands.{name}"))
        except ModuleNotFoundError as e:
            # Only a command module that is not part of this build is skipped;
            # a missing dependency *inside* a command surfaces when it runs.
            if e.name != f"lsr.commands.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lsr",
        description="lsr: learned sparse retrieval. Encode text into term weights, "
                    "build a quantised inverted index, search it exactly, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"lsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _available_commands():
        mod.register(sub)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"lsr: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _warning_line
    try:
        rc = args.func(args)
    except LsrError as e:
        print(f"lsr: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lsr: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
