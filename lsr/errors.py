"""User-facing errors.

Every problem caused by the user's input (a malformed file, a bad option, a
missing or damaged index) is raised as an :class:`LsrError` with a one-line
message that says what is wrong and where. The CLI prints that line and exits
non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class LsrError(Exception):
    """An error in the user's input or environment, with a one-line message."""

    exit_code = 2


class InputError(LsrError):
    """Malformed documents, queries, run files or options."""


class IndexFormatError(LsrError):
    """A missing, truncated, corrupted or incompatible index directory (not ``IndexError``, which
    would shadow the builtin)."""

__all__ = ["LsrError", "InputError", "IndexFormatError"]
