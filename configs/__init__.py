"""lsr's shipped presets (package data, installed as ``lsr.configs``).

``encoders/`` encoder presets, ``registry/`` reproducibility entries of ``lsr benchmark``,
``search/`` the query planner's defaults. Read them with :func:`lsr.configs.path` or
``importlib.resources.files("lsr.configs")``; they are the same files in a checkout and in a wheel.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable


def path(*parts: str) -> Traversable:
    """The shipped file or folder ``parts`` (e.g. ``path("encoders", "splade-tiny.yaml")``)."""
    p = files(__name__)
    for part in parts:
        p = p / part
    return p
