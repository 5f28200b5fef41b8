"""lsr.distributed: scale-out on Ray (the ``distributed`` extra: ``pip install 'lsr[distributed]'``).

:mod:`lsr.distributed.encode` encodes a corpus on a Ray cluster (``lsr encode --ray``,
``lsr index --encoder ... --ray``). Importing this package does not import Ray; the
functions that need it import it and name the extra when it is missing.
"""

from __future__ import annotations

EXTRA = "pip install 'lsr[distributed]'"


def import_ray():
    """The ``ray`` module, or an :class:`~lsr.errors.LsrError` naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        from lsr.errors import LsrError

        raise LsrError(f"Ray is not installed: {EXTRA}") from None
    return ray


__all__ = ["EXTRA", "import_ray"]
