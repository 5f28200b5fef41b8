"""The ``lsr`` command line.

The CLI only parses arguments into the library's configuration dataclasses and
calls the Python API; each sub-command lives in ``lsr/commands/<name>.py`` with
``register(subparsers)`` adding its parser and a ``run(args)`` function.
Errors in the user's input (:class:`~lsr.errors.LsrError`) are printed as one
line, ``lsr: error: ...``, with a non-zero exit status. So are, as a last
resort, the errors of the environment the library did not name a file for:
any ``OSError`` (a full disk, a missing directory, permissions), ``EOFError``
(a truncated ``.gz``), ``zlib.error`` and ``UnicodeDecodeError`` (exit 2,
never a traceback). A closed standard output (``lsr search ... | head``)
ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
import zlib

from . import __version__
from .errors import LsrError

# Sub-command modules, in the order ``lsr --help`` lists them.
COMMANDS = ["encode", "index", "search", "rerank", "eval", "benchmark", "train", "mine", "ciff", "anserini", "onnx", "serve", "info"]


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
                    "build a quantised inverted index, search it exactly, rerank the top hits, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"lsr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _available_commands():
        mod.register(sub)
    return parser


def _warning_line(message, category, filename, lineno, file=None, line=None):
    print(f"lsr: warning: {message}", file=sys.stderr if file is None else file)


def environment_error_line(e: BaseException) -> str:
    """One line for an I/O or decoding error that reached the CLI: the file where the exception
    names one, and what went wrong."""
    if isinstance(e, OSError):
        reason = e.strerror or str(e) or type(e).__name__
        files = [os.fsdecode(f) for f in (e.filename, e.filename2) if f is not None]
        return f"{' -> '.join(files)}: {reason}" if files else reason
    if isinstance(e, EOFError):
        return f"a compressed input file ends early, it is truncated ({e})"
    if isinstance(e, zlib.error):
        return f"a compressed input file is corrupt ({e})"
    if isinstance(e, UnicodeDecodeError):
        return f"an input file is not valid UTF-8 ({e})"
    return str(e)


def _stdout_closed() -> int:
    # the reader of standard output went away: stop quietly, and keep Python's exit-time flush of
    # stdout from failing again (the recipe of the Python documentation on SIGPIPE)
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 141


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _warning_line
    try:
        rc = args.func(args)
        sys.stdout.flush()   # a full disk or a closed pipe on stdout is reported here, not at exit
    except LsrError as e:
        print(f"lsr: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("lsr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as e:
        print(f"lsr: error: {environment_error_line(e)}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
