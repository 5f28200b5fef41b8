"""Where lsr may write: the output-versus-input check behind every output directory, and the atomic
exchange of two directories that lets a new index replace an old one with no moment without either.

:func:`refuse_input_overlap` refuses an output path that equals an input or contains one (real paths
compared, so symbolic links and ``..`` do not hide it). :func:`exchange` swaps two paths in one
system call (Linux ``renameat2(RENAME_EXCHANGE)``), and returns False where the system or file
system lacks it, so the caller falls back to two renames.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import sys
import tempfile
from typing import Callable, Iterable

from .errors import InputError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip(os.sep) + os.sep)


def refuse_input_overlap(output: str | os.PathLike, inputs: Iterable, what: str = "output") -> None:
    """Raise InputError when ``output`` is one of ``inputs`` or a directory that contains one.

    ``inputs``: paths (``str`` / ``os.PathLike``); anything else (Python records, ``irds:`` ids) is
    skipped. Paths are compared after :func:`os.path.realpath`.
    """
    out = os.path.realpath(os.fspath(output))
    for src in inputs:
        if not isinstance(src, (str, os.PathLike)):
            continue
        s = os.fspath(src)
        if isinstance(s, str) and s.startswith("irds:"):
            continue
        real = os.path.realpath(s)
        if real == out:
            raise InputError(f"{os.fspath(output)}: the {what} is the input {s}; choose another {what}")
        if _inside(real, out):
            raise InputError(f"{os.fspath(output)}: the {what} contains the input {s}; choose another {what}")


def exchange(a: str, b: str) -> bool:
    """Swap the paths ``a`` and ``b`` atomically (both must exist); False where unsupported.

    Uses Linux ``renameat2(..., RENAME_EXCHANGE)`` (glibc 2.28+; ext4, xfs, btrfs, tmpfs, overlayfs
    support it). Another error (a missing path, permissions) raises OSError.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def start_output_dir(out_dir: str | os.PathLike, overwrite: bool, check_replaceable: Callable[[str], None],
                     what: str) -> tuple[str, str]:
    """``(out, build)``: the absolute output path and a fresh sibling directory to write it in.

    An existing ``out`` is refused unless ``overwrite``; with ``overwrite``, ``check_replaceable(out)``
    must accept it (it raises InputError for anything lsr did not make). The build directory,
    ``<name>.building-XXXX`` beside ``out``, is renamed into place by :func:`move_into_place`.
    """
    out = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out):
        if not overwrite:
            raise InputError(f"{out} already exists (use --overwrite to replace {what})")
        check_replaceable(out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    return out, tempfile.mkdtemp(prefix=os.path.basename(out) + ".building-", dir=parent)


def marked_dir_check(marker: str, fmt: str, files_key: str, what: str) -> Callable[[str], None]:
    """A ``check_replaceable`` for output directories that lsr marks with a JSON file ``marker`` whose
    ``format`` is ``fmt`` and whose ``files_key`` lists the other files it wrote: the returned check
    accepts an empty directory or such a one holding nothing else, and raises InputError otherwise
    (``what`` names the output, e.g. "Anserini export")."""

    def check(path: str) -> None:
        import json

        if not os.path.isdir(path):
            raise InputError(f"{path} exists and is not a directory: --overwrite replaces only an earlier "
                             f"{what} or an empty directory")
        entries = set(os.listdir(path))
        if not entries:
            return
        try:
            with open(os.path.join(path, marker), encoding="utf-8") as f:
                rec = json.load(f)
        except (OSError, ValueError):
            rec = None
        if not isinstance(rec, dict) or rec.get("format") != fmt:
            raise InputError(f"{path} is not an lsr {what} (no {marker}) and not empty: --overwrite replaces only "
                             "an earlier export or an empty directory (choose another output)")
        listed = rec.get(files_key) if isinstance(rec.get(files_key), list) else []
        foreign = sorted(entries - {marker, *listed})
        if foreign:
            raise InputError(f"{path} holds {foreign[0]!r}, which lsr did not write: --overwrite would delete it "
                             "(move it, or choose another output)")

    return check


def move_into_place(build: str, out: str, check_replaceable: Callable[[str], None]) -> None:
    """Rename the finished ``build`` directory to ``out``; an existing ``out`` (checked again with
    ``check_replaceable``) is swapped out atomically where the system allows it, then deleted."""
    if not os.path.lexists(out):
        os.rename(build, out)
        return
    check_replaceable(out)
    if exchange(build, out):
        shutil.rmtree(build, ignore_errors=True)   # now the old directory
    else:
        old = build + "-old"
        os.rename(out, old)
        os.rename(build, out)
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["exchange", "marked_dir_check", "move_into_place", "refuse_input_overlap", "start_output_dir"]
