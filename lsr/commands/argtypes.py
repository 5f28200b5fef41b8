"""argparse ``type=`` converters shared by the subcommands (clear messages instead of tracebacks)."""

from __future__ import annotations

import argparse


def _int_at_least(s: str, low: int, what: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected {what}, got {s!r}")
    return v


def positive_int(s: str) -> int:
    """An integer >= 1."""
    return _int_at_least(s, 1, "a positive integer")


def nonneg_int(s: str) -> int:
    """An integer >= 0."""
    return _int_at_least(s, 0, "an integer >= 0")


def nonneg_float(s: str) -> float:
    """A finite number >= 0."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {s!r}")
    return v
